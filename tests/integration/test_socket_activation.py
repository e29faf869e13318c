"""Socket activation: ringmaster serves a listening socket it inherits as
descriptor 3 with LISTEN_FDS/LISTEN_PID set (sd_listen_fds(3), what a systemd
.socket unit does; deploy/systemd/), instead of binding --bind.

LISTEN_PID must be the pid of ringmaster itself, so the server is started
through `bash -c '... LISTEN_PID=$$ exec ringmaster ...'`: bash moves the
socket to descriptor 3, then execs ringmaster in its own process.
"""

import os
import shutil
import socket
import subprocess

import pytest

from conftest import APPS, BINARY, SLOW, Server, can_connect, free_port, wait_for
from control_client import get as http_get

TIMEOUT = 10.0 * SLOW
# $1: the socket's descriptor in bash; the rest: the command. The socket
# becomes descriptor 3 and its first copy is closed.
ACTIVATE = ('fd=$1; shift; if [ "$fd" != 3 ]; then exec 3<&"$fd" {fd}<&-; fi; '
            'LISTEN_PID=${LISTEN_PID_OVERRIDE:-$$} exec "$@"')


def listening_socket():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


class ActivatedServer(Server):
    """A Server whose listener is `sock`, passed the way systemd passes it."""

    def __init__(self, sock, env=None, args=()):
        env = {"LISTEN_FDS": "1", "LISTEN_FDNAMES": "http", **(env or {})}
        # -b names another port: the inherited socket must win over it.
        self.unused_port = free_port()
        super().__init__(APPS / "basic.py", workers=1,
                         args=["-b", f"127.0.0.1:{self.unused_port}", *args], env=env,
                         bind=False, port=sock.getsockname()[1])
        self.sock = sock
        self.pass_fds = (sock.fileno(),)

    def command(self, port):
        return ["bash", "-c", ACTIVATE, "activate", str(self.sock.fileno())] + \
            super().command(port)


def socket_inode(sock):
    return os.fstat(sock.fileno()).st_ino


def open_socket_inodes(pid):
    out = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(int(target[8:-1]))
    return out


def test_serves_the_inherited_socket_and_hides_it_from_workers():
    sock = listening_socket()
    server = ActivatedServer(sock)
    try:
        server.start()
        status, body = http_get(server.port)
        assert (status, body) == (200, b"Hello, world!\n"), (
            f"GET / on the inherited socket (port {server.port}): got {status} {body!r}, "
            f"expected 200 b'Hello, world!\\n'\n--- stderr ---\n{server.stderr()}")
        assert "LISTEN_FDS" in server.stderr(), (
            f"the log should say the socket came from LISTEN_FDS\n{server.stderr()}")
        assert not can_connect(server.unused_port), (
            f"-b 127.0.0.1:{server.unused_port} was bound although a socket was passed")
        # The supervisor holds the socket; its workers neither hold it (it is
        # FD_CLOEXEC) nor see the variables (unset before they start).
        inode = socket_inode(sock)
        assert inode in open_socket_inodes(server.proc.pid)
        workers = server.wait_workers(1)
        assert workers, f"no worker started\n{server.stderr()}"
        for pid in workers:
            assert inode not in open_socket_inodes(pid), (
                f"worker {pid} inherited the listening socket")
            with open(f"/proc/{pid}/environ", "rb") as f:
                names = {item.split(b"=", 1)[0] for item in f.read().split(b"\0") if item}
            leaked = names & {b"LISTEN_FDS", b"LISTEN_PID", b"LISTEN_FDNAMES"}
            assert not leaked, f"worker {pid} sees {sorted(leaked)} in its environment"
        server.assert_clean_stop()
    finally:
        server.kill()
        server.reap_workers()
        sock.close()


