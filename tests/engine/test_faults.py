"""Faults, one table: what Lambda answers for each, and what becomes of the environment.

Each row names a handler (``tests/functions/faults/app.py`` dispatches on the event's "do"),
configuration tweaks, the expected ``function_error``, ``errorType`` and ``errorMessage`` (a
regular expression, ``<RID>`` standing for the request id) and whether the next call is a
cold start in a new process. Every row runs with both starts (fork from a template, spawn a
fresh interpreter), and after each one the engine must still be consistent and serve a good
invocation.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
from helpers import FUNCTIONS, eventually, pid_exists

from runtime import Engine, EnvStatus, FunctionConfig, InvokeResult

FAULTS = FUNCTIONS / "faults"
FAULTS_APP = FAULTS / "app.py"
TIMESTAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


@dataclass(frozen=True)
class Row:
    id: str
    event: dict[str, Any]
    error_type: str
    message: str  # a regular expression for errorMessage; <RID> is the request id
    next_cold: bool
    function_error: str = "Unhandled"
    handler: str = "app.main"
    code: str = "faults"  # a folder of tests/functions, or "syntax" (written at test time)
    tweaks: dict[str, Any] = field(default_factory=dict)
    init_error: bool = False
    in_log: bool = False  # the engine writes the error message into the log
    max_s: float = 5.0  # hard bound on the faulting call
    tmp_file: str | None = None  # a file the faulting call left in /tmp, seen by the next call


def exit_message(how: str) -> str:
    return rf"RequestId: <RID> Error: Runtime exited with error: {how}"


ROWS = [
    Row("raise", {"do": "raise"}, "ValueError", r"bad value 42", next_cold=False),
    Row(
        "os_exit",
        {"do": "exit3"},
        "Runtime.ExitError",
        exit_message("exit status 3"),
        True,
        in_log=True,
    ),
    Row(
        "sigkill",
        {"do": "sigkill"},
        "Runtime.ExitError",
        exit_message("signal: killed"),
        True,
        in_log=True,
    ),
    Row(
        "segfault",
        {"do": "segfault"},
        "Runtime.ExitError",
        exit_message("signal: segmentation fault"),
        True,
        in_log=True,
    ),
    Row(
        "sys_exit",
        {"do": "sys_exit0"},
        "Runtime.ExitError",
        exit_message("exit status 0"),
        True,
        in_log=True,
    ),
    Row(
        "timeout",
        {"do": "sleep"},
        "Sandbox.Timedout",
        rf"{TIMESTAMP} <RID> Task timed out after 1\.00 seconds",
        True,
        tweaks={"timeout_s": 1},
        in_log=True,
        max_s=1.5,
        tmp_file="written-before-timeout",
    ),
    Row(
        "oom",
        {"do": "oom"},
        "Runtime.OutOfMemory",
        exit_message("signal: killed"),
        True,
        tweaks={"memory_mb": 128},
    ),
    Row(
        "marshal",
        {"do": "set"},
        "Runtime.MarshalError",
        r"Unable to marshal response: Object of type set is not JSON serializable",
        False,
    ),
    Row(
        "response_too_large",
        {"do": "huge"},
        "Function.ResponseSizeTooLarge",
        r"Response payload size exceeded maximum allowed payload size \(6291556 bytes\)\.",
        False,
    ),
    Row(
        "module_missing",
        {},
        "Runtime.ImportModuleError",
        r"Unable to import module 'nomodule': No module named 'nomodule'",
        True,
        handler="nomodule.handler",
        init_error=True,
    ),
    Row(
        "dependency_missing",
        {},
        "Runtime.ImportModuleError",
        r"Unable to import module 'app': No module named 'warmstart_no_such_module'",
        True,
        code="broken_import",
        handler="app.handler",
        init_error=True,
    ),
    Row(
        "handler_missing",
        {},
        "Runtime.HandlerNotFound",
        r"Handler 'nothing' missing on module 'app'",
        True,
        handler="app.nothing",
        init_error=True,
    ),
    Row(
        "raise_at_import",
        {},
        "ConfigMissingError",
        r"DATABASE_URL is not set",
        True,
        code="raise_at_import",
        handler="app.handler",
        init_error=True,
    ),
    Row(
        "huge_init_error",
        {},
        "EnormousConfigError",
        # cut to fit a template's control datagram, its start kept and the cut marked
        r"the real text comes first: y{1000,} \[\.\.\. \d+ characters dropped \.\.\.\]",
        True,
        code="huge_init_error",
        handler="app.handler",
        init_error=True,
    ),
    Row(
        "syntax_error",
        {},
        "Runtime.UserCodeSyntaxError",
        r"Syntax error in module 'app': .*",
        True,
        code="syntax",
        handler="app.handler",
        init_error=True,
    ),
]


def code_dir(row: Row, tmp_path: Path) -> Path:
    if row.code != "syntax":
        return FUNCTIONS / row.code
    folder = tmp_path / "syntax"
    folder.mkdir()
    # written here rather than kept in tests/functions, where linters would trip over it
    (folder / "app.py").write_text("def handler(event, context)\n    return 1\n")
    return folder


def line_of(path: Path, text: str) -> int:
    """The number of the line that starts with ``text`` once indented."""
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip().startswith(text):
            return number
    raise AssertionError(f"{text!r} not in {path}")


def check_error(result: InvokeResult, row: Row) -> None:
    rid = result.request_id
    assert result.status_code == 200
    assert result.function_error == row.function_error
    body = result.json()
    assert body["errorType"] == row.error_type, body
    pattern = row.message.replace("<RID>", re.escape(rid))
    assert re.fullmatch(pattern, body["errorMessage"]), body["errorMessage"]
    lines = result.log.splitlines()
    assert f"START RequestId: {rid} Version: $LATEST" in lines
    assert f"END RequestId: {rid}" in lines
    assert lines[-1].startswith(f"REPORT RequestId: {rid}\tDuration: ")
    if row.in_log:
        assert body["errorMessage"] in result.log
    if row.init_error:
        assert result.report is not None
        assert result.report.cold is True  # the failed init is reported
        assert "Init Duration" in lines[-1]


def check_raise_body(result: InvokeResult) -> None:
    """Lambda's document for an unhandled exception: message, type, frames, request id."""
    body = result.json()
    assert body["requestId"] == result.request_id
    trace = body["stackTrace"]
    assert isinstance(trace, list)
    assert trace
    assert all(isinstance(frame, str) for frame in trace)
    boom = line_of(FAULTS_APP, "raise ValueError(")
    call = line_of(FAULTS_APP, "boom(event)")
    assert any(f'"{FAULTS_APP}", line {call}, in main' in frame for frame in trace), trace
    assert f'"{FAULTS_APP}", line {boom}, in boom' in trace[-1]
    assert "raise ValueError" in trace[-1]
    # the agent's own frames are left out
    assert not any("runtime/agent" in frame for frame in trace)


