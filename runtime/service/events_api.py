"""EventBridge's rule API (JSON 1.1, target prefix ``AWSEvents``) for schedule rules.

    boto3.client("events") ── POST / ──▶ JsonRpc ──▶ EventsApi.<operation>(params)
        ──▶ RuleStore (durable, beside the batch store) ──▶ ScheduleRunner.wake()

Operations: PutRule, PutTargets, RemoveTargets, ListRules, DescribeRule, DeleteRule,
EnableRule, DisableRule, ListTargetsByRule, with the shapes of botocore's ``events`` model
(2015-10-07). Rule ARNs are ``arn:aws:events:<region>:<account>:rule/<name>`` in the pool's
region and account. Differences from EventBridge, all deliberate:

- rules are schedules: ``EventPattern`` is refused with a ValidationException (nothing here
  emits events a pattern could match, so a stored pattern would silently never fire);
- the one event bus is ``default``; a target is a Lambda function (an ARN of any region, or a
  plain function name), and ``Input`` is the only way to shape its event (``InputPath`` and
  ``InputTransformer`` are refused per target, in ``FailedEntries``);
- ``RoleArn``, ``Tags``, ``RetryPolicy`` and ``DeadLetterConfig`` are accepted and ignored: a
  firing is a durable async invocation, retried and dead-lettered by the function's own
  event invoke config;
- rules declared in the configuration file's ``[schedules]`` are managed by
  ``warmstart.config``: changing them through the API is a ManagedRuleException (DeleteRule
  and RemoveTargets with ``Force``, as for AWS's managed rules, are allowed until the next
  start re-reads the file).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from typing import Any, cast

import orjson

from ..config import PoolConfig
from ..errors import ResourceNotFoundException
from ..schedules.runner import rule_arn
from ..schedules.store import (
    DISABLED,
    ENABLED,
    STATES,
    ManagedRuleException,
    Rule,
    Rules,
    Target,
    ValidationException,
    check_expression,
    target_function,
)
from .json_rpc import JsonRpc
from .protocol import Unavailable

TARGET_PREFIX = "AWSEvents"
INTERNAL_ERROR = "InternalException"
OPERATIONS = (
    "PutRule",
    "PutTargets",
    "RemoveTargets",
    "ListRules",
    "DescribeRule",
    "DeleteRule",
    "EnableRule",
    "DisableRule",
    "ListTargetsByRule",
)
DEFAULT_BUS = "default"
_NAME = re.compile(r"^[.\-_A-Za-z0-9]{1,64}$")
_UNSUPPORTED_TARGET_MEMBERS = ("InputPath", "InputTransformer")
_NO_RULES = "EventBridge rules need the service's data directory"


def serve_events(
    rpc: JsonRpc,
    pool: PoolConfig,
    rules: Rules | None = None,
    changed: Callable[[], None] | None = None,
) -> EventsApi:
    """A new ``EventsApi`` over ``rules`` in ``pool``'s region and account, served by ``rpc``
    (see :class:`EventsApi`)."""
    api = EventsApi(pool, rules, changed)
    rpc.register(TARGET_PREFIX, api, OPERATIONS, internal_error=INTERNAL_ERROR)
    return api


class EventsApi:
    """EventBridge's rule operations over a rule store (:class:`Rules`: SQLite or Redis; see
    the module docstring);
    ``changed`` is called after every change (the schedule runner's wake). Without a store
    every operation that needs it answers ServiceException.

    Store calls run in a thread: a write may wait for another process's lock."""

    def __init__(
        self,
        pool: PoolConfig,
        rules: Rules | None = None,
        changed: Callable[[], None] | None = None,
    ) -> None:
        self.pool = pool
        if rules is None:
            rules = cast(Rules, Unavailable(_NO_RULES, "ServiceException"))
        self.rules: Rules = rules
        self._changed: Callable[[], None] = changed or _nothing

    # -- rules ----------------------------------------------------------------------------------

    async def put_rule(self, params: dict[str, Any]) -> dict[str, Any]:
        name = _name(params, "Name")
        _bus(params, self.pool)
        if params.get("EventPattern") is not None:
            raise ValidationException(
                "EventPattern is not supported: warmstart's rules are schedules "
                "(give ScheduleExpression)"
            )
        expression = params.get("ScheduleExpression")
        if not isinstance(expression, str) or not expression:
            raise ValidationException("Parameter ScheduleExpression must be specified.")
        check_expression(expression)
        state = params.get("State") or ENABLED
        if state not in STATES:
            raise ValidationException(
                f"Parameter State is not valid: {state!r} (schedule rules are "
                f"{' or '.join(STATES)})"
            )
        description = _optional_str(params, "Description", 512)
        await self._unmanaged(name)
        store = self.rules
        await asyncio.to_thread(
            store.put_rule, name, expression, time.time(), state=state, description=description
        )
        self._changed()
        return {"RuleArn": rule_arn(self.pool, name)}

    async def describe_rule(self, params: dict[str, Any]) -> dict[str, Any]:
        name = _name(params, "Name")
        _bus(params, self.pool)
        rule = await asyncio.to_thread(self.rules.get_rule, name)
        return {**self._shape(rule), "CreatedBy": self.pool.account_id}

    async def list_rules(self, params: dict[str, Any]) -> dict[str, Any]:
        _bus(params, self.pool)
        prefix = _optional_str(params, "NamePrefix", 64)
        limit = _limit(params)
        token = _optional_str(params, "NextToken", 2048)
        rules, next_token = await asyncio.to_thread(self.rules.list_rules, prefix, limit, token)
        answer: dict[str, Any] = {"Rules": [self._shape(rule) for rule in rules]}
        if next_token is not None:
            answer["NextToken"] = next_token
        return answer

    async def delete_rule(self, params: dict[str, Any]) -> dict[str, Any]:
        """Refused while the rule has targets; a rule that does not exist is no error."""
        name = _name(params, "Name")
        _bus(params, self.pool)
        if not params.get("Force"):
            await self._unmanaged(name)
        await asyncio.to_thread(self.rules.delete_rule, name)
        self._changed()
        return {}

    async def enable_rule(self, params: dict[str, Any]) -> dict[str, Any]:
        return await self._set_state(params, ENABLED)

    async def disable_rule(self, params: dict[str, Any]) -> dict[str, Any]:
        return await self._set_state(params, DISABLED)

    async def _set_state(self, params: dict[str, Any], state: str) -> dict[str, Any]:
        name = _name(params, "Name")
        _bus(params, self.pool)
        rule = await asyncio.to_thread(self.rules.get_rule, name)
        _check_unmanaged(rule)
        await asyncio.to_thread(self.rules.set_state, name, state, time.time())
        self._changed()
        return {}

    # -- targets --------------------------------------------------------------------------------

    async def put_targets(self, params: dict[str, Any]) -> dict[str, Any]:
        name = _name(params, "Rule")
        _bus(params, self.pool)
        entries = params.get("Targets")
        if not isinstance(entries, list) or not 1 <= len(entries) <= 10:
            raise ValidationException("Parameter Targets must be a list of 1 to 10 targets.")
        ids = [entry.get("Id") if isinstance(entry, dict) else None for entry in entries]
        if len(set(map(str, ids))) != len(ids):
            raise ValidationException("The target ids in one request must be unique.")
        rule = await asyncio.to_thread(self.rules.get_rule, name)
        _check_unmanaged(rule)
        good: list[Target] = []
        failed: list[dict[str, Any]] = []
        for entry in entries:
            target, problem = _target(entry)
            if target is not None:
                good.append(target)
            else:
                failed.append(problem)
        if good:
            await asyncio.to_thread(self.rules.put_targets, name, good)
            self._changed()
        return {"FailedEntryCount": len(failed), "FailedEntries": failed}

    async def remove_targets(self, params: dict[str, Any]) -> dict[str, Any]:
        name = _name(params, "Rule")
        _bus(params, self.pool)
        ids = params.get("Ids")
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            raise ValidationException("Parameter Ids must be a list of 1 to 100 target ids.")
        if not params.get("Force"):
            rule = await asyncio.to_thread(self.rules.get_rule, name)
            _check_unmanaged(rule)
        await asyncio.to_thread(self.rules.remove_targets, name, ids)
        self._changed()
        return {"FailedEntryCount": 0, "FailedEntries": []}

    async def list_targets_by_rule(self, params: dict[str, Any]) -> dict[str, Any]:
        """One page holds every target (a rule has at most five)."""
        name = _name(params, "Rule")
        _bus(params, self.pool)
        _limit(params)
        targets = await asyncio.to_thread(self.rules.targets, name)
        return {"Targets": [_target_shape(target) for target in targets]}

    # -- helpers --------------------------------------------------------------------------------

    async def _unmanaged(self, name: str) -> None:
        try:
            rule = await asyncio.to_thread(self.rules.get_rule, name)
        except ResourceNotFoundException:
            return
        _check_unmanaged(rule)

    def _shape(self, rule: Rule) -> dict[str, Any]:
        shape: dict[str, Any] = {
            "Name": rule.name,
            "Arn": rule_arn(self.pool, rule.name),
            "State": rule.state,
            "ScheduleExpression": rule.expression,
            "EventBusName": DEFAULT_BUS,
        }
        if rule.description is not None:
            shape["Description"] = rule.description
        if rule.managed_by is not None:
            shape["ManagedBy"] = rule.managed_by
        return shape


def _nothing() -> None:
    pass


def _check_unmanaged(rule: Rule) -> None:
    if rule.managed_by is not None:
        raise ManagedRuleException(
            f"Rule {rule.name} is managed by {rule.managed_by}: change the configuration "
            "file's [schedules] instead"
        )


def _name(params: dict[str, Any], member: str) -> str:
    value = params.get(member)
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ValidationException(
            f"1 validation error detected: Value {value!r} at '{member[:1].lower()}"
            f"{member[1:]}' failed to satisfy constraint: Member must satisfy regular "
            "expression pattern: [\\.\\-_A-Za-z0-9]+ (1 to 64 characters)"
        )
    return value


def _optional_str(params: dict[str, Any], member: str, longest: int) -> str | None:
    value = params.get(member)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > longest:
        raise ValidationException(f"Parameter {member} must be a string of at most {longest}.")
    return value


def _limit(params: dict[str, Any]) -> int:
    value = params.get("Limit", 100)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100:
        raise ValidationException(f"Parameter Limit {value!r} must be between 1 and 100.")
    return value


def _bus(params: dict[str, Any], pool: PoolConfig) -> None:
    """Only the default event bus exists."""
    bus = params.get("EventBusName")
    default_arn = f"arn:aws:events:{pool.region}:{pool.account_id}:event-bus/{DEFAULT_BUS}"
    if bus is not None and bus not in (DEFAULT_BUS, default_arn):
        raise ResourceNotFoundException(f"Event bus {bus} does not exist.")


def _target(entry: Any) -> tuple[Target | None, dict[str, Any]]:
    """A target, or its FailedEntries entry."""
    if not isinstance(entry, dict):
        return None, _failure(None, "a target is a structure with Id and Arn")
    target_id, arn = entry.get("Id"), entry.get("Arn")
    if not isinstance(target_id, str) or not _NAME.fullmatch(target_id):
        return None, _failure(target_id, "Id must be 1 to 64 of [.-_A-Za-z0-9]")
    if not isinstance(arn, str) or target_function(arn) is None:
        return None, _failure(
            target_id, f"Arn {arn!r} is not a Lambda function (the only target warmstart runs)"
        )
    for member in _UNSUPPORTED_TARGET_MEMBERS:
        if entry.get(member) is not None:
            return None, _failure(target_id, f"{member} is not supported: use Input")
    text = entry.get("Input")
    if text is not None:
        if not isinstance(text, str):
            return None, _failure(target_id, "Input must be a JSON text")
        try:
            orjson.loads(text)
        except orjson.JSONDecodeError:
            return None, _failure(target_id, "Input is not valid JSON")
    return Target(target_id, arn, text), {}


def _failure(target_id: Any, message: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"ErrorCode": "ValidationException", "ErrorMessage": message}
    if isinstance(target_id, str):
        entry["TargetId"] = target_id
    return entry


def _target_shape(target: Target) -> dict[str, Any]:
    shape: dict[str, Any] = {"Id": target.id, "Arn": target.arn}
    if target.input is not None:
        shape["Input"] = target.input
    return shape
