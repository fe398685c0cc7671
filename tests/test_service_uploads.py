"""Untrusted bytes at the door: zip uploads that try to escape, and bodies over the limits."""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from service_support import (  # noqa: F401 (fixtures)
    APP,
    aws_env,
    basic,
    boto,
    call,
    config_of,
    make_zip,
    no_leaked_threads,
    serving,
)

from runtime.config import PoolConfig

pytestmark = pytest.mark.usefixtures("aws_env", "no_leaked_threads")

ROLE = "arn:aws:iam::000000000000:role/test"


def declared_size(data: bytes, size: int) -> bytes:
    """``data`` with its first central-directory entry claiming ``size`` bytes unzipped."""
    patched = bytearray(data)
    at = patched.index(b"PK\x01\x02")
    struct.pack_into("<I", patched, at + 24, size)
    return bytes(patched)


#: zip -> the modeled error it must get
HOSTILE = [
    ("traversal", make_zip({"app.py": APP, "../../escaped.py": "x"}), "InvalidZipFileException"),
    ("absolute", make_zip({"app.py": APP, "/tmp/escaped-abs.py": "x"}), "InvalidZipFileException"),
    (
        "link",
        make_zip({"app.py": APP}, links={"escaped-link": "../../../etc"}),
        "InvalidZipFileException",
    ),
    (
        "over 250 MB",
        declared_size(make_zip({"big.bin": b"0" * 10, "app.py": APP}), 300_000_000),
        "InvalidParameterValueException",
    ),
    ("not a zip", b"PK\x03\x04 truncated", "InvalidZipFileException"),
]


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize(("label", "data", "error"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_zips_are_refused_and_write_nothing(
    arun: Callable[..., Any], tmp_path: Path, label: str, data: bytes, error: str
) -> None:
    async def main() -> None:
        config = config_of(pool=PoolConfig(work_dir=str(tmp_path / "work")))
        async with serving(config) as svc, boto(svc.url) as client:
            await call(
                client.create_function,
                FunctionName="target",
                Role=ROLE,
                Handler="app.handler",
                Code={"ZipFile": make_zip({"app.py": APP})},
            )
            before = _tree(tmp_path)
            refused = getattr(client.exceptions, error)
            with pytest.raises(refused):
                await call(
                    client.create_function,
                    FunctionName="hostile",
                    Role=ROLE,
                    Handler="app.handler",
                    Code={"ZipFile": data},
                )
            with pytest.raises(refused):
                await call(client.update_function_code, FunctionName="target", ZipFile=data)
            assert _tree(tmp_path) == before, f"{label}: files appeared"
            result = await call(client.invoke, FunctionName="target", Payload=b"{}")
            assert result["Payload"].read() == b'{"zipped":{}}'
            names = [f["FunctionName"] for f in (await call(client.list_functions))["Functions"]]
            assert names == ["target"]

    arun(main())
    assert not Path("/tmp/escaped-abs.py").exists()


def test_a_good_zip_with_packages_and_an_inner_link(arun: Callable[..., Any]) -> None:
    code = make_zip(
        {
            "app.py": "from lib.util import twice\n"
            "def handler(event, context):\n    return twice(event['n'])\n",
            "lib/__init__.py": "",
            "lib/util.py": "def twice(n):\n    return 2 * n\n",
        },
        links={"alias.py": "app.py"},
    )

    async def main() -> None:
        async with serving(config_of()) as svc, boto(svc.url) as client:
            await call(
                client.create_function,
                FunctionName="pkg",
                Role=ROLE,
                Handler="alias.handler",
                Code={"ZipFile": code},
            )
            result = await call(client.invoke, FunctionName="pkg", Payload=b'{"n": 21}')
            assert result["Payload"].read() == b"42"

    arun(main())


async def raw_request(
    port: int, head: str, body: bytes = b"", *, chunks: int = 0
) -> tuple[int, bytes, float]:
    """Send a request by hand, then ``chunks`` chunks of 1 MB while waiting for the answer:
    (status, response bytes, seconds to the status line)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def send() -> None:
        writer.write(head.encode() + body)
        for _ in range(chunks):
            writer.write(b"100000\r\n" + b" " * 0x100000 + b"\r\n")
            await writer.drain()

    t0 = time.monotonic()
    sender = asyncio.ensure_future(send())
    try:
        status_line = await asyncio.wait_for(reader.readline(), 5.0)
        elapsed = time.monotonic() - t0
        rest = await asyncio.wait_for(reader.read(4096), 5.0)
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return int(status_line.split()[1]), status_line + rest, elapsed


def test_oversized_invoke_is_refused_before_its_body_is_read(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        async with serving(config_of(basic("echo"))) as svc:
            head = (
                "POST /2015-03-31/functions/echo/invocations HTTP/1.1\r\n"
                "Host: 127.0.0.1\r\nContent-Type: application/json\r\n"
                "Content-Length: 1000000000\r\n\r\n"
            )
            status, response, elapsed = await raw_request(svc.port, head, b'{"only": "a little"}')
            assert status == 413
            assert b"x-amzn-ErrorType: RequestTooLargeException" in response
            assert b"InvokeFunction operation (limit 6291456 bytes)" in response
            assert elapsed < 1.0

            event_head = head.replace("1000000000", "1048577").replace(
                "Content-Type", "X-Amz-Invocation-Type: Event\r\nContent-Type"
            )
            status, response, _ = await raw_request(svc.port, event_head, b"{}")
            assert status == 413
            assert b"InvokeAsync operation (limit 1048576 bytes)" in response

            create_head = (
                "POST /2015-03-31/functions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                "Content-Length: 80000000\r\n\r\n"
            )
            status, response, elapsed = await raw_request(svc.port, create_head, b"{")
            assert status == 413
            assert b"smaller than 69905067 bytes for the CreateFunction operation" in response
            assert elapsed < 1.0
            assert svc.engine is not None
            assert svc.engine.stats()["echo"]["invocations"] == 0

    arun(main())


def test_chunked_bodies_are_counted_as_they_stream(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        async with serving(config_of(basic("echo"))) as svc:
            head = (
                "POST /2015-03-31/functions/echo/invocations HTTP/1.1\r\n"
                "Host: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            status, response, _ = await raw_request(svc.port, head, chunks=12)
            assert status == 413
            assert b"RequestTooLargeException" in response

            small = b'{"chunked": true}'
            chunked = f"{len(small):x}\r\n".encode() + small + b"\r\n0\r\n\r\n"
            status, response, _ = await raw_request(svc.port, head, chunked)
            assert status == 200
            assert response.endswith(b'{"chunked":true}')

    arun(main())
