"""Event loops: uvloop when it is installed, asyncio's own otherwise.

``WARMSTART_LOOP=asyncio`` picks asyncio's own loop even when uvloop is installed, so the code can
be checked on both.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import signal
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def _uvloop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    if os.environ.get("WARMSTART_LOOP") == "asyncio":
        return None
    try:
        module = importlib.import_module("uvloop")
    except ImportError:  # pragma: no cover - uvloop is a dependency on every supported platform
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = module.new_event_loop
    return factory


_FACTORY = _uvloop_factory()


def new_event_loop() -> asyncio.AbstractEventLoop:
    return _FACTORY() if _FACTORY is not None else asyncio.new_event_loop()


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on uvloop when available."""
    loop = new_event_loop()
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(main)
    finally:
        try:
            _cancel_all(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    tasks = asyncio.all_tasks(loop)
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))


async def interruptible(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro``; Ctrl-C cancels it, so targets close and environments stop.

    Without this, a KeyboardInterrupt raised inside an event-loop callback can be swallowed by
    the loop and the benchmark would carry on.
    """
    task = asyncio.ensure_future(coro)
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGINT, task.cancel)
    except (NotImplementedError, RuntimeError):  # no signals here (not the main thread)
        return await task
    try:
        return await task
    finally:
        loop.remove_signal_handler(signal.SIGINT)
