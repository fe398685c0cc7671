"""Lambda's wording: error documents, exit descriptions, request ids, timestamps."""

from __future__ import annotations

import random
import signal
import time

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


def iso(now: float) -> str:
    """Epoch seconds as ISO 8601 UTC with milliseconds, as Lambda stamps its records."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"


def iso_now() -> str:
    return iso(time.time())


_UUID_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID_SET = (0x4000 << 64) | (0x8000 << 48)


def request_id() -> str:
    """A random version-4 UUID string (request ids need uniqueness, not secrecy)."""
    h = f"{(random.getrandbits(128) & _UUID_CLEAR) | _UUID_SET:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def error_doc(error_type: str, message: str) -> bytes:
    return orjson.dumps({"errorMessage": message, "errorType": error_type})


def peak_rss_mb(pid: int) -> int:
    """A live process's peak resident size (VmHWM), in MB rounded up; 0 if unknown."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return -(-int(line.split()[1]) // 1024)
    except (OSError, ValueError, IndexError):
        pass
    return 0


def too_large(size: int, limit: int, invocation_type: str) -> str:
    operation = "InvokeAsync" if invocation_type == "Event" else "InvokeFunction"
    return f"{size} byte payload is too large for the {operation} operation (limit {limit} bytes)"