def test_listen_pid_of_another_process_is_ignored():
    """Variables meant for another process (LISTEN_PID is not ours): bind --bind."""
    sock = listening_socket()
    server = ActivatedServer(sock, env={"LISTEN_PID_OVERRIDE": "1"})
    try:
        server.start()
        assert wait_for(lambda: can_connect(server.unused_port), TIMEOUT), (
            f"LISTEN_PID=1 is not ringmaster's pid, so -b 127.0.0.1:{server.unused_port} "
            f"should have been bound\n--- stderr ---\n{server.stderr()}")
        status, body = http_get(server.unused_port)
        assert status == 200, f"GET / on the --bind port: {status} {body!r}"
        server.assert_clean_stop()
    finally:
        server.kill()
        server.reap_workers()
        sock.close()


def run_activated(fd_setup, listen_fds):
    """Run ringmaster with descriptor 3 made by the shell snippet fd_setup and
    LISTEN_FDS=listen_fds, LISTEN_PID its own pid; return (rc, stderr)."""
    script = f'{fd_setup}; LISTEN_PID=$$ exec "$@"'
    proc = subprocess.run(["bash", "-c", script, "activate", str(BINARY), "-w", "1",
                           "-b", f"127.0.0.1:{free_port()}", str(APPS / "basic.py")],
                          env={**os.environ, "LISTEN_FDS": listen_fds},
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=TIMEOUT)
    return proc.returncode, proc.stderr.decode("utf-8", "replace")


def test_more_than_one_socket_is_refused():
    rc, err = run_activated("exec 3</dev/null 4</dev/null", "2")
    assert rc != 0 and "LISTEN_FDS=2" in err and "one listening socket" in err, (
        f"LISTEN_FDS=2: exit {rc}, stderr {err!r}; expected a non-zero exit and one line "
        f"saying ringmaster serves one socket")


def test_descriptor_that_is_not_a_listening_socket_is_refused():
    rc, err = run_activated("exec 3</dev/null", "1")
    assert rc != 0 and "not a socket" in err, (
        f"fd 3 = /dev/null: exit {rc}, stderr {err!r}; expected 'not a socket'")
    # A socket that does not listen (a UDP socket) is refused too.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        script = f'exec 3<&{udp.fileno()}; LISTEN_PID=$$ exec "$@"'
        proc = subprocess.run(["bash", "-c", script, "activate", str(BINARY), "-w", "1",
                               str(APPS / "basic.py")],
                              env={**os.environ, "LISTEN_FDS": "1"}, pass_fds=(udp.fileno(),),
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=TIMEOUT)
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode != 0 and "not a listening TCP socket" in err, (
        f"fd 3 = a UDP socket: exit {proc.returncode}, stderr {err!r}")


def test_bad_listen_fds_value_is_refused():
    rc, err = run_activated("exec 3</dev/null", "three")
    assert rc != 0 and "LISTEN_FDS: expected a count" in err, (
        f"LISTEN_FDS=three: exit {rc}, stderr {err!r}")


class SystemdActivatedServer(Server):
    """ringmaster under systemd's own socket activator: systemd-socket-activate
    listens, and on the first connection execs ringmaster with the socket as
    fd 3 and LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES set, as a .socket unit does."""

    def __init__(self, port):
        super().__init__(APPS / "basic.py", workers=1, bind=False, port=port)

    def command(self, port):
        return ["systemd-socket-activate", "-l", f"127.0.0.1:{port}"] + super().command(port)


@pytest.mark.skipif(shutil.which("systemd-socket-activate") is None,
                    reason="systemd-socket-activate (package systemd) is not installed")
def test_systemd_socket_activate():
    server = SystemdActivatedServer(free_port())
    try:
        server.start()   # its first connection makes the activator exec ringmaster
        status, body = http_get(server.port)
        assert (status, body) == (200, b"Hello, world!\n"), (
            f"GET / through systemd-socket-activate: {status} {body!r}\n{server.stderr()}")
        assert "passed as fd 3 in LISTEN_FDS" in server.stderr(), server.stderr()
        server.assert_clean_stop()
    finally:
        server.kill()
        server.reap_workers()
