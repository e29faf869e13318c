"""The image from deploy/Dockerfile, run for real: it serves, answers its
probes, sizes its pool from the cgroup limits, stops cleanly as PID 1 on
`docker stop`, reaps orphans, and says so when io_uring is refused."""

import json
import re
import threading
import time

from conftest import docker, http_get, try_get, wait_until

START_BOUND = 30.0   # seconds from `docker run` to /healthz 200, generously


def metric(host_port, name, labels=""):
    status, body = http_get(host_port, "/metrics")
    assert status == 200, f"GET /metrics: {status}"
    m = re.search(rf"^{re.escape(name + labels)} (\S+)$", body.decode(), re.M)
    return float(m.group(1)) if m else None


def wait_healthy(c):
    """Poll /healthz until 200; return the seconds since `docker run`."""
    metrics = wait_until(lambda: c.port(9100), 10)
    assert metrics, f"port 9100 not published\n{c.logs()}"
    ok = wait_until(lambda: try_get(metrics, "/healthz")[0] == 200, START_BOUND, 0.02)
    assert ok, f"/healthz not 200 within {START_BOUND:.0f} s of docker run\n{c.logs()}"
    return time.monotonic() - c.started_at


def test_image_is_small_non_root_and_has_no_compiler(image, record_property):
    info = json.loads(docker("image", "inspect", image).stdout)[0]
    cfg = info["Config"]
    assert cfg["User"] == "ringmaster:ringmaster", f"image user: {cfg['User']!r}"
    assert cfg["Entrypoint"] == ["ringmaster"], f"entrypoint: {cfg['Entrypoint']!r}"
    assert "ringmaster-healthcheck" in " ".join(cfg["Healthcheck"]["Test"]), cfg["Healthcheck"]
    assert "RINGMASTER_BIND=0.0.0.0:8000" in cfg["Env"], cfg["Env"]
    size_mb = info["Size"] / 1e6
    record_property("image_size_mb", round(size_mb, 1))
    print(f"\nimage {image}: {size_mb:.0f} MB")
    # The runtime stage has no build tools (multi-stage build).
    proc = docker("run", "--rm", "--entrypoint", "sh", image, "-c",
                  "command -v gcc cc cmake make || echo none", check=False)
    assert proc.stdout.strip() == "none", f"build tools in the runtime image: {proc.stdout!r}"
    proc = docker("run", "--rm", "--entrypoint", "id", image, "-u")
    assert proc.stdout.strip() == "10001", f"runs as uid {proc.stdout.strip()}, expected 10001"


def test_one_cpu_one_worker_health_and_memory_rule(run_container, record_property):
    c = run_container(["--cpus", "1", "--memory", "512m", "--health-interval", "1s",
                       "--health-start-period", "30s"])
    started = wait_healthy(c)
    record_property("start_to_healthz_s", round(started, 2))
    print(f"\ncontainer start to /healthz 200: {started:.2f} s")
    app, metrics = c.port(8000), c.port(9100)
    assert wait_until(lambda: try_get(metrics, "/readyz")[0] == 200, START_BOUND), (
        f"/readyz never 200\n{c.logs()}")
    status, body = http_get(app, "/")
    hostname = c.inspect("{{.Config.Hostname}}")
    assert (status, body) == (200, f"ok {hostname}\n".encode()), (
        f"GET / through the published port: {status} {body!r}\n{c.logs()}")
    # --cpus 1 on a machine with more cores: --workers auto follows the quota.
    workers = [p for p in c.processes() if p[3].startswith("ringmaster-w")]
    assert len(workers) == 1, f"expected 1 worker under --cpus 1, saw {workers}\n{c.logs()}"
    assert metric(metrics, "ringmaster_workers", '{state="ready"}') == 1
    # --memory 512m and no --max-rss: 80% of 512 MiB for 1 worker.
    assert "memory limit 512 MiB: --max-rss defaults to 409 MiB per worker" in c.logs(), c.logs()
    # Docker's own health check (ringmaster-healthcheck /healthz) agrees.
    assert wait_until(lambda: c.inspect("{{.State.Health.Status}}") == "healthy", 20, 0.5), (
        f"health status {c.inspect('{{json .State.Health}}')}\n{c.logs()}")


