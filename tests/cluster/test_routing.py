"""Where a sync invoke runs in a cluster: OpenWhisk's probe order, warm environments first,
then the home node's room, then the least loaded."""

from __future__ import annotations

import pytest

from runtime.cluster.members import Load, Member
from runtime.cluster.routing import function_hash, probe_order, route, step_sizes


def _member(node: str, free: int = 4, busy: int = 0, waiting: int = 0, **idle: int) -> Member:
    return Member(
        id=node,
        url=f"http://{node}",
        started_at=0.0,
        load=Load(free=free, busy=busy, waiting=waiting, idle=dict(idle)),
    )


def test_openwhisk_probe_order_for_ten_nodes() -> None:
    # OpenWhisk's documented example: 10 invokers, hash 13 -> home 3, step sizes 1, 3, 7
    assert step_sizes(10) == (1, 3, 7)
    assert probe_order(13, 10) == [3, 6, 9, 2, 5, 8, 1, 4, 7, 0]


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 10, 12])
def test_every_node_once_in_any_order(n: int) -> None:
    for h in range(50):
        assert sorted(probe_order(h, n)) == list(range(n))
    assert probe_order(7, 0) == []


def test_the_hash_is_the_same_everywhere() -> None:
    # not Python's salted hash(): every node, of any process and version, computes one home
    assert function_hash("hello") == 0xA7B6EDA801E5347D
    assert function_hash("a") != function_hash("b")


def _home(function: str, ids: list[str]) -> str:
    return sorted(ids)[probe_order(function_hash(function), len(ids))[0]]


def test_an_idle_environment_here_wins() -> None:
    members = [_member("n1", f=1), _member("n2", f=1)]
    assert route("f", members, "n1") == "n1"
    assert route("f", members, "n2") == "n2"


def test_a_warm_environment_elsewhere_beats_a_cold_start_here() -> None:
    members = [_member("n1"), _member("n2"), _member("n3", f=2)]
    for here in ("n1", "n2"):
        assert route("f", members, here) == "n3"


def test_the_first_warm_node_in_probe_order() -> None:
    ids = ["n1", "n2", "n3", "n4"]
    order = [sorted(ids)[i] for i in probe_order(function_hash("g"), 4)]
    warm = {order[1], order[3]}
    members = [_member(i, **({"g": 1} if i in warm else {})) for i in ids]
    here = order[0]  # the home node has none
    assert route("g", members, here) == order[1]


def test_a_cold_start_goes_home_while_it_has_room() -> None:
    ids = ["n1", "n2", "n3"]
    home = _home("h", ids)
    others = [i for i in ids if i != home]
    members = [_member(i) for i in ids]
    assert route("h", members, others[0]) == home
    full = [_member(i, free=0 if i == home else 4) for i in ids]
    assert route("h", full, others[0]) == others[0]  # home full: here


def test_a_full_node_spills_to_one_with_room() -> None:
    members = [_member("n1", free=0, busy=4, waiting=3), _member("n2", free=0, busy=4)]
    members.append(_member("n3", free=2, busy=2))
    assert route("k", members, "n1") == "n3"


def test_overload_goes_to_the_least_loaded() -> None:
    members = [
        _member("n1", free=0, busy=4, waiting=9),
        _member("n2", free=0, busy=4, waiting=1),
        _member("n3", free=0, busy=4, waiting=5),
    ]
    assert route("k", members, "n1") == "n2"


def test_alone_or_unlisted_runs_here() -> None:
    assert route("f", [], "n1") == "n1"
    assert route("f", [_member("n1", free=0, busy=4, waiting=2)], "n1") == "n1"
