#!/usr/bin/env bash
# benches/reference.sh: psrtd against the reference server (psrt 0.3.8) where
# the published clients live: one request, one reply, the next request.
# Run `bash benches/reference.sh --help` for usage. Benchmarks never assert
# on time; they are not part of the test command.
set -euo pipefail

usage() {
    cat <<'EOF'
benches/reference.sh: request/response speed, psrtd vs the reference psrtd

USAGE:
    bash benches/reference.sh [OPTIONS]

What it does:
  1. Builds (once, then cached) the reference server and client from the
     Rust registry: `cargo install psrt --version 0.3.8 --features
     server,cli --locked` into $PSRT_REFERENCE_DIR (default
     ~/.cache/psrt-reference/0.3.8). Its TLS stack needs cmake and Go to
     build (aws-lc); they are installed with apt-get if missing.
  2. Builds the release psrtd as deployed (static) unless PSRTD_BIN is
     given, the load generator benches/pbench and the round-trip floor
     benches/floor (a PSRT "server" that only answers 0x01 and forwards the
     frame: one blocking thread per socket, no loop, no matching).
  3. Round-robin over the servers (floor, psrtd, reference), REPS rounds,
     the order reversed every other round (A B, B A, ...) so that no
     server gains from its place in the round, one fresh server per run,
     the same config for both servers:
       ack    `pbench --psrt-ack --pubs 1 --subs 1 --n N --size 16`: the
              publisher waits for each OK, as every published client does
     then, psrtd and reference only:
       cli    the reference client's own benchmark against each server:
              `psrt-cli HOST:PORT --benchmark --benchmark-workers 2
              --benchmark-iterations ITERS`, every stage row
  4. Prints the medians and ratios as markdown; with --write it replaces
     the part of BENCHMARKS.md between <!-- reference:begin --> and
     <!-- reference:end -->.

OPTIONS:
    --reps N       rounds (default 3: medians of 3)
    --n N          pbench messages per ack run (default 20000)
    --iters N      psrt-cli --benchmark-iterations (default 5000)
    --only LIST    parts to run: ack,cli,py (default all; py = psrt-py's
                   publish loop, needs .venv with PyPI psrt 0.0.19, which
                   `bash tests/run.sh` makes; skipped without it)
    --write        write the tables into BENCHMARKS.md
    --out FILE     the markdown file to write (default BENCHMARKS.md)
    --report FILE  also copy the tables to FILE (benches/run.sh uses it)
    --no-install   install nothing (fails if the reference is not built)
    --busy-poll US also run psrtd with `server.busy_poll_us: US` (a config
                   key of psrtd's own, default 50; 0 = off) and report it
                   as a column of its own
    -h, --help     this help

ENVIRONMENT:
    PSRTD_BIN           the psrtd binary to measure (default: build it)
    PSRT_REFERENCE_DIR  where the reference build is cached
    REF_WORKERS         the reference's server.workers (default 1)

Raw output of every run and the server logs are kept in
target/bench/reference-<timestamp>/. Pause other busy processes first: on
two cores the figures depend on who else runs.
EOF
}

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPS=3
N=20000
ITERS=5000
PARTS="ack,cli,py"
WRITE=0
OUT="$REPO/BENCHMARKS.md"
INSTALL=1
REPORT=""
BUSY=""
REF_DIR="${PSRT_REFERENCE_DIR:-$HOME/.cache/psrt-reference/0.3.8}"

die() { echo "reference.sh: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --reps) [ $# -ge 2 ] || die "--reps needs a number"; REPS=$2; shift 2 ;;
        --n) [ $# -ge 2 ] || die "--n needs a number"; N=$2; shift 2 ;;
        --iters) [ $# -ge 2 ] || die "--iters needs a number"; ITERS=$2; shift 2 ;;
        --only) [ $# -ge 2 ] || die "--only needs a list"; PARTS=$2; shift 2 ;;
        --write) WRITE=1; shift ;;
        --out) [ $# -ge 2 ] || die "--out needs a file"; OUT=$2; shift 2 ;;
        --report) [ $# -ge 2 ] || die "--report needs a file"; REPORT=$2; shift 2 ;;
        --no-install) INSTALL=0; shift ;;
        --busy-poll) [ $# -ge 2 ] || die "--busy-poll needs µs"; BUSY=$2; shift 2 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done
[ -z "$BUSY" ] || [[ "$BUSY" =~ ^[0-9]+$ ]] || die "--busy-poll: not a number of µs: $BUSY"
for v in "$REPS" "$N" "$ITERS"; do [[ "$v" =~ ^[1-9][0-9]*$ ]] || die "not a positive number: $v"; done
part() { [[ ",$PARTS," == *",$1,"* ]]; }

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
calc() { awk "BEGIN { print $* }"; }
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR) print a[int((NR + 1) / 2)] }'; }

