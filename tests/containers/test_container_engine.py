"""``backend="container"`` through the Engine: Lambda's semantics with one container per
environment, on the real Docker Engine (see docker_support for the skip and leftover rules)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from docker_support import IMAGE
from helpers import FUNCTIONS

from runtime import Engine, FunctionConfig, InvalidParameterValueException, PoolConfig

PROBE = str(FUNCTIONS / "container_probe")
POOL = PoolConfig(trust_image_binds=True)


def probe(name: str = "c", **fields: Any) -> FunctionConfig:
    fields.setdefault("image", IMAGE)
    return FunctionConfig(
        name=name, handler="app.handler", code=PROBE, backend="container", **fields
    )


def test_cold_then_warm_in_one_container_with_lambdas_log(arun: Any) -> None:
    async def main() -> None:
        async with Engine(POOL) as engine:
            await engine.register(probe())
            first = await engine.invoke("c", {})
            second = await engine.invoke("c", {})
            assert first.report is not None
            assert second.report is not None
            assert first.report.cold
            assert first.report.init_duration_ms
            assert not second.report.cold
            assert first.json()["token"] == second.json()["token"]
            assert first.json()["pid"] > 1  # a worker forked by the container's first process
            host = first.json()["host"]
            assert f"served by {host}" in second.log_tail
            assert second.log_tail.startswith("START RequestId: ")
            assert "END RequestId: " in second.log_tail
            assert "REPORT RequestId: " in second.log_tail
            assert "Init Duration" in first.log_tail
            assert "Init Duration" not in second.log_tail

    arun(main())


@pytest.mark.parametrize(
    ("event", "fields", "error_type", "next_is_cold"),
    [
        ({"do": "raise"}, {}, "ValueError", False),
        ({"do": "exit"}, {}, "Runtime.ExitError", True),
        ({"do": "oom"}, {"memory_mb": 128}, "Runtime.OutOfMemory", True),
        ({"do": "sleep", "seconds": 5}, {"timeout_s": 1}, "Sandbox.Timedout", True),
    ],
    ids=["handled-exception", "exit", "out-of-memory", "timeout"],
)
def test_faults_in_a_container(
    arun: Any, event: dict[str, Any], fields: dict[str, Any], error_type: str, next_is_cold: bool
) -> None:
    async def main() -> None:
        async with Engine(POOL) as engine:
            await engine.register(probe(**fields))
            warm = await engine.invoke("c", {})
            failed = await engine.invoke("c", event)
            assert failed.function_error == "Unhandled"
            assert orjson.loads(failed.payload)["errorType"] == error_type
            if error_type == "Sandbox.Timedout":  # the container's cgroup high-water mark
                assert failed.report is not None
                assert failed.report.max_memory_used_mb > 0
            after = await engine.invoke("c", {})
            assert after.function_error is None
            assert after.report is not None
            assert after.report.cold is next_is_cold
            assert (after.json()["token"] != warm.json()["token"]) is next_is_cold
            assert engine.stats()["c"]["environments"]["busy"] == 0

    arun(main(), timeout=60)


def test_recycling_provisioning_and_generations(arun: Any) -> None:
    async def main() -> None:
        async with Engine(POOL) as engine:
            await engine.register(probe("once", max_uses=1))
            a = await engine.invoke("once", {})
            b = await engine.invoke("once", {})
            assert a.json()["token"] != b.json()["token"]

            await engine.register(probe("ready", provisioned_concurrency=1))
            assert engine.stats()["ready"]["environments"]["ready"] == 1
            warm = await engine.invoke("ready", {})
            assert warm.report is not None
            assert not warm.report.cold

            await engine.update("ready", environment={"VER": "2"})
            fresh = await engine.invoke("ready", {})
            assert fresh.json()["token"] != warm.json()["token"]

            await engine.unregister("once")

    arun(main(), timeout=60)


def test_a_missing_image_is_refused_at_registration(arun: Any) -> None:
    async def main() -> None:
        async with Engine(POOL) as engine:
            bad = probe(image="warmstart/no-such-image:local")
            with pytest.raises(InvalidParameterValueException, match="image"):
                await engine.register(bad)
            assert engine.functions() == []

    arun(main())
