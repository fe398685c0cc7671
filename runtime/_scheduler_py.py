"""The scheduler core in pure Python (the twin of ``ext/scheduler.pyx``).

Sans-I/O: nothing here awaits, reads a clock or logs.  Every call takes ``now`` (seconds on
the engine's monotonic clock), changes state, and returns a list of actions
``(kind, env_id, req_id, reason)`` for the engine to carry out, in order:

    DISPATCH    env, req   send invocation ``req`` to the live worker of ``env``
    COLD_START  env, req   start (or restart) the worker of ``env``, then report ``ready``;
                           ``req`` is -1 for a provisioned pre-warm
    QUEUE       -, req     ``req`` waits for capacity (until ``queue_timeout``)
    THROTTLE    -, req     refuse ``req``; ``reason`` says which limit
    KILL        env, req   ``req`` passed its deadline: kill the worker, fail the invocation
    STOP        env, -     stop ``env`` and drop its state (keepalive, max uses, generation, ...)
    EVICT       env, -     stop idle ``env`` to free memory for another function
    SPILL       -, req     ``req`` belongs to a batch function: hand it to the batch queue

Rules (DESIGN.md section 3): one invocation per environment; idle environments are reused
last-in-first-out; the keepalive timer is armed at release and a dispatch cancels it (the
environment's epoch changes, so the armed entry is dead); provisioned environments are never
stopped below the floor and are restarted after a crash; reserved concurrency is a cap and a
guarantee carved out of the account limit; at most ``cold_start_cap`` starts are in flight;
live environments stay within ``memory_budget_mb`` by evicting least-recently-used idle
environments of other functions.

An environment whose worker died (timeout or crash) keeps its slot and its /tmp: it goes back
to the idle stack without a worker, and the next invocation routed to it is a cold start.
"""

from __future__ import annotations

import heapq
from collections import deque
from typing import NamedTuple

DISPATCH = 1
COLD_START = 2
QUEUE = 3
THROTTLE = 4
KILL = 5
STOP = 6
EVICT = 7
SPILL = 8

R_NONE = 0
R_RESERVED = 1  # the function's reserved concurrency is in use
R_ACCOUNT = 2  # the account's unreserved concurrency is in use
R_WAIT_TIMEOUT = 3  # waited queue_timeout for capacity
R_REMOVED = 4  # the function was unregistered
R_MEMORY = 5  # memory budget: evicted for another function, or the function cannot fit at all
R_KEEPALIVE = 6  # idle for keepalive seconds
R_MAX_USES = 7  # served max_uses invocations
R_GENERATION = 8  # code or configuration changed
R_TIMEOUT = 9  # invocation ran past its timeout
R_INIT_TIMEOUT = 10  # the worker did not become ready in time
R_INIT_FAILED = 11  # the worker failed to initialize

STARTING = 1
IDLE = 2
BUSY = 3

INIT_TIMEOUT_FLOOR = 10.0  # Lambda gives init at least 10 s
_NO_DEADLINE = float("inf")
_K_ENV = 0
_K_WAIT = 1

Action = tuple[int, int, int, int]


class FunctionLimits(NamedTuple):
    """What the core keeps of a function's configuration (both cores take it)."""

    memory_mb: int
    #: seconds an invocation may run
    timeout: float
    #: seconds an idle environment is kept
    keepalive: float
    #: reserved concurrency, -1 for none
    reserved: int = -1
    #: environments kept started (the provisioned floor)
    provisioned: int = 0
    #: invocations an environment serves before it stops, 0 for no limit
    max_uses: int = 0
    #: a batch function: its calls are SPILLed to the batch queue
    batch: bool = False


