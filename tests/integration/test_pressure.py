"""Under pressure nothing fails that need not (docs/http.md, "Overload").

--timeout counts a handler's time, not the queue's; a request the server has
no room for is 503 with Retry-After (never 413), counted by cause in
/metrics; responses always find a chunk (the reserve); a full spill disk is
507 at once; a connection over --max-connections is answered 503, never
closed in silence.
"""

import os
import re
import socket
import subprocess
import threading
import time

import pytest

from conftest import APPS, SLOW, free_port, wait_for
from test_timeouts import read_all, status_of

PRESSURE = APPS / "pressure.py"
BODY_HASH = APPS / "body_hash.py"
TICK = 0.5  # the supervisor checks deadlines at least this often


def connect(port, timeout=20.0 * SLOW):
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def body_of(data):
    return data.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in data else b""


def get(port, path):
    with connect(port) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        return read_all(sock)


def post(port, path, body):
    with connect(port) as sock:
        try:
            sock.sendall(f"POST {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                         f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        except (BrokenPipeError, ConnectionResetError):
            pass
        return read_all(sock)


def metrics(server):
    data = get(server.metrics_port, "/metrics")
    assert status_of(data) == 200, f"/metrics: {data[:200]!r}"
    return body_of(data).decode()


def metric(text, name, **labels):
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(name) + (r"\{" + re.escape(want) + r"\}" if want else "") + r" (\S+)"
    m = re.search(r"^" + pattern + r"$", text, re.M)
    assert m, f"no {name}{{{want}}} in /metrics"
    return float(m.group(1))


def start(start_server, app=PRESSURE, args=(), warm_path="/pid", **kwargs):
    mport = free_port()
    server = start_server(app=app, args=["--metrics", f"127.0.0.1:{mport}", *args], **kwargs)
    server.metrics_port = mport
    ok = wait_for(lambda: status_of(get(server.port, warm_path)) == 200, 15 * SLOW)
    assert ok, f"no worker answered\n{server.stderr()}"
    return server


def in_parallel(calls):
    """Run the callables at once; their results in order."""
    results = [None] * len(calls)

    def run(i):
        try:
            results[i] = calls[i]()
        except OSError as e:  # a test failure, with what happened
            results[i] = repr(e).encode()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


# ------------------------------------------------------------ --timeout vs queue

def test_time_waiting_on_the_lane_does_not_count_against_timeout(start_server):
    """Handlers of 2 s, --timeout 5, one worker with one thread, three
    requests at once: the third starts at 4 s and ends at 6 s. All three are
    200 and the worker is never killed (the queue is not the handler's time)."""
    server = start(start_server, workers=1, args=("--timeout", "5", "--threads", "1"))
    pid = body_of(get(server.port, "/pid"))
    before = metric(metrics(server), "ringmaster_worker_restarts_total", cause="timeout")
    t0 = time.monotonic()
    got = in_parallel([lambda i=i: get(server.port, f"/sleep?ms=2000&id=r{i}") for i in range(3)])
    took = time.monotonic() - t0
    for i, data in enumerate(got):
        assert status_of(data) == 200, (
            f"request {i} of three 2 s handlers queued on one thread with --timeout 5: got "
            f"{data[:120]!r}; expected 200\n{server.stderr()}")
    assert took >= 5.5, f"three 2 s handlers on one thread took {took:.2f} s"
    assert body_of(get(server.port, "/pid")) == pid, "the worker was replaced"
    after = metric(metrics(server), "ringmaster_worker_restarts_total", cause="timeout")
    assert after == before, f"restarts{{cause=timeout}} went from {before} to {after}"


def test_request_unstarted_past_queue_timeout_is_503_and_the_worker_untouched(start_server):
    """A request waiting on the lane behind a 3 s handler, --queue-timeout 1:
    the supervisor answers 503 with Retry-After at the queue deadline (not
    when the thread frees), the app never runs it, the worker keeps running."""
    server = start(start_server, workers=1,
                   args=("--timeout", "10", "--queue-timeout", "1", "--threads", "1"))
    pid = body_of(get(server.port, "/pid"))
    results = {}

    def slow():
        results["slow"] = get(server.port, "/sleep?ms=3000&id=slow")

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.3)  # the slow request is running
    t0 = time.monotonic()
    late = get(server.port, "/sleep?ms=10&id=late")
    took = time.monotonic() - t0
    t.join(30)
    assert status_of(late) == 503, f"queued request: got {late[:160]!r}; expected 503"
    assert b"retry-after:" in late.lower(), f"503 without Retry-After: {late[:200]!r}"
    assert took < 1 + 2 * TICK + 0.5 * SLOW, (
        f"the 503 came after {took:.2f} s; expected at the 1 s queue deadline")
    assert status_of(results["slow"]) == 200, f"slow request: {results['slow'][:120]!r}"
    assert body_of(get(server.port, "/pid")) == pid, "the worker was replaced"
    ran = body_of(get(server.port, "/ran")).decode().split(",")
    assert "slow" in ran and "late" not in ran, f"the app ran {ran}; 'late' must not run"
    text = metrics(server)
    assert metric(text, "ringmaster_overload_total", cause="queue_timeout") >= 1
    assert metric(text, "ringmaster_worker_restarts_total", cause="timeout") == 0
    # The lane is usable afterwards: the cancelled request left it.
    assert status_of(get(server.port, "/sleep?ms=10&id=after")) == 200


