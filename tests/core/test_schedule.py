"""Exact tests of EventBridge schedule expressions: parsing, next firings, downtime, the event.

Instants are written ``YYYY-MM-DDTHH:MM[:SS]`` and read as UTC. Nothing here reads a clock.
"""

from __future__ import annotations

import calendar
import json
import uuid
from collections.abc import Callable, Iterable
from datetime import date, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.schedules.expressions import (
    EPOCH,
    CronSchedule,
    Due,
    RateSchedule,
    Schedule,
    ScheduleExpressionError,
    due,
    parse,
    scheduled_event,
)

UTC = timezone.utc


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def upcoming(schedule: Schedule, start: datetime, count: int) -> list[datetime | None]:
    """The next ``count`` firings after ``start``; None marks the end of the schedule."""
    found: list[datetime | None] = []
    t: datetime | None = start
    while len(found) < count and t is not None:
        t = schedule.next_after(t)
        found.append(t)
    return found


def instants(texts: Iterable[str | None]) -> list[datetime | None]:
    return [None if text is None else at(text) for text in texts]


# (expression, from, the next firings; None = the schedule ends there)
NEXT = [
    # every field's plain values, and rollover of minute, hour, day, month and year
    ("cron(* * * * ? *)", "2026-12-31T23:59:30", ["2027-01-01T00:00", "2027-01-01T00:01"]),
    ("cron(0 * * * ? *)", "2026-01-01T00:00:00.000001", ["2026-01-01T01:00"]),
    ("cron(0 12 * * ? *)", "2026-01-31T12:00", ["2026-02-01T12:00", "2026-02-02T12:00"]),
    ("cron(0 * ? * * *)", "2026-01-01T00:00", ["2026-01-01T01:00", "2026-01-01T02:00"]),
    ("cron(0  12 * * ? *)", "2026-01-01T13:00", ["2026-01-02T12:00"]),
    # , - / in minutes and hours
    ("cron(0/15 * * * ? *)", "2026-01-01T00:50", ["2026-01-01T01:00", "2026-01-01T01:15"]),
    ("cron(5/25 * * * ? *)", "2026-01-01T00:56", ["2026-01-01T01:05", "2026-01-01T01:30"]),
    (
        "cron(*/20 9 * * ? *)",
        "2026-01-01T09:45",
        ["2026-01-02T09:00", "2026-01-02T09:20", "2026-01-02T09:40", "2026-01-03T09:00"],
    ),
    (
        "cron(10-50/20 * * * ? *)",
        "2026-01-01T00:00",
        ["2026-01-01T00:10", "2026-01-01T00:30", "2026-01-01T00:50", "2026-01-01T01:10"],
    ),
    (
        "cron(0 8,12,17 * * ? *)",
        "2026-01-01T12:00",
        ["2026-01-01T17:00", "2026-01-02T08:00", "2026-01-02T12:00"],
    ),
    ("cron(30 22-23 * * ? *)", "2026-12-31T22:30", ["2026-12-31T23:30", "2027-01-01T22:30"]),
    # months by number and by name, in any case, with ranges and steps
    (
        "cron(0 0 1 JAN,jul ? *)",
        "2026-01-01T00:00",
        ["2026-07-01T00:00", "2027-01-01T00:00", "2027-07-01T00:00"],
    ),
    (
        "cron(0 0 1 FEB-DEC/3 ? *)",
        "2026-01-15T00:00",
        [
            "2026-02-01T00:00",
            "2026-05-01T00:00",
            "2026-08-01T00:00",
            "2026-11-01T00:00",
            "2027-02-01T00:00",
        ],
    ),
    # month ends: day 31 only in the months that have one
    (
        "cron(0 0 31 * ? *)",
        "2026-01-31T00:00",
        ["2026-03-31T00:00", "2026-05-31T00:00", "2026-07-31T00:00", "2026-08-31T00:00"],
    ),
    ("cron(0 0 30 2 ? *)", "2026-01-01T00:00", [None]),
    # leap years, including the century rule (2000 is one, 2100 is not)
    ("cron(0 0 29 2 ? *)", "2027-01-01T00:00", ["2028-02-29T00:00", "2032-02-29T00:00"]),
    ("cron(0 0 29 2 ? *)", "1999-01-01T00:00", ["2000-02-29T00:00", "2004-02-29T00:00"]),
    ("cron(0 0 29 2 ? *)", "2097-01-01T00:00", ["2104-02-29T00:00"]),
    # L: the last day of the month
    (
        "cron(0 0 L * ? *)",
        "2026-01-31T00:00",
        ["2026-02-28T00:00", "2026-03-31T00:00", "2026-04-30T00:00"],
    ),
    (
        "cron(0 0 L 2 ? 2099-2101)",
        "2099-03-01T00:00",
        ["2100-02-28T00:00", "2101-02-28T00:00", None],
    ),
    ("cron(0 0 L 2 ? *)", "2027-03-01T00:00", ["2028-02-29T00:00", "2029-02-28T00:00"]),
    # LW: the last weekday (Jan 31 2026 is a Saturday, May 31 2026 a Sunday)
    (
        "cron(0 0 LW * ? *)",
        "2026-01-01T00:00",
        [
            "2026-01-30T00:00",
            "2026-02-27T00:00",
            "2026-03-31T00:00",
            "2026-04-30T00:00",
            "2026-05-29T00:00",
        ],
    ),
    # nW: 1W on a Saturday moves forward to Monday the 3rd, on a Sunday to Monday the 2nd
    (
        "cron(0 0 1W * ? *)",
        "2026-07-01T00:00",
        ["2026-08-03T00:00", "2026-09-01T00:00", "2026-10-01T00:00", "2026-11-02T00:00"],
    ),
    # 31W on a Sunday moves back to Friday the 29th; months without a 31st do not fire
    (
        "cron(0 0 31W * ? *)",
        "2027-09-01T00:00",
        ["2027-10-29T00:00", "2027-12-31T00:00", "2028-01-31T00:00"],
    ),
    ("cron(0 0 31W 1 ? 2026)", "2026-01-01T00:00", ["2026-01-30T00:00", None]),
    # 30W on a Sunday that ends the month moves back to Friday the 28th
    ("cron(0 0 30W 6 ? 2024)", "2024-01-01T00:00", ["2024-06-28T00:00", None]),
    # 15W: Saturday the 15th -> Friday 14th, Sunday the 15th -> Monday 16th
    (
        "cron(0 0 15W * ? 2026)",
        "2026-08-01T00:00",
        [
            "2026-08-14T00:00",
            "2026-09-15T00:00",
            "2026-10-15T00:00",
            "2026-11-16T00:00",
            "2026-12-15T00:00",
            None,
        ],
    ),
    # day-of-week: names, numbers (1 = SUN), ranges, lists, case-insensitive
    (
        "cron(0 9 ? * MON-FRI *)",
        "2026-01-02T09:00",
        ["2026-01-05T09:00", "2026-01-06T09:00", "2026-01-07T09:00"],
    ),
    (
        "cron(0 9 ? * 1,7 *)",
        "2026-01-01T00:00",
        ["2026-01-03T09:00", "2026-01-04T09:00", "2026-01-10T09:00"],
    ),
    ("cron(0 0 ? * sun *)", "2026-01-01T00:00", ["2026-01-04T00:00", "2026-01-11T00:00"]),
    ("cron(0 0 ? * Wed-fri *)", "2026-01-02T00:00", ["2026-01-07T00:00", "2026-01-08T00:00"]),
    # L alone in day-of-week: Saturday, the last day of the week
    ("cron(0 0 ? * L *)", "2026-01-01T00:00", ["2026-01-03T00:00", "2026-01-10T00:00"]),
    # nL: the last Thursday of the month
    (
        "cron(0 0 ? * 5L *)",
        "2026-01-01T00:00",
        ["2026-01-29T00:00", "2026-02-26T00:00", "2026-03-26T00:00"],
    ),
    # n#k: the second Tuesday, the first Friday, and a fifth Monday most months lack
    (
        "cron(0 0 ? * 3#2 *)",
        "2026-01-01T00:00",
        ["2026-01-13T00:00", "2026-02-10T00:00", "2026-03-10T00:00"],
    ),
    (
        "cron(0 0 ? * FRI#1 *)",
        "2026-01-01T00:00",
        ["2026-01-02T00:00", "2026-02-06T00:00", "2026-03-06T00:00"],
    ),
    (
        "cron(0 0 ? * 2#5 *)",
        "2026-01-01T00:00",
        ["2026-03-30T00:00", "2026-06-29T00:00", "2026-08-31T00:00"],
    ),
    # years: lists, ranges, steps, and the end of the calendar
    (
        "cron(0 0 1 1 ? 2027-2028,2030)",
        "2026-06-01T00:00",
        ["2027-01-01T00:00", "2028-01-01T00:00", "2030-01-01T00:00", None],
    ),
    ("cron(0 0 1 1 ? 2026/4)", "2026-01-01T00:00", ["2030-01-01T00:00", "2034-01-01T00:00"]),
    ("cron(59 23 31 12 ? *)", "2199-12-31T23:58", ["2199-12-31T23:59", None]),
    ("cron(0 0 1 1 ? 2020)", "2030-01-01T00:00", [None]),
]


