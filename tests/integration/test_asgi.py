"""ASGI 3.0 end to end: the real binaries, real sockets, stdlib clients.

The app is apps/asgi_edge.py, plain ASGI with one route per behaviour:
scope, request bodies in pieces, streamed and large responses, disconnects,
exceptions before and after the response started, trailers, pathsend,
lifespan (state, failure, shutdown) and many requests in flight on one
thread. FastAPI and Starlette: test_asgi_frameworks.py.

Every failure message says what was sent, what came back and what was expected.
"""

import http.client
import json
import os
import socket
import threading
import time

import pytest

from conftest import THREADS, APPS, SLOW, run_to_exit, wait_for

TIMEOUT = 10.0 * SLOW
EDGE = APPS / "asgi_edge.py"
ASGI = ["--interface", "asgi"]


def request(server, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
    try:
        chunked = (headers or {}).get("Transfer-Encoding") == "chunked"
        conn.request(method, path, body=body, headers=headers or {}, encode_chunked=chunked)
        r = conn.getresponse()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.read()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def edge():
    from conftest import ServerFactory

    factory = ServerFactory()
    server = factory(app=EDGE, workers=1, args=ASGI)
    yield server
    errors = factory.stop_all()
    if errors:
        pytest.fail("\n\n".join(errors))


# ---------------------------------------------------------------- scope and basics

def test_hello(edge):
    status, headers, body = request(edge, "GET", "/")
    assert (status, body) == (200, b"Hello, ASGI!\n"), f"GET /: {status} {body!r}"
    assert headers["content-length"] == "13", headers
    assert headers["content-type"] == "text/plain", headers


def test_auto_detects_asgi(start_server):
    server = start_server(app=EDGE, workers=1)
    status, _, body = request(server, "GET", "/")
    assert (status, body) == (200, b"Hello, ASGI!\n")
    assert wait_for(lambda: "ASGI interface (auto" in server.stderr(), TIMEOUT), server.stderr()


def test_scope(edge):
    status, _, body = request(edge, "GET", "/scope?a=1&b=%20x", headers={"X-Thing": "Value"})
    assert status == 200, body
    scope = json.loads(body)
    assert scope["type"] == "http"
    assert scope["asgi"]["version"] == "3.0"
    assert scope["http_version"] == "1.1"
    assert scope["method"] == "GET"
    assert scope["scheme"] == "http"
    assert scope["path"] == "/scope"
    assert scope["raw_path"] == "/scope"
    assert scope["query_string"] == "a=1&b=%20x"
    assert scope["root_path"] == ""
    assert ["x-thing", "Value"] in scope["headers"], scope["headers"]
    assert scope["client"][0] == "127.0.0.1" and isinstance(scope["client"][1], int)
    assert scope["server"] == ["127.0.0.1", edge.port]
    assert scope["state"] == {"started": "yes"}
    assert scope["types"]["raw_path"] == "bytes" and scope["types"]["query_string"] == "bytes"
    assert scope["types"]["client"] == "tuple"


def test_scope_from_trusted_proxy(edge):
    # The test client is 127.0.0.1, trusted by the default --forwarded-allow-ips.
    status, _, body = request(edge, "GET", "/scope", headers={
        "X-Forwarded-For": "203.0.113.7, 127.0.0.1", "X-Forwarded-Proto": "https"})
    scope = json.loads(body)
    assert scope["client"] == ["203.0.113.7", 0] and scope["scheme"] == "https", scope


def test_scope_proxy_headers_of_untrusted_peer(start_server):
    server = start_server(app=EDGE, workers=1, args=ASGI + ["--forwarded-allow-ips", "10.0.0.1"])
    status, _, body = request(server, "GET", "/scope", headers={
        "X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"})
    scope = json.loads(body)
    assert scope["client"][0] == "127.0.0.1" and scope["scheme"] == "http", scope


def test_scope_path_is_decoded(edge):
    status, _, body = request(edge, "GET", "/%73cope/caf%C3%A9")
    # /scope/café is not a route: 404 proves the path was decoded to look it up.
    assert status == 404, body
    status, _, body = request(edge, "GET", "/%73cope")
    scope = json.loads(body)
    assert scope["path"] == "/scope" and scope["raw_path"] == "/%73cope", scope


def test_http10_and_head(edge):
    conn = http.client.HTTPConnection("127.0.0.1", edge.port, timeout=TIMEOUT)
    conn._http_vsn, conn._http_vsn_str = 10, "HTTP/1.0"
    conn.request("GET", "/scope")
    r = conn.getresponse()
    assert json.loads(r.read())["http_version"] == "1.0"
    conn.close()
    status, headers, body = request(edge, "HEAD", "/")
    assert (status, body) == (200, b""), f"HEAD /: {status} {body!r}"
    assert headers["content-length"] == "13", headers


def test_keep_alive(edge):
    conn = http.client.HTTPConnection("127.0.0.1", edge.port, timeout=TIMEOUT)
    for i in range(20):
        conn.request("GET", "/")
        r = conn.getresponse()
        assert (r.status, r.read()) == (200, b"Hello, ASGI!\n"), f"request {i} on one connection"
    conn.close()


# ---------------------------------------------------------------- bodies

def test_small_body_one_piece(edge):
    status, headers, body = request(edge, "POST", "/echo", body=b"hello body")
    assert (status, body) == (200, b"hello body")
    assert headers["x-pieces"] == "1", headers


def test_large_body_in_pieces(edge):
    data = os.urandom(700 * 1024)
    status, headers, body = request(edge, "POST", "/echo", body=data)
    assert status == 200 and body == data, f"POST 700 KiB: {status}, {len(body)} bytes back"
    assert int(headers["x-pieces"]) > 1, f"a 700 KiB body came as {headers['x-pieces']} piece(s)"


def test_chunked_upload(edge):
    def gen():
        for i in range(50):
            yield b"%05d" % i
    status, _, body = request(edge, "POST", "/echo", body=gen(),
                              headers={"Transfer-Encoding": "chunked"})
    assert body == b"".join(b"%05d" % i for i in range(50)), body[:100]


def test_streamed_response(edge):
    status, headers, body = request(edge, "GET", "/stream?5")
    assert status == 200
    assert headers.get("transfer-encoding") == "chunked", headers
    assert body == b"".join(b"piece %d\n" % i for i in range(5)), body


def test_streamed_response_http10_closes(edge):
    s = socket.create_connection(("127.0.0.1", edge.port), timeout=TIMEOUT)
    s.sendall(b"GET /stream?3 HTTP/1.0\r\n\r\n")
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"chunked" not in head.lower(), head
    assert body == b"piece 0\npiece 1\npiece 2\n", data


def test_large_response_with_window(edge):
    n = 3 * 1024 * 1024 + 17
    status, headers, body = request(edge, "GET", f"/big?{n}")
    assert status == 200 and len(body) == n and set(body) == {ord("x")}, len(body)
    assert headers["content-length"] == str(n)


def test_slow_reader_gets_everything(edge):
    n = 2 * 1024 * 1024
    s = socket.create_connection(("127.0.0.1", edge.port), timeout=TIMEOUT)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(f"GET /big?{n} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    data = b""
    time.sleep(0.5)
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    assert data.endswith(b"x" * 1000) and len(data.partition(b"\r\n\r\n")[2]) == n


def test_trailers(edge):
    s = socket.create_connection(("127.0.0.1", edge.port), timeout=TIMEOUT)
    s.sendall(b"GET /trailers HTTP/1.1\r\nHost: x\r\nTE: trailers\r\nConnection: close\r\n\r\n")
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    assert b"transfer-encoding: chunked" in data.lower(), data
    assert data.endswith(b"4\r\ndata\r\n0\r\nx-checksum: abc\r\n\r\n"), data


def test_pathsend(edge):
    status, headers, body = request(edge, "GET", "/pathsend")
    assert status == 200 and body == EDGE.read_bytes(), body[:80]
    assert headers["content-length"] == str(len(body))


# ---------------------------------------------------------------- failures

def test_exception_before_start_is_500(edge):
    status, _, body = request(edge, "GET", "/raise-before")
    assert status == 500, f"an app that raised before http.response.start: {status} {body!r}"
    assert wait_for(lambda: "boom before start" in edge.stderr(), TIMEOUT), edge.stderr()
    assert request(edge, "GET", "/")[0] == 200  # the thread serves on


def test_no_response_is_500(edge):
    status, _, _ = request(edge, "GET", "/no-response")
    assert status == 500
    assert wait_for(lambda: "without sending http.response.start" in edge.stderr(), TIMEOUT), edge.stderr()


def test_protocol_error_is_500(edge):
    status, _, _ = request(edge, "GET", "/bad-message")
    assert status == 500
    assert wait_for(lambda: "http.response.body before http.response.start" in edge.stderr(), TIMEOUT), edge.stderr()


def test_exception_after_start_closes(edge):
    conn = http.client.HTTPConnection("127.0.0.1", edge.port, timeout=TIMEOUT)
    conn.request("GET", "/raise-after")
    r = conn.getresponse()
    assert r.status == 200
    with pytest.raises(http.client.IncompleteRead) as e:
        r.read()
    assert e.value.partial == b"partial", e.value.partial
    conn.close()
    assert wait_for(lambda: "closed the connection" in edge.stderr(), TIMEOUT), edge.stderr()


def test_disconnect_while_streaming(edge, tmp_path):
    out = tmp_path / "outcome"
    s = socket.create_connection(("127.0.0.1", edge.port), timeout=TIMEOUT)
    s.sendall(f"GET /disconnect-wait?{out} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert b"tick" in s.recv(4096)
    s.close()
    assert wait_for(lambda: out.exists() and out.read_text(), TIMEOUT), "the app never noticed"
    text = out.read_text()
    assert text == "send raised ConnectionResetError; receive http.disconnect", text


def test_receive_reports_disconnect(edge, tmp_path):
    out = tmp_path / "outcome"
    s = socket.create_connection(("127.0.0.1", edge.port), timeout=TIMEOUT)
    s.sendall(f"POST /receive-disconnect?{out} HTTP/1.1\r\nHost: x\r\n"
              f"Content-Length: 3\r\n\r\nabc".encode())
    time.sleep(0.2)
    s.close()
    assert wait_for(lambda: out.exists() and out.read_text(), TIMEOUT), "receive() never returned"
    assert out.read_text() == "http.disconnect"


# ---------------------------------------------------------------- concurrency

def _parallel(server, n, path):
    results = []

    def one():
        try:
            results.append(request(server, "GET", path)[::2])
        except Exception as e:  # noqa: BLE001 - reported below
            results.append(repr(e))
    threads = [threading.Thread(target=one) for _ in range(n)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.monotonic() - started, results


def test_many_in_flight_on_one_thread(start_server):
    server = start_server(app=EDGE, workers=1, args=ASGI + ["--threads", "1"])
    elapsed, results = _parallel(server, 100, "/sleep?0.5")
    assert results == [(200, b"slept")] * 100, [r for r in results if r != (200, b"slept")][:3]
    # Serially this would take 50 s; concurrently a little over 0.5 s.
    assert elapsed < 2.0 * SLOW, f"100 requests sleeping 0.5 s each took {elapsed:.2f} s"


def test_max_concurrency_bounds_a_thread(start_server):
    server = start_server(app=EDGE, workers=1,
                          args=ASGI + ["--threads", "1", "--max-concurrency", "5"])
    elapsed, results = _parallel(server, 15, "/sleep?0.3")
    assert results == [(200, b"slept")] * 15, results[:3]
    # Five at a time: three rounds of 0.3 s at least.
    assert elapsed >= 0.85, f"15 requests with --max-concurrency 5 took {elapsed:.2f} s"


def test_bursts_with_blocking_handlers_lose_no_response(start_server):
    """64 keep-alive clients, 20 requests each, one in ten a handler that blocks
    the loop: the loop has requests queued while the supervisor sleeps, so
    the doorbell rings for finished responses are batched (worker/asgi.c);
    every response must still arrive, and in order on its connection."""
    server = start_server(app=EDGE, workers=1, args=ASGI + ["--threads", "1"])
    failures = []

    def client(k):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
        try:
            for i in range(20):
                path = "/block?0.01" if (k + i) % 10 == 0 else "/"
                conn.request("GET", path)
                r = conn.getresponse()
                body = r.read()
                want = b"blocked" if path.startswith("/block") else b"Hello, ASGI!\n"
                if r.status != 200 or body != want:
                    failures.append((k, i, path, r.status, body[:40]))
        except Exception as e:  # noqa: BLE001 - reported below
            failures.append((k, repr(e)))
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == [], failures[:5]


def test_two_capped_loops_share_the_lane(start_server):
    """--threads 2, --max-concurrency 2: the two loops share the lane's bell
    and each stops taking requests at its cap. 20 requests of 0.2 s: four at
    a time take 1 s; one loop alone would take 2 s."""
    server = start_server(app=EDGE, workers=1,
                          args=ASGI + ["--threads", "2", "--max-concurrency", "2"])
    elapsed, results = _parallel(server, 20, "/sleep?0.2")
    assert results == [(200, b"slept")] * 20, results[:3]
    assert elapsed >= 0.95, f"20 requests, 4 at a time, took only {elapsed:.2f} s"
    assert elapsed < 1.8 * SLOW, f"20 requests on 2 threads of 2 took {elapsed:.2f} s"


def test_threads_each_run_a_loop(start_server, tmp_path):
    startups = tmp_path / "startups"
    server = start_server(app=EDGE, workers=1, args=ASGI + ["--threads", "2"],
                          env={"ASGI_EDGE_STARTUP_FILE": str(startups)})
    elapsed, results = _parallel(server, 40, "/sleep?0.3")
    assert results == [(200, b"slept")] * 40, results[:3]
    # One lifespan startup per serving thread (each in its own interpreter in
    # subinterpreters mode), on two different threads.
    lines = startups.read_text().splitlines()
    assert len(lines) == 2 and len(set(lines)) == 2, lines


# ---------------------------------------------------------------- lifespan

def test_lifespan_state_is_a_copy_per_request(edge):
    for _ in range(2):
        status, _, body = request(edge, "GET", "/scope")
        assert json.loads(body)["state"] == {"started": "yes"}, body


def test_lifespan_shutdown_runs(start_server, tmp_path):
    marker = tmp_path / "shutdown"
    server = start_server(app=EDGE, workers=1, args=ASGI,
                          env={"ASGI_EDGE_SHUTDOWN_FILE": str(marker)})
    assert request(server, "GET", "/")[0] == 200
    server.assert_clean_stop()
    # Lifespan runs once per serving thread, so shutdown does too.
    assert marker.read_text() == "shutdown\n" * int(THREADS or 1)


@pytest.mark.parametrize("mode,args,needle", [
    ("fail", [], "database unreachable"),
    # An app that raises in auto mode is taken not to support lifespan (as
    # uvicorn does); with --lifespan on the error stops the worker.
    ("raise", ["--lifespan", "on"], "startup exploded"),
])
def test_lifespan_failure_stops_the_worker(mode, args, needle):
    rc, text, _, leftover = run_to_exit(ASGI + args + ["-w", "1", "-b", "127.0.0.1:0", str(EDGE)],
                                        timeout=TIMEOUT, env={"ASGI_EDGE_LIFESPAN": mode})
    assert rc not in (0, None), f"lifespan {mode}: exit {rc}\n{text}"
    assert "lifespan startup failed" in text and needle in text, text
    assert not leftover


def test_lifespan_unsupported_auto_serves(start_server):
    server = start_server(app=EDGE, workers=1, args=ASGI,
                          env={"ASGI_EDGE_LIFESPAN": "unsupported"})
    status, _, body = request(server, "GET", "/scope")
    assert status == 200 and "state" not in json.loads(body)["types"], body


def test_lifespan_on_requires_support():
    rc, text, _, leftover = run_to_exit(
        ASGI + ["--lifespan", "on", "-w", "1", "-b", "127.0.0.1:0", str(EDGE)],
        timeout=TIMEOUT, env={"ASGI_EDGE_LIFESPAN": "unsupported"})
    assert rc not in (0, None), text
    assert "lifespan" in text and "no lifespan here" in text, text
    assert not leftover


def test_lifespan_off(start_server):
    server = start_server(app=EDGE, workers=1, args=ASGI + ["--lifespan", "off"],
                          env={"ASGI_EDGE_LIFESPAN": "fail"})
    status, _, body = request(server, "GET", "/scope")
    assert status == 200 and "state" not in json.loads(body)["types"], body


# ---------------------------------------------------------------- flags

@pytest.mark.parametrize("args,needle", [
    (["--lifespan", "maybe"], "--lifespan: 'maybe' is not auto, on or off"),
    (["--loop", "trio"], "--loop: 'trio' is not auto, asyncio or uvloop"),
    (["--max-concurrency", "0"], "--max-concurrency: '0' is not a number"),
    (["--interface", "asgi3"], "--interface: 'asgi3' is not auto, native, wsgi or asgi"),
])
def test_bad_flags(args, needle):
    rc, text, _, leftover = run_to_exit(args + [str(EDGE)], timeout=TIMEOUT)
    assert rc == 2, f"{args}: exit {rc}\n{text}"
    assert needle in text, text
    assert not leftover


def test_loop_uvloop_without_uvloop_fails_clearly():
    try:
        import uvloop  # noqa: F401 - only its absence from the worker's Python matters
    except ImportError:
        pass
    rc, text, _, _ = run_to_exit(
        ASGI + ["--loop", "uvloop", "-w", "1", "-b", "127.0.0.1:0", str(EDGE)],
        timeout=TIMEOUT, env={"VIRTUAL_ENV": None})
    if rc is None:
        pytest.skip("uvloop is importable by the worker's own Python")
    assert "uvloop does not import" in text, text


# ---------------------------------------------------------------- spilled bodies

def test_spilled_body_in_pieces(start_server, tmp_path):
    """A body over --body-spill-size arrives as a file (RM_REQ_BODY_FILE):
    receive() reads it in pieces all the same."""
    spill = tmp_path / "spill"
    spill.mkdir()
    server = start_server(app=EDGE, workers=1,
                          args=ASGI + ["--spill-dir", str(spill), "--body-spill-size", "64K",
                                       "--max-body-size", "8M"])
    data = os.urandom(3 * 1024 * 1024 + 5)
    status, headers, body = request(server, "POST", "/echo", body=data)
    assert status == 200 and body == data, f"POST 3 MiB spilled: {status}, {len(body)} bytes back"
    assert int(headers["x-pieces"]) >= 3 * 16, headers
    assert wait_for(lambda: not list(spill.rglob("*.body")), TIMEOUT), list(spill.rglob("*"))


def test_sigterm_lets_requests_in_flight_finish(start_server):
    server = start_server(app=EDGE, workers=1, args=ASGI + ["--threads", "1"])
    results = []

    def one():
        try:
            results.append(request(server, "GET", "/sleep?1.0")[::2])
        except Exception as e:  # noqa: BLE001 - reported below
            results.append(repr(e))
    threads = [threading.Thread(target=one) for _ in range(10)]
    for t in threads:
        t.start()
    time.sleep(0.4)  # all ten are in the app, sleeping
    server.assert_clean_stop()
    for t in threads:
        t.join()
    assert results == [(200, b"slept")] * 10, results
