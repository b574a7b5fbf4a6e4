#!/usr/bin/env bash
# benches/run.sh: psrtd next to redis-server, nats-server and mosquitto, all
# driven by the same load generator (benches/pbench) with the same flags.
# Run `bash benches/run.sh --help` for usage. Benchmarks never assert on time;
# they are not part of the test command.
set -euo pipefail

usage() {
    cat <<'EOF'
benches/run.sh: the psrt benchmark suite, run side by side with the peers

USAGE:
    bash benches/run.sh [OPTIONS]

What it does:
  1. Builds the release psrtd as the static binary that is deployed
     (RUSTFLAGS="-C target-feature=+crt-static" cargo build --release
     --bin psrtd --target <host triple>) and the vendored load generator
     benches/pbench.
  2. If redis-server, nats-server or mosquitto is missing, installs it with
     apt-get (it uses sudo only when not root). strace is installed the same way
     for the syscall count.
  3. Starts one server at a time on loopback, on a free port, with a
     benchmark-friendly config written to a temp dir. The headline rows
     (1to1, fanout, fanin, 1k, 1m, latency) come first, interleaved: in each of
     the REPS repetitions every server in turn (a fresh instance each, the
     order reversed every other repetition), so that a slow minute of a
     shared machine does not land on one server only. Then, server by
     server, the rest of the matrix, and the server is stopped by PID. The
     idle-clients workload gets a fresh instance of each server.
  4. Prints the table: workload | psrtd | best peer | ratio | goal | met?
     A full run also writes it into BENCHMARKS.md, between the markers
     <!-- results:begin --> and <!-- results:end -->. Everything outside the
     markers (for example the hand-written "Analysis") is kept.

OPTIONS:
    --only LIST        servers to run, comma-separated, from:
                       psrtd,redis,nats,mosquitto   (default: all)
                       `--only psrtd` is a quick run with no peers, so
                       nothing is installed for them.
    --workloads LIST   workloads to run, comma-separated (default: all):
                       1to1      1 pub -> 1 sub, 16 B, window 500, n 300000,
                                 median of 3 runs
                       ack       1 -> 1 with a publisher that waits for each
                                 OK (--psrt-ack), n 20000; PSRT only
                       fanout    1 pub -> 100 subs, n 5000, window 200,
                                 median of 3
                       fanin     100 pubs -> 1 sub, n 3000 each, window 500,
                                 median of 3
                       1k        1 KB payloads 1 -> 1, n 100000
                       1m        1 MB payloads 1 -> 1, n 300, window 4
                       latency   one-way latency at a fixed 5 k msg/s,
                                 n 15000; median of 3 by p99
                       subs100k  100 k extra (never matched) subscriptions,
                                 then 1 -> 1, 16 B, n 2000000, median of 3,
                                 interleaved with the plain runs of `cpu`
                                 (which it also runs): the figure is the
                                 ratio of the two medians
                       idle      5000 idle subscribed clients on a fresh
                                 server (--idle 5000 --hold 1)
                       udp       UDP publish at 150 k/s offered, n 300000,
                                 median loss of 3; PSRT only
                       cpu       server CPU per delivered message: 1 -> 1,
                                 16 B, n 2000000, median of 3; long enough
                                 for the 10 ms CPU ticks of /proc/PID/stat
                       syscalls  psrtd only: strace -c -f during 1 -> 1,
                                 n 200000
                       mqtt      psrtd's MQTT listener with pbench --proto mqtt
                                 against mosquitto (whose 1to1 and fanout
                                 rows it reuses, running them if needed):
                                 1 -> 1 16 B QoS 0 pipelined and fan-out
                                 1 -> 100 (median of 3 each), and a mixed
                                 row: MQTT publisher, PSRT subscriber on the
                                 same psrtd (--sub-proto psrt)
                       tls       psrtd only: TLS against plain with the same
                                 client (pbench has no TLS): psrt-cli
                                 --benchmark, 2 workers x N_TLS iterations,
                                 publish + read of 10 B and 1 MB, plain vs
                                 --tls on one server (certificates made with
                                 openssl)
                       repl      psrtd only: cluster replication. Node B
                                 (plain) and node A (cluster.yml -> B) on
                                 loopback; pbench publishes to A, its
                                 subscriber reads from B (--sub-addr):
                                 1 -> 1, 16 B, window 500, n N_1TO1, median
                                 of 3, next to the same 1 -> 1 on B alone,
                                 alternated in the same run
                       bridge    psrtd only (needs mosquitto): a PSRT publisher
                                 -> psrtd -> its bridge (QoS 1, window 1024) ->
                                 mosquitto B -> an MQTT subscriber on B, next
                                 to mosquitto's own bridge (mosquitto A, a
                                 `connection` with `topic bench/# out 1` to B;
                                 MQTT publisher on A) in the same run: 1 -> 1,
                                 16 B, window 500, n N_1TO1, median of 3,
                                 alternated
                       reference psrtd against the reference server (psrt
                                 0.3.8, built once from the Rust registry and
                                 cached; cmake and Go are installed for it)
                                 and a round-trip floor: benches/reference.sh
                                 with --reps REPS: pbench --psrt-ack 1 -> 1
                                 and every row of the reference psrt-cli
                                 --benchmark (2 workers x 5000) on both
                                 servers. Skipped with --no-install when the
                                 reference is not built yet.
                       The binary size is always reported.
    --quick            smaller n and one run per workload instead of three
    --reps N           runs per headline workload (1to1, fanout, fanin,
                       latency). Default 3; 1 with --quick.
    --write            write BENCHMARKS.md even for a partial run
    --no-write         do not write BENCHMARKS.md (a full run writes it by
                       default; a partial or quick run never does unless
                       --write is given)
    --out FILE         the markdown file to update (default: BENCHMARKS.md
                       in the repository root)
    --no-install       install nothing; a peer that is missing is skipped
    -h, --help         this help

ENVIRONMENT:
    PBENCH_TIMEOUT     seconds for each pbench run (default 90). A run that
                       times out is reported as such, not waited on.
    PSRTD_BIN          run this psrtd binary instead of building one (to
                       measure an earlier build in the same session, e.g.
                       before/after a change: PSRTD_BIN=/tmp/old/psrtd
                       bash benches/run.sh --only psrtd --out /tmp/old.md)

Raw output of every pbench run, the server logs and the strace summary are
kept in target/bench/<timestamp>/. A full run takes about 5-10 minutes on
2 cores. Every peer process is started by this script and stopped by its PID,
also on Ctrl-C or on an error.
EOF
}

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ORIG_ARGS=("$@")
ALL_SERVERS=(psrtd redis nats mosquitto)
ALL_WORKLOADS=(1to1 ack fanout fanin 1k 1m latency subs100k idle udp cpu syscalls mqtt tls repl reference bridge)
SERVERS=("${ALL_SERVERS[@]}")
WORKLOADS=("${ALL_WORKLOADS[@]}")
QUICK=0
REPS=""
WRITE=""
OUT="$REPO/BENCHMARKS.md"
INSTALL=1
PARTIAL=0
PB_TIMEOUT=${PBENCH_TIMEOUT:-90}

die() { echo "run.sh: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --only) [ $# -ge 2 ] || die "--only needs a list"
            IFS=, read -r -a SERVERS <<<"$2"; PARTIAL=1; shift 2 ;;
        --workloads) [ $# -ge 2 ] || die "--workloads needs a list"
            IFS=, read -r -a WORKLOADS <<<"$2"; PARTIAL=1; shift 2 ;;
        --quick) QUICK=1; PARTIAL=1; shift ;;
        --reps) [ $# -ge 2 ] || die "--reps needs a number"; REPS=$2; shift 2 ;;
        --write) WRITE=1; shift ;;
        --no-write) WRITE=0; shift ;;
        --out) [ $# -ge 2 ] || die "--out needs a file"; OUT=$2; shift 2 ;;
        --no-install) INSTALL=0; shift ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done

for s in "${SERVERS[@]}"; do
    [[ " ${ALL_SERVERS[*]} " == *" $s "* ]] || die "unknown server '$s' (psrtd,redis,nats,mosquitto)"
done
for w in "${WORKLOADS[@]}"; do
    [[ " ${ALL_WORKLOADS[*]} " == *" $w "* ]] || die "unknown workload '$w' (${ALL_WORKLOADS[*]})"
done
has() { local x=$1; shift; [[ " $* " == *" $x "* ]]; }
want() { has "$1" "${WORKLOADS[@]}"; }
serving() { has "$1" "${SERVERS[@]}"; }
# The subs100k ratio is taken against the plain runs of `cpu`, interleaved.
if want subs100k && ! want cpu; then WORKLOADS+=(cpu); fi
[ -z "$REPS" ] && { if [ "$QUICK" = 1 ]; then REPS=1; else REPS=3; fi; }
[[ "$REPS" =~ ^[1-9][0-9]*$ ]] || die "--reps must be a positive number"
[ -z "$WRITE" ] && { if [ "$PARTIAL" = 1 ]; then WRITE=0; else WRITE=1; fi; }

# Message counts: full / quick.
if [ "$QUICK" = 1 ]; then
    N_1TO1=100000; N_ACK=5000; N_FANOUT=1000; N_FANIN=1000; N_1K=30000; N_1M=100; N_TLS=2000
    N_LAT=5000; N_IDLE=2000; N_UDP=100000; N_STRACE=50000; N_CPU=500000
else
    N_1TO1=300000; N_ACK=20000; N_FANOUT=5000; N_FANIN=3000; N_1K=100000; N_1M=300; N_TLS=10000
    N_LAT=15000; N_IDLE=5000; N_UDP=300000; N_STRACE=200000; N_CPU=2000000
fi
EXTRA_SUBS=100000
UDP_RATE=150000

