"""A self-contained HTML report: inline CSS and SVG drawn here, no script, nothing fetched.

Two plots and the summary table:

- ``latency-histogram``: one bar per histogram bucket when there are at most ``MAX_BARS``
  non-empty buckets, else the buckets merged into ``MAX_BARS`` log-spaced bins (empty bins are
  not drawn);
- ``latency-over-time``: per second of the run, a throughput bar and p50/p99 points joined by
  lines (seconds without a completed request have a zero bar and no points).
"""

from __future__ import annotations

import html
import math
from typing import Any

from .summary import comparison_table, describe_target, details, fmt_ms

MAX_BARS = 60
WIDTH, HEIGHT = 760, 260
LEFT, RIGHT, TOP, BOTTOM = 64, 64, 16, 40

CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 820px; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 2em; }
table { border-collapse: collapse; } td, th { padding: 2px 10px; text-align: right; }
td:first-child, th:first-child { text-align: left; }
tr:nth-child(even) { background: #f4f4f4; }
svg { background: #fcfcfc; border: 1px solid #ddd; }
svg text { font: 11px system-ui, sans-serif; fill: #444; }
.bar { fill: #4a7ab7; } .tput { fill: #c9d7ea; }
circle.p50 { fill: #2a6f2a; } circle.p99 { fill: #b33; }
polyline { fill: none; stroke-width: 1.5; } polyline.p50 { stroke: #2a6f2a; }
polyline.p99 { stroke: #b33; } .axis { stroke: #888; }
.note { color: #666; }
"""


def display_bins(buckets: list[list[int]]) -> list[tuple[int, int, int]]:
    """``(low, high, count)`` bars for the histogram plot (see the module docstring)."""
    if len(buckets) <= MAX_BARS:
        return [(low, high, n) for low, high, n in buckets]
    lo = math.log(max(buckets[0][0], 1))
    hi = math.log(max(buckets[-1][1], 1) + 1)
    step = (hi - lo) / MAX_BARS
    bins: dict[int, list[int]] = {}
    for low, high, n in buckets:
        k = min(MAX_BARS - 1, int((math.log(max(low, 1)) - lo) / step))
        acc = bins.setdefault(k, [low, high, 0])
        acc[0], acc[1], acc[2] = min(acc[0], low), max(acc[1], high), acc[2] + n
    return [(a, b, n) for _, (a, b, n) in sorted(bins.items())]


def _svg_open(testid: str, title: str) -> str:
    return (
        f'<svg id="{testid}" data-testid="{testid}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" '
        f'aria-label="{html.escape(title)}">'
    )


def _text(x: float, y: float, text: str, anchor: str = "middle", cls: str = "") -> str:
    klass = f' class="{cls}"' if cls else ""
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{klass}>{html.escape(text)}</text>'


def _axes() -> list[str]:
    x0, y0, x1 = LEFT, HEIGHT - BOTTOM, WIDTH - RIGHT
    return [
        f'<line class="axis" x1="{x0}" y1="{TOP}" x2="{x0}" y2="{y0}"/>',
        f'<line class="axis" x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}"/>',
    ]


def histogram_svg(histogram: dict[str, Any]) -> str:
    """The latency histogram: request counts by latency bucket."""
    bins = display_bins(histogram["buckets"])
    parts = [_svg_open("latency-histogram", "latency histogram"), *_axes()]
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top = max((n for _, _, n in bins), default=1)
    width = plot_w / max(len(bins), 1)
    label_every = max(1, math.ceil(len(bins) / 8))
    for i, (low, high, n) in enumerate(bins):
        h = plot_h * n / top
        x = LEFT + i * width
        parts.append(
            f'<rect class="bar" data-low-us="{low}" data-high-us="{high}" data-count="{n}" '
            f'x="{x + 1:.1f}" y="{TOP + plot_h - h:.1f}" width="{max(width - 2, 1):.1f}" '
            f'height="{h:.1f}"><title>{fmt_ms(low / 1000)}-{fmt_ms(high / 1000)}: {n:,}'
            "</title></rect>"
        )
        if i % label_every == 0:
            parts.append(_text(x + width / 2, HEIGHT - BOTTOM + 14, fmt_ms(low / 1000)))
    parts += [
        _text(LEFT - 6, TOP + 10, f"{top:,}", "end"),
        _text(LEFT - 6, HEIGHT - BOTTOM, "0", "end"),
        _text(LEFT + plot_w / 2, HEIGHT - 6, "latency (bucket low end); bar height: requests"),
        "</svg>",
    ]
    return "".join(parts)


def _points(series: list[tuple[int, float]], scale_x: Any, scale_y: Any, cls: str) -> list[str]:
    if not series:
        return []
    coords = [(scale_x(s), scale_y(v)) for s, v in series]
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
    out = [f'<polyline class="{cls}" data-series="{cls}" points="{line}"/>']
    for (second, value), (x, y) in zip(series, coords, strict=True):
        out.append(
            f'<circle class="{cls}" data-second="{second}" cx="{x:.1f}" cy="{y:.1f}" r="2.5">'
            f"<title>{cls} at {second} s: {fmt_ms(value)}</title></circle>"
        )
    return out


def timeline_svg(timeline: list[dict[str, Any]]) -> str:
    """Per second: throughput bars (right axis), p50 and p99 latency points (left axis)."""
    parts = [_svg_open("latency-over-time", "latency and throughput over time"), *_axes()]
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    n = max(len(timeline), 1)
    slot = plot_w / n
    top_ms = max((t["p99_ms"] or 0 for t in timeline), default=0) or 1
    top_rps = max((t["requests"] for t in timeline), default=0) or 1

    def scale_x(second: float) -> float:
        return LEFT + (second + 0.5) * slot

    def scale_y(ms: float) -> float:
        return TOP + plot_h - plot_h * ms / top_ms

    for t in timeline:
        h = plot_h * t["requests"] / top_rps
        parts.append(
            f'<rect class="tput" data-second="{t["second"]}" data-requests="{t["requests"]}" '
            f'x="{LEFT + t["second"] * slot + 1:.1f}" y="{TOP + plot_h - h:.1f}" '
            f'width="{max(slot - 2, 1):.1f}" height="{h:.1f}"><title>{t["second"]} s: '
            f"{t['requests']:,} requests</title></rect>"
        )
    for key, cls in (("p50_ms", "p50"), ("p99_ms", "p99")):
        series = [(t["second"], t[key]) for t in timeline if t[key] is not None]
        parts += _points(series, scale_x, scale_y, cls)
    label_every = max(1, math.ceil(n / 10))
    parts += [
        _text(scale_x(t["second"]), HEIGHT - BOTTOM + 14, f"{t['second']}s")
        for t in timeline
        if t["second"] % label_every == 0
    ]
    parts += [
        _text(LEFT - 6, TOP + 10, fmt_ms(top_ms), "end"),
        _text(LEFT - 6, HEIGHT - BOTTOM, "0", "end"),
        _text(WIDTH - RIGHT + 6, TOP + 10, f"{top_rps:,}/s", "start"),
        _text(
            LEFT + plot_w / 2,
            HEIGHT - 6,
            "second of the run: p50 (green), p99 (red), requests completed (bars, right axis)",
        ),
        "</svg>",
    ]
    return "".join(parts)


def _table(rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows[1:]
    )
    return (
        f'<table data-testid="summary"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
    )


def render(doc: dict[str, Any]) -> str:
    """The report page for a result document."""
    result = doc["result"]
    lines = "".join(f"<li>{html.escape(line)}</li>" for line in details(result))
    check = doc.get("cold_check")
    warning = ""
    if check and not check["ok"]:
        warning = f"<p><strong>Cold mode violated: {check['warm']} warm samples.</strong></p>"
    host = doc["host"]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>warmstart bench report</title>"
        f"<style>{CSS}</style></head><body>"
        "<h1>warmstart bench</h1>"
        f"<p>{html.escape(describe_target(doc['target']))}</p>"
        f"<p>load: {html.escape(doc['load']['description'])}; payload "
        f"{doc['load']['payload_bytes']:,} bytes</p>"
        f"<h2>Summary</h2>{_table(comparison_table(doc))}<ul>{lines}</ul>{warning}"
        f"<h2>Latency histogram</h2>{histogram_svg(result['histogram_us'])}"
        f"<h2>Latency and throughput over time</h2>{timeline_svg(result['timeline'])}"
        f'<p class="note">{html.escape(doc["created"])}, Python {html.escape(host["python"])} '
        f"on {html.escape(host['platform'])}, {host['cpus']} CPUs. Latencies of an open loop "
        "are measured from each request's intended send time.</p>"
        "</body></html>\n"
    )
