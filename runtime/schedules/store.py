"""EventBridge schedule rules and their targets, kept durably beside the batch store.

    Rules (the protocol the runner and the EventBridge API use)
      ├── RuleStore        here: SQLite, the batch store's file (one node, the embedded default)
      └── RedisRuleStore   runtime.schedules.redis_store: Redis (several nodes on one store)

The rules live in the same SQLite file as :class:`~runtime.batch.store.SqliteStore`, in their
own tables (``schedule_rules``, ``schedule_targets``) over their own connection (WAL, like the
batch store's), with their own schema version: the ``schedule_rules`` row of the file's
``warmstart_meta`` (:mod:`runtime.sqlite`).

A rule records three instants (epoch seconds), which is all :mod:`.expressions` needs to
fire it once per instant and once after downtime:

- ``created_at``: the anchor of a ``rate(...)`` schedule (EventBridge counts from creation);
- ``changed_at``: the last time the expression changed or the rule was enabled; firings before
  it are not owed (a rule enabled after a week off does not fire for that week);
- ``last_fired``: the instant of the last firing.

Beside them the store keeps the rule's firing claim (:class:`Claim`): every node's runner
plans the same instant, and only the one that wins :meth:`Rules.claim_firing` sends it (see
:func:`wins_claim` for the rule both stores apply).

Nothing here reads a clock: every call that changes state takes ``now``.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, Final, Protocol

from ..arns import parse_function_arn
from ..errors import ResourceNotFoundException, WarmstartError
from ..pagination import decode_token, encode_token
from ..sqlite import SqliteFile
from .expressions import Schedule, parse

ENABLED: Final = "ENABLED"
DISABLED: Final = "DISABLED"
STATES: Final = (ENABLED, DISABLED)
#: EventBridge's limit of targets per rule
MAX_TARGETS: Final = 5
#: ``ManagedBy`` of the rules declared in the configuration file's ``[schedules]``
CONFIG_MANAGER: Final = "warmstart.config"
COMPONENT: Final = "schedule_rules"
#: how long a claimed firing stays its node's: after it another node may send it (a node
#: sends a firing in milliseconds, so this only bounds how late a dead node's firing is)
FIRING_LEASE_S: Final = 30.0

_SCHEMA_V1 = (
    """CREATE TABLE schedule_rules (
        name TEXT PRIMARY KEY,
        expression TEXT NOT NULL,
        state TEXT NOT NULL,
        description TEXT,
        created_at REAL NOT NULL,
        changed_at REAL NOT NULL,
        last_fired REAL,
        managed_by TEXT
    ) WITHOUT ROWID""",
    """CREATE TABLE schedule_targets (
        rule TEXT NOT NULL,
        id TEXT NOT NULL,
        arn TEXT NOT NULL,
        input TEXT,
        seq INTEGER NOT NULL,
        PRIMARY KEY (rule, id)
    ) WITHOUT ROWID""",
)
#: the firing claim (Claim): the instant claimed, by which node, until when
_SCHEMA_V2 = (
    "ALTER TABLE schedule_rules ADD COLUMN claimed REAL",
    "ALTER TABLE schedule_rules ADD COLUMN claim_node TEXT",
    "ALTER TABLE schedule_rules ADD COLUMN claim_until REAL",
)
#: MIGRATIONS[i] takes the rule tables from version i to i + 1
MIGRATIONS: tuple[tuple[str, ...], ...] = (_SCHEMA_V1, _SCHEMA_V2)
SCHEMA_VERSION = len(MIGRATIONS)

_RULE_COLUMNS = (
    "name, expression, state, description, created_at, changed_at, last_fired, managed_by"
)


class ValidationException(WarmstartError):
    code = "ValidationException"
    status = 400


class LimitExceededException(WarmstartError):
    code = "LimitExceededException"
    status = 400


class ManagedRuleException(WarmstartError):
    """A rule owned by the configuration file (``ManagedBy``) changed through the API."""

    code = "ManagedRuleException"
    status = 400


def utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)


def instant(now: float) -> float:
    """A rule's times are kept to the millisecond, so that an anchor read back as a datetime
    (microseconds) is the same instant."""
    return round(now, 3)


@dataclass(frozen=True)
class Target:
    """Where a firing goes: ``arn`` names a Lambda function (an ARN or a plain name);
    ``input`` is the JSON text sent instead of the Scheduled Event, when given."""

    id: str
    arn: str
    input: str | None = None


@dataclass(frozen=True)
class Rule:
    """A schedule rule as stored (see the module docstring for the three instants)."""

    name: str
    expression: str
    state: str
    created_at: float
    changed_at: float
    description: str | None = None
    last_fired: float | None = None
    managed_by: str | None = None

    @property
    def enabled(self) -> bool:
        return self.state == ENABLED

    @property
    def fired_through(self) -> float:
        """Firings at or before this instant are done or not owed."""
        return self.changed_at if self.last_fired is None else max(self.changed_at, self.last_fired)

    def schedule(self) -> Schedule:
        """The parsed expression; a rate counts from the rule's creation."""
        if self.expression.startswith("rate("):
            return parse(self.expression, anchor=utc(self.created_at))
        return parse(self.expression)


