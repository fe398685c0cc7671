"""Files made by earlier warmstart builds open with this one.

Before ``warmstart_meta`` held every component's version, the batch store kept its own in
``PRAGMA user_version`` and the schedule rules theirs in a ``warmstart_meta`` row; and the
async invocations' tables and the ``nodes`` table were part of the batch schema, before the
event store and the node table became components of their own. The files here are built by
hand with ``sqlite3``, statement for statement as that code built them, and then opened with
today's stores.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from runtime.asyncinvoke import store as event_store
from runtime.asyncinvoke.model import EventInvokeConfig
from runtime.asyncinvoke.store import SqliteEventStore
from runtime.batch import SqliteStore
from runtime.batch.store import SCHEMA_VERSION
from runtime.errors import ServiceException
from runtime.schedules.store import SCHEMA_VERSION as RULES_VERSION
from runtime.schedules.store import RuleStore

T0 = 1_700_000_000.0
#: the components a file holds once every store opened it
EVERY = [
    ("batch", SCHEMA_VERSION),
    ("events", event_store.SCHEMA_VERSION),
    ("nodes", 1),
    ("schedule_rules", RULES_VERSION),
]

# -- the schema as the earlier batch store wrote it (user_version 1, then 2) ------------------

_BATCH_V1 = (
    """CREATE TABLE queues (
        seq INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        state TEXT NOT NULL,
        status TEXT NOT NULL,
        priority INTEGER NOT NULL,
        detail BLOB NOT NULL
    )""",
    "CREATE UNIQUE INDEX queues_name ON queues(name) WHERE status != 'DELETED'",
    """CREATE TABLE job_definitions (
        seq INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        revision INTEGER NOT NULL,
        status TEXT NOT NULL,
        detail BLOB NOT NULL,
        UNIQUE (name, revision)
    )""",
    # an array child's spec and payload are its parent's (NULL here); ``pending`` counts the
    # unfinished dependencies, plus one for a child whose parent still waits for its own;
    # ``kill_reason``: a TerminateJob waiting for the runner, or the reason an array parent
    # ends with when it was cancelled, terminated or lost a dependency
    """CREATE TABLE jobs (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        queue INTEGER NOT NULL REFERENCES queues(seq),
        definition TEXT NOT NULL,
        status TEXT NOT NULL,
        status_reason TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        started_at INTEGER,
        stopped_at INTEGER,
        parent INTEGER REFERENCES jobs(seq),
        array_index INTEGER,
        array_size INTEGER,
        pending INTEGER NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 0,
        max_attempts INTEGER NOT NULL,
        node TEXT,
        kill_reason TEXT,
        cancelled INTEGER NOT NULL DEFAULT 0,
        terminated INTEGER NOT NULL DEFAULT 0,
        done INTEGER NOT NULL DEFAULT 0,
        failed INTEGER NOT NULL DEFAULT 0,
        vcpus REAL NOT NULL,
        memory INTEGER NOT NULL,
        gpus INTEGER NOT NULL DEFAULT 0,
        spec BLOB,
        payload BLOB
    )""",
    "CREATE INDEX jobs_claim ON jobs(queue, seq) WHERE status = 'RUNNABLE'",
    "CREATE INDEX jobs_list ON jobs(queue, status, seq) WHERE parent IS NULL",
    "CREATE INDEX jobs_children ON jobs(parent, status, seq) WHERE parent IS NOT NULL",
    "CREATE INDEX jobs_node ON jobs(node) WHERE status IN ('STARTING', 'RUNNING')",
    """CREATE TABLE deps (
        dep INTEGER NOT NULL REFERENCES jobs(seq),
        job INTEGER NOT NULL REFERENCES jobs(seq),
        PRIMARY KEY (dep, job)
    ) WITHOUT ROWID""",
    """CREATE TABLE attempts (
        job INTEGER NOT NULL REFERENCES jobs(seq),
        n INTEGER NOT NULL,
        node TEXT NOT NULL,
        claimed_at INTEGER NOT NULL,
        started_at INTEGER,
        stopped_at INTEGER,
        exit_code INTEGER,
        reason TEXT,
        status_reason TEXT,
        PRIMARY KEY (job, n)
    ) WITHOUT ROWID""",
    """CREATE TABLE logs (
        job INTEGER NOT NULL REFERENCES jobs(seq),
        n INTEGER NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (job, n)
    )""",
    "CREATE TABLE nodes (id TEXT PRIMARY KEY, seen_at REAL NOT NULL) WITHOUT ROWID",
    """CREATE TABLE events (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        function TEXT NOT NULL,
        payload BLOB NOT NULL,
        created_at REAL NOT NULL,
        next_at REAL NOT NULL,
        state TEXT NOT NULL,
        node TEXT,
        invocations INTEGER NOT NULL DEFAULT 0,
        retries INTEGER NOT NULL DEFAULT 0,
        throttles INTEGER NOT NULL DEFAULT 0,
        max_retries INTEGER NOT NULL,
        max_age INTEGER NOT NULL,
        error TEXT,
        condition TEXT
    )""",
    "CREATE INDEX events_due ON events(next_at, seq) WHERE state = 'DUE'",
    "CREATE INDEX events_node ON events(node) WHERE state = 'INFLIGHT'",
    "CREATE INDEX events_dead ON events(seq) WHERE state = 'DEAD'",
    """CREATE TABLE event_configs (
        function TEXT PRIMARY KEY,
        detail BLOB NOT NULL
    ) WITHOUT ROWID""",
)

# v2: what a function job's handler returned (or its error document), per attempt
_BATCH_V2 = (
    """CREATE TABLE results (
        job INTEGER NOT NULL REFERENCES jobs(seq),
        n INTEGER NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (job, n)
    )""",
)

# -- the schedule rules' tables as the earlier RuleStore wrote them ----------------------------

_RULES_V1 = (
    """CREATE TABLE schedule_rules (
        name TEXT PRIMARY KEY,
        expression TEXT NOT NULL,
        state TEXT NOT NULL,
        description TEXT,
        created_at REAL NOT NULL,
        changed_at REAL NOT NULL,
        last_fired REAL,
        managed_by TEXT
    ) WITHOUT ROWID""",
    """CREATE TABLE schedule_targets (
        rule TEXT NOT NULL,
        id TEXT NOT NULL,
        arn TEXT NOT NULL,
        input TEXT,
        seq INTEGER NOT NULL,
        PRIMARY KEY (rule, id)
    ) WITHOUT ROWID""",
)


def old_file(path: Path, *, batch: int, rules: bool) -> None:
    """A file as the earlier code left it: the batch schema at ``batch`` (0: never opened by the
    batch store), and the rule tables when ``rules``; one due event and one rule in it."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode = WAL")
        for statements in (_BATCH_V1, _BATCH_V2)[:batch]:
            for statement in statements:
                db.execute(statement)
        db.execute(f"PRAGMA user_version = {batch}")
        if batch:
            db.execute(
                "INSERT INTO events (id, function, payload, created_at, next_at, state,"
                " max_retries, max_age) VALUES ('e1', 'f', X'7B7D', ?, ?, 'DUE', 2, 21600)",
                (T0, T0),
            )
        if rules:
            db.execute(
                "CREATE TABLE warmstart_meta"
                " (component TEXT PRIMARY KEY, version INTEGER NOT NULL) WITHOUT ROWID"
            )
            for statement in _RULES_V1:
                db.execute(statement)
            db.execute("INSERT INTO warmstart_meta VALUES ('schedule_rules', 1)")
            db.execute(
                "INSERT INTO schedule_rules (name, expression, state, created_at, changed_at)"
                " VALUES ('r', 'rate(1 hour)', 'ENABLED', ?, ?)",
                (T0, T0),
            )
    finally:
        db.close()


