"""BlockingEngine: the engine on a background thread, for scripts and notebooks."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from .config import FunctionConfig, PoolConfig
from .engine import Engine
from .loop import new_event_loop
from .result import InvokeResult

T = TypeVar("T")


class BlockingEngine:
    """The same methods as ``Engine``, each blocking until done.

    ``with BlockingEngine() as engine: engine.register(...); engine.invoke(...)``
    """

    def __init__(self, pool: PoolConfig | None = None, **kwargs: Any) -> None:
        self._loop = new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="warmstart-engine", daemon=True
        )
        self._thread.start()
        self.engine = Engine(pool, **kwargs)
        self._run(self.engine.start())

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError(
                "BlockingEngine methods cannot be called from the engine's own thread"
            )
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def register(self, config: FunctionConfig) -> None:
        self._run(self.engine.register(config))

    def update(self, name: str, /, **changes: Any) -> FunctionConfig:
        return self._run(self.engine.update(name, **changes))

    def unregister(self, name: str) -> None:
        self._run(self.engine.unregister(name))

    def set_concurrency(
        self, name: str, reserved: int | None, provisioned: int | None = None
    ) -> None:
        self._run(self.engine.set_concurrency(name, reserved, provisioned))

    def invoke(
        self,
        name: str,
        payload: Any = b"{}",
        invocation_type: str = "RequestResponse",
        **kwargs: Any,
    ) -> InvokeResult:
        return self._run(self.engine.invoke(name, payload, invocation_type, **kwargs))

    def stats(self) -> dict[str, dict[str, Any]]:
        return self._run(_call(self.engine.stats))

    def logs(self, name: str) -> str:
        text: str = self._run(_call(self.engine.logs, name))
        return text

    def functions(self) -> list[FunctionConfig]:
        return self._run(_call(self.engine.functions))

    def close(self) -> None:
        if self._loop.is_closed():
            return
        try:
            self._run(self.engine.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    def __enter__(self) -> BlockingEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def _call(fn: Any, *args: Any) -> Any:
    """Run a plain method on the engine's thread (engine state is not thread-safe)."""
    return fn(*args)
