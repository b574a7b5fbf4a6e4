#!/usr/bin/env bash
# Builds the Debian package: <cargo target dir>/debian/psrtd_<version>_<arch>.deb
# (target/debian/ unless CARGO_TARGET_DIR says otherwise) and prints its path.
#
#   bash packaging/deb/build.sh           static release build, then the package
#   bash packaging/deb/build.sh --help
#
# Why dpkg-deb from a staging tree and not cargo-deb: dpkg-deb is part of
# dpkg, so every Debian machine (and CI's fresh one) has it, while cargo-deb
# would be compiled by `cargo install` first (minutes on two cores, for
# every fresh CI machine); and the package needs what cargo-deb would need
# to be told anyway — the static build flags, exact modes (the password
# file is 0640), conffiles, maintainer scripts. This script is the whole
# recipe, in one place.
#
# What goes in (see README.md, "Debian package"):
#   /usr/bin/psrtd, /usr/bin/psrt-cli          static (crt-static, host triple)
#   /lib/systemd/system/psrtd.service          config/psrtd.service, /usr/bin paths
#   /etc/psrtd/config.yml                      config/config.yml (loopback only)
#   /etc/psrtd/acl.yml                         packaging/deb/acl.yml
#   /etc/psrtd/psrt-passwd                     empty, 0640 (root:psrtd after postinst)
#   /usr/share/doc/psrtd/{README.md,copyright}
#   DEBIAN/{control,conffiles,md5sums,postinst,prerm,postrm}
#
# Environment: DEB_MAINTAINER (the Maintainer field), SOURCE_DATE_EPOCH
# (timestamps; default: the last commit's time), CARGO_TARGET_DIR.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT"

log() { printf '%s\n' "$*" >&2; }
die() {
    log "build.sh: $*"
    exit 1
}

case "${1:-}" in
    -h | --help)
        sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
    "") ;;
    *) die "unknown argument: $1 (see --help)" ;;
esac

command -v dpkg-deb >/dev/null || die "dpkg-deb not found (it is part of dpkg: build on Debian or Ubuntu)"

TRIPLE="$(rustc -vV | sed -n 's/^host: //p')"
[[ -n $TRIPLE ]] || die "cannot read the host triple from rustc -vV"
METADATA="$(cargo metadata --format-version 1 --no-deps)"
TARGET_DIR="$(sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p' <<<"$METADATA")"
VERSION="$(cargo pkgid -p psrt | sed 's/.*[#@]//')"
[[ -n $TARGET_DIR && $VERSION =~ ^[0-9][0-9A-Za-z.+~-]*$ ]] ||
    die "cannot read the target folder or the version from cargo (got '$TARGET_DIR', '$VERSION')"
if command -v dpkg >/dev/null; then
    ARCH="$(dpkg --print-architecture)"
else
    case "$TRIPLE" in
        x86_64-*) ARCH=amd64 ;;
        aarch64-*) ARCH=arm64 ;;
        armv7-*) ARCH=armhf ;;
        *) die "no Debian architecture known for $TRIPLE" ;;
    esac
fi

log "building psrtd and psrt-cli: release, static, $TRIPLE"
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
    cargo build --release --locked --bin psrtd --bin psrt-cli --target "$TRIPLE"
BIN_DIR="$TARGET_DIR/$TRIPLE/release"

OUT_DIR="$TARGET_DIR/debian"
NAME="psrtd_${VERSION}_${ARCH}"
STAGE="$OUT_DIR/$NAME"
DEB="$OUT_DIR/$NAME.deb"
rm -rf "$STAGE" "$DEB"
mkdir -p "$OUT_DIR"

# put SRC DEST MODE: one file into the staging tree, with an exact mode.
put() {
    install -D -m "$3" "$1" "$STAGE/$2"
}
# The umask must not decide a folder's mode.
umask 022
put "$BIN_DIR/psrtd" usr/bin/psrtd 0755
put "$BIN_DIR/psrt-cli" usr/bin/psrt-cli 0755
mkdir -p "$STAGE/lib/systemd/system"
sed 's|/usr/local/bin/psrtd|/usr/bin/psrtd|g' config/psrtd.service >"$STAGE/lib/systemd/system/psrtd.service"
chmod 0644 "$STAGE/lib/systemd/system/psrtd.service"
put config/config.yml etc/psrtd/config.yml 0644
put "$HERE/acl.yml" etc/psrtd/acl.yml 0644
: >"$STAGE/etc/psrtd/psrt-passwd"
chmod 0640 "$STAGE/etc/psrtd/psrt-passwd"
put README.md usr/share/doc/psrtd/README.md 0644
put "$HERE/copyright" usr/share/doc/psrtd/copyright 0644

mkdir -p "$STAGE/DEBIAN"
for script in postinst prerm postrm; do
    put "$HERE/$script" "DEBIAN/$script" 0755
done
put "$HERE/conffiles" DEBIAN/conffiles 0644
# md5sums of everything but the conffiles (which dpkg tracks itself).
(cd "$STAGE" && find . -path ./DEBIAN -prune -o -path ./etc -prune -o -type f -printf '%P\0' |
    LC_ALL=C sort -z | xargs -0 md5sum) >"$STAGE/DEBIAN/md5sums"
chmod 0644 "$STAGE/DEBIAN/md5sums"
INSTALLED_SIZE="$(du -sk --exclude=DEBIAN "$STAGE" | cut -f1)"
sed -e "s|@VERSION@|$VERSION|" -e "s|@ARCH@|$ARCH|" \
    -e "s|@MAINTAINER@|${DEB_MAINTAINER:-psrt maintainers <psrt@example.invalid>}|" \
    -e "s|@INSTALLED_SIZE@|$INSTALLED_SIZE|" "$HERE/control.in" >"$STAGE/DEBIAN/control"
chmod 0644 "$STAGE/DEBIAN/control"

# Reproducible: dpkg-deb clamps every timestamp to SOURCE_DATE_EPOCH.
if [[ -z ${SOURCE_DATE_EPOCH:-} ]]; then
    SOURCE_DATE_EPOCH="$(git log -1 --format=%ct 2>/dev/null || date +%s)"
fi
export SOURCE_DATE_EPOCH
# --root-owner-group: root:root in the archive without fakeroot.
dpkg-deb --root-owner-group -Zxz --build "$STAGE" "$DEB" >&2
log "built $DEB"
printf '%s\n' "$DEB"
