"""ARNs: one format and one parse for Lambda functions and rules, and the rules each API adds."""

from __future__ import annotations

import pytest

from runtime.arns import FunctionArn, function_arn, function_ref, parse_function_arn, rule_arn
from runtime.config import PoolConfig
from runtime.schedules.runner import rule_arn as pool_rule_arn
from runtime.schedules.store import target_function
from runtime.service.lambda_params import destination_function

ACCOUNT = "123456789012"
ARN = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:f"


def test_function_and_rule_arns_are_formatted() -> None:
    assert function_arn("eu-west-1", ACCOUNT, "f") == (
        f"arn:aws:lambda:eu-west-1:{ACCOUNT}:function:f"
    )
    assert rule_arn("eu-west-1", ACCOUNT, "nightly") == (
        f"arn:aws:events:eu-west-1:{ACCOUNT}:rule/nightly"
    )


def test_the_pool_formats_in_its_region_and_account() -> None:
    pool = PoolConfig(region="ap-south-1", account_id=ACCOUNT)
    assert pool.function_arn("f") == f"arn:aws:lambda:ap-south-1:{ACCOUNT}:function:f"
    assert pool_rule_arn(pool, "r") == f"arn:aws:events:ap-south-1:{ACCOUNT}:rule/r"
    assert PoolConfig().function_arn("f") == "arn:aws:lambda:us-east-1:000000000000:function:f"


@pytest.mark.parametrize(
    ("arn", "parsed"),
    [
        (ARN, FunctionArn("aws", "us-east-1", ACCOUNT, "f")),
        (f"{ARN}:$LATEST", FunctionArn("aws", "us-east-1", ACCOUNT, "f", "$LATEST")),
        (f"{ARN}:7", FunctionArn("aws", "us-east-1", ACCOUNT, "f", "7")),
        (f"{ARN}:", FunctionArn("aws", "us-east-1", ACCOUNT, "f", "")),
        (
            "arn:aws-cn:lambda:cn-north-1:1:function:g",
            FunctionArn("aws-cn", "cn-north-1", "1", "g"),
        ),
        ("arn:aws:lambda:::function:", FunctionArn("aws", "", "", "")),
        (f"{ARN}:1:2", None),
        (f"arn:aws:lambda:us-east-1:{ACCOUNT}:layer:f", None),
        (f"arn:aws:sqs:us-east-1:{ACCOUNT}:function:f", None),
        (f"{ACCOUNT}:function:f", None),
        ("f", None),
        ("", None),
        (f"urn:aws:lambda:us-east-1:{ACCOUNT}:function:f", None),
    ],
)
def test_a_full_function_arn_is_read_field_by_field(arn: str, parsed: FunctionArn | None) -> None:
    assert parse_function_arn(arn) == parsed


@pytest.mark.parametrize(
    ("ref", "parsed"),
    [
        ("f", ("f", None)),
        ("f:$LATEST", ("f", "$LATEST")),
        ("my-fn_2:prod", ("my-fn_2", "prod")),
        (f"{ACCOUNT}:function:f", ("f", None)),
        (f"{ACCOUNT}:function:f:3", ("f", "3")),
        (ARN, ("f", None)),
        (f"{ARN}:$LATEST", ("f", "$LATEST")),
        (f"arn:aws-us-gov:lambda:us-gov-west-1:{ACCOUNT}:function:f", ("f", None)),
        ("123:function:f", None),  # an account is 12 digits
        (f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:", None),
        (f"{ARN}:", None),
        (f"{ARN}:1:2", None),
        (f"{ARN}:$NOPE", None),
        ("f/x", None),
        ("f\n", None),
        (f"arn:aws:lambda:US-EAST-1:{ACCOUNT}:function:f", None),
        (f"arn:aws:sqs:us-east-1:{ACCOUNT}:function:f", None),
        ("", None),
    ],
)
def test_a_function_name_member_takes_a_name_a_partial_arn_or_an_arn(
    ref: str, parsed: tuple[str, str | None] | None
) -> None:
    assert function_ref(ref) == parsed


@pytest.mark.parametrize(
    ("arn", "name"),
    [
        ("f", "f"),
        ("f-2", "f-2"),
        ("", None),
        ("f:1", None),
        (f"{ACCOUNT}:function:f", None),
        (ARN, "f"),
        (f"{ARN}:$LATEST", "f"),
        (f"{ARN}:anything", "f"),
        (f"arn:aws:lambda:other-region:{ACCOUNT}:function:f", "f"),
        (f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:", None),
        (f"arn:aws-cn:lambda:cn-north-1:{ACCOUNT}:function:f", None),
        (f"arn:aws:sqs:us-east-1:{ACCOUNT}:queue", None),
        (f"{ARN}:1:2", None),
    ],
)
def test_a_rule_target_names_a_function_by_name_or_arn(arn: str, name: str | None) -> None:
    assert target_function(arn) == name


@pytest.mark.parametrize(
    ("arn", "name"),
    [
        (ARN, "f"),
        (f"{ARN}:$LATEST", "f"),
        (f"{ARN}:", "f"),
        (f"{ARN}:1", None),
        (f"{ARN}:$LATEST:x", None),
        (f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:", None),
        (f"arn:aws:lambda:us-west-2:{ACCOUNT}:function:f", None),
        ("arn:aws:lambda:us-east-1:000000000000:function:f", None),
        (f"arn:aws-cn:lambda:us-east-1:{ACCOUNT}:function:f", None),
        (f"{ACCOUNT}:function:f", None),
        ("f", None),
        (f"arn:aws:sqs:us-east-1:{ACCOUNT}:q", None),
    ],
)
def test_a_destination_is_a_function_of_this_region_and_account(arn: str, name: str | None) -> None:
    assert destination_function(arn, PoolConfig(account_id=ACCOUNT)) == name
