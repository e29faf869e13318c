#!/usr/bin/python3
"""Worker modes benchmark: throughput per mode x threads x workers, with peers.

    /usr/bin/python3 bench/modes/run.py [--duration 5] [--warmup 1] [--rounds 2]
                                        [--threads 1,2,4] [--workers 1,2]
                                        [--handlers cpu,io] [--servers NAME,...]
                                        [--build build-modes] [--json out.json]

Handlers, the same in every server:
  cpu        examples/cpu.py's work(): about 1 ms of pure-Python integer
             arithmetic that holds the interpreter the whole time (wrk -c16)
  io         time.sleep(0.01): 10 ms waiting without holding anything (wrk -c64)
  cpu-local  (not run by default) work() with its modulus made per call instead
             of the code constant 1000003, which the threads of a free-threaded
             3.13 otherwise all reference-count (docs/benchmarks.md)

Servers (each with W workers of T threads):
  rm-gil               ringmaster --python 3.13 --mode gil
  rm-subinterpreters   ringmaster --python 3.13 --mode subinterpreters
  rm-free-threaded     ringmaster --python 3.13t --mode free-threaded
  gunicorn-gthread     gunicorn -k gthread -w W --threads T (WSGI)
  granian-wsgi         granian --interface wsgi --workers W --blocking-threads T
The three ringmaster modes embed the same CPython 3.13 (3.13.0 from pyenv;
3.13t is Debian's 3.13 sources built free-threaded by scripts/build-python-ft.sh),
so differences between them are the mode's. The peers run on .venv-bench
(pyenv 3.12, as bench/http/run.py sets it up).

For every (handler, workers, threads) the servers run one after the other
(alternating direction each round, best round kept), each measured with
`wrk -t1 -cN -dD --latency` after a warm-up; the server's CPU time per
request (its whole process tree) is recorded too.

The machine may be shared (other builds and tests on the same 2 CPUs), so
each measurement waits until the CPUs have been 90% idle for a second (up to
--quiet-wait seconds), and records the CPU time used meanwhile by processes
that are neither the server nor wrk ("foreign"); a run with more than 15% of
a CPU of foreign work is repeated (twice at most) and flagged in the JSON. The ringmaster binaries come
from --build, configured and built here when missing, with
-DRINGMASTER_EXTRA_PYTHONS for the 3.13 and 3.13t workers.

Prints a table per handler and the scaling efficiency from 1 to 2 threads in
one worker (req/s at T=2 divided by twice req/s at T=1); --json keeps every
run for bench/modes/plot.py.
"""

import argparse
import importlib.util
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HTTP_BENCH = ROOT / "bench" / "http" / "run.py"

_spec = importlib.util.spec_from_file_location("ringmaster_http_bench", HTTP_BENCH)
hb = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(hb)

ALL_SERVERS = ["rm-gil", "rm-subinterpreters", "rm-free-threaded", "gunicorn-gthread",
               "granian-wsgi"]
RM_MODES = {"rm-gil": ("3.13", "gil"), "rm-subinterpreters": ("3.13", "subinterpreters"),
            "rm-free-threaded": ("3.13t", "free-threaded")}
CONNECTIONS = {"cpu": 16, "io": 64, "cpu-local": 16}
PATHS = {"cpu": "/cpu", "io": "/io", "cpu-local": "/cpu-local"}

APPS = {
    "rm_modes.py": '''
        # ringmaster native interface: / Hello, /cpu ~1 ms of Python, /io 10 ms sleep
        import sys
        import time

        sys.path.insert(0, {examples!r})
        from cpu import DEFAULT_N, work


        def work_local(n):
            m = int("1000003")  # made by the calling thread, not shared
            acc = 0
            for i in range(n):
                acc = (acc * 31 + i) % m
            return acc


        def app(request):
            path = request.path
            if path == "/cpu":
                return f"{{work(DEFAULT_N)}}\\n"
            if path == "/cpu-local":
                return f"{{work_local(DEFAULT_N)}}\\n"
            if path == "/io":
                time.sleep(0.01)
                return b"slept\\n"
            return b"Hello, world!\\n"
    ''',
    "wsgi_modes.py": '''
        # The same app for WSGI servers (gunicorn, granian)
        import sys
        import time

        sys.path.insert(0, {examples!r})
        from cpu import DEFAULT_N, work


        def app(environ, start_response):
            path = environ["PATH_INFO"]
            if path == "/cpu":
                body = f"{{work(DEFAULT_N)}}\\n".encode()
            elif path == "/io":
                time.sleep(0.01)
                body = b"slept\\n"
            else:
                body = b"Hello, world!\\n"
            start_response("200 OK", [("Content-Type", "text/plain"),
                                      ("Content-Length", str(len(body)))])
            return [body]
    ''',
}


