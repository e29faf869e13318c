"""deploy/systemd: the units pass `systemd-analyze verify` (pointed at the
built ringmaster), and they agree with each other. The socket-activation path
itself is tested in tests/integration/test_socket_activation.py."""

import configparser
import os
import shutil
import subprocess

import pytest

from conftest import ROOT

UNITS = ROOT / "deploy" / "systemd"
BUILD = ROOT / os.environ.get("RINGMASTER_BUILD", "build")


def unit(name):
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(UNITS / name)
    return parser


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
def test_units_verify(tmp_path):
    binary = BUILD / "ringmaster"
    if not binary.exists():
        pytest.skip(f"{binary} not built")
    for name in ("ringmaster.socket", "ringmaster.service"):
        text = (UNITS / name).read_text().replace("/usr/local/bin/ringmaster", str(binary))
        (tmp_path / name).write_text(text)
    proc = subprocess.run(["systemd-analyze", "verify", "--man=no",
                           str(tmp_path / "ringmaster.socket"),
                           str(tmp_path / "ringmaster.service")],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    # Complaints about the host (no user "ringmaster", no /srv/app) are not
    # about the units.
    lines = [line for line in (proc.stdout + proc.stderr).splitlines()
             if line.strip() and "ringmaster" in line]
    assert proc.returncode == 0 and not lines, proc.stdout + proc.stderr


def test_one_stream_socket_and_a_stop_timeout_above_the_graceful_timeout():
    sock, svc = unit("ringmaster.socket"), unit("ringmaster.service")
    listens = [k for k in sock["Socket"] if k.startswith("Listen")]
    assert listens == ["ListenStream"], f"ringmaster serves one stream socket: {listens}"
    assert sock["Socket"].get("Accept", "no") == "no"
    # Environment= may repeat (configparser keeps the last): read every one.
    env = dict(line.split("=", 2)[1:] for line in
               (UNITS / "ringmaster.service").read_text().splitlines()
               if line.startswith("Environment="))
    graceful = int(env.get("RINGMASTER_GRACEFUL_TIMEOUT", "30"))
    assert int(svc["Service"]["TimeoutStopSec"]) > graceful
    assert svc["Service"]["KillSignal"] == "SIGTERM"
    assert svc["Unit"]["Requires"] == "ringmaster.socket"
