"""WSGI (PEP 3333) end to end: the real binaries, real sockets, stdlib clients.

The app behind most tests is apps/wsgi_edge.py, wrapped in
wsgiref.validate.validator with warnings as errors, so every request also
checks the server's side of PEP 3333 (environ, wsgi.input, wsgi.errors, how
the iterable is driven and closed). apps/wsgi_misbehave.py breaks the
protocol on purpose and is not wrapped (the validator would catch those
mistakes before the server saw them). Flask and Django: test_wsgi_frameworks.py.

Every failure message says what was sent, what came back and what was expected.
"""

import hashlib
import http.client
import json
import os
import re
import socket
import time

import pytest

from conftest import APPS, SLOW, run_to_exit, wait_for

TIMEOUT = 10.0 * SLOW
EDGE = APPS / "wsgi_edge.py"
MISBEHAVE = APPS / "wsgi_misbehave.py"
BASIC = APPS / "basic.py"


# ---------------------------------------------------------------- helpers

def show(data, limit=200):
    data = bytes(data)
    if len(data) <= limit:
        return repr(data)
    return (f"<{len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()[:16]}, "
            f"starting {data[:60]!r}>")


def expect(cond, sent, got, expected):
    assert cond, f"\n  sent:     {sent}\n  got:      {got}\n  expected: {expected}"


class Resp:
    def __init__(self, status, reason, headers, body, closed=None, raw=b""):
        self.status, self.reason, self.headers, self.body = status, reason, headers, body
        self.closed = closed  # the server closed the connection after it
        self.raw = raw

    def header(self, name):
        name = name.lower()
        vals = [v for k, v in self.headers if k.lower() == name]
        return ", ".join(vals) if vals else None

    def __str__(self):
        hdrs = ", ".join(f"{k}: {v}" for k, v in self.headers)
        return f"{self.status} {self.reason} [{hdrs}] body {show(self.body)}"


def get(server, path, method="GET", body=None, headers=None):
    """One request with http.client on a fresh connection."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        return Resp(r.status, r.reason, list(r.getheaders()), data)
    finally:
        conn.close()


def environ_of(server, path="/environ", headers=None, method="GET", body=None):
    r = get(server, path, method=method, body=body, headers=headers)
    expect(r.status == 200, f"{method} {path} {headers or ''}", r, "200 with the environ as JSON")
    return json.loads(r.body)


def connect(server):
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
    return sock, sock.makefile("rb")


def read_head(rfile, sent):
    line = rfile.readline(65537)
    expect(line.startswith(b"HTTP/1."), sent, show(line), "a status line")
    parts = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
    headers = []
    while True:
        h = rfile.readline(65537)
        expect(h != b"", sent, f"{line!r} then EOF inside the head", "a complete head")
        if h in (b"\r\n", b"\n"):
            break
        k, _, v = h.decode("latin-1").partition(":")
        headers.append((k.strip(), v.strip()))
    return Resp(int(parts[1]), parts[2] if len(parts) > 2 else "", headers, b"")


def read_chunked(rfile, sent):
    """The chunks of a chunked body: (body, terminated) -- terminated is False
    when the connection ended before the last chunk."""
    parts = []
    while True:
        line = rfile.readline()
        if not line:
            return b"".join(parts), False
        size = int(line.split(b";")[0].strip(), 16)
        if size == 0:
            rfile.readline()
            return b"".join(parts), True
        data = rfile.read(size)
        parts.append(data)
        if len(data) < size:
            return b"".join(parts), False
        crlf = rfile.readline()
        if crlf != b"\r\n":
            body = b"".join(parts)
            expect(False, sent, f"{crlf!r} after a chunk, body so far {show(body)}",
                   "CRLF after a chunk")


def read_body(rfile, r, sent):
    """The body of response head `r`, whatever its framing (not close-delimited)."""
    if "chunked" in (r.header("transfer-encoding") or "").lower():
        body, done = read_chunked(rfile, sent)
        expect(done, sent, f"{r} {show(body)}", "a terminated chunked body")
        return body
    n = int(r.header("content-length") or 0)
    body = rfile.read(n)
    expect(len(body) == n, sent, f"{r} {show(body)}", f"{n} body bytes")
    return body


def hang_up(sock, rfile):
    """Really close: the socket's file object holds the descriptor too."""
    rfile.close()
    sock.close()


def at_eof(sock, rfile, wait=2.0):
    """True when the server closed the connection (nothing more arrives)."""
    sock.settimeout(wait * SLOW)
    try:
        return rfile.read(1) == b""
    except (socket.timeout, TimeoutError):
        return False
    except ConnectionResetError:
        return True


