"""Put/Get/Update/Delete/ListFunctionEventInvokeConfig through boto3, and durable Event
invocations through the service: retries as configured, records to destination functions."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from service_support import RECORDED, basic, boto, call, config_of, lines, recorder, serving

from runtime.service.app import BACKGROUND

pytestmark = pytest.mark.usefixtures("no_leaked_threads", "data_dir")

ARN = "arn:aws:lambda:us-east-1:000000000000:function:"
#: what the recorder functions answer


def test_put_get_update_delete(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        config = config_of(basic("f"), basic("sink"), basic("other"))
        async with serving(config) as svc, boto(svc.url) as client:
            put = await call(
                client.put_function_event_invoke_config,
                FunctionName="f",
                MaximumRetryAttempts=1,
                DestinationConfig={"OnFailure": {"Destination": ARN + "sink"}},
            )
            assert put["FunctionArn"] == ARN + "f:$LATEST"
            assert isinstance(put["LastModified"], datetime)
            assert put["MaximumRetryAttempts"] == 1
            assert "MaximumEventAgeInSeconds" not in put
            assert put["DestinationConfig"] == {
                "OnSuccess": {},
                "OnFailure": {"Destination": ARN + "sink"},
            }
            updated = await call(
                client.update_function_event_invoke_config,
                FunctionName=ARN + "f",
                MaximumEventAgeInSeconds=120,
                DestinationConfig={"OnSuccess": {"Destination": ARN + "other:$LATEST"}},
            )
            assert (updated["MaximumRetryAttempts"], updated["MaximumEventAgeInSeconds"]) == (
                1,
                120,
            )
            assert updated["DestinationConfig"]["OnSuccess"] == {
                "Destination": ARN + "other:$LATEST"
            }
            got = await call(client.get_function_event_invoke_config, FunctionName="f")
            assert got["MaximumEventAgeInSeconds"] == 120
            replaced = await call(
                client.put_function_event_invoke_config, FunctionName="f", MaximumRetryAttempts=0
            )
            assert replaced["DestinationConfig"] == {"OnSuccess": {}, "OnFailure": {}}
            assert "MaximumEventAgeInSeconds" not in replaced  # Put replaces the whole config
            listed = await call(client.list_function_event_invoke_configs, FunctionName="f")
            assert [c["MaximumRetryAttempts"] for c in listed["FunctionEventInvokeConfigs"]] == [0]
            await call(client.delete_function_event_invoke_config, FunctionName="f")
            with pytest.raises(client.exceptions.ResourceNotFoundException):
                await call(client.get_function_event_invoke_config, FunctionName="f")
            with pytest.raises(client.exceptions.ResourceNotFoundException):
                await call(client.delete_function_event_invoke_config, FunctionName="f")
            listed = await call(client.list_function_event_invoke_configs, FunctionName="f")
            assert listed["FunctionEventInvokeConfigs"] == []

    arun(main())


REFUSALS: list[tuple[dict[str, Any], str, str]] = [
    ({"FunctionName": "missing", "MaximumRetryAttempts": 1}, "ResourceNotFoundException", ""),
    (
        {"FunctionName": "f", "Qualifier": "1", "MaximumRetryAttempts": 1},
        "ResourceNotFoundException",
        "",
    ),
    (
        {"FunctionName": "f", "MaximumRetryAttempts": 3},
        "InvalidParameterValueException",
        "MaximumRetryAttempts 3 must be between 0 and 2",
    ),
    (
        {"FunctionName": "f", "MaximumEventAgeInSeconds": 59},
        "InvalidParameterValueException",
        "MaximumEventAgeInSeconds 59 must be between 60 and 21600",
    ),
    (
        {"FunctionName": "f", "MaximumEventAgeInSeconds": 21601},
        "InvalidParameterValueException",
        "must be between 60 and 21600",
    ),
    (
        {
            "FunctionName": "f",
            "DestinationConfig": {"OnFailure": {"Destination": ARN + "nope"}},
        },
        "InvalidParameterValueException",
        "DestinationConfig.OnFailure.Destination: the function nope does not exist",
    ),
    (
        {
            "FunctionName": "f",
            "DestinationConfig": {
                "OnSuccess": {"Destination": "arn:aws:sqs:us-east-1:000000000000:q"}
            },
        },
        "InvalidParameterValueException",
        "is not a function of this service",
    ),
    (
        {
            "FunctionName": "f",
            "DestinationConfig": {
                "OnSuccess": {"Destination": "arn:aws:lambda:eu-west-1:000000000000:function:f"}
            },
        },
        "InvalidParameterValueException",
        "is not a function of this service",
    ),
    (
        {"FunctionName": "f", "DestinationConfig": {"OnSuccess": {"Destination": "f"}}},
        "InvalidParameterValueException",
        "is not a valid ARN",
    ),
]


def test_refusals(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        async with (
            serving(config_of(basic("f"))) as svc,
            boto(svc.url, parameter_validation=False) as client,
        ):
            for params, code, message in REFUSALS:
                with pytest.raises(client.exceptions.ClientError) as caught:
                    await call(client.put_function_event_invoke_config, **params)
                error = caught.value.response["Error"]
                assert error["Code"] == code, params
                assert message in error["Message"], (params, error)
            with pytest.raises(client.exceptions.ResourceNotFoundException):
                await call(client.get_function_event_invoke_config, FunctionName="missing")

    arun(main())


def test_deleting_a_function_deletes_its_config(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        async with serving(config_of(basic("f"))) as svc, boto(svc.url) as client:
            await call(
                client.put_function_event_invoke_config, FunctionName="f", MaximumRetryAttempts=0
            )
            await call(client.delete_function, FunctionName="f")
            store = svc.app[BACKGROUND].store
            with pytest.raises(Exception, match="doesn't have an EventInvokeConfig"):
                store.get_event_invoke_config("f")

    arun(main())


def test_event_invocations_are_durable_and_reach_destinations(
    arun: Callable[..., Any],
    tmp_path: Path,
    data_dir: Path,
) -> None:
    async def main() -> None:
        rec, rec_out = recorder(tmp_path, "rec", returns=RECORDED)
        sink, sink_out = recorder(tmp_path, "sink", returns=RECORDED)
        config = config_of(rec, sink, basic("fails", "flexible"))
        async with serving(config) as svc, boto(svc.url) as client:
            await call(
                client.put_function_event_invoke_config,
                FunctionName="fails",
                MaximumRetryAttempts=0,
                DestinationConfig={"OnFailure": {"Destination": ARN + "sink"}},
            )
            await call(
                client.put_function_event_invoke_config,
                FunctionName="rec",
                DestinationConfig={"OnSuccess": {"Destination": ARN + "sink"}},
            )
            for name, payload in (("rec", b'{"n": 1}'), ("fails", b'{"fail": true}')):
                answer = await call(
                    client.invoke, FunctionName=name, InvocationType="Event", Payload=payload
                )
                assert answer["StatusCode"] == 202
            assert await lines(rec_out, 1) == [{"n": 1}]
            records = {r["requestContext"]["condition"]: r for r in await lines(sink_out, 2)}
        assert (data_dir / "batch.sqlite3").exists()
        success, failure = records["Success"], records["RetriesExhausted"]
        assert success["requestContext"]["functionArn"] == ARN + "rec:$LATEST"
        assert (success["requestPayload"], success["responsePayload"]) == (
            {"n": 1},
            {"recorded": True},
        )
        assert failure["requestContext"]["functionArn"] == ARN + "fails:$LATEST"
        assert failure["requestContext"]["approximateInvokeCount"] == 1
        assert failure["responseContext"]["functionError"] == "Unhandled"
        assert failure["responsePayload"]["errorMessage"] == "asked to fail"

    arun(main(), timeout=60)
