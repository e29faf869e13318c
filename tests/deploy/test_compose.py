"""deploy/compose.yaml brought up with docker-compose (v1, Debian's): two
ringmaster replicas behind HAProxy. Under load, stopping a replica loses no
request (the balancer retries idempotent ones) and the other keeps serving;
deploy/rolling-restart.sh restarts both, one at a time, with none lost."""

import os
import subprocess
import threading
import time
import uuid

import pytest

from conftest import (APP_DIR, BASE, IMAGE, ROOT, SKIP, docker, free_port, try_get,
                      wait_until)

COMPOSE_FILE = ROOT / "deploy" / "compose.yaml"


class Project:
    def __init__(self):
        self.name = f"rmci{uuid.uuid4().hex[:8]}"
        self.port = free_port()
        self.env = {**os.environ,
                    "COMPOSE_PROJECT_NAME": self.name,
                    "COMPOSE_FILE": str(COMPOSE_FILE),
                    "RINGMASTER_BASE": BASE,
                    "RINGMASTER_IMAGE": IMAGE,
                    "RINGMASTER_APP_DIR": str(APP_DIR),
                    "RINGMASTER_APP": "app:app",
                    "RINGMASTER_PORT": f"127.0.0.1:{self.port}"}
        self.url = f"127.0.0.1:{self.port}"

    def compose(self, *args, check=True, timeout=300):
        proc = subprocess.run(["docker-compose", *args], env=self.env, capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if check and proc.returncode != 0:
            pytest.fail(f"docker-compose {' '.join(args)}: exit {proc.returncode}\n"
                        f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
        return proc

    def replicas(self):
        return self.compose("ps", "-q", "app").stdout.split()

    def logs(self):
        proc = self.compose("logs", "--no-color", "--tail", "60", check=False)
        return proc.stdout[-6000:]


class Load:
    """Clients sending GET /sleep?ms=20 through the balancer until stopped,
    each on a fresh connection; every outcome is kept with its time."""

    def __init__(self, url, clients=3):
        self.url = url
        self.outcomes = []          # (time, status, body)
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.threads = [threading.Thread(target=self.run) for _ in range(clients)]

    def run(self):
        while not self.stop_event.is_set():
            status, body = try_get(self.url, "/sleep?ms=20", timeout=15)
            with self.lock:
                self.outcomes.append((time.monotonic(), status, body))

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        for t in self.threads:
            t.join(30)

    def failures(self):
        with self.lock:
            return [o for o in self.outcomes if o[1] != 200]

    def served_by(self, since=0.0):
        with self.lock:
            return {o[2] for o in self.outcomes if o[1] == 200 and o[0] >= since}


@pytest.fixture(scope="module")
def project(image):
    if SKIP:
        pytest.skip(SKIP)
    if subprocess.run(["sh", "-c", "command -v docker-compose"],
                      capture_output=True).returncode != 0:
        pytest.fail("docker-compose is not installed (scripts/install-deps.sh installs it)")
    p = Project()
    p.compose("build", "balancer", timeout=600)
    try:
        p.compose("up", "-d", "--no-build", timeout=300)
        yield p
    finally:
        p.compose("down", "-v", "--remove-orphans", "-t", "10", check=False, timeout=120)


def hostnames(project):
    return {docker("inspect", "-f", "{{.Config.Hostname}}", c).stdout.strip()
            for c in project.replicas()}


def wait_both_served(project):
    """Until the balancer has answered from both replicas."""
    names = hostnames(project)
    assert len(names) == 2, f"expected 2 replicas, got {names}\n{project.logs()}"
    seen = set()

    def both():
        status, body = try_get(project.url, "/")
        if status == 200:
            seen.add(body.decode().split()[-1])
        return seen >= names

    assert wait_until(both, 60, 0.05), (
        f"the balancer answered only from {seen} of {names}\n{project.logs()}")
    return names


def test_two_replicas_behind_the_balancer(project):
    names = wait_both_served(project)
    for c in project.replicas():
        health = docker("inspect", "-f", "{{.State.Health.Status}}", c).stdout.strip()
        assert health == "healthy", f"replica {c[:12]}: health {health}\n{project.logs()}"
    assert len(names) == 2


def test_stopping_a_replica_under_load_loses_no_request(project):
    wait_both_served(project)
    victim, survivor = project.replicas()[:2]
    survivor_name = docker("inspect", "-f", "{{.Config.Hostname}}", survivor).stdout.strip()
    with Load(project.url) as load:
        time.sleep(1.5)
        stopped_at = time.monotonic()
        docker("stop", victim, timeout=60)
        time.sleep(3.0)
    failures = load.failures()
    code = docker("inspect", "-f", "{{.State.ExitCode}}", victim).stdout.strip()
    after = load.served_by(since=time.monotonic() - 2.0)
    # Start it again for the next test.
    docker("start", victim)
    assert not failures, (
        f"{len(failures)} of {len(load.outcomes)} requests failed while a replica stopped: "
        f"{failures[:5]}\n{project.logs()}")
    assert code == "0", f"the stopped replica exited with {code}\n{project.logs()}"
    assert after == {f"ok {survivor_name}\n".encode()}, (
        f"after the stop, answers came from {after}, expected only {survivor_name}")
    assert len(load.outcomes) > 20, f"too little load to mean anything: {len(load.outcomes)}"
    assert stopped_at


def test_rolling_restart_under_load_loses_no_request(project):
    wait_both_served(project)
    before = {c: docker("inspect", "-f", "{{.State.StartedAt}}", c).stdout.strip()
              for c in project.replicas()}
    with Load(project.url) as load:
        proc = subprocess.run([str(ROOT / "deploy" / "rolling-restart.sh")], env=project.env,
                              capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"rolling-restart.sh: {proc.stdout}\n{proc.stderr}"
    failures = load.failures()
    assert not failures, (
        f"{len(failures)} of {len(load.outcomes)} requests failed during the rolling restart: "
        f"{failures[:5]}\n{proc.stdout}\n{project.logs()}")
    for c, started in before.items():
        now = docker("inspect", "-f", "{{.State.StartedAt}}", c).stdout.strip()
        assert now != started, f"replica {c[:12]} was not restarted"
    assert len(load.served_by()) == 2