@dataclass(frozen=True)
class Claim:
    """The latest firing of a rule that a node claimed: ``instant`` is ``node``'s to send
    until ``until`` (epoch seconds)."""

    instant: float
    node: str
    until: float


def wins_claim(
    rule: Rule | None, claim: Claim | None, instant: float, node: str, now: float
) -> bool:
    """Whether ``node`` may send firing ``instant`` of ``rule`` at ``now`` (the rule of
    :meth:`Rules.claim_firing`, applied inside each store's transaction).

    Never a rule that is gone or disabled, nor an instant it fired (or does not owe):
    ``instant`` must be past ``fired_through``. Then not while another node's live claim
    holds this instant or a later one; a node's own claim is its again (a send that failed
    is sent again by the next pass), and a claim past its lease is anyone's (its node died
    between claiming and ``mark_fired``).
    """
    if rule is None or not rule.enabled or instant <= rule.fired_through:
        return False
    if claim is None or claim.node == node or claim.until <= now:
        return True
    return claim.instant < instant


class Rules(Protocol):
    """A store of schedule rules and their targets: what the schedule runner and the
    EventBridge API use. :class:`RuleStore` (SQLite) and
    :class:`~runtime.schedules.redis_store.RedisRuleStore` behave alike: same results, same
    errors with the same messages, every call atomic."""

    def put_rule(
        self,
        name: str,
        expression: str,
        now: float,
        *,
        state: str = ENABLED,
        description: str | None = None,
        managed_by: str | None = None,
    ) -> Rule: ...
    def get_rule(self, name: str) -> Rule: ...
    def list_rules(
        self, prefix: str | None = None, limit: int = 100, next_token: str | None = None
    ) -> tuple[list[Rule], str | None]: ...
    def set_state(self, name: str, state: str, now: float) -> Rule: ...
    def delete_rule(self, name: str) -> None: ...
    def claim_firing(
        self, name: str, instant: float, node: str, now: float, lease_s: float = FIRING_LEASE_S
    ) -> bool:
        """Atomically: True when ``node`` wins firing ``instant`` of rule ``name`` (see
        :func:`wins_claim`), which is then its until ``now + lease_s``; False when another
        node has it or it is not owed. Of nodes racing for one instant, one wins."""
        ...

    def mark_fired(self, name: str, fired_at: float) -> None: ...
    def put_targets(self, rule: str, targets: Sequence[Target]) -> None: ...
    def remove_targets(self, rule: str, ids: Sequence[str]) -> None: ...
    def targets(self, rule: str) -> list[Target]: ...
    def schedules(self) -> list[tuple[Rule, list[Target]]]: ...
    def sync_managed(
        self, manager: str, wanted: Sequence[tuple[Rule, Target]], now: float
    ) -> list[str]: ...
    def close(self) -> None: ...


# -- what both stores decide alike (pure) --------------------------------------------------------


def check_rule(expression: str, state: str) -> None:
    """PutRule's checks, before any store is read."""
    check_expression(expression)
    if state not in STATES:
        raise ValidationException(f"State {state!r} must be one of {', '.join(STATES)}")


