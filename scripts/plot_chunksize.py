#!/usr/bin/env python3
"""Pool throughput against chunk size, multiproc and CPython, as an SVG.

Runs `cargo run --release --example chunk_sweep` (multiproc, 2 workers) and
CPython's multiprocessing.Pool(2).map with the same chunk sizes (fork start
method, its fastest here; best of 3), then writes docs/pool_chunksize.svg
and prints the figures as a Markdown table. Usage:

    scripts/plot_chunksize.py [OUT.svg]
"""

import json
import math
import multiprocessing as mp
import pathlib
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
SIZES = [1, 4, 16, 64, 256, 1024, 4096, 16384]


def square(x):
    return x * x


def cpython_rates():
    out = {}
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    with ctx.Pool(2) as pool:
        pool.map(square, range(10_000))
        for cs in SIZES:
            n = 100_000 if cs < 16 else 2_000_000
            best = 0.0
            for _ in range(3):
                t = time.perf_counter()
                pool.map(square, range(n), chunksize=cs)
                best = max(best, n / (time.perf_counter() - t))
            out[str(cs)] = best
    return out


def svg(ours, theirs, auto):
    w, h, left, right, top, bottom = 720, 420, 80, 20, 40, 60
    ys = [v for v in list(ours.values()) + list(theirs.values()) + [auto] if v > 0]
    lo, hi = math.floor(math.log10(min(ys))), math.ceil(math.log10(max(ys)))
    xlo, xhi = math.log2(SIZES[0]), math.log2(SIZES[-1])

    def x(cs):
        return left + (math.log2(cs) - xlo) / (xhi - xlo) * (w - left - right)

    def y(v):
        return top + (hi - math.log10(v)) / (hi - lo) * (h - top - bottom)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
        f'<rect width="{w}" height="{h}" fill="white"/>',
        f'<text x="{w / 2}" y="22" text-anchor="middle" font-size="15">Pool(2) throughput, x*x on integers, by chunk size (log-log)</text>',
    ]
    for e in range(lo, hi + 1):
        parts.append(f'<line x1="{left}" x2="{w - right}" y1="{y(10 ** e)}" y2="{y(10 ** e)}" stroke="#ddd"/>')
        parts.append(f'<text x="{left - 6}" y="{y(10 ** e) + 4}" text-anchor="end">1e{e}</text>')
    for cs in SIZES:
        parts.append(f'<line x1="{x(cs)}" x2="{x(cs)}" y1="{top}" y2="{h - bottom}" stroke="#eee"/>')
        parts.append(f'<text x="{x(cs)}" y="{h - bottom + 16}" text-anchor="middle">{cs}</text>')
    parts.append(f'<text x="{w / 2}" y="{h - 14}" text-anchor="middle">chunk size</text>')
    parts.append(f'<text x="18" y="{h / 2}" transform="rotate(-90 18 {h / 2})" text-anchor="middle">tasks/s</text>')
    for data, color, name, dy in ((ours, "#d9480f", "multiproc", 0), (theirs, "#1c7ed6", "CPython multiprocessing", 18)):
        pts = " ".join(f"{x(int(k))},{y(v)}" for k, v in sorted(data.items(), key=lambda kv: int(kv[0])))
        parts.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="2.5"/>')
        for k, v in data.items():
            parts.append(f'<circle cx="{x(int(k))}" cy="{y(v)}" r="3.5" fill="{color}"/>')
        parts.append(f'<text x="{left + 12}" y="{top + 16 + dy}" fill="{color}">{name}</text>')
    parts.append(f'<line x1="{left}" x2="{w - right}" y1="{y(auto)}" y2="{y(auto)}" stroke="#d9480f" stroke-dasharray="6 4"/>')
    parts.append(f'<text x="{w - right - 4}" y="{y(auto) - 6}" text-anchor="end" fill="#d9480f">multiproc, automatic chunking</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def main():
    out = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "pool_chunksize.svg"
    run = subprocess.run(
        ["cargo", "run", "--quiet", "--release", "--example", "chunk_sweep"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    )
    ours = json.loads(run.stdout)
    auto = ours.pop("auto")
    theirs = cpython_rates()
    out.write_text(svg(ours, theirs, auto))
    print("| chunk size | multiproc tasks/s | CPython tasks/s | ratio |")
    print("|---|---|---|---|")
    for cs in SIZES:
        a, b = ours[str(cs)], theirs[str(cs)]
        print(f"| {cs} | {a:,.0f} | {b:,.0f} | {a / b:.1f}x |")
    print(f"| automatic | {auto:,.0f} | | |")
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
