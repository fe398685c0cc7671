"""EventBridge schedule expressions: ``rate(...)`` and ``cron(...)``, parsed and evaluated.

Sans-I/O: nothing here reads a clock. Every instant going in or out is a timezone-aware
``datetime``; inputs in any zone are converted to UTC, naive ones are refused, and every
instant returned is in UTC. All schedules are evaluated in UTC, as EventBridge does, so there
is no daylight-saving time to reason about.

    schedule = parse("cron(0 12 ? * MON-FRI *)")
    schedule.next_after(now)              # first firing strictly after now
    due(schedule, last_fired, now)        # what to fire after downtime: once, not N times

Rate schedules fire relative to an anchor, the instant the rule was created in EventBridge:
``anchor + k * interval`` for k = 1, 2, ... The anchor is part of the schedule
(``parse("rate(5 minutes)", anchor=created)``); without one it is the Unix epoch, which puts
firings on UTC boundaries of the interval (every 5 minutes on the clock).

Cron schedules fire at second 0 of each matching minute. Where EventBridge's documentation is
silent, this module chooses the strict reading:

- a range must not run backwards (``50-10``); write two entries instead;
- a step must be between 1 and the number of values in its field;
- ``L``, ``LW``, ``nW``, ``nL`` and ``n#k`` each stand alone in their field;
- ``nW`` for a day the month does not have (``31W`` in April) does not fire that month.
"""

from __future__ import annotations

import abc
import calendar
import re
import uuid
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

__all__ = [
    "EPOCH",
    "CronSchedule",
    "Due",
    "RateSchedule",
    "Schedule",
    "ScheduleExpressionError",
    "due",
    "parse",
    "scheduled_event",
]

UTC = timezone.utc
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_EXPRESSION_LENGTH = 256  # PutRule's limit on ScheduleExpression

_MINUTE = timedelta(minutes=1)
_EXPRESSION = re.compile(r"(rate|cron)\((.*)\)", re.DOTALL)
_NUMBER = re.compile(r"[0-9]+")
_SPECIAL = re.compile(r"[0-9]*(L|W|LW)")


class ScheduleExpressionError(ValueError):
    """An expression EventBridge would refuse; the message names the field, value and rule."""

    code = "ValidationException"

    def __init__(self, expression: str, reason: str) -> None:
        super().__init__(f"Parameter ScheduleExpression is not valid: {reason} (in {expression!r})")
        self.expression = expression
        self.reason = reason


class _Invalid(ValueError):
    """A reason an expression is invalid, before the expression is attached."""


def _utc(t: datetime) -> datetime:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"expected a timezone-aware datetime, got naive {t.isoformat()}")
    return t.astimezone(UTC)


# --- schedules ---------------------------------------------------------------------------------


class Schedule(abc.ABC):
    """A parsed schedule expression. Build one with :func:`parse`."""

    expression: str

    @abc.abstractmethod
    def next_after(self, t: datetime) -> datetime | None:
        """The first firing strictly after ``t``, or None if the schedule never fires again."""

    @abc.abstractmethod
    def last_at_or_before(self, t: datetime) -> datetime | None:
        """The latest firing at or before ``t``, or None if it never fired by then."""

    def __str__(self) -> str:
        return self.expression