class _Function:
    __slots__ = (
        "batch",
        "generation",
        "idle",
        "inflight",
        "keepalive",
        "live",
        "max_uses",
        "memory",
        "n_busy",
        "n_starting",
        "name",
        "provision_failed",
        "provisioned",
        "removed",
        "reserved",
        "timeout",
        "waiting",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.generation = 0
        self.idle: list[_Env] = []
        self.waiting: deque[int] = deque()
        self.inflight = 0  # invocations holding an environment (starting for them, or running)
        self.live = 0  # environments of the current generation
        self.n_busy = 0
        self.n_starting = 0
        self.removed = False
        self.provision_failed = False
        self.memory = 128
        self.timeout = 3.0
        self.keepalive = 300.0
        self.reserved = -1
        self.provisioned = 0
        self.max_uses = 0
        self.batch = False


class _Env:
    __slots__ = (
        "alive",
        "armed",
        "epoch",
        "fn",
        "generation",
        "id",
        "last_used",
        "memory",
        "req",
        "state",
        "uses",
    )

    def __init__(self, env_id: int, fn: _Function) -> None:
        self.id = env_id
        self.fn = fn
        self.generation = fn.generation
        self.memory = fn.memory
        self.state = STARTING
        self.alive = False
        self.armed = False  # has a live entry in the deadline heap
        self.epoch = 0
        self.uses = 0
        self.req = -1
        self.last_used = 0.0


class SchedulerPy:
    """Pure-Python scheduler core. See the module docstring for the action protocol."""

    def __init__(
        self,
        account_limit: int = 1000,
        cold_start_cap: int = 16,
        memory_budget_mb: int = 0,
        max_queue: int = 0,
        queue_timeout: float = 30.0,
    ) -> None:
        self.account_limit = account_limit
        self.cold_start_cap = cold_start_cap
        self.memory_budget = memory_budget_mb  # 0: no budget
        self.max_queue = max_queue  # waiting invocations per function at a concurrency limit
        self.queue_timeout = queue_timeout
        self.memory_used = 0
        self.starting = 0
        self.reserved_total = 0
        self.unreserved_inflight = 0
        self._functions: dict[str, _Function] = {}
        self._envs: dict[int, _Env] = {}
        self._lru: dict[int, _Env] = {}  # idle environments, least recently released first
        self._waiting: dict[int, _Function] = {}
        self._wait_order: dict[str, _Function] = {}  # functions with waiters, oldest first
        self._refill: dict[str, _Function] = {}  # functions below their provisioned floor
        self._heap: list[tuple[float, int, int, int, int]] = []
        self._stale = 0
        self._seq = 0
        self._next_env = 1

    # -- functions --------------------------------------------------------------------------

    def add_function(self, name: str, limits: FunctionLimits, now: float) -> list[Action]:
        """Register ``name`` with ``limits``; returns the cold starts of its provisioned
        floor."""
        if name in self._functions:
            raise KeyError(f"function {name!r} is already registered")
        fn = _Function(name)
        self._functions[name] = fn
        out: list[Action] = []
        self._configure(fn, *limits)
        self._top_up(fn, now, out)
        return out

    def update_function(self, name: str, limits: FunctionLimits, now: float) -> list[Action]:
        """New generation with ``limits``: idle environments stop now, busy ones when they
        finish."""
        fn = self._functions[name]
        out: list[Action] = []
        fn.generation += 1
        fn.live = 0
        fn.provision_failed = False
        for env in list(fn.idle):
            self._remove(env, STOP, R_GENERATION, out)
        self._configure(fn, *limits)
        self._top_up(fn, now, out)
        self._pump(now, out)
        return out

    def set_concurrency(
        self, name: str, reserved: int, provisioned: int, now: float
    ) -> list[Action]:
        """Change reserved and provisioned concurrency without a new generation."""
        fn = self._functions[name]
        out: list[Action] = []
        self._set_reserved(fn, reserved)
        fn.provisioned = provisioned
        fn.provision_failed = False
        for env in fn.idle:
            if not env.armed:
                self._arm(env, env.last_used + fn.keepalive)
        self._top_up(fn, now, out)
        self._pump(now, out)
        return out

    def remove_function(self, name: str, now: float) -> list[Action]:
        """Unregister: idle environments stop, waiters are refused, busy ones finish."""
        fn = self._functions.pop(name)
        out: list[Action] = []
        fn.removed = True
        self._set_reserved(fn, -1)
        self._refill.pop(name, None)
        self._wait_order.pop(name, None)
        while fn.waiting:
            req = fn.waiting.popleft()
            if self._waiting.pop(req, None) is not None:
                self._stale += 1
                out.append((THROTTLE, 0, req, R_REMOVED))
        for env in list(fn.idle):
            self._remove(env, STOP, R_REMOVED, out)
        self._pump(now, out)
        return out

    def _configure(
        self,
        fn: _Function,
        memory_mb: int,
        timeout: float,
        keepalive: float,
        reserved: int,
        provisioned: int,
        max_uses: int,
        batch: bool,
    ) -> None:
        fn.memory = memory_mb
        fn.timeout = timeout
        fn.keepalive = keepalive
        fn.provisioned = provisioned
        fn.max_uses = max_uses
        fn.batch = batch
        self._set_reserved(fn, reserved)

    def _set_reserved(self, fn: _Function, reserved: int) -> None:
        if fn.reserved >= 0:
            self.reserved_total -= fn.reserved
        else:
            self.unreserved_inflight -= fn.inflight
        fn.reserved = reserved
        if reserved >= 0:
            self.reserved_total += reserved
        else:
            self.unreserved_inflight += fn.inflight

    # -- invocations ------------------------------------------------------------------------

    def submit(self, req: int, name: str, now: float) -> list[Action]:
        """A new invocation ``req`` of function ``name``."""
        fn = self._functions[name]
        out: list[Action] = []
        if fn.batch:
            out.append((SPILL, 0, req, R_NONE))
        elif not self._has_capacity(fn):
            if len(fn.waiting) >= self.max_queue:
                out.append((THROTTLE, 0, req, R_RESERVED if fn.reserved >= 0 else R_ACCOUNT))
            else:
                self._enqueue(fn, req, now, out)
        elif fn.waiting:
            self._enqueue(fn, req, now, out)  # behind earlier waiters, first come first served
        elif not self._serve(fn, req, now, out):
            if self.memory_budget and fn.memory > self.memory_budget:
                out.append((THROTTLE, 0, req, R_MEMORY))
            else:
                self._enqueue(fn, req, now, out)
        return out

    def ready(self, env_id: int, now: float) -> list[Action]:
        """The worker of ``env_id`` finished its cold start."""
        env = self._envs[env_id]
        fn = env.fn
        out: list[Action] = []
        self._disarm(env)
        self.starting -= 1
        fn.n_starting -= 1
        env.alive = True
        if env.req >= 0:
            self._run(env, env.req, now, out)
        elif fn.removed or env.generation != fn.generation:
            self._remove(env, STOP, R_REMOVED if fn.removed else R_GENERATION, out)
        else:
            self._make_idle(env, now, out)
        self._pump(now, out)
        return out

    def start_failed(self, env_id: int, now: float) -> list[Action]:
        """The worker of ``env_id`` failed to initialize; the engine answers its invocation."""
        env = self._envs[env_id]
        fn = env.fn
        out: list[Action] = []
        self.starting -= 1
        fn.n_starting -= 1
        if env.req >= 0:
            self._end_invocation(env)
        elif env.generation == fn.generation:
            fn.provision_failed = True  # a failing pre-warm is not retried until the next update
        self._remove(env, STOP, R_INIT_FAILED, out)
        self._pump(now, out)
        return out

    def release(self, env_id: int, now: float) -> list[Action]:
        """The invocation on ``env_id`` finished and its worker is alive."""
        env = self._envs[env_id]
        out: list[Action] = []
        self._finish(env)
        self._settle(env, now, out)
        if self._wait_order or self._refill:
            self._pump(now, out)
        return out

    def crashed(self, env_id: int, now: float) -> list[Action]:
        """The worker of ``env_id`` died outside a cold start (crash, OOM, killed from outside)."""
        env = self._envs[env_id]
        out: list[Action] = []
        if env.state == BUSY:
            self._finish(env)
        elif env.state == IDLE:
            env.fn.idle.remove(env)
            self._unidle(env)
        else:
            raise ValueError(f"environment {env_id} is starting: report start_failed instead")
        env.alive = False
        self._settle(env, now, out)
        self._pump(now, out)
        return out

    def withdraw(self, req: int, now: float) -> list[Action]:
        """The caller of ``req`` gave up before it was dispatched: it never runs.

        A waiter leaves the queue; a cold start begun for it goes on and its environment
        becomes idle (the capacity it held is free at once). A dispatched ``req`` is not
        touched: it runs to its end, as on Lambda.
        """
        out: list[Action] = []
        fn = self._waiting.pop(req, None)
        if fn is not None:
            fn.waiting.remove(req)
            if not fn.waiting:
                self._wait_order.pop(fn.name, None)
            self._stale += 1  # its queue-wait deadline is dead
            return out
        for env in self._envs.values():
            if env.req == req and env.state == STARTING:
                self._end_invocation(env)
                self._pump(now, out)
                break
        return out

    def advance(self, now: float) -> list[Action]:
        """Fire every deadline at or before ``now``: timeouts, keepalives, queue waits."""
        out: list[Action] = []
        heap = self._heap
        fired = False
        while heap and heap[0][0] <= now:
            _, _, kind, ident, epoch = heapq.heappop(heap)
            if kind == _K_WAIT:
                fn = self._waiting.pop(ident, None)
                if fn is None:
                    self._stale -= 1
                    continue
                out.append((THROTTLE, 0, ident, R_WAIT_TIMEOUT))
            else:
                env = self._envs.get(ident)
                if env is None or env.epoch != epoch:
                    self._stale -= 1
                    continue
                env.armed = False
                self._expire(env, now, out)
            fired = True
        if fired:
            self._pump(now, out)
        return out

    def next_deadline(self) -> float:
        """The earliest live deadline, or infinity."""
        heap = self._heap
        while heap:
            _, _, kind, ident, epoch = heap[0]
            if kind == _K_WAIT:
                if ident in self._waiting:
                    return heap[0][0]
            else:
                env = self._envs.get(ident)
                if env is not None and env.epoch == epoch:
                    return heap[0][0]
            heapq.heappop(heap)
            self._stale -= 1
        return _NO_DEADLINE

    # -- introspection ----------------------------------------------------------------------

    def counts(self, name: str) -> tuple[int, int, int, int]:
        """(starting, idle, busy, waiting) for ``name``."""
        fn = self._functions[name]
        waiting = sum(1 for req in fn.waiting if req in self._waiting)
        return fn.n_starting, len(fn.idle), fn.n_busy, waiting

    def env_function(self, env_id: int) -> str:
        """The name of the function ``env_id`` belongs to."""
        return self._envs[env_id].fn.name

    def generation(self, name: str) -> int:
        return self._functions[name].generation

    def env_count(self) -> int:
        return len(self._envs)

    def heap_size(self) -> int:
        return len(self._heap)

    def __repr__(self) -> str:
        busy = sum(fn.n_busy for fn in self._functions.values())
        return (
            f"<SchedulerPy functions={len(self._functions)} envs={len(self._envs)} "
            f"starting={self.starting} busy={busy} idle={len(self._lru)} "
            f"waiting={len(self._waiting)} memory={self.memory_used}MB>"
        )

    # -- internals --------------------------------------------------------------------------

    def _has_capacity(self, fn: _Function) -> bool:
        if fn.reserved >= 0:
            return fn.inflight < fn.reserved
        return self.unreserved_inflight < self.account_limit - self.reserved_total

    def _serve(self, fn: _Function, req: int, now: float, out: list[Action]) -> bool:
        """Give ``req`` an idle environment or a new one; False if it has to wait."""
        if fn.idle:
            env = fn.idle[-1]
            if env.alive:
                fn.idle.pop()
                self._unidle(env)
                self._run(env, req, now, out)
                return True
            if self.starting < self.cold_start_cap:
                fn.idle.pop()
                self._unidle(env)
                self._start(env, req, now, out)
                return True
            # No start slot for the dead one on top: a warm one below serves now (a dispatch
            # starts nothing, so the cold-start cap must not make req wait).
            for i in range(len(fn.idle) - 2, -1, -1):
                env = fn.idle[i]
                if env.alive:
                    del fn.idle[i]
                    self._unidle(env)
                    self._run(env, req, now, out)
                    return True
            return False
        if self.starting >= self.cold_start_cap or not self._fits(fn, out):
            return False
        self._start(self._new_env(fn), req, now, out)
        return True

    def _run(self, env: _Env, req: int, now: float, out: list[Action]) -> None:
        fn = env.fn
        if env.req < 0:
            self._begin_invocation(fn)
        env.req = req
        env.state = BUSY
        fn.n_busy += 1
        self._arm(env, now + fn.timeout)
        out.append((DISPATCH, env.id, req, R_NONE))

    def _start(self, env: _Env, req: int, now: float, out: list[Action]) -> None:
        fn = env.fn
        if req >= 0:
            self._begin_invocation(fn)
        env.req = req
        env.state = STARTING
        fn.n_starting += 1
        self.starting += 1
        self._arm(env, now + max(INIT_TIMEOUT_FLOOR, fn.timeout))
        out.append((COLD_START, env.id, req, R_NONE))

    def _begin_invocation(self, fn: _Function) -> None:
        fn.inflight += 1
        if fn.reserved < 0:
            self.unreserved_inflight += 1

    def _end_invocation(self, env: _Env) -> None:
        fn = env.fn
        env.req = -1
        fn.inflight -= 1
        if fn.reserved < 0:
            self.unreserved_inflight -= 1

    def _new_env(self, fn: _Function) -> _Env:
        env = _Env(self._next_env, fn)
        self._next_env += 1
        self._envs[env.id] = env
        self.memory_used += env.memory
        fn.live += 1
        return env

    def _finish(self, env: _Env) -> None:
        """A running invocation ended (released, crashed or killed)."""
        self._disarm(env)
        env.fn.n_busy -= 1
        env.uses += 1
        self._end_invocation(env)

    def _settle(self, env: _Env, now: float, out: list[Action]) -> None:
        """After an invocation: recycle the environment or make it idle again."""
        fn = env.fn
        if fn.removed:
            self._remove(env, STOP, R_REMOVED, out)
        elif env.generation != fn.generation:
            self._remove(env, STOP, R_GENERATION, out)
        elif fn.max_uses and env.uses >= fn.max_uses:
            self._remove(env, STOP, R_MAX_USES, out)
            self._top_up(fn, now, out)
        else:
            self._make_idle(env, now, out)
            if not env.alive and fn.provisioned:
                self._top_up(fn, now, out)  # a provisioned environment is restarted at once

    def _make_idle(self, env: _Env, now: float, out: list[Action]) -> None:
        fn = env.fn
        env.state = IDLE
        env.last_used = now
        if fn.keepalive <= 0 and fn.live > fn.provisioned:
            self._remove(env, STOP, R_KEEPALIVE, out)
            return
        fn.idle.append(env)
        self._lru[env.id] = env
        if fn.live > fn.provisioned:
            self._arm(env, now + fn.keepalive)

    def _unidle(self, env: _Env) -> None:
        """Take ``env`` out of the idle structures (the caller already popped fn.idle)."""
        self._disarm(env)
        del self._lru[env.id]
        env.state = STARTING  # a transient state until the caller runs or starts it

    def _expire(self, env: _Env, now: float, out: list[Action]) -> None:
        fn = env.fn
        if env.state == IDLE:
            if fn.live <= fn.provisioned and not fn.removed:
                return  # the provisioned floor stays; re-armed when the floor drops
            fn.idle.remove(env)
            del self._lru[env.id]
            self._remove(env, STOP, R_KEEPALIVE, out)
        elif env.state == BUSY:
            out.append((KILL, env.id, env.req, R_TIMEOUT))
            fn.n_busy -= 1
            env.uses += 1
            self._end_invocation(env)
            env.alive = False
            self._settle(env, now, out)
        else:
            out.append((KILL, env.id, env.req, R_INIT_TIMEOUT))
            self.starting -= 1
            fn.n_starting -= 1
            if env.req >= 0:
                self._end_invocation(env)
            elif env.generation == fn.generation:
                fn.provision_failed = True
            self._remove(env, STOP, R_INIT_TIMEOUT, out)

    def _remove(self, env: _Env, kind: int, reason: int, out: list[Action]) -> None:
        fn = env.fn
        if env.state == IDLE and env.id in self._lru:
            del self._lru[env.id]
            if env in fn.idle:
                fn.idle.remove(env)
        self._disarm(env)
        del self._envs[env.id]
        self.memory_used -= env.memory
        if env.generation == fn.generation:
            fn.live -= 1
            if fn.provisioned and fn.live <= fn.provisioned and not fn.removed:
                self._refill[fn.name] = fn
        out.append((kind, env.id, -1, reason))

    def _fits(self, fn: _Function, out: list[Action]) -> bool:
        """Room for one more environment of ``fn``, evicting idle ones of other functions."""
        budget = self.memory_budget
        if not budget or self.memory_used + fn.memory <= budget:
            return True
        if fn.memory > budget:
            return False
        need = self.memory_used + fn.memory - budget
        victims: list[_Env] = []
        floors: dict[str, int] = {}
        for env in self._lru.values():
            other = env.fn
            if other is fn:
                continue
            live = floors.get(other.name, other.live)
            if env.generation == other.generation and live <= other.provisioned:
                continue
            floors[other.name] = live - 1
            victims.append(env)
            need -= env.memory
            if need <= 0:
                break
        if need > 0:
            return False
        for env in victims:
            self._remove(env, EVICT, R_MEMORY, out)
        return True

    def _enqueue(self, fn: _Function, req: int, now: float, out: list[Action]) -> None:
        fn.waiting.append(req)
        self._waiting[req] = fn
        if fn.name not in self._wait_order:
            self._wait_order[fn.name] = fn
        self._push(now + self.queue_timeout, _K_WAIT, req, 0)
        out.append((QUEUE, 0, req, R_NONE))

    def _pump(self, now: float, out: list[Action]) -> None:
        """Serve waiters (oldest function first), then refill provisioned floors."""
        for name, fn in list(self._wait_order.items()):
            waiting = fn.waiting
            while waiting:
                req = waiting[0]
                if req not in self._waiting:
                    waiting.popleft()
                    continue
                if not self._has_capacity(fn) or not self._serve(fn, req, now, out):
                    break
                waiting.popleft()
                del self._waiting[req]
                self._stale += 1
            if not waiting:
                del self._wait_order[name]
        for name, fn in list(self._refill.items()):
            if self._top_up(fn, now, out):
                del self._refill[name]

    def _top_up(self, fn: _Function, now: float, out: list[Action]) -> bool:
        """Keep the provisioned floor started; False if capacity ran out first."""
        if fn.provision_failed or fn.removed:
            return True
        while fn.live < fn.provisioned:
            if self.starting >= self.cold_start_cap or not self._fits(fn, out):
                self._refill[fn.name] = fn
                return False
            self._start(self._new_env(fn), -1, now, out)
        if fn.live <= fn.provisioned:
            for env in [env for env in fn.idle if not env.alive]:
                if self.starting >= self.cold_start_cap:
                    self._refill[fn.name] = fn
                    return False
                fn.idle.remove(env)
                self._unidle(env)
                self._start(env, -1, now, out)
        return True

    def _push(self, deadline: float, kind: int, ident: int, epoch: int) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (deadline, self._seq, kind, ident, epoch))

    def _arm(self, env: _Env, deadline: float) -> None:
        self._disarm(env)
        env.armed = True
        self._push(deadline, _K_ENV, env.id, env.epoch)

    def _disarm(self, env: _Env) -> None:
        """Cancel the armed deadline of ``env`` (lazily: its epoch moves on)."""
        env.epoch += 1
        if env.armed:
            env.armed = False
            self._stale += 1
            if self._stale > 1024 and self._stale > len(self._heap) // 2:
                self._compact()

    def _compact(self) -> None:
        live = []
        for entry in self._heap:
            _, _, kind, ident, epoch = entry
            if kind == _K_WAIT:
                if ident in self._waiting:
                    live.append(entry)
            else:
                env = self._envs.get(ident)
                if env is not None and env.epoch == epoch:
                    live.append(entry)
        heapq.heapify(live)
        self._heap[:] = live  # in place: advance() may be iterating this very list
        self._stale = 0
