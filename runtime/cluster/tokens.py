"""Cluster-wide concurrency: tokens leased to nodes in blocks, so that a sync invoke pays no
Redis round trip while its node holds a spare token.

    invoke ── take(scope) ── a held token is free ──▶ run (no I/O)
                          └─ none: grow(scope) ── one script call: a block of tokens, if the
                                                  cluster has that many left, else throttle
    end ──── give(scope);  every beat: spare tokens beyond one block go back

A scope is a function with reserved concurrency (limit: its reserved concurrency) or the
account (limit: the account concurrency less every function's reservation). The tokens of a
scope are a hash ``node -> held`` in Redis; a grant counts only the holdings of live nodes
(those whose beat in the node registry is within ``lease_s``), so a dead node's tokens come
back with its lease, and drops the others.

The block a node asks for is small when the limit is small (a limit of 2 across three nodes
is granted one token at a time, so it is exact), larger when the limit is large; a node
holding spare tokens another needs keeps them at most one beat. A call is throttled
(``TooManyRequestsException``, as Lambda throttles) only when the cluster's grants are
exhausted. With the store unreachable, a node runs the account's calls within its own limits
and refuses those of a reserved concurrency (ServiceException): only the store can hold it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Final

import redis

from ..errors import ServiceException, TooManyRequestsException
from ..redisdb import DEFAULT_PREFIX, RedisDb
from ..sqlite import offload
from .members import seen_key

__all__ = ["ACCOUNT", "RedisTokens", "TokenPool"]

log = logging.getLogger("warmstart.cluster")

#: the scope of calls of functions without reserved concurrency
ACCOUNT: Final = "$account"
#: Lambda's reason codes of a throttle
_ACCOUNT_REASON: Final = "ConcurrentInvocationLimitExceeded"
_RESERVED_REASON: Final = "ReservedFunctionConcurrentInvocationLimitExceeded"
#: the largest block a node asks for
MAX_BLOCK: Final = 16

_GRANT = """
local holders = redis.call('HGETALL', KEYS[1])
local now, lease = tonumber(ARGV[3]), tonumber(ARGV[4])
local total = 0
for i = 1, #holders, 2 do
  local seen = redis.call('ZSCORE', KEYS[2], holders[i])
  if holders[i] == ARGV[1] or (seen and tonumber(seen) >= now - lease) then
    total = total + tonumber(holders[i + 1])
  else
    redis.call('HDEL', KEYS[1], holders[i])
  end
