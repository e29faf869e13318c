"""End-to-end tests of build/ringmaster over real sockets (stdlib clients only).

Run through scripts/test.sh, or by hand:
    RINGMASTER_BUILD=build .venv-test/bin/python -m pytest tests/integration -q

Every failure message says what was sent, what came back, and what was expected.
The app behind most tests is apps/basic.py (its docstring lists the routes).
"""

import concurrent.futures
import hashlib
import http.client
import json
import os
import random
import signal
import socket
import threading
import time

import pytest

from conftest import APPS, ASAN, SLOW, children_of, free_port, run_to_exit, wait_for

TIMEOUT = 10.0 * SLOW   # per request / per socket read
BASIC = APPS / "basic.py"


# ---------------------------------------------------------------- helpers

def show(data, limit=160):
    data = bytes(data)
    if len(data) <= limit:
        return repr(data)
    return (f"<{len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()[:16]}, "
            f"starting {data[:48]!r}>")


class Result:
    """A response as http.client saw it, with a printable description."""

    def __init__(self, resp, body):
        self.status = resp.status
        self.reason = resp.reason
        self.version = resp.version
        self.headers = resp.headers
        self.body = body

    def header(self, name):
        return self.headers.get(name)

    def __str__(self):
        hdrs = ", ".join(f"{k}: {v}" for k, v in self.headers.items())
        return f"{self.status} {self.reason} [{hdrs}] body {show(self.body)}"


def request(server, method, path, body=None, headers=None, conn=None, **kw):
    """Send one request (on conn if given, else a fresh connection) -> Result."""
    own = conn is None
    if own:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
    try:
        conn.request(method, path, body=body, headers=headers or {}, **kw)
        resp = conn.getresponse()
        return Result(resp, resp.read())
    finally:
        if own:
            conn.close()


def sent(method, path, body=None, headers=None):
    text = f"{method} {path}"
    if headers:
        text += " " + str(headers)
    if body is not None:
        text += f" body {show(body) if isinstance(body, (bytes, bytearray)) else body!r}"
    return text


def expect(cond, what_sent, got, expected):
    assert cond, f"\n  sent:     {what_sent}\n  got:      {got}\n  expected: {expected}"


class RawResponse:
    def __init__(self, version, status, reason, headers, body):
        self.version, self.status, self.reason = version, status, reason
        self.headers, self.body = headers, body

    def header(self, name):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    def __str__(self):
        hdrs = ", ".join(f"{k}: {v}" for k, v in self.headers)
        return f"{self.version} {self.status} {self.reason} [{hdrs}] body {show(self.body)}"


def read_response(rfile, method="GET"):
    """Parse one HTTP/1.x response from a socket file; raises EOFError on a closed socket."""
    line = rfile.readline(65537)
    if not line:
        raise EOFError("connection closed before a status line")
    parts = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise ValueError(f"bad status line {line!r}")
    version, status = parts[0], int(parts[1])
    reason = parts[2] if len(parts) > 2 else ""
    headers = []
    while True:
        h = rfile.readline(65537)
        if h in (b"\r\n", b"\n"):
            break
        if not h:
            raise EOFError(f"connection closed inside the headers of {line!r}")
        k, _, v = h.decode("latin-1").partition(":")
        headers.append((k.strip(), v.strip()))
    resp = RawResponse(version, status, reason, headers, b"")
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return resp
    te = (resp.header("transfer-encoding") or "").lower()
    if "chunked" in te:
        body = b""
        while True:
            size = int(rfile.readline().split(b";")[0].strip(), 16)
            if size == 0:
                while rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                break
            body += rfile.read(size)
            rfile.readline()
        resp.body = body
    elif resp.header("content-length") is not None:
        n = int(resp.header("content-length"))
        resp.body = rfile.read(n)
        if len(resp.body) != n:
            raise EOFError(f"body cut short: {len(resp.body)} of {n} bytes")
    else:
        resp.body = rfile.read()
    return resp


def read_to_eof(rfile, what_sent, first):
    """What follows a response until the server closes; fails readably on a timeout."""
    try:
        return rfile.read()
    except (socket.timeout, TimeoutError):
        raise AssertionError(f"\n  sent:     {what_sent!r}\n  got:      {first}, then the "
                             f"connection stayed open for {TIMEOUT:.0f} s\n  expected: the "
                             f"server to close the connection after the response") from None


