"""Ordinary loads a new user tries first (issue 14), at the default flags.

- 1,000 keep-alive clients at once, each posting small JSON bodies (the One
  Million Request Challenge's load): every answer is 200. A full chunk pool
  used to answer some of these tiny bodies 413.
- 120 concurrent 1 MiB uploads (below --body-spill-size, so held in the
  region): every upload answered 200 with its body intact, and other
  clients served meanwhile. They used to fill the pool: all 120 failed with
  408 after 30 s and every other client got 503.

One selector-driven thread plays all the clients, so the test process does
not need a thread per connection; every loop is bounded in time.
"""

import hashlib
import selectors
import socket
import threading
import time

from conftest import APPS, SLOW

APP = APPS / "pressure.py"


class Client:
    def __init__(self, port, requests, raw_for, check):
        self.sock = socket.socket()
        self.sock.setblocking(False)
        self.sock.connect_ex(("127.0.0.1", port))
        self.left = requests
        self.raw_for = raw_for
        self.check = check
        self.out = b""
        self.inbuf = b""
        self.sent_n = 0
        self.results = []

    def next_request(self):
        if self.left > 0:
            self.out = self.raw_for(self.sent_n)
            self.sent_n += 1
            self.left -= 1

    def parse(self):
        """Take complete responses (Content-Length framed) off inbuf."""
        while True:
            head_end = self.inbuf.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.inbuf[:head_end].decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                k, _, v = line.partition(":")
                if k.strip().lower() == "content-length":
                    length = int(v)
            if len(self.inbuf) < head_end + 4 + length:
                return
            status = int(head.split()[1])
            body = self.inbuf[head_end + 4:head_end + 4 + length]
            self.inbuf = self.inbuf[head_end + 4 + length:]
            self.results.append(self.check(len(self.results), status, body))
            self.next_request()


def drive(clients, deadline):
    sel = selectors.DefaultSelector()
    for c in clients:
        c.next_request()
        sel.register(c.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, c)
    live = len(clients)
    while live and time.monotonic() < deadline:
        for key, ev in sel.select(timeout=0.5):
            c = key.data
            try:
                if ev & selectors.EVENT_WRITE and c.out:
                    n = c.sock.send(c.out)
                    c.out = c.out[n:]
                if ev & selectors.EVENT_READ:
                    data = c.sock.recv(1 << 20)
                    if not data:
                        c.results.append("closed by the server")
                        c.left = 0
                    c.inbuf += data
                    c.parse()
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as e:
                c.results.append(repr(e))
                c.left = 0
            done = c.left == 0 and not c.out and len(c.results) >= c.sent_n
            if done:
                sel.unregister(c.sock)
                c.sock.close()
                live -= 1
            else:
                sel.modify(c.sock, selectors.EVENT_READ |
                           (selectors.EVENT_WRITE if c.out else 0), c)
    for c in clients:
        if c.sock.fileno() >= 0:
            c.sock.close()
    return live


def test_a_thousand_keepalive_clients_posting_small_json_all_get_200(start_server):
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1500:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, hard), hard))
    server = start_server(app=APP, workers=2)
    body = b'{"n": 1, "user": "1mrc", "ok": true}'  # 35 bytes, as the 1MRC posts
    raw = (b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
           b"Content-Length: %d\r\n\r\n%s" % (len(body), body))

    def check(i, status, got):
        return "ok" if status == 200 and got == body else f"status {status}: {got[:60]!r}"

    clients = [Client(server.port, 5, lambda i: raw, check) for _ in range(1000)]
    left = drive(clients, time.monotonic() + 120 * SLOW)
    results = [r for c in clients for r in c.results]
    bad = [r for r in results if r != "ok"]
    assert left == 0, f"{left} of 1,000 clients did not finish in time"
    assert len(results) == 5000 and not bad, (
        f"{len(results)} answers to 5,000 small JSON POSTs from 1,000 keep-alive clients, "
        f"{len(bad)} not 200 with the body echoed, e.g. {bad[:5]}\n{server.stderr()[-2000:]}")


def test_120_concurrent_one_mib_uploads_all_succeed_and_others_are_served(start_server):
    server = start_server(app=APP, workers=2)
    bodies = [hashlib.sha256(b"%d" % k).digest() * (1 << 15) for k in range(120)]  # 1 MiB

    def raw_for(k):
        return lambda i: (b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n"
                          % len(bodies[k])) + bodies[k]

    def check_for(k):
        return lambda i, status, got: ("ok" if status == 200 and got == bodies[k]
                                       else f"status {status}, {len(got)} bytes")

    uploads = [Client(server.port, 1, raw_for(k), check_for(k)) for k in range(120)]
    others, stop = [], threading.Event()

    def small_gets():
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                with socket.create_connection(("127.0.0.1", server.port),
                                              timeout=10 * SLOW) as s:
                    s.sendall(b"GET /pid HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                    data = b""
                    while True:
                        part = s.recv(4096)
                        if not part:
                            break
                        data += part
                others.append((data.startswith(b"HTTP/1.1 200"), time.monotonic() - t0))
            except OSError as e:
                others.append((False, repr(e)))
            time.sleep(0.05)

    t = threading.Thread(target=small_gets)
    t.start()
    try:
        left = drive(uploads, time.monotonic() + 120 * SLOW)
    finally:
        stop.set()
        t.join(30)
    results = [r for c in uploads for r in c.results]
    bad = [r for r in results if r != "ok"]
    assert left == 0 and len(results) == 120 and not bad, (
        f"120 concurrent 1 MiB uploads: {len(results)} answered, {left} unfinished, bad "
        f"{bad[:5]}\n{server.stderr()[-2000:]}")
    failed = [o for o in others if not o[0]]
    assert others and not failed, f"other clients meanwhile: {len(failed)} failed: {failed[:5]}"
    worst = max(o[1] for o in others)
    assert worst < 5 * SLOW, f"another client waited {worst:.2f} s during the uploads"