def meta(path: Path) -> list[tuple[str, int]]:
    db = sqlite3.connect(path)
    try:
        rows = db.execute(
            "SELECT component, version FROM warmstart_meta ORDER BY component"
        ).fetchall()
        return [(name, int(version)) for name, version in rows]
    finally:
        db.close()


@pytest.mark.parametrize("batch", [1, 2])
def test_a_file_of_the_earlier_stores_opens_and_keeps_its_data(tmp_path: Path, batch: int) -> None:
    path = tmp_path / "batch.sqlite3"
    old_file(path, batch=batch, rules=True)
    with SqliteStore(path) as store, SqliteEventStore(path) as events, RuleStore(path) as rules:
        assert store.schema_version == SCHEMA_VERSION
        assert rules.schema_version == RULES_VERSION
        assert rules.get_rule("r").expression == "rate(1 hour)"
        claim = events.claim_events("n1", T0 + 1)
        assert [(e.id, e.function, e.payload) for e in claim.events] == [("e1", "f", b"{}")]
    assert meta(path) == EVERY
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        # the version-2 table exists whichever version the file had
        assert db.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 0
    finally:
        db.close()


def test_a_file_of_the_earlier_batch_store_alone_opens(tmp_path: Path) -> None:
    path = tmp_path / "batch.sqlite3"
    old_file(path, batch=2, rules=False)
    with RuleStore(path) as rules, SqliteStore(path) as store, SqliteEventStore(path) as events:
        assert rules.list_rules() == ([], None)
        assert store.schema_version == SCHEMA_VERSION
        assert [e.id for e in events.claim_events("n1", T0 + 1).events] == ["e1"]
    assert meta(path) == EVERY


