"""Streamed responses of the native interface (an iterable as the body), end to end.

The app is apps/streaming.py. Covered: chunked, Content-Length and HTTP/1.0
close-delimited framing; bytes received equal what the app produced; HEAD;
an exception or a str piece before and after the head went out; a declared
length the body breaks; close() of the iterable in every case, the client's
disconnect included; and the backpressure contract: a client that never reads
a 100 MiB stream costs the supervisor bounded memory, other clients are served
meanwhile, and the write timeout ends the stream (close() runs).

Every failure message says what was sent, what came back and what was expected.
"""

import hashlib
import socket
import threading
import time

import pytest

from conftest import APPS, SLOW, checked, serving, wait_for
from test_wsgi import (at_eof, connect, expect, get, hang_up, hang_up_mid_stream, read_body,
                       read_chunked, read_head, show, stall_then_read)

APP = APPS / "streaming.py"


@pytest.fixture(scope="module")
def stream_server():
    with serving(APP, workers=1, args=["--threads", "2"]) as server:
        yield server


@pytest.fixture
def srv(stream_server):
    yield from checked(stream_server)


def letters(n, size):
    return b"".join(bytes([65 + i % 26]) * size for i in range(n))


def blocks(mib):
    return b"".join(i.to_bytes(4, "big") * 16384 for i in range(mib * 16))


def raw(server, req, until_eof=False):
    """Send req on a fresh connection; return (head, body, terminated, closed):
    closed when the connection did not serve another request after it."""
    sock, rfile = connect(server)
    try:
        sock.sendall(req)
        head = read_head(rfile, req)
        te = (head.header("transfer-encoding") or "").lower()
        if until_eof:
            body, terminated = rfile.read(), True
        elif "chunked" in te:
            body, terminated = read_chunked(rfile, req)
        elif head.header("content-length") is not None:
            n = int(head.header("content-length"))
            body = rfile.read(n)
            terminated = len(body) == n
        else:
            body, terminated = b"", True
        return head, body, terminated, until_eof or not answers_next(sock, rfile)
    finally:
        hang_up(sock, rfile)


def answers_next(sock, rfile):
    """Does the connection still serve a request after the response just read?"""
    try:
        sock.sendall(b"GET /gen?n=1&size=2 HTTP/1.1\r\nHost: h\r\n\r\n")
        return rfile.readline().startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def mark_text(mark, what):
    assert wait_for(mark.exists, 5.0 * SLOW), f"{what}: close() of the body was not called"
    return mark.read_text()


# ---------------------------------------------------------------- framing

def test_generator_body_is_chunked_on_http11(srv, tmp_path):
    mark = tmp_path / "m"
    req = b"GET /gen?n=40&size=1000&mark=%s HTTP/1.1\r\nHost: h\r\n\r\n" % str(mark).encode()
    head, body, terminated, closed = raw(srv, req)
    want = letters(40, 1000)
    expect(head.status == 200 and head.header("transfer-encoding") == "chunked"
           and head.header("content-length") is None and terminated and body == want,
           req, f"{head} {show(body)} terminated={terminated}",
           f"200, Transfer-Encoding: chunked, terminated, {show(want)}")
    expect(head.header("content-type") == "text/x-stream", req, head, "the app's content type")
    expect(not closed, req, "the server closed the connection", "a kept-alive connection")
    assert mark_text(mark, req) == "closed after 40 pieces, 40000 bytes"


@pytest.mark.parametrize("path", ["/bare", "/generator"])
def test_an_iterable_returned_directly_is_streamed(srv, path):
    r = get(srv, f"{path}?n=5&size=3")
    expect(r.status == 200 and r.body == letters(5, 3)
           and r.header("content-type") == "application/octet-stream",
           f"GET {path}", r, f"200 application/octet-stream {letters(5, 3)!r}")


def test_a_list_body_is_sent_with_its_length(srv):
    r = get(srv, "/list-body")
    expect(r.status == 201 and r.body == b"abc" and r.header("content-type") == "text/x-parts"
           and r.header("content-length") == "3" and r.header("transfer-encoding") is None,
           "GET /list-body", r, "201 text/x-parts, Content-Length: 3, b'abc'")
    r = get(srv, "/tuple-body")
    expect(r.status == 200 and r.body == b"x" * 40000 + b"yz"
           and r.header("content-length") == "40002",
           "GET /tuple-body", r, "200, Content-Length: 40002, the pieces joined")
    r = get(srv, "/list-str")
    expect(r.status == 500, "GET /list-str", r, "500: a str piece")


def test_declared_content_length_is_used(srv, tmp_path):
    mark = tmp_path / "m"
    req = b"GET /length?n=30&size=1000&mark=%s HTTP/1.1\r\nHost: h\r\n\r\n" % str(mark).encode()
    head, body, terminated, closed = raw(srv, req)
    expect(head.status == 200 and head.header("content-length") == "30000"
           and head.header("transfer-encoding") is None and body == letters(30, 1000),
           req, f"{head} {show(body)}", "200 with Content-Length: 30000 and the body")
    expect(not closed, req, "closed", "a kept-alive connection")
    assert mark_text(mark, req) == "closed after 30 pieces, 30000 bytes"


