"""SchedulerPy and SchedulerC must be indistinguishable: same actions, errors and state.

One random operation sequence drives both cores the way the engine would: ``ready`` and
``start_failed`` only on starting environments, ``release`` on busy ones, ``crashed`` on busy or
idle ones, time never going back.  After every step the return values (or exception type and
arguments) and every public counter must be equal.  A small model rebuilt from the action
stream (plus ``env_function`` to tell whose a new environment is) checks invariants any correct
core keeps: the memory budget, the cold-start cap, one invocation per environment, every request
answered exactly once, and the per-function counts.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import random
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pytest
from helpers import ROOT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime import _scheduler_py as py_core
from runtime.scheduler import (
    COLD_START,
    DISPATCH,
    EVICT,
    KILL,
    MISSING_COMPILED,
    QUEUE,
    REQUIRE_EXTENSIONS,
    SPILL,
    STOP,
    THROTTLE,
    FunctionLimits,
    SchedulerPy,
    require_compiled,
)

T = TypeVar("T")
FnKey = tuple[str, int]  # (name, incarnation): a removed and re-added name is a new function

NAMES = ("f0", "f1", "f2")
GHOST = "ghost"  # never registered: every call naming it is a KeyError
MEMORY = (64, 128, 128, 256, 256, 512, 2048)  # 2048 never fits a small budget
TIMEOUT = (0.5, 2.0, 5.0, 15.0)  # 15 s is above the 10 s init-timeout floor
KEEPALIVE = (0.0, 1.0, 5.0, 60.0, 60.0)
RESERVED = (-1, -1, 0, 1, 2, 3)
PROVISIONED = (0, 0, 0, 1, 2)
MAX_USES = (0, 0, 1, 2, 5)
BATCH = (False,) * 7 + (True,)
STEP = (0.0, 0.0, 0.0, 0.25, 0.5)  # time passing between operations (ties are on purpose)
JUMP = (0.0, 0.5, 1.0, 2.0, 5.0, 11.0, 30.0, 100.0)  # advance() steps


def compiled_core() -> type[Any]:
    """SchedulerC, or skip (fail when the extensions are required)."""
    try:
        core = require_compiled()
    except RuntimeError:
        pytest.fail(MISSING_COMPILED)
    if core is None:
        pytest.skip("Cython core not built")
    return core


# -- choices: Hypothesis (shrinks) or a seeded Random (long runs) ---------------------------


class HypothesisChooser:
    def __init__(self, data: st.DataObject) -> None:
        self.data = data

    def pick(self, options: Sequence[T]) -> T:
        return self.data.draw(st.sampled_from(options))


class RandomChooser:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def pick(self, options: Sequence[T]) -> T:
        return self.rng.choice(options)


Chooser = HypothesisChooser | RandomChooser


# -- the model: environments and requests as the action stream describes them --------------


class Model:
    """What the engine knows from the actions: each environment's state, each request's."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.now = 0.0
        self.next_req = 0
        self.incarnations = 0
        self.registered: dict[str, FnKey] = {}
        self.reserved: dict[FnKey, int] = {}  # removed functions count as unreserved (-1)
        self.env_state: dict[int, str] = {}  # "starting" | "idle" | "busy"
        self.env_alive: dict[int, bool] = {}
        self.env_req: dict[int, int] = {}  # the request an env starts for or runs, else -1
        self.env_fn: dict[int, FnKey | None] = {}  # filled in from env_function() after a call
        self.gone: list[int] = []
        self.max_env = 0
        self.req_fn: dict[int, FnKey] = {}
        self.req_phase: dict[int, str] = {}  # new, waiting, starting, running, done

    def envs(self, state: str) -> list[int]:
        return sorted(e for e, s in self.env_state.items() if s == state)

    def register(self, name: str, reserved: int) -> None:
        self.incarnations += 1
        key = (name, self.incarnations)
        self.registered[name] = key
        self.reserved[key] = reserved

    def new_req(self, name: str) -> int:
        self.next_req += 1
        req = self.next_req
        self.req_phase[req] = "new"
        if name in self.registered:
            self.req_fn[req] = self.registered[name]
        return req

    def finish_req(self, env: int) -> None:
        req = self.env_req[env]
        if req >= 0:
            assert self.req_phase[req] in ("starting", "running"), (env, req)
            self.req_phase[req] = "done"
        self.env_req[env] = -1

    # The engine's side of each call, before its actions are applied.

    def before(self, op: str, env: int) -> None:
        if op == "ready":
            self.env_state[env] = "idle"
            self.env_alive[env] = True
        elif op == "start_failed":
            self.finish_req(env)  # the engine answers it; a STOP must follow
        elif op == "release":
            self.finish_req(env)
            self.env_state[env] = "idle"
        elif op == "crashed":
            if self.env_state[env] == "busy":
                self.finish_req(env)
            self.env_state[env] = "idle"
            self.env_alive[env] = False

    def apply(self, actions: list[tuple[int, int, int, int]]) -> None:
        for action in actions:
            assert len(action) == 4
            assert all(type(x) is int for x in action), action
            kind, env, req, _ = action
            if kind == DISPATCH:
                self._dispatch(env, req)
            elif kind == COLD_START:
                self._cold_start(env, req)
            elif kind == QUEUE:
                assert self.req_phase[req] == "new", action
                self.req_phase[req] = "waiting"
            elif kind == THROTTLE:
                assert self.req_phase[req] in ("new", "waiting"), action
                self.req_phase[req] = "done"
            elif kind == SPILL:
                assert self.req_phase[req] == "new", action
                self.req_phase[req] = "done"
            elif kind == KILL:
                self._kill(env, req)
            elif kind in (STOP, EVICT):
                assert env in self.env_state, action
                assert req == -1, action
                if kind == EVICT:
                    assert self.env_state[env] == "idle", action
                assert self.env_req[env] == -1, action
                for table in (self.env_state, self.env_alive, self.env_req, self.env_fn):
                    del table[env]
                self.gone.append(env)
            else:
                pytest.fail(f"unknown action {action}")
        if self.next_req:  # every submit is answered at once: queued, refused or placed
            assert self.req_phase[self.next_req] != "new", self.next_req

    def _dispatch(self, env: int, req: int) -> None:
        # One invocation per environment: a second DISPATCH needs a release/KILL/crash first.
        assert self.env_state.get(env) == "idle", ("DISPATCH to a non-idle env", env, req)
        assert self.env_alive[env], ("DISPATCH to an env without a worker", env)
        phase = self.req_phase[req]
        if phase == "starting":
            assert self.env_req[env] == req, ("dispatched on another env than its start", env)
        else:
            assert phase in ("new", "waiting"), (req, phase)
        self.req_phase[req] = "running"
        self.env_state[env] = "busy"
        self.env_req[env] = req

    def _cold_start(self, env: int, req: int) -> None:
        if env in self.env_state:
            assert self.env_state[env] == "idle", ("restart of a non-idle env", env)
            assert not self.env_alive[env], ("restart of an env with a live worker", env)
        else:
            assert env > self.max_env, ("env id reused", env)
            self.max_env = env
            self.env_fn[env] = None
        self.env_state[env] = "starting"
        self.env_alive[env] = False
        self.env_req[env] = req
        if req >= 0:
            assert self.req_phase[req] in ("new", "waiting"), (req, self.req_phase[req])
            self.req_phase[req] = "starting"

    def _kill(self, env: int, req: int) -> None:
        state = self.env_state[env]
        assert self.env_req[env] == req, (env, req)
        if state == "busy":
            self.finish_req(env)
            self.env_state[env] = "idle"  # keeps its slot without a worker
            self.env_alive[env] = False
        else:
            assert state == "starting", (env, state)
            self.finish_req(env)  # a STOP follows


