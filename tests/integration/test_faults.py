"""Fault injection: workers killed under load (docs/operations.md)."""

import os
import random
import signal
import threading
import time

from conftest import APPS, ASAN, SLOW
from test_pool import Load, one_request, wait_until, worker_pids

BASIC = APPS / "basic.py"
DURATION = 10.0 if ASAN else 30.0


def test_kill9_storm_under_load(start_server):
    """kill -9 a random worker every 200 ms under load: no request hangs, every
    answer is 200 or 502, the pool comes back to N, and no chunk leaks."""
    server = start_server(BASIC, workers=2)
    wait_until(lambda: one_request(server.port, "/")[0] == 200, 15, "a first answer")
    kills = 0
    with Load(server.port, "/", clients=6) as load:
        end = time.monotonic() + DURATION
        while time.monotonic() < end:
            pids = worker_pids(server)
            if pids:
                try:
                    os.kill(random.choice(pids), signal.SIGKILL)
                    kills += 1
                except ProcessLookupError:
                    pass
            time.sleep(0.2)
        # Let the pool settle, then make sure clients get through again.
        wait_until(lambda: len(worker_pids(server)) == 2, 20, "the pool back at 2 workers")
        wait_until(lambda: one_request(server.port, "/")[0] == 200, 20, "answers after the storm")
    statuses = {}
    for outcome in load.results:
        statuses[outcome[0]] = statuses.get(outcome[0], 0) + 1
    other = {k: v for k, v in statuses.items() if k not in (200, 502)}
    assert not other, (f"{kills} kills over {DURATION:.0f} s, {len(load.results)} requests: "
                       f"outcomes {statuses}; expected only 200 and 502 "
                       f"(first odd ones: {[r for r in load.results if r[0] not in (200, 502)][:3]})")
    assert statuses.get(200, 0) > 100, f"too few successes under the storm: {statuses}"
    assert kills >= DURATION * 2, f"only {kills} kills happened"

    os.kill(server.proc.pid, signal.SIGTERM)
    rc = server.proc.wait(30 * SLOW)
    server.stopped = True
    text = server.stderr()
    assert rc == 0, f"exit status {rc} after SIGTERM"
    assert "chunk pool clean" in text, f"the supervisor reports a leak:\n{text[-3000:]}"


def test_wedged_worker_without_heartbeats_is_replaced(start_server):
    """A stopped worker process (SIGSTOP: no heartbeat from its control
    thread) is killed after 10 s of silence and replaced."""
    server = start_server(BASIC, workers=1)
    wait_until(lambda: one_request(server.port, "/")[0] == 200, 15, "a first answer")
    [victim] = worker_pids(server)
    os.kill(victim, signal.SIGSTOP)
    try:
        wait_until(lambda: worker_pids(server) and victim not in worker_pids(server), 20,
                   "the stopped worker to be replaced")
    finally:
        try:
            os.kill(victim, signal.SIGCONT)
        except ProcessLookupError:
            pass
    wait_until(lambda: one_request(server.port, "/")[0] == 200, 15, "answers from the new worker")
    assert "no heartbeat" in server.stderr(), server.stderr()[-2000:]
