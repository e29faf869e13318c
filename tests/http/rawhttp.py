"""Raw-socket HTTP helpers for tests/http (stdlib only; the corpus loader is httpcorpus.py).

The server fixtures come from tests/integration/conftest.py, loaded here under
its own module name: tests/http has no conftest.py of its own, so that a
pytest run over both folders never has two modules called `conftest`.
"""

import errno
import importlib.util
import json
import select
import socket
import time
from pathlib import Path

from httpcorpus import build, load_corpus, request_bytes, show  # noqa: F401 (re-exported)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
APPS = HERE / "apps"
ECHO_APP = APPS / "echo.py"


def _load_integration():
    spec = importlib.util.spec_from_file_location(
        "ringmaster_integration_fixtures", ROOT / "tests" / "integration" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fixtures = _load_integration()
Server = fixtures.Server
ServerFactory = fixtures.ServerFactory
SLOW = fixtures.SLOW
ASAN = fixtures.ASAN
TIMEOUT = 10.0 * SLOW


# ---------------------------------------------------------------- responses

class Response:
    def __init__(self, version, status, reason, headers, body):
        self.version, self.status, self.reason = version, status, reason
        self.headers, self.body = headers, body

    def header(self, name):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    def __repr__(self):
        hdrs = ", ".join(f"{k}: {v}" for k, v in self.headers)
        return f"<{self.version} {self.status} {self.reason} [{hdrs}] body {show(self.body, 300)}>"


class Reader:
    """Buffered reads from a socket, with a deadline per call."""

    def __init__(self, sock, timeout=TIMEOUT):
        self.sock = sock
        self.buf = b""
        self.timeout = timeout
        self.eof = False

    def _fill(self):
        self.sock.settimeout(self.timeout)
        data = self.sock.recv(65536)  # raises socket.timeout / ConnectionResetError
        if not data:
            self.eof = True
            raise EOFError("connection closed")
        self.buf += data

    def readline(self, limit=65536):
        while b"\n" not in self.buf:
            if len(self.buf) > limit:
                raise ValueError(f"line over {limit} bytes: {show(self.buf)}")
            self._fill()
        line, _, self.buf = self.buf.partition(b"\n")
        return line + b"\n"

    def read(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_response(self, no_body=False):
        line = self.readline()
        parts = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise ValueError(f"bad status line {line!r}")
        version, status = parts[0], int(parts[1])
        reason = parts[2] if len(parts) > 2 else ""
        headers = []
        while True:
            h = self.readline()
            if h in (b"\r\n", b"\n"):
                break
            k, _, v = h.decode("latin-1").partition(":")
            headers.append((k.strip(), v.strip()))
        resp = Response(version, status, reason, headers, b"")
        if no_body or 100 <= status < 200 or status in (204, 304):
            return resp
        length = resp.header("content-length")
        if (resp.header("transfer-encoding") or "").lower().endswith("chunked"):
            body = b""
            while True:
                size = int(self.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.readline() not in (b"\r\n", b"\n"):
                        pass
                    break
                body += self.read(size)
                self.readline()
            resp.body = body
        elif length is not None:
            resp.body = self.read(int(length))
        else:
            chunks = [self.buf]
            self.buf = b""
            try:
                while True:
                    self._fill()
                    chunks.append(self.buf)
                    self.buf = b""
            except EOFError:
                pass
            resp.body = b"".join(chunks)
        return resp

    def wait_eof(self):
        """'eof' when the peer closes cleanly with nothing more sent, 'data' when
        bytes come instead, 'reset' on ECONNRESET, 'open' on a timeout."""
        if self.buf:
            return "data"
        try:
            self._fill()
            return "data"
        except EOFError:
            return "eof"
        except ConnectionResetError:
            return "reset"
        except (socket.timeout, TimeoutError):
            return "open"

    def quiet_for(self, seconds):
        """True if nothing arrives (and the peer does not close) for `seconds`."""
        if self.buf:
            return False
        self.sock.settimeout(seconds)
        try:
            data = self.sock.recv(65536)
        except (socket.timeout, TimeoutError):
            return True
        except ConnectionResetError:
            return False
        finally:
            self.sock.settimeout(self.timeout)
        self.buf += data
        if not data:
            self.eof = True
        return False


def connect(port, nodelay=False, timeout=TIMEOUT):
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if nodelay:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def readable(sock):
    r, _, _ = select.select([sock], [], [], 0)
    return bool(r)


def send_steps(sock, steps, bytewise=False, byte_gap=0.001, stop_when_answered=False):
    """Send the steps. Returns a note when the server stopped the sending early
    (it closed, or answered while stop_when_answered), else None."""
    for step in steps:
        if not isinstance(step, bytes):
            time.sleep(step[1] * SLOW)
            continue
        try:
            if not bytewise:
                sock.sendall(step)
                continue
            for i in range(len(step)):
                if stop_when_answered and readable(sock):
                    return f"server answered after {i} bytes of a {len(step)}-byte write"
                sock.sendall(step[i:i + 1])
                time.sleep(byte_gap)
        except OSError as exc:
            if exc.errno in (errno.EPIPE, errno.ECONNRESET):
                return f"server closed while we were sending ({exc.strerror})"
            raise
    return None


def simple_get(port, path="/__alive"):
    """One GET on a fresh connection -> Response (raises on failure)."""
    with connect(port) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        return Reader(sock).read_response()


def app_view(resp):
    """The echo app's JSON description of the request, or None if the body is not that."""
    try:
        info = json.loads(resp.body)
    except ValueError:
        return None
    return info if isinstance(info, dict) and "method" in info else None
