"""The README's examples, pasted verbatim into a shell against a fresh ``anomalyd serve``
in the order they appear, give the output the README shows.

Run: every ``sh`` block of the sections "The API by example" and "Plots and the
dashboard". Output: the ``# ...`` lines right under a command, or a ``# ...`` comment at
the end of its line, when they read as JSON (compared as JSON; ``created_at`` only has to
be a date) or as JSON with ``...`` standing for anything. Files saved with ``-o`` must be
SVG. Only ``localhost:8000`` is replaced, by the test server's address.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shlex
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ("The API by example", "Plots and the dashboard")


def section(text: str, title: str) -> str:
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else None]


def commands(block: str) -> list[tuple[str, list[str]]]:
    """(command, expected output lines) for each command of a shell block."""
    found: list[tuple[str, list[str]]] = []
    pending = ""
    for line in block.splitlines():
        if not pending and line.startswith("#"):
            if found:
                found[-1][1].append(line[1:].strip())
            continue
        pending += line + "\n"
        if pending.rstrip().endswith("\\"):
            continue
        try:
            words = shlex.split(pending, comments=True)
        except ValueError:
            continue  # an open quote: the command goes on
        if words:
            found.append((pending.rstrip(), _trailing_comment(pending)))
        pending = ""
    assert not pending, pending
    return found


def _trailing_comment(command: str) -> list[str]:
    # The comment is what follows an unquoted " # ": find it by splitting the last line.
    last = command.rstrip().splitlines()[-1]
    for i in range(len(last)):
        if last[i] == "#" and last[i - 1] == " ":
            try:
                shlex.split(last[:i])
            except ValueError:
                continue
            return [last[i + 1 :].strip()]
    return []


def matches(expected: str, actual: str) -> bool:
    try:
        wanted = json.loads(expected)
    except json.JSONDecodeError:
        if "..." not in expected:
            return True  # words, not an output
        pattern = ".*".join(re.escape(part) for part in expected.split("..."))
        return re.fullmatch(pattern, actual.strip(), re.DOTALL) is not None
    return same(wanted, json.loads(actual))


def same(wanted, got) -> bool:
    if isinstance(wanted, dict):
        if not isinstance(got, dict) or set(wanted) != set(got):
            return False
        for key, value in wanted.items():
            if key == "created_at":
                dt.datetime.fromisoformat(got[key])
            elif not same(value, got[key]):
                return False
        return True
    if isinstance(wanted, list):
        return (
            isinstance(got, list)
            and len(got) == len(wanted)
            and all(same(w, g) for w, g in zip(wanted, got))
        )
    return wanted == got


def test_the_readme_examples_give_what_the_readme_shows(make_server, tmp_path):
    s = make_server()
    readme = (ROOT / "README.md").read_text()
    ran = 0
    for title in SECTIONS:
        for block in re.findall(r"```sh\n(.*?)```", section(readme, title), re.DOTALL):
            for command, expected in commands(block):
                line = command.replace("localhost:8000", f"127.0.0.1:{s.port}")
                done = subprocess.run(
                    ["bash", "-c", line],
                    cwd=tmp_path,
                    capture_output=True,
                    text=True,
                    timeout=60,
                    check=False,
                )
                assert done.returncode == 0, (command, done.stdout, done.stderr)
                if expected:
                    shown = " ".join(expected)
                    assert matches(shown, done.stdout), (command, shown, done.stdout)
                for saved in re.findall(r"-o (\S+\.svg)", command):
                    head = (tmp_path / saved).read_bytes()[:200]
                    assert b"<svg" in head, (command, head)
                ran += 1
    assert ran >= 15