def put(
    old: Rule | None,
    name: str,
    expression: str,
    now: float,
    state: str,
    description: str | None,
    managed_by: str | None,
) -> Rule:
    """The rule PutRule leaves (``now`` already an ``instant``): see ``RuleStore.put_rule``."""
    if old is None:
        return Rule(name, expression, state, now, now, description, None, managed_by)
    rearm = old.expression != expression or (not old.enabled and state == ENABLED)
    return replace(
        old,
        expression=expression,
        state=state,
        description=description,
        changed_at=now if rearm else old.changed_at,
        managed_by=managed_by,
    )


def with_state(old: Rule, state: str, now: float) -> Rule:
    """EnableRule / DisableRule: an enabled rule owes no firing from while it was off."""
    rule = replace(old, state=state)
    if state == ENABLED and not old.enabled:
        rule = replace(rule, changed_at=instant(now))
    return rule


def merged(old: Rule | None, new: Rule, manager: str, now: float) -> Rule:
    """A configuration-managed rule as ``sync_managed`` keeps it."""
    if old is None:
        return replace(new, created_at=now, changed_at=now, last_fired=None, managed_by=manager)
    rearm = old.expression != new.expression or (not old.enabled and new.enabled)
    return replace(
        old,
        expression=new.expression,
        state=new.state,
        description=new.description,
        changed_at=now if rearm else old.changed_at,
        managed_by=manager,
    )


def fired(old: Rule, fired_at: float) -> Rule:
    """The rule once firing ``fired_at`` went out (a late mark never moves it back)."""
    last = fired_at if old.last_fired is None else max(old.last_fired, fired_at)
    return replace(old, last_fired=last)


def not_found(name: str) -> ResourceNotFoundException:
    return ResourceNotFoundException(f"Rule {name} does not exist on EventBus default.")


def check_target_count(have: Sequence[Target], adding: Sequence[Target]) -> None:
    """At most ``MAX_TARGETS`` a rule, counting the Ids replaced once."""
    if len({t.id for t in have} | {t.id for t in adding}) > MAX_TARGETS:
        raise LimitExceededException(
            f"The requested resource exceeds the maximum number allowed: a rule has at "
            f"most {MAX_TARGETS} targets."
        )


def has_targets() -> ValidationException:
    return ValidationException("Rule can't be deleted since it has targets.")


def page_start(prefix: str | None, next_token: str | None) -> tuple[str, bool]:
    """Where a ListRules page starts: ``(name, exclusive)``, names above (``exclusive``) or
    from ``name`` on."""
    after = _decode_token(next_token)
    start = prefix or ""
    if after and after >= start:
        return after, True
    return start, False


def page(rules: Sequence[Rule], prefix: str | None, limit: int) -> tuple[list[Rule], str | None]:
    """A ListRules page from up to ``limit + 1`` rules read in name order from its start."""
    kept = [rule for rule in rules if rule.name.startswith(prefix)] if prefix else list(rules)
    token = encode_token(kept[limit - 1].name) if len(kept) > limit else None
    return kept[:limit], token


def target_function(arn: str) -> str | None:
    """The function name a target ARN (or a plain function name) names; None for anything
    that is not a Lambda function."""
    if not arn.startswith("arn:"):
        return arn if arn and ":" not in arn else None
    parsed = parse_function_arn(arn)
    if parsed is None or parsed.partition != "aws" or not parsed.name:
        return None
    return parsed.name


def check_expression(expression: str) -> None:
    """The schedule parser's ValidationException, with its precise reason."""
    try:
        parse(expression)
    except ValueError as exc:  # ScheduleExpressionError, worded with the expression
        raise ValidationException(str(exc)) from None