def exchange(server, data, method="GET"):
    """Send raw bytes, read one response (any framing), note whether the
    server then closed the connection."""
    sock, rfile = connect(server)
    try:
        sock.sendall(data)
        r = read_head(rfile, data)
        te = (r.header("transfer-encoding") or "").lower()
        if method == "HEAD" or r.status in (204, 304):
            pass
        elif "chunked" in te:
            r.body, done = read_chunked(rfile, data)
            expect(done, data, r, "a terminated chunked body")
        elif r.header("content-length") is not None:
            n = int(r.header("content-length"))
            r.body = rfile.read(n)
            expect(len(r.body) == n, data, r, f"{n} body bytes")
        else:
            r.body = rfile.read()
            r.closed = True
            return r
        r.closed = at_eof(sock, rfile, wait=0.3)
        return r
    finally:
        hang_up(sock, rfile)


def stderr_lacks(server, *needles):
    text = server.stderr()
    for needle in needles:
        assert needle not in text, (f"{server.describe()}\nstderr holds {needle!r}:\n{text}")


VALIDATOR_COMPLAINTS = ("WSGIWarning", "garbage collected without being closed",
                        "AssertionError", "Exception ignored")


@pytest.fixture(scope="module")
def edge_server():
    """One server on wsgi_edge.py shared by the read-only tests of this module."""
    from conftest import ServerFactory
    factory = ServerFactory()
    server = factory(EDGE, workers=2, args=["--interface", "wsgi"])
    yield server
    # Whatever the tests did, the validator must not have complained.
    text = server.stderr()
    errors = factory.stop_all()
    complaints = [n for n in VALIDATOR_COMPLAINTS if n in text]
    if errors or complaints:
        pytest.fail("\n\n".join(errors + [f"validator complaints {complaints} in stderr:\n{text}"]))


@pytest.fixture
def edge(edge_server):
    edge_server.assert_running()
    yield edge_server
    edge_server.assert_running()


# ---------------------------------------------------------------- interface choice

def test_auto_detects_wsgi_and_logs_it(start_server):
    server = start_server(EDGE, workers=1)  # --interface defaults to auto
    r = get(server, "/list?n=2&size=3")
    expect(r.status == 200 and r.body == b"AAABBB", "GET /list?n=2&size=3 (auto)", r,
           "200 b'AAABBB' from the WSGI app")
    wait_for(lambda: "WSGI interface" in server.stderr(), 5.0 * SLOW)
    assert "WSGI interface (auto: the app takes two positional arguments)" in server.stderr(), (
        f"the chosen interface is not logged:\n{server.stderr()}")


def test_auto_keeps_native_apps_native(start_server):
    server = start_server(BASIC, workers=1)
    r = get(server, "/")
    expect(r.status == 200 and r.body == b"Hello, world!\n", "GET / (native app, auto)", r,
           "200 Hello, world!")
    wait_for(lambda: "native interface" in server.stderr(), 5.0 * SLOW)
    assert "native interface (auto: the app takes one positional argument)" in server.stderr()


def test_interface_flag_and_variable_force_the_choice(start_server):
    # A WSGI app forced native is called with one argument: TypeError, 500.
    server = start_server(EDGE, workers=1, args=["--interface", "native"])
    r = get(server, "/list")
    expect(r.status == 500, "GET /list to a WSGI app under --interface native", r, "500")
    assert "native interface (--interface native)" in server.stderr()
    server = start_server(EDGE, workers=1, env={"RINGMASTER_INTERFACE": "wsgi"})
    r = get(server, "/list?n=1&size=2")
    expect(r.status == 200 and r.body == b"AA", "GET /list (RINGMASTER_INTERFACE=wsgi)", r,
           "200 b'AA'")


@pytest.mark.parametrize("args,env,needle", [
    (["--interface", "rsgi"], None, "--interface: 'rsgi' is not auto, native, wsgi or asgi"),
    (["--root-path", "mount"], None, "--root-path: 'mount' must start with '/'"),
    (["--forwarded-allow-ips", "10.0.0.1,proxy"], None,
     "--forwarded-allow-ips: 'proxy' is not an IPv4 or IPv6 address"),
    ([], {"RINGMASTER_ROOT_PATH": "/a?b"}, "RINGMASTER_ROOT_PATH: '/a?b' holds"),
    ([], {"FORWARDED_ALLOW_IPS": "10.0.0.0/40"}, "FORWARDED_ALLOW_IPS: '10.0.0.0/40'"),
], ids=["interface", "root-path", "forwarded", "root-path-env", "forwarded-env"])
def test_bad_values_exit_2_with_one_line(args, env, needle):
    rc, text, _, leftover = run_to_exit(args + [str(EDGE)], timeout=10.0 * SLOW, env=env)
    assert rc == 2, f"ringmaster {args} {env}: exit {rc}, expected 2\n{text}"
    assert needle in text, f"ringmaster {args} {env}: expected {needle!r} in:\n{text}"
    assert len(text.strip().splitlines()) == 1, f"expected one line, got:\n{text}"
    assert not leftover


