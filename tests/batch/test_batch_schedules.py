"""Schedule rules on virtual time: each instant fires once, missed instants after downtime fire
once, disabled rules stay quiet, updates take effect at once; the durable rule store and the
configuration file's [schedules].

Every test that takes ``rules`` (or ``open_rules``) runs on both stores: SQLite (``sqlite``)
and Redis (``redis``)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from redis_support import RedisStore

from runtime.asyncinvoke.store import SqliteEventStore
from runtime.batch import SqliteStore
from runtime.config import PoolConfig
from runtime.configfile import ScheduleConfig
from runtime.errors import ResourceNotFoundException
from runtime.schedules.redis_store import RedisRuleStore
from runtime.schedules.runner import ScheduleRunner, plan, sync_config
from runtime.schedules.store import (
    CONFIG_MANAGER,
    DISABLED,
    ENABLED,
    MIGRATIONS,
    SCHEMA_VERSION,
    LimitExceededException,
    Rules,
    RuleStore,
    Target,
    ValidationException,
    target_function,
)

POOL = PoolConfig(region="eu-west-1", account_id="123456789012")
T0 = datetime(2024, 5, 1, 11, 58, 0, tzinfo=timezone.utc).timestamp()
FN = "arn:aws:lambda:eu-west-1:123456789012:function:report"


class Sink:
    """A backlog that records what it is sent; ``fail`` puts are refused first."""

    def __init__(self, fail: int = 0) -> None:
        self.sent: list[tuple[str, Any, str]] = []
        self.fail = fail

    async def put_event(self, function: str, payload: bytes, request_id: str) -> None:
        if self.fail:
            self.fail -= 1
            raise OSError("disk full")
        self.sent.append((function, orjson.loads(payload), request_id))

    def times(self) -> list[str]:
        return [payload["time"] for _, payload, _ in self.sent]


Opener = Callable[[], Rules]


@pytest.fixture(params=["sqlite", "redis"])
def open_rules(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens a store over this test's rules (each call another store on the same rules, as
    a restart or another node opens it): the SQLite file, or the test's Redis prefix."""
    if request.param == "sqlite":

        def make() -> Rules:
            return RuleStore(tmp_path / "batch.sqlite3")

    else:
        server: RedisStore = request.getfixturevalue("redis_store")

        def make() -> Rules:
            return RedisRuleStore(server.url, prefix=server.prefix)

    opened: list[Rules] = []

    def opener() -> Rules:
        opened.append(make())
        return opened[-1]

    yield opener
    for store in opened:
        store.close()


@pytest.fixture
def rules(open_rules: Opener) -> Rules:
    return open_rules()


def at(offset_s: float) -> float:
    return T0 + offset_s


def iso(offset_s: float) -> str:
    return datetime.fromtimestamp(at(offset_s), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


async def run(runner: ScheduleRunner, *offsets: float) -> list[float | None]:
    """``run_due`` at each offset; the next instants it reported, as offsets."""
    out = []
    for offset in offsets:
        next_at = await runner.run_due(at(offset))
        out.append(None if next_at is None else next_at - T0)
    return out


# -- firing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "offsets", "fired", "next_offsets"),
    [
        pytest.param(
            "rate(5 minutes)", [299, 300, 300, 301], [300], [300, 600, 600, 600], id="rate-once"
        ),
        pytest.param(
            "rate(5 minutes)", [3 * 3600 + 10], [3 * 3600], [3 * 3600 + 300], id="downtime-once"
        ),
        pytest.param(
            "cron(0 12 * * ? *)", [119.999, 120, 121], [120], [120, 86_520, 86_520], id="cron-noon"
        ),
        pytest.param(
            "cron(0/1 * * * ? *)", [60, 60, 179], [60, 120], [120, 120, 180], id="every-minute"
        ),
        pytest.param("cron(0 0 1 1 ? 2020)", [10_000], [], [None], id="never-again"),
    ],
)
def test_instants_fire_once(
    arun: Any,
    rules: Rules,
    expression: str,
    offsets: list[float],
    fired: list[float],
    next_offsets: list[float | None],
) -> None:
    async def main() -> None:
        rules.put_rule("r", expression, T0)
        rules.put_targets("r", [Target("t1", FN)])
        sink = Sink()
        runner = ScheduleRunner(sink, rules, POOL)
        assert await run(runner, *offsets) == next_offsets
        assert sink.times() == [iso(o) for o in fired]

    arun(main())


