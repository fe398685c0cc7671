"""The AWS Python runtime interface client (awslambdaric), unchanged, as a custom runtime."""

from __future__ import annotations

import re
from typing import Any

import pytest
from runtimeapi_support import MakeCode

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
