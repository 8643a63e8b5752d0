#!/bin/sh
# dist/anomalyd-<version>.pyz: one file holding anomalyd and every dependency (shiv).
#
# shiv rather than a plain zipapp or pex: numpy, lmdb and msgspec are C extensions, which
# Python cannot import from inside a zip. shiv extracts the bundled site-packages once into
# $SHIV_ROOT (default ~/.shiv; the systemd unit points it at CacheDirectory) and reuses it
# on every later start, keyed by a hash of the build, and the entry point then runs in the
# same process (gunicorn's master stays the main PID systemd watches). pex does the same
# with more machinery (resolver, lock files) that one app with six dependencies does not
# need.
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
if ! $PYTHON -m shiv --console-script anomalyd --output-file "$out" \
    --python '/usr/bin/env python3' --compressed --reproducible \
    --only-binary=:all: --no-binary=anomalyd --disable-pip-version-check --quiet \
    "$src" >"$log" 2>&1; then
    cat "$log" >&2
    exit 1
fi
echo "$out"
