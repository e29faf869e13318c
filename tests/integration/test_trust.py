"""Trust boundaries (docs/security.md): --user/--group and the workers'
privileges, the private spill directory, what a dead instance leaves behind,
silent control clients, and the access log's mode and query strings.

Most tests need root (to switch users, and to act as another local user with
os.setuid in a child); they are skipped without it.
"""

import hashlib
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import APPS, BINARY, BUILD, SLOW, free_port, run_to_exit, wait_for
from control_client import ctl, ctl_json, get, wait_until

BODY_APP = APPS / "body_hash.py"
BASIC = APPS / "basic.py"
NOBODY, NOGROUP = 65534, 65534
TIMEOUT = 30.0 * SLOW

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")


# ---------------------------------------------------------------- helpers

def status_fields(pid):
    """The fields of /proc/PID/status as a dict of strings."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            out[key] = value.strip()
    return out


def ids(value):
    """'65534\t65534\t65534\t65534' -> [65534] * 4."""
    return [int(v) for v in value.split()]


def assert_no_caps(pid, what):
    st = status_fields(pid)
    for key in ("CapEff", "CapPrm", "CapInh", "CapAmb"):
        assert int(st[key], 16) == 0, f"{what} (pid {pid}) {key} = {st[key]}, expected none"
    return st


_PUBLIC_DIRS = []


@pytest.fixture(autouse=True)
def _remove_public_dirs():
    """public_dir()s go once the test's servers are stopped (autouse
    fixtures are set up first, so torn down last)."""
    yield
    while _PUBLIC_DIRS:
        shutil.rmtree(_PUBLIC_DIRS.pop(), ignore_errors=True)


def public_dir(mode=0o755):
    """A fresh directory under /tmp that other users can reach (pytest's
    tmp_path lives under a 0700 directory of root's)."""
    path = Path(tempfile.mkdtemp(prefix="rm-trust-", dir="/tmp"))
    path.chmod(mode)
    _PUBLIC_DIRS.append(path)
    return path


def as_user(uid, gid, fn):
    """Run fn() in a child that has become uid/gid (another local user);
    fail if it raises."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            fn()
            code = 0
        except BaseException as exc:  # noqa: BLE001 - reported through the exit status
            os.write(2, f"as_user: {exc!r}\n".encode())
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the other user's actions failed"


def post_body(port, body, path="/"):
    """POST body (Content-Length) on a fresh connection -> (status, parsed JSON or raw)."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n"
                     "Connection: close\r\n\r\n".encode() + body)
        data = b""
        while True:
            piece = sock.recv(65536)
            if not piece:
                break
            data += piece
    head, _, rest = data.partition(b"\r\n\r\n")
    status = int(head.split()[1]) if head else 0
    try:
        return status, json.loads(rest)
    except ValueError:
        return status, rest


def spilled(spill):
    return sorted(p for p in spill.rglob("*.body"))


def private_dirs(spill, uid):
    """The supervisors' private directories: real directories, owned by uid, 0700."""
    def ours(p):
        st = os.lstat(p)
        return stat.S_ISDIR(st.st_mode) and st.st_uid == uid and stat.S_IMODE(st.st_mode) == 0o700

    return sorted(p for p in spill.iterdir() if p.name.startswith(f"ringmaster-{uid}-") and ours(p))


# ---------------------------------------------------------------- --user / --group

# A worker that runs as nobody must be able to read its interpreter: the
# default worker embeds /usr/bin/python3; pyenv's 3.13 and the free-threaded
# build live under /root, which nobody cannot enter. What these tests check
# (the privilege drop) is the same in every mode, so they run the default
# worker in gil mode whatever mode the suite runs.
AS_NOBODY = ["--mode", "gil", "--worker-binary", str(BUILD / "ringmaster-worker")]

