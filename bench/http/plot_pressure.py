#!/usr/bin/python3
"""Plain-SVG chart of a pressure-suite JSON file (standard library only).

    /usr/bin/python3 bench/http/plot_pressure.py bench/http/results-pressure.json \\
        docs/img/pressure.svg

Two panels, one bar per server (each server's best round, as the suite's table):
the normal clients' p99 unloaded (thin grey bar) and under the mix (thick bar),
on a logarithmic scale, with the success rate under the mix written after it;
and the server's peak memory (PSS) during the mix. A server whose normal clients got no
answer at all under the mix has no bar, only its success rate (0%).
"""

import json
import math
import sys
from html import escape

PANEL_W, BAR_H, GAP, LABEL_W, TOP = 430, 22, 10, 130, 46


def bar_color(name):
    return "#c0392b" if name.startswith("ringmaster") else "#2e86c1"


def latency_panel(x0, rows):
    vals = [v for r in rows for v in (r["baseline"]["p99_ms"], r["loaded"]["p99_ms"])
            if v]
    lo = 10 ** math.floor(math.log10(min(vals))) if vals else 0.1
    hi = 10 ** math.ceil(math.log10(max(vals))) if vals else 1000
    span = PANEL_W - LABEL_W - 110

    def x(v):
        return x0 + LABEL_W + span * (math.log10(v) - math.log10(lo)) / (
            math.log10(hi) - math.log10(lo))
    out = [f'<text x="{x0 + LABEL_W}" y="18" font-size="14" font-weight="bold">normal clients\' '
           f'p99, ms (log scale, lower is better)</text>',
           f'<text x="{x0 + LABEL_W}" y="34" font-size="11" fill="#555">thin grey: alone; '
           f'thick: under the mix, then its success rate</text>']
    d = lo
    while d <= hi * 1.0001:
        out.append(f'<line x1="{x(d):.1f}" y1="{TOP - 4}" x2="{x(d):.1f}" '
                   f'y2="{TOP + len(rows) * (BAR_H + GAP)}" stroke="#ddd"/>')
        out.append(f'<text x="{x(d):.1f}" y="{TOP + len(rows) * (BAR_H + GAP) + 12}" '
                   f'font-size="10" text-anchor="middle" fill="#555">{d:g}</text>')
        d *= 10
    for i, r in enumerate(rows):
        y = TOP + i * (BAR_H + GAP)
        name = r["server"]
        out.append(f'<text x="{x0 + LABEL_W - 6}" y="{y + BAR_H - 6}" font-size="12" '
                   f'text-anchor="end">{escape(name)}</text>')
        b, l = r["baseline"]["p99_ms"], r["loaded"]["p99_ms"]
        if b:
            out.append(f'<rect x="{x0 + LABEL_W}" y="{y + BAR_H - 4}" '
                       f'width="{max(1.0, x(b) - x0 - LABEL_W):.1f}" height="4" fill="#999"/>')
        end = x0 + LABEL_W
        if l:
            end = x(l)
            out.append(f'<rect x="{x0 + LABEL_W}" y="{y}" width="{max(1.0, end - x0 - LABEL_W):.1f}" '
                       f'height="{BAR_H - 6}" fill="{bar_color(name)}"/>')
        ok = 100 * r["loaded"]["success"]
        label = (f"{l:.1f} ms, " if l else "") + f"{ok:.1f}% ok"
        out.append(f'<text x="{end + 4:.1f}" y="{y + BAR_H - 8}" font-size="12">'
                   f'{escape(label)}</text>')
    return out


def rss_panel(x0, rows):
    top = max(r["pss_peak_mib"] for r in rows) or 1
    out = [f'<text x="{x0 + LABEL_W}" y="18" font-size="14" font-weight="bold">peak memory (PSS) '
           f'under the mix, MiB</text>',
           f'<text x="{x0 + LABEL_W}" y="34" font-size="11" fill="#555">PSS summed over the process tree, '
           f'sampled every 0.25 s (lower is better)</text>']
    for i, r in enumerate(rows):
        y = TOP + i * (BAR_H + GAP)
        w = max(1.0, (PANEL_W - LABEL_W - 60) * r["pss_peak_mib"] / top)
        out.append(f'<text x="{x0 + LABEL_W - 6}" y="{y + BAR_H - 6}" font-size="12" '
                   f'text-anchor="end">{escape(r["server"])}</text>')
        out.append(f'<rect x="{x0 + LABEL_W}" y="{y}" width="{w:.1f}" height="{BAR_H - 6}" '
                   f'fill="{bar_color(r["server"])}"/>')
        out.append(f'<text x="{x0 + LABEL_W + w + 4:.1f}" y="{y + BAR_H - 8}" font-size="12">'
                   f'{r["pss_peak_mib"]:.0f}</text>')
    return out


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    doc = json.load(open(sys.argv[1]))
    order = [s for s in ("ringmaster-wsgi", "granian-wsgi", "gunicorn-gthread", "ringmaster-asgi",
                         "granian-asgi", "uvicorn", "gunicorn-uvicorn") if s in doc["best"]]
    rows = [doc["best"][s] for s in order]
    height = TOP + len(rows) * (BAR_H + GAP) + 40
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * PANEL_W + 20}" '
             f'height="{height}" font-family="sans-serif">',
             '<rect width="100%" height="100%" fill="white"/>']
    parts += latency_panel(0, rows)
    parts += rss_panel(PANEL_W + 20, rows)
    m, st = doc.get("machine", {}), doc.get("settings", {})
    note = (f"{m.get('nproc', '?')} CPUs, {m.get('cpu_model', '')}; {st.get('clients')} normal "
            f"clients; mix: {st.get('slowloris')} slowloris, {st.get('slow_readers')} slow "
            f"readers, {st.get('uploads')} x 1 MiB uploads; {st.get('duration')} s; "
            f"{st.get('workers')} worker per server")
    parts.append(f'<text x="4" y="{height - 8}" font-size="11" fill="#555">{escape(note)}</text>')
    parts.append("</svg>")
    open(sys.argv[2], "w").write("\n".join(parts) + "\n")


if __name__ == "__main__":
    main()
