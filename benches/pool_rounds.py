#!/usr/bin/env python3
"""Pool the psrt-cli rounds of several benches/reference.sh runs.

Each run of `benches/reference.sh` keeps the reference client's output of
every round in target/bench/reference-<timestamp>/cli-<server>-<round>.log.
In a round both servers ran back to back, so the ratio psrtd / reference
of one round shares the VM's mood of that moment; this script takes those
per-round ratios from all the given runs together and prints, per stage,
their geometric mean with its 95 % interval (Student's t on the logs).
reference.sh runs it on its own run for the last column of its table;
given several runs, it gives the same figure over more rounds.

Usage:
  python3 benches/pool_rounds.py target/bench/reference-A target/bench/reference-B ...

Pool only runs of the same builds and the same harness (reference.sh
reverses the order of the servers every other round since the seventh
session; earlier runs did not). Used for BENCHMARKS.md, "Counterbalanced
rounds".
"""

import math
import os
import re
import statistics
import sys

# Two-sided 95 % quantiles of Student's t for 1..9 degrees of freedom,
# then rounded values for larger samples.
T95 = [12.7, 4.30, 3.18, 2.78, 2.57, 2.45, 2.36, 2.31, 2.26]


def t95(df):
    if df <= len(T95):
        return T95[df - 1]
    return 2.2 if df < 15 else 2.1 if df < 30 else 2.0


def stage_rates(path):
    """iters/s of every stage in one psrt-cli --benchmark output."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", open(path, encoding="utf-8", errors="replace").read())
    rates = {}
    table = text.split("Benchmark results", 1)[-1]
    for m in re.finditer(r"^\s*((?:pub-|subscribe|unsubscribe)\S*)\s+\S+\s+\S+\s+\S+\s+([\d_]+)\s*$", table, re.M):
        rates[m.group(1)] = float(m.group(2).replace("_", ""))
    return rates


def main():
    runs = sys.argv[1:]
    if not runs or any(a in ("-h", "--help") for a in runs):
        print(__doc__)
        return 0 if runs else 2
    logs = {}  # stage -> [log(psrtd / reference) per round]
    for d in runs:
        rounds = 0
        while os.path.exists(os.path.join(d, f"cli-psrtd-{rounds + 1}.log")):
            rounds += 1
            p = stage_rates(os.path.join(d, f"cli-psrtd-{rounds}.log"))
            ref = os.path.join(d, f"cli-reference-{rounds}.log")
            r = stage_rates(ref) if os.path.exists(ref) else {}
            for stage, v in p.items():
                if v > 0 and r.get(stage, 0) > 0:
                    logs.setdefault(stage, []).append(math.log(v / r[stage]))
        if rounds == 0:
            print(f"{d}: no cli-psrtd-1.log (not a reference.sh run with the cli part?)", file=sys.stderr)
            return 2
    print("| stage | rounds | psrtd ÷ reference per round: geometric mean (95 % interval) |")
    print("|---|---|---|")
    for stage in sorted(logs):
        x = logs[stage]
        if len(x) < 3:
            print(f"| {stage} | {len(x)} | — |")
            continue
        mu = statistics.mean(x)
        half = t95(len(x) - 1) * statistics.stdev(x) / math.sqrt(len(x))
        print(f"| {stage} | {len(x)} | {math.exp(mu):.2f}× ({math.exp(mu - half):.2f}–{math.exp(mu + half):.2f}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