STAMP=$(date +%Y%m%d-%H%M%S)
LOGDIR="$REPO/target/bench/$STAMP"
mkdir -p "$LOGDIR"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/psrt-bench.XXXXXX")
T_START=$(date +%s)

# ---------------------------------------------------------------- cleanup
SRV_PID=""
STRACE_PID=""
PB_PID=""
REPL_PIDS=""
BRIDGE_PIDS=""
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    for p in $REPL_PIDS $BRIDGE_PIDS; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    if [ -n "$PB_PID" ] && kill -0 "$PB_PID" 2>/dev/null; then
        kill "$PB_PID" 2>/dev/null || true   # timeout passes it on to pbench
        wait "$PB_PID" 2>/dev/null || true
    fi
    if [ -n "$STRACE_PID" ] && kill -0 "$STRACE_PID" 2>/dev/null; then
        kill -INT "$STRACE_PID" 2>/dev/null || true
        wait "$STRACE_PID" 2>/dev/null || true
    fi
    if [ -n "$SRV_PID" ] && kill -0 "$SRV_PID" 2>/dev/null; then
        kill "$SRV_PID" 2>/dev/null || true
        wait "$SRV_PID" 2>/dev/null || true
    fi
    cp "$TMP"/*.log "$LOGDIR"/ 2>/dev/null || true
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'echo "run.sh: interrupted" >&2; exit 130' INT TERM

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
calc() { awk "BEGIN { print $* }"; }

# ---------------------------------------------------------------- install
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
APT_UPDATED=0
apt_install() { # PACKAGE...
    [ "$INSTALL" = 1 ] || return 1
    command -v apt-get >/dev/null || return 1
    if [ "$APT_UPDATED" = 0 ]; then
        log "apt-get update"
        as_root apt-get update -qq >"$LOGDIR/apt.log" 2>&1 || true
        APT_UPDATED=1
    fi
    log "apt-get install $*"
    # Debian starts the packaged service on install where it can; this script
    # never uses those instances (it picks free ports for its own).
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >>"$LOGDIR/apt.log" 2>&1
}
ensure_cmd() { # COMMAND PACKAGE
    command -v "$1" >/dev/null && return 0
    apt_install "$2" || true
    command -v "$1" >/dev/null
}

PEER_OK=()
for s in "${SERVERS[@]}"; do
    case "$s" in
        psrtd) PEER_OK+=(psrtd) ;;
        redis) if ensure_cmd redis-server redis-server; then PEER_OK+=(redis); else log "redis-server missing: skipped"; fi ;;
        nats) if ensure_cmd nats-server nats-server; then PEER_OK+=(nats); else log "nats-server missing: skipped"; fi ;;
        mosquitto) if ensure_cmd mosquitto mosquitto; then PEER_OK+=(mosquitto); else log "mosquitto missing: skipped"; fi ;;
    esac
done
SERVERS=("${PEER_OK[@]}")
MOSQ_BRIDGE_OK=0
if serving psrtd && want bridge; then
    if ensure_cmd mosquitto mosquitto; then MOSQ_BRIDGE_OK=1; else log "mosquitto missing: bridge workload skipped"; fi
fi
STRACE_OK=0
if serving psrtd && want syscalls; then
    if ensure_cmd strace strace; then STRACE_OK=1; else log "strace missing: syscall count skipped"; fi
fi

# ---------------------------------------------------------------- build
# The deployment form: one fully static binary (glibc crt-static here; the
# musl target where it is installed). Every psrtd figure is taken with it.
TARGET_TRIPLE="$(rustc -vV | sed -n 's/^host: //p')"
PSRTD="${PSRTD_BIN:-$REPO/target/$TARGET_TRIPLE/release/psrtd}"
PBENCH="$REPO/benches/pbench/target/release/pbench"
if [ -n "${PSRTD_BIN:-}" ]; then
    [ -x "$PSRTD_BIN" ] || die "PSRTD_BIN=$PSRTD_BIN is not an executable"
    log "psrtd under test: $PSRTD_BIN (not rebuilt)"
elif serving psrtd; then
    log "building psrtd (release, static, $TARGET_TRIPLE)"
    (cd "$REPO" && RUSTFLAGS="-C target-feature=+crt-static" \
        cargo build --release --quiet --bin psrtd --target "$TARGET_TRIPLE")
fi
log "building pbench (release)"
cargo build --release --quiet --manifest-path "$REPO/benches/pbench/Cargo.toml" \
    --target-dir "$REPO/benches/pbench/target"

# ---------------------------------------------------------------- ports
tcp_listening() { # PORT
    if command -v ss >/dev/null; then
        [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]
    else
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
    fi
}
udp_bound() { # PORT
    command -v ss >/dev/null && [ -n "$(ss -Hlun "sport = :$1" 2>/dev/null)" ]
}
USED_PORTS=" "
free_port() { # PREFERRED [udp]: prints a port free on TCP (and UDP if asked)
    local p=$1 tries=0
    while :; do
        if [[ "$USED_PORTS" != *" $p "* ]] && ! tcp_listening "$p" \
            && { [ "${2:-}" != udp ] || ! udp_bound "$p"; }; then
            USED_PORTS+="$p "
            echo "$p"
            return 0
        fi
        tries=$((tries + 1))
        [ $tries -lt 200 ] || die "no free port found"
        p=$((20000 + RANDOM % 10000))
    done
}
PORT_PSRTD=$(free_port 2873 udp)
PORT_REDIS=$(free_port 6379)
PORT_NATS=$(free_port 4222)
PORT_MOSQ=$(free_port 1883)
PORT_PSRTD_MQTT=$(free_port 1884)

# ---------------------------------------------------------------- servers
proto_of() { case "$1" in psrtd) echo psrt ;; redis) echo redis ;; nats) echo nats ;; mosquitto) echo mqtt ;; esac; }
port_of() { case "$1" in psrtd) echo "$PORT_PSRTD" ;; redis) echo "$PORT_REDIS" ;; nats) echo "$PORT_NATS" ;; mosquitto) echo "$PORT_MOSQ" ;; esac; }

write_configs() {
    mkdir -p "$TMP/psrtd"
    cat >"$TMP/psrtd/acl.yml" <<'EOF'
_:
  sub: '#'
  pub: '#'
EOF
    # data_queue 4096 as in the anchors; timeout 60 because pbench sends no
    # keepalives and psrtd closes a control socket idle for `timeout`.
    cat >"$TMP/psrtd/config.yml" <<EOF
server:
  data_queue: 4096
  max_clients: 20000
proto:
  bind: 127.0.0.1:$PORT_PSRTD
  bind_udp: 127.0.0.1:$PORT_PSRTD
  timeout: 60
auth:
  allow_anonymous: true
  acl: acl.yml
EOF
    # The MQTT listener (builds without MQTT refuse the section: left out).
    if [ -x "$PSRTD" ]; then
        cp "$TMP/psrtd/config.yml" "$TMP/psrtd/config.nomqtt.yml"
        printf 'mqtt:\n  bind: 127.0.0.1:%s\n' "$PORT_PSRTD_MQTT" >>"$TMP/psrtd/config.yml"
        if ! "$PSRTD" -t -C "$TMP/psrtd/config.yml" >/dev/null 2>&1; then
            mv "$TMP/psrtd/config.nomqtt.yml" "$TMP/psrtd/config.yml"
        fi
    fi
    # subs100k puts 100 k subscriptions on one connection: lift the
    # subscription caps (builds older than these keys refuse unknown keys,
    # so they are added only where the binary accepts them).
    if [ -x "$PSRTD" ]; then
        cp "$TMP/psrtd/config.yml" "$TMP/psrtd/config.base.yml"
        sed -i 's/^  max_clients: 20000$/  max_clients: 20000\n  max_subscriptions_per_client: 0\n  max_subscriptions: 0/' "$TMP/psrtd/config.yml"
        if ! "$PSRTD" -t -C "$TMP/psrtd/config.yml" >/dev/null 2>&1; then
            mv "$TMP/psrtd/config.base.yml" "$TMP/psrtd/config.yml"
        fi
    fi
    cat >"$TMP/redis.conf" <<EOF
bind 127.0.0.1
port $PORT_REDIS
save ""
appendonly no
daemonize no
dir $TMP
logfile ""
EOF
    cat >"$TMP/mosquitto.conf" <<EOF
listener $PORT_MOSQ 127.0.0.1
allow_anonymous true
persistence false
log_dest stderr
log_type error
log_type warning
EOF
}

start_server() { # NAME -> SRV_PID
    local s=$1 port
    port=$(port_of "$s")
    local lg="$TMP/$s.log"
    : >"$lg"
    case "$s" in
        psrtd) "$PSRTD" -C "$TMP/psrtd/config.yml" >>"$lg" 2>&1 & ;;
        redis) redis-server "$TMP/redis.conf" >>"$lg" 2>&1 & ;;
        nats) nats-server -a 127.0.0.1 -p "$port" >>"$lg" 2>&1 & ;;
        mosquitto) mosquitto -c "$TMP/mosquitto.conf" >>"$lg" 2>&1 & ;;
    esac
    SRV_PID=$!
    for _ in $(seq 1 100); do
        if ! kill -0 "$SRV_PID" 2>/dev/null; then
            log "$s exited at start:"; tail -5 "$lg" >&2; SRV_PID=""; return 1
        fi
        if tcp_listening "$port"; then
            if [ "$s" = psrtd ] && ! grep -q "listening on tcp:" "$lg"; then sleep 0.1; continue; fi
            sleep 0.2
            log "$s started (pid $SRV_PID, 127.0.0.1:$port)"
            return 0
        fi
        sleep 0.1
    done
    log "$s did not listen on $port within 10 s"; return 1
}

stop_server() {
    [ -n "$SRV_PID" ] || return 0
    kill "$SRV_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$SRV_PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$SRV_PID" 2>/dev/null && kill -KILL "$SRV_PID" 2>/dev/null || true
    wait "$SRV_PID" 2>/dev/null || true
    SRV_PID=""
}

# ---------------------------------------------------------------- results
declare -A R      # R[server.workload] = the pbench result line kept
declare -A NOTE   # NOTE[server.workload] = why there is no figure
ANOMALIES=()
RUN_NO=0
LOAD_MAX=0
sample_load() { # keeps the highest 1-minute load average seen before a run
    local l
    l=$(cut -d' ' -f1 /proc/loadavg)
    if [ "$(calc "($l > $LOAD_MAX) ? 1 : 0")" = 1 ]; then LOAD_MAX=$l; fi
}

field() { # LINE KEY -> value after KEY= up to a space
    local v
    v=$(grep -o "$2=[^ ]*" <<<"$1" | head -1) || true
    v=${v#*=}
    v=${v%/s}
    v=${v%KB}
    echo "$v"
}
delivered() { local d; d=$(field "$1" delivered); echo "${d%/*}"; }
expected() { local d; d=$(field "$1" delivered); echo "${d#*/}"; }
lost_pct() { { grep -o '([0-9.]*% lost)' <<<"$1" || true; } | tr -dc '0-9.'; }
rss_before() { local r; r=$(grep -o 'server_rss=[0-9]*KB' <<<"$1" | head -1) || true; r=${r#*=}; echo "${r%KB}"; }
rss_after() { local r; r=$(grep -o 'server_rss=[0-9]*KB->[0-9]*KB' <<<"$1" | head -1) || true; r=${r#*->}; echo "${r%KB}"; }
pcell() { if [ -n "$1" ]; then echo "$2"; else echo "—"; fi; }

anomaly() { # SERVER WORKLOAD TEXT CMD LOGFILE
    local tail_out
    tail_out=$(tail -5 "$5" 2>/dev/null | sed 's/^/    /')
    ANOMALIES+=("**$1 $2**: $3
  - command: \`$4\`
  - output (last lines):
\`\`\`
$tail_out
\`\`\`")
    log "ANOMALY $1 $2: $3"
}

# Runs pbench once against the current server; sets LINE (the result line,
# empty on failure) and RC. Loss on a TCP workload, a timeout, a crash of
# pbench or of the server are anomalies.
pb() { # SERVER WORKLOAD [--udp-ok] PBENCH-ARGS...
    local s=$1 w=$2; shift 2
    local expect_loss=0
    if [ "${1:-}" = --udp-ok ]; then expect_loss=1; shift; fi
    RUN_NO=$((RUN_NO + 1))
    sample_load
    local lg
    lg="$LOGDIR/$(printf '%03d' "$RUN_NO")-$s-$w.log"
    # PB_PROTO / PB_PORT: another listener of the same server (psrtd's MQTT).
    local cmd=("$PBENCH" --proto "${PB_PROTO:-$(proto_of "$s")}" --addr "127.0.0.1:${PB_PORT:-$(port_of "$s")}" --pid "$SRV_PID" "$@")
    local shown="timeout $PB_TIMEOUT ${cmd[*]}"
    shown=${shown//$REPO\//}
    echo "\$ $shown" >"$lg"
    RC=0
    # In the background with `wait`, so that Ctrl-C runs the trap at once
    # (bash defers traps while a foreground child runs).
    timeout -k 5 "$PB_TIMEOUT" "${cmd[@]}" >>"$lg" 2>&1 &
    PB_PID=$!
    wait "$PB_PID" || RC=$?
    PB_PID=""
    LINE=$(grep -E '^(proto=|idle proto=)' "$lg" | tail -1 || true)
    local alive=1
    kill -0 "$SRV_PID" 2>/dev/null || alive=0
    if [ "$alive" = 0 ]; then
        anomaly "$s" "$w" "the server exited during the run (server log in target/bench/$STAMP/$s.log)" "$shown" "$lg"
        cp "$TMP/$s.log" "$LOGDIR/$s-crash-$RUN_NO.log" 2>/dev/null || true
    fi
    if [ "$expect_loss" = 1 ]; then
        return 0
    fi
    if [ "$RC" = 124 ]; then
        anomaly "$s" "$w" "pbench timed out after $PB_TIMEOUT s" "$shown" "$lg"; LINE=""
    elif [ "$RC" != 0 ] || [ -z "$LINE" ]; then
        anomaly "$s" "$w" "pbench failed (exit $RC)" "$shown" "$lg"; LINE=""
    elif [[ "$LINE" == proto=* ]]; then
        local lp
        lp=$(lost_pct "$LINE")
        if [ "$(calc "($lp > 0) ? 1 : 0")" = 1 ]; then
            anomaly "$s" "$w" "lost messages: delivered $(field "$LINE" delivered) ($lp% lost)" "$shown" "$lg"
        fi
    fi
    [ "$alive" = 1 ] || { SRV_PID=""; return 1; }
    return 0
}

ensure_up() { # SERVER: restart it if an earlier run killed it
    if [ -z "$SRV_PID" ] || ! kill -0 "$SRV_PID" 2>/dev/null; then
        SRV_PID=""
        start_server "$1"
    fi
}

# Keeps the median of result lines by a field (the whole line of the
# median run is kept, and every run's figure is listed).
keep_median() { # SERVER WORKLOAD SORTKEY(deliver_rate|p99) LINE...
    local s=$1 w=$2 key=$3; shift 3
    if [ $# -eq 0 ]; then NOTE[$s.$w]="failed"; return; fi
    local l sorted mid
    sorted=$(for l in "$@"; do
        if [ "$key" = p99 ]; then echo "$({ grep -o ' p99=[0-9.]*' <<<"$l" || true; } | cut -d= -f2) $l"
        else echo "$(field "$l" "$key") $l"; fi
    done | sort -g -k1,1)
    mid=$(( ($# + 1) / 2 ))
    R[$s.$w]=$(sed -n "${mid}p" <<<"$sorted" | cut -d' ' -f2-)
    R[$s.$w.runs]=$(for l in "$@"; do
        if [ "$key" = p99 ]; then { grep -o ' p99=[0-9.]*' <<<"$l" || true; } | cut -d= -f2; else field "$l" "$key"; fi
    done | paste -sd' ')
}

# Runs a workload REPS times and keeps the median run.
median_run() { # SERVER WORKLOAD SORTKEY(deliver_rate|p99) REPS PBENCH-ARGS...
    local s=$1 w=$2 key=$3 reps=$4; shift 4
    local lines=()
    for _ in $(seq 1 "$reps"); do
        ensure_up "$s" || break
        pb "$s" "$w" "$@" || true
        [ -n "$LINE" ] && lines+=("$LINE")
    done
    keep_median "$s" "$w" "$key" ${lines[@]+"${lines[@]}"}
}

# The long plain 1 -> 1 runs (cpu) and, when asked, the same runs with 100 k
# extra subscriptions, alternated so that a change in the machine's load
# hits both alike.
paired_runs() { # SERVER
    local s=$1 plain=() subs=()
    for _ in $(seq 1 "$REPS"); do
        ensure_up "$s" || break
        pb "$s" cpu --pubs 1 --subs 1 --n "$N_CPU" --size 16 --window 500 || true
        [ -n "$LINE" ] && plain+=("$LINE")
        if want subs100k; then
            ensure_up "$s" || break
            pb "$s" subs100k --extra-subs "$EXTRA_SUBS" --pubs 1 --subs 1 --n "$N_CPU" --size 16 --window 500 || true
            [ -n "$LINE" ] && subs+=("$LINE")
        fi
    done
    keep_median "$s" cpu deliver_rate ${plain[@]+"${plain[@]}"}
    if want subs100k; then keep_median "$s" subs100k deliver_rate ${subs[@]+"${subs[@]}"}; fi
}

single_run() { # SERVER WORKLOAD PBENCH-ARGS...
    local s=$1 w=$2; shift 2
    ensure_up "$s" || { NOTE[$s.$w]="server did not start"; return; }
    pb "$s" "$w" "$@" || true
    if [ -n "$LINE" ]; then R[$s.$w]=$LINE; else NOTE[$s.$w]="failed"; fi
}

syscall_run() { # psrtd only
    local s=psrtd
    ensure_up "$s" || return
    local out="$LOGDIR/strace-psrtd.txt"
    strace -c -f -p "$SRV_PID" -o "$out" 2>"$LOGDIR/strace.stderr" &
    STRACE_PID=$!
    sleep 1
    pb "$s" syscalls --pubs 1 --subs 1 --n "$N_STRACE" --size 16 --window 500 || true
    kill -INT "$STRACE_PID" 2>/dev/null || true
    wait "$STRACE_PID" 2>/dev/null || true
    STRACE_PID=""
    local calls
    calls=$(awk '$NF == "total" { print $4 }' "$out" 2>/dev/null || true)
    if [ -n "$LINE" ] && [ -n "$calls" ]; then
        R[$s.syscalls]=$LINE
        R[$s.syscalls.calls]=$calls
        R[$s.syscalls.per]=$(calc "$calls / $(delivered "$LINE")")
        log "psrtd: $calls syscalls for $(delivered "$LINE") delivered messages"
    else
        NOTE[$s.syscalls]="failed (see target/bench/$STAMP/strace-psrtd.txt)"
    fi
}

# Datagrams the kernel dropped because a UDP receive buffer was full
# (machine-wide: other UDP traffic on the machine counts too).
udp_rcvbuf_errors() {
    awk '$1 == "Udp:" { if (!h) { for (i = 2; i <= NF; i++) if ($i == "RcvbufErrors") c = i; h = 1 } else if (c) print $c }' /proc/net/snmp 2>/dev/null || echo 0
}

# UDP publish REPS times; keeps the run with the median loss.
udp_runs() { # SERVER
    local s=$1 k0 k1 lines=() losses=()
    for _ in $(seq 1 "$REPS"); do
        ensure_up "$s" || break
        k0=$(udp_rcvbuf_errors)
        pb "$s" udp --udp-ok --udp --pubs 1 --subs 1 --n "$N_UDP" --size 16 --rate "$UDP_RATE" --window "$N_UDP" || true
        k1=$(udp_rcvbuf_errors)
        if [ "$RC" = 0 ] && [ -n "$LINE" ] && [ "$(delivered "$LINE")" -gt 0 ]; then
            lines+=("$(lost_pct "$LINE") $((k1 - k0)) $LINE")
            losses+=("$(lost_pct "$LINE")%")
        elif [ "$RC" = 124 ]; then
            NOTE[$s.udp]="n/a (timed out)"; return
        else
            NOTE[$s.udp]="n/a (not implemented)"; return
        fi
    done
    [ ${#lines[@]} -gt 0 ] || { NOTE[$s.udp]="failed"; return; }
    local mid pick
    mid=$(( (${#lines[@]} + 1) / 2 ))
    pick=$(printf '%s\n' "${lines[@]}" | sort -g -k1,1 | sed -n "${mid}p")
    R[$s.udp]=$(cut -d' ' -f3- <<<"$pick")
    R[$s.udp.kdrops]=$(cut -d' ' -f2 <<<"$pick")
    R[$s.udp.runs]="loss of the runs: ${losses[*]}"
}

# The headline rows (1to1, fanout, fanin, 1k, 1m, latency), interleaved: in each
# repetition every server in turn, the order reversed every other
# repetition, one fresh instance per server and repetition. Run one server
# after the other instead, a slow minute of this shared VM lands on one
# server only (2026-12-02: the same build's fan-out read 1.46x and 0.94x
# the best peer in two such runs an hour apart, 1.41x alternating; 1 KB
# 3.44x, 3.21x, then 1.02x in a third run where only the four rows above
# were interleaved).
headline_runs() {
    local rep s w order=() acc_keys=()
    declare -A acc=()   # acc[server.workload] = result lines, one per line
    headline_wanted() { # SERVER WORKLOAD
        # mosquitto's 1to1 and fanout rows are the MQTT rows' baseline.
        want "$2" || { [ "$1" = mosquitto ] && want mqtt && [[ "$2" == 1to1 || "$2" == fanout ]]; }
    }
    for rep in $(seq 1 "$REPS"); do
        order=("${SERVERS[@]}")
        if (( rep % 2 == 0 )); then mapfile -t order < <(printf '%s\n' "${SERVERS[@]}" | tac); fi
        for s in "${order[@]}"; do
            local any=0
            for w in 1to1 fanout fanin 1k 1m latency; do headline_wanted "$s" "$w" && any=1; done
            [ "$any" = 1 ] || continue
            log "$s: 1to1, fanout, fanin, 1k, 1m, latency (repetition $rep of $REPS)"
            if ! start_server "$s"; then NOTE[$s.start]="did not start"; continue; fi
            for w in 1to1 fanout fanin 1k 1m latency; do
                headline_wanted "$s" "$w" || continue
                ensure_up "$s" || break
                case "$w" in
                    1to1) pb "$s" 1to1 --pubs 1 --subs 1 --n "$N_1TO1" --size 16 --window 500 || true ;;
                    fanout) pb "$s" fanout --pubs 1 --subs 100 --n "$N_FANOUT" --size 16 --window 200 || true ;;
                    fanin) pb "$s" fanin --pubs 100 --subs 1 --n "$N_FANIN" --size 16 --window 500 || true ;;
                    1k) pb "$s" 1k --pubs 1 --subs 1 --n "$N_1K" --size 1024 --window 500 || true ;;
                    1m) pb "$s" 1m --pubs 1 --subs 1 --n "$N_1M" --size 1048576 --window 4 || true ;;
                    latency) pb "$s" latency --pubs 1 --subs 1 --n "$N_LAT" --size 16 --rate 5000 --window 100000 || true ;;
                esac
                if [ -z "${acc[$s.$w]+x}" ]; then acc_keys+=("$s.$w"); acc[$s.$w]=""; fi
                [ -z "$LINE" ] || acc[$s.$w]+="$LINE"$'\n'
            done
            stop_server
        done
    done
    local k lines=()
    for k in ${acc_keys[@]+"${acc_keys[@]}"}; do
        mapfile -t lines < <(printf '%s' "${acc[$k]}")
        w=${k#*.}
        keep_median "${k%%.*}" "$w" "$([ "$w" = latency ] && echo p99 || echo deliver_rate)" ${lines[@]+"${lines[@]}"}
    done
}

run_server() { # SERVER
    local s=$1 psrt=0
    [ "$s" = psrtd ] && psrt=1
    local busy=0 w
    for w in subs100k cpu; do
        want "$w" && busy=1
    done
    if [ $psrt = 1 ]; then
        for w in ack udp syscalls mqtt; do want "$w" && busy=1; done
    fi
    if [ "$busy" = 1 ]; then
        if start_server "$s"; then
            if want ack && [ $psrt = 1 ]; then
                log "$s: ack"
                single_run "$s" ack --pubs 1 --subs 1 --n "$N_ACK" --size 16 --window 500 --psrt-ack
            fi
            if want udp && [ $psrt = 1 ]; then
                log "$s: udp x$REPS"
                udp_runs "$s"
            fi
            if want cpu; then
                if want subs100k; then log "$s: cpu and subs100k, alternated, x$REPS"; else log "$s: cpu x$REPS"; fi
                paired_runs "$s"
            fi
            if want syscalls && [ $psrt = 1 ] && [ "$STRACE_OK" = 1 ]; then
                log "$s: syscalls (strace)"
                syscall_run
            fi
            if want mqtt && [ $psrt = 1 ]; then
                if grep -q "mqtt+tcp:" "$TMP/psrtd.log"; then
                    log "$s: MQTT listener: 1to1, fanout, mixed MQTT -> PSRT, x$REPS each"
                    PB_PROTO=mqtt PB_PORT=$PORT_PSRTD_MQTT median_run "$s" mqtt1to1 deliver_rate "$REPS" --pubs 1 --subs 1 --n "$N_1TO1" --size 16 --window 500
                    PB_PROTO=mqtt PB_PORT=$PORT_PSRTD_MQTT median_run "$s" mqttfanout deliver_rate "$REPS" --pubs 1 --subs 100 --n "$N_FANOUT" --size 16 --window 200
                    PB_PROTO=mqtt PB_PORT=$PORT_PSRTD_MQTT median_run "$s" mqttmixed deliver_rate "$REPS" --pubs 1 --subs 1 --n "$N_1TO1" --size 16 --window 500 \
                        --sub-proto psrt --sub-addr "127.0.0.1:$PORT_PSRTD"
                else
                    NOTE[$s.mqtt1to1]="no MQTT listener in this build"
                fi
            fi
        else
            NOTE[$s.start]="did not start"
        fi
        stop_server
    fi
    if want idle; then
        log "$s: idle (fresh instance)"
        if start_server "$s"; then
            single_run "$s" idle --idle "$N_IDLE" --hold 1
            stop_server
        else
            NOTE[$s.idle]="did not start"
        fi
    fi
}

# TLS as a share of plaintext, measured with psrt-cli --benchmark (the
# client library over rustls) against one psrtd that serves both.
tls_runs() {
    ensure_cmd openssl openssl || { NOTE[psrtd.tls]="not measured (openssl missing)"; return; }
    local d="$TMP/tls" port cli="$REPO/target/release/psrt-cli"
    mkdir -p "$d"
    (cd "$REPO" && cargo build --release --quiet --bin psrt-cli) || { NOTE[psrtd.tls]="psrt-cli build failed"; return; }
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj /CN=bench-ca -keyout "$d/ca.key" -out "$d/ca.pem" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -subj /CN=127.0.0.1 -keyout "$d/key.pem" -out "$d/req.csr" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >"$d/ext.cnf"
    openssl x509 -req -in "$d/req.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
        -days 2 -extfile "$d/ext.cnf" -out "$d/cert.pem" 2>/dev/null
    port=$(free_port 2875)
    cp "$TMP/psrtd/acl.yml" "$d/acl.yml"
    # max_subscriptions_per_client 0: psrt-cli's subscribe stage puts N_TLS
    # subscriptions and then a test topic on each connection, one more than
    # the default limit (10000) allows at N_TLS 10000. data_queue_bytes
    # 256 MiB: its publishers do not wait for its readers, and in the 1 MB
    # stage a reader on this shared 2-core box fell more than the default
    # 16 MiB behind and was closed as a slow consumer. The row measures
    # TLS, not that policy.
    printf 'server:\n  data_queue: 4096\n  data_queue_bytes: 268435456\n  max_subscriptions_per_client: 0\nproto:\n  bind: 127.0.0.1:%s\n  timeout: 60\n  tls_cert: cert.pem\n  tls_key: key.pem\nauth:\n  allow_anonymous: true\n  acl: acl.yml\n' "$port" >"$d/config.yml"
    "$PSRTD" -C "$d/config.yml" >"$LOGDIR/psrtd-tls.log" 2>&1 &
    local pid=$!
    for _ in $(seq 1 50); do tcp_listening "$port" && break; sleep 0.1; done
    local mode out
    for mode in plain tls; do
        local args=()
        [ "$mode" = tls ] && args=(--tls --tls-ca "$d/ca.pem")
        out="$LOGDIR/tls-$mode.txt"
        timeout "$PB_TIMEOUT" "$cli" "127.0.0.1:$port" "${args[@]}" --benchmark \
            --benchmark-workers 2 --benchmark-iterations "$N_TLS" >"$out" 2>&1 || true
        R[psrtd.tls.$mode.10b]=$(awk '$1 == "pub-read-10b" { gsub("_", "", $5); print $5 }' "$out")
        R[psrtd.tls.$mode.1mb]=$(awk '$1 == "pub-read-1mb" { gsub("_", "", $5); print $5 }' "$out")
    done
    kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
}

# Cluster replication: node B alone, node A replicating to B. pbench
# publishes to A and reads from B; the baseline is the same 1 -> 1 on B
# alone, alternated with the replicated runs.
repl_runs() {
    local d="$TMP/repl" pa pb_ a_pid b_pid
    mkdir -p "$d/a" "$d/b"
    pa=$(free_port 2877); pb_=$(free_port 2879)
    printf "_:\n  sub: '#'\n  pub: '#'\n  replicator: true\n" >"$d/acl.yml"
    for n in a b; do
        cp "$d/acl.yml" "$d/$n/acl.yml"
        local port=$pb_; [ $n = a ] && port=$pa
        printf 'server:\n  data_queue: 4096\nproto:\n  bind: 127.0.0.1:%s\n  timeout: 60\nauth:\n  allow_anonymous: true\n  acl: acl.yml\n' "$port" >"$d/$n/config.yml"
    done
    printf -- '- path: 127.0.0.1:%s\n' "$pb_" >"$d/a/cluster.yml"
    printf 'cluster:\n  config: cluster.yml\n' >>"$d/a/config.yml"
    "$PSRTD" -C "$d/b/config.yml" >"$LOGDIR/psrtd-repl-b.log" 2>&1 &
    b_pid=$!; REPL_PIDS="$b_pid"
    for _ in $(seq 1 50); do tcp_listening "$pb_" && break; sleep 0.1; done
    "$PSRTD" -C "$d/a/config.yml" >"$LOGDIR/psrtd-repl-a.log" 2>&1 &
    a_pid=$!; REPL_PIDS="$b_pid $a_pid"
    for _ in $(seq 1 50); do grep -q "replicating to node" "$LOGDIR/psrtd-repl-a.log" && break; sleep 0.1; done
    local repl=() single=() saved=$SRV_PID
    for _ in $(seq 1 "$REPS"); do
        SRV_PID=$b_pid PB_PORT=$pb_ pb psrtd repl1 --pubs 1 --subs 1 --n "$N_1TO1" --size 16 --window 500 || true
        [ -n "$LINE" ] && single+=("$LINE")
        SRV_PID=$a_pid PB_PORT=$pa pb psrtd repl --pubs 1 --subs 1 --n "$N_1TO1" --size 16 --window 500 \
            --sub-addr "127.0.0.1:$pb_" || true
        [ -n "$LINE" ] && repl+=("$LINE")
    done
    SRV_PID=$saved
    keep_median psrtd repl1 deliver_rate ${single[@]+"${single[@]}"}
    keep_median psrtd repl deliver_rate ${repl[@]+"${repl[@]}"}
    kill "$a_pid" "$b_pid" 2>/dev/null || true
    wait "$a_pid" "$b_pid" 2>/dev/null || true
    REPL_PIDS=""
}

# Bridges: a PSRT publisher on psrtd bridged to mosquitto B (subscriber on
# B), against mosquitto A bridged to B by mosquitto's own bridge (MQTT
# publisher on A, subscriber on B), alternated in the same run.
bridge_runs() {
    local d="$TMP/bridge" pb_port pa_port ps_port b_pid a_pid p_pid
    mkdir -p "$d/psrtd"
    pb_port=$(free_port 1885); pa_port=$(free_port 1886); ps_port=$(free_port 2878)
    printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\nlog_type error\nlog_type warning\nmax_queued_messages 0\n' "$pb_port" >"$d/b.conf"
    printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\nlog_type error\nlog_type warning\nmax_queued_messages 0\nconnection bench\naddress 127.0.0.1:%s\ntopic bench/# out 1\ncleansession true\n' "$pa_port" "$pb_port" >"$d/a.conf"
    printf "_:\n  sub: '#'\n  pub: '#'\n" >"$d/psrtd/acl.yml"
    printf 'server:\n  data_queue: 4096\nproto:\n  bind: 127.0.0.1:%s\n  timeout: 60\nauth:\n  allow_anonymous: true\n  acl: acl.yml\nbridges:\n  - name: bench\n    url: mqtt://127.0.0.1:%s\n    out: [\x27bench/#\x27]\n    qos: 1\n    inflight: 1024\n    queue_bytes: 256MiB\n' "$ps_port" "$pb_port" >"$d/psrtd/config.yml"
    mosquitto -c "$d/b.conf" >"$LOGDIR/mosquitto-bridge-b.log" 2>&1 &
    b_pid=$!; BRIDGE_PIDS="$b_pid"
    for _ in $(seq 1 50); do tcp_listening "$pb_port" && break; sleep 0.1; done
    mosquitto -c "$d/a.conf" >"$LOGDIR/mosquitto-bridge-a.log" 2>&1 &
    a_pid=$!; BRIDGE_PIDS="$b_pid $a_pid"
    "$PSRTD" -v -C "$d/psrtd/config.yml" >"$LOGDIR/psrtd-bridge.log" 2>&1 &
    p_pid=$!; BRIDGE_PIDS="$b_pid $a_pid $p_pid"
    for _ in $(seq 1 100); do grep -q "bridge bench: connected" "$LOGDIR/psrtd-bridge.log" && break; sleep 0.1; done
    for _ in $(seq 1 50); do tcp_listening "$pa_port" && break; sleep 0.1; done
    # mosquitto A's bridge connects on its own schedule: give it a moment.
    sleep 1
    local ours=() theirs=() saved=$SRV_PID
    for _ in $(seq 1 "$REPS"); do
        SRV_PID=$p_pid PB_PORT=$ps_port pb psrtd bridge --pubs 1 --subs 1 --n "$N_1TO1" --size 16 --window 500 \
            --sub-proto mqtt --sub-addr "127.0.0.1:$pb_port" || true
        [ -n "$LINE" ] && ours+=("$LINE")
        SRV_PID=$a_pid PB_PROTO=mqtt PB_PORT=$pa_port pb mosquitto bridge --pubs 1 --subs 1 --n "$N_1TO1" --size 16 --window 500 \
            --sub-proto mqtt --sub-addr "127.0.0.1:$pb_port" || true
        [ -n "$LINE" ] && theirs+=("$LINE")
    done
    SRV_PID=$saved
    keep_median psrtd bridge deliver_rate ${ours[@]+"${ours[@]}"}
    keep_median mosquitto bridge deliver_rate ${theirs[@]+"${theirs[@]}"}
    kill "$p_pid" "$a_pid" "$b_pid" 2>/dev/null || true
    wait "$p_pid" "$a_pid" "$b_pid" 2>/dev/null || true
    BRIDGE_PIDS=""
}

# ---------------------------------------------------------------- run
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
write_configs
sample_load
if [ "$(calc "($LOAD_MAX > $(nproc) / 2) ? 1 : 0")" = 1 ]; then
    log "warning: load average $LOAD_MAX on $(nproc) cores: other processes compete with the benchmark; figures will be noisy"
fi
log "logs in ${LOGDIR#$REPO/}; servers: ${SERVERS[*]}; workloads: ${WORKLOADS[*]}"
headline_runs
for s in "${SERVERS[@]}"; do
    run_server "$s"
done
if want tls && serving psrtd; then
    log "psrtd: tls (psrt-cli --benchmark, plain then TLS)"
    tls_runs
fi
if want repl && serving psrtd; then
    log "psrtd: repl (node A replicating to node B, against B alone), x$REPS each"
    repl_runs
fi
if want bridge && serving psrtd && [ "$MOSQ_BRIDGE_OK" = 1 ]; then
    log "psrtd: bridge (psrtd's bridge to mosquitto, against mosquitto's own bridge), x$REPS each"
    bridge_runs
fi
REF_REPORT=""
if want reference && serving psrtd; then
    log "psrtd: reference (benches/reference.sh, x$REPS)"
    ref_args=(--reps "$REPS" --report "$LOGDIR/reference.md")
    [ "$INSTALL" = 1 ] || ref_args+=(--no-install)
    if PSRTD_BIN="$PSRTD" bash "$REPO/benches/reference.sh" "${ref_args[@]}" >"$LOGDIR/reference.log" 2>&1; then
        REF_REPORT=$(cat "$LOGDIR/reference.md")
    else
        REF_REPORT="Not measured: \`benches/reference.sh\` failed ($(tail -1 "$LOGDIR/reference.log"))."
        log "reference: $(tail -1 "$LOGDIR/reference.log")"
    fi
fi
T_END=$(date +%s)
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
ELAPSED=$((T_END - T_START))

# ---------------------------------------------------------------- report
# Formatting helpers.
fmt_rate() { # N -> "712 k" / "1.23 M" / "820"
    awk -v x="$1" 'BEGIN { if (x >= 1e6) printf "%.2f M", x/1e6; else if (x >= 1e4) printf "%.0f k", x/1e3; else if (x >= 1e3) printf "%.1f k", x/1e3; else printf "%.0f", x }'
}
fmt_ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f×", a/b; else print "—" }'; }
ge() { [ "$(calc "($1 >= $2) ? 1 : 0")" = 1 ]; }
le() { [ "$(calc "($1 <= $2) ? 1 : 0")" = 1 ]; }
yesno() { if "$@"; then echo yes; else echo "**no**"; fi; }

PEERS=()
for s in "${SERVERS[@]}"; do [ "$s" != psrtd ] && PEERS+=("$s"); done

# value SERVER WORKLOAD METRIC -> a number or empty
value() {
    local l=${R[$1.$2]:-}
    [ -n "$l" ] || { echo ""; return; }
    case "$3" in
        rate) field "$l" deliver_rate ;;
        p50) { grep -o ' p50=[0-9.]*' <<<"$l" || true; } | cut -d= -f2 ;;
        p99) { grep -o ' p99=[0-9.]*' <<<"$l" || true; } | cut -d= -f2 ;;
        us) field "$l" srv_us_per_delivery ;;
        idle_kb) field "$l" delta_per_conn ;;
        idle_rss) field "$l" server_rss_before ;;
        idle_anon) field "$l" server_anon_before ;;
        subs_ratio)
            local base
            base=$(value "$1" cpu rate)
            [ -n "$base" ] && calc "$(field "$l" deliver_rate) / $base" || echo "" ;;
    esac
}
# best peer by a metric: max or min -> "value server"
best_peer() { # WORKLOAD METRIC max|min
    local best="" who="" p v
    for p in "${PEERS[@]}"; do
        v=$(value "$p" "$1" "$2")
        [ -n "$v" ] || continue
        if [ -z "$best" ] || { [ "$3" = max ] && ge "$v" "$best" ; } || { [ "$3" = min ] && le "$v" "$best"; }; then
            best=$v; who=$p
        fi
    done
    echo "$best $who"
}

ROWS=()
row() { ROWS+=("| $1 | $2 | $3 | $4 | $5 | $6 |"); }
psrtd_cell() { # WORKLOAD FORMATTED
    if ! serving psrtd; then echo "not run"
    elif [ -n "${R[psrtd.$1]:-}" ]; then echo "$2"
    else echo "${NOTE[psrtd.$1]:-failed}"; fi
}

# Throughput row with a ratio goal.
tput_row() { # WORKLOAD LABEL GOALTEXT MIN_RATIO(or "") UNIT
    local w=$1 label=$2 goal=$3 min=$4 unit=$5
    want "$w" || return 0
    local pv bp bv bw peer_cell ratio met
    pv=$(value psrtd "$w" rate)
    bp=$(best_peer "$w" rate max); bv=${bp% *}; bw=${bp#* }
    if [ -n "$bv" ]; then peer_cell="$(fmt_rate "$bv") $unit ($bw)"; else peer_cell="—"; fi
    ratio="—"; met="—"
    if [ -n "$pv" ] && [ -n "$bv" ]; then
        ratio=$(fmt_ratio "$pv" "$bv")
        [ -n "$min" ] && met=$(yesno ge "$(calc "$pv / $bv")" "$min")
    fi
    row "$label" "$(psrtd_cell "$w" "$(fmt_rate "${pv:-0}") $unit")" "$peer_cell" "$ratio" "$goal" "$met"
}

tput_row 1to1 "1 → 1, 16 B, pipelined (median of $REPS)" "≥ 1.3× best peer" 1.3 "msg/s"
if want ack; then
    pv=$(value psrtd ack rate)
    row "1 → 1, 16 B, publisher waits for each OK" "$(psrtd_cell ack "$(fmt_rate "${pv:-0}") msg/s")" "n/a (no equivalent; against the reference psrtd: the \`reference\` workload)" "—" "— (RTT-bound)" "—"
fi
tput_row fanout "fan-out 1 → 100, 16 B (median of $REPS)" "≥ 1.3× best peer" 1.3 "deliveries/s"
tput_row fanin "fan-in 100 → 1, 16 B (median of $REPS)" "≥ 1.0× best peer" 1.0 "msg/s"
tput_row 1k "1 → 1, 1 KB (median of $REPS)" "—" "" "msg/s"
if want 1m; then
    pv=$(value psrtd 1m rate)
    bp=$(best_peer 1m rate max); bv=${bp% *}; bw=${bp#* }
    met="—"; [ -n "$pv" ] && met=$(yesno ge "$pv" 1500)
    ratio="—"; [ -n "$pv" ] && [ -n "$bv" ] && ratio=$(fmt_ratio "$pv" "$bv")
    row "1 → 1, 1 MB (median of $REPS)" "$(psrtd_cell 1m "$(fmt_rate "${pv:-0}") msg/s")" "$(pcell "$bv" "$(fmt_rate "$bv") msg/s ($bw)")" "$ratio" "≥ 1500 msg/s" "$met"
fi
if want latency; then
    pv=$(value psrtd latency p50)
    bp=$(best_peer latency p50 min); bv=${bp% *}; bw=${bp#* }
    met="—"; ratio="—"
    [ -n "$pv" ] && [ -n "$bv" ] && { ratio=$(fmt_ratio "$pv" "$bv"); met=$(yesno le "$pv" "$bv"); }
    row "latency at 5 k msg/s, p50 (run with median p99 of $REPS)" "$(psrtd_cell latency "$pv µs")" "$(pcell "$bv" "$bv µs ($bw)")" "$ratio" "≤ best peer" "$met"
    pv=$(value psrtd latency p99)
    bp=$(best_peer latency p99 min); bv=${bp% *}; bw=${bp#* }
    met="—"; ratio="—"
    [ -n "$pv" ] && met=$(yesno le "$pv" 500)
    [ -n "$pv" ] && [ -n "$bv" ] && ratio=$(fmt_ratio "$pv" "$bv")
    row "latency at 5 k msg/s, p99" "$(psrtd_cell latency "$pv µs")" "$(pcell "$bv" "$bv µs ($bw)")" "$ratio" "≤ 500 µs" "$met"
fi
if want subs100k; then
    pv=$(value psrtd subs100k subs_ratio)
    bp=$(best_peer subs100k subs_ratio max); bv=${bp% *}; bw=${bp#* }
    met="—"; ratio="—"
    [ -n "$pv" ] && met=$(yesno ge "$pv" 0.95)
    [ -n "$pv" ] && [ -n "$bv" ] && ratio=$(fmt_ratio "$pv" "$bv")
    pc="—"; [ -n "$pv" ] && pc="$(calc "int($pv * 1000 + 0.5) / 10") % ($(fmt_rate "$(value psrtd subs100k rate)") msg/s)"
    pe="—"; [ -n "$bv" ] && pe="$(calc "int($bv * 1000 + 0.5) / 10") % ($(fmt_rate "$(value "$bw" subs100k rate)") msg/s, $bw)"
    row "100 k extra subscriptions, then 1 → 1, n $N_CPU (median rate / median plain rate, $REPS runs each)" "$(psrtd_cell subs100k "$pc")" "$pe" "$ratio" "≥ 95 %" "$met"
fi
if want idle; then
    pv=$(value psrtd idle idle_kb)
    bp=$(best_peer idle idle_kb min); bv=${bp% *}; bw=${bp#* }
    met="—"; ratio="—"
    [ -n "$pv" ] && met=$(yesno le "$pv" 4)
    [ -n "$pv" ] && [ -n "$bv" ] && ratio=$(fmt_ratio "$pv" "$bv")
    row "idle client, server memory each ($N_IDLE clients; PSRT = 2 sockets, peers = 1)" "$(psrtd_cell idle "$pv KiB")" "$(pcell "$bv" "$bv KiB ($bw)")" "$ratio" "≤ 4 KiB" "$met"
    pv=$(value psrtd idle idle_rss)
    bp=$(best_peer idle idle_rss min); bv=${bp% *}; bw=${bp#* }
    met="—"; ratio="—"
    [ -n "$pv" ] && met=$(yesno le "$pv" 3072)
    [ -n "$pv" ] && [ -n "$bv" ] && ratio=$(fmt_ratio "$pv" "$bv")
    # RSS also counts the binary's own pages mapped from the page cache; how
    # many depends on how the kernel cached the file (the same psrtd mapped
    # 2.5 MiB from a copy and 3.4 MiB right after the linker wrote it, with
    # 0.2 MiB private either way): the private part (RssAnon) is shown too.
    mib() { calc "int(${1:-0} / 102.4 + 0.5) / 10"; }
    private() { local a; a=$(value "$1" idle idle_anon); [ -z "$a" ] || echo " (private $(mib "$a") MiB)"; }
    row "idle server RSS (fresh, before the clients)" "$(psrtd_cell idle "$(mib "$pv") MiB$(private psrtd)")" "$(pcell "$bv" "$(mib "$bv") MiB$(private "$bw") ($bw)")" "$ratio" "≤ 3 MiB" "$met"
fi
if want udp; then
    l=${R[psrtd.udp]:-}
    if [ -n "$l" ]; then
        pv=$(field "$l" pub_rate); lp=$(lost_pct "$l")
        lost=$(( $(expected "$l") - $(delivered "$l") ))
        met=$(yesno eval "ge $pv $((UDP_RATE * 98 / 100)) && le $lp 0")
        row "UDP publish, plain, $((UDP_RATE / 1000)) k/s offered (median loss of $REPS)" "sent at $(fmt_rate "$pv")/s: $lp % lost ($lost datagrams; the kernel counted ${R[psrtd.udp.kdrops]:-?} receive-buffer drops)" "n/a (PSRT only)" "—" "≥ 150 k/s, none lost" "$met"
    else
        row "UDP publish, plain, $((UDP_RATE / 1000)) k/s offered" "$(psrtd_cell udp x)" "n/a (PSRT only)" "—" "≥ 150 k/s, none lost" "—"
    fi
fi
if want tls && serving psrtd; then
    p10=${R[psrtd.tls.plain.10b]:-}; t10=${R[psrtd.tls.tls.10b]:-}
    p1m=${R[psrtd.tls.plain.1mb]:-}; t1m=${R[psrtd.tls.tls.1mb]:-}
    if [ -n "$p10" ] && [ -n "$t10" ] && [ -n "$p1m" ] && [ -n "$t1m" ]; then
        s10=$(calc "int(100 * $t10 / $p10 + 0.5)"); s1m=$(calc "int(100 * $t1m / $p1m + 0.5)")
        cell="10 B: $s10 % ($(fmt_rate "$t10") vs $(fmt_rate "$p10") msg/s); 1 MB: $s1m % ($(fmt_rate "$t1m") vs $(fmt_rate "$p1m") msg/s)"
        met=$(yesno eval "ge $s10 50 && ge $s1m 80")
    else
        cell=${NOTE[psrtd.tls]:-"not measured (psrt-cli run failed)"}; met="—"
    fi
    row "TLS 1 → 1 as a share of plaintext (psrt-cli --benchmark publish + read, same server, same client)" "$cell" "n/a (pbench has no TLS)" "—" "≥ 50 % (16 B), ≥ 80 % (1 MB) (perf-anchors W9)" "$met"
fi
if want repl && serving psrtd; then
    rv=$(value psrtd repl rate); sv=$(value psrtd repl1 rate)
    if [ -n "$rv" ] && [ -n "$sv" ]; then
        rl=${R[psrtd.repl]}
        cell="$(fmt_rate "$rv") msg/s, p50 $({ grep -o ' p50=[0-9.]*[a-zµ]*' <<<"$rl" || true; } | cut -d= -f2) p99 $({ grep -o ' p99=[0-9.]*[a-zµ]*' <<<"$rl" || true; } | cut -d= -f2) (runs: ${R[psrtd.repl.runs]:-})"
        row "cluster replication A → B, 1 → 1, 16 B, window 500 (publisher on A, subscriber on B; median of $REPS)" "$cell" "$(fmt_rate "$sv") msg/s (psrtd single node 1 → 1, same run)" "$(fmt_ratio "$rv" "$sv")" "≥ 0.50× single node" "$(yesno ge "$(calc "$rv / $sv")" 0.5)"
    else
        row "cluster replication A → B, 1 → 1, 16 B" "${NOTE[psrtd.repl]:-failed}" "—" "—" "≥ 0.50× single node" "—"
    fi
fi
if want bridge && serving psrtd; then
    pv=$(value psrtd bridge rate); mv=$(value mosquitto bridge rate)
    ratio="—"; [ -n "$pv" ] && [ -n "$mv" ] && ratio=$(fmt_ratio "$pv" "$mv")
    if [ -n "$pv" ]; then
        cell="$(fmt_rate "$pv") msg/s (runs: ${R[psrtd.bridge.runs]:-})"
    else
        cell=${NOTE[psrtd.bridge]:-"not measured (mosquitto missing)"}
    fi
    row "bridge to an MQTT broker: PSRT publisher → psrtd → bridge (QoS 1) → mosquitto → MQTT subscriber, 16 B, window 500 (median of $REPS)" "$cell" "$(pcell "$mv" "$(fmt_rate "${mv:-0}") msg/s (mosquitto's own bridge, MQTT publisher; runs: ${R[mosquitto.bridge.runs]:-})")" "$ratio" "—" "—"
fi
if want mqtt; then
    # psrtd's MQTT listener against mosquitto's 1to1 / fanout (same pbench
    # --proto mqtt, QoS 0, same flags, same run).
    for pair in "mqtt1to1 1to1 1 → 1, 16 B, QoS 0, pipelined" "mqttfanout fanout fan-out 1 → 100, 16 B, QoS 0"; do
        read -r w base label <<<"$pair"
        pv=$(value psrtd "$w" rate); mv=$(value mosquitto "$base" rate)
        ratio="—"; met="—"
        if [ -n "$pv" ] && [ -n "$mv" ]; then ratio=$(fmt_ratio "$pv" "$mv"); met=$(yesno ge "$(calc "$pv / $mv")" 10); fi
        unit="msg/s"; [ "$base" = fanout ] && unit="deliveries/s"
        row "MQTT $label (psrtd's MQTT listener vs mosquitto, median of $REPS)" "$(psrtd_cell "$w" "$(fmt_rate "${pv:-0}") $unit")" "$(pcell "$mv" "$(fmt_rate "${mv:-0}") $unit (mosquitto)")" "$ratio" "≥ 10× mosquitto" "$met"
    done
    pv=$(value psrtd mqttmixed rate); bv=$(value psrtd 1to1 rate)
    ratio="—"; [ -n "$pv" ] && [ -n "$bv" ] && ratio=$(fmt_ratio "$pv" "$bv")
    row "mixed: MQTT publisher → PSRT subscriber, 16 B, QoS 0 (median of $REPS)" "$(psrtd_cell mqttmixed "$(fmt_rate "${pv:-0}") msg/s")" "$(pcell "$bv" "$(fmt_rate "${bv:-0}") msg/s (psrtd PSRT → PSRT)")" "$ratio" "—" "—"
fi
if want cpu; then
    pv=$(value psrtd cpu us)
    bp=$(best_peer cpu us min); bv=${bp% *}; bw=${bp#* }
    met="—"; ratio="—"
    [ -n "$pv" ] && met=$(yesno le "$pv" 1)
    [ -n "$pv" ] && [ -n "$bv" ] && ratio=$(fmt_ratio "$pv" "$bv")
    row "server CPU per delivered message (1 → 1, 16 B, n $N_CPU, median of $REPS)" "$(psrtd_cell cpu "$pv µs")" "$(pcell "$bv" "$bv µs ($bw)")" "$ratio" "≤ 1 µs" "$met"
fi
if want syscalls && serving psrtd; then
    pv=${R[psrtd.syscalls.per]:-}
    if [ -n "$pv" ]; then
        cell="$(calc "int($pv * 10000 + 0.5) / 10000") ($(fmt_rate "${R[psrtd.syscalls.calls]}") calls / $(fmt_rate "$(delivered "${R[psrtd.syscalls]}")") msgs)"
        met=$(yesno le "$pv" 0.05)
    else
        cell=${NOTE[psrtd.syscalls]:-"not measured (strace missing)"}; met="—"
    fi
    row "syscalls per delivered message (1 → 1, strace -c -f)" "$cell" "not measured" "—" "≤ 0.05" "$met"
fi
if serving psrtd && [ -x "$PSRTD" ]; then
    sz=$(stat -c %s "$PSRTD")
    if ldd "$PSRTD" 2>&1 | grep -qE "statically linked|not a dynamic executable"; then
        linkage="static"
    else
        linkage="dynamic"
    fi
    met=$(yesno eval "le $sz 4194304 && [ $linkage = static ]")
    row "psrtd binary" "$(awk -v x="$sz" 'BEGIN { printf "%.2f", x / 1048576 }') MiB, $linkage" "—" "—" "static, ≤ 4 MiB" "$met"
fi

# Raw figures of every kept run.
DETAIL=()
for w in 1to1 ack fanout fanin 1k 1m latency subs100k udp cpu syscalls mqtt1to1 mqttfanout mqttmixed bridge; do
    for s in "${SERVERS[@]}"; do
        l=${R[$s.$w]:-}
        [ -n "$l" ] || continue
        runs=${R[$s.$w.runs]:-}
        if [ "$w" = latency ]; then runs=${runs:+p99 of the runs: $runs}
        elif [ "$w" != udp ]; then runs=${runs:+runs: $runs}; fi
        DETAIL+=("| $w | $s | $(fmt_rate "$(field "$l" deliver_rate)")${runs:+ ($runs)} | $(field "$l" delivered) | $(lost_pct "$l") % | $(value "$s" "$w" p50) / $(value "$s" "$w" p99) | $(field "$l" srv_cpu) / $(field "$l" cli_cpu) | $(field "$l" srv_us_per_delivery) | $(rss_before "$l") → $(rss_after "$l") |")
    done
done
IDLE_DETAIL=()
for s in "${SERVERS[@]}"; do
    l=${R[$s.idle]:-}
    [ -n "$l" ] || continue
    IDLE_DETAIL+=("| $s | $(field "$l" conns) | $(grep -o '([0-9]*/s)' <<<"$l" | tr -d '()') | $(field "$l" server_rss_before) | $(field "$l" after) | $(field "$l" delta_per_conn) |")
done

ver_psrtd() { "$PSRTD" -V 2>/dev/null | head -1; }
ver_of() {
    case "$1" in
        psrtd) echo "$(ver_psrtd) (commit $(git -C "$REPO" describe --always --dirty 2>/dev/null || echo unknown))" ;;
        redis) redis-server --version 2>/dev/null | head -1 ;;
        nats) nats-server --version 2>/dev/null | head -1 ;;
        mosquitto) { mosquitto -h 2>/dev/null || true; } | head -1 ;;
    esac
}

report() {
    local mem cpu
    mem=$(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
    cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
    echo "Generated by \`bash benches/run.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'); the run took $((ELAPSED / 60)) min $((ELAPSED % 60)) s."
    echo
    local fam model
    fam=$(awk -F'\t*: ' '$1 == "cpu family" { print $2; exit }' /proc/cpuinfo)
    model=$(awk -F'\t*: ' '$1 == "model" { print $2; exit }' /proc/cpuinfo)
    echo "- Machine: \`nproc\` $(nproc), CPU ${cpu:-unknown} (family ${fam:-?}, model ${model:-?}), kernel $(uname -r), $mem RAM. Load average (1, 5, 15 min) at the start: $LOAD_START; at the end: $LOAD_END; highest 1-min value seen before a run: $LOAD_MAX."
    if [ "$(calc "($LOAD_MAX > $(nproc) / 2) ? 1 : 0")" = 1 ]; then
        echo "- **The machine was busy during this run.** Other processes were competing for the $(nproc) cores: the load average reached $LOAD_MAX. Tail latencies and single runs are unreliable. Ratios from the same run are still fairer than absolute numbers, but a server can be unlucky in one run."
    fi
    local s
    for s in "${SERVERS[@]}"; do echo "- $s: $(ver_of "$s")"; done
    echo "- Command: \`bash benches/run.sh$( [ "$PARTIAL" = 1 ] && printf ' %s' "${ORIG_ARGS[@]}")\`"
    [ "$PARTIAL" = 1 ] && echo "- **Partial run** (servers: ${SERVERS[*]}; workloads: ${WORKLOADS[*]}; quick: $QUICK)."
    echo
    echo "### Results"
    echo
    echo "| workload | psrtd | best peer (which) | ratio psrtd/best | goal (design §3) | met? |"
    echo "|---|---|---|---|---|---|"
    printf '%s\n' "${ROWS[@]}"
    echo
    if [ -n "$REF_REPORT" ]; then
        echo "### Request/response against the reference psrtd"
        echo
        printf '%s\n' "$REF_REPORT"
        echo
    fi
    if [ ${#ANOMALIES[@]} -gt 0 ]; then
        echo "### Anomalies in this run"
        echo
        local a
        for a in "${ANOMALIES[@]}"; do echo "- $a"; done
        echo
    fi
    echo "### Goals (design.md §3)"
    echo
    cat <<'EOF'
"Best peer" is the best of redis-server, nats-server and mosquitto (Debian
packages), run with the same load generator in the same run. The server and
the load generator share the same 2-core box.

| workload | goal |
|---|---|
| 1 pub → 1 sub, 16 B, pipelined | ≥ 1.3× best peer (NATS ~0.7 M msg/s) |
| 1 pub → 100 subs fan-out | ≥ 1.3× best peer (~2.3 M deliveries/s) |
| 100 pubs → 1 sub fan-in | ≥ 1.0× best peer (~0.45 M msg/s, client-bound) |
| 1 MB payloads 1 → 1 | ≥ 1500 msg/s (redis ~820, reference psrtd ~1070) |
| one-way latency at 5 k msg/s | p50 ≤ best peer, p99 ≤ 0.5 ms (best peer ~0.5 ms) |
| 100 k extra subscriptions | ≥ 95 % of the plain 1 → 1 rate |
| idle client (control + data sockets) | ≤ 4 KiB server memory each (mosquitto ~1 KiB per MQTT client); idle server ≤ 3 MiB RSS |
| UDP publish with plain login | ≥ 150 k datagrams/s with none lost below the rate the kernel delivers |
| server CPU per delivered message | ≤ 1 µs (reference ~30 µs) |
| syscalls per delivered message (this issue) | ≤ 0.05 |
| binary | one static `psrtd` ≤ 4 MiB |
EOF
    echo
    echo "### Every kept run"
    echo
    echo "Rates are delivered messages per second, counted over all subscribers. Latency is one-way, from the publisher's write to the subscriber's read, in µs. CPU is the server's (and pbench's) CPU time as a percentage of one core over the run. RSS is in KB, taken before and after the run."
    echo
    echo "| workload | server | delivered/s | delivered | lost | p50 / p99 µs | CPU % srv / client | srv µs per delivery | server RSS KB |"
    echo "|---|---|---|---|---|---|---|---|---|"
    printf '%s\n' "${DETAIL[@]}"
    if [ ${#IDLE_DETAIL[@]} -gt 0 ]; then
        echo
        echo "Idle clients, each on a fresh server. Every client subscribes to its own topic and then stays idle. pbench reads the server RSS before the clients connect, then again 1.5 s after the last one has subscribed."
        echo
        echo "| server | clients | connect+subscribe rate | RSS before KB | RSS after KB | KiB per client |"
        echo "|---|---|---|---|---|---|"
        printf '%s\n' "${IDLE_DETAIL[@]}"
    fi
    echo
    cat <<EOF
### How each figure is taken

- **One load generator**: every figure comes from \`benches/pbench\`, the team's neutral load generator, vendored unchanged. It is run with the same flags against every server. Payloads are 16 B unless stated: an 8 B timestamp and filler. Delivery is QoS 0 or fire-and-forget. Each run is wrapped in \`timeout $PB_TIMEOUT\`.
- **Shared cores**: pbench runs on the same $(nproc) cores as the server, with no pinning. Anything else that runs on the machine (see the load average above) takes CPU time from both. Its publisher and subscriber threads compete with the server for CPU, so absolute rates are lower than on a dedicated server. The fan-in figures of the fast servers are limited by the client (see the client CPU column).
- **Servers**: one at a time, on 127.0.0.1, on a free port. Each is stopped by PID before the next one starts.
  - mosquitto: \`listener PORT 127.0.0.1\`, \`allow_anonymous true\`, \`persistence false\`.
  - redis: \`bind 127.0.0.1\`, \`save ""\`, \`appendonly no\`.
  - nats: \`nats-server -a 127.0.0.1 -p PORT\`.
  - psrtd: \`bind 127.0.0.1:PORT\` (and \`bind_udp\` on the same port), anonymous pub/sub ACL \`_: {pub: '#', sub: '#'}\`, \`data_queue: 4096\`, \`max_clients: 20000\`, \`timeout: 60\`. The timeout is raised from 5 s because pbench sends no keepalives, and psrtd closes a control socket that stays idle for \`timeout\`.
- **1 → 1 16 B, fan-out, fan-in**: \`--window 500\` (fan-out \`--window 200\`) is a closed-loop flow control: at most that many messages are in flight per subscriber. Each of these workloads runs $REPS time(s) on the same server instance, and so do the long runs described below (CPU and 100 k subscriptions). The table shows the **median** run by rate; every run's rate is listed under "Every kept run". The latency and UDP workloads also run $REPS time(s): the run with the median p99 (latency) or the median loss (UDP) is kept. The other workloads run once.
- **1 → 1 with a publisher that waits for each OK**: this is \`--psrt-ack\`, the semantics of the reference client. The rate is bound by the round trip time. The peers have no equivalent: MQTT QoS 0, NATS and Redis PUBLISH are not acknowledged one by one in pbench.
- **Latency**: a fixed 5 k msg/s (\`--rate 5000\`, n $N_LAT), measured one way with one monotonic clock in one process. The VM's wake-up latency (~80–130 µs round trip) sets the floor.
- **100 k extra subscriptions**: a separate connection subscribes to $EXTRA_SUBS exact topics that are never matched (\`x/<i>/y\`). Then a long 1 → 1 16 B run follows (\`--n $N_CPU --window 500\`). These runs alternate with the plain runs of the CPU figure, on the same server instance, so that a change in the machine's load hits both alike. The figure is the median rate with the subscriptions divided by the median plain rate. The goal asks for ±5 %. The 300 k runs are too short for that: a fast server finishes them in under 0.1 s, and a single scheduling hiccup moves the rate by ±30 %.
- **Idle clients**: a fresh server instance, \`--idle $N_IDLE --hold 1\`. The figure is the RSS growth divided by the number of clients. A PSRT client has two sockets (control and data); an MQTT, NATS or Redis client has one. The idle server RSS is read before the first client connects.
- **UDP**: \`--udp --rate $UDP_RATE --n $N_UDP\`, PSRT only, with plain (unauthenticated, unencrypted) datagrams. It runs $REPS time(s), and the run with the median loss is kept. The table shows the rate pbench actually sent at and the share of datagrams lost. The "receive-buffer drops" count is the change in \`RcvbufErrors\` in /proc/net/snmp over the run. It covers the whole machine and counts datagrams the kernel dropped because a socket's receive buffer was full. If it is as large as the loss, psrtd did not read its socket fast enough; losses beyond it happened elsewhere. The delivered/s under "Every kept run" is not meaningful for a lossy run, because it includes the 2 s pbench waits for stragglers. If the run fails or delivers nothing, this is reported as "n/a (not implemented)".
- **Server CPU per delivered message**: \`srv_us_per_delivery\` from the median of $REPS longer 1 → 1 16 B runs (\`--n $N_CPU --window 500\`), the same for every server. It is the server's user and system CPU time, read from /proc/PID/stat in 10 ms ticks, divided by the delivered messages. The 300 k runs of a fast server last less than 0.1 s, which is too short to measure with 10 ms ticks. (The kernel here reports no schedstat.)
- **Syscalls per delivered message**: \`strace -c -f -p PID\` is attached to psrtd for one 1 → 1 16 B run (n $N_STRACE). The figure is the total syscall count divided by the delivered messages, and it includes the connection setup. strace slows the server down, which can change how many messages each syscall batches. The summary is in \`target/bench/<timestamp>/strace-psrtd.txt\`. For comparison, the peers' figures from \`shared/reference/perf-anchors.md\` are NATS 0.037, Redis 0.020 and mosquitto 11.0.
- Raw pbench output and the server logs: \`target/bench/<timestamp>/\` (not committed). Repeated runs on this machine type vary by about ±15 %.
EOF
}

REPORT=$(report)
echo
echo "$REPORT" | sed -n '/^### Results/,/^### Goals/p' | sed '$d'
echo "Full run log: ${LOGDIR#$REPO/} (elapsed ${ELAPSED}s)"

if [ "$WRITE" = 1 ]; then
    BEGIN='<!-- results:begin -->'
    END='<!-- results:end -->'
    printf '%s\n' "$REPORT" >"$LOGDIR/results.md"
    if [ -f "$OUT" ] && grep -qF "$BEGIN" "$OUT" && grep -qF "$END" "$OUT"; then
        awk -v b="$BEGIN" -v e="$END" -v f="$LOGDIR/results.md" '
            $0 == b { print; while ((getline l < f) > 0) print l; skip = 1; next }
            $0 == e { skip = 0 }
            !skip { print }' "$OUT" >"$OUT.tmp" && mv "$OUT.tmp" "$OUT"
    elif [ -f "$OUT" ]; then
        # No markers yet: the generated block goes on top, the rest is kept.
        { echo "$BEGIN"; cat "$LOGDIR/results.md"; echo "$END"; echo; cat "$OUT"; } >"$OUT.tmp" && mv "$OUT.tmp" "$OUT"
    else
        {
            echo "# Benchmarks"
            echo
            echo "psrtd next to redis-server, nats-server and mosquitto: same machine, same run, same load generator. To regenerate, run \`bash benches/run.sh\`; it rewrites only the part between the results markers."
            echo
            echo "$BEGIN"
            cat "$LOGDIR/results.md"
            echo "$END"
            echo
            echo "## Analysis"
            echo
            echo "_Hand-written; \`benches/run.sh\` leaves this section alone._"
        } >"$OUT"
    fi
    log "wrote ${OUT#$REPO/}"
fi
