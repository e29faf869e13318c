#!/usr/bin/python3
"""Pressure benchmark: normal clients' latency while hostile clients load the server.

    /usr/bin/python3 bench/http/run.py --suite pressure [--duration 20] [--rounds 1]
                                       [--slowloris 2000] [--slow-readers 150]
                                       [--uploads 32] [--clients 8] [--json out.json]
                                       [--servers ringmaster-wsgi,granian-wsgi,...]
    (or bench/http/pressure_suite.py with the same flags)

For each server: start it (one worker process), check every endpoint, then
  1. baseline: the normal clients alone (pressure_load.py normal, --baseline
     seconds after a 1 s warm-up): p50 and p99 of their requests;
  2. the mix: the hostile clients (pressure_load.py hostile: --slowloris
     connections dribbling a partial head, --slow-readers reading a streamed
     --big-bytes answer at --read-rate each, --uploads concurrent POSTs of
     --upload-bytes) start; after --ramp seconds the normal clients run again
     for --duration seconds: success rate (non-2xx, resets, closes and
     timeouts are failures), p50 and p99 of the successful requests;
  3. the server's peak memory, summed over its whole process tree, sampled
     from /proc/PID/smaps_rollup every 0.25 s during the mix: PSS (a shared
     page split between the processes that map it) and RSS (counted in each);
     also its memory after the baseline, and its CPU seconds during the mix;
then stop it. The normal clients: --clients keep-alive connections, each a
closed loop of request, answer, --gap seconds pause, alternating GET /small
and POST /echo with a 35-byte JSON body.

Servers (one worker process each; what each is given beyond its defaults is
only what it needs to hold the connections, see SERVER_NOTES):
  WSGI app (pressure_wsgi.py, .venv-bench-wsgi): ringmaster-wsgi
    (--interface wsgi --threads 4), granian-wsgi, gunicorn-gthread (4 threads)
  ASGI app (pressure_asgi.py, .venv-bench-asgi): ringmaster-asgi
    (--interface asgi --loop uvloop), granian-asgi, uvicorn (httptools +
    uvloop), gunicorn-uvicorn (gunicorn with uvicorn's worker class)
Both apps answer the same endpoints with the same bytes. ringmaster's ratios
are taken against the peers that run the same app. The venvs are wsgi_suite.py's
and asgi_suite.py's (same pins); the servers run /usr/bin/python3.

The list runs --rounds times, alternating direction; with more than one
round, a table per round, then one with each server's median round (by
success, then loaded p99; of two, the worse); --json keeps every round.
"""

import argparse
import json
import os
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import asgi_suite  # noqa: E402
import run as base  # noqa: E402  bench/http/run.py: processes, /proc, machine facts
import wsgi_suite  # noqa: E402

ROOT = base.ROOT
LOAD = HERE / "pressure_load.py"
SERVERS = ["ringmaster-wsgi", "granian-wsgi", "gunicorn-gthread",
           "ringmaster-asgi", "granian-asgi", "uvicorn", "gunicorn-uvicorn"]
GROUP = {"ringmaster-wsgi": "wsgi", "granian-wsgi": "wsgi", "gunicorn-gthread": "wsgi",
         "ringmaster-asgi": "asgi", "granian-asgi": "asgi", "uvicorn": "asgi",
         "gunicorn-uvicorn": "asgi"}
SUITE_OF = {"wsgi": wsgi_suite, "asgi": asgi_suite}
NEEDS = {"granian-wsgi": "granian", "gunicorn-gthread": "gunicorn", "granian-asgi": "granian",
         "uvicorn": "uvicorn", "gunicorn-uvicorn": "gunicorn"}
SERVER_NOTES = {
    "ringmaster-wsgi": "--max-connections {n}; --threads 4 (as gunicorn gthread's 4 threads; "
                       "the default is 1)",
    "ringmaster-asgi": "--max-connections {n} (the default, 10,000, is already enough)",
    "granian-wsgi": "--backpressure {n} (default backlog/workers = 1024 connections per worker) "
                    "and --blocking-threads 512 (what the default backpressure would give it)",
    "granian-asgi": "--backpressure {n} (default 1024 connections per worker)",
    "gunicorn-gthread": "--worker-connections {n} (default 1000)",
    "uvicorn": "nothing (no connection limit by default)",
    "gunicorn-uvicorn": "nothing (uvicorn's worker sets no concurrency limit)",
}