def check_consistent(engine: Engine, name: str, invocations: int, errors: int) -> None:
    stats = engine.stats()[name]
    counts = stats["environments"]
    assert all(count >= 0 for count in counts.values()), counts
    assert counts["busy"] == 0, counts
    assert counts["starting"] == 0, counts
    assert stats["waiting"] == 0
    assert stats["invocations"] == invocations
    assert stats["errors"] == errors
    assert not engine._calls
    assert not any(env.status is EnvStatus.BUSY for env in engine._envs.values())


async def run_row(engine: Engine, row: Row, config: FunctionConfig) -> None:
    name = config.name
    await engine.register(config)
    if row.init_error:
        result = await engine.invoke(name, row.event)
        check_error(result, row)
        again = await engine.invoke(name, row.event)  # init runs again, and fails again
        check_error(again, row)
        assert again.request_id != result.request_id
        check_consistent(engine, name, invocations=2, errors=2)
        await engine.update(name, code=str(FAULTS), handler="app.main")
        good = await engine.invoke(name, {"do": "ok"})
        assert good.function_error is None
        assert good.report is not None
        assert good.report.cold
        check_consistent(engine, name, invocations=3, errors=2)
        return

    warm = await engine.invoke(name, {"do": "ok"})
    assert warm.function_error is None
    pid = warm.json()["pid"]
    t0 = time.monotonic()
    result = await engine.invoke(name, row.event)
    elapsed = time.monotonic() - t0
    assert elapsed < row.max_s
    check_error(result, row)
    check_consistent(engine, name, invocations=2, errors=1)  # at once, not eventually
    if row.id == "raise":
        check_raise_body(result)
    if row.error_type == "Sandbox.Timedout":
        assert elapsed >= 0.95  # not before the timeout either
        assert result.report is not None
        assert result.report.duration_ms == 1000.0
        assert "going to sleep" in result.log  # what it wrote before it was killed
        await eventually(lambda: not pid_exists(pid))

    following = await engine.invoke(name, {"do": "ok"})
    assert following.function_error is None
    assert following.report is not None
    if row.next_cold:
        assert following.report.cold is True
        assert "Init Duration" in following.log
        assert following.json()["pid"] != pid
        await eventually(lambda: not pid_exists(pid))
    else:
        assert following.report.cold is False
        assert following.json()["pid"] == pid
    if row.tmp_file is not None:
        assert row.tmp_file in following.json()["tmp"]
    check_consistent(engine, name, invocations=3, errors=1)
    good = await engine.invoke(name, {"do": "ok"})
    assert good.function_error is None
    check_consistent(engine, name, invocations=4, errors=1)


@pytest.mark.parametrize("start", ["fork", "spawn"])
@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_fault(arun: Any, tmp_path: Path, row: Row, start: Literal["fork", "spawn"]) -> None:
    config = FunctionConfig(
        name=f"fault-{row.id}".replace("_", "-"),
        handler=row.handler,
        code=str(code_dir(row, tmp_path)),
        start=start,
        **row.tweaks,
    )

    async def main() -> None:
        async with Engine() as engine:
            await run_row(engine, row, config)

    arun(main())