@needs_root
def test_user_and_group_drop_everything(start_server):
    spill = public_dir()
    ctl_dir = public_dir()
    sock = ctl_dir / "ctl.sock"
    server = start_server(BODY_APP, workers=2,
                          args=AS_NOBODY + ["--interface", "wsgi", "--user", "nobody",
                                            "--group", "nogroup",
                                "--spill-dir", str(spill), "--body-spill-size", "1M", "--max-body-size", "8M",
                                "--control", str(sock)],
                          env={"RM_TEST_SPILL_DIR": str(spill)})
    pids = server.wait_workers(2)
    assert len(pids) == 2, server.stderr()

    sup = assert_no_caps(server.proc.pid, "supervisor")
    assert ids(sup["Uid"]) == [NOBODY] * 4, sup["Uid"]
    assert ids(sup["Gid"]) == [NOGROUP] * 4, sup["Gid"]
    assert sup["Groups"].split() in ([], [str(NOGROUP)]), sup["Groups"]
    for pid in pids:
        st = assert_no_caps(pid, "worker")
        assert ids(st["Uid"]) == [NOBODY] * 4 and ids(st["Gid"]) == [NOGROUP] * 4, (st["Uid"],
                                                                                   st["Gid"])
        assert st["NoNewPrivs"] == "1", st["NoNewPrivs"]
        assert int(st["CapBnd"], 16) == 0, st["CapBnd"]
    assert "running as user nobody (uid 65534, gid 65534)" in server.stderr()
    with open(f"/proc/{pids[0]}/environ", "rb") as f:
        environ = dict(item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item)
    assert environ.get(b"USER") == b"nobody" and environ.get(b"HOME") == b"/nonexistent", environ
    assert "running as root without --user" not in server.stderr()

    # Still serves, and a body over --body-spill-size (2 MiB) goes through
    # the private spill directory, which belongs to nobody.
    body = os.urandom(2 << 20)
    status, got = post_body(server.port, body)
    assert status == 200, got
    assert got == {"length": len(body), "sha256": hashlib.sha256(body).hexdigest(),
                   "spilled": 1}, got
    (mine,) = private_dirs(spill, NOBODY)
    st = os.lstat(mine)
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700, oct(st.st_mode)
    assert (st.st_uid, st.st_gid) == (NOBODY, NOGROUP)
    assert wait_for(lambda: not spilled(spill), 5.0), spilled(spill)

    # The control socket was bound as root and given to the user, who may use it.
    st = os.stat(sock)
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (NOBODY, 0o600)
    out = subprocess.run([str(BINARY), "ctl", "--control", str(sock), "--json", "stats"],
                         capture_output=True, text=True, timeout=10 * SLOW,
                         preexec_fn=lambda: (os.setgroups([]), os.setgid(NOGROUP),
                                             os.setuid(NOBODY)))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["stats"]["pid"] == server.proc.pid


@needs_root
def test_root_without_user_warns_and_workers_have_no_privileges(start_server):
    server = start_server(BASIC, workers=1)
    (pid,) = server.wait_workers(1)
    warnings = [line for line in server.stderr().splitlines()
                if "running as root without --user" in line]
    assert len(warnings) == 1, server.stderr()
    st = assert_no_caps(pid, "worker")
    assert st["NoNewPrivs"] == "1"
    assert int(st["CapBnd"], 16) == 0, st["CapBnd"]
    assert get(server.port)[0] == 200


def test_bad_user_and_group_are_one_readable_line(tmp_path):
    app = str(BASIC)
    for args, expected in ((["--user", "no-such-user-rm"], "--user: no user named 'no-such-user-rm'"),
                           (["--user", "nobody", "--group", "no-such-group-rm"],
                            "--group: no group named 'no-such-group-rm'"),
                           (["--group", "nogroup"], "--group needs --user")):
        rc, err, _, _ = run_to_exit(args + ["-b", f"127.0.0.1:{free_port()}", app], timeout=10)
        lines = [line for line in err.splitlines() if line.strip()]
        assert rc == 2 and len(lines) == 1 and expected in lines[0], (args, rc, err)
    rc, err, _, _ = run_to_exit(["-b", f"127.0.0.1:{free_port()}", app],
                                env={"RINGMASTER_USER": "no-such-user-rm"}, timeout=10)
    assert rc == 2 and "RINGMASTER_USER: no user named" in err, err


