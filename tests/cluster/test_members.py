"""The node registry on both stores (the SQLite file and Redis), time passed in."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from redis_support import RedisServer, RedisStore

from runtime.cluster.members import Load, Member, Members, RedisMembers, SqliteMembers
from runtime.errors import ServiceException


@pytest.fixture(params=["sqlite", "redis"])
def members(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Members]:
    store: Members
    if request.param == "sqlite":
        store = SqliteMembers(tmp_path / "store.sqlite3")
    else:
        found: RedisStore = request.getfixturevalue("redis_store")
        store = RedisMembers(found.url, prefix=found.prefix)
    yield store
    store.close()


def _member(node: str, free: int = 0, busy: int = 0, waiting: int = 0) -> Member:
    load = Load(free=free, busy=busy, waiting=waiting)
    return Member(id=node, url=f"http://{node}:9000", started_at=1.0, load=load)


def test_a_beat_lists_a_node_with_its_load(members: Members) -> None:
    members.beat(_member("n2", free=3, busy=1), 100.0)
    members.beat(_member("n1", free=4), 100.5)
    live = members.live(101.0, 10.0)
    assert [m.id for m in live] == ["n1", "n2"]
    assert live[1].load == Load(free=3, busy=1)
    assert live[1].seen_at == 100.0
    assert live[1].url == "http://n2:9000"


def test_a_later_beat_replaces_the_load(members: Members) -> None:
    members.beat(_member("n1", free=4), 100.0)
    beat = _member("n1", free=0, busy=4, waiting=2)
    beat.load.idle["f"] = 1
    members.beat(beat, 101.0)
    (only,) = members.live(101.0, 10.0)
    assert only.load.waiting == 2
    assert only.load.idle == {"f": 1}
    assert only.seen_at == 101.0


def test_a_silent_node_drops_out_after_the_lease(members: Members) -> None:
    members.beat(_member("n1"), 100.0)
    members.beat(_member("n2"), 105.0)
    assert [m.id for m in members.live(110.0, 10.0)] == ["n1", "n2"]
    assert [m.id for m in members.live(110.01, 10.0)] == ["n2"]
    # forgotten, not hidden: a live() with a longer lease does not bring it back
    assert [m.id for m in members.live(110.02, 100.0)] == ["n2"]
    members.beat(_member("n1"), 111.0)  # it came back
    assert [m.id for m in members.live(111.0, 10.0)] == ["n1", "n2"]


def test_leave_is_at_once(members: Members) -> None:
    members.beat(_member("n1"), 100.0)
    members.beat(_member("n2"), 100.0)
    members.leave("n1")
    members.leave("never-there")
    assert [m.id for m in members.live(100.0, 10.0)] == ["n2"]


def test_two_registries_on_one_store_see_each_other(
    members: Members, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    other: Members
    if isinstance(members, SqliteMembers):
        other = SqliteMembers(tmp_path / "store.sqlite3")
    else:
        assert isinstance(members, RedisMembers)
        other = RedisMembers(members.url, prefix=members.prefix)
    try:
        members.beat(_member("a"), 1.0)
        other.beat(_member("b"), 1.0)
        assert [m.id for m in other.live(2.0, 5.0)] == ["a", "b"]
        assert [m.id for m in members.live(2.0, 5.0)] == ["a", "b"]
    finally:
        other.close()


def test_a_redis_down_is_a_service_error(own_redis: RedisServer) -> None:
    store = RedisMembers(own_redis.url, prefix="p")
    try:
        store.beat(_member("n1"), 1.0)
        own_redis.kill()
        with pytest.raises(ServiceException, match="unreachable"):
            store.beat(_member("n1"), 2.0)
        own_redis.start()
        assert [m.id for m in store.live(3.0, 10.0)] == ["n1"]  # on its append-only file
    finally:
        store.close()