def test_faults_do_not_disturb_other_functions(arun: Any) -> None:
    """A crash, a timeout and an OOM in one function; a neighbour stays warm throughout."""

    async def main() -> None:
        async with Engine() as engine:
            await engine.register(
                FunctionConfig(name="bad", handler="app.main", code=str(FAULTS), timeout_s=1)
            )
            await engine.register(FunctionConfig(name="good", handler="app.main", code=str(FAULTS)))
            first = await engine.invoke("good", {"do": "ok"})
            faults = await asyncio.gather(
                engine.invoke("bad", {"do": "exit3"}),
                engine.invoke("bad", {"do": "sleep"}),
                engine.invoke("bad", {"do": "oom"}),
                engine.invoke("bad", {"do": "segfault"}),
                engine.invoke("good", {"do": "ok"}),
            )
            types = [f.json()["errorType"] if f.function_error else None for f in faults]
            assert types == [
                "Runtime.ExitError",
                "Sandbox.Timedout",
                "Runtime.OutOfMemory",
                "Runtime.ExitError",
                None,
            ]
            assert faults[-1].json()["pid"] == first.json()["pid"]
            await eventually(lambda: engine.stats()["bad"]["environments"]["busy"] == 0, 1.0)
            check_consistent(engine, "bad", invocations=4, errors=4)
            check_consistent(engine, "good", invocations=2, errors=0)
            after = await asyncio.gather(*(engine.invoke("bad", {"do": "ok"}) for _ in range(4)))
            assert all(r.function_error is None for r in after)
            check_consistent(engine, "bad", invocations=8, errors=4)

    arun(main())


@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_a_provisioned_environment_is_restarted_after_a_crash(
    arun: Any, start: Literal["fork", "spawn"]
) -> None:
    async def main() -> None:
        async with Engine() as engine:
            await engine.register(
                FunctionConfig(
                    name="p",
                    handler="app.main",
                    code=str(FAULTS),
                    provisioned_concurrency=1,
                    start=start,
                )
            )
            warm = await engine.invoke("p", {"do": "ok"})
            assert warm.report is not None
            assert not warm.report.cold
            crash = await engine.invoke("p", {"do": "exit3"})
            assert crash.json()["errorType"] == "Runtime.ExitError"
            counts: Callable[[], dict[str, int]] = lambda: (  # noqa: E731
                engine.stats()["p"]["environments"]
            )
            await eventually(lambda: counts()["ready"] == 1 and counts()["starting"] == 0)
            after = await engine.invoke("p", {"do": "ok"})
            assert after.function_error is None
            # restarted ahead of the call, as provisioned concurrency is
            assert after.report is not None
            assert not after.report.cold
            assert after.json()["pid"] != warm.json()["pid"]
            assert engine.stats()["p"]["cold_starts"] == 0

    arun(main())


@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_concurrent_calls_all_see_the_init_error(
    arun: Any, start: Literal["fork", "spawn"]
) -> None:
    async def main() -> None:
        async with Engine() as engine:
            await engine.register(
                FunctionConfig(
                    name="broken",
                    handler="app.handler",
                    code=str(FUNCTIONS / "broken_import"),
                    start=start,
                )
            )
            results = await asyncio.gather(*(engine.invoke("broken", {}) for _ in range(4)))
            assert [r.json()["errorType"] for r in results] == ["Runtime.ImportModuleError"] * 4
            assert len({r.request_id for r in results}) == 4
            check_consistent(engine, "broken", invocations=4, errors=4)
            assert engine.stats()["broken"]["environments"]["ready"] == 0

    arun(main())


def test_init_error_with_provisioned_concurrency(arun: Any) -> None:
    async def main() -> None:
        async with Engine() as engine:
            await engine.register(
                FunctionConfig(
                    name="broken",
                    handler="app.handler",
                    code=str(FUNCTIONS / "raise_at_import"),
                    provisioned_concurrency=2,
                )
            )
            result = await engine.invoke("broken", {})
            assert result.json()["errorType"] == "ConfigMissingError"
            check_consistent(engine, "broken", invocations=1, errors=1)
            await engine.update("broken", code=str(FAULTS), handler="app.main")
            counts = engine.stats()["broken"]["environments"]
            assert counts["ready"] == 2
            good = await engine.invoke("broken", {"do": "ok"})
            assert good.function_error is None
            assert good.report is not None
            assert not good.report.cold

    arun(main())


def test_a_crashed_invocation_is_billed_until_the_worker_died(arun: Any) -> None:
    async def main() -> None:
        async with Engine() as engine:
            await engine.register(FunctionConfig(name="f", handler="app.main", code=str(FAULTS)))
            await engine.invoke("f", {"do": "ok"})  # warm, so no init time is in the figure
            result = await engine.invoke("f", {"do": "work_then_exit", "seconds": 0.2})
            assert result.json()["errorType"] == "Runtime.ExitError"
            report = result.report
            assert report is not None
            assert 200 <= report.duration_ms < 2000
            assert report.billed_duration_ms >= 200
            assert f"Duration: {report.duration_ms:.2f} ms" in result.log_tail

    arun(main())