# -- comparing the two cores ----------------------------------------------------------------


def call(sched: Any, method: str, *args: Any) -> tuple[Any, tuple[type, tuple[Any, ...]] | None]:
    try:
        return getattr(sched, method)(*args), None
    except (KeyError, ValueError) as exc:
        return None, (type(exc), exc.args)


def snapshot(sched: Any, peek: bool = True) -> dict[str, Any]:
    """Every public observation of a core (next_deadline last: it may pop stale entries)."""
    snap: dict[str, Any] = {
        attr: getattr(sched, attr)
        for attr in (
            "account_limit",
            "cold_start_cap",
            "memory_budget",
            "max_queue",
            "queue_timeout",
            "memory_used",
            "starting",
            "reserved_total",
            "unreserved_inflight",
        )
    }
    for name in (*NAMES, GHOST):
        snap[f"counts[{name}]"] = call(sched, "counts", name)
        snap[f"generation[{name}]"] = call(sched, "generation", name)
    snap["env_count"] = sched.env_count()
    snap["heap_size"] = sched.heap_size()
    snap["repr"] = repr(sched).replace(type(sched).__name__, "Scheduler", 1)
    if peek:
        snap["next_deadline"] = sched.next_deadline()
    return snap


def check_invariants(sched: Any, model: Model) -> None:
    config = model.config
    if config["memory_budget_mb"]:
        assert sched.memory_used <= config["memory_budget_mb"], sched
    assert sched.memory_used >= 0
    assert 0 <= sched.starting <= config["cold_start_cap"], sched
    assert sched.starting == len(model.envs("starting")), sched
    assert sched.env_count() == len(model.env_state), sched
    inflight: dict[FnKey, int] = {}
    for req, phase in model.req_phase.items():
        if phase in ("starting", "running"):
            key = model.req_fn[req]
            inflight[key] = inflight.get(key, 0) + 1
    unreserved = sum(n for key, n in inflight.items() if model.reserved[key] < 0)
    assert sched.unreserved_inflight == unreserved, sched
    reserved = sum(max(model.reserved[key], 0) for key in model.registered.values())
    assert sched.reserved_total == reserved, sched
    by_fn: dict[tuple[FnKey | None, str], int] = {}
    for env, state in model.env_state.items():
        if state == "busy":  # a busy env runs a request of its own function
            assert model.req_fn[model.env_req[env]] == model.env_fn[env], env
        by_fn[model.env_fn[env], state] = by_fn.get((model.env_fn[env], state), 0) + 1
    for r, phase in model.req_phase.items():
        if phase == "waiting":
            by_fn[model.req_fn[r], phase] = by_fn.get((model.req_fn[r], phase), 0) + 1
    for name, key in model.registered.items():
        expected = tuple(by_fn.get((key, s), 0) for s in ("starting", "idle", "busy", "waiting"))
        assert sched.counts(name) == expected, (name, sched)
    registered = set(model.registered.values())
    for (owner, state), n in by_fn.items():
        if owner not in registered:  # a removed function: its envs only finish and stop
            assert state in ("starting", "busy"), (owner, state, n)


