"""CreateFunction with ``Runtime=provided.al2023`` and a zip whose ``bootstrap`` keeps its
mode bits, invoked through boto3 against the real service."""

from __future__ import annotations

import io
import json
import sys
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


def probe_zip() -> bytes:
    """The ``probe`` runtime (Python's http.client) as an executable ``bootstrap``."""
    buffer = io.BytesIO()
    source = f"#!{sys.executable} -u\n" + (PROVIDED / "probe.py").read_text()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo("bootstrap")
        info.create_system = 3
        info.external_attr = (0o100000 | 0o755) << 16
        archive.writestr(info, source)
    return buffer.getvalue()


def test_invoked_function_arn_header_is_the_arn_as_invoked(arun: Any) -> None:
    """``Lambda-Runtime-Invoked-Function-Arn`` names what the caller invoked: an alias keeps
    its name although a version runs, ``$LATEST`` asked for is in it, none asked is not."""
    arn = "arn:aws:lambda:us-east-1:000000000000:function:pr"

    async def main() -> None:
        async with serving(config_of()) as svc, boto(svc.url) as client:
            await call(
                client.create_function,
                FunctionName="pr",
                Runtime="provided.al2023",
                Role="arn:aws:iam::000000000000:role/r",
                Handler="function.handler",
                Code={"ZipFile": probe_zip()},
                Publish=True,
            )
            await call(client.create_alias, FunctionName="pr", Name="live", FunctionVersion="1")
            for _ in range(2):  # the same two environments serve every name
                for params, expected in (
                    ({"FunctionName": "pr"}, arn),
                    ({"FunctionName": "pr", "Qualifier": "live"}, f"{arn}:live"),
                    ({"FunctionName": "pr", "Qualifier": "1"}, f"{arn}:1"),
                    ({"FunctionName": "pr", "Qualifier": "$LATEST"}, f"{arn}:$LATEST"),
                ):
                    answer = await call(client.invoke, Payload=b'{"case": "headers"}', **params)
                    assert "FunctionError" not in answer
                    headers = json.loads(answer["Payload"].read())["headers"]
                    assert headers["lambda-runtime-invoked-function-arn"] == expected, params
            stats = svc.engine.stats() if svc.engine is not None else {}
            assert stats["pr"]["cold_starts"] == stats["pr.1"]["cold_starts"] == 1
            await call(client.delete_function, FunctionName="pr")

    arun(main(), timeout=60)
