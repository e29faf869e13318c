"""Worker modes (docs/modes.md): what T threads in one worker share, per mode.

The mode under test comes from conftest (RINGMASTER_TEST_MODE, _PYTHON,
_THREADS); tests that need a particular thread count pass --threads
themselves. apps/modes.py answers "PID INTERP THREAD VALUE GIL" per request.

    gil, free-threaded  one interpreter per worker: a module-level counter
                        guarded by a threading.Lock counts every request the
                        worker served, exactly
    subinterpreters     one interpreter per thread: each has its own module,
                        so its own counter, which counts exactly the requests
                        that thread served
In every mode, with T > 1, concurrent requests run on different threads.
"""

import concurrent.futures
import os
import re
import socket
import threading
import time
from collections import defaultdict

import pytest

from conftest import APPS, ASAN, MODE, SLOW, run_to_exit, wait_for

MODES_APP = APPS / "modes.py"
TIMEOUT = 20.0 * SLOW
READY = re.compile(r"worker (\d+) ready \(pid (\d+), Python ([0-9.]+)[^,]*, mode ([a-z-]+)([^)]*)\)")


# ---------------------------------------------------------------- helpers

def ready_lines(server, count):
    """[(lane, pid, python, mode, rest)] of the supervisor's ready lines, once
    `count` workers are ready (or whatever was logged after the wait)."""
    def found():
        lines = READY.findall(server.stderr())
        return lines if len(lines) >= count else None
    return wait_for(found, 10.0 * SLOW) or READY.findall(server.stderr())


def version_tuple(text):
    return tuple(int(x) for x in text.split(".")[:2])


def parse_line(body, sent):
    """(pid, interp, thread, value, gil) from one apps/modes.py answer."""
    fields = body.split()
    assert len(fields) == 5, f"sent {sent}, got body {body!r}, expected 'PID INTERP THREAD VALUE GIL'"
    return tuple(int(f) for f in fields)