@pytest.mark.parametrize(("expression", "start", "expected"), NEXT)
def test_next_firings(expression: str, start: str, expected: list[str | None]) -> None:
    schedule = parse(expression)
    assert upcoming(schedule, at(start), len(expected)) == instants(expected)


# (expression, rule created at, from, the next firings)
RATES = [
    (
        "rate(5 minutes)",
        "2026-01-01T10:02:30",
        "2026-01-01T10:00",
        ["2026-01-01T10:07:30", "2026-01-01T10:12:30", "2026-01-01T10:17:30"],
    ),
    (
        "rate(1 minute)",
        "2026-01-01T10:00",
        "2026-01-01T10:05",
        ["2026-01-01T10:06", "2026-01-01T10:07"],
    ),
    (
        "rate(1 hour)",
        "2026-03-01T00:00",
        "2026-03-01T05:00",
        ["2026-03-01T06:00", "2026-03-01T07:00"],
    ),
    # a rate ignores month lengths and leap days: it is a fixed interval in UTC
    (
        "rate(1 day)",
        "2028-02-27T08:00",
        "2028-02-27T08:00",
        ["2028-02-28T08:00", "2028-02-29T08:00", "2028-03-01T08:00"],
    ),
    ("rate(7 days)", "2026-01-01T00:00", "2025-06-01T00:00", ["2026-01-08T00:00"]),
]


