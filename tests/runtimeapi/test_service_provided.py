"""CreateFunction with ``Runtime=provided.al2023`` and a zip whose ``bootstrap`` keeps its
mode bits, invoked through boto3 against the real service."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import pytest
from runtimeapi_support import PROVIDED, need_curl
from service_support import boto, call, config_of, serving

pytestmark = pytest.mark.usefixtures("aws_env", "no_leaked_threads")


def bootstrap_zip(mode: int = 0o755) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo("bootstrap")
        info.create_system = 3
        info.external_attr = (0o100000 | mode) << 16
        archive.writestr(info, (PROVIDED / "curl_bootstrap.sh").read_bytes())
    return buffer.getvalue()


def test_create_and_invoke_a_custom_runtime(arun: Any) -> None:
    need_curl()

    async def main() -> None:
        async with serving(config_of()) as svc, boto(svc.url) as client:
            created = await call(
                client.create_function,
                FunctionName="sh",
                Runtime="provided.al2023",
                Role="arn:aws:iam::000000000000:role/r",
                Handler="function.handler",
                Code={"ZipFile": bootstrap_zip()},
            )
            assert created["Runtime"] == "provided.al2023"
            answer = await call(client.invoke, FunctionName="sh", Payload=b'{"x": 1}')
            assert "FunctionError" not in answer
            assert json.loads(answer["Payload"].read())["echo"] == {"x": 1}
            got = await call(client.get_function_configuration, FunctionName="sh")
            assert got["Runtime"] == "provided.al2023"
            await call(client.delete_function, FunctionName="sh")

    arun(main(), timeout=60)


def test_bootstrap_without_exec_bits_fails_on_invoke(arun: Any) -> None:
    async def main() -> None:
        async with serving(config_of()) as svc, boto(svc.url) as client:
            await call(
                client.create_function,
                FunctionName="noexec",
                Runtime="provided.al2",
                Role="arn:aws:iam::000000000000:role/r",
                Handler="h",
                Code={"ZipFile": bootstrap_zip(0o644)},
            )
            answer = await call(client.invoke, FunctionName="noexec", Payload=b"{}")
            assert answer["FunctionError"] == "Unhandled"
            assert json.loads(answer["Payload"].read())["errorType"] == (
                "Runtime.InvalidEntrypoint"
            )
            await call(client.delete_function, FunctionName="noexec")

    arun(main(), timeout=60)
