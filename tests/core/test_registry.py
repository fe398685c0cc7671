"""The function registry (runtime.registry): every test runs on the SQLite registry and on the
Redis one (ids ``sqlite`` and ``redis``), with the same expectations; a few at the end are
about one store only (its single-read poll, Redis killed and restarted, Redis down)."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from redis_support import RedisServer

from runtime.errors import (
    InvalidParameterValueException,
    ResourceConflictException,
    ResourceNotFoundException,
    ServiceException,
)
from runtime.registry import (
    COMPONENT,
    TOMBSTONE_TTL_S,
    UPLOAD_GRACE_S,
    Changes,
    FunctionEntry,
    FunctionRegistry,
    RedisFunctionRegistry,
    SqliteFunctionRegistry,
)
from runtime.schedules import store as rules_store

Opener = Callable[[], FunctionRegistry]

SPEC = b'{"Runtime": "python3.12", "Handler": "app.handler"}'


def zip_of(text: str) -> tuple[str, bytes]:
    data = f"PK-fake-zip {text}".encode()
    return hashlib.sha256(data).hexdigest(), data


A, ZIP_A = zip_of("a")
B, ZIP_B = zip_of("b")
C, ZIP_C = zip_of("c")


@pytest.fixture(params=["sqlite", "redis"])
def open_registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens registries on one store: each call is another node on the same data."""
    opened: list[FunctionRegistry] = []
    if request.param == "sqlite":
        path = tmp_path / "batch.sqlite3"

        def make() -> FunctionRegistry:
            opened.append(SqliteFunctionRegistry(path))
            return opened[-1]

    else:
        store = request.getfixturevalue("redis_store")

        def make() -> FunctionRegistry:
            opened.append(RedisFunctionRegistry(store.url, prefix=store.prefix))
            return opened[-1]

    yield make
    for registry in opened:
        registry.close()


@pytest.fixture
def registry(open_registry: Opener) -> FunctionRegistry:
    return open_registry()


def names(entries: list[FunctionEntry]) -> list[str]:
    return [e.name for e in entries]


# -- entries ----------------------------------------------------------------------------------


def test_put_creates_and_lists_by_name(registry: FunctionRegistry) -> None:
    assert registry.sequence() == 0
    assert registry.list() == []
    b = registry.put("beta", SPEC, 10.0)
    a = registry.put("alpha", b"{}", 11.5)
    assert b == FunctionEntry("beta", SPEC, (), 1, 10.0)
    assert a == FunctionEntry("alpha", b"{}", (), 2, 11.5)
    assert registry.sequence() == 2
    assert registry.get("beta") == b
    assert registry.get("gamma") is None
    assert registry.list() == [a, b]


def test_create_only_refuses_an_existing_function(registry: FunctionRegistry) -> None:
    first = registry.put("f", SPEC, 1.0, expect=0)
    with pytest.raises(ResourceConflictException, match=r"^Function already exist: f$"):
        registry.put("f", b"{}", 2.0, expect=0)
    assert registry.get("f") == first
    assert registry.sequence() == 1


def test_replace_needs_the_current_revision(registry: FunctionRegistry) -> None:
    first = registry.put("f", SPEC, 1.0)
    registry.put("other", SPEC, 1.5)
    second = registry.put("f", b'{"v": 2}', 2.0, expect=first.revision)
    assert (second.revision, second.spec, second.updated_at) == (3, b'{"v": 2}', 2.0)
    with pytest.raises(ResourceConflictException) as stale:
        registry.put("f", b'{"v": "lost"}', 3.0, expect=first.revision)
    assert stale.value.message == (
        "Function f is at revision 3, not 1: another update came first; read it again and retry"
    )
    assert registry.get("f") == second
    # expect=None replaces whatever is there
    third = registry.put("f", b'{"v": 3}', 4.0)
    assert third.revision == 4
    with pytest.raises(ResourceConflictException, match=r"^Function g was deleted since rev"):
        registry.put("g", SPEC, 5.0, expect=7)
    assert registry.get("g") is None
    with pytest.raises(InvalidParameterValueException, match="expect: -1 is not a revision"):
        registry.put("f", SPEC, 5.0, expect=-1)
    assert registry.sequence() == 4