class Pair:
    """Both cores, one model; every call goes to both and must agree."""

    def __init__(self, config: dict[str, Any], core_c: type[Any]) -> None:
        self.model = Model(config)
        self.py = SchedulerPy(**config)
        self.c = core_c(**config)
        self.compactions = 0
        self.steps = 0
        self.peek_every = 1  # next_deadline() pops stale entries: long runs peek less often

    def run(
        self,
        method: str,
        *args: Any,
        env: int = 0,
        on_ok: Callable[[], None] | None = None,
    ) -> list[Any] | None:
        """Call ``method`` on both cores; ``on_ok`` updates the model if it succeeded."""
        before = self.py.heap_size()
        out_py, err_py = call(self.py, method, *args)
        out_c, err_c = call(self.c, method, *args)
        assert err_py == err_c, (method, args, err_py, err_c)
        assert out_py == out_c, (method, args, out_py, out_c)
        if err_py is None:
            if method in ("submit", "ready", "release", "crashed", "start_failed", "withdraw"):
                # These only push onto the heap: a shrink means it was compacted.
                self.compactions += self.py.heap_size() < before
            if on_ok is not None:
                on_ok()
            self.model.before(method, env)
            self.model.apply(out_py)
            self.resolve_functions()
        self.steps += 1
        peek = self.steps % self.peek_every == 0
        assert snapshot(self.py, peek) == snapshot(self.c, peek), (method, args)
        for sched in (self.py, self.c):
            check_invariants(sched, self.model)
        return out_py  # type: ignore[no-any-return]

    def resolve_functions(self) -> None:
        """Attribute new environments to their function; env_function() must agree too."""
        model = self.model
        for env, key in model.env_fn.items():
            name = self.py.env_function(env)
            assert self.c.env_function(env) == name, env
            if key is None:  # only a registered function gets new environments
                model.env_fn[env] = model.registered[name]
            else:
                assert key[0] == name, (env, key, name)
        assert call(self.py, "env_function", model.max_env + 1) == call(
            self.c, "env_function", model.max_env + 1
        )


