"""`make package`'s artifacts: the zipapp run from an empty directory, the .deb checked by
lintian, installed with dpkg, its unit's ExecStart run as systemd would, removed, purged.

The artifacts are built once per session (tests/shipping.py) by the same scripts as
`make package`, from the working tree, so a test never runs a stale dist/.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from shipping import (
    PACKAGE,
    ROOT,
    VERSION,
    Service,
    build,
    dpkg,
    find_python,
    round_trip,
    series_versions,
    unit_service,
    unowned_files,
)

from anomalyd.settings import HELP, Settings

TOOLS = ("dpkg-deb", "lintian", "systemd-analyze")


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory) -> tuple[Path, Path]:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (.ci/run installs them)")
    return build(tmp_path_factory)


def installed() -> bool:
    done = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", PACKAGE],
        check=False,
        capture_output=True,
        text=True,
    )
    return done.stdout.endswith(" installed")


def test_zipapp_round_trip_from_an_empty_directory(artifacts, tmp_path):
    """Python 3.11 and the file, nothing else: no venv on PATH, no HOME cache, no data."""
    pyz, _ = artifacts
    python = shutil.which("python3", path="/usr/bin:/bin")
    if python is None:
        pytest.skip("no /usr/bin/python3 (.ci/run installs python3)")
    bare = subprocess.run(
        [python, "-c", "import numpy"], check=False, capture_output=True
    )
    assert bare.returncode != 0, "the system Python has numpy: this would prove nothing"

    empty = tmp_path / "empty"
    empty.mkdir()
    shutil.copy2(pyz, empty)
    home = tmp_path / "home"
    home.mkdir()
    argv = [f"./{pyz.name}", "serve"]

    service = Service(argv, tmp_path, {"HOME": str(home)}, cwd=empty).start()
    try:
        assert "READY=1" in service.notified
        version = round_trip(service.url, "zipapp-temp")
        assert service.stop() == 0, service.output()
        again = Service(argv, tmp_path, {"HOME": str(home)}, cwd=empty).start()
        try:
            assert series_versions(again.url, "zipapp-temp") == [version]
            assert again.stop() == 0, again.output()
        finally:
            again.kill()
    finally:
        service.kill()
    # Default data_dir is ./data; the dependencies went to ~/.shiv.
    assert sorted(p.name for p in empty.iterdir()) == sorted([pyz.name, "data"])
    assert (empty / "data" / "data.mdb").is_file()
    assert any((home / ".shiv").iterdir())


@pytest.mark.parametrize("minor", ["11", "12", "13"])
def test_zipapp_serves_on_each_python(artifacts, tmp_path, minor):
    """One file for 3.11 to 3.13: each interpreter finds its own compiled numpy,
    msgspec and lmdb in it (Debian 12 has 3.11, Ubuntu 24.04 3.12, Debian 13 3.13)."""
    pyz, _ = artifacts
    python = find_python(minor)
    if python is None:
        pytest.skip(f"no python3.{minor} here (pyenv on the CI machine has it)")
    bare = subprocess.run(
        [python, "-I", "-c", "import msgspec"], check=False, capture_output=True
    )
    assert bare.returncode != 0, f"{python} has msgspec: this would prove nothing"
    home = tmp_path / "home"
    home.mkdir()
    service = Service(
        [python, "-I", str(pyz), "serve", "--data-dir", str(tmp_path / "data")],
        tmp_path,
        {"HOME": str(home)},
    ).start()
    try:
        round_trip(service.url, f"zipapp-3{minor}")
        assert service.stop() == 0, service.output()
    finally:
        service.kill()
    checked = subprocess.run(
        [python, "-I", str(pyz), "check-config", "--data-dir", str(tmp_path / "d2")],
        check=False,
        capture_output=True,
        text=True,
        env={"HOME": str(home), "PATH": "/usr/bin:/bin"},
    )
    assert checked.returncode == 0, checked.stderr
    assert "workers = 2" in checked.stdout


def test_zipapp_refuses_another_python_and_says_which_it_needs(artifacts, tmp_path):
    """Python 3.10 (or any other than 3.11 to 3.13): a message naming the versions it
    needs, exit 1, before anything is unpacked into ~/.shiv."""
    pyz, _ = artifacts
    python = find_python("10")
    if python is None:
        pytest.skip("no python3.10 here (pyenv on the CI machine has it)")
    home = tmp_path / "home"
    home.mkdir()
    done = subprocess.run(
        [python, "-I", str(pyz), "--version"],
        check=False,
        capture_output=True,
        text=True,
        env={"HOME": str(home), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "needs Python 3.11, 3.12 or 3.13" in done.stderr, done.stderr
    assert "This is Python 3.10" in done.stderr, done.stderr
    assert not (home / ".shiv").exists(), "unpacked before refusing"


def test_lintian_reports_no_errors(artifacts):
    _, deb = artifacts
    done = subprocess.run(
        ["lintian", "--tag-display-limit", "0", str(deb)],
        check=False,
        capture_output=True,
        text=True,
    )
    print(done.stdout + done.stderr)
    errors = [line for line in done.stdout.splitlines() if line.startswith("E:")]
    assert not errors, done.stdout
    assert done.returncode == 0, done.stdout + done.stderr


def test_deb_holds_the_files_a_host_needs(artifacts, tmp_path):
    _, deb = artifacts
    assert deb.name == f"anomalyd_{VERSION}_amd64.deb"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp_path)], check=True)
    control = tmp_path / "DEBIAN"
    subprocess.run(["dpkg-deb", "-e", str(deb), str(control)], check=True)
    for path in (
        "usr/bin/anomalyd",
        "lib/systemd/system/anomalyd.service",
        "lib/systemd/system/anomalyd.socket",
        "etc/anomalyd/anomalyd.toml",
        "usr/share/doc/anomalyd/README.md",
        "usr/share/doc/anomalyd/copyright",
        "usr/share/doc/anomalyd/changelog.gz",
    ):
        assert (tmp_path / path).is_file(), path
    assert os.access(tmp_path / "usr/bin/anomalyd", os.X_OK)
    # Unpacked by dpkg, for each Python of Debian 12 and 13 (and 3.12 between): no
    # zipapp that would unpack itself into a cache at run time.
    site = tmp_path / "usr/lib/anomalyd/site-packages"
    assert not list((tmp_path / "usr/lib/anomalyd").glob("*.pyz"))
    for module in ("msgspec/_core", "lmdb/cpython", "numpy/_core/_multiarray_umath"):
        for tag in ("311", "312", "313"):
            assert list(site.glob(f"{module}.cpython-{tag}-*.so")), (module, tag)
    assert (tmp_path / "etc/anomalyd/credentials").is_dir()  # LoadCredential= source
    fields = subprocess.run(
        ["dpkg-deb", "-f", str(deb), "Depends"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    depends = [d.strip() for d in fields.split(",")]
    assert "python3 (>= 3.11)" in depends and "python3 (<< 3.14)" in depends
    assert not [d for d in depends if d.startswith("python3.")], depends
    assert any(d.startswith("libc6 (>= ") for d in depends), depends
    assert "procps" in depends, depends  # ExecReload=kill
    shipped_unit = (tmp_path / "lib/systemd/system/anomalyd.service").read_text()
    assert shipped_unit == (ROOT / "systemd/anomalyd.service").read_text()
    assert (control / "conffiles").read_text().split() == [
        "/etc/anomalyd/anomalyd.toml"
    ]
    for script in ("postinst", "prerm", "postrm"):
        text = (control / script).read_text()
        assert os.access(control / script, os.X_OK) and "anomalyd.service" in text
    assert "/run/systemd/system" in (control / "postinst").read_text()

    config = (tmp_path / "etc/anomalyd/anomalyd.toml").read_text()
    # Every setting documented, and an untouched file changes nothing.
    for field in Settings.__struct_fields__:
        assert f"\n#{field} = " in config, field
        assert HELP[field] in config, field
    assert tomllib.loads(config) == {}
    for line in config.splitlines():
        if line.startswith("#") and " = " in line and not line.startswith("# "):
            tomllib.loads(line[1:])  # each example uncomments to valid TOML


def test_deb_ships_every_doc_the_readme_links_to(artifacts, tmp_path):
    """Each relative link in the README and the docs it links to, followed inside
    /usr/share/doc/anomalyd as installed, reaches a file the package ships."""
    _, deb = artifacts
    subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp_path)], check=True)
    doc = tmp_path / "usr/share/doc/anomalyd"
    links = []
    for page in [doc / "README.md", *sorted((doc / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue  # a web address or an anchor in the page itself
            links.append((page, target.split("#")[0]))
    readme = [t for p, t in links if p.name == "README.md"]
    assert "docs/install.md" in readme and "docs/plot.png" in readme, readme
    broken = [
        f"{page.relative_to(doc)} -> {target}"
        for page, target in links
        if not (page.parent / target).resolve().is_relative_to(doc)
        or not (page.parent / target).is_file()
    ]
    assert not broken, broken


def test_deb_install_run_remove_purge(artifacts, tmp_path):
    """dpkg -i; the unit's ExecStart as systemd runs it; dpkg -r keeps the store; --purge
    deletes it. Runs as root (CI does); the service as root too, because /var/lib/private
    is 0700 outside systemd's namespace (tests/test_systemd.py runs it unprivileged)."""
    _, deb = artifacts
    if os.geteuid() != 0:
        pytest.skip("dpkg -i needs root (CI runs as root)")
    state = Path("/var/lib/private/anomalyd")
    if installed() or state.exists() or Path("/var/lib/anomalyd").exists():
        pytest.skip(
            "anomalyd is already installed or has data on this host: not touched"
        )
    service = None
    try:
        dpkg("-i", str(deb))
        assert installed()
        for path in (
            "/usr/bin/anomalyd",
            "/lib/systemd/system/anomalyd.service",
            "/etc/anomalyd/anomalyd.toml",
            "/usr/share/doc/anomalyd/copyright",
        ):
            assert Path(path).exists(), path
        unit = Path("/lib/systemd/system/anomalyd.service").read_text()

        service = unit_service(unit, Path("/"), tmp_path, hardened=True).start()
        assert "READY=1" in service.notified
        assert service.env["STATE_DIRECTORY"] == "/var/lib/anomalyd"
        first = round_trip(service.url, "deb-temp")
        assert service.stop() == 0, service.output()
        shutil.rmtree("/run/anomalyd")  # systemd empties RuntimeDirectory at stop

        service = unit_service(unit, Path("/"), tmp_path, hardened=True).start()
        assert series_versions(service.url, "deb-temp") == [first]
        second = round_trip(service.url, "deb-temp")
        assert series_versions(service.url, "deb-temp") == [first, second]
        assert service.stop() == 0, service.output()
        shutil.rmtree("/run/anomalyd")
        assert (state / "data.mdb").is_file()
        # Run by hand as root, as an admin would: nothing unpacked into a home or a
        # cache, nothing written under /usr that dpkg does not know.
        home = tmp_path / "root-home"
        home.mkdir()
        checked = subprocess.run(
            [
                "/usr/bin/anomalyd",
                "check-config",
                "--config",
                "/etc/anomalyd/anomalyd.toml",
            ],
            check=False,
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env={"HOME": str(home), "PATH": "/usr/bin:/bin"},
        )
        assert checked.returncode == 0, checked.stderr
        assert list(home.iterdir()) == []
        assert not Path("/var/cache/anomalyd").exists()
        assert not Path("/var/cache/private/anomalyd").exists()
        assert unowned_files("/usr/lib/anomalyd") == []

        dpkg("-r", PACKAGE)
        assert not Path("/usr/bin/anomalyd").exists()
        assert (state / "data.mdb").is_file(), "dpkg -r must keep the store"
        assert Path("/etc/anomalyd/anomalyd.toml").is_file(), "remove keeps conffiles"

        dpkg("--purge", PACKAGE)
        for gone in (
            state,
            Path("/usr/lib/anomalyd"),
            Path("/var/lib/anomalyd"),
            Path("/var/cache/anomalyd"),
            Path("/var/cache/private/anomalyd"),
            Path("/etc/anomalyd"),
            Path("/etc/systemd/system/anomalyd.service"),
            Path("/etc/systemd/system/anomalyd.socket"),
            Path("/etc/systemd/system/multi-user.target.wants/anomalyd.service"),
        ):
            assert not gone.exists() and not gone.is_symlink(), f"{gone} survived purge"
    finally:
        if service is not None:
            service.kill()
        shutil.rmtree("/run/anomalyd", ignore_errors=True)
        shutil.rmtree("/run/credentials/anomalyd.service", ignore_errors=True)
        if installed():
            dpkg("--purge", PACKAGE)
