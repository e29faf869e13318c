"""The worker pool on a bad day and a busy one: recycling, reload, scaling,
graceful stop under load (docs/operations.md)."""

import concurrent.futures
import http.client
import os
import signal
import socket
import textwrap
import threading
import time

from conftest import APPS, SLOW, children_of, is_worker
from control_client import get

BASIC = APPS / "basic.py"


def worker_pids(server):
    return sorted(pid for pid, comm, _ in children_of(server.proc.pid) if is_worker(pid, comm))


def wait_until(cond, timeout, what):
    deadline = time.monotonic() + timeout * SLOW
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout * SLOW:.0f} s waiting for {what}")


def one_request(port, path="/pid"):
    return get(port, path)


class Load:
    """Clients hammering GET `path` until stopped; every outcome is kept."""

    def __init__(self, port, path="/pid", clients=4):
        self.port, self.path = port, path
        self.stop = threading.Event()
        self.results = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run) for _ in range(clients)]

    def run(self):
        conn = None
        while not self.stop.is_set():
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20 * SLOW)
                conn.request("GET", self.path)
                resp = conn.getresponse()
                body = resp.read()
                outcome = (resp.status, body)
                if resp.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                outcome = ("error", repr(exc))
                if conn is not None:
                    conn.close()
                conn = None
            with self.lock:
                self.results.append(outcome)
        if conn is not None:
            conn.close()

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(60)

    def failures(self):
        return [r for r in self.results if r[0] != 200]


def test_max_requests_recycles_workers_without_failures(start_server):
    server = start_server(BASIC, workers=2, args=("--max-requests", "100",
                                                  "--max-requests-jitter", "20"))
    wait_until(lambda: one_request(server.port)[0] == 200, 15, "a first answer")
    with Load(server.port) as load:
        # Until the replacements served too: under this load a worker embedding a
        # slower-starting Python (3.13t, or one interpreter per thread) may need
        # a second or more to be ready, while the old ones keep serving.
        wait_until(lambda: len(load.results) >= 1200 and len(
            {r[1] for r in list(load.results) if r[0] == 200}) >= 4, 60,
            "1200 requests under load, served by at least 4 worker pids")
    pids = {r[1] for r in load.results if r[0] == 200}
    bad = load.failures()
    assert not bad, f"{len(bad)} of {len(load.results)} requests failed while recycling: {bad[:3]}"
    assert len(pids) >= 4, (f"{len(load.results)} requests with --max-requests 100 -w 2 were "
                            f"served by only {len(pids)} worker pid(s); expected recycling")
    wait_until(lambda: len(worker_pids(server)) == 2, 15, "the pool back at 2 workers")


def test_sighup_reloads_code_with_no_failed_request(start_server, tmp_path):
    app = tmp_path / "versioned.py"
    app.write_text("def app(request):\n    return b'v1'\n")
    server = start_server(app, workers=2)
    wait_until(lambda: one_request(server.port, "/")[1] == b"v1", 15, "v1 answering")
    with Load(server.port, "/") as load:
        time.sleep(0.5)
        app.write_text("def app(request):\n    return b'v2'\n")
        os.kill(server.proc.pid, signal.SIGHUP)
        wait_until(lambda: one_request(server.port, "/")[1] == b"v2", 30, "v2 after SIGHUP")
        time.sleep(0.5)
    bad = load.failures()
    assert not bad, f"{len(bad)} of {len(load.results)} requests failed across SIGHUP: {bad[:3]}"
    bodies = {r[1] for r in load.results}
    assert bodies <= {b"v1", b"v2"} and b"v2" in bodies, f"bodies seen: {bodies}"
    # The old generation is gone: every answer now comes from new code.
    assert all(one_request(server.port, "/")[1] == b"v2" for _ in range(20))
    wait_until(lambda: len(worker_pids(server)) == 2, 15, "the pool back at 2 workers")


def test_ttin_and_ttou_change_the_worker_count(start_server):
    server = start_server(BASIC, workers=2)
    wait_until(lambda: len(worker_pids(server)) == 2, 15, "2 workers")
    os.kill(server.proc.pid, signal.SIGTTIN)
    wait_until(lambda: len(worker_pids(server)) == 3, 15, "3 workers after SIGTTIN")
    os.kill(server.proc.pid, signal.SIGTTOU)
    wait_until(lambda: len(worker_pids(server)) == 2, 15, "2 workers after SIGTTOU")
    os.kill(server.proc.pid, signal.SIGTTOU)  # one at a time: pending signals merge
    wait_until(lambda: len(worker_pids(server)) == 1, 15, "1 worker after a second SIGTTOU")
    assert one_request(server.port, "/")[0] == 200
    text = server.stderr()
    for line in ("scaling from 2 to 3", "scaling from 3 to 2", "scaling from 2 to 1"):
        assert line in text, f"no '{line}' log line; stderr ends:\n{text[-2000:]}"



def test_sigterm_lets_in_flight_requests_finish(start_server):
    server = start_server(BASIC, workers=2)
    wait_until(lambda: one_request(server.port)[0] == 200, 15, "a first answer")
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(one_request, server.port, "/sleep?ms=1000") for _ in range(4)]
        time.sleep(0.3)
        os.kill(server.proc.pid, signal.SIGTERM)
        outcomes = [f.result() for f in futures]
    assert all(status == 200 for status, _ in outcomes), (
        f"requests in flight at SIGTERM: {outcomes}; expected all 200")
    rc = server.proc.wait(30 * SLOW)
    server.stopped = True
    assert rc == 0, f"exit status {rc} after SIGTERM; expected 0"
    wait_until(lambda: not worker_pids(server), 5, "no worker left")
    # Nothing listens any more.
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", server.port)) != 0


def test_autoscaling_grows_under_load_and_shrinks_when_idle(start_server):
    server = start_server(BASIC, workers=1, args=("--workers-min", "1", "--workers-max", "3",
                                                  "--idle-timeout", "2"))
    wait_until(lambda: len(worker_pids(server)) == 1, 15, "1 worker at start")
    wait_until(lambda: one_request(server.port, "/")[0] == 200, 15, "a first answer")
    with Load(server.port, "/sleep?ms=100", clients=6) as load:
        wait_until(lambda: len(worker_pids(server)) == 3, 30, "growth to 3 workers under load")
    assert not load.failures(), f"failures while growing: {load.failures()[:3]}"
    wait_until(lambda: len(worker_pids(server)) == 1, 30, "shrinking back to 1 when idle")
    text = server.stderr()
    assert "growing to 2" in text and "growing to 3" in text, text[-2000:]
    assert "shrinking to 2" in text and "shrinking to 1" in text, text[-2000:]


def test_max_rss_recycles_a_worker_over_the_limit(start_server):
    """--max-rss 1 (MiB): every embedded interpreter is above it, so workers are
    recycled once a second; requests keep succeeding meanwhile."""
    server = start_server(BASIC, workers=1, args=("--max-rss", "1"))
    wait_until(lambda: one_request(server.port, "/")[0] == 200, 15, "a first answer")
    wait_until(lambda: "over --max-rss" in server.stderr(), 15, "a recycle for RSS in the log")
    statuses = [one_request(server.port, "/")[0] for _ in range(50)]
    assert statuses.count(200) == 50, f"statuses while recycling for RSS: {statuses}"