@pytest.mark.parametrize("length", ["0", "1"])
def test_twenty_mib_arrive_intact(srv, length):
    r = get(srv, f"/blocks?mib=20&length={length}")
    want = hashlib.sha256(blocks(20)).hexdigest()
    got = hashlib.sha256(r.body).hexdigest()
    framing = "content-length" if length == "1" else "transfer-encoding"
    expect(r.status == 200 and len(r.body) == 20 << 20 and got == want
           and r.header(framing) is not None,
           f"GET /blocks?mib=20&length={length}", f"{r.status} {len(r.body)} bytes sha256 {got}",
           f"200 {20 << 20} bytes sha256 {want} framed by {framing}")


def test_http10_body_is_close_delimited(srv):
    req = b"GET /gen?n=10&size=100 HTTP/1.0\r\n\r\n"
    head, body, _, _ = raw(srv, req, until_eof=True)
    expect(head.status == 200 and head.header("transfer-encoding") is None
           and head.header("content-length") is None
           and (head.header("connection") or "").lower() == "close" and body == letters(10, 100),
           req, f"{head} {show(body)}", "200, no length, Connection: close, body until EOF")


def test_head_sends_headers_only_and_closes_the_body(srv, tmp_path):
    mark = tmp_path / "m"
    req = (b"HEAD /gen?n=10&size=100&mark=%s HTTP/1.1\r\nHost: h\r\n\r\n"
           b"GET /gen?n=1&size=2 HTTP/1.1\r\nHost: h\r\n\r\n") % str(mark).encode()
    sock, rfile = connect(srv)
    try:
        sock.sendall(req)
        head = read_head(rfile, req)
        nxt = read_head(rfile, req)  # the next response follows the head directly
        body = read_body(rfile, nxt, req)
    finally:
        hang_up(sock, rfile)
    expect(head.status == 200 and nxt.status == 200 and body == b"AA", req,
           f"{head} then {nxt} {body!r}", "a bodyless HEAD response, then the GET's")
    assert mark_text(mark, req) == "closed after 0 pieces, 0 bytes"


def test_head_keeps_a_declared_length(srv):
    req = b"HEAD /length?n=3&size=5 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
    head, body, _, _ = raw(srv, req, until_eof=True)
    expect(head.status == 200 and head.header("content-length") == "15" and body == b"",
           req, f"{head} {show(body)}", "200, Content-Length: 15, no body")


def test_bodyless_status_never_iterates(srv, tmp_path):
    mark = tmp_path / "m"
    r = get(srv, f"/status-204?mark={mark}")
    expect(r.status == 204 and r.body == b"" and r.header("content-length") is None
           and r.header("transfer-encoding") is None,
           "GET /status-204", r, "204 without body or framing headers")
    assert mark_text(mark, "GET /status-204") == "closed after 0 pieces, 0 bytes"


# ---------------------------------------------------------------- app errors

@pytest.mark.parametrize("path", ["/raise-early", "/str-first"])
def test_failure_before_the_first_piece_is_a_500(srv, tmp_path, path):
    mark = tmp_path / "m"
    r = get(srv, f"{path}?mark={mark}")
    expect(r.status == 500, f"GET {path}", r, "500")
    mark_text(mark, path)
    needle = "ValueError" if path == "/raise-early" else "yielded str, not bytes"
    assert wait_for(lambda: needle in srv.stderr(), 5.0 * SLOW), srv.stderr()[-2000:]


@pytest.mark.parametrize("path,first,needle", [
    ("/raise-late", b"first piece\n", "deliberate failure after the first piece"),
    ("/str-late", b"ok\n", "yielded str, not bytes"),
])
def test_failure_after_the_head_cuts_the_chunked_body(srv, tmp_path, path, first, needle):
    mark = tmp_path / "m"
    req = b"GET %s?mark=%s HTTP/1.1\r\nHost: h\r\n\r\n" % (path.encode(), str(mark).encode())
    head, body, terminated, closed = raw(srv, req)
    expect(head.status == 200 and body == first and not terminated and closed, req,
           f"{head} {body!r} terminated={terminated} closed={closed}",
           f"the 200 that went out, cut after {first!r}, no terminator, connection closed")
    mark_text(mark, path)
    assert wait_for(lambda: needle in srv.stderr() and "closing the connection" in srv.stderr(),
                    5.0 * SLOW), srv.stderr()[-2000:]
    r = get(srv, "/gen?n=1&size=2")
    expect(r.status == 200 and r.body == b"AA", "GET /gen after", r, "the worker lives on")