@dataclass(frozen=True)
class RateSchedule(Schedule):
    """``rate(value unit)``: fires at ``anchor + k * interval`` for every k >= 1.

    EventBridge starts a rate when the rule is created, so ``anchor`` should be the rule's
    creation time. The anchor itself is not a firing.
    """

    expression: str
    interval: timedelta
    anchor: datetime = EPOCH

    def __post_init__(self) -> None:
        object.__setattr__(self, "anchor", _utc(self.anchor))

    def next_after(self, t: datetime) -> datetime | None:
        k = max((_utc(t) - self.anchor) // self.interval + 1, 1)
        try:
            return self.anchor + k * self.interval
        except OverflowError:  # after year 9999, the last a datetime holds: never again
            return None

    def last_at_or_before(self, t: datetime) -> datetime | None:
        k = (_utc(t) - self.anchor) // self.interval
        return self.anchor + k * self.interval if k >= 1 else None


@dataclass(frozen=True)
class CronSchedule(Schedule):
    """``cron(Minutes Hours Day-of-month Month Day-of-week Year)``, evaluated in UTC.

    ``days`` stands for whichever of Day-of-month and Day-of-week is not ``?``.
    The search jumps field by field (year, month, day, hour, minute), so a schedule that
    fires once every four years, or never again, is answered in at most a few thousand steps.
    """

    expression: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: _DayRule
    months: tuple[int, ...]
    years: tuple[int, ...]

    def next_after(self, t: datetime) -> datetime | None:
        start = _utc(t).replace(second=0, microsecond=0) + _MINUTE
        return self._descend((), _fields(start), forward=True)

    def last_at_or_before(self, t: datetime) -> datetime | None:
        return self._descend((), _fields(_utc(t)), forward=False)

    def _values(self, prefix: tuple[int, ...]) -> Sequence[int]:
        level = len(prefix)
        if level == 0:
            return self.years
        if level == 1:
            return self.months
        if level == 2:
            return self.days.days(prefix[0], prefix[1])
        return self.hours if level == 3 else self.minutes

    def _descend(
        self, prefix: tuple[int, ...], bound: tuple[int, ...] | None, *, forward: bool
    ) -> datetime | None:
        """The first firing beginning with ``prefix`` on the near side of ``bound``.

        ``bound`` is (year, month, day, hour, minute), inclusive, while the prefix still equals
        its leading fields; once a field moves past it, every later field is free (None).
        """
        if len(prefix) == 5:
            return datetime(*prefix, tzinfo=UTC)
        level = len(prefix)
        limit = None if bound is None else bound[level]
        for value in _walk(self._values(prefix), limit, forward=forward):
            pinned = bound if value == limit else None
            found = self._descend((*prefix, value), pinned, forward=forward)
            if found is not None:
                return found
        return None


def _fields(t: datetime) -> tuple[int, ...]:
    return (t.year, t.month, t.day, t.hour, t.minute)


def _walk(values: Sequence[int], limit: int | None, *, forward: bool) -> Sequence[int]:
    """The sorted ``values`` from ``limit`` onwards (forward) or downwards (backward)."""
    if forward:
        return values if limit is None else values[bisect_left(values, limit) :]
    below = values if limit is None else values[: bisect_right(values, limit)]
    return below[::-1]


# --- day rules: which days of a given month fire -----------------------------------------------


def _weekday(first: int, day: int) -> int:
    """EventBridge's day of week (1 = SUN ... 7 = SAT) of ``day``, given calendar's weekday
    (0 = Monday) of the 1st."""
    return (first + day) % 7 + 1


class _DayRule(abc.ABC):
    @abc.abstractmethod
    def days(self, year: int, month: int) -> tuple[int, ...]:
        """The days of the month that fire, ascending."""


@dataclass(frozen=True)
class _MonthDays(_DayRule):
    values: tuple[int, ...]

    def days(self, year: int, month: int) -> tuple[int, ...]:
        last = calendar.monthrange(year, month)[1]
        return tuple(d for d in self.values if d <= last)


@dataclass(frozen=True)
class _LastDay(_DayRule):
    def days(self, year: int, month: int) -> tuple[int, ...]:
        return (calendar.monthrange(year, month)[1],)


@dataclass(frozen=True)
class _LastWeekday(_DayRule):
    """``LW``: the last Monday-to-Friday day of the month."""

    def days(self, year: int, month: int) -> tuple[int, ...]:
        first, last = calendar.monthrange(year, month)
        back = {7: 1, 1: 2}.get(_weekday(first, last), 0)
        return (last - back,)


@dataclass(frozen=True)
class _NearestWeekday(_DayRule):
    """``nW``: the weekday nearest day n, never leaving the month.

    A Saturday moves to Friday, unless that is the previous month (n = 1: Monday the 3rd);
    a Sunday moves to Monday, unless that is the next month (n = last day: Friday n - 2).
    """

    day: int

    def days(self, year: int, month: int) -> tuple[int, ...]:
        first, last = calendar.monthrange(year, month)
        if self.day > last:
            return ()
        weekday = _weekday(first, self.day)
        if weekday == 7:
            return (self.day + 2,) if self.day == 1 else (self.day - 1,)
        if weekday == 1:
            return (self.day - 2,) if self.day == last else (self.day + 1,)
        return (self.day,)


@dataclass(frozen=True)
class _Weekdays(_DayRule):
    values: frozenset[int]

    def days(self, year: int, month: int) -> tuple[int, ...]:
        first, last = calendar.monthrange(year, month)
        return tuple(d for d in range(1, last + 1) if _weekday(first, d) in self.values)


@dataclass(frozen=True)
class _LastOfWeekday(_DayRule):
    """``nL``: the last day-of-week n of the month (``6L``: the last Friday)."""

    weekday: int

    def days(self, year: int, month: int) -> tuple[int, ...]:
        first, last = calendar.monthrange(year, month)
        return (last - (_weekday(first, last) - self.weekday) % 7,)


@dataclass(frozen=True)
class _NthWeekday(_DayRule):
    """``n#k``: the k-th day-of-week n of the month; months without a k-th one do not fire."""

    weekday: int
    nth: int

    def days(self, year: int, month: int) -> tuple[int, ...]:
        first, last = calendar.monthrange(year, month)
        day = 1 + (self.weekday - _weekday(first, 1)) % 7 + 7 * (self.nth - 1)
        return (day,) if day <= last else ()


# --- parsing -----------------------------------------------------------------------------------


def parse(expression: str, *, anchor: datetime | None = None) -> Schedule:
    """Parse an EventBridge schedule expression, or raise :class:`ScheduleExpressionError`.

    ``anchor`` is where a rate schedule counts from (the rule's creation time; default the
    Unix epoch). It must not be given for a cron schedule, which has no use for it.
    """
    try:
        return _parse(expression, anchor)
    except _Invalid as exc:
        raise ScheduleExpressionError(expression, str(exc)) from None


def _parse(expression: str, anchor: datetime | None) -> Schedule:
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise _Invalid(f"longer than {MAX_EXPRESSION_LENGTH} characters")
    match = _EXPRESSION.fullmatch(expression)
    if match is None:
        raise _Invalid("expected rate(value unit) or cron(fields)")
    kind, body = match.groups()
    if kind == "rate":
        return _parse_rate(expression, body.split(), anchor)
    if anchor is not None:
        raise _Invalid("an anchor applies to rate expressions only")
    return _parse_cron(expression, body.split())


_UNITS = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}


