#!/usr/bin/env bash
# Checks a psrtd .deb without installing it (nothing outside a temp folder
# is touched):
#
#   bash packaging/deb/check.sh [PATH.deb]    default: <target>/debian/psrtd_<version>_<arch>.deb
#
#  1. control fields (package, version = Cargo's, architecture = dpkg's,
#     Depends, Maintainer) and the file name psrtd_<version>_<arch>.deb;
#  2. the file list with modes and owners (dpkg-deb -c), exactly;
#  3. DEBIAN/conffiles (exactly the three files under /etc/psrtd),
#     md5sums against the files, maintainer scripts executable and valid sh;
#  4. both binaries static: no PT_INTERP, no NEEDED library (readelf, or
#     `file` where binutils is missing);
#  5. the unit: Type=notify, WatchdogSec, User=psrtd, /usr/bin paths,
#     `psrtd -t` before start, HUP on reload;
#  6. the packaged psrtd runs `-t` on the packaged config (with its ACL and
#     empty password file) and accepts it, with no warning;
#  7. the maintainer scripts in a sandbox: DPKG_ROOT is a temp folder and
#     PATH holds only logging stubs (getent, adduser, addgroup, chown,
#     dpkg-statoverride, deb-systemd-helper, …) and mkdir/chmod/rm/rmdir,
#     so a command the scripts were not expected to run fails instead of
#     touching the system. postinst configure twice (user and group made
#     once, folders made, password file root:psrtd 0640 on the first
#     install only, unit enabled), prerm/postrm remove (all of /etc/psrtd
#     stays), postrm purge (/run/psrtd and the empty home go, a file the
#     administrator added to /etc/psrtd stays, nobody is deleted).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT"

log() { printf '%s\n' "$*" >&2; }
fail() {
    log "FAIL: $*"
    exit 1
}
ok() { log "ok: $*"; }

version="$(cargo pkgid -p psrt | sed 's/.*[#@]//')"
arch="$(dpkg --print-architecture)"
DEB="${1:-}"
if [[ -z $DEB ]]; then
    target="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
    DEB="$target/debian/psrtd_${version}_${arch}.deb"
fi
[[ -f $DEB ]] || fail "$DEB: no such file (run packaging/deb/build.sh first)"
log "checking $DEB"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/psrtd-deb-check.XXXXXX")"
# shellcheck disable=SC2064 # expand now
trap "rm -rf '$WORK'" EXIT
DATA="$WORK/data"
CTRL="$WORK/control"
dpkg-deb -x "$DEB" "$DATA"
dpkg-deb -e "$DEB" "$CTRL"

# ---- 1. control fields
field() { dpkg-deb -f "$DEB" "$1"; }
[[ $(field Package) == psrtd ]] || fail "Package: $(field Package)"
[[ $(field Version) == "$version" ]] || fail "Version $(field Version), Cargo says $version"
[[ $(field Architecture) == "$arch" ]] || fail "Architecture $(field Architecture), dpkg says $arch"
[[ $(field Depends) == *adduser* ]] || fail "Depends lacks adduser: $(field Depends)"
[[ -n $(field Maintainer) && -n $(field Installed-Size) ]] || fail "no Maintainer or Installed-Size"
[[ $(basename "$DEB") == "psrtd_${version}_${arch}.deb" ]] || fail "file name $(basename "$DEB")"
ok "control: psrtd $version $arch, Depends: $(field Depends)"

# ---- 2. files, modes, owners
expected="$(
    cat <<'EOF'
drwxr-xr-x root/root ./
drwxr-xr-x root/root ./etc/
drwxr-xr-x root/root ./etc/psrtd/
-rw-r--r-- root/root ./etc/psrtd/acl.yml
-rw-r--r-- root/root ./etc/psrtd/config.yml
-rw-r----- root/root ./etc/psrtd/psrt-passwd
drwxr-xr-x root/root ./lib/
drwxr-xr-x root/root ./lib/systemd/
drwxr-xr-x root/root ./lib/systemd/system/
-rw-r--r-- root/root ./lib/systemd/system/psrtd.service
drwxr-xr-x root/root ./usr/
drwxr-xr-x root/root ./usr/bin/
-rwxr-xr-x root/root ./usr/bin/psrt-cli
-rwxr-xr-x root/root ./usr/bin/psrtd
drwxr-xr-x root/root ./usr/share/
drwxr-xr-x root/root ./usr/share/doc/
drwxr-xr-x root/root ./usr/share/doc/psrtd/
-rw-r--r-- root/root ./usr/share/doc/psrtd/README.md
-rw-r--r-- root/root ./usr/share/doc/psrtd/copyright
EOF
)"
actual="$(dpkg-deb -c "$DEB" | awk '{print $1, $2, $6}' | LC_ALL=C sort -k3)"
if [[ $actual != "$(LC_ALL=C sort -k3 <<<"$expected")" ]]; then
    diff <(LC_ALL=C sort -k3 <<<"$expected") <(printf '%s\n' "$actual") >&2 || true
    fail "the file list differs (< expected, > in the package)"