# -- operations -----------------------------------------------------------------------------


def fn_config(ch: Chooser) -> tuple[int, float, float, int, int, int, bool]:
    return (
        ch.pick(MEMORY),
        ch.pick(TIMEOUT),
        ch.pick(KEEPALIVE),
        ch.pick(RESERVED),
        ch.pick(PROVISIONED),
        ch.pick(MAX_USES),
        ch.pick(BATCH),
    )


def pick_name(model: Model, ch: Chooser, unknown: Sequence[str] = (GHOST,)) -> str:
    """Mostly a registered function; now and then a name that is a KeyError."""
    registered = list(model.registered)
    unknown = [name for name in unknown if name not in registered]
    if not registered or ch.pick(range(10)) == 9:  # (Hypothesis favours index 0)
        return ch.pick(unknown)
    return ch.pick(registered)


def op_submit(pair: Pair, ch: Chooser) -> None:
    name = pick_name(pair.model, ch, unknown=[*NAMES, GHOST])
    req = pair.model.new_req(name)
    if pair.run("submit", req, name, pair.model.now) is None:
        pair.model.req_phase[req] = "done"  # KeyError: never submitted


def op_env(method: str, state: str) -> Callable[[Pair, Chooser], None]:
    def op(pair: Pair, ch: Chooser) -> None:
        env = ch.pick(pair.model.envs(state))
        pair.run(method, env, pair.model.now, env=env)

    op.__name__ = f"op_{method}_{state}"
    return op


def op_bad_env(pair: Pair, ch: Chooser) -> None:
    env = ch.pick([*pair.model.gone[-3:], pair.model.max_env + 1, 10**6])
    method = ch.pick(("ready", "start_failed", "release", "crashed"))
    assert pair.run(method, env, pair.model.now) is None


def op_advance(pair: Pair, ch: Chooser) -> None:
    if ch.pick((True, False)):  # the engine's way: sleep until the next deadline
        deadline = pair.py.next_deadline()  # (it pops stale entries: ask both cores)
        assert pair.c.next_deadline() == deadline
        if deadline != float("inf"):
            pair.model.now = max(pair.model.now, deadline)
    else:
        pair.model.now += ch.pick(JUMP)
    pair.run("advance", pair.model.now)


def op_add(pair: Pair, ch: Chooser) -> None:
    model = pair.model
    free = [name for name in NAMES if name not in model.registered]
    name = ch.pick(NAMES) if not free or ch.pick(range(10)) == 9 else ch.pick(free)
    config = fn_config(ch)
    pair.run(
        "add_function",
        name,
        FunctionLimits(*config),
        pair.model.now,
        on_ok=lambda: model.register(name, config[3]),
    )


def op_update(pair: Pair, ch: Chooser) -> None:
    model = pair.model
    name = pick_name(model, ch)
    config = fn_config(ch)

    def on_ok() -> None:
        model.reserved[model.registered[name]] = config[3]

    pair.run("update_function", name, FunctionLimits(*config), model.now, on_ok=on_ok)


