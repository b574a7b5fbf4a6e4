"""One psrt-py client publishing in a loop, as a plant's Python code does.

Usage: python psrt_py_publish.py HOST:PORT N

Connects with the published client (PyPI `psrt`, control socket only),
publishes N 16-byte messages to `py/bench`, each waiting for its OK, and
prints `rate=<publishes per second>`. Used by benches/reference.sh.
"""

import sys
import time

import psrt


def main():
    path, n = sys.argv[1], int(sys.argv[2])
    client = psrt.Client(path=path)
    client.need_data_socket = False
    client.connect()
    payload = b"x" * 16
    start = time.perf_counter()
    for _ in range(n):
        client.publish("py/bench", payload)
    elapsed = time.perf_counter() - start
    client.bye()
    print(f"rate={n / elapsed:.0f}")


if __name__ == "__main__":
    main()
