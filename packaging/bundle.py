"""Build the zipapp: anomalyd and its dependencies for CPython 3.11, 3.12 and 3.13.

    python packaging/bundle.py SOURCE OUTPUT.pyz

numpy, msgspec, lmdb and falcon ship compiled modules, one wheel per Python version.
Their compiled files carry the version in their names
(``_core.cpython-312-x86_64-linux-gnu.so``), so the wheels of one release for several
Pythons unpack side by side into one site-packages: each interpreter imports its own
files, and the Python files, identical in every wheel, are stored once. The versions are
resolved for the oldest Python and pinned for the others, so all share one numpy.

The wheels are fetched with ``pip download --python-version``: the build needs pip and
the package index, not the target interpreters. shiv then makes the zipapp, with a
``__main__.py`` that refuses any other Python with a message saying which it needs
before extracting anything.
"""

from __future__ import annotations

import filecmp
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PYTHONS = ("3.11", "3.12", "3.13")
# glibc 2.28 or newer (Debian 10+, Ubuntu 20.04+, RHEL 8+).
PLATFORMS = [f"manylinux_2_{minor}_x86_64" for minor in range(17, 29)] + [
    "manylinux2014_x86_64"
]
# Files that differ between the wheels of one release for two Pythons and do not matter:
# pip's records and wheel tags, and numpy's record of the interpreter it was built with.
MAY_DIFFER = ("numpy/__config__.py",)

MAIN_TEMPLATE = """\
# -*- coding: utf-8 -*-
import sys
if sys.version_info[:2] not in {supported!r}:
    sys.exit(
        "%s needs Python {wanted}: its numpy, msgspec and lmdb are compiled for those. "
        "This is Python %s (%s). Run it with one of them, e.g. python3.13 %s"
        % (sys.argv[0], sys.version.split()[0], sys.executable, sys.argv[0])
    )
import {{module}}
{{module}}.{{fn}}()
"""


def pip(*args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
        check=True,
    )


def for_python(version: str) -> list[str]:
    tag = "cp" + version.replace(".", "")
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    return [
        "--only-binary=:all:",
        "--python-version",
        version,
        "--implementation",
        "cp",
        *("--abi", tag, "--abi", "abi3", "--abi", "none"),
        *platforms,
    ]


def site_packages(source: Path, work: Path) -> Path:
    """One site-packages holding anomalyd and its dependencies for every PYTHONS."""
    own = work / "own"
    pip("wheel", "--quiet", "--no-deps", "--wheel-dir", str(own), str(source))
    (wheel,) = own.glob("anomalyd-*.whl")
    pins = work / "pins.txt"
    trees = []
    for version in PYTHONS:
        wheels = work / f"wheels-{version}"
        constrain = ["--constraint", str(pins)] if pins.exists() else []
        pip(
            "download",
            "--quiet",
            *for_python(version),
            *constrain,
            "--dest",
            str(wheels),
            str(wheel),
        )
        if not pins.exists():  # the oldest Python decides every version
            names = [w.name.split("-")[:2] for w in wheels.glob("*.whl")]
            pins.write_text("".join(f"{n}=={v}\n" for n, v in names if n != "anomalyd"))
        tree = work / f"site-{version}"
        pip(
            "install",
            "--quiet",
            "--no-index",
            "--no-deps",
            "--no-compile",
            *for_python(version),
            "--target",
            str(tree),
            *map(str, sorted(wheels.glob("*.whl"))),
        )
        # Console scripts with the build machine's interpreter, and pip's record of
        # where each wheel came from (a path in this temporary directory): not shipped.
        shutil.rmtree(tree / "bin", ignore_errors=True)
        for record in tree.glob("*.dist-info/direct_url.json"):
            record.unlink()
        trees.append(tree)
    merged = work / "site-packages"
    for tree in trees:
        merge(tree, merged)
    return merged


def merge(tree: Path, into: Path) -> None:
    """Copy tree into into; a file both hold must be the same, but for MAY_DIFFER."""
    for path in sorted(tree.rglob("*")):
        rel = path.relative_to(tree)
        target = into / rel
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif not target.exists():
            shutil.copy2(path, target)
        elif not filecmp.cmp(path, target, shallow=False):
            if rel.parts[0].endswith(".dist-info") or str(rel) in MAY_DIFFER:
                continue
            raise SystemExit(f"bundle.py: {rel} differs between Pythons; not merged")


def build(source: Path, output: Path) -> None:
    import shiv.builder
    import shiv.cli

    with tempfile.TemporaryDirectory() as tmp:
        site = site_packages(source, Path(tmp))
        wanted = ", ".join(PYTHONS[:-1]) + " or " + PYTHONS[-1]
        supported = tuple(tuple(int(n) for n in v.split(".")) for v in PYTHONS)
        shiv.builder.MAIN_TEMPLATE = MAIN_TEMPLATE.format(
            supported=supported, wanted=wanted
        )
        args = [
            "--site-packages",
            str(site),
            "--console-script",
            "anomalyd",
            "--output-file",
            str(output),
            "--python",
            "/usr/bin/env python3",
            "--compressed",
            "--reproducible",
        ]
        shiv.cli.main(args, standalone_mode=False)
    os.chmod(output, 0o755)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    build(Path(sys.argv[1]), Path(sys.argv[2]))
