"""Published versions and aliases through boto3, against a real in-process service."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from service_support import Service, aws_lambda, boto, call, config_of, make_zip, serving

from runtime.service.app import API

pytestmark = pytest.mark.usefixtures("no_leaked_threads")

ROLE = "arn:aws:iam::000000000000:role/test"
ARN = "arn:aws:lambda:us-east-1:000000000000:function:fn"
#: a handler that reports its code, its own call count (module state) and its context
MODULE = """\
import os

CALLS = []


def {handler}(event, context):
    CALLS.append(event)
    return {{
        "code": "{code}",
        "calls": len(CALLS),
        "pid": os.getpid(),
        "name": context.function_name,
        "version": context.function_version,
        "arn": context.invoked_function_arn,
        "env_version": os.environ["AWS_LAMBDA_FUNCTION_VERSION"],
    }}
"""
ZIP_ONE = make_zip({"app.py": MODULE.format(handler="first", code="one")})
ZIP_TWO = make_zip({"app.py": MODULE.format(handler="second", code="two")})


async def create(client: Any, name: str = "fn", **extra: Any) -> dict[str, Any]:
    return await call(
        client.create_function,
        FunctionName=name,
        Role=ROLE,
        Runtime="python3.11",
        Handler="app.first",
        Code={"ZipFile": ZIP_ONE},
        **extra,
    )


async def to_second_code(client: Any, name: str = "fn") -> None:
    await call(client.update_function_code, FunctionName=name, ZipFile=ZIP_TWO)
    await call(client.update_function_configuration, FunctionName=name, Handler="app.second")


async def invoke(client: Any, **params: Any) -> tuple[str, dict[str, Any]]:
    """The executed version and the decoded payload of one call of ``fn``."""
    params.setdefault("FunctionName", "fn")
    result = await call(client.invoke, Payload=b"{}", **params)
    assert "FunctionError" not in result, result["Payload"].read()
    return result["ExecutedVersion"], json.loads(result["Payload"].read())


def draws(*values: float) -> Callable[[], float]:
    """A random source that returns ``values`` in order, then fails the test."""
    it: Iterator[float] = iter(values)
    return lambda: next(it)


def api_of(svc: Service) -> Any:
    return svc.app[API]


def test_versions_are_numbered_immutable_snapshots(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        async with serving(config_of()) as svc, boto(svc.url) as client:
            await create(client, Description="the function")
            one = await call(client.publish_version, FunctionName="fn", Description="first")
            assert one["ResponseMetadata"]["HTTPStatusCode"] == 201
            assert (one["Version"], one["FunctionArn"]) == ("1", f"{ARN}:1")
            assert (one["Description"], one["Handler"]) == ("first", "app.first")
            again = await call(client.publish_version, FunctionName="fn")
            assert (again["Version"], again["RevisionId"]) == ("1", one["RevisionId"])

            await to_second_code(client)
            two = await call(client.publish_version, FunctionName="fn")
            assert (two["Version"], two["Handler"]) == ("2", "app.second")
            assert two["Description"] == "the function"  # $LATEST's, none given
            assert two["CodeSha256"] != one["CodeSha256"]

            await call(client.update_function_code, FunctionName="fn", ZipFile=ZIP_ONE)
            await call(client.update_function_configuration, FunctionName="fn", Handler="app.first")
            assert (await invoke(client))[1]["code"] == "one"  # $LATEST changed back
            version, out = await invoke(client, Qualifier="2")
            assert (version, out["code"]) == ("2", "two")
            got = await call(client.get_function_configuration, FunctionName="fn", Qualifier="2")
            assert (got["Version"], got["Handler"], got["FunctionArn"]) == (
                "2",
                "app.second",
                f"{ARN}:2",
            )
            latest = await call(client.get_function_configuration, FunctionName="fn")
            assert (latest["Version"], latest["FunctionArn"]) == ("$LATEST", ARN)

            await call(client.delete_function, FunctionName="fn", Qualifier="2")
            with pytest.raises(client.exceptions.ResourceNotFoundException):
                await call(client.get_function, FunctionName="fn", Qualifier="2")
            await to_second_code(client)
            three = await call(client.publish_version, FunctionName="fn")
            assert three["Version"] == "3"  # a deleted version's number is never reused

    arun(main(), timeout=60)


#: how a call names the function → (ExecutedVersion, context.invoked_function_arn)
INVOKED_ARNS: list[tuple[dict[str, str], str, str]] = [
    ({"FunctionName": "fn"}, "$LATEST", ARN),
    ({"FunctionName": ARN}, "$LATEST", ARN),
    ({"FunctionName": "fn", "Qualifier": "$LATEST"}, "$LATEST", f"{ARN}:$LATEST"),
    ({"FunctionName": "fn", "Qualifier": "1"}, "1", f"{ARN}:1"),
    ({"FunctionName": f"{ARN}:1"}, "1", f"{ARN}:1"),
    ({"FunctionName": "fn", "Qualifier": "live"}, "1", f"{ARN}:live"),
    ({"FunctionName": "fn:live"}, "1", f"{ARN}:live"),
    ({"FunctionName": "fn", "Qualifier": "edge"}, "$LATEST", f"{ARN}:edge"),
]


def test_context_has_the_arn_as_invoked(arun: Callable[..., Any]) -> None:
    """Lambda's ``invoked_function_arn`` is the caller's: an alias's, not its version's.  The
    calls alternate between names, so that one environment serves several ARNs."""

    async def main() -> None:
        async with serving(config_of()) as svc, boto(svc.url) as client:
            await create(client)
            await call(client.publish_version, FunctionName="fn")
            await call(client.create_alias, FunctionName="fn", Name="live", FunctionVersion="1")
            await call(
                client.create_alias, FunctionName="fn", Name="edge", FunctionVersion="$LATEST"
            )
            for _ in range(2):
                for params, version, arn in INVOKED_ARNS:
                    executed, out = await invoke(client, **params)
                    assert (executed, out["arn"]) == (version, arn), params
            stats = api_of(svc).engine.stats()
            assert stats["fn"]["cold_starts"] == stats["fn.1"]["cold_starts"] == 1

    arun(main(), timeout=60)


def test_executed_version_context_and_log(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        async with serving(config_of()) as svc, boto(svc.url) as client:
            await create(client)
            await call(client.publish_version, FunctionName="fn")
            version, out = await invoke(client, Qualifier="1")
            assert version == "1"
            assert (out["name"], out["version"], out["env_version"]) == ("fn", "1", "1")
            assert out["arn"] == f"{ARN}:1"
            version, out = await invoke(client, FunctionName=f"{ARN}:1")
            assert version == "1"
            version, out = await invoke(client)
            assert (version, out["version"], out["arn"]) == ("$LATEST", "$LATEST", ARN)

            result = await call(
                client.invoke, FunctionName="fn", Qualifier="1", Payload=b"{}", LogType="Tail"
            )
            log = base64.b64decode(result["LogResult"]).decode()
            assert f"START RequestId: {result['ResponseMetadata']['RequestId']} Version: 1" in log

    arun(main(), timeout=60)


def test_each_version_has_its_own_environments(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        async with serving(config_of()) as svc, boto(svc.url) as client:
            await create(client)
            await call(client.publish_version, FunctionName="fn")
            calls = [
                (await invoke(client, Qualifier=qualifier))[1]
                for qualifier in ("$LATEST", "1", "$LATEST", "1")
            ]
            assert [c["calls"] for c in calls] == [1, 1, 2, 2]
            assert calls[0]["pid"] == calls[2]["pid"] != calls[1]["pid"] == calls[3]["pid"]

    arun(main(), timeout=60)


ZIP_THREE = make_zip({"app.py": MODULE.format(handler="first", code="three")})


def test_publish_with_create_and_with_code_update(arun: Callable[..., Any]) -> None:
    """``Publish=True`` publishes in the same call: CreateFunction answers Version 1 (with the
    function's unqualified ARN, as Lambda does), UpdateFunctionCode the new version."""

    async def main() -> None:
        async with serving(config_of()) as svc, boto(svc.url) as client:
            created = await create(client, Publish=True)
            assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
            assert (created["Version"], created["FunctionArn"]) == ("1", ARN)
            assert (await invoke(client, Qualifier="1"))[1]["code"] == "one"

            updated = await call(
                client.update_function_code, FunctionName="fn", ZipFile=ZIP_THREE, Publish=True
            )
            assert updated["ResponseMetadata"]["HTTPStatusCode"] == 200
            assert (updated["Version"], updated["FunctionArn"]) == ("2", f"{ARN}:2")
            assert updated["CodeSha256"] != created["CodeSha256"]
            again = await call(
                client.update_function_code, FunctionName="fn", ZipFile=ZIP_THREE, Publish=True
            )
            assert (again["Version"], again["RevisionId"]) == ("2", updated["RevisionId"])
            unpublished = await call(
                client.update_function_code, FunctionName="fn", ZipFile=ZIP_ONE
            )
            assert (unpublished["Version"], unpublished["FunctionArn"]) == ("$LATEST", ARN)

            ran = [(await invoke(client, Qualifier=q))[1]["code"] for q in ("1", "2", "$LATEST")]
            assert ran == ["one", "three", "one"]
            versions = await call(client.list_versions_by_function, FunctionName="fn")
            assert [v["Version"] for v in versions["Versions"]] == ["$LATEST", "1", "2"]
            # botocore's UpdateFunctionConfiguration has no Publish: PublishVersion follows it
            model = client.meta.service_model.operation_model("UpdateFunctionConfiguration")
            assert "Publish" not in model.input_shape.members

    arun(main(), timeout=60)


def test_delete_function_with_a_qualifier_deletes_that_version_only(
    arun: Callable[..., Any],
) -> None:
    async def main() -> None:
        async with serving(config_of()) as svc, boto(svc.url) as client:
            assert svc.engine is not None
            await create(client, Publish=True)
            await to_second_code(client)
            await call(client.publish_version, FunctionName="fn")
            await call(client.create_alias, FunctionName="fn", Name="live", FunctionVersion="2")
            refusals = [
                ("$LATEST", "InvalidParameterValueException", 400, LATEST_UNDELETABLE),
                ("live", "InvalidParameterValueException", 400, NO_ALIAS_DELETION),
                ("nope", "InvalidParameterValueException", 400, NO_ALIAS_DELETION),
                ("7", "ResourceNotFoundException", 404, f"Function not found: {ARN}:7"),
                ("2", "ResourceConflictException", 409, ALIAS_REFERENCES + "[live]"),
            ]
            for qualifier, code, status, message in refusals:
                with pytest.raises(client.exceptions.ClientError) as caught:
                    await call(client.delete_function, FunctionName="fn", Qualifier=qualifier)
                answer = caught.value.response
                assert answer["Error"]["Code"] == code, qualifier
                assert answer["ResponseMetadata"]["HTTPStatusCode"] == status, qualifier
                assert answer["Error"]["Message"] == message, qualifier

            deleted = await call(client.delete_function, FunctionName="fn", Qualifier="1")
            assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
            assert sorted(c.name for c in svc.engine.functions()) == ["fn", "fn.2"]
            with pytest.raises(client.exceptions.ResourceNotFoundException):
                await call(client.get_function, FunctionName="fn", Qualifier="1")
            with pytest.raises(client.exceptions.ResourceNotFoundException):
                await call(client.invoke, FunctionName="fn", Qualifier="1", Payload=b"{}")
            assert (await invoke(client, Qualifier="live"))[1]["code"] == "two"
            assert (await invoke(client))[1]["code"] == "two"
            versions = await call(client.list_versions_by_function, FunctionName="fn")
            assert [v["Version"] for v in versions["Versions"]] == ["$LATEST", "2"]
            assert (await call(client.get_alias, FunctionName="fn", Name="live"))[
                "FunctionVersion"
            ] == "2"

            await call(client.delete_alias, FunctionName="fn", Name="live")
            await call(client.delete_function, FunctionName=f"{ARN}:2")  # a qualified ARN
            assert [c.name for c in svc.engine.functions()] == ["fn"]
            assert (await invoke(client))[1]["code"] == "two"

    arun(main(), timeout=60)


LATEST_UNDELETABLE = "$LATEST version cannot be deleted without deleting the function."
NO_ALIAS_DELETION = "Deletion of aliases is not currently supported."
ALIAS_REFERENCES = "Unable to delete version because the following aliases reference it: "


def test_publish_preconditions(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        async with serving(config_of()) as svc, boto(svc.url) as client:
            created = await create(client)
            with pytest.raises(client.exceptions.InvalidParameterValueException) as wrong_sha:
                await call(client.publish_version, FunctionName="fn", CodeSha256="nope")
            answer = wrong_sha.value.response
            assert answer["ResponseMetadata"]["HTTPStatusCode"] == 400
            assert answer["Error"]["Message"] == (
                f"CodeSHA256 (nope) is different from current CodeSHA256 in $LATEST "
                f"({created['CodeSha256']}). Please try again with the CodeSHA256 in $LATEST."
            )
            listed = await call(client.list_versions_by_function, FunctionName="fn")
            assert [v["Version"] for v in listed["Versions"]] == ["$LATEST"]  # none published
            with pytest.raises(client.exceptions.PreconditionFailedException):
                await call(client.publish_version, FunctionName="fn", RevisionId="stale")
            published = await call(
                client.publish_version,
                FunctionName="fn",
                CodeSha256=created["CodeSha256"],
                RevisionId=created["RevisionId"],
            )
            assert published["Version"] == "1"
            with pytest.raises(client.exceptions.ResourceNotFoundException):
                await call(client.publish_version, FunctionName="missing")

    arun(main(), timeout=60)


def test_list_versions_in_pages(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        async with serving(config_of()) as svc, boto(svc.url) as client:
            await create(client)
            for n in range(3):
                await call(
                    client.update_function_configuration, FunctionName="fn", Description=f"d{n}"
                )
                await call(client.publish_version, FunctionName="fn")
            first = await call(client.list_versions_by_function, FunctionName="fn", MaxItems=2)
            assert [v["Version"] for v in first["Versions"]] == ["$LATEST", "1"]
            assert first["Versions"][0]["FunctionArn"] == f"{ARN}:$LATEST"
            rest = await call(
                client.list_versions_by_function,
                FunctionName="fn",
                MaxItems=2,
                Marker=first["NextMarker"],
            )
            assert [v["Version"] for v in rest["Versions"]] == ["2", "3"]
            assert [v["Description"] for v in rest["Versions"]] == ["d1", "d2"]
            assert "NextMarker" not in rest
            pages = client.get_paginator("list_versions_by_function").paginate(
                FunctionName="fn", PaginationConfig={"PageSize": 1}
            )
            listed = await call(lambda: [v["Version"] for p in pages for v in p["Versions"]])
            assert listed == ["$LATEST", "1", "2", "3"]

    arun(main(), timeout=60)


def test_alias_lifecycle(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        async with serving(config_of()) as svc, boto(svc.url) as client:
            await create(client)
            await call(client.publish_version, FunctionName="fn")
            await to_second_code(client)
            await call(client.publish_version, FunctionName="fn")

            alias = await call(
                client.create_alias,
                FunctionName="fn",
                Name="live",
                FunctionVersion="1",
                Description="production",
            )
            assert alias["ResponseMetadata"]["HTTPStatusCode"] == 201
            assert (alias["AliasArn"], alias["FunctionVersion"]) == (f"{ARN}:live", "1")
            got = await call(client.get_alias, FunctionName="fn", Name="live")
            assert (got["Description"], got["RevisionId"]) == ("production", alias["RevisionId"])
            assert (await invoke(client, Qualifier="live"))[0] == "1"
            assert (await invoke(client, FunctionName="fn:live"))[0] == "1"
            config = await call(client.get_function_configuration, FunctionName=f"{ARN}:live")
            assert (config["Version"], config["FunctionArn"]) == ("1", f"{ARN}:live")

            with pytest.raises(client.exceptions.PreconditionFailedException):
                await call(
                    client.update_alias,
                    FunctionName="fn",
                    Name="live",
                    FunctionVersion="2",
                    RevisionId="stale",
                )
            updated = await call(
                client.update_alias,
                FunctionName="fn",
                Name="live",
                FunctionVersion="2",
                RevisionId=alias["RevisionId"],
            )
            assert updated["FunctionVersion"] == "2"
            assert updated["Description"] == "production"
            assert updated["RevisionId"] != alias["RevisionId"]
            version, out = await invoke(client, Qualifier="live")
            assert (version, out["code"]) == ("2", "two")

            await call(client.create_alias, FunctionName="fn", Name="beta", FunctionVersion="1")
            await call(
                client.create_alias, FunctionName="fn", Name="edge", FunctionVersion="$LATEST"
            )
            listed = await call(client.list_aliases, FunctionName="fn")
            assert [a["Name"] for a in listed["Aliases"]] == ["beta", "edge", "live"]
            only = await call(client.list_aliases, FunctionName="fn", FunctionVersion="1")
            assert [a["Name"] for a in only["Aliases"]] == ["beta"]
            page = await call(client.list_aliases, FunctionName="fn", MaxItems=2)
            assert [a["Name"] for a in page["Aliases"]] == ["beta", "edge"]
            rest = await call(client.list_aliases, FunctionName="fn", Marker=page["NextMarker"])
            assert [a["Name"] for a in rest["Aliases"]] == ["live"]

            with pytest.raises(client.exceptions.ResourceConflictException, match=r"\[beta\]"):
                await call(client.delete_function, FunctionName="fn", Qualifier="1")
            await call(client.delete_alias, FunctionName="fn", Name="beta")
            with pytest.raises(client.exceptions.ResourceNotFoundException, match=f"{ARN}:beta"):
                await call(client.get_alias, FunctionName="fn", Name="beta")
            with pytest.raises(client.exceptions.ResourceNotFoundException):
                await call(client.invoke, FunctionName="fn", Qualifier="beta")
            await call(client.delete_function, FunctionName="fn", Qualifier="1")

    arun(main(), timeout=60)


#: CreateAlias members → the error Lambda answers (on a function with versions 1 and 2)
ALIAS_REFUSALS: list[tuple[dict[str, Any], str, str]] = [
    ({"Name": "123", "FunctionVersion": "1"}, "InvalidParameterValueException", "Name"),
    ({"Name": "a", "FunctionVersion": "9"}, "ResourceNotFoundException", f"{ARN}:9"),
    ({"Name": "live", "FunctionVersion": "1"}, "ResourceConflictException", "already exists"),
    (
        {"Name": "a", "FunctionVersion": "1", "RoutingConfig": {"AdditionalVersionWeights": {}}},
        "",
        "",
    ),
    (
        {
            "Name": "a",
            "FunctionVersion": "1",
            "RoutingConfig": {"AdditionalVersionWeights": {"2": 0.1, "3": 0.1}},
        },
        "InvalidParameterValueException",
        "at most 2 versions",
    ),
    (
        {
            "Name": "a",
            "FunctionVersion": "1",
            "RoutingConfig": {"AdditionalVersionWeights": {"2": 1.5}},
        },
        "InvalidParameterValueException",
        "outside the range 0.0-1.0",
    ),
    (
        {
            "Name": "a",
            "FunctionVersion": "1",
            "RoutingConfig": {"AdditionalVersionWeights": {"1": 0.5}},
        },
        "InvalidParameterValueException",
        "Function version 1 is already included in routing configuration",
    ),
    (
        {
            "Name": "a",
            "FunctionVersion": "$LATEST",
            "RoutingConfig": {"AdditionalVersionWeights": {"2": 0.5}},
        },
        "InvalidParameterValueException",
        "$LATEST is not supported for an alias pointing to more than 1 version",
    ),
    (
        {
            "Name": "a",
            "FunctionVersion": "1",
            "RoutingConfig": {"AdditionalVersionWeights": {"$LATEST": 0.5}},
        },
        "InvalidParameterValueException",
        "not a published version number",
    ),
    (
        {
            "Name": "a",
            "FunctionVersion": "1",
            "RoutingConfig": {"AdditionalVersionWeights": {"7": 0.5}},
        },
        "ResourceNotFoundException",
        f"{ARN}:7",
    ),
]


def test_alias_validation(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        async with serving(config_of()) as svc, boto(svc.url) as client:
            await create(client)
            await call(client.publish_version, FunctionName="fn")
            await to_second_code(client)
            await call(client.publish_version, FunctionName="fn")
            await call(client.create_alias, FunctionName="fn", Name="live", FunctionVersion="1")
            for params, code, message in ALIAS_REFUSALS:
                if not code:  # an empty routing config is no routing
                    made = await call(client.create_alias, FunctionName="fn", **params)
                    assert "RoutingConfig" not in made
                    await call(client.delete_alias, FunctionName="fn", Name=params["Name"])
                    continue
                with pytest.raises(client.exceptions.ClientError) as caught:
                    await call(client.create_alias, FunctionName="fn", **params)
                error = caught.value.response["Error"]
                assert error["Code"] == code, params
                assert message in error["Message"], (params, error)
            with pytest.raises(client.exceptions.InvalidParameterValueException):
                await call(
                    client.update_alias,
                    FunctionName="fn",
                    Name="live",
                    RoutingConfig={"AdditionalVersionWeights": {"1": 0.2}},
                )
            with pytest.raises(client.exceptions.ResourceNotFoundException):
                await call(client.update_alias, FunctionName="fn", Name="nope", FunctionVersion="1")
            aliases = await call(client.list_aliases, FunctionName="fn")
            assert [(a["Name"], a["FunctionVersion"]) for a in aliases["Aliases"]] == [
                ("live", "1")
            ]

    arun(main(), timeout=60)


def test_weighted_alias_picks_a_version_per_call(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        async with serving(config_of()) as svc, boto(svc.url) as client:
            await create(client)
            await call(client.publish_version, FunctionName="fn")
            await to_second_code(client)
            await call(client.publish_version, FunctionName="fn")
            made = await call(
                client.create_alias,
                FunctionName="fn",
                Name="canary",
                FunctionVersion="1",
                RoutingConfig={"AdditionalVersionWeights": {"2": 0.3}},
            )
            assert made["RoutingConfig"] == {"AdditionalVersionWeights": {"2": 0.3}}
            api_of(svc).random = draws(0.1, 0.9, 0.29, 0.3, 0.0)
            ran = [await invoke(client, Qualifier="canary") for _ in range(5)]
            assert [v for v, _ in ran] == ["2", "1", "2", "1", "2"]
            assert [out["code"] for _, out in ran] == ["two", "one", "two", "one", "two"]

            await call(client.update_alias, FunctionName="fn", Name="canary", RoutingConfig={})
            api_of(svc).random = draws()  # no routing: no draw
            assert (await invoke(client, Qualifier="canary"))[0] == "1"

    arun(main(), timeout=60)


def test_unknown_qualifiers(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        async with serving(config_of()) as svc, boto(svc.url) as client:
            await create(client)
            await call(client.publish_version, FunctionName="fn")
            for params in (
                {"FunctionName": "fn", "Qualifier": "7"},
                {"FunctionName": "fn", "Qualifier": "nope"},
                {"FunctionName": f"{ARN}:7"},
                {"FunctionName": "fn:nope"},
            ):
                qualifier = params.get("Qualifier") or params["FunctionName"].rsplit(":", 1)[1]
                expected = f"Function not found: {ARN}:{qualifier}"
                with pytest.raises(client.exceptions.ResourceNotFoundException) as caught:
                    await call(client.invoke, Payload=b"{}", **params)
                assert caught.value.response["Error"]["Message"] == expected
                with pytest.raises(client.exceptions.ResourceNotFoundException):
                    await call(client.get_function, **params)
            with pytest.raises(client.exceptions.InvalidParameterValueException):
                await call(client.invoke, FunctionName="fn:1", Qualifier="2", Payload=b"{}")

    arun(main(), timeout=60)


def test_versions_stay_out_of_function_lists(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        async with serving(config_of()) as svc, boto(svc.url) as client:
            await create(client)
            await call(client.publish_version, FunctionName="fn")
            listed = await call(client.list_functions)
            assert [f["FunctionName"] for f in listed["Functions"]] == ["fn"]
            settings = await call(client.get_account_settings)
            assert settings["AccountUsage"]["FunctionCount"] == 1
            with pytest.raises(client.exceptions.InvalidParameterValueException):
                await call(client.get_function, FunctionName="fn.1")
            got = await call(client.get_function, FunctionName="fn", Qualifier="1")
            assert got["Configuration"]["FunctionName"] == "fn"

    arun(main(), timeout=60)


def test_deleting_a_function_deletes_its_versions_and_aliases(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        async with serving(config_of()) as svc, boto(svc.url) as client:
            assert svc.engine is not None
            await create(client)
            await call(client.publish_version, FunctionName="fn")
            await to_second_code(client)
            await call(client.publish_version, FunctionName="fn")
            await call(client.create_alias, FunctionName="fn", Name="live", FunctionVersion="2")
            await invoke(client, Qualifier="live")
            assert sorted(c.name for c in svc.engine.functions()) == ["fn", "fn.1", "fn.2"]
            await call(client.delete_function, FunctionName="fn")
            assert svc.engine.functions() == []
            with pytest.raises(client.exceptions.ResourceNotFoundException):
                await call(client.invoke, FunctionName="fn", Qualifier="1", Payload=b"{}")

            await create(client)  # a new function of the same name starts afresh
            with pytest.raises(client.exceptions.ResourceNotFoundException):
                await call(client.get_alias, FunctionName="fn", Name="live")
            again = await call(client.publish_version, FunctionName="fn")
            assert again["Version"] == "1"
            assert (await invoke(client, Qualifier="1"))[1]["code"] == "one"

    arun(main(), timeout=60)


def test_provisioned_concurrency_per_version_and_alias(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        async with serving(config_of()) as svc, boto(svc.url) as client:
            assert svc.engine is not None
            await create(client)
            await call(client.publish_version, FunctionName="fn")
            await to_second_code(client)
            await call(client.publish_version, FunctionName="fn")
            await call(client.create_alias, FunctionName="fn", Name="live", FunctionVersion="2")

            with pytest.raises(client.exceptions.InvalidParameterValueException) as latest:
                await call(
                    client.put_provisioned_concurrency_config,
                    FunctionName="fn",
                    Qualifier="$LATEST",
                    ProvisionedConcurrentExecutions=1,
                )
            assert latest.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
            assert latest.value.response["Error"]["Message"] == (
                "Provisioned Concurrency Configs cannot be applied to unpublished function "
                "versions."
            )
            put = await call(
                client.put_provisioned_concurrency_config,
                FunctionName="fn",
                Qualifier="1",
                ProvisionedConcurrentExecutions=1,
            )
            assert put["Status"] == "READY"
            await call(
                client.put_provisioned_concurrency_config,
                FunctionName="fn",
                Qualifier="live",
                ProvisionedConcurrentExecutions=2,
            )
            stats = svc.engine.stats()
            assert stats["fn.1"]["environments"]["ready"] == 1
            assert stats["fn.2"]["environments"]["ready"] == 2
            assert stats["fn"]["environments"]["ready"] == 0
            with pytest.raises(client.exceptions.ResourceConflictException):
                await call(  # version 2 is provisioned through its alias already
                    client.put_provisioned_concurrency_config,
                    FunctionName="fn",
                    Qualifier="2",
                    ProvisionedConcurrentExecutions=1,
                )
            got = await call(
                client.get_provisioned_concurrency_config, FunctionName="fn", Qualifier="live"
            )
            assert got["RequestedProvisionedConcurrentExecutions"] == 2
            with pytest.raises(client.exceptions.ProvisionedConcurrencyConfigNotFoundException):
                await call(
                    client.get_provisioned_concurrency_config, FunctionName="fn", Qualifier="2"
                )
            with pytest.raises(client.exceptions.ResourceNotFoundException):
                await call(
                    client.get_provisioned_concurrency_config, FunctionName="fn", Qualifier="9"
                )
            await call(client.delete_alias, FunctionName="fn", Name="live")
            assert svc.engine.get_function("fn.2").provisioned_concurrency == 0
            await call(
                client.delete_provisioned_concurrency_config, FunctionName="fn", Qualifier="1"
            )
            assert svc.engine.get_function("fn.1").provisioned_concurrency == 0
            with pytest.raises(client.exceptions.ProvisionedConcurrencyConfigNotFoundException):
                await call(
                    client.get_provisioned_concurrency_config, FunctionName="fn", Qualifier="1"
                )

    arun(main(), timeout=60)


def test_aws_cli_publish_alias_and_invoke(arun: Callable[..., Any], tmp_path: Path) -> None:
    async def main() -> None:
        async with serving(config_of()) as svc, boto(svc.url) as client:
            await create(client)
            one = await aws_lambda(svc.url, "publish-version", "--function-name", "fn")
            assert one["Version"] == "1"
            await to_second_code(client)
            two = await aws_lambda(
                svc.url, "publish-version", "--function-name", "fn", "--description", "two"
            )
            assert (two["Version"], two["Description"]) == ("2", "two")
            alias = await aws_lambda(
                svc.url,
                "create-alias",
                "--function-name",
                "fn",
                "--name",
                "live",
                "--function-version",
                "1",
            )
            assert alias["AliasArn"] == f"{ARN}:live"
            out = tmp_path / "out.json"
            for qualifier, code in (("live", "one"), ("2", "two"), ("$LATEST", "two")):
                meta = await aws_lambda(
                    svc.url,
                    "invoke",
                    "--function-name",
                    "fn",
                    "--qualifier",
                    qualifier,
                    "--payload",
                    "{}",
                    str(out),
                )
                assert meta["ExecutedVersion"] == ("1" if qualifier == "live" else qualifier)
                assert json.loads(out.read_text())["code"] == code
            versions = await aws_lambda(
                svc.url, "list-versions-by-function", "--function-name", "fn"
            )
            assert [v["Version"] for v in versions["Versions"]] == ["$LATEST", "1", "2"]

    arun(main(), timeout=120)


def test_aws_cli_publish_on_create_and_update(arun: Callable[..., Any], tmp_path: Path) -> None:
    """``--publish`` of create-function and update-function-code, then delete-function of
    one version with ``--qualifier``."""
    first, second = tmp_path / "one.zip", tmp_path / "three.zip"
    first.write_bytes(ZIP_ONE)
    second.write_bytes(ZIP_THREE)

    async def main() -> None:
        async with serving(config_of()) as svc, boto(svc.url) as client:
            created = await aws_lambda(
                svc.url,
                "create-function",
                "--function-name",
                "fn",
                "--runtime",
                "python3.11",
                "--role",
                ROLE,
                "--handler",
                "app.first",
                "--zip-file",
                f"fileb://{first}",
                "--publish",
            )
            assert (created["Version"], created["FunctionArn"]) == ("1", ARN)
            updated = await aws_lambda(
                svc.url,
                "update-function-code",
                "--function-name",
                "fn",
                "--zip-file",
                f"fileb://{second}",
                "--publish",
            )
            assert (updated["Version"], updated["FunctionArn"]) == ("2", f"{ARN}:2")
            assert (await invoke(client, Qualifier="2"))[1]["code"] == "three"
            await aws_lambda(
                svc.url, "delete-function", "--function-name", "fn", "--qualifier", "1"
            )
            versions = await aws_lambda(
                svc.url, "list-versions-by-function", "--function-name", "fn"
            )
            assert [v["Version"] for v in versions["Versions"]] == ["$LATEST", "2"]

    arun(main(), timeout=120)
