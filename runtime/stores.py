"""The durable stores of one node, on the SQLite file or on a shared Redis (``[store] url``).

    [store] url unset ──▶ <data_dir>/batch.sqlite3   one node (the embedded default)
    [store] url = redis://… ──▶ that Redis           every node naming it (DESIGN §9)

Either way the same five stores, behind the same protocols:

=============  ==============================  ======================================
store          protocol                        used by
=============  ==============================  ======================================
``events``     asyncinvoke.store.EventStore    the backlog, the dispatcher, the DLQ
``batch``      batch.store.Store               the batch queue and its runner
``rules``      schedules.store.Rules           the schedule runner, EventBridge API
``functions``  registry.FunctionRegistry       the Lambda API (functions cluster-wide)
``members``    cluster.members.Members         the node registry (``/warmstart/nodes``)
=============  ==============================  ======================================

On Redis the five share one client (one connection pool) and one key prefix; the server's
append-only file is checked once, here.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import redis

from .asyncinvoke.store import EventStore, SqliteEventStore
from .batch.store import STORE_FILE, SqliteStore, Store, default_data_dir
from .cluster.members import Members, RedisMembers, SqliteMembers
from .configfile import StoreConfig
from .registry import FunctionRegistry, RedisFunctionRegistry, SqliteFunctionRegistry
from .schedules.store import Rules, RuleStore
from .sqlite import SqliteFile

__all__ = ["Stores", "open_stores"]


@dataclass
class Stores:
    """One node's stores; ``close`` closes each (and the shared client)."""

    events: EventStore
    batch: Store
    rules: Rules
    functions: FunctionRegistry
    members: Members
    #: where they are: the SQLite file's path, or the Redis URL
    location: str
    shared: bool
    #: the Redis client the stores share (None on SQLite)
    client: redis.Redis | None = None

    def close(self) -> None:
        for store in (self.events, self.batch, self.rules, self.functions, self.members):
            with contextlib.suppress(Exception):
                store.close()
        if self.client is not None:
            self.client.close()


def open_stores(
    config: StoreConfig,
    data_dir: str | Path | None = None,
    *,
    region: str = "us-east-1",
    account_id: str = "000000000000",
) -> Stores:
    """The stores ``config`` names: Redis when it has a URL, else the SQLite file in
    ``data_dir`` (default: :func:`default_data_dir`)."""
    if config.url is not None:
        return _redis_stores(config, region, account_id)
    path = Path(data_dir or default_data_dir()) / STORE_FILE
    opened: list[SqliteFile] = []
    try:
        batch = SqliteStore(path, region=region, account_id=account_id)
        opened.append(batch)
        events = SqliteEventStore(path)
        opened.append(events)
        rules = RuleStore(path)
        opened.append(rules)
        functions = SqliteFunctionRegistry(path)
        opened.append(functions)
        members = SqliteMembers(path)
    except BaseException:
        for store in opened:
            store.close()
        raise
    return Stores(events, batch, rules, functions, members, str(path), shared=False)


def _redis_stores(config: StoreConfig, region: str, account_id: str) -> Stores:
    from .asyncinvoke.redis_store import RedisEventStore
    from .batch.store.redis_store import RedisStore
    from .redisdb import check_persistence, connect, unreachable
    from .schedules.redis_store import RedisRuleStore

    assert config.url is not None
    url = config.url
    client = connect(url)
    try:
        try:
            check_persistence(client, url, config.require_append_only)
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            raise unreachable(url, exc) from exc
        prefix = config.prefix
        stores = Stores(
            events=RedisEventStore(url, prefix=prefix, require_append_only=False, client=client),
            batch=RedisStore(
                url,
                region=region,
                account_id=account_id,
                prefix=prefix,
                require_append_only=False,
                client=client,
            ),
            rules=RedisRuleStore(url, prefix=prefix, require_append_only=False, client=client),
            functions=RedisFunctionRegistry(
                url, prefix=prefix, require_append_only=False, client=client
            ),
            members=RedisMembers(url, prefix=prefix, require_append_only=False, client=client),
            location=url,
            shared=True,
        )
    except BaseException:
        client.close()
        raise
    stores.client = client
    return stores