class RuleStore(SqliteFile):
    """Schedule rules in the SQLite file at ``path`` (shared with the batch store).

    One connection, calls serialized by a lock: use it from any thread, one call at a time.
    """

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout_s: float = 10.0) -> None:
        self._open(path, busy_timeout_s)

    def __enter__(self) -> RuleStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _migrate(self) -> None:
        with self._write() as db:
            self._upgrade(db, COMPONENT, MIGRATIONS)

    @property
    def schema_version(self) -> int:
        return self._version(COMPONENT)

    # -- rules ----------------------------------------------------------------------------------

    def put_rule(
        self,
        name: str,
        expression: str,
        now: float,
        *,
        state: str = ENABLED,
        description: str | None = None,
        managed_by: str | None = None,
    ) -> Rule:
        """Create the rule, or replace its expression, state and description (PutRule).

        An update keeps the creation time (the rate anchor); a new expression, or a rule
        enabled again, counts its firings from ``now``.
        """
        check_rule(expression, state)
        now = instant(now)
        with self._write() as db:
            rule = put(_rule(db, name), name, expression, now, state, description, managed_by)
            _save(db, rule)
        return rule

    def get_rule(self, name: str) -> Rule:
        with self._read() as db:
            return _existing(db, name)

    def list_rules(
        self, prefix: str | None = None, limit: int = 100, next_token: str | None = None
    ) -> tuple[list[Rule], str | None]:
        """Rules by name, ``limit`` a page; pass the returned token back for the next."""
        bound, exclusive = page_start(prefix, next_token)
        where = "name > ?" if exclusive else "name >= ?"
        with self._read() as db:
            rows = db.execute(
                f"SELECT {_RULE_COLUMNS} FROM schedule_rules WHERE {where} ORDER BY name LIMIT ?",
                (bound, limit + 1),
            ).fetchall()
        return page([_rule_row(row) for row in rows], prefix, limit)

    def set_state(self, name: str, state: str, now: float) -> Rule:
        """EnableRule / DisableRule: an enabled rule owes no firing from while it was off."""
        with self._write() as db:
            rule = with_state(_existing(db, name), state, now)
            _save(db, rule)
        return rule

    def delete_rule(self, name: str) -> None:
        """DeleteRule: refused while the rule has targets, as EventBridge does; deleting a
        rule that does not exist succeeds."""
        with self._write() as db:
            if db.execute("SELECT 1 FROM schedule_targets WHERE rule = ?", (name,)).fetchone():
                raise has_targets()
            db.execute("DELETE FROM schedule_rules WHERE name = ?", (name,))

    def claim_firing(
        self, name: str, instant: float, node: str, now: float, lease_s: float = FIRING_LEASE_S
    ) -> bool:
        """Firing ``instant`` of ``name`` is ``node``'s to send, if it wins it (see
        :meth:`Rules.claim_firing`); the write lock makes racing claims one after another."""
        with self._write() as db:
            if not wins_claim(_rule(db, name), _claim(db, name), instant, node, now):
                return False
            db.execute(
                "UPDATE schedule_rules SET claimed = ?, claim_node = ?, claim_until = ?"
                " WHERE name = ?",
                (instant, node, now + lease_s, name),
            )
        return True

    def mark_fired(self, name: str, fired_at: float) -> None:
        """Record a firing (a rule deleted meanwhile is left deleted)."""
        with self._write() as db:
            db.execute(
                "UPDATE schedule_rules SET last_fired = MAX(COALESCE(last_fired, ?), ?)"
                " WHERE name = ?",
                (fired_at, fired_at, name),
            )

    # -- targets --------------------------------------------------------------------------------

    def put_targets(self, rule: str, targets: Sequence[Target]) -> None:
        """Add targets, or replace those with the same Id; at most ``MAX_TARGETS`` a rule."""
        with self._write() as db:
            _existing(db, rule)
            check_target_count(_targets(db, rule), targets)
            seq = db.execute(
                "SELECT COALESCE(MAX(seq), 0) FROM schedule_targets WHERE rule = ?", (rule,)
            ).fetchone()[0]
            for target in targets:
                seq += 1
                db.execute(
                    "INSERT INTO schedule_targets (rule, id, arn, input, seq)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (rule, id) DO UPDATE SET"
                    " arn = excluded.arn, input = excluded.input",
                    (rule, target.id, target.arn, target.input, seq),
                )

    def remove_targets(self, rule: str, ids: Sequence[str]) -> None:
        """Remove the targets named (an Id the rule lacks is no error)."""
        with self._write() as db:
            _existing(db, rule)
            db.executemany(
                "DELETE FROM schedule_targets WHERE rule = ? AND id = ?", [(rule, i) for i in ids]
            )

    def targets(self, rule: str) -> list[Target]:
        with self._read() as db:
            _existing(db, rule)
            return _targets(db, rule)

    def schedules(self) -> list[tuple[Rule, list[Target]]]:
        """Every enabled rule with its targets (a rule without targets still fires: to
        nobody, so that a target added later is owed no firing from before it)."""
        with self._read() as db:
            rows = db.execute(
                f"SELECT {_RULE_COLUMNS} FROM schedule_rules WHERE state = ? ORDER BY name",
                (ENABLED,),
            ).fetchall()
            rules = [_rule_row(row) for row in rows]
            return [(rule, _targets(db, rule.name)) for rule in rules]

    def sync_managed(
        self, manager: str, wanted: Sequence[tuple[Rule, Target]], now: float
    ) -> list[str]:
        """Make the rules managed by ``manager`` exactly ``wanted`` (each with one target),
        in one transaction; returns the names of the managed rules removed.

        A rule created through the API under a name the configuration now claims becomes
        managed; creation times (rate anchors) and firing records of kept rules survive.
        """
        for rule, _ in wanted:
            check_expression(rule.expression)
        names = {rule.name for rule, _ in wanted}
        now = instant(now)
        with self._write() as db:
            stale = [
                row[0]
                for row in db.execute(
                    "SELECT name FROM schedule_rules WHERE managed_by = ?", (manager,)
                ).fetchall()
                if row[0] not in names
            ]
            for name in stale:
                db.execute("DELETE FROM schedule_targets WHERE rule = ?", (name,))
                db.execute("DELETE FROM schedule_rules WHERE name = ?", (name,))
            for rule, target in wanted:
                _save(db, merged(_rule(db, rule.name), rule, manager, now))
                db.execute("DELETE FROM schedule_targets WHERE rule = ?", (rule.name,))
                db.execute(
                    "INSERT INTO schedule_targets (rule, id, arn, input, seq)"
                    " VALUES (?, ?, ?, ?, 1)",
                    (rule.name, target.id, target.arn, target.input),
                )
        return stale


