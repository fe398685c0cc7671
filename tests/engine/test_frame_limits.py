"""Output at the frame limits: a big log next to a big result, and error documents cut to fit.

A RESULT or ERROR frame carries the payload and the log together and must stay within
``MAX_BODY``; a frame on a template's seqpacket control socket must fit one datagram.  The agent
cuts what it must (the log's head, an error message's tail) and the worker stays warm.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from helpers import FUNCTIONS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime import Engine, FunctionConfig, PoolConfig
from runtime.agent import protocol as P
from runtime.agent import worker as W
from runtime.errors import InvalidParameterValueException
from runtime.pools.process import AGENT_MAIN

BIG = FUNCTIONS / "big_output"
MIB = 1024 * 1024
LIMIT = 6291556  # Lambda's "maximum allowed payload size", as its error message words it
TOO_LARGE = {
    "errorMessage": (
        f"Response payload size exceeded maximum allowed payload size ({LIMIT} bytes)."
    ),
    "errorType": "Function.ResponseSizeTooLarge",
}
DROPPED = re.compile(rb"^\[\.\.\. (\d+) bytes of log dropped \.\.\.\]\n")


# -- the configured log cap ---------------------------------------------------------------


def test_log_cap_bytes_has_an_upper_bound_that_fits_a_frame() -> None:
    with pytest.raises(InvalidParameterValueException) as excinfo:
        PoolConfig(log_cap_bytes=4 * MIB)
    assert str(excinfo.value) == (
        f"log_cap_bytes: {4 * MIB} is outside the allowed range 4096-{P.MAX_LOG}"
    )
    assert PoolConfig(log_cap_bytes=P.MAX_LOG).log_cap_bytes == P.MAX_LOG
    # a payload at the limit, the largest log, the field lengths and a long request id
    assert P.RESPONSE_LIMIT + P.MAX_LOG + 12 + 1024 <= P.MAX_BODY


# -- one spawned worker, driven over its socket ---------------------------------------------


class AgentProcess:
    """A worker agent started by hand, so that its configuration can go past the pool's."""

    def __init__(self, tmp_path: Path, log_cap: int, code: Path = BIG) -> None:
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)  # a regression fails instead of hanging
        fd = theirs.fileno()
        argv = [AGENT_MAIN, "--fd", str(fd), "--mode", "worker", "--engine-pid", str(os.getpid())]
        self.proc = subprocess.Popen(
            [sys.executable, *argv], pass_fds=(fd,), stdin=subprocess.DEVNULL, cwd=code
        )
        theirs.close()
        self.reader = self.sock.makefile("rb")
        self.read = self.reader.read
        log = str(tmp_path / "worker.log")
        config: dict[str, Any] = {
            "handler": "app.handler",
            "task_root": str(code),
            "environ": {},
            "function_name": "f",
            "function_version": "$LATEST",
            "invoked_function_arn": "arn:aws:lambda:us-east-1:000000000000:function:f",
            "memory_mb": 1024,
            "log_group_name": "/aws/lambda/f",
            "log_stream_name": "",
            "log_path": log,
            "log_cap": log_cap,
            "env": {"environ": {}, "log_path": log},
        }
        try:
            self.sock.sendall(P.encode(P.INIT, (json.dumps(config).encode(),)))
            self.init = P.read_frame(self.read)
        except BaseException:
            self.close()
            raise

    def invoke(self, event: dict[str, Any], rid: bytes = b"rid-1") -> P.Frame:
        self.sock.sendall(P.encode(P.INVOKE, (rid, json.dumps(event).encode(), b"{}"), 0))
        frame = P.read_frame(self.read)
        assert frame.fields[0] == rid
        return frame

    def close(self) -> int:
        self.reader.close()
        self.sock.close()  # the worker exits when its socket closes
        try:
            return self.proc.wait(10)
        finally:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[AgentProcess]:
    proc = AgentProcess(tmp_path, log_cap=4 * MIB)
    try:
        assert proc.init.kind == P.INIT_OK, proc.init
        yield proc
    finally:
        code = proc.close()
    assert code == 0


def check_tail(log: bytes, printed: int) -> int:
    """The log is the end of what was printed behind a line saying how much was dropped."""
    match = DROPPED.match(log)
    assert match is not None, log[:100]
    dropped = int(match.group(1))
    kept = log[match.end() :]
    assert kept.endswith(b"x\nlast line of the log\n")
    assert dropped + len(kept) == printed
    return dropped


