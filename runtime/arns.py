"""Lambda function ARNs and EventBridge rule ARNs: made and read in one place.

    arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]   a function (qualified)
    <account>:function:<name>[:<qualifier>]                          a partial ARN
    <name>[:<qualifier>]                                             a function name
    arn:aws:events:<region>:<account>:rule/<name>                   a schedule rule

Two readings, because AWS has two: the Lambda API's ``FunctionName`` (:func:`function_ref`)
takes the three spellings of a function with Lambda's character rules, while a destination or a
rule's target (:func:`parse_function_arn`) is a full ARN read field by field, whatever the
fields hold.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: a ``FunctionName`` member: name, partial ARN or ARN, each with an optional qualifier
_FUNCTION_REF = re.compile(
    r"^(?:(?:arn:aws[a-zA-Z-]*:lambda:[a-z0-9-]+:)?\d{12}:function:)?"
    r"([A-Za-z0-9_-]+)(?::(\$LATEST|[A-Za-z0-9_-]+))?$"
)


def function_arn(region: str, account: str, name: str) -> str:
    """``arn:aws:lambda:<region>:<account>:function:<name>`` (unqualified)."""
    return f"arn:aws:lambda:{region}:{account}:function:{name}"


def rule_arn(region: str, account: str, name: str) -> str:
    """``arn:aws:events:<region>:<account>:rule/<name>``."""
    return f"arn:aws:events:{region}:{account}:rule/{name}"


@dataclass(frozen=True)
class FunctionArn:
    """The fields of a full Lambda function ARN; ``qualifier`` is None when unqualified (and
    ``""`` for an ARN that ends in a bare ``:``)."""

    partition: str
    region: str
    account: str
    name: str
    qualifier: str | None = None


def parse_function_arn(arn: str) -> FunctionArn | None:
    """The fields of ``arn:<partition>:lambda:<region>:<account>:function:<name>[:<q>]``;
    None for anything else (a name, a partial ARN, another service's ARN).  The fields are
    not checked: the caller decides which region, account or qualifier it serves."""
    parts = arn.split(":")
    if len(parts) not in (7, 8) or parts[0] != "arn" or parts[2] != "lambda":
        return None
    if parts[5] != "function":
        return None
    qualifier = parts[7] if len(parts) == 8 else None
    return FunctionArn(parts[1], parts[3], parts[4], parts[6], qualifier)


def function_ref(ref: str) -> tuple[str, str | None] | None:
    """The function name and qualifier (None if none) of a Lambda API ``FunctionName``: a
    name, a partial ARN or an ARN, optionally qualified; None when it is none of these."""
    match = _FUNCTION_REF.fullmatch(ref)
    if match is None:
        return None
    return match[1], match[2]
