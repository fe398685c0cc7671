"""One Redis (or Valkey) shared by several nodes: its connection, keys under one prefix, and
transactions that either apply whole or not at all.

Several stores share one server and one prefix (the async invocations, the batch store, the
schedule rules, the functions, the node registry), each with keys of its own under
``<prefix>:<component>:``. Two ways to change state, both atomic on the server:

- :meth:`RedisDb._script`: a Lua script, for the hot paths (an Event stored, claimed, done):
  Redis runs it whole, with nothing in between, and never retries it;
- :meth:`RedisDb._transact`: optimistic read-modify-write in Python for everything else. It
  watches the component's ``version`` key, reads, then writes in ``MULTI``/``EXEC`` with the
  version bumped; a writer on another node that committed in between makes ``EXEC`` fail and
  the whole function runs again. This is ``BEGIN IMMEDIATE`` of the SQLite stores, made
  optimistic: every transaction of a component is serializable against every other.

Durability is the server's: with ``appendonly yes`` a write Redis answered survives the
process dying (SIGKILL, crash); with ``appendfsync always`` it survives a power loss too.
Opening refuses a server without the append-only file unless ``require_append_only`` is off.

Faults: the client reconnects with exponential backoff (a few attempts within about a second);
a call that still cannot reach the server raises :class:`~runtime.errors.ServiceException`
("the store is unreachable"), so that nothing is acknowledged that is not stored. Every write
is idempotent under a retried send (ids are chosen by the caller, scripts check before they
write), so a reply lost with the connection does no harm when the call runs again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.client import Pipeline
from redis.retry import Retry

from .errors import InvalidParameterValueException, ServiceException

__all__ = [
    "DEFAULT_PREFIX",
    "RedisDb",
    "Txn",
    "check_url",
    "connect",
    "nodes_key",
    "unreachable",
]

T = TypeVar("T")

log = logging.getLogger("warmstart.store")

DEFAULT_PREFIX: Final = "warmstart"
#: a transaction that lost the race this many times in a row gives up (a server thrashed by
#: writers; never seen below thousands of writes a second)
_MAX_TRIES: Final = 200
#: what redis-py raises for a server it cannot reach or that went away mid-call
_DOWN = (redis.ConnectionError, redis.TimeoutError, ConnectionError, OSError)

Txn = Pipeline


def check_url(url: str) -> str:
    """``url`` if it names a Redis server warmstart can use, else a clear error."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix", "valkey", "valkeys"):
        raise InvalidParameterValueException(
            f"url: {url!r} is not a Redis URL (redis://HOST:PORT/DB, rediss://, unix://)"
        )
    if parts.scheme.startswith("valkey"):
        url = "redis" + url[len("valkey") :]
    return url


def connect(url: str, *, timeout_s: float = 5.0) -> redis.Redis:
    """A client of the server at ``url`` that reconnects by itself (backoff from 50 ms, about
    a second in all) and answers bytes."""
    return redis.Redis.from_url(
        check_url(url),
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 4),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
        health_check_interval=30,
    )


def nodes_key(prefix: str) -> str:
    """The node heartbeats every store under ``prefix`` shares (the event dispatchers' and the
    batch runners'): a sorted set, member the node id, score when it was last seen (epoch
    seconds)."""
    return f"{prefix}:nodes:seen"


def unreachable(url: str, exc: BaseException) -> ServiceException:
    return ServiceException(f"the store at {_safe(url)} is unreachable: {exc}")