STAMP=$(date +%Y%m%d-%H%M%S)
LOGDIR="$REPO/target/bench/reference-$STAMP"
mkdir -p "$LOGDIR"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/psrt-ref.XXXXXX")
SRV_PID=""
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$SRV_PID" ]; then kill "$SRV_PID" 2>/dev/null || true; wait "$SRV_PID" 2>/dev/null || true; fi
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'echo "reference.sh: interrupted" >&2; exit 130' INT TERM

# ---------------------------------------------------------------- builds
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
REF_PSRTD="$REF_DIR/bin/psrtd"
REF_CLI="$REF_DIR/bin/psrt-cli"
if [ ! -x "$REF_PSRTD" ] || [ ! -x "$REF_CLI" ]; then
    [ "$INSTALL" = 1 ] || die "the reference is not built in $REF_DIR (run without --no-install)"
    if ! command -v cmake >/dev/null || ! command -v go >/dev/null; then
        log "apt-get install cmake golang-go (the reference's aws-lc needs them to build)"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake golang-go >"$LOGDIR/apt.log" 2>&1
    fi
    log "building the reference psrt 0.3.8 (server, cli) into $REF_DIR: several minutes, once"
    cargo install psrt --version 0.3.8 --features server,cli --locked --root "$REF_DIR" >"$LOGDIR/reference-build.log" 2>&1 \
        || die "building the reference failed: see $LOGDIR/reference-build.log"
fi
TRIPLE="$(rustc -vV | sed -n 's/^host: //p')"
PSRTD="${PSRTD_BIN:-$REPO/target/$TRIPLE/release/psrtd}"
if [ -z "${PSRTD_BIN:-}" ]; then
    log "building psrtd (release, static)"
    (cd "$REPO" && RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --quiet --bin psrtd --target "$TRIPLE")
fi
[ -x "$PSRTD" ] || die "no psrtd binary at $PSRTD"
log "building pbench and the floor (release)"
cargo build --release --quiet --manifest-path "$REPO/benches/pbench/Cargo.toml" --target-dir "$REPO/benches/pbench/target"
cargo build --release --quiet --manifest-path "$REPO/benches/floor/Cargo.toml" --target-dir "$REPO/benches/floor/target"
PBENCH="$REPO/benches/pbench/target/release/pbench"
FLOOR="$REPO/benches/floor/target/release/psrt-floor"

# ---------------------------------------------------------------- servers
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
# One config both servers read (the reference's format). timeout 60: pbench
# sends no keep-alives.
cat >"$TMP/acl.yml" <<'EOF'
_:
  sub: '#'
  pub: '#'
EOF
# The reference refuses unknown keys and needs these (psrt-reference.md
# 2.1); psrtd reads the same file unchanged. workers: the reference's
# tokio worker threads (standalone default 1).
cat >"$TMP/config.yml" <<EOF
server:
  workers: ${REF_WORKERS:-1}
  latency_warn: 500000
  data_queue: 4096
  max_topic_depth: 32
  max_topic_length: 100000
  max_pub_size: 2000000
  pid_file: $TMP/psrtd.pid
proto:
  bind: 127.0.0.1:$PORT
  bind_udp: []
  timeout: 60
  allow_no_tls: true
auth:
  allow_anonymous: true
  acl: $TMP/acl.yml
EOF