@pytest.mark.parametrize(("expression", "created", "start", "expected"), RATES)
def test_rate_counts_from_its_anchor(
    expression: str, created: str, start: str, expected: list[str]
) -> None:
    schedule = parse(expression, anchor=at(created))
    assert upcoming(schedule, at(start), len(expected)) == instants(expected)


def test_rate_without_anchor_counts_from_the_epoch() -> None:
    schedule = parse("rate(2 days)")
    assert isinstance(schedule, RateSchedule)
    assert schedule.anchor == EPOCH
    # 2026-01-01 is day 20454 after the epoch, an even number: a firing, so not "after" it
    assert upcoming(schedule, at("2026-01-01T00:00"), 2) == instants(
        ["2026-01-03T00:00", "2026-01-05T00:00"]
    )
    assert schedule.interval == timedelta(days=2)


def test_rate_anchor_is_not_itself_a_firing() -> None:
    schedule = parse("rate(10 minutes)", anchor=at("2026-01-01T00:00"))
    assert schedule.last_at_or_before(at("2026-01-01T00:09:59")) is None
    assert schedule.last_at_or_before(at("2026-01-01T00:10")) == at("2026-01-01T00:10")
    assert schedule.next_after(at("2025-12-31T00:00")) == at("2026-01-01T00:10")


def test_cron_latest_firing_at_or_before() -> None:
    schedule = parse("cron(0 0 ? * 2#5 *)")
    assert schedule.last_at_or_before(at("2026-06-29T00:00")) == at("2026-06-29T00:00")
    assert schedule.last_at_or_before(at("2026-06-28T23:59:59")) == at("2026-03-30T00:00")
    assert parse("cron(0 0 1 1 ? 2030)").last_at_or_before(at("2029-12-31T23:59")) is None


def test_instants_in_other_zones_are_read_as_the_same_instant() -> None:
    plus_two = timezone(timedelta(hours=2))
    start = datetime(2026, 1, 1, 13, 30, tzinfo=plus_two)  # 11:30 UTC
    found = parse("cron(0 12 * * ? *)").next_after(start)
    assert found == at("2026-01-01T12:00")
    assert found is not None
    assert found.tzinfo is UTC


