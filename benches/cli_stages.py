#!/usr/bin/env python3
"""Per-stage view of the reference client's benchmark, server by server.

`psrt-cli --benchmark` prints one line when a stage starts and one when it
completes. This script runs it against each given server in turn (one fresh
server per run, ROUNDS rounds, alternating, every other round in reverse
order) and, at those two lines, reads:

  - the wall clock;
  - the CPU time of every thread of the client and of the server
    (/proc/PID/task/*/schedstat: no tracer attached, nothing slowed down);
  - the client's minor page faults (its allocator giving memory back and
    faulting it in again, zeroed by the kernel);
  - the kernel's TCP counters (`nstat`): retransmitted segments and SACK
    recoveries inside the stage (loopback has no loss: a recovery there
    means segments arrived out of order).

It prints, per stage, the medians of wall and CPU times (ms) and the sums of
the TCP counters over the rounds. In the bulk stages the client's CPU time
is about the stage's wall time whatever the server: its one busy core is the
bottleneck, and a server shows up there through what it costs the client.

Usage:
  python3 benches/cli_stages.py --cli PSRT_CLI --rounds 12 \\
      psrtd=CONFIG:BIN reference=CONFIG:BIN [--addr 127.0.0.1:2990]

Each server is started as `BIN -C CONFIG` and must listen on --addr. Used
for BENCHMARKS.md, "Bulk rows".
"""

import argparse
import collections
import glob
import math
import re
import socket
import statistics
import subprocess
import sys
import time

TCP = ("TcpRetransSegs", "TcpExtTCPSackRecovery")


def thread_cpu(pid):
    """CPU time (ns) of each live thread of the process, by thread id."""
    times = {}
    for f in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        try:
            with open(f) as fh:
                times[f.split("/")[4]] = int(fh.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return times


def cpu_ms_since(before, after):
    """CPU time (ms) the process spent between two `thread_cpu` readings, or
    NaN if a thread of the first is gone in the second (it exited, and its
    time with it: the process was ending)."""
    if not after or any(tid not in after for tid in before):
        return math.nan
    return sum(ns - before.get(tid, 0) for tid, ns in after.items()) / 1e6


def minor_faults(pid):
    """The process's minor page faults so far (a fault on a transparent huge
    page counts once but zeroes 2 MiB), or NaN once it has exited."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[7])
    except (OSError, ValueError, IndexError):
        return math.nan


def tcp_counters(reset):
    if reset:
        subprocess.run(["nstat", "-n"], check=False)
        return {}
    out = subprocess.run(["nstat"], capture_output=True, text=True, check=False).stdout
    return {k: int(v) for k, v in re.findall(r"^(\S+)\s+(\d+)", out, re.M) if k in TCP}


def wait_listening(addr, limit=5.0):
    host, port = addr.rsplit(":", 1)
    end = time.monotonic() + limit
    while time.monotonic() < end:
        try:
            socket.create_connection((host, int(port)), timeout=0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def one_run(cli, addr, config, binary, workers, iters):
    server = subprocess.Popen([binary, "-C", config], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if not wait_listening(addr):
            sys.exit(f"{binary} did not listen on {addr}")
        client = subprocess.Popen(
            [cli, addr, "--benchmark", "--benchmark-workers", str(workers), "--benchmark-iterations", str(iters)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        started, stages = {}, {}
        for line in client.stdout:
            m = re.search(r"stage started: (\S+)\s*$", line)
            if m:
                tcp_counters(reset=True)
                started[m.group(1)] = (time.monotonic(), thread_cpu(client.pid), thread_cpu(server.pid), minor_faults(client.pid))
                continue
            m = re.search(r"stage completed: (\S+) ", line)
            if m and m.group(1) in started:
                t0, c0, s0, f0 = started[m.group(1)]
                tcp = tcp_counters(reset=False)
                stages[m.group(1)] = (
                    (time.monotonic() - t0) * 1e3,
                    cpu_ms_since(c0, thread_cpu(client.pid)),
                    cpu_ms_since(s0, thread_cpu(server.pid)),
                    tcp.get(TCP[0], 0),
                    tcp.get(TCP[1], 0),
                    minor_faults(client.pid) - f0,
                )
        client.wait()
        return stages
    finally:
        server.terminate()
        server.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cli", required=True, help="the reference psrt-cli binary")
    ap.add_argument("--addr", default="127.0.0.1:2990")
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--iters", type=int, default=5000)
    ap.add_argument("--detail", metavar="STAGE", help="also print every run of STAGE (to stderr)")
    ap.add_argument("servers", nargs="+", help="NAME=CONFIG:BIN")
    a = ap.parse_args()
    servers = []
    for spec in a.servers:
        name, _, rest = spec.partition("=")
        config, _, binary = rest.partition(":")
        if not (name and config and binary):
            sys.exit(f"bad server spec {spec!r}: NAME=CONFIG:BIN")
        servers.append((name, config, binary))
    runs = collections.defaultdict(lambda: collections.defaultdict(list))
    order = []
    for r in range(a.rounds):
        # Every other round in reverse order: a server's place in the round
        # must not favour it (BENCHMARKS.md, "Counterbalanced rounds").
        for name, config, binary in servers if r % 2 == 0 else servers[::-1]:
            for stage, v in one_run(a.cli, a.addr, config, binary, a.workers, a.iters).items():
                if stage not in order:
                    order.append(stage)
                runs[stage][name].append(v)
                if stage == a.detail:
                    print(f"{stage} {name}: wall {v[0]:.1f} ms, client CPU {v[1]:.1f} ms, server CPU {v[2]:.1f} ms, "
                          f"retransmits {v[3]}, SACK recoveries {v[4]}, client page faults {v[5]}", file=sys.stderr)
        print(f"round {r + 1}/{a.rounds} done", file=sys.stderr)
    names = [s[0] for s in servers]
    print("| stage | " + " | ".join(f"{n}: wall / client CPU / server CPU, ms; retransmits, SACK recoveries; client page faults" for n in names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for stage in order:
        cells = []
        for n in names:
            v = runs[stage][n]
            if not v:
                cells.append("—")
                continue
            # A process that exited before a stage's last line has no CPU
            # time to read there: those runs are left out of that median.
            med = []
            for i in (0, 1, 2, 5):
                known = [x[i] for x in v if not math.isnan(x[i])]
                med.append(f"{statistics.median(known):.1f}" if known else "—")
            cells.append(f"{med[0]} / {med[1]} / {med[2]}; {sum(x[3] for x in v)}, {sum(x[4] for x in v)}; {med[3]}")
        print(f"| {stage} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
