"""The async-invocation store in Redis, for several nodes sharing one server:
:class:`RedisEventStore`, the :class:`~runtime.asyncinvoke.store.EventStore` of
:class:`~runtime.asyncinvoke.store.SqliteEventStore`, call for call.

::

    put_event ──▶ event:<id> (hash) ── due (zset: next_at, then arrival) ◀── recover(node)
                                          │ claim_events(node)          ▲ (node found stale)
                                          ▼                             │
                          inflight:<node> (set of ids) ── event_failed ─┴─▶ due again | dead
                                          │ event_done: the hash and its index entries deleted
                                          ▼
                 dead (zset: arrival) ── dlq_redrive ──▶ due

Keys, under ``<prefix>:events:``:

- ``event:<id>``: the event, one hash field per column of the SQLite table, plus ``seq``, its
  arrival number (``INCR seq``); times are stored as the client wrote them (``repr`` of a
  float) and no script ever turns one into text again, so they come back exact;
- ``due``: the DUE events, scored by ``next_at``; a member is the zero-padded ``seq`` followed
  by the id, so equal times order by arrival, as SQLite's ``ORDER BY next_at, seq`` does;
- ``inflight:<node>``: the ids a node holds. A claim is a lease: it stays with the node while
  the node beats (``<prefix>:nodes:seen``, :func:`runtime.redisdb.nodes_key`, shared with the
  batch store); whoever finds the node stale calls :meth:`RedisEventStore.recover`;
- ``dead``: the DEAD ids, scored by ``seq`` (the dead-letter list, oldest first);
- ``configs``: the event invoke configs, function → JSON.

Nothing is trimmed: an event leaves only through ``event_done``. Attempts are ours
(``invocations``, incremented by the claim), never a Redis delivery count.

Atomicity: ``put_event``, ``claim_events``, ``event_done``, ``event_failed``'s write,
``recover``, ``dlq_redrive`` and ``dlq_list`` are each one Lua script. ``event_failed`` reads
the event, applies :func:`~runtime.asyncinvoke.model.after_failure` in Python (the rules live in
one place), and writes with a script that first checks the event is still the same claim
(INFLIGHT, same node, same ``invocations``): a report that lost a race with a recovery changes
nothing and answers the event as it is, like any stale report. The configs change in
:meth:`~runtime.redisdb.RedisDb._transact` transactions.

The scripts build the keys of events and nodes from the prefix: every key of one prefix must
live on one server (no Redis Cluster slots across a prefix).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, cast

import msgspec
import redis

from ..errors import ResourceNotFoundException
from ..redisdb import DEFAULT_PREFIX, RedisDb, Txn, nodes_key
from ..stamps import request_id as new_request_id
from . import model as ev
from .store import Recovered

__all__ = ["RedisEventStore"]

_encoder = msgspec.json.Encoder()
_config_decoder = msgspec.json.Decoder(ev.EventInvokeConfig)

#: the hash fields of an event, in the order scripts answer them (see _event)
_FIELDS: Final = (
    "id",
    "function",
    "payload",
    "created_at",
    "next_at",
    "state",
    "node",
    "invocations",
    "retries",
    "throttles",
    "max_retries",
    "max_age",
    "error",
    "condition",
)

# Shared by every script. ARGV[1] is the component's key base; an optional string argument
# is '' for None and '+' followed by the value otherwise.
_PRELUDE = f"""
local BASE = ARGV[1]
local DUE, INFLIGHT, DEAD = {ev.DUE!r}, {ev.INFLIGHT!r}, {ev.DEAD!r}
local AGE_EXCEEDED = {ev.EVENT_AGE_EXCEEDED!r}
local FIELDS = {{{", ".join(repr(f) for f in _FIELDS)}}}
local function ekey(id) return BASE .. 'event:' .. id end
local function ikey(node) return BASE .. 'inflight:' .. node end
local function record(id) return redis.call('HMGET', ekey(id), unpack(FIELDS)) end
local function member(seq, id) return string.format('%016d', tonumber(seq)) .. id end
local function opt(value) if value == '' then return nil end return string.sub(value, 2) end
local function set_opt(key, field, value)
  local v = opt(value)
  if v == nil then redis.call('HDEL', key, field) else redis.call('HSET', key, field, v) end
