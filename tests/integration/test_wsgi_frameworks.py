"""Flask and Django served unmodified through the WSGI interface.

The apps (apps/wsgi_flask.py, apps/wsgi_django.py) are real framework apps,
wrapped in wsgiref.validate.validator with warnings as errors; the frameworks
come from PyPI, pinned in tests/requirements-apps.txt, installed into a venv
of the worker's own Python: RINGMASTER_APPS_VENV, else .venv-apps (the default
build's /usr/bin/python3) or .venv-apps-TAG under RINGMASTER_TEST_PYTHON=TAG.
scripts/test.sh makes them and sets RINGMASTER_REQUIRE_APPS_VENV=1; by hand,
without the venv, these tests are skipped with the command that makes it. The
server runs with VIRTUAL_ENV pointing there.

Same scenarios for both frameworks: routes and path arguments, query strings,
form posts, JSON, cookies, multipart uploads, streamed responses, error pages,
redirects, --root-path with a trusted proxy, keep-alive.
"""

import hashlib
import http.client
import json
import os
import uuid
from pathlib import Path

import pytest

from conftest import APPS, ROOT, SLOW, ServerFactory

TIMEOUT = 10.0 * SLOW
# The venv must be of the worker's own Python: .venv-apps for the default
# build's /usr/bin/python3, .venv-apps-TAG for a --python TAG worker.
_TAG = os.environ.get("RINGMASTER_TEST_PYTHON", "")
VENV = Path(os.environ.get("RINGMASTER_APPS_VENV")
            or ROOT / (f".venv-apps-{_TAG}" if _TAG else ".venv-apps"))
FRAMEWORKS = ["flask", "django"]
VALIDATOR_COMPLAINTS = ("WSGIWarning", "garbage collected without being closed",
                        "AssertionError", "Exception ignored")


def missing(why):
    """Something a framework test needs is not installed: a failure where the
    venv is required (scripts/test.sh, RINGMASTER_APPS_VENV), else a skip
    that says so (scripts/test.sh counts such a skip as a failure too)."""
    why = f"missing dependency: {why}"
    if os.environ.get("RINGMASTER_APPS_VENV") or os.environ.get("RINGMASTER_REQUIRE_APPS_VENV"):
        pytest.fail(why)
    pytest.skip(why)


def venv_env():
    if not (VENV / "bin" / "python").exists():
        missing(f"no framework venv at {VENV}: scripts/test.sh makes it, or "
                f"/usr/bin/python3 -m venv {VENV} && {VENV}/bin/pip install -r "
                f"tests/requirements-apps.txt -r tests/requirements-apps-native.txt")
    return {"VIRTUAL_ENV": str(VENV)}


def show(data, limit=200):
    data = bytes(data)
    if len(data) <= limit:
        return repr(data)
    return f"<{len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()[:16]}>"


class Resp:
    def __init__(self, r, body):
        self.status, self.reason, self.body = r.status, r.reason, body
        self.headers = list(r.getheaders())
        self.msg = r.msg

    def header(self, name):
        return self.msg.get(name)

    def all(self, name):
        return self.msg.get_all(name) or []

    def json(self):
        return json.loads(self.body)

    def __str__(self):
        hdrs = ", ".join(f"{k}: {v}" for k, v in self.headers)
        return f"{self.status} {self.reason} [{hdrs}] body {show(self.body)}"


def call(server, method, path, body=None, headers=None, conn=None):
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return Resp(r, r.read())
    finally:
        if own:
            conn.close()


def expect(cond, sent, got, expected):
    assert cond, f"\n  sent:     {sent}\n  got:      {got}\n  expected: {expected}"


def start(fw, args=()):
    factory = ServerFactory()
    server = factory(APPS / f"wsgi_{fw}.py", workers=2, args=list(args), env=venv_env())
    return factory, server


def stop(factory, server):
    text = server.stderr()
    errors = factory.stop_all()
    complaints = [n for n in VALIDATOR_COMPLAINTS if n in text]
    if errors or complaints:
        pytest.fail("\n\n".join(errors + [f"validator complaints {complaints}:\n{text}"]))


@pytest.fixture(scope="module", params=FRAMEWORKS)
def fw_server(request):
    factory, server = start(request.param)
    server.fw = request.param
    yield server
    stop(factory, server)


@pytest.fixture
def srv(fw_server):
    fw_server.assert_running()
    yield fw_server
    fw_server.assert_running()


def test_index(srv):
    r = call(srv, "GET", "/")
    want = f"Hello from {srv.fw.capitalize()}\n".encode()
    expect(r.status == 200 and r.body == want, "GET /", r, f"200 {want!r}")
    assert "WSGI interface (auto" in srv.stderr(), "the framework app was not detected as WSGI"


def test_path_argument_and_query_string(srv):
    path = "/items/42?q=caf%C3%A9+au+lait&tag=a&tag=b%26c"
    r = call(srv, "GET", path)
    got = r.json() if r.status == 200 else None
    want = {"id": 42, "q": "café au lait", "tags": ["a", "b&c"]}
    expect(got == want, f"GET {path}", r, want)


def test_form_post(srv):
    body = "name=Zo%C3%AB+O%27Neil&color=red&color=blue"
    r = call(srv, "POST", "/form", body=body,
             headers={"Content-Type": "application/x-www-form-urlencoded"})
    want = {"name": "Zoë O'Neil", "colors": ["red", "blue"]}
    expect(r.status == 200 and r.json() == want, f"POST /form {body}", r, want)