def raw_connect(server):
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
    return sock, sock.makefile("rb")


def get_request(path, extra=""):
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n".encode()


def pending_bytes(sock, rfile, wait=0.2):
    """Bytes the server sent that nobody asked for: what the reader has buffered
    plus what arrives within `wait` seconds (read without blocking, not consumed)."""
    time.sleep(wait)
    sock.settimeout(0.0)
    try:
        return rfile.peek(65536)
    except BlockingIOError:
        return b""
    finally:
        sock.settimeout(TIMEOUT)


# ---------------------------------------------------------------- basics

def test_get_root(server):
    r = request(server, "GET", "/")
    expect(r.status == 200 and r.body == b"Hello, world!\n", sent("GET", "/"), r,
           "200 with body b'Hello, world!\\n'")
    expect(r.header("content-length") == "14", sent("GET", "/"), r, "Content-Length: 14")


def test_listening_line_logged(server):
    needle = f"listening on http://127.0.0.1:{server.port}"
    found = wait_for(lambda: needle in server.stderr(), 5.0)
    assert found, f"expected a stderr line containing {needle!r}; stderr was:\n{server.stderr()}"


@pytest.mark.parametrize("size", [0, 1, 13, 4096, 16385, 100 * 1024])
def test_post_echo_binary(server, size):
    body = os.urandom(size)
    r = request(server, "POST", "/echo", body=body,
                headers={"content-type": "application/octet-stream"})
    expect(r.status == 200, sent("POST", "/echo", body), r, "status 200")
    expect(r.body == body, sent("POST", "/echo", body), r,
           f"the same {size} bytes back, byte for byte")
    expect(r.header("x-body-length") == str(size), sent("POST", "/echo", body), r,
           f"x-body-length: {size} (the length the app saw)")


def test_post_echo_chunked_request_body(server):
    pieces = [b"first,", os.urandom(3000), b"", b"last"]
    pieces = [p for p in pieces if p]  # http.client ends the body itself
    whole = b"".join(pieces)
    r = request(server, "POST", "/echo", body=iter(pieces), encode_chunked=True,
                headers={"transfer-encoding": "chunked"})
    expect(r.status == 200 and r.body == whole,
           sent("POST", "/echo", whole, {"transfer-encoding": "chunked"}), r,
           f"200 and the {len(whole)} de-chunked bytes back")


