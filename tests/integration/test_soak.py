"""Soak: a mix of normal clients and hostile ones for a minute (issue 14).

Normal keep-alive clients (small GETs and 35-byte JSON POSTs) run alongside
slowloris connections dribbling heads, slow readers of 2 MiB streams, 1 MiB
uploads, and a worker killed with SIGKILL every 10 s. It passes when:
  - no normal request fails, except those in flight on a worker at the moment
    it was killed (answered 502: bounded by what a worker can hold);
  - every upload and every slow reader that was not on a killed worker gets
    its whole, correct answer;
  - afterwards the pool returns to its idle level (no chunk leaked) and the
    supervisor's RSS has not grown (no memory leaked per request).

RINGMASTER_SOAK_SECONDS sets the length: 60 by default (CI); run longer by
hand, e.g. RINGMASTER_SOAK_SECONDS=1800.
"""

import hashlib
import os
import re
import signal
import socket
import threading
import time

from conftest import APPS, ASAN, SLOW, free_port, wait_for

SECONDS = float(os.environ.get("RINGMASTER_SOAK_SECONDS", "60"))
APP = APPS / "pressure.py"
NORMAL = 4
SLOWLORIS = 300
SLOW_READERS = 6
UPLOADERS = 2
KILL_EVERY = 10.0
BIG_KB = 2048


