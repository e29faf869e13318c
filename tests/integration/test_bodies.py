"""Large request bodies: region slices up to --body-spill-size, a file beyond.

The app (apps/body_hash.py) hashes what it reads and reports how many spilled
bodies exist in the spill directory while it runs, so each test checks the
bytes, where they travelled, and that nothing is left behind.
"""

import hashlib
import json
import os
import random
import shutil
import socket
import threading
import time

from conftest import APPS, SLOW, wait_for

APP = APPS / "body_hash.py"
TIMEOUT = 60.0 * SLOW


def spilled_files(spill):
    """The spilled bodies under --spill-dir: they live in the supervisor's
    private directory inside it (ringmaster-UID-PID.XXXXXX/N.body)."""
    return sorted(spill.rglob("*.body"))


def start(start_server, tmp_path, *args, native=False):
    spill = tmp_path / "spill"
    spill.mkdir(exist_ok=True)
    app = f"{APP}:native_app" if native else str(APP)
    iface = ["--interface", "native" if native else "wsgi"]
    server = start_server(app=app, workers=1,
                          args=iface + ["--spill-dir", str(spill)] + list(args),
                          env={"RM_TEST_SPILL_DIR": str(spill)})
    return server, spill


class Responses:
    """Reads Content-Length responses off one connection, keeping bytes of the
    next response that arrived with the previous one."""

    def __init__(self, sock):
        self.sock, self.buf = sock, b""

    def _fill(self):
        piece = self.sock.recv(65536)
        self.buf += piece
        return bool(piece)

    def next(self):
        """(status, headers dict, body); status 0 if the connection ended first."""
        while b"\r\n\r\n" not in self.buf:
            if not self._fill():
                return 0, {}, b""
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(self.buf) < length and self._fill():
            pass
        body, self.buf = self.buf[:length], self.buf[length:]
        return status, headers, body


def read_response(sock):
    return Responses(sock).next()