APP_COMMON = '''
BIG = {big}
CHUNK = b"x" * 65536
SMALL = b"small answer\\n"
HELLO = b"Hello, world!\\n"
'''
APPS = {
    "pressure_wsgi.py": APP_COMMON + '''
import json


def stream():
    left = BIG
    while left:
        n = min(left, len(CHUNK))
        left -= n
        yield CHUNK[:n]


def app(environ, start_response):
    path = environ["PATH_INFO"]
    ctype = "text/plain"
    if path == "/echo":
        n = int(environ.get("CONTENT_LENGTH") or 0)
        data = json.loads(environ["wsgi.input"].read(n))
        body = json.dumps({{"ok": True, "n": data.get("n")}}).encode()
        ctype = "application/json"
    elif path == "/upload":
        n = int(environ.get("CONTENT_LENGTH") or 0)
        inp, got = environ["wsgi.input"], 0
        while got < n:
            part = inp.read(min(65536, n - got))
            if not part:
                break
            got += len(part)
        body = str(got).encode()
    elif path == "/big":
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(BIG))])
        return stream()
    elif path == "/small":
        body = SMALL
    else:
        body = HELLO
    start_response("200 OK", [("Content-Type", ctype), ("Content-Length", str(len(body)))])
    return [body]
''',
    "pressure_asgi.py": APP_COMMON + '''
import json


async def read_body(receive):
    chunks, more = [], True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    path = scope["path"]
    ctype = b"text/plain"
    if path == "/echo":
        data = json.loads(await read_body(receive))
        body = json.dumps({{"ok": True, "n": data.get("n")}}).encode()
        ctype = b"application/json"
    elif path == "/upload":
        got, more = 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            got += len(message.get("body", b""))
            more = message.get("more_body", False)
        body = str(got).encode()
    elif path == "/big":
        await send({{"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream"),
                                (b"content-length", str(BIG).encode())]}})
        left = BIG
        while left:
            n = min(left, len(CHUNK))
            left -= n
            await send({{"type": "http.response.body", "body": CHUNK[:n],
                        "more_body": left > 0}})
        return
    elif path == "/small":
        body = SMALL
    else:
        body = HELLO
    await send({{"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", ctype),
                            (b"content-length", str(len(body)).encode())]}})
    await send({{"type": "http.response.body", "body": body}})
''',
}


# ---------------------------------------------------------------- servers

def specs(args, tmp, conns):
    """name -> (argv builder(port), extra environment, why skipped or None)."""
    w = str(args.workers)
    n = str(conns)
    rm_bin = Path(args.build)
    rm_bin = (rm_bin if rm_bin.is_absolute() else ROOT / rm_bin) / "ringmaster"
    rm_why = None if rm_bin.exists() else f"{rm_bin} not built (scripts/build.sh)"
    wbin, abin = wsgi_suite.VENV / "bin", asgi_suite.VENV / "bin"
    wapp, aapp = str(Path(tmp) / "pressure_wsgi.py"), str(Path(tmp) / "pressure_asgi.py")
    extra = shlex.split(args.ringmaster_args or "")  # diagnosis only: not for the doc's runs
    rm = lambda p: [str(rm_bin), "-b", f"127.0.0.1:{p}", "-w", w, "--log-level", "warn",  # noqa
                    "--max-connections", n] + extra
    return {
        "ringmaster-wsgi": (lambda p: rm(p) + ["--interface", "wsgi", "--threads", "4", wapp],
                            {"VIRTUAL_ENV": str(wsgi_suite.VENV)}, rm_why),
        "ringmaster-asgi": (lambda p: rm(p) + ["--interface", "asgi", "--loop", "uvloop", aapp],
                            {"VIRTUAL_ENV": str(asgi_suite.VENV)}, rm_why),
        "granian-wsgi": (lambda p: [str(wbin / "granian"), "--interface", "wsgi", "--host",
                                    "127.0.0.1", "--port", str(p), "--workers", w, "--http", "1",
                                    "--no-ws", "--log-level", "warning", "--backpressure", n,
                                    "--blocking-threads", "512", "pressure_wsgi:app"], {}, None),
        "granian-asgi": (lambda p: [str(abin / "granian"), "--interface", "asgi", "--host",
                                    "127.0.0.1", "--port", str(p), "--workers", w, "--http", "1",
                                    "--loop", "uvloop", "--no-ws", "--log-level", "warning",
                                    "--backpressure", n, "pressure_asgi:app"], {}, None),
        "gunicorn-gthread": (lambda p: [str(wbin / "gunicorn"), "-w", w, "-k", "gthread",
                                        "--threads", "4", "--worker-connections", n,
                                        "--log-level", "warning", "-b", f"127.0.0.1:{p}",
                                        "pressure_wsgi:app"], {}, None),
        "uvicorn": (lambda p: [str(abin / "uvicorn"), "--host", "127.0.0.1", "--port", str(p),
                               "--workers", w, "--http", "httptools", "--loop", "uvloop",
                               "--no-access-log", "--log-level", "warning", "--lifespan", "off",
                               "pressure_asgi:app"], {}, None),
        "gunicorn-uvicorn": (lambda p: [str(abin / "gunicorn"), "-w", w, "-k",
                                        "uvicorn_worker.UvicornWorker", "--log-level", "warning",
                                        "-b", f"127.0.0.1:{p}", "pressure_asgi:app"], {}, None),
    }