# ---------------------------------------------------------------- the environ

def test_environ_basics(edge):
    sock, rfile = connect(edge)
    try:
        client_port = sock.getsockname()[1]
        req = (b"GET /environ/x?a=1&b=%20&a=2 HTTP/1.1\r\nHost: 127.0.0.1:"
               + str(edge.port).encode() + b"\r\nUser-Agent: t\r\nX-Custom-Thing: v\r\n\r\n")
        sock.sendall(req)
        r = read_head(rfile, req)
        r.body = rfile.read(int(r.header("content-length")))
    finally:
        hang_up(sock, rfile)
    env = json.loads(r.body)
    want = {
        "REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": "/environ/x",
        "QUERY_STRING": "a=1&b=%20&a=2", "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": str(edge.port), "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": str(client_port),
        "REQUEST_URI": "/environ/x?a=1&b=%20&a=2", "RAW_URI": "/environ/x?a=1&b=%20&a=2",
        "HTTP_HOST": f"127.0.0.1:{edge.port}", "HTTP_USER_AGENT": "t",
        "HTTP_X_CUSTOM_THING": "v", "wsgi.version": [1, 0], "wsgi.url_scheme": "http",
        "wsgi.run_once": False, "errors_is_stderr": True,
    }
    for key, value in want.items():
        expect(env.get(key) == value, req, f"{key}={env.get(key)!r}", repr(value))
    assert env["SERVER_SOFTWARE"].startswith("ringmaster/"), env["SERVER_SOFTWARE"]
    assert "FileWrapper" in env["wsgi.file_wrapper"], env["wsgi.file_wrapper"]
    # wsgi.input_terminated would let frameworks call read() without a size,
    # which PEP 3333 (and the validator) do not allow: CONTENT_LENGTH is always
    # given for a body instead.
    for absent in ("CONTENT_TYPE", "CONTENT_LENGTH", "HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH",
                   "wsgi.input_terminated"):
        expect(absent not in env, req, f"{absent}={env.get(absent)!r}", f"no {absent} for a GET")


def test_path_info_is_percent_decoded_then_latin1(edge):
    # PEP 3333: bytes -> str one code point per byte, after %-decoding. '%2F'
    # becomes '/', a malformed escape stays as sent; REQUEST_URI keeps it all.
    target = "/environ/caf%C3%A9/%E2%98%95%2Fx/%ZZ/100%"
    env = environ_of(edge, target)
    want = "/environ/" + "café/☕".encode().decode("latin-1") + "/x/%ZZ/100%"
    expect(env["PATH_INFO"] == want, f"GET {target}", repr(env["PATH_INFO"]), repr(want))
    expect(env["REQUEST_URI"] == target, f"GET {target}", repr(env["REQUEST_URI"]), repr(target))


def test_absolute_form_target(edge):
    req = (b"GET http://example.test:8080/environ/abs?q=1 HTTP/1.1\r\n"
           b"Host: example.test:8080\r\n\r\n")
    r = exchange(edge, req)
    env = json.loads(r.body)
    for key, value in (("PATH_INFO", "/environ/abs"), ("QUERY_STRING", "q=1"),
                       ("SERVER_NAME", "example.test"), ("SERVER_PORT", "8080")):
        expect(env[key] == value, req, f"{key}={env[key]!r}", repr(value))


def test_server_name_and_port_from_host(edge):
    cases = [("[::1]:8443", "[::1]", "8443"), ("Example.COM", "Example.COM", "80"),
             ("example.com:notaport", "example.com", "80")]
    for host, name, port in cases:
        env = environ_of(edge, headers={"Host": host})
        expect((env["SERVER_NAME"], env["SERVER_PORT"]) == (name, port), f"Host: {host}",
               (env["SERVER_NAME"], env["SERVER_PORT"]), (name, port))
    # No Host (HTTP/1.0): the address the client connected to.
    r = exchange(edge, b"GET /environ HTTP/1.0\r\n\r\n")
    env = json.loads(r.body)
    expect((env["SERVER_NAME"], env["SERVER_PORT"]) == ("127.0.0.1", str(edge.port)),
           "GET /environ HTTP/1.0 without Host", (env["SERVER_NAME"], env["SERVER_PORT"]),
           ("127.0.0.1", str(edge.port)))
    expect(env["SERVER_PROTOCOL"] == "HTTP/1.0", "HTTP/1.0", env["SERVER_PROTOCOL"], "HTTP/1.0")


