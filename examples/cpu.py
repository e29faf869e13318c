"""A CPU-bound ringmaster app: each request burns about 1 ms of pure Python.

Useful to compare worker modes (gil, subinterpreters, free-threaded) and worker
counts, where the handler, not the I/O, is the bottleneck:

    ringmaster -w 2 examples/cpu.py
    wrk -t1 -c16 -d10s http://127.0.0.1:8000/

`?n=ITERATIONS` changes the amount of work (default 20000, about 1 ms on the
machines this project runs on).
"""

from urllib.parse import parse_qs

DEFAULT_N = 20000


def work(n):
    # Integer arithmetic in a Python loop: no C extension, no I/O, holds the GIL.
    acc = 0
    for i in range(n):
        acc = (acc * 31 + i) % 1000003
    return acc


def app(request):
    n = DEFAULT_N
    qs = request.query_string
    if qs:
        if isinstance(qs, (bytes, bytearray, memoryview)):
            qs = bytes(qs).decode("latin-1")
        values = parse_qs(qs).get("n")
        if values:
            n = max(0, min(int(values[0]), 10_000_000))
    return f"{work(n)}\n"
