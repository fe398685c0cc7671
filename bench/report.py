"""Turn a pytest-benchmark JSON file into the table of ratios in bench/README.md.

    python -m bench.report [.benchmarks/latest.json]

Each figure of DESIGN.md section 7 is a ratio of two benchmarks from the same run.  A figure
whose target is absolute (P7's rates, P8's memory) is checked against that number, and the ratio
to its baseline is still shown.
"""

from __future__ import annotations

import json
import platform
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

README = Path(__file__).with_name("README.md")
START, END = "<!-- figures:start -->", "<!-- figures:end -->"

Bench = dict[str, Any]


def _by_role(benches: list[Bench], group: str) -> dict[str, Bench]:
    out = {}
    for bench in benches:
        if bench.get("group") != group:
            continue
        role = bench.get("extra_info", {}).get("role")
        if role is None:  # parametrized ids: test_x[py], test_x[c]
            match = re.search(r"\[(\w+)\]$", bench["name"])
            role = match.group(1) if match else bench["name"]
        out[role] = bench
    return out


def _median(bench: Bench) -> float:
    return float(bench["stats"]["median"])


def _ops_per_s(bench: Bench) -> float:
    """Throughput: the operations of one round over the median round time."""
    return float(bench["extra_info"]["ops_per_round"]) / _median(bench)


def _info(key: str) -> Callable[[Bench], float]:
    return lambda bench: float(bench["extra_info"][key])


# figure, group, warmstart role, baseline role, value of one benchmark, unit, compare, target;
# compare: "<=" / ">=" hold the ratio to the target, "abs<=" / "abs>=" warmstart's own value,
# "info" nothing
FIGURES: list[tuple[str, str, str, str, Callable[[Bench], float], str, str, float]] = [
    (
        "P1 warm latency p50 vs floor",
        "P1-warm-latency",
        "warmstart",
        "floor",
        _info("p50_us"),
        "µs",
        "<=",
        2.0,
    ),
    (
        "P1 warm latency p50 vs ProcessPoolExecutor",
        "P1-warm-latency",
        "warmstart",
        "ProcessPoolExecutor",
        _info("p50_us"),
        "µs",
        "<=",
        0.2,
    ),
    (
        "P2 throughput vs ProcessPoolExecutor",
        "P2-throughput",
        "warmstart",
        "ProcessPoolExecutor",
        _ops_per_s,
        "calls/s",
        ">=",
        3.0,
    ),
    (
        "P2 throughput vs floor closed loop",
        "P2-throughput",
        "warmstart",
        "floor",
        _ops_per_s,
        "calls/s",
        ">=",
        0.7,
    ),
    (
        "P3 cold start (fork) vs python -c pass",
        "P3-cold-start",
        "warmstart",
        "python -c pass",
        lambda b: _median(b) * 1000,
        "ms",
        "<=",
        0.25,
    ),
    (
        "P3 cold start (spawn) vs python -c pass",
        "P3-cold-start",
        "warmstart spawn",
        "python -c pass",
        lambda b: _median(b) * 1000,
        "ms",
        "info",
        0.0,
    ),
    (
        "P4 container cold start vs bare create+start+ready",
        "P4-container-cold",
        "warmstart",
        "bare create+start+ready",
        lambda b: _median(b) * 1000,
        "ms",
        "<=",
        1.15,
    ),
    (
        "P4 container cold start from a stem cell vs bare create+start+ready",
        "P4-container-cold",
        "warmstart stem cell",
        "bare create+start+ready",
        lambda b: _median(b) * 1000,
        "ms",
        "info",
        0.0,
    ),
    (
        "P4 warm container invoke p50 vs warm process invoke",
        "P4-container-warm",
        "warmstart container",
        "warmstart process",
        _info("p50_us"),
        "µs",
        "<=",
        1.5,
    ),
    (
        "P5 HTTP Invoke throughput vs bare aiohttp",
        "P5-http-invoke",
        "warmstart",
        "bare aiohttp",
        _ops_per_s,
        "req/s",
        ">=",
        0.5,
    ),
    (
        "P6 Cython core vs pure core (time)",
        "P6-scheduler",
        "c",
        "py",
        lambda b: _median(b) * 1000,
        "ms",
        "<=",
        1 / 3,
    ),
    (
        "P7 submit rate (BatchQueue.submit) vs bare SQLite insert",
        "P7-submit",
        "warmstart",
        "bare SQLite insert",
        _ops_per_s,
        "jobs/s",
        "abs>=",
        2000.0,
    ),
    (
        "P7 drain rate (no-op function jobs) vs ProcessPoolExecutor",
        "P7-drain",
        "warmstart",
        "ProcessPoolExecutor",
        _ops_per_s,
        "jobs/s",
        "abs>=",
        1000.0,
    ),
    (
        "P8 idle forked worker, unique RSS",
        "P8-idle-memory",
        "warmstart",
        "spawned worker",
        _info("uss_mb"),
        "MB",
        "abs<=",
        10.0,
    ),
]


def verdict_of(
    compare: str, value: float, ratio: float, target: float, unit: str
) -> tuple[bool | None, str]:
    """Whether a figure meets its target, and the target as the table shows it."""
    if compare == "abs<=":
        return value <= target, f"≤ {target:,g} {unit}"
    if compare == "abs>=":
        return value >= target, f"≥ {target:,g} {unit}"
    if compare == "<=":
        return ratio <= target, f"≤ {target:.3g}x"
    if compare == ">=":
        return ratio >= target, f"≥ {target:g}x"
    return None, "—"


def rows(benches: list[Bench]) -> list[list[str]]:
    out = []
    for figure, group, ours, theirs, value, unit, compare, target in FIGURES:
        roles = _by_role(benches, group)
        if ours not in roles or theirs not in roles:
            continue
        a, b = value(roles[ours]), value(roles[theirs])
        ratio = a / b if b else float("inf")
        met, goal = verdict_of(compare, a, ratio, target, unit)
        verdict = "—" if met is None else ("yes" if met else "**no**")
        out.append(
            [
                figure,
                f"{a:,.1f} {unit}",
                f"{b:,.1f} {unit} ({theirs})",
                f"{ratio:.3g}x",
                goal,
                verdict,
            ]
        )
    return out


def machine(data: dict[str, Any]) -> str:
    info = data.get("machine_info", {})
    cpu = info.get("cpu", {}).get("brand_raw") or platform.processor() or "unknown CPU"
    cores = info.get("cpu", {}).get("count", "?")
    python = info.get("python_version", platform.python_version())
    system = f"{info.get('system', platform.system())} {info.get('release', '')}"
    impl = info.get("python_implementation", "")
    when = data.get("datetime", "")[:19]
    return f"{system}, {cpu}, {cores} cores, Python {python} ({impl}), run {when}"


def render(data: dict[str, Any]) -> str:
    header = ["figure", "warmstart", "baseline", "ratio", "target", "met?"]
    lines = [
        f"Machine: {machine(data)}.",
        "",
        "| " + " | ".join(header) + " |",
        "| " + " | ".join("---" for _ in header) + " |",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows(data["benchmarks"])]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    path = Path(argv[0] if argv else ".benchmarks/latest.json")
    data = json.loads(path.read_text())
    table = render(data)
    text = README.read_text()
    if START in text and END in text:
        head, rest = text.split(START, 1)
        _, tail = rest.split(END, 1)
        README.write_text(f"{head}{START}\n{table}\n{END}{tail}")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
