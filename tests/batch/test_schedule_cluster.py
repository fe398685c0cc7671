"""Several nodes on one rule store: each firing goes out once in all, on virtual time.

Three ScheduleRunners (the schedule runners of three nodes, each over a store of its own on the
same rules) are driven through the same instants in varying orders, one after another and all
at once; then through a downtime of every node; then with a node that died between claiming a
firing and marking it fired. Last, threads with stores of their own race for one claim. Every
test runs on both stores (``sqlite``, ``redis``).
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from redis_support import RedisStore

from runtime.asyncinvoke.store import SqliteEventStore
from runtime.config import PoolConfig
from runtime.schedules.redis_store import RedisRuleStore
from runtime.schedules.runner import ScheduleRunner, plan
from runtime.schedules.store import Rules, RuleStore, Target

POOL = PoolConfig(region="eu-west-1", account_id="123456789012")
T0 = datetime(2024, 5, 1, 11, 58, 0, tzinfo=timezone.utc).timestamp()
FN = "arn:aws:lambda:eu-west-1:123456789012:function:report"
NODES = ("a", "b", "c")
#: the order the nodes' passes run in at step i: ORDERS[i % 6]
ORDERS = list(itertools.permutations(range(len(NODES))))

Opener = Callable[[], Rules]


@pytest.fixture(params=["sqlite", "redis"])
def open_rules(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens another store on this test's rules, as another node does."""
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


class Died(BaseException):
    """The node's process ended mid-pass (nothing in the runner catches it)."""


class Sink:
    """A node's backlog: the firings it sent, as (node, time, request id); ``die_after``
    sends, it dies."""

    def __init__(self, node: str, sent: list[tuple[str, str, str]], die_after: int = -1) -> None:
        self.node = node
        self.sent = sent
        self.die_after = die_after

    async def put_event(self, function: str, payload: bytes, request_id: str) -> None:
        self.sent.append((self.node, orjson.loads(payload)["time"], request_id))
        if len(self.sent) == self.die_after:
            raise Died


def at(offset_s: float) -> float:
    return T0 + offset_s


def iso(offset_s: float) -> str:
    return datetime.fromtimestamp(at(offset_s), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def minutely(open_rules: Opener) -> Rules:
    rules = open_rules()
    rules.put_rule("r", "rate(1 minute)", T0)
    rules.put_targets("r", [Target("t", FN)])
    return rules


def cluster(
    open_rules: Opener, sent: list[tuple[str, str, str]], **options: Any
) -> list[ScheduleRunner]:
    return [
        ScheduleRunner(Sink(node, sent), open_rules(), POOL, node=node, **options) for node in NODES
    ]


async def step(
    runners: list[ScheduleRunner], now: float, order: tuple[int, ...], mode: str
) -> None:
    """Every node's pass at ``now``, in ``order``: one after another, or all at once (their
    store calls then interleave in the executor's threads)."""
    if mode == "sequential":
        for i in order:
            await runners[i].run_due(now)
    else:
        await asyncio.gather(*(runners[i].run_due(now) for i in order))


@pytest.mark.parametrize("mode", ["sequential", "concurrent"])
def test_each_instant_fires_once_across_three_nodes(
    arun: Any, open_rules: Opener, mode: str
) -> None:
    async def main() -> None:
        minutely(open_rules)
        sent: list[tuple[str, str, str]] = []
        runners = cluster(open_rules, sent)
        for i in range(1, 11):
            await step(runners, at(60 * i + i % 3), ORDERS[i % 6], mode)
        assert sorted(time for _, time, _ in sent) == [iso(60 * i) for i in range(1, 11)]
        assert len({rid for _, _, rid in sent}) == 10
        if mode == "sequential":  # the first to look at an instant sends it
            assert [node for node, _, _ in sent] == [NODES[ORDERS[i % 6][0]] for i in range(1, 11)]

    arun(main())


@pytest.mark.parametrize("mode", ["sequential", "concurrent"])
def test_a_downtime_of_every_node_fires_once(arun: Any, open_rules: Opener, mode: str) -> None:
    async def main() -> None:
        rules = minutely(open_rules)
        sent: list[tuple[str, str, str]] = []
        runners = cluster(open_rules, sent)
        for i in range(1, 4):
            await step(runners, at(60 * i), ORDERS[i % 6], mode)
        # every node down for five minutes: 240..420 s are missed, 480 s is owed: one firing
        await step(runners, at(485), ORDERS[4], mode)
        await step(runners, at(490), ORDERS[5], mode)
        assert [time for _, time, _ in sent] == [iso(60), iso(120), iso(180), iso(480)]
        assert rules.get_rule("r").last_fired == at(480)
        await step(runners, at(540), ORDERS[0], mode)
        assert [time for _, time, _ in sent][4:] == [iso(540)]

    arun(main())


def test_a_node_that_died_after_claiming_is_taken_over_after_the_lease(
    arun: Any, open_rules: Opener, tmp_path: Path
) -> None:
    """Node a claimed firing 60 s, sent it and died before marking it fired: nobody sends it
    while a's lease runs; then b does, under the same request id, so the shared backlog's
    store keeps one event."""
    events = SqliteEventStore(tmp_path / "events.sqlite3")

    class Backlog(Sink):
        async def put_event(self, function: str, payload: bytes, request_id: str) -> None:
            events.put_event(function, payload, at(60), request_id=request_id)
            await super().put_event(function, payload, request_id)

    async def main() -> None:
        rules = minutely(open_rules)
        (owed,) = plan(rules.get_rule("r"), rules.targets("r"), at(60), POOL).sends
        sent: list[tuple[str, str, str]] = []
        a, b, c = (
            ScheduleRunner(
                Backlog(node, sent, die_after=1 if node == "a" else -1),
                open_rules(),
                POOL,
                node=node,
                lease_s=20,
            )
            for node in NODES
        )
        with pytest.raises(Died):
            await a.run_due(at(60))
        assert rules.get_rule("r").last_fired is None
        for runner, now in ((b, 61), (c, 70), (b, 79.999)):
            await runner.run_due(at(now))  # a's lease holds until 80 s
        assert sent == [("a", iso(60), owed.request_id)]
        await c.run_due(at(80))
        await b.run_due(at(81))
        assert sent == [("a", iso(60), owed.request_id), ("c", iso(60), owed.request_id)]
        assert rules.get_rule("r").last_fired == at(60)
        claim = events.claim_events("dispatcher", at(90))
        assert [event.id for event in claim.events] == [owed.request_id]  # one event
        await b.run_due(at(120))
        await c.run_due(at(120))
        assert [(node, time) for node, time, _ in sent[2:]] == [("b", iso(120))]

    try:
        arun(main())
    finally:
        events.close()


def test_threads_racing_for_a_claim_one_wins(open_rules: Opener) -> None:
    """Eight nodes (threads, each with a store of its own) claim each of 25 instants at the
    same moment: one wins each."""
    minutely(open_rules)
    stores = [open_rules() for _ in range(8)]
    barrier = threading.Barrier(len(stores))

    def node(i: int) -> list[bool]:
        won = []
        for k in range(1, 26):
            barrier.wait(timeout=10)
            won.append(stores[i].claim_firing("r", at(60 * k), f"n{i}", at(60 * k), 30))
        return won

    with ThreadPoolExecutor(len(stores)) as pool:
        results = list(pool.map(node, range(len(stores))))
    assert [sum(column) for column in zip(*results, strict=True)] == [1] * 25
