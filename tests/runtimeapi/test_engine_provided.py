"""Custom runtimes through the real Engine: the agent serves the Lambda Runtime API to the
code's ``bootstrap`` (a Python loop over http.client, a shell loop with curl, awslambdaric)."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import eventually, pid_exists
from runtimeapi_support import PROVIDED, MakeCode, need_curl, processes_in

from runtime import Engine, FunctionConfig, InvokeResult, _scheduler_py
from runtime._scheduler_py import SchedulerPy
from runtime.agent.protocol import RESPONSE_LIMIT

ARN = "arn:aws:lambda:us-east-1:000000000000:function:"
TRACE = re.compile(r"^Root=1-[0-9a-f]{8}-[0-9a-f]{24};Parent=[0-9a-f]{16};Sampled=[01]$")


def provided(name: str, code: str, **fields: Any) -> FunctionConfig:
    fields.setdefault("timeout_s", 10)
    return FunctionConfig(
        name=name, handler="function.handler", code=code, runtime="provided.al2023", **fields
    )


def error_of(result: InvokeResult) -> dict[str, Any]:
    assert result.function_error == "Unhandled", result.payload
    doc: dict[str, Any] = result.json()
    return doc


def test_cold_then_warm_keeps_the_runtime(arun: Any, make_code: MakeCode) -> None:
    async def main() -> None:
        async with Engine() as engine:
            await engine.register(provided("p", make_code("probe")))
            first = await engine.invoke("p", b'{"a": 1}')
            second = await engine.invoke("p", b'{"a": 2}')
            assert first.function_error is None, first.payload
            assert first.json()["event"] == {"a": 1}
            assert second.json()["event"] == {"a": 2}
            assert second.json()["count"] == 2  # the same runtime process, its state kept
            assert first.json()["pid"] == second.json()["pid"]
            assert first.report is not None
            assert first.report.cold
            assert first.report.init_duration_ms is not None
            assert second.report is not None
            assert not second.report.cold
            assert second.report.init_duration_ms is None
            assert f"probe case echo {second.request_id}" in second.log
            assert second.log.startswith(f"START RequestId: {second.request_id}")
            assert "REPORT RequestId:" in second.log.splitlines()[-1]

    arun(main())


def test_next_answers_with_lambdas_headers_and_environment(arun: Any, make_code: MakeCode) -> None:
    async def main() -> None:
        async with Engine() as engine:
            code = make_code("probe")
            await engine.register(provided("hdr", code, timeout_s=7, memory_mb=256))
            before = time.time()
            result = await engine.invoke(
                "hdr",
                b'{"case": "headers"}',
                client_context={"custom": {"k": "v"}},
                identity={"cognitoIdentityId": "id1", "cognitoIdentityPoolId": "pool1"},
            )
            after = time.time()
            doc = result.json()
            headers, env = doc["headers"], doc["env"]
            assert doc["status"] == 200
            assert doc["body"] == '{"case": "headers"}'  # byte for byte
            assert headers["content-type"] == "application/json"
            assert headers["lambda-runtime-aws-request-id"] == result.request_id
            assert headers["lambda-runtime-invoked-function-arn"] == ARN + "hdr"
            deadline = int(headers["lambda-runtime-deadline-ms"])
            assert before * 1000 + 7000 - 50 <= deadline <= after * 1000 + 7000 + 50
            assert TRACE.match(headers["lambda-runtime-trace-id"])
            assert json.loads(headers["lambda-runtime-client-context"]) == {"custom": {"k": "v"}}
            assert json.loads(headers["lambda-runtime-cognito-identity"]) == {
                "cognitoIdentityId": "id1",
                "cognitoIdentityPoolId": "pool1",
            }
            assert re.fullmatch(r"127\.0\.0\.1:\d+", env["AWS_LAMBDA_RUNTIME_API"])
            assert env["_HANDLER"] == "function.handler"
            assert env["LAMBDA_TASK_ROOT"] == code
            assert env["LAMBDA_RUNTIME_DIR"]
            assert env["AWS_LAMBDA_FUNCTION_NAME"] == "hdr"
            assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
            assert env["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
            assert env["AWS_LAMBDA_LOG_GROUP_NAME"] == "/aws/lambda/hdr"
            assert env["AWS_LAMBDA_LOG_STREAM_NAME"]
            assert env["AWS_LAMBDA_INITIALIZATION_TYPE"] == "on-demand"
            assert env["AWS_REGION"] == "us-east-1"
            assert env["AWS_EXECUTION_ENV"] is None  # Lambda sets none for provided runtimes
            assert env["TZ"] == ":UTC"

    arun(main())


def test_two_environments_listen_on_their_own_ports(arun: Any, make_code: MakeCode) -> None:
    async def main() -> None:
        async with Engine() as engine:
            await engine.register(provided("two", make_code("probe")))
            hold = json.dumps({"case": "sleep", "s": 0.5}).encode()
            await asyncio.gather(engine.invoke("two", hold), engine.invoke("two", hold))
            seen = await asyncio.gather(
                engine.invoke("two", b'{"case": "headers"}'),
                engine.invoke("two", b'{"case": "headers"}'),
            )
            ports = {r.json()["env"]["AWS_LAMBDA_RUNTIME_API"] for r in seen}
            assert engine.stats()["two"]["cold_starts"] == 2
            assert len(ports) == 2

    arun(main())


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        (
            "wrong_id",
            {
                "status": 400,
                "body": '{"errorMessage":"Invalid request ID","errorType":"InvalidRequestID"}',
            },
        ),
        ("init_error_late", {"status": 403}),
        (
            "routes",
            {
                "unknown": {"status": 404, "body": "404 page not found\n"},
                "method": {"status": 405, "body": ""},
            },
        ),
    ],
)
def test_misbehaviour_answered_during_the_call(
    arun: Any, make_code: MakeCode, case: str, expected: dict[str, Any]
) -> None:
    async def main() -> None:
        async with Engine() as engine:
            await engine.register(provided("mis", make_code("probe")))
            result = await engine.invoke("mis", json.dumps({"case": case}).encode())
            doc = result.json()
            if case == "init_error_late":
                assert doc["status"] == 403
                assert json.loads(doc["body"])["errorType"] == "InvalidStateTransition"
            else:
                assert doc == expected

    arun(main())


def test_second_next_renders_the_same_invocation(arun: Any, make_code: MakeCode) -> None:
    async def main() -> None:
        async with Engine() as engine:
            await engine.register(provided("nn", make_code("probe")))
            result = await engine.invoke("nn", b'{"case": "next_twice"}')
            doc = result.json()
            assert doc == {
                "first": result.request_id,
                "second": result.request_id,
                "same_body": True,
                "status": 200,
            }

    arun(main())


def test_second_response_and_late_error_are_refused(arun: Any, make_code: MakeCode) -> None:
    async def main() -> None:
        async with Engine() as engine:
            await engine.register(provided("tw", make_code("probe")))
            first = await engine.invoke("tw", b'{"case": "twice"}')
            assert first.function_error is None
            assert first.json() == {"first": True}  # the first answer stands
            kept = (await engine.invoke("tw", b'{"case": "report"}')).json()
            assert [k["status"] for k in kept] == [403, 403]
            for k, target in zip(
                kept, ("InvocationResponse", "InvocationErrorResponse"), strict=True
            ):
                body = json.loads(k["body"])
                assert body["errorType"] == "InvalidStateTransition"
                assert body["errorMessage"] == (
                    f"State transition from RuntimeResponseSentState to {target} failed "
                    "for runtime. Error: State transition is not allowed"
                )

    arun(main())


def test_response_size_limit(arun: Any, make_code: MakeCode) -> None:
    async def main() -> None:
        async with Engine() as engine:
            await engine.register(provided("big", make_code("probe")))
            too_big = json.dumps({"case": "size", "size": RESPONSE_LIMIT + 1}).encode()
            result = await engine.invoke("big", too_big)
            assert error_of(result) == {
                "errorType": "Function.ResponseSizeTooLarge",
                "errorMessage": "Response payload size (6291557 bytes) exceeded maximum "
                "allowed payload size (6291556 bytes).",
            }
            kept = (await engine.invoke("big", b'{"case": "report"}')).json()
            assert kept == [
                {
                    "status": 413,
                    "body": '{"errorMessage":"Exceeded maximum allowed payload size '
                    '(6291556 bytes).","errorType":"RequestEntityTooLarge"}',
                }
            ]
            at_limit = json.dumps({"case": "size", "size": RESPONSE_LIMIT}).encode()
            result = await engine.invoke("big", at_limit)
            assert result.function_error is None
            assert len(result.payload) == RESPONSE_LIMIT
            kept = (await engine.invoke("big", b'{"case": "report"}')).json()
            assert kept == [{"status": 202, "body": '{"status":"OK"}'}]

    arun(main())


def test_chunked_response_body(arun: Any, make_code: MakeCode) -> None:
    async def main() -> None:
        async with Engine() as engine:
            await engine.register(provided("ch", make_code("probe")))
            result = await engine.invoke("ch", b'{"case": "chunked"}')
            assert result.function_error is None
            assert result.payload == b'{"chunked": true}'

    arun(main())


def test_streamed_response_failing_midway(arun: Any, make_code: MakeCode) -> None:
    async def main() -> None:
        async with Engine() as engine:
            await engine.register(provided("st", make_code("probe")))
            result = await engine.invoke("st", b'{"case": "stream_error"}')
            assert error_of(result) == {
                "errorMessage": "boom",
                "errorType": "Runtime.StreamError",
                "stackTrace": [],
            }
            kept = (await engine.invoke("st", b'{"case": "report"}')).json()
            assert kept == [{"raw": "HTTP/1.1 202 Accepted"}]

    arun(main())


def test_invalid_response_mode(arun: Any, make_code: MakeCode) -> None:
    async def main() -> None:
        async with Engine() as engine:
            await engine.register(provided("md", make_code("probe")))
            result = await engine.invoke("md", b'{"case": "bad_mode"}')
            assert error_of(result)["errorType"] == "Runtime.InvalidResponseModeHeader"
            kept = (await engine.invoke("md", b'{"case": "report"}')).json()
            assert kept == [
                {
                    "status": 400,
                    "body": '{"errorMessage":"Invalid function response mode",'
                    '"errorType":"InvalidFunctionResponseMode"}',
                }
            ]

    arun(main())


@pytest.mark.parametrize(
    ("header", "body", "expected"),
    [
        ("Unhandled", "", {"errorMessage": "", "errorType": "Runtime.Unknown", "stackTrace": []}),
        ("Function.Foo", "", {"errorMessage": "", "errorType": "Function.Foo", "stackTrace": []}),
        ("foo", "oops", {"errorMessage": "oops", "errorType": "Runtime.Unknown", "stackTrace": []}),
        (
            "Unhandled",
            '{"errorMessage": "m", "errorType": "MyError"}',
            {"errorMessage": "m", "errorType": "MyError"},
        ),
    ],
)
def test_function_error_from_the_runtime(
    arun: Any, make_code: MakeCode, header: str, body: str, expected: dict[str, Any]
) -> None:
    async def main() -> None:
        async with Engine() as engine:
            await engine.register(provided("fe", make_code("probe")))
            event = json.dumps({"case": "error_type", "header": header, "body": body})
            result = await engine.invoke("fe", event.encode())
            assert error_of(result) == expected
            after = await engine.invoke("fe")  # a function error keeps the runtime warm
            assert after.function_error is None
            assert after.json()["count"] == 2

    arun(main())


def test_init_error_is_the_first_answer_and_init_runs_again(arun: Any, make_code: MakeCode) -> None:
    async def main() -> None:
        async with Engine() as engine:
            fn = provided("ie", make_code("probe"), environment={"PROBE_INIT": "error"})
            await engine.register(fn)
            for _ in range(2):
                result = await engine.invoke("ie")
                assert error_of(result) == {
                    "errorMessage": "bad config",
                    "errorType": "Runtime.ConfigError",
                }
                assert "probe init" in result.log
            assert engine.stats()["ie"]["cold_starts"] == 2

    arun(main())


@pytest.mark.parametrize(
    ("kind", "mode", "env", "error_type", "message"),
    [
        ("probe", 0o755, {"PROBE_INIT": "exit"}, "Runtime.ExitError", "exit status 3"),
        ("empty", 0o755, {}, "Runtime.InvalidEntrypoint", "no such file or directory"),
        ("probe", 0o644, {}, "Runtime.InvalidEntrypoint", "permission denied"),
    ],
)
def test_runtime_that_cannot_start(
    arun: Any,
    make_code: MakeCode,
    kind: str,
    mode: int,
    env: dict[str, str],
    error_type: str,
    message: str,
) -> None:
    async def main() -> None:
        async with Engine() as engine:
            await engine.register(provided("bad", make_code(kind, mode), environment=env))
            doc = error_of(await engine.invoke("bad"))
            assert doc["errorType"] == error_type
            assert message in doc["errorMessage"]

    arun(main())


def test_runtime_exiting_mid_call_is_exit_error_and_next_is_cold(
    arun: Any, make_code: MakeCode
) -> None:
    async def main() -> None:
        async with Engine() as engine:
            await engine.register(provided("ex", make_code("probe")))
            pid = (await engine.invoke("ex")).json()["pid"]
            result = await engine.invoke("ex", b'{"case": "exit", "code": 42}')
            assert error_of(result) == {
                "errorType": "Runtime.ExitError",
                "errorMessage": f"RequestId: {result.request_id} Error: Runtime exited with "
                "error: exit status 42",
            }
            again = await engine.invoke("ex")
            assert again.report is not None
            assert again.report.cold
            assert again.json()["count"] == 1
            assert again.json()["pid"] != pid

    arun(main())


def test_timeout_kills_the_runtime_and_next_is_cold(arun: Any, make_code: MakeCode) -> None:
    async def main() -> None:
        async with Engine() as engine:
            await engine.register(provided("to", make_code("probe"), timeout_s=1))
            pid = (await engine.invoke("to")).json()["pid"]
            t0 = time.monotonic()
            result = await engine.invoke("to", b'{"case": "sleep", "s": 5}')
            assert time.monotonic() - t0 < 3.0
            doc = error_of(result)
            assert doc["errorType"] == "Sandbox.Timedout"
            assert doc["errorMessage"].endswith("Task timed out after 1.00 seconds")
            await eventually(lambda: not pid_exists(pid))
            again = await engine.invoke("to")
            assert again.report is not None
            assert again.report.cold
            assert again.json()["pid"] != pid

    arun(main())


SLEEPY = """#!/bin/sh
curl -sS -o /dev/null "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/next"
sleep 30
"""


def test_timeout_kills_what_the_runtime_started(
    arun: Any, make_code: MakeCode, code_root: Path
) -> None:
    """The ``sleep`` the shell waits on is killed with it: the code_root fixture fails the
    test if anything still runs in the code directory."""
    need_curl()

    async def main() -> None:
        code = Path(make_code("empty"))
        (code / "bootstrap").write_text(SLEEPY)
        (code / "bootstrap").chmod(0o755)
        async with Engine() as engine:
            await engine.register(provided("zz", str(code), timeout_s=1))
            result = await engine.invoke("zz")
            assert error_of(result)["errorType"] == "Sandbox.Timedout"
            await eventually(lambda: not processes_in(code_root), timeout=2.0)

    arun(main())


def test_curl_shell_runtime(arun: Any, make_code: MakeCode) -> None:
    need_curl()

    async def main() -> None:
        async with Engine() as engine:
            await engine.register(provided("sh", make_code("curl")))
            first = await engine.invoke("sh", b'{"hello": "world"}')
            second = await engine.invoke("sh", b"[1, 2]")
            assert first.function_error is None, first.payload
            assert first.json()["echo"] == {"hello": "world"}
            assert second.json()["echo"] == [1, 2]
            assert first.json()["shell"] == second.json()["shell"]
            assert second.report is not None
            assert not second.report.cold
            assert f"handling {second.request_id} with function.handler" in second.log

    arun(main())


#: code that hangs in its init the first time it starts (writing its pid to MARKER first),
#: then starts normally: the Python runtime's module, and a bootstrap that reaches ``/next``
#: only on its second start
HANG_ONCE = """\
import os, time
print("booting", flush=True)
if not os.path.exists({marker!r}):
    with open({marker!r}, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(3600)
"""
PYTHON_APP = """
COUNT = [0]


def handler(event, context):
    COUNT[0] += 1
    return {"event": event, "count": COUNT[0], "pid": os.getpid()}
"""


@pytest.fixture
def short_init(monkeypatch: pytest.MonkeyPatch) -> type[SchedulerPy]:
    """The pure-Python core, with Lambda's 10-second floor under the init deadline lowered:
    a 1-second function then gets 1 second to initialize, and the tests stay short."""
    monkeypatch.setattr(_scheduler_py, "INIT_TIMEOUT_FLOOR", 0.2)
    return SchedulerPy


@pytest.mark.parametrize("runtime", ["python3.11", "provided.al2023"])
def test_init_that_never_becomes_ready_times_out_and_is_killed(
    arun: Any, code_root: Path, short_init: type[SchedulerPy], runtime: str
) -> None:
    """A runtime that never calls ``/next`` is a Python init that never returns: the call is
    answered Sandbox.Timedout at the init deadline, the process (and what it started) is
    killed, and the next call starts cold.  The code_root fixture fails the test if a
    process is left in the code directory."""
    code = code_root / runtime
    code.mkdir()
    marker = str(code_root / "hung.pid")
    hang = HANG_ONCE.format(marker=marker)
    if runtime.startswith("python"):
        (code / "app.py").write_text(hang + PYTHON_APP)
        fn = FunctionConfig(
            name="hang", handler="app.handler", code=str(code), timeout_s=1, start="spawn"
        )
    else:
        probe = (PROVIDED / "probe.py").read_text()
        (code / "bootstrap").write_text(f"#!{sys.executable} -u\n{hang}{probe}")
        (code / "bootstrap").chmod(0o755)
        fn = provided("hang", str(code), timeout_s=1)

    async def main() -> None:
        async with Engine(scheduler=short_init) as engine:
            await engine.register(fn)
            t0 = time.monotonic()
            hung = await engine.invoke("hang", b'{"n": 1}')
            assert 0.9 < time.monotonic() - t0 < 3.0
            assert error_of(hung) == {
                "errorType": "Sandbox.Timedout",
                "errorMessage": hung.json()["errorMessage"],
            }
            assert re.fullmatch(
                rf"\S+Z {hung.request_id} Init timed out after 1\.00 seconds",
                hung.json()["errorMessage"],
            )
            assert "booting" in hung.log
            with open(marker) as f:  # noqa: ASYNC230 - a few bytes, once
                pid = int(f.read())
            await eventually(lambda: not pid_exists(pid))

            again = await engine.invoke("hang", b'{"n": 2}')
            assert again.function_error is None, again.payload
            assert again.json()["event"] == {"n": 2}
            assert again.json()["pid"] != pid
            assert again.report is not None
            assert again.report.cold
            assert engine.stats()["hang"]["cold_starts"] == 2

    arun(main())


def test_the_http_side_answers_what_a_careless_client_sends(arun: Any, make_code: MakeCode) -> None:
    """Raw requests on connections of their own, during a call: each is answered (or the
    connection closed) as an HTTP/1.1 server should, and the call still ends normally."""

    async def main() -> None:
        async with Engine() as engine:
            await engine.register(provided("raw", make_code("probe")))
            result = await engine.invoke("raw", b'{"case": "http"}')
            assert result.function_error is None, result.payload
            assert result.json() == {
                "garbage": {"statuses": [400], "closed": True},
                "huge_head": {"statuses": [431], "closed": True},
                "bad_chunk": {"statuses": [400], "closed": True},
                "bad_length": {"statuses": [400], "closed": True},
                "pipelined": {"statuses": [404, 404, 404], "closed": False},
                "byte_at_a_time": {"statuses": [404], "closed": False},
                "http10": {"statuses": [404], "closed": True},
                "connection_close": {"statuses": [404], "closed": True},
                "expect_continue": {"statuses": [100, 404], "closed": False},
                "too_long_to_read": {"statuses": [413], "closed": True},
            }
            after = await engine.invoke("raw", b'{"case": "echo"}')
            assert after.json()["count"] == 2  # the same runtime, warm

    arun(main(), timeout=60)


#: a runtime that handles one event and exits; started with ONCE_FAIL set, the second start
#: exits at once (a runtime that cannot come back)
ONE_SHOT = f"""#!{sys.executable} -u
import http.client, json, os, sys
marker = os.path.join(os.environ["LAMBDA_TASK_ROOT"], "started")
starts = int(open(marker).read()) + 1 if os.path.exists(marker) else 1
open(marker, "w").write(str(starts))
if starts > 1 and os.environ.get("ONCE_FAIL"):
    sys.exit(4)
api = http.client.HTTPConnection(os.environ["AWS_LAMBDA_RUNTIME_API"])
api.request("GET", "/2018-06-01/runtime/invocation/next")
got = api.getresponse()
rid, event = got.getheader("Lambda-Runtime-Aws-Request-Id"), got.read()
out = json.dumps({{"pid": os.getpid(), "starts": starts, "event": json.loads(event)}})
api.request("POST", f"/2018-06-01/runtime/invocation/{{rid}}/response", out)
api.getresponse().read()
"""


@pytest.mark.parametrize("fail_again", [False, True], ids=["comes-back", "cannot-come-back"])
def test_a_runtime_that_exits_after_each_answer_is_started_again(
    arun: Any, tmp_path: Path, fail_again: bool
) -> None:
    """The engine's next invocation may reach the agent before the runtime's exit does: the
    agent starts the runtime again for it (once), as Lambda does, so the call is not answered
    with an exit it never saw."""
    code = tmp_path / "code"
    code.mkdir()
    (code / "bootstrap").write_text(ONE_SHOT)
    (code / "bootstrap").chmod(0o755)
    environment = {"ONCE_FAIL": "1"} if fail_again else {}

    async def main() -> None:
        async with Engine() as engine:
            await engine.register(provided("once", str(code), environment=environment))
            results = [await engine.invoke("once", {"n": n}) for n in range(4)]
            if fail_again:
                first, second = results[0], results[1]
                assert first.function_error is None, first.payload
                assert second.function_error == "Unhandled"
                doc = second.json()
                assert doc["errorType"] == "Runtime.ExitError"
                assert "exit status 4" in doc["errorMessage"]
                return
            for n, result in enumerate(results):
                assert result.function_error is None, result.payload
                assert result.json()["event"] == {"n": n}
            pids = {result.json()["pid"] for result in results}
            assert len(pids) == 4  # a runtime process per event
            for result in results:  # each one a cold start, its init reported
                assert result.report is not None
                assert result.report.cold
                assert result.report.init_duration_ms is not None
                assert "Init Duration" in result.log_tail
            assert engine.stats()["once"]["cold_starts"] == 4
            assert engine.stats()["once"]["environments"]["busy"] == 0

    arun(main(), timeout=60)