def test_repeated_headers_are_joined(edge):
    req = (b"POST /environ HTTP/1.1\r\nHost: h\r\nX-Multi: a\r\nX-Multi: b, c\r\n"
           b"Cookie: a=1\r\nCookie: b=2\r\nX_Sneaky: dropped\r\n"
           b"Content-Type: text/plain\r\nContent-Length: 3\r\n\r\nabc")
    env = json.loads(exchange(edge, req).body)
    for key, value in (("HTTP_X_MULTI", "a, b, c"), ("HTTP_COOKIE", "a=1; b=2"),
                       ("CONTENT_TYPE", "text/plain"), ("CONTENT_LENGTH", "3")):
        expect(env.get(key) == value, req, f"{key}={env.get(key)!r}", repr(value))
    for absent in ("HTTP_X_SNEAKY", "HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
        expect(absent not in env, req, f"{absent}={env.get(absent)!r}",
               f"no {absent} (underscore names are dropped; CGI names are not HTTP_)")


def test_chunked_body_gets_content_length(edge):
    req = (b"POST /echo?mode=read HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    r = exchange(edge, req)
    expect(r.status == 200 and r.body == b"hello world", req, r, "200 b'hello world'")
    req = (b"POST /environ HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"0\r\n\r\n")
    env = json.loads(exchange(edge, req).body)
    expect(env.get("CONTENT_LENGTH") == "0" and "HTTP_TRANSFER_ENCODING" not in env, req,
           f"CONTENT_LENGTH={env.get('CONTENT_LENGTH')!r}, "
           f"HTTP_TRANSFER_ENCODING={env.get('HTTP_TRANSFER_ENCODING')!r}",
           "'0' (an empty chunked body has a known length), and no transfer coding: it is gone")
    req = (b"POST /past-end HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"0\r\n\r\n")
    got = json.loads(exchange(edge, req).body)
    expect(got == {"first": 0, "again": 0, "line": 0, "content_length": "0"}, req, got,
           "every read of an empty body gives b''")


def _lines_body(size):
    out, i = [], 0
    while sum(map(len, out)) < size:
        out.append(b"line %d %s\n" % (i, b"x" * (i % 37)))
        i += 1
    return b"".join(out)


@pytest.mark.parametrize("mode", ["read", "all", "readline", "readline-limit", "readlines",
                                  "iter", "readinto"])
@pytest.mark.parametrize("size", [0, 1, 5000, 100 * 1024])
def test_wsgi_input_reads(edge, mode, size):
    body = _lines_body(size)[:size]
    r = get(edge, f"/echo?mode={mode}", method="POST", body=body,
            headers={"Content-Type": "application/octet-stream"})
    expect(r.status == 200 and r.body == body, f"POST /echo?mode={mode} body {show(body)}", r,
           f"the body back, byte for byte ({len(body)} bytes)")
    if mode == "readline-limit":
        pieces = int(r.header("x-pieces"))
        assert pieces >= len(body) / 7, f"readline(7) returned lines longer than 7 bytes: {r}"


def test_wsgi_input_read_past_the_end(edge):
    body = b"0123456789"
    r = get(edge, "/past-end", method="POST", body=body)
    got = json.loads(r.body)
    expect(got == {"first": 10, "again": 0, "line": 0, "content_length": "10"},
           f"POST /past-end body {body!r}", got,
           "read(n + 10) gives the 10 bytes, then read() and readline() give b''")


# ---------------------------------------------------------------- the response

def test_generator_is_chunked_on_http11(edge):
    r = exchange(edge, b"GET /stream?n=5&size=3 HTTP/1.1\r\nHost: h\r\n\r\n")
    expect(r.status == 200 and r.header("transfer-encoding") == "chunked"
           and r.header("content-length") is None and r.body == b"AAABBBCCCDDDEEE"
           and not r.closed, "GET /stream?n=5&size=3 HTTP/1.1", r,
           "chunked, 15 bytes, connection kept")


def test_generator_is_close_delimited_on_http10(edge):
    req = b"GET /stream?n=3&size=4 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
    r = exchange(edge, req)
    expect(r.status == 200 and r.header("transfer-encoding") is None
           and r.header("content-length") is None and r.header("connection") == "close"
           and r.body == b"AAAABBBBCCCC" and r.closed, req, r,
           "no length, Connection: close, the body up to EOF")


@pytest.mark.parametrize("path,length", [("/stream?n=4&size=100000", 400000),
                                         ("/list?n=30&size=70000", 2100000),
                                         ("/write?n=5&size=50000", 250000)])
def test_large_bodies_cross_chunks(edge, path, length):
    r = get(edge, path)
    expect(r.status == 200 and len(r.body) == length, f"GET {path}", r, f"{length} bytes")
    n = int(path.split("n=")[1].split("&")[0])
    size = length // n
    letters = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ" if "write" not in path else b"abcdefghijklmnopqrstuvwxyz"
    want = b"".join(bytes([letters[i % 26]]) * size for i in range(n))
    expect(r.body == want, f"GET {path}", r, show(want))


def test_write_callable(edge):
    r = exchange(edge, b"GET /write?n=3&size=4 HTTP/1.1\r\nHost: h\r\n\r\n")
    expect(r.status == 200 and r.header("transfer-encoding") == "chunked"
           and r.body == b"aaaabbbbcccc", "GET /write?n=3&size=4", r,
           "the written pieces, chunked")


def test_declared_length_longer_body_is_cut(edge):
    # More than Content-Length: only Content-Length bytes go out and the
    # connection stays usable (the next response parses).
    sock, rfile = connect(edge)
    try:
        req = b"GET /length?declared=10&actual=30 HTTP/1.1\r\nHost: h\r\n\r\n"
        sock.sendall(req + b"GET /list?n=1&size=2 HTTP/1.1\r\nHost: h\r\n\r\n")
        r = read_head(rfile, req)
        body = rfile.read(10)
        expect(r.header("content-length") == "10" and body == b"L" * 10, req,
               f"{r} {body!r}", "10 bytes")
        r2 = read_head(rfile, b"(pipelined) GET /list?n=1&size=2")
        body2 = read_body(rfile, r2, req)
        expect(r2.status == 200 and body2 == b"AA", "the next request on the connection",
               f"{r2} {body2!r}", "200 b'AA' right after the 10 bytes")
    finally:
        hang_up(sock, rfile)


def test_declared_length_shorter_body_closes(edge):
    req = b"GET /length?declared=30&actual=10 HTTP/1.1\r\nHost: h\r\n\r\n"
    sock, rfile = connect(edge)
    try:
        sock.sendall(req)
        r = read_head(rfile, req)
        body = rfile.read()  # until the server closes
        expect(r.header("content-length") == "30" and body == b"L" * 10, req,
               f"{r} then {body!r} and EOF", "10 bytes, then the connection closed")
    finally:
        hang_up(sock, rfile)


def test_head_requests(edge):
    sock, rfile = connect(edge)
    try:
        req = (b"HEAD /length?declared=6&actual=6 HTTP/1.1\r\nHost: h\r\n\r\n"
               b"HEAD /head-gen HTTP/1.1\r\nHost: h\r\n\r\n"
               b"GET /list?n=1&size=1 HTTP/1.1\r\nHost: h\r\n\r\n")
        sock.sendall(req)
        r1 = read_head(rfile, req)
        expect(r1.header("content-length") == "6", req, r1,
               "HEAD: the app's Content-Length 6, no body")
        r2 = read_head(rfile, req)
        expect(r2.header("x-gen") == "yes" and r2.header("content-length") is None
               and r2.header("transfer-encoding") is None, req, r2,
               "HEAD of a generator: its headers, no framing")
        r3 = read_head(rfile, req)
        body = read_body(rfile, r3, req)
        expect(r3.status == 200 and body == b"A", req, f"{r3} {body!r}",
               "the GET after two HEADs parses: no body bytes were sent for them")
    finally:
        hang_up(sock, rfile)


@pytest.mark.parametrize("code", [204, 304])
def test_bodyless_statuses(edge, code):
    sock, rfile = connect(edge)
    try:
        req = (b"GET /status?code=%d HTTP/1.1\r\nHost: h\r\n\r\n"
               b"GET /list?n=1&size=1 HTTP/1.1\r\nHost: h\r\n\r\n" % code)
        sock.sendall(req)
        r = read_head(rfile, req)
        expect(r.status == code and r.header("content-length") is None
               and r.header("transfer-encoding") is None, req, r,
               f"{code} without Content-Length or Transfer-Encoding")
        r2 = read_head(rfile, req)
        body = read_body(rfile, r2, req)
        expect(body == b"A", req, f"{r2} {body!r}", "the next response right after the head")
    finally:
        hang_up(sock, rfile)


# ---------------------------------------------------------------- errors

@pytest.mark.parametrize("path", ["/raise-before", "/raise-after-start",
                                  "/raise-in-iter?after=0"])
def test_app_errors_before_the_body_give_500(edge, path):
    r = get(edge, path)
    expect(r.status == 500, f"GET {path}", r, "500")
    wait_for(lambda: "deliberate" in edge.stderr(), 5.0 * SLOW)
    assert "answered 500" in edge.stderr()
    r = get(edge, "/list?n=1&size=2")
    expect(r.status == 200, "GET /list after the failure", r, "200: the worker lives on")


def test_app_error_after_the_first_bytes_closes_the_connection(edge):
    req = b"GET /raise-in-iter?after=2 HTTP/1.1\r\nHost: h\r\n\r\n"
    sock, rfile = connect(edge)
    try:
        sock.sendall(req)
        r = read_head(rfile, req)
        body, terminated = read_chunked(rfile, req)
        expect(r.status == 200 and body == b"piece 0\npiece 1\n" and not terminated, req,
               f"{r} body {body!r} terminated={terminated}",
               "200, the two pieces, then the connection cut before the last chunk")
        expect(at_eof(sock, rfile), req, "the connection stayed open", "closed")
    finally:
        hang_up(sock, rfile)
    assert "after the response began; closing the connection" in edge.stderr()


def test_exc_info_replaces_the_response_before_the_body(edge):
    r = get(edge, "/exc-info")
    expect(r.status == 500 and r.body == b"custom error page\n" and r.header("x-replaced") == "yes",
           "GET /exc-info", r, "the app's replacement: 500 'custom error page'")


def test_exc_info_after_the_body_began_is_reraised(edge):
    req = b"GET /exc-info-late HTTP/1.1\r\nHost: h\r\n\r\n"
    sock, rfile = connect(edge)
    try:
        sock.sendall(req)
        r = read_head(rfile, req)
        body, terminated = read_chunked(rfile, req)
        expect(r.status == 200 and body == b"first piece\n" and not terminated, req,
               f"{r} body {body!r} terminated={terminated}",
               "the 200 that went out, cut after its first piece")
    finally:
        hang_up(sock, rfile)
    wait_for(lambda: "too late to replace" in edge.stderr(), 5.0 * SLOW)


# ---------------------------------------------------------------- close()

def test_close_is_called_after_a_normal_response(edge, tmp_path):
    mark = tmp_path / "closed"
    r = get(edge, f"/closed?mark={mark}")
    expect(r.status == 200 and r.body == b"first,second", "GET /closed", r, "200 first,second")
    assert wait_for(mark.exists, 5.0 * SLOW), "close() of the iterable was not called"


def hang_up_mid_stream(server, req, mark, next_path, next_body):
    """Send req, read its head and 1 KiB, close the socket: the server must stop
    the (endless) body and call its close(), which writes `mark`, and then
    answer GET next_path with next_body."""
    sock, rfile = connect(server)
    sock.sendall(req)
    r = read_head(rfile, req)
    first = rfile.read(1024)
    expect(r.status == 200 and len(first) == 1024, req, f"{r} then {show(first)}",
           "200 and the first KiB")
    hang_up(sock, rfile)
    assert wait_for(mark.exists, 10.0 * SLOW), (
        f"sent {req!r}, read 1 KiB, closed the socket: close() was not called within "
        f"{10 * SLOW:.0f} s\n{server.stderr()}")
    assert mark.read_text().startswith("closed after "), mark.read_text()
    r = get(server, next_path)
    expect(r.status == 200 and r.body == next_body, f"GET {next_path} after the disconnect", r,
           f"200 {next_body!r}: the thread is free again")


def test_client_disconnect_stops_the_iterable_and_closes_it(edge, tmp_path):
    # The iterable never ends by itself: only the server noticing the client
    # left can stop it, and close() must then run (it writes the mark).
    mark = tmp_path / "forever-closed"
    req = b"GET /forever?mark=%s HTTP/1.1\r\nHost: h\r\n\r\n" % str(mark).encode()
    hang_up_mid_stream(edge, req, mark, "/list?n=1&size=2", b"AA")


def stall_then_read(server, req, probe, probe_body):
    """Send req and read nothing for a second while GET probe must come back
    200 probe_body (the stalled response holds only a window of the region's
    chunks); then read the stalled response. Returns (head, body)."""
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    slow.settimeout(TIMEOUT)
    slow.connect(("127.0.0.1", server.port))
    slow.sendall(req)
    time.sleep(1.0 * SLOW)  # the response fills every buffer on the way
    r = get(server, probe)
    expect(r.status == 200 and r.body == probe_body, f"GET {probe} while another client stalls",
           r, f"200 {probe_body!r}: the stalled response holds only a window of chunks")
    rfile = slow.makefile("rb")
    try:
        head = read_head(rfile, req)
        return head, read_body(rfile, head, req)
    finally:
        hang_up(slow, rfile)


def test_a_stalled_reader_holds_a_bounded_share_of_the_region(start_server):
    # 5000 one-KiB pieces, each its own chunk, to a client that reads nothing
    # for a while, on a region of 64 chunks: only a window of them may wait
    # for the client (the kernel's socket buffers take the first MiBs), so
    # another request on the same worker is still served meanwhile.
    server = start_server(EDGE, workers=1,
                          args=["--interface", "wsgi", "--threads", "2", "--chunks", "64"])
    req = b"GET /stream?n=5000&size=1024 HTTP/1.1\r\nHost: h\r\n\r\n"
    head, body = stall_then_read(server, req, "/list?n=1&size=2", b"AA")
    want = b"".join(bytes([65 + i % 26]) * 1024 for i in range(5000))
    expect(body == want, req, f"{head} {show(body)}", f"the whole stream, {show(want)}")


def test_file_wrapper(edge, tmp_path):
    data = os.urandom(300 * 1024 + 17)
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    for bs in (1000, 8192, 65536):
        r = get(edge, f"/file?path={path}&bs={bs}")
        expect(r.status == 200 and r.body == data, f"GET /file (block size {bs})", r,
               f"the file's {len(data)} bytes, {show(data)}")


# ---------------------------------------------------------------- misbehaving apps

@pytest.fixture(scope="module")
def bad_server():
    from conftest import ServerFactory
    factory = ServerFactory()
    server = factory(MISBEHAVE, workers=1, args=["--interface", "wsgi"])
    yield server
    errors = factory.stop_all()
    if errors:
        pytest.fail("\n\n".join(errors))


@pytest.mark.parametrize("path,why", [
    ("/crlf-header", "response header 'X-Bad': the value holds CR, LF or NUL"),
    ("/bad-name", "response header name 'Bad Name' is not a token"),
    ("/bad-status", "the status 'OK' is not a three-digit code"),
    ("/latin1", "is not latin-1 text"),
    ("/str-item", "the response iterable yielded str, not bytes"),
    ("/str-result", "the response iterable yielded str, not bytes"),
    ("/none-result", "'NoneType' object is not iterable"),
    ("/no-start", "the app returned without calling start_response()"),
    ("/twice", "start_response() called a second time without exc_info"),
])
def test_protocol_violations_give_500_never_a_split_response(bad_server, path, why):
    req = b"GET %s HTTP/1.1\r\nHost: h\r\n\r\n" % path.encode()
    r = exchange(bad_server, req)
    expect(r.status == 500 and r.header("injected") is None
           and b"should not be sent" not in r.body, req, r,
           "500, and nothing of what the app asked for")
    wait_for(lambda: why in bad_server.stderr(), 5.0 * SLOW)
    assert why in bad_server.stderr(), f"expected {why!r} logged:\n{bad_server.stderr()}"


def test_hop_by_hop_headers_are_the_servers(bad_server):
    req = b"GET /hop-by-hop HTTP/1.1\r\nHost: h\r\n\r\n"
    r = exchange(bad_server, req)
    expect(r.status == 200 and r.header("transfer-encoding") is None
           and r.header("content-length") == "6" and r.header("connection") == "close"
           and r.body == b"hello\n" and r.closed, req, r,
           "no Transfer-Encoding from the app, its Connection: close honoured")


def test_close_that_raises_is_logged_and_the_response_stands(bad_server):
    r = get(bad_server, "/close-raises")
    expect(r.status == 200 and r.body == b"body despite close\n", "GET /close-raises", r,
           "200 with the body")
    wait_for(lambda: "close() of the WSGI response raised" in bad_server.stderr(), 5.0 * SLOW)
    assert "deliberate: close() fails" in bad_server.stderr()


def test_write_then_returned_list(bad_server):
    r = exchange(bad_server, b"GET /write-then-list HTTP/1.1\r\nHost: h\r\n\r\n")
    expect(r.status == 200 and r.body == b"written,returned", "GET /write-then-list", r,
           "what write() sent, then the list")


def test_returned_list_gets_content_length(bad_server):
    sock, rfile = connect(bad_server)
    try:
        req = (b"GET /plain-list HTTP/1.1\r\nHost: h\r\n\r\n"
               b"HEAD /plain-list HTTP/1.1\r\nHost: h\r\n\r\n"
               b"GET /plain-list HTTP/1.1\r\nHost: h\r\n\r\n")
        sock.sendall(req)
        for method in ("GET", "HEAD", "GET"):
            r = read_head(rfile, req)
            body = rfile.read(13) if method == "GET" else b""
            expect(r.header("content-length") == "13" and r.header("transfer-encoding") is None
                   and body == (b"" if method == "HEAD" else b"one,two,three"),
                   req, f"{r} {body!r}", f"{method}: Content-Length 13 (the list's length)")
    finally:
        hang_up(sock, rfile)


def test_status_without_reason_gets_the_registered_one(bad_server):
    r = exchange(bad_server, b"GET /status-only-code HTTP/1.1\r\nHost: h\r\n\r\n")
    expect(r.status == 200 and r.reason == "OK" and r.body == b"ok\n",
           "GET /status-only-code (status '200')", r, "HTTP/1.1 200 OK")


# ---------------------------------------------------------------- flags

def test_root_path(start_server):
    server = start_server(EDGE, workers=1, args=["--interface", "wsgi", "--root-path", "/mount/"])
    for path, script, info in (("/mount/environ", "/mount", "/environ"),
                               ("/mount/environ/caf%C3%A9", "/mount",
                                "/environ/" + "café".encode().decode("latin-1")),
                               ("/environ", "/mount", "/environ"),
                               ("/mountain/environ", "/mount", "/mountain/environ")):
        r = get(server, path)
        expect(r.status == 200, f"GET {path}", r, "200 with the environ")
        env = json.loads(r.body)
        expect((env["SCRIPT_NAME"], env["PATH_INFO"]) == (script, info), f"GET {path}",
               (env["SCRIPT_NAME"], env["PATH_INFO"]), (script, info))


def test_forwarded_headers_from_a_trusted_peer(start_server):
    server = start_server(EDGE, workers=1, args=["--interface", "wsgi"])  # default: 127.0.0.1
    env = environ_of(server, headers={"X-Forwarded-For": "6.6.6.6, 203.0.113.9",
                                      "X-Forwarded-Proto": "https", "Host": "example.com"})
    got = (env["REMOTE_ADDR"], env.get("REMOTE_PORT"), env["wsgi.url_scheme"],
           env["SERVER_PORT"])
    expect(got == ("203.0.113.9", None, "https", "443"),
           "X-Forwarded-For: 6.6.6.6, 203.0.113.9 / X-Forwarded-Proto: https from 127.0.0.1",
           got, "the rightmost untrusted hop, https, no REMOTE_PORT, port 443 by default")
    assert env["HTTP_X_FORWARDED_FOR"] == "6.6.6.6, 203.0.113.9"
    env = environ_of(server, headers={"Forwarded": 'for="[2001:db8::7]:4711";proto=https'})
    got = (env["REMOTE_ADDR"], env.get("REMOTE_PORT"), env["wsgi.url_scheme"])
    expect(got == ("2001:db8::7", "4711", "https"), "Forwarded: for=...;proto=https", got,
           "RFC 7239's client, port and scheme")


def test_forwarded_headers_from_an_untrusted_peer_are_ignored(start_server):
    server = start_server(EDGE, workers=1,
                          args=["--interface", "wsgi", "--forwarded-allow-ips", "10.0.0.1"])
    env = environ_of(server, headers={"X-Forwarded-For": "203.0.113.9",
                                      "X-Forwarded-Proto": "https"})
    got = (env["REMOTE_ADDR"], env["wsgi.url_scheme"])
    expect(got == ("127.0.0.1", "http"), "X-Forwarded-* from 127.0.0.1, trusted: 10.0.0.1 only",
           got, "the peer's own address and http")
    assert env["HTTP_X_FORWARDED_FOR"] == "203.0.113.9", "the header itself is still visible"


def test_forwarded_allow_star_takes_the_leftmost(start_server):
    server = start_server(EDGE, workers=1, env={"FORWARDED_ALLOW_IPS": "*"},
                          args=["--interface", "wsgi"])
    env = environ_of(server, headers={"X-Forwarded-For": "198.51.100.1, 10.0.0.2"})
    expect(env["REMOTE_ADDR"] == "198.51.100.1", "X-Forwarded-For: 198.51.100.1, 10.0.0.2 with *",
           env["REMOTE_ADDR"], "198.51.100.1")


@pytest.mark.parametrize("workers,threads", [(1, 1), (2, 3)])
def test_multithread_and_multiprocess(start_server, workers, threads):
    server = start_server(EDGE, workers=workers,
                          args=["--interface", "wsgi", "--threads", str(threads)])
    env = environ_of(server)
    # The mode the worker runs (auto picks one): from its start-up line.
    mode = re.search(r"mode ([a-z-]+)\)", server.stderr())
    assert mode, f"no 'mode X)' in the worker's start-up line:\n{server.stderr()}"
    per_interpreter = mode.group(1) == "subinterpreters"
    want = (threads > 1 and not per_interpreter,
            workers > 1 or (per_interpreter and threads > 1))
    got = (env["wsgi.multithread"], env["wsgi.multiprocess"])
    expect(got == want, f"-w {workers} --threads {threads} (mode {mode.group(1)})", got, want)
