"""The scheduler core in Cython (the twin of ``runtime/_scheduler_py.py``).

Same algorithm, same action protocol, same tie-breaking as the pure-Python core: read that
module's docstring for the rules.  The two are held together by
``tests/test_scheduler_equivalence.py``, which drives both with random operation sequences and
requires identical action lists, so any change to one file must be made to the other.

What differs is representation only:

* function and environment records are ``cdef class`` objects with typed fields;
* the deadline heap is a C array of ``(deadline, seq, kind, ident, epoch)`` structs ordered by
  ``(deadline, seq)`` -- exactly the order of the pure core's tuples, since ``seq`` is unique --
  and maintained with the same sift algorithm as ``heapq`` (so even the layout matches);
* internals are ``cdef`` methods; the public API is ``def``.

The insertion-ordered dicts (LRU, wait order, refill order), the per-function LIFO idle lists and
FIFO wait deques are the same Python containers as in the pure core.
"""

cimport cython
from libc.stdlib cimport free, realloc

from collections import deque

DISPATCH = 1
COLD_START = 2
QUEUE = 3
THROTTLE = 4
KILL = 5
STOP = 6
EVICT = 7
SPILL = 8

R_NONE = 0
R_RESERVED = 1
R_ACCOUNT = 2
R_WAIT_TIMEOUT = 3
R_REMOVED = 4
R_MEMORY = 5
R_KEEPALIVE = 6
R_MAX_USES = 7
R_GENERATION = 8
R_TIMEOUT = 9
R_INIT_TIMEOUT = 10
R_INIT_FAILED = 11

STARTING = 1
IDLE = 2
BUSY = 3

INIT_TIMEOUT_FLOOR = 10.0

# C-level twins of the constants above (the module names stay plain Python ints).
cdef enum:
    A_DISPATCH = 1
    A_COLD_START = 2
    A_QUEUE = 3
    A_THROTTLE = 4
    A_KILL = 5
    A_STOP = 6
    A_EVICT = 7
    A_SPILL = 8

cdef enum:
    C_R_NONE = 0
    C_R_RESERVED = 1
    C_R_ACCOUNT = 2
    C_R_WAIT_TIMEOUT = 3
    C_R_REMOVED = 4
    C_R_MEMORY = 5
    C_R_KEEPALIVE = 6
    C_R_MAX_USES = 7
    C_R_GENERATION = 8
    C_R_TIMEOUT = 9
    C_R_INIT_TIMEOUT = 10
    C_R_INIT_FAILED = 11

cdef enum:
    S_STARTING = 1
    S_IDLE = 2
    S_BUSY = 3

cdef enum:
    K_ENV = 0
    K_WAIT = 1

cdef double C_INIT_TIMEOUT_FLOOR = 10.0
cdef double C_NO_DEADLINE = float("inf")


cdef struct Entry:
    double deadline
    long long seq
    int kind
    long long ident
    long long epoch


cdef struct Limits:
    long long memory_mb
    double timeout
    double keepalive
    long long reserved
    long long provisioned
    long long max_uses
    bint batch


cdef Limits _limits_of(object limits) except *:
    """A ``FunctionLimits``' fields as C values (a wrong type raises before anything changes)."""
    cdef Limits out
    out.memory_mb = limits.memory_mb
    out.timeout = limits.timeout
    out.keepalive = limits.keepalive
    out.reserved = limits.reserved
    out.provisioned = limits.provisioned
    out.max_uses = limits.max_uses
    out.batch = limits.batch
    return out


cdef inline bint _entry_lt(Entry* a, Entry* b) noexcept nogil:
    """``a < b`` as the pure core's tuples compare: by deadline, then by the unique seq."""
    if a.deadline == b.deadline:
        return a.seq < b.seq
    return a.deadline < b.deadline


@cython.final
cdef class _Function:
    cdef object name
    cdef long long generation
    cdef list idle
    cdef object waiting  # collections.deque of req ids
    cdef long long inflight  # invocations holding an environment (starting for them, or running)
    cdef long long live  # environments of the current generation
    cdef long long n_busy
    cdef long long n_starting
    cdef bint removed
    cdef bint provision_failed
    cdef long long memory
    cdef double timeout
    cdef double keepalive
    cdef long long reserved
    cdef long long provisioned
    cdef long long max_uses
    cdef bint batch

    def __cinit__(self, name):
        self.name = name
        self.generation = 0
        self.idle = []
        self.waiting = deque()
        self.inflight = 0
        self.live = 0
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


