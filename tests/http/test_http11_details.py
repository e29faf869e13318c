"""HTTP/1.1 details that real clients found (issue 16), over raw sockets.

Each test names the RFC section it checks. The corpus (test_corpus.py) covers
single exchanges; these need more than one connection state or more than one
interface: a half-close after pipelined requests, HEAD framing as each
interface frames it, OPTIONS * in each interface, and the log line an Upgrade
request leaves.
"""

import json
import socket
import time

import pytest

from rawhttp import APPS, ECHO_APP, SLOW, Reader, ServerFactory, app_view, connect

WSGI_APP = APPS / "wsgi_echo.py"
ASGI_APP = APPS / "asgi_echo.py"
NATIVE_HEAD_APP = APPS / "native_head.py"


@pytest.fixture(scope="module")
def servers():
    """One server per app, started lazily, stopped cleanly at the end."""
    factory = ServerFactory()
    started = {}

    def get(app, **kwargs):
        key = (str(app), tuple(sorted((k, str(v)) for k, v in kwargs.items())))
        if key not in started:
            started[key] = factory(app, workers=1, **kwargs)
        return started[key]

    yield get
    errors = factory.stop_all()
    if errors:
        pytest.fail("\n\n".join(errors))


def exchange(port, raw, count, half_close=True):
    """Send `raw`, optionally shut our sending side, read `count` responses,
    then what follows: 'eof', 'data', 'reset' or 'open'."""
    with connect(port) as sock:
        sock.sendall(raw)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        reader = Reader(sock)
        responses = [reader.read_response() for _ in range(count)]
        return responses, reader.wait_eof()


# ---------------------------------------------------------------- half-close

def test_half_close_after_pipelining_answers_every_request(servers):
    """RFC 9112 9.6: a client's FIN ends its sending, not the exchange. GET,
    POST with a 3-byte body and GET written at once, then shutdown(SHUT_WR):
    three responses in order, then a clean close."""
    server = servers(ECHO_APP)
    raw = (b"GET /one HTTP/1.1\r\nHost: t\r\n\r\n"
           b"POST /two HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"
           b"GET /three HTTP/1.1\r\nHost: t\r\n\r\n")
    responses, after = exchange(server.port, raw, 3)
    views = [app_view(r) for r in responses]
    assert [r.status for r in responses] == [200, 200, 200], responses
    assert [v["path"] for v in views] == ["/one", "/two", "/three"], views
    assert views[1]["body_length"] == 3
    assert after == "eof", f"after the third response: {after}"