@needs_root
def test_user_when_not_root_is_refused_unless_it_names_ourselves():
    """A supervisor started as nobody cannot become root: one line, exit 2."""
    proc = subprocess.run([str(BINARY), "--user", "root", "-b", f"127.0.0.1:{free_port()}",
                           str(BASIC)], capture_output=True, text=True, timeout=10 * SLOW,
                          preexec_fn=lambda: (os.setgroups([]), os.setgid(NOGROUP),
                                              os.setuid(NOBODY)))
    assert proc.returncode == 2, proc.stderr
    assert "cannot switch users" in proc.stderr and len(proc.stderr.splitlines()) == 1, proc.stderr


# ---------------------------------------------------------------- the spill directory

@needs_root
def test_names_planted_by_another_user_change_nothing(start_server):
    """Another local user (nobody) fills a shared, sticky spill directory with
    the names spilled bodies used to get, plus a symlink and a directory of
    its own under our private directory's pattern: uploads still spill and
    succeed, and nothing of theirs is followed or removed."""
    spill = public_dir(0o1777)  # like /tmp
    victim = public_dir(0o755)
    (victim / "keep").write_text("precious")

    def plant_before():
        os.symlink(str(victim), str(spill / "ringmaster-0-1.AAAAAA"))
        os.mkdir(spill / "ringmaster-0-2.BBBBBB", 0o700)
        (spill / "ringmaster-0-2.BBBBBB" / "1.body").write_text("theirs")

    as_user(NOBODY, NOGROUP, plant_before)
    server = start_server(BODY_APP, workers=1,
                          args=["--interface", "wsgi", "--spill-dir", str(spill),
                                "--body-spill-size", "64K", "--max-body-size", "8M"],
                          env={"RM_TEST_SPILL_DIR": str(spill)})
    pid = server.proc.pid

    def plant_after():
        # The old, predictable names: ringmaster-PID-N.body.
        for n in range(1, 33):
            with open(spill / f"ringmaster-{pid}-{n}.body", "w") as f:
                f.write("x")

    as_user(NOBODY, NOGROUP, plant_after)
    for _ in range(3):
        body = os.urandom(300000)
        status, got = post_body(server.port, body)
        assert status == 200, got
        # The app counts *.body files under the spill directory: ours, and
        # the 32 planted ones next to it (never opened by the supervisor).
        assert got["sha256"] == hashlib.sha256(body).hexdigest() and got["spilled"] == 33, got

    (mine,) = private_dirs(spill, 0)
    st = os.lstat(mine)
    assert stat.S_ISDIR(st.st_mode) and st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o700
    assert (victim / "keep").read_text() == "precious"
    assert os.path.islink(spill / "ringmaster-0-1.AAAAAA")
    assert (spill / "ringmaster-0-2.BBBBBB" / "1.body").read_text() == "theirs"
    assert "not ours" in server.stderr(), server.stderr()
    # The planted files are someone else's: still there, never opened by us.
    assert len(list(spill.glob(f"ringmaster-{pid}-*.body"))) == 32


