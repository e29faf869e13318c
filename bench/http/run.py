#!/usr/bin/python3
"""HTTP "hello world" benchmark: ringmaster against nginx and Python app servers.

    /usr/bin/python3 bench/http/run.py [--suite hello|pipeline|post|wsgi|asgi|pressure] [--duration 10]
                                       [--connections 64] [--workers 1]
                                       [--json out.json] [--servers ringmaster,nginx,...]

Suites (the default, hello, is described below; pipeline and post change only
what wrk sends; wsgi and asgi are their own sets of servers and apps, in
wsgi_suite.py and asgi_suite.py):
  pipeline  GET / with HTTP/1.1 pipelining, 16 requests per write
            (bench/http/pipeline.lua, as TechEmpower's plaintext test does);
  post      POST /len with a 1 MiB body (bench/http/post.lua); each server's
            app reads the whole body and answers with its length, not the body.
            nginx reads it into memory with the echo module
            (echo_read_request_body) and answers $content_length; without that
            module nginx is skipped for this suite. Default connections: 16.
  wsgi      WSGI servers on a WSGI hello and a Flask JSON endpoint: ringmaster
            --interface wsgi, granian --interface wsgi, gunicorn sync and gthread,
            uWSGI, all on /usr/bin/python3 (.venv-bench-wsgi); see wsgi_suite.py.
  asgi      ASGI servers on an ASGI hello, a FastAPI JSON endpoint and a 10 ms
            simulated-I/O endpoint at 512 connections: ringmaster --interface
            asgi, uvicorn (httptools + uvloop), granian --interface asgi,
            gunicorn with uvicorn's worker, all on /usr/bin/python3
            (.venv-bench-asgi); see asgi_suite.py.
  pressure  normal keep-alive clients' success rate, p50/p99 and the server's
            peak memory, alone and then under slowloris, slow readers and 1 MiB
            uploads, on WSGI and ASGI servers; its own flags (--suite pressure
            --help); see pressure_suite.py.

For each server, in the same conditions: start it with the same worker count,
check that GET / answers "Hello, world!\\n", warm up, then run
`wrk -t1 -c<connections> -d<duration>s --latency` and record req/s, p50, p99,
and the server's CPU time per request (utime+stime, children included, of the
server's whole process tree over the wrk run, divided by requests completed).
The list runs twice, ringmaster first then ringmaster last, so that noise on a
shared 2-core machine falls on every server alike; the table shows each
server's best run, the JSON keeps all of them.

Peers (granian rsgi and wsgi, uvicorn with httptools+uvloop, gunicorn sync)
are installed into .venv-bench from PyPI, pinned below; nginx is the ceiling.
A server that fails to install or start is skipped with the reason printed.
Every server started is stopped at the end, also on Ctrl-C or error.

Only the standard library is used here; wrk and nginx come from
scripts/install-deps.sh.
"""

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv-bench"
PEER_REQUIREMENTS = [
    "granian==2.8.7",
    "uvicorn==0.54.0",
    "httptools==0.9.0",
    "uvloop==0.23.0",
    "gunicorn==27.0.1",
    # transitive, pinned for repeatable runs
    "click==8.5.1",
    "h11==0.16.0",
]
HELLO = b"Hello, world!\n"
CLK_TCK = os.sysconf("SC_CLK_TCK")
ALL_SERVERS = ["ringmaster", "nginx", "granian-rsgi", "granian-wsgi", "uvicorn", "gunicorn"]

