"""Where a warm Runtime API call's time goes (P12 in bench/README.md).

    .venv/bin/python -m bench.runtime_api_steps [--calls N]

Runs the awslambdaric no-op function of bench/test_p12_runtime_api.py and the same handler as
a Python function, pinned and unpinned (bench/_affinity.py), and prints:

1. the CPU each process spent per warm call (``/proc/<tid>/schedstat``, every thread): the
   engine (this process), the agent, and the runtime (awslambdaric), each function on an
   engine of its own (pinned, a call's p50 is about their sum);
2. the interpreter starts behind a cold start: ``python -c pass``, ``/bin/sh`` exec'ing it,
   and the import of awslambdaric.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from runtime import Engine, FunctionConfig
from runtime.loop import run

from ._affinity import MODES, affinity, cpu_ns, tree
from ._support import EVENT, FUNCTIONS


def _code(root: Path) -> str:
    code = root / "ric"
    code.mkdir()
    shutil.copyfile(FUNCTIONS / "noop" / "app.py", code / "app.py")
    bootstrap = code / "bootstrap"
    bootstrap.write_text(f'#!/bin/sh\nexec {sys.executable} -m awslambdaric "$_HANDLER"\n')
    bootstrap.chmod(0o755)
    return str(code)


async def _calls(engine: Engine, name: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        await engine.invoke(name, EVENT)
        out.append(time.perf_counter() - t0)
    return out


def _is_agent(pid: int) -> bool:
    try:
        return b"agent/__main__.py" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


async def _cpu(engine: Engine, name: str, n: int) -> dict[str, float]:
    """p50, and CPU µs per call of this process, the agents (a forked worker, its template, a
    custom runtime's agent) and the processes they run (awslambdaric)."""
    await _calls(engine, name, 200)
    me = os.getpid()
    others = [pid for pid in tree(me) if pid != me]
    agents = [pid for pid in others if _is_agent(pid)]
    runtimes = [pid for pid in others if pid not in agents]

    def cpu() -> tuple[int, int, int]:
        return cpu_ns(me), sum(map(cpu_ns, agents)), sum(map(cpu_ns, runtimes))

    before = cpu()
    samples = await _calls(engine, name, n)
    after = cpu()
    per = [(a - b) / n / 1000 for a, b in zip(after, before, strict=True)]
    return {"p50": statistics.median(samples) * 1e6, "engine": per[0], "agent": per[1],
            "runtime": per[2]}  # fmt: skip


def _median_ms(argv: list[str], n: int = 10) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run(argv, check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def _starts() -> list[tuple[str, float]]:
    py = sys.executable
    return [
        ("python -c pass", _median_ms([py, "-c", "pass"])),
        ("/bin/sh -c 'exec python -c pass'", _median_ms(["/bin/sh", "-c", f"exec {py} -c pass"])),
        (
            "python -c 'import awslambdaric.__main__'",
            _median_ms([py, "-c", "import awslambdaric.__main__"]),
        ),
    ]


def _configs(code: str) -> dict[str, FunctionConfig]:
    noop = str(FUNCTIONS / "noop")
    return {
        "ric": FunctionConfig(
            name="ric", handler="app.handler", code=code, runtime="provided.al2023", timeout_s=10
        ),
        "py": FunctionConfig(name="py", handler="app.handler", code=noop),
    }


async def _cpu_table(configs: dict[str, FunctionConfig], calls: int) -> None:
    rows: dict[tuple[str, str], dict[str, float]] = {}
    for name, config in configs.items():
        async with Engine() as engine:  # alone, so that its processes are the only children
            await engine.register(config)
            await engine.invoke(name, EVENT)
            for mode in MODES:
                with affinity(mode):
                    rows[mode, name] = await _cpu(engine, name, calls)
    for mode in MODES:
        print(f"\n== {mode}: warm calls, p50 and CPU per call by process, µs")
        for name in configs:
            cells = "  ".join(f"{k} {v:7.1f}" for k, v in rows[mode, name].items())
            print(f"  {name:<4} {cells}")


async def _main(calls: int, root: Path) -> None:
    await _cpu_table(_configs(_code(root)), calls)
    print("\n== interpreter starts, ms (median of 10)")
    for label, ms in _starts():
        print(f"  {label:<66} {ms:6.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run(_main(args.calls, Path(tmp)))


if __name__ == "__main__":
    main()