# psrt-cli's subscribe stage puts ITERS subscriptions and then a test topic
# on each connection: from --iters 10000 on, psrtd's default limit (10000
# per session) would refuse the last one. The reference has no such limit,
# so there psrtd's is lifted to match (a key of psrtd's own).
PSRTD_CFG="$TMP/config.yml"
if [ "$ITERS" -ge 10000 ]; then
    PSRTD_CFG="$TMP/config-psrtd.yml"
    sed "s/^server:/server:\n  max_subscriptions_per_client: 0/" "$TMP/config.yml" >"$PSRTD_CFG"
fi
# psrtd with the busy poll: the same file plus its own key (the reference
# refuses keys it does not know).
[ -z "$BUSY" ] || sed "s/^server:/server:\n  busy_poll_us: $BUSY/" "$PSRTD_CFG" >"$TMP/config-bp.yml"
PSRTDS="psrtd"
[ -z "$BUSY" ] || PSRTDS="psrtd psrtd-bp"

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }
start() { # floor|psrtd|reference
    case "$1" in
        floor) "$FLOOR" "127.0.0.1:$PORT" >"$LOGDIR/floor.log" 2>&1 & ;;
        psrtd) "$PSRTD" -C "$PSRTD_CFG" >>"$LOGDIR/psrtd.log" 2>&1 & ;;
        psrtd-bp) "$PSRTD" -C "$TMP/config-bp.yml" >>"$LOGDIR/psrtd-bp.log" 2>&1 & ;;
        reference) "$REF_PSRTD" -C "$TMP/config.yml" >>"$LOGDIR/reference.log" 2>&1 & ;;
    esac
    SRV_PID=$!
    for _ in $(seq 100); do listening && return 0; sleep 0.05; done
    die "$1 did not listen on $PORT (log: $LOGDIR/$1.log)"
}
stop() { kill "$SRV_PID" 2>/dev/null || true; wait "$SRV_PID" 2>/dev/null || true; SRV_PID=""; }
"$REF_PSRTD" -V >"$LOGDIR/versions.txt" 2>&1 || true

