"""EventBridge's rule API through boto3's ``events`` client against a real service, and rules
firing (driven through the service's ScheduleRunner on virtual time) into their functions."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from service_support import boto, call, config_of, lines, recorder, serving

from runtime.configfile import ScheduleConfig
from runtime.service.app import BACKGROUND

pytestmark = pytest.mark.usefixtures("no_leaked_threads", "data_dir")

RULE_ARN = "arn:aws:events:us-east-1:000000000000:rule/"
FN_ARN = "arn:aws:lambda:us-east-1:000000000000:function:"


async def error_of(fn: Callable[..., Any], **params: Any) -> tuple[str, str]:
    import botocore.exceptions

    with pytest.raises(botocore.exceptions.ClientError) as caught:
        await call(fn, **params)
    error = caught.value.response["Error"]
    return error["Code"], error["Message"]


def test_rule_lifecycle(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        async with serving(config_of()) as svc, boto(svc.url, "events") as client:
            put = await call(
                client.put_rule,
                Name="every-5",
                ScheduleExpression="rate(5 minutes)",
                Description="five",
            )
            assert put["RuleArn"] == RULE_ARN + "every-5"
            described = await call(client.describe_rule, Name="every-5")
            described.pop("ResponseMetadata")
            assert described == {
                "Name": "every-5",
                "Arn": RULE_ARN + "every-5",
                "ScheduleExpression": "rate(5 minutes)",
                "State": "ENABLED",
                "Description": "five",
                "EventBusName": "default",
                "CreatedBy": "000000000000",
            }
            targets = [
                {"Id": "fn", "Arn": FN_ARN + "f"},
                {"Id": "raw", "Arn": "plain", "Input": '{"k": 1}'},
            ]
            answer = await call(client.put_targets, Rule="every-5", Targets=targets)
            assert (answer["FailedEntryCount"], answer["FailedEntries"]) == (0, [])
            listed = await call(client.list_targets_by_rule, Rule="every-5")
            assert listed["Targets"] == targets
            await call(client.disable_rule, Name="every-5")
            state = (await call(client.describe_rule, Name="every-5"))["State"]
            assert state == "DISABLED"
            await call(client.enable_rule, Name="every-5")
            assert await error_of(client.delete_rule, Name="every-5") == (
                "ValidationException",
                "Rule can't be deleted since it has targets.",
            )
            await call(client.remove_targets, Rule="every-5", Ids=["fn", "raw"])
            await call(client.delete_rule, Name="every-5")
            code, message = await error_of(client.describe_rule, Name="every-5")
            assert (code, message) == (
                "ResourceNotFoundException",
                "Rule every-5 does not exist on EventBus default.",
            )

    arun(main())


def test_list_rules_pages(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        async with serving(config_of()) as svc, boto(svc.url, "events") as client:
            for name in ("b-2", "a", "b-1", "b-3"):
                await call(client.put_rule, Name=name, ScheduleExpression="rate(1 hour)")
            first = await call(client.list_rules, NamePrefix="b-", Limit=2)
            assert [r["Name"] for r in first["Rules"]] == ["b-1", "b-2"]
            assert first["Rules"][0]["Arn"] == RULE_ARN + "b-1"
            rest = await call(client.list_rules, NamePrefix="b-", NextToken=first["NextToken"])
            assert [r["Name"] for r in rest["Rules"]] == ["b-3"]
            assert "NextToken" not in rest
            everything = await call(client.list_rules)
            assert [r["Name"] for r in everything["Rules"]] == ["a", "b-1", "b-2", "b-3"]

    arun(main())


REFUSED_RULES = [
    (
        {"Name": "r", "ScheduleExpression": "cron(0 12 * * * *)"},
        "ValidationException",
        "Day-of-month '*' and Day-of-week '*' are both specified; one of them must be '?'",
    ),
    (
        {"Name": "r", "ScheduleExpression": "rate(5 minute)"},
        "ValidationException",
        "Parameter ScheduleExpression is not valid",
    ),
    ({"Name": "r", "EventPattern": '{"source": ["x"]}'}, "ValidationException", "not supported"),
    ({"Name": "r"}, "ValidationException", "ScheduleExpression must be specified"),
    (
        {"Name": "r", "ScheduleExpression": "rate(1 hour)", "State": "ENABLED_WITH_X"},
        "ValidationException",
        "Parameter State is not valid",
    ),
    (
        {"Name": "r", "ScheduleExpression": "rate(1 hour)", "EventBusName": "custom"},
        "ResourceNotFoundException",
        "Event bus custom does not exist.",
    ),
]


def test_refusals_name_the_reason(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        async with serving(config_of()) as svc, boto(svc.url, "events") as client:
            for params, code, message in REFUSED_RULES:
                found_code, found_message = await error_of(client.put_rule, **params)
                assert found_code == code, params
                assert message in found_message, (params, found_message)
            for operation in (client.enable_rule, client.disable_rule, client.describe_rule):
                code, _ = await error_of(operation, Name="nope")
                assert code == "ResourceNotFoundException"
            assert (await error_of(client.list_targets_by_rule, Rule="nope"))[0] == (
                "ResourceNotFoundException"
            )
            await call(client.delete_rule, Name="nope")  # deleting what is not there: no error

    arun(main())


def test_targets_that_cannot_run_fail_per_entry(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        async with serving(config_of()) as svc, boto(svc.url, "events") as client:
            await call(client.put_rule, Name="r", ScheduleExpression="rate(1 hour)")
            answer = await call(
                client.put_targets,
                Rule="r",
                Targets=[
                    {"Id": "ok", "Arn": FN_ARN + "f"},
                    {"Id": "queue", "Arn": "arn:aws:sqs:us-east-1:000000000000:q"},
                    {"Id": "path", "Arn": FN_ARN + "f", "InputPath": "$.detail"},
                    {"Id": "bad", "Arn": FN_ARN + "f", "Input": "{nope"},
                ],
            )
            assert answer["FailedEntryCount"] == 3
            failed = {e["TargetId"]: e["ErrorMessage"] for e in answer["FailedEntries"]}
            assert set(failed) == {"queue", "path", "bad"}
            assert "not a Lambda function" in failed["queue"]
            assert "InputPath is not supported" in failed["path"]
            assert "not valid JSON" in failed["bad"]
            listed = await call(client.list_targets_by_rule, Rule="r")
            assert [t["Id"] for t in listed["Targets"]] == ["ok"]
            many = [{"Id": f"t{i}", "Arn": FN_ARN + "f"} for i in range(5)]
            assert (await error_of(client.put_targets, Rule="r", Targets=many))[0] == (
                "LimitExceededException"
            )

    arun(main())


def test_a_firing_invokes_the_target_with_the_scheduled_event(
    arun: Callable[..., Any], tmp_path: Path
) -> None:
    async def main() -> None:
        rec, out = recorder(tmp_path)
        async with serving(config_of(rec)) as svc, boto(svc.url, "events") as client:
            await call(client.put_rule, Name="minutely", ScheduleExpression="rate(1 minute)")
            await call(
                client.put_targets,
                Rule="minutely",
                Targets=[
                    {"Id": "event", "Arn": FN_ARN + "rec"},
                    {"Id": "input", "Arn": "rec", "Input": '{"custom": true}'},
                ],
            )
            background = svc.app[BACKGROUND]
            created = background.rules.get_rule("minutely").created_at
            runner = background.schedules
            assert await runner.run_due(created + 59.9) == pytest.approx(created + 60)
            assert await runner.run_due(created + 60) == pytest.approx(created + 120)
            events = await lines(out, 2)
        custom = [e for e in events if e.get("custom")]
        (scheduled,) = [e for e in events if not e.get("custom")]
        assert custom == [{"custom": True}]
        when = datetime.fromtimestamp(created + 60, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        scheduled.pop("id")
        assert scheduled == {
            "version": "0",
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": "000000000000",
            "time": when,
            "region": "us-east-1",
            "resources": [RULE_ARN + "minutely"],
            "detail": {},
        }

    arun(main(), timeout=60)


def test_config_schedules_are_managed_rules(arun: Callable[..., Any], tmp_path: Path) -> None:
    async def main() -> None:
        rec, out = recorder(tmp_path)
        config = config_of(rec)
        nightly = ScheduleConfig(
            name="nightly", expression="cron(0 3 * * ? *)", function="rec", input='{"n": 1}'
        )
        config.schedules["nightly"] = nightly
        async with serving(config) as svc, boto(svc.url, "events") as client:
            described = await call(client.describe_rule, Name="nightly")
            assert (described["ManagedBy"], described["ScheduleExpression"]) == (
                "warmstart.config",
                "cron(0 3 * * ? *)",
            )
            targets = (await call(client.list_targets_by_rule, Rule="nightly"))["Targets"]
            assert targets == [{"Id": "rec", "Arn": FN_ARN + "rec", "Input": '{"n": 1}'}]
            for operation, params in (
                (client.put_rule, {"Name": "nightly", "ScheduleExpression": "rate(1 hour)"}),
                (client.disable_rule, {"Name": "nightly"}),
                (client.put_targets, {"Rule": "nightly", "Targets": [{"Id": "x", "Arn": "rec"}]}),
                (client.remove_targets, {"Rule": "nightly", "Ids": ["rec"]}),
            ):
                code, message = await error_of(operation, **params)
                assert code == "ManagedRuleException"
                assert "managed by warmstart.config" in message
            background = svc.app[BACKGROUND]
            created = background.rules.get_rule("nightly").created_at
            next_at = await background.schedules.run_due(created)
            assert next_at is not None
            await background.schedules.run_due(next_at)
            assert await lines(out, 1) == [{"n": 1}]

    arun(main(), timeout=60)