def test_a_payload_at_the_limit_keeps_the_end_of_a_log_too_big_to_carry(
    agent: AgentProcess,
) -> None:
    printed = 4 * MIB
    frame = agent.invoke({"print": printed, "return": LIMIT})
    assert frame.kind == P.RESULT
    assert frame.fields[1] == b'"' + b"r" * (LIMIT - 2) + b'"'
    log = frame.fields[2]
    check_tail(log, printed)
    body = 12 + len(b"rid-1") + LIMIT + len(log)
    assert P.MAX_BODY - 64 < body <= P.MAX_BODY  # the log fills what the payload leaves
    warm = agent.invoke({}, b"rid-2")
    assert warm.kind == P.RESULT
    assert json.loads(warm.fields[1]) == {"pid": agent.proc.pid}
    assert warm.fields[2] == b""  # the cut log is not carried over


def test_five_megabytes_returned_after_four_printed(agent: AgentProcess) -> None:
    frame = agent.invoke({"print": 4 * MIB, "return": 5 * MIB})
    assert frame.kind == P.RESULT
    assert len(frame.fields[1]) == 5 * MIB
    check_tail(frame.fields[2], 4 * MIB)
    assert agent.invoke({}, b"rid-2").kind == P.RESULT


def test_a_payload_over_the_limit_is_lambdas_error_document(agent: AgentProcess) -> None:
    frame = agent.invoke({"print": 4 * MIB, "return": LIMIT + 1})
    assert frame.kind == P.ERROR
    assert not frame.flags & P.FATAL
    assert json.loads(frame.fields[1]) == TOO_LARGE
    # beside a small error document the whole log fits
    log = frame.fields[2]
    assert len(log) == 4 * MIB
    assert log.startswith(b"first line of the log\n")
    assert log.endswith(b"x\nlast line of the log\n")
    assert json.loads(agent.invoke({}, b"rid-2").fields[1]) == {"pid": agent.proc.pid}


def test_a_long_request_id_still_leaves_the_payload_whole(agent: AgentProcess) -> None:
    rid = b"r" * 4096
    frame = agent.invoke({"print": 4 * MIB, "return": LIMIT}, rid)
    assert frame.kind == P.RESULT
    assert len(frame.fields[1]) == LIMIT
    check_tail(frame.fields[2], 4 * MIB)


# -- through the engine -------------------------------------------------------------------


@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_engine_answers_a_big_result_with_a_full_log_from_a_warm_worker(
    arun: Any, start: Literal["fork", "spawn"]
) -> None:
    async def main() -> None:
        async with Engine(PoolConfig(log_cap_bytes=P.MAX_LOG)) as engine:
            await engine.register(
                FunctionConfig(
                    name="big", handler="app.handler", code=str(BIG), memory_mb=512, start=start
                )
            )
            pid = (await engine.invoke("big", {})).json()["pid"]
            result = await engine.invoke("big", {"print": 3 * MIB, "return": LIMIT})
            assert result.function_error is None
            assert len(result.payload) == LIMIT
            assert "last line of the log" in result.log
            assert "bytes of log dropped" in result.log
            too_large = await engine.invoke("big", {"print": 3 * MIB, "return": LIMIT + 1})
            assert too_large.function_error == "Unhandled"
            assert too_large.json() == TOO_LARGE
            after = await engine.invoke("big", {})
            assert after.json()["pid"] == pid
            assert after.report is not None
            assert not after.report.cold

    arun(main(), timeout=60)


# -- init errors too big for a datagram (the fault table has one end to end) -------------


def test_init_error_and_init_log_fit_a_control_datagram() -> None:
    frame = P.encode(P.INIT_ERROR, (b"e" * W.INIT_ERROR_CAP, b"l" * W.INIT_LOG_CAP), 2**64 - 1)
    assert len(frame) <= P.MAX_DATAGRAM
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with left, right:
        P.widen_datagram_buffers(left)
        left.send(frame)
        assert P.decode(P.recv_datagram(right)[0]).fields[0] == b"e" * W.INIT_ERROR_CAP


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    error_type=st.text(max_size=300),
    head=st.text(min_size=1, max_size=50),
    message=st.text(max_size=3000),
    stack=st.lists(st.text(max_size=2000), max_size=30),
    cap=st.integers(1024, 8192),
)
def test_error_documents_are_cut_to_their_cap(
    error_type: str, head: str, message: str, stack: list[str], cap: int
) -> None:
    whole = W.error_body(error_type, head + message, "rid", stack)
    data = W.error_body(error_type, head + message, "rid", stack, cap=cap)
    assert len(data) <= cap
    body = json.loads(data)
    if len(whole) <= cap:
        assert data == whole
        return
    assert body["requestId"] == "rid"
    assert isinstance(body["stackTrace"], list)
    cut = re.compile(r" \[\.\.\. \d+ characters dropped \.\.\.\]$")
    assert body["errorType"] == error_type or cut.search(body["errorType"])
    assert body["errorMessage"] == head + message or cut.search(body["errorMessage"])
    assert body["errorMessage"].startswith(head[:8])  # always room for the start of it
