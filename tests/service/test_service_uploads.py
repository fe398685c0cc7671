"""Untrusted bytes at the door: zip uploads that try to escape, and bodies over the limits."""

from __future__ import annotations

import asyncio
import contextlib
import io
import random
import re
import struct
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from service_support import APP, basic, boto, call, config_of, make_zip, serving

from runtime.code import UNZIP_FAILED
from runtime.config import PoolConfig

pytestmark = pytest.mark.usefixtures("no_leaked_threads")

ROLE = "arn:aws:iam::000000000000:role/test"


def declared_size(data: bytes, size: int) -> bytes:
    """``data`` with its first central-directory entry claiming ``size`` bytes unzipped."""
    patched = bytearray(data)
    at = patched.index(b"PK\x01\x02")
    struct.pack_into("<I", patched, at + 24, size)
    return bytes(patched)


#: an unsafe member is named, not just refused
UNSAFE = "Could not unzip uploaded file: "
#: zip -> the message (a regex) of the 400 InvalidParameterValueException it must get
HOSTILE = [
    (
        "traversal",
        make_zip({"app.py": APP, "../../escaped.py": "x"}),
        UNSAFE + r"member '\.\./\.\./escaped\.py' leaves the code directory",
    ),
    (
        "absolute",
        make_zip({"app.py": APP, "/tmp/escaped-abs.py": "x"}),
        UNSAFE + r"member '/tmp/escaped-abs\.py' is an absolute path",
    ),
    (
        "link",
        make_zip({"app.py": APP}, links={"escaped-link": "../../../etc"}),
        UNSAFE + r"link escaped-link points outside the code directory",
    ),
    (
        "over 250 MB",
        declared_size(make_zip({"big.bin": b"0" * 10, "app.py": APP}), 300_000_000),
        r"Unzipped size must be smaller than 262144000 bytes",
    ),
    ("not a zip", b"PK\x03\x04 truncated", re.escape(UNZIP_FAILED)),
]


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def refused_as_bad_parameter(caught: pytest.ExceptionInfo[ClientError], message: str) -> None:
    """A 400 InvalidParameterValueException whose message matches ``message`` (a regex)."""
    response = caught.value.response
    assert response["Error"]["Code"] == "InvalidParameterValueException"
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert re.fullmatch(message, response["Error"]["Message"]), response["Error"]["Message"]


