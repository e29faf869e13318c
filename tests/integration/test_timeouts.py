"""Timeouts and load shedding in the supervisor (docs/http.md).

Each test starts its own server with short timeouts, so the suite stays fast;
the bounds allow for the event loop's 500 ms tick and a loaded 2-core box.
"""

import socket
import threading
import time

from conftest import APPS, SLOW

BASIC = APPS / "basic.py"
TICK = 0.5  # the supervisor checks deadlines at least this often


def connect(server, timeout=10.0 * SLOW):
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_all(sock):
    """Everything until EOF (or the socket timeout)."""
    data = b""
    try:
        while True:
            part = sock.recv(65536)
            if not part:
                break
            data += part
    except (socket.timeout, ConnectionResetError):
        pass
    return data


def status_of(data):
    line = data.split(b"\r\n", 1)[0]
    parts = line.split(b" ")
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


def get(server, path):
    sock = connect(server)
    with sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        return read_all(sock)


def warm(server):
    """Wait until a worker answers, so queue deadlines do not count start-up."""
    deadline = time.monotonic() + 15 * SLOW
    while time.monotonic() < deadline:
        if status_of(get(server, "/")) == 200:
            return
        time.sleep(0.05)
    raise AssertionError("no worker answered GET / within 15 s")


def test_header_timeout_answers_408_and_closes(start_server):
    server = start_server(BASIC, args=("--header-timeout", "1"))
    sock = connect(server)
    with sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n")  # never finished
        t0 = time.monotonic()
        data = read_all(sock)
        took = time.monotonic() - t0
    assert status_of(data) == 408, f"sent a partial head and waited; got {data[:80]!r}; expected 408"
    assert 0.9 <= took <= 1 + 2 * TICK + 1.0 * SLOW, f"408 after {took:.2f} s; expected ~1 s"


def test_dribbling_a_head_does_not_extend_the_header_timeout(start_server):
    """Slowloris: one byte every 0.2 s keeps the socket busy but the head
    timeout runs from the first byte."""
    server = start_server(BASIC, args=("--header-timeout", "1"))
    sock = connect(server)
    head = b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"a" * 40 + b"\r\n\r\n"
    t0 = time.monotonic()
    got = b""
    with sock:
        try:
            for byte in head:
                sock.sendall(bytes([byte]))
                time.sleep(0.2)
        except (BrokenPipeError, ConnectionResetError):
            pass
        got = read_all(sock)
    took = time.monotonic() - t0
    assert status_of(got) == 408, f"dribbled {len(head)} bytes at 5/s; got {got[:80]!r}; expected 408"
    assert took < 1 + 2 * TICK + 1.5 * SLOW, f"closed after {took:.2f} s; expected ~1 s"


def test_body_timeout_answers_408(start_server):
    server = start_server(BASIC, args=("--body-timeout", "1"))
    sock = connect(server)
    with sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
        data = read_all(sock)
    assert status_of(data) == 408, f"sent 3 of 10 body bytes; got {data[:80]!r}; expected 408"


def test_body_progress_restarts_the_body_timeout(start_server):
    server = start_server(BASIC, args=("--body-timeout", "1"))
    sock = connect(server)
    body = b"0123456789"
    with sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                     b"Content-Length: 10\r\n\r\n")
        for i in range(5):  # 2.5 s in all, never 1 s without a byte
            sock.sendall(body[2 * i:2 * i + 2])
            time.sleep(0.5)
        data = read_all(sock)
    assert status_of(data) == 200 and data.endswith(body), (
        f"sent a 10-byte body 2 bytes every 0.5 s; got {data[-80:]!r}; expected 200 echoing it")


def test_idle_keepalive_connection_is_closed(start_server):
    server = start_server(BASIC, args=("--keepalive-timeout", "1"))
    sock = connect(server)
    with sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        first = sock.recv(65536)
        t0 = time.monotonic()
        rest = read_all(sock)
        took = time.monotonic() - t0
    assert status_of(first) == 200, f"got {first[:80]!r}"
    assert rest == b"", f"after the response, got {rest[:80]!r} instead of a silent close"
    assert 0.9 <= took <= 1 + 2 * TICK + 1.0 * SLOW, f"closed after {took:.2f} s; expected ~1 s"