def test_delete_leaves_a_tombstone_until_created_again(registry: FunctionRegistry) -> None:
    registry.put("f", SPEC, 1.0)
    registry.put("g", SPEC, 2.0)
    assert registry.delete("f", 3.0) is True
    assert registry.get("f") is None
    assert registry.delete("f", 4.0) is False
    assert registry.delete("never", 4.0) is False
    assert registry.sequence() == 3  # a delete of nothing changes nothing
    seq, changed, deleted = registry.changes(2)
    assert (seq, changed, deleted) == (3, [], ["f"])
    again = registry.put("f", b"{}", 5.0)
    seq, changed, deleted = registry.changes(2)
    assert (seq, changed, deleted) == (4, [again], [])
    assert registry.delete("f", 6.0)
    assert registry.changes(4) == (5, [], ["f"])
    assert registry.changes(3) == (5, [], ["f"])


# -- changes ----------------------------------------------------------------------------------


def test_changes_from_zero_and_from_the_middle(registry: FunctionRegistry) -> None:
    a = registry.put("a", SPEC, 1.0)  # 1
    registry.put("b", SPEC, 2.0)  # 2
    c = registry.put("c", SPEC, 3.0)  # 3
    registry.delete("b", 4.0)  # 4
    a2 = registry.put("a", b"{}", 5.0)  # 5
    d = registry.put("d", SPEC, 6.0)  # 6
    registry.put("e", SPEC, 7.0)  # 7
    registry.delete("e", 8.0)  # 8

    everything = registry.changes(0)
    assert everything == (8, [a2, c, d], ["b", "e"])
    assert everything.full
    assert isinstance(everything, Changes)
    assert (everything.sequence, everything.changed, everything.deleted) == everything

    middle = registry.changes(3)
    assert middle == (8, [a2, d], ["b", "e"])
    assert not middle.full
    assert registry.changes(4) == (8, [a2, d], ["e"])
    assert registry.changes(7) == (8, [], ["e"])
    assert registry.changes(1) == (8, [a2, c, d], ["b", "e"])
    assert a.revision == 1

    nothing = registry.changes(8)
    assert not nothing.full
    assert nothing == (8, [], [])


def test_changes_on_an_empty_registry(registry: FunctionRegistry) -> None:
    empty = registry.changes(0)
    assert empty.full
    assert empty == (0, [], [])


def test_a_since_beyond_the_sequence_is_answered_in_full(registry: FunctionRegistry) -> None:
    """A node that polled a store since lost or replaced: it must resynchronize."""
    a = registry.put("a", SPEC, 1.0)
    registry.put("b", SPEC, 2.0)
    registry.delete("b", 3.0)
    answer = registry.changes(50)
    assert answer == (3, [a], ["b"])
    assert answer.full


def test_old_tombstones_are_pruned_and_older_polls_answered_in_full(
    registry: FunctionRegistry,
) -> None:
    registry.put("old", SPEC, 0.0)  # 1
    registry.put("kept", SPEC, 0.0)  # 2
    registry.delete("old", 100.0)  # 3
    registry.put("young", SPEC, 1000.0)  # 4
    registry.delete("young", 2000.0)  # 5
    # a day after the first deletion, not yet after the second: still both within a day
    registry.put("k2", SPEC, 100.0 + TOMBSTONE_TTL_S)  # 6
    assert registry.changes(2) == (6, [registry.get("k2")], ["old", "young"])
    assert not registry.changes(2).full

    later = registry.put("k3", SPEC, 100.5 + TOMBSTONE_TTL_S)  # 7: prunes "old" (revision 3)
    k2 = registry.get("k2")
    kept = registry.get("kept")
    assert k2 is not None
    assert kept is not None
    # since 2 < horizon 3: "old"'s deletion may be forgotten, so every entry comes back
    stale = registry.changes(2)
    assert stale == (7, [k2, later, kept], ["young"])
    assert stale.full
    # a node that had seen revision 3 already knew of the deletion pruned
    fresh = registry.changes(3)
    assert fresh == (7, [k2, later], ["young"])
    assert not fresh.full


