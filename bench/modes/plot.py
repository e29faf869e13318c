#!/usr/bin/python3
"""Line charts of bench/modes/run.py results as plain SVG (standard library only).

    /usr/bin/python3 bench/modes/plot.py results.json docs/img/modes.svg

One panel per handler (CPU-bound, I/O-bound): requests per second against
threads per worker, one line per server, solid for one worker and dashed for
two. Each point is the configuration's best run (runs that other processes
disturbed count only when there is nothing else), as the tables show.
"""

import json
import sys
from html import escape

PANEL_W, PANEL_H = 430, 300
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 44, 46
LEGEND_H = 22
COLORS = {
    "rm-gil": "#7f8c8d",
    "rm-subinterpreters": "#c0392b",
    "rm-free-threaded": "#8e44ad",
    "gunicorn-gthread": "#2e86c1",
    "granian-wsgi": "#27ae60",
}
TITLES = {"cpu": "CPU-bound: ~1 ms of Python per request",
          "io": "I/O-bound: 10 ms sleep per request"}


def best_runs(runs):
    best = {}
    for r in runs:
        key = (r["handler"], r["server"], r["workers"], r["threads"])
        have = best.get(key)
        if (have is None or (have.get("noisy") and not r.get("noisy"))
                or (have.get("noisy") == r.get("noisy") and r["rps"] > have["rps"])):
            best[key] = r
    return best


def nice_max(v):
    """A round axis maximum at or above v."""
    step = 1
    while step * 10 <= v:
        step *= 10
    for mult in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if mult * step >= v:
            return mult * step
    return 10 * step


def panel(x0, handler, best, servers, threads, workers):
    out = []
    pts = [r["rps"] for (h, _, _, _), r in best.items() if h == handler]
    if not pts:
        return out
    ymax = nice_max(max(pts) * 1.05)
    pw, ph = PANEL_W - LEFT - RIGHT, PANEL_H - TOP - BOTTOM

    def px(i):
        return x0 + LEFT + (pw * i / max(1, len(threads) - 1) if len(threads) > 1 else pw / 2)

    def py(v):
        return TOP + ph - ph * v / ymax

    out.append(f'<text x="{x0 + LEFT}" y="22" font-size="13" font-weight="bold">'
               f'{escape(TITLES.get(handler, handler))}</text>')
    for k in range(5):
        v = ymax * k / 4
        y = py(v)
        out.append(f'<line x1="{x0 + LEFT}" y1="{y:.1f}" x2="{x0 + LEFT + pw}" y2="{y:.1f}" '
                   f'stroke="#ddd"/>')
        out.append(f'<text x="{x0 + LEFT - 6}" y="{y + 4:.1f}" font-size="11" '
                   f'text-anchor="end">{v:,.0f}</text>')
    for i, t in enumerate(threads):
        out.append(f'<text x="{px(i):.1f}" y="{TOP + ph + 16}" font-size="11" '
                   f'text-anchor="middle">{t}</text>')
    out.append(f'<text x="{x0 + LEFT + pw / 2:.1f}" y="{TOP + ph + 34}" font-size="11" '
               f'text-anchor="middle">threads per worker</text>')
    out.append(f'<text x="{x0 + 14}" y="{TOP + ph / 2:.1f}" font-size="11" '
               f'text-anchor="middle" transform="rotate(-90 {x0 + 14} {TOP + ph / 2:.1f})">'
               f'requests/s</text>')
    for name in servers:
        color = COLORS.get(name, "#333")
        for w in workers:
            coords = [(px(i), py(best[(handler, name, w, t)]["rps"]))
                      for i, t in enumerate(threads) if (handler, name, w, t) in best]
            if not coords:
                continue
            dash = "" if w == workers[0] else ' stroke-dasharray="5,4"'
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
            out.append(f'<polyline points="{path}" fill="none" stroke="{color}" '
                       f'stroke-width="2"{dash}/>')
            for x, y in coords:
                out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}"/>')
    return out


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    doc = json.load(open(sys.argv[1]))
    st = doc["settings"]
    best = best_runs(doc["runs"])
    servers = [s for s in st["servers"] if any(k[1] == s for k in best)]
    handlers = [h for h in st["handlers"] if any(k[0] == h for k in best)]
    threads, workers = st["threads"], st["workers"]
    width = PANEL_W * max(1, len(handlers))
    cols = max(1, (width - LEFT) // 190)
    legend_rows = (len(servers) + cols - 1) // cols
    height = PANEL_H + LEGEND_H * (legend_rows + 1) + 24
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="sans-serif">', '<rect width="100%" height="100%" fill="white"/>']
    for i, h in enumerate(handlers):
        parts += panel(i * PANEL_W, h, best, servers, threads, workers)
    y = PANEL_H + 8
    for i, name in enumerate(servers):
        col, row = i % cols, i // cols
        x = LEFT + col * 190
        yy = y + row * LEGEND_H
        parts.append(f'<line x1="{x}" y1="{yy}" x2="{x + 24}" y2="{yy}" '
                     f'stroke="{COLORS.get(name, "#333")}" stroke-width="3"/>')
        parts.append(f'<text x="{x + 30}" y="{yy + 4}" font-size="12">{escape(name)}</text>')
    yy = y + legend_rows * LEGEND_H
    if len(workers) > 1:
        parts.append(f'<text x="{LEFT}" y="{yy + 4}" font-size="12">solid: {workers[0]} worker; '
                     f'dashed: {", ".join(str(w) for w in workers[1:])} workers</text>')
    m = doc.get("machine", {})
    note = (f"{m.get('nproc', '?')} CPUs, {m.get('cpu_model', '')}; wrk -t1 -c"
            f"{st['connections'].get('cpu')} (cpu) / -c{st['connections'].get('io')} (io), "
            f"{st['duration']} s per run, best of {st['rounds']} rounds")
    parts.append(f'<text x="4" y="{height - 8}" font-size="11" fill="#555">{escape(note)}</text>')
    parts.append("</svg>")
    open(sys.argv[2], "w").write("\n".join(parts) + "\n")


if __name__ == "__main__":
    main()
