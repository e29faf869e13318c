"""HTTP/1.1 conformance corpus: raw requests against a live supervisor.

Run through scripts/test.sh, or by hand:
    RINGMASTER_BUILD=build .venv-test/bin/python -m pytest tests/http -q

Every entry of corpus.json is sent over a raw socket to one `ringmaster -w 2`
serving apps/echo.py (which answers with JSON describing what it saw), and
the responses are checked. Entries marked "split" are sent a second time one
byte per write (TCP_NODELAY, 1 ms apart): the result must be the same.

Corpus schema (corpus.json: {"comment": ..., "entries": [entry, ...]}):

    id         unique name, used as the pytest id
    group      method | target | version | host | content-length |
               transfer-encoding | chunked | fields | lines | limits | expect |
               connection | pipelining
    about      what is sent and why that answer is right
    rfc        the section that decides it (optional)
    request    the bytes to send: a str (each character one byte, so JSON
               escapes \\r \\n \\u0000 \\u00ff write any byte), or a list of
               parts: str, {"repeat": str | [parts], "times": n},
               {"pause": seconds} (send what came before, then wait; scaled
               for slow builds)
    responses  the responses expected, in order, each:
                 status         int, or a list of acceptable ints
                 app            (only checked when the status is 200) keys of
                                the echo app's JSON that must match: method,
                                path, query_string, http_version, headers (the
                                whole list, lowercase names, in order),
                                body_length, body (str or parts like request;
                                compared by length and sha256)
                 no_body        the response has no body (HEAD)
                 header_present names of headers the response must carry
               [] means no response at all: see "waits"
               Every final response must carry Date (RFC 9110 6.6.1).
    close      true: the server must close the connection (clean EOF, no RST)
               right after the last response, which must carry
               "Connection: close". false: the connection must stay usable: a
               follow-up GET on it must be answered with the app's view of
               that GET (this also proves the request's body was framed
               right). Absent: true when the last status is >= 400, else false
    waits      the request is incomplete: nothing may arrive for 0.5 s and the
               connection must stay open
    optional_100  a "100 Continue" before the listed responses is allowed
    split      also run the byte-at-a-time variant
    xfail      a known server bug (the reason says what is wrong and what the
               RFC says): the test runs and must fail (strict xfail), so a fix
               shows up as XPASS and the marker must go

After every entry a new connection must still get 200: one client's bad
request never hurts another.
"""

import hashlib

import pytest

from rawhttp import (ECHO_APP, SLOW, TIMEOUT, Reader, ServerFactory, app_view, build, connect,
                     load_corpus, request_bytes, send_steps, show, simple_get)

ENTRIES = load_corpus()
BY_ID = {e["id"]: e for e in ENTRIES}
WAIT_QUIET = 0.5 * SLOW


def _params(entries):
    out = []
    for e in entries:
        marks = [pytest.mark.xfail(strict=True, reason=e["xfail"])] if e.get("xfail") else []
        out.append(pytest.param(e["id"], id=e["id"], marks=marks))
    return out


@pytest.fixture(scope="module")
def echo_server():
    factory = ServerFactory()
    server = factory(ECHO_APP, workers=2)
    yield server
    errors = factory.stop_all()
    if errors:
        pytest.fail("\n\n".join(errors))


# ---------------------------------------------------------------- checking

class Failure(AssertionError):
    pass


def _statuses(spec):
    return spec if isinstance(spec, list) else [spec]


def _check_app(entry, index, resp, want, fail):
    info = app_view(resp)
    if info is None:
        fail(f"response {index + 1}: a 200 whose body is not the echo app's JSON: {resp!r}")
    for key, value in want.items():
        if key == "body":
            body = b"".join(s for s in build(value) if isinstance(s, bytes))
            got = (info.get("body_length"), info.get("body_sha256"))
            exp = (len(body), hashlib.sha256(body).hexdigest())
            if got != exp:
                fail(f"response {index + 1}: the app saw a body of {got[0]} bytes (sha256 "
                     f"{str(got[1])[:16]}), expected {show(body)} ({exp[0]} bytes)\n"
                     f"app view: {info}")
        elif info.get(key) != value:
            fail(f"response {index + 1}: the app saw {key} = {info.get(key)!r}, expected "
                 f"{value!r}\napp view: {info}")