def op_set_concurrency(pair: Pair, ch: Chooser) -> None:
    model = pair.model
    name = pick_name(model, ch)
    reserved, provisioned = ch.pick(RESERVED), ch.pick(PROVISIONED)

    def on_ok() -> None:
        model.reserved[model.registered[name]] = reserved

    pair.run("set_concurrency", name, reserved, provisioned, model.now, on_ok=on_ok)


def op_remove(pair: Pair, ch: Chooser) -> None:
    model = pair.model
    name = pick_name(model, ch)

    def on_ok() -> None:
        model.reserved[model.registered.pop(name)] = -1

    pair.run("remove_function", name, model.now, on_ok=on_ok)


def op_withdraw(pair: Pair, ch: Chooser) -> None:
    """A caller gives up: on a waiter, a request being started for, a running one, or none."""
    model = pair.model
    recent = [req for req, phase in model.req_phase.items() if phase != "new"][-8:]
    req = ch.pick([*recent, 10**6])
    phase = model.req_phase.get(req)

    def on_ok() -> None:
        if phase == "waiting":
            model.req_phase[req] = "done"
        elif phase == "starting":
            env = next(e for e, r in model.env_req.items() if r == req)
            model.env_req[env] = -1  # its start goes on, for nobody
            model.req_phase[req] = "done"

    out = pair.run("withdraw", req, model.now, on_ok=on_ok)
    if phase not in ("starting",):
        assert out == [], (req, phase, out)  # only a freed start slot can serve others


OPS: dict[str, tuple[int, Callable[[Pair, Chooser], None]]] = {
    # name: (weight, operation)
    "submit": (8, op_submit),
    "ready": (5, op_env("ready", "starting")),
    "start_failed": (1, op_env("start_failed", "starting")),
    "release": (5, op_env("release", "busy")),
    "crash_busy": (1, op_env("crashed", "busy")),
    "crash_idle": (1, op_env("crashed", "idle")),
    "crash_starting": (1, op_env("crashed", "starting")),  # ValueError on both
    "bad_env": (1, op_bad_env),
    "advance": (3, op_advance),
    "add": (1, op_add),
    "update": (1, op_update),
    "set_concurrency": (1, op_set_concurrency),
    "remove": (1, op_remove),
    "withdraw": (2, op_withdraw),
}
NEEDS = {
    "ready": "starting",
    "start_failed": "starting",
    "crash_starting": "starting",
    "release": "busy",
    "crash_busy": "busy",
    "crash_idle": "idle",
}


def step(pair: Pair, ch: Chooser, weights: dict[str, int] | None = None) -> None:
    model = pair.model
    choices: list[str] = []
    for name, (weight, _) in OPS.items():
        if name in NEEDS and not model.envs(NEEDS[name]):
            continue
        if name == "add" and len(model.registered) == len(NAMES):
            continue
        choices += [name] * (weights or {}).get(name, weight)
    name = ch.pick(choices)
    model.now += ch.pick(STEP)
    OPS[name][1](pair, ch)


def scheduler_config(ch: Chooser) -> dict[str, Any]:
    return {
        "account_limit": ch.pick(range(1, 7)),
        "cold_start_cap": ch.pick(range(1, 5)),
        "memory_budget_mb": ch.pick((0, 0, 256, 384, 512, 512, 768, 1024)),
        "max_queue": ch.pick(range(4)),
        "queue_timeout": ch.pick((0.5, 2.0, 5.0)),
    }


def start(ch: Chooser, core_c: type[Any]) -> Pair:
    pair = Pair(scheduler_config(ch), core_c)
    for _ in range(ch.pick((1, 2, 3))):
        op_add(pair, ch)
    return pair


# -- tests ----------------------------------------------------------------------------------


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data(), n_steps=st.integers(min_value=1, max_value=80))
def test_cores_agree_on_random_operations(data: st.DataObject, n_steps: int) -> None:
    core_c = compiled_core()
    ch = HypothesisChooser(data)
    pair = start(ch, core_c)
    for _ in range(n_steps):
        step(pair, ch)


