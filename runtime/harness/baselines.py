"""Baselines measured beside warmstart in the same run, with the same payload and load shape.

- ``raw``: the floor of DESIGN.md section 7, the same event making a raw round trip between two
  Python processes over a unix socket, a uvloop client on our side and a blocking echo loop on
  the other (``EchoFloor``).  Everything warmstart adds on top of a process hop is the ratio.
- ``ppe``: ``concurrent.futures.ProcessPoolExecutor`` running ``noop`` (decode and encode the
  event, as a handler that returns its event does).
- ``mp``: ``multiprocessing.Pool.apply_async`` running the same ``noop``.

The pools use the ``spawn`` start method: forking a process that runs an event loop and threads
is what the ``fork`` method warns about, and spawned workers are ready before measuring starts.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import multiprocessing
import multiprocessing.pool
import socket
import struct
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from .results import OK, Outcome

_ECHO = r"""
import socket, struct, sys
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, fileno=int(sys.argv[1]))
reader = sock.makefile("rb", buffering=65536)
while True:
    head = reader.read(4)
    if len(head) < 4:
        break
    body = reader.read(struct.unpack("<I", head)[0])
    sock.sendall(head + body)
"""

_LEN = struct.Struct("<I")

NAMES = ("raw", "ppe", "mp")


class _EchoClient(asyncio.Protocol):
    """One connection to an echo process; one request in flight at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[bytes] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if len(self.buf) >= 4:
            (n,) = _LEN.unpack_from(self.buf)
            if len(self.buf) >= 4 + n:
                body = bytes(self.buf[4 : 4 + n])
                del self.buf[: 4 + n]
                waiter, self.waiter = self.waiter, None
                if waiter is not None and not waiter.done():
                    waiter.set_result(body)

    def connection_lost(self, exc: Exception | None) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionError("the echo process closed the connection"))

    async def roundtrip(self, payload: bytes) -> bytes:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(_LEN.pack(len(payload)) + payload)
        return await self.waiter


class EchoFloor:
    """``n`` echo processes and a uvloop client connection to each."""

    def __init__(self, n: int = 1) -> None:
        self.n = n
        self.procs: list[subprocess.Popen[bytes]] = []
        self.clients: list[_EchoClient] = []

    async def start(self) -> EchoFloor:
        loop = asyncio.get_running_loop()
        for _ in range(self.n):
            ours, theirs = socket.socketpair()
            # setup, not measured: a blocking start is fine here
            proc = subprocess.Popen(  # noqa: ASYNC220
                [sys.executable, "-c", _ECHO, str(theirs.fileno())], pass_fds=(theirs.fileno(),)
            )
            theirs.close()
            client = _EchoClient()
            await loop.create_unix_connection(lambda c=client: c, sock=ours)  # type: ignore[misc]
            self.procs.append(proc)
            self.clients.append(client)
        return self

    async def close(self) -> None:
        for client in self.clients:
            if client.transport is not None:
                client.transport.close()
        await asyncio.sleep(0)  # the transports close on the next turn; the servers then see EOF
        for proc in self.procs:
            try:
                await asyncio.to_thread(proc.wait, 5)
            except subprocess.TimeoutExpired:
                proc.kill()
                await asyncio.to_thread(proc.wait)


def _json_codec() -> tuple[Callable[[bytes], Any], Callable[[Any], bytes]]:
    """orjson's loads and dumps, as the agent uses, when importable; else the stdlib's."""
    try:
        import orjson
    except ImportError:  # pragma: no cover - orjson is a dependency of the runtime
        import json

        return json.loads, lambda doc: json.dumps(doc).encode()
    return orjson.loads, orjson.dumps


_loads, _dumps = _json_codec()


def noop(event: bytes) -> bytes:
    """The pool baselines' task: the same event, decoded and encoded (the agent's JSON work)."""
    return _dumps(_loads(event))


class RawTarget:
    """The floor as a benchmark target: ``workers`` echo processes, one client each."""

    label = "raw"

    def __init__(self, workers: int) -> None:
        self.floor = EchoFloor(workers)
        self.free: asyncio.Queue[_EchoClient] = asyncio.Queue()

    async def start(self) -> None:
        await self.floor.start()
        for client in self.floor.clients:
            self.free.put_nowait(client)

    async def call(self, payload: bytes) -> Outcome:
        client = await self.free.get()
        try:
            await client.roundtrip(payload)
        finally:
            self.free.put_nowait(client)
        return OK

    async def close(self) -> None:
        await self.floor.close()

    def describe(self) -> dict[str, Any]:
        return {"kind": "raw", "workers": self.floor.n}


class ExecutorTarget:
    """``ProcessPoolExecutor(workers).submit(noop, payload)``."""

    label = "ppe"

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.pool: cf.ProcessPoolExecutor | None = None

    async def start(self) -> None:
        context = multiprocessing.get_context("spawn")
        self.pool = cf.ProcessPoolExecutor(self.workers, mp_context=context)
        await asyncio.gather(*(self.call(b"{}") for _ in range(self.workers)))

    async def call(self, payload: bytes) -> Outcome:
        assert self.pool is not None
        await asyncio.wrap_future(self.pool.submit(noop, payload))
        return OK

    async def close(self) -> None:
        if self.pool is not None:
            await asyncio.to_thread(self.pool.shutdown, True)
            self.pool = None

    def describe(self) -> dict[str, Any]:
        return {"kind": "ppe", "workers": self.workers}


class PoolTarget:
    """``multiprocessing.Pool(workers).apply_async(noop, (payload,))``."""

    label = "mp"

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.pool: multiprocessing.pool.Pool | None = None

    async def start(self) -> None:
        self.pool = multiprocessing.get_context("spawn").Pool(self.workers)
        await asyncio.gather(*(self.call(b"{}") for _ in range(self.workers)))

    async def call(self, payload: bytes) -> Outcome:
        assert self.pool is not None
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()

        def done(result: Any) -> None:
            loop.call_soon_threadsafe(_settle, future, result, None)

        def failed(exc: BaseException) -> None:
            loop.call_soon_threadsafe(_settle, future, None, exc)

        self.pool.apply_async(noop, (payload,), callback=done, error_callback=failed)
        await future
        return OK

    async def close(self) -> None:
        pool, self.pool = self.pool, None
        if pool is not None:
            pool.close()
            await asyncio.to_thread(pool.join)

    def describe(self) -> dict[str, Any]:
        return {"kind": "mp", "workers": self.workers}


def _settle(future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)


def make_baseline(name: str, workers: int) -> RawTarget | ExecutorTarget | PoolTarget:
    """The baseline called ``name`` (one of ``NAMES``) with ``workers`` processes."""
    if name == "raw":
        return RawTarget(workers)
    if name == "ppe":
        return ExecutorTarget(workers)
    if name == "mp":
        return PoolTarget(workers)
    raise ValueError(f"unknown baseline {name!r}: choose from {', '.join(NAMES)}")
