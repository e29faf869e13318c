"""The control socket and `ringmaster ctl` against a live supervisor
(docs/control.md)."""

import json
import os
import socket
import stat
import struct
import subprocess
import time
import tempfile
import urllib.request
from pathlib import Path

import pytest

from conftest import APPS, BINARY, SLOW
from control_client import ctl, ctl_json, wait_until

BASIC = APPS / "basic.py"


def ready_workers(path):
    return [w for w in ctl_json(path, "workers")["workers"] if w["state"] == "ready"]


@pytest.fixture
def controlled(start_server, tmp_path):
    sock = tmp_path / "ctl.sock"
    server = start_server(BASIC, workers=2, args=["--control", str(sock)])
    wait_until(lambda: len(ready_workers(sock)) == 2, 15, "2 ready workers")
    return server, sock


def test_socket_is_private(controlled):
    _, sock = controlled
    st = os.stat(sock)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)


def test_stats_counts_requests(controlled):
    server, sock = controlled
    for _ in range(5):
        with urllib.request.urlopen(server.url("/"), timeout=10) as resp:
            assert resp.status == 200
    stats = ctl_json(sock, "stats")
    assert stats["ok"] is True and stats["cmd"] == "stats" and stats["v"] == 1
    s = stats["stats"]
    assert s["pid"] == server.proc.pid
    assert s["workers_target"] == 2 and s["workers_ready"] == 2
    assert s["requests"] >= 5, s
    assert s["chunks_total"] > 0 and s["stopping"] is False
    text = ctl(sock, "stats").stdout
    assert f"pid           {server.proc.pid}" in text, text
    assert "requests" in text


def test_workers_table_and_json(controlled):
    server, sock = controlled
    pids = server.wait_workers(2)
    listed = ctl_json(sock, "workers")["workers"]
    assert sorted(w["pid"] for w in listed) == pids
    for w in listed:
        assert w["attached"] is False
        assert w["mode"] and w["python"].startswith("3.")
        assert w["rss_bytes"] > 1 << 20, w
        assert w["uptime_ms"] >= 0 and w["in_flight"] == 0
    table = ctl(sock, "workers").stdout.splitlines()
    assert table[0].split()[:4] == ["LANE", "PID", "STATE", "MODE"], table
    assert len(table) == 3, table
    assert all("embedded" in line for line in table[1:]), table


def test_scale_to_three_then_down(controlled):
    server, sock = controlled
    out = ctl_json(sock, "scale", "3")
    assert out["ok"] and out["target"] == 3, out
    wait_until(lambda: len(ready_workers(sock)) == 3, 15, "3 ready workers")
    assert len(server.wait_workers(3)) == 3
    assert ctl_json(sock, "stats")["stats"]["workers_target"] == 3
    assert ctl_json(sock, "scale", "-1")["target"] == 2
    assert ctl_json(sock, "scale", "+1")["target"] == 3
    assert "scaling to 2" in ctl(sock, "scale", "2").stdout
    wait_until(lambda: len(ready_workers(sock)) == 2, 15, "2 ready workers")


def test_scale_out_of_range_is_refused(controlled):
    _, sock = controlled
    proc = ctl(sock, "scale", "100000", check=False)
    assert proc.returncode == 2 and "scale" in proc.stderr, proc
    proc = ctl(sock, "scale", "1000", check=False)
    assert proc.returncode == 1 and "range is 1.." in proc.stderr, proc
    proc = ctl(sock, "--json", "scale", "1000", check=False)
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["ok"] is False


def test_reload_replaces_workers(controlled):
    server, sock = controlled
    before = {w["pid"] for w in ready_workers(sock)}
    assert ctl_json(sock, "reload")["ok"]
    wait_until(lambda: (lambda now: len(now) == 2 and not now & before and now)(
        {w["pid"] for w in ready_workers(sock)}), 20, "2 fresh workers after reload")
    assert ctl_json(sock, "stats")["stats"]["reloads"] == 1
    with urllib.request.urlopen(server.url("/"), timeout=10) as resp:
        assert resp.read() == b"Hello, world!\n"


def test_stop_is_graceful(controlled):
    server, sock = controlled
    assert ctl_json(sock, "stop")["ok"]
    server.proc.wait(timeout=15 * SLOW)
    server.stopped = True
    assert server.proc.returncode == 0, server.stderr()
    assert not sock.exists(), "the socket file outlived the supervisor"


def test_top_without_a_tty_prints_plain_frames(controlled):
    _, sock = controlled
    out = ctl(sock, "top", "-n", "2").stdout
    assert "\033[" not in out, "escape codes on a pipe"
    assert out.count("LANE") == 2, out
    lines = [json.loads(line) for line in ctl(sock, "--json", "top", "-n", "1").stdout.splitlines()]
    assert [o["cmd"] for o in lines] == ["stats", "workers"]


def test_bad_usage_and_no_supervisor(tmp_path):
    proc = subprocess.run([str(BINARY), "ctl", "frobnicate"], capture_output=True, text=True)
    assert proc.returncode == 2 and "unknown command 'frobnicate'" in proc.stderr
    proc = subprocess.run([str(BINARY), "ctl", "--control", str(tmp_path / "none.sock"),
                           "stats"], capture_output=True, text=True)
    assert proc.returncode == 1 and "cannot connect" in proc.stderr, proc.stderr


