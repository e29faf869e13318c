#!/usr/bin/python3
"""WSGI benchmark: ringmaster's WSGI interface against the WSGI servers people use.

    /usr/bin/python3 bench/http/run.py --suite wsgi [--duration 10] [--connections 64]
                                       [--workers 1] [--rounds 2] [--json out.json]
                                       [--servers ringmaster,granian,...]
    (or bench/http/wsgi_suite.py with the same flags)

Two workloads, each answered by the same WSGI app file on every server:
  hello       GET /     a plain WSGI app returning [b"Hello, world!\\n"] with
                        Content-Length (the WSGI hello of run.py's default suite)
  flask-json  GET /json a Flask app returning jsonify({...}) (Flask's own
                        routing, request context, JSON encoding)

Servers, one worker process each (--workers): ringmaster (--interface wsgi),
granian --interface wsgi, gunicorn with sync workers and with gthread workers
(4 threads), uWSGI (--http-socket, a connection per request as with gunicorn's sync
workers: its keep-alive mode serves one connection at a time). The peers and Flask are
installed from PyPI, pinned below, into .venv-bench-wsgi made from
/usr/bin/python3: the interpreter the default ringmaster build embeds, so every
server runs the app on the same CPython (ringmaster gets VIRTUAL_ENV pointing
there). A server that fails to install or start is skipped with the reason
printed (uWSGI compiles from source: about a minute the first time).

Each server is measured as in run.py: a warm-up, then
`wrk -t1 -c<connections> -d<duration>s --latency`, req/s, p50, p99, and CPU
time per request of the server's whole process tree. The list runs --rounds
times, alternating direction; the tables keep each server's best round.
"""

import argparse
import hashlib
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as base  # noqa: E402  bench/http/run.py: processes, wrk parsing, reports

ROOT = base.ROOT
VENV = ROOT / ".venv-bench-wsgi"
PYTHON = "/usr/bin/python3"
REQUIREMENTS = [
    "granian==2.8.7",
    "gunicorn==27.0.1",
    "uwsgi==2.0.31",
    "Flask==3.1.3",
    # transitive, pinned for repeatable runs
    "Werkzeug==3.1.9",
    "Jinja2==3.1.6",
    "MarkupSafe==3.0.4",
    "itsdangerous==2.2.0",
    "click==8.5.1",
    "blinker==1.9.0",
]
SERVERS = ["ringmaster", "granian", "gunicorn-sync", "gunicorn-gthread", "uwsgi"]
NEEDS = {"granian": "granian", "gunicorn-sync": "gunicorn", "gunicorn-gthread": "gunicorn",
         "uwsgi": "uwsgi"}
# workload -> (app module, path wrk requests, what that path answers)
WORKLOADS = {
    "hello": ("wsgi_hello", "/", b"Hello, world!\n"),
    "flask-json": ("flask_json", "/json",
                   b'{"items":[1,2,3],"message":"Hello, world!","n":42}\n'),
}
APPS = {
    "wsgi_hello.py": '''
        def app(environ, start_response):
            start_response("200 OK", [("Content-Type", "text/plain"),
                                      ("Content-Length", "14")])
            return [b"Hello, world!\\n"]
    ''',
    "flask_json.py": '''
        from flask import Flask, jsonify

        app = Flask(__name__)
        app.json.compact = True


        @app.get("/")
        def hello():
            return "Hello, world!\\n"


        @app.get("/json")
        def payload():
            return jsonify(message="Hello, world!", n=42, items=[1, 2, 3])
    ''',
}