def _read_response(sock):
    """Read one HTTP/1.1 response with a Content-Length from a raw socket."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        part = sock.recv(65536)
        if not part:
            break
        buf += part
    head, _, rest = buf.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(rest) < length:
        part = sock.recv(65536)
        if not part:
            break
        rest += part
    return head, rest


def test_post_body_dribbled_in_small_writes(server):
    """A 1 MiB body sent as ~1000 separate small TCP writes (a slow link) must
    arrive whole: small reads are packed, not held one chunk each."""
    body = os.urandom(1024 * 1024)
    head = (f"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(head)
        for i in range(0, len(body), 1024):
            sock.sendall(body[i:i + 1024])
            if i % (64 * 1024) == 0:
                time.sleep(0.002)  # let the server read what is there: many short reads
        resp_head, resp_body = _read_response(sock)
    what = "1 MiB POST /echo in 1 KiB writes"
    expect(resp_head.startswith(b"HTTP/1.1 200"), what, resp_head.decode("latin-1"), "200")
    expect(resp_body == body, what, show(resp_body), "the same 1 MiB back, byte for byte")


def test_body_over_max_body_size_gets_413(start_server):
    server = start_server(BASIC, args=("--max-body-size", "1000"))
    body = b"x" * 1001
    r = request(server, "POST", "/echo", body=body)
    expect(r.status == 413, sent("POST", "/echo", body), r, "413 (--max-body-size 1000)")
    r = request(server, "POST", "/echo", body=b"y" * 1000)
    expect(r.status == 200 and r.body == b"y" * 1000, sent("POST", "/echo", b"y" * 1000), r,
           "200 and the body: 1000 bytes is allowed")


def test_json_dict(server):
    r = request(server, "GET", "/json")
    ctype = r.header("content-type") or ""
    expect(r.status == 200 and ctype.startswith("application/json"), sent("GET", "/json"), r,
           "200 with content-type application/json")
    try:
        parsed = json.loads(r.body)
    except ValueError as exc:
        raise AssertionError(f"sent GET /json, got {r}: body is not JSON ({exc})") from None
    want = {"message": "Hello, world!", "n": 42, "list": [1, 2, 3], "unicode": "h\u00e9"}
    expect(parsed == want, sent("GET", "/json"), parsed, want)


def test_json_list_and_str(server):
    r = request(server, "GET", "/list")
    ok = r.status == 200 and (r.header("content-type") or "").startswith("application/json")
    expect(ok, sent("GET", "/list"), r, "200 application/json")
    expect(json.loads(r.body) == [1, "two", {"three": 3}], sent("GET", "/list"), r,
           "[1, 'two', {'three': 3}]")
    r = request(server, "GET", "/str")
    want = "caf\u00e9 \u2615\n".encode()
    expect(r.status == 200 and r.body == want, sent("GET", "/str"), r, f"200 body {want!r}")


def test_not_found_and_custom_headers(server):
    r = request(server, "GET", "/missing-page")
    expect(r.status == 404 and r.body == b"no such route\n", sent("GET", "/missing-page"), r,
           "404 with body b'no such route\\n'")
    expect(r.header("x-custom") == "not-found", sent("GET", "/missing-page"), r,
           "header x-custom: not-found")

    r = request(server, "GET", "/headers")
    expect(r.status == 201, sent("GET", "/headers"), r, "status 201 (set by Response)")
    for name, value in [("x-custom", "yes"), ("x-another", "value 2"),
                        ("content-type", "text/x-ringmaster")]:
        expect(r.header(name) == value, sent("GET", "/headers"), r, f"header {name}: {value}")
    expect(r.body == b"custom headers\n", sent("GET", "/headers"), r, "body b'custom headers\\n'")


def test_request_object(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
    try:
        conn.putrequest("POST", "/reqinfo/sub?a=1&b=two")
        conn.putheader("X-Test", "One")
        conn.putheader("X-Multi", "1")
        conn.putheader("x-multi", "2")
        conn.putheader("Content-Length", "5")
        conn.endheaders(b"hello")
        resp = conn.getresponse()
        r = Result(resp, resp.read())
    finally:
        conn.close()
    what = ("POST /reqinfo/sub?a=1&b=two [X-Test: One, X-Multi: 1, x-multi: 2] body b'hello'")
    expect(r.status == 200, what, r, "200")
    info = json.loads(r.body)
    want = {"method": "POST", "path": "/reqinfo/sub", "query_string": "a=1&b=two",
            "x_test": "One", "x_test_upper": "One", "x_multi": ["1", "2"], "absent": None,
            "body_length": 5}
    got = {k: info.get(k) for k in want}
    expect(got == want, what, info, want)
    expect("127.0.0.1" in info.get("client", ""), what, info, "request.client naming 127.0.0.1")


# ---------------------------------------------------------------- errors

def test_app_exception_gives_500_and_worker_lives(server):
    before = server.wait_workers(2)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
    try:
        for _ in range(5):
            r = request(server, "GET", "/raise", conn=conn)
            expect(r.status == 500, sent("GET", "/raise"), r, "500 (the handler raised)")
            r = request(server, "GET", "/", conn=conn)
            expect(r.status == 200 and r.body == b"Hello, world!\n",
                   "GET /raise then GET / on the same client", r,
                   "200 Hello, world! right after the 500")
    finally:
        conn.close()
    after = server.worker_pids()
    assert after == before, (f"sent 5 x GET /raise: worker pids changed from {before} to "
                             f"{after}; expected the workers to survive an app exception"
                             f"\n--- stderr ---\n{server.stderr()}")


# ---------------------------------------------------------------- keep-alive

def test_keepalive_http_client(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
    try:
        conn.connect()
        first = conn.sock
        local = first.getsockname()
        for i in range(10):
            path = f"/id?id=ka-{i}"
            r = request(server, "GET", path, conn=conn)
            expect(r.status == 200 and r.body == f"id=ka-{i}".encode(), sent("GET", path), r,
                   f"200 body id=ka-{i}")
            expect(conn.sock is first, f"request {i + 1} of 10 on one keep-alive connection", r,
                   f"the connection from {local} kept open (the client had to reconnect)")
            body = os.urandom(1000)
            r = request(server, "POST", "/echo", body=body, conn=conn)
            expect(r.body == body and conn.sock is first, sent("POST", "/echo", body), r,
                   "the body echoed on the same kept-alive connection")
    finally:
        conn.close()


def test_keepalive_raw_socket(server):
    sock, rfile = raw_connect(server)
    try:
        local = sock.getsockname()
        for i in range(5):
            req = get_request(f"/id?id=raw-{i}")
            sock.sendall(req)
            try:
                r = read_response(rfile)
            except (EOFError, OSError) as exc:
                raise AssertionError(f"sent request {i + 1} of 5 on one socket ({local}): "
                                     f"{req!r}\ngot: {exc}\nexpected: a response and the "
                                     f"connection kept open") from None
            expect(r.status == 200 and r.header("x-echo-id") == f"raw-{i}", req, r,
                   f"200 with x-echo-id: raw-{i}")
            expect((r.header("connection") or "").lower() != "close", req, r,
                   "no Connection: close on an HTTP/1.1 keep-alive request")
    finally:
        rfile.close()
        sock.close()


def test_connection_close_header_closes(server):
    sock, rfile = raw_connect(server)
    try:
        req = get_request("/", "Connection: close\r\n")
        sock.sendall(req)
        r = read_response(rfile)
        expect(r.status == 200 and r.body == b"Hello, world!\n", req, r, "200 Hello, world!")
        rest = read_to_eof(rfile, req, r)  # must reach EOF: the server closes
        expect(rest == b"", req, f"{r} then {show(rest)}", "the connection closed, nothing more")
    finally:
        rfile.close()
        sock.close()


def test_http10_without_keepalive_closes(server):
    sock, rfile = raw_connect(server)
    try:
        req = b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
        sock.sendall(req)
        r = read_response(rfile)
        rest = read_to_eof(rfile, req, r)
        expect(r.status == 200 and r.body == b"Hello, world!\n", req, r, "200 Hello, world!")
        expect(r.version in ("HTTP/1.0", "HTTP/1.1"), req, r, "an HTTP/1.x status line")
        expect(rest == b"", req, f"{r} then {show(rest)}", "the connection closed after it")
    finally:
        rfile.close()
        sock.close()


def test_head_has_no_body(server):
    sock, rfile = raw_connect(server)
    try:
        req = b"HEAD / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        sock.sendall(req)
        r = read_response(rfile, method="HEAD")
        expect(r.status == 200 and r.header("content-length") == "14", req, r,
               "200 with Content-Length: 14 (the GET body's length) and no body")
        stray = pending_bytes(sock, rfile)
        expect(stray == b"", req, f"{r} then {show(stray)}",
               "no body bytes after the HEAD response's headers")
        req2 = get_request("/id?id=after-head")
        sock.sendall(req2)
        r2 = read_response(rfile)
        expect(r2.status == 200 and r2.header("x-echo-id") == "after-head", req2, r2,
               "the next response on the same connection, intact")
    finally:
        rfile.close()
        sock.close()


def test_pipelined_requests_in_order(server):
    sock, rfile = raw_connect(server)
    try:
        ids = ["pipe-a", "pipe-b", "pipe-c"]
        req = b"".join(get_request(f"/id?id={i}") for i in ids)
        sock.sendall(req)  # three requests in one write
        got = []
        for _ in ids:
            try:
                got.append(read_response(rfile))
            except (EOFError, OSError) as exc:
                raise AssertionError(f"sent in one write: {req!r}\ngot {len(got)} responses "
                                     f"({[str(g) for g in got]}), then {exc}\n"
                                     f"expected: 3 responses in order") from None
        got_ids = [g.header("x-echo-id") for g in got]
        expect(got_ids == ids and all(g.status == 200 for g in got), req,
               [str(g) for g in got], f"three 200 responses with x-echo-id {ids} in that order")
    finally:
        rfile.close()
        sock.close()


def test_pipelined_post_between_gets(server):
    sock, rfile = raw_connect(server)
    try:
        body = os.urandom(5000)
        req = (get_request("/id?id=before")
               + b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: "
               + str(len(body)).encode() + b"\r\n\r\n" + body
               + get_request("/id?id=after"))
        sock.sendall(req)
        r1, r2, r3 = (read_response(rfile) for _ in range(3))
        what = "GET /id?id=before, POST /echo (5000 random bytes), GET /id?id=after in one write"
        expect(r1.header("x-echo-id") == "before", what, r1, "first: x-echo-id before")
        expect(r2.status == 200 and r2.body == body, what, r2, "second: the 5000 bytes echoed")
        expect(r3.header("x-echo-id") == "after", what, r3, "third: x-echo-id after")
    finally:
        rfile.close()
        sock.close()


# ---------------------------------------------------------------- load

def _load_shape():
    override = os.environ.get("RINGMASTER_TEST_LOAD")  # e.g. "16x50" for a quick run
    if override:
        conns, reqs = override.lower().split("x")
        return int(conns), int(reqs)
    return (64, 100) if ASAN else (64, 500)


def test_concurrent_keepalive_no_crosstalk(server):
    conns, per_conn = _load_shape()
    budget = 120.0
    deadline = time.monotonic() + budget
    token = f"{random.getrandbits(32):08x}"
    errors = []
    errors_lock = threading.Lock()
    done = [0]

    def note(msg):
        with errors_lock:
            if len(errors) < 10:
                errors.append(msg)

    def client(c):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30 * SLOW)
        reconnects = 0
        ok = 0
        try:
            for i in range(per_conn):
                if time.monotonic() > deadline:
                    note(f"conn {c}: deadline of {budget:.0f} s passed after {i} requests")
                    return
                rid = f"{token}-{c}-{i}"
                if i > 0 and conn.sock is None:
                    reconnects += 1
                try:
                    conn.request("GET", f"/id?id={rid}")
                    resp = conn.getresponse()
                    body = resp.read()
                except (OSError, http.client.HTTPException) as exc:
                    note(f"conn {c} request {i}: sent GET /id?id={rid}, got {exc!r}")
                    return
                if (resp.status != 200 or resp.getheader("x-echo-id") != rid
                        or body != f"id={rid}".encode()):
                    note(f"conn {c} request {i}: sent GET /id?id={rid}, got {resp.status} "
                         f"x-echo-id={resp.getheader('x-echo-id')!r} body={show(body)}, "
                         f"expected 200 x-echo-id={rid!r} body=b'id={rid}'")
                    return
                ok += 1
            if reconnects:
                note(f"conn {c}: the server closed the keep-alive connection {reconnects} "
                     f"times in {per_conn} requests (expected it to stay open)")
        finally:
            conn.close()
            with errors_lock:
                done[0] += ok

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=conns) as pool:
        list(pool.map(client, range(conns)))
    elapsed = time.monotonic() - started
    total = conns * per_conn
    assert not errors, (f"{conns} connections x {per_conn} keep-alive requests: {done[0]} of "
                        f"{total} correct in {elapsed:.1f} s; first problems:\n  "
                        + "\n  ".join(errors))
    assert done[0] == total
    assert elapsed < budget, f"{total} requests took {elapsed:.1f} s, budget {budget:.0f} s"


# ---------------------------------------------------------------- workers

def _try_requests(server, n=10):
    """n GET / on fresh connections -> list of problems (empty if all 200 OK)."""
    problems = []
    for _ in range(n):
        try:
            r = request(server, "GET", "/")
            if r.status != 200 or r.body != b"Hello, world!\n":
                problems.append(str(r))
        except (OSError, http.client.HTTPException) as exc:
            problems.append(repr(exc))
    return problems


def test_kill9_worker_is_replaced(start_server):
    server = start_server(workers=2)
    pids = server.wait_workers(2)
    assert len(pids) == 2, f"{server.describe()}: expected 2 workers, found {pids}"
    victim = pids[0]
    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()

    problems = ["not tried"]
    while time.monotonic() - killed_at < 10.0:
        problems = _try_requests(server)
        if not problems:
            break
        time.sleep(0.1)
    assert not problems, (f"kill -9 of worker {victim}, then GET / x10 on fresh connections "
                          f"for 10 s: still failing, last round: {problems[:3]}; expected all "
                          f"200 within 10 s")
    server.assert_running()
    remaining = max(0.5, 10.0 - (time.monotonic() - killed_at))
    # The victim may still be listed for a moment while the kernel tears it down.
    wait_for(lambda: (lambda p: len(p) == 2 and victim not in p)(server.worker_pids()),
             remaining)
    now = server.worker_pids()
    assert len(now) == 2 and victim not in now, (
        f"kill -9 of worker {victim} (workers were {pids}): 10 s later workers are {now}; "
        f"expected 2 workers, the killed one replaced")
    problems = _try_requests(server, 20)
    assert not problems, f"after the replacement, GET / x20: {problems[:3]}; expected all 200"


def test_replacement_worker_serves(start_server):
    server = start_server(workers=1)
    pids = server.wait_workers(1)
    assert len(pids) == 1, f"{server.describe()}: expected 1 worker, found {pids}"
    os.kill(pids[0], signal.SIGKILL)
    new = wait_for(lambda: [p for p in server.worker_pids() if p != pids[0]] or None, 10.0)
    assert new, f"kill -9 of the only worker {pids[0]}: no replacement within 10 s"
    got = None
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        try:
            got = request(server, "GET", "/pid")
            if got.status == 200:
                break
        except (OSError, http.client.HTTPException) as exc:
            got = repr(exc)
        time.sleep(0.1)
    expect(isinstance(got, Result) and got.status == 200 and got.body == str(new[0]).encode(),
           "GET /pid after kill -9 of the only worker", got,
           f"200 served by the replacement worker, pid {new[0]}")


def test_inflight_request_on_killed_worker_gets_502(start_server):
    server = start_server(workers=1)
    pids = server.wait_workers(1)
    assert len(pids) == 1, f"{server.describe()}: expected 1 worker, found {pids}"
    result = {}

    def slow():
        try:
            result["r"] = request(server, "GET", "/sleep?ms=5000")
        except (OSError, http.client.HTTPException) as exc:
            result["r"] = repr(exc)

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(1.0 * SLOW)  # let the request reach the worker and start sleeping
    os.kill(pids[0], signal.SIGKILL)
    killed = time.monotonic()
    t.join(TIMEOUT + 5)
    waited = time.monotonic() - killed
    r = result.get("r", "no response at all")
    expect(isinstance(r, Result) and r.status == 502,
           f"GET /sleep?ms=5000, then kill -9 of worker {pids[0]} while it slept", r,
           "502 for the request in flight on the dead worker")
    assert waited < 4.0 * SLOW, f"the 502 took {waited:.1f} s after the kill, expected promptly"


@pytest.mark.parametrize("count", [1, 3])
def test_workers_flag_spawns_exactly(start_server, count):
    server = start_server(workers=count)
    pids = server.wait_workers(count)
    time.sleep(0.5)
    again = server.worker_pids()
    assert len(pids) == count and again == pids, (
        f"{server.describe()}: expected exactly {count} worker children, saw {pids} then "
        f"{again}; all children: {children_of(server.proc.pid)}")


@pytest.mark.parametrize("var,value,count", [("RINGMASTER_WORKERS", "1", 1),
                                              ("WEB_CONCURRENCY", "3", 3)])
def test_workers_env(start_server, var, value, count):
    env = {"RINGMASTER_WORKERS": None, "WEB_CONCURRENCY": None, var: value}
    server = start_server(workers=None, env=env)
    pids = server.wait_workers(count)
    time.sleep(0.5)
    again = server.worker_pids()
    assert len(pids) == count and again == pids, (
        f"{var}={value} {server.describe()}: expected {count} workers, saw {pids} then {again}")
    assert not _try_requests(server, 3)


def test_workers_default_is_usable_cpus(start_server):
    cpus = len(os.sched_getaffinity(0))
    server = start_server(workers=None, env={"RINGMASTER_WORKERS": None,
                                             "WEB_CONCURRENCY": None})
    pids = server.wait_workers(cpus)
    assert len(pids) == cpus, (f"{server.describe()} with no -w and no env: {len(pids)} "
                               f"workers {pids}, expected one per usable CPU ({cpus})")


def test_bind_env(start_server):
    port = free_port()
    server = start_server(bind=False, port=port, env={"RINGMASTER_BIND": f"127.0.0.1:{port}"})
    r = request(server, "GET", "/")
    expect(r.status == 200, f"GET / to 127.0.0.1:{port} (from RINGMASTER_BIND)", r, "200")


@pytest.mark.parametrize("spec,cwd", [("basic:app", APPS), ("basic", APPS),
                                      ("tests/integration/apps/basic.py:app", None)])
def test_app_spec_forms(start_server, spec, cwd):
    server = start_server(app=spec, cwd=cwd)
    r = request(server, "GET", "/")
    expect(r.status == 200 and r.body == b"Hello, world!\n",
           f"GET / to a server started with APP={spec!r} (cwd {cwd or 'repo root'})", r,
           "200 Hello, world!")


# ---------------------------------------------------------------- stop

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_cleanly_without_orphans(start_server, sig):
    server = start_server(workers=2)
    pids = server.wait_workers(2)
    assert len(pids) == 2
    assert not _try_requests(server, 3)
    server.assert_clean_stop(sig)


def test_sigterm_with_idle_keepalive_connection(start_server):
    server = start_server(workers=2)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
    try:
        r = request(server, "GET", "/", conn=conn)
        assert r.status == 200
        started = time.monotonic()
        server.assert_clean_stop()  # while the client still holds its connection open
        took = time.monotonic() - started
        assert took < 5.0 * SLOW, f"SIGTERM with one idle keep-alive client took {took:.1f} s"
    finally:
        conn.close()


# ---------------------------------------------------------------- start-up errors

def test_bad_flag_exits_2_with_one_line():
    rc, err, elapsed, leftover = run_to_exit(["--bogus", str(BASIC)], timeout=10)
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2, (f"ran: ringmaster --bogus {BASIC}\ngot: exit {rc} after {elapsed:.1f} s, "
                     f"stderr {err!r}\nexpected: exit 2")
    assert len(lines) == 1 and "bogus" in lines[0], (
        f"ran: ringmaster --bogus\ngot stderr: {err!r}\n"
        f"expected: exactly one readable line naming --bogus")
    assert not leftover, f"processes left after a bad flag: {leftover}"


def _startup_failure(app, must_mention, cwd=None):
    port = free_port()
    args = ["-b", f"127.0.0.1:{port}", "-w", "2", app]
    rc, err, elapsed, leftover = run_to_exit(args, timeout=10, cwd=cwd)
    what = f"ran: ringmaster {' '.join(args)}"
    assert rc is not None, (f"{what}\ngot: still running after 10 s (killed it); stderr:\n{err}"
                            f"\nexpected: a non-zero exit within 10 s, not a respawn loop")
    assert rc != 0, f"{what}\ngot: exit 0; stderr:\n{err}\nexpected: a non-zero exit"
    lines = [line for line in err.splitlines() if all(m in line for m in must_mention)]
    assert lines, (f"{what}\ngot: exit {rc} after {elapsed:.1f} s, stderr:\n{err}\n"
                   f"expected: a line mentioning all of {must_mention}")
    assert not leftover, f"{what}\nprocesses left behind: {leftover}"
    return err


def test_unimportable_module_exits_with_message():
    _startup_failure("no_such_module:app", ["no_such_module"])


def test_syntax_error_app_exits_with_message():
    err = _startup_failure(str(APPS / "syntax_error.py"), ["syntax_error"])
    assert "SyntaxError" in err or "invalid syntax" in err or "expected" in err, (
        f"stderr for an app file with a syntax error should name the error:\n{err}")


def test_raising_app_module_exits_with_message():
    err = _startup_failure(str(APPS / "raises_on_import.py"), ["raises_on_import"])
    assert "RuntimeError" in err or "refuses to be imported" in err, (
        f"stderr for an app whose import raises should name the error:\n{err}")


def test_missing_app_attribute_exits_with_message():
    _startup_failure(f"{BASIC}:nope", ["nope"])
