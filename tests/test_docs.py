"""The documentation stays true: docs/api.md has a section for every route of
/openapi.json and no other, and every relative link in the README and docs/ leads to a
file of the project (no link out of the repository: the clone and the package carry
what the README links to)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEADING = re.compile(r"^## (GET|POST|PUT|PATCH|DELETE) (/\S*)$", re.MULTILINE)
LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_api_md_has_a_section_for_every_route_and_no_other(make_server):
    s = make_server(env={"ANOMALYD_API_TOKEN": "doc-token"})  # the login routes too
    document = s.get(
        "/openapi.json", headers={"Authorization": "Bearer doc-token"}
    ).json()
    routes = {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method != "parameters"
    }
    described = set(HEADING.findall((ROOT / "docs" / "api.md").read_text()))
    assert described == routes, (
        f"in /openapi.json only: {sorted(routes - described)}; "
        f"in docs/api.md only: {sorted(described - routes)}"
    )


def test_relative_links_stay_inside_the_project():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    checked = 0
    for page in pages:
        for target in LINK.findall(page.read_text()):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue  # a URL, or an anchor in the same page
            path = (page.parent / target.split("#")[0]).resolve()
            assert path.is_relative_to(ROOT), f"{page.name} links outside: {target}"
            assert path.exists(), f"{page.name} links to a missing file: {target}"
            checked += 1
    assert checked >= 5
