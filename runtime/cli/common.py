"""What every ``warmstart`` command shares: its parser's shape, the config it reads, where the
durable store is, the region and credentials of a remote service, and how a command runs.

::

    args ──► load_config(--config | ./warmstart.toml | defaults)
         ──► store_path   (--data-dir | [batch] data_dir | $WARMSTART_DATA_DIR | XDG)
         ──► connect      (--endpoint: ServiceClient, signed when WARMSTART_* keys are set
                           | an embedded service on a free loopback port)
         ──► run_connected(work): the loop, Ctrl-C → exit status 130
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .. import configfile
from ..configfile import ConfigFile
from ..loop import interruptible, run

if TYPE_CHECKING:  # aiohttp is imported only by the commands that talk to a service
    from .client import ServiceClient

__all__ = [
    "DEFAULT_CONFIG",
    "columns",
    "command_parser",
    "connect",
    "credentials_from_env",
    "load_config",
    "region",
    "run_connected",
    "store_path",
]

DEFAULT_CONFIG = "warmstart.toml"
DEFAULT_REGION = "us-east-1"
C = TypeVar("C")


def command_parser(
    commands: Any, name: str, help_text: str, epilog: str
) -> argparse.ArgumentParser:
    """A subcommand of ``commands`` whose description is its help sentence and whose epilog
    (examples, exit statuses) keeps its line breaks."""
    parser: argparse.ArgumentParser = commands.add_parser(
        name,
        help=help_text,
        description=help_text[:1].upper() + help_text[1:] + ".",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser


def load_config(path: str | None) -> ConfigFile:
    """``path``, or ./warmstart.toml when it exists, or the defaults."""
    if path is None:
        if not os.path.isfile(DEFAULT_CONFIG):
            return ConfigFile("<defaults>")
        path = DEFAULT_CONFIG
    return configfile.load(path)


def store_path(args: argparse.Namespace) -> Path:
    """The durable store's file in ``--data-dir``, else in the [batch] data_dir of
    ``--config`` (or of ./warmstart.toml), else in the default data directory: where a
    service started with the same config finds it."""
    from ..batch.queue import STORE_FILE
    from ..batch.store import default_data_dir

    folder = args.data_dir or load_config(args.config).batch.data_dir or default_data_dir()
    return Path(folder) / STORE_FILE


def region() -> str:
    """``$WARMSTART_REGION``, else us-east-1: the region requests to a service are signed for
    and a local store's ARNs are made in."""
    return os.environ.get("WARMSTART_REGION", DEFAULT_REGION)


def credentials_from_env() -> tuple[str, str] | None:
    """WARMSTART_ACCESS_KEY_ID / WARMSTART_SECRET_ACCESS_KEY, for a service with [auth] keys.

    Never the AWS_* variables: signatures made with real AWS keys have no business leaving for
    a local endpoint.
    """
    key_id = os.environ.get("WARMSTART_ACCESS_KEY_ID")
    secret = os.environ.get("WARMSTART_SECRET_ACCESS_KEY")
    return (key_id, secret) if key_id and secret else None


@contextlib.asynccontextmanager
async def connect(args: argparse.Namespace) -> AsyncIterator[ServiceClient]:
    """A client of ``--endpoint``, or of an embedded service built from ``--config``."""
    from .client import ServiceClient

    if args.endpoint:
        async with ServiceClient(
            args.endpoint, credentials=credentials_from_env(), region=region()
        ) as client:
            yield client
        return
    from ..service.app import running

    config = load_config(args.config)
    async with running(config, "127.0.0.1", 0) as url, ServiceClient(url) as client:
        yield client


def run_connected(
    connector: Callable[[argparse.Namespace], contextlib.AbstractAsyncContextManager[C]],
    args: argparse.Namespace,
    work: Callable[[C], Coroutine[Any, Any, int]],
) -> int:
    """Run ``work`` with the client ``connector`` makes for ``args``; Ctrl-C exits 130."""

    async def main() -> int:
        async with connector(args) as client:
            return await work(client)

    try:
        return run(interruptible(main()))
    except asyncio.CancelledError:
        return 130


def columns(rows: list[tuple[Any, ...]]) -> str:
    """``rows`` (the header first) as left-aligned columns two spaces apart."""
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    return "\n".join(lines) + "\n"
