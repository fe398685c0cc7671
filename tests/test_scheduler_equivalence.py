"""SchedulerPy and SchedulerC must be indistinguishable: same actions, errors and state.

One random operation sequence drives both cores the way the engine would: ``ready`` and
``start_failed`` only on starting environments, ``release`` on busy ones, ``crashed`` on busy or
idle ones, time never going back.  After every step the return values (or exception type and
arguments) and every public counter must be equal.  A small model rebuilt from the action
stream alone checks invariants any correct core keeps: the memory budget, the cold-start cap,
one invocation per environment, every request answered exactly once, and the per-function
counts.
"""

from __future__ import annotations

import importlib
import os
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime import _scheduler_py as py_core
from runtime.scheduler import (
    COLD_START,
    DISPATCH,
    EVICT,
    KILL,
    QUEUE,
    SPILL,
    STOP,
    THROTTLE,
    SchedulerC,
    SchedulerPy,
)

REQUIRE_EXTENSIONS = os.environ.get("WARMSTART_REQUIRE_EXTENSIONS") == "1"
NO_EXTENSIONS = os.environ.get("WARMSTART_NO_EXTENSIONS") == "1"
ROOT = Path(__file__).resolve().parent.parent

T = TypeVar("T")
FnKey = tuple[str, int]  # (name, incarnation): a removed and re-added name is a new function

NAMES = ("f0", "f1", "f2")
GHOST = "ghost"  # never registered: every call naming it is a KeyError
MEMORY = (64, 128, 256, 512, 2048)  # 2048 never fits a small budget
TIMEOUT = (0.5, 2.0, 5.0, 15.0)  # 15 s is above the 10 s init-timeout floor
KEEPALIVE = (0.0, 1.0, 5.0, 60.0)
RESERVED = (-1, -1, 0, 1, 2, 3)
PROVISIONED = (0, 0, 0, 1, 2)
MAX_USES = (0, 0, 1, 2, 5)
BATCH = (False,) * 7 + (True,)
STEP = (0.0, 0.0, 0.0, 0.25, 0.5)  # time passing between operations (ties are on purpose)
JUMP = (0.0, 0.5, 1.0, 2.0, 5.0, 11.0, 30.0, 100.0)  # advance() steps


def compiled_core() -> type[Any]:
    """SchedulerC, or skip (fail when the extensions are required)."""
    if SchedulerC is None or NO_EXTENSIONS:
        if REQUIRE_EXTENSIONS:
            pytest.fail("WARMSTART_REQUIRE_EXTENSIONS=1 but runtime._scheduler_c did not load")
        pytest.skip("Cython core not built")
    return SchedulerC


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
    """What the engine knows, from the actions alone."""

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
                for table in (self.env_state, self.env_alive, self.env_req):
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


def snapshot(sched: Any) -> dict[str, Any]:
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
    snap["next_deadline"] = sched.next_deadline()
    return snap


def check_invariants(sched: Any, model: Model) -> None:
    config = model.config
    if config["memory_budget_mb"]:
        assert sched.memory_used <= config["memory_budget_mb"], sched
    assert 0 <= sched.memory_used
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
    busy_by_fn: dict[FnKey, int] = {}
    for env in model.envs("busy"):
        key = model.req_fn[model.env_req[env]]
        busy_by_fn[key] = busy_by_fn.get(key, 0) + 1
    starting = idle = 0
    for name, key in model.registered.items():
        n_starting, n_idle, n_busy, n_waiting = sched.counts(name)
        starting += n_starting
        idle += n_idle
        assert n_busy == busy_by_fn.get(key, 0), (name, sched)
        waiting = sum(
            1 for r, p in model.req_phase.items() if p == "waiting" and model.req_fn[r] == key
        )
        assert n_waiting == waiting, (name, sched)
    assert starting <= sched.starting
    assert idle == len(model.envs("idle")), sched  # removed functions keep no idle envs