def get(server, path):
    """One GET on a fresh connection -> (status line, body)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head.split(b"\r\n", 1)[0].decode("latin-1"), body.decode("latin-1")


def concurrent_gets(server, paths, workers):
    """GET every path, `workers` at a time -> [(path, status, body)]."""
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(lambda p: (p, *get(server, p)), paths))
    for path, status, body in results:
        assert status.startswith("HTTP/1.1 200"), f"GET {path}: got {status!r} {body!r}, expected 200"
    return results


def pipelined(port, path, total, conns, batch=64):
    """Send `total` GET requests for `path` over `conns` keep-alive
    connections, `batch` pipelined at a time per connection. Returns the bodies
    (bytes). Fails on any status but 200 or a connection that ends early."""
    request = f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode()
    shares = [total // conns + (1 if i < total % conns else 0) for i in range(conns)]
    bodies, errors = [], []
    lock = threading.Lock()

    def client(share):
        got = []
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as s:
                buf = b""
                left = share
                while left:
                    n = min(batch, left)
                    s.sendall(request * n)
                    for _ in range(n):
                        while b"\r\n\r\n" not in buf:
                            chunk = s.recv(262144)
                            if not chunk:
                                raise AssertionError(f"connection closed after {len(got)} responses")
                            buf += chunk
                        head, _, buf = buf.partition(b"\r\n\r\n")
                        if not head.startswith(b"HTTP/1.1 200"):
                            raise AssertionError(f"status {head[:40]!r}, expected 200")
                        length = None
                        for line in head.split(b"\r\n")[1:]:
                            name, _, value = line.partition(b":")
                            if name.strip().lower() == b"content-length":
                                length = int(value)
                        if length is None:
                            raise AssertionError(f"no content-length in {head!r}")
                        while len(buf) < length:
                            chunk = s.recv(262144)
                            if not chunk:
                                raise AssertionError("connection closed inside a body")
                            buf += chunk
                        got.append(buf[:length])
                        buf = buf[length:]
                    left -= n
        except (OSError, AssertionError) as exc:
            with lock:
                errors.append(f"{type(exc).__name__}: {exc}")
        with lock:
            bodies.extend(got)

    threads = [threading.Thread(target=client, args=(share,)) for share in shares]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, f"pipelined GET {path} x{total} over {conns} connections: {errors[:3]}"
    return bodies


@pytest.fixture(scope="module")
def worker_info(request):
    """(python version tuple, mode name auto picks) of the worker under test."""
    from conftest import ServerFactory
    factory = ServerFactory()
    server = factory(MODES_APP, workers=1, args=["--mode", "auto", "--threads", "1"])
    lines = ready_lines(server, 1)
    errors = factory.stop_all()
    assert lines and not errors, f"no ready line\n{server.stderr()}\n{errors}"
    _, _, python, mode, _ = lines[0]
    return version_tuple(python), mode


# ---------------------------------------------------------------- every mode

def test_ready_line_names_the_mode(start_server):
    server = start_server(MODES_APP, workers=2, args=["--threads", "2"])
    lines = ready_lines(server, 2)
    assert len(lines) == 2, f"expected 2 ready lines\n{server.stderr()}"
    modes = {line[3] for line in lines}
    expected = {MODE} if MODE in ("gil", "subinterpreters", "free-threaded") else {
        "gil", "subinterpreters", "free-threaded"}
    assert modes <= expected and len(modes) == 1, (
        f"ready lines {lines}: modes {modes}, expected one of {expected}")
    _, status, body = concurrent_gets(server, ["/sleep?ms=1"], 1)[0]
    gil = parse_line(body, "/sleep?ms=1")[4]
    if modes == {"free-threaded"}:
        assert gil == 0, f"free-threaded mode, but the app sees the GIL on: {body!r}"
    else:
        assert gil == 1, f"mode {modes}: the app sees no GIL: {body!r}"


def test_concurrent_requests_run_on_different_threads(start_server):
    """T = 2: two requests that sleep at the same time are on two threads."""
    server = start_server(MODES_APP, workers=1, args=["--threads", "2"])
    paths = [f"/sleep?ms=200&i={i}" for i in range(8)]
    started = time.monotonic()
    results = concurrent_gets(server, paths, 8)
    elapsed = time.monotonic() - started
    threads = {parse_line(body, path)[2] for path, _, body in results}
    assert len(threads) == 2, (
        f"8 concurrent 200 ms requests with --threads 2 ran on threads {threads}; expected 2")
    # Two at a time: about 4 x 200 ms, not 8 x 200 ms.
    assert elapsed < 1.5 * SLOW, f"8 x 200 ms on 2 threads took {elapsed:.2f} s"


def test_counter_is_per_interpreter_and_exact(start_server):
    """A locked module counter: exact within each interpreter; one interpreter
    per worker in gil and free-threaded modes, one per thread otherwise."""
    server = start_server(MODES_APP, workers=1, args=["--threads", "2"])
    mode = ready_lines(server, 1)[0][3]
    paths = [f"/locked?ms=10&i={i}" for i in range(200)]
    results = concurrent_gets(server, paths, 8)
    by_interp = defaultdict(list)
    threads_of = defaultdict(set)
    interps_of = defaultdict(set)
    for path, _, body in results:
        pid, interp, thread, value, _ = parse_line(body, path)
        by_interp[(pid, interp)].append(value)
        threads_of[interp].add(thread)
        interps_of[thread].add(interp)
    for key, values in by_interp.items():
        assert sorted(values) == list(range(1, len(values) + 1)), (
            f"mode {mode}: interpreter {key} counted {len(values)} requests as "
            f"{sorted(values)[:10]}...; expected exactly 1..{len(values)}")
    all_threads = set(interps_of)
    assert len(all_threads) == 2, f"mode {mode}: 200 requests ran on threads {all_threads}"
    if mode == "subinterpreters":
        assert len(by_interp) == 2, (
            f"subinterpreters with 2 threads: requests ran in interpreters {list(by_interp)}; "
            f"expected 2, one per thread")
        assert all(len(v) == 1 for v in interps_of.values()) and all(
            len(v) == 1 for v in threads_of.values()), (
            f"each thread must own one interpreter: thread->interps {dict(interps_of)}")
        assert 0 not in threads_of, "a request ran in the main interpreter"
    else:
        assert len(by_interp) == 1, (
            f"mode {mode}: one interpreter expected, requests ran in {list(by_interp)}")


def test_locked_counter_exact_after_many_concurrent_requests(start_server):
    """Many requests (100k; 20k under ASan, where each costs about 3x) from 16
    connections on 4 threads: every interpreter's counter is exact. In
    free-threaded mode that is one counter for all four threads, running in
    parallel without a GIL."""
    total = 20_000 if ASAN else 100_000
    server = start_server(MODES_APP, workers=1, args=["--threads", "4"])
    mode = ready_lines(server, 1)[0][3]
    bodies = pipelined(server.port, "/locked", total, conns=16)
    assert len(bodies) == total, f"sent {total} requests, got {len(bodies)} responses"
    by_interp = defaultdict(list)
    threads = set()
    for body in bodies:
        pid, interp, thread, value, _ = parse_line(body.decode(), "/locked")
        by_interp[interp].append(value)
        threads.add(thread)
    for interp, values in by_interp.items():
        values.sort()
        assert values == list(range(1, len(values) + 1)), (
            f"mode {mode}: interpreter {interp} served {len(values)} requests but its locked "
            f"counter gave {values[:5]}...{values[-5:]}: lost or repeated increments")
    assert sum(len(v) for v in by_interp.values()) == total
    assert len(threads) > 1, f"mode {mode}: {total} requests on 16 connections used one thread"
    if mode == "free-threaded":
        assert list(by_interp) != [] and len(by_interp) == 1
        _, _, body = concurrent_gets(server, ["/count"], 1)[0]
        assert parse_line(body, "/count")[3] == total, (
            f"free-threaded: /count says {body!r} after {total} locked increments")


# ---------------------------------------------------------------- flags

def one_line_error(text):
    lines = [line for line in text.splitlines() if line.startswith("ringmaster: error:")]
    assert len(lines) == 1, f"expected one 'ringmaster: error:' line, got:\n{text}"
    assert "Traceback" not in text, f"a traceback reached the operator:\n{text}"
    return lines[0]


@pytest.mark.parametrize("args, env, named", [
    (["--mode", "nogil"], None, "--mode"),
    ([], {"RINGMASTER_MODE": "fast"}, "RINGMASTER_MODE"),
    (["--python", "three"], None, "--python"),
    (["--python", "9.99t"], None, "ringmaster-worker-9.99t"),
    ([], {"RINGMASTER_PYTHON": "9.99"}, "ringmaster-worker-9.99"),
    (["--python", "3.13", "--worker-binary", "/bin/true"], None, "--worker-binary"),
    ([], {"RINGMASTER_PYTHON": "3.13", "RINGMASTER_WORKER_BINARY": "/bin/true"},
     "RINGMASTER_WORKER_BINARY"),
    ([], {"RINGMASTER_PIN": "maybe"}, "RINGMASTER_PIN"),
])
def test_bad_mode_flags_exit_2_with_one_line(args, env, named):
    # Without the mode under test's own flags, which would override the variables.
    rc, text, _, workers = run_to_exit([*args, str(MODES_APP)], 10.0, env=env, mode_flags=False)
    assert rc == 2, f"ringmaster {args} env {env}: exit {rc}, expected 2\n{text}"
    line = one_line_error(text)
    assert named in line, f"the error line does not name {named!r}: {line}"
    assert not workers, f"workers started for a bad flag: {workers}"


def test_mode_the_worker_cannot_run_is_one_line_exit_1(worker_info):
    """Asking for a mode this worker's Python lacks stops the start-up."""
    python, auto_mode = worker_info
    if auto_mode == "free-threaded":
        pytest.skip("a free-threaded worker runs every mode")
    missing = "free-threaded" if python >= (3, 12) else "subinterpreters"
    rc, text, _, workers = run_to_exit(["--mode", missing, "-w", "1", str(MODES_APP)], 20.0)
    assert rc == 1, f"--mode {missing} on Python {python}: exit {rc}, expected 1\n{text}"
    line = one_line_error(text)
    assert f"--mode {missing} needs" in line, f"unexpected message: {line}"
    assert not workers or all(not os.path.exists(f"/proc/{pid}") for pid, _ in workers)