# -- code -------------------------------------------------------------------------------------


def test_code_round_trip_and_idempotent_upload(registry: FunctionRegistry) -> None:
    registry.put_code(A, ZIP_A, now=1.0)
    registry.put_code(A, ZIP_A, now=2.0)
    assert registry.get_code(A) == ZIP_A
    assert registry.sequence() == 0  # an upload changes no entry
    with pytest.raises(ResourceNotFoundException, match=f"^Code {B} not found$"):
        registry.get_code(B)


def test_a_digest_that_does_not_match_is_refused(registry: FunctionRegistry) -> None:
    with pytest.raises(InvalidParameterValueException) as wrong:
        registry.put_code(A, ZIP_B, now=1.0)
    assert wrong.value.message == f"Code digest mismatch: the zip's sha256 is {B}, not {A}"
    with pytest.raises(InvalidParameterValueException, match="is not a sha256 hex digest"):
        registry.put_code(A.upper(), ZIP_A, now=1.0)
    with pytest.raises(ResourceNotFoundException):
        registry.get_code(A)


def test_a_put_naming_code_not_stored_is_refused(registry: FunctionRegistry) -> None:
    registry.put_code(A, ZIP_A, now=1.0)
    with pytest.raises(InvalidParameterValueException) as unknown:
        registry.put("f", SPEC, 2.0, code=(A, C, B))
    assert unknown.value.message == (
        f"Function f names code that is not stored: {', '.join(sorted((B, C)))}"
        " (store each zip with put_code first)"
    )
    with pytest.raises(InvalidParameterValueException, match="'nope' is not a sha256"):
        registry.put("f", SPEC, 2.0, code=("nope",))
    assert registry.get("f") is None
    assert registry.sequence() == 0


def test_code_goes_with_its_last_reference(registry: FunctionRegistry) -> None:
    registry.put_code(A, ZIP_A, now=1.0)
    registry.put_code(B, ZIP_B, now=1.0)
    f = registry.put("f", SPEC, 2.0, code=(A,))
    g = registry.put("g", SPEC, 3.0, code=(A, B, B))  # $LATEST and version 1 share zip B
    assert g.code == (A, B, B)
    assert registry.get("g") == g
    assert registry.delete("f", 4.0)
    assert registry.get_code(A) == ZIP_A  # g still uses it
    registry.put("g", SPEC, 5.0, code=(B,), expect=g.revision)
    with pytest.raises(ResourceNotFoundException):
        registry.get_code(A)  # in the same write that dropped its last reference
    assert registry.get_code(B) == ZIP_B
    assert registry.delete("g", 6.0)
    with pytest.raises(ResourceNotFoundException):
        registry.get_code(B)
    assert f.code == (A,)


def test_an_upload_waits_an_hour_for_its_put(registry: FunctionRegistry) -> None:
    registry.put_code(A, ZIP_A, now=0.0)
    registry.put("x", SPEC, UPLOAD_GRACE_S - 1)  # a write within the grace keeps it
    assert registry.get_code(A) == ZIP_A
    registry.put("f", SPEC, UPLOAD_GRACE_S - 0.5, code=(A,))  # its put came in time
    registry.put_code(B, ZIP_B, now=10.0)
    registry.put("y", SPEC, 10.0 + UPLOAD_GRACE_S + 1)  # B never used: collected
    with pytest.raises(ResourceNotFoundException):
        registry.get_code(B)
    assert registry.get_code(A) == ZIP_A
    with pytest.raises(InvalidParameterValueException):
        registry.put("g", SPEC, 20.0 + UPLOAD_GRACE_S, code=(B,))


