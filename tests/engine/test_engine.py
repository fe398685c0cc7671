"""The engine end to end: real templates, forked and spawned workers, Lambda's semantics.

Every test drives a real ``Engine`` on a fresh uvloop loop (the ``arun`` fixture) and leaves no
agent process behind (the autouse ``no_leaked_processes`` fixture). Handlers live in
``tests/functions/``; most return what the test needs to see (a pid, the context, the
environment). The few real-time tests assert a hard upper bound with ``time.monotonic``.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import time
import zipfile
from pathlib import Path
from typing import Any

import orjson
import pytest
from helpers import FUNCTIONS, eventually, pid_exists, report_of

from runtime import (
    Engine,
    FunctionConfig,
    InvalidParameterValueException,
    InvalidRequestContentException,
    PoolConfig,
    RequestTooLargeException,
    ResourceConflictException,
    ResourceNotFoundException,
    ServiceException,
    TooManyRequestsException,
)
from runtime.agent import protocol as P
from runtime.errors import BatchUnavailableException
from runtime.result import LOG_TAIL_BYTES

BASIC = FUNCTIONS / "basic"
RID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def config(name: str, handler: str, code: Path | str = BASIC, **changes: Any) -> FunctionConfig:
    return FunctionConfig(name=name, handler=f"app.{handler}", code=str(code), **changes)


def envs(engine: Engine, name: str) -> dict[str, int]:
    return engine.stats()[name]["environments"]  # type: ignore[no-any-return]


# -- cold and warm ---------------------------------------------------------------------------


def test_cold_then_warm(arun: Any) -> None:
    async def main() -> None:
        async with Engine() as engine:
            await engine.register(config("f", "whoami"))
            first = await engine.invoke("f")
            second = await engine.invoke("f")

            assert first.function_error is None
            assert first.report is not None
            assert first.report.cold is True
            assert first.report.init_duration_ms is not None
            assert first.report.init_duration_ms > 0
            assert re.search(r"\tInit Duration: \d+\.\d\d ms\t$", first.log.splitlines()[-1])

            assert second.function_error is None
            assert second.report is not None
            assert second.report.cold is False
            assert second.report.init_duration_ms is None
            assert "Init Duration" not in second.log
            assert first.json()["pid"] == second.json()["pid"]
            # forked from the template, not from this process
            assert first.json()["ppid"] != os.getpid()
            assert first.request_id != second.request_id

            stats = engine.stats()["f"]
            assert stats["invocations"] == 2
            assert stats["cold_starts"] == 1

    arun(main())


# -- payloads --------------------------------------------------------------------------------


def test_payload_forms_reach_the_handler_unchanged(
    arun: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[bytes] = []
    encode = P.encode

    def spy(kind: int, fields: Any, *args: Any) -> bytes:
        if kind == P.INVOKE:
            sent.append(fields[1])
        return encode(kind, fields, *args)

    monkeypatch.setattr(P, "encode", spy)

    async def main() -> None:
        async with Engine() as engine:
            await engine.register(config("echo", "echo"))
            raw = b'{"a":  1,   "b" : [1,2 ,3]}'
            as_bytes = await engine.invoke("echo", raw)
            as_str = await engine.invoke("echo", '{"s": "caf\u00e9 \u2603"}')
            as_dict = await engine.invoke("echo", {"d": {"nested": [True, None, 1.5]}})
            as_list = await engine.invoke("echo", b"[1, 2]")
            as_scalar = await engine.invoke("echo", b' "just a string" ')
            empty = await engine.invoke("echo", b"")

            # the bytes went to the worker exactly as given, no re-encoding on the way
            assert sent[0] == raw
            assert sent[1] == '{"s": "caf\u00e9 \u2603"}'.encode()
            assert sent[2] == orjson.dumps({"d": {"nested": [True, None, 1.5]}})
            assert sent[4] == b' "just a string" '
            assert sent[5] == b"{}"  # an empty payload is Lambda's empty event

            # the handler got them parsed; its return value comes back as JSON bytes
            assert isinstance(as_bytes.payload, bytes)
            assert orjson.loads(as_bytes.payload) == {"a": 1, "b": [1, 2, 3]}
            assert as_str.json() == {"s": "caf\u00e9 \u2603"}
            assert as_dict.json() == {"d": {"nested": [True, None, 1.5]}}
            assert as_list.payload == b"[1,2]"
            assert as_scalar.payload == b'"just a string"'
            assert empty.json() == {}
            assert all(
                r.status_code == 200 and r.function_error is None
                for r in (as_bytes, as_str, as_dict)
            )

    arun(main())


# -- logs ------------------------------------------------------------------------------------


def test_log_tail_frames_the_invocation(arun: Any) -> None:
    async def main() -> None:
        async with Engine() as engine:
            await engine.register(config("noisy", "noisy", memory_mb=192))
            result = await engine.invoke("noisy", {"marker": "m1", "n": 3})
            rid = result.request_id
            tail = result.log_tail
            lines = tail.splitlines()
            assert lines[0] == f"START RequestId: {rid} Version: $LATEST"
            assert "<m1> out 0" in lines
            assert "<m1> out 2" in lines
            assert "<m1> err 2" in lines
            assert lines[-2] == f"END RequestId: {rid}"
            assert re.fullmatch(
                rf"REPORT RequestId: {rid}\tDuration: \d+\.\d\d ms\tBilled Duration: \d+ ms\t"
                rf"Memory Size: 192 MB\tMax Memory Used: \d+ MB\tInit Duration: \d+\.\d\d ms\t",
                lines[-1],
            )
            report = result.report
            assert report is not None
            assert f"Duration: {report.duration_ms:.2f} ms\t" in lines[-1]
            assert f"Billed Duration: {report.billed_duration_ms} ms\t" in lines[-1]
            assert f"Max Memory Used: {report.max_memory_used_mb} MB\t" in lines[-1]
            # the function's recent log holds the same block
            assert result.log in engine.logs("noisy")

    arun(main())


def test_log_tail_is_capped_at_4kb_and_keeps_the_end(arun: Any) -> None:
    async def main() -> None:
        async with Engine() as engine:
            await engine.register(config("chatty", "chatty"))
            result = await engine.invoke("chatty", {"kb": 100})
            assert result.function_error is None
            assert len(result.log.encode()) > 100 * 1024  # the whole output is kept ...
            tail = result.log_tail
            assert len(tail.encode()) <= LOG_TAIL_BYTES  # ... the tail is the last 4 KB
            assert len(tail.encode()) > LOG_TAIL_BYTES - 100
            assert "START RequestId" not in tail
            assert "last line of chatty\n" in tail
            assert f"END RequestId: {result.request_id}\n" in tail
            assert tail.splitlines()[-1].startswith(f"REPORT RequestId: {result.request_id}\t")
            assert tail.endswith("\n")

    arun(main())


def test_concurrent_output_never_mixes(arun: Any) -> None:
    async def main() -> None:
        async with Engine() as engine:
            await engine.register(config("noisy", "noisy"))
            markers = [f"mark{i}" for i in range(8)]
            results = await asyncio.gather(
                *(engine.invoke("noisy", {"marker": m, "n": 200}) for m in markers)
            )
            pids = set()
            for marker, result in zip(markers, results, strict=True):
                assert result.function_error is None
                assert result.json()["marker"] == marker
                pids.add(result.json()["pid"])
                seen = re.findall(r"<(\w+)>", result.log)
                assert len(seen) == 400
                assert set(seen) == {marker}, f"{marker}'s log has {set(seen) - {marker}}"
                assert result.log.count(f"RequestId: {result.request_id}") == 3
            assert len(pids) >= 2  # several environments ran at once
            assert envs(engine, "noisy")["ready"] == len(pids)

    arun(main())


def test_logging_module_uses_lambdas_format(arun: Any) -> None:
    async def main() -> None:
        async with Engine() as engine:
            await engine.register(config("log", "log_info"))
            result = await engine.invoke("log", {"n": 7})
            rid = result.request_id
            stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
            line = rf"\[INFO\]\t{stamp}\t{rid}\thello from logging 7"
            assert re.search(rf"^{line}$", result.log, re.MULTILINE), result.log
            assert "debug is below the level" not in result.log
            # the request id follows the invocation
            again = await engine.invoke("log", {"n": 8})
            assert re.search(
                rf"\t{again.request_id}\thello from logging 8$", again.log, re.MULTILINE
            )
            assert rid not in again.log

    arun(main())


# -- context and environment -----------------------------------------------------------------


def test_context_object(arun: Any) -> None:
    async def main() -> None:
        async with Engine() as engine:
            await engine.register(config("ctxfn", "ctx", timeout_s=7))
            plain = await engine.invoke("ctxfn")
            ctx = plain.json()
            assert plain.report is not None
            assert ctx["aws_request_id"] == plain.report.request_id
            assert ctx["function_name"] == "ctxfn"
            assert ctx["function_version"] == "$LATEST"
            assert (
                ctx["invoked_function_arn"]
                == "arn:aws:lambda:us-east-1:000000000000:function:ctxfn"
            )
            assert ctx["memory_limit_in_mb"] == "128"
            assert ctx["log_group_name"] == "/aws/lambda/ctxfn"
            assert re.fullmatch(
                r"\d{4}/\d{2}/\d{2}/\[\$LATEST\][0-9a-f]{32}", ctx["log_stream_name"]
            )
            assert 0 < ctx["remaining"] <= 7000
            assert ctx["remaining"] > 5000  # the call itself took far less than 2 s
            assert ctx["cognito_identity_id"] is None
            assert ctx["client_installation_id"] is None
            assert ctx["client_custom"] is None

            rich = await engine.invoke(
                "ctxfn",
                {},
                client_context={
                    "client": {"installation_id": "inst-1", "app_title": "t"},
                    "custom": {"k": "v"},
                    "env": {"platform": "test"},
                },
                identity={"cognitoIdentityId": "id-1", "cognitoIdentityPoolId": "pool-1"},
            )
            ctx2 = rich.json()
            assert ctx2["aws_request_id"] == rich.request_id != plain.request_id
            assert ctx2["client_installation_id"] == "inst-1"
            assert ctx2["client_custom"] == {"k": "v"}
            assert ctx2["client_env"] == {"platform": "test"}
            assert ctx2["cognito_identity_id"] == "id-1"
            assert ctx2["cognito_identity_pool_id"] == "pool-1"
            # the same environment, the same log stream
            assert ctx2["log_stream_name"] == ctx["log_stream_name"]

    arun(main())


@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_environment_variables(arun: Any, monkeypatch: pytest.MonkeyPatch, start: str) -> None:
    monkeypatch.setenv("WARMSTART_TEST_SECRET", "do-not-leak")

    async def main() -> None:
        async with Engine(PoolConfig(region="eu-west-1")) as engine:
            await engine.register(
                config(
                    "envfn",
                    "environ",
                    memory_mb=512,
                    environment={"MY_SETTING": "on", "VER": "1"},
                    start=start,
                )
            )
            result = await engine.invoke("envfn")
            env = result.json()
            ctx_stream = env["AWS_LAMBDA_LOG_STREAM_NAME"]
            assert env["AWS_LAMBDA_FUNCTION_NAME"] == "envfn"
            assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "512"
            assert env["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
            assert env["AWS_LAMBDA_LOG_GROUP_NAME"] == "/aws/lambda/envfn"
            assert re.fullmatch(r"\d{4}/\d{2}/\d{2}/\[\$LATEST\][0-9a-f]{32}", ctx_stream)
            assert env["AWS_REGION"] == "eu-west-1"
            assert env["_HANDLER"] == "app.environ"
            assert env["LAMBDA_TASK_ROOT"] == str(BASIC.resolve())
            assert env["TZ"] == ":UTC"
            assert env["MY_SETTING"] == "on"
            assert env["VER"] == "1"
            assert "WARMSTART_TEST_SECRET" not in env
            assert os.environ["WARMSTART_TEST_SECRET"] == "do-not-leak"

    arun(main())


# -- report figures --------------------------------------------------------------------------


def test_max_memory_used_is_measured(arun: Any) -> None:
    async def main() -> None:
        async with Engine() as engine:
            await engine.register(config("hog", "alloc", memory_mb=256))
            await engine.register(config("idle", "echo", memory_mb=256))
            hog = await engine.invoke("hog", {"mb": 60})
            idle = await engine.invoke("idle", {})
            assert hog.function_error is None
            assert hog.json() == 60 * 1024 * 1024
            assert hog.report is not None
            assert idle.report is not None
            assert hog.report.max_memory_used_mb >= 60
            assert idle.report.max_memory_used_mb > 0
            assert idle.report.max_memory_used_mb < hog.report.max_memory_used_mb - 40
            for result in (hog, idle):
                assert result.report is not None
                assert result.report.memory_size_mb == 256
                assert "\tMemory Size: 256 MB\t" in result.log
                assert f"\tMax Memory Used: {result.report.max_memory_used_mb} MB\t" in result.log

    arun(main())


def test_billed_duration_rounds_up_to_the_millisecond(arun: Any) -> None:
    async def main() -> None:
        async with Engine() as engine:
            await engine.register(config("sleepy", "sleep"))
            slow = await engine.invoke("sleepy", {"s": 0.0123})
            fast = await engine.invoke("sleepy", {"s": 0})
            assert slow.report is not None
            assert fast.report is not None
            assert slow.report.duration_ms >= 12.3
            assert slow.report.billed_duration_ms == math.ceil(slow.report.duration_ms)
            assert fast.report.duration_ms < 5
            assert fast.report.billed_duration_ms == max(1, math.ceil(fast.report.duration_ms))
            assert fast.report.billed_duration_ms >= 1

    arun(main())


# -- invocation types and payload checks -----------------------------------------------------


def test_dry_run_validates_without_running(arun: Any) -> None:
    async def main() -> None:
        async with Engine() as engine:
            await engine.register(config("f", "echo"))
            result = await engine.invoke("f", {"x": 1}, "DryRun")
            assert result.status_code == 204
            assert result.payload == b""
            assert result.function_error is None
            with pytest.raises(InvalidRequestContentException):
                await engine.invoke("f", b"{nope", "DryRun")
            stats = engine.stats()["f"]
            assert stats["invocations"] == 0
            assert stats["cold_starts"] == 0
            assert sum(stats["environments"].values()) == 0
            assert engine.logs("f") == ""

    arun(main())


def test_event_is_accepted_then_runs(arun: Any) -> None:
    async def main() -> None:
        async with Engine() as engine:
            await engine.register(config("f", "noisy"))
            result = await engine.invoke("f", {"marker": "evt", "n": 1}, "Event")
            assert result.status_code == 202
            assert result.payload == b""
            waited = await eventually(lambda: engine.stats()["f"]["invocations"] == 1, 5.0)
            assert waited < 5.0
            assert "<evt> out 0" in engine.logs("f")
            assert engine.stats()["f"]["errors"] == 0

    arun(main())


def test_invalid_and_oversized_payloads_are_refused_before_anything_runs(arun: Any) -> None:
    async def main() -> None:
        async with Engine() as engine:
            await engine.register(config("f", "echo"))
            with pytest.raises(
                InvalidRequestContentException, match="Could not parse request body into json"
            ):
                await engine.invoke("f", b"this is not json")
            with pytest.raises(InvalidRequestContentException):
                await engine.invoke("f", "{'single': 'quotes'}")
            with pytest.raises(InvalidRequestContentException):
                await engine.invoke("f", {1, 2})  # not serializable to JSON

            sync_limit, async_limit = 6_291_456, 1_048_576

            def string_payload(size: int) -> bytes:
                return b'"' + b"x" * (size - 2) + b'"'

            with pytest.raises(RequestTooLargeException, match="6291457 byte payload"):
                await engine.invoke("f", string_payload(sync_limit + 1))
            with pytest.raises(RequestTooLargeException):
                await engine.invoke("f", {"k": "x" * sync_limit})
            with pytest.raises(RequestTooLargeException, match="1048577 byte payload"):
                await engine.invoke("f", string_payload(async_limit + 1), "Event")
            # the limits themselves are allowed (DryRun validates without running)
            ok = await engine.invoke("f", string_payload(sync_limit), "DryRun")
            assert ok.status_code == 204

            stats = engine.stats()["f"]
            assert stats["invocations"] == 0
            assert sum(stats["environments"].values()) == 0
            assert not engine._envs
            assert not engine._calls

            # a payload at the async limit is accepted for an Event and runs
            accepted = await engine.invoke("f", string_payload(async_limit), "Event")
            assert accepted.status_code == 202
            await eventually(lambda: engine.stats()["f"]["invocations"] == 1, 5.0)

    arun(main())


# -- registration ----------------------------------------------------------------------------


def test_function_registry_errors(arun: Any) -> None:
    async def main() -> None:
        async with Engine() as engine:
            with pytest.raises(ResourceNotFoundException, match="function:ghost"):
                await engine.invoke("ghost")
            await engine.register(config("f", "echo"))
            with pytest.raises(ResourceConflictException):
                await engine.register(config("f", "whoami"))
            assert engine.get_function("f").handler == "app.echo"
            assert (await engine.invoke("f", {"still": "echo"})).json() == {"still": "echo"}
            await engine.unregister("f")
            with pytest.raises(
                ResourceNotFoundException, match="arn:aws:lambda:us-east-1:000000000000:function:f"
            ):
                await engine.invoke("f")
            with pytest.raises(ResourceNotFoundException):
                await engine.unregister("f")
            assert "f" not in engine.stats()
            # the name is free again
            await engine.register(config("f", "whoami"))
            assert "pid" in (await engine.invoke("f")).json()

    arun(main())


def test_update_starts_a_new_generation(arun: Any) -> None:
    async def main() -> None:
        async with Engine() as engine:
            await engine.register(config("f", "whoami", environment={"VER": "1"}))
            before = await engine.invoke("f")
            old_pid = before.json()["pid"]
            assert before.json()["version"] == "1"

            updated = await engine.update("f", environment={"VER": "2"})
            assert updated.environment == {"VER": "2"}
            after = await engine.invoke("f")
            assert after.report is not None
            assert after.report.cold is True
            assert "Init Duration" in after.log
            assert after.json()["version"] == "2"
            assert after.json()["pid"] != old_pid
            await eventually(lambda: not pid_exists(old_pid))
            assert engine.stats()["f"]["generation"] == 1
            assert engine.stats()["f"]["environments"]["ready"] == 1

            await engine.update("f", code=str(FUNCTIONS / "v2"))
            third = await engine.invoke("f")
            assert third.report is not None
            assert third.report.cold is True
            assert third.json()["version"] == "code-v2"
            assert engine.stats()["f"]["generation"] == 2

    arun(main())


# -- pool policies ---------------------------------------------------------------------------


def test_keepalive_stops_an_idle_environment(arun: Any) -> None:
    async def main() -> None:
        async with Engine() as engine:
            await engine.register(config("f", "whoami", keepalive_s=1))
            first = await engine.invoke("f")
            t0 = time.monotonic()
            pid = first.json()["pid"]
            await asyncio.sleep(0.6)
            assert envs(engine, "f")["ready"] == 1  # not before the keepalive
            assert pid_exists(pid)
            await asyncio.sleep(0.6)
            await eventually(lambda: envs(engine, "f")["ready"] == 0 and not pid_exists(pid), 2.0)
            assert time.monotonic() - t0 < 3.0
            assert sum(envs(engine, "f").values()) == 0
            again = await engine.invoke("f")
            assert again.report is not None
            assert again.report.cold is True
            assert again.json()["pid"] != pid

    arun(main())


def test_provisioned_concurrency_is_warm_before_the_first_call(arun: Any) -> None:
    async def main() -> None:
        async with Engine() as engine:
            await engine.register(config("f", "whoami", provisioned_concurrency=2, keepalive_s=0))
            assert envs(engine, "f")["ready"] == 2
            first = await engine.invoke("f")
            assert first.report is not None
            assert first.report.cold is False
            assert "Init Duration" not in first.log
            both = await asyncio.gather(engine.invoke("f"), engine.invoke("f"))
            assert all(not report_of(r).cold for r in both)
            assert len({r.json()["pid"] for r in both}) == 2
            assert engine.stats()["f"]["cold_starts"] == 0
            assert envs(engine, "f")["ready"] == 2  # the floor is kept despite keepalive 0

    arun(main())


def test_max_uses_recycles_the_environment(arun: Any) -> None:
    async def main() -> None:
        async with Engine() as engine:
            await engine.register(config("f", "whoami", max_uses=2))
            one, two, three = [await engine.invoke("f") for _ in range(3)]
            assert one.report is not None
            assert two.report is not None
            assert three.report is not None
            assert one.report.cold
            assert not two.report.cold
            assert three.report.cold
            assert one.json()["pid"] == two.json()["pid"] != three.json()["pid"]
            await eventually(lambda: not pid_exists(one.json()["pid"]))
            assert engine.stats()["f"]["cold_starts"] == 2

    arun(main())


def test_reserved_concurrency_throttles(arun: Any) -> None:
    async def main() -> None:
        async with Engine() as engine:
            await engine.register(config("f", "sleep", reserved_concurrency=1))
            results = await asyncio.gather(
                engine.invoke("f", {"s": 0.3}),
                engine.invoke("f", {"s": 0.3}),
                return_exceptions=True,
            )
            ok = [r for r in results if not isinstance(r, BaseException)]
            refused = [r for r in results if isinstance(r, BaseException)]
            assert len(ok) == 1
            assert len(refused) == 1
            assert ok[0].function_error is None
            assert isinstance(refused[0], TooManyRequestsException)
            assert refused[0].reason == "ReservedFunctionConcurrentInvocationLimitExceeded"
            assert refused[0].status == 429
            stats = engine.stats()["f"]
            assert stats["throttles"] == 1
            assert stats["invocations"] == 1

    arun(main())


def test_reserved_concurrency_with_a_queue_waits(arun: Any) -> None:
    async def main() -> None:
        async with Engine(PoolConfig(max_queue=5)) as engine:
            await engine.register(config("f", "sleep", reserved_concurrency=1))
            t0 = time.monotonic()
            first, second = await asyncio.gather(
                engine.invoke("f", {"s": 0.3}), engine.invoke("f", {"s": 0.3})
            )
            elapsed = time.monotonic() - t0
            assert first.function_error is None
            assert second.function_error is None
            assert first.json() == second.json()  # one environment served both, in turn
            assert second.report is not None
            assert second.report.cold is False
            assert 0.6 <= elapsed < 3.0
            assert engine.stats()["f"]["throttles"] == 0

    arun(main())


def test_a_queued_call_gives_up_after_queue_timeout(arun: Any) -> None:
    async def main() -> None:
        async with Engine(PoolConfig(max_queue=1, queue_timeout_s=0.2)) as engine:
            await engine.register(config("f", "sleep", reserved_concurrency=1))
            running = asyncio.ensure_future(engine.invoke("f", {"s": 0.8}))
            await eventually(lambda: envs(engine, "f")["busy"] == 1)
            t0 = time.monotonic()
            with pytest.raises(TooManyRequestsException) as refused:
                await engine.invoke("f", {"s": 0})
            waited = time.monotonic() - t0
            assert 0.15 <= waited < 1.5
            assert "waited too long" in str(refused.value)
            assert (await running).function_error is None
            assert engine.stats()["f"]["throttles"] == 1

    arun(main())


def test_account_concurrency_throttles_unreserved_functions(arun: Any) -> None:
    async def main() -> None:
        async with Engine(PoolConfig(account_concurrency=1)) as engine:
            await engine.register(config("a", "sleep"))
            await engine.register(config("b", "sleep"))
            results = await asyncio.gather(
                engine.invoke("a", {"s": 0.3}), engine.invoke("b", {"s": 0}), return_exceptions=True
            )
            assert not isinstance(results[0], BaseException)
            assert isinstance(results[1], TooManyRequestsException)
            assert results[1].reason == "ConcurrentInvocationLimitExceeded"
            assert (await engine.invoke("b", {"s": 0})).function_error is None  # capacity is back

    arun(main())


def test_update_lets_a_running_call_finish_on_the_old_code(arun: Any) -> None:
    async def main() -> None:
        async with Engine() as engine:
            await engine.register(config("f", "sleep"))
            running = asyncio.ensure_future(engine.invoke("f", {"s": 0.3}))
            await eventually(lambda: envs(engine, "f")["busy"] == 1)
            await engine.update("f", handler="app.whoami")
            old = await running
            assert old.function_error is None
            assert isinstance(old.json(), int)
            new = await engine.invoke("f")
            assert new.report is not None
            assert new.report.cold
            assert new.json()["pid"] != old.json()
            await eventually(lambda: not pid_exists(old.json()))
            await eventually(lambda: list(engine._functions["f"].templates) == [1])
            assert envs(engine, "f") == {"starting": 0, "ready": 1, "busy": 0, "stopping": 0}

    arun(main())


def test_spawn_starts_a_fresh_interpreter(arun: Any) -> None:
    async def main() -> None:
        async with Engine() as engine:
            await engine.register(config("f", "whoami", start="spawn"))
            assert not engine._functions["f"].templates  # no template for spawn
            first = await engine.invoke("f")
            second = await engine.invoke("f")
            assert first.function_error is None
            assert first.json()["ppid"] == os.getpid()
            assert first.report is not None
            assert first.report.cold is True
            assert first.report.init_duration_ms is not None
            assert first.report.init_duration_ms > 0
            assert "Init Duration" in first.log
            assert second.report is not None
            assert second.report.cold is False
            assert second.json()["pid"] == first.json()["pid"]

    arun(main())


# -- stats, batch, zip -----------------------------------------------------------------------


def test_stats_meter_every_outcome(arun: Any) -> None:
    async def main() -> None:
        async with Engine() as engine:
            await engine.register(config("f", "flexible", memory_mb=512, reserved_concurrency=1))
            results = [
                await engine.invoke("f", {"s": 0.01}),
                await engine.invoke("f", {"fail": True}),
                await engine.invoke("f", {}),
            ]
            assert [r.function_error for r in results] == [None, "Unhandled", None]
            slow = asyncio.ensure_future(engine.invoke("f", {"s": 0.2}))
            await eventually(lambda: envs(engine, "f")["busy"] == 1)
            with pytest.raises(TooManyRequestsException):
                await engine.invoke("f", {})
            results.append(await slow)

            stats = engine.stats()["f"]
            billed = sum(report_of(r).billed_duration_ms for r in results)
            assert stats["invocations"] == 4
            assert stats["cold_starts"] == 1
            assert stats["errors"] == 1
            assert stats["throttles"] == 1
            assert stats["billed_ms"] == billed
            assert stats["duration_ms"] == pytest.approx(
                sum(report_of(r).duration_ms for r in results)
            )
            assert stats["gb_seconds"] == pytest.approx(billed / 1000 * 512 / 1024)
            assert stats["estimated_cost_usd"] == pytest.approx(
                stats["gb_seconds"] * 0.0000166667 + 4 * 0.0000002
            )
            assert stats["environments"] == {"starting": 0, "ready": 1, "busy": 0, "stopping": 0}
            assert stats["waiting"] == 0

    arun(main())


def test_batch_function_registers_but_cannot_run_here(arun: Any) -> None:
    async def main() -> None:
        async with Engine() as engine:
            await engine.register(config("long", "echo", timeout_s=1200))
            assert engine.get_function("long").is_batch
            with pytest.raises(
                BatchUnavailableException, match=r"timeout_s=1200 .*batch function.*no batch queue"
            ):
                await engine.invoke("long", {})
            stats = engine.stats()["long"]
            assert stats["invocations"] == 0
            assert sum(stats["environments"].values()) == 0

    arun(main())


def test_code_from_a_zip_file(arun: Any, tmp_path: Path) -> None:
    archive = tmp_path / "code.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(BASIC / "app.py", "app.py")
        zf.writestr("data/settings.json", '{"from": "zip"}')

    async def main() -> None:
        async with Engine() as engine:
            await engine.register(config("zipped", "read", code=archive))
            got = (await engine.invoke("zipped", {"path": "data/settings.json"})).json()
            assert got["text"] == '{"from": "zip"}'
            assert got["cwd"] != str(BASIC.resolve())  # unpacked into a directory of its own
            assert got["cwd"].startswith(engine._work_dir)
            await engine.update("zipped", handler="app.echo")
            assert (await engine.invoke("zipped", {"z": 1})).json() == {"z": 1}

    arun(main())


# -- shutting down ---------------------------------------------------------------------------


def test_close_right_after_unregister(arun: Any) -> None:
    async def main() -> None:
        async with Engine() as engine:
            await engine.register(config("f", "whoami"))
            await engine.register(config("g", "whoami", start="spawn"))
            pids = [(await engine.invoke(name)).json()["pid"] for name in ("f", "g")]
            await engine.unregister("f")
            await engine.unregister("g")
        await eventually(lambda: not any(pid_exists(pid) for pid in pids))

    arun(main())


def test_close_with_calls_in_flight(arun: Any) -> None:
    async def main() -> None:
        engine = Engine()
        async with engine:
            await engine.register(config("busy", "sleep", provisioned_concurrency=1))
            await engine.register(config("gone", "sleep", start="spawn"))
            calls = [
                asyncio.ensure_future(engine.invoke("busy", {"s": 10})),
                asyncio.ensure_future(engine.invoke("gone", {"s": 10})),
            ]
            await eventually(
                lambda: envs(engine, "busy")["busy"] == 1 and envs(engine, "gone")["busy"] == 1
            )
            await engine.unregister("gone")  # its call keeps running until the engine closes
            t0 = time.monotonic()
        assert time.monotonic() - t0 < 5.0
        for call in calls:
            with pytest.raises(ServiceException, match="shutting down"):
                await call
        with pytest.raises(ServiceException, match="closed"):
            await engine.invoke("busy")

    arun(main())


def test_handler_exception_is_written_to_the_log(arun: Any) -> None:
    """Lambda logs an unhandled exception as ``[ERROR] Type: message`` and its traceback."""

    async def main() -> None:
        async with Engine() as engine:
            await engine.register(config("boom", "main", FUNCTIONS / "faults"))
            result = await engine.invoke("boom", {"do": "raise"})
            assert result.function_error == "Unhandled"
            body = orjson.loads(result.payload)
            assert f"[ERROR] ValueError: {body['errorMessage']}\n" in result.log_tail
            assert "Traceback (most recent call last):\n" in result.log_tail
            assert 'faults/app.py", line' in result.log_tail
            assert "worker.py" not in result.log_tail  # the agent's own frame is not shown

    arun(main())


def test_forked_workers_are_reseeded_and_run_after_fork_hooks(arun: Any) -> None:
    """The template imports once; each forked worker gets fresh randomness and its hooks run."""

    async def main() -> None:
        async with Engine() as engine:
            fn = config("forks", "handler", FUNCTIONS / "forkstate", provisioned_concurrency=3)
            await engine.register(fn)
            results = await asyncio.gather(*(engine.invoke("forks", {}) for _ in range(3)))
            seen = [r.json() for r in results]
            assert len({s["pid"] for s in seen}) == 3
            assert len({s["template_pid"] for s in seen}) == 1  # imported once, in the template
            assert all(s["pid"] != s["template_pid"] for s in seen)
            assert len({s["random"] for s in seen}) == 3  # not the template's random state thrice
            assert all(s["hook_ran_here"] for s in seen)

    arun(main())


def test_update_cannot_rename_and_validates(arun: Any) -> None:
    async def main() -> None:
        async with Engine() as engine:
            await engine.register(config("f", "whoami"))
            with pytest.raises(InvalidParameterValueException, match="renamed"):
                await engine.update("f", name="g")
            with pytest.raises(InvalidParameterValueException, match="memory_mb"):
                await engine.update("f", memory_mb=64)
            assert engine.get_function("f").memory_mb == 128
            assert engine.stats()["f"]["generation"] == 0  # nothing changed

    arun(main())


def test_concurrent_registrations_of_one_name_conflict(arun: Any) -> None:
    async def main() -> None:
        async with Engine() as engine:
            results = await asyncio.gather(
                engine.register(config("same", "whoami")),
                engine.register(config("same", "whoami")),
                return_exceptions=True,
            )
            errors = [r for r in results if isinstance(r, Exception)]
            assert len(errors) == 1
            assert isinstance(errors[0], ResourceConflictException)
            assert (await engine.invoke("same", {})).function_error is None

    arun(main())


def test_payload_at_the_limit_crosses_the_socket_whole(arun: Any) -> None:
    """6,291,456 bytes in (several socket reads), the handler sees all of it."""

    async def main() -> None:
        async with Engine() as engine:
            await engine.register(config("f", "size"))
            payload = b'"' + b"x" * (6_291_456 - 2) + b'"'
            result = await engine.invoke("f", payload)
            assert result.function_error is None
            assert result.json() == 6_291_456 - 2
            big_reply = await engine.invoke("f", b'"' + b"y" * 1000 + b'"')
            assert big_reply.json() == 1000  # the stream stays in step after a large frame

    arun(main())