@pytest.mark.parametrize(("label", "data", "message"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_zips_are_refused_and_write_nothing(
    arun: Callable[..., Any], tmp_path: Path, label: str, data: bytes, message: str
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
            with pytest.raises(ClientError) as caught:
                await call(
                    client.create_function,
                    FunctionName="hostile",
                    Role=ROLE,
                    Handler="app.handler",
                    Code={"ZipFile": data},
                )
            refused_as_bad_parameter(caught, message)
            with pytest.raises(ClientError) as caught:
                await call(client.update_function_code, FunctionName="target", ZipFile=data)
            refused_as_bad_parameter(caught, message)
            assert _tree(tmp_path) == before, f"{label}: files appeared"
            result = await call(client.invoke, FunctionName="target", Payload=b"{}")
            assert result["Payload"].read() == b'{"zipped":{}}'
            names = [f["FunctionName"] for f in (await call(client.list_functions))["Functions"]]
            assert names == ["target"]

    arun(main())
    assert not Path("/tmp/escaped-abs.py").exists()


def _crc_mismatch() -> bytes:
    """A stored (uncompressed) member with one byte of its data changed after zipping."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("app.py", APP)
    data = bytearray(buffer.getvalue())
    at = data.index(b"def handler")
    data[at] ^= 0x20  # "Def handler": same length, wrong CRC
    return bytes(data)


GOOD_ZIP = make_zip({"app.py": APP, "lib/util.py": "x = 1\n" * 200})
#: files that are not a zip Lambda can read -> 400 with Lambda's own message, never a 502
CORRUPT = [
    ("garbage", random.Random(3).randbytes(2048)),
    ("truncated", GOOD_ZIP[: len(GOOD_ZIP) // 2]),
    ("crc-mismatch", _crc_mismatch()),
]


def test_corrupt_zips_are_a_400_with_lambdas_message(
    arun: Callable[..., Any], tmp_path: Path
) -> None:
    async def main() -> None:
        config = config_of(pool=PoolConfig(work_dir=str(tmp_path / "work")))
        async with serving(config) as svc, boto(svc.url) as client:
            await call(
                client.create_function,
                FunctionName="target",
                Role=ROLE,
                Handler="app.handler",
                Code={"ZipFile": GOOD_ZIP},
            )
            for label, data in CORRUPT:
                with pytest.raises(ClientError) as caught:
                    await call(
                        client.create_function,
                        FunctionName=f"corrupt-{label}",
                        Role=ROLE,
                        Handler="app.handler",
                        Code={"ZipFile": data},
                    )
                refused_as_bad_parameter(caught, re.escape(UNZIP_FAILED))
                with pytest.raises(ClientError) as caught:
                    await call(client.update_function_code, FunctionName="target", ZipFile=data)
                refused_as_bad_parameter(caught, re.escape(UNZIP_FAILED))
            result = await call(client.invoke, FunctionName="target", Payload=b'{"n": 1}')
            assert result["Payload"].read() == b'{"zipped":{"n":1}}'
            names = [f["FunctionName"] for f in (await call(client.list_functions))["Functions"]]
            assert names == ["target"]

    arun(main())


#: Runtime values refused, known to Lambda or not
BAD_RUNTIMES = ["nodejs14.x", "java21", "provided.al1", "bogus", "python3.8", "python3.99", ""]


def test_a_runtime_other_than_lambdas_pythons_is_refused(
    arun: Callable[..., Any], tmp_path: Path
) -> None:
    supported = ", ".join(
        [f"python3.{minor}" for minor in range(9, 15)]
        + [f"nodejs{major}.x" for major in (16, 18, 20, 22, 24)]
        + ["provided", "provided.al2", "provided.al2023"]
    )

    async def main() -> None:
        config = config_of(pool=PoolConfig(work_dir=str(tmp_path / "work")))
        async with serving(config) as svc, boto(svc.url) as client:
            created = await call(
                client.create_function,
                FunctionName="target",
                Role=ROLE,
                Runtime="python3.12",
                Handler="app.handler",
                Code={"ZipFile": GOOD_ZIP},
            )
            assert created["Runtime"] == "python3.12"
            before = _tree(tmp_path)
            for runtime in BAD_RUNTIMES:
                expected = (
                    re.escape(f"The runtime parameter of {runtime} is not supported by this "
                              "service; supported: ") + re.escape(supported)
                )  # fmt: skip
                with pytest.raises(ClientError) as caught:
                    await call(
                        client.create_function,
                        FunctionName="other",
                        Role=ROLE,
                        Runtime=runtime,
                        Handler="app.handler",
                        Code={"ZipFile": GOOD_ZIP},
                    )
                refused_as_bad_parameter(caught, expected)
                with pytest.raises(ClientError) as caught:
                    await call(
                        client.update_function_configuration,
                        FunctionName="target",
                        Runtime=runtime,
                        Timeout=9,
                    )
                refused_as_bad_parameter(caught, expected)
            names = [f["FunctionName"] for f in (await call(client.list_functions))["Functions"]]
            assert names == ["target"]
            conf = await call(client.get_function_configuration, FunctionName="target")
            assert (conf["Runtime"], conf["Timeout"]) == ("python3.12", 3)
            assert _tree(tmp_path) == before
            updated = await call(
                client.update_function_configuration, FunctionName="target", Runtime="python3.9"
            )
            assert updated["Runtime"] == "python3.9"

    arun(main())


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