def _parse_rate(expression: str, parts: list[str], anchor: datetime | None) -> RateSchedule:
    if len(parts) != 2:
        raise _Invalid(f"rate expects 2 fields (value unit), got {len(parts)}")
    text, unit = parts
    if not _NUMBER.fullmatch(text) or int(text) == 0:
        raise _Invalid(f"rate value {text!r} is not a positive integer")
    value = int(text)
    singular = unit.removesuffix("s")
    if singular not in _UNITS:
        raise _Invalid(f"rate unit {unit!r} is not one of minute, minutes, hour, hours, day, days")
    if value == 1 and unit != singular:
        raise _Invalid(f"rate unit {unit!r} is plural but the value is 1; write {singular!r}")
    if value > 1 and unit == singular:
        raise _Invalid(
            f"rate unit {unit!r} is singular but the value is {value}; write {unit + 's'!r}"
        )
    try:
        interval = value * _UNITS[singular]
    except OverflowError:
        raise _Invalid(f"rate value {value} is too large") from None
    return RateSchedule(expression, interval, EPOCH if anchor is None else anchor)


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    wildcards: str
    names: tuple[str, ...] = ()

    def fail(self, text: str, reason: str) -> _Invalid:
        return _Invalid(f"{self.name} field {text!r}: {reason}")


_MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAY_NAMES = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")