APPS = {
    "rm_hello.py": '''
        # ringmaster native interface
        def app(request):
            return b"Hello, world!\\n"
    ''',
    "rsgi_hello.py": '''
        # RSGI (granian --interface rsgi)
        async def app(scope, proto):
            proto.response_bytes(200, [("content-type", "text/plain")], b"Hello, world!\\n")
    ''',
    "wsgi_hello.py": '''
        # WSGI (granian --interface wsgi, gunicorn)
        def app(environ, start_response):
            start_response("200 OK", [("Content-Type", "text/plain"),
                                      ("Content-Length", "14")])
            return [b"Hello, world!\\n"]
    ''',
    "asgi_hello.py": '''
        # ASGI (uvicorn)
        async def app(scope, receive, send):
            if scope["type"] != "http":
                return
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/plain"),
                                    (b"content-length", b"14")]})
            await send({"type": "http.response.body", "body": b"Hello, world!\\n"})
    ''',
    # --suite post: POST /len answers the body's length (the whole body is read);
    # anything else answers Hello, like the apps above.
    "rm_len.py": '''
        def app(request):
            if request.path == "/len":
                return str(len(request.body)).encode()
            return b"Hello, world!\\n"
    ''',
    "rsgi_len.py": '''
        async def app(scope, proto):
            if scope.path == "/len":
                body = await proto()
                proto.response_bytes(200, [("content-type", "text/plain")], str(len(body)).encode())
            else:
                proto.response_bytes(200, [("content-type", "text/plain")], b"Hello, world!\\n")
    ''',
    "wsgi_len.py": '''
        def app(environ, start_response):
            if environ["PATH_INFO"] == "/len":
                n = int(environ.get("CONTENT_LENGTH") or 0)
                body = str(len(environ["wsgi.input"].read(n))).encode()
            else:
                body = b"Hello, world!\\n"
            start_response("200 OK", [("Content-Type", "text/plain"),
                                      ("Content-Length", str(len(body)))])
            return [body]
    ''',
    "asgi_len.py": '''
        async def app(scope, receive, send):
            if scope["type"] != "http":
                return
            if scope["path"] == "/len":
                n, more = 0, True
                while more:
                    message = await receive()
                    n += len(message.get("body", b""))
                    more = message.get("more_body", False)
                body = str(n).encode()
            else:
                body = b"Hello, world!\\n"
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/plain"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
    ''',
}

HERE = Path(__file__).resolve().parent
POST_BYTES = 1024 * 1024
NGINX_ECHO_MODULE = Path("/usr/lib/nginx/modules/ngx_http_echo_module.so")
# nginx for --suite post: read the body into memory, then answer its length
# (Content-Length, which nginx has checked against the bytes it read).
NGINX_POST_LOCATION = """\
        location = /len {{
            client_max_body_size 2m;
            client_body_buffer_size 2m;
            default_type text/plain;
            echo_read_request_body;
            echo $content_length;
        }}
"""

# suite -> (wrk script args or None, path, app module stem, default connections)
SUITES = {
    "hello": (None, "/", "hello", 64),
    "pipeline": ([str(HERE / "pipeline.lua"), "16"], "/", "hello", 64),
    "post": ([str(HERE / "post.lua"), str(POST_BYTES)], "/len", "len", 16),
}

NGINX_CONF = """\
{modules}daemon off;
master_process on;
worker_processes {workers};
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/nginx-client-body;
    proxy_temp_path {tmp}/nginx-proxy;
    fastcgi_temp_path {tmp}/nginx-fastcgi;
    uwsgi_temp_path {tmp}/nginx-uwsgi;
    scgi_temp_path {tmp}/nginx-scgi;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            default_type text/plain;
            return 200 "Hello, world!\\n";
        }}
{locations}    }}
}}
"""


def log(msg=""):
    print(msg, flush=True)


# ---------------------------------------------------------------- machine facts

def machine_info():
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
    return {
        "nproc": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "kernel": platform.release(),
        "wrk": (wrk.stdout or wrk.stderr).splitlines()[0] if (wrk.stdout or wrk.stderr) else "?",
    }


# ---------------------------------------------------------------- processes