def start_spilling_upload(port, spill):
    """A 50 MB upload of which 2 MiB are sent: its file exists and stays."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 50000000\r\n\r\n")
    sock.sendall(os.urandom(2 << 20))
    assert wait_for(lambda: spilled(spill), 5.0 * SLOW), "no spill file appeared"
    return sock


def kill9(server):
    server.kill()
    server.stopped = True  # nothing left to stop cleanly; workers die with it (PDEATHSIG)
    wait_for(lambda: not server.live_known_workers(), 5.0 * SLOW)


@needs_root
def test_restart_after_kill9_removes_what_the_dead_instance_left(start_server):
    spill = public_dir()
    sock = public_dir() / "ctl.sock"
    args = ["--interface", "wsgi", "--spill-dir", str(spill), "--body-spill-size", "64K",
            "--max-body-size", "100M", "--control", str(sock)]
    env = {"RM_TEST_SPILL_DIR": str(spill)}
    first = start_server(BODY_APP, workers=1, args=args, env=env)
    upload = start_spilling_upload(first.port, spill)
    left = spilled(spill)
    old_dir = left[0].parent
    kill9(first)
    upload.close()
    assert left and all(p.exists() for p in left) and sock.exists(), "kill -9 left nothing?"

    second = start_server(BODY_APP, workers=1, args=args, env=env)
    # (Accepting starts at listen(), just before the sweep: give it a moment.)
    assert wait_for(lambda: not old_dir.exists(), 5.0), list(spill.rglob("*"))
    assert not any(p.exists() for p in left)
    assert f"removed spill directory {old_dir.name}" in second.stderr(), second.stderr()
    assert ctl_json(sock, "stats")["stats"]["pid"] == second.proc.pid
    body = os.urandom(200000)
    status, got = post_body(second.port, body)
    assert status == 200 and got["spilled"] == 1, got
    assert [p.name for p in spill.iterdir()] == [p.name for p in private_dirs(spill, 0)], \
        list(spill.iterdir())
    assert len(private_dirs(spill, 0)) == 1


@needs_root
def test_restart_after_kill9_removes_the_dead_default_socket(start_server):
    """The default control socket is named after its supervisor's pid, so a
    restart gets another name: the dead one's socket is removed at start."""
    xdg = public_dir(0o700)
    env = {"XDG_RUNTIME_DIR": str(xdg)}
    first = start_server(BASIC, workers=1, env=env)
    old = xdg / "ringmaster" / f"{first.proc.pid}.sock"
    assert wait_for(old.exists, 5.0), list(xdg.rglob("*"))
    kill9(first)
    assert old.exists()
    second = start_server(BASIC, workers=1, env=env)
    new = xdg / "ringmaster" / f"{second.proc.pid}.sock"
    assert wait_for(lambda: not old.exists() and new.exists(), 5.0), list(xdg.rglob("*"))
    assert sorted((xdg / "ringmaster").iterdir()) == [new]
    assert ctl_json(new, "stats")["stats"]["pid"] == second.proc.pid
    assert f"removed the control socket {old}" in second.stderr(), second.stderr()


def test_a_live_instances_spill_directory_is_left_alone(start_server, tmp_path):
    spill = tmp_path / "spill"
    spill.mkdir()
    args = ["--interface", "wsgi", "--spill-dir", str(spill), "--body-spill-size", "64K",
            "--max-body-size", "100M"]
    env = {"RM_TEST_SPILL_DIR": str(spill)}
    first = start_server(BODY_APP, workers=1, args=args, env=env)
    upload = start_spilling_upload(first.port, spill)
    held = spilled(spill)
    second = start_server(BODY_APP, workers=1, args=args, env=env)
    assert all(p.exists() for p in held), "a live instance's spilled body was removed"
    assert len(private_dirs(spill, os.geteuid())) == 2
    upload.close()
    assert wait_for(lambda: not spilled(spill), 5.0 * SLOW), spilled(spill)
    body = os.urandom(100000)
    for server in (first, second):
        status, got = post_body(server.port, body)
        assert status == 200 and got["spilled"] == 1, got


# ---------------------------------------------------------------- the control socket

def test_silent_control_clients_do_not_lock_out_ctl(start_server, tmp_path):
    sock = tmp_path / "ctl.sock"
    server = start_server(BASIC, workers=1, args=["--control", str(sock)])
    wait_until(lambda: ctl_json(sock, "stats")["stats"]["workers_ready"] == 1, 15, "a ready worker")
    silent = []
    for _ in range(64):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(2.0)
        try:
            s.connect(str(sock))
        except OSError:
            s.close()
            continue
        silent.append(s)
    assert len(silent) >= 48, f"only {len(silent)} silent clients connected"
    try:
        started = time.monotonic()
        out = ctl(sock, "--json", "stats", timeout=5)
        took = time.monotonic() - started
        assert json.loads(out.stdout)["stats"]["pid"] == server.proc.pid
        assert took < 1.0 * SLOW, f"ctl stats took {took:.2f} s with 64 silent clients"
        # And the silent ones are dropped: each sees the end of its stream.
        time.sleep(1.6 * SLOW)
        for s in silent:
            s.settimeout(0.5)
            try:
                assert s.recv(1) == b""
            except ConnectionResetError:
                pass
    finally:
        for s in silent:
            s.close()
    assert "sent no request in time" in server.stderr() or \
        "the longest silent one" in server.stderr(), server.stderr()


