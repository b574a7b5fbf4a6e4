#!/usr/bin/env bash
# The project's test command: every check CI runs, as named stages.
#
#   tests/run.sh              run every stage
#   tests/run.sh fmt clippy   run only these stages, in this order
#   tests/run.sh --help
#
# Works from any directory. Needs rustup (stable + nightly), a C/C++ compiler
# and network access to the package registries; whatever else a stage needs
# it installs itself. To add a stage: write a function stage_<name> (dashes
# in the name become underscores) and add <name> to ALL_STAGES.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# Order matters: later stages may use what earlier ones built.
ALL_STAGES=(fmt clippy test release-build deb integration page interop-python interop-rust fuzz)

FUZZ_SECONDS="${FUZZ_SECONDS:-20}"
FAIL_FAST="${FAIL_FAST:-0}"
# Upper bound of one interop run (pytest, or the Rust client), in seconds.
INTEROP_TIMEOUT="${INTEROP_TIMEOUT:-600}"

usage() {
    cat <<EOF
usage: tests/run.sh [STAGE...]

Runs the named stages (default: all, in this order) and prints a PASS/FAIL
summary. Exits non-zero if any stage failed.

stages:
  fmt       cargo fmt --check on the workspace, fuzz/ and the Rust interop client
  clippy    clippy -D warnings on the workspace and on fuzz/ (stable, so this
            also checks that the fuzz targets build on stable)
  test      cargo test --workspace (installs Debian's mosquitto if missing:
            tests/bridge.rs bridges to it)
  release-build   cargo build --release --bin psrtd --bin psrt-cli
  deb       the Debian package: packaging/deb/build.sh (static release psrtd
            and psrt-cli, dpkg-deb), then packaging/deb/check.sh on it: fields,
            files and modes, conffiles, static binaries, the unit, psrtd -t on
            the packaged config, the maintainer scripts in a sandbox. Installs
            nothing into the system (only \`file\` if readelf is missing too)
  integration     the integration tests (tests/*.rs) again, with the
                  child-process tests running the release psrtd
  page      the stats page in headless Chromium (Debian chromium, installed
            if missing) while psrt-cli clients publish and subscribe: asserts
            on the rendered text (busiest topic, a client's login, non-zero
            rates) and saves target/page/stats.png (and a phone-sized one)
  interop-python  the published Python client (psrt 0.0.19, pytest) against
                  the release psrtd: tests/interop/python, in .venv; with
                  the MQTT listener against paho-mqtt (PyPI) and Debian's
                  mosquitto_pub/mosquitto_sub (installed with apt-get if
                  missing), crossed with psrt-py
  interop-rust    the published Rust client crate (psrt =0.3.8), plain, TLS
                  and UDP, against the release psrtd: tests/interop/rust-client
  fuzz      every target in fuzz/fuzz_targets for FUZZ_SECONDS each (nightly,
            installs cargo-fuzz if missing), on a copy of fuzz/corpus

The integration and interop stages build the release psrtd themselves when
PSRTD_BIN is not set (a no-op after release-build).

environment:
  FUZZ_SECONDS=N     seconds per fuzz target (default 20)
  FAIL_FAST=1        stop at the first failing stage
  PSRTD_BIN=PATH     the psrtd the integration and interop stages run
                     (default: target/release/psrtd)
  INTEROP_TIMEOUT=N  seconds one interop run may take (default 600)
EOF
}

log() { printf '%s\n' "$*" >&2; }

have() { command -v "$1" >/dev/null 2>&1; }

# Adds a rustup component to the stable toolchain if cargo cannot run it.
ensure_component() {
    local subcommand="$1" component="$2"
    if ! cargo "$subcommand" --version >/dev/null 2>&1; then
        log "installing the $component component"
        rustup component add "$component"
    fi
}

# Runs a command as root: directly, or through passwordless sudo.
as_root() {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    elif have sudo && sudo -n true 2>/dev/null; then
        sudo -n "$@"
    else
        return 1
    fi
}

can_apt() { have apt-get && as_root true; }

# apt-get install, with one apt-get update first (per stage).
APT_UPDATED=0
apt_install() {
    if [[ $APT_UPDATED == 0 ]]; then
        as_root apt-get update -qq
        APT_UPDATED=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

# Prints the psrtd to test: $PSRTD_BIN, or the release build, built here if
# it is missing or stale (cargo's no-op when release-build ran before).
release_psrtd() {
    if [[ -n ${PSRTD_BIN:-} ]]; then
        if [[ ! -x $PSRTD_BIN ]]; then
            log "PSRTD_BIN=$PSRTD_BIN is not an executable"
            return 1
        fi
        (cd "$(dirname "$PSRTD_BIN")" && printf '%s/%s\n' "$PWD" "$(basename "$PSRTD_BIN")")
        return 0
    fi
    # (A command substitution does not inherit `set -e`: check explicitly.)
    cargo build --release --bin psrtd >&2 || return 1
    printf '%s\n' "${CARGO_TARGET_DIR:-$ROOT/target}/release/psrtd"
}

# Makes .venv (repository root) with a working pip: python3 -m venv, else
# install Debian's python3-venv and retry, else virtualenv from pip --user.
ensure_venv() {
    local py="${PYTHON:-python3}"
    if .venv/bin/python -m pip --version >/dev/null 2>&1; then
        return 0
    fi
    if ! have "$py"; then
        log "no $py: install Python 3 (Debian: apt-get install python3)"
        return 1
    fi
    # A failed `-m venv` leaves a .venv without pip behind; start over.
    rm -rf .venv
    if "$py" -m venv .venv && .venv/bin/python -m pip --version >/dev/null 2>&1; then
        return 0
    fi
    rm -rf .venv
    log "$py -m venv failed (on Debian the python3-venv package provides ensurepip)"
    if can_apt; then
        log "installing python3-venv"
        if apt_install python3-venv &&
            "$py" -m venv .venv && .venv/bin/python -m pip --version >/dev/null 2>&1; then
            return 0
        fi
        rm -rf .venv
    fi
    log "falling back to virtualenv (pip install --user virtualenv)"
    "$py" -m pip install --user --quiet virtualenv ||
        "$py" -m pip install --user --quiet --break-system-packages virtualenv
    "$py" -m virtualenv --quiet .venv
    .venv/bin/python -m pip --version >/dev/null
}

# openssl-sys (under the psrt crate's native-tls) needs pkg-config and the
# OpenSSL headers.
ensure_openssl_dev() {
    if have pkg-config && pkg-config --exists openssl; then
        return 0
    fi
    if can_apt; then
        log "installing pkg-config and libssl-dev (the psrt crate links OpenSSL)"
        apt_install pkg-config libssl-dev
        return 0
    fi
    log "the psrt crate needs OpenSSL's headers and pkg-config (Debian: apt-get install pkg-config libssl-dev), and this user cannot install them"
    return 1
}

# Starts BIN in DIR (cd there) on DIR/config.yml, logging to DIR/psrtd.log;
# waits for its "listening on tcp:127.0.0.1:PORT" line. Sets PSRTD_PID and
# PSRTD_PORT, and PSRTD_UDP_PORT from the same line's "udp:127.0.0.1:PORT"
# (empty without a UDP listener).
start_psrtd() {
    local bin="$1" dir="$2" i
    # The log exists before the server starts: the background job opens it
    # in its own time, and the loop below must not read a file not yet there
    # (a CI run failed on exactly that: "sed: can't read .../psrtd.log").
    : >"$dir/psrtd.log"
    (cd "$dir" && exec "$bin" -C config.yml -v) >>"$dir/psrtd.log" 2>&1 &
    PSRTD_PID=$!
    PSRTD_PORT=""
    PSRTD_UDP_PORT=""
    for ((i = 0; i < 200; i++)); do
        PSRTD_PORT="$(sed -n 's/.*listening on tcp:127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$dir/psrtd.log" | head -n 1)"
        if [[ -n $PSRTD_PORT ]]; then
            PSRTD_UDP_PORT="$(sed -n 's/.*listening on .*udp:127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$dir/psrtd.log" | head -n 1)"
            return 0
        fi
        if ! kill -0 "$PSRTD_PID" 2>/dev/null; then
            break
        fi
        sleep 0.05
    done
    log "psrtd did not report a TCP listener; its log:"
    cat "$dir/psrtd.log" >&2
    return 1
}

# SIGTERM to PSRTD_PID; fails unless it exits 0 within 10 s with no ERROR
# line in DIR/psrtd.log.
stop_psrtd() {
    local dir="$1" rc=0 i errors
    kill -TERM "$PSRTD_PID"
    for ((i = 0; i < 100; i++)); do
        kill -0 "$PSRTD_PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$PSRTD_PID" 2>/dev/null; then
        kill -KILL "$PSRTD_PID"
        log "psrtd did not exit within 10 s of SIGTERM"
        rc=1
    fi
    wait "$PSRTD_PID" || rc=$?
    PSRTD_PID=""
    errors="$(grep -c '\[ERROR\]' "$dir/psrtd.log" || true)"
    if [[ $rc -ne 0 || $errors -ne 0 ]]; then
        log "psrtd after SIGTERM: exit $rc (expected 0), $errors ERROR line(s); its log:"
        cat "$dir/psrtd.log" >&2
        return 1
    fi
}

# ---------------------------------------------------------------- stages ----

stage_fmt() {
    ensure_component fmt rustfmt
    cargo fmt --all -- --check
    cargo fmt --manifest-path fuzz/Cargo.toml --all -- --check
    cargo fmt --manifest-path tests/interop/rust-client/Cargo.toml -- --check
}

stage_clippy() {
    ensure_component clippy clippy
    cargo clippy --workspace --all-targets -- -D warnings
    cargo clippy --manifest-path fuzz/Cargo.toml --all-targets -- -D warnings
}

# tests/bridge.rs runs a real broker: Debian's mosquitto (the daemon; the
# package's own service is not used, each test starts its own). Outside CI
# a missing mosquitto makes those tests skip with a note; with CI set they
# fail, so CI installs it here.
ensure_mosquitto() {
    if have mosquitto || [[ -x /usr/sbin/mosquitto ]]; then
        return 0
    fi
    if can_apt; then
        log "installing mosquitto (tests/bridge.rs runs it as the bridges' broker)"
        apt_install mosquitto
        return 0
    fi
    log "mosquitto is missing and this user cannot install it (apt-get install mosquitto): tests/bridge.rs will skip, or fail under CI"
}

stage_test() {
    ensure_mosquitto
    cargo test --workspace
}

stage_release_build() {
    cargo build --release --bin psrtd --bin psrt-cli
}

# packaging/deb: the .deb is built as README says and checked without being
# installed (check.sh runs the maintainer scripts in a sandbox).
stage_deb() {
    if ! have dpkg-deb; then
        log "dpkg-deb not found: the deb stage needs a Debian-based machine"
        return 1
    fi
    if ! have readelf && ! have file; then
        if ! can_apt; then
            log "neither readelf (binutils) nor file is installed, and this user cannot install file"
            return 1
        fi
        log "installing file (to check that the packaged binaries are static)"
        apt_install file
    fi
    # crt-static links glibc's static libc.a (Debian: libc6-dev).
    if [[ $(cc -print-file-name=libc.a 2>/dev/null) != /* ]]; then
        if ! can_apt; then
            log "no static libc.a for the crt-static build (Debian: apt-get install libc6-dev)"
            return 1
        fi
        log "installing libc6-dev (libc.a, for the static binaries)"
        apt_install libc6-dev
    fi
    local deb
    deb="$(bash packaging/deb/build.sh)" || return 1
    bash packaging/deb/check.sh "$deb"
}

# The integration tests only (the test stage ran them and the unit tests on
# the debug build): tests that start psrtd as a child process take
# $PSRTD_BIN, here the release binary.
stage_integration() {
    local bin
    bin="$(release_psrtd)"
    ensure_mosquitto
    PSRTD_BIN="$bin" cargo test --workspace --test '*'
}

# Installs Debian's chromium (and a font) if no chromium is on PATH.
ensure_chromium() {
    if have chromium; then
        return 0
    fi
    if can_apt; then
        log "installing chromium (the page stage renders the stats page in it)"
        apt_install chromium fonts-dejavu-core
        return 0
    fi
    log "the page stage needs Debian's chromium (apt-get install chromium), and this user cannot install it"
    return 1
}

# Runs headless Chromium on URL with a fresh profile in DIR, letting the
# page's scripts run for 9 s of virtual time (fetches pause that clock, so
# every refresh completes), then: chrome ARGS... (e.g. --dump-dom).
chrome() {
    local dir="$1" url="$2"
    shift 2
    rm -rf "$dir" && mkdir -p "$dir"
    timeout -k 5 60 chromium --headless --no-sandbox --disable-gpu --no-first-run \
        --user-data-dir="$dir" --virtual-time-budget=9000 --hide-scrollbars "$@" "$url" \
        2>>"$dir.log"
}

# The stats page as an operator sees it: a release psrtd on tests/page
# (anonymous may read the stats; two users with passwords), a subscriber
# (plant-monitor) and a publisher (boiler-sensor) made of psrt-cli, and the
# page rendered by headless Chromium with its scripts run. Asserts on the
# rendered DOM: the busy topic in the topics table, the subscriber's login
# in the clients table, non-zero message rates. Saves screenshots in
# target/page/ (desktop and phone widths) for a human to look at.
stage_page() {
    local bin cli dir out rc=0
    bin="$(release_psrtd)"
    cargo build --release --bin psrt-cli
    cli="${CARGO_TARGET_DIR:-$ROOT/target}/release/psrt-cli"
    ensure_chromium
    dir="$(mktemp -d "${TMPDIR:-/tmp}/psrt-page.XXXXXX")"
    out="$ROOT/target/page"
    mkdir -p "$out"
    PSRTD_PID=""
    PAGE_PIDS=()
    # shellcheck disable=SC2064 # expand the dir now; the pids when it runs
    trap "kill \${PAGE_PIDS[*]:-} \${PSRTD_PID:-} 2>/dev/null || true; rm -rf '$dir'" EXIT
    cp tests/page/* "$dir/"
    start_psrtd "$bin" "$dir"
    local stats
    # The stats address from the same line: "stats:http://127.0.0.1:PORT/".
    stats="$(sed -n 's/.*stats:http:\/\/\(127\.0\.0\.1:[0-9][0-9]*\)\/.*/\1/p' "$dir/psrtd.log" | head -n 1)"
    [[ -n $stats ]] || { log "psrtd reported no stats listener"; return 1; }
    log "psrtd on 127.0.0.1:$PSRTD_PORT, stats http://$stats/ (log: $dir/psrtd.log)"
    "$cli" "127.0.0.1:$PSRTD_PORT" -u plant-monitor -p monitor-pw -t 'plant/#' >/dev/null &
    PAGE_PIDS+=($!)
    # Publishers: one connection per message (psrt-cli publishes once), for
    # at most 60 s; the boiler's topic is the busy one. A failed publish is
    # not fatal here: the assertions on the page tell.
    (
        end=$((SECONDS + 60))
        while ((SECONDS < end)); do
            for topic in plant/boiler/temp plant/boiler/temp plant/boiler/temp plant/pump/state; do
                "$cli" "127.0.0.1:$PSRTD_PORT" -u boiler-sensor -p boiler-pw -t "$topic" -m 21.5 \
                    >/dev/null 2>&1 || sleep 0.1
            done
        done
    ) &
    PAGE_PIDS+=($!)
    sleep 5
    chrome "$dir/chrome" "http://$stats/" --dump-dom >"$dir/dom.html" || rc=$?
    chrome "$dir/chrome" "http://$stats/" --window-size=1600,1000 --screenshot="$out/stats.png" >/dev/null || rc=$?
    chrome "$dir/chrome" "http://$stats/" --window-size=420,1400 --screenshot="$out/stats-phone.png" >/dev/null || rc=$?
    cp "$dir/dom.html" "$out/stats-dom.html"
    kill "${PAGE_PIDS[@]}" 2>/dev/null || true
    wait "${PAGE_PIDS[@]}" 2>/dev/null || true
    PAGE_PIDS=()
    local stopped=0
    stop_psrtd "$dir" || stopped=1
    if [[ $rc -ne 0 ]]; then
        log "chromium failed (exit $rc); its log:"
        cat "$dir/chrome.log" >&2 || true
        return 1
    fi
    page_asserts "$dir/dom.html" || return 1
    log "screenshots: $out/stats.png, $out/stats-phone.png"
    return "$stopped"
}

# The rendered DOM of the stats page shows what the page stage made happen.
page_asserts() {
    local dom="$1" failed=0 value key
    check() { # DESCRIPTION PATTERN
        if grep -Eq "$2" "$dom"; then
            log "  ok: $1"
        else
            log "  MISSING: $1 (/$2/ in target/page/stats-dom.html)"
            failed=1
        fi
    }
    check "the page is online" 'id="state" class="pill online"'
    check "the busy topic in the topics table" '<tbody id="topics"><tr><td class="name"[^>]*><span[^>]*></span>plant/boiler/temp</td>'
    check "the subscriber's login in the clients table" '<td class="name">plant-monitor</td>'
    for key in published delivered; do
        value="$(grep -o "id=\"kpi-$key\" data-value=\"[^\"]*\"" "$dom" | sed 's/.*data-value="//; s/"//')"
        if awk -v v="$value" 'BEGIN { exit !(v + 0 > 0) }'; then
            log "  ok: $key rate $value/s"
        else
            log "  MISSING: a non-zero $key rate (got '$value')"
            failed=1
        fi
    done
    return "$failed"
}

# tests/interop/python: pytest starts psrtd itself (conftest.py: temp config,
# ACL, bcrypt password file, SIGTERM at the end, exit 0 and no ERROR line).
stage_interop_python() {
    local bin
    bin="$(release_psrtd)"
    ensure_venv
    if ! have mosquitto_sub || ! have mosquitto_pub; then
        if can_apt; then
            log "installing mosquitto-clients (the MQTT interop tests)"
            apt_install mosquitto-clients
        else
            log "mosquitto-clients missing and not installable: those MQTT tests are skipped"
        fi
    fi
    log "installing tests/interop/python/requirements.txt into .venv"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check \
        -r tests/interop/python/requirements.txt
    PSRTD_BIN="$bin" timeout -k 10 "$INTEROP_TIMEOUT" \
        .venv/bin/python -m pytest tests/interop/python
}

# tests/interop/rust-client: a separate cargo project (its own workspace,
# lock file and target dir) on the published psrt crate; its binary drives a
# psrtd started here on the config in tests/interop/rust-client/server.
stage_interop_rust() {
    local bin dir
    bin="$(release_psrtd)"
    ensure_openssl_dev
    local manifest=tests/interop/rust-client/Cargo.toml
    cargo build --locked --manifest-path "$manifest"
    local client="$ROOT/tests/interop/rust-client/target/debug/psrt-interop-rust-client"

    dir="$(mktemp -d "${TMPDIR:-/tmp}/psrt-interop-rust.XXXXXX")"
    PSRTD_PID=""
    # shellcheck disable=SC2064 # expand the dir now; PSRTD_PID when it runs
    trap "[[ -n \$PSRTD_PID ]] && kill -KILL \$PSRTD_PID 2>/dev/null; rm -rf '$dir'" EXIT
    cp tests/interop/rust-client/server/* "$dir/"
    # A throwaway CA and server certificate for the TLS checks.
    "$client" gen-certs "$dir"
    # A fresh AES key for "rust" (UDP, with_encryption_auth): 64 hex chars.
    local udp_key
    udp_key="$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')"
    printf "'rust': '%s'\n" "$udp_key" >"$dir/keys.yml"
    start_psrtd "$bin" "$dir"
    if [[ -z $PSRTD_UDP_PORT ]]; then
        log "psrtd reported no UDP listener (proto.bind_udp in tests/interop/rust-client/server/config.yml)"
        kill -KILL "$PSRTD_PID"
        return 1
    fi
    log "psrtd on 127.0.0.1:$PSRTD_PORT, UDP 127.0.0.1:$PSRTD_UDP_PORT (log: $dir/psrtd.log)"
    # The password of "rust" in server/passwd (a $2y$ hash, as htpasswd -B).
    local rc=0 stopped=0
    timeout -k 10 "$INTEROP_TIMEOUT" "$client" \
        --udp "127.0.0.1:$PSRTD_UDP_PORT" --udp-key "$udp_key" \
        "127.0.0.1:$PSRTD_PORT" rust rust-interop-pw \
        "$dir/ca.pem" "$dir/other-ca.pem" || rc=$?
    stop_psrtd "$dir" || stopped=$?
    if [[ $rc -ne 0 ]]; then
        log "the Rust interop client failed (exit $rc)"
        if [[ $stopped -eq 0 ]]; then
            log "psrtd log:"
            cat "$dir/psrtd.log" >&2
        fi
        return 1
    fi
    return "$stopped"
}

stage_fuzz() {
    if ! rustup run nightly rustc --version >/dev/null 2>&1; then
        log "installing the nightly toolchain"
        rustup toolchain install nightly --profile minimal
    fi
    if ! have c++; then
        log "libFuzzer needs a C++ compiler (Debian: apt-get install g++)"
        return 1
    fi
    if ! cargo fuzz --version >/dev/null 2>&1; then
        log "installing cargo-fuzz"
        cargo install cargo-fuzz --locked
    fi

    local targets=() t
    for t in fuzz/fuzz_targets/*.rs; do
        targets+=("$(basename "$t" .rs)")
    done

    # New inputs go to a scratch copy of the corpus, so the tree stays clean.
    # Crashes land in fuzz/artifacts/<target>/ (git-ignored).
    local scratch logs
    scratch="$(mktemp -d "${TMPDIR:-/tmp}/psrt-fuzz.XXXXXX")"
    # shellcheck disable=SC2064 # expand now: the local is gone when the trap runs
    trap "rm -rf '$scratch'" EXIT
    logs="$ROOT/fuzz/target/fuzz-logs"
    mkdir -p "$logs"

    (cd fuzz && cargo +nightly fuzz build)

    local failed=() rc
    for t in "${targets[@]}"; do
        mkdir -p "$scratch/$t"
        if [[ -d "fuzz/corpus/$t" ]]; then
            cp -R "fuzz/corpus/$t/." "$scratch/$t/"
        fi
        log "--- fuzz $t for ${FUZZ_SECONDS}s (log: fuzz/target/fuzz-logs/$t.log)"
        rc=0
        (cd fuzz && cargo +nightly fuzz run "$t" "$scratch/$t" -- \
            -max_total_time="$FUZZ_SECONDS" -print_final_stats=1) \
            >"$logs/$t.log" 2>&1 || rc=$?
        if [[ $rc -eq 0 ]]; then
            log "    $(grep -E '^#[0-9]+.*DONE' "$logs/$t.log" | tail -n 1 || true)"
        else
            log "    FAILED (exit $rc); last lines of the log:"
            tail -n 40 "$logs/$t.log" >&2
            failed+=("$t")
        fi
    done
    if [[ ${#failed[@]} -gt 0 ]]; then
        log "fuzz targets that failed: ${failed[*]} (inputs in fuzz/artifacts/)"
        return 1
    fi
}

# ---------------------------------------------------------------- driver ----

stage_exists() { declare -F "stage_${1//-/_}" >/dev/null; }

main() {
    local stages=() arg
    for arg in "$@"; do
        case "$arg" in
            -h | --help)
                usage
                return 0
                ;;
            -*)
                log "unknown option: $arg"
                usage >&2
                return 2
                ;;
            *)
                if ! stage_exists "$arg"; then
                    log "unknown stage: $arg (known: ${ALL_STAGES[*]})"
                    return 2
                fi
                stages+=("$arg")
                ;;
        esac
    done
    if [[ ${#stages[@]} -eq 0 ]]; then
        stages=("${ALL_STAGES[@]}")
    fi

    local results=() failures=0 name start elapsed rc total_start=$SECONDS
    for name in "${stages[@]}"; do
        log ""
        log "==> stage $name"
        start=$SECONDS
        # A subshell keeps `set -e` in force inside the stage (it would be
        # ignored under `if`/`||`) and contains its cd, traps and variables.
        set +e
        (
            set -euo pipefail
            "stage_${name//-/_}"
        )
        rc=$?
        set -e
        elapsed=$((SECONDS - start))
        if [[ $rc -eq 0 ]]; then
            results+=("PASS  $name  (${elapsed}s)")
        else
            results+=("FAIL  $name  (${elapsed}s, exit $rc)")
            failures=$((failures + 1))
        fi
        log "<== stage $name: ${results[-1]%% *} in ${elapsed}s"
        if [[ $rc -ne 0 && $FAIL_FAST == 1 ]]; then
            break
        fi
    done

    log ""
    log "==================== summary ===================="
    local line
    for line in "${results[@]}"; do
        log "  $line"
    done
    log "  total $((SECONDS - total_start))s"
    if [[ $failures -gt 0 ]]; then
        log "FAIL: $failures of ${#results[@]} stage(s) failed"
        return 1
    fi
    log "PASS: all ${#results[@]} stage(s)"
}

main "$@"