end
"""

# KEYS: due, seq, configs. ARGV: base, id, function, payload, now, max_retries?, max_age?,
# default retries, default age. An id already stored answers the stored event.
_PUT = (
    _PRELUDE
    + """
local id, fn, now = ARGV[2], ARGV[3], ARGV[5]
local key = ekey(id)
if redis.call('EXISTS', key) == 1 then return record(id) end
local retries, age = opt(ARGV[6]), opt(ARGV[7])
if retries == nil or age == nil then
  local detail = redis.call('HGET', KEYS[3], fn)
  local config = {}
  if detail then config = cjson.decode(detail) end
  if retries == nil then retries = config['MaximumRetryAttempts'] or ARGV[8] end
  if age == nil then age = config['MaximumEventAgeInSeconds'] or ARGV[9] end
end
local seq = redis.call('INCR', KEYS[2])
redis.call('HSET', key, 'id', id, 'function', fn, 'payload', ARGV[4], 'created_at', now,
  'next_at', now, 'state', DUE, 'invocations', 0, 'retries', 0, 'throttles', 0,
  'max_retries', string.format('%d', retries), 'max_age', string.format('%d', age),
  'seq', seq)
redis.call('ZADD', KEYS[1], now, member(seq, id))
return record(id)
"""
)

# KEYS: due, dead, nodes seen. ARGV: base, node, now, limit. Answers {claimed, expired}.
_CLAIM = (
    _PRELUDE
    + """
