"""The text summary printed at the end of ``warmstart bench``, drawn from the result document."""

from __future__ import annotations

from typing import Any

ROWS = (
    ("throughput (req/s)", "throughput"),
    ("latency p50", "p50"),
    ("latency p90", "p90"),
    ("latency p99", "p99"),
    ("latency p99.9", "p99.9"),
    ("latency max", "max"),
)


def fmt_ms(ms: float | None) -> str:
    """A latency in a readable unit: µs below 1 ms, s from 1000 ms."""
    if ms is None:
        return "-"
    if ms < 1:
        return f"{ms * 1000:.0f} µs"
    if ms < 1000:
        return f"{ms:.2f} ms"
    return f"{ms / 1000:.2f} s"


def fmt_ratio(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}x"


def describe_target(target: dict[str, Any]) -> str:
    kind = target.get("kind")
    if kind == "embedded":
        cold = ", cold: a new environment per request" if target.get("cold") else ""
        return (
            f"function {target['function']} ({target['handler']} in {target['code']}) on an "
            f"embedded engine, {target['backend']} backend, {target['start']} start{cold}"
        )
    if kind == "endpoint":
        return f"function {target['function']} at {target['endpoint']}"
    return f"{target.get('method', 'POST')} {target.get('url')}"


def _cell(run: dict[str, Any], key: str) -> str:
    if key == "throughput":
        return f"{run['throughput_rps']:,.1f}"
    return fmt_ms(run["latency_ms"][key])


def comparison_table(doc: dict[str, Any]) -> list[list[str]]:
    """Rows of figures: warmstart, then each baseline with the ratio beside it."""
    header = ["", "warmstart"]
    for name in doc["baselines"]:
        header += [name, "ratio"]
    rows = [header]
    for title, key in ROWS:
        row = [title, _cell(doc["result"], key)]
        for run in doc["baselines"].values():
            ratio = run["ratios"].get(key)
            row += [_cell(run, key), fmt_ratio(ratio) if key in run["ratios"] else ""]
        rows.append(row)
    return rows


def _align(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
    return lines


def details(result: dict[str, Any]) -> list[str]:
    """Counts below the table: cold/warm, init, errors, throttles, billing."""
    lines = [
        f"requests: {result['requests']:,} in {result['elapsed_s']:.3f} s; "
        f"cold {result['cold']:,}, warm {result['warm']:,}"
    ]
    init = result["init_ms"]
    if init:
        lines.append(
            f"init duration: p50 {fmt_ms(init['p50'])}, max {fmt_ms(init['max'])} "
            f"({init['count']:,} cold starts)"
        )
    lines.append("errors: " + _counts(result["errors"]))
    lines.append("throttles: " + _counts(result["throttles"]))
    if result["billed_ms_total"]:
        lines.append(f"billed: {result['billed_ms_total']:,} ms, {result['gb_seconds']:.6f} GB-s")
    return lines


def _counts(counts: dict[str, int]) -> str:
    if not counts:
        return "none"
    return ", ".join(f"{name} {n:,}" for name, n in counts.items())


def render(doc: dict[str, Any]) -> str:
    """The whole summary, ending with a newline."""
    load = doc["load"]
    lines = [
        f"warmstart bench: {describe_target(doc['target'])}",
        f"load: {load['description']}; payload {load['payload_bytes']:,} bytes",
        "",
        *_align(comparison_table(doc)),
        "",
        *details(doc["result"]),
    ]
    check = doc.get("cold_check")
    if check and not check["ok"]:
        lines.append(
            f"COLD MODE VIOLATED: {check['warm']:,} of the samples were warm "
            f"({check['cold']:,} cold)"
        )
    for name, run in doc["baselines"].items():
        lines.append(f"baseline {name}: {run['workers']} worker processes")
    return "\n".join(lines) + "\n"
