"""--metrics HOST:PORT: /healthz, /readyz and /metrics on their own socket
(docs/metrics.md)."""

import http.client
import json
import os
import re
import signal
import socket
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import APPS, SLOW, free_port, run_to_exit, wait_for

TIMEOUT = 10.0 * SLOW


def probe(port, path, method="GET"):
    """One request to the metrics endpoint -> (status, body text)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode("utf-8")
    finally:
        conn.close()


def raw_probe(port, data):
    """Send raw bytes to the metrics endpoint; return everything it answers."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as s:
        s.sendall(data)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk


def start_with_metrics(start_server, app=APPS / "basic.py", args=(), **kwargs):
    mport = free_port()
    server = start_server(app=app, args=["--metrics", f"127.0.0.1:{mport}", *args], **kwargs)
    server.metrics_port = mport
    return server


def wait_ready(server, timeout=15.0 * SLOW):
    ok = wait_for(lambda: probe(server.metrics_port, "/readyz")[0] == 200, timeout)
    assert ok, f"/readyz never answered 200\n--- stderr ---\n{server.stderr()}"


def test_healthz_and_readyz(start_server):
    server = start_with_metrics(start_server)
    assert probe(server.metrics_port, "/healthz") == (200, "ok\n")
    wait_ready(server)
    assert probe(server.metrics_port, "/readyz") == (200, "ready\n")
    assert probe(server.metrics_port, "/healthz?verbose=1")[0] == 200
    assert probe(server.metrics_port, "/readyz", method="HEAD") == (200, "")


def test_readyz_503_until_a_worker_is_ready(start_server):
    server = start_with_metrics(start_server, app=APPS / "slow_import.py", workers=1,
                                env={"SLOW_IMPORT_S": str(3 * SLOW)})
    # The app sleeps 3 s on import: no worker can be ready yet, but the loop runs.
    status, body = probe(server.metrics_port, "/readyz")
    assert (status, body) == (503, "no worker ready\n")
    assert probe(server.metrics_port, "/healthz") == (200, "ok\n")
    wait_ready(server)


def test_unknown_paths_and_bad_requests(start_server):
    server = start_with_metrics(start_server)
    port = server.metrics_port
    assert probe(port, "/")[0] == 404
    assert probe(port, "/metrics/x")[0] == 404
    assert probe(port, "/healthz", method="POST")[0] == 405
    assert raw_probe(port, b"garbage\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    # A head that never ends within the bound is refused, not buffered.
    big = b"GET /metrics HTTP/1.1\r\n" + b"X-Pad: " + b"a" * 8192 + b"\r\n\r\n"
    try:
        answer = raw_probe(port, big)
    except ConnectionResetError:
        answer = b"HTTP/1.1 431 (reset before it was read)"
    assert answer.startswith(b"HTTP/1.1 431 ")
    # A client that sends nothing does not stop others from being served.
    idle = [socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) for _ in range(8)]
    try:
        assert probe(port, "/healthz")[0] == 200
    finally:
        for s in idle:
            s.close()
    server.assert_running()


def test_silent_clients_are_dropped(start_server):
    server = start_with_metrics(start_server)
    port = server.metrics_port
    # Fill every slot (64) with clients that send nothing; one more is refused.
    idle = [socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) for _ in range(64)]
    try:
        time.sleep(0.3)
        extra = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        with extra:
            assert extra.recv(100) == b"", "a connection over the bound was kept"
        # Each silent client is closed after 2 s without a request.
        started = time.monotonic()
        for s in idle:
            assert s.recv(100) == b""
        assert time.monotonic() - started < TIMEOUT
        assert probe(port, "/healthz")[0] == 200
    finally:
        for s in idle:
            s.close()
    server.assert_running()


def test_metrics_env_variable(start_server):
    mport = free_port()
    server = start_server(env={"RINGMASTER_METRICS": f"127.0.0.1:{mport}"})
    assert wait_for(lambda: probe(mport, "/healthz")[0] == 200, TIMEOUT)
    server.assert_running()


def test_metrics_port_in_use():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        rc, err, _, _ = run_to_exit(["-b", f"127.0.0.1:{free_port()}", "--metrics",
                                     f"127.0.0.1:{port}", str(APPS / "basic.py")], timeout=10)
    assert rc != 0
    assert f"--metrics: cannot listen on 127.0.0.1:{port}" in err, err


@pytest.mark.parametrize("value", ["nocolon", "127.0.0.1:notaport", "127.0.0.1:70000"])
def test_bad_metrics_flag(value):
    rc, err, _, _ = run_to_exit(["--metrics", value, str(APPS / "basic.py")], timeout=10)
    assert rc != 0
    assert "--metrics" in err, err


# ---------------------------------------------------------------- /metrics