def request(port, raw, timeout=10.0):
    """One request on a fresh connection: (status, body) or (0, reason)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout * SLOW) as sock:
            sock.sendall(raw)
            return read_response(sock.makefile("rb"))
    except OSError as e:
        return 0, repr(e).encode()


def read_response(f):
    line = f.readline()
    if not line:
        return 0, b"closed"
    status = int(line.split()[1])
    length = None
    while True:
        h = f.readline()
        if h in (b"\r\n", b"\n", b""):
            break
        k, _, v = h.decode("latin-1").partition(":")
        if k.strip().lower() == "content-length":
            length = int(v)
    return status, f.read(length) if length is not None else f.read()


def metrics(mport):
    status, body = request(mport, b"GET /metrics HTTP/1.1\r\nHost: m\r\n\r\n")
    assert status == 200, body
    return body.decode()


def metric(text, name):
    m = re.search(r"^" + re.escape(name) + r" (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def vm_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Load:
    def __init__(self, port):
        self.port = port
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.failed = []       # (kind, what), other than 502 from a killed worker
        self.killed_502 = 0
        self.kills = 0

    def fail(self, kind, what):
        with self.lock:
            self.failed.append((kind, what))

    def normal(self, i):
        body = b'{"n": %d, "user": "soak", "ok": 1}' % i
        post = (b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        get = b"GET /sleep?ms=0&id=n HTTP/1.1\r\nHost: t\r\n\r\n"
        sock, f = None, None
        n = 0
        while not self.stop.is_set():
            try:
                if sock is None:
                    sock = socket.create_connection(("127.0.0.1", self.port), timeout=10 * SLOW)
                    f = sock.makefile("rb")
                want = body if n % 2 else None
                sock.sendall(post if n % 2 else get)
                status, got = read_response(f)
                n += 1
                if status == 200 and (want is None or got == want):
                    with self.lock:
                        self.ok += 1
                    continue
                if status == 502:
                    with self.lock:
                        self.killed_502 += 1
                else:
                    self.fail("normal", f"status {status}: {got[:80]!r}")
            except OSError as e:
                self.fail("normal", repr(e))
            if sock is not None:
                sock.close()
            sock = None
            time.sleep(0.01)
        if sock is not None:
            sock.close()

    def slowloris(self):
        socks = []
        while not self.stop.is_set():
            while len(socks) < SLOWLORIS:
                try:
                    s = socket.create_connection(("127.0.0.1", self.port), timeout=5 * SLOW)
                    s.sendall(b"GET /slow HTTP/1.1\r\nHost: t\r\nX-Slow: ")
                    socks.append(s)
                except OSError:
                    break
            for s in list(socks):
                try:
                    s.send(b"a")
                except OSError:  # the header timeout ended it: a new one comes
                    socks.remove(s)
                    s.close()
            self.stop.wait(1.0)
        for s in socks:
            s.close()

    def slow_reader(self):
        want = b"x" * (BIG_KB * 1024)
        while not self.stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", self.port),
                                              timeout=30 * SLOW) as s:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
                    s.sendall(b"GET /big?kb=%d HTTP/1.1\r\nHost: t\r\n"
                              b"Connection: close\r\n\r\n" % BIG_KB)
                    data = b""
                    while not self.stop.is_set():
                        part = s.recv(32768)
                        if not part:
                            break
                        data += part
                        time.sleep(0.05)  # about 600 KB/s
                    if self.stop.is_set():
                        return
                    head, _, got = data.partition(b"\r\n\r\n")
                    if head.startswith(b"HTTP/1.1 502"):
                        with self.lock:
                            self.killed_502 += 1
                    elif not head.startswith(b"HTTP/1.1 200") or got != want:
                        # A stream cut by a killed worker ends short: that is
                        # the kill's, counted once, not a failure of the budget.
                        if head.startswith(b"HTTP/1.1 200") and len(got) < len(want):
                            with self.lock:
                                self.killed_502 += 1
                        else:
                            self.fail("slow reader", f"{head[:60]!r}, {len(got)} bytes")
            except OSError as e:
                if not self.stop.is_set():
                    self.fail("slow reader", repr(e))

    def uploader(self, k):
        body = hashlib.sha256(b"%d" % k).digest() * (1 << 15)  # 1 MiB
        raw = (b"POST /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
               b"Content-Length: %d\r\n\r\n" % len(body)) + body
        while not self.stop.is_set():
            status, got = request(self.port, raw, timeout=30)
            if status == 200 and got == body:
                with self.lock:
                    self.ok += 1
            elif status == 502 or (status == 200 and len(got) < len(body)):
                # Answered 502, or its echo cut short, by a worker killed
                # while it ran (the connection closes: the client can tell).
                with self.lock:
                    self.killed_502 += 1
            else:
                self.fail("upload", f"status {status}, {len(got)} bytes")


def test_soak_mixed_hostile_load_with_worker_kills(start_server):
    mport = free_port()
    server = start_server(app=APP, workers=2,
                          args=["--threads", "2", "--metrics", f"127.0.0.1:{mport}",
                                "--header-timeout", "5", "--max-body-size", "4M"])
    assert wait_for(lambda: request(server.port, b"GET /pid HTTP/1.1\r\nHost: t\r\n\r\n")[0]
                    == 200, 15 * SLOW)
    idle_chunks = metric(metrics(mport), "ringmaster_chunks_in_use")
    load = Load(server.port)
    threads = ([threading.Thread(target=load.normal, args=(i,)) for i in range(NORMAL)] +
               [threading.Thread(target=load.slowloris)] +
               [threading.Thread(target=load.slow_reader) for _ in range(SLOW_READERS)] +
               [threading.Thread(target=load.uploader, args=(k,)) for k in range(UPLOADERS)])
    for t in threads:
        t.start()
    t0 = time.monotonic()
    rss_start = None
    next_kill = t0 + KILL_EVERY
    try:
        while time.monotonic() - t0 < SECONDS:
            time.sleep(0.5)
            if rss_start is None and time.monotonic() - t0 > min(10.0, SECONDS / 3):
                rss_start = vm_rss_kib(server.proc.pid)  # after warm-up
            if time.monotonic() >= next_kill:
                pids = server.worker_pids()
                if pids:
                    os.kill(sorted(pids)[load.kills % len(pids)], signal.SIGKILL)
                    load.kills += 1
                next_kill += KILL_EVERY
            server.assert_running()
    finally:
        load.stop.set()
        for t in threads:
            t.join(60)
    rss_end = vm_rss_kib(server.proc.pid)
    server.wait_workers(2)
    settled = wait_for(lambda: metric(metrics(mport), "ringmaster_chunks_in_use")
                       <= idle_chunks + 8, 15 * SLOW)
    chunks_end = metric(metrics(mport), "ringmaster_chunks_in_use")
    summary = (f"{SECONDS:.0f} s: {load.ok} answered, {load.kills} worker kills, "
               f"{load.killed_502} cut by a kill, failures {len(load.failed)}: "
               f"{load.failed[:5]}; chunks in use {idle_chunks:.0f} idle, {chunks_end:.0f} "
               f"after; supervisor RSS {rss_start} -> {rss_end} KiB")
    print("\n" + summary)
    assert load.ok > 100 * SECONDS / 60, summary
    assert not load.failed, summary
    # What a kill may cut: each worker's requests in hand (2 threads, queued
    # ones are moved, not failed), a few per kill.
    assert load.killed_502 <= load.kills * 12, summary
    assert settled, f"the pool did not return to its idle level: {summary}"
    # Under ASan, freed memory sits in its quarantine (up to 256 MiB), so RSS
    # says nothing about leaks there: the normal build's run checks it.
    if not ASAN:
        assert rss_start is None or rss_end - rss_start < 16 * 1024, summary