def test_a_handler_that_hangs_past_timeout_is_still_504(start_server):
    """The handler's own time still counts: a hang past --timeout is 504 and
    its worker is replaced."""
    server = start(start_server, workers=1, args=("--timeout", "1", "--threads", "1"))
    pid = body_of(get(server.port, "/pid"))
    t0 = time.monotonic()
    data = get(server.port, "/sleep?ms=6000&id=hang")
    took = time.monotonic() - t0
    assert status_of(data) == 504, f"a 6 s handler with --timeout 1: got {data[:120]!r}"
    assert took < 1 + 2 * TICK + 1.0 * SLOW, f"504 after {took:.2f} s"
    assert wait_for(lambda: status_of(get(server.port, "/pid")) == 200, 15 * SLOW)
    assert body_of(get(server.port, "/pid")) != pid, "the hung worker was not replaced"
    assert metric(metrics(server), "ringmaster_worker_restarts_total", cause="timeout") == 1


# ------------------------------------------------------------ a full chunk pool

def test_full_chunk_pool_is_503_never_413_and_responses_complete(start_server):
    """--chunks 64 and 48 clients posting 200-byte bodies to a slow handler at
    once: each buffered request holds three chunks, so most cannot be
    buffered. None is 413 (nothing is too large); each is 200 with its body
    echoed, or 503 with Retry-After; the overload metric says why."""
    server = start(start_server, workers=1,
                   args=("--chunks", "64", "--threads", "1", "--timeout", "30"))
    n = 48
    bodies = [(b"%03d" % i) * 67 for i in range(n)]
    got = in_parallel([lambda i=i: post(server.port, "/echo?ms=50", bodies[i]) for i in range(n)])
    statuses = [status_of(d) for d in got]
    assert 413 not in statuses, f"413 for a 200-byte body: statuses {statuses}"
    for i, data in enumerate(got):
        st = status_of(data)
        assert st in (200, 503), f"client {i}: got {data[:160]!r}; expected 200 or 503"
        if st == 200:
            assert body_of(data) == bodies[i], f"client {i}: echo {body_of(data)[:40]!r}"
        else:
            assert b"retry-after:" in data.lower(), f"503 without Retry-After: {data[:200]!r}"
    assert statuses.count(200) >= 1, f"nothing was served: {statuses}"
    if 503 in statuses:
        assert metric(metrics(server), "ringmaster_overload_total", cause="no_memory") >= 1
    # The pool drains back: the server still serves, and no chunk is lost.
    assert status_of(post(server.port, "/echo", b"x" * 200)) == 200
    assert wait_for(lambda: metric(metrics(server), "ringmaster_chunks_in_use") <= 32, 5 * SLOW)


