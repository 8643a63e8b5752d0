#!/bin/sh
# dist/anomalyd_<version>_amd64.deb from dist/anomalyd-<version>.pyz, with dpkg-deb.
#
# One package for Debian 12 (Python 3.11) and Debian 13 (Python 3.13): the zipapp's
# site-packages, which holds the compiled modules for CPython 3.11 to 3.13 side by side
# (packaging/bundle.py), unpacked under /usr/lib/anomalyd and run by Debian's python3.
# Unpacked by dpkg rather than by shiv at run time: every file is then dpkg's, replaced on
# upgrade and removed on purge, and nothing is extracted into a cache or a home directory
# when the service starts or root runs `anomalyd check-config`. Not Debian's own
# python3-numpy, -falcon, -gunicorn: Debian 12's are older than anomalyd needs (numpy
# 1.24, falcon 3.1, gunicorn 20.1; no msgspec). Not a venv built by postinst: pip at
# install time is more that can fail, on a host that may have no python3-venv.
# DIST: output directory (default dist); BUILD: staging directory (default build).
set -eu
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
version=$($PYTHON -c 'import anomalyd; print(anomalyd.__version__)')
dist=${DIST:-dist}
pyz=$dist/anomalyd-$version.pyz
deb=$dist/anomalyd_${version}_amd64.deb
[ -f "$pyz" ] || { echo "build_deb.sh: no $pyz; run packaging/build_pyz.sh" >&2; exit 1; }
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 315532800)}

root=${BUILD:-build}/deb/anomalyd_${version}_amd64
rm -rf "$root"
umask 022
doc=$root/usr/share/doc/anomalyd
install -d "$root/DEBIAN" "$root/usr/bin" "$root/usr/lib/anomalyd" \
    "$root/lib/systemd/system" "$root/etc/anomalyd/credentials" "$doc/docs" \
    "$root/usr/share/man/man1"
# The zipapp's site-packages/, as the zipapp would extract it.
$PYTHON - "$pyz" "$root/usr/lib/anomalyd" <<'UNZIP'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as pyz:
    pyz.extractall(sys.argv[2], [n for n in pyz.namelist() if n.startswith("site-packages/")])
UNZIP
find "$root/usr/lib/anomalyd" -type d -exec chmod 0755 {} + -o -type f -exec chmod 0644 {} +
install -m 0755 packaging/debian/anomalyd "$root/usr/bin/anomalyd"
install -m 0644 systemd/anomalyd.service "$root/lib/systemd/system/anomalyd.service"
install -m 0644 systemd/anomalyd.socket "$root/lib/systemd/system/anomalyd.socket"
$PYTHON packaging/make_config.py > "$root/etc/anomalyd/anomalyd.toml"
chmod 0644 "$root/etc/anomalyd/anomalyd.toml"
# The README and what it links to, at the same relative paths, so its links work here.
install -m 0644 README.md "$doc/README.md"
install -m 0644 docs/*.md docs/*.png "$doc/docs/"
install -m 0644 packaging/debian/copyright "$doc/copyright"
# Each override says why: upstream's wheels, not built here.
install -D -m 0644 packaging/debian/lintian-overrides \
    "$root/usr/share/lintian/overrides/anomalyd"
sed "s/@VERSION@/$version/" packaging/debian/anomalyd.1 | gzip -9n \
    > "$root/usr/share/man/man1/anomalyd.1.gz"
# A native package: its changelog is changelog.gz, not changelog.Debian.gz.
date=$(date -R -u -d "@$SOURCE_DATE_EPOCH")
sed -e "s/@VERSION@/$version/g" -e "s/@DATE@/$date/" packaging/debian/changelog \
    | gzip -9n > "$doc/changelog.gz"
chmod 0644 "$doc/changelog.gz" "$root/usr/share/man/man1/anomalyd.1.gz"

for script in postinst prerm postrm; do
    install -m 0755 "packaging/debian/$script" "$root/DEBIAN/$script"
done
echo /etc/anomalyd/anomalyd.toml > "$root/DEBIAN/conffiles"
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z \
    | xargs -0 md5sum) > "$root/DEBIAN/md5sums"
# The shared libraries the bundled extensions link against (libc6, libstdc++6, ...),
# with the versions their symbols need, as dh_shlibdeps finds them.
shlibs=$(mktemp -d)
mkdir "$shlibs/debian"
printf 'Source: anomalyd\n\nPackage: anomalyd\nArchitecture: amd64\n' \
    > "$shlibs/debian/control"
site=$(cd "$root/usr/lib/anomalyd/site-packages" && pwd)
depends=$(cd "$shlibs" && find "$site" -name '*.so*' -type f -print0 | xargs -0 \
    dpkg-shlibdeps -O -l"$site/numpy.libs" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
rm -rf "$shlibs"
[ -n "$depends" ] || { echo "build_deb.sh: dpkg-shlibdeps found nothing" >&2; exit 1; }
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@INSTALLED_SIZE@/$size/" \
    -e "s/@SHLIBS_DEPENDS@/$depends/" packaging/debian/control > "$root/DEBIAN/control"
find "$root" -exec touch --no-dereference -d "@$SOURCE_DATE_EPOCH" {} +
chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/conffiles" "$root/DEBIAN/md5sums"

# xz -3: 21.1 MB in 53 s here; the default -6 saves 2.3 MB for twice the time.
dpkg-deb --root-owner-group -Zxz -z3 --build "$root" "$deb" >/dev/null
echo "$deb"