def log(msg=""):
    print(msg, flush=True)


# ---------------------------------------------------------------- interpreters, build

def pyenv_python(minor):
    """The newest pyenv CPython 3.<minor>.x with a GIL, or None."""
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    found = []
    for cand in root.glob(f"3.{minor}.*"):
        exe = cand / "bin" / f"python3.{minor}"
        parts = cand.name.split(".")
        if exe.exists() and len(parts) == 3 and parts[2].isdigit():
            found.append((int(parts[2]), str(exe)))
    return max(found)[1] if found else None


def free_threaded_python():
    r = subprocess.run([str(ROOT / "scripts" / "build-python-ft.sh")], stdout=subprocess.PIPE,
                       text=True)
    lines = r.stdout.strip().splitlines()
    return lines[-1] if r.returncode == 0 and lines else None


def ensure_build(build, need_tags):
    """Configure and build `build` with workers for the tags asked for; return
    {tag: why} for the workers that could not be had."""
    missing = [t for t in need_tags if not (build / f"ringmaster-worker-{t}").exists()]
    if (build / "ringmaster").exists() and not missing:
        return {}
    pythons, why = [], {}
    for tag in need_tags:
        py = pyenv_python(13) if tag == "3.13" else free_threaded_python()
        if py:
            pythons.append(py)
        else:
            why[tag] = ("no pyenv CPython 3.13" if tag == "3.13"
                        else "scripts/build-python-ft.sh failed")
    log(f"building {build} with workers for {', '.join(pythons)} ...")
    cfg = subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build), "-DRINGMASTER_TESTS=OFF",
                          "-DRINGMASTER_SANITIZE=OFF", "-DRINGMASTER_TSAN=OFF",
                          "-DRINGMASTER_EXTRA_PYTHONS=" + ";".join(pythons)],
                         stdout=subprocess.DEVNULL)
    if cfg.returncode != 0 or subprocess.run(
            ["cmake", "--build", str(build), f"-j{os.cpu_count() or 2}"],
            stdout=subprocess.DEVNULL).returncode != 0:
        return {t: f"cannot build {build}" for t in need_tags}
    for tag in need_tags:
        if not (build / f"ringmaster-worker-{tag}").exists():
            why.setdefault(tag, f"{build}/ringmaster-worker-{tag} was not built")
    return why


# ---------------------------------------------------------------- servers

def command(name, port, workers, threads, build, tmp):
    w, t = str(workers), str(threads)
    vbin = hb.VENV / "bin"
    if name in RM_MODES:
        python, mode = RM_MODES[name]
        return [str(build / "ringmaster"), "-b", f"127.0.0.1:{port}", "-w", w, "--threads", t,
                "--python", python, "--mode", mode, "--log-level", "warn",
                str(Path(tmp) / "rm_modes.py")]
    if name == "gunicorn-gthread":
        return [str(vbin / "gunicorn"), "-k", "gthread", "-w", w, "--threads", t, "-b",
                f"127.0.0.1:{port}", "--log-level", "warning", "--backlog", "2048",
                "wsgi_modes:app"]
    if name == "granian-wsgi":
        return [str(vbin / "granian"), "--interface", "wsgi", "--host", "127.0.0.1", "--port",
                str(port), "--workers", w, "--blocking-threads", t, "--runtime-threads", "1",
                "--http", "1", "--no-ws", "--log-level", "warning", "wsgi_modes:app"]
    raise ValueError(name)


FOREIGN_MAX = 0.15  # CPUs of other processes' work tolerated during a run


def cpu_ticks():
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def wait_quiet(limit_s):
    """Wait until the CPUs were at least 90% idle over a second; returns the
    seconds waited (limit_s at most)."""
    started = time.monotonic()
    while time.monotonic() - started < limit_s:
        b0, t0 = cpu_ticks()
        time.sleep(1.0)
        b1, t1 = cpu_ticks()
        if t1 > t0 and (b1 - b0) / (t1 - t0) < 0.10:
            break
    return time.monotonic() - started