@pytest.mark.parametrize("seed", range(4))
def test_cores_agree_on_long_runs(seed: int) -> None:
    """Thousands of steps: enough stale heap entries for lazy deletion to compact the heap.

    Phase one is hot traffic with long timers and next_deadline() peeks only now and then, so
    stale entries pile up under live ones until the heap compacts; phase two adds everything
    else (timers firing, updates, removals) on the compacted heap.
    """
    core_c = compiled_core()
    ch = RandomChooser(seed)
    pair = Pair(
        {
            "account_limit": 6,
            "cold_start_cap": 3,
            "memory_budget_mb": (0, 1024)[seed % 2],
            "max_queue": 2,
            "queue_timeout": 5.0,
        },
        core_c,
    )
    model = pair.model
    for name in NAMES:
        config = (128, 600.0, 6000.0, -1, seed % 2, 0, False)
        pair.run(
            "add_function",
            name,
            FunctionLimits(*config),
            0.0,
            on_ok=partial(model.register, name, -1),
        )
    pair.peek_every = 64
    hot = {"submit": 12, "ready": 6, "release": 12, "advance": 0, "update": 0, "remove": 0}
    hot["withdraw"] = 0
    for _ in range(20_000):
        step(pair, ch, hot)
        if pair.compactions:
            break
    assert pair.compactions
    pair.peek_every = 1
    for _ in range(1000):
        step(pair, ch)


def test_compaction_inside_advance(monkeypatch: pytest.MonkeyPatch) -> None:
    """The heap compacts while advance() is popping it: both cores must carry on alike.

    A KILL's _settle restarts a dead, armed provisioned environment from inside advance()'s
    loop; the stale count is steered (through the pure core's counter) so that this very
    disarm is the one that crosses the compaction threshold.
    """
    core_c = compiled_core()
    compacted_in: list[str] = []
    depth = [0]
    real_compact, real_advance = SchedulerPy._compact, SchedulerPy.advance

    def compact(self: SchedulerPy) -> None:
        compacted_in.append("advance" if depth[0] else "other")
        real_compact(self)

    def advance(self: SchedulerPy, now: float) -> list[Any]:
        depth[0] += 1
        try:
            return real_advance(self, now)
        finally:
            depth[0] -= 1

    monkeypatch.setattr(SchedulerPy, "_compact", compact)
    monkeypatch.setattr(SchedulerPy, "advance", advance)
    config: dict[str, Any] = {
        "account_limit": 10,
        "cold_start_cap": 1,
        "memory_budget_mb": 0,
        "max_queue": 0,
    }
    pair = Pair(config, core_c)
    pair.peek_every = 10**9  # next_deadline() would pop stale entries and upset the count
    model = pair.model

    def add(name: str, timeout: float, provisioned: int) -> list[Any]:
        limits = FunctionLimits(128, timeout, 1000.0, -1, provisioned, 0, False)
        out = pair.run(
            "add_function", name, limits, model.now, on_ok=partial(model.register, name, -1)
        )
        assert out is not None
        return out

    def submit(name: str) -> int:
        out = pair.run("submit", model.new_req(name), name, model.now)
        assert out is not None
        return int(out[0][1])

    def on(method: str, env: int) -> list[Any]:
        out = pair.run(method, env, model.now, env=env)
        assert out is not None
        return out

    ((_, e1, _, _),) = add("f", 20.0, 2)  # two provisioned envs, one start at a time
    ((_, e2, _, _),) = [action for action in on("ready", e1) if action[0] == COLD_START]
    on("ready", e2)
    add("h", 1000.0, 0)
    h_env = submit("h")
    on("ready", h_env)
    on("release", h_env)
    model.now = 100.0
    assert pair.run("advance", model.now) == []  # drops the stale entries of f's starts
    add("g", 1.0, 0)
    g_env = submit("g")  # a cold start that holds the only start slot until it times out
    on("crashed", e1)  # e1: idle without a worker, and no slot to restart it
    pair.run("set_concurrency", "f", -1, 2, model.now)  # arms the keepalive of e1 and e2
    while pair.py._stale < 1022:  # churn: each round leaves two stale entries
        submit("h")
        on("release", h_env)
    if pair.py._stale == 1022:
        submit("h")  # one more stale entry; h stays busy
    assert submit("f") == e2  # the warm env under dead e1: disarming it makes 1024 stale
    assert pair.py._stale == 1024
    assert not compacted_in
    out = pair.run("advance", 120.0)  # g's start times out, e2 is killed, e1 restarts
    assert out is not None
    assert [action[:2] for action in out] == [
        (KILL, g_env),
        (STOP, g_env),
        (KILL, e2),
        (COLD_START, e1),
    ]
    assert compacted_in == ["advance"]
    assert pair.py.heap_size() < 10