def post(server, blocks, chunked=False, path="/", expect_status=200, total=None):
    """Send the body made of `blocks` (bytes pieces; an iterator needs `total`
    unless chunked); return the JSON answer."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        if chunked:
            sock.sendall(f"POST {path} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
                         "\r\n".encode())
            for block in blocks:
                sock.sendall(b"%x\r\n%s\r\n" % (len(block), block))
            sock.sendall(b"0\r\n\r\n")
        else:
            if total is None:
                total = sum(len(b) for b in blocks)
            sock.sendall(f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {total}\r\n"
                         "\r\n".encode())
            for block in blocks:
                sock.sendall(block)
        status, _, body = read_response(sock)
    assert status == expect_status, f"status {status}, body {body[:200]!r}"
    return json.loads(body) if status == 200 else body


def digest_of(blocks):
    h = hashlib.sha256()
    for block in blocks:
        h.update(block)
    return h.hexdigest()


def vm_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_small_body_stays_in_shared_memory(start_server, tmp_path):
    server, spill = start(start_server, tmp_path, "--body-spill-size", "64K")
    body = os.urandom(60000)
    got = post(server, [body])
    assert got == {"length": len(body), "sha256": digest_of([body]), "spilled": 0}


def test_body_over_the_spill_size_goes_through_a_file_that_is_removed(start_server, tmp_path):
    server, spill = start(start_server, tmp_path, "--body-spill-size", "64K",
                          "--max-body-size", "8M")
    body = os.urandom(3 << 20)
    got = post(server, [body])
    assert got == {"length": len(body), "sha256": digest_of([body]), "spilled": 1}
    assert wait_for(lambda: not spilled_files(spill), 5.0), spilled_files(spill)


def test_chunked_body_moves_to_a_file_when_it_grows(start_server, tmp_path):
    """A chunked body has no length up front: it starts in the region and moves
    to a file once it passes the spill size, in pieces of every size."""
    server, spill = start(start_server, tmp_path, "--body-spill-size", "100000",
                          "--max-body-size", "64M")
    rnd = random.Random(7)
    blocks = [os.urandom(rnd.choice((1, 7, 300, 5000, 40000, 200000))) for _ in range(300)]
    got = post(server, blocks, chunked=True)
    assert got["sha256"] == digest_of(blocks) and got["length"] == sum(map(len, blocks))
    assert got["spilled"] == 1
    # Line by line over the file's read-ahead boundaries.
    lines = [b"line %d %s\n" % (i, b"x" * rnd.randrange(0, 3000)) for i in range(2000)]
    got = post(server, lines, chunked=True, path="/?lines=1")
    assert got["sha256"] == digest_of(lines) and got["spilled"] == 1
    assert wait_for(lambda: not spilled_files(spill), 5.0), spilled_files(spill)


def test_native_request_body_reads_a_spilled_body_whole(start_server, tmp_path):
    server, spill = start(start_server, tmp_path, "--body-spill-size", "1K",
                          "--max-body-size", "16M", native=True)
    body = os.urandom(5 << 20)
    got = post(server, [body])
    assert got == {"length": len(body), "sha256": digest_of([body]), "spilled": 1}


def test_keep_alive_and_pipelining_after_a_spilled_body(start_server, tmp_path):
    server, spill = start(start_server, tmp_path, "--body-spill-size", "4K",
                          "--max-body-size", "1M")
    first, second = os.urandom(500000), os.urandom(100)
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s"
                     b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s"
                     % (len(first), first, len(second), second))
        responses = Responses(sock)
        s1, _, b1 = responses.next()
        s2, _, b2 = responses.next()
    assert (s1, s2) == (200, 200)
    assert json.loads(b1)["sha256"] == digest_of([first]) and json.loads(b1)["spilled"] == 1
    assert json.loads(b2) == {"length": 100, "sha256": digest_of([second]), "spilled": 0}


def test_spilled_body_over_max_body_size_is_413_and_leaves_no_file(start_server, tmp_path):
    server, spill = start(start_server, tmp_path, "--body-spill-size", "16K",
                          "--max-body-size", "1M")
    answer = b""
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        try:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
            for _ in range(5):
                sock.sendall(b"%x\r\n%s\r\n" % (300000, os.urandom(300000)))
        except OSError:
            pass  # the server answered and closed while we were still sending
        try:
            while True:
                piece = sock.recv(65536)
                if not piece:
                    break
                answer += piece
        except OSError:
            pass
    # The supervisor lingers (reads and drops the rest) rather than closing on
    # unread bytes, so no reset destroys the answer (RFC 9112 9.6).
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert wait_for(lambda: not spilled_files(spill), 5.0), spilled_files(spill)
    assert post(server, [b"still serving"])["length"] == 13


def test_unwritable_spill_dir_is_500_with_a_log_line(start_server, tmp_path):
    server, spill = start(start_server, tmp_path, "--body-spill-size", "1K")
    shutil.rmtree(spill)  # the directory (and our private one in it) vanished under the server
    body = post(server, [os.urandom(100000)], expect_status=500)
    assert b"500" in body
    assert wait_for(lambda: "cannot spill a request body" in server.stderr(), 5.0), \
        server.stderr()
    assert post(server, [b"x" * 100])["length"] == 100, "a body in shared memory still works"


def test_client_leaving_mid_upload_leaves_no_file(start_server, tmp_path):
    server, spill = start(start_server, tmp_path, "--body-spill-size", "16K",
                          "--max-body-size", "100M")
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 50000000\r\n\r\n")
        sock.sendall(os.urandom(2 << 20))
        assert wait_for(lambda: spilled_files(spill), 5.0), "no spill file appeared"
    assert wait_for(lambda: not spilled_files(spill), 5.0), spilled_files(spill)
    assert post(server, [b"abc"])["length"] == 3


def test_one_gib_upload_is_hashed_with_supervisor_memory_bounded(start_server, tmp_path):
    """The acceptance test of issue #4: a 1 GiB upload streamed through to an
    app that hashes it. The region is 32 MiB here (--chunks 2048), so the
    supervisor's whole RSS, its shared-memory pages included, must stay under
    64 MiB: the body cannot be held anywhere but on disk."""
    server, spill = start(start_server, tmp_path, "--max-body-size", "2G", "--chunks", "2048")
    block = os.urandom(1 << 20)
    count = 1024
    expected = hashlib.sha256()
    for _ in range(count):
        expected.update(block)

    peak = [0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], vm_rss_kib(server.proc.pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        got = post(server, (block for _ in range(count)), total=count << 20)
    finally:
        done.set()
        sampler.join()
    assert got["length"] == count << 20 and got["sha256"] == expected.hexdigest()
    assert got["spilled"] == 1
    assert peak[0] < 64 * 1024, f"supervisor VmRSS peaked at {peak[0]} KiB"
    assert wait_for(lambda: not spilled_files(spill), 5.0), spilled_files(spill)
