"""Schedule rules in Redis, for several nodes on one store: the rules, targets, errors and
paging of :class:`~.store.RuleStore`, and the firing claim that lets one node send a firing.

Keys, under ``<prefix>:rules:`` (:class:`~runtime.redisdb.RedisDb`)::

    version          the component's transaction counter (every write bumps it)
    names            sorted set of every rule's name, all scored 0: name order (ZRANGEBYLEX)
    rule:<name>      the rule: a JSON object of Rule's fields
    targets:<name>   its targets in order: a JSON list of [id, arn, input] (absent: none)
    claim:<name>     its latest firing claim: a JSON [instant, node, until] (absent: none)

Every write is one :meth:`~runtime.redisdb.RedisDb._transact` (read the keys, decide in
Python with the same functions as the SQLite store, write in ``MULTI``/``EXEC``): two nodes
racing for one firing are two transactions on the component's version key, so one commits and
the other runs again, finds the claim taken and loses. Reads are one consistent view
(:meth:`~runtime.redisdb.RedisDb._read`), fetched with ``MGET``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import orjson
import redis

from ..redisdb import DEFAULT_PREFIX, RedisDb, Txn
from .store import (
    ENABLED,
    FIRING_LEASE_S,
    Claim,
    Rule,
    Target,
    check_expression,
    check_rule,
    check_target_count,
    fired,
    has_targets,
    instant,
    merged,
    not_found,
    page,
    page_start,
    put,
    wins_claim,
    with_state,
)


class RedisRuleStore(RedisDb):
    """Schedule rules in the Redis at ``url`` (see the module docstring); any number of
    nodes, threads and processes may call it at once.

    ``client`` is an existing redis-py client to share (left open by ``close``);
    ``require_append_only`` refuses a server that would lose acknowledged writes."""

    kind = "rule store"
    component = "rules"

    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        require_append_only: bool = True,
        client: redis.Redis | None = None,
    ) -> None:
        self._open(url, prefix=prefix, require_append_only=require_append_only, client=client)

    def __enter__(self) -> RedisRuleStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
        """PutRule, as :meth:`.store.RuleStore.put_rule`."""
        check_rule(expression, state)
        now = instant(now)

        def txn(pipe: Txn) -> Rule:
            old = self._rule(pipe, name)
            rule = put(old, name, expression, now, state, description, managed_by)
            pipe.multi()
            self._save(pipe, rule)
            return rule

        return self._transact(txn)

    def get_rule(self, name: str) -> Rule:
        return self._read(lambda pipe: self._existing(pipe, name))

    def list_rules(
        self, prefix: str | None = None, limit: int = 100, next_token: str | None = None
    ) -> tuple[list[Rule], str | None]:
        """Rules by name, ``limit`` a page; pass the returned token back for the next."""
        bound, exclusive = page_start(prefix, next_token)
        low = ("(" if exclusive else "[") + bound if bound else "-"

        def read(pipe: Txn) -> list[Rule]:
            names = pipe.zrangebylex(self.key("names"), low, "+", start=0, num=limit + 1)
            return [rule for rule in self._rules(pipe, names) if rule is not None]

        return page(self._read(read), prefix, limit)

    def set_state(self, name: str, state: str, now: float) -> Rule:
        """EnableRule / DisableRule: an enabled rule owes no firing from while it was off."""

        def txn(pipe: Txn) -> Rule:
            rule = with_state(self._existing(pipe, name), state, now)
            pipe.multi()
            self._save(pipe, rule)
            return rule

        return self._transact(txn)

    def delete_rule(self, name: str) -> None:
        """DeleteRule: refused while the rule has targets, as EventBridge does; deleting a
        rule that does not exist succeeds."""

        def txn(pipe: Txn) -> None:
            if pipe.exists(self.key("targets", name)):
                raise has_targets()
            pipe.multi()
            self._drop(pipe, name)

        self._transact(txn)

    def claim_firing(
        self, name: str, instant: float, node: str, now: float, lease_s: float = FIRING_LEASE_S
    ) -> bool:
        """Firing ``instant`` of ``name`` is ``node``'s to send, if it wins it (see
        :meth:`.store.Rules.claim_firing`)."""

        def txn(pipe: Txn) -> bool:
            claim_key = self.key("claim", name)
            raw = pipe.get(claim_key)
            claim = None if raw is None else Claim(*orjson.loads(raw))
            won = wins_claim(self._rule(pipe, name), claim, instant, node, now)
            pipe.multi()
            if won:
                pipe.set(claim_key, orjson.dumps([instant, node, now + lease_s]))
            return won

        return self._transact(txn)

    def mark_fired(self, name: str, fired_at: float) -> None:
        """Record a firing (a rule deleted meanwhile is left deleted)."""

        def txn(pipe: Txn) -> None:
            old = self._rule(pipe, name)
            pipe.multi()
            if old is not None:
                self._save(pipe, fired(old, fired_at))

        self._transact(txn)

    # -- targets --------------------------------------------------------------------------------

    def put_targets(self, rule: str, targets: Sequence[Target]) -> None:
        """Add targets, or replace those with the same Id (in their place); at most
        ``MAX_TARGETS`` a rule."""

        def txn(pipe: Txn) -> None:
            self._existing(pipe, rule)
            have = self._targets(pipe, rule)
            check_target_count(have, targets)
            order = {target.id: i for i, target in enumerate(have)}
            for target in targets:
                if target.id in order:
                    have[order[target.id]] = target
                else:
                    order[target.id] = len(have)
                    have.append(target)
            pipe.multi()
            self._save_targets(pipe, rule, have)

        self._transact(txn)

    def remove_targets(self, rule: str, ids: Sequence[str]) -> None:
        """Remove the targets named (an Id the rule lacks is no error)."""
        gone = set(ids)

        def txn(pipe: Txn) -> None:
            self._existing(pipe, rule)
            kept = [target for target in self._targets(pipe, rule) if target.id not in gone]
            pipe.multi()
            self._save_targets(pipe, rule, kept)

        self._transact(txn)

    def targets(self, rule: str) -> list[Target]:
        def read(pipe: Txn) -> list[Target]:
            self._existing(pipe, rule)
            return self._targets(pipe, rule)

        return self._read(read)

    def schedules(self) -> list[tuple[Rule, list[Target]]]:
        """Every enabled rule with its targets (a rule without targets still fires: to
        nobody, so that a target added later is owed no firing from before it)."""

        def read(pipe: Txn) -> list[tuple[Rule, list[Target]]]:
            names = pipe.zrange(self.key("names"), 0, -1)
            rules = [r for r in self._rules(pipe, names) if r is not None and r.enabled]
            if not rules:
                return []
            raws = pipe.mget([self.key("targets", rule.name) for rule in rules])
            return [(rule, _targets(raw)) for rule, raw in zip(rules, raws, strict=True)]

        return self._read(read)

    def sync_managed(
        self, manager: str, wanted: Sequence[tuple[Rule, Target]], now: float
    ) -> list[str]:
        """Make the rules managed by ``manager`` exactly ``wanted`` (each with one target),
        in one transaction; returns the names of the managed rules removed (see
        :meth:`.store.RuleStore.sync_managed`)."""
        for rule, _ in wanted:
            check_expression(rule.expression)
        names = {rule.name for rule, _ in wanted}
        now = instant(now)

        def txn(pipe: Txn) -> list[str]:
            every = pipe.zrange(self.key("names"), 0, -1)
            rules = {r.name: r for r in self._rules(pipe, every) if r is not None}
            stale = [
                name
                for name, rule in rules.items()
                if rule.managed_by == manager and name not in names
            ]
            kept: dict[str, tuple[Rule, Target]] = {}
            for new, target in wanted:
                old = kept[new.name][0] if new.name in kept else rules.get(new.name)
                kept[new.name] = (merged(old, new, manager, now), target)
            pipe.multi()
            for name in stale:
                self._drop(pipe, name)
            for rule, target in kept.values():
                self._save(pipe, rule)
                self._save_targets(pipe, rule.name, [target])
            return stale

        return self._transact(txn)

    # -- keys -----------------------------------------------------------------------------------

    def _rule(self, pipe: Txn, name: str) -> Rule | None:
        raw = pipe.get(self.key("rule", name))
        return None if raw is None else _rule(raw)

    def _existing(self, pipe: Txn, name: str) -> Rule:
        rule = self._rule(pipe, name)
        if rule is None:
            raise not_found(name)
        return rule

    def _rules(self, pipe: Txn, names: Sequence[Any]) -> list[Rule | None]:
        """The rules named (as ZRANGE answers them: bytes), in order, in one round trip."""
        if not names:
            return []
        raws = pipe.mget([self.key("rule", _text(name)) for name in names])
        return [None if raw is None else _rule(raw) for raw in raws]

    def _targets(self, pipe: Txn, rule: str) -> list[Target]:
        return _targets(pipe.get(self.key("targets", rule)))

    def _save(self, pipe: Txn, rule: Rule) -> None:
        pipe.set(self.key("rule", rule.name), orjson.dumps(asdict(rule)))
        pipe.zadd(self.key("names"), {rule.name: 0})

    def _save_targets(self, pipe: Txn, rule: str, targets: Sequence[Target]) -> None:
        key = self.key("targets", rule)
        if targets:
            pipe.set(key, orjson.dumps([[t.id, t.arn, t.input] for t in targets]))
        else:
            pipe.delete(key)

    def _drop(self, pipe: Txn, name: str) -> None:
        """A rule gone with its targets and its claim (a rule made again under its name starts
        afresh, as a new row does in SQLite)."""
        pipe.delete(self.key("rule", name), self.key("targets", name), self.key("claim", name))
        pipe.zrem(self.key("names"), name)


def _text(name: bytes | str) -> str:
    return name.decode() if isinstance(name, bytes) else name


def _rule(raw: bytes | str) -> Rule:
    fields: dict[str, Any] = orjson.loads(raw)
    return Rule(**fields)


def _targets(raw: bytes | str | None) -> list[Target]:
    return [] if raw is None else [Target(*entry) for entry in orjson.loads(raw)]
