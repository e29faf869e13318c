"""Fixtures that run the real ringmaster binaries for the integration tests.

RINGMASTER_BUILD names the build directory (default "build", relative to the
repository root unless absolute); tests/integration runs against
$RINGMASTER_BUILD/ringmaster. A build configured with RINGMASTER_SANITIZE=ON
(or whose directory name contains "asan") is treated as slow: some loads shrink
and some time bounds grow.

The suite runs against any worker mode the build offers (docs/modes.md):
RINGMASTER_TEST_MODE (gil, subinterpreters, free-threaded, auto),
RINGMASTER_TEST_PYTHON (a --python value such as 3.13t: a worker built with
-DRINGMASTER_EXTRA_PYTHONS) and RINGMASTER_TEST_THREADS become --mode,
--python and --threads of every server started here, unless a test passes
that flag itself. scripts/test.sh runs the suite once per mode.

Every server started here is stopped with SIGTERM at the end of its test (or
module); that stop must exit 0 within a bound and leave no worker process
behind. When a test fails, the stderr of every server it used is attached to
the failure report.
"""

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
APPS = Path(__file__).resolve().parent / "apps"


def _build_dir():
    value = os.environ.get("RINGMASTER_BUILD", "build")
    path = Path(value)
    return path if path.is_absolute() else ROOT / path


BUILD = _build_dir()
BINARY = BUILD / "ringmaster"


def _is_asan():
    if "asan" in BUILD.name.lower():
        return True
    try:
        cache = (BUILD / "CMakeCache.txt").read_text(errors="replace")
    except OSError:
        return False
    return any(line.startswith("RINGMASTER_SANITIZE:") and line.rstrip().endswith("=ON")
               for line in cache.splitlines())


ASAN = _is_asan()

# The worker mode under test; "" leaves the flag out (the server's default).
MODE = os.environ.get("RINGMASTER_TEST_MODE", "")
PYTHON = os.environ.get("RINGMASTER_TEST_PYTHON", "")
THREADS = os.environ.get("RINGMASTER_TEST_THREADS", "")


def mode_args(args=()):
    """--mode/--python/--threads for the mode under test, minus any in args."""
    given = {a.split("=", 1)[0] for a in args if a.startswith("--")}
    out = []
    for flag, value in (("--mode", MODE), ("--python", PYTHON), ("--threads", THREADS)):
        if value and flag not in given and not (flag == "--python" and "--worker-binary" in given):
            out += [flag, value]
    return out
# Slow builds get more time for everything that is not part of the contract.
SLOW = 3.0 if ASAN else 1.0
START_TIMEOUT = 15.0           # the contract: accepting connections within 15 s
STOP_TIMEOUT = 10.0 * SLOW     # SIGTERM to exit


# ---------------------------------------------------------------- processes

def proc_stat(pid):
    """(comm, state, ppid, starttime) of a process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("latin-1")
    except OSError:
        return None
    # comm is in parentheses and may itself contain spaces or parentheses.
    lpar, rpar = data.index("("), data.rindex(")")
    comm = data[lpar + 1:rpar]
    fields = data[rpar + 2:].split()
    # fields[0] is field 3 (state); ppid is field 4, starttime field 22.
    return comm, fields[0], int(fields[1]), int(fields[19])


def children_of(ppid):
    """[(pid, comm, starttime)] of the live (non-zombie) children of ppid."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        st = proc_stat(int(entry))
        if st and st[2] == ppid and st[1] != "Z":
            out.append((int(entry), st[0], st[3]))
    return sorted(out)


def is_worker(pid, comm):
    """A worker: its comm (truncated by the kernel to 15 characters, so
    "ringmaster-work") or its executable names ringmaster-worker."""
    if comm.startswith("ringmaster-w"):
        return True
    try:
        return os.path.basename(os.readlink(f"/proc/{pid}/exe")).startswith("ringmaster-worker")
    except OSError:
        return False