def test_a_client_that_never_finishes_its_request_is_dropped(start_server, tmp_path):
    sock = tmp_path / "ctl.sock"
    server = start_server(BASIC, workers=1, args=["--control", str(sock)])
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(str(sock))
        s.sendall(b"\x00\x00\x00\x10\x82")  # a frame of 16 bytes, one of them sent
        s.settimeout(5.0 * SLOW)
        started = time.monotonic()
        assert s.recv(1) == b""
        assert time.monotonic() - started < 2.5 * SLOW
    assert wait_for(lambda: "did not finish its request in time" in server.stderr(), 2.0)
    assert ctl_json(sock, "stats")["ok"] is True


def test_a_client_that_does_not_read_its_answers_is_dropped(start_server, tmp_path):
    """Pipelined requests whose answers are never read fill the socket; the
    supervisor gives up on that client after 5 s and serves everyone else."""
    sock = tmp_path / "ctl.sock"
    server = start_server(BASIC, workers=1, args=["--control", str(sock)])
    body = b"\x82\xa1v\x01\xa3cmd\xa5stats"  # {"v": 1, "cmd": "stats"}
    frame = len(body).to_bytes(4, "big") + body
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(str(sock))
        s.setblocking(False)
        deadline = time.monotonic() + 3.0
        sent = 0
        while time.monotonic() < deadline:
            try:
                sent += s.send(frame * 64)
            except BlockingIOError:
                time.sleep(0.01)  # both buffers are full: the supervisor waits on us
        assert sent > 64 * len(frame), sent
        assert ctl_json(sock, "stats")["ok"] is True, "others are served meanwhile"
        assert wait_for(lambda: "did not read its answer in time" in server.stderr(),
                        8.0 * SLOW), server.stderr()


# ---------------------------------------------------------------- the access log

def read_log(path, count):
    def lines():
        try:
            got = path.read_text().splitlines()
        except FileNotFoundError:
            return None
        return got if len(got) >= count else None

    return wait_for(lines, TIMEOUT) or []


def raw(port, data):
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as s:
        s.sendall(data)
        return s.recv(65536)


def test_access_log_is_0640_without_query_strings_by_default(start_server, tmp_path):
    log = tmp_path / "access.log"
    server = start_server(BASIC, workers=1, args=["--access-log", str(log)])
    assert get(server.port, "/id?id=s3cret&x=1")[0] == 200
    assert raw(server.port, b"BAD\x01 /p?token=s3cret HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 400")
    lines = read_log(log, 2)
    assert len(lines) == 2, lines
    assert '"GET /id HTTP/1.1" 200' in lines[0], lines
    assert r'"BAD\x01 /p HTTP/1.1" 400' in lines[1], lines
    assert "s3cret" not in log.read_text()
    assert stat.S_IMODE(os.stat(log).st_mode) == 0o640, oct(os.stat(log).st_mode)


def test_access_log_query_on_keeps_them(start_server, tmp_path):
    log = tmp_path / "on.log"
    server = start_server(BASIC, workers=1, args=["--access-log", str(log), "--access-log-format",
                                                  "json", "--access-log-query", "on"])
    assert get(server.port, "/id?id=s3cret")[0] == 200
    (line,) = read_log(log, 1)
    entry = json.loads(line)
    assert entry["path"] == "/id?id=s3cret" and entry["request"] == "GET /id?id=s3cret HTTP/1.1"

    log2 = tmp_path / "env.log"
    server = start_server(BASIC, workers=1, args=["--access-log", str(log2), "--access-log-format",
                                                  "json"],
                          env={"RINGMASTER_ACCESS_LOG_QUERY": "off"})
    assert get(server.port, "/id?id=s3cret")[0] == 200
    (line,) = read_log(log2, 1)
    assert json.loads(line)["path"] == "/id", line
    rc, err, _, _ = run_to_exit(["--access-log-query", "maybe", str(BASIC)], timeout=10)
    assert rc == 2 and "--access-log-query: expected off or on" in err, err


