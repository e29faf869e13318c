"""Workers that attach to a running supervisor (docs/attach.md): an ordinary
CPython process of another version serves through the same C core, dies
without harming the supervisor, and one that posts garbage is cut off.

The attaching interpreter is pyenv's 3.13.0 (RINGMASTER_ATTACH_PYTHON names
another); a venv with `pip install ./python` is made for it under the build
directory once per run. Without that interpreter these tests are skipped."""

import concurrent.futures
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import APPS, BUILD, ROOT, SLOW
from control_client import ctl_json, get, wait_until

BASIC = APPS / "basic.py"
GARBAGE = BUILD / "tests" / "attach_garbage"


def _attach_interpreter():
    given = os.environ.get("RINGMASTER_ATTACH_PYTHON")
    if given:
        return Path(given)
    root = None
    if shutil.which("pyenv"):
        root = subprocess.run(["pyenv", "root"], capture_output=True, text=True).stdout.strip()
    root = Path(root or Path.home() / ".pyenv")
    return root / "versions" / "3.13.0" / "bin" / "python3.13"


@pytest.fixture(scope="module")
def attach_python():
    """A venv's python with the ringmaster package (and its extension) installed."""
    interp = _attach_interpreter()
    if not interp.exists():
        pytest.skip(f"no interpreter to attach with at {interp} (set RINGMASTER_ATTACH_PYTHON)")
    venv = BUILD / "attach-venv"
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([str(interp), "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    for cmd in (pip + ["-r", str(ROOT / "tests" / "requirements-attach.txt")],
                pip + ["--no-build-isolation", "--force-reinstall", "--no-deps",
                       str(ROOT / "python")]):
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=str(ROOT))
        assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}"
    return python


class Attached:
    """One `python -m ringmaster.worker --attach` process."""

    def __init__(self, python, sock, app="basic:app"):
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [str(python), "-m", "ringmaster.worker", "--attach", str(sock), app],
            cwd=str(APPS), stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)

    def output(self):
        self.log.seek(0)
        return self.log.read().decode("utf-8", "replace")

    def wait_ready(self, sock):
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"attached worker exited {self.proc.returncode}:\n"
                                     f"{self.output()}")
            return [w for w in ctl_json(sock, "workers")["workers"]
                    if w["pid"] == self.proc.pid and w["state"] == "ready"]
        return wait_until(ready, 30, f"attached worker {self.proc.pid} ready")[0]

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


@pytest.fixture
def attach_only(start_server, tmp_path):
    """A supervisor with --attach-only; attached processes are killed at the end."""
    sock = tmp_path / "ctl.sock"
    server = start_server(BASIC, workers=None, args=["--attach-only", "--control", str(sock)])
    procs = []
    yield server, sock, procs
    for p in procs:
        p.kill()


def test_attached_worker_of_another_python_serves(attach_python, attach_only):
    server, sock, procs = attach_only
    stats = ctl_json(sock, "stats")["stats"]
    assert stats["attach_only"] and stats["workers_ready"] == 0
    worker = Attached(attach_python, sock)
    procs.append(worker)
    info = worker.wait_ready(sock)
    assert info["attached"] is True and info["python"] == "3.13.0", info
    assert get(server.port, "/") == (200, b"Hello, world!\n")
    assert get(server.port, "/pid") == (200, str(worker.proc.pid).encode())
    status, body = get(server.port, "/echo-missing")
    assert status == 404
    listed = ctl_json(sock, "workers")["workers"]
    assert [w["pid"] for w in listed] == [worker.proc.pid]
    assert listed[0]["requests"] >= 3
    assert ctl_json(sock, "stats")["stats"]["workers_attached"] == 1
    # The supervisor's stop reaches the attached worker, which exits 0.
    server.assert_clean_stop()
    assert worker.proc.wait(10 * SLOW) == 0, worker.output()


