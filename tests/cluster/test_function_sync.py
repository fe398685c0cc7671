"""Functions made through one service are applied by another sharing its store, here two
services in one process on one SQLite file (the registry's other implementation), with the
registry polled by hand and time passed in."""

from __future__ import annotations

import contextlib
import io
import zipfile
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web
from service_support import aws_client, call, config_of, serving

from runtime.configfile import ConfigFile
from runtime.engine import Engine
from runtime.service.app import API, Background, create_app, running
from runtime.service.function_sync import RETRY_S, FunctionSync

pytestmark = pytest.mark.usefixtures("aws_env")

SOURCE = "def handler(event, context):\n    return {'got': event}\n"


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", SOURCE)
    return buffer.getvalue()


class Other:
    """A second service in the same process (``serving`` shuts the loop's executor down on
    its way out, so only the outer one may be it)."""

    def __init__(self) -> None:
        self.app: web.Application | None = None
        self.engine: Engine | None = None
        self.url = ""

    @contextlib.asynccontextmanager
    async def run(self) -> AsyncIterator[Other]:
        def factory(engine: Engine, cfg: ConfigFile, *, background: Background) -> Any:
            self.engine = engine
            self.app = create_app(engine, cfg, background=background)
            return self.app

        async with running(config_of(), "127.0.0.1", 0, app_factory=factory) as url:
            self.url = url
            yield self

    @property
    def sync(self) -> FunctionSync:
        assert self.app is not None
        found = self.app[API].sync
        assert found is not None
        return found

    def names(self) -> set[str]:
        assert self.engine is not None
        return {c.name for c in self.engine.functions()}


def test_a_change_on_one_service_is_applied_by_the_other(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        async with serving(config_of()) as a, Other().run() as b:
            lam_a, lam_b = aws_client("lambda", a.url), aws_client("lambda", b.url)
            sync_b = b.sync
            await call(
                lam_a.create_function,
                FunctionName="shared",
                Runtime="python3.11",
                Role="arn:aws:iam::000000000000:role/r",
                Handler="app.handler",
                Code={"ZipFile": _zip()},
            )
            await sync_b.poll()
            answer = await call(lam_b.invoke, FunctionName="shared", Payload=b'{"k": 1}')
            assert answer["Payload"].read() == b'{"got":{"k":1}}'
            await call(lam_a.delete_function, FunctionName="shared")
            assert await sync_b.poll() == 1
            with pytest.raises(lam_b.exceptions.ResourceNotFoundException):
                await call(lam_b.get_function, FunctionName="shared")

    arun(main())


def test_an_entry_that_failed_here_is_tried_again_later(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        async with serving(config_of()) as a, Other().run() as b:
            lam_a = aws_client("lambda", a.url)
            sync_b = b.sync
            now = [1000.0]
            sync_b.clock = lambda: now[0]
            real = sync_b._apply
            failures = [RuntimeError("this node cannot run it yet")]

            async def flaky(entry: Any) -> None:
                if failures:
                    raise failures.pop()
                await real(entry)

            sync_b._apply = flaky  # type: ignore[method-assign]
            await call(
                lam_a.create_function,
                FunctionName="later",
                Runtime="python3.11",
                Role="arn:aws:iam::000000000000:role/r",
                Handler="app.handler",
                Code={"ZipFile": _zip()},
            )
            assert await sync_b.poll() == 0  # failed: not applied, kept to try again
            now[0] += RETRY_S / 2
            assert await sync_b.poll() == 0  # not yet
            assert "later" not in b.names()
            now[0] += RETRY_S
            assert await sync_b.poll() == 1
            assert "later" in b.names()

    arun(main())