def measure(server, handler, duration, warmup):
    url = f"http://127.0.0.1:{server.port}{PATHS[handler]}"
    base = ["wrk", "-t1", f"-c{CONNECTIONS[handler]}", "--latency"]
    subprocess.run(base + [f"-d{warmup}s", url], capture_output=True, timeout=warmup + 60)
    before = hb.tree_ticks(server.proc.pid)
    busy0, _ = cpu_ticks()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    proc = subprocess.run(base + [f"-d{duration}s", url], capture_output=True, text=True,
                          timeout=duration + 60)
    elapsed = time.monotonic() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy1, _ = cpu_ticks()
    after = hb.tree_ticks(server.proc.pid)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr or proc.stdout}")
    result = hb.parse_wrk(proc.stdout)
    result["cpu_s"] = (after - before) / hb.CLK_TCK
    result["cpu_us_per_req"] = (result["cpu_s"] * 1e6 / result["requests"]
                                if result["requests"] else None)
    wrk_s = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    foreign_s = (busy1 - busy0) / hb.CLK_TCK - result["cpu_s"] - wrk_s
    result["wrk_cpu_s"] = wrk_s
    result["foreign_cpus"] = max(0.0, foreign_s / elapsed)
    return result


def check_handler(port, handler):
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{PATHS[handler]}", timeout=10) as r:
        body = r.read()
    if r.status != 200 or not body.strip():
        raise RuntimeError(f"GET {PATHS[handler]} answered {r.status} {body[:60]!r}")


# ---------------------------------------------------------------- report

def best_runs(runs):
    """The highest req/s run per configuration, among runs without foreign
    load when there is one."""
    best = {}
    for r in runs:
        key = (r["handler"], r["server"], r["workers"], r["threads"])
        have = best.get(key)
        if (have is None or (have.get("noisy") and not r.get("noisy"))
                or (have.get("noisy") == r.get("noisy") and r["rps"] > have["rps"])):
            best[key] = r
    return best