def test_kill_9_mid_load_then_attach_again(attach_python, attach_only):
    server, sock, procs = attach_only
    first = Attached(attach_python, sock)
    procs.append(first)
    first.wait_ready(sock)
    baseline = ctl_json(sock, "stats")["stats"]["chunks_used"]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(get, server.port, "/sleep?ms=200", 60) for _ in range(16)]
        time.sleep(0.3 * SLOW)
        os.kill(first.proc.pid, signal.SIGKILL)
        first.proc.wait()
        wait_until(lambda: not ctl_json(sock, "workers")["workers"], 10, "the lane taken back")
        # Requests it had not started wait for a worker; a new one attaches.
        second = Attached(attach_python, sock)
        procs.append(second)
        second.wait_ready(sock)
        results = [f.result() for f in futures]
    statuses = sorted(s for s, _ in results)
    assert set(statuses) <= {200, 502}, statuses
    assert 200 in statuses, statuses
    served_by = {b for s, b in results if s == 200}
    assert str(second.proc.pid).encode() in served_by, (served_by, second.proc.pid)
    server.assert_running()
    assert get(server.port, "/pid") == (200, str(second.proc.pid).encode())
    assert "died" in server.stderr() or "ended" in server.stderr(), server.stderr()
    wait_until(lambda: ctl_json(sock, "stats")["stats"]["chunks_used"] <= baseline, 10,
               "the killed worker's chunks reclaimed")


def test_garbage_descriptors_are_cut_off(attach_python, attach_only):
    server, sock, procs = attach_only
    good = Attached(attach_python, sock)
    procs.append(good)
    good.wait_ready(sock)
    assert GARBAGE.exists(), f"{GARBAGE} missing: build the tests"
    bad = subprocess.run([str(GARBAGE), str(sock)], capture_output=True, text=True,
                         timeout=40 * SLOW)
    assert bad.returncode == -signal.SIGKILL, (bad.returncode, bad.stdout, bad.stderr)
    assert "posted" in bad.stdout
    log = server.stderr()
    assert "posted a completion for a request it does not have" in log, log
    server.assert_running()
    for _ in range(5):
        assert get(server.port, "/pid") == (200, str(good.proc.pid).encode())
    pids = [w["pid"] for w in ctl_json(sock, "workers")["workers"]]
    assert pids == [good.proc.pid], pids


def test_attach_to_nothing_fails_readably(attach_python, tmp_path):
    proc = subprocess.run([str(attach_python), "-m", "ringmaster.worker", "--attach",
                           str(tmp_path / "none.sock"), "basic:app"],
                          capture_output=True, text=True, cwd=str(APPS), timeout=30)
    assert proc.returncode == 1, proc
    assert "cannot connect to the control socket" in proc.stderr, proc.stderr


def test_hung_attached_worker_is_killed_not_respawned(attach_python, start_server, tmp_path):
    sock = tmp_path / "ctl.sock"
    server = start_server(BASIC, workers=None,
                          args=["--attach-only", "--control", str(sock), "--timeout", "1"])
    worker = Attached(attach_python, sock)
    try:
        worker.wait_ready(sock)
        status, _ = get(server.port, "/sleep?ms=5000")
        assert status == 504, status
        assert worker.proc.wait(10 * SLOW) == -signal.SIGKILL, worker.output()
        wait_until(lambda: not ctl_json(sock, "workers")["workers"], 10, "the lane taken back")
        time.sleep(1.0)
        assert ctl_json(sock, "workers")["workers"] == [], "an attached worker was respawned"
        server.assert_running()
    finally:
        worker.kill()


def test_attached_worker_serves_asgi(attach_python, attach_only):
    """An ASGI app through an attached worker: the same C core, its event loop
    and lifespan in the attached process (asyncio: no uvloop there)."""
    server, sock, procs = attach_only
    worker = Attached(attach_python, sock, app="asgi_edge:app")
    procs.append(worker)
    worker.wait_ready(sock)
    assert get(server.port, "/") == (200, b"Hello, ASGI!\n"), worker.output()
    status, body = get(server.port, "/state")
    assert status == 200 and b'"started": "yes"' in body, body
    server.assert_clean_stop()
    assert worker.proc.wait(10 * SLOW) == 0, worker.output()