def test_request_past_its_queue_deadline_is_503_without_running(start_server):
    """One worker, one thread: a request stuck behind a 2 s handler waits past
    --queue-timeout 0.5 and must be answered 503 without running the app."""
    # --threads 1 even when the suite runs a mode with more (conftest).
    server = start_server(BASIC, workers=1, args=("--queue-timeout", "0.5", "--threads", "1"))
    warm(server)
    results = {}

    def slow():
        results["slow"] = get(server, "/sleep?ms=2000")

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.3)  # the slow request is running
    results["late"] = get(server, "/id?id=late")
    t.join(30)
    assert status_of(results["slow"]) == 200, f"slow request: {results['slow'][:80]!r}"
    late = results["late"]
    assert status_of(late) == 503, f"queued request: got {late[:120]!r}; expected 503"
    assert b"retry-after" in late.lower(), f"503 without Retry-After: {late[:200]!r}"
    assert b"id=late" not in late, "the app ran the request that was past its deadline"


def test_queue_bound_sheds_load_with_503(start_server):
    """--worker-queue 1 and --max-queued 1: while the only worker is busy, one
    request may wait; the next gets 503 with Retry-After at once."""
    server = start_server(BASIC, workers=1,
                          args=("--worker-queue", "1", "--max-queued", "1"))
    warm(server)
    results = {}

    def call(name, path):
        results[name] = get(server, path)

    busy = threading.Thread(target=call, args=("busy", "/sleep?ms=1500"))
    busy.start()
    time.sleep(0.3)
    waiting = threading.Thread(target=call, args=("waiting", "/id?id=w"))
    waiting.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    shed = get(server, "/id?id=shed")
    took = time.monotonic() - t0
    busy.join(30)
    waiting.join(30)
    assert status_of(shed) == 503, f"third request: got {shed[:120]!r}; expected 503"
    assert b"retry-after" in shed.lower(), f"503 without Retry-After: {shed[:200]!r}"
    assert took < 1.0 * SLOW, f"the 503 took {took:.2f} s; load shedding must answer at once"
    assert status_of(results["busy"]) == 200 and status_of(results["waiting"]) == 200, (
        f"busy: {results['busy'][:60]!r}, waiting: {results['waiting'][:60]!r}")


def test_handler_past_timeout_gets_504_and_worker_is_replaced(start_server):
    server = start_server(BASIC, workers=1, args=("--timeout", "1"))
    warm(server)
    t0 = time.monotonic()
    data = get(server, "/sleep?ms=5000")
    took = time.monotonic() - t0
    assert status_of(data) == 504, f"GET /sleep?ms=5000 with --timeout 1: got {data[:120]!r}"
    assert took < 1 + 1 + 1.0 * SLOW, f"504 after {took:.2f} s; expected within timeout + 1 s"
    deadline = time.monotonic() + 15 * SLOW
    while time.monotonic() < deadline:
        data = get(server, "/")
        if status_of(data) == 200:
            break
        time.sleep(0.05)
    assert status_of(data) == 200, f"after the 504, GET / got {data[:80]!r}; expected 200"


def test_requests_queued_behind_a_killed_request_run_elsewhere(start_server):
    """One worker: a hung request is killed for --timeout; the request queued
    behind it on the same lane never started, so it must be served by the
    replacement worker (200), not answered 502."""
    server = start_server(BASIC, workers=1, args=("--timeout", "1"))
    warm(server)
    results = {}

    def call(name, path):
        results[name] = get(server, path)

    hung = threading.Thread(target=call, args=("hung", "/sleep?ms=5000"))
    hung.start()
    time.sleep(0.3)
    queued = threading.Thread(target=call, args=("queued", "/id?id=behind"))
    queued.start()
    hung.join(30)
    queued.join(30)
    assert status_of(results["hung"]) == 504, f"hung request: {results['hung'][:80]!r}"
    q = results["queued"]
    assert status_of(q) == 200 and b"id=behind" in q, (
        f"request queued behind it: got {q[:120]!r}; expected 200 from the replacement")