def test_pin_puts_each_worker_and_the_io_thread_on_its_cpu(start_server):
    cpus = sorted(os.sched_getaffinity(0))
    server = start_server(MODES_APP, workers=2, args=["--pin"])
    pids = server.wait_workers(2)
    ready_lines(server, 2)
    lanes = {int(lane): int(pid) for lane, pid, *_ in READY.findall(server.stderr())}
    for lane, pid in lanes.items():
        want = {cpus[lane % len(cpus)]}
        got = os.sched_getaffinity(pid)
        assert got == want, f"--pin: worker {lane} (pid {pid}) may run on {got}, expected {want}"
    want = {cpus[2 % len(cpus)]}
    got = os.sched_getaffinity(server.proc.pid)
    assert got == want, f"--pin with 2 workers: the I/O thread may run on {got}, expected {want}"
    assert sorted(lanes.values()) == sorted(pids)
    concurrent_gets(server, ["/count"], 1)


# ---------------------------------------------------------------- per mode

def needs_subinterpreters(worker_info):
    python, auto_mode = worker_info
    if python < (3, 12):
        pytest.skip(f"the worker embeds Python {python}: no own-GIL subinterpreters before 3.12")


def test_app_refusing_subinterpreters_is_one_clear_line(worker_info):
    needs_subinterpreters(worker_info)
    app = APPS / "refuses_subinterpreters.py"
    rc, text, _, _ = run_to_exit(["--mode", "subinterpreters", "--threads", "2", "-w", "2",
                                  str(app)], 30.0)
    if "No module named 'readline'" in text:
        pytest.skip("this Python was built without readline")
    assert rc == 1, f"--mode subinterpreters with a readline app: exit {rc}, expected 1\n{text}"
    line = one_line_error(text)
    for part in ("module readline does not support loading in subinterpreters", "--mode gil"):
        assert part in line, f"the error line lacks {part!r}: {line}"


