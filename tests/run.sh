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
ALL_STAGES=(fmt clippy test fuzz)
# Planned, see the placeholders below: release-build integration interop-python

FUZZ_SECONDS="${FUZZ_SECONDS:-20}"
FAIL_FAST="${FAIL_FAST:-0}"

usage() {
    cat <<EOF
usage: tests/run.sh [STAGE...]

Runs the named stages (default: all, in this order) and prints a PASS/FAIL
summary. Exits non-zero if any stage failed.

stages:
  fmt       cargo fmt --check on the workspace and on fuzz/
  clippy    clippy -D warnings on the workspace and on fuzz/ (stable, so this
            also checks that the fuzz targets build on stable)
  test      cargo test --workspace
  fuzz      every target in fuzz/fuzz_targets for FUZZ_SECONDS each (nightly,
            installs cargo-fuzz if missing), on a copy of fuzz/corpus
planned (placeholders in this script):
  release-build  integration  interop-python

environment:
  FUZZ_SECONDS=N   seconds per fuzz target (default 20)
  FAIL_FAST=1      stop at the first failing stage
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

# ---------------------------------------------------------------- stages ----

stage_fmt() {
    ensure_component fmt rustfmt
    cargo fmt --all -- --check
    cargo fmt --manifest-path fuzz/Cargo.toml --all -- --check
}

stage_clippy() {
    ensure_component clippy clippy
    cargo clippy --workspace --all-targets -- -D warnings
    cargo clippy --manifest-path fuzz/Cargo.toml --all-targets -- -D warnings
}

stage_test() {
    cargo test --workspace
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

# ------------------------------------------------- placeholders (to do) ----
#
# release-build: build what the integration and interop stages run.
# stage_release_build() {
#     cargo build --release --bins
# }
#
# integration: needs the release psrtd from release-build. Starts
# target/release/psrtd on 127.0.0.1 with ephemeral ports and runs the
# end-to-end checks against it.
# stage_integration() {
#     test -x target/release/psrtd
#     ...
# }
#
# interop-python: the published Python client against our server.
# stage_interop_python() {
#     python3.11 -m venv .venv
#     .venv/bin/pip install --quiet psrt==0.0.19 pycryptodomex
#     ...   # start target/release/psrtd, run the Python scripts with .venv/bin/python
# }
#
# Then add the names to ALL_STAGES (after test, before fuzz if they are
# quicker) and to usage().

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