class Pair:
    """Both cores, one model; every call goes to both and must agree."""

    def __init__(self, config: dict[str, Any], core_c: type[Any]) -> None:
        self.model = Model(config)
        self.py = SchedulerPy(**config)
        self.c = core_c(**config)
        self.compactions = 0

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
        assert err_py == err_c, (method, args)
        assert out_py == out_c, (method, args)
        if err_py is None:
            if method in ("submit", "ready", "release", "crashed", "start_failed"):
                # These only push onto the heap: a shrink means it was compacted.
                self.compactions += self.py.heap_size() < before
            if on_ok is not None:
                on_ok()
            self.model.before(method, env)
            self.model.apply(out_py)
        assert snapshot(self.py) == snapshot(self.c), (method, args)
        for sched in (self.py, self.c):
            check_invariants(sched, self.model)
        return out_py  # type: ignore[no-any-return]


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


def op_submit(pair: Pair, ch: Chooser) -> None:
    names = [*pair.model.registered] or [GHOST]
    name = ch.pick([*names, *names, *names, GHOST, *NAMES])
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
    if ch.pick((True, False)):
        deadline = pair.py.next_deadline()
        if deadline != float("inf"):
            pair.model.now = max(pair.model.now, deadline)
    else:
        pair.model.now += ch.pick(JUMP)
    pair.run("advance", pair.model.now)


def op_add(pair: Pair, ch: Chooser) -> None:
    model = pair.model
    name = ch.pick(NAMES)
    config = fn_config(ch)
    pair.run(
        "add_function", name, *config, pair.model.now, on_ok=lambda: model.register(name, config[3])
    )


def op_update(pair: Pair, ch: Chooser) -> None:
    model = pair.model
    name = ch.pick([*model.registered, GHOST])
    config = fn_config(ch)
    def on_ok() -> None:
        model.reserved[model.registered[name]] = config[3]

    pair.run("update_function", name, *config, model.now, on_ok=on_ok)


def op_set_concurrency(pair: Pair, ch: Chooser) -> None:
    model = pair.model
    name = ch.pick([*model.registered, GHOST])
    reserved, provisioned = ch.pick(RESERVED), ch.pick(PROVISIONED)

    def on_ok() -> None:
        model.reserved[model.registered[name]] = reserved

    pair.run("set_concurrency", name, reserved, provisioned, model.now, on_ok=on_ok)


def op_remove(pair: Pair, ch: Chooser) -> None:
    model = pair.model
    name = ch.pick([*model.registered, GHOST])

    def on_ok() -> None:
        model.reserved[model.registered.pop(name)] = -1

    pair.run("remove_function", name, model.now, on_ok=on_ok)


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
        "memory_budget_mb": ch.pick((0, 0, 256, 512, 768, 1024)),
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
@given(data=st.data(), n_steps=st.integers(min_value=1, max_value=60))
def test_cores_agree_on_random_operations(data: st.DataObject, n_steps: int) -> None:
    core_c = compiled_core()
    ch = HypothesisChooser(data)
    pair = start(ch, core_c)
    for _ in range(n_steps):
        step(pair, ch)


@pytest.mark.parametrize("seed", range(4))
def test_cores_agree_on_long_runs(seed: int) -> None:
    """Thousands of steps: long enough for lazy deletion to compact the deadline heap."""
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
    for name in NAMES:
        pair.run(
            "add_function",
            name,
            *(128, 60.0, 600.0, -1, seed % 2, 0, False, 0.0),
            on_ok=lambda name=name: pair.model.register(name, -1),
        )
    weights = {"submit": 12, "ready": 6, "release": 12, "advance": 1, "update": 0, "remove": 0}
    for _ in range(6000):
        step(pair, ch, weights)
    assert pair.compactions > 0


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


def test_constructor_defaults_match() -> None:
    core_c = compiled_core()
    py, c = SchedulerPy(), core_c()
    for attr in ("account_limit", "cold_start_cap", "memory_budget", "max_queue", "queue_timeout"):
        assert getattr(py, attr) == getattr(c, attr), attr
    kwargs = {
        "account_limit": 7,
        "cold_start_cap": 2,
        "memory_budget_mb": 512,
        "max_queue": 3,
        "queue_timeout": 1.5,
    }
    py, c = SchedulerPy(**kwargs), core_c(**kwargs)
    assert snapshot(py) == snapshot(c)
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


def test_ext_directory_has_sources() -> None:
    assert sorted(p.stem for p in (ROOT / "ext").glob("*.pyx")) != []