def run_entry(server, entry, bytewise=False):
    steps = build(entry["request"])
    raw = request_bytes(entry)
    mode = "one byte per write" if bytewise else "whole"
    got = []
    notes = []

    def fail(msg):
        raise Failure(
            f"\n  corpus entry: {entry['id']} ({entry['about']})"
            f"\n  sent ({mode}): {show(raw)}"
            f"\n  got: {got!r}{' [' + '; '.join(notes) + ']' if notes else ''}"
            f"\n  problem: {msg}"
            f"\n--- ringmaster stderr (tail) ---\n{server.stderr()[-2000:]}")

    expected = entry["responses"]
    with connect(server.port, nodelay=bytewise) as sock:
        reader = Reader(sock)
        # Byte by byte, stop sending once a lone error response has come back
        # (the server is closing); otherwise only a closed socket stops us.
        stop = len(expected) == 1 and min(_statuses(expected[0]["status"])) >= 400
        note = send_steps(sock, steps, bytewise=bytewise, stop_when_answered=bytewise and stop)
        if note:
            notes.append(note)

        if entry.get("waits"):
            if not reader.quiet_for(WAIT_QUIET):
                fail(f"expected no answer to an incomplete request for {WAIT_QUIET:.1f} s; "
                     f"got {show(reader.buf)}{' and EOF' if reader.eof else ''}")
            server.assert_running()
            return

        last = None
        i = 0
        while i < len(expected):
            want = expected[i]
            try:
                resp = reader.read_response(no_body=want.get("no_body", False))
            except EOFError:
                fail(f"the connection closed before response {i + 1} of {len(expected)} "
                     f"(expected status {want['status']})")
            except ConnectionResetError:
                fail(f"connection reset before response {i + 1} of {len(expected)} "
                     f"(expected status {want['status']})")
            except (TimeoutError, OSError) as exc:
                fail(f"no response {i + 1} of {len(expected)} within {TIMEOUT:.0f} s "
                     f"({exc.__class__.__name__}); expected status {want['status']}")
            except ValueError as exc:
                fail(f"response {i + 1} is not HTTP: {exc}")
            if resp.status == 100 and want["status"] != 100 and entry.get("optional_100"):
                got.append(resp)
                continue
            got.append(resp)
            if resp.version != "HTTP/1.1":
                fail(f"response {i + 1} has version {resp.version}, expected HTTP/1.1")
            if resp.status not in _statuses(want["status"]):
                fail(f"response {i + 1}: status {resp.status}, expected {want['status']}")
            # RFC 9110 6.6.1: an origin server with a clock sends Date in
            # 2xx, 3xx and 4xx responses; ringmaster sends it in all of its
            # own answers (the supervisor's 400s included).
            if resp.status >= 200 and resp.header("date") is None:
                fail(f"response {i + 1} ({resp.status}) has no Date header")
            for name in want.get("header_present", []):
                if resp.header(name) is None:
                    fail(f"response {i + 1} has no {name} header")
            if resp.status == 200 and want.get("app"):
                _check_app(entry, i, resp, want["app"], fail)
            last = resp
            i += 1

        close = entry.get("close")
        if close is None:
            close = last.status >= 400
        if close:
            if (last.header("connection") or "").lower() != "close":
                fail("the last response does not carry 'Connection: close' although the "
                     "server is expected to close the connection after it")
            state = reader.wait_eof()
            if state == "reset" and bytewise and notes:
                state = "eof"  # we were still sending when it closed: RST is TCP's answer
            if state != "eof":
                what = {"data": f"more bytes: {show(reader.buf)}",
                        "reset": "a connection reset (RST) instead of a clean close (FIN)",
                        "open": f"the connection still open after {TIMEOUT:.0f} s"}[state]
                fail(f"expected the server to close the connection after the last response; "
                     f"got {what}")
        else:
            if reader.buf:
                fail(f"unexpected bytes after the last response: {show(reader.buf)}")
            try:
                sock.sendall(b"GET /__next?after=" + entry["id"].encode() +
                             b" HTTP/1.1\r\nHost: t\r\n\r\n")
                resp = reader.read_response()
            except (OSError, EOFError, ValueError) as exc:
                fail(f"the connection should stay usable, but a follow-up GET on it failed: "
                     f"{exc.__class__.__name__}: {exc}")
            got.append(resp)
            info = app_view(resp) or {}
            if resp.status != 200 or info.get("path") != "/__next":
                fail("the follow-up GET /__next on the same connection did not get the app's "
                     "200 for /__next (the previous request was framed wrong?)")

    # Whatever happened on that connection, a new client is served.
    try:
        alive = simple_get(server.port)
    except (OSError, EOFError, ValueError) as exc:
        fail(f"after this entry a new connection was not served: {exc!r}")
    if alive.status != 200:
        fail(f"after this entry a new connection got {alive!r}")


# ---------------------------------------------------------------- tests

@pytest.mark.parametrize("entry_id", _params(ENTRIES))
def test_corpus(echo_server, entry_id):
    echo_server.assert_running()
    run_entry(echo_server, BY_ID[entry_id])
    echo_server.assert_running()


SPLIT = [e for e in ENTRIES if e.get("split")]


@pytest.mark.parametrize("entry_id", _params(SPLIT))
def test_corpus_byte_by_byte(echo_server, entry_id):
    run_entry(echo_server, BY_ID[entry_id], bytewise=True)
    echo_server.assert_running()


def test_corpus_shape():
    """The corpus covers what issue 4 asks for, and its entries are well formed."""
    assert len(ENTRIES) >= 120, f"{len(ENTRIES)} entries, expected at least 120"
    assert len(SPLIT) >= 10, f"{len(SPLIT)} byte-by-byte entries, expected at least 10"
    groups = {e["group"] for e in ENTRIES}
    for g in ["method", "target", "version", "host", "content-length", "transfer-encoding",
              "chunked", "fields", "lines", "limits", "expect", "connection", "pipelining"]:
        assert g in groups, f"no corpus entry in group {g}"
    for e in ENTRIES:
        assert e["responses"] or e.get("waits"), f"{e['id']}: no responses and not 'waits'"
        for r in e["responses"]:
            for s in _statuses(r["status"]):
                assert 100 <= s <= 599, f"{e['id']}: status {s}"
        if e.get("split"):
            assert all(isinstance(s, bytes) for s in build(e["request"])), \
                f"{e['id']}: a split entry cannot pause"
