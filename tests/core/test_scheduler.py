"""Exact tests of the scheduler core's policies, run on both cores (the ``Scheduler`` fixture).

Every call takes ``now`` and returns ``(kind, env_id, req_id, reason)`` actions; the tests pass
time in and assert the exact action lists. Environment ids are handed out 1, 2, 3, ... in the
order the core creates environments, so they are part of the expected output.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime.scheduler import (
    COLD_START,
    DISPATCH,
    EVICT,
    KILL,
    QUEUE,
    R_ACCOUNT,
    R_GENERATION,
    R_INIT_FAILED,
    R_INIT_TIMEOUT,
    R_KEEPALIVE,
    R_MAX_USES,
    R_MEMORY,
    R_NONE,
    R_REMOVED,
    R_RESERVED,
    R_TIMEOUT,
    R_WAIT_TIMEOUT,
    SPILL,
    STOP,
    THROTTLE,
    FunctionLimits,
)

INF = float("inf")

# -- helpers ------------------------------------------------------------------------------------


def cfg(
    memory_mb: int = 128,
    timeout: float = 3.0,
    keepalive: float = 300.0,
    reserved: int = -1,
    provisioned: int = 0,
    max_uses: int = 0,
    batch: bool = False,
) -> dict[str, Any]:
    return {
        "memory_mb": memory_mb,
        "timeout": timeout,
        "keepalive": keepalive,
        "reserved": reserved,
        "provisioned": provisioned,
        "max_uses": max_uses,
        "batch": batch,
    }


def add(core: Any, name: str = "f", now: float = 0.0, **kw: Any) -> list[tuple[int, ...]]:
    actions: list[tuple[int, ...]] = core.add_function(name, FunctionLimits(**cfg(**kw)), now)
    return actions


def update(core: Any, name: str = "f", now: float = 0.0, **kw: Any) -> list[tuple[int, ...]]:
    actions: list[tuple[int, ...]] = core.update_function(name, FunctionLimits(**cfg(**kw)), now)
    return actions


def cold(env: int, req: int) -> tuple[int, int, int, int]:
    return (COLD_START, env, req, R_NONE)


def disp(env: int, req: int) -> tuple[int, int, int, int]:
    return (DISPATCH, env, req, R_NONE)


def queued(req: int) -> tuple[int, int, int, int]:
    return (QUEUE, 0, req, R_NONE)


def throttle(req: int, reason: int) -> tuple[int, int, int, int]:
    return (THROTTLE, 0, req, reason)


def stop(env: int, reason: int) -> tuple[int, int, int, int]:
    return (STOP, env, -1, reason)


def evict(env: int) -> tuple[int, int, int, int]:
    return (EVICT, env, -1, R_MEMORY)


def kill(env: int, req: int, reason: int) -> tuple[int, int, int, int]:
    return (KILL, env, req, reason)


def warm_env(core: Any, req: int, name: str = "f", now: float = 0.0, env: int = 1) -> None:
    """Cold-start ``env`` for ``req``, make it ready (DISPATCH) and leave it busy."""
    assert core.submit(req, name, now) == [cold(env, req)]
    assert core.ready(env, now) == [disp(env, req)]


# -- cold start and warm reuse ------------------------------------------------------------------


def test_cold_start_then_warm_dispatch_on_same_env(Scheduler: Any) -> None:
    core = Scheduler(account_limit=10, cold_start_cap=2)
    assert add(core) == []
    assert core.counts("f") == (0, 0, 0, 0)
    assert core.next_deadline() == INF

    assert core.submit(1, "f", 0.0) == [cold(1, 1)]
    assert core.counts("f") == (1, 0, 0, 0)
    assert core.ready(1, 0.5) == [disp(1, 1)]
    assert core.counts("f") == (0, 0, 1, 0)
    assert core.release(1, 1.0) == []
    assert core.counts("f") == (0, 1, 0, 0)

    assert core.submit(2, "f", 2.0) == [disp(1, 2)]  # warm: no cold start
    assert core.counts("f") == (0, 0, 1, 0)
    assert core.release(1, 2.5) == []
    assert core.env_count() == 1


def test_function_registry_errors(Scheduler: Any) -> None:
    core = Scheduler()
    add(core, "f")
    with pytest.raises(KeyError):
        add(core, "f")
    with pytest.raises(KeyError):
        core.submit(1, "nope", 0.0)
    with pytest.raises(KeyError):
        core.counts("nope")
    with pytest.raises(KeyError):
        core.generation("nope")


def test_concurrent_submits_get_their_own_envs(Scheduler: Any) -> None:
    core = Scheduler(account_limit=10, cold_start_cap=10)
    add(core)
    assert core.submit(1, "f", 0.0) == [cold(1, 1)]
    assert core.submit(2, "f", 0.0) == [cold(2, 2)]
    assert core.ready(2, 1.0) == [disp(2, 2)]
    assert core.ready(1, 1.0) == [disp(1, 1)]
    assert core.counts("f") == (0, 0, 2, 0)
    assert core.env_count() == 2


# -- LIFO reuse ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("release_order", "reused", "aging_order"),
    [
        ((1, 2, 3), 3, (1, 2)),
        ((3, 2, 1), 1, (3, 2)),
        ((2, 3, 1), 1, (2, 3)),
        ((1, 3, 2), 2, (1, 3)),
    ],
)
def test_lifo_reuse_and_surplus_ages_out_in_order(
    Scheduler: Any, release_order: tuple[int, ...], reused: int, aging_order: tuple[int, ...]
) -> None:
    core = Scheduler(account_limit=10, cold_start_cap=10)
    add(core, timeout=60.0, keepalive=10.0)
    for env in (1, 2, 3):
        assert core.submit(env, "f", 0.0) == [cold(env, env)]
        assert core.ready(env, 0.0) == [disp(env, env)]
    for t, env in enumerate(release_order, start=1):  # released at t = 1, 2, 3
        assert core.release(env, float(t)) == []
    assert core.counts("f") == (0, 3, 0, 0)

    assert core.submit(9, "f", 3.5) == [disp(reused, 9)]  # the one released last
    assert core.counts("f") == (0, 2, 1, 0)

    first, second = aging_order
    assert core.next_deadline() == 11.0
    assert core.advance(10.999) == []
    assert core.advance(11.0) == [stop(first, R_KEEPALIVE)]
    assert core.advance(11.999) == []
    assert core.advance(12.0) == [stop(second, R_KEEPALIVE)]
    assert core.counts("f") == (0, 0, 1, 0)
    assert core.next_deadline() == 3.5 + 60.0  # only the busy env's timeout is left


def test_lifo_takes_most_recent_after_a_reuse(Scheduler: Any) -> None:
    core = Scheduler()
    add(core)
    warm_env(core, 1, env=1)
    warm_env(core, 2, env=2)
    assert core.release(1, 1.0) == []
    assert core.release(2, 2.0) == []
    assert core.submit(3, "f", 3.0) == [disp(2, 3)]
    assert core.release(2, 4.0) == []
    assert core.submit(4, "f", 5.0) == [disp(2, 4)]  # env 1 stays at the bottom
    assert core.submit(5, "f", 5.0) == [disp(1, 5)]
    assert core.submit(6, "f", 5.0) == [cold(3, 6)]


# -- keepalive ----------------------------------------------------------------------------------


def test_keepalive_expires_exactly_at_release_plus_keepalive(Scheduler: Any) -> None:
    core = Scheduler()
    add(core, keepalive=300.0)
    warm_env(core, 1)
    assert core.release(1, 1.0) == []
    assert core.next_deadline() == 301.0
    assert core.advance(300.999) == []
    assert core.counts("f") == (0, 1, 0, 0)
    assert core.advance(301.0) == [stop(1, R_KEEPALIVE)]
    assert core.counts("f") == (0, 0, 0, 0)
    assert core.env_count() == 0
    assert core.next_deadline() == INF
    assert core.advance(10_000.0) == []
    assert core.submit(2, "f", 10_001.0) == [cold(2, 2)]  # a fresh env after the stop


def test_dispatch_cancels_keepalive_and_release_restarts_it(Scheduler: Any) -> None:
    core = Scheduler()
    add(core, timeout=900.0, keepalive=300.0)
    warm_env(core, 1)
    assert core.release(1, 1.0) == []  # keepalive deadline 301
    assert core.submit(2, "f", 200.0) == [disp(1, 2)]
    assert core.next_deadline() == 200.0 + 900.0  # the invocation timeout, not the keepalive
    assert core.advance(301.0) == []  # the old deadline is dead
    assert core.advance(400.0) == []
    assert core.counts("f") == (0, 0, 1, 0)

    assert core.release(1, 500.0) == []
    assert core.next_deadline() == 800.0  # restarted from the new release
    assert core.advance(799.999) == []
    assert core.advance(800.0) == [stop(1, R_KEEPALIVE)]


def test_keepalive_vs_dispatch_race_at_the_deadline_instant(Scheduler: Any) -> None:
    core = Scheduler()
    add(core, timeout=50.0, keepalive=300.0)
    warm_env(core, 1)
    assert core.release(1, 1.0) == []
    # The engine handles a submit at exactly the deadline before it calls advance().
    assert core.submit(2, "f", 301.0) == [disp(1, 2)]
    assert core.advance(301.0) == []  # must not stop the busy env
    assert core.counts("f") == (0, 0, 1, 0)
    assert core.next_deadline() == 351.0
    assert core.release(1, 320.0) == []
    assert core.advance(619.999) == []
    assert core.advance(620.0) == [stop(1, R_KEEPALIVE)]


def test_next_deadline_tracks_the_earliest_live_deadline(Scheduler: Any) -> None:
    core = Scheduler(account_limit=1, max_queue=1, queue_timeout=30.0)
    add(core, timeout=3.0, keepalive=300.0)
    assert core.next_deadline() == INF
    assert core.submit(1, "f", 5.0) == [cold(1, 1)]
    assert core.next_deadline() == 15.0  # init timeout: max(10, timeout)
    assert core.ready(1, 6.0) == [disp(1, 1)]
    assert core.next_deadline() == 9.0  # invocation timeout
    assert core.submit(2, "f", 7.0) == [queued(2)]
    assert core.next_deadline() == 9.0  # the waiter's 37.0 is later
    assert core.release(1, 8.0) == [disp(1, 2)]
    assert core.next_deadline() == 11.0  # the served waiter's deadline is dead
    assert core.release(1, 10.0) == []
    assert core.next_deadline() == 310.0
    assert core.advance(310.0) == [stop(1, R_KEEPALIVE)]
    assert core.next_deadline() == INF


def test_keepalive_zero_stops_at_release(Scheduler: Any) -> None:
    core = Scheduler()
    add(core, keepalive=0.0)
    warm_env(core, 1)
    assert core.release(1, 1.0) == [stop(1, R_KEEPALIVE)]
    assert core.counts("f") == (0, 0, 0, 0)
    assert core.env_count() == 0
    assert core.submit(2, "f", 2.0) == [cold(2, 2)]


def test_keepalive_zero_keeps_the_provisioned_floor(Scheduler: Any) -> None:
    core = Scheduler()
    assert add(core, keepalive=0.0, provisioned=1) == [cold(1, -1)]
    assert core.ready(1, 0.0) == []
    assert core.counts("f") == (0, 1, 0, 0)
    assert core.submit(1, "f", 1.0) == [disp(1, 1)]
    assert core.submit(2, "f", 1.0) == [cold(2, 2)]  # above the floor
    assert core.ready(2, 1.5) == [disp(2, 2)]
    # The floor is a count, not an identity: whichever env is released while the function
    # is above its floor stops at once; the last one stays.
    assert core.release(1, 2.0) == [stop(1, R_KEEPALIVE)]
    assert core.counts("f") == (0, 0, 1, 0)
    assert core.release(2, 3.0) == []
    assert core.counts("f") == (0, 1, 0, 0)


# -- provisioned concurrency --------------------------------------------------------------------


def test_provisioned_prewarm_never_expires(Scheduler: Any) -> None:
    core = Scheduler()
    assert add(core, provisioned=2, keepalive=10.0) == [cold(1, -1), cold(2, -1)]
    assert core.counts("f") == (2, 0, 0, 0)
    assert core.ready(1, 1.0) == []
    assert core.ready(2, 2.0) == []
    assert core.counts("f") == (0, 2, 0, 0)
    assert core.next_deadline() == INF
    assert core.advance(1_000_000.0) == []
    assert core.counts("f") == (0, 2, 0, 0)
    assert core.submit(1, "f", 2000.0) == [disp(2, 1)]  # LIFO: ready last
    assert core.release(2, 2001.0) == []
    assert core.advance(5000.0) == []
    assert core.counts("f") == (0, 2, 0, 0)


def test_provisioned_prewarms_do_not_use_concurrency(Scheduler: Any) -> None:
    core = Scheduler(account_limit=1)
    assert add(core, provisioned=2) == [cold(1, -1), cold(2, -1)]
    assert core.submit(1, "f", 0.0) == [cold(3, 1)]  # nothing idle yet, capacity is free
    assert core.submit(2, "f", 0.0) == [throttle(2, R_ACCOUNT)]


def test_crashed_busy_provisioned_env_restarts_at_once(Scheduler: Any) -> None:
    core = Scheduler()
    assert add(core, provisioned=2) == [cold(1, -1), cold(2, -1)]
    assert core.ready(1, 0.0) == []
    assert core.ready(2, 0.0) == []
    assert core.submit(7, "f", 1.0) == [disp(2, 7)]
    assert core.crashed(2, 2.0) == [cold(2, -1)]  # same env (its /tmp survives)
    assert core.counts("f") == (1, 1, 0, 0)
    assert core.ready(2, 3.0) == []
    assert core.counts("f") == (0, 2, 0, 0)


def test_crashed_idle_provisioned_env_restarts_at_once(Scheduler: Any) -> None:
    core = Scheduler()
    add(core, provisioned=2)
    core.ready(1, 0.0)
    core.ready(2, 0.0)
    assert core.crashed(1, 5.0) == [cold(1, -1)]
    assert core.counts("f") == (1, 1, 0, 0)
    assert core.ready(1, 6.0) == []
    assert core.advance(100_000.0) == []
    assert core.counts("f") == (0, 2, 0, 0)


def test_on_demand_env_above_the_floor_expires(Scheduler: Any) -> None:
    core = Scheduler()
    assert add(core, provisioned=1, keepalive=10.0, timeout=60.0) == [cold(1, -1)]
    assert core.ready(1, 0.0) == []
    assert core.submit(1, "f", 1.0) == [disp(1, 1)]
    assert core.submit(2, "f", 1.0) == [cold(2, 2)]
    assert core.ready(2, 1.0) == [disp(2, 2)]
    assert core.release(1, 2.0) == []  # 2 live > floor 1: armed for 12
    assert core.release(2, 3.0) == []  # armed for 13
    assert core.counts("f") == (0, 2, 0, 0)
    assert core.advance(11.999) == []
    assert core.advance(12.0) == [stop(1, R_KEEPALIVE)]
    assert core.advance(13.0) == []  # back at the floor: stays
    assert core.advance(10_000.0) == []
    assert core.counts("f") == (0, 1, 0, 0)
    assert core.next_deadline() == INF


def test_lowering_provisioned_lets_idle_envs_expire(Scheduler: Any) -> None:
    core = Scheduler()
    assert add(core, provisioned=2, keepalive=10.0) == [cold(1, -1), cold(2, -1)]
    core.ready(1, 0.0)
    core.ready(2, 0.0)
    assert core.advance(100.0) == []
    assert core.set_concurrency("f", -1, 0, now=105.0) == []
    # idle since 0: the keepalive deadline (10) is already past
    assert core.next_deadline() == 10.0
    assert core.advance(105.0) == [stop(1, R_KEEPALIVE), stop(2, R_KEEPALIVE)]
    assert core.counts("f") == (0, 0, 0, 0)


def test_lowering_provisioned_partially(Scheduler: Any) -> None:
    core = Scheduler()
    add(core, provisioned=2, keepalive=10.0)
    core.ready(1, 0.0)
    core.ready(2, 1.0)
    assert core.set_concurrency("f", -1, 1, now=2.0) == []
    assert core.advance(9.999) == []
    assert core.advance(10.0) == [stop(1, R_KEEPALIVE)]  # idle since 0: first to go
    assert core.advance(11.0) == []  # env 2 is the floor now
    assert core.counts("f") == (0, 1, 0, 0)
    assert core.advance(1000.0) == []
    assert core.counts("f") == (0, 1, 0, 0)


def test_raising_provisioned_starts_the_difference(Scheduler: Any) -> None:
    core = Scheduler()
    assert add(core, provisioned=1) == [cold(1, -1)]
    assert core.set_concurrency("f", -1, 3, now=1.0) == [cold(2, -1), cold(3, -1)]
    assert core.counts("f") == (3, 0, 0, 0)
    assert core.generation("f") == 0  # set_concurrency is not a new generation


def test_failed_provisioned_prewarm_is_not_retried_until_update(Scheduler: Any) -> None:
    core = Scheduler()
    assert add(core, provisioned=2) == [cold(1, -1), cold(2, -1)]
    assert core.start_failed(1, 1.0) == [stop(1, R_INIT_FAILED)]
    assert core.counts("f") == (1, 0, 0, 0)
    assert core.ready(2, 2.0) == []
    assert core.advance(10_000.0) == []
    assert core.counts("f") == (0, 1, 0, 0)  # below the floor, not retried

    assert update(core, provisioned=2, now=10_001.0) == [
        stop(2, R_GENERATION),
        cold(3, -1),
        cold(4, -1),
    ]
    assert core.generation("f") == 1


def test_provisioned_prewarm_init_timeout_is_not_retried(Scheduler: Any) -> None:
    core = Scheduler()
    assert add(core, provisioned=1, timeout=3.0) == [cold(1, -1)]
    assert core.advance(9.999) == []
    assert core.advance(10.0) == [kill(1, -1, R_INIT_TIMEOUT), stop(1, R_INIT_TIMEOUT)]
    assert core.advance(1000.0) == []
    assert core.counts("f") == (0, 0, 0, 0)


def test_provisioned_env_recycled_by_max_uses_is_replaced(Scheduler: Any) -> None:
    core = Scheduler()
    assert add(core, provisioned=1, max_uses=1) == [cold(1, -1)]
    core.ready(1, 0.0)
    assert core.submit(1, "f", 1.0) == [disp(1, 1)]
    assert core.release(1, 2.0) == [stop(1, R_MAX_USES), cold(2, -1)]
    assert core.counts("f") == (1, 0, 0, 0)


def test_provisioned_floor_above_the_cold_start_cap_fills_in_as_starts_finish(
    Scheduler: Any,
) -> None:
    core = Scheduler(cold_start_cap=2)
    assert add(core, provisioned=4) == [cold(1, -1), cold(2, -1)]
    assert core.ready(1, 1.0) == [cold(3, -1)]
    assert core.start_failed(2, 1.0) == [stop(2, R_INIT_FAILED)]  # stops the refill
    assert core.ready(3, 2.0) == []
    assert core.counts("f") == (0, 2, 0, 0)


# -- reserved concurrency and the account limit -------------------------------------------------


def test_reserved_concurrency_is_a_cap(Scheduler: Any) -> None:
    core = Scheduler(account_limit=100, max_queue=0)
    add(core, reserved=2)
    assert core.submit(1, "f", 0.0) == [cold(1, 1)]
    assert core.submit(2, "f", 0.0) == [cold(2, 2)]
    assert core.submit(3, "f", 0.0) == [throttle(3, R_RESERVED)]
    core.ready(1, 0.0)
    assert core.release(1, 1.0) == []
    assert core.submit(4, "f", 1.0) == [disp(1, 4)]
    assert core.submit(5, "f", 1.0) == [throttle(5, R_RESERVED)]


def test_reserved_zero_refuses_everything(Scheduler: Any) -> None:
    core = Scheduler()
    add(core, reserved=0)
    assert core.submit(1, "f", 0.0) == [throttle(1, R_RESERVED)]


def test_reserved_concurrency_is_a_guarantee(Scheduler: Any) -> None:
    core = Scheduler(account_limit=5, max_queue=0)
    add(core, "r", reserved=3)
    add(core, "u")
    add(core, "v")
    assert core.submit(1, "u", 0.0) == [cold(1, 1)]
    assert core.submit(2, "v", 0.0) == [cold(2, 2)]
    assert core.submit(3, "u", 0.0) == [throttle(3, R_ACCOUNT)]  # 5 - 3 reserved = 2
    assert core.submit(4, "v", 0.0) == [throttle(4, R_ACCOUNT)]
    # The reserved function still gets its 3, and not one more.
    assert core.submit(5, "r", 0.0) == [cold(3, 5)]
    assert core.submit(6, "r", 0.0) == [cold(4, 6)]
    assert core.submit(7, "r", 0.0) == [cold(5, 7)]
    assert core.submit(8, "r", 0.0) == [throttle(8, R_RESERVED)]


def test_unreserving_returns_the_guarantee_to_the_pool(Scheduler: Any) -> None:
    core = Scheduler(account_limit=3)
    add(core, "r", reserved=2)
    add(core, "u")
    assert core.submit(1, "u", 0.0) == [cold(1, 1)]
    assert core.submit(2, "u", 0.0) == [throttle(2, R_ACCOUNT)]
    assert core.set_concurrency("r", -1, 0, now=1.0) == []
    assert core.submit(3, "u", 1.0) == [cold(2, 3)]
    assert core.submit(4, "u", 1.0) == [cold(3, 4)]
    assert core.submit(5, "u", 1.0) == [throttle(5, R_ACCOUNT)]


def test_account_limit_throttles(Scheduler: Any) -> None:
    core = Scheduler(account_limit=2, max_queue=0)
    add(core, "f")
    add(core, "g")
    assert core.submit(1, "f", 0.0) == [cold(1, 1)]
    assert core.submit(2, "g", 0.0) == [cold(2, 2)]
    assert core.submit(3, "f", 0.0) == [throttle(3, R_ACCOUNT)]
    assert core.submit(4, "g", 0.0) == [throttle(4, R_ACCOUNT)]
    # A start that fails gives its slot back.
    assert core.start_failed(1, 1.0) == [stop(1, R_INIT_FAILED)]
    assert core.submit(5, "g", 1.0) == [cold(3, 5)]


@pytest.mark.parametrize(
    ("reserved", "reason"),
    [(-1, R_ACCOUNT), (1, R_RESERVED)],
    ids=["account", "reserved"],
)
def test_bounded_wait_queue(Scheduler: Any, reserved: int, reason: int) -> None:
    core = Scheduler(account_limit=1, max_queue=2)
    add(core, reserved=reserved, timeout=100.0)
    assert core.submit(1, "f", 0.0) == [cold(1, 1)]
    assert core.submit(2, "f", 0.0) == [queued(2)]
    assert core.submit(3, "f", 0.0) == [queued(3)]
    assert core.submit(4, "f", 0.0) == [throttle(4, reason)]
    assert core.counts("f") == (1, 0, 0, 2)
    assert core.ready(1, 1.0) == [disp(1, 1)]  # waiters still have no capacity
    assert core.counts("f") == (0, 0, 1, 2)

    assert core.release(1, 2.0) == [disp(1, 2)]  # the oldest waiter gets the env
    assert core.counts("f") == (0, 0, 1, 1)
    assert core.submit(5, "f", 2.0) == [queued(5)]  # room in the queue again
    assert core.release(1, 3.0) == [disp(1, 3)]
    assert core.release(1, 4.0) == [disp(1, 5)]
    assert core.release(1, 5.0) == []
    assert core.counts("f") == (0, 1, 0, 0)


def test_waiter_times_out_and_served_waiter_is_not_throttled(Scheduler: Any) -> None:
    core = Scheduler(account_limit=1, max_queue=2, queue_timeout=5.0)
    add(core, timeout=100.0)
    assert core.submit(1, "f", 0.0) == [cold(1, 1)]
    assert core.ready(1, 0.5) == [disp(1, 1)]
    assert core.submit(2, "f", 1.0) == [queued(2)]  # deadline 6
    assert core.submit(3, "f", 2.0) == [queued(3)]  # deadline 7
    assert core.next_deadline() == 6.0
    assert core.advance(5.999) == []
    assert core.advance(6.0) == [throttle(2, R_WAIT_TIMEOUT)]
    assert core.counts("f") == (0, 0, 1, 1)
    assert core.next_deadline() == 7.0

    assert core.release(1, 6.5) == [disp(1, 3)]  # served before its deadline
    assert core.next_deadline() == 106.5
    assert core.advance(7.0) == []
    assert core.advance(50.0) == []
    assert core.counts("f") == (0, 0, 1, 0)


def test_waiters_of_several_functions_are_served_oldest_function_first(Scheduler: Any) -> None:
    core = Scheduler(account_limit=1, max_queue=5)
    add(core, "f", timeout=100.0)
    add(core, "g", timeout=100.0)
    warm_env(core, 1, "f")
    assert core.submit(2, "g", 1.0) == [queued(2)]
    assert core.submit(3, "f", 2.0) == [queued(3)]
    # g's waiter came first; f's released env is of no use to g, so g cold-starts.
    assert core.release(1, 3.0) == [cold(2, 2)]
    assert core.counts("f") == (0, 1, 0, 1)
    assert core.counts("g") == (1, 0, 0, 0)
    assert core.ready(2, 4.0) == [disp(2, 2)]
    assert core.release(2, 5.0) == [disp(1, 3)]


def test_new_submit_waits_behind_earlier_waiters(Scheduler: Any) -> None:
    core = Scheduler(cold_start_cap=1)
    add(core)
    assert core.submit(1, "f", 0.0) == [cold(1, 1)]
    assert core.submit(2, "f", 0.0) == [queued(2)]
    assert core.submit(3, "f", 0.0) == [queued(3)]  # FIFO, even though capacity is there
    assert core.ready(1, 1.0) == [disp(1, 1), cold(2, 2)]
    assert core.ready(2, 2.0) == [disp(2, 2), cold(3, 3)]


# -- cold-start cap -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "first"),
    [("ready", disp(1, 1)), ("start_failed", stop(1, R_INIT_FAILED))],
)
def test_cold_start_cap_queues_the_third_start(
    Scheduler: Any, event: str, first: tuple[int, ...]
) -> None:
    core = Scheduler(account_limit=10, cold_start_cap=2)
    add(core)
    assert core.submit(1, "f", 0.0) == [cold(1, 1)]
    assert core.submit(2, "f", 0.0) == [cold(2, 2)]
    assert core.submit(3, "f", 0.0) == [queued(3)]
    assert core.counts("f") == (2, 0, 0, 1)
    assert getattr(core, event)(1, 1.0) == [first, cold(3, 3)]
    assert core.counts("f") == (2, 0, int(event == "ready"), 0)


def test_cold_start_cap_is_shared_and_counts_prewarms(Scheduler: Any) -> None:
    core = Scheduler(cold_start_cap=2)
    assert add(core, "p", provisioned=1) == [cold(1, -1)]
    add(core, "f")
    assert core.submit(1, "f", 0.0) == [cold(2, 1)]
    assert core.submit(2, "f", 0.0) == [queued(2)]
    assert core.ready(1, 1.0) == [cold(3, 2)]  # the pre-warm's slot goes to f's waiter


def test_cold_start_cap_does_not_block_a_warm_dispatch(Scheduler: Any) -> None:
    core = Scheduler(cold_start_cap=1)
    add(core, "f")
    add(core, "g")
    warm_env(core, 1, "f")
    assert core.release(1, 1.0) == []
    assert core.submit(2, "g", 1.0) == [cold(2, 2)]  # the cap is now full
    assert core.submit(3, "f", 2.0) == [disp(1, 3)]


def test_warm_env_below_a_dead_one_serves_when_the_cap_is_full(Scheduler: Any) -> None:
    """Regression: a dead env on top of the idle stack must not make req wait for a start slot
    while a warm env of the same function is idle below it (it used to QUEUE, then be refused
    with R_WAIT_TIMEOUT)."""
    core = Scheduler(cold_start_cap=1, queue_timeout=30.0)
    add(core, "f", timeout=3.0)
    add(core, "g")
    warm_env(core, 1, "f", env=1)
    warm_env(core, 2, "f", env=2)
    assert core.release(2, 1.0) == []
    assert core.release(1, 2.0) == []  # idle stack: [2, 1]
    assert core.submit(3, "f", 3.0) == [disp(1, 3)]
    assert core.advance(6.0) == [kill(1, 3, R_TIMEOUT)]  # dead env 1 back on top: [2, 1]
    assert core.submit(4, "g", 7.0) == [cold(3, 4)]  # takes the only start slot
    assert core.submit(5, "f", 8.0) == [disp(2, 5)]  # not QUEUE
    assert core.counts("f") == (0, 1, 1, 0)
    # With a slot free, the dead env on top is still the one routed to (LIFO).
    assert core.ready(3, 9.0) == [disp(3, 4)]
    assert core.submit(6, "f", 9.0) == [cold(1, 6)]


# -- memory budget ------------------------------------------------------------------------------


def two_idle_envs_of_a(core: Any, order: tuple[int, int] = (1, 2)) -> None:
    add(core, "a", memory_mb=256)
    add(core, "b", memory_mb=256)
    warm_env(core, 101, "a", env=1)
    warm_env(core, 102, "a", env=2)
    for t, env in enumerate(order, start=1):
        assert core.release(env, float(t)) == []


@pytest.mark.parametrize(("order", "victim"), [((1, 2), 1), ((2, 1), 2)])
def test_memory_budget_evicts_lru_idle_env_of_another_function(
    Scheduler: Any, order: tuple[int, int], victim: int
) -> None:
    core = Scheduler(memory_budget_mb=512)
    two_idle_envs_of_a(core, order)
    assert core.submit(1, "b", 5.0) == [evict(victim), cold(3, 1)]
    assert core.counts("a") == (0, 1, 0, 0)
    assert core.counts("b") == (1, 0, 0, 0)
    assert core.env_count() == 2
    survivor = 3 - victim
    assert core.submit(2, "a", 6.0) == [disp(survivor, 2)]


def test_function_larger_than_the_budget_is_throttled(Scheduler: Any) -> None:
    core = Scheduler(memory_budget_mb=512)
    add(core, "big", memory_mb=1024)
    assert core.submit(1, "big", 0.0) == [throttle(1, R_MEMORY)]
    assert core.counts("big") == (0, 0, 0, 0)


def test_no_partial_eviction_when_it_would_not_fit(Scheduler: Any) -> None:
    core = Scheduler(memory_budget_mb=512)
    add(core, "a", memory_mb=256)
    add(core, "c", memory_mb=512)
    warm_env(core, 101, "a", env=1)
    warm_env(core, 102, "a", env=2)
    assert core.release(1, 1.0) == []  # 256 idle, 256 busy: evicting env 1 is not enough
    assert core.submit(1, "c", 2.0) == [queued(1)]
    assert core.counts("a") == (0, 1, 1, 0)
    assert core.release(2, 3.0) == [evict(1), evict(2), cold(3, 1)]
    assert core.counts("a") == (0, 0, 0, 0)


@pytest.mark.parametrize(
    ("kw", "freed"),
    [
        ({}, evict(2)),  # released, then evicted for the waiter
        ({"keepalive": 0.0}, stop(2, R_KEEPALIVE)),
        ({"max_uses": 1}, stop(2, R_MAX_USES)),
    ],
    ids=["evict", "keepalive0", "max_uses"],
)
def test_memory_waiter_is_served_when_a_release_frees_memory(
    Scheduler: Any, kw: dict[str, Any], freed: tuple[int, ...]
) -> None:
    core = Scheduler(memory_budget_mb=512)
    add(core, "a", memory_mb=256, **kw)
    add(core, "b", memory_mb=256)
    warm_env(core, 101, "a", env=1)
    warm_env(core, 102, "a", env=2)
    assert core.submit(1, "b", 1.0) == [queued(1)]  # nothing idle to evict
    assert core.counts("b") == (0, 0, 0, 1)
    assert core.release(2, 2.0) == [freed, cold(3, 1)]
    assert core.counts("b") == (1, 0, 0, 0)


def test_memory_waiter_is_served_after_a_timeout_kill(Scheduler: Any) -> None:
    core = Scheduler(memory_budget_mb=512)
    add(core, "a", memory_mb=256, timeout=5.0)
    add(core, "b", memory_mb=256)
    warm_env(core, 101, "a", env=1)
    warm_env(core, 102, "a", env=2)
    assert core.submit(1, "b", 1.0) == [queued(1)]
    # The killed env goes idle without a worker, and is evictable at once.
    assert core.advance(5.0) == [
        kill(1, 101, R_TIMEOUT),
        kill(2, 102, R_TIMEOUT),
        evict(1),
        cold(3, 1),
    ]


def test_memory_waiter_is_served_when_the_floor_is_lowered(Scheduler: Any) -> None:
    # Env 1 of "a" is idle but at the provisioned floor, so not evictable: b waits.
    core = Scheduler(memory_budget_mb=256, queue_timeout=100.0)
    assert add(core, "a", memory_mb=256, provisioned=1, keepalive=10.0) == [cold(1, -1)]
    add(core, "b", memory_mb=256)
    assert core.ready(1, 0.0) == []
    assert core.submit(1, "b", 1.0) == [queued(1)]
    assert core.counts("a") == (0, 1, 0, 0)
    # set_concurrency pumps: the env is no longer at the floor, so it is evicted right away.
    assert core.set_concurrency("a", -1, 0, now=2.0) == [evict(1), cold(2, 1)]


def test_provisioned_floor_envs_are_not_evicted(Scheduler: Any) -> None:
    core = Scheduler(memory_budget_mb=512, queue_timeout=30.0)
    assert add(core, "a", memory_mb=256, provisioned=2) == [cold(1, -1), cold(2, -1)]
    add(core, "b", memory_mb=256)
    core.ready(1, 0.0)
    core.ready(2, 0.0)
    assert core.submit(1, "b", 1.0) == [queued(1)]
    assert core.advance(31.0) == [throttle(1, R_WAIT_TIMEOUT)]
    assert core.counts("a") == (0, 2, 0, 0)
    # One above the floor is fair game.
    assert core.set_concurrency("a", -1, 1, now=40.0) == []
    assert core.submit(2, "b", 41.0) == [evict(1), cold(3, 2)]
    assert core.counts("a") == (0, 1, 0, 0)


def test_envs_of_the_same_function_are_not_evicted(Scheduler: Any) -> None:
    core = Scheduler(memory_budget_mb=512)
    add(core, "a", memory_mb=256)
    warm_env(core, 1, "a", env=1)
    warm_env(core, 2, "a", env=2)
    assert core.submit(3, "a", 1.0) == [queued(3)]
    assert core.release(1, 2.0) == [disp(1, 3)]  # the released env serves the waiter
    assert core.env_count() == 2


def test_memory_budget_counts_starting_envs(Scheduler: Any) -> None:
    core = Scheduler(memory_budget_mb=256)
    add(core, "a", memory_mb=128)
    add(core, "b", memory_mb=256)
    assert core.submit(1, "a", 0.0) == [cold(1, 1)]
    assert core.submit(2, "a", 0.0) == [cold(2, 2)]
    assert core.submit(3, "b", 0.0) == [queued(3)]  # starting envs are not evictable
    assert core.ready(1, 1.0) == [disp(1, 1)]
    assert core.ready(2, 1.0) == [disp(2, 2)]
    assert core.release(1, 2.0) == []  # 128 idle + 128 busy: b still does not fit
    assert core.release(2, 3.0) == [evict(1), evict(2), cold(3, 3)]


# -- invocation timeout -------------------------------------------------------------------------


def test_invocation_timeout_kills_and_the_env_cold_starts_in_place(Scheduler: Any) -> None:
    core = Scheduler()
    add(core, timeout=3.0, keepalive=300.0)
    assert core.submit(1, "f", 0.0) == [cold(1, 1)]
    assert core.ready(1, 10.0) == [disp(1, 1)]
    assert core.advance(12.999) == []
    assert core.advance(13.0) == [kill(1, 1, R_TIMEOUT)]
    assert core.counts("f") == (0, 1, 0, 0)  # idle, without a worker
    assert core.submit(2, "f", 14.0) == [cold(1, 2)]  # the SAME env, not a dispatch
    assert core.counts("f") == (1, 0, 0, 0)
    assert core.ready(1, 15.0) == [disp(1, 2)]
    assert core.env_count() == 1


def test_killed_env_ages_out_from_the_kill(Scheduler: Any) -> None:
    core = Scheduler()
    add(core, timeout=3.0, keepalive=100.0)
    warm_env(core, 1)
    assert core.advance(3.0) == [kill(1, 1, R_TIMEOUT)]
    assert core.next_deadline() == 103.0
    assert core.advance(102.999) == []
    assert core.advance(103.0) == [stop(1, R_KEEPALIVE)]


@pytest.mark.parametrize(
    ("max_uses", "after_kill"),
    [(1, [kill(1, 1, R_TIMEOUT), stop(1, R_MAX_USES)]), (2, [kill(1, 1, R_TIMEOUT)])],
)
def test_timed_out_invocation_counts_towards_max_uses(
    Scheduler: Any, max_uses: int, after_kill: list[tuple[int, ...]]
) -> None:
    core = Scheduler()
    add(core, timeout=3.0, max_uses=max_uses)
    warm_env(core, 1)
    assert core.advance(3.0) == after_kill
    if max_uses == 2:
        assert core.submit(2, "f", 4.0) == [cold(1, 2)]
        assert core.ready(1, 5.0) == [disp(1, 2)]
        assert core.release(1, 6.0) == [stop(1, R_MAX_USES)]  # 2 uses: the kill counted
    assert core.submit(3, "f", 7.0) == [cold(2, 3)]


def test_timeout_frees_concurrency_for_a_waiter(Scheduler: Any) -> None:
    core = Scheduler(account_limit=1, max_queue=1)
    add(core, timeout=3.0)
    warm_env(core, 1)
    assert core.submit(2, "f", 1.0) == [queued(2)]
    assert core.advance(3.0) == [kill(1, 1, R_TIMEOUT), cold(1, 2)]


# -- init timeout -------------------------------------------------------------------------------


@pytest.mark.parametrize(("timeout", "init_deadline"), [(3.0, 10.0), (10.0, 10.0), (25.0, 25.0)])
def test_init_timeout(Scheduler: Any, timeout: float, init_deadline: float) -> None:
    core = Scheduler(cold_start_cap=1, queue_timeout=100.0)
    add(core, timeout=timeout)
    assert core.submit(1, "f", 1.0) == [cold(1, 1)]
    assert core.submit(2, "f", 1.0) == [queued(2)]  # waits for the start slot
    assert core.next_deadline() == 1.0 + init_deadline
    assert core.advance(1.0 + init_deadline - 0.001) == []
    assert core.advance(1.0 + init_deadline) == [
        kill(1, 1, R_INIT_TIMEOUT),
        stop(1, R_INIT_TIMEOUT),
        cold(2, 2),
    ]
    assert core.counts("f") == (1, 0, 0, 0)


def test_ready_cancels_the_init_timeout(Scheduler: Any) -> None:
    core = Scheduler()
    add(core, timeout=3.0, keepalive=300.0)
    assert core.submit(1, "f", 0.0) == [cold(1, 1)]
    assert core.ready(1, 9.0) == [disp(1, 1)]
    assert core.release(1, 9.5) == []
    assert core.advance(10.0) == []
    assert core.counts("f") == (0, 1, 0, 0)


# -- max uses -----------------------------------------------------------------------------------


def test_max_uses_recycles_the_env(Scheduler: Any) -> None:
    core = Scheduler()
    add(core, max_uses=3)
    assert core.submit(1, "f", 0.0) == [cold(1, 1)]
    assert core.ready(1, 0.0) == [disp(1, 1)]
    assert core.release(1, 1.0) == []
    assert core.submit(2, "f", 2.0) == [disp(1, 2)]
    assert core.release(1, 3.0) == []
    assert core.submit(3, "f", 4.0) == [disp(1, 3)]
    assert core.release(1, 5.0) == [stop(1, R_MAX_USES)]
    assert core.counts("f") == (0, 0, 0, 0)
    assert core.submit(4, "f", 6.0) == [cold(2, 4)]


def test_max_uses_recycle_hands_capacity_to_a_waiter(Scheduler: Any) -> None:
    core = Scheduler(account_limit=1, max_queue=1)
    add(core, max_uses=1)
    warm_env(core, 1)
    assert core.submit(2, "f", 1.0) == [queued(2)]
    assert core.release(1, 2.0) == [stop(1, R_MAX_USES), cold(2, 2)]


# -- generations --------------------------------------------------------------------------------


def test_update_function_starts_a_new_generation(Scheduler: Any) -> None:
    core = Scheduler()
    add(core)
    warm_env(core, 1, env=1)
    warm_env(core, 2, env=2)
    assert core.release(1, 1.0) == []
    assert core.counts("f") == (0, 1, 1, 0)
    assert core.generation("f") == 0

    assert update(core, now=2.0) == [stop(1, R_GENERATION)]
    assert core.generation("f") == 1
    assert core.counts("f") == (0, 0, 1, 0)
    assert core.submit(3, "f", 3.0) == [cold(3, 3)]  # not the busy old one
    assert core.release(2, 4.0) == [stop(2, R_GENERATION)]  # stopped, not reused
    assert core.ready(3, 5.0) == [disp(3, 3)]
    assert core.release(3, 6.0) == []
    assert core.submit(4, "f", 7.0) == [disp(3, 4)]
    assert update(core, now=8.0) == []
    assert core.generation("f") == 2
    assert core.release(3, 9.0) == [stop(3, R_GENERATION)]


def test_old_generation_starts_finish_their_request_or_stop(Scheduler: Any) -> None:
    core = Scheduler()
    assert add(core, provisioned=1) == [cold(1, -1)]
    assert core.submit(1, "f", 0.0) == [cold(2, 1)]
    assert update(core, provisioned=1, now=1.0) == [cold(3, -1)]  # the new floor
    assert core.ready(1, 2.0) == [stop(1, R_GENERATION)]  # old pre-warm: no use
    assert core.ready(2, 2.0) == [disp(2, 1)]  # old start bound to a request: runs it
    assert core.release(2, 3.0) == [stop(2, R_GENERATION)]
    assert core.ready(3, 3.0) == []
    assert core.counts("f") == (0, 1, 0, 0)


def test_update_function_applies_the_new_configuration(Scheduler: Any) -> None:
    core = Scheduler(account_limit=100)
    add(core, reserved=-1)
    assert update(core, reserved=1, keepalive=5.0, now=0.0) == []
    assert core.submit(1, "f", 0.0) == [cold(1, 1)]
    assert core.submit(2, "f", 0.0) == [throttle(2, R_RESERVED)]
    assert core.ready(1, 1.0) == [disp(1, 1)]
    assert core.release(1, 2.0) == []
    assert core.advance(7.0) == [stop(1, R_KEEPALIVE)]
    assert update(core, batch=True, now=8.0) == []
    assert core.submit(3, "f", 8.0) == [(SPILL, 0, 3, R_NONE)]


# -- remove_function ----------------------------------------------------------------------------


def test_remove_function(Scheduler: Any) -> None:
    core = Scheduler(account_limit=100, max_queue=1)
    add(core, reserved=3, timeout=1000.0)
    for env in (1, 2, 3):
        warm_env(core, env, env=env)
    assert core.release(3, 1.0) == []
    assert core.set_concurrency("f", 2, 0, now=1.0) == []  # now at the cap with 2 busy
    assert core.submit(4, "f", 2.0) == [queued(4)]
    assert core.counts("f") == (0, 1, 2, 1)

    assert core.remove_function("f", 3.0) == [throttle(4, R_REMOVED), stop(3, R_REMOVED)]
    with pytest.raises(KeyError):
        core.submit(5, "f", 3.0)
    with pytest.raises(KeyError):
        core.counts("f")
    assert core.release(1, 4.0) == [stop(1, R_REMOVED)]  # busy ones finish, then stop
    assert core.advance(100.0) == []  # the removed waiter's deadline is dead

    assert add(core, now=5.0) == []  # the same name again
    assert core.counts("f") == (0, 0, 0, 0)
    assert core.submit(6, "f", 6.0) == [cold(4, 6)]
    assert core.release(2, 7.0) == [stop(2, R_REMOVED)]  # the old function's env
    assert core.counts("f") == (1, 0, 0, 0)
    assert core.generation("f") == 0


def test_remove_function_with_starting_envs(Scheduler: Any) -> None:
    core = Scheduler()
    assert add(core, provisioned=1) == [cold(1, -1)]
    assert core.submit(1, "f", 0.0) == [cold(2, 1)]
    assert core.remove_function("f", 1.0) == []
    assert core.ready(1, 2.0) == [stop(1, R_REMOVED)]
    assert core.ready(2, 2.0) == [disp(2, 1)]  # the bound request still runs
    assert core.release(2, 3.0) == [stop(2, R_REMOVED)]
    assert core.env_count() == 0


def test_remove_function_returns_its_capacity(Scheduler: Any) -> None:
    core = Scheduler(account_limit=2, max_queue=1)
    add(core, "f")
    add(core, "g")
    warm_env(core, 1, "f", env=1)
    warm_env(core, 2, "f", env=2)
    assert core.submit(3, "g", 1.0) == [queued(3)]
    assert core.remove_function("f", 2.0) == []
    assert core.release(1, 3.0) == [stop(1, R_REMOVED), cold(3, 3)]


# -- batch functions ----------------------------------------------------------------------------


def test_batch_function_spills(Scheduler: Any) -> None:
    core = Scheduler(account_limit=1)
    add(core, "job", batch=True)
    assert core.submit(1, "job", 0.0) == [(SPILL, 0, 1, R_NONE)]
    assert core.submit(2, "job", 0.0) == [(SPILL, 0, 2, R_NONE)]  # no concurrency used
    assert core.counts("job") == (0, 0, 0, 0)
    assert core.env_count() == 0


# -- crashes and failed starts ------------------------------------------------------------------


def test_crash_of_a_busy_env_leaves_it_idle_without_a_worker(Scheduler: Any) -> None:
    core = Scheduler()
    add(core, keepalive=50.0)
    warm_env(core, 1)
    assert core.crashed(1, 1.0) == []
    assert core.counts("f") == (0, 1, 0, 0)
    assert core.next_deadline() == 51.0  # it can still age out
    assert core.submit(2, "f", 2.0) == [cold(1, 2)]  # same env, a cold start
    assert core.ready(1, 3.0) == [disp(1, 2)]


def test_crash_hands_capacity_to_a_waiter(Scheduler: Any) -> None:
    core = Scheduler(account_limit=1, max_queue=1)
    add(core)
    warm_env(core, 1)
    assert core.submit(2, "f", 1.0) == [queued(2)]
    assert core.crashed(1, 2.0) == [cold(1, 2)]


def test_crashed_on_a_starting_env_raises(Scheduler: Any) -> None:
    core = Scheduler()
    add(core)
    assert core.submit(1, "f", 0.0) == [cold(1, 1)]
    with pytest.raises(ValueError):
        core.crashed(1, 1.0)
    assert core.counts("f") == (1, 0, 0, 0)  # nothing changed
    assert core.ready(1, 2.0) == [disp(1, 1)]


def test_start_failed_frees_capacity_and_the_waiter_cold_starts(Scheduler: Any) -> None:
    core = Scheduler(account_limit=1, max_queue=1)
    add(core)
    assert core.submit(1, "f", 0.0) == [cold(1, 1)]
    assert core.submit(2, "f", 0.0) == [queued(2)]
    assert core.start_failed(1, 1.0) == [stop(1, R_INIT_FAILED), cold(2, 2)]
    assert core.counts("f") == (1, 0, 0, 0)
    assert core.env_count() == 1


def test_start_failed_on_a_restarted_env_drops_it(Scheduler: Any) -> None:
    core = Scheduler()
    add(core, timeout=3.0)
    warm_env(core, 1)
    assert core.advance(3.0) == [kill(1, 1, R_TIMEOUT)]
    assert core.submit(2, "f", 4.0) == [cold(1, 2)]
    assert core.start_failed(1, 5.0) == [stop(1, R_INIT_FAILED)]
    assert core.counts("f") == (0, 0, 0, 0)
    assert core.submit(3, "f", 6.0) == [cold(2, 3)]


# -- withdrawn calls ----------------------------------------------------------------------------


def test_withdrawn_waiter_never_runs(Scheduler: Any) -> None:
    core = Scheduler(max_queue=2, queue_timeout=30.0)
    add(core, reserved=1)
    warm_env(core, 1)
    assert core.submit(2, "f", 0.0) == [queued(2)]
    assert core.submit(3, "f", 0.0) == [queued(3)]
    assert core.counts("f") == (0, 0, 1, 2)
    assert core.withdraw(2, 0.1) == []
    assert core.counts("f") == (0, 0, 1, 1)
    assert core.release(1, 0.5) == [disp(1, 3)]  # the next waiter, not the withdrawn one
    assert core.release(1, 0.6) == []
    assert core.next_deadline() == 300.6  # the withdrawn waiter's 30.0 is dead
    assert core.advance(30.0) == []


def test_withdrawn_last_waiter_leaves_the_queue_open_for_new_calls(Scheduler: Any) -> None:
    core = Scheduler(max_queue=1, queue_timeout=30.0)
    add(core, reserved=1)
    warm_env(core, 1)
    assert core.submit(2, "f", 0.0) == [queued(2)]
    assert core.withdraw(2, 0.1) == []
    assert core.release(1, 0.2) == []
    assert core.submit(3, "f", 0.3) == [disp(1, 3)]  # served at once, not queued behind 2


def test_withdraw_during_its_cold_start_frees_the_capacity(Scheduler: Any) -> None:
    core = Scheduler(max_queue=1, queue_timeout=30.0)
    add(core, reserved=1)
    assert core.submit(1, "f", 0.0) == [cold(1, 1)]
    assert core.submit(2, "f", 0.0) == [queued(2)]
    # 1 gives up while its environment starts: 2 takes the capacity at once
    assert core.withdraw(1, 0.1) == [cold(2, 2)]
    assert core.ready(1, 0.2) == []  # nobody to run: it becomes idle and warm
    assert core.counts("f") == (1, 1, 0, 0)
    assert core.next_deadline() == 10.1  # env 2's init timeout; env 1's keepalive is later
    assert core.submit(3, "f", 0.3) == [queued(3)]  # 2 holds the one slot


def test_withdraw_of_a_dispatched_call_changes_nothing(Scheduler: Any) -> None:
    core = Scheduler()
    add(core)
    warm_env(core, 1)
    assert core.withdraw(1, 0.1) == []
    assert core.counts("f") == (0, 0, 1, 0)
    assert core.advance(3.0) == [kill(1, 1, R_TIMEOUT)]  # it still runs under its deadline
    assert core.withdraw(99, 3.0) == []  # unknown: nothing to do


# -- heap compaction ----------------------------------------------------------------------------


def test_heap_stays_bounded_and_deadlines_survive_compaction(Scheduler: Any) -> None:
    core = Scheduler(account_limit=2, max_queue=1, queue_timeout=30.0)
    add(core, "f", timeout=3.0, keepalive=100.0)
    add(core, "g", timeout=50.0, reserved=1)
    warm_env(core, 1, "f", env=1)
    assert core.release(1, 0.0) == []
    warm_env(core, 2, "g", env=2)  # g busy until its timeout at 50
    assert core.submit(3, "g", 0.0) == [queued(3)]  # waits until 30

    t = 0.0
    biggest = 0
    for i in range(5000):
        t = i * 0.001
        assert core.submit(10 + i, "f", t) == [disp(1, 10 + i)]
        assert core.release(1, t + 0.0005) == []
        biggest = max(biggest, core.heap_size())
    assert biggest < 3000
    last_release = t + 0.0005

    assert core.next_deadline() == 30.0
    assert core.advance(29.999) == []
    assert core.advance(30.0) == [throttle(3, R_WAIT_TIMEOUT)]
    assert core.advance(49.999) == []
    assert core.advance(50.0) == [kill(2, 2, R_TIMEOUT)]
    assert core.next_deadline() == last_release + 100.0
    assert core.advance(last_release + 99.999) == []
    assert core.advance(last_release + 100.0) == [stop(1, R_KEEPALIVE)]
    assert core.counts("f") == (0, 0, 0, 0)


def test_heap_stays_bounded_with_queue_churn(Scheduler: Any) -> None:
    core = Scheduler(account_limit=1, max_queue=1, queue_timeout=1000.0)
    add(core, timeout=1000.0, keepalive=1000.0)
    warm_env(core, 0)
    biggest = 0
    for i in range(1, 3001):
        assert core.submit(i, "f", float(i)) == [queued(i)]
        assert core.release(1, float(i)) == [disp(1, i)]
        biggest = max(biggest, core.heap_size())
    assert biggest < 3000
    assert core.counts("f") == (0, 0, 1, 0)
    assert core.next_deadline() == 3000.0 + 1000.0


# -- introspection ------------------------------------------------------------------------------


def test_counts_and_repr(Scheduler: Any) -> None:
    core = Scheduler(account_limit=3, max_queue=1, memory_budget_mb=1024)
    add(core, "f", memory_mb=128)
    add(core, "g", memory_mb=256)
    warm_env(core, 1, "f", env=1)
    warm_env(core, 2, "f", env=2)
    assert core.release(1, 1.0) == []
    assert core.submit(3, "g", 1.0) == [cold(3, 3)]
    assert core.submit(4, "g", 1.0) == [cold(4, 4)]
    assert core.submit(5, "g", 1.0) == [queued(5)]
    assert core.counts("f") == (0, 1, 1, 0)
    assert core.counts("g") == (2, 0, 0, 1)
    assert core.env_count() == 4
    text = repr(core)
    for part in (
        "functions=2",
        "envs=4",
        "starting=2",
        "busy=1",
        "idle=1",
        "waiting=1",
        "memory=768MB",
    ):
        assert part in text, (part, text)


# -- a model-checked random walk ----------------------------------------------------------------


class _Walk:
    """Drives a core with random events and checks every action against a model of the envs.

    Checks: actions name envs in a state that allows them; every request is answered exactly
    once; the start cap, memory budget and concurrency limits hold; counts() agrees with the
    model; no request waits while its function has a warm idle env and concurrency to spare;
    no idle env outlives its keepalive; at the end everything drains.
    """

    LIMIT = 4
    CAP = 2
    BUDGET = 768

    def __init__(self, core: Any) -> None:
        self.core = core
        self.now = 0.0
        self.fns: dict[str, dict[str, Any]] = {
            "a": cfg(memory_mb=128, timeout=2.0, keepalive=4.0),
            "b": cfg(memory_mb=256, timeout=5.0, keepalive=0.0, reserved=2, max_uses=2),
            "p": cfg(memory_mb=128, timeout=3.0, keepalive=6.0, provisioned=1),
        }
        self.envs: dict[int, dict[str, Any]] = {}
        self.open: dict[int, str] = {}
        self.waiting: dict[int, str] = {}
        self.next_req = 0
        out = []
        for name, c in self.fns.items():
            out += core.add_function(name, FunctionLimits(**c), 0.0)
        self.apply(out)

    def apply(self, out: list[tuple[int, int, int, int]]) -> None:
        for kind, env_id, req, reason in out:
            if kind == DISPATCH:
                self.on_dispatch(env_id, req)
            elif kind == COLD_START:
                self.on_cold_start(env_id, req)
            elif kind == QUEUE:
                self.waiting[req] = self.open[req]
            elif kind == THROTTLE:
                del self.open[req]
                self.waiting.pop(req, None)
            elif kind == KILL:
                self.on_kill(env_id, req, reason)
            elif kind in (STOP, EVICT):
                env = self.envs.pop(env_id)
                assert env["state"] in ("idle", "dead"), out
                if kind == EVICT:
                    assert env["state"] == "idle"
                    assert reason == R_MEMORY
            else:
                raise AssertionError(out)
        self.check()

    def on_dispatch(self, env_id: int, req: int) -> None:
        env = self.envs[env_id]
        if env["state"] == "idle":
            assert env["alive"]
        else:
            assert env["state"] == "starting"
            assert env["req"] == req
        assert self.open[req] == env["fn"]
        env.update(state="busy", req=req, alive=True)
        self.waiting.pop(req, None)

    def on_cold_start(self, env_id: int, req: int) -> None:
        env = self.envs.get(env_id)
        if env is None:
            name = self.open[req] if req >= 0 else "p"  # only "p" pre-warms
            env = {"fn": name, "alive": False, "mem": self.fns[name]["memory_mb"]}
            self.envs[env_id] = env
        else:
            assert env["state"] == "idle"  # a restart in place
            assert not env["alive"]
        env.update(state="starting", req=req)
        self.waiting.pop(req, None)

    def on_kill(self, env_id: int, req: int, reason: int) -> None:
        env = self.envs[env_id]
        assert env["req"] == req
        if reason == R_TIMEOUT:
            assert env["state"] == "busy"
            env.update(state="idle", alive=False, req=-1, since=self.now)
        else:
            assert reason == R_INIT_TIMEOUT
            assert env["state"] == "starting"
            env.update(state="dead", req=-1)
        if req >= 0:
            del self.open[req]

    def inflight(self, name: str) -> int:
        return sum(
            1
            for e in self.envs.values()
            if e["fn"] == name and e["state"] in ("starting", "busy") and e["req"] >= 0
        )

    def check(self) -> None:
        envs = self.envs.values()
        assert sum(e["state"] == "starting" for e in envs) <= self.CAP
        assert sum(e["mem"] for e in envs) <= self.BUDGET
        assert self.inflight("b") <= 2
        assert self.inflight("a") + self.inflight("p") <= self.LIMIT - 2
        for name in self.fns:
            mine = [e for e in envs if e["fn"] == name]
            waiting = sum(1 for f in self.waiting.values() if f == name)
            expect = tuple(sum(e["state"] == s for e in mine) for s in ("starting", "idle", "busy"))
            assert self.core.counts(name) == (*expect, waiting)
            if waiting:
                has_room = (
                    self.inflight(name) < 2
                    if name == "b"
                    else self.inflight("a") + self.inflight("p") < self.LIMIT - 2
                )
                assert not (has_room and any(e["state"] == "idle" and e["alive"] for e in mine))

    def step(self, op: int, pick: int) -> None:
        if op < 40:
            name = "abp"[pick % 3]
            req = self.next_req
            self.next_req += 1
            self.open[req] = name
            out = self.core.submit(req, name, self.now)
            assert [a[2] for a in out].count(req) >= 1
            self.apply(out)
            return
        if op < 75:
            self.event(op, pick)
            return
        self.now += (0.5, 1.0, 2.5, 7.0)[pick % 4]
        self.apply(self.core.advance(self.now))
        for e in self.envs.values():
            ka = self.fns[e["fn"]]["keepalive"]
            if e["state"] == "idle" and e["fn"] != "p":
                assert e["since"] + ka > self.now, e

    def event(self, op: int, pick: int) -> None:
        starting = sorted(i for i, e in self.envs.items() if e["state"] == "starting")
        busy = sorted(i for i, e in self.envs.items() if e["state"] == "busy")
        if op < 55 and starting:
            env_id = starting[pick % len(starting)]
            env = self.envs[env_id]
            if pick % 7 == 0:
                if env["req"] >= 0:
                    del self.open[env["req"]]
                env.update(state="dead", req=-1)
                out = self.core.start_failed(env_id, self.now)
                assert out[0] == stop(env_id, R_INIT_FAILED)
            else:
                if env["req"] < 0:
                    env.update(state="idle", alive=True, since=self.now)
                out = self.core.ready(env_id, self.now)
            self.apply(out)
        elif busy:
            env_id = busy[pick % len(busy)]
            env = self.envs[env_id]
            del self.open[env["req"]]
            env.update(state="idle", req=-1, since=self.now)
            if pick % 5 == 0:
                env["alive"] = False
                self.apply(self.core.crashed(env_id, self.now))
            else:
                self.apply(self.core.release(env_id, self.now))

    def settle(self) -> None:
        """Make every start ready and release every invocation, until nothing runs."""
        for _ in range(200):
            if not any(e["state"] in ("starting", "busy") for e in self.envs.values()):
                return
            self.event(0, 1)  # a ready if anything starts (pick 1: never a failure)
            self.event(60, 1)  # a release (pick 1: never a crash)
        raise AssertionError("did not settle")

    def drain(self) -> None:
        for _ in range(3):
            self.settle()
            self.now += 100.0
            self.apply(self.core.advance(self.now))
        self.settle()
        assert not self.open
        assert not self.waiting
        # Only the provisioned floor may stay (none if its pre-warm failed).
        assert [e["fn"] for e in self.envs.values()] in ([], ["p"])
        assert self.core.counts("a") == (0, 0, 0, 0)
        assert self.core.counts("b") == (0, 0, 0, 0)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.lists(st.tuples(st.integers(0, 99), st.integers(0, 1000)), max_size=80))
def test_random_walk_keeps_the_invariants(Scheduler: Any, steps: list[tuple[int, int]]) -> None:
    core = Scheduler(
        account_limit=_Walk.LIMIT,
        cold_start_cap=_Walk.CAP,
        memory_budget_mb=_Walk.BUDGET,
        max_queue=2,
        queue_timeout=5.0,
    )
    walk = _Walk(core)
    for op, pick in steps:
        walk.step(op, pick)
    walk.drain()


@pytest.mark.parametrize("seed", range(5))
def test_long_random_walks(Scheduler: Any, seed: int) -> None:
    rng = random.Random(seed)
    core = Scheduler(
        account_limit=_Walk.LIMIT,
        cold_start_cap=_Walk.CAP,
        memory_budget_mb=_Walk.BUDGET,
        max_queue=2,
        queue_timeout=5.0,
    )
    walk = _Walk(core)
    for _ in range(2000):
        walk.step(rng.randrange(100), rng.randrange(1001))
    walk.drain()
