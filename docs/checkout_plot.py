#!/usr/bin/env python3
"""Draws docs/checkout.svg from target/checkout-summary.md (written by
`cargo bench --bench checkout`): ns per get+return, one group of bars per
scenario, one bar per pool. No dependencies beyond Python 3."""
import re
import sys

src = sys.argv[1] if len(sys.argv) > 1 else "target/checkout-summary.md"
out = sys.argv[2] if len(sys.argv) > 2 else "docs/checkout.svg"
rows = []
for line in open(src):
    m = re.match(r"\|\s*([A-D])\s*\|\s*(\w+)\s*\|\s*(\d+)\s*\|", line)
    if m:
        rows.append((m.group(1), m.group(2), int(m.group(3))))
scenarios = sorted({s for s, _, _ in rows})
pools = ["floor", "livepool", "deadpool", "bb8", "mobc"]
colors = {"floor": "#888888", "livepool": "#d62728", "deadpool": "#1f77b4", "bb8": "#2ca02c", "mobc": "#9467bd"}
value = {(s, p): v for s, p, v in rows}
W, H, left, bottom, top = 760, 380, 60, 40, 40
plot_h = H - bottom - top
vmax = max(v for v in value.values())
group_w = (W - left - 20) / len(scenarios)
bar_w = group_w / (len(pools) + 1)
svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">',
       f'<text x="{W/2}" y="18" text-anchor="middle" font-size="14">checkout: ns per get+return (lower is better)</text>']
for i in range(5):
    y = top + plot_h * (1 - i / 4)
    svg.append(f'<line x1="{left}" x2="{W-20}" y1="{y}" y2="{y}" stroke="#ddd"/>')
    svg.append(f'<text x="{left-5}" y="{y+4}" text-anchor="end">{int(vmax*i/4)}</text>')
for gi, s in enumerate(scenarios):
    x0 = left + gi * group_w + bar_w / 2
    for pi, p in enumerate(pools):
        v = value.get((s, p))
        if v is None:
            continue
        h = plot_h * v / vmax
        x = x0 + pi * bar_w
        svg.append(f'<rect x="{x:.1f}" y="{top+plot_h-h:.1f}" width="{bar_w*0.9:.1f}" height="{h:.1f}" fill="{colors[p]}"><title>{s} {p}: {v} ns</title></rect>')
        svg.append(f'<text x="{x+bar_w*0.45:.1f}" y="{top+plot_h-h-3:.1f}" text-anchor="middle" font-size="9">{v}</text>')
    svg.append(f'<text x="{x0 + bar_w*len(pools)/2:.1f}" y="{H-bottom+15}" text-anchor="middle">scenario {s}</text>')
for pi, p in enumerate(pools):
    svg.append(f'<rect x="{left + pi*110}" y="{H-14}" width="10" height="10" fill="{colors[p]}"/><text x="{left + pi*110 + 14}" y="{H-5}">{p}</text>')
svg.append("</svg>")
open(out, "w").write("\n".join(svg))
print(f"wrote {out} from {src}")