def ensure_venv(suite=None):
    """Create/refresh the suite's venv (.venv-bench-wsgi for this one); return
    {package: error} for what failed."""
    suite = suite or sys.modules[__name__]
    VENV, PYTHON, REQUIREMENTS = suite.VENV, suite.PYTHON, suite.REQUIREMENTS
    stamp = VENV / ".requirements.sha256"
    want = hashlib.sha256(("\n".join(REQUIREMENTS) + PYTHON).encode()).hexdigest()
    if stamp.exists() and stamp.read_text().strip() == want and (VENV / "bin/python").exists():
        return {}
    base.log(f"setting up {VENV} from {PYTHON} {suite.SETUP_NOTE}...")
    if VENV.exists():
        shutil.rmtree(VENV)
    r = subprocess.run([PYTHON, "-m", "venv", str(VENV)], capture_output=True, text=True)
    if r.returncode != 0:
        return {req.split("==")[0].lower(): f"venv: {r.stderr.strip()}" for req in REQUIREMENTS}
    pip = [str(VENV / "bin/python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    r = subprocess.run(pip + REQUIREMENTS, capture_output=True, text=True)
    failed = {}
    if r.returncode != 0:  # one by one, so one bad package skips only its server
        for req in REQUIREMENTS:
            one = subprocess.run(pip + [req], capture_output=True, text=True)
            if one.returncode != 0:
                failed[req.split("==")[0].lower()] = (one.stderr.strip().splitlines()
                                                      or ["?"])[-1]
    if not failed:
        stamp.write_text(want + "\n")
    return failed


def specs(args, tmp, module):
    """name -> (argv builder(port), extra environment, why skipped or None)."""
    w = str(args.workers)
    vbin = VENV / "bin"
    rm_bin = Path(args.build)
    rm_bin = (rm_bin if rm_bin.is_absolute() else ROOT / rm_bin) / "ringmaster"
    app_file = str(Path(tmp) / f"{module}.py")
    gunicorn = [str(vbin / "gunicorn"), "-w", w, "--log-level", "warning", f"{module}:app"]
    return {
        "ringmaster": (lambda p: [str(rm_bin), "-b", f"127.0.0.1:{p}", "-w", w, "--log-level",
                                  "warn", "--interface", "wsgi", app_file],
                       {"VIRTUAL_ENV": str(VENV)},
                       None if rm_bin.exists() else f"{rm_bin} not built (scripts/build.sh)"),
        "granian": (lambda p: [str(vbin / "granian"), "--interface", "wsgi", "--host",
                               "127.0.0.1", "--port", str(p), "--workers", w, "--http", "1",
                               "--no-ws", "--log-level", "warning", f"{module}:app"], {}, None),
        "gunicorn-sync": (lambda p: gunicorn + ["-k", "sync", "-b", f"127.0.0.1:{p}"], {}, None),
        "gunicorn-gthread": (lambda p: gunicorn + ["-k", "gthread", "--threads", "4", "-b",
                                                   f"127.0.0.1:{p}"], {}, None),
        # --http-socket: a connection per request. uWSGI's keep-alive mode
        # (--http11-socket) serves one connection at a time per process, so
        # 63 of wrk's 64 connections would only wait; its figures then measure
        # one connection, not a server.
        "uwsgi": (lambda p: [str(vbin / "uwsgi"), "--http-socket", f"127.0.0.1:{p}",
                             "--add-header", "Connection: close", "--wsgi-file", app_file,
                             "--callable", "app", "--processes", w, "--master", "--die-on-term",
                             "--need-app", "--disable-logging", "--lazy-apps"], {}, None),
    }


def wrk(port, path, connections, duration):
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency",
           f"http://127.0.0.1:{port}{path}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr or proc.stdout}")
    return proc.stdout


def check_answer(port, path, want):
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
        body = resp.read()
    if resp.status != 200 or body.replace(b" ", b"") != want.replace(b" ", b""):
        raise RuntimeError(f"GET {path} answered {resp.status} {body[:80]!r}, expected {want!r}")


def measure(server, path, args, connections):
    wrk(server.port, path, connections, args.warmup)  # warm-up, discarded
    before = base.tree_ticks(server.proc.pid)
    out = wrk(server.port, path, connections, args.duration)
    after = base.tree_ticks(server.proc.pid)
    result = base.parse_wrk(out)
    result["cpu_s"] = (after - before) / base.CLK_TCK
    result["cpu_us_per_req"] = (result["cpu_s"] * 1e6 / result["requests"]
                                if result["requests"] else None)
    return result


SETUP_NOTE = "(uWSGI compiles: about a minute) "
TITLE = "WSGI"
REQUIRED = "flask"  # the suite cannot run without it
VERSIONED = ("granian", "gunicorn", "uwsgi", "flask")


def run(args, suite=None):
    """A suite (this module, or one with the same names: asgi_suite.py); args
    carries duration, warmup, connections, workers, rounds, servers (comma
    list or None), build, json."""
    suite = suite or sys.modules[__name__]
    SERVERS, NEEDS, WORKLOADS, APPS, VENV = (suite.SERVERS, suite.NEEDS, suite.WORKLOADS,
                                            suite.APPS, suite.VENV)
    if not shutil.which("wrk"):
        sys.exit("wrk not found: run scripts/install-deps.sh")
    wanted = [s.strip() for s in (args.servers or ",".join(SERVERS)).split(",") if s.strip()]
    unknown = [s for s in wanted if s not in SERVERS]
    if unknown:
        sys.exit(f"unknown {suite.TITLE} server(s) {unknown}; choose from {SERVERS}")

    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_term)

    machine = base.machine_info()
    skipped, runs = {}, []
    tmp = tempfile.mkdtemp(prefix=f"ringmaster-bench-{suite.TITLE.lower()}-")
    try:
        for fname, src in APPS.items():
            (Path(tmp) / fname).write_text(textwrap.dedent(src).lstrip())
        failed = ensure_venv(suite)
        if suite.REQUIRED in failed:
            sys.exit(f"cannot install {suite.REQUIRED} into {VENV}: {failed[suite.REQUIRED]}")
        for name in wanted:
            pkg = NEEDS.get(name)
            if pkg in failed:
                skipped[name] = f"pip install {pkg} failed: {failed[pkg]}"
        vpy = str(VENV / "bin/python")
        versions = {"python": base.version_of([vpy, "--version"])}
        for pkg in suite.VERSIONED:
            if pkg not in failed:
                versions[pkg] = base.version_of(
                    [vpy, "-c", f"import importlib.metadata as m; print(m.version('{pkg}'))"])

        base.log(f"# {suite.TITLE} benchmark\n")
        base.log(f"machine: {machine['nproc']} CPUs ({machine['usable_cpus']} usable), "
                 f"{machine['cpu_model']}, Linux {machine['kernel']}; {machine['wrk']}")
        base.log(f"settings: wrk -t1 -c{args.connections} -d{args.duration}s --latency "
                 f"(a workload may name its own -c), "
                 f"{args.warmup} s warm-up, {args.workers} worker(s) per server, "
                 f"{args.rounds} rounds")
        base.log("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
        for name, why in skipped.items():
            base.log(f"SKIP {name}: {why}")
        base.log("")

        for workload, (module, path, answer, *conns) in WORKLOADS.items():
            connections = conns[0] if conns else args.connections
            table = suite.specs(args, tmp, module)
            active = [s for s in wanted if s not in skipped and not table[s][2]]
            for s in wanted:
                if table[s][2] and s not in skipped:
                    skipped[s] = table[s][2]
            for rnd in range(args.rounds):
                for name in (active if rnd % 2 == 0 else list(reversed(active))):
                    if name in skipped:
                        continue
                    build, env, _ = table[name]
                    port = base.free_port()
                    try:
                        server = base.start(f"{name}-{workload}", build(port), port, tmp, tmp,
                                            env=env)
                        check_answer(port, path, answer)
                    except (RuntimeError, OSError) as exc:
                        if base.RUNNING and base.RUNNING[-1].port == port:
                            base.stop(base.RUNNING[-1])
                        skipped[name] = f"failed to start or answer: {exc}"
                        base.log(f"SKIP {name}: {skipped[name]}")
                        continue
                    try:
                        r = measure(server, path, args, connections)
                    except (RuntimeError, ValueError, subprocess.TimeoutExpired) as exc:
                        base.log(f"{workload} round {rnd + 1} {name}: measurement failed: {exc}")
                        r = None
                    finally:
                        base.stop(server)
                    if r:
                        r.update(server=name, workload=workload, round=rnd + 1,
                                 connections=connections)
                        runs.append(r)
                        base.log(f"{workload:10s} round {rnd + 1} {name:16s} {r['rps']:9.0f} "
                                 f"req/s  p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms  "
                                 f"{base.fmt(r['cpu_us_per_req'], '.1f')} CPU µs/req  "
                                 f"errors {r['errors']}")
                    time.sleep(0.5)
    except KeyboardInterrupt:
        base.log("\ninterrupted: stopping servers")
        base.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
        sys.exit(130)
    finally:
        base.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)

    best = {}
    for r in runs:
        key = (r["workload"], r["server"])
        if key not in best or r["rps"] > best[key]["rps"]:
            best[key] = r
    for workload, (_, path, _, *_c) in WORKLOADS.items():
        rows = {name: best[(workload, name)] for name in wanted if (workload, name) in best}
        base.log(f"\n## {workload} (GET {path}): best of the rounds\n")
        base.log(base.report(rows, [s for s in wanted if s in rows]))
    base.log("\nratios > 1 in the req/s column: ringmaster serves more; < 1 in the CPU column: "
             "ringmaster spends less CPU per request.")
    for name, why in skipped.items():
        base.log(f"skipped {name}: {why.splitlines()[0]}")
    if args.json:
        doc = {"suite": suite.TITLE.lower(), "machine": machine, "versions": versions,
               "settings": {k: getattr(args, k) for k in
                            ("duration", "warmup", "connections", "workers", "rounds")},
               "runs": runs, "best": {f"{w}/{s}": r for (w, s), r in best.items()},
               "skipped": skipped}
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
        base.log(f"\nJSON written to {args.json}")
    return 0 if runs else 1


def main(suite=None):
    suite = suite or sys.modules[__name__]
    ap = argparse.ArgumentParser(description=suite.__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run (10)")
    ap.add_argument("--warmup", type=int, default=2, help="warm-up seconds, discarded (2)")
    ap.add_argument("--connections", type=int, default=64, help="wrk connections (64)")
    ap.add_argument("--workers", type=int, default=1, help="worker processes per server (1)")
    ap.add_argument("--rounds", type=int, default=2,
                    help="times through the list, alternating direction (2)")
    ap.add_argument("--servers", help="comma-separated subset of " + ",".join(suite.SERVERS))
    ap.add_argument("--build", default="build", help="ringmaster build directory (build)")
    ap.add_argument("--json", help="also write the results as JSON to this path")
    return run(ap.parse_args(), suite)


if __name__ == "__main__":
    sys.exit(main())