def test_the_scheduled_event_document(arun: Any, rules: Rules) -> None:
    async def main() -> None:
        rules.put_rule("nightly", "rate(1 minute)", T0)
        rules.put_targets("nightly", [Target("a", FN), Target("b", "plain-name")])
        sink = Sink()
        await ScheduleRunner(sink, rules, POOL).run_due(at(60))
        (fn_a, event_a, rid_a), (fn_b, event_b, rid_b) = sink.sent
        assert (fn_a, fn_b) == ("report", "plain-name")
        arn = "arn:aws:events:eu-west-1:123456789012:rule/nightly"
        assert event_a == {
            "version": "0",
            "id": event_a["id"],
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": "123456789012",
            "time": "2024-05-01T11:59:00Z",
            "region": "eu-west-1",
            "resources": [arn],
            "detail": {},
        }
        assert event_b == event_a  # one event per firing, delivered to each target
        assert rid_a != rid_b

    arun(main())


def test_target_input_replaces_the_event_and_other_services_are_skipped(
    arun: Any, rules: Rules
) -> None:
    async def main() -> None:
        rules.put_rule("r", "rate(1 minute)", T0)
        rules.put_targets(
            "r",
            [
                Target("raw", FN, '{"custom": [1, 2]}'),
                Target("queue", "arn:aws:sqs:eu-west-1:123456789012:q"),
            ],
        )
        sink = Sink()
        await ScheduleRunner(sink, rules, POOL).run_due(at(60))
        assert [(f, p) for f, p, _ in sink.sent] == [("report", {"custom": [1, 2]})]

    arun(main())


def test_disabled_rules_stay_quiet_and_owe_nothing_when_enabled(arun: Any, rules: Rules) -> None:
    async def main() -> None:
        rules.put_rule("r", "rate(1 minute)", T0, state=DISABLED)
        rules.put_targets("r", [Target("t", FN)])
        sink = Sink()
        runner = ScheduleRunner(sink, rules, POOL)
        assert await run(runner, 600) == [None]
        rules.set_state("r", ENABLED, at(630))
        assert await run(runner, 630, 660) == [660, 720]
        rules.set_state("r", DISABLED, at(700))
        assert await run(runner, 900) == [None]
        assert sink.times() == [iso(660)]

    arun(main())


def test_updates_take_effect_at_once(arun: Any, rules: Rules) -> None:
    async def main() -> None:
        rules.put_rule("r", "rate(1 hour)", T0)
        rules.put_targets("r", [Target("t", FN)])
        sink = Sink()
        runner = ScheduleRunner(sink, rules, POOL)
        assert await run(runner, 1800) == [3600]
        rules.put_rule("r", "rate(1 minute)", at(1830))  # the anchor stays the creation
        assert await run(runner, 1830, 1860) == [1860, 1920]
        assert sink.times() == [iso(1860)]
        updated = rules.get_rule("r")
        assert (updated.created_at, updated.changed_at, updated.last_fired) == (
            T0,
            at(1830),
            at(1860),
        )

    arun(main())


def test_a_target_added_late_is_owed_nothing_from_before(arun: Any, rules: Rules) -> None:
    async def main() -> None:
        rules.put_rule("r", "rate(1 minute)", T0)
        sink = Sink()
        runner = ScheduleRunner(sink, rules, POOL)
        await run(runner, 60)  # fires to nobody
        rules.put_targets("r", [Target("t", FN)])
        assert await run(runner, 90, 120) == [120, 180]
        assert sink.times() == [iso(120)]

    arun(main())