def proc_stat(pid):
    """(ppid, starttime, cpu_ticks) for pid, or None. cpu_ticks = utime+stime+cutime+cstime.

    cutime/cstime are included so that a child reaped during the run still
    counts: its time moves into its parent's cutime/cstime when it is waited for.
    """
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes().decode("latin-1")
    except OSError:
        return None
    fields = data[data.rindex(")") + 2:].split()
    # fields[0] is field 3 of proc(5); utime..cstime are fields 14..17.
    ppid = int(fields[1])
    ticks = sum(int(x) for x in fields[11:15])
    start = int(fields[19])
    return ppid, start, ticks


def process_tree(root_pid):
    """{(pid, starttime): cpu_ticks} for root_pid and all its descendants."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = proc_stat(int(entry))
            if st:
                table[int(entry)] = st
    wanted = {root_pid}
    changed = True
    while changed:
        changed = False
        for pid, (ppid, _, _) in table.items():
            if ppid in wanted and pid not in wanted:
                wanted.add(pid)
                changed = True
    return {(pid, table[pid][1]): table[pid][2] for pid in wanted if pid in table}


def tree_ticks(root_pid):
    return sum(process_tree(root_pid).values())


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Running:
    """A started server: its Popen (own session/process group) and its log file."""

    def __init__(self, name, proc, port, log_path):
        self.name, self.proc, self.port, self.log_path = name, proc, port, log_path

    def log_tail(self, lines=15):
        try:
            text = Path(self.log_path).read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


RUNNING = []  # every server started and not yet stopped: stopped on any exit


def stop(server, timeout=10.0):
    """SIGTERM the server's process group, then SIGKILL whatever is left of its tree."""
    if server not in RUNNING:
        return
    tree = process_tree(server.proc.pid) if server.proc.poll() is None else {}
    try:
        os.killpg(server.proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        server.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(server.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        server.proc.wait()
    # Anything of the tree that left the process group, or outlived its parent.
    deadline = time.monotonic() + 3.0
    for (pid, start) in tree:
        while time.monotonic() < deadline:
            st = proc_stat(pid)
            if not st or st[1] != start:
                break
            time.sleep(0.05)
        st = proc_stat(pid)
        if st and st[1] == start:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    try:  # the whole group, in case a member was not a descendant any more
        os.killpg(server.proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    RUNNING.remove(server)


def stop_all():
    for server in list(RUNNING):
        try:
            stop(server)
        except Exception as exc:  # keep stopping the others
            log(f"warning: stopping {server.name}: {exc}")


def http_get(port, timeout=2.0):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=timeout) as resp:
        return resp.status, resp.read()


def start(name, cmd, port, cwd, tmp, env=None, timeout=20.0):
    """Start cmd in its own session; wait until GET / answers Hello. Returns Running or raises."""
    log_path = Path(tmp) / f"{name}.log"
    full_env = dict(os.environ)
    full_env.update(env or {})
    with open(log_path, "wb") as logf:
        proc = subprocess.Popen(cmd, cwd=cwd, env=full_env, stdin=subprocess.DEVNULL,
                                stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
    server = Running(name, proc, port, log_path)
    RUNNING.append(server)
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = server.log_tail()
            stop(server)
            raise RuntimeError(f"exited with {proc.returncode} at start-up:\n{tail}")
        try:
            status, body = http_get(port)
            if status == 200 and body == HELLO:
                return server
            last = f"answered {status} {body[:60]!r}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.1)
    tail = server.log_tail()
    stop(server)
    raise RuntimeError(f"not serving Hello on port {port} after {timeout:.0f} s ({last}):\n{tail}")


# ---------------------------------------------------------------- wrk

UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def to_ms(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not m:
        raise ValueError(f"unparsable latency {text!r}")
    return float(m.group(1)) * UNITS_MS[m.group(2)]


def parse_wrk(out):
    result = {}
    m = re.search(r"^\s*(\d+) requests in ([\d.]+)(\w+),", out, re.M)
    if not m:
        raise ValueError(f"no 'N requests in' line in wrk output:\n{out}")
    result["requests"] = int(m.group(1))
    m = re.search(r"^Requests/sec:\s*([\d.]+)", out, re.M)
    result["rps"] = float(m.group(1)) if m else 0.0
    dist = dict(re.findall(r"^\s*(50|75|90|99)%\s+([\d.]+\w+)\s*$", out, re.M))
    if "50" not in dist or "99" not in dist:
        raise ValueError(f"no Latency Distribution in wrk output:\n{out}")
    result["p50_ms"] = to_ms(dist["50"])
    result["p99_ms"] = to_ms(dist["99"])
    errors = 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(int(x) for x in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        errors += int(m.group(1))
    result["errors"] = errors
    return result


def run_wrk(port, connections, duration, suite="hello"):
    script, path, _, _ = SUITES[suite]
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency"]
    if script:
        cmd += ["-s", script[0], f"http://127.0.0.1:{port}{path}", "--"] + script[1:]
    else:
        cmd.append(f"http://127.0.0.1:{port}{path}")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr or proc.stdout}")
    return proc.stdout


def check_suite(server, suite):
    """Before measuring --suite post: POST /len with the body must answer its length."""
    if suite != "post":
        return
    req = urllib.request.Request(f"http://127.0.0.1:{server.port}/len", data=b"x" * POST_BYTES,
                                 headers={"Content-Type": "application/octet-stream"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        body = resp.read()
    if resp.status != 200 or body.strip() != str(POST_BYTES).encode():
        raise RuntimeError(f"POST /len with {POST_BYTES} bytes answered {resp.status} "
                           f"{body[:60]!r}, expected {POST_BYTES}")


def measure(server, args):
    run_wrk(server.port, args.connections, args.warmup, args.suite)  # warm-up, discarded
    before = tree_ticks(server.proc.pid)
    out = run_wrk(server.port, args.connections, args.duration, args.suite)
    after = tree_ticks(server.proc.pid)
    result = parse_wrk(out)
    result["cpu_s"] = (after - before) / CLK_TCK
    result["cpu_us_per_req"] = (result["cpu_s"] * 1e6 / result["requests"]
                                if result["requests"] else None)
    return result


# ---------------------------------------------------------------- peers

def pick_python(requested):
    if requested:
        return requested
    pyenv = Path(os.environ.get("PYENV_ROOT", "/root/.pyenv")) / "versions"
    for cand in sorted(pyenv.glob("3.12.*"), reverse=True):
        exe = cand / "bin" / "python3"
        if exe.exists():
            return str(exe)
    return "/usr/bin/python3"


def ensure_venv(python):
    """Create/refresh .venv-bench; return {package: error} for what failed to install."""
    stamp = VENV / ".requirements.sha256"
    want = hashlib.sha256(("\n".join(PEER_REQUIREMENTS) + python).encode()).hexdigest()
    if stamp.exists() and stamp.read_text().strip() == want and (VENV / "bin/python").exists():
        return {}
    log(f"setting up {VENV} from {python} ...")
    if VENV.exists():
        shutil.rmtree(VENV)
    r = subprocess.run([python, "-m", "venv", str(VENV)], capture_output=True, text=True)
    if r.returncode != 0:
        return {req: f"venv: {r.stderr.strip()}" for req in PEER_REQUIREMENTS}
    pip = [str(VENV / "bin/python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    r = subprocess.run(pip + PEER_REQUIREMENTS, capture_output=True, text=True)
    failed = {}
    if r.returncode != 0:  # install one by one, so one bad package skips only its server
        for req in PEER_REQUIREMENTS:
            one = subprocess.run(pip + [req], capture_output=True, text=True)
            if one.returncode != 0:
                failed[req.split("==")[0]] = (one.stderr.strip().splitlines() or ["?"])[-1]
    if not failed:
        stamp.write_text(want + "\n")
    return failed


def version_of(exe_args):
    try:
        r = subprocess.run(exe_args, capture_output=True, text=True, timeout=20)
        return (r.stdout.strip() or r.stderr.strip()).splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "?"


# ---------------------------------------------------------------- servers

def server_specs(args, tmp):
    """name -> (cmd builder(port) -> argv, cwd, env, why-skipped-or-None)."""
    w = str(args.workers)
    vbin = VENV / "bin"
    stem = SUITES[args.suite][2]
    nginx_why = None if shutil.which("nginx") else "nginx not installed"
    if args.suite == "post" and not nginx_why and not NGINX_ECHO_MODULE.exists():
        nginx_why = (f"--suite post needs nginx to read the body; its echo module "
                     f"({NGINX_ECHO_MODULE}, Debian libnginx-mod-http-echo) is not installed")
    rm_bin = Path(args.build)
    rm_bin = (rm_bin if rm_bin.is_absolute() else ROOT / rm_bin) / "ringmaster"
    specs = {
        "ringmaster": (lambda p: [str(rm_bin), "-b", f"127.0.0.1:{p}", "-w", w,
                                  "--log-level", "warn", str(Path(tmp) / f"rm_{stem}.py")],
                       None if rm_bin.exists() else f"{rm_bin} not built (scripts/build.sh)"),
        "nginx": (lambda p: ["nginx", "-e", f"{tmp}/nginx-error.log", "-p", tmp,
                             "-c", write_nginx_conf(tmp, p, args.workers, args.suite)],
                  nginx_why),
        "granian-rsgi": (lambda p: [str(vbin / "granian"), "--interface", "rsgi", "--host",
                                    "127.0.0.1", "--port", str(p), "--workers", w,
                                    "--http", "1", "--no-ws", "--log-level", "warning",
                                    f"rsgi_{stem}:app"], None),
        "granian-wsgi": (lambda p: [str(vbin / "granian"), "--interface", "wsgi", "--host",
                                    "127.0.0.1", "--port", str(p), "--workers", w,
                                    "--http", "1", "--no-ws", "--log-level", "warning",
                                    f"wsgi_{stem}:app"], None),
        "uvicorn": (lambda p: [str(vbin / "uvicorn"), f"asgi_{stem}:app", "--host", "127.0.0.1",
                               "--port", str(p), "--workers", w, "--http", "httptools",
                               "--loop", "uvloop", "--lifespan", "off", "--no-access-log",
                               "--log-level", "warning"], None),
        "gunicorn": (lambda p: [str(vbin / "gunicorn"), "-w", w, "-k", "sync", "-b",
                                f"127.0.0.1:{p}", "--log-level", "warning", f"wsgi_{stem}:app"],
                     None),
    }
    return specs


def write_nginx_conf(tmp, port, workers, suite="hello"):
    path = Path(tmp) / "nginx.conf"
    post = suite == "post"
    path.write_text(NGINX_CONF.format(
        tmp=tmp, port=port, workers=workers,
        modules=f"load_module {NGINX_ECHO_MODULE};\n" if post else "",
        locations=NGINX_POST_LOCATION.format() if post else ""))
    return str(path)


# ---------------------------------------------------------------- report

def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def report(best, order, rm_name="ringmaster"):
    rm = best.get(rm_name)
    lines = ["| server | req/s | p50 ms | p99 ms | CPU µs/req | errors | ringmaster req/s ÷ this "
             "| ringmaster CPU/req ÷ this |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name in order:
        r = best.get(name)
        if r is None:
            continue
        rps_ratio = cpu_ratio = None
        if rm:
            rps_ratio = rm["rps"] / r["rps"] if r["rps"] else None
            if rm["cpu_us_per_req"] and r["cpu_us_per_req"]:
                cpu_ratio = rm["cpu_us_per_req"] / r["cpu_us_per_req"]
        lines.append(f"| {name} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
                     f"{fmt(r['cpu_us_per_req'], '.1f')} | {r['errors']} | "
                     f"{fmt(rps_ratio, '.2f')} | {fmt(cpu_ratio, '.2f')} |")
    return "\n".join(lines)


# ---------------------------------------------------------------- main

def main():
    argv = sys.argv[1:]
    if "--suite=pressure" in argv or any(a == "--suite" and b == "pressure"
                                         for a, b in zip(argv, argv[1:])):
        # Its own flags (the mix's sizes), servers and load generator: pressure_suite.py.
        import pressure_suite
        rest = [a for a in argv if a != "--suite=pressure"]
        if "--suite" in rest:
            i = rest.index("--suite")
            del rest[i:i + 2]
        return pressure_suite.main(rest)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run (10)")
    ap.add_argument("--warmup", type=int, default=2, help="warm-up seconds, discarded (2)")
    ap.add_argument("--suite", choices=sorted(SUITES) + ["wsgi", "asgi", "pressure"],
                    default="hello",
                    help="what wrk sends: hello (GET /, the default), pipeline (16 pipelined "
                         "GETs per write), post (1 MiB POST /len); or wsgi: WSGI servers "
                         "with a WSGI hello and a Flask JSON app (wsgi_suite.py); or asgi: "
                         "ASGI servers with an ASGI hello, a FastAPI JSON endpoint and a 10 ms "
                         "simulated-I/O endpoint at 512 connections (asgi_suite.py); or "
                         "pressure: normal clients' latency under slowloris, slow readers and "
                         "uploads (pressure_suite.py, its own flags: --suite pressure --help)")
    ap.add_argument("--connections", type=int,
                    help="wrk connections (64; 16 for --suite post)")
    ap.add_argument("--workers", type=int, default=1, help="worker processes per server (1)")
    ap.add_argument("--rounds", type=int, default=2,
                    help="times through the list, alternating direction (2)")
    ap.add_argument("--servers", default=",".join(ALL_SERVERS),
                    help="comma-separated subset of " + ",".join(ALL_SERVERS))
    ap.add_argument("--build", default="build", help="ringmaster build directory (build)")
    ap.add_argument("--python", help="interpreter for .venv-bench (default: pyenv 3.12)")
    ap.add_argument("--json", help="also write the results as JSON to this path")
    args = ap.parse_args()
    if args.suite in ("wsgi", "asgi"):
        # Their own servers and apps: wsgi_suite.py (granian, gunicorn, uWSGI),
        # asgi_suite.py (uvicorn, granian, gunicorn with uvicorn's worker).
        import asgi_suite
        import wsgi_suite
        args.connections = args.connections or 64
        if args.servers == ",".join(ALL_SERVERS):
            args.servers = None  # all of the suite's SERVERS
        return (wsgi_suite if args.suite == "wsgi" else asgi_suite).run(args)
    if args.connections is None:
        args.connections = SUITES[args.suite][3]

    if not shutil.which("wrk"):
        sys.exit("wrk not found: run scripts/install-deps.sh")
    wanted = [s.strip() for s in args.servers.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in ALL_SERVERS]
    if unknown:
        sys.exit(f"unknown server(s) {unknown}; choose from {ALL_SERVERS}")

    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    # SIGINT too: a shell that starts us in the background would have it ignored.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_term)

    machine = machine_info()
    skipped = {}
    runs = []
    tmp = tempfile.mkdtemp(prefix="ringmaster-bench-")
    try:
        for fname, src in APPS.items():
            (Path(tmp) / fname).write_text(textwrap.dedent(src).lstrip())

        python = pick_python(args.python)
        peers = [s for s in wanted if s not in ("ringmaster", "nginx")]
        versions = {}
        if peers:
            failed = ensure_venv(python)
            need = {"granian-rsgi": "granian", "granian-wsgi": "granian", "uvicorn": "uvicorn",
                    "gunicorn": "gunicorn"}
            for s in peers:
                pkg = need[s]
                if pkg in failed or (s == "uvicorn" and ("httptools" in failed
                                                         or "uvloop" in failed)):
                    skipped[s] = f"install failed: {failed.get(pkg) or failed}"
            versions["peers_python"] = version_of([str(VENV / "bin/python"), "--version"])
            vpy = str(VENV / "bin/python")
            for pkg in ("granian", "uvicorn", "gunicorn", "httptools", "uvloop"):
                versions[pkg] = version_of([vpy, "-c", "import importlib.metadata as m; "
                                            f"print(m.version('{pkg}'))"])
        versions["nginx"] = version_of(["nginx", "-v"])

        specs = server_specs(args, tmp)
        for name in wanted:
            why = specs[name][1]
            if why and name not in skipped:
                skipped[name] = why
        active = [s for s in wanted if s not in skipped]

        title = {"hello": "hello-world", "pipeline": "pipelined (depth 16) hello-world",
                 "post": f"{POST_BYTES // 1024} KiB POST"}[args.suite]
        log(f"# HTTP {title} benchmark\n")
        log(f"machine: {machine['nproc']} CPUs ({machine['usable_cpus']} usable), "
            f"{machine['cpu_model']}, Linux {machine['kernel']}; {machine['wrk']}")
        script, path = SUITES[args.suite][:2]
        wrk_script = f" -s {Path(script[0]).name} {path} -- {script[1]}" if script else ""
        log(f"settings: wrk -t1 -c{args.connections} -d{args.duration}s --latency{wrk_script}, "
            f"{args.warmup} s warm-up, {args.workers} worker(s) per server, {args.rounds} rounds")
        log("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
        for name, why in skipped.items():
            log(f"SKIP {name}: {why}")
        log("")

        for rnd in range(args.rounds):
            order = active if rnd % 2 == 0 else list(reversed(active))
            for name in order:
                if name in skipped:
                    continue
                port = free_port()
                cmd = specs[name][0](port)
                try:
                    server = start(name, cmd, port, tmp, tmp)
                except RuntimeError as exc:
                    skipped[name] = f"failed to start: {exc}"
                    log(f"SKIP {name}: failed to start: {exc}")
                    continue
                try:
                    check_suite(server, args.suite)
                    r = measure(server, args)
                except (RuntimeError, ValueError, OSError, subprocess.TimeoutExpired) as exc:
                    log(f"round {rnd + 1} {name}: measurement failed: {exc}")
                    r = None
                finally:
                    stop(server)
                if r:
                    r.update(server=name, round=rnd + 1)
                    runs.append(r)
                    log(f"round {rnd + 1} {name:13s} {r['rps']:10.0f} req/s  p50 "
                        f"{r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms  "
                        f"{fmt(r['cpu_us_per_req'], '.1f')} CPU µs/req  errors {r['errors']}")
                time.sleep(0.5)
    except KeyboardInterrupt:
        log("\ninterrupted: stopping servers")
        stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
        sys.exit(130)
    finally:
        stop_all()
        shutil.rmtree(tmp, ignore_errors=True)

    best = {}
    for r in runs:
        if r["server"] not in best or r["rps"] > best[r["server"]]["rps"]:
            best[r["server"]] = r
    log("\n## best of the rounds (each server's highest req/s run)\n")
    log(report(best, [s for s in wanted if s in best]))
    log("\nratios > 1 in the req/s column: ringmaster serves more; < 1 in the CPU column: "
        "ringmaster spends less CPU per request.")
    if "ringmaster" not in best:
        log("(ringmaster did not run: no ratios)")
    for name, why in skipped.items():
        log(f"skipped {name}: {why.splitlines()[0]}")

    if args.json:
        doc = {"machine": machine, "versions": versions,
               "settings": {k: getattr(args, k) for k in
                            ("suite", "duration", "warmup", "connections", "workers",
                             "rounds")},
               "runs": runs, "best": best, "skipped": skipped}
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
        log(f"\nJSON written to {args.json}")
    return 0 if runs else 1


if __name__ == "__main__":
    sys.exit(main())
