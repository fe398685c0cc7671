"""Lambda's wording: error documents, throttle reasons, exit descriptions, size limits.

Request ids and timestamps are in ``runtime.stamps``."""

from __future__ import annotations

import signal

import orjson

from . import scheduler as S

THROTTLE_REASONS = {
    S.R_RESERVED: (
        "ReservedFunctionConcurrentInvocationLimitExceeded",
        "Rate Exceeded.",
    ),
    S.R_ACCOUNT: ("ConcurrentInvocationLimitExceeded", "Rate Exceeded."),
    S.R_WAIT_TIMEOUT: (
        "ConcurrentInvocationLimitExceeded",
        "Rate Exceeded: waited too long for capacity.",
    ),
    S.R_MEMORY: (
        "ConcurrentInvocationLimitExceeded",
        "Rate Exceeded: the function does not fit the memory budget.",
    ),
}

_SIGNAL_NAMES = {
    signal.SIGKILL: "killed",
    signal.SIGSEGV: "segmentation fault",
    signal.SIGABRT: "aborted",
    signal.SIGTERM: "terminated",
    signal.SIGBUS: "bus error",
    signal.SIGFPE: "floating point exception",
    signal.SIGILL: "illegal instruction",
    signal.SIGINT: "interrupt",
    signal.SIGHUP: "hangup",
    signal.SIGPIPE: "broken pipe",
    signal.SIGQUIT: "quit",
}


def exit_description(code: int) -> str:
    """Lambda's wording for how a runtime process ended."""
    if code < 0:
        name = _SIGNAL_NAMES.get(-code)  # type: ignore[call-overload]
        return f"signal: {name}" if name else f"signal: {signal.Signals(-code).name}"
    return f"exit status {code}"


def error_doc(error_type: str, message: str) -> bytes:
    return orjson.dumps({"errorMessage": message, "errorType": error_type})


def too_large(size: int, limit: int, invocation_type: str) -> str:
    operation = "InvokeAsync" if invocation_type == "Event" else "InvokeFunction"
    return f"{size} byte payload is too large for the {operation} operation (limit {limit} bytes)"
