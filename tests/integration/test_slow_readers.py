"""Slow readers hold no worker thread, nor an ASGI event loop (issue 14).

A streamed response (a native iterable, a WSGI generator) whose client reads
slowly is parked once half of its send window is unsent: the thread serves
other requests meanwhile and goes on with the stream when the client has
read (worker/serve.c, stream.h). Here a worker with ONE thread streams 4 MiB
to two clients that read nothing for a while: other clients must still be
answered at once, /metrics must show the parked responses, and both slow
clients must then receive their whole bodies intact.
"""

import http.client
import re
import socket
import time

import pytest

from conftest import APPS, SLOW, free_port, wait_for

MIB = 4


def native_body():
    return b"".join(i.to_bytes(4, "big") * 16384 for i in range(MIB * 16))


def wsgi_body():
    return b"".join(bytes([65 + i % 26]) * 65536 for i in range(MIB * 16))


CASES = {
    "native": (APPS / "streaming.py", f"/blocks?mib={MIB}", native_body, "/gen?n=2&size=3",
               b"AAABBB"),
    "wsgi": (APPS / "wsgi_edge.py", f"/stream?n={MIB * 16}&size=65536", wsgi_body,
             "/stream?n=2&size=3", b"AAABBB"),
    # ASGI never holds a thread; what is checked is that the event loop is
    # never held either: a body message larger than the window goes in parts.
    "asgi-one-message": (APPS / "asgi_stream.py", f"/one?mib={MIB}", native_body, "/small",
                         b"AAABBB"),
    "asgi-pieces": (APPS / "asgi_stream.py", f"/pieces?mib={MIB}", native_body, "/small",
                    b"AAABBB"),
}


def fetch(port, path, timeout=10.0):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout * SLOW)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def metric_sum(port, name):
    status, body = fetch(port, "/metrics")
    assert status == 200
    values = re.findall(r"^" + re.escape(name) + r"\{[^}]*\} (\S+)$", body.decode(), re.M)
    return sum(float(v) for v in values)


def slow_client(port, path):
    """A client that asks for `path` and reads nothing yet: a small receive
    buffer, so the server's window fills within a few chunks."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    sock.settimeout(30 * SLOW)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    return sock


def read_whole(sock):
    resp = http.client.HTTPResponse(sock)
    resp.begin()
    return resp.status, resp.read()


@pytest.mark.parametrize("interface", sorted(CASES))
def test_slow_readers_hold_no_thread(start_server, interface):
    app, slow_path, body, fast_path, fast_body = CASES[interface]
    mport = free_port()
    server = start_server(app=app, workers=1,
                          args=["--threads", "1", "--metrics", f"127.0.0.1:{mport}"])
    assert fetch(server.port, fast_path) == (200, fast_body)
    slow = [slow_client(server.port, slow_path) for _ in range(2)]
    try:
        if interface.startswith("asgi"):
            time.sleep(0.5 * SLOW)  # both windows fill; nothing parks: the loop waits
        else:
            assert wait_for(
                lambda: metric_sum(mport, "ringmaster_worker_responses_parked") >= 2,
                10 * SLOW), (f"two slow readers of {slow_path}: no parked responses in "
                             f"/metrics\n{server.stderr()}")
        worst = 0.0
        for i in range(20):
            t0 = time.monotonic()
            got = fetch(server.port, fast_path, timeout=5.0)
            worst = max(worst, time.monotonic() - t0)
            assert got == (200, fast_body), f"request {i} while two clients read slowly: {got}"
        assert worst < 1.0 * SLOW, (
            f"with the worker's only thread streaming to two slow readers, a GET took "
            f"{worst:.2f} s; a parked stream must not hold the thread")
        assert metric_sum(mport, "ringmaster_worker_threads_waiting_on_clients") == 0
        want = body()
        for sock in slow:
            status, got = read_whole(sock)
            assert status == 200 and got == want, (
                f"slow reader of {slow_path}: status {status}, {len(got)} bytes, "
                f"expected {len(want)} bytes intact")
    finally:
        for sock in slow:
            sock.close()
    assert wait_for(lambda: metric_sum(mport, "ringmaster_worker_responses_parked") == 0,
                    5 * SLOW), "parked responses left after their clients read everything"


def test_a_parked_stream_whose_client_leaves_is_closed(start_server, tmp_path):
    """The client of a parked stream hangs up: the stream ends at its next
    look (the supervisor marks the client gone), the iterable's close() runs,
    and the thread serves on."""
    mark = tmp_path / "closed"
    mport = free_port()
    server = start_server(app=APPS / "streaming.py", workers=1,
                          args=["--threads", "1", "--metrics", f"127.0.0.1:{mport}"])
    sock = slow_client(server.port, f"/blocks?mib=64&mark={mark}")
    assert wait_for(lambda: metric_sum(mport, "ringmaster_worker_responses_parked") >= 1,
                    10 * SLOW), server.stderr()
    sock.close()
    assert wait_for(mark.exists, 10 * SLOW), (
        f"close() of a parked body did not run after its client left\n{server.stderr()}")
    produced = int(mark.read_text().split(", ")[1].split()[0])
    assert produced < 64 << 20, mark.read_text()
    assert fetch(server.port, "/gen?n=2&size=3") == (200, b"AAABBB")
    assert wait_for(lambda: metric_sum(mport, "ringmaster_worker_responses_parked") == 0,
                    5 * SLOW)