def check_endpoints(port, args):
    """Every endpoint the mix uses answers as it should, before anything is measured."""
    def req(path, data=None, headers=None):
        r = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data,
                                   headers=headers or {})
        with urllib.request.urlopen(r, timeout=20) as resp:
            return resp.status, resp.read()
    checks = [
        ("GET /small", req("/small"), b"small answer\n"),
        ("POST /echo", req("/echo", b'{"user":"ada","op":"ping","n":1234}',
                           {"Content-Type": "application/json"}), None),
        ("POST /upload", req("/upload", b"u" * args.upload_bytes,
                             {"Content-Type": "application/octet-stream"}),
         str(args.upload_bytes).encode()),
    ]
    for what, (status, body), want in checks:
        if status != 200 or (want is not None and body.strip() != want.strip()):
            raise RuntimeError(f"{what} answered {status} {body[:80]!r}, expected {want!r}")
    status, body = req("/echo", b'{"user":"ada","op":"ping","n":1234}',
                       {"Content-Type": "application/json"})
    if json.loads(body).get("n") != 1234:
        raise RuntimeError(f"POST /echo answered {body[:80]!r}")
    status, body = req("/big")
    if status != 200 or len(body) != args.big_bytes:
        raise RuntimeError(f"GET /big answered {status} with {len(body)} bytes, "
                           f"expected {args.big_bytes}")


# ---------------------------------------------------------------- measuring

def tree_mem(pid):
    """(RSS, PSS) in bytes, summed over pid and all its descendants. RSS counts a
    page shared by two processes (ringmaster's shared region, a forked worker's
    copy-on-write pages) twice; PSS splits it between them, so its sum is the
    memory the server holds."""
    rss = pss = 0
    for (p, _start) in base.process_tree(pid):
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1]) * 1024
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1]) * 1024
        except (OSError, IndexError, ValueError):
            pass
    return rss, pss


class MemSampler(threading.Thread):
    def __init__(self, pid, every=0.25):
        super().__init__(daemon=True)
        self.pid, self.every, self.rss, self.pss, self.samples = pid, every, 0, 0, 0
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set():
            rss, pss = tree_mem(self.pid)
            self.rss, self.pss = max(self.rss, rss), max(self.pss, pss)
            self.samples += 1
            self.halt.wait(self.every)


def load_cmd(role, port, seconds, args, warmup=0.0):
    cmd = [sys.executable, str(LOAD), role, "--port", str(port), "--seconds", str(seconds)]
    if role == "normal":
        cmd += ["--warmup", str(warmup), "--clients", str(args.clients), "--gap", str(args.gap),
                "--timeout", str(args.timeout)]
    else:
        cmd += ["--slowloris", str(args.slowloris), "--slow-readers", str(args.slow_readers),
                "--big-bytes", str(args.big_bytes), "--read-rate", str(args.read_rate),
                "--uploads", str(args.uploads), "--upload-bytes", str(args.upload_bytes),
                "--upload-rate", str(args.upload_rate)]
    return cmd