# psrt-py (the published Python client) from the test suite's venv.
PY="$REPO/.venv/bin/python3"
if part py && ! "$PY" -c 'import psrt' 2>/dev/null; then
    log "py: skipped (no $REPO/.venv with PyPI psrt; bash tests/run.sh makes it)"
    PARTS=${PARTS//py/}
fi

# ---------------------------------------------------------------- runs
declare -A ACK CLI PYR   # ACK[server] = "rate rate …"; CLI[server.stage] = "rate …"; PYR[server]
STAGES=()
field() { grep -o "$2=[^ ]*" <<<"$1" | head -1 | cut -d= -f2 | sed 's#/s$##'; }
run_ack() { # SERVER ROUND
    local lg="$LOGDIR/ack-$1-$2.log" line
    timeout 120 "$PBENCH" --proto psrt --addr "127.0.0.1:$PORT" --pid "$SRV_PID" \
        --pubs 1 --subs 1 --n "$N" --size 16 --window 500 --psrt-ack >"$lg" 2>&1 || die "pbench failed on $1: $lg"
    line=$(grep '^proto=' "$lg" | tail -1)
    ACK[$1]+="$(field "$line" deliver_rate) "
    ACK[$1.p50]+="$(field "$line" p50) "
    ACK[$1.cpu]+="$(field "$line" srv_cpu | tr -d %) "
    log "ack $1: $(field "$line" deliver_rate) msg/s"
}
run_cli() { # SERVER ROUND
    local lg="$LOGDIR/cli-$1-$2.log" stage rate
    timeout 300 "$REF_CLI" "127.0.0.1:$PORT" --benchmark --benchmark-workers 2 \
        --benchmark-iterations "$ITERS" >"$lg" 2>&1 || die "psrt-cli --benchmark failed on $1: $lg"
    # The table after "--- Benchmark results ---": stage iters secs msecs iters/s
    while read -r stage rate; do
        [[ " ${STAGES[*]} " == *" $stage "* ]] || STAGES+=("$stage")
        CLI[$1.$stage]+="$rate "
    done < <(sed -n '/Benchmark results/,$p' "$lg" | sed 's/\x1b\[[0-9;]*m//g' \
        | awk '$1 ~ /^(subscribe|unsubscribe|pub-)/ { r = $NF; gsub("_", "", r); print $1, r }')
    log "cli $1: done"
}

run_py() { # SERVER ROUND
    local lg="$LOGDIR/py-$1-$2.log"
    timeout 120 "$PY" "$REPO/benches/psrt_py_publish.py" "127.0.0.1:$PORT" "$N" >"$lg" 2>&1 \
        || die "psrt-py publish loop failed on $1: $lg"
    PYR[$1]+="$(field "$(cat "$lg")" rate) "
    log "py $1: $(field "$(cat "$lg")" rate) publishes/s"
}

# Counterbalanced rounds: the order is reversed every other round, so each
# server runs first in half of them and its place cannot favour it. The
# same psrtd in both places, 20 rounds, read 0.77x (first place / second)
# in pub-read-1mb and 1.37x in pub-100kb with a fixed order, 0.94x and
# 1.10x reversing every other round (ratios of medians): whether the place
# itself costs time is not settled at that size, but it is a bias the
# harness can remove (BENCHMARKS.md, "Counterbalanced rounds").
in_order() { # SERVER...: as given in odd rounds, reversed in even ones
    if (( round % 2 )); then echo "$@"; else printf '%s\n' "$@" | tac | tr '\n' ' '; fi
}
for round in $(seq "$REPS"); do
    if part py; then
        for s in $(in_order $PSRTDS reference); do start "$s"; run_py "$s" "$round"; stop; done
    fi
    if part ack; then
        for s in $(in_order floor $PSRTDS reference); do start "$s"; run_ack "$s" "$round"; stop; done
    fi
    if part cli; then
        for s in $(in_order $PSRTDS reference); do start "$s"; run_cli "$s" "$round"; stop; done
    fi
done

# ---------------------------------------------------------------- report
med() { tr ' ' '\n' <<<"$1" | grep . | median; }
fmt_rate() { awk -v x="$1" 'BEGIN { if (x >= 1e6) printf "%.2f M", x/1e6; else if (x >= 1e4) printf "%.1f k", x/1e3; else if (x >= 1e3) printf "%.2f k", x/1e3; else printf "%.0f", x }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f×", a/b; else print "—" }'; }
# The per-round column: benches/pool_rounds.py over this run's logs (the
# geometric mean of the per-round ratios psrtd / reference and its 95 %
# interval; the two servers of a round share the VM's mood of the moment,
# so that ratio is steadier than a ratio of medians).
PAIRED=""
if part cli; then PAIRED=$(python3 "$REPO/benches/pool_rounds.py" "$LOGDIR" 2>/dev/null || true); fi
paired() { # STAGE
    awk -F' [|] ' -v st="$1" '$1 == "| " st { sub(/ [|]$/, "", $3); print $3; found = 1 } END { if (!found) print "—" }' <<<"$PAIRED"
}
PSRTD_SHOWN=\`${PSRTD#"$REPO"/}\`
if [ -z "${PSRTD_BIN:-}" ]; then # built here: say from which commit
    rev=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
    [ -z "$(git -C "$REPO" status --porcelain -- . ':(exclude)*.md' ':(exclude)benches' 2>/dev/null)" ] || rev="$rev + local changes"
    PSRTD_SHOWN="static build of \`$rev\`"
fi
{
    shown_busy=""; [ -z "$BUSY" ] || shown_busy=" --busy-poll $BUSY"
    echo "Command: \`bash benches/reference.sh --reps $REPS --n $N --iters $ITERS$shown_busy\`"
    echo "($(date -u +%Y-%m-%d), psrtd $PSRTD_SHOWN, reference $(head -1 "$LOGDIR/versions.txt" 2>/dev/null || echo 'psrtd 0.3.8'),"
    echo "$(nproc) cores, load average at the end $(cut -d' ' -f1-3 /proc/loadavg))."
    echo
    if part ack; then
        f=$(med "${ACK[floor]}"); p=$(med "${ACK[psrtd]}"); r=$(med "${ACK[reference]}")
        echo "| \`pbench --psrt-ack\` 1 → 1, 16 B, n $N (median of $REPS) | msg/s | runs | p50 µs | server CPU | vs reference | share of the floor |"
        echo "|---|---|---|---|---|---|---|"
        echo "| floor (\`benches/floor\`) | $(fmt_rate "$f") | ${ACK[floor]}| $(med "${ACK[floor.p50]}") | — | $(ratio "$f" "$r") | 100 % |"
        echo "| psrtd | $(fmt_rate "$p") | ${ACK[psrtd]}| $(med "${ACK[psrtd.p50]}") | $(med "${ACK[psrtd.cpu]}") % | **$(ratio "$p" "$r")** | $(calc "int(100 * $p / $f + 0.5)") % |"
        if [ -n "$BUSY" ]; then
            b=$(med "${ACK[psrtd-bp]}")
            echo "| psrtd, \`busy_poll_us: $BUSY\` | $(fmt_rate "$b") | ${ACK[psrtd-bp]}| $(med "${ACK[psrtd-bp.p50]}") | $(med "${ACK[psrtd-bp.cpu]}") % | **$(ratio "$b" "$r")** | $(calc "int(100 * $b / $f + 0.5)") % |"
        fi
        echo "| reference psrtd 0.3.8 | $(fmt_rate "$r") | ${ACK[reference]}| $(med "${ACK[reference.p50]}") | $(med "${ACK[reference.cpu]}") % | 1.00× | $(calc "int(100 * $r / $f + 0.5)") % |"
        echo
    fi
    if part py; then
        r=$(med "${PYR[reference]}")
        echo "| psrt-py 0.0.19 publish loop, 16 B, n $N (median of $REPS) | publishes/s | runs | vs reference |"
        echo "|---|---|---|---|"
        for s in $PSRTDS reference; do
            label=$s; [ "$s" = psrtd-bp ] && label="psrtd, \`busy_poll_us: $BUSY\`"; [ "$s" = reference ] && label="reference psrtd 0.3.8"
            v=$(med "${PYR[$s]}")
            echo "| $label | $(fmt_rate "$v") | ${PYR[$s]}| $(ratio "$v" "$r") |"
        done
        echo
    fi
    if part cli; then
        per_round="psrtd ÷ reference per round: geometric mean (95 % interval)"
        if [ -z "$BUSY" ]; then
            echo "| reference \`psrt-cli --benchmark\`, 2 workers × $ITERS (iters/s, median of $REPS) | psrtd | reference | ratio | $per_round |"
            echo "|---|---|---|---|---|"
        else
            echo "| reference \`psrt-cli --benchmark\`, 2 workers × $ITERS (iters/s, median of $REPS) | psrtd | psrtd, \`busy_poll_us: $BUSY\` | reference | ratio | ratio, \`busy_poll_us: $BUSY\` | $per_round |"
            echo "|---|---|---|---|---|---|---|"
        fi
        for st in "${STAGES[@]}"; do
            p=$(med "${CLI[psrtd.$st]:-}"); r=$(med "${CLI[reference.$st]:-}")
            pr=$(paired "$st")
            if [ -z "$BUSY" ]; then
                echo "| $st | $(fmt_rate "${p:-0}") | $(fmt_rate "${r:-0}") | $(ratio "${p:-0}" "${r:-0}") | $pr |"
            else
                b=$(med "${CLI[psrtd-bp.$st]:-}")
                echo "| $st | $(fmt_rate "${p:-0}") | $(fmt_rate "${b:-0}") | $(fmt_rate "${r:-0}") | $(ratio "${p:-0}" "${r:-0}") | $(ratio "${b:-0}" "${r:-0}") | $pr |"
            fi
        done
    fi
} >"$LOGDIR/report.md"
cat "$LOGDIR/report.md"
[ -z "$REPORT" ] || cp "$LOGDIR/report.md" "$REPORT"

if [ "$WRITE" = 1 ]; then
    grep -q '<!-- reference:begin -->' "$OUT" || die "$OUT has no <!-- reference:begin --> marker"
    python3 - "$OUT" "$LOGDIR/report.md" <<'EOF'
import sys
out, rep = sys.argv[1], open(sys.argv[2]).read()
s = open(out).read()
a, b = "<!-- reference:begin -->", "<!-- reference:end -->"
i, j = s.index(a) + len(a), s.index(b)
open(out, "w").write(s[:i] + "\n" + rep + s[j:])
EOF
    log "wrote $OUT"
fi
