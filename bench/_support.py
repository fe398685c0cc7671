"""Baselines and helpers shared by the benchmarks.

The floor of DESIGN.md section 7: the same event making a raw round trip between two Python
processes over a unix socket, with uvloop on the caller's side and a blocking echo loop on the
other.  Everything warmstart adds on top of a process hop shows up as the ratio to it.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import subprocess
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
FUNCTIONS = BENCH_DIR / "functions"
QUICK = os.environ.get("WARMSTART_BENCH_QUICK") == "1"
EVENT = b'{"key": "value", "n": 1}'

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


def size(full: int, quick: int) -> int:
    """A count that shrinks to ``quick`` under WARMSTART_BENCH_QUICK=1 (the test run)."""
    return quick if QUICK else full


class _EchoClient(asyncio.Protocol):
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
                if waiter is not None:
                    waiter.set_result(body)

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
            await loop.create_unix_connection(lambda c=client: c, sock=ours)
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
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def noop(event: bytes) -> bytes:
    """The ProcessPoolExecutor baseline's task: the same event, decoded and encoded."""
    import json

    return json.dumps(json.loads(event)).encode()


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
