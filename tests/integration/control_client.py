"""Helpers for the tests of the control socket (test_control.py, test_attach.py):
run `ringmaster ctl`, wait for what it reports."""

import http.client
import json
import subprocess
import time

from conftest import BINARY, SLOW


def ctl(path, *args, check=True, timeout=10):
    """Run `ringmaster ctl --control PATH ARGS`; return the CompletedProcess."""
    proc = subprocess.run([str(BINARY), "ctl", "--control", str(path), *args],
                          capture_output=True, text=True, timeout=timeout * SLOW)
    if check:
        assert proc.returncode == 0, (
            f"ringmaster ctl {' '.join(args)} exited {proc.returncode}\n"
            f"stdout: {proc.stdout}\nstderr: {proc.stderr}")
    return proc


def ctl_json(path, *args):
    out = ctl(path, "--json", *args).stdout
    try:
        return json.loads(out)
    except ValueError as exc:
        raise AssertionError(f"ctl --json {' '.join(args)} printed no JSON: {out!r}") from exc


def wait_until(cond, timeout, what):
    """Poll cond() until it returns something true; fail after timeout (scaled) seconds."""
    deadline = time.monotonic() + timeout * SLOW
    value = None
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout * SLOW:.0f} s waiting for {what}; "
                         f"last: {value!r}")


def get(port, path="/", timeout=20):
    """One GET on a fresh connection -> (status, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout * SLOW)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()