# ---------------------------------------------------------------- --worker-seccomp

def framework_env():
    from test_wsgi_frameworks import venv_env

    return venv_env()


def http(port, method, path, body=None, headers=None):
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


@pytest.mark.parametrize("framework", ["flask", "fastapi"])
def test_worker_seccomp_with_flask_and_fastapi(start_server, framework):
    """Real framework apps serve under the filter; the probe route shows
    what it refuses (EPERM) and what it leaves alone (threads, subprocess)."""
    env = framework_env()
    if framework == "fastapi":
        from test_asgi_frameworks import installed
        from test_wsgi_frameworks import missing

        if not installed("fastapi"):
            missing("FastAPI is not installed in the framework venv")
    iface = ["--interface", "wsgi"] if framework == "flask" else []
    if framework == "fastapi":
        from conftest import MODE

        # pydantic-core (FastAPI) cannot load in a subinterpreter (docs/asgi.md):
        # there FastAPI is served as its users must run it, in gil mode.
        if MODE == "subinterpreters":
            iface = ["--mode", "gil"]
    server = start_server(f"{APPS / 'seccomp_probe.py'}:{framework}_app", workers=1,
                          args=iface + ["--worker-seccomp"], env=env)
    (pid,) = server.wait_workers(1)
    st = status_fields(pid)
    assert st["Seccomp"] == "2" and st["NoNewPrivs"] == "1", (st["Seccomp"], st["NoNewPrivs"])
    assert "--worker-seccomp: workers run under a seccomp filter" in server.stderr()
    status, body = http(server.port, "GET", "/probe")
    assert status == 200, body
    got = json.loads(body)
    EPERM = 1
    assert got == {"ptrace": EPERM, "unshare": EPERM, "io_uring_setup": EPERM,
                   "subprocess": 0, "thread": True}, got

    # The framework's own test apps, unmodified, under the filter.
    app = APPS / ("wsgi_flask.py" if framework == "flask" else "asgi_fastapi.py")
    real = start_server(app, workers=1, args=iface + ["--worker-seccomp"], env=env)
    status, body = http(real.port, "GET", "/")
    assert status == 200, body
    if framework == "fastapi":
        status, body = http(real.port, "POST", "/items",
                            body=json.dumps({"name": "x", "price": 2.5}),
                            headers={"Content-Type": "application/json"})
        assert status == 201, body

    # Off by default: the same app without the flag runs unfiltered.
    plain = start_server(app, workers=1, args=iface, env=env)
    (pid,) = plain.wait_workers(1)
    assert status_fields(pid)["Seccomp"] == "0"


@needs_root
def test_user_default_control_socket_is_the_users(start_server):
    """Without --control, the socket goes where the user's own ctl looks:
    /tmp/ringmaster-UID, not root's /run/ringmaster or root's session dir."""
    spill = public_dir()
    server = start_server(BASIC, workers=1,
                          args=AS_NOBODY + ["--user", "nobody", "--spill-dir", str(spill)],
                          env={"XDG_RUNTIME_DIR": str(public_dir(0o700))})
    sock = Path(f"/tmp/ringmaster-{NOBODY}/{server.proc.pid}.sock")
    assert wait_for(sock.exists, 5.0), server.stderr()
    st, dst = os.stat(sock), os.lstat(sock.parent)
    assert (st.st_uid, dst.st_uid, stat.S_IMODE(dst.st_mode)) == (NOBODY, NOBODY, 0o700)
    out = subprocess.run([str(BINARY), "ctl", "--control", str(sock), "--json", "stats"],
                         capture_output=True, text=True, timeout=10 * SLOW,
                         env={"PATH": os.environ["PATH"]},
                         preexec_fn=lambda: (os.setgroups([]), os.setgid(NOGROUP),
                                             os.setuid(NOBODY)))
    assert out.returncode == 0 and json.loads(out.stdout)["stats"]["pid"] == server.proc.pid, \
        out.stderr
    server.assert_clean_stop()
    assert not sock.exists(), "the user removes its own socket at exit"