def test_docker_stop_drains_in_flight_requests_and_exits_0(run_container):
    c = run_container(["--cpus", "1"])
    wait_healthy(c)
    app, metrics = c.port(8000), c.port(9100)
    assert wait_until(lambda: try_get(metrics, "/readyz")[0] == 200, START_BOUND), c.logs()
    # Three slow requests in flight on the one worker (served one after the
    # other: about 2.4 s of work) when docker stop sends TERM.
    results = [None] * 3

    def slow(i):
        try:
            results[i] = http_get(app, "/sleep?ms=800", timeout=30)
        except Exception as exc:  # noqa: BLE001 - any failure is the finding
            results[i] = exc

    threads = [threading.Thread(target=slow, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    assert wait_until(lambda: (metric(metrics, "ringmaster_requests_in_flight") or 0) >= 1, 5,
                      0.02), f"no request in flight before docker stop\n{c.logs()}"
    began = time.monotonic()
    docker("stop", c.name, timeout=60)   # docker's default grace: 10 s
    took = time.monotonic() - began
    print(f"\ndocker stop with 3 requests in flight: {took:.2f} s")
    for t in threads:
        t.join(30)
    logs = c.logs()
    assert c.inspect("{{.State.ExitCode}}") == "0", f"exit code after docker stop\n{logs}"
    assert took < 10, f"docker stop took {took:.1f} s: the grace period ran out\n{logs}"
    hostname = c.inspect("{{.Config.Hostname}}")
    for i, r in enumerate(results):
        assert r == (200, f"ok {hostname}\n".encode()), (
            f"in-flight request {i} (GET /sleep?ms=800) during docker stop: {r!r}\n{logs}")
    assert "SIGTERM: graceful shutdown" in logs, logs


def test_pid1_reaps_orphaned_grandchildren(run_container):
    c = run_container(["--cpus", "1"])
    wait_healthy(c)
    app = c.port(8000)
    supervisor = int(c.inspect("{{.State.Pid}}"))
    status, _ = http_get(app, "/orphan")
    assert status == 200
    procs = c.processes()
    sleeps = [p for p in procs if p[3] == "sleep"]
    assert sleeps and all(p[1] == supervisor for p in sleeps), (
        f"the orphaned `sleep 1` should be a child of PID 1 (host pid {supervisor}): {procs}")
    # It exits after 1 s; the supervisor must reap it (no zombie left).
    gone = wait_until(lambda: not [p for p in c.processes()
                                   if p[3] == "sleep" or p[2].startswith("Z")], 5, 0.2)
    assert gone, f"zombie or leftover children: {c.processes()}\n{c.logs()}"


def test_refused_io_uring_is_a_clear_error(image, tmp_path):
    """A seccomp profile without io_uring (Docker 25+'s default is one) must
    give one readable line, not a crash."""
    profile = tmp_path / "no-io-uring.json"
    profile.write_text(json.dumps({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["io_uring_setup"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}],
    }))
    proc = docker("run", "--rm", "--security-opt", f"seccomp={profile}", image, "app:app",
                  check=False, timeout=60)
    err = proc.stdout + proc.stderr
    assert proc.returncode != 0, f"started although io_uring_setup fails: {err}"
    assert "io_uring is not available" in err and "seccomp" in err, err


def test_memory_rule_edges(run_container):
    """Too small a share gives no default (and a warning); an explicit
    RINGMASTER_MAX_RSS wins over the limit."""
    small = run_container(["--memory", "128m", "-e", "RINGMASTER_WORKERS=4"])
    explicit = run_container(["--memory", "512m", "-e", "RINGMASTER_MAX_RSS=100"])
    wait_healthy(small)
    wait_healthy(explicit)
    logs = small.logs()
    assert "under 32 MiB each" in logs and "--max-rss stays off" in logs, logs
    assert "--max-rss defaults to" not in logs, logs
    logs = explicit.logs()
    assert "memory limit" not in logs, f"RINGMASTER_MAX_RSS=100 was given:\n{logs}"