_MINUTES = _Field("Minutes", 0, 59, ", - * /")
_HOURS = _Field("Hours", 0, 23, ", - * /")
_DAY_OF_MONTH = _Field("Day-of-month", 1, 31, ", - * ? / L W")
_MONTH = _Field("Month", 1, 12, ", - * /", _MONTH_NAMES)
_DAY_OF_WEEK = _Field("Day-of-week", 1, 7, ", - * ? L #", _DAY_NAMES)
_YEAR = _Field("Year", 1970, 2199, ", - * /")
_CRON_FIELDS = (_MINUTES, _HOURS, _DAY_OF_MONTH, _MONTH, _DAY_OF_WEEK, _YEAR)


def _parse_cron(expression: str, parts: list[str]) -> CronSchedule:
    if len(parts) != 6:
        raise _Invalid(
            "cron expects 6 fields (Minutes Hours Day-of-month Month Day-of-week Year), "
            f"got {len(parts)}"
        )
    for field, text in zip(_CRON_FIELDS, parts, strict=True):
        _check_symbols(field, text)
    minute, hour, dom, month, dow, year = parts
    return CronSchedule(
        expression,
        minutes=_parse_list(_MINUTES, minute),
        hours=_parse_list(_HOURS, hour),
        days=_parse_days(dom, dow),
        months=_parse_list(_MONTH, month),
        years=_parse_list(_YEAR, year),
    )


def _check_symbols(field: _Field, text: str) -> None:
    for symbol in ",-*?/#":
        if symbol in text and symbol not in field.wildcards:
            if symbol == "?":
                raise field.fail(text, "'?' is allowed only in Day-of-month or Day-of-week")
            raise field.fail(
                text, f"wildcard {symbol!r} is not allowed (allowed here: {field.wildcards})"
            )
    if "?" in text and text != "?":
        raise field.fail(text, "'?' must be the whole field")


def _parse_days(dom: str, dow: str) -> _DayRule:
    """Exactly one of Day-of-month and Day-of-week is ``?``; the other decides the day."""
    if dom == "?" and dow == "?":
        raise _Invalid("Day-of-month and Day-of-week are both '?'; one of them must name the days")
    if dom != "?" and dow != "?":
        raise _Invalid(
            f"Day-of-month {dom!r} and Day-of-week {dow!r} are both specified; "
            "one of them must be '?'"
        )
    return _parse_day_of_month(dom) if dow == "?" else _parse_day_of_week(dow)


def _parse_day_of_month(text: str) -> _DayRule:
    upper = text.upper()
    if "L" not in upper and "W" not in upper:
        return _MonthDays(_parse_list(_DAY_OF_MONTH, text))
    if any(symbol in upper for symbol in ",-*/"):
        raise _DAY_OF_MONTH.fail(text, "'L' and 'W' stand alone (L, LW or nW), not in , - * /")
    if upper == "L":
        return _LastDay()
    if upper == "LW":
        return _LastWeekday()
    if upper.endswith("W"):
        return _NearestWeekday(_value(_DAY_OF_MONTH, upper[:-1], text))
    raise _DAY_OF_MONTH.fail(text, "expected L, LW or nW (a day 1-31 then W)")


def _parse_day_of_week(text: str) -> _DayRule:
    upper = text.upper()
    if "#" in upper:
        return _parse_nth(text)
    if upper == "L":
        return _Weekdays(frozenset({7}))  # the last day of the week: Saturday
    if upper.endswith("L"):
        if any(symbol in upper for symbol in ",-*"):
            raise _DAY_OF_WEEK.fail(text, "'L' and 'nL' stand alone, not in , - *")
        return _LastOfWeekday(_value(_DAY_OF_WEEK, upper[:-1], text))
    return _Weekdays(frozenset(_parse_list(_DAY_OF_WEEK, text)))


def _parse_nth(text: str) -> _NthWeekday:
    if any(symbol in text for symbol in ",-*"):
        raise _DAY_OF_WEEK.fail(text, "with '#' the field holds a single n#k, not a list or range")
    day, _, nth = text.upper().partition("#")
    if not _NUMBER.fullmatch(nth) or not 1 <= int(nth) <= 5:
        raise _DAY_OF_WEEK.fail(text, f"occurrence {nth!r} after '#' is not a number 1-5")
    return _NthWeekday(_value(_DAY_OF_WEEK, day, text), int(nth))