def _rule(db: sqlite3.Connection, name: str) -> Rule | None:
    row = db.execute(
        f"SELECT {_RULE_COLUMNS} FROM schedule_rules WHERE name = ?", (name,)
    ).fetchone()
    return None if row is None else _rule_row(row)


def _existing(db: sqlite3.Connection, name: str) -> Rule:
    rule = _rule(db, name)
    if rule is None:
        raise not_found(name)
    return rule


def _claim(db: sqlite3.Connection, name: str) -> Claim | None:
    row = db.execute(
        "SELECT claimed, claim_node, claim_until FROM schedule_rules WHERE name = ?", (name,)
    ).fetchone()
    return None if row is None or row[0] is None else Claim(*row)


def _save(db: sqlite3.Connection, rule: Rule) -> None:
    db.execute(
        f"INSERT INTO schedule_rules ({_RULE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (name) DO UPDATE SET expression = excluded.expression,"
        " state = excluded.state, description = excluded.description,"
        " created_at = excluded.created_at, changed_at = excluded.changed_at,"
        " last_fired = excluded.last_fired, managed_by = excluded.managed_by",
        (
            rule.name,
            rule.expression,
            rule.state,
            rule.description,
            rule.created_at,
            rule.changed_at,
            rule.last_fired,
            rule.managed_by,
        ),
    )


def _rule_row(row: Sequence[Any]) -> Rule:
    name, expression, state, description, created, changed, fired, managed = row
    return Rule(name, expression, state, created, changed, description, fired, managed)


def _targets(db: sqlite3.Connection, rule: str) -> list[Target]:
    rows = db.execute(
        "SELECT id, arn, input FROM schedule_targets WHERE rule = ? ORDER BY seq", (rule,)
    ).fetchall()
    return [Target(*row) for row in rows]


def _decode_token(token: str | None) -> str:
    """The name a page starts after ("" for the first page)."""
    if not token:
        return ""
    name = decode_token(token, strict=True)
    if name is None:
        raise ValidationException(f"NextToken {token!r} is not a token this service gave")
    return name
