"""``make tour``: register the example functions on the embedded engine and invoke them.

Shows a cold start, then warm ones, a handler error, a timeout, an update (new generation,
cold again) and provisioned concurrency (warm from the first call), with Lambda's log lines.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runtime import Engine, FunctionConfig, InvokeResult, run

HERE = Path(__file__).parent


def show(title: str, result: InvokeResult) -> None:
    report = result.report
    assert report is not None
    kind = f"cold, init {report.init_duration_ms:.1f} ms" if report.cold else "warm"
    error = f"  [{result.function_error}]" if result.function_error else ""
    print(f"\n== {title}: {kind}{error}")
    print(f"   payload: {result.payload.decode()}")
    for line in result.log_tail.rstrip("\n").splitlines():
        print(f"   | {line}")


async def main() -> None:
    async with Engine() as engine:
        functions: list[dict[str, Any]] = [
            {"name": "hello", "handler": "app.handler", "code": str(HERE / "hello")},
            {"name": "hello-fail", "handler": "app.fail", "code": str(HERE / "hello")},
            {"name": "counter", "handler": "app.handler", "code": str(HERE / "counter")},
            {"name": "slow", "handler": "app.handler", "code": str(HERE / "slow"), "timeout_s": 1},
            {
                "name": "counter-provisioned",
                "handler": "app.handler",
                "code": str(HERE / "counter"),
                "provisioned_concurrency": 1,
            },
        ]
        for spec in functions:
            await engine.register(FunctionConfig(**spec))

        for i in range(3):
            show(
                f"hello #{i + 1}",
                await engine.invoke("hello", {"name": "warmstart", "call": i + 1}),
            )
        show("hello-fail", await engine.invoke("hello-fail", {"bad": True}))
        for i in range(2):
            show(f"counter #{i + 1}", await engine.invoke("counter", {}))
        await engine.update("counter", environment={"GREETING": "hello again"})
        show("counter after update (new generation)", await engine.invoke("counter", {}))
        show("counter-provisioned", await engine.invoke("counter-provisioned", {}))
        show("slow (timeout 1 s, sleeps 2 s)", await engine.invoke("slow", {"seconds": 2}))
        show(
            "slow again (cold: the timed-out worker was replaced)",
            await engine.invoke("slow", {"seconds": 0.1}),
        )

        print("\n== stats")
        for name, s in engine.stats().items():
            envs = ", ".join(f"{k} {v}" for k, v in s["environments"].items() if v)
            print(
                f"   {name:<20} invocations {s['invocations']:>2}  cold {s['cold_starts']}  "
                f"errors {s['errors']}  GB-s {s['gb_seconds']:.6f}  envs: {envs or 'none'}"
            )


if __name__ == "__main__":
    run(main())