def test_half_close_chunked_and_many_requests(servers):
    """Twenty pipelined requests, a chunked one among them, then FIN: all
    twenty answered."""
    server = servers(ECHO_APP)
    reqs = [f"GET /r{i} HTTP/1.1\r\nHost: t\r\n\r\n".encode() for i in range(20)]
    reqs[7] = (b"POST /r7 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"2\r\nhi\r\n0\r\n\r\n")
    responses, after = exchange(server.port, b"".join(reqs), 20)
    assert [app_view(r)["path"] for r in responses] == [f"/r{i}" for i in range(20)]
    assert app_view(responses[7])["body_length"] == 2
    assert after == "eof", after


def test_half_close_with_a_request_cut_short(servers):
    """A whole request, then half of one, then FIN: the whole one is
    answered, the cut one can never complete, and the connection closes
    cleanly (no reset)."""
    server = servers(ECHO_APP)
    raw = b"GET /whole HTTP/1.1\r\nHost: t\r\n\r\nGET /cut HTTP/1.1\r\nHo"
    responses, after = exchange(server.port, raw, 1)
    assert app_view(responses[0])["path"] == "/whole"
    assert after == "eof", after


def test_half_close_respects_connection_close(servers):
    """A request with Connection: close ends the exchange even when more
    follow before the FIN (RFC 9112 9.6)."""
    server = servers(ECHO_APP)
    raw = (b"GET /a HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
           b"GET /b HTTP/1.1\r\nHost: t\r\n\r\n")
    responses, after = exchange(server.port, raw, 1)
    assert app_view(responses[0])["path"] == "/a"
    assert after == "eof", after


def test_half_close_on_an_idle_connection_closes_it(servers):
    """FIN with nothing pending: the server closes at once."""
    server = servers(ECHO_APP)
    with connect(server.port) as sock:
        sock.sendall(b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n")
        reader = Reader(sock)
        assert app_view(reader.read_response())["path"] == "/a"
        sock.shutdown(socket.SHUT_WR)
        t0 = time.monotonic()
        assert reader.wait_eof() == "eof"
        assert time.monotonic() - t0 < 2 * SLOW


# ---------------------------------------------------------------- HEAD

INTERFACES = {"wsgi": WSGI_APP, "asgi": ASGI_APP}


def head_then_get(port, path):
    """HEAD `path` then GET / on the same connection: the HEAD response and
    proof that its framing left the connection usable."""
    with connect(port) as sock:
        sock.sendall(f"HEAD {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        reader = Reader(sock)
        head = reader.read_response(no_body=True)
        sock.sendall(b"GET /after-head HTTP/1.1\r\nHost: t\r\n\r\n")
        follow = reader.read_response()
        return head, follow


@pytest.mark.parametrize("interface", sorted(INTERFACES))
def test_head_with_an_empty_body_announces_no_length(servers, interface):
    """RFC 9110 8.6: a HEAD response may carry Content-Length only if it is
    the GET body's length. An app that returns an empty body for HEAD
    (Werkzeug does for every route) says nothing about that length, so no
    Content-Length at all (it used to be 'Content-Length: 0')."""
    server = servers(INTERFACES[interface])
    head, follow = head_then_get(server.port, "/")
    assert head.status == 200, head
    assert head.header("content-length") is None, head
    assert head.header("transfer-encoding") is None, head
    assert follow.status == 200 and json.loads(follow.body)["path"] == "/after-head", follow


@pytest.mark.parametrize("interface", sorted(INTERFACES))
def test_head_keeps_the_apps_own_length(servers, interface):
    server = servers(INTERFACES[interface])
    head, follow = head_then_get(server.port, "/declared")
    assert head.header("content-length") == "42", head
    assert follow.status == 200, follow


@pytest.mark.parametrize("path, length", [("/empty", None), ("/stream-empty", None),
                                          ("/declared", "42"), ("/other", "42")])
def test_head_native(servers, path, length):
    """Native apps: an empty HEAD body announces nothing; the app's own
    Content-Length, or a body it made for HEAD (the GET's), is announced."""
    server = servers(NATIVE_HEAD_APP)
    head, follow = head_then_get(server.port, path)
    assert head.status == 200, head
    assert head.header("content-length") == length, head
    assert follow.status == 200 and len(follow.body) == 42, follow


# ---------------------------------------------------------------- OPTIONS *

def options_star(port):
    with connect(port) as sock:
        sock.sendall(b"OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n")
        return Reader(sock).read_response()


def test_options_star_wsgi_path_info(servers):
    """OPTIONS * (RFC 9112 3.2.4) reaches a WSGI app with PATH_INFO '*', as
    gunicorn gives it, not '' (which Flask redirects to '/')."""
    resp = options_star(servers(WSGI_APP).port)
    assert resp.status == 200, resp
    assert json.loads(resp.body)["path"] == "*", resp


def test_options_star_wsgi_with_root_path(servers):
    resp = options_star(servers(WSGI_APP, args=["--root-path", "/app"]).port)
    view = json.loads(resp.body)
    assert (view["path"], view["script_name"]) == ("*", "/app"), view


def test_options_star_asgi_path(servers):
    resp = options_star(servers(ASGI_APP).port)
    view = json.loads(resp.body)
    assert (view["path"], view["raw_path"]) == ("*", "*"), view


def test_options_star_native_path(servers):
    resp = options_star(servers(ECHO_APP).port)
    assert app_view(resp)["path"] == "*", resp


# ---------------------------------------------------------------- Upgrade

UPGRADE = (b"GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
           b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")


def test_upgrade_is_served_as_http_and_logged_once(servers):
    """Until WebSocket is built, an Upgrade request is a plain request (the
    connection stays HTTP/1.1), and the log says so once per worker."""
    server = servers(ECHO_APP, args=["--log-level", "info"])
    for _ in range(3):
        with connect(server.port) as sock:
            sock.sendall(UPGRADE)
            reader = Reader(sock)
            resp = reader.read_response()
            assert resp.status == 200 and app_view(resp)["path"] == "/ws", resp
            sock.sendall(b"GET /still-http HTTP/1.1\r\nHost: t\r\n\r\n")
            assert app_view(reader.read_response())["path"] == "/still-http"
    deadline = time.monotonic() + 5 * SLOW
    while "does not support upgrades" not in server.stderr() and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = [ln for ln in server.stderr().splitlines() if "does not support upgrades" in ln]
    assert len(lines) == 1, lines
    assert "info" in lines[0], lines[0]