def test_auto_falls_back_to_gil_for_an_app_refusing_subinterpreters(worker_info, start_server):
    needs_subinterpreters(worker_info)
    if worker_info[1] == "free-threaded":
        pytest.skip("auto picks free-threaded on this build, where readline loads")
    app = APPS / "refuses_subinterpreters.py"
    server = start_server(app, workers=1, args=["--mode", "auto", "--threads", "2"])
    lines = ready_lines(server, 1)
    assert lines and lines[0][3] == "gil", f"expected a fall back to gil\n{server.stderr()}"
    assert "falling back to gil mode" in server.stderr()
    status, body = get(server, "/")
    assert status.startswith("HTTP/1.1 200") and body == "loaded readline\n", (status, body)


def test_free_threaded_app_turning_the_gil_on_is_loud_and_served(worker_info, start_server):
    if worker_info[1] != "free-threaded":
        pytest.skip("needs a free-threaded worker (RINGMASTER_TEST_PYTHON=3.13t)")
    server = start_server(APPS / "enables_gil.py", workers=1,
                          args=["--mode", "free-threaded", "--threads", "2"])
    lines = ready_lines(server, 1)
    assert lines and lines[0][3] == "free-threaded", server.stderr()
    assert "with the GIL on" in lines[0][4], f"ready line: {lines[0]}"
    warn = [line for line in server.stderr().splitlines() if "the GIL is ON" in line]
    assert len(warn) == 1 and ": warn:" in warn[0], f"expected one warning\n{server.stderr()}"
    status, body = get(server, "/")
    assert status.startswith("HTTP/1.1 200") and body == "gil 1\n", (status, body)