def test_no_memory_is_counted_and_the_pool_recovers(start_server):
    """Enough concurrent clients that some must be refused: the refusals are
    503 counted as no_memory, and the same clients get 200 once it drains."""
    server = start(start_server, workers=1,
                   args=("--chunks", "64", "--threads", "1", "--timeout", "30"))
    n = 64
    got = in_parallel([lambda i=i: post(server.port, "/echo?ms=100", b"y" * 300)
                       for i in range(n)])
    statuses = [status_of(d) for d in got]
    assert set(statuses) <= {200, 503}, f"statuses: {statuses}"
    assert 503 in statuses, f"64 clients on 64 chunks were all buffered? {statuses}"
    assert metric(metrics(server), "ringmaster_overload_total", cause="no_memory") >= 1
    again = in_parallel([lambda: post(server.port, "/echo", b"z" * 300) for _ in range(4)])
    assert [status_of(d) for d in again] == [200] * 4


# ------------------------------------------------------------ a full spill disk

@pytest.fixture
def small_tmpfs(tmp_path):
    """A 2 MiB tmpfs as the spill directory, unmounted afterwards."""
    mnt = tmp_path / "spill"
    mnt.mkdir()
    rc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                        capture_output=True)
    if rc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs root): {rc.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def upload(port, total, piece=65536):
    """POST `total` bytes as fast as the socket takes them; the answer."""
    with connect(port) as sock:
        sock.sendall(f"POST / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                     f"Content-Length: {total}\r\n\r\n".encode())
        block = b"q" * piece
        sent = 0
        try:
            while sent < total:
                sock.sendall(block[:min(piece, total - sent)])
                sent += piece
        except (BrokenPipeError, ConnectionResetError):
            pass
        return read_all(sock)


@pytest.mark.parametrize("size,chunks", [(3 << 20, 4096), (48 << 20, 256)],
                         ids=["plain", "throttled"])
def test_full_spill_disk_is_507_at_once_and_the_file_removed(start_server, small_tmpfs, size,
                                                             chunks):
    """The body does not fit the 2 MiB spill file system: 507 at once (well
    before --body-timeout), the file is removed, the server serves on. In the
    throttled case a 4 MiB pool bounds the write lag to 512 KiB, which a fast
    48 MiB upload passes many times: reading is paused when the write fails
    (the case that used to hang until 408)."""
    server = start(start_server, app=BODY_HASH, workers=1, warm_path="/",
                   args=("--interface", "wsgi", "--chunks", str(chunks),
                         "--spill-dir", str(small_tmpfs), "--body-spill-size", "16K",
                         "--max-body-size", "100M", "--body-timeout", "10"),
                   env={"RM_TEST_SPILL_DIR": str(small_tmpfs)})
    t0 = time.monotonic()
    data = upload(server.port, size)
    took = time.monotonic() - t0
    assert status_of(data) == 507, (
        f"{size} bytes into a 2 MiB spill dir: got {data[:160]!r}; expected 507\n"
        f"{server.stderr()}")
    assert took < 5 * SLOW, f"507 after {took:.2f} s; expected at once, not after --body-timeout"
    # The supervisor keeps its private spill directory there; no body may stay.
    assert wait_for(lambda: not list(small_tmpfs.rglob("*.body")), 5.0), list(
        small_tmpfs.rglob("*"))
    ok = post(server.port, "/", b"k" * 1000)
    assert status_of(ok) == 200, f"after the 507: {ok[:160]!r}"


# ------------------------------------------------------------ --max-connections

def test_connections_over_max_connections_get_503(start_server):
    """--max-connections 3 with three idle clients holding their slots: the
    next clients are answered 503 with Retry-After, never closed in silence;
    once a slot frees, a new client is served."""
    server = start(start_server, workers=1,
                   args=("--max-connections", "3", "--keepalive-timeout", "30"))
    holders = [connect(server.port) for _ in range(3)]
    try:
        assert wait_for(lambda: metric(metrics(server), "ringmaster_open_connections") == 3,
                        5 * SLOW)
        for i in range(3):
            data = get(server.port, "/pid")
            assert status_of(data) == 503, (
                f"client {i} over --max-connections 3: got {data[:160]!r}; expected 503")
            assert b"retry-after:" in data.lower(), f"503 without Retry-After: {data[:200]!r}"
        assert metric(metrics(server), "ringmaster_overload_total", cause="max_connections") == 3
        holders.pop().close()
        ok = wait_for(lambda: status_of(get(server.port, "/pid")) == 200, 5 * SLOW)
        assert ok, "a slot freed, but new clients are still refused"
    finally:
        for h in holders:
            h.close()


def test_a_request_that_starts_late_and_hangs_is_504_at_timeout_from_its_start(start_server):
    """--timeout 2, one thread: B waits 1 s behind A, then hangs. Its 504
    comes about 2 s after it started (not 2 s after it arrived, which would
    kill the worker while B had run 1 s; not at --queue-timeout either)."""
    server = start(start_server, workers=1, args=("--timeout", "2", "--threads", "1"))
    results = {}

    def call(name, path):
        results[name] = (get(server.port, path), time.monotonic())

    t0 = time.monotonic()
    a = threading.Thread(target=call, args=("a", "/sleep?ms=1000&id=a"))
    a.start()
    time.sleep(0.1)
    b = threading.Thread(target=call, args=("b", "/sleep?ms=10000&id=b"))
    b.start()
    a.join(30)
    b.join(30)
    assert status_of(results["a"][0]) == 200, f"A: {results['a'][0][:120]!r}"
    assert status_of(results["b"][0]) == 504, f"B: {results['b'][0][:120]!r}"
    took = results["b"][1] - t0
    assert 2.9 <= took <= 1 + 2 + 0.25 + 2 * TICK + 0.5 * SLOW, (
        f"B's 504 came {took:.2f} s after A was sent; expected ~3 s (1 s queued + 2 s)")


def test_every_busy_client_gets_an_answer_even_with_the_pool_drained(start_server):
    """A handler holds the only thread for 2 s while 60 clients post small
    bodies with --queue-timeout 1 on a 64-chunk pool: requests that cannot be
    buffered and requests taken back from the lane are all answered at about
    the same moment, more answers than the response reserve has chunks. Each
    client still gets its 503 (sent without a chunk if need be), never a
    silent close."""
    server = start(start_server, workers=1,
                   args=("--chunks", "64", "--threads", "1", "--queue-timeout", "1"))
    calls = [lambda: get(server.port, "/sleep?ms=2000&id=hold")]
    calls += [lambda i=i: post(server.port, "/echo", b"%03d" % i * 100) for i in range(60)]
    got = in_parallel(calls)
    statuses = [status_of(d) for d in got]
    assert None not in statuses, (
        f"{statuses.count(None)} of 61 clients got no answer at all: {statuses}")
    assert set(statuses) <= {200, 503}, f"statuses: {statuses}"
    for data in got:
        if status_of(data) == 503:
            assert b"retry-after:" in data.lower(), f"503 without Retry-After: {data[:200]!r}"


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def test_a_worker_short_of_response_chunks_waits_asleep_and_is_counted(start_server):
    """Four threads each write a 16 MiB response to a client that reads
    nothing for 2 s, on a 64-chunk pool: once the socket buffers are full
    (a few MiB each), their send windows want more chunks than there are. The threads wait for chunks asleep (the worker uses
    little CPU meanwhile), the waits are counted in /metrics, the worker is
    not killed, and every response completes once the clients read."""
    server = start(start_server, workers=1,
                   args=("--chunks", "64", "--threads", "4", "--mode", "gil"))
    pid = int(body_of(get(server.port, "/pid")))
    socks = []
    for _ in range(4):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)  # before connect: a small window
        s.settimeout(20.0 * SLOW)
        s.connect(("127.0.0.1", server.port))
        socks.append(s)
    for s in socks:
        s.sendall(b"GET /big?kb=16384 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    time.sleep(0.5)
    ticks0 = cpu_ticks(pid)
    time.sleep(2.0)
    busy = (cpu_ticks(pid) - ticks0) / os.sysconf("SC_CLK_TCK")
    got = in_parallel([lambda s=s: read_all(s) for s in socks])
    for s in socks:
        s.close()
    for i, data in enumerate(got):
        assert status_of(data) == 200 and len(body_of(data)) == 16384 * 1024, (
            f"client {i}: {data[:100]!r}... {len(body_of(data))} body bytes; expected 16 MiB")
    assert busy < 0.5, f"the worker used {busy:.2f} s of CPU in 2 s while it waited for chunks"
    text = metrics(server)
    waits = metric(text, "ringmaster_worker_chunk_waits_total", lane="0", pid=str(pid))
    assert waits >= 1, "no chunk wait counted although 4 x 16 MiB responses outgrew the pool"
    assert body_of(get(server.port, "/pid")) == str(pid).encode(), "the worker was replaced"


# ------------------------------------------------------------ moving stuck work

def ran_by_worker(server, workers, tries=40):
    """{pid: [ids]} from every worker, asking /ranpid until each answered."""
    out = {}
    for _ in range(tries):
        pid, _, ids = body_of(get(server.port, "/ranpid")).decode().partition(":")
        out[pid] = [i for i in ids.split(",") if i]
        if len(out) == workers:
            break
    return out


def test_requests_behind_a_busy_thread_move_to_an_idle_worker(start_server):
    """Two workers of one thread. One runs a 4 s handler; requests that land
    on its lane behind it (dispatch ties alternate between lanes) are taken
    back and given to the other worker once that one has a free thread,
    instead of waiting the 4 s out. Each runs exactly once (the stale
    descriptor left on the busy lane is skipped), and the move is counted."""
    server = start(start_server, workers=2, args=("--threads", "1", "--queue-timeout", "30"))
    results = {}

    def call(name, path):
        results[name] = (get(server.port, path), time.monotonic())

    t0 = time.monotonic()
    slow = threading.Thread(target=call, args=("slow", "/sleep?ms=4000&id=slow"))
    slow.start()
    time.sleep(0.3 * SLOW)
    short = threading.Thread(target=call, args=("short", "/sleep?ms=500&id=short"))
    short.start()
    time.sleep(0.2 * SLOW)
    fast = [threading.Thread(target=call, args=(f"f{i}", f"/sleep?ms=10&id=f{i}"))
            for i in range(4)]
    for t in fast:
        t.start()
    for t in fast:
        t.join(30)
    fast_done = max(results[f"f{i}"][1] for i in range(4)) - t0
    slow.join(30)
    short.join(30)
    for name, (data, _) in results.items():
        assert status_of(data) == 200, f"{name}: {data[:160]!r}\n{server.stderr()}"
    assert fast_done < 2.5 * SLOW, (
        f"the requests queued behind a 4 s handler finished {fast_done:.2f} s after the start; "
        f"expected them moved to the idle worker (well before the 4 s handler ends)")
    ran = ran_by_worker(server, 2)
    every = [i for ids in ran.values() for i in ids]
    for rid in ["slow", "short"] + [f"f{i}" for i in range(4)]:
        assert every.count(rid) == 1, f"request {rid} ran {every.count(rid)} times: {ran}"
    assert metric(metrics(server), "ringmaster_requests_moved_total") >= 1