def test_module_constants_match() -> None:
    compiled_core()
    c_core = importlib.import_module("runtime._scheduler_c")
    names = [
        name
        for name, value in vars(py_core).items()
        if name.isupper() and not name.startswith("_") and isinstance(value, (int, float))
    ]
    assert {"DISPATCH", "SPILL", "R_NONE", "R_INIT_FAILED", "STARTING", "BUSY"} <= set(names)
    for name in names:
        value = getattr(c_core, name)
        assert value == getattr(py_core, name), name
        assert type(value) is type(getattr(py_core, name)), name


def test_public_api_matches() -> None:
    """Every public method of SchedulerPy exists on SchedulerC with the same parameters."""
    core_c = compiled_core()
    methods = [name for name in dir(SchedulerPy) if not name.startswith("_")]
    assert "submit" in methods
    for name in methods:
        py_params = list(inspect.signature(getattr(SchedulerPy, name)).parameters)
        c_params = list(inspect.signature(getattr(core_c, name)).parameters)
        assert py_params == c_params, name
    public = [name for name in vars(SchedulerPy()) if not name.startswith("_")]
    assert "memory_used" in public
    c = core_c()
    for name in public:
        assert getattr(c, name) == getattr(SchedulerPy(), name), name


def test_constructor_defaults_match() -> None:
    core_c = compiled_core()
    assert snapshot(SchedulerPy()) == snapshot(core_c())
    kwargs: dict[str, Any] = {
        "account_limit": 7,
        "cold_start_cap": 2,
        "memory_budget_mb": 512,
        "max_queue": 3,
        "queue_timeout": 1.5,
    }
    py, c = SchedulerPy(**kwargs), core_c(**kwargs)
    assert snapshot(py) == snapshot(c)
    assert snapshot(SchedulerPy(*kwargs.values())) == snapshot(core_c(*kwargs.values()))
    assert repr(c).startswith("<SchedulerC ")


@pytest.mark.parametrize("pyx", sorted((ROOT / "ext").glob("*.pyx")), ids=lambda p: p.stem)
def test_every_pyx_is_built(pyx: Path) -> None:
    """setup.py builds ext/<stem>.pyx as runtime._<stem>_c; each one must load when required."""
    module = f"runtime._{pyx.stem}_c"
    try:
        importlib.import_module(module)
    except ImportError as exc:
        if REQUIRE_EXTENSIONS:
            pytest.fail(f"WARMSTART_REQUIRE_EXTENSIONS=1 but {module} did not load: {exc}")
        pytest.skip(f"{module} not built")


def test_setup_builds_every_pyx() -> None:
    """setup.py's own extension_modules(), evaluated without running setup()."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    (func,) = [
        node
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and node.name == "extension_modules"
    ]
    namespace: dict[str, Any] = {"Extension": lambda name, sources: (name, sources), "HERE": ROOT}
    exec(compile(ast.Module(body=[func], type_ignores=[]), "setup.py", "exec"), namespace)
    built = dict(namespace["extension_modules"]())
    pyx = sorted((ROOT / "ext").glob("*.pyx"))
    assert pyx, "no ext/*.pyx"
    assert built == {f"runtime._{p.stem}_c": [f"ext/{p.name}"] for p in pyx}
