#!/usr/bin/python3
"""ASGI benchmark: ringmaster's ASGI interface against the ASGI servers people use.

    /usr/bin/python3 bench/http/run.py --suite asgi [--duration 10] [--connections 64]
                                       [--workers 1] [--rounds 2] [--json out.json]
                                       [--servers ringmaster,uvicorn,...]
    (or bench/http/asgi_suite.py with the same flags)

Three workloads, each answered by the same ASGI app file on every server (each
app also answers GET / with a hello, which run.py's start-up check asks for):
  hello         GET /      a plain ASGI app: http.response.start, then one
                           http.response.body of b"Hello, world!\\n"
  fastapi-json  GET /json  a FastAPI endpoint returning a dict (FastAPI's
                           routing, dependency machinery, JSON response)
  io-10ms       GET /io    a plain ASGI app that awaits asyncio.sleep(0.01)
                           before answering (simulated I/O), at 512
                           connections: what many requests in flight per
                           thread buy

Servers, one worker process each (--workers): ringmaster (--interface asgi,
uvloop), uvicorn (httptools + uvloop, access log off), granian --interface
asgi (uvloop), gunicorn with uvicorn's worker class (uvicorn-worker). The peers,
FastAPI and uvloop are installed from PyPI, pinned below, into .venv-bench-asgi
made from /usr/bin/python3: the interpreter the default ringmaster build
embeds, so every server runs the app on the same CPython (ringmaster gets
VIRTUAL_ENV pointing there, which is how its --loop auto finds uvloop).

Measured as the WSGI suite is (wsgi_suite.py runs it): a warm-up, then
`wrk -t1 -c<connections> -d<duration>s --latency`, req/s, p50, p99, and CPU
time per request of the server's whole process tree; --rounds times through
the list, alternating direction; the tables keep each server's best round.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as base  # noqa: E402  bench/http/run.py: processes, wrk parsing, reports
import wsgi_suite  # noqa: E402  the runner this suite shares

ROOT = base.ROOT
VENV = ROOT / ".venv-bench-asgi"
PYTHON = "/usr/bin/python3"
REQUIREMENTS = [
    "uvicorn[standard]==0.54.0",
    "uvicorn-worker==0.4.0",
    "granian==2.8.7",
    "gunicorn==27.0.1",
    "fastapi==0.165.0",
    "uvloop==0.23.0",
    # transitive, pinned for repeatable runs
    "httptools==0.9.0",
    "h11==0.16.0",
    "websockets==17.4",
    "watchfiles==1.3.0",
    "python-dotenv==1.2.4",
    "PyYAML==6.0.4",
    "click==8.5.1",
    "starlette==1.10.0",
    "pydantic==2.14.4",
    "pydantic_core==2.50.5",
    "annotated-doc==0.0.7",
    "annotated-types==0.8.0",
    "typing-inspection==0.4.5",
    "typing_extensions==4.16.0",
    "anyio==4.16.0",
    "idna==3.20",
    "opentelemetry-api==1.45.2",
]
SETUP_NOTE = ""
TITLE = "ASGI"
REQUIRED = "fastapi"
VERSIONED = ("uvicorn", "granian", "gunicorn", "fastapi", "uvloop")
SERVERS = ["ringmaster", "uvicorn", "granian", "gunicorn-uvicorn"]
NEEDS = {"uvicorn": "uvicorn", "granian": "granian", "gunicorn-uvicorn": "gunicorn"}
IO_CONNECTIONS = 512
# workload -> (app module, path wrk requests, what that path answers[, connections])
WORKLOADS = {
    "hello": ("asgi_hello", "/", b"Hello, world!\n"),
    "fastapi-json": ("fastapi_json", "/json",
                     b'{"message":"Hello, world!","n":42,"items":[1,2,3]}'),
    "io-10ms": ("asgi_io", "/io", b"done\n", IO_CONNECTIONS),
}
APPS = {
    "asgi_hello.py": '''
        async def app(scope, receive, send):
            if scope["type"] != "http":
                return
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/plain"),
                                    (b"content-length", b"14")]})
            await send({"type": "http.response.body", "body": b"Hello, world!\\n"})
    ''',
    "fastapi_json.py": '''
        from fastapi import FastAPI
        from fastapi.responses import PlainTextResponse

        app = FastAPI()


        @app.get("/", response_class=PlainTextResponse)
        async def hello():
            return "Hello, world!\\n"


        @app.get("/json")
        async def payload():
            return {"message": "Hello, world!", "n": 42, "items": [1, 2, 3]}
    ''',
    "asgi_io.py": '''
        import asyncio


        async def app(scope, receive, send):
            if scope["type"] != "http":
                return
            if scope["path"] != "/io":  # GET / answers at once: the start-up check
                await send({"type": "http.response.start", "status": 200,
                            "headers": [(b"content-length", b"14")]})
                await send({"type": "http.response.body", "body": b"Hello, world!\\n"})
                return
            await asyncio.sleep(0.01)  # a database or an upstream call
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/plain"),
                                    (b"content-length", b"5")]})
            await send({"type": "http.response.body", "body": b"done\\n"})
    ''',
}


def specs(args, tmp, module):
    """name -> (argv builder(port), extra environment, why skipped or None)."""
    w = str(args.workers)
    vbin = VENV / "bin"
    rm_bin = Path(args.build)
    rm_bin = (rm_bin if rm_bin.is_absolute() else ROOT / rm_bin) / "ringmaster"
    app_file = str(Path(tmp) / f"{module}.py")
    return {
        "ringmaster": (lambda p: [str(rm_bin), "-b", f"127.0.0.1:{p}", "-w", w, "--log-level",
                                  "warn", "--interface", "asgi", "--loop", "uvloop", app_file],
                       {"VIRTUAL_ENV": str(VENV)},
                       None if rm_bin.exists() else f"{rm_bin} not built (scripts/build.sh)"),
        "uvicorn": (lambda p: [str(vbin / "uvicorn"), "--host", "127.0.0.1", "--port", str(p),
                               "--workers", w, "--http", "httptools", "--loop", "uvloop",
                               "--no-access-log", "--log-level", "warning", "--lifespan", "off",
                               f"{module}:app"], {}, None),
        "granian": (lambda p: [str(vbin / "granian"), "--interface", "asgi", "--host",
                               "127.0.0.1", "--port", str(p), "--workers", w, "--http", "1",
                               "--loop", "uvloop", "--no-ws", "--log-level", "warning",
                               f"{module}:app"], {}, None),
        "gunicorn-uvicorn": (lambda p: [str(vbin / "gunicorn"), "-w", w, "-k",
                                        "uvicorn_worker.UvicornWorker", "--log-level", "warning",
                                        "-b", f"127.0.0.1:{p}", f"{module}:app"], {}, None),
    }


def run(args):
    return wsgi_suite.run(args, sys.modules[__name__])


if __name__ == "__main__":
    sys.exit(wsgi_suite.main(sys.modules[__name__]))
