"""Selects the scheduler core: the Cython build when it loaded, else the pure-Python twin.

``WARMSTART_NO_EXTENSIONS=1`` forces the pure core; so does any interpreter other than CPython.
Both stay importable under fixed names (``SchedulerPy`` always, ``SchedulerC`` when built) so
tests and benchmarks can hold them side by side.
"""

from __future__ import annotations

import os
import platform

from ._scheduler_py import (
    BUSY,
    COLD_START,
    DISPATCH,
    EVICT,
    IDLE,
    KILL,
    QUEUE,
    R_ACCOUNT,
    R_GENERATION,
    R_INIT_FAILED,
    R_INIT_TIMEOUT,
    R_KEEPALIVE,
    R_MAX_USES,
    R_MEMORY,
    R_NONE,
    R_REMOVED,
    R_RESERVED,
    R_TIMEOUT,
    R_WAIT_TIMEOUT,
    SPILL,
    STARTING,
    STOP,
    THROTTLE,
    Action,
    FunctionLimits,
    SchedulerPy,
)

NO_EXTENSIONS = bool(os.environ.get("WARMSTART_NO_EXTENSIONS")) or (
    platform.python_implementation() != "CPython"
)

SchedulerC: type[SchedulerPy] | None
try:
    from ._scheduler_c import SchedulerC as _Compiled
except ImportError:
    SchedulerC = None
else:
    SchedulerC = _Compiled

Scheduler: type[SchedulerPy] = SchedulerPy if NO_EXTENSIONS or SchedulerC is None else SchedulerC
COMPILED = Scheduler is not SchedulerPy

# CI sets this: a compiled core that did not load is then a failure, not a skip.
REQUIRE_EXTENSIONS = os.environ.get("WARMSTART_REQUIRE_EXTENSIONS") == "1"
MISSING_COMPILED = "WARMSTART_REQUIRE_EXTENSIONS=1 but runtime._scheduler_c did not load"


def compiled_or_none() -> type[SchedulerPy] | None:
    """SchedulerC when it loaded and is not switched off by ``WARMSTART_NO_EXTENSIONS``."""
    return None if NO_EXTENSIONS else SchedulerC


def require_compiled() -> type[SchedulerPy] | None:
    """SchedulerC, or None when it may be skipped; raises when it is required but absent."""
    core = compiled_or_none()
    if core is None and REQUIRE_EXTENSIONS:
        raise RuntimeError(MISSING_COMPILED)
    return core


__all__ = [
    "BUSY",
    "COLD_START",
    "COMPILED",
    "DISPATCH",
    "EVICT",
    "IDLE",
    "KILL",
    "MISSING_COMPILED",
    "QUEUE",
    "REQUIRE_EXTENSIONS",
    "R_ACCOUNT",
    "R_GENERATION",
    "R_INIT_FAILED",
    "R_INIT_TIMEOUT",
    "R_KEEPALIVE",
    "R_MAX_USES",
    "R_MEMORY",
    "R_NONE",
    "R_REMOVED",
    "R_RESERVED",
    "R_TIMEOUT",
    "R_WAIT_TIMEOUT",
    "SPILL",
    "STARTING",
    "STOP",
    "THROTTLE",
    "Action",
    "FunctionLimits",
    "Scheduler",
    "SchedulerC",
    "SchedulerPy",
    "compiled_or_none",
    "require_compiled",
]