def run_ctl(*args, env=None):
    return subprocess.run([str(BINARY), "ctl", *map(str, args)], capture_output=True, text=True,
                          timeout=10 * SLOW, env=env)


def test_options_anywhere_on_the_line(controlled):
    """`ctl workers --json` as people type it: options before or after the
    command and its argument; a number such as scale's -1 stays an argument."""
    _, sock = controlled
    for args in (["workers", "--json", "--control", sock],
                 ["workers", "--control", sock, "--json"],
                 ["--json", "workers", f"--control={sock}"]):
        proc = run_ctl(*args)
        assert proc.returncode == 0, f"ctl {args}: exit {proc.returncode}: {proc.stderr}"
        assert len(json.loads(proc.stdout)["workers"]) == 2, (args, proc.stdout)
    proc = run_ctl("scale", "-1", "--json", "--control", sock)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["target"] == 1, proc.stdout
    proc = run_ctl("scale", "--control", sock, "+1", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["target"] == 2, proc.stdout
    proc = run_ctl("top", "--control", sock, "-n", "1", "--json")
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(l)["cmd"] for l in proc.stdout.splitlines()] == ["stats", "workers"]
    # RINGMASTER_CONTROL still works, with options after the command.
    proc = run_ctl("stats", "--json", env={**os.environ, "RINGMASTER_CONTROL": str(sock)})
    assert proc.returncode == 0 and json.loads(proc.stdout)["ok"], proc.stderr


def test_bad_options_anywhere_are_one_line(tmp_path):
    sock = tmp_path / "none.sock"
    for args, needle in ((["workers", "--frobnicate", "--control", sock],
                          "unknown option '--frobnicate'"),
                         (["--control", sock, "stats", "-x"], "unknown option '-x'"),
                         (["--control", sock, "--", "--json"], "unknown command '--json'"),
                         (["--control", sock, "workers", "--", "--json"],
                          "unexpected argument '--json'"),
                         (["--control", sock, "stats", "-n", "2"], "only top takes a count"),
                         (["stats", "--control"], "--control needs a PATH")):
        proc = run_ctl(*args)
        lines = proc.stderr.splitlines()
        assert proc.returncode == 2, f"ctl {args}: exit {proc.returncode}: {proc.stderr}"
        assert len(lines) == 1 and needle in lines[0], f"ctl {args}: {proc.stderr!r}"
        assert proc.stdout == "", proc.stdout


def raw_request(sock_path, body):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5 * SLOW)
    s.connect(str(sock_path))
    s.sendall(struct.pack(">I", len(body)) + body)
    return s


def test_garbage_on_the_socket_disconnects_only_that_client(controlled):
    server, sock = controlled
    s = raw_request(sock, b"\xc1\xc1\xc1")  # 0xc1 is never valid msgpack
    assert s.recv(100) == b""
    s.close()
    # A length prefix far beyond the limit is refused before its bytes arrive.
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5 * SLOW)
    s.connect(str(sock))
    s.sendall(struct.pack(">I", 1 << 30))
    assert s.recv(100) == b""
    s.close()
    assert ctl_json(sock, "stats")["ok"]
    server.assert_running()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to setuid to another user")
def test_another_uid_is_refused(start_server):
    # A directory nobody can enter, and a socket whose mode lets anyone
    # connect: SO_PEERCRED alone must refuse.
    public = tempfile.mkdtemp(prefix="ringmaster-ctl-")
    os.chmod(public, 0o755)
    sock = Path(public) / "ctl.sock"
    start_server(BASIC, workers=1, args=["--control", str(sock)])
    os.chmod(sock, 0o666)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: become nobody, then try
        try:
            os.close(read_fd)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(5)
            s.connect(str(sock))
            body = b"\x82\xa1v\x01\xa3cmd\xa5stats"
            try:
                s.sendall(struct.pack(">I", len(body)) + body)
            except OSError:
                pass  # refused before it read: the answer is still there to read
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            os.write(write_fd, data)
        finally:
            os._exit(0)
    os.close(write_fd)
    data = b""
    while True:
        chunk = os.read(read_fd, 4096)
        if not chunk:
            break
        data += chunk
    os.waitpid(pid, 0)
    assert b"permission denied" in data, data
    assert b"workers" not in data and b"stats\x84" not in data
    assert ctl_json(sock, "stats")["ok"]


def test_default_socket_under_xdg_runtime_dir(start_server, tmp_path):
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    env = {"XDG_RUNTIME_DIR": str(runtime), "RINGMASTER_CONTROL": None}
    server = start_server(BASIC, workers=1, env=env)
    sock = runtime / "ringmaster" / f"{server.proc.pid}.sock"
    wait_until(sock.exists, 10, f"{sock}")
    assert stat.S_IMODE(os.stat(sock.parent).st_mode) == 0o700
    # Without --control, ctl finds the one live socket there.
    proc = subprocess.run([str(BINARY), "ctl", "--json", "stats"], capture_output=True,
                          text=True, timeout=10 * SLOW, env={**os.environ, **{
                              "XDG_RUNTIME_DIR": str(runtime)}})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["stats"]["pid"] == server.proc.pid
    server.assert_clean_stop()
    assert not sock.exists()