def test_json_post(srv):
    payload = {"a": [1, 2, {"b": None}], "text": "snow \u2603", "n": 1.5}
    body = json.dumps(payload).encode()
    r = call(srv, "POST", "/json", body=body, headers={"Content-Type": "application/json"})
    expect(r.status == 200 and r.json() == {"got": payload, "type": "application/json"},
           f"POST /json {body!r}", r, "the JSON back")


def test_cookies(srv):
    r = call(srv, "GET", "/cookie/set")
    cookies = r.all("Set-Cookie")
    expect(r.status == 200 and len(cookies) == 2 and any("flavour=" in c for c in cookies)
           and any("second=2" in c for c in cookies), "GET /cookie/set", r,
           "two Set-Cookie headers, kept apart")
    # Two Cookie lines (as an HTTP/2 proxy may send) arrive joined with "; ".
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=TIMEOUT)
    try:
        conn.putrequest("GET", "/cookie/get")
        conn.putheader("Cookie", 'flavour="oatmeal raisin"')
        conn.putheader("Cookie", "second=2")
        conn.endheaders()
        resp = conn.getresponse()
        got = Resp(resp, resp.read())
    finally:
        conn.close()
    expect(got.status == 200 and got.json() == {"flavour": "oatmeal raisin", "second": "2"},
           "GET /cookie/get with two Cookie lines", got, "both cookies")


def test_multipart_upload(srv):
    data = os.urandom(200 * 1024) + b"\r\n--not-the-boundary\r\n"
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\n"
            f"h\u00e9llo\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"blob.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            ).encode() + data + f"\r\n--{boundary}--\r\n".encode()
    r = call(srv, "POST", "/upload", body=body,
             headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    want = {"filename": "blob.bin", "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            "note": "h\u00e9llo"}
    expect(r.status == 200 and r.json() == want, f"POST /upload multipart {show(body)}", r, want)


def test_chunked_upload(srv):
    # A chunked request body: the server decodes it and gives CONTENT_LENGTH.
    payload = {"chunked": True, "pad": "x" * 5000}

    def pieces():
        data = json.dumps(payload).encode()
        for i in range(0, len(data), 1000):
            yield data[i:i + 1000]
    # http.client sends an iterable body with Transfer-Encoding: chunked.
    r = call(srv, "POST", "/json", body=pieces(), headers={"Content-Type": "application/json"})
    expect(r.status == 200 and r.json()["got"] == payload, "POST /json chunked", r,
           "the JSON back")


def test_streamed_response(srv):
    r = call(srv, "GET", "/stream?n=50")
    want = "".join(f"line {i}\n" for i in range(50)).encode()
    expect(r.status == 200 and r.body == want
           and r.header("Transfer-Encoding") == "chunked", "GET /stream?n=50", r,
           "50 lines, chunked")


def test_error_pages(srv):
    r = call(srv, "GET", "/boom")
    marker = b"Internal Server Error" if srv.fw == "flask" else b"Server Error (500)"
    expect(r.status == 500 and marker in r.body, "GET /boom", r, f"500 with {marker!r}")
    r = call(srv, "GET", "/no/such/page")
    marker = b"Not Found"
    expect(r.status == 404 and marker in r.body, "GET /no/such/page", r, "the framework's 404")
    r = call(srv, "GET", "/")
    expect(r.status == 200, "GET / after the errors", r, "200")


def test_redirect(srv):
    r = call(srv, "GET", "/redirect")
    expect(r.status == 302 and r.header("Location") == "/", "GET /redirect", r,
           "302 to /")


def test_keepalive_many_requests_one_connection(srv):
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=TIMEOUT)
    try:
        for i in range(30):
            path = f"/items/{i}?q=k" if i % 3 else "/stream?n=3"
            r = call(srv, "GET", path, conn=conn)
            expect(r.status == 200, f"GET {path} (request {i} on one connection)", r, "200")
    finally:
        conn.close()


def test_django_file_response(fw_server):
    if fw_server.fw != "django":
        pytest.skip("FileResponse is Django's")
    r = call(fw_server, "GET", "/download")
    want = (APPS / "wsgi_django.py").read_bytes()
    expect(r.status == 200 and r.body == want
           and "attachment" in (r.header("Content-Disposition") or ""), "GET /download", r,
           f"the file ({len(want)} bytes) as an attachment")


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_root_path_and_proxy_headers(fw):
    factory, server = start(fw, ["--root-path", "/mount"])
    try:
        headers = {"Host": "example.com", "X-Forwarded-Proto": "https",
                   "X-Forwarded-For": "203.0.113.5"}
        r = call(server, "GET", "/mount/url", headers=headers)
        got = r.json() if r.status == 200 else None
        url = "https://example.com/mount/url"
        if fw == "flask":
            want = {"url": url, "root": "https://example.com/mount/", "path": "/url",
                    "script_root": "/mount", "remote": "203.0.113.5", "scheme": "https",
                    "home": "/mount/"}
        else:
            want = {"url": url, "path": "/mount/url", "path_info": "/url",
                    "script_name": "/mount", "remote": "203.0.113.5", "scheme": "https"}
        expect(got == want, f"GET /mount/url {headers} (--root-path /mount)", r, want)
    finally:
        stop(factory, server)
