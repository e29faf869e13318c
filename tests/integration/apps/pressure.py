"""An app for the overload tests (test_pressure.py): it records which requests
it ran, so a test can tell "answered 503 without running" from "ran late".

Routes:
    /sleep?ms=N&id=X   records X, sleeps N ms, answers "ran X" and the pid
    /echo?ms=N  POST   sleeps N ms, then echoes the body
    /big?kb=N          N KiB of b"x" (default 2048)
    /ran               the ids recorded so far, comma-separated (this process)
    /ranpid            "PID:" and the same list
    /pid               the worker's pid
"""

import os
import time

RAN = []


def _query(request):
    qs = request.query_string
    if isinstance(qs, (bytes, bytearray, memoryview)):
        qs = bytes(qs).decode("latin-1")
    out = {}
    for part in (qs or "").split("&"):
        if part:
            key, _, val = part.partition("=")
            out[key] = val
    return out


def app(request):
    path = request.path
    if isinstance(path, (bytes, bytearray, memoryview)):
        path = bytes(path).decode("latin-1")
    q = _query(request)
    if path == "/sleep":
        rid = q.get("id", "")
        RAN.append(rid)
        time.sleep(int(q.get("ms", "100")) / 1000.0)
        return f"ran {rid} pid {os.getpid()}".encode()
    if path == "/echo":
        body = bytes(request.body)
        time.sleep(int(q.get("ms", "0")) / 1000.0)
        return body
    if path == "/big":
        return b"x" * (int(q.get("kb", "2048")) * 1024)
    if path == "/ran":
        return ",".join(RAN).encode()
    if path == "/ranpid":
        return f"{os.getpid()}:{','.join(RAN)}".encode()
    if path == "/pid":
        return str(os.getpid()).encode()
    return b"ok\n"