def _parse_list(field: _Field, text: str) -> tuple[int, ...]:
    values: set[int] = set()
    for item in text.split(","):
        values.update(_parse_item(field, item, text))
    return tuple(sorted(values))


def _parse_item(field: _Field, item: str, text: str) -> range:
    """One comma-separated entry: ``*``, ``a``, ``a-b``, each optionally ``/step``."""
    if not item:
        raise field.fail(text, "empty entry in the list")
    base, slash, step_text = item.partition("/")
    step = _step(field, step_text, text) if slash else 1
    if base == "*":
        return range(field.low, field.high + 1, step)
    start_text, dash, end_text = base.partition("-")
    start = _value(field, start_text, text)
    end = _value(field, end_text, text) if dash else (field.high if slash else start)
    if start > end:
        raise field.fail(text, f"range {base!r} runs backwards ({start} > {end})")
    return range(start, end + 1, step)


def _step(field: _Field, step_text: str, text: str) -> int:
    size = field.high - field.low + 1
    if not _NUMBER.fullmatch(step_text) or not 1 <= int(step_text) <= size:
        raise field.fail(text, f"step {step_text!r} after '/' is not a number 1-{size}")
    return int(step_text)


def _value(field: _Field, token: str, text: str) -> int:
    """A number in the field's range, or (Month, Day-of-week) a name; names ignore case."""
    if _NUMBER.fullmatch(token):
        number = int(token)
        if not field.low <= number <= field.high:
            raise field.fail(text, f"value {number} is out of range {field.low}-{field.high}")
        return number
    upper = token.upper()
    if upper in field.names:
        return field.names.index(upper) + 1
    if not token:
        raise field.fail(text, "a value is missing")
    if _SPECIAL.fullmatch(upper):
        raise _misplaced(field, upper, text)
    expected = f"a number {field.low}-{field.high}"
    if field.names:
        expected += f" or a name {field.names[0]}-{field.names[-1]}"
    raise field.fail(text, f"{token!r} is not {expected}")


def _misplaced(field: _Field, token: str, text: str) -> _Invalid:
    """``L`` or ``W`` where the field has no room for it."""
    for letter in "LW":
        if letter in token and letter not in field.wildcards:
            allowed = field.wildcards
            return field.fail(text, f"wildcard {letter!r} is not allowed (allowed here: {allowed})")
    return field.fail(text, f"{token!r} must stand alone in the field, not in a list or range")


# --- firing after downtime ---------------------------------------------------------------------


@dataclass(frozen=True)
class Due:
    """What to do at ``now``: fire once at ``fire_at`` (None: nothing was missed), then wait
    for ``next_at`` (None: the schedule never fires again)."""

    fire_at: datetime | None
    next_at: datetime | None


def due(schedule: Schedule, last_fired: datetime, now: datetime) -> Due:
    """Collapse every firing missed in ``(last_fired, now]`` into one: the latest of them.

    A caller back after three hours of downtime on ``rate(5 minutes)`` fires once, for the
    most recent missed instant, not 36 times. For a rule that never fired, pass its creation
    time as ``last_fired``.
    """
    latest = schedule.last_at_or_before(now)
    fire_at = latest if latest is not None and latest > _utc(last_fired) else None
    return Due(fire_at, schedule.next_after(now))


# --- the event a firing delivers ---------------------------------------------------------------


def scheduled_event(
    rule_arn: str, when: datetime, *, account: str, region: str, id: str | None = None
) -> dict[str, object]:
    """EventBridge's "Scheduled Event" for the firing of ``rule_arn`` at ``when``.

    ``id`` defaults to a fresh UUID; pass one for a reproducible event (for example when an
    at-least-once queue redelivers the same firing).
    """
    return {
        "version": "0",
        "id": str(uuid.uuid4()) if id is None else id,
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account,
        "time": _utc(when).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [rule_arn],
        "detail": {},
    }