def finish_load(proc, what, timeout):
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise RuntimeError(f"{what} load generator did not end in time")
    if proc.returncode != 0:
        raise RuntimeError(f"{what} load generator failed ({proc.returncode}): {err[-2000:]}")
    return json.loads(out.strip().splitlines()[-1])


def percentile(sorted_vals, q):
    if not sorted_vals:
        return None
    k = max(0, min(len(sorted_vals) - 1, int(round(q / 100.0 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[k]


def summarize(raw):
    lat = sorted(raw.pop("lat_ms"))
    failed = sum(raw["fails"].values())
    total = raw["ok"] + failed
    raw.update(requests=total, failed=failed,
               success=(raw["ok"] / total if total else 0.0),
               p50_ms=percentile(lat, 50), p99_ms=percentile(lat, 99),
               max_ms=lat[-1] if lat else None)
    return raw


CHILDREN = []  # load generators running: killed on any exit


def measure(server, args):
    port, pid = server.port, server.proc.pid
    # 1. baseline
    p = subprocess.Popen(load_cmd("normal", port, args.baseline, args, warmup=1.0),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    CHILDREN.append(p)
    baseline = summarize(finish_load(p, "normal (baseline)", args.baseline + args.timeout + 30))
    CHILDREN.remove(p)
    rss_idle, pss_idle = tree_mem(pid)
    # 2. the mix
    sampler = MemSampler(pid)
    sampler.start()
    cpu0 = base.tree_ticks(pid)
    hostile_s = args.ramp + args.duration + args.timeout + 30  # a bound; SIGTERM ends it
    h = subprocess.Popen(load_cmd("hostile", port, hostile_s, args),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    CHILDREN.append(h)
    try:
        time.sleep(args.ramp)
        p = subprocess.Popen(load_cmd("normal", port, args.duration, args),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        CHILDREN.append(p)
        loaded = summarize(finish_load(p, "normal (under the mix)",
                                       args.duration + args.timeout + 30))
        CHILDREN.remove(p)
        cpu1 = base.tree_ticks(pid)
        h.send_signal(signal.SIGTERM)  # the mix lasts as long as the normal clients
        hostile = finish_load(h, "hostile", 30)
        CHILDREN.remove(h)
    finally:
        sampler.halt.set()
        sampler.join()
    alive = server.proc.poll() is None
    return {"baseline": baseline, "loaded": loaded, "hostile": hostile,
            "rss_idle_mib": rss_idle / 2**20, "rss_peak_mib": sampler.rss / 2**20,
            "pss_idle_mib": pss_idle / 2**20, "pss_peak_mib": sampler.pss / 2**20,
            "mem_samples": sampler.samples, "cpu_s_mix": (cpu1 - cpu0) / base.CLK_TCK,
            "server_alive_after": alive}


# ---------------------------------------------------------------- report

def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def ratio(a, b):
    return a / b if a is not None and b else None


def report(best, order):
    lines = ["| server | unloaded p50 ms | unloaded p99 ms | loaded success | loaded p50 ms | "
             "loaded p99 ms | p99 loaded ÷ unloaded | peak PSS MiB (RSS sum) | server CPU s | "
             "slowloris open at end / closed by server | slow-read MiB | uploads ok/failed | "
             "ringmaster p99 ÷ this | ringmaster PSS ÷ this |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
             "| ---: | ---: |"]
    for name in order:
        r = best.get(name)
        if r is None:
            continue
        b, l, h = r["baseline"], r["loaded"], r["hostile"]
        rm = best.get(f"ringmaster-{GROUP[name]}")
        rp = rr = None
        if rm and rm is not r:
            rp = ratio(rm["loaded"]["p99_ms"], l["p99_ms"])
            rr = ratio(rm["pss_peak_mib"], r["pss_peak_mib"])
        lines.append(
            f"| {name} | {fmt(b['p50_ms'], '.2f')} | {fmt(b['p99_ms'], '.2f')} | "
            f"{100 * l['success']:.2f}% ({l['failed']} of {l['requests']}) | "
            f"{fmt(l['p50_ms'], '.2f')} | {fmt(l['p99_ms'], '.2f')} | "
            f"{fmt(ratio(l['p99_ms'], b['p99_ms']), '.1f')}x | {r['pss_peak_mib']:.0f} "
            f"({r['rss_peak_mib']:.0f}) | "
            f"{r['cpu_s_mix']:.1f} | {h['slowloris_open_at_end']} / "
            f"{h['slowloris_closed_by_server']} | "
            f"{h['reader_bytes'] / 2**20:.0f} | {h['upload_ok']}/{h['upload_errors']} | "
            f"{fmt(rp, '.2f')} | {fmt(rr, '.2f')} |")
    return "\n".join(lines)


def verdicts(best):
    out = []
    for group in ("wsgi", "asgi"):
        rm = best.get(f"ringmaster-{group}")
        if not rm:
            continue
        b, l = rm["baseline"], rm["loaded"]
        within = (l["p99_ms"] is not None and b["p99_ms"]
                  and l["p99_ms"] < 10 * b["p99_ms"])
        full = l["failed"] == 0
        peers = [n for n in best if GROUP[n] == group and n != f"ringmaster-{group}"]
        behind = [n for n in peers
                  if best[n]["loaded"]["success"] > l["success"]
                  or (best[n]["loaded"]["success"] == l["success"]
                      and (best[n]["loaded"]["p99_ms"] or 1e18) < (l["p99_ms"] or 1e18))]
        out.append(f"ringmaster-{group}: p99 under load {fmt(l['p99_ms'], '.2f')} ms = "
                   f"{fmt(ratio(l['p99_ms'], b['p99_ms']), '.1f')}x unloaded "
                   f"({'under' if within else 'NOT under'} 10x); success "
                   f"{100 * l['success']:.2f}% ({'100%' if full else 'NOT 100%'}); "
                   + (f"ahead of every peer measured ({', '.join(peers) or 'none'})"
                      if not behind else f"NOT ahead of {', '.join(behind)}")
                   + f" -> target {'met' if within and full and not behind else 'NOT met'}")
    return out


# ---------------------------------------------------------------- main

def raise_nofile(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        target = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def kill_children():
    for p in list(CHILDREN):
        if p.poll() is None:
            p.kill()
            p.wait()
        CHILDREN.remove(p)


def run(args):
    wanted = [s.strip() for s in (args.servers or ",".join(SERVERS)).split(",") if s.strip()]
    unknown = [s for s in wanted if s not in SERVERS]
    if unknown:
        sys.exit(f"unknown pressure server(s) {unknown}; choose from {SERVERS}")
    hostile_conns = args.slowloris + args.slow_readers + args.uploads
    conns = hostile_conns + args.clients + 1024  # what every server is allowed to hold
    need_fds = 2 * (hostile_conns + args.clients) + 512  # client ends and server ends
    soft, hard = raise_nofile(need_fds)
    if soft < need_fds:
        sys.exit(f"RLIMIT_NOFILE soft {soft} / hard {hard}: need {need_fds} descriptors for "
                 f"{hostile_conns} hostile connections (lower --slowloris)")

    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_term)

    machine = base.machine_info()
    skipped, runs, versions = {}, [], {}
    tmp = tempfile.mkdtemp(prefix="ringmaster-bench-pressure-")
    try:
        for fname, src in APPS.items():
            (Path(tmp) / fname).write_text(textwrap.dedent(src.format(big=args.big_bytes))
                                           .lstrip())
        for group in sorted({GROUP[s] for s in wanted}):
            suite = SUITE_OF[group]
            failed = wsgi_suite.ensure_venv(suite)
            for name in wanted:
                if GROUP[name] == group and NEEDS.get(name) in failed:
                    skipped[name] = f"pip install {NEEDS[name]} failed: {failed[NEEDS[name]]}"
            vpy = str(suite.VENV / "bin/python")
            versions[f"python ({suite.VENV.name})"] = base.version_of([vpy, "--version"])
            for pkg in ("granian", "gunicorn", "uvicorn", "uvicorn-worker", "uvloop",
                        "httptools"):
                names = {r.split("==")[0].split("[")[0].lower() for r in suite.REQUIREMENTS}
                if pkg in names and pkg not in failed:
                    versions[f"{pkg} ({group})"] = base.version_of(
                        [vpy, "-c", f"import importlib.metadata as m; print(m.version('{pkg}'))"])
        table = specs(args, tmp, conns)
        for s in wanted:
            if table[s][2] and s not in skipped:
                skipped[s] = table[s][2]
        active = [s for s in wanted if s not in skipped]

        base.log("# Pressure benchmark\n")
        base.log(f"machine: {machine['nproc']} CPUs ({machine['usable_cpus']} usable), "
                 f"{machine['cpu_model']}, Linux {machine['kernel']}; load average "
                 f"{os.getloadavg()[0]:.2f}; RLIMIT_NOFILE {soft}")
        base.log(f"normal clients: {args.clients} keep-alive connections, {args.gap * 1000:.0f} ms "
                 f"between requests, GET /small and POST /echo (35 B JSON) alternating, "
                 f"timeout {args.timeout:g} s; baseline {args.baseline} s, under the mix "
                 f"{args.duration} s after a {args.ramp} s ramp")
        base.log(f"mix: {args.slowloris} slowloris, {args.slow_readers} slow readers of "
                 f"{args.big_bytes} B at {args.read_rate:.0f} B/s, {args.uploads} uploads of "
                 f"{args.upload_bytes} B at "
                 f"{'full speed' if not args.upload_rate else f'{args.upload_rate:.0f} B/s'}; "
                 f"servers may hold {conns} connections; {args.workers} worker(s) each; "
                 f"{args.rounds} round(s)")
        base.log("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
        for name, why in skipped.items():
            base.log(f"SKIP {name}: {why}")
        base.log("")

        for rnd in range(args.rounds):
            for name in (active if rnd % 2 == 0 else list(reversed(active))):
                if name in skipped:
                    continue
                build, env, _ = table[name]
                port = base.free_port()
                try:
                    server = base.start(name, build(port), port, tmp, tmp, env=env)
                    check_endpoints(port, args)
                except (RuntimeError, OSError) as exc:
                    if base.RUNNING and base.RUNNING[-1].port == port:
                        base.stop(base.RUNNING[-1])
                    skipped[name] = f"failed to start or answer: {exc}"
                    base.log(f"SKIP {name}: {skipped[name]}")
                    continue
                try:
                    r = measure(server, args)
                except (RuntimeError, ValueError, OSError) as exc:
                    base.log(f"round {rnd + 1} {name}: measurement failed: {exc}")
                    r = None
                finally:
                    kill_children()
                    base.stop(server)
                if r:
                    r.update(server=name, group=GROUP[name], round=rnd + 1)
                    runs.append(r)
                    b, l, h = r["baseline"], r["loaded"], r["hostile"]
                    base.log(f"round {rnd + 1} {name:16s} unloaded p50/p99 "
                             f"{fmt(b['p50_ms'], '.2f')}/{fmt(b['p99_ms'], '.2f')} ms "
                             f"({b['requests']} req) | mix: success "
                             f"{100 * l['success']:.2f}% of {l['requests']} "
                             f"(fails {l['fails']}), p50/p99 {fmt(l['p50_ms'], '.2f')}/"
                             f"{fmt(l['p99_ms'], '.2f')} ms, max {fmt(l['max_ms'], '.0f')} ms | "
                             f"PSS {r['pss_idle_mib']:.0f} -> peak {r['pss_peak_mib']:.0f} MiB "
                             f"(RSS sum {r['rss_peak_mib']:.0f}), "
                             f"CPU {r['cpu_s_mix']:.1f} s | slowloris open "
                             f"{h['slowloris_open_at_end']} (max {h['slowloris_open_max']}, "
                             f"closed by server {h['slowloris_closed_by_server']}), slow-read "
                             f"{h['reader_bytes'] / 2**20:.0f} MiB ({h['reader_answers']} whole), "
                             f"uploads ok {h['upload_ok']} failed {h['upload_errors']}"
                             + ("" if r["server_alive_after"] else " | SERVER DIED"))
                time.sleep(1.0)
    except KeyboardInterrupt:
        base.log("\ninterrupted: stopping servers")
        kill_children()
        base.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
        sys.exit(130)
    finally:
        kill_children()
        base.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)

    # Per server, the median round: rounds sorted by (success, loaded p99), worst
    # last; of an even number, the worse of the middle two. Every round is kept too.
    best = {}
    for n in wanted:
        mine = sorted((r for r in runs if r["server"] == n),
                      key=lambda r: (-r["loaded"]["success"], r["loaded"]["p99_ms"] or 1e18))
        if mine:
            best[n] = mine[len(mine) // 2]
    order = [s for s in wanted if s in best]
    rounds = sorted({r["round"] for r in runs})
    if len(rounds) > 1:
        for rnd in rounds:
            these = {r["server"]: r for r in runs if r["round"] == rnd}
            base.log(f"\n## round {rnd}\n")
            base.log(report(these, order))
            for line in verdicts(these):
                base.log("  " + line)
    base.log("\n## normal clients, unloaded and under the mix ("
             + ("each server's median round" if len(rounds) > 1 else "one round") + ")\n")
    base.log(report(best, order))
    base.log("\nloaded p99 ratio < 1: ringmaster's normal clients wait less; PSS ratio < 1: "
             "ringmaster holds less memory. Ratios against the peers running the same app.")
    base.log("target (issue #14): loaded p99 < 10x unloaded p99, 100% success, ahead of "
             "every peer:")
    for line in verdicts(best):
        base.log("  " + line)
    for name, why in skipped.items():
        base.log(f"skipped {name}: {why.splitlines()[0]}")
    base.log("what each server was given to hold the connections:")
    for name in wanted:
        base.log(f"  {name}: {SERVER_NOTES[name].format(n=conns)}")
    if args.json:
        doc = {"suite": "pressure", "machine": machine, "versions": versions,
               "settings": {k: getattr(args, k) for k in
                            ("duration", "baseline", "ramp", "clients", "gap", "timeout",
                             "slowloris", "slow_readers", "big_bytes", "read_rate", "uploads",
                             "upload_bytes", "upload_rate", "workers", "rounds")},
               "server_connections": conns, "server_notes": SERVER_NOTES,
               "runs": runs, "best": best, "best_is": "median round per server",
               "skipped": skipped, "verdicts": verdicts(best)}
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
        base.log(f"\nJSON written to {args.json}")
    return 0 if runs else 1


def parser():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=20,
                    help="seconds the normal clients run under the mix (20)")
    ap.add_argument("--baseline", type=float, default=5,
                    help="seconds the normal clients run alone first (5, after 1 s warm-up)")
    ap.add_argument("--ramp", type=float, default=3,
                    help="seconds between starting the mix and measuring (3)")
    ap.add_argument("--clients", type=int, default=8, help="normal keep-alive clients (8)")
    ap.add_argument("--gap", type=float, default=0.02,
                    help="seconds a normal client waits between requests (0.02)")
    ap.add_argument("--timeout", type=float, default=5.0,
                    help="a normal request without its whole answer after this many "
                         "seconds is a failure (5)")
    ap.add_argument("--slowloris", type=int, default=2000, help="slowloris connections (2000)")
    ap.add_argument("--slow-readers", type=int, default=150, help="slow readers (150)")
    ap.add_argument("--big-bytes", type=int, default=2 * 1024 * 1024,
                    help="size of the streamed answer slow readers ask for (2 MiB)")
    ap.add_argument("--read-rate", type=float, default=100_000,
                    help="bytes per second each slow reader reads (100000)")
    ap.add_argument("--uploads", type=int, default=32, help="concurrent uploads (32)")
    ap.add_argument("--upload-bytes", type=int, default=1024 * 1024,
                    help="body of each upload (1 MiB: ringmaster's default --max-body-size)")
    ap.add_argument("--upload-rate", type=float, default=1024 * 1024,
                    help="bytes per second each upload sends at most; 0: as fast as the "
                         "socket takes them (1 MiB/s)")
    ap.add_argument("--workers", type=int, default=1, help="worker processes per server (1)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="times through the list, alternating direction (1)")
    ap.add_argument("--servers", help="comma-separated subset of " + ",".join(SERVERS))
    ap.add_argument("--build", default="build", help="ringmaster build directory (build)")
    ap.add_argument("--ringmaster-args",
                    help="extra flags for ringmaster, to test a hypothesis (e.g. "
                         "'--chunks 16384'); the peers get nothing alike, so not for comparisons")
    ap.add_argument("--json", help="also write the results as JSON to this path")
    return ap


def main(argv=None):
    return run(parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
