"""FastAPI and Starlette served unmodified through the ASGI interface.

The apps (apps/asgi_fastapi.py, apps/asgi_starlette.py) are real framework
apps from PyPI, pinned in tests/requirements-apps.txt and installed into the
framework venv of the worker's own Python, as for test_wsgi_frameworks.py
(whose venv_env() finds it, or skips with the command that makes it).
FastAPI comes from tests/requirements-apps-native.txt, pinned to releases
with wheels for every interpreter the suite runs (3.11, 3.13, 3.13t): its
tests run in every mode, and a venv without it fails them (skips, saying
"missing dependency", by hand without RINGMASTER_REQUIRE_APPS_VENV). uvloop
(tests/requirements-apps-uvloop.txt) has no 3.13t wheel: there scripts/test.sh
leaves .uvloop-unavailable in the venv, --loop auto runs asyncio, and only
test_runs_on_uvloop skips, with that reason; elsewhere these run on uvloop.

Same scenarios for both: path and query parameters, JSON bodies with
validation errors (422), a dependency (a header), a background task after
the response, a streamed response, lifespan state seen by requests, an
error page and an unhandled exception, many requests in flight.
"""

import http.client
import json
import threading
import time

import pytest

from conftest import APPS, MODE, SLOW, ServerFactory, wait_for
from test_wsgi_frameworks import VENV, call, expect, missing, venv_env

TIMEOUT = 10.0 * SLOW
FRAMEWORKS = ["fastapi", "starlette"]


UVLOOP_UNAVAILABLE = VENV / ".uvloop-unavailable"


def installed(package):
    """Whether the framework venv holds `package` (the worker's own Python
    imports from there; this interpreter may be another)."""
    return any(VENV.glob(f"lib/python3*/site-packages/{package}/__init__.py"))


def uvloop_available():
    return not UVLOOP_UNAVAILABLE.exists() and installed("uvloop")


@pytest.fixture(scope="module", params=FRAMEWORKS)
def srv(request, tmp_path_factory):
    env = venv_env()
    if not installed(request.param):
        missing(f"{request.param} is not installed in {VENV}: pip install -r "
                f"tests/requirements-apps.txt -r tests/requirements-apps-native.txt")
    marks = tmp_path_factory.mktemp(request.param) / "marks"
    env["ASGI_APP_MARKS"] = str(marks)
    # pydantic-core (FastAPI) cannot load in a subinterpreter (docs/asgi.md): in the
    # subinterpreters run FastAPI is served as its users must run it, in gil mode.
    args = ["--mode", "gil"] if request.param == "fastapi" and MODE == "subinterpreters" else []
    factory = ServerFactory()
    server = factory(APPS / f"asgi_{request.param}.py", workers=1, env=env, args=args)
    server.fw = request.param
    server.marks = marks
    yield server
    errors = factory.stop_all()
    if errors:
        pytest.fail("\n\n".join(errors))


def test_detected_and_loop(srv):
    assert wait_for(lambda: "event loop per thread" in srv.stderr()
                    and "serving " in srv.stderr(), TIMEOUT), srv.stderr()
    text = srv.stderr()
    assert "ASGI interface (auto" in text, text
    # uvloop is a single-phase extension: a subinterpreter runs asyncio.
    sub = "mode subinterpreters" in text
    loop = "uvloop" if uvloop_available() and not sub else "asyncio"
    assert f"ASGI: {loop} event loop per thread" in text, text


def test_runs_on_uvloop(srv):
    """uvloop-specific: the one test that skips on purpose where uvloop has
    no wheel (3.13t) or cannot load (a subinterpreter), saying why."""
    if not uvloop_available():
        why = (UVLOOP_UNAVAILABLE.read_text().strip() if UVLOOP_UNAVAILABLE.exists()
               else f"uvloop is not installed in {VENV}")
        pytest.skip(f"uvloop unavailable on purpose ({why}); the worker runs asyncio")
    assert wait_for(lambda: "event loop per thread" in srv.stderr(), TIMEOUT), srv.stderr()
    if "mode subinterpreters" in srv.stderr():
        pytest.skip("uvloop is a single-phase extension: a subinterpreter runs asyncio")
    assert "ASGI: uvloop event loop per thread" in srv.stderr(), srv.stderr()


