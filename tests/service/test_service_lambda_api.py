"""The Lambda API through boto3 itself, against a real server on a loopback port."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from service_support import APP, BASIC, basic, boto, call, config_of, make_zip, serving

from runtime.config import PoolConfig

pytestmark = pytest.mark.usefixtures("no_leaked_threads")

ROLE = "arn:aws:iam::000000000000:role/test"


def test_function_lifecycle(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        async with serving(config_of()) as svc, boto(svc.url) as client:
            created = await call(
                client.create_function,
                FunctionName="zipped",
                Role=ROLE,
                Runtime="python3.11",
                Handler="app.handler",
                Code={"ZipFile": make_zip({"app.py": APP})},
                MemorySize=256,
                Timeout=7,
                Description="from a zip",
                Environment={"Variables": {"GREETING": "hi"}},
                EphemeralStorage={"Size": 1024},
            )
            assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
            expected = {
                "FunctionName": "zipped",
                "FunctionArn": "arn:aws:lambda:us-east-1:000000000000:function:zipped",
                "Runtime": "python3.11",
                "Role": ROLE,
                "Handler": "app.handler",
                "Description": "from a zip",
                "Timeout": 7,
                "MemorySize": 256,
                "Version": "$LATEST",
                "Environment": {"Variables": {"GREETING": "hi"}},
                "State": "Active",
                "LastUpdateStatus": "Successful",
                "PackageType": "Zip",
                "Architectures": ["x86_64"],
                "EphemeralStorage": {"Size": 1024},
            }
            assert expected.items() <= created.items()
            zipped = make_zip({"app.py": APP})
            assert created["CodeSize"] == len(zipped)
            assert len(base64.b64decode(created["CodeSha256"])) == 32
            assert created["LastModified"].endswith("+0000")

            got = await call(client.get_function, FunctionName="zipped")
            assert got["Configuration"]["RevisionId"] == created["RevisionId"]
            assert got["Code"]["Location"].startswith("file://")
            conf = await call(client.get_function_configuration, FunctionName="zipped")
            assert conf["CodeSha256"] == created["CodeSha256"]

            result = await call(client.invoke, FunctionName="zipped", Payload=b'{"n": 1}')
            assert json.loads(result["Payload"].read()) == {"zipped": {"n": 1}}

            updated = await call(
                client.update_function_configuration,
                FunctionName="zipped",
                MemorySize=512,
                Environment={"Variables": {"GREETING": "hello"}},
            )
            assert updated["MemorySize"] == 512
            assert updated["Environment"] == {"Variables": {"GREETING": "hello"}}
            assert updated["RevisionId"] != created["RevisionId"]

            new_app = APP.replace("zipped", "updated")
            recoded = await call(
                client.update_function_code,
                FunctionName="zipped",
                ZipFile=make_zip({"app.py": new_app}),
            )
            assert recoded["CodeSha256"] != created["CodeSha256"]
            result = await call(client.invoke, FunctionName="zipped", Payload=b"{}")
            assert json.loads(result["Payload"].read()) == {"updated": {}}

            deleted = await call(client.delete_function, FunctionName="zipped")
            assert deleted["StatusCode"] == 204
            with pytest.raises(client.exceptions.ResourceNotFoundException):
                await call(client.get_function, FunctionName="zipped")

    arun(main())


def test_create_from_a_local_directory_and_the_config(
    arun: Callable[..., Any], tmp_path: Path
) -> None:
    local_zip = tmp_path / "code.zip"
    local_zip.write_bytes(make_zip({"app.py": APP}))

    async def main() -> None:
        async with serving(config_of(basic("from-config"))) as svc, boto(svc.url) as client:
            await call(
                client.create_function,
                FunctionName="local-dir",
                Role=ROLE,
                Handler="app.echo",
                Code={"S3Bucket": "local", "S3Key": BASIC},
            )
            await call(
                client.create_function,
                FunctionName="local-zip",
                Role=ROLE,
                Handler="app.handler",
                Code={"S3Bucket": "local", "S3Key": str(local_zip)},
            )
            result = await call(client.invoke, FunctionName="local-zip", Payload=b"1")
            assert result["Payload"].read() == b'{"zipped":1}'
            with pytest.raises(client.exceptions.InvalidParameterValueException, match="absolute"):
                await call(
                    client.create_function,
                    FunctionName="relative",
                    Role=ROLE,
                    Handler="app.echo",
                    Code={"S3Bucket": "local", "S3Key": "relative/dir"},
                )
            for name in ("local-dir", "from-config"):
                result = await call(client.invoke, FunctionName=name, Payload=b'{"a": 1}')
                assert result["Payload"].read() == b'{"a":1}'
                conf = await call(client.get_function_configuration, FunctionName=name)
                assert conf["CodeSize"] > 0
                assert conf["Runtime"].startswith("python3.")
            with pytest.raises(client.exceptions.InvalidParameterValueException, match="S3"):
                await call(
                    client.create_function,
                    FunctionName="s3",
                    Role=ROLE,
                    Handler="app.echo",
                    Code={"S3Bucket": "my-bucket", "S3Key": "code.zip"},
                )

    arun(main())


def test_list_functions_pages(arun: Callable[..., Any]) -> None:
    names = [f"fn-{i}" for i in range(7)]

    async def main() -> None:
        config = config_of(*(basic(name) for name in reversed(names)))
        async with serving(config) as svc, boto(svc.url) as client:
            first = await call(client.list_functions, MaxItems=3)
            assert [f["FunctionName"] for f in first["Functions"]] == names[:3]
            second = await call(client.list_functions, MaxItems=3, Marker=first["NextMarker"])
            assert [f["FunctionName"] for f in second["Functions"]] == names[3:6]
            last = await call(client.list_functions, MaxItems=3, Marker=second["NextMarker"])
            assert [f["FunctionName"] for f in last["Functions"]] == names[6:]
            assert "NextMarker" not in last

            paginator = client.get_paginator("list_functions")
            pages = await call(lambda: list(paginator.paginate(PaginationConfig={"PageSize": 2})))
            assert len(pages) == 4
            assert [f["FunctionName"] for p in pages for f in p["Functions"]] == names
            everything = await call(client.list_functions)
            assert len(everything["Functions"]) == 7
            with pytest.raises(client.exceptions.InvalidParameterValueException):
                await call(client.list_functions, Marker="%%%not-a-marker")

    arun(main())


def test_invoke_types_tail_and_headers(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        config = config_of(basic("echo"), basic("ctx", "ctx"), basic("fail", "flexible"))
        async with serving(config) as svc, boto(svc.url) as client:
            result = await call(
                client.invoke, FunctionName="echo", Payload=b'{"x": 1}', LogType="Tail"
            )
            assert result["StatusCode"] == 200
            assert result["ExecutedVersion"] == "$LATEST"
            assert "FunctionError" not in result
            log = base64.b64decode(result["LogResult"]).decode()
            lines = log.splitlines()
            assert lines[0].startswith("START RequestId: ")
            assert lines[-2].startswith("END RequestId: ")
            assert lines[-1].startswith("REPORT RequestId: ")
            assert "Init Duration" in lines[-1]

            event = await call(
                client.invoke, FunctionName="echo", InvocationType="Event", Payload=b"{}"
            )
            assert event["StatusCode"] == 202
            assert event["Payload"].read() == b""
            dry = await call(client.invoke, FunctionName="echo", InvocationType="DryRun")
            assert dry["StatusCode"] == 204

            failed = await call(client.invoke, FunctionName="fail", Payload=b'{"fail": true}')
            assert failed["StatusCode"] == 200
            assert failed["FunctionError"] == "Unhandled"
            doc = json.loads(failed["Payload"].read())
            assert (doc["errorType"], doc["errorMessage"]) == ("RuntimeError", "asked to fail")

            context = {"custom": {"k": "v"}, "env": {"e": "1"}, "client": {"installation_id": "i"}}
            encoded = base64.b64encode(json.dumps(context).encode()).decode()
            seen = await call(client.invoke, FunctionName="ctx", ClientContext=encoded)
            seen_doc = json.loads(seen["Payload"].read())
            assert seen_doc["client_custom"] == {"k": "v"}
            assert seen_doc["client_installation_id"] == "i"

    arun(main())


def test_function_names_as_arns_and_qualifiers(arun: Callable[..., Any]) -> None:
    arn = "arn:aws:lambda:us-east-1:000000000000:function:echo"

    async def main() -> None:
        async with serving(config_of(basic("echo"))) as svc, boto(svc.url) as client:
            for ref in (arn, "000000000000:function:echo", "echo:$LATEST", f"{arn}:$LATEST"):
                result = await call(client.invoke, FunctionName=ref, Payload=b"[1]")
                assert result["Payload"].read() == b"[1]", ref
            got = await call(client.get_function, FunctionName=arn, Qualifier="$LATEST")
            assert got["Configuration"]["FunctionName"] == "echo"
            with pytest.raises(client.exceptions.ResourceNotFoundException, match=r":echo:prod$"):
                await call(client.invoke, FunctionName="echo", Qualifier="prod")

    arun(main())


def test_concurrency_operations(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        async with serving(config_of(basic("echo"))) as svc, boto(svc.url) as client:
            assert "ReservedConcurrentExecutions" not in await call(
                client.get_function_concurrency, FunctionName="echo"
            )
            put = await call(
                client.put_function_concurrency, FunctionName="echo", ReservedConcurrentExecutions=5
            )
            assert put["ReservedConcurrentExecutions"] == 5
            got = await call(client.get_function_concurrency, FunctionName="echo")
            assert got["ReservedConcurrentExecutions"] == 5
            fn = await call(client.get_function, FunctionName="echo")
            assert fn["Concurrency"] == {"ReservedConcurrentExecutions": 5}

            await call(client.publish_version, FunctionName="echo")
            with pytest.raises(client.exceptions.ProvisionedConcurrencyConfigNotFoundException):
                await call(
                    client.get_provisioned_concurrency_config,
                    FunctionName="echo",
                    Qualifier="1",
                )
            provisioned = await call(
                client.put_provisioned_concurrency_config,
                FunctionName="echo",
                Qualifier="1",
                ProvisionedConcurrentExecutions=2,
            )
            assert provisioned["ResponseMetadata"]["HTTPStatusCode"] == 202
            assert provisioned["Status"] == "READY"
            got_pc = await call(
                client.get_provisioned_concurrency_config, FunctionName="echo", Qualifier="1"
            )
            assert (got_pc["Requested" + "ProvisionedConcurrentExecutions"], got_pc["Status"]) == (
                2,
                "READY",
            )
            assert got_pc["AllocatedProvisionedConcurrentExecutions"] == 2
            assert svc.engine is not None
            assert svc.engine.stats()["echo.1"]["environments"]["ready"] == 2

            with pytest.raises(client.exceptions.InvalidParameterValueException):
                await call(  # more provisioned than reserved
                    client.put_provisioned_concurrency_config,
                    FunctionName="echo",
                    Qualifier="1",
                    ProvisionedConcurrentExecutions=6,
                )
            await call(
                client.delete_provisioned_concurrency_config,
                FunctionName="echo",
                Qualifier="1",
            )
            await call(client.delete_function_concurrency, FunctionName="echo")
            assert svc.engine.get_function("echo").reserved_concurrency is None

            # botocore itself requires the Qualifier; a raw request without one is refused too
            async with aiohttp.ClientSession() as session:
                url = f"{svc.url}/2019-09-30/functions/echo/provisioned-concurrency"
                async with session.get(url) as resp:
                    assert resp.status == 400
                    assert resp.headers["x-amzn-ErrorType"] == "InvalidParameterValueException"

    arun(main())


def test_account_settings(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        config = config_of(
            basic("a", reserved_concurrency=10),
            basic("b"),
            pool=PoolConfig(account_concurrency=200),
        )
        async with serving(config) as svc, boto(svc.url) as client:
            settings = await call(client.get_account_settings)
            assert settings["AccountLimit"]["ConcurrentExecutions"] == 200
            assert settings["AccountLimit"]["UnreservedConcurrentExecutions"] == 190
            assert settings["AccountLimit"]["CodeSizeUnzipped"] == 262_144_000
            assert settings["AccountUsage"]["FunctionCount"] == 2
            assert settings["AccountUsage"]["TotalCodeSize"] > 0

    arun(main())


def _zip_code(**extra: Any) -> dict[str, Any]:
    return {
        "FunctionName": "new",
        "Role": ROLE,
        "Handler": "app.handler",
        "Code": {"ZipFile": make_zip({"app.py": APP})},
        **extra,
    }


BIG_SYNC = b'"' + b"x" * 6_291_456 + b'"'
BIG_EVENT = b'"' + b"x" * 1_048_576 + b'"'

#: (exception name, operation, its arguments) -> each reaches boto3 as that modeled class
MODELED = [
    ("ResourceNotFoundException", "get_function", {"FunctionName": "missing"}),
    ("ResourceNotFoundException", "invoke", {"FunctionName": "missing"}),
    ("ResourceNotFoundException", "delete_function", {"FunctionName": "missing"}),
    ("ResourceConflictException", "create_function", _zip_code(FunctionName="echo")),
    ("InvalidParameterValueException", "create_function", _zip_code(MemorySize=20_000)),
    ("InvalidParameterValueException", "create_function", _zip_code(Runtime="java21")),
    ("InvalidParameterValueException", "create_function", _zip_code(FunctionName="bad.name")),
    ("InvalidParameterValueException", "update_function_configuration",
     {"FunctionName": "echo", "Environment": {"Variables": {"AWS_REGION": "x"}}}),
    ("InvalidParameterValueException", "create_function",
     _zip_code(Code={"ZipFile": b"not a zip"})),
    ("InvalidRequestContentException", "invoke", {"FunctionName": "echo", "Payload": b"{oops"}),
    ("RequestTooLargeException", "invoke", {"FunctionName": "echo", "Payload": BIG_SYNC}),
    ("RequestTooLargeException", "invoke",
     {"FunctionName": "echo", "InvocationType": "Event", "Payload": BIG_EVENT}),
    ("TooManyRequestsException", "invoke", {"FunctionName": "capped"}),
    ("PreconditionFailedException", "update_function_configuration",
     {"FunctionName": "echo", "RevisionId": "stale", "Timeout": 5}),
    ("InvalidRequestContentException", "invoke",
     {"FunctionName": "echo", "ClientContext": base64.b64encode(b"[1]").decode()}),
]  # fmt: skip


def test_each_error_reaches_boto3_as_its_modeled_exception(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        config = config_of(basic("echo"), basic("capped", reserved_concurrency=0))
        async with serving(config) as svc, boto(svc.url) as client:
            for name, operation, kwargs in MODELED:
                exc_class = getattr(client.exceptions, name)
                with pytest.raises(exc_class) as caught:
                    await call(getattr(client, operation), **kwargs)
                error = caught.value.response["Error"]
                assert error["Code"] == name, (operation, kwargs)
                assert error["Message"], (operation, kwargs)
                if name == "TooManyRequestsException":
                    reason = caught.value.response["Reason"]
                    assert reason == "ReservedFunctionConcurrentInvocationLimitExceeded"
            assert svc.engine is not None
            assert svc.engine.stats()["capped"]["throttles"] == 1

    arun(main())


def test_validation_errors_use_the_api_names(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        async with serving(config_of(basic("echo"))) as svc, boto(svc.url) as client:
            with pytest.raises(client.exceptions.InvalidParameterValueException) as caught:
                await call(client.create_function, **_zip_code(MemorySize=20_000))
            assert caught.value.response["Error"]["Message"].startswith("MemorySize: 20000")

    arun(main())
