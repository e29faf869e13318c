"""Log records on the shared stderr (docs/operations.md, "Logs").

A record is one write(2): its line and, for an app that raised, the traceback
right under it (JSON: in the record's "traceback" field). These tests make
several workers raise long tracebacks (apps/log_raisers.py: 100 frames, more
than a pipe's atomic write) at once, then read stderr back record by record:
every traceback must be whole, contiguous and under the error line that names
its request, and nothing may be left between records.
"""

import http.client
import json
import re
import threading

import pytest

from conftest import APPS, SLOW, wait_for

TIMEOUT = 10.0 * SLOW
APP = APPS / "log_raisers.py"
DEPTH = 100  # apps/log_raisers.py's frames
REQUESTS = 48
CLIENTS = 8
WORKERS = 4

# The error line each interface writes for GET /raise/N, with N captured.
ERROR_LINE = {
    "native": r"GET /raise/(\d+): the app raised RuntimeError: deliberate failure (\d+); "
              r"answered 500$",
    "wsgi": r"GET /raise/(\d+): the WSGI app raised RuntimeError: deliberate failure (\d+); "
            r"answered 500$",
    "asgi": r"GET /raise/(\d+): the ASGI app raised RuntimeError: deliberate failure (\d+); "
            r"answered 500$",
}


def get(server, path):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def hammer(server, paths):
    """GET every path from CLIENTS threads at once; returns {path: status}."""
    statuses = {}
    lock = threading.Lock()
    todo = list(paths)
    barrier = threading.Barrier(CLIENTS)

    def client():
        barrier.wait()
        while True:
            with lock:
                if not todo:
                    return
                path = todo.pop()
            status, _ = get(server, path)
            with lock:
                statuses[path] = status

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT * 3)
    return statuses


def plain_records(text):
    """[(head line, [following lines])]: a record starts at "ringmaster"."""
    records = []
    for line in text.splitlines():
        if line.startswith("ringmaster[") or line.startswith("ringmaster:") or not records:
            records.append((line, []))
        else:
            records[-1][1].append(line)
    return records


def check_traceback(lines, tag, where):
    """lines: one whole traceback of apps/log_raisers.py's dive(tag)."""
    text = "\n".join(lines)
    assert lines and lines[0] == "Traceback (most recent call last):", \
        f"{where}: the record does not carry its traceback right under it:\n{text[:2000]}"
    assert lines[-1] == f"RuntimeError: deliberate failure {tag}", \
        f"{where}: the traceback does not end with its own exception:\n{text[-2000:]}"
    frames = re.findall(r", in (f\d+)$", text, re.M)
    assert frames == [f"f{i}" for i in range(DEPTH)], \
        f"{where}: frames missing or out of order (interleaved?):\n{text}"
    assert not any(l.startswith("ringmaster") for l in lines), text


def raise_paths():
    return [f"/raise/{i}" for i in range(REQUESTS)]


@pytest.mark.parametrize("iface", ["native", "wsgi", "asgi"])
def test_tracebacks_stay_whole_under_their_error_line(start_server, iface):
    server = start_server(app=f"{APP}:{iface}", workers=WORKERS, args=["--interface", iface])
    statuses = hammer(server, raise_paths())
    assert statuses == {p: 500 for p in raise_paths()}, statuses
    pattern = re.compile(r"^ringmaster\[worker \d+ \d+\]: error: " + ERROR_LINE[iface])
    assert wait_for(lambda: sum(1 for h, _ in plain_records(server.stderr())
                                if pattern.match(h)) >= REQUESTS, TIMEOUT), server.stderr()

    seen = set()
    for head, rest in plain_records(server.stderr()):
        m = pattern.match(head)
        if m is None:
            # Any other record is one line: a traceback piece would land here.
            assert not rest, f"lines that belong to no record after {head!r}:\n" + \
                "\n".join(rest[:40])
            continue
        assert m.group(1) == m.group(2), head
        check_traceback(rest, m.group(1), head)
        seen.add(m.group(1))
    assert seen == {str(i) for i in range(REQUESTS)}, \
        f"requests without their record: {sorted({str(i) for i in range(REQUESTS)} - seen)}"