def alive(pid, starttime):
    """True if pid still runs and is the same process (same start time)."""
    st = proc_stat(pid)
    return bool(st) and st[3] == starttime and st[1] != "Z"


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def can_connect(port, timeout=0.5):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for(predicate, timeout, interval=0.05):
    """Poll predicate until it returns a truthy value or timeout passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


class Server:
    """One ringmaster supervisor process started by a test.

    app: the APP argument (a str; a Path is passed as a path).
    workers: the -w value, or None to pass no -w flag.
    bind: True for "-b 127.0.0.1:<free port>", False to pass no -b (then the
        test's env must carry RINGMASTER_BIND and `port` must be given).
    """

    def __init__(self, app, workers=2, args=(), env=None, cwd=None, bind=True, port=None):
        self.app = str(app)
        self.workers = workers
        self.args = list(args)
        self.env = dict(os.environ)
        for key, value in (env or {}).items():  # None removes a variable
            if value is None:
                self.env.pop(key, None)
            else:
                self.env[key] = value
        self.cwd = str(cwd or ROOT)
        self.bind = bind
        self.port = port
        self.proc = None
        self.cmd = None
        self._stderr_file = tempfile.TemporaryFile()
        self.known_workers = set()   # (pid, starttime) of every worker seen
        self.stopped = False
        self.pass_fds = ()           # descriptors the process inherits (socket activation)

    # -- lifecycle ---------------------------------------------------------

    def command(self, port):
        cmd = [str(BINARY)]
        if self.bind:
            cmd += ["-b", f"127.0.0.1:{port}"]
        if self.workers is not None:
            cmd += ["-w", str(self.workers)]
        return cmd + mode_args(self.args) + self.args + [self.app]

    def start(self):
        if not BINARY.exists():
            pytest.fail(f"{BINARY} does not exist: build first (scripts/build.sh "
                        f"{BUILD.name}) or set RINGMASTER_BUILD")
        attempts = 5 if self.bind else 1
        for attempt in range(attempts):
            port = free_port() if self.bind else self.port
            self._stderr_file.seek(0)
            self._stderr_file.truncate()
            self.cmd = self.command(port)
            self.proc = subprocess.Popen(self.cmd, cwd=self.cwd, env=self.env,
                                         pass_fds=self.pass_fds, stdin=subprocess.DEVNULL,
                                         stdout=self._stderr_file,
                                         stderr=self._stderr_file)
            self.port = port
            deadline = time.monotonic() + START_TIMEOUT
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                if can_connect(port):
                    self.note_workers()
                    return self
                time.sleep(0.05)
            if self.proc.poll() is None:
                self.kill()
                pytest.fail(f"{self.describe()}\nnot accepting connections on port {port} "
                            f"after {START_TIMEOUT:.0f} s\n--- stderr ---\n{self.stderr()}")
            # Exited before accepting: retry only if another process took the port.
            text = self.stderr()
            if attempt + 1 < attempts and ("in use" in text.lower() or "EADDRINUSE" in text):
                continue
            pytest.fail(f"{self.describe()}\nexited with {self.proc.returncode} before "
                        f"accepting connections\n--- stderr ---\n{text}")
        raise AssertionError("unreachable")

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
        """Send sig, wait for exit, return (returncode, leftover workers)."""
        if self.proc is None or self.stopped:
            return self.proc.returncode if self.proc else None, []
        self.stopped = True
        if self.proc.poll() is None:
            self.note_workers()
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                self.reap_workers()
                raise AssertionError(
                    f"{self.describe()}\nsent {signal.Signals(sig).name}, still running after "
                    f"{timeout:.0f} s (killed it)\n--- stderr ---\n{self.stderr()}")
        # Workers exit right after the supervisor at worst; give them a moment.
        wait_for(lambda: not self.live_known_workers(), 2.0 * SLOW)
        leftover = self.live_known_workers()
        self.reap_workers()
        return self.proc.returncode, leftover

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.note_workers()
            self.proc.kill()
            self.proc.wait()

    def reap_workers(self):
        """SIGKILL every worker still alive (cleanup after a failed test)."""
        for pid, start in self.live_known_workers():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass

    # -- inspection --------------------------------------------------------

    def url(self, path="/"):
        return f"http://127.0.0.1:{self.port}{path}"

    def describe(self):
        return "server: " + " ".join(self.cmd or [])

    def stderr(self):
        # pread, not seek(0) + read: the server's processes write through the
        # same open file (one shared offset), and a record written between a
        # seek to 0 and the read would land over the start of the log.
        fd = self._stderr_file.fileno()
        chunks, offset = [], 0
        while True:
            data = os.pread(fd, 1 << 20, offset)
            if not data:
                break
            chunks.append(data)
            offset += len(data)
        return b"".join(chunks).decode("utf-8", "replace")

    def workers_now(self):
        """[(pid, starttime)] of the supervisor's live worker children."""
        if self.proc is None:
            return []
        found = [(pid, start) for pid, comm, start in children_of(self.proc.pid)
                 if is_worker(pid, comm)]
        self.known_workers.update(found)
        return found

    note_workers = workers_now

    def worker_pids(self):
        return sorted(pid for pid, _ in self.workers_now())

    def live_known_workers(self):
        return [(pid, start) for pid, start in sorted(self.known_workers) if alive(pid, start)]

    def wait_workers(self, count, timeout=10.0 * SLOW):
        """Wait until exactly count workers are up; return their pids (or the last seen)."""
        pids = wait_for(lambda: (lambda p: p if len(p) == count else None)(self.worker_pids()),
                        timeout)
        return pids or self.worker_pids()

    def assert_running(self):
        assert self.proc.poll() is None, (
            f"{self.describe()}\nexited with {self.proc.returncode} while the test needed it"
            f"\n--- stderr ---\n{self.stderr()}")

    def assert_clean_stop(self, sig=signal.SIGTERM):
        rc, leftover = self.stop(sig)
        assert rc == 0, (f"{self.describe()}\nexit status after {signal.Signals(sig).name}: "
                         f"{rc}, expected 0\n--- stderr ---\n{self.stderr()}")
        assert not leftover, (f"{self.describe()}\nworker processes left after the supervisor "
                              f"exited: {leftover}\n--- stderr ---\n{self.stderr()}")


def run_to_exit(args, timeout, env=None, cwd=None, mode_flags=True):
    """Run the binary with args expecting it to exit; return (rc, stderr, seconds, workers).
    mode_flags=False leaves out the mode under test's flags (for tests of the
    variables those flags would override)."""
    if not BINARY.exists():
        pytest.fail(f"{BINARY} does not exist: build first or set RINGMASTER_BUILD")
    full_env = dict(os.environ)
    for key, value in (env or {}).items():
        if value is None:
            full_env.pop(key, None)
        else:
            full_env[key] = value
    started = time.monotonic()
    seen = set()
    with tempfile.TemporaryFile() as err:
        # The mode under test, unless the test gives those flags: before its
        # own arguments, so a test of argument errors still sees its own.
        args = (mode_args(args) if mode_flags else []) + list(args)
        proc = subprocess.Popen([str(BINARY)] + args, cwd=str(cwd or ROOT), env=full_env,
                                stdin=subprocess.DEVNULL, stdout=err, stderr=err)
        try:
            while proc.poll() is None and time.monotonic() - started < timeout:
                seen.update((pid, start) for pid, comm, start in children_of(proc.pid))
                time.sleep(0.02)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
                rc = None
            else:
                rc = proc.returncode
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        elapsed = time.monotonic() - started
        err.seek(0)
        text = err.read().decode("utf-8", "replace")
    wait_for(lambda: not [w for w in seen if alive(*w)], 2.0 * SLOW)
    leftover = [w for w in sorted(seen) if alive(*w)]
    for pid, _ in leftover:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return rc, text, elapsed, leftover


# ---------------------------------------------------------------- fixtures

class ServerFactory:
    def __init__(self):
        self.servers = []

    def __call__(self, app=APPS / "basic.py", **kwargs):
        server = Server(app, **kwargs)
        self.servers.append(server)
        return server.start()

    def stop_all(self):
        errors = []
        for server in self.servers:
            if server.stopped:
                server.reap_workers()
                continue
            try:
                server.assert_clean_stop()
            except AssertionError as exc:
                errors.append(str(exc))
        return errors


@pytest.fixture
def start_server():
    """A factory: start_server(app=..., workers=2, args=(), env=None) -> Server.

    Each server is stopped with SIGTERM at teardown and must exit 0 leaving no
    worker behind (unless the test already stopped it itself)."""
    factory = ServerFactory()
    yield factory
    errors = factory.stop_all()
    if errors:
        pytest.fail("\n\n".join(errors))


@contextlib.contextmanager
def serving(app=APPS / "basic.py", **kwargs):
    """A server for a module-scoped fixture: started on entry, stopped cleanly
    (exit 0, no worker left) on exit, as start_server's are."""
    factory = ServerFactory()
    server = factory(app, **kwargs)
    yield server
    errors = factory.stop_all()
    if errors:
        pytest.fail("\n\n".join(errors))


@pytest.fixture(scope="module")
def shared_server():
    """One `-w 2` server on apps/basic.py shared by a module's read-only tests."""
    with serving() as server:
        yield server


def checked(server):
    """For a per-test fixture over a module's server: yields it, checked alive
    before and after the test."""
    server.assert_running()
    yield server
    server.assert_running()


@pytest.fixture
def server(shared_server):
    """The shared server, checked alive before and after each test."""
    yield from checked(shared_server)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    funcargs = getattr(item, "funcargs", {}) or {}
    servers = []
    for value in funcargs.values():
        if isinstance(value, Server):
            servers.append(value)
        elif isinstance(value, ServerFactory):
            servers.extend(value.servers)
    seen = set()
    for srv in servers:
        if id(srv) in seen:
            continue
        seen.add(id(srv))
        report.sections.append((f"ringmaster stderr ({' '.join(srv.cmd or [])})",
                                srv.stderr() or "(empty)"))