def test_a_failed_send_is_sent_again_under_the_same_id(arun: Any, rules: Rules) -> None:
    async def main() -> None:
        rules.put_rule("r", "rate(1 minute)", T0)
        rules.put_targets("r", [Target("t", FN)])
        (owed,) = plan(rules.get_rule("r"), rules.targets("r"), at(60), POOL).sends
        sink = Sink(fail=1)
        runner = ScheduleRunner(sink, rules, POOL)
        await run(runner, 60)
        assert (sink.sent, rules.get_rule("r").last_fired) == ([], None)
        await run(runner, 61)
        ((_, event, rid),) = sink.sent
        assert (event["time"], rid) == (iso(60), owed.request_id)
        assert rules.get_rule("r").last_fired == at(60)
        (following,) = plan(rules.get_rule("r"), rules.targets("r"), at(120), POOL).sends
        assert following.request_id != rid  # the next instant is another event

    arun(main())


def test_firings_survive_a_restart(arun: Any, open_rules: Opener) -> None:
    async def main() -> None:
        first = open_rules()
        first.put_rule("r", "rate(1 minute)", T0)
        first.put_targets("r", [Target("t", FN)])
        await ScheduleRunner(Sink(), first, POOL).run_due(at(60))
        first.close()
        second = open_rules()
        sink = Sink()
        runner = ScheduleRunner(sink, second, POOL)
        assert await run(runner, 61, 3600 + 5) == [120, 3660]
        assert sink.times() == [iso(3600)]  # the hour down: one firing

    arun(main())


def test_start_fires_in_the_background(arun: Any, rules: Rules) -> None:
    async def main() -> None:
        rules.put_rule("r", "rate(1 minute)", T0)
        rules.put_targets("r", [Target("t", FN)])
        sink = Sink()
        runner = ScheduleRunner(sink, rules, POOL, clock=lambda: at(59))
        runner.start()
        try:
            await asyncio.sleep(0.05)
            assert sink.sent == []
            runner.clock = lambda: at(60)
            runner.wake()
            for _ in range(200):
                if sink.sent:
                    break
                await asyncio.sleep(0.01)
            assert sink.times() == [iso(60)]
        finally:
            await runner.close()

    arun(main())


# -- the pure parts ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arn", "function"),
    [
        ("arn:aws:lambda:us-east-1:000000000000:function:f", "f"),
        ("arn:aws:lambda:us-east-1:000000000000:function:f:$LATEST", "f"),
        ("f", "f"),
        ("arn:aws:sqs:us-east-1:000000000000:q", None),
        ("arn:aws:lambda:us-east-1:000000000000:layer:x:1", None),
        ("a:b", None),
        ("", None),
    ],
)
def test_target_function(arn: str, function: str | None) -> None:
    assert target_function(arn) == function


# -- the rule store ---------------------------------------------------------------------------


def test_rule_store_rules(rules: Rules) -> None:
    with pytest.raises(ValidationException, match=r"one of them must be '\?'"):
        rules.put_rule("r", "cron(0 12 * * * *)", T0)
    with pytest.raises(ResourceNotFoundException, match="Rule nope does not exist"):
        rules.get_rule("nope")
    rules.put_rule("r", "rate(1 hour)", T0, description="d")
    rules.put_targets("r", [Target(str(i), FN) for i in range(5)])
    rules.put_targets("r", [Target("0", FN, "{}")])  # same Id: replaced, not added
    with pytest.raises(LimitExceededException):
        rules.put_targets("r", [Target("5", FN)])
    assert [(t.id, t.input) for t in rules.targets("r")][:2] == [("0", "{}"), ("1", None)]
    with pytest.raises(ValidationException, match=r"Rule can't be deleted since it has targets\."):
        rules.delete_rule("r")
    rules.remove_targets("r", [str(i) for i in range(5)] + ["absent"])
    rules.delete_rule("r")
    rules.delete_rule("r")  # deleting what is gone is no error
    assert rules.list_rules() == ([], None)