def test_a_file_of_the_earlier_rule_store_alone_gets_the_batch_tables(tmp_path: Path) -> None:
    path = tmp_path / "batch.sqlite3"
    old_file(path, batch=0, rules=True)
    with SqliteStore(path) as store, SqliteEventStore(path) as events, RuleStore(path) as rules:
        assert store.schema_version == SCHEMA_VERSION
        assert events.put_event("f", b"{}", T0, request_id="e2").id == "e2"
        assert rules.get_rule("r").state == "ENABLED"
    assert meta(path) == EVERY


def test_a_component_newer_than_this_build_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "batch.sqlite3"
    SqliteStore(path).close()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("UPDATE warmstart_meta SET version = version + 1 WHERE component = 'batch'")
    db.close()
    with pytest.raises(ServiceException, match="batch schema version"):
        SqliteStore(path)
    with RuleStore(path) as rules:  # another component is not held back by it
        assert rules.schema_version == RULES_VERSION


def old_events(path: Path) -> None:
    """Beside ``old_file``'s due event: a dead one, one in flight on a node that beat, and an
    event invoke config, all in the tables the batch schema made."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute(
            "INSERT INTO events (id, function, payload, created_at, next_at, state, node,"
            " invocations, max_retries, max_age, error, condition)"
            " VALUES ('e2', 'g', X'5B315D', ?, ?, 'DEAD', NULL, 3, 2, 21600, 'Unhandled',"
            " 'RetriesExhausted')",
            (T0, T0 + 5),
        )
        db.execute(
            "INSERT INTO events (id, function, payload, created_at, next_at, state, node,"
            " invocations, max_retries, max_age) VALUES ('e3', 'f', X'7B7D', ?, ?, 'INFLIGHT',"
            " 'events@gone', 1, 2, 21600)",
            (T0, T0),
        )
        db.execute("INSERT INTO nodes (id, seen_at) VALUES ('events@gone', ?)", (T0,))
        db.execute(
            "INSERT INTO event_configs (function, detail) VALUES"
            " ('f', '{\"MaximumRetryAttempts\":1,\"LastModified\":1700000000.0}')"
        )
    finally:
        db.close()


@pytest.mark.parametrize("batch_first", [True, False])
def test_events_of_the_batch_schema_open_with_the_event_store(
    tmp_path: Path, batch_first: bool
) -> None:
    path = tmp_path / "batch.sqlite3"
    old_file(path, batch=2, rules=False)
    old_events(path)
    if batch_first:  # the batch store's upgrade leaves the event tables as they are
        SqliteStore(path).close()
    with SqliteEventStore(path) as events:
        assert events.schema_version == event_store.SCHEMA_VERSION
        assert events.get_event_invoke_config("f").maximum_retry_attempts == 1
        (dead,) = events.dlq_list()
        assert (dead.id, dead.function, dead.payload, dead.condition) == (
            "e2",
            "g",
            b"[1]",
            "RetriesExhausted",
        )
        assert events.stale_nodes(T0 + 60, 30.0) == ["events@gone"]
        assert events.recover("events@gone", T0 + 60).events == 1
        assert events.stale_nodes(T0 + 60, 30.0) == []
        assert events.dlq_redrive(["e2"], T0 + 60) == 1
        claim = events.claim_events("n1", T0 + 60)
        assert sorted(e.id for e in claim.events) == ["e1", "e2", "e3"]
    with SqliteStore(path) as store:
        assert store.schema_version == SCHEMA_VERSION
        assert store.stale_nodes(T0 + 61, 0.0) == ["n1"]  # the event store's claim beat
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        db.close()
    assert meta(path) == [
        ("batch", SCHEMA_VERSION),
        ("events", event_store.SCHEMA_VERSION),
        ("nodes", 1),
    ]


def test_a_new_file_gets_the_event_and_node_tables_from_their_own_stores(tmp_path: Path) -> None:
    path = tmp_path / "batch.sqlite3"
    with SqliteStore(path):
        pass
    db = sqlite3.connect(path)
    try:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    finally:
        db.close()
    assert "nodes" in tables
    assert not {"events", "event_configs"} & tables
    with SqliteEventStore(path) as events:
        config = events.put_event_invoke_config(
            "f", EventInvokeConfig(maximum_retry_attempts=0), T0
        )
        assert config.maximum_retry_attempts == 0
    assert meta(path) == [
        ("batch", SCHEMA_VERSION),
        ("events", event_store.SCHEMA_VERSION),
        ("nodes", 1),
    ]


def test_an_event_component_newer_than_this_build_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "batch.sqlite3"
    SqliteEventStore(path).close()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("UPDATE warmstart_meta SET version = version + 1 WHERE component = 'events'")
    db.close()
    with pytest.raises(ServiceException, match="events schema version"):
        SqliteEventStore(path)
    with SqliteStore(path) as store:  # the batch store is not held back by it
        assert store.schema_version == SCHEMA_VERSION
