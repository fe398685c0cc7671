"""Async invocations (InvocationType=Event): the durable event record and Lambda's retry rules.

Lambda's behaviour, which the pure functions here encode (time is passed in):

- a function error is retried twice by default (``MaximumRetryAttempts`` 0-2), the first retry
  60 s after the failure, the second 120 s after the next one;
- a throttle (no concurrency to run the event) does not use up a retry: the event is retried with
  exponential backoff from 1 s up to 5 minutes;
- an event older than ``MaximumEventAgeInSeconds`` (60-21600, default 6 hours) is discarded;
- a discarded event goes to the dead-letter list with its condition (``RetriesExhausted`` or
  ``EventAgeExceeded``) and may be sent to an on-failure destination as Lambda's invocation
  record (:func:`invocation_record`).

The per-function settings are :class:`EventInvokeConfig`, whose JSON form is Lambda's
FunctionEventInvokeConfig (PascalCase keys).
"""

from __future__ import annotations

import re
from typing import Final

import msgspec
import orjson

from ..errors import InvalidParameterValueException
from ..stamps import iso

DUE: Final = "DUE"
INFLIGHT: Final = "INFLIGHT"
DEAD: Final = "DEAD"

RETRIES_EXHAUSTED: Final = "RetriesExhausted"
EVENT_AGE_EXCEEDED: Final = "EventAgeExceeded"
SUCCESS: Final = "Success"

DEFAULT_MAX_RETRIES: Final = 2
DEFAULT_MAX_AGE_S: Final = 21_600
MIN_MAX_AGE_S: Final = 60
#: the delay before retry 1 and retry 2 of a failed event
RETRY_DELAYS_S: Final = (60.0, 120.0)
THROTTLE_FIRST_S: Final = 1.0
THROTTLE_MAX_S: Final = 300.0

_DESTINATION_RE = re.compile(r"arn:(aws[a-zA-Z0-9-]*):([a-zA-Z0-9-])+:[a-z0-9-]*:(\d{12})?:.+")


class AsyncEvent(msgspec.Struct, kw_only=True):
    """One accepted async invocation.

    ``invocations`` counts the times it was handed to a runner (Lambda's
    ``approximateInvokeCount``); ``retries`` the function errors it has been retried after;
    ``throttles`` the throttled tries (which cost no retry). ``condition`` says why a DEAD
    event was discarded.
    """

    id: str
    function: str
    payload: bytes
    created_at: float
    next_attempt_at: float
    state: str = DUE
    invocations: int = 0
    retries: int = 0
    throttles: int = 0
    max_retries: int = DEFAULT_MAX_RETRIES
    max_age_s: int = DEFAULT_MAX_AGE_S
    node: str | None = None
    error: str | None = None
    condition: str | None = None

    @property
    def expires_at(self) -> float:
        return self.created_at + self.max_age_s


class EventClaim(msgspec.Struct, kw_only=True, frozen=True):
    """``claim_events``'s answer: events to run now, and due events found too old to run (now
    DEAD with EventAgeExceeded, for the caller's on-failure destination)."""

    events: list[AsyncEvent]
    expired: list[AsyncEvent]


def check_retries(value: int | None) -> None:
    if value is not None and not 0 <= value <= DEFAULT_MAX_RETRIES:
        raise InvalidParameterValueException(
            f"MaximumRetryAttempts {value} must be between 0 and {DEFAULT_MAX_RETRIES}"
        )


def check_max_age(value: int | None) -> None:
    if value is not None and not MIN_MAX_AGE_S <= value <= DEFAULT_MAX_AGE_S:
        raise InvalidParameterValueException(
            f"MaximumEventAgeInSeconds {value} must be between {MIN_MAX_AGE_S} and "
            f"{DEFAULT_MAX_AGE_S}"
        )


def expired(event: AsyncEvent, now: float) -> bool:
    return now >= event.expires_at