local node, now, limit = ARGV[2], ARGV[3], tonumber(ARGV[4])
local t = tonumber(now)
redis.call('ZADD', KEYS[3], now, node)
local live, dead = {}, {}
while #live < limit do
  local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, limit - #live)
  if #due == 0 then break end
  for _, m in ipairs(due) do
    redis.call('ZREM', KEYS[1], m)
    local id = string.sub(m, 17)
    local key = ekey(id)
    local created, age, seq = unpack(redis.call('HMGET', key, 'created_at', 'max_age', 'seq'))
    if created then
      if t >= tonumber(created) + tonumber(age) then
        redis.call('HSET', key, 'state', DEAD, 'next_at', now, 'condition', AGE_EXCEEDED)
        redis.call('HDEL', key, 'node')
        redis.call('ZADD', KEYS[2], seq, id)
        dead[#dead + 1] = record(id)
      else
        redis.call('HSET', key, 'state', INFLIGHT, 'node', node)
        redis.call('HINCRBY', key, 'invocations', 1)
        redis.call('SADD', ikey(node), id)
        live[#live + 1] = record(id)
      end
    end
  end
end
return {live, dead}
"""
)

# KEYS: due, dead. ARGV: base, id.
_DONE = (
    _PRELUDE
    + """
local id = ARGV[2]
local key = ekey(id)
local seq, node = unpack(redis.call('HMGET', key, 'seq', 'node'))
if not seq then return 0 end
redis.call('ZREM', KEYS[1], member(seq, id))
redis.call('ZREM', KEYS[2], id)
if node then redis.call('SREM', ikey(node), id) end
redis.call('DEL', key)
return 1
"""
)

# KEYS: due, dead. ARGV: base, id, the claim read (node, invocations), then the event after
# the failure: state, node?, next_at, invocations, retries, throttles, error?, condition?.
# Answers false (no such event), or {applied, event}: not applied when the claim read is no
# longer the event's.
_FAIL = (
    _PRELUDE
    + """
local id, state = ARGV[2], ARGV[5]
local key = ekey(id)
local was, owner, tries, seq = unpack(
  redis.call('HMGET', key, 'state', 'node', 'invocations', 'seq'))
if not was then return false end
if was ~= INFLIGHT or owner ~= ARGV[3] or tries ~= ARGV[4] then return {0, record(id)} end
redis.call('HSET', key, 'state', state, 'next_at', ARGV[7], 'invocations', ARGV[8],
  'retries', ARGV[9], 'throttles', ARGV[10])
set_opt(key, 'node', ARGV[6])
set_opt(key, 'error', ARGV[11])
set_opt(key, 'condition', ARGV[12])
if state ~= INFLIGHT then redis.call('SREM', ikey(owner), id) end
if state == DUE then redis.call('ZADD', KEYS[1], ARGV[7], member(seq, id)) end
if state == DEAD then redis.call('ZADD', KEYS[2], seq, id) end
return {1, record(id)}
"""
)

# KEYS: due, nodes seen. ARGV: base, node, now, forget ('1' or '0'). Answers how many.
_RECOVER = (
    _PRELUDE
    + """
local node, now = ARGV[2], ARGV[3]
local held = ikey(node)
local count = 0
for _, id in ipairs(redis.call('SMEMBERS', held)) do
  local key = ekey(id)
  local state, owner, seq = unpack(redis.call('HMGET', key, 'state', 'node', 'seq'))
  if state == INFLIGHT and owner == node then
    redis.call('HSET', key, 'state', DUE, 'next_at', now)
    redis.call('HDEL', key, 'node')
    redis.call('ZADD', KEYS[1], now, member(seq, id))
    count = count + 1
  end
end
redis.call('DEL', held)
if ARGV[4] == '1' then redis.call('ZREM', KEYS[2], node) end
return count
"""
)

# KEYS: due, dead. ARGV: base, now, every ('1': the whole list, else the ids after it).
_REDRIVE = (
    _PRELUDE
    + """
local now = ARGV[2]
local ids = {}
if ARGV[3] == '1' then
  ids = redis.call('ZRANGE', KEYS[2], 0, -1)
else
  for i = 4, #ARGV do ids[#ids + 1] = ARGV[i] end
end
local count = 0
for _, id in ipairs(ids) do
  local key = ekey(id)
  local state, seq = unpack(redis.call('HMGET', key, 'state', 'seq'))
  if state == DEAD then
    redis.call('HSET', key, 'state', DUE, 'next_at', now, 'created_at', now, 'retries', 0,
      'throttles', 0)
    redis.call('HDEL', key, 'condition', 'node')
    redis.call('ZREM', KEYS[2], id)
    redis.call('ZADD', KEYS[1], now, member(seq, id))
    count = count + 1
  end
end
return count
"""
)

# KEYS: dead. ARGV: base, function?, limit (negative: no limit, as SQLite's LIMIT -1).
_DLQ = (
    _PRELUDE
    + """
local fn, limit = opt(ARGV[2]), tonumber(ARGV[3])
local out = {}
if limit < 0 then limit = math.huge end
local start, page = 0, 256
while #out < limit do
  local ids = redis.call('ZRANGE', KEYS[1], start, start + page - 1)
  if #ids == 0 then break end
  for _, id in ipairs(ids) do
    if fn == nil or redis.call('HGET', ekey(id), 'function') == fn then
      out[#out + 1] = record(id)
      if #out >= limit then break end
    end
  end
  start = start + page
end
return out
"""
)


class RedisEventStore(RedisDb):
    """Async invocation events and event invoke configs in the Redis at ``url``, under
    ``<prefix>:events:`` (see the module docstring); use it from any thread and any number
    of processes and nodes at once."""

    kind = "event store"
    component = "events"

    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        require_append_only: bool = True,
        client: redis.Redis | None = None,
    ) -> None:
        self._open(url, prefix=prefix, require_append_only=require_append_only, client=client)
        self._due = self.key("due")
        self._dead = self.key("dead")
        self._configs = self.key("configs")
        self._nodes = nodes_key(prefix)

    def __enter__(self) -> RedisEventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- async invocation events --------------------------------------------------------------

    def put_event(
        self,
        function: str,
        payload: bytes,
        now: float,
        *,
        max_retries: int | None = None,
        max_age_s: int | None = None,
        request_id: str | None = None,
    ) -> ev.AsyncEvent:
        """Accept an async invocation; stored when this returns. Limits not given come from
        the function's event invoke config, else Lambda's defaults (2 retries, 6 hours). A
        ``request_id`` already accepted returns the stored event (a producer may resend)."""
        ev.check_retries(max_retries)
        ev.check_max_age(max_age_s)
        event_id = request_id or new_request_id()
        row = self._run(
            "put",
            _PUT,
            (self._due, self.key("seq"), self._configs),
            event_id,
            function,
            payload,
            float(now),
            _opt(max_retries),
            _opt(max_age_s),
            ev.DEFAULT_MAX_RETRIES,
            ev.DEFAULT_MAX_AGE_S,
        )
        return _event(row)

    def claim_events(self, node: str, now: float, limit: int = 10) -> ev.EventClaim:
        """Hand up to ``limit`` due events to ``node`` (oldest due first), now INFLIGHT. Due
        events already past their maximum age are dead-lettered instead and returned apart.
        The claim is also ``node``'s heartbeat."""
        live, dead = self._run(
            "claim", _CLAIM, (self._due, self._dead, self._nodes), node, float(now), limit
        )
        return ev.EventClaim(events=[_event(r) for r in live], expired=[_event(r) for r in dead])

    def event_done(self, event_id: str) -> None:
        """The event ran (successfully, or its failure was handled): forget it."""
        self._run("done", _DONE, (self._due, self._dead), event_id)

    def event_failed(
        self, event_id: str, error: str, now: float, *, throttled: bool = False
    ) -> ev.AsyncEvent:
        """A try of an in-flight event failed (``throttled``: it could not get concurrency).
        Returns the event as it now is: DUE at its retry time, or DEAD with its condition —
        then the caller sends it to the on-failure destination, if one is configured."""
        event = self._get(event_id)
        if event.state != ev.INFLIGHT:
            return event
        after = ev.after_failure(event, error, now, throttled=throttled)
        if after.state == ev.DEAD:
            after = msgspec.structs.replace(after, next_attempt_at=now)
        answer = self._run(
            "fail",
            _FAIL,
            (self._due, self._dead),
            event_id,
            event.node or "",
            event.invocations,
            after.state,
            _opt(after.node),
            float(after.next_attempt_at),
            after.invocations,
            after.retries,
            after.throttles,
            _opt(after.error),
            _opt(after.condition),
        )
        if answer is None:
            raise _missing(event_id)
        return _event(answer[1])

    def dlq_list(self, function: str | None = None, limit: int = 100) -> list[ev.AsyncEvent]:
        """Dead-lettered events, oldest first (``next_attempt_at`` is when each was
        discarded)."""
        rows = self._run("dlq", _DLQ, (self._dead,), _opt(function), limit)
        return [_event(row) for row in rows]

    def dlq_redrive(self, event_ids: Sequence[str] | None, now: float) -> int:
        """Put dead events (the ones named, or all) back as new: due now, with their retries
        and their age starting over. Returns how many."""
        every = "1" if event_ids is None else "0"
        ids = [] if event_ids is None else list(event_ids)
        return int(self._run("redrive", _REDRIVE, (self._due, self._dead), float(now), every, *ids))

    # -- node liveness ------------------------------------------------------------------------

    def heartbeat(self, node: str, now: float) -> None:
        """Record that ``node`` is alive (its claims do this too)."""
        self._guard(lambda: self.redis.zadd(self._nodes, {node: float(now)}))

    def stale_nodes(self, now: float, max_silence_s: float) -> list[str]:
        """Nodes not heard from for ``max_silence_s`` (the batch runners' too: the set is
        shared): candidates for recovery."""
        below = f"({float(now - max_silence_s)!r}"
        members = self._guard(lambda: self.redis.zrangebyscore(self._nodes, "-inf", below))
        return sorted(cast("bytes", m).decode() for m in members)

    def recover(self, node: str, now: float, *, forget: bool = True) -> Recovered:
        """After ``node`` died (its own restart, or a node found dead or silent): its
        in-flight events are due again at ``now`` (at-least-once), and, when ``forget``, the
        node is no longer listed by :meth:`stale_nodes`. ``forget=False`` leaves that to
        whoever gives back the node's other claims after this."""
        count = self._run(
            "recover",
            _RECOVER,
            (self._due, self._nodes),
            node,
            float(now),
            "1" if forget else "0",
        )
        return Recovered(events=int(count))

    # -- event invoke config ------------------------------------------------------------------

    def put_event_invoke_config(
        self, function: str, config: ev.EventInvokeConfig, now: float
    ) -> ev.EventInvokeConfig:
        """PutFunctionEventInvokeConfig: replaces the whole config (settings left out are
        removed)."""
        ev.check_event_invoke_config(config)
        saved = _stamped(config, now)

        def put(pipe: Txn) -> ev.EventInvokeConfig:
            pipe.multi()
            pipe.hset(self._configs, function, _encoder.encode(saved))
            return saved

        return self._transact(put, self._configs)

    def update_event_invoke_config(
        self, function: str, config: ev.EventInvokeConfig, now: float
    ) -> ev.EventInvokeConfig:
        """UpdateFunctionEventInvokeConfig: changes only the settings given."""
        ev.check_event_invoke_config(config)

        def update(pipe: Txn) -> ev.EventInvokeConfig:
            old = _config(pipe.hget(self._configs, function)) or ev.EventInvokeConfig()
            saved = _stamped(ev.merge_event_invoke_config(old, config), now)
            pipe.multi()
            pipe.hset(self._configs, function, _encoder.encode(saved))
            return saved

        return self._transact(update, self._configs)

    def get_event_invoke_config(self, function: str) -> ev.EventInvokeConfig:
        config = _config(self._guard(lambda: self.redis.hget(self._configs, function)))
        if config is None:
            raise _no_config(function)
        return config

    def delete_event_invoke_config(self, function: str) -> None:
        def delete(pipe: Txn) -> None:
            if not pipe.hexists(self._configs, function):
                raise _no_config(function)
            pipe.multi()
            pipe.hdel(self._configs, function)

        self._transact(delete, self._configs)

    # -- helpers ------------------------------------------------------------------------------

    def _run(self, name: str, source: str, keys: Sequence[str], *args: Any) -> Any:
        """The script ``name``, with this component's key base as its first argument."""
        return self._script(name, source)(keys, [self._base, *args])

    def _get(self, event_id: str) -> ev.AsyncEvent:
        row = self._guard(lambda: self.redis.hmget(self.key("event", event_id), _FIELDS))
        if row[0] is None:
            raise _missing(event_id)
        return _event(row)


def _opt(value: object) -> str:
    """An optional script argument: '' for None (see _PRELUDE)."""
    return "" if value is None else f"+{value}"


def _event(row: Sequence[Any]) -> ev.AsyncEvent:
    """An event from its hash fields in :data:`_FIELDS` order (bytes, None when absent)."""
    (
        event_id,
        function,
        payload,
        created,
        next_at,
        state,
        node,
        invocations,
        retries,
        throttles,
        max_retries,
        max_age,
        error,
        condition,
    ) = row
    return ev.AsyncEvent(
        id=event_id.decode(),
        function=function.decode(),
        payload=bytes(payload),
        created_at=float(created),
        next_attempt_at=float(next_at),
        state=state.decode(),
        node=None if node is None else node.decode(),
        invocations=int(invocations),
        retries=int(retries),
        throttles=int(throttles),
        max_retries=int(max_retries),
        max_age_s=int(max_age),
        error=None if error is None else error.decode(),
        condition=None if condition is None else condition.decode(),
    )


def _config(detail: bytes | str | None) -> ev.EventInvokeConfig | None:
    return None if detail is None else _config_decoder.decode(detail)


def _stamped(config: ev.EventInvokeConfig, now: float) -> ev.EventInvokeConfig:
    return msgspec.structs.replace(config, function_arn=None, last_modified=now)


def _missing(event_id: str) -> ResourceNotFoundException:
    return ResourceNotFoundException(f"Event {event_id} does not exist")


def _no_config(function: str) -> ResourceNotFoundException:
    return ResourceNotFoundException(f"The function {function} doesn't have an EventInvokeConfig")
