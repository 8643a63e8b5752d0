#!/bin/sh
# dist/anomalyd-<version>.pyz: one file holding anomalyd and every dependency (shiv),
# for CPython 3.11, 3.12 and 3.13 on x86-64 Linux (packaging/bundle.py says how).
#
# shiv rather than a plain zipapp or pex: numpy, lmdb and msgspec are C extensions, which
# Python cannot import from inside a zip. shiv extracts the bundled site-packages once into
# $SHIV_ROOT (default ~/.shiv) and reuses it on every later start, keyed by a hash of the
# build, and the entry point then runs in the same process (gunicorn's master stays the
# main PID a supervisor watches). pex does the same with more machinery (resolver, lock
# files) that one app with six dependencies does not need.
# DIST: output directory (default dist).
set -eu
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
version=$($PYTHON -c 'import anomalyd; print(anomalyd.__version__)')
dist=${DIST:-dist}
out=$dist/anomalyd-$version.pyz
mkdir -p "$dist"
# Same bytes from the same sources: timestamps fixed to the last commit.
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 315532800)}
export SOURCE_DATE_EPOCH
# Build the wheel from a copy: pip must not leave build/ or *.egg-info in the checkout.
src=$(mktemp -d)
log=$(mktemp)
trap 'rm -rf "$src" "$log"' EXIT
cp -r pyproject.toml README.md anomalyd "$src/"
find "$src" -name __pycache__ -prune -exec rm -rf {} +
# pip's and setuptools' chatter goes to a log, shown only when the build fails.
if ! $PYTHON packaging/bundle.py "$src" "$out" >"$log" 2>&1; then
    cat "$log" >&2
    exit 1
fi
echo "$out"
