#!/usr/bin/env python3
"""How fast the kernel copies a queued 1 MiB message into a user buffer,
by the buffer's offset from a page boundary and the sender's write pattern.

Over loopback TCP a sender writes PREFIX bytes (their own send), then 1 MiB;
once all of it is queued, the receiver times the `recv_into` calls that
copy the 1 MiB into a buffer starting DST_OFF bytes past a page boundary.
Prints the median time (µs) of REPS copies per (offset, prefix).

On the machine of BENCHMARKS.md ("Buffer alignment") some pairs take 5× as
long as others: the copy's speed depends on where the destination sits
relative to the source within a page. glibc puts a large block 16 bytes
past a page, which with the reference client's traffic was a slow pair;
psrtd's binaries allocate large blocks page-aligned (src/page_alloc.rs).

Usage:  python3 benches/recv_alignment.py [--reps 30] 0,8,16,32,48,64 0,6,16,32
"""

import argparse
import ctypes
import socket
import statistics
import time

SIZE = 1 << 20


def median_copy_us(dst_off, prefix, reps):
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)
    tx = socket.create_connection(ls.getsockname())
    rx, _ = ls.accept()
    tx.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    raw = bytearray(SIZE + 8192)
    addr = ctypes.addressof((ctypes.c_char * len(raw)).from_buffer(raw))
    start = (-addr) % 4096 + dst_off
    dst = memoryview(raw)[start : start + SIZE]
    head = memoryview(bytearray(4096))
    data = bytes(SIZE)
    times = []
    for _ in range(reps):
        if prefix:
            tx.sendall(head[:prefix])
        tx.sendall(data)
        time.sleep(0.002)  # everything queued before the copy is timed
        got = 0
        while got < prefix:
            got += rx.recv_into(head[got:prefix])
        t0 = time.perf_counter_ns()
        got = 0
        while got < SIZE:
            got += rx.recv_into(dst[got:])
        times.append(time.perf_counter_ns() - t0)
    for s in (tx, rx, ls):
        s.close()
    return statistics.median(times) / 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("offsets", help="destination offsets from a page boundary, comma-separated")
    ap.add_argument("prefixes", help="bytes the sender writes before the message, comma-separated")
    a = ap.parse_args()
    offsets = [int(x) for x in a.offsets.split(",")]
    prefixes = [int(x) for x in a.prefixes.split(",")]
    print("| dst offset \\ prefix | " + " | ".join(str(p) for p in prefixes) + " |")
    print("|---" * (len(prefixes) + 1) + "|")
    for off in offsets:
        cells = [f"{median_copy_us(off, p, a.reps):.0f}" for p in prefixes]
        print(f"| {off} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
