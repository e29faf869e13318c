#!/usr/bin/python3
"""Bar charts as plain SVG from a bench JSON file (standard library only).

    /usr/bin/python3 bench/plot_svg.py bench-http.json docs/img/http-hello.svg [WORKLOAD]

Reads the "best" map that bench/http/run.py writes (one run per server, with
rps and cpu_us_per_req) and draws two panels side by side: requests per
second (higher is better) and server CPU per request (lower is better). With
WORKLOAD (the wsgi and asgi suites measure several), only that workload's runs.
"""

import json
import sys
from html import escape

PANEL_W, BAR_H, GAP, LABEL_W, TOP = 400, 22, 8, 110, 46
COLORS = {"ringmaster": "#c0392b", "nginx": "#7f8c8d"}


def panel(x0, title, rows, key, unit, fmt):
    vals = [r[key] for r in rows if r.get(key) is not None]
    top = max(vals) if vals else 1
    out = [f'<text x="{x0 + LABEL_W}" y="24" font-size="14" font-weight="bold">'
           f'{escape(title)}</text>']
    for i, r in enumerate(rows):
        y = TOP + i * (BAR_H + GAP)
        name = r["server"]
        out.append(f'<text x="{x0 + LABEL_W - 6}" y="{y + BAR_H - 6}" font-size="12" '
                   f'text-anchor="end">{escape(name)}</text>')
        v = r.get(key)
        if v is None:
            continue
        w = max(1.0, (PANEL_W - LABEL_W - 70) * v / top)
        color = COLORS.get(name, "#2e86c1")
        out.append(f'<rect x="{x0 + LABEL_W}" y="{y}" width="{w:.1f}" height="{BAR_H}" '
                   f'fill="{color}"/>')
        out.append(f'<text x="{x0 + LABEL_W + w + 4:.1f}" y="{y + BAR_H - 6}" '
                   f'font-size="12">{fmt.format(v)}{unit}</text>')
    return out


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    doc = json.load(open(sys.argv[1]))
    rows = list(doc["best"].values())
    workload = sys.argv[3] if len(sys.argv) == 4 else None
    if workload is not None:
        rows = [r for r in rows if r.get("workload") == workload]
        if not rows:
            sys.exit(f"{sys.argv[1]} has no runs of workload {workload!r}")
    height = TOP + len(rows) * (BAR_H + GAP) + 30
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * PANEL_W + 20}" '
             f'height="{height}" font-family="sans-serif">',
             '<rect width="100%" height="100%" fill="white"/>']
    parts += panel(0, "requests/s (higher is better)", rows, "rps", "", "{:,.0f}")
    parts += panel(PANEL_W + 20, "CPU µs per request (lower is better)", rows,
                   "cpu_us_per_req", " µs", "{:.1f}")
    m = doc.get("machine", {})
    st = doc.get("settings", {})
    conns = rows[0].get("connections", st.get("connections")) if rows else st.get("connections")
    note = (f"{m.get('nproc', '?')} CPUs, {m.get('cpu_model', '')}; "
            f"{workload + ', ' if workload else ''}wrk -c{conns} "
            f"-d{st.get('duration')}s, {st.get('workers')} worker(s) per server")
    parts.append(f'<text x="4" y="{height - 8}" font-size="11" fill="#555">{escape(note)}</text>')
    parts.append("</svg>")
    open(sys.argv[2], "w").write("\n".join(parts) + "\n")


if __name__ == "__main__":
    main()