fi
[[ ! -s $DATA/etc/psrtd/psrt-passwd ]] || fail "the password file is not empty"
cmp -s config/config.yml "$DATA/etc/psrtd/config.yml" ||
    fail "/etc/psrtd/config.yml is not config/config.yml (whose loopback-only listeners tests/config_samples.rs checks)"
ok "contents: $(wc -l <<<"$actual") entries, modes and owners as expected"

# ---- 3. conffiles, md5sums, scripts
printf '/etc/psrtd/config.yml\n/etc/psrtd/acl.yml\n/etc/psrtd/psrt-passwd\n' |
    cmp -s - "$CTRL/conffiles" || fail "conffiles: $(cat "$CTRL/conffiles")"
while read -r conffile; do
    [[ -f $DATA$conffile ]] || fail "conffile $conffile is not in the package"
done <"$CTRL/conffiles"
(cd "$DATA" && md5sum --quiet -c "$CTRL/md5sums") || fail "md5sums do not match"
[[ $(wc -l <"$CTRL/md5sums") -eq 5 ]] || fail "md5sums should list the 5 files outside /etc"
for script in postinst prerm postrm; do
    [[ $(stat -c %a "$CTRL/$script") == 755 ]] || fail "$script is not 0755"
    sh -n "$CTRL/$script" || fail "$script is not valid sh"
done
ok "conffiles: $(tr '\n' ' ' <"$CTRL/conffiles"); md5sums; maintainer scripts"

# ---- 4. static binaries
for bin in psrtd psrt-cli; do
    path="$DATA/usr/bin/$bin"
    if command -v readelf >/dev/null; then
        ! readelf -lW "$path" | grep -q 'INTERP' || fail "$bin has a program interpreter (dynamic)"
        ! readelf -dW "$path" | grep -q '(NEEDED)' || fail "$bin needs shared libraries"
        how="readelf: no INTERP, no NEEDED"
    elif command -v file >/dev/null; then
        file -b "$path" | grep -Eq 'static(-pie)? linked|statically linked' ||
            fail "$bin: $(file -b "$path")"
        how="file: $(file -b "$path" | grep -Eo 'static(-pie)? linked|statically linked')"
    else
        fail "neither readelf (binutils) nor file is installed"
    fi
done
ok "psrtd and psrt-cli are static ($how)"

# ---- 5. the unit
unit="$DATA/lib/systemd/system/psrtd.service"
# shellcheck disable=SC2016 # $MAINPID is systemd's, not ours
for line in 'Type=notify' 'User=psrtd' 'Group=psrtd' 'RuntimeDirectory=psrtd' \
    'ExecStartPre=/usr/bin/psrtd -t -C /etc/psrtd/config.yml' \
    'ExecStart=/usr/bin/psrtd -C /etc/psrtd/config.yml' \
    'ExecReload=/bin/kill -HUP $MAINPID' 'WantedBy=multi-user.target'; do
    grep -qxF "$line" "$unit" || fail "the unit lacks the line: $line"
done
grep -Eqx 'WatchdogSec=[1-9][0-9]*' "$unit" || fail "the unit has no WatchdogSec"
! grep -q /usr/local "$unit" || fail "the unit still names /usr/local"
ok "unit: Type=notify, $(grep -x 'WatchdogSec=.*' "$unit"), User=psrtd, /usr/bin/psrtd"

# ---- 6. psrtd -t on the packaged config
out="$("$DATA/usr/bin/psrtd" -t -C "$DATA/etc/psrtd/config.yml" 2>"$WORK/t.err")" ||
    fail "psrtd -t refused the packaged config: $out $(cat "$WORK/t.err")"
[[ $out == *"configuration OK"* ]] || fail "psrtd -t: $out"
[[ ! -s $WORK/t.err ]] || fail "psrtd -t warned: $(cat "$WORK/t.err")"
"$DATA/usr/bin/psrtd" --version | grep -qx "psrtd $version" || fail "psrtd --version"
"$DATA/usr/bin/psrt-cli" --version | grep -qx "psrt-cli $version" || fail "psrt-cli --version"
ok "packaged psrtd -t: ${out#"$DATA"}"

# ---- 7. maintainer scripts in a sandbox
SANDBOX="$WORK/root"
STUBS="$WORK/bin"
CALLS="$WORK/calls"
mkdir -p "$SANDBOX" "$STUBS"
: >"$CALLS"
: >"$WORK/accounts"
cp -a "$DATA/etc" "$SANDBOX/" # what dpkg unpacks before postinst
for tool in mkdir chmod rm rmdir cat grep; do
    ln -s "$(command -v "$tool")" "$STUBS/$tool"