def _safe(url: str) -> str:
    """``url`` without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


class RedisDb:
    """The connection of a store kept in Redis at ``url``; subclasses name their
    ``component`` (their keys are ``<prefix>:<component>:...``)."""

    #: what an error calls this store
    kind = "store"
    #: the part of every key after the prefix
    component = "store"

    def _open(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        require_append_only: bool | None = True,
        client: redis.Redis | None = None,
    ) -> None:
        """Connect (``client``: share that one) and check the server keeps an append-only
        file (``require_append_only`` None: the caller checked it once for several stores)."""
        self.url = url
        self.prefix = prefix
        self._base = f"{prefix}:{self.component}:"
        self._version_key = self._base + "version"
        self._own_client = client is None
        self.redis = client if client is not None else connect(url)
        self._scripts: dict[str, Any] = {}
        if require_append_only is None:
            return
        try:
            self._guard(lambda: check_persistence(self.redis, url, require_append_only))
        except BaseException:
            self.close()
            raise

    def key(self, *parts: str) -> str:
        """This store's key for ``parts`` (joined with ``:``)."""
        return self._base + ":".join(parts)

    def close(self) -> None:
        if self._own_client:
            self.redis.close()

    # -- calls --------------------------------------------------------------------------------

    def _guard(self, fn: Callable[[], T]) -> T:
        """``fn()``, with a server that cannot be reached (after the client's own retries)
        raised as ServiceException."""
        try:
            return fn()
        except redis.exceptions.NoScriptError:
            raise
        except _DOWN as exc:
            raise unreachable(self.url, exc) from exc
        except redis.ResponseError as exc:
            if str(exc).startswith(("LOADING", "MISCONF", "READONLY", "BUSY")):
                raise unreachable(self.url, exc) from exc
            raise

    def _script(self, name: str, source: str) -> Callable[..., Any]:
        """A registered Lua script: ``call(keys, args)`` runs it atomically (EVALSHA, loading
        it again after a server restart forgot it)."""
        script = self._scripts.get(name)
        if script is None:
            script = self._scripts[name] = self.redis.register_script(source)

        def call(keys: Sequence[str], args: Sequence[Any]) -> Any:
            return self._guard(lambda: script(keys=list(keys), args=list(args)))

        return call

    def _transact(self, fn: Callable[[Txn], T], *watch: str) -> T:
        """``fn(pipe)`` as one serializable transaction: ``fn`` reads through ``pipe`` (it
        answers at once), then calls ``pipe.multi()`` and queues its writes; they apply only
        if no other transaction of this component (and no key of ``watch``) changed since
        the reads began, else ``fn`` runs again. ``fn`` must have no effect besides its
        writes: it may run several times."""
        keys = (self._version_key, *watch)

        def attempt() -> T:
            for _ in range(_MAX_TRIES):
                with self.redis.pipeline(transaction=True) as pipe:
                    try:
                        pipe.watch(*keys)  # type: ignore[no-untyped-call]
                        result = fn(pipe)
                        if not pipe.explicit_transaction:
                            pipe.multi()
                        pipe.incr(self._version_key)
                        pipe.execute()
                        return result
                    except redis.WatchError:
                        continue
            raise ServiceException(f"the {self.kind} is busy: too many concurrent writers")

        return self._guard(attempt)

    def _read(self, fn: Callable[[Txn], T]) -> T:
        """``fn(pipe)`` over a consistent view of this component: its reads run again if a
        transaction of the component committed while they ran."""

        def attempt() -> T:
            while True:
                with self.redis.pipeline(transaction=True) as pipe:
                    try:
                        pipe.watch(self._version_key)  # type: ignore[no-untyped-call]
                        result = fn(pipe)
                        pipe.multi()
                        pipe.execute()
                        return result
                    except redis.WatchError:
                        continue

        return self._guard(attempt)


def check_persistence(client: redis.Redis, url: str, required: bool) -> None:
    """Refuse (``required``) or warn about a server that would lose acknowledged writes when
    its process dies: ``appendonly no``. A server that hides CONFIG (managed Redis) is taken
    at its word, with a warning."""
    try:
        settings = client.config_get("appendonly")
    except redis.ResponseError as exc:
        log.warning("cannot check that the store at %s keeps an append-only file: %s", url, exc)
        return
    values: dict[Any, Any] = dict(settings)
    value = values.get("appendonly") or values.get(b"appendonly")
    if value in ("yes", b"yes"):
        return
    message = (
        f"the store at {_safe(url)} runs with appendonly no: a Redis restart would lose "
        "accepted events and jobs; start it with --appendonly yes (or set [store] "
        "require_append_only = false to accept the risk)"
    )
    if required:
        raise ServiceException(message)
    log.warning("%s", message)
