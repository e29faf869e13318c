"""Slow clients must not hurt the others (slowloris).

Run through scripts/test.sh, or by hand:
    RINGMASTER_BUILD=build .venv-test/bin/python -m pytest tests/http/test_slowloris.py -q -s

1,000 connections each send the start of a request head and then one more
byte per second, never finishing it (the dribble is spread over the second,
as real slow clients are not synchronised). Meanwhile a well-behaved client
sends keep-alive GETs on one connection. Its median latency under the attack
must stay within 2x its median before the attack, with an absolute allowance
(+2 ms, x3 under ASan) so that scheduler noise on a shared 2-core machine does
not decide the result. The test does not rely on a header-read timeout: the
server runs with --header-timeout 600, so the slow connections stay open for
the whole measurement (the header timeout, default 10 s, would otherwise reap
them; what is tested is that their mere presence costs others nothing). It
ends by itself in about 15 s.

The test process needs more than 1,000 descriptors: RLIMIT_NOFILE is raised
(soft up to the hard limit) before the server starts, so the supervisor,
which inherits it, can hold the connections too; the limit it actually got is
printed (-s) and checked.
"""

import os
import resource
import shutil
import socket
import statistics
import threading
import time

import pytest


from rawhttp import ECHO_APP, SLOW, Reader, ServerFactory, connect, fixtures, simple_get

N_SLOW = 1000
SAMPLES = 200
GAP = 0.02            # seconds between the good client's requests: ~4 s per phase
DRIBBLE_SLICES = 20   # the 1,000 connections get their byte in 20 slices per second
FLOOR = 0.002 * SLOW  # absolute allowance on top of 2x, seconds
PARTIAL_HEAD = b"GET /slow HTTP/1.1\r\nHost: t\r\nX-Slow: "
NEED_FDS = N_SLOW + 256
CLK_TCK = os.sysconf("SC_CLK_TCK")