@pytest.mark.parametrize("iface", ["native", "wsgi", "asgi"])
def test_json_records_carry_the_traceback(start_server, iface):
    server = start_server(app=f"{APP}:{iface}", workers=WORKERS,
                          args=["--interface", iface, "--log-format", "json"])
    statuses = hammer(server, raise_paths())
    assert statuses == {p: 500 for p in raise_paths()}, statuses
    pattern = re.compile(ERROR_LINE[iface])

    def records():
        out = []
        for line in server.stderr().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pytest.fail(f"a stderr line is not a JSON record: {line!r}\n"
                            f"--- stderr ---\n{server.stderr()[:4000]}")
        return out

    assert wait_for(lambda: sum(1 for r in records() if pattern.match(r["msg"])) >= REQUESTS,
                    TIMEOUT), server.stderr()
    seen = set()
    for rec in records():
        m = pattern.match(rec["msg"])
        if m is None:
            continue
        assert rec["level"] == "error", rec
        assert m.group(1) == m.group(2), rec
        assert "traceback" in rec, f"no traceback in {rec}"
        check_traceback(rec["traceback"].rstrip("\n").split("\n"), m.group(1), rec["msg"])
        seen.add(m.group(1))
    assert seen == {str(i) for i in range(REQUESTS)}


def test_asgi_exception_after_the_response_began_names_the_request(start_server):
    server = start_server(app=f"{APP}:asgi", workers=1, args=["--interface", "asgi"])
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
    conn.request("GET", "/raise-after/7")
    r = conn.getresponse()
    assert r.status == 200
    with pytest.raises(http.client.IncompleteRead):
        r.read()
    conn.close()
    head_re = re.compile(r"^ringmaster\[worker \d+ \d+\]: error: GET /raise-after/7: the ASGI app "
                         r"raised RuntimeError: deliberate failure 7 after the response began; "
                         r"closed the connection$")

    def record():
        return next(((h, rest) for h, rest in plain_records(server.stderr()) if head_re.match(h)),
                    None)

    assert wait_for(lambda: record() is not None, TIMEOUT), server.stderr()
    head, rest = record()
    check_traceback(rest, "7", head)


def test_asgi_exception_after_the_response_was_complete_is_logged(start_server):
    server = start_server(app=f"{APP}:asgi", workers=1, args=["--interface", "asgi"])
    assert get(server, "/raise-late/9") == (200, b"ok\n")
    head_re = re.compile(r"^ringmaster\[worker \d+ \d+\]: error: GET /raise-late/9: the ASGI app "
                         r"raised RuntimeError: deliberate failure 9 after its response was "
                         r"complete$")

    def record():
        return next(((h, rest) for h, rest in plain_records(server.stderr()) if head_re.match(h)),
                    None)

    assert wait_for(lambda: record() is not None, TIMEOUT), server.stderr()
    head, rest = record()
    check_traceback(rest, "9", head)


def test_two_failures_of_one_request_keep_their_own_tracebacks(start_server):
    """The body raises, then its close() raises: each record carries its own
    traceback, the body's under its "answered 500" line."""
    server = start_server(app=f"{APP}:native", workers=1, args=["--interface", "native"])
    assert get(server, "/body-and-close/5")[0] == 500
    body_re = re.compile(r"^ringmaster\[worker \d+ \d+\]: error: GET /body-and-close/5: the "
                         r"response body raised: RuntimeError: deliberate failure 5; answered 500$")
    close_re = re.compile(r"^ringmaster\[worker \d+ \d+\]: error: GET /body-and-close/5: close\(\) "
                          r"of the response body raised ValueError: close failed 5$")

    def find(pattern):
        return next(((h, rest) for h, rest in plain_records(server.stderr()) if pattern.match(h)),
                    None)

    assert wait_for(lambda: find(body_re) and find(close_re), TIMEOUT), server.stderr()
    head, rest = find(body_re)
    check_traceback(rest, "5", head)
    head, rest = find(close_re)
    assert rest and rest[0] == "Traceback (most recent call last):", server.stderr()
    assert rest[-1] == "ValueError: close failed 5", server.stderr()
    assert not any("deliberate failure" in l for l in rest), server.stderr()