end
local grant = math.min(tonumber(ARGV[2]), tonumber(ARGV[5]) - total)
if grant <= 0 then return 0 end
redis.call('HINCRBY', KEYS[1], ARGV[1], grant)
return grant
"""

_RETURN = """
local left = redis.call('HINCRBY', KEYS[1], ARGV[1], -tonumber(ARGV[2]))
if left <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
return left
"""


class RedisTokens(RedisDb):
    """The token holdings in Redis (component ``tokens``)."""

    kind = "concurrency tokens"
    component = "tokens"

    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        client: redis.Redis | None = None,
    ) -> None:
        self._open(url, prefix=prefix, require_append_only=None, client=client)
        self._seen = seen_key(prefix)
        self._grant = self._script("grant", _GRANT)
        self._return = self._script("return", _RETURN)

    def grant(
        self, scope: str, node: str, want: int, limit: int, now: float, lease_s: float
    ) -> int:
        """Up to ``want`` more tokens of ``scope`` for ``node``, within ``limit`` in all."""
        return int(self._grant([self.key(scope), self._seen], [node, want, now, lease_s, limit]))

    def give_back(self, scope: str, node: str, count: int) -> None:
        self._return([self.key(scope)], [node, count])

    def forget(self, node: str) -> int:
        """Drop every holding of ``node`` (a node starting again under its old id holds
        nothing yet); returns how many scopes it held tokens of."""

        def scan() -> int:
            dropped = 0
            for key in self.redis.scan_iter(match=self.key("*"), count=500):
                if key != self._version_key.encode():
                    dropped += int(self.redis.hdel(key, node))
            return dropped

        return self._guard(scan)

    def release_all(self, node: str, scopes: list[str]) -> None:
        """``node`` stops: what it holds of ``scopes`` goes back at once."""
        keys = [self.key(scope) for scope in scopes]

        def drop() -> None:
            pipe = self.redis.pipeline(transaction=False)
            for key in keys:
                pipe.hdel(key, node)
            pipe.execute()

        if keys:
            self._guard(drop)


class TokenPool:
    """One node's tokens: ``take``/``give`` around each call (the engine's admission hook).

    ``scope_of(function)`` is the scope of a function's calls and ``limit_of(scope)`` its
    cluster-wide limit now; ``live_nodes()`` how many nodes share the limits.
    """

    def __init__(
        self,
        tokens: RedisTokens,
        node: str,
        *,
        scope_of: Callable[[str], str],
        limit_of: Callable[[str], int],
        live_nodes: Callable[[], int],
        lease_s: float,
        clock: Callable[[], float],
        executor: Executor | None = None,
    ) -> None:
        self.tokens = tokens
        self.node = node
        self.scope_of = scope_of
        self.limit_of = limit_of
        self.live_nodes = live_nodes
        self.lease_s = lease_s
        self.clock = clock
        self.executor = executor
        self.held: dict[str, int] = {}
        self.used: dict[str, int] = {}
        #: Redis round trips taken on the invoke path (the cost this design keeps small)
        self.grants = 0
        self._growing: dict[str, asyncio.Future[int]] = {}
        self._returning: set[asyncio.Task[None]] = set()

    def take(self, function: str) -> str | None:
        """A held token for a call of ``function`` (its scope, to ``give`` at the end), or
        None when this node holds none spare: then :meth:`admit`."""
        scope = self.scope_of(function)
        used = self.used.get(scope, 0)
        if used < self.held.get(scope, 0):
            self.used[scope] = used + 1
            return scope
        return None

    async def admit(self, function: str) -> str:
        """A token for a call of ``function`` (its scope is returned, to ``give`` at the
        end); ``TooManyRequestsException`` when the cluster has none left."""
        found = self.take(function)
        if found is not None:
            return found
        scope = self.scope_of(function)
        while True:
            pending = self._growing.get(scope)
            if pending is None:
                break
            try:
                await asyncio.shield(pending)
            except ServiceException:
                return self._unreachable(scope)
            used = self.used.get(scope, 0)
            if used < self.held.get(scope, 0):
                self.used[scope] = used + 1
                return scope
        try:
            granted = await self._grow(scope, self.limit_of(scope))
        except ServiceException:
            return self._unreachable(scope)
        used = self.used.get(scope, 0)
        if granted <= 0 and used >= self.held.get(scope, 0):
            if scope == ACCOUNT:
                raise TooManyRequestsException("Rate Exceeded.", _ACCOUNT_REASON)
            raise TooManyRequestsException("Rate Exceeded.", _RESERVED_REASON)
        self.used[scope] = used + 1
        return scope

    def _unreachable(self, scope: str) -> str:
        """The store is down: the account's calls go on within this node's own limits; a
        reserved concurrency, which only the store can hold, refuses instead."""
        if scope != ACCOUNT:
            raise ServiceException(
                "the concurrency tokens' store is unreachable: a function with reserved "
                "concurrency runs only while the cluster can count it"
            )
        self.used[scope] = self.used.get(scope, 0) + 1
        return scope

    async def _grow(self, scope: str, limit: int) -> int:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._growing[scope] = future
        try:
            want = self._block(limit)
            granted = await offload(
                self.executor,
                self.tokens.grant,
                scope,
                self.node,
                want,
                limit,
                self.clock(),
                self.lease_s,
            )
            self.grants += 1
            self.held[scope] = self.held.get(scope, 0) + granted
            future.set_result(granted)
            return granted
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters see it through shield
            raise
        finally:
            del self._growing[scope]

    def _block(self, limit: int) -> int:
        """Tokens to ask for at once: 1 while the limit is small for the cluster's size."""
        return max(1, min(MAX_BLOCK, limit // (8 * max(1, self.live_nodes()))))

    def give(self, scope: str) -> asyncio.Task[None] | None:
        """A call of ``scope`` ended. A scope whose limit is small for the cluster hands
        its token back at once (another node may be waiting for it: the task returned does
        it, and the engine awaits it before it answers); others keep it for their next
        call, and :meth:`trim` gives back what stays spare."""
        used = self.used[scope] = max(0, self.used.get(scope, 0) - 1)
        if self._block(self.limit_of(scope)) > 1 or scope in self._growing:
            return None
        spare = self.held.get(scope, 0) - used
        if spare <= 0:
            return None
        self.held[scope] -= spare
        task = asyncio.get_running_loop().create_task(self._give_back(scope, spare))
        self._returning.add(task)
        task.add_done_callback(self._returning.discard)
        return task

    async def _give_back(self, scope: str, count: int) -> None:
        try:
            await offload(self.executor, self.tokens.give_back, scope, self.node, count)
        except Exception as exc:  # the store is down: the tokens lapse with this node's lease
            log.warning("concurrency tokens: could not give %d back: %s", count, exc)

    async def trim(self) -> None:
        """Give back spare tokens beyond one block per scope (called every beat)."""
        for scope, held in list(self.held.items()):
            spare = held - self.used.get(scope, 0) - self._block(self.limit_of(scope))
            if spare > 0 and scope not in self._growing:
                self.held[scope] = held - spare
                await offload(self.executor, self.tokens.give_back, scope, self.node, spare)

    async def close(self) -> None:
        if self._returning:
            await asyncio.gather(*self._returning, return_exceptions=True)
        scopes = list(self.held)
        self.held.clear()
        await offload(self.executor, self.tokens.release_all, self.node, scopes)
