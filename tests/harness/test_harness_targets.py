"""Benchmark targets against real engines and small aiohttp servers."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from helpers import FUNCTIONS

from runtime import FunctionConfig
from runtime.harness.load import LoadShape
from runtime.harness.runner import measure
from runtime.harness.targets import (
    EmbeddedTarget,
    EndpointTarget,
    HttpTarget,
    outcome_from_log,
    parse_report,
)

MIXED = str(FUNCTIONS / "harness_mixed")
THROTTLED = "ReservedFunctionConcurrentInvocationLimitExceeded"


def fn(handler: str, **kw: Any) -> FunctionConfig:
    return FunctionConfig(name="h", handler=f"app.{handler}", code=MIXED, **kw)


def test_warm_run_with_warmup_has_no_cold_sample(arun: Any) -> None:
    target = EmbeddedTarget(fn("echo"))
    result = arun(measure(target, LoadShape(requests=20, warmup=1), b'{"a": 1}'))
    rec = result.recorder
    assert (rec.count, rec.cold, rec.warm) == (20, 0, 20)
    assert rec.init.count == 0
    assert rec.billed_ms >= 20
    assert rec.gb_seconds == pytest.approx(rec.billed_ms / 1000 * 128 / 1024)
    assert target.engine is None  # closed


@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_cold_mode_gives_only_cold_samples(arun: Any, start: str) -> None:
    target = EmbeddedTarget(fn("echo", start=start), cold=True)
    assert target.config.max_uses == 1
    n = 8 if start == "fork" else 3
    result = arun(measure(target, LoadShape(concurrency=2, requests=n), b"{}"))
    rec = result.recorder
    assert (rec.cold, rec.warm) == (n, 0)
    assert rec.init.count == n
    assert rec.init.min > 0
    assert not rec.errors


def test_errors_are_counted_by_type(arun: Any) -> None:
    result = arun(measure(EmbeddedTarget(fn("rotate")), LoadShape(requests=30), b"{}"))
    assert result.recorder.errors == {"ValueError": 10, "KeyError": 10}
    assert (result.recorder.cold, result.recorder.warm) == (1, 29)


def test_throttles_are_counted_by_reason(arun: Any) -> None:
    target = EmbeddedTarget(fn("sleepy", reserved_concurrency=1))
    shape = LoadShape(concurrency=3, requests=12)
    result = arun(measure(target, shape, b'{"s": 0.05}'))
    rec = result.recorder
    assert rec.count == 12
    assert set(rec.throttles) == {THROTTLED}
    assert rec.throttles[THROTTLED] >= 1
    assert rec.cold + rec.warm + rec.throttles[THROTTLED] == 12
    assert not rec.errors


# -- a warmstart service stand-in: Lambda's Invoke route ---------------------------------------


def _log(request_id: str, init: bool) -> str:
    line = (
        f"REPORT RequestId: {request_id}\tDuration: 1.20 ms\tBilled Duration: 2 ms\t"
        "Memory Size: 256 MB\tMax Memory Used: 40 MB\t"
    )
    if init:
        line += "Init Duration: 12.50 ms\t"
    text = f"START RequestId: {request_id} Version: $LATEST\nEND RequestId: {request_id}\n{line}\n"
    return base64.b64encode(text.encode()).decode()


def invoke_app(seen: list[tuple[str, bytes, str]]) -> web.Application:
    """Call 1 is cold; every 5th raises ValueError; every 7th is throttled."""

    async def invoke(request: web.Request) -> web.Response:
        body = await request.read()
        seen.append((request.match_info["name"], body, request.headers.get("X-Amz-Log-Type", "")))
        n = len(seen)
        if n % 7 == 0:
            doc: dict[str, Any] = {"Reason": THROTTLED, "Type": "User", "message": "Rate Exceeded."}
            return web.json_response(
                doc, status=429, headers={"X-Amzn-ErrorType": "TooManyRequestsException"}
            )
        headers = {"X-Amz-Log-Result": _log(f"r{n}", init=n == 1)}
        if n % 5 == 0:
            headers["X-Amz-Function-Error"] = "Unhandled"
            doc = {"errorMessage": "bad", "errorType": "ValueError", "stackTrace": []}
            return web.json_response(doc, headers=headers)
        return web.Response(body=body, headers=headers, content_type="application/json")

    app = web.Application()
    app.router.add_post("/2015-03-31/functions/{name}/invocations", invoke)
    return app


def test_endpoint_target_reads_lambda_headers(arun: Any) -> None:
    seen: list[tuple[str, bytes, str]] = []

    async def main() -> Any:
        async with TestServer(invoke_app(seen), host="127.0.0.1") as server:
            endpoint = str(server.make_url("/"))
            target = EndpointTarget(endpoint, "hello", connections=2)
            return await measure(target, LoadShape(concurrency=2, requests=35), b'{"k": 1}')

    rec = arun(main()).recorder
    assert {(name, body, tail) for name, body, tail in seen} == {("hello", b'{"k": 1}', "Tail")}
    assert rec.count == 35
    assert rec.throttles == {THROTTLED: 5}
    assert rec.errors == {"ValueError": 6}  # 5, 10, 15, 20, 25, 30 (35 is a throttle)
    assert (rec.cold, rec.warm) == (1, 29)
    assert rec.init.count == 1
    assert rec.billed_ms == 2 * 30
    assert rec.gb_seconds == pytest.approx(60 / 1000 * 256 / 1024)


def test_endpoint_error_status_without_function_error(arun: Any) -> None:
    async def missing(request: web.Request) -> web.Response:
        return web.json_response(
            {"Type": "User", "message": "Function not found"},
            status=404,
            headers={"X-Amzn-ErrorType": "ResourceNotFoundException:http://internal"},
        )

    app = web.Application()
    app.router.add_post("/2015-03-31/functions/{name}/invocations", missing)

    async def main() -> Any:
        async with TestServer(app, host="127.0.0.1") as server:
            target = EndpointTarget(str(server.make_url("")), "nope", connections=1)
            return await measure(target, LoadShape(requests=3), b"{}")

    assert arun(main()).recorder.errors == {"ResourceNotFoundException": 3}


def peers_app(peers: set[Any], state: dict[str, int]) -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        peers.add(request.transport.get_extra_info("peername") if request.transport else None)
        state["now"] += 1
        state["peak"] = max(state["peak"], state["now"])
        try:
            await asyncio.sleep(0.005)
        finally:
            state["now"] -= 1
        if request.query.get("fail"):
            return web.Response(status=503)
        return web.Response(text=request.method)

    app = web.Application()
    app.router.add_route("*", "/", handle)
    return app


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_url_target_uses_one_connection_per_caller(arun: Any, method: str) -> None:
    peers: set[Any] = set()
    state = {"now": 0, "peak": 0}

    async def main() -> Any:
        async with TestServer(peers_app(peers, state), host="127.0.0.1") as server:
            target = HttpTarget(str(server.make_url("/")), connections=3, method=method)
            return await measure(target, LoadShape(concurrency=3, requests=30), b"{}")

    rec = arun(main()).recorder
    assert rec.count == 30
    assert not rec.errors
    assert state["peak"] == 3
    assert len(peers) == 3


def test_url_target_counts_http_errors(arun: Any) -> None:
    async def main() -> Any:
        async with TestServer(peers_app(set(), {"now": 0, "peak": 0}), host="127.0.0.1") as s:
            target = HttpTarget(str(s.make_url("/?fail=1")), connections=1)
            return await measure(target, LoadShape(rate=200, requests=4), b"{}")

    assert arun(main()).recorder.errors == {"HTTP 503": 4}


def test_unreachable_url_is_an_error_of_the_transport_type(arun: Any) -> None:
    target = HttpTarget("http://127.0.0.1:9/", connections=1)  # discard port: refused
    rec = arun(measure(target, LoadShape(requests=2), b"{}")).recorder
    assert sum(rec.errors.values()) == 2
    assert all(name.startswith("Client") for name in rec.errors)


def test_report_line_parsing() -> None:
    log = "hello\nREPORT RequestId: x\tDuration: 1.00 ms\tBilled Duration: 7 ms\t"
    assert parse_report(log)["Billed Duration"] == "7 ms"
    assert parse_report("no report") == {}
    outcome = outcome_from_log(base64.b64encode(log.encode()).decode(), None)
    assert (outcome.billed_ms, outcome.cold, outcome.memory_mb) == (7, False, None)
    assert outcome_from_log("***not base64***", "E").error_type == "E"