def table(best, handler, servers, workers_list, threads_list):
    head = ["server", "W"] + [f"T={t} req/s" for t in threads_list] + ["1→2 threads",
                                                                       "CPU µs/req (T=1)"]
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join(["---"] * 2 + ["---:"] * (
        len(head) - 2)) + " |"]
    for name in servers:
        for w in workers_list:
            row = [name, str(w)]
            rps = {}
            for t in threads_list:
                r = best.get((handler, name, w, t))
                rps[t] = r["rps"] if r else None
                row.append(f"{r['rps']:,.0f}" if r else "-")
            if rps.get(1) and rps.get(2):
                row.append(f"{100 * rps[2] / (2 * rps[1]):.0f}%")
            else:
                row.append("-")
            r1 = best.get((handler, name, w, 1))
            row.append(f"{r1['cpu_us_per_req']:.0f}" if r1 and r1.get("cpu_us_per_req") else "-")
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=5, help="seconds per wrk run (5)")
    ap.add_argument("--warmup", type=int, default=1, help="warm-up seconds, discarded (1)")
    ap.add_argument("--rounds", type=int, default=2,
                    help="times through the servers, alternating direction (2)")
    ap.add_argument("--threads", default="1,2,4", help="threads per worker (1,2,4)")
    ap.add_argument("--workers", default="1,2", help="workers per server (1,2)")
    ap.add_argument("--handlers", default="cpu,io", help="cpu, io or both (cpu,io)")
    ap.add_argument("--servers", default=",".join(ALL_SERVERS),
                    help="comma-separated subset of " + ",".join(ALL_SERVERS))
    ap.add_argument("--build", default="build-modes",
                    help="ringmaster build directory, built here if incomplete (build-modes)")
    ap.add_argument("--quiet-wait", type=int, default=30,
                    help="seconds to wait for idle CPUs before each run (30)")
    ap.add_argument("--json", help="also write every run as JSON to this path")
    args = ap.parse_args()
    threads_list = [int(x) for x in args.threads.split(",")]
    workers_list = [int(x) for x in args.workers.split(",")]
    handlers = [h for h in args.handlers.split(",") if h]
    wanted = [s for s in args.servers.split(",") if s]
    bad = [s for s in wanted if s not in ALL_SERVERS] + [h for h in handlers if h not in PATHS]
    if bad:
        sys.exit(f"unknown server(s) or handler(s) {bad}")
    if not shutil.which("wrk"):
        sys.exit("wrk not found: run scripts/install-deps.sh")

    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_term)

    build = Path(args.build)
    build = build if build.is_absolute() else ROOT / build
    skipped = {}
    tags = sorted({RM_MODES[s][0] for s in wanted if s in RM_MODES})
    for tag, why in ensure_build(build, tags).items():
        for s in wanted:
            if s in RM_MODES and RM_MODES[s][0] == tag:
                skipped[s] = why
    versions = {}
    peers = [s for s in wanted if s not in RM_MODES]
    if peers:
        failed = hb.ensure_venv(hb.pick_python(None))
        for s in peers:
            pkg = s.split("-")[0]
            if pkg in failed:
                skipped[s] = f"install failed: {failed[pkg]}"
        vpy = str(hb.VENV / "bin/python")
        versions["peers_python"] = hb.version_of([vpy, "--version"])
        for pkg in ("granian", "gunicorn"):
            versions[pkg] = hb.version_of([vpy, "-c", "import importlib.metadata as m; "
                                           f"print(m.version('{pkg}'))"])
    for tag in tags:
        exe = build / f"ringmaster-worker-{tag}"
        if exe.exists():
            lib = subprocess.run(["ldd", str(exe)], capture_output=True, text=True).stdout
            versions[f"worker-{tag}"] = next((ln.split("=>")[0].strip() for ln in
                                              lib.splitlines() if "libpython" in ln), "?")
    active = [s for s in wanted if s not in skipped]
    machine = hb.machine_info()
    machine["loadavg_at_start"] = os.getloadavg()

    log("# Worker modes benchmark\n")
    log(f"machine: {machine['nproc']} CPUs ({machine['usable_cpus']} usable), "
        f"{machine['cpu_model']}, Linux {machine['kernel']}; {machine['wrk']}; "
        f"load average at start {machine['loadavg_at_start'][0]:.2f}")
    log(f"settings: wrk -t1 -c{CONNECTIONS['cpu']} (cpu) / -c{CONNECTIONS['io']} (io), "
        f"-d{args.duration}s after {args.warmup}s warm-up, {args.rounds} rounds, best kept")
    log("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    for name, why in skipped.items():
        log(f"SKIP {name}: {why}")
    log("")

    runs = []
    tmp = tempfile.mkdtemp(prefix="ringmaster-bench-modes-")
    try:
        for fname, src in APPS.items():
            text = textwrap.dedent(src).lstrip().format(examples=str(ROOT / "examples"))
            (Path(tmp) / fname).write_text(text)
        for handler in handlers:
            for workers in workers_list:
                for threads in threads_list:
                    for rnd in range(args.rounds):
                        order = active if rnd % 2 == 0 else list(reversed(active))
                        for name in order:
                            port = hb.free_port()
                            cmd = command(name, port, workers, threads, build, tmp)
                            try:
                                server = hb.start(name, cmd, port, tmp, tmp)
                            except RuntimeError as exc:
                                log(f"{handler} W={workers} T={threads} {name}: "
                                    f"failed to start: {exc}")
                                continue
                            r = None
                            try:
                                check_handler(port, handler)
                                for attempt in range(3):
                                    waited = wait_quiet(args.quiet_wait)
                                    r = measure(server, handler, args.duration, args.warmup)
                                    r["quiet_wait_s"] = round(waited, 1)
                                    if r["foreign_cpus"] <= FOREIGN_MAX:
                                        break
                                    log(f"  (other processes used {r['foreign_cpus']:.2f} "
                                        f"CPU during the run: again)")
                            except (RuntimeError, ValueError, OSError,
                                    subprocess.TimeoutExpired) as exc:
                                log(f"{handler} W={workers} T={threads} {name}: failed: {exc}")
                                r = None
                            finally:
                                hb.stop(server)
                            if r:
                                r.update(server=name, handler=handler, workers=workers,
                                         threads=threads, round=rnd + 1,
                                         noisy=r["foreign_cpus"] > FOREIGN_MAX)
                                runs.append(r)
                                log(f"{handler} W={workers} T={threads} round {rnd + 1} "
                                    f"{name:19s} {r['rps']:8.0f} req/s  p99 "
                                    f"{r['p99_ms']:7.2f} ms  "
                                    f"{hb.fmt(r['cpu_us_per_req'], '.0f')} CPU µs/req  "
                                    f"foreign {r['foreign_cpus']:.2f} CPU  "
                                    f"errors {r['errors']}")
    except KeyboardInterrupt:
        log("\ninterrupted: stopping servers")
        hb.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
        sys.exit(130)
    finally:
        hb.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)

    best = best_runs(runs)
    names = {"cpu": "CPU-bound (~1 ms of Python per request)", "io": "I/O-bound (10 ms sleep)",
             "cpu-local": "CPU-bound, modulus made per call"}
    for handler in handlers:
        log(f"\n## {names[handler]}: req/s, best of {args.rounds} rounds\n")
        log(table(best, handler, [s for s in wanted if s in active], workers_list, threads_list))
    if args.json:
        doc = {"machine": machine, "versions": versions,
               "settings": {"duration": args.duration, "warmup": args.warmup,
                            "rounds": args.rounds, "connections": CONNECTIONS,
                            "threads": threads_list, "workers": workers_list,
                            "handlers": handlers, "servers": wanted},
               "runs": runs, "skipped": skipped}
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
        log(f"\nJSON written to {args.json}")
    return 0 if runs else 1


if __name__ == "__main__":
    sys.exit(main())
