#!/usr/bin/env python3
"""Per-stage view of the reference client's benchmark, server by server.

`psrt-cli --benchmark` prints one line when a stage starts and one when it
completes. This script runs it against each given server in turn (one fresh
server per run, ROUNDS rounds, alternating) and, at those two lines, reads:

  - the wall clock;
  - the CPU time of every thread of the client and of the server
    (/proc/PID/task/*/schedstat: no tracer attached, nothing slowed down);
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


def cpu_ms(pid):
    """CPU time of all the process's threads, or NaN once it has exited."""
    total, seen = 0, False
    for f in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        try:
            with open(f) as fh:
                total += int(fh.read().split()[0])
            seen = True
        except (OSError, ValueError, IndexError):
            pass
    return total / 1e6 if seen else math.nan


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
                started[m.group(1)] = (time.monotonic(), cpu_ms(client.pid), cpu_ms(server.pid))
                continue
            m = re.search(r"stage completed: (\S+) ", line)
            if m and m.group(1) in started:
                t0, c0, s0 = started[m.group(1)]
                tcp = tcp_counters(reset=False)
                stages[m.group(1)] = (
                    (time.monotonic() - t0) * 1e3,
                    cpu_ms(client.pid) - c0,
                    cpu_ms(server.pid) - s0,
                    tcp.get(TCP[0], 0),
                    tcp.get(TCP[1], 0),
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
        for name, config, binary in servers:
            for stage, v in one_run(a.cli, a.addr, config, binary, a.workers, a.iters).items():
                if stage not in order:
                    order.append(stage)
                runs[stage][name].append(v)
        print(f"round {r + 1}/{a.rounds} done", file=sys.stderr)
    names = [s[0] for s in servers]
    print("| stage | " + " | ".join(f"{n}: wall / client CPU / server CPU, ms; retransmits, SACK recoveries" for n in names) + " |")
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
            for i in range(3):
                known = [x[i] for x in v if not math.isnan(x[i])]
                med.append(f"{statistics.median(known):.1f}" if known else "—")
            cells.append(f"{med[0]} / {med[1]} / {med[2]}; {sum(x[3] for x in v)}, {sum(x[4] for x in v)}")
        print(f"| {stage} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