def after_failure(event: AsyncEvent, error: str, now: float, *, throttled: bool) -> AsyncEvent:
    """The event after a failed try: DUE again at its retry time, or DEAD with its condition.

    An event whose next try would fall after its maximum age is discarded now rather than
    kept until it expires: nothing could run it in between.
    """
    if throttled:
        delay = min(THROTTLE_FIRST_S * 2**event.throttles, THROTTLE_MAX_S)
        changed = msgspec.structs.replace(event, throttles=event.throttles + 1)
    elif event.retries < event.max_retries:
        delay = RETRY_DELAYS_S[min(event.retries, len(RETRY_DELAYS_S) - 1)]
        changed = msgspec.structs.replace(event, retries=event.retries + 1)
    else:
        return _dead(event, error, RETRIES_EXHAUSTED)
    if now + delay >= event.expires_at:
        return _dead(event, error, EVENT_AGE_EXCEEDED)
    return msgspec.structs.replace(
        changed, state=DUE, node=None, error=error, next_attempt_at=now + delay
    )


def _dead(event: AsyncEvent, error: str | None, condition: str) -> AsyncEvent:
    return msgspec.structs.replace(
        event, state=DEAD, node=None, error=error or event.error, condition=condition
    )


def expire(event: AsyncEvent) -> AsyncEvent:
    """A due event found past its maximum age."""
    return _dead(event, None, EVENT_AGE_EXCEEDED)


def invocation_record(
    event: AsyncEvent,
    *,
    function_arn: str,
    condition: str,
    now: float,
    status_code: int = 200,
    function_error: str | None = None,
    response: bytes | None = None,
    executed_version: str = "$LATEST",
) -> bytes:
    """Lambda's invocation record for a destination. The request and response payloads are
    embedded as the JSON bytes they are, never decoded."""
    context: dict[str, object] = {"statusCode": status_code, "executedVersion": executed_version}
    if function_error:
        context["functionError"] = function_error
    record: dict[str, object] = {
        "version": "1.0",
        "timestamp": iso(now),
        "requestContext": {
            "requestId": event.id,
            "functionArn": f"{function_arn}:{executed_version}",
            "condition": condition,
            "approximateInvokeCount": event.invocations,
        },
        "requestPayload": orjson.Fragment(event.payload),
        "responseContext": context,
    }
    if response is not None:
        record["responsePayload"] = orjson.Fragment(response)
    return orjson.dumps(record)


# -- per-function settings (Put/Get/Update/DeleteFunctionEventInvokeConfig) -------------------


class _Pascal(msgspec.Struct, kw_only=True, rename="pascal", omit_defaults=True):
    pass


class DestinationTarget(_Pascal):
    destination: str | None = None


class DestinationConfig(_Pascal):
    on_success: DestinationTarget | None = None
    on_failure: DestinationTarget | None = None


class EventInvokeConfig(_Pascal):
    """A function's async settings. ``function_arn`` and ``last_modified`` (epoch seconds)
    are filled in answers."""

    maximum_retry_attempts: int | None = None
    maximum_event_age_in_seconds: int | None = None
    destination_config: DestinationConfig | None = None
    function_arn: str | None = None
    last_modified: float | None = None

    @property
    def retries(self) -> int:
        value = self.maximum_retry_attempts
        return DEFAULT_MAX_RETRIES if value is None else value

    @property
    def max_age_s(self) -> int:
        value = self.maximum_event_age_in_seconds
        return DEFAULT_MAX_AGE_S if value is None else value


def check_event_invoke_config(config: EventInvokeConfig) -> None:
    """Lambda's ranges and destination ARN shape; errors are InvalidParameterValueException."""
    check_retries(config.maximum_retry_attempts)
    check_max_age(config.maximum_event_age_in_seconds)
    destinations = config.destination_config or DestinationConfig()
    for kind, target in (
        ("OnSuccess", destinations.on_success),
        ("OnFailure", destinations.on_failure),
    ):
        arn = target.destination if target else None
        if arn is None:
            continue
        if len(arn) > 350 or not _DESTINATION_RE.fullmatch(arn):
            raise InvalidParameterValueException(
                f"DestinationConfig.{kind}.Destination {arn!r} is not a valid ARN"
            )


def merge_event_invoke_config(old: EventInvokeConfig, new: EventInvokeConfig) -> EventInvokeConfig:
    """UpdateFunctionEventInvokeConfig: the settings ``new`` gives replace ``old``'s; the
    others are kept (PutFunctionEventInvokeConfig replaces the whole config instead)."""
    changes = {
        field: value
        for field in (
            "maximum_retry_attempts",
            "maximum_event_age_in_seconds",
            "destination_config",
        )
        if (value := getattr(new, field)) is not None
    }
    return msgspec.structs.replace(old, **changes)