# ---------------------------------------------------------------- attached workers and spilled bodies

@pytest.fixture(scope="module")
def system_attach_python():
    """A venv of /usr/bin/python3 with ringmaster's package and extension:
    an interpreter that another user (nobody) can run, unlike one under
    root's home."""
    from conftest import BUILD, ROOT

    venv = BUILD / "attach-venv-sys"
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run(["/usr/bin/python3", "-m", "venv", str(venv)], check=True)
    # Reinstalled every time, as test_attach.py does: a package built from
    # older sources would refuse a newer region layout.
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    for cmd in (pip + ["-r", str(ROOT / "tests" / "requirements-attach.txt")],
                pip + ["--no-build-isolation", "--force-reinstall", "--no-deps",
                       str(ROOT / "python")]):
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=str(ROOT))
        assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}"
    return python


def attach_as(python, sock, uid, gid):
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen([str(python), "-m", "ringmaster.worker", "--attach", str(sock),
                             "basic:app"], cwd=str(APPS), stdin=subprocess.DEVNULL, stdout=log,
                            stderr=log, env={"PATH": os.environ["PATH"], "HOME": "/tmp"},
                            preexec_fn=lambda: (os.setgroups([]), os.setgid(gid), os.setuid(uid)))

    def output():
        log.seek(0)
        return log.read().decode("utf-8", "replace")

    def ready():
        if proc.poll() is not None:
            raise AssertionError(f"attached worker exited {proc.returncode}:\n{output()}")
        return [w for w in ctl_json(sock, "workers")["workers"]
                if w["pid"] == proc.pid and w["state"] == "ready"]

    wait_until(ready, 30, "the attached worker ready")
    return proc, output


@needs_root
def test_attached_worker_of_the_users_uid_reads_spilled_bodies(start_server,
                                                              system_attach_python):
    spill, sock = public_dir(), public_dir() / "ctl.sock"
    server = start_server(BASIC, workers=None,
                          args=["--attach-only", "--user", "nobody", "--control", str(sock),
                                "--spill-dir", str(spill), "--body-spill-size", "64K",
                                "--max-body-size", "8M"])
    proc, output = attach_as(system_attach_python, sock, NOBODY, NOGROUP)
    try:
        body = os.urandom(300000)
        status, got = post_body(server.port, body, path="/echo")
        assert status == 200 and got == body, (status, len(got), output())
        assert wait_for(lambda: not spilled(spill), 5.0), spilled(spill)
    finally:
        proc.kill()
        proc.wait()


@needs_root
def test_attached_worker_of_another_uid_cannot_read_a_root_supervisors_spill(
        start_server, system_attach_python):
    """Documented (docs/security.md): a root supervisor without --user lets a
    --control-group member of another uid attach, but its private spill
    directory is root's 0700: such a request is a 500, nothing leaks."""
    spill, sock = public_dir(), public_dir() / "ctl.sock"
    server = start_server(BASIC, workers=None,
                          args=["--attach-only", "--control-group", "nogroup", "--control",
                                str(sock), "--spill-dir", str(spill), "--body-spill-size", "64K",
                                "--max-body-size", "8M"])
    proc, output = attach_as(system_attach_python, sock, NOBODY, NOGROUP)
    try:
        status, _ = post_body(server.port, os.urandom(300000), path="/echo")
        assert status == 500
        assert wait_for(lambda: "Permission denied" in output(), 5.0), output()
        # It was the private directory that kept it out: root's, 0700.
        (mine,) = private_dirs(spill, 0)
        assert re.search(rf"cannot open its spilled body {re.escape(str(mine))}/\d+\.body: "
                         r"Permission denied", output()), output()
        status, got = post_body(server.port, b"small", path="/echo")
        assert (status, got) == (200, b"small"), "bodies in shared memory still work"
    finally:
        proc.kill()
        proc.wait()
