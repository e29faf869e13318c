"""Fixtures for the deployment tests: the image from deploy/Dockerfile, built
on a debootstrapped Debian base (no registry is reachable here), containers
made from it, and helpers to talk to them.

Run through tests/deploy/run.sh, which starts dockerd when none runs (and
stops it afterwards). Knobs (environment):
    RINGMASTER_DEPLOY_SKIP   a reason: every test that needs Docker skips with
                             it (run.sh sets it only when dockerd cannot start)
    RINGMASTER_DEPLOY_BASE   base image (default local/bookworm, made by
                             tests/deploy/base-image.sh when missing)
    RINGMASTER_DEPLOY_IMAGE  tag of the image under test (default ringmaster:ci)

Every container a test starts is removed at its end; failure messages carry
the container's log.
"""

import http.client
import os
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
APP_DIR = HERE / "app"
BASE = os.environ.get("RINGMASTER_DEPLOY_BASE", "local/bookworm")
IMAGE = os.environ.get("RINGMASTER_DEPLOY_IMAGE", "ringmaster:ci")
SKIP = os.environ.get("RINGMASTER_DEPLOY_SKIP", "")
BUILD_TIMEOUT = 900


def docker(*args, check=True, timeout=120, env=None):
    """Run `docker ARGS`; return the CompletedProcess (text). check: fail the
    test with the command and its output when it exits non-zero."""
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout,
                          env=env, stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        pytest.fail(f"docker {' '.join(args)}: exit {proc.returncode}\n"
                    f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-4000:]}")
    return proc


def http_get(host_port, path="/", timeout=10.0):
    """GET http://HOST:PORT/path on a fresh connection: (status, body)."""
    host, port = host_port.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def try_get(host_port, path="/", timeout=2.0):
    try:
        return http_get(host_port, path, timeout)
    except (OSError, http.client.HTTPException):
        return None, b""


def wait_until(predicate, timeout, interval=0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def image():
    """The image under test, built once per session from deploy/Dockerfile on
    BASE. Returns its tag."""
    if SKIP:
        pytest.skip(SKIP)
    base = subprocess.run([str(HERE / "base-image.sh"), BASE], capture_output=True, text=True,
                          timeout=BUILD_TIMEOUT)
    if base.returncode != 0:
        pytest.fail(f"tests/deploy/base-image.sh {BASE}: exit {base.returncode}\n"
                    f"{base.stdout[-2000:]}\n{base.stderr[-4000:]}")
    docker("build", "-q", "--network=host", "--build-arg", f"BASE={BASE}",
           "-f", str(ROOT / "deploy" / "Dockerfile"), "-t", IMAGE, str(ROOT),
           timeout=BUILD_TIMEOUT)
    return IMAGE


class Container:
    """One `docker run -d` of the image; ports published on 127.0.0.1."""

    def __init__(self, image, run_args=(), cmd=("app:app",)):
        self.name = f"rm-test-{uuid.uuid4().hex[:10]}"
        self.run_args = list(run_args)
        self.cmd = list(cmd)
        self.image = image
        self.started_at = None

    def start(self):
        self.started_at = time.monotonic()
        docker("run", "-d", "--name", self.name,
               "-p", "127.0.0.1::8000", "-p", "127.0.0.1::9100",
               "-v", f"{APP_DIR}:/app:ro", *self.run_args, self.image, *self.cmd)
        return self

    def port(self, container_port):
        out = docker("port", self.name, f"{container_port}/tcp").stdout.split()
        return out[0].replace("0.0.0.0", "127.0.0.1") if out else None

    def inspect(self, fmt):
        return docker("inspect", "-f", fmt, self.name).stdout.strip()

    def logs(self):
        proc = docker("logs", self.name, check=False)
        return proc.stdout + proc.stderr

    def processes(self):
        """[(pid, ppid, stat, comm)] inside the container, pids as the host sees them."""
        out = docker("top", self.name, "-eo", "pid,ppid,stat,comm").stdout.splitlines()[1:]
        rows = []
        for line in out:
            parts = line.split(None, 3)
            if len(parts) == 4:
                rows.append((int(parts[0]), int(parts[1]), parts[2], parts[3]))
        return rows

    def remove(self):
        docker("rm", "-f", self.name, check=False)


@pytest.fixture
def run_container(image):
    """A factory: run_container(run_args=(), cmd=("app:app",)) -> started
    Container, removed at the end of the test."""
    made = []

    def factory(run_args=(), cmd=("app:app",)):
        c = Container(image, run_args, cmd)
        made.append(c)
        return c.start()

    yield factory
    for c in made:
        c.remove()