def test_an_upload_survives_the_deletion_of_the_last_function_using_it(
    registry: FunctionRegistry,
) -> None:
    """Two functions with one zip: g's upload, then f deleted, then g's put."""
    registry.put_code(A, ZIP_A, now=0.0)
    registry.put("f", SPEC, 1.0, code=(A,))
    registry.put_code(A, ZIP_A, now=100.0)  # for g, on another node
    assert registry.delete("f", 101.0)
    assert registry.get_code(A) == ZIP_A
    g = registry.put("g", SPEC, 102.0, code=(A,))
    assert registry.delete("g", 103.0)  # g's put used up the upload's grace
    with pytest.raises(ResourceNotFoundException):
        registry.get_code(A)
    assert g.code == (A,)


def test_a_20_mb_zip_round_trips(registry: FunctionRegistry) -> None:
    data = os.urandom(20 * 1024 * 1024)
    digest = hashlib.sha256(data).hexdigest()
    registry.put_code(digest, data, now=1.0)
    registry.put("big", SPEC, 2.0, code=(digest,))
    assert registry.get_code(digest) == data


# -- several nodes ------------------------------------------------------------------------------


def test_two_nodes_see_each_others_changes(open_registry: Opener) -> None:
    one, two = open_registry(), open_registry()
    one.put_code(A, ZIP_A, now=1.0)
    f = one.put("f", SPEC, 2.0, code=(A,))
    seq, changed, deleted = two.changes(0)
    assert (seq, changed, deleted) == (1, [f], [])
    assert two.get_code(A) == ZIP_A
    g = two.put("g", SPEC, 3.0)
    assert two.delete("f", 4.0)
    assert one.changes(1) == (3, [g], ["f"])
    assert one.list() == [g]
    with pytest.raises(ResourceConflictException, match=r"^Function already exist: g$"):
        one.put("g", SPEC, 5.0, expect=0)
    assert one.sequence() == two.sequence() == 3