@pytest.mark.parametrize("query,sent_before_cut", [
    ("n=3&size=20000&length=100000", 60000),   # too few: 60000 of 100000
    ("n=3&size=20000&length=30000", 20000),    # too many: the second piece passes 30000
])
def test_a_broken_content_length_closes_the_connection(srv, query, sent_before_cut):
    req = b"GET /length?%s HTTP/1.1\r\nHost: h\r\n\r\n" % query.encode()
    sock, rfile = connect(srv)
    try:
        sock.sendall(req)
        head = read_head(rfile, req)
        n = int(head.header("content-length"))
        body = rfile.read(n)  # stops at EOF
        closed = at_eof(sock, rfile)
    finally:
        hang_up(sock, rfile)
    expect(len(body) == sent_before_cut and body == letters(3, 20000)[:sent_before_cut]
           and closed, req, f"{head} {show(body)} closed={closed}",
           f"the first {sent_before_cut} bytes, then EOF before Content-Length {n}")
    assert wait_for(lambda: "its Content-Length announced" in srv.stderr(), 5.0 * SLOW)


def test_a_broken_content_length_before_anything_went_out_is_a_500(srv):
    r = get(srv, "/length?n=1&size=10&length=5")
    expect(r.status == 500, "GET /length?n=1&size=10&length=5", r, "500")


# ---------------------------------------------------------------- the client leaves

def test_client_disconnect_stops_the_generator_and_closes_it(srv, tmp_path):
    mark = tmp_path / "m"
    req = b"GET /forever?mark=%s HTTP/1.1\r\nHost: h\r\n\r\n" % str(mark).encode()
    hang_up_mid_stream(srv, req, mark, "/gen?n=2&size=3", b"AAABBB")


def test_a_large_body_of_known_length_is_windowed_too(start_server):
    # 8 MiB of bytes (512 chunks) on a region of 64 chunks, to a client that
    # reads nothing for a while: only a window of chunks may wait for it, so
    # the worker's other thread still gets chunks to answer another client.
    server = start_server(APP, workers=1, args=["--threads", "2", "--chunks", "64"])
    req = b"GET /big-bytes?mib=8 HTTP/1.1\r\nHost: h\r\n\r\n"
    head, body = stall_then_read(server, req, "/gen?n=2&size=3", b"AAABBB")
    want = blocks(8)
    expect(head.header("content-length") == str(len(want)) and body == want, req,
           f"{head} {show(body)}", f"Content-Length framing and {show(want)}")


def vm_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS in /proc/{pid}/status")


def test_a_client_that_never_reads_100_mib_costs_bounded_memory(start_server, tmp_path):
    # The acceptance test of issue #4: the stream is produced as fast as the
    # window lets it, the client reads nothing, the supervisor must not buffer
    # it; the other serving thread answers others meanwhile; the write timeout
    # closes the stuck connection and the worker then closes the generator.
    write_timeout = 3
    server = start_server(APP, workers=1,
                          args=["--threads", "2", "--write-timeout", str(write_timeout)])
    pid = server.proc.pid
    mark = tmp_path / "m"
    stuck = socket.socket()
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    stuck.connect(("127.0.0.1", server.port))
    req = b"GET /blocks?mib=100&mark=%s HTTP/1.1\r\nHost: h\r\n\r\n" % str(mark).encode()
    stuck.sendall(req)
    sent_at = time.monotonic()

    peak, served, failures = 0, 0, []
    stop = threading.Event()

    def others():
        nonlocal served
        while not stop.is_set():
            r = get(server, "/gen?n=2&size=3")
            if r.status == 200 and r.body == b"AAABBB":
                served += 1
            else:
                failures.append(str(r))
            time.sleep(0.05)

    t = threading.Thread(target=others)
    t.start()
    try:
        deadline = time.monotonic() + (write_timeout + 20) * SLOW
        while not mark.exists() and time.monotonic() < deadline:
            peak = max(peak, vm_rss_kib(pid))
            time.sleep(0.05)
        closed_after = time.monotonic() - sent_at
    finally:
        stop.set()
        t.join()
        stuck.close()
    peak = max(peak, vm_rss_kib(pid))
    assert mark.exists(), (
        f"sent {req!r} and read nothing: close() of the body did not run within "
        f"{write_timeout + 20} s of a {write_timeout} s write timeout\n{server.stderr()}")
    text = mark.read_text()
    produced = int(text.split(", ")[1].split()[0])
    expect(produced < 100 << 20, req, text, "the stream stopped well before its 100 MiB")
    # Only the write timeout may end it: the client is still connected.
    expect(closed_after >= 0.9 * write_timeout, req, f"close() ran after {closed_after:.1f} s",
           f"close() no sooner than the {write_timeout} s write timeout")
    expect(peak < 64 * 1024, req, f"supervisor VmRSS peaked at {peak} KiB",
           "under 64 MiB while the client read nothing")
    expect(served >= 5 and not failures, "GET /gen?n=2&size=3 meanwhile",
           f"{served} served, failures {failures[:3]}", "other clients served")
