"""The AWS Python runtime interface client (awslambdaric), unchanged, as a custom runtime."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from helpers import eventually
from runtimeapi_support import MakeCode
from service_support import boto, call, config_of, serving

from runtime import Engine, FunctionConfig

pytest.importorskip("awslambdaric")


def ric(name: str, code: str, handler: str = "ric_app.handler", **fields: Any) -> FunctionConfig:
    fields.setdefault("timeout_s", 10)
    return FunctionConfig(name=name, handler=handler, code=code, runtime="provided.al2", **fields)


def test_cold_then_warm_with_a_dict_event(arun: Any, make_code: MakeCode) -> None:
    async def main() -> None:
        async with Engine() as engine:
            await engine.register(ric("r", make_code("ric")))
            first = await engine.invoke("r", b'{"a": 1}', client_context={"custom": {"k": "v"}})
            second = await engine.invoke("r", b'{"a": 2}')
            assert first.function_error is None, first.payload
            doc, again = first.json(), second.json()
            assert doc["event_type"] == "dict"  # /next said exactly application/json
            assert doc["custom"] == {"k": "v"}
            assert doc["arn"] == "arn:aws:lambda:us-east-1:000000000000:function:r"
            assert 0 < doc["remaining"] <= 10_000
            assert doc["trace"].startswith("Root=1-")
            assert (again["count"], again["pid"]) == (2, doc["pid"])
            assert first.report is not None
            assert first.report.cold
            assert second.report is not None
            assert not second.report.cold
            assert f"ric handling {second.request_id}" in second.log

    arun(main(), timeout=60)


def test_handler_exception_is_a_function_error(arun: Any, make_code: MakeCode) -> None:
    async def main() -> None:
        async with Engine() as engine:
            await engine.register(ric("rf", make_code("ric")))
            result = await engine.invoke("rf", b'{"fail": true}')
            assert result.function_error == "Unhandled"
            doc = result.json()
            assert doc["errorType"] == "KeyError"
            assert doc["errorMessage"] == "'nope'"
            assert doc["requestId"] == result.request_id
            assert doc["stackTrace"]
            after = await engine.invoke("rf", b"{}")
            assert after.json()["count"] == 2

    arun(main(), timeout=60)


def test_missing_module_is_an_init_error_each_cold_start(arun: Any, make_code: MakeCode) -> None:
    async def main() -> None:
        async with Engine() as engine:
            await engine.register(ric("rm", make_code("ric"), handler="nomod.handler"))
            for _ in range(2):
                result = await engine.invoke("rm")
                assert result.function_error == "Unhandled"
                doc = result.json()
                assert doc["errorType"] == "Runtime.ImportModuleError"
                assert re.match(r"Unable to import module 'nomod'", doc["errorMessage"])
            assert engine.stats()["rm"]["cold_starts"] == 2

    arun(main(), timeout=60)


def test_timeout_kills_the_runtime_and_the_next_call_is_cold(
    arun: Any, make_code: MakeCode
) -> None:
    async def main() -> None:
        async with Engine() as engine:
            await engine.register(ric("rt", make_code("ric"), timeout_s=1))
            warm = await engine.invoke("rt", b"{}")
            slow = await engine.invoke("rt", b'{"sleep": 30}')
            assert slow.function_error == "Unhandled"
            assert slow.json()["errorType"] == "Sandbox.Timedout"
            assert "Task timed out after 1.00 seconds" in slow.json()["errorMessage"]
            after = await engine.invoke("rt", b"{}")
            assert after.report is not None
            assert after.report.cold
            assert after.json()["count"] == 1  # a new runtime process: module state is new
            assert after.json()["pid"] != warm.json()["pid"]

    arun(main(), timeout=60)


def test_event_invocations_reach_the_runtime_through_next(
    arun: Any, make_code: MakeCode, tmp_path: Path
) -> None:
    """InvocationType=Event through boto3: queued, then served to awslambdaric's /next."""
    fn = ric("ev", make_code("ric"))

    async def main() -> None:
        async with serving(config_of(fn)) as svc, boto(svc.url) as client:
            marks = [tmp_path / f"mark-{n}" for n in range(3)]
            ids = []
            for mark in marks:
                answer = await call(
                    client.invoke,
                    FunctionName="ev",
                    InvocationType="Event",
                    Payload=json.dumps({"mark": str(mark)}).encode(),
                )
                assert answer["StatusCode"] == 202
                ids.append(answer["ResponseMetadata"]["RequestId"])
            await eventually(lambda: all(m.exists() for m in marks), timeout=30)
            # each ran once, under the request id its 202 gave
            assert [m.read_text() for m in marks] == ids

    arun(main(), timeout=60)