def raise_nofile(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= want:
        return soft, hard
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def max_open_files(pid):
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                return int(line.split()[3])
    return None


def latencies(sock, reader, n):
    out = []
    req = b"GET /len HTTP/1.1\r\nHost: t\r\n\r\n"
    for i in range(n):
        t0 = time.perf_counter()
        sock.sendall(req)
        resp = reader.read_response()
        out.append(time.perf_counter() - t0)
        assert resp.status == 200 and resp.body == b"0", (
            f"request {i + 1} of {n} on the keep-alive client: sent {req!r}, got {resp!r}, "
            f"expected 200 with body b'0'")
        time.sleep(GAP)
    return out


class Dribbler(threading.Thread):
    """One byte per connection per second, spread over the second."""

    def __init__(self, socks):
        super().__init__(daemon=True)
        self.socks = socks
        self.stop = threading.Event()
        self.closed = set()
        self.rounds = 0

    def run(self):
        per = max(1, len(self.socks) // DRIBBLE_SLICES)
        while not self.stop.is_set():
            for start in range(0, len(self.socks), per):
                t0 = time.monotonic()
                for i in range(start, min(start + per, len(self.socks))):
                    if i in self.closed:
                        continue
                    try:
                        self.socks[i].send(b"a")
                    except OSError:
                        self.closed.add(i)
                if self.stop.wait(max(0.0, 1.0 / DRIBBLE_SLICES - (time.monotonic() - t0))):
                    return
            self.rounds += 1


def test_slowloris_does_not_slow_others():
    started = time.monotonic()
    soft, hard = raise_nofile(NEED_FDS)
    if soft < NEED_FDS:
        pytest.skip(f"RLIMIT_NOFILE soft {soft} / hard {hard}: cannot open {N_SLOW} connections")

    factory = ServerFactory()
    slow = []
    dribbler = None
    try:
        # A header timeout far beyond the test: the slow clients stay for all of
        # it, so what is measured is their presence, not the timeout reaping them.
        server = factory(ECHO_APP, workers=2, args=("--header-timeout", "600"))
        limit = max_open_files(server.proc.pid)
        print(f"\ntest process RLIMIT_NOFILE {soft}/{hard}; supervisor 'Max open files' {limit}")
        assert limit is None or limit >= NEED_FDS, (
            f"the supervisor can open only {limit} files; {N_SLOW} slow clients need more "
            f"(it inherits the limit of the process that starts it)")

        good = connect(server.port, nodelay=True)
        reader = Reader(good)
        latencies(good, reader, 20)  # warm-up
        before = latencies(good, reader, SAMPLES)

        for i in range(N_SLOW):
            s = socket.socket()
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.settimeout(5.0 * SLOW)
            try:
                s.connect(("127.0.0.1", server.port))
                s.sendall(PARTIAL_HEAD)
            except OSError as exc:
                s.close()
                raise AssertionError(f"slow client {i + 1} of {N_SLOW} could not connect and "
                                     f"send {PARTIAL_HEAD!r}: {exc}") from None
            slow.append(s)
        dribbler = Dribbler(slow)
        dribbler.start()
        time.sleep(1.0)  # every slow client has dribbled once

        during = latencies(good, reader, SAMPLES)
        fresh = simple_get(server.port)
        assert fresh.status == 200, f"a new client during the attack got {fresh!r}, expected 200"
        server.assert_running()

        base, attack = statistics.median(before), statistics.median(during)
        bound = max(2 * base, base + FLOOR)
        print(f"keep-alive GET median: {base * 1e3:.3f} ms before, {attack * 1e3:.3f} ms with "
              f"{N_SLOW} slow clients (bound {bound * 1e3:.3f} ms); p90 "
              f"{statistics.quantiles(before, n=10)[-1] * 1e3:.3f} -> "
              f"{statistics.quantiles(during, n=10)[-1] * 1e3:.3f} ms; dribble rounds "
              f"{dribbler.rounds}, slow connections closed by the server {len(dribbler.closed)}")
        assert attack <= bound, (
            f"with {N_SLOW} connections each dribbling {PARTIAL_HEAD!r} + one byte a second, "
            f"the median latency of a keep-alive GET /len went from {base * 1e3:.3f} ms to "
            f"{attack * 1e3:.3f} ms; expected at most {bound * 1e3:.3f} ms (2x, or +"
            f"{FLOOR * 1e3:.0f} ms)\n--- ringmaster stderr (tail) ---\n{server.stderr()[-2000:]}")
        good.close()
    finally:
        if dribbler:
            dribbler.stop.set()
            dribbler.join(5)
        for s in slow:
            s.close()
        errors = factory.stop_all()
        if errors:
            pytest.fail("\n\n".join(errors))
    elapsed = time.monotonic() - started
    assert elapsed < 30 * SLOW, f"the slowloris test took {elapsed:.1f} s, expected under 30 s"


def proc_cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def test_descriptor_limit_does_not_spin():
    """With the supervisor started under a small RLIMIT_NOFILE (256) and more idle
    clients than it can hold, it must not busy-loop or flood its log; a client
    it already holds keeps being served, and it accepts again once clients leave."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    small = 256
    if soft < 600 and (hard != resource.RLIM_INFINITY and hard < 600):
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard}: cannot open 400 clients here")
    factory = ServerFactory()
    slow = []
    try:
        # The hard limit too, since the supervisor raises its soft limit to the
        # hard one at start-up; prlimit(1) sets both for the server alone and
        # then execs it (same pid).
        if not shutil.which("prlimit"):
            pytest.skip("prlimit (util-linux) is not installed")
        server = fixtures.Server(ECHO_APP, workers=1, args=["--header-timeout", "600"])
        plain = server.command
        server.command = lambda port: ["prlimit", f"--nofile={small}:{small}", "--"] + plain(port)
        factory.servers.append(server)
        server.start()
        assert max_open_files(server.proc.pid) == small
        good = connect(server.port, nodelay=True)
        reader = Reader(good)
        latencies(good, reader, 5)
        for _ in range(400):  # more than 256 descriptors can hold
            s = socket.socket()
            s.settimeout(5.0 * SLOW)
            s.connect(("127.0.0.1", server.port))  # completes in the backlog either way
            s.sendall(PARTIAL_HEAD)
            slow.append(s)
        time.sleep(0.5)
        lines0 = server.stderr().count("\n")
        cpu0 = proc_cpu_seconds(server.proc.pid)
        time.sleep(2.0)
        cpu = proc_cpu_seconds(server.proc.pid) - cpu0
        lines = server.stderr().count("\n") - lines0
        latencies(good, reader, 5)  # the client it holds is still served
        for s in slow:
            s.close()
        slow.clear()
        deadline = time.monotonic() + 10 * SLOW
        while True:  # and new clients are accepted again
            try:
                if simple_get(server.port).status == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "no new client served after the idle ones left"
            time.sleep(0.1)
        assert cpu < 0.4 and lines < 50, (
            f"supervisor at its descriptor limit ({small}) with 400 idle clients: it used "
            f"{cpu:.2f} s of CPU and wrote {lines} log lines in 2 s; expected it to wait "
            f"(under 0.4 s, under 50 lines)\nlast log line: "
            f"{server.stderr().splitlines()[-1] if server.stderr() else ''}")
        good.close()
    finally:
        for s in slow:
            s.close()
        errors = factory.stop_all()
        if errors:
            pytest.fail("\n\n".join(errors))


N_HEADS = 10000
HEAD_P99 = 0.050 * SLOW  # issue 14: fresh clients keep p99 under 50 ms


def chunks_in_use(metrics_port):
    with socket.create_connection(("127.0.0.1", metrics_port), timeout=5 * SLOW) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: m\r\n\r\n")
        resp = Reader(sock).read_response()
    for line in resp.body.decode().splitlines():
        if line.startswith("ringmaster_chunks_in_use "):
            return float(line.split()[1])
    raise AssertionError(f"no ringmaster_chunks_in_use in /metrics: {resp.body[:500]!r}")


def test_ten_thousand_partial_heads_hold_no_region():
    """10,000 connections each send one packet of a head (the 35 bytes of a
    slowloris) and then a byte more, and never finish. A partial head is
    gathered in the supervisor's own memory, not in a 16 KiB chunk of the
    region: before, 3,600 of them took all 4,096 chunks and every other
    client got 503. Fresh clients (a new connection each) must all get 200,
    with a p99 under 50 ms, and the pool must not grow with the heads."""
    need = N_HEADS + 512
    soft, hard = raise_nofile(need)
    if soft < need:
        pytest.skip(f"RLIMIT_NOFILE soft {soft} / hard {hard}: cannot open {N_HEADS} sockets")
    mport = fixtures.free_port()
    factory = ServerFactory()
    heads = []
    try:
        server = factory(ECHO_APP, workers=1,
                         args=("--header-timeout", "600", "--max-connections", str(N_HEADS + 256),
                               "--metrics", f"127.0.0.1:{mport}"))
        simple_get(server.port, "/len")
        idle = chunks_in_use(mport)
        for i in range(N_HEADS):
            s = socket.socket()
            s.settimeout(5.0 * SLOW)
            try:
                s.connect(("127.0.0.1", server.port))
                s.sendall(b"GET /slow HTTP/1.1\r\nHost: t\r\nX-Slow: ")
            except OSError as exc:
                s.close()
                raise AssertionError(f"partial head {i + 1} of {N_HEADS}: {exc}") from None
            heads.append(s)
        for s in heads:  # the second read of each head: the reassembly path
            s.send(b"a")
        time.sleep(0.5 * SLOW)
        held = chunks_in_use(mport)
        times, bad = [], []
        for i in range(200):
            t0 = time.perf_counter()
            resp = simple_get(server.port, f"/len?fresh={i}")
            times.append(time.perf_counter() - t0)
            if resp.status != 200:
                bad.append(resp)
        server.assert_running()
        p99 = statistics.quantiles(times, n=100)[-1]
        print(f"\n{N_HEADS} partial heads: chunks in use {idle:.0f} idle, {held:.0f} with the "
              f"heads; fresh GET p50 {statistics.median(times) * 1e3:.2f} ms, "
              f"p99 {p99 * 1e3:.2f} ms")
        assert not bad, f"{len(bad)} of 200 fresh clients failed, first: {bad[0]!r}"
        assert held <= idle + 64, (
            f"{N_HEADS} partial heads took the region's chunks from {idle:.0f} to {held:.0f} in "
            f"use: they must live outside the region")
        assert p99 <= HEAD_P99, (
            f"fresh clients' p99 {p99 * 1e3:.1f} ms with {N_HEADS} partial heads open; expected "
            f"under {HEAD_P99 * 1e3:.0f} ms")
    finally:
        for s in heads:
            s.close()
        errors = factory.stop_all()
        if errors:
            pytest.fail("\n\n".join(errors))