def race(
    nodes: list[FunctionRegistry], put: Callable[[FunctionRegistry, int], FunctionEntry]
) -> list[FunctionEntry | ResourceConflictException]:
    """``put(node, i)`` on every node at once, each in a thread of its own: what each got."""
    barrier = threading.Barrier(len(nodes))
    results: list[FunctionEntry | ResourceConflictException] = []

    def run(node: FunctionRegistry, i: int) -> None:
        barrier.wait(5)
        try:
            results.append(put(node, i))
        except ResourceConflictException as exc:
            results.append(exc)

    threads = [threading.Thread(target=run, args=(n, i)) for i, n in enumerate(nodes)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == len(nodes)
    return results


def test_racing_updates_of_one_revision_have_one_winner(open_registry: Opener) -> None:
    nodes = [open_registry() for _ in range(4)]
    current = nodes[0].put("f", SPEC, 0.0)
    for round_ in range(15):
        expect = current.revision
        results = race(
            nodes,
            lambda node, i: node.put("f", f"{round_}/{i}".encode(), 1.0 + round_, expect=expect),  # noqa: B023
        )
        won = [r for r in results if isinstance(r, FunctionEntry)]
        lost = [r for r in results if isinstance(r, ResourceConflictException)]
        assert len(won) == 1, results
        assert len(lost) == len(nodes) - 1
        assert all(f"is at revision {expect + 1}, not {expect}" in e.message for e in lost)
        assert nodes[1].get("f") == won[0]
        assert won[0].revision == expect + 1
        current = won[0]


def test_racing_creates_have_one_winner(open_registry: Opener) -> None:
    nodes = [open_registry() for _ in range(4)]
    results = race(nodes, lambda node, i: node.put("f", str(i).encode(), 1.0, expect=0))
    won = [r for r in results if isinstance(r, FunctionEntry)]
    assert len(won) == 1, results
    assert nodes[0].get("f") == won[0]
    assert nodes[0].sequence() == 1


# -- one store --------------------------------------------------------------------------------


def test_sqlite_shares_the_store_file_under_its_own_component(tmp_path: Path) -> None:
    path = tmp_path / "batch.sqlite3"
    with rules_store.RuleStore(path) as rules, SqliteFunctionRegistry(path) as registry:
        registry.put("f", SPEC, 1.0)
        assert registry.schema_version == 1
        assert rules.schema_version == rules_store.SCHEMA_VERSION
    with SqliteFunctionRegistry(path) as again:
        assert names(again.list()) == ["f"]
    db = sqlite3.connect(path)
    try:
        rows = dict(db.execute("SELECT component, version FROM warmstart_meta").fetchall())
    finally:
        db.close()
    assert rows[COMPONENT] == 1


def test_sqlite_poll_with_nothing_new_is_one_select(tmp_path: Path) -> None:
    with SqliteFunctionRegistry(tmp_path / "batch.sqlite3") as registry:
        registry.put("f", SPEC, 1.0)
        statements: list[str] = []
        registry._db.set_trace_callback(statements.append)
        assert registry.changes(1) == (1, [], [])
        registry._db.set_trace_callback(None)
    assert [s.split()[0].upper() for s in statements] == ["BEGIN", "SELECT", "COMMIT"], statements


def test_redis_poll_with_nothing_new_is_one_get(own_redis: RedisServer) -> None:
    with RedisFunctionRegistry(own_redis.url, prefix="t") as registry:
        registry.put("f", SPEC, 1.0)
        client = redis.Redis.from_url(own_redis.url)
        try:
            client.config_resetstat()
            assert registry.changes(1) == (1, [], [])
            assert registry.sequence() == 1
            stats = client.info("commandstats")
        finally:
            client.close()
    calls = {name: s["calls"] for name, s in stats.items() if name != "cmdstat_config|resetstat"}
    assert calls == {"cmdstat_get": 2}, calls


def test_redis_killed_and_restarted_keeps_entries_and_code(own_redis: RedisServer) -> None:
    registry = RedisFunctionRegistry(own_redis.url, prefix="t")
    try:
        registry.put_code(A, ZIP_A, now=1.0)
        f = registry.put("f", SPEC, 2.0, code=(A,))
        registry.put("g", SPEC, 3.0)
        assert registry.delete("g", 4.0)
        own_redis.kill()
        own_redis.start()
        with RedisFunctionRegistry(own_redis.url, prefix="t") as after:
            assert after.list() == [f]
            assert after.get_code(A) == ZIP_A
            assert after.changes(0) == (3, [f], ["g"])
        # the first node's client reconnects by itself
        assert registry.get("f") == f
        assert registry.put("h", SPEC, 5.0).revision == 4
    finally:
        registry.close()


def test_redis_down_is_a_service_exception(own_redis: RedisServer) -> None:
    registry = RedisFunctionRegistry(own_redis.url, prefix="t")
    try:
        registry.put("f", SPEC, 1.0)
        own_redis.kill()
        with pytest.raises(ServiceException, match="is unreachable"):
            registry.get("f")
        with pytest.raises(ServiceException, match="is unreachable"):
            registry.put("g", SPEC, 2.0)
        with pytest.raises(ServiceException, match="is unreachable"):
            registry.changes(1)
        with pytest.raises(ServiceException, match="is unreachable"):
            RedisFunctionRegistry(own_redis.url, prefix="t")
    finally:
        registry.close()


def test_redis_refuses_a_server_without_append_only_file(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", append_only=False).start()
    try:
        with pytest.raises(ServiceException, match="appendonly no"):
            RedisFunctionRegistry(server.url, prefix="t")
        RedisFunctionRegistry(server.url, prefix="t", require_append_only=False).close()
    finally:
        server.stop()
