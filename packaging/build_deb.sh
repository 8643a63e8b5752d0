#!/bin/sh
# dist/anomalyd_<version>_amd64.deb from dist/anomalyd-<version>.pyz, with dpkg-deb.
#
# The zipapp under /usr/lib/anomalyd rather than a venv under /opt/venvs: the .deb then
# ships the very file `make package` builds and the tests run, a venv would hard-code
# the build machine's interpreter path (dh-virtualenv exists to patch that), and one
# 19 MB file is simpler to audit and upgrade than a tree. Its cost, extraction to
# /var/cache/anomalyd at the first start after an install or upgrade, is about a second.
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
install -d "$root/DEBIAN" "$root/usr/bin" "$root/usr/lib/anomalyd" \
    "$root/lib/systemd/system" "$root/etc/anomalyd" "$root/usr/share/doc/anomalyd" \
    "$root/usr/share/man/man1"
install -m 0644 "$pyz" "$root/usr/lib/anomalyd/anomalyd.pyz"
install -m 0755 packaging/debian/anomalyd.sh "$root/usr/bin/anomalyd"
install -m 0644 systemd/anomalyd.service "$root/lib/systemd/system/anomalyd.service"
install -m 0644 systemd/anomalyd.socket "$root/lib/systemd/system/anomalyd.socket"
$PYTHON packaging/make_config.py > "$root/etc/anomalyd/anomalyd.toml"
chmod 0644 "$root/etc/anomalyd/anomalyd.toml"
install -m 0644 README.md "$root/usr/share/doc/anomalyd/README.md"
install -m 0644 docs/install.md "$root/usr/share/doc/anomalyd/install.md"
install -m 0644 packaging/debian/copyright "$root/usr/share/doc/anomalyd/copyright"
sed "s/@VERSION@/$version/" packaging/debian/anomalyd.1 | gzip -9n \
    > "$root/usr/share/man/man1/anomalyd.1.gz"
# A native package: its changelog is changelog.gz, not changelog.Debian.gz.
date=$(date -R -u -d "@$SOURCE_DATE_EPOCH")
sed -e "s/@VERSION@/$version/g" -e "s/@DATE@/$date/" packaging/debian/changelog \
    | gzip -9n > "$root/usr/share/doc/anomalyd/changelog.gz"
chmod 0644 "$root/usr/share/doc/anomalyd/changelog.gz" "$root/usr/share/man/man1/anomalyd.1.gz"

for script in postinst prerm postrm; do
    install -m 0755 "packaging/debian/$script" "$root/DEBIAN/$script"
done
echo /etc/anomalyd/anomalyd.toml > "$root/DEBIAN/conffiles"
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z \
    | xargs -0 md5sum) > "$root/DEBIAN/md5sums"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@INSTALLED_SIZE@/$size/" packaging/debian/control \
    > "$root/DEBIAN/control"
find "$root" -exec touch --no-dereference -d "@$SOURCE_DATE_EPOCH" {} +
chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/conffiles" "$root/DEBIAN/md5sums"

dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