def test_list_rules_pages_by_name_and_prefix(rules: Rules) -> None:
    for name in ["b1", "a", "b3", "b2", "c"]:
        rules.put_rule(name, "rate(1 hour)", T0)
    page, token = rules.list_rules("b", 2)
    assert [r.name for r in page] == ["b1", "b2"]
    page, token = rules.list_rules("b", 2, token)
    assert ([r.name for r in page], token) == (["b3"], None)
    page, token = rules.list_rules(None, 4)
    assert [r.name for r in page] == ["a", "b1", "b2", "b3"]
    assert [r.name for r in rules.list_rules(None, 4, token)[0]] == ["c"]
    with pytest.raises(ValidationException, match="NextToken"):
        rules.list_rules(None, 4, "%%%")


def test_missing_rules_and_marks(rules: Rules) -> None:
    for call in (
        lambda: rules.set_state("nope", ENABLED, T0),
        lambda: rules.targets("nope"),
        lambda: rules.put_targets("nope", [Target("t", FN)]),
        lambda: rules.remove_targets("nope", ["t"]),
    ):
        with pytest.raises(
            ResourceNotFoundException, match=r"^Rule nope does not exist on EventBus default\.$"
        ):
            call()
    with pytest.raises(ValidationException, match="State 'ON' must be one of ENABLED, DISABLED"):
        rules.put_rule("r", "rate(1 hour)", T0, state="ON")
    rules.mark_fired("nope", at(60))  # a rule deleted meanwhile stays deleted
    assert rules.list_rules() == ([], None)
    rules.put_rule("r", "rate(1 minute)", T0)
    rules.mark_fired("r", at(120))
    rules.mark_fired("r", at(60))  # a late mark never moves the record back
    assert rules.get_rule("r").last_fired == at(120)


def test_put_targets_replaces_in_place_and_appends_in_order(rules: Rules) -> None:
    rules.put_rule("r", "rate(1 hour)", T0)
    rules.put_targets("r", [Target("b", FN), Target("a", FN)])
    rules.put_targets("r", [Target("c", FN), Target("b", "other", "[1]"), Target("c", FN, "{}")])
    assert rules.targets("r") == [
        Target("b", "other", "[1]"),
        Target("a", FN),
        Target("c", FN, "{}"),
    ]
    rules.remove_targets("r", ["b", "c"])
    assert rules.targets("r") == [Target("a", FN)]
    ((rule, targets),) = rules.schedules()
    assert (rule.name, targets) == ("r", [Target("a", FN)])
    rules.set_state("r", DISABLED, at(10))
    assert rules.schedules() == []


def test_claim_firing(rules: Rules) -> None:
    """One node has a firing until its lease ends; an instant fired, or of a rule disabled or
    gone, is nobody's."""
    rules.put_rule("r", "rate(1 minute)", T0)
    assert not rules.claim_firing("r", T0, "a", at(1))  # created then: owes nothing
    assert rules.claim_firing("r", at(60), "a", at(60), 30)
    assert not rules.claim_firing("r", at(60), "b", at(60))  # a has it
    assert rules.claim_firing("r", at(60), "a", at(61), 30)  # its own again (a resend)
    assert not rules.claim_firing("r", at(60), "b", at(90.999))
    assert rules.claim_firing("r", at(60), "b", at(91))  # a's lease ran out
    assert not rules.claim_firing("r", at(60), "a", at(92))
    assert rules.claim_firing("r", at(120), "c", at(120))  # a later instant is another firing
    rules.mark_fired("r", at(120))
    assert not rules.claim_firing("r", at(120), "c", at(121))  # fired
    assert rules.claim_firing("r", at(180), "a", at(180))
    rules.set_state("r", DISABLED, at(181))
    assert not rules.claim_firing("r", at(240), "b", at(240))
    rules.set_state("r", ENABLED, at(250))
    assert not rules.claim_firing("r", at(240), "b", at(250))  # owed nothing from while off
    assert not rules.claim_firing("nope", at(60), "a", at(60))
    rules.delete_rule("r")
    rules.put_rule("r", "rate(1 minute)", at(400))  # a new rule: the old claim went with it
    assert rules.claim_firing("r", at(460), "b", at(460))