done
stub() { # NAME BODY: a logging stub; BODY runs after the call is logged
    printf '#!/bin/sh\necho "%s $*" >>"%s"\n%s\n' "$1" "$CALLS" "$2" >"$STUBS/$1"
    chmod 0755 "$STUBS/$1"
}
accounts="$WORK/accounts"
stub getent "grep -q \"^\$1:\$2\$\" '$accounts'"
stub addgroup "echo \"group:\$3\" >>'$accounts'"
stub adduser "echo \"passwd:\$(eval echo \\\${\$#})\" >>'$accounts'"
stub chown ""
stub dpkg-statoverride "exit 1"
stub deb-systemd-helper ""
stub deb-systemd-invoke ""
stub systemctl ""
run_script() { # SCRIPT ARGS...
    [[ -n $SANDBOX && $SANDBOX != / ]] || fail "no sandbox"
    env -i PATH="$STUBS" DPKG_ROOT="$SANDBOX" DPKG_MAINTSCRIPT_PACKAGE=psrtd \
        /bin/sh "$CTRL/$1" "${@:2}" || fail "$* failed in the sandbox; calls: $(cat "$CALLS")"
}
calls() { grep -c "^$1" "$CALLS" || true; }

run_script postinst configure ""
[[ $(cat "$accounts") == $'group:psrtd\npasswd:psrtd' ]] || fail "accounts made: $(cat "$accounts")"
grep -qx "adduser --system --quiet --ingroup psrtd --home /var/lib/psrtd --no-create-home --shell /usr/sbin/nologin psrtd" "$CALLS" ||
    fail "adduser call: $(grep adduser "$CALLS")"
grep -qx "chown root:psrtd $SANDBOX/etc/psrtd/psrt-passwd" "$CALLS" || fail "password file group: $(cat "$CALLS")"
[[ $(stat -c %a "$SANDBOX/etc/psrtd/psrt-passwd") == 640 ]] || fail "password file mode"
grep -qx "chown psrtd:psrtd $SANDBOX/var/lib/psrtd" "$CALLS" || fail "home owner"
[[ $(stat -c %a "$SANDBOX/var/lib/psrtd") == 750 && $(stat -c %a "$SANDBOX/run/psrtd") == 755 ]] ||
    fail "folder modes: home $(stat -c %a "$SANDBOX/var/lib/psrtd"), run $(stat -c %a "$SANDBOX/run/psrtd")"
grep -qx "deb-systemd-helper enable psrtd.service" "$CALLS" || fail "the unit is not enabled: $(cat "$CALLS")"
[[ $(calls systemctl) == 0 ]] || fail "systemctl called with DPKG_ROOT set"

: >"$CALLS"
chmod 0600 "$SANDBOX/etc/psrtd/psrt-passwd" # the administrator's choice
run_script postinst configure "$version"
[[ $(calls adduser) == 0 && $(calls addgroup) == 0 && $(calls chown) == 0 ]] ||
    fail "a second configure made or changed something: $(cat "$CALLS")"
[[ $(stat -c %a "$SANDBOX/etc/psrtd/psrt-passwd") == 600 ]] || fail "an upgrade changed the password file's mode"
ok "postinst: group and user made once (adduser --system), /var/lib/psrtd 0750 and /run/psrtd owned by psrtd, psrt-passwd root:psrtd 0640 on the first install only, unit enabled"

echo "sensor: 00" >"$SANDBOX/etc/psrtd/keys.yml" # added by the administrator
run_script prerm remove
run_script postrm remove
grep -qx "deb-systemd-helper mask psrtd.service" "$CALLS" || fail "remove does not mask the unit"
[[ -f $SANDBOX/etc/psrtd/config.yml && -f $SANDBOX/etc/psrtd/psrt-passwd && -d $SANDBOX/var/lib/psrtd ]] ||
    fail "remove deleted files"
run_script postrm purge
grep -qx "deb-systemd-helper purge psrtd.service" "$CALLS" || fail "purge does not purge the unit state"
[[ ! -e $SANDBOX/run/psrtd && ! -e $SANDBOX/var/lib/psrtd ]] || fail "purge left /run/psrtd or the empty home"
[[ -f $SANDBOX/etc/psrtd/keys.yml && -f $SANDBOX/etc/psrtd/config.yml ]] ||
    fail "purge deleted files in /etc/psrtd (dpkg removes the conffiles itself)"
[[ $(cat "$accounts") == $'group:psrtd\npasswd:psrtd' ]] || fail "purge deleted accounts"
ok "prerm/postrm: remove keeps everything, purge removes /run/psrtd and the empty home, keeps /etc/psrtd's other files and the user"

log "PASS: $(basename "$DEB")"