def scrape(port):
    """Every sample of /metrics, parsed by prometheus_client:
    {(name, ((label, value), ...)): value}."""
    status, text = probe(port, "/metrics")
    assert status == 200, text
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def sample(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def lane_sum(samples, name):
    """A per-lane series summed over the lanes."""
    return sum(v for (n, _), v in samples.items() if n == name)


def get(server, path, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def wait_workers_ready(server, count):
    ok = wait_for(lambda: sample(scrape(server.metrics_port), "ringmaster_workers",
                                 state="ready") == count, 15 * SLOW)
    assert ok, f"never {count} ready workers\n--- stderr ---\n{server.stderr()}"


def test_counters_move_by_exactly_the_requests_sent(start_server):
    server = start_with_metrics(start_server, workers=2)
    wait_workers_ready(server, 2)
    before = scrape(server.metrics_port)
    statuses = [get(server, "/") for _ in range(17)] + [get(server, "/missing-x") for _ in range(3)]
    assert statuses == [200] * 17 + [404] * 3
    after = scrape(server.metrics_port)

    def delta(name, **labels):
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert delta("ringmaster_requests_total", status_class="2xx") == 17
    assert delta("ringmaster_requests_total", status_class="4xx") == 3
    for cls in ("1xx", "3xx", "5xx"):
        assert delta("ringmaster_requests_total", status_class=cls) == 0
    assert delta("ringmaster_request_duration_seconds_count") == 20
    assert delta("ringmaster_request_duration_seconds_bucket", le="+Inf") == 20
    assert delta("ringmaster_request_duration_seconds_sum") > 0
    assert delta("ringmaster_connections_accepted_total") == 20
    assert delta("ringmaster_received_bytes_total") > 20 * len("GET / HTTP/1.1\r\n\r\n")
    assert delta("ringmaster_sent_bytes_total") > 20 * len("HTTP/1.1 200 OK\r\n\r\n")
    assert (lane_sum(after, "ringmaster_worker_requests_total")
            - lane_sum(before, "ringmaster_worker_requests_total")) == 20
    assert lane_sum(after, "ringmaster_worker_app_exceptions_total") == 0
    assert sample(after, "ringmaster_workers", state="ready") == 2
    assert sample(after, "ringmaster_workers_target") == 2
    assert sample(after, "ringmaster_requests_in_flight") == 0
    assert sample(after, "ringmaster_requests_queued") == 0
    assert sample(after, "ringmaster_open_connections") == 0
    total = sample(after, "ringmaster_chunks_total")
    assert total == 4096 and 0 < sample(after, "ringmaster_chunks_in_use") <= total
    assert lane_sum(after, "ringmaster_lane_queue_depth") == 0

    # The app raising: a 5xx, and one exception on a worker's counters.
    assert get(server, "/raise") == 500
    last = scrape(server.metrics_port)
    assert sample(last, "ringmaster_requests_total", status_class="5xx") == \
        sample(after, "ringmaster_requests_total", status_class="5xx") + 1
    assert lane_sum(last, "ringmaster_worker_app_exceptions_total") == 1


def test_supervisor_answers_are_counted(start_server):
    server = start_with_metrics(start_server, workers=1)
    wait_ready(server)
    before = scrape(server.metrics_port)
    # Refused by the supervisor's parser: never reaches a worker.
    answer = raw_probe(server.port, b"BAD\x01 / HTTP/1.1\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 ")
    after = scrape(server.metrics_port)
    assert (sample(after, "ringmaster_requests_total", status_class="4xx")
            - sample(before, "ringmaster_requests_total", status_class="4xx")) == 1
    assert (lane_sum(after, "ringmaster_worker_requests_total")
            == lane_sum(before, "ringmaster_worker_requests_total"))


def test_sigkill_counts_a_crash(start_server):
    server = start_with_metrics(start_server, workers=2)
    wait_workers_ready(server, 2)
    pids = server.wait_workers(2)
    before = scrape(server.metrics_port)
    os.kill(pids[0], signal.SIGKILL)

    def crashes():
        s = scrape(server.metrics_port)
        return sample(s, "ringmaster_worker_restarts_total", cause="crash")

    base = sample(before, "ringmaster_worker_restarts_total", cause="crash")
    assert wait_for(lambda: crashes() == base + 1, TIMEOUT), crashes()
    # Replaced: two ready workers again, and nothing else counted.
    wait_workers_ready(server, 2)
    after = scrape(server.metrics_port)
    for cause in ("timeout", "heartbeat", "protocol", "max_requests", "max_rss", "reload",
                  "scale_down"):
        assert sample(after, "ringmaster_worker_restarts_total", cause=cause) == 0, cause
    assert crashes() == base + 1


def test_recycling_counts_max_requests(start_server):
    server = start_with_metrics(start_server, workers=1, args=["--max-requests", "5"])
    wait_ready(server)
    for _ in range(5):
        assert get(server, "/") == 200

    def recycled():
        return sample(scrape(server.metrics_port), "ringmaster_worker_restarts_total",
                      cause="max_requests")

    assert wait_for(lambda: recycled() == 1, 15 * SLOW), recycled()


def restarts(server, cause):
    return sample(scrape(server.metrics_port), "ringmaster_worker_restarts_total", cause=cause)


def test_timeout_and_reload_causes(start_server):
    server = start_with_metrics(start_server, workers=1, args=["--timeout", "1"])
    wait_ready(server)
    before = scrape(server.metrics_port)
    # The handler sleeps past --timeout: its worker is killed, the client gets 504.
    assert get(server, "/sleep?ms=4000") == 504
    assert wait_for(lambda: restarts(server, "timeout") == 1, TIMEOUT), server.stderr()
    after = scrape(server.metrics_port)
    assert (sample(after, "ringmaster_requests_total", status_class="5xx")
            - sample(before, "ringmaster_requests_total", status_class="5xx")) == 1
    assert restarts(server, "crash") == 0
    wait_workers_ready(server, 1)
    server.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: restarts(server, "reload") == 1, 15 * SLOW), server.stderr()
    assert restarts(server, "crash") == 0


# ---------------------------------------------------------------- access log

COMBINED = (r'^(?P<host>\S+) - - \[(?P<time>\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000)\] '
            r'"(?P<request>(?:[^"\\]|\\.)*)" (?P<status>\d{3}|-) (?P<bytes>\d+|-) '
            r'"(?P<referer>(?:[^"\\]|\\.)*)" "(?P<agent>(?:[^"\\]|\\.)*)"$')


def send_log_traffic(server):
    assert get(server, "/", headers={"Referer": "http://ref.example/x",
                                     "User-Agent": "probe/1.0"}) == 200
    assert get(server, "/missing-x") == 404
    assert raw_probe(server.port, b"BAD\x01 / HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
    conn.request("HEAD", "/")
    resp = conn.getresponse()
    resp.read()
    conn.close()
    assert resp.status == 200


def read_lines(path, count):
    def lines():
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except FileNotFoundError:
            return None
        got = text.splitlines()
        return got if len(got) >= count else None

    return wait_for(lines, TIMEOUT) or lines() or []


def test_access_log_combined(start_server, tmp_path):
    log = tmp_path / "access.log"
    server = start_with_metrics(start_server, workers=1, args=["--access-log", str(log)])
    wait_ready(server)
    send_log_traffic(server)
    lines = read_lines(log, 4)
    assert len(lines) == 4, lines
    parsed = [re.match(COMBINED, line) for line in lines]
    assert all(parsed), lines
    ok, missing, bad, head = (m.groupdict() for m in parsed)
    assert ok["host"] == "127.0.0.1"
    assert ok["request"] == "GET / HTTP/1.1"
    assert (ok["status"], ok["bytes"]) == ("200", str(len(b"Hello, world!\n")))
    assert ok["referer"] == "http://ref.example/x" and ok["agent"] == "probe/1.0"
    assert missing["request"] == "GET /missing-x HTTP/1.1" and missing["status"] == "404"
    assert missing["referer"] == "-"
    assert bad["request"] == r"BAD\x01 / HTTP/1.1" and bad["status"] == "400"
    assert (head["request"], head["status"], head["bytes"]) == ("HEAD / HTTP/1.1", "200", "-")
    samples = scrape(server.metrics_port)
    assert sample(samples, "ringmaster_access_log_lines_total") == 4
    assert sample(samples, "ringmaster_access_log_dropped_total") == 0


def test_access_log_json_to_stdout(start_server):
    server = start_with_metrics(start_server, workers=1,
                                args=["--access-log", "-", "--access-log-format", "json"])
    wait_ready(server)
    send_log_traffic(server)

    def entries():
        out = [json.loads(line) for line in server.stderr().splitlines()
               if line.startswith("{\"time\"")]
        return out if len(out) >= 4 else None

    got = wait_for(entries, TIMEOUT) or entries()
    assert got and len(got) == 4, server.stderr()
    ok, missing, bad, head = got
    assert ok["remote_addr"] == "127.0.0.1"
    assert (ok["method"], ok["path"], ok["protocol"]) == ("GET", "/", "HTTP/1.1")
    assert (ok["status"], ok["bytes"]) == (200, len(b"Hello, world!\n"))
    assert ok["referer"] == "http://ref.example/x" and ok["user_agent"] == "probe/1.0"
    assert ok["duration_ms"] >= 0 and ok["time"].endswith("Z")
    assert missing["status"] == 404 and missing["referer"] is None
    assert bad["status"] == 400 and bad["method"] is None
    assert bad["request"] == "BAD\x01 / HTTP/1.1"
    assert head["method"] == "HEAD" and head["bytes"] == 0


def test_access_log_env_and_bad_flags(start_server, tmp_path):
    log = tmp_path / "env.log"
    server = start_server(workers=1, env={"RINGMASTER_ACCESS_LOG": str(log),
                                          "RINGMASTER_ACCESS_LOG_FORMAT": "json"})
    assert wait_for(lambda: get(server, "/") == 200, TIMEOUT)
    lines = read_lines(log, 1)
    assert lines and lines[0].startswith("{\"time\""), lines
    rc, err, _, _ = run_to_exit(["--access-log-format", "common", str(APPS / "basic.py")],
                                timeout=10)
    assert rc != 0 and "--access-log-format" in err, err
    rc, err, _, _ = run_to_exit(["--access-log", str(tmp_path / "no" / "such" / "dir.log"),
                                 "-b", f"127.0.0.1:{free_port()}", str(APPS / "basic.py")],
                                timeout=10)
    assert rc != 0 and "--access-log" in err, err