def test_a_rule_file_of_version_1_gets_the_claim(tmp_path: Path) -> None:
    path = tmp_path / "batch.sqlite3"
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute(
            "CREATE TABLE warmstart_meta"
            " (component TEXT PRIMARY KEY, version INTEGER NOT NULL) WITHOUT ROWID"
        )
        for statement in MIGRATIONS[0]:
            db.execute(statement)
        db.execute("INSERT INTO warmstart_meta VALUES ('schedule_rules', 1)")
        db.execute(
            "INSERT INTO schedule_rules (name, expression, state, created_at, changed_at,"
            " last_fired) VALUES ('r', 'rate(1 minute)', 'ENABLED', ?, ?, ?)",
            (T0, T0, at(60)),
        )
    finally:
        db.close()
    with RuleStore(path) as rules:
        assert rules.schema_version == SCHEMA_VERSION
        assert rules.get_rule("r").last_fired == at(60)
        assert not rules.claim_firing("r", at(60), "a", at(61))
        assert rules.claim_firing("r", at(120), "a", at(120))
        assert not rules.claim_firing("r", at(120), "b", at(121))


def test_the_rule_tables_share_the_batch_file(tmp_path: Path) -> None:
    path = tmp_path / "batch.sqlite3"
    with SqliteStore(path) as batch, SqliteEventStore(path) as events, RuleStore(path) as rules:
        rules.put_rule("r", "rate(1 hour)", T0)
        events.put_event("f", b"{}", T0, request_id="e")
        assert rules.schema_version == SCHEMA_VERSION == 2
        version = batch.schema_version
    with RuleStore(path) as again, SqliteStore(path) as batch_again:
        assert again.get_rule("r").expression == "rate(1 hour)"
        assert batch_again.schema_version == version
    db = sqlite3.connect(path)
    try:
        meta = db.execute(
            "SELECT component, version FROM warmstart_meta ORDER BY component"
        ).fetchall()
        assert meta == [
            ("batch", version),
            ("events", 1),
            ("nodes", 1),
            ("schedule_rules", SCHEMA_VERSION),
        ]
    finally:
        db.close()


# -- the configuration file's rules ----------------------------------------------------------


def schedule(name: str, expression: str, **fields: Any) -> ScheduleConfig:
    return ScheduleConfig(name=name, expression=expression, function="report", **fields)


def test_config_rules_are_upserted_and_own_their_rules(rules: Rules) -> None:
    rules.put_rule("api-made", "rate(1 day)", T0)
    first = {
        "nightly": schedule("nightly", "cron(0 3 * * ? *)", input='{"n": 1}'),
        "old": schedule("old", "rate(1 hour)"),
    }
    assert sync_config(rules, first, POOL, T0) == []
    nightly = rules.get_rule("nightly")
    assert (nightly.managed_by, nightly.created_at) == (CONFIG_MANAGER, T0)
    assert rules.targets("nightly") == [Target("report", FN, '{"n": 1}')]
    second = {"nightly": schedule("nightly", "cron(0 4 * * ? *)", enabled=False)}
    assert sync_config(rules, second, POOL, at(100)) == ["old"]
    nightly = rules.get_rule("nightly")
    assert (nightly.expression, nightly.state, nightly.created_at) == (
        "cron(0 4 * * ? *)",
        DISABLED,
        T0,
    )
    assert [r.name for r in rules.list_rules()[0]] == ["api-made", "nightly"]
    assert rules.get_rule("api-made").managed_by is None
