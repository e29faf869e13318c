"""--metrics HOST:PORT: /healthz, /readyz and /metrics on their own socket
(docs/metrics.md)."""

import http.client
import os
import signal
import socket
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import APPS, SLOW, free_port, run_to_exit, wait_for

TIMEOUT = 10.0 * SLOW


def probe(port, path, method="GET"):
    """One request to the metrics endpoint -> (status, body text)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode("utf-8")
    finally:
        conn.close()


def raw_probe(port, data):
    """Send raw bytes to the metrics endpoint; return everything it answers."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as s:
        s.sendall(data)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk


def start_with_metrics(start_server, app=APPS / "basic.py", args=(), **kwargs):
    mport = free_port()
    server = start_server(app=app, args=["--metrics", f"127.0.0.1:{mport}", *args], **kwargs)
    server.metrics_port = mport
    return server


def wait_ready(server, timeout=15.0 * SLOW):
    ok = wait_for(lambda: probe(server.metrics_port, "/readyz")[0] == 200, timeout)
    assert ok, f"/readyz never answered 200\n--- stderr ---\n{server.stderr()}"


def test_healthz_and_readyz(start_server):
    server = start_with_metrics(start_server)
    assert probe(server.metrics_port, "/healthz") == (200, "ok\n")
    wait_ready(server)
    assert probe(server.metrics_port, "/readyz") == (200, "ready\n")
    assert probe(server.metrics_port, "/healthz?verbose=1")[0] == 200
    assert probe(server.metrics_port, "/readyz", method="HEAD") == (200, "")


def test_readyz_503_until_a_worker_is_ready(start_server):
    server = start_with_metrics(start_server, app=APPS / "slow_import.py", workers=1,
                                env={"SLOW_IMPORT_S": str(3 * SLOW)})
    # The app sleeps 3 s on import: no worker can be ready yet, but the loop runs.
    status, body = probe(server.metrics_port, "/readyz")
    assert (status, body) == (503, "no worker ready\n")
    assert probe(server.metrics_port, "/healthz") == (200, "ok\n")
    wait_ready(server)


def test_unknown_paths_and_bad_requests(start_server):
    server = start_with_metrics(start_server)
    port = server.metrics_port
    assert probe(port, "/")[0] == 404
    assert probe(port, "/metrics/x")[0] == 404
    assert probe(port, "/healthz", method="POST")[0] == 405
    assert raw_probe(port, b"garbage\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    # A head that never ends within the bound is refused, not buffered.
    big = b"GET /metrics HTTP/1.1\r\n" + b"X-Pad: " + b"a" * 8192 + b"\r\n\r\n"
    try:
        answer = raw_probe(port, big)
    except ConnectionResetError:
        answer = b"HTTP/1.1 431 (reset before it was read)"
    assert answer.startswith(b"HTTP/1.1 431 ")
    # A client that sends nothing does not stop others from being served.
    idle = [socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) for _ in range(8)]
    try:
        assert probe(port, "/healthz")[0] == 200
    finally:
        for s in idle:
            s.close()
    server.assert_running()


def test_metrics_env_variable(start_server):
    mport = free_port()
    server = start_server(env={"RINGMASTER_METRICS": f"127.0.0.1:{mport}"})
    assert wait_for(lambda: probe(mport, "/healthz")[0] == 200, TIMEOUT)
    server.assert_running()


@pytest.mark.parametrize("value", ["nocolon", "127.0.0.1:notaport", "127.0.0.1:70000"])
def test_bad_metrics_flag(value):
    rc, err, _, _ = run_to_exit(["--metrics", value, str(APPS / "basic.py")], timeout=10)
    assert rc != 0
    assert "--metrics" in err, err