def test_root(srv):
    r = call(srv, "GET", "/")
    expect(r.status == 200 and r.json() == {"framework": srv.fw}, "GET /", r, "200 framework")
    assert r.header("content-type") == "application/json", r


def test_path_and_query_parameters(srv):
    r = call(srv, "GET", "/items/42?q=hello%20world&limit=3")
    expect(r.status == 200 and r.json() == {"item_id": 42, "q": "hello world", "limit": 3},
           "GET /items/42?q=hello%20world&limit=3", r, "the parameters back")
    r = call(srv, "GET", "/items/not-a-number")
    expect(r.status == 422, "GET /items/not-a-number", r, "422")


def test_json_body_and_dependency(srv):
    body = json.dumps({"name": "pen", "price": 1.5, "tags": ["a"]})
    r = call(srv, "POST", "/items", body=body,
             headers={"Content-Type": "application/json", "X-User": "ada"})
    expect(r.status == 201 and r.json() == {"item": {"name": "pen", "price": 1.5, "tags": ["a"]},
                                            "by": "ada"},
           f"POST /items {body}", r, "201 with the item and the user")


def test_validation_error_is_422(srv):
    body = json.dumps({"name": "", "price": -1})
    r = call(srv, "POST", "/items", body=body, headers={"Content-Type": "application/json"})
    expect(r.status == 422 and "detail" in r.json(), f"POST /items {body}", r, "422 with detail")
    r = call(srv, "POST", "/items", body=b"{not json", headers={"Content-Type": "application/json"})
    expect(r.status == 422, "POST /items with broken JSON", r, "422")


def test_background_task_runs_after_the_response(srv):
    r = call(srv, "POST", "/tasks?name=nightly")
    expect(r.status == 200 and r.json() == {"queued": "nightly"}, "POST /tasks", r, "200 queued")
    assert wait_for(lambda: srv.marks.exists() and "task nightly" in srv.marks.read_text(),
                    TIMEOUT), "the background task never ran"


def test_streaming_response(srv):
    r = call(srv, "GET", "/stream?n=4")
    expect(r.status == 200 and r.body == b"line 0\nline 1\nline 2\nline 3\n", "GET /stream?n=4",
           r, "four lines")
    assert r.header("transfer-encoding") == "chunked", r


def test_lifespan_state(srv):
    r = call(srv, "GET", "/state")
    expect(r.status == 200 and r.json() == {"ready": "started", "db": "connected"}, "GET /state",
           r, "startup ran; its state reaches the request")


def test_errors(srv):
    r = call(srv, "GET", "/missing")
    expect(r.status == 404 and b"no such thing" in r.body, "GET /missing", r, "404 with the detail")
    r = call(srv, "GET", "/crash")
    expect(r.status == 500, "GET /crash", r, "500")
    assert wait_for(lambda: f"{srv.fw} handler crashed" in srv.stderr(), TIMEOUT), srv.stderr()
    r = call(srv, "GET", "/no/such/route")
    expect(r.status == 404, "GET /no/such/route", r, "404")


def test_large_body_round_trip(srv):
    data = bytes(range(256)) * 4096  # 1 MiB
    r = call(srv, "POST", "/echo", body=data)
    expect(r.status == 200 and r.body == data, "POST /echo 1 MiB", r, "the body back")


def test_keep_alive(srv):
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=TIMEOUT)
    for i in range(10):
        r = call(srv, "GET", f"/items/{i}", conn=conn)
        expect(r.status == 200 and r.json()["item_id"] == i, f"GET /items/{i} (kept alive)", r,
               "200")
    conn.close()


def test_concurrent_requests(srv):
    results = []

    def one():
        results.append(call(srv, "GET", "/sleep?s=0.5").status)
    threads = [threading.Thread(target=one) for _ in range(50)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    assert results == [200] * 50, results
    assert elapsed < 3.0 * SLOW, f"50 requests sleeping 0.5 s on one worker took {elapsed:.2f} s"