def test_naive_instants_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        parse("cron(0 12 * * ? *)").next_after(datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        parse("rate(5 minutes)", anchor=datetime(2026, 1, 1))


def test_parse_returns_the_kind_of_schedule_and_keeps_the_text() -> None:
    cron = parse("cron(0 12 ? * MON-FRI *)")
    assert isinstance(cron, CronSchedule)
    assert str(cron) == "cron(0 12 ? * MON-FRI *)"
    assert cron.minutes == (0,)
    assert cron.hours == (12,)
    rate = parse("rate(5 minutes)")
    assert isinstance(rate, RateSchedule)
    assert rate.interval == timedelta(minutes=5)


def test_search_jumps_by_fields() -> None:
    """A firing every four years, and one that never comes, are found without minute steps."""
    calls = 0
    schedule = parse("cron(0 0 31 2 ? *)")
    assert isinstance(schedule, CronSchedule)
    original = type(schedule.days).days

    def counting(rule: object, year: int, month: int) -> tuple[int, ...]:
        nonlocal calls
        calls += 1
        return original(rule, year, month)  # type: ignore[arg-type]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(type(schedule.days), "days", counting)
        assert schedule.next_after(at("1970-01-01T00:00")) is None
    assert calls == 2199 - 1970 + 1  # once per (year, February)


# (expression, a fragment the message must contain)
INVALID = [
    ("every 5 minutes", "expected rate(value unit) or cron(fields)"),
    ("rate(5 minutes", "expected rate(value unit) or cron(fields)"),
    ("rate(1 minutes)", "rate unit 'minutes' is plural but the value is 1; write 'minute'"),
    ("rate(1 hours)", "rate unit 'hours' is plural but the value is 1"),
    ("rate(5 minute)", "rate unit 'minute' is singular but the value is 5; write 'minutes'"),
    ("rate(5 hour)", "rate unit 'hour' is singular but the value is 5"),
    ("rate(0 minutes)", "rate value '0' is not a positive integer"),
    ("rate(-5 minutes)", "rate value '-5' is not a positive integer"),
    ("rate(1.5 hours)", "rate value '1.5' is not a positive integer"),
    ("rate(5 weeks)", "rate unit 'weeks' is not one of minute, minutes, hour, hours, day, days"),
    ("rate(5)", "rate expects 2 fields (value unit), got 1"),
    ("rate(999999999999 days)", "rate value 999999999999 is too large"),
    ("cron(0 12 * * ?)", "cron expects 6 fields"),
    ("cron(0 12 * * ? * *)", "got 7"),
    ("cron(60 * * * ? *)", "Minutes field '60': value 60 is out of range 0-59"),
    ("cron(0 24 * * ? *)", "Hours field '24': value 24 is out of range 0-23"),
    ("cron(0 0 0 * ? *)", "Day-of-month field '0': value 0 is out of range 1-31"),
    ("cron(0 0 32 * ? *)", "Day-of-month field '32': value 32 is out of range 1-31"),
    ("cron(0 0 1 13 ? *)", "Month field '13': value 13 is out of range 1-12"),
    ("cron(0 0 ? * 0 *)", "Day-of-week field '0': value 0 is out of range 1-7"),
    ("cron(0 0 1 * ? 1969)", "Year field '1969': value 1969 is out of range 1970-2199"),
    ("cron(0 0 1 * ? 2200)", "Year field '2200': value 2200 is out of range 1970-2199"),
    ("cron(0 0 * * * *)", "Day-of-month '*' and Day-of-week '*' are both specified"),
    ("cron(0 0 1 * MON *)", "one of them must be '?'"),
    ("cron(0 0 ? * ? *)", "Day-of-month and Day-of-week are both '?'"),
    ("cron(? 0 1 * ? *)", "Minutes field '?': '?' is allowed only in Day-of-month or Day-of-week"),
    ("cron(0 0 1 ? ? *)", "Month field '?': '?' is allowed only in Day-of-month or Day-of-week"),
    ("cron(0 0 ?,1 * ? *)", "'?' must be the whole field"),
    ("cron(L * * * ? *)", "Minutes field 'L': wildcard 'L' is not allowed (allowed here: , - * /)"),
    ("cron(0 0 ? * 2W *)", "Day-of-week field '2W': wildcard 'W' is not allowed"),
    ("cron(0 0 1 * ? 2026#1)", "Year field '2026#1': wildcard '#' is not allowed"),
    ("cron(0 0 1# * ? *)", "Day-of-month field '1#': wildcard '#' is not allowed"),
    ("cron(0 0 ? * 1/2 *)", "Day-of-week field '1/2': wildcard '/' is not allowed"),
    ("cron(0 0 1,L * ? *)", "'L' and 'W' stand alone (L, LW or nW)"),
    ("cron(0 0 L-2 * ? *)", "'L' and 'W' stand alone (L, LW or nW)"),
    ("cron(0 0 1-15W * ? *)", "'L' and 'W' stand alone (L, LW or nW)"),
    ("cron(0 0 WL * ? *)", "expected L, LW or nW"),
    ("cron(0 0 W * ? *)", "Day-of-month field 'W': a value is missing"),
    ("cron(0 0 32W * ? *)", "Day-of-month field '32W': value 32 is out of range 1-31"),
    ("cron(0 0 ? * MON,6L *)", "'L' and 'nL' stand alone, not in , - *"),
    ("cron(0 0 ? * 1,L *)", "'L' and 'nL' stand alone, not in , - *"),
    ("cron(0 0 ? * L-2 *)", "'L' must stand alone in the field, not in a list or range"),
    ("cron(0 0 ? * 3#1,6#3 *)", "with '#' the field holds a single n#k, not a list or range"),
    ("cron(0 0 ? * 3#6 *)", "occurrence '6' after '#' is not a number 1-5"),
    ("cron(0 0 ? * 3#0 *)", "occurrence '0' after '#' is not a number 1-5"),
    ("cron(0 0 ? * 8#1 *)", "Day-of-week field '8#1': value 8 is out of range 1-7"),
    ("cron(50-10 * * * ? *)", "Minutes field '50-10': range '50-10' runs backwards (50 > 10)"),
    ("cron(0 0 ? * FRI-MON *)", "range 'FRI-MON' runs backwards (6 > 2)"),
    ("cron(*/0 * * * ? *)", "Minutes field '*/0': step '0' after '/' is not a number 1-60"),
    ("cron(0/61 * * * ? *)", "step '61' after '/' is not a number 1-60"),
    ("cron(0 */x * * ? *)", "Hours field '*/x': step 'x' after '/'"),
    ("cron(0 0 1 FOO ? *)", "Month field 'FOO': 'FOO' is not a number 1-12 or a name JAN-DEC"),
    ("cron(0 0 ? * FUN *)", "'FUN' is not a number 1-7 or a name SUN-SAT"),
    ("cron(0 0 ,1 * ? *)", "Day-of-month field ',1': empty entry in the list"),
    ("cron(0 0 1- * ? *)", "Day-of-month field '1-': a value is missing"),
    ("cron(x 0 1 * ? *)", "Minutes field 'x': 'x' is not a number 0-59"),
    ("cron(0 0 1 * ? " + "2000," * 60 + "2001)", "longer than 256 characters"),
]


@pytest.mark.parametrize(("expression", "fragment"), INVALID)
def test_invalid_expressions_say_why(expression: str, fragment: str) -> None:
    with pytest.raises(ScheduleExpressionError) as caught:
        parse(expression)
    message = str(caught.value)
    assert message.startswith("Parameter ScheduleExpression is not valid: ")
    assert fragment in message
    assert caught.value.expression == expression
    assert isinstance(caught.value, ValueError)


def test_anchor_is_refused_for_cron() -> None:
    with pytest.raises(ScheduleExpressionError, match="anchor applies to rate expressions only"):
        parse("cron(0 12 * * ? *)", anchor=at("2026-01-01T00:00"))


# --- missed firings fire once ------------------------------------------------------------------


def test_three_hours_down_on_a_five_minute_rate_fires_once() -> None:
    schedule = parse("rate(5 minutes)", anchor=at("2026-01-01T00:00"))
    last, now = at("2026-01-01T00:00"), at("2026-01-01T03:02")
    missed = len(list(_every_firing(schedule, last, now)))
    assert missed == 36
    assert due(schedule, last, now) == Due(at("2026-01-01T03:00"), at("2026-01-01T03:05"))
    # once fired, the same moment has nothing more to fire
    assert due(schedule, at("2026-01-01T03:00"), now) == Due(None, at("2026-01-01T03:05"))


def test_a_caller_loop_fires_once_per_wakeup() -> None:
    """Drive ``due`` the way a timer loop would, with a gap in the wake-ups."""
    schedule = parse("cron(0 12 * * ? *)")
    last = at("2026-01-01T12:00")
    fired: list[datetime] = []
    for wake in ["2026-01-02T12:00", "2026-01-05T08:00", "2026-01-05T12:00:01"]:
        decision = due(schedule, last, at(wake))
        if decision.fire_at is not None:
            fired.append(decision.fire_at)
            last = decision.fire_at
    assert fired == instants(["2026-01-02T12:00", "2026-01-04T12:00", "2026-01-05T12:00"])


def test_due_before_the_next_firing_fires_nothing() -> None:
    schedule = parse("cron(0 12 * * ? *)")
    decision = due(schedule, at("2026-01-01T12:00"), at("2026-01-02T11:59:59"))
    assert decision == Due(None, at("2026-01-02T12:00"))


def test_due_after_the_last_firing_of_a_schedule() -> None:
    schedule = parse("cron(0 0 1 1 ? 2026)")
    decision = due(schedule, at("2025-06-01T00:00"), at("2030-01-01T00:00"))
    assert decision == Due(at("2026-01-01T00:00"), None)


def _every_firing(schedule: Schedule, after: datetime, until: datetime) -> Iterable[datetime]:
    t = schedule.next_after(after)
    while t is not None and t <= until:
        yield t
        t = schedule.next_after(t)


# --- the scheduled event -----------------------------------------------------------------------

RULE = "arn:aws:events:us-east-1:123456789012:rule/nightly"


def test_scheduled_event_shape() -> None:
    event = scheduled_event(
        RULE,
        datetime(2026, 1, 1, 14, 30, 5, 250_000, tzinfo=timezone(timedelta(hours=2))),
        account="123456789012",
        region="us-east-1",
        id="53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
    )
    expected = {
        "version": "0",
        "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": "2026-01-01T12:30:05Z",
        "region": "us-east-1",
        "resources": [RULE],
        "detail": {},
    }
    assert event == expected
    assert list(event) == list(expected)  # AWS's key order
    assert json.loads(json.dumps(event)) == expected


def test_scheduled_event_default_id_is_a_fresh_uuid() -> None:
    when = at("2026-01-01T00:00")
    first = scheduled_event(RULE, when, account="123456789012", region="us-east-1")
    second = scheduled_event(RULE, when, account="123456789012", region="us-east-1")
    assert str(uuid.UUID(str(first["id"]))) == first["id"]
    assert first["id"] != second["id"]


# --- against a brute-force reference -----------------------------------------------------------


def _last_day(d: date) -> int:
    return calendar.monthrange(d.year, d.month)[1]


def _is_weekday(d: date) -> bool:
    return d.isoweekday() <= 5


def _day_of_week(d: date) -> int:
    return d.isoweekday() % 7 + 1  # 1 = SUN ... 7 = SAT


def _nearest_weekday(n: int) -> Callable[[date], bool]:
    def test(d: date) -> bool:
        if n > _last_day(d):
            return False
        month = [d.replace(day=k) for k in range(1, _last_day(d) + 1)]
        return d == min((m for m in month if _is_weekday(m)), key=lambda m: abs(m.day - n))

    return test


def _last_weekday(w: int) -> Callable[[date], bool]:
    return lambda d: _day_of_week(d) == w and d.day + 7 > _last_day(d)


def _nth_weekday(w: int, k: int) -> Callable[[date], bool]:
    return lambda d: _day_of_week(d) == w and (d.day - 1) // 7 + 1 == k


def _definitions() -> list[tuple[str, Callable[[date], bool]]]:
    """Each special day rule in a dozen words, written without the module's arithmetic."""
    rules: list[tuple[str, Callable[[date], bool]]] = [
        ("L ?", lambda d: d.day == _last_day(d)),
        (
            "LW ?",
            lambda d: (
                _is_weekday(d)
                and not any(
                    _is_weekday(d.replace(day=k)) for k in range(d.day + 1, _last_day(d) + 1)
                )
            ),
        ),
        ("? L", lambda d: _day_of_week(d) == 7),
    ]
    rules += [(f"{n}W ?", _nearest_weekday(n)) for n in range(1, 32)]
    for w in range(1, 8):
        rules.append((f"? {w}L", _last_weekday(w)))
        rules += [(f"? {w}#{k}", _nth_weekday(w, k)) for k in range(1, 6)]
    return rules


@pytest.mark.parametrize(
    ("days", "definition"), [pytest.param(*rule, id=rule[0]) for rule in _definitions()]
)
def test_special_days_match_their_definition(days: str, definition: Callable[[date], bool]) -> None:
    """Five years of firings, day by day, against the plain-words definition of each rule."""
    dom, dow = days.split()
    schedule = parse(f"cron(0 0 {dom} * {dow} 2024-2028)")
    first = date(2024, 1, 1)
    every_day = (first + timedelta(days=k) for k in range((date(2029, 1, 1) - first).days))
    expected = [datetime(d.year, d.month, d.day, tzinfo=UTC) for d in every_day if definition(d)]
    got = list(_every_firing(schedule, at("2023-12-31T23:59"), at("2028-12-31T23:59")))
    assert got == expected
    assert schedule.next_after(at("2028-12-31T23:59")) is None


WINDOW = timedelta(days=3)


def _field(
    low: int, high: int, *, steps: bool = True
) -> st.SearchStrategy[tuple[str, frozenset[int]]]:
    """One simple cron field as (text, the values it means), built without the parser.

    Day-of-week takes no steps: EventBridge documents no '/' there.
    """
    value = st.integers(low, high)
    single = value.map(lambda v: (str(v), frozenset({v})))
    span = st.tuples(value, value).map(sorted)
    ranged = span.map(lambda ab: (f"{ab[0]}-{ab[1]}", frozenset(range(ab[0], ab[1] + 1))))
    step = st.integers(1, high - low + 1)
    from_star = step.map(lambda s: (f"*/{s}", frozenset(range(low, high + 1, s))))
    from_value = st.tuples(value, step).map(
        lambda vs: (f"{vs[0]}/{vs[1]}", frozenset(range(vs[0], high + 1, vs[1])))
    )
    range_step = st.tuples(span, step).map(
        lambda rs: (
            f"{rs[0][0]}-{rs[0][1]}/{rs[1]}",
            frozenset(range(rs[0][0], rs[0][1] + 1, rs[1])),
        )
    )
    item = (
        st.one_of(single, ranged, from_star, from_value, range_step)
        if steps
        else st.one_of(single, ranged)
    )
    listed = st.lists(item, min_size=2, max_size=4).map(
        lambda items: (",".join(t for t, _ in items), frozenset().union(*(v for _, v in items)))
    )
    star = st.just(("*", frozenset(range(low, high + 1))))
    return st.one_of(star, item, listed)


@st.composite
def _simple_cron(draw: st.DrawFn) -> tuple[str, dict[str, frozenset[int]]]:
    fields = {
        "minute": draw(_field(0, 59)),
        "hour": draw(_field(0, 23)),
        "month": draw(_field(1, 12)),
    }
    if draw(st.booleans()):
        fields["dom"], dow = draw(_field(1, 31)), ("?", frozenset(range(1, 8)))
    else:
        fields["dom"], dow = ("?", frozenset(range(1, 32))), draw(_field(1, 7, steps=False))
    fields["dow"] = dow
    order = ("minute", "hour", "dom", "month", "dow")
    text = "cron(" + " ".join(fields[name][0] for name in order) + " *)"
    return text, {name: values for name, (_, values) in fields.items()}


def _reference(
    meaning: dict[str, frozenset[int]], start: datetime, end: datetime
) -> list[datetime]:
    """Every firing in (start, end], found by trying each minute."""
    found = []
    t = start.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while t <= end:
        if (
            t.minute in meaning["minute"]
            and t.hour in meaning["hour"]
            and t.day in meaning["dom"]
            and t.month in meaning["month"]
            and t.isoweekday() % 7 + 1 in meaning["dow"]
        ):
            found.append(t)
        t += timedelta(minutes=1)
    return found


@settings(max_examples=150, deadline=None, derandomize=True)
@given(
    cron=_simple_cron(),
    start=st.datetimes(
        min_value=datetime(2024, 1, 1),
        max_value=datetime(2027, 12, 31),
        timezones=st.just(UTC),
    ),
)
def test_next_after_matches_minute_by_minute_search(
    cron: tuple[str, dict[str, frozenset[int]]], start: datetime
) -> None:
    text, meaning = cron
    schedule = parse(text)
    end = start + WINDOW
    expected = _reference(meaning, start, end)
    got = list(_every_firing(schedule, start, end))
    assert got == expected
    after = schedule.next_after(end)
    assert after is None or after > end  # None: a date that never exists, such as Feb 30
    latest = schedule.last_at_or_before(end)
    if expected:
        assert latest == expected[-1]
    else:
        assert latest is None or latest <= start