@cython.final
@cython.freelist(32)
cdef class _Env:
    cdef long long id
    cdef object key  # ``id`` as a Python int: the dict key and the action field
    cdef _Function fn
    cdef long long generation
    cdef long long memory
    cdef int state
    cdef bint alive
    cdef bint armed  # has a live entry in the deadline heap
    cdef long long epoch
    cdef long long uses
    cdef long long req
    cdef double last_used


cdef class SchedulerC:
    """Cython scheduler core. See ``runtime._scheduler_py`` for the action protocol."""

    cdef public long long account_limit
    cdef public long long cold_start_cap
    cdef public long long memory_budget  # 0: no budget
    cdef public long long max_queue  # waiting invocations per function at a concurrency limit
    cdef public double queue_timeout
    cdef public long long memory_used
    cdef public long long starting
    cdef public long long reserved_total
    cdef public long long unreserved_inflight
    cdef dict _functions
    cdef dict _envs
    cdef dict _lru  # idle environments, least recently released first
    cdef dict _waiting
    cdef dict _wait_order  # functions with waiters, oldest first
    cdef dict _refill  # functions below their provisioned floor
    cdef Entry* _heap
    cdef Py_ssize_t _heap_len
    cdef Py_ssize_t _heap_cap
    cdef long long _stale
    cdef long long _seq
    cdef long long _next_env

    def __cinit__(self, *args, **kwargs):
        self._heap = NULL
        self._heap_len = 0
        self._heap_cap = 0

    def __dealloc__(self):
        free(self._heap)
        self._heap = NULL

    def __init__(
        self,
        long long account_limit=1000,
        long long cold_start_cap=16,
        long long memory_budget_mb=0,
        long long max_queue=0,
        double queue_timeout=30.0,
    ):
        self.account_limit = account_limit
        self.cold_start_cap = cold_start_cap
        self.memory_budget = memory_budget_mb
        self.max_queue = max_queue
        self.queue_timeout = queue_timeout
        self.memory_used = 0
        self.starting = 0
        self.reserved_total = 0
        self.unreserved_inflight = 0
        self._functions = {}
        self._envs = {}
        self._lru = {}
        self._waiting = {}
        self._wait_order = {}
        self._refill = {}
        self._heap_len = 0
        self._stale = 0
        self._seq = 0
        self._next_env = 1

    # -- functions --------------------------------------------------------------------------

    def add_function(self, name, limits, double now):
        """Register ``name`` with ``limits`` (a ``FunctionLimits``); returns the cold starts
        of its provisioned floor."""
        cdef Limits lim = _limits_of(limits)
        if name in self._functions:
            raise KeyError(f"function {name!r} is already registered")
        cdef _Function fn = _Function(name)
        self._functions[name] = fn
        cdef list out = []
        self._configure(fn, &lim)
        self._top_up(fn, now, out)
        return out

    def update_function(self, name, limits, double now):
        """New generation with ``limits``: idle environments stop now, busy ones when they
        finish."""
        cdef Limits lim = _limits_of(limits)
        cdef _Function fn = <_Function>self._functions[name]
        cdef list out = []
        cdef _Env env
        fn.generation += 1
        fn.live = 0
        fn.provision_failed = False
        for env in list(fn.idle):
            self._remove(env, A_STOP, C_R_GENERATION, out)
        self._configure(fn, &lim)
        self._top_up(fn, now, out)
        self._pump(now, out)
        return out

    def set_concurrency(self, name, long long reserved, long long provisioned, double now):
        """Change reserved and provisioned concurrency without a new generation."""
        cdef _Function fn = <_Function>self._functions[name]
        cdef list out = []
        cdef _Env env
        self._set_reserved(fn, reserved)
        fn.provisioned = provisioned
        fn.provision_failed = False
        for env in fn.idle:
            if not env.armed:
                self._arm(env, env.last_used + fn.keepalive)
        self._top_up(fn, now, out)
        self._pump(now, out)
        return out

    def remove_function(self, name, double now):
        """Unregister: idle environments stop, waiters are refused, busy ones finish."""
        cdef _Function fn = <_Function>self._functions.pop(name)
        cdef list out = []
        cdef _Env env
        fn.removed = True
        self._set_reserved(fn, -1)
        self._refill.pop(name, None)
        self._wait_order.pop(name, None)
        waiting = fn.waiting
        while waiting:
            req = waiting.popleft()
            if self._waiting.pop(req, None) is not None:
                self._stale += 1
                out.append((A_THROTTLE, 0, req, C_R_REMOVED))
        for env in list(fn.idle):
            self._remove(env, A_STOP, C_R_REMOVED, out)
        self._pump(now, out)
        return out

    @cython.final
    cdef int _configure(self, _Function fn, Limits* lim) except -1:
        fn.memory = lim.memory_mb
        fn.timeout = lim.timeout
        fn.keepalive = lim.keepalive
        fn.provisioned = lim.provisioned
        fn.max_uses = lim.max_uses
        fn.batch = lim.batch
        self._set_reserved(fn, lim.reserved)
        return 0

    @cython.final
    cdef inline void _set_reserved(self, _Function fn, long long reserved) noexcept:
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

    def submit(self, long long req, name, double now):
        """A new invocation ``req`` of function ``name``."""
        cdef _Function fn = <_Function>self._functions[name]
        cdef list out = []
        if fn.batch:
            out.append((A_SPILL, 0, req, C_R_NONE))
        elif not self._has_capacity(fn):
            if len(fn.waiting) >= self.max_queue:
                out.append(
                    (A_THROTTLE, 0, req, C_R_RESERVED if fn.reserved >= 0 else C_R_ACCOUNT)
                )
            else:
                self._enqueue(fn, req, now, out)
        elif fn.waiting:
            self._enqueue(fn, req, now, out)  # behind earlier waiters, first come first served
        elif not self._serve(fn, req, now, out):
            if self.memory_budget and fn.memory > self.memory_budget:
                out.append((A_THROTTLE, 0, req, C_R_MEMORY))
            else:
                self._enqueue(fn, req, now, out)
        return out

    def ready(self, env_id, double now):
        """The worker of ``env_id`` finished its cold start."""
        cdef _Env env = <_Env>self._envs[env_id]
        cdef _Function fn = env.fn
        cdef list out = []
        self._disarm(env)
        self.starting -= 1
        fn.n_starting -= 1
        env.alive = True
        if env.req >= 0:
            self._run(env, env.req, now, out)
        elif fn.removed or env.generation != fn.generation:
            self._remove(env, A_STOP, C_R_REMOVED if fn.removed else C_R_GENERATION, out)
        else:
            self._make_idle(env, now, out)
        self._pump(now, out)
        return out

    def start_failed(self, env_id, double now):
        """The worker of ``env_id`` failed to initialize; the engine answers its invocation."""
        cdef _Env env = <_Env>self._envs[env_id]
        cdef _Function fn = env.fn
        cdef list out = []
        self.starting -= 1
        fn.n_starting -= 1
        if env.req >= 0:
            self._end_invocation(env)
        elif env.generation == fn.generation:
            fn.provision_failed = True  # a failing pre-warm is not retried until the next update
        self._remove(env, A_STOP, C_R_INIT_FAILED, out)
        self._pump(now, out)
        return out

    def release(self, env_id, double now):
        """The invocation on ``env_id`` finished and its worker is alive."""
        cdef _Env env = <_Env>self._envs[env_id]
        cdef list out = []
        self._finish(env)
        self._settle(env, now, out)
        if self._wait_order or self._refill:
            self._pump(now, out)
        return out

    def crashed(self, env_id, double now):
        """The worker of ``env_id`` died outside a cold start (crash, OOM, killed from outside)."""
        cdef _Env env = <_Env>self._envs[env_id]
        cdef list out = []
        if env.state == S_BUSY:
            self._finish(env)
        elif env.state == S_IDLE:
            env.fn.idle.remove(env)
            self._unidle(env)
        else:
            raise ValueError(f"environment {env_id} is starting: report start_failed instead")
        env.alive = False
        self._settle(env, now, out)
        self._pump(now, out)
        return out

    def withdraw(self, long long req, double now):
        """The caller of ``req`` gave up before it was dispatched: it never runs."""
        cdef list out = []
        cdef _Env env
        cdef _Function fn
        found = self._waiting.pop(req, None)
        if found is not None:
            fn = <_Function>found
            fn.waiting.remove(req)
            if not fn.waiting:
                self._wait_order.pop(fn.name, None)
            self._stale += 1  # its queue-wait deadline is dead
            return out
        for obj in self._envs.values():
            env = <_Env>obj
            if env.req == req and env.state == S_STARTING:
                self._end_invocation(env)
                self._pump(now, out)
                break
        return out

    def advance(self, double now):
        """Fire every deadline at or before ``now``: timeouts, keepalives, queue waits."""
        cdef list out = []
        cdef bint fired = False
        cdef Entry entry
        cdef object env_obj
        cdef _Env env
        while self._heap_len and self._heap[0].deadline <= now:
            entry = self._heappop()
            if entry.kind == K_WAIT:
                if self._waiting.pop(entry.ident, None) is None:
                    self._stale -= 1
                    continue
                out.append((A_THROTTLE, 0, entry.ident, C_R_WAIT_TIMEOUT))
            else:
                env_obj = self._envs.get(entry.ident)
                if env_obj is None or (<_Env>env_obj).epoch != entry.epoch:
                    self._stale -= 1
                    continue
                env = <_Env>env_obj
                env.armed = False
                self._expire(env, now, out)
            fired = True
        if fired:
            self._pump(now, out)
        return out

    def next_deadline(self):
        """The earliest live deadline, or infinity."""
        cdef Entry* top
        cdef object env_obj
        while self._heap_len:
            top = &self._heap[0]
            if top.kind == K_WAIT:
                if top.ident in self._waiting:
                    return top.deadline
            else:
                env_obj = self._envs.get(top.ident)
                if env_obj is not None and (<_Env>env_obj).epoch == top.epoch:
                    return top.deadline
            self._heappop()
            self._stale -= 1
        return C_NO_DEADLINE

    # -- introspection ----------------------------------------------------------------------

    def counts(self, name):
        """(starting, idle, busy, waiting) for ``name``."""
        cdef _Function fn = <_Function>self._functions[name]
        cdef Py_ssize_t waiting = 0
        for req in fn.waiting:
            if req in self._waiting:
                waiting += 1
        return fn.n_starting, len(fn.idle), fn.n_busy, waiting

    def env_function(self, env_id):
        """The name of the function ``env_id`` belongs to."""
        return (<_Env>self._envs[env_id]).fn.name

    def generation(self, name):
        return (<_Function>self._functions[name]).generation

    def env_count(self):
        return len(self._envs)

    def heap_size(self):
        return self._heap_len

    def __repr__(self):
        cdef long long busy = 0
        cdef _Function fn
        for fn in self._functions.values():
            busy += fn.n_busy
        return (
            f"<SchedulerC functions={len(self._functions)} envs={len(self._envs)} "
            f"starting={self.starting} busy={busy} idle={len(self._lru)} "
            f"waiting={len(self._waiting)} memory={self.memory_used}MB>"
        )

    # -- internals --------------------------------------------------------------------------

    @cython.final
    cdef inline bint _has_capacity(self, _Function fn) noexcept:
        if fn.reserved >= 0:
            return fn.inflight < fn.reserved
        return self.unreserved_inflight < self.account_limit - self.reserved_total

    @cython.final
    cdef int _serve(self, _Function fn, long long req, double now, list out) except -1:
        """Give ``req`` an idle environment or a new one; 0 if it has to wait."""
        cdef list idle = fn.idle
        cdef Py_ssize_t n = len(idle)
        cdef Py_ssize_t i
        cdef _Env env
        if n:
            env = <_Env>idle[n - 1]
            if env.alive:
                idle.pop()
                self._unidle(env)
                self._run(env, req, now, out)
                return 1
            if self.starting < self.cold_start_cap:
                idle.pop()
                self._unidle(env)
                self._start(env, req, now, out)
                return 1
            # No start slot for the dead one on top: a warm one below serves now (a dispatch
            # starts nothing, so the cold-start cap must not make req wait).
            for i in range(n - 2, -1, -1):
                env = <_Env>idle[i]
                if env.alive:
                    del idle[i]
                    self._unidle(env)
                    self._run(env, req, now, out)
                    return 1
            return 0
        if self.starting >= self.cold_start_cap or not self._fits(fn, out):
            return 0
        self._start(self._new_env(fn), req, now, out)
        return 1

    @cython.final
    cdef int _run(self, _Env env, long long req, double now, list out) except -1:
        cdef _Function fn = env.fn
        if env.req < 0:
            self._begin_invocation(fn)
        env.req = req
        env.state = S_BUSY
        fn.n_busy += 1
        self._arm(env, now + fn.timeout)
        out.append((A_DISPATCH, env.key, req, C_R_NONE))
        return 0

    @cython.final
    cdef int _start(self, _Env env, long long req, double now, list out) except -1:
        cdef _Function fn = env.fn
        if req >= 0:
            self._begin_invocation(fn)
        env.req = req
        env.state = S_STARTING
        fn.n_starting += 1
        self.starting += 1
        self._arm(
            env, now + (fn.timeout if fn.timeout > C_INIT_TIMEOUT_FLOOR else C_INIT_TIMEOUT_FLOOR)
        )
        out.append((A_COLD_START, env.key, req, C_R_NONE))
        return 0

    @cython.final
    cdef inline void _begin_invocation(self, _Function fn) noexcept:
        fn.inflight += 1
        if fn.reserved < 0:
            self.unreserved_inflight += 1

    @cython.final
    cdef inline void _end_invocation(self, _Env env) noexcept:
        cdef _Function fn = env.fn
        env.req = -1
        fn.inflight -= 1
        if fn.reserved < 0:
            self.unreserved_inflight -= 1

    @cython.final
    cdef _Env _new_env(self, _Function fn):
        cdef _Env env = _Env.__new__(_Env)
        env.id = self._next_env
        env.key = self._next_env
        env.fn = fn
        env.generation = fn.generation
        env.memory = fn.memory
        env.state = S_STARTING
        env.alive = False
        env.armed = False
        env.epoch = 0
        env.uses = 0
        env.req = -1
        env.last_used = 0.0
        self._next_env += 1
        self._envs[env.key] = env
        self.memory_used += env.memory
        fn.live += 1
        return env

    @cython.final
    cdef int _finish(self, _Env env) except -1:
        """A running invocation ended (released, crashed or killed)."""
        self._disarm(env)
        env.fn.n_busy -= 1
        env.uses += 1
        self._end_invocation(env)
        return 0

    @cython.final
    cdef int _settle(self, _Env env, double now, list out) except -1:
        """After an invocation: recycle the environment or make it idle again."""
        cdef _Function fn = env.fn
        if fn.removed:
            self._remove(env, A_STOP, C_R_REMOVED, out)
        elif env.generation != fn.generation:
            self._remove(env, A_STOP, C_R_GENERATION, out)
        elif fn.max_uses and env.uses >= fn.max_uses:
            self._remove(env, A_STOP, C_R_MAX_USES, out)
            self._top_up(fn, now, out)
        else:
            self._make_idle(env, now, out)
            if not env.alive and fn.provisioned:
                self._top_up(fn, now, out)  # a provisioned environment is restarted at once
        return 0

    @cython.final
    cdef int _make_idle(self, _Env env, double now, list out) except -1:
        cdef _Function fn = env.fn
        env.state = S_IDLE
        env.last_used = now
        if fn.keepalive <= 0 and fn.live > fn.provisioned:
            self._remove(env, A_STOP, C_R_KEEPALIVE, out)
            return 0
        fn.idle.append(env)
        self._lru[env.key] = env
        if fn.live > fn.provisioned:
            self._arm(env, now + fn.keepalive)
        return 0

    @cython.final
    cdef int _unidle(self, _Env env) except -1:
        """Take ``env`` out of the idle structures (the caller already popped fn.idle)."""
        self._disarm(env)
        del self._lru[env.key]
        env.state = S_STARTING  # a transient state until the caller runs or starts it
        return 0

    @cython.final
    cdef int _expire(self, _Env env, double now, list out) except -1:
        cdef _Function fn = env.fn
        if env.state == S_IDLE:
            if fn.live <= fn.provisioned and not fn.removed:
                return 0  # the provisioned floor stays; re-armed when the floor drops
            fn.idle.remove(env)
            del self._lru[env.key]
            self._remove(env, A_STOP, C_R_KEEPALIVE, out)
        elif env.state == S_BUSY:
            out.append((A_KILL, env.key, env.req, C_R_TIMEOUT))
            fn.n_busy -= 1
            env.uses += 1
            self._end_invocation(env)
            env.alive = False
            self._settle(env, now, out)
        else:
            out.append((A_KILL, env.key, env.req, C_R_INIT_TIMEOUT))
            self.starting -= 1
            fn.n_starting -= 1
            if env.req >= 0:
                self._end_invocation(env)
            elif env.generation == fn.generation:
                fn.provision_failed = True
            self._remove(env, A_STOP, C_R_INIT_TIMEOUT, out)
        return 0

    @cython.final
    cdef int _remove(self, _Env env, int kind, int reason, list out) except -1:
        cdef _Function fn = env.fn
        if env.state == S_IDLE and env.key in self._lru:
            del self._lru[env.key]
            if env in fn.idle:
                fn.idle.remove(env)
        self._disarm(env)
        del self._envs[env.key]
        self.memory_used -= env.memory
        if env.generation == fn.generation:
            fn.live -= 1
            if fn.provisioned and fn.live <= fn.provisioned and not fn.removed:
                self._refill[fn.name] = fn
        out.append((kind, env.key, -1, reason))
        return 0

    @cython.final
    cdef int _fits(self, _Function fn, list out) except -1:
        """Room for one more environment of ``fn``, evicting idle ones of other functions."""
        cdef long long budget = self.memory_budget
        if not budget or self.memory_used + fn.memory <= budget:
            return 1
        if fn.memory > budget:
            return 0
        cdef long long need = self.memory_used + fn.memory - budget
        cdef list victims = []
        cdef dict floors = {}
        cdef _Env env
        cdef _Function other
        cdef long long live
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
            return 0
        for env in victims:
            self._remove(env, A_EVICT, C_R_MEMORY, out)
        return 1

    @cython.final
    cdef int _enqueue(self, _Function fn, long long req, double now, list out) except -1:
        cdef object key = req
        fn.waiting.append(key)
        self._waiting[key] = fn
        if fn.name not in self._wait_order:
            self._wait_order[fn.name] = fn
        self._push(now + self.queue_timeout, K_WAIT, req, 0)
        out.append((A_QUEUE, 0, key, C_R_NONE))
        return 0

    @cython.final
    cdef int _pump(self, double now, list out) except -1:
        """Serve waiters (oldest function first), then refill provisioned floors."""
        cdef _Function fn
        cdef object waiting
        cdef dict waiting_reqs = self._waiting
        if self._wait_order:
            for name, fn_obj in list(self._wait_order.items()):
                fn = <_Function>fn_obj
                waiting = fn.waiting
                while waiting:
                    req = waiting[0]
                    if req not in waiting_reqs:
                        waiting.popleft()
                        continue
                    if not self._has_capacity(fn) or not self._serve(fn, req, now, out):
                        break
                    waiting.popleft()
                    del waiting_reqs[req]
                    self._stale += 1
                if not waiting:
                    del self._wait_order[name]
        if self._refill:
            for name, fn_obj in list(self._refill.items()):
                if self._top_up(<_Function>fn_obj, now, out):
                    del self._refill[name]
        return 0

    @cython.final
    cdef int _top_up(self, _Function fn, double now, list out) except -1:
        """Keep the provisioned floor started; 0 if capacity ran out first."""
        cdef _Env env
        cdef list dead
        if fn.provision_failed or fn.removed:
            return 1
        while fn.live < fn.provisioned:
            if self.starting >= self.cold_start_cap or not self._fits(fn, out):
                self._refill[fn.name] = fn
                return 0
            self._start(self._new_env(fn), -1, now, out)
        if fn.live <= fn.provisioned:
            dead = [env for env in fn.idle if not env.alive]
            for env in dead:
                if self.starting >= self.cold_start_cap:
                    self._refill[fn.name] = fn
                    return 0
                fn.idle.remove(env)
                self._unidle(env)
                self._start(env, -1, now, out)
        return 1

    # -- the deadline heap ------------------------------------------------------------------

    @cython.final
    cdef int _push(self, double deadline, int kind, long long ident, long long epoch) except -1:
        cdef Py_ssize_t cap
        cdef Entry* grown
        if self._heap_len == self._heap_cap:
            cap = self._heap_cap * 2 if self._heap_cap else 64
            grown = <Entry*>realloc(self._heap, cap * sizeof(Entry))
            if grown == NULL:
                raise MemoryError()
            self._heap = grown
            self._heap_cap = cap
        self._seq += 1
        cdef Entry* slot = &self._heap[self._heap_len]
        slot.deadline = deadline
        slot.seq = self._seq
        slot.kind = kind
        slot.ident = ident
        slot.epoch = epoch
        self._heap_len += 1
        self._siftdown(0, self._heap_len - 1)
        return 0

    @cython.final
    cdef inline Entry _heappop(self) noexcept:
        """heapq.heappop on a non-empty heap."""
        cdef Entry* heap = self._heap
        self._heap_len -= 1
        cdef Entry last = heap[self._heap_len]
        cdef Entry top
        if self._heap_len:
            top = heap[0]
            heap[0] = last
            self._siftup(0)
            return top
        return last

    @cython.final
    cdef inline void _siftdown(self, Py_ssize_t startpos, Py_ssize_t pos) noexcept:
        cdef Entry* heap = self._heap
        cdef Entry newitem = heap[pos]
        cdef Py_ssize_t parentpos
        while pos > startpos:
            parentpos = (pos - 1) >> 1
            if _entry_lt(&newitem, &heap[parentpos]):
                heap[pos] = heap[parentpos]
                pos = parentpos
                continue
            break
        heap[pos] = newitem

    @cython.final
    cdef void _siftup(self, Py_ssize_t pos) noexcept:
        cdef Entry* heap = self._heap
        cdef Py_ssize_t endpos = self._heap_len
        cdef Py_ssize_t startpos = pos
        cdef Entry newitem = heap[pos]
        cdef Py_ssize_t childpos = 2 * pos + 1
        cdef Py_ssize_t rightpos
        while childpos < endpos:
            rightpos = childpos + 1
            if rightpos < endpos and not _entry_lt(&heap[childpos], &heap[rightpos]):
                childpos = rightpos
            heap[pos] = heap[childpos]
            pos = childpos
            childpos = 2 * pos + 1
        heap[pos] = newitem
        self._siftdown(startpos, pos)

    @cython.final
    cdef inline int _arm(self, _Env env, double deadline) except -1:
        self._disarm(env)
        env.armed = True
        self._push(deadline, K_ENV, env.id, env.epoch)
        return 0

    @cython.final
    cdef inline int _disarm(self, _Env env) except -1:
        """Cancel the armed deadline of ``env`` (lazily: its epoch moves on)."""
        env.epoch += 1
        if env.armed:
            env.armed = False
            self._stale += 1
            if self._stale > 1024 and self._stale > self._heap_len // 2:
                self._compact()
        return 0

    @cython.final
    cdef int _compact(self) except -1:
        cdef Entry* heap = self._heap
        cdef Py_ssize_t i
        cdef Py_ssize_t kept = 0
        cdef bint keep
        cdef object env_obj
        for i in range(self._heap_len):
            if heap[i].kind == K_WAIT:
                keep = heap[i].ident in self._waiting
            else:
                env_obj = self._envs.get(heap[i].ident)
                keep = env_obj is not None and (<_Env>env_obj).epoch == heap[i].epoch
            if keep:
                heap[kept] = heap[i]
                kept += 1
        self._heap_len = kept
        for i in reversed(range(kept // 2)):  # heapq.heapify
            self._siftup(i)
        self._stale = 0
        return 0
