"""``warmstart dlq list`` and ``warmstart dlq redrive`` on the data directory's store, alone
and beside a running service whose dispatcher picks the redriven events up."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from service_support import boto, call, config_of, serving

from runtime.asyncinvoke.store import SqliteEventStore
from runtime.cli import main
from runtime.config import FunctionConfig

T0 = 1_700_000_000.0


def dead(store: SqliteEventStore, function: str, rid: str, payload: bytes = b'{"n": 1}') -> None:
    """An event that failed once with no retry left: dead-lettered."""
    store.put_event(function, payload, T0, max_retries=0, request_id=rid)
    store.claim_events("gone", T0, 100)
    store.event_failed(rid, "Unhandled: RuntimeError: asked to fail", T0 + 1)


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "data"
    with SqliteEventStore(path / "batch.sqlite3") as store:
        dead(store, "hello", "e1")
        dead(store, "other", "e2", b"[1, 2]")
    monkeypatch.setenv("WARMSTART_DATA_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.chdir(tmp_path)
    return path


def test_list_as_a_table_and_as_json(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dlq", "list", "--data-dir", str(data_dir)]) == 0
    header, first, second = capsys.readouterr().out.splitlines()
    assert header.split() == ["ID", "FUNCTION", "CONDITION", "TRIES", "DEAD", "AT", "ERROR"]
    assert first.split()[:5] == ["e1", "hello", "RetriesExhausted", "1", "2023-11-14T22:13:21Z"]
    assert first.endswith("Unhandled: RuntimeError: asked to fail")
    assert second.split()[:2] == ["e2", "other"]
    assert main(["dlq", "list", "--data-dir", str(data_dir), "--function", "other", "--json"]) == 0
    (doc,) = json.loads(capsys.readouterr().out)
    assert doc == {
        "id": "e2",
        "function": "other",
        "condition": "RetriesExhausted",
        "error": "Unhandled: RuntimeError: asked to fail",
        "invocations": 1,
        "retries": 0,
        "createdAt": "2023-11-14T22:13:20Z",
        "deadAt": "2023-11-14T22:13:21Z",
        "payload": [1, 2],
    }


def test_the_data_dir_comes_from_the_config(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "warmstart.toml").write_text('[batch]\ndata_dir = "data"\n')
    assert main(["dlq", "list", "--json"]) == 0  # ./warmstart.toml
    assert [d["id"] for d in json.loads(capsys.readouterr().out)] == ["e1", "e2"]
    (tmp_path / "other.toml").write_text("")
    assert main(["dlq", "list", "--config", str(tmp_path / "other.toml")]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "no store at" in captured.err
    assert str(tmp_path / "elsewhere") in captured.err  # $WARMSTART_DATA_DIR


def test_redrive_by_id_and_all(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dlq", "redrive", "e2", "--data-dir", str(data_dir)]) == 0
    assert "redriven 1 event(s)" in capsys.readouterr().err
    with SqliteEventStore(data_dir / "batch.sqlite3") as store:
        assert [e.id for e in store.dlq_list()] == ["e1"]
        (again,) = store.claim_events("n", time.time(), 10).events
        assert (again.id, again.retries, again.condition) == ("e2", 0, None)
    assert main(["dlq", "redrive", "e2", "nope", "--data-dir", str(data_dir)]) == 1
    assert "not in the dead-letter list" in capsys.readouterr().err
    assert main(["dlq", "redrive", "--all", "--data-dir", str(data_dir)]) == 0
    assert "redriven 1 event(s)" in capsys.readouterr().err
    assert main(["dlq", "list", "--data-dir", str(data_dir)]) == 0
    assert capsys.readouterr().out == ""


def test_redrive_without_a_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dlq", "redrive", "--all", "--data-dir", str(tmp_path / "none")]) == 2
    assert "no store at" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()


FLAKY = """\
import json, os

def handler(event, context):
    if os.path.exists(os.environ["BROKEN"]):
        raise RuntimeError("broken")
    with open(os.environ["OUT"], "a") as f:
        f.write(json.dumps(event) + "\\n")
"""


@pytest.mark.usefixtures("no_leaked_threads")
def test_a_running_service_runs_what_is_redriven(
    arun: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WARMSTART_DATA_DIR", str(tmp_path / "data"))
    code = tmp_path / "flaky"
    code.mkdir()
    (code / "app.py").write_text(FLAKY)
    broken, out = tmp_path / "broken", tmp_path / "out.jsonl"
    broken.touch()
    flaky = FunctionConfig(
        name="flaky",
        handler="app.handler",
        code=str(code),
        environment={"BROKEN": str(broken), "OUT": str(out)},
    )

    async def main_() -> None:
        async with serving(config_of(flaky)) as svc, boto(svc.url) as client:
            await call(
                client.put_function_event_invoke_config,
                FunctionName="flaky",
                MaximumRetryAttempts=0,
            )
            await call(client.invoke, FunctionName="flaky", InvocationType="Event", Payload=b"[7]")
            listed = await wait_for_dead(tmp_path / "data")
            assert [(d["function"], d["payload"]) for d in listed] == [("flaky", [7])]
            broken.unlink()
            assert await call(main, ["dlq", "redrive", "--all"]) == 0
            assert await text_of(out) == "[7]\n"

    arun(main_(), timeout=60)


def read(path: Path) -> str | None:
    return path.read_text() if path.exists() else None


async def text_of(path: Path) -> str:
    """The text of ``path`` once it exists (at most 10 s)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        text = read(path)
        if text:
            return text
        await asyncio.sleep(0.02)
    raise AssertionError(f"{path} did not appear within 10 s")


async def wait_for_dead(data_dir: Path) -> list[Any]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with SqliteEventStore(data_dir / "batch.sqlite3") as store:
            found = store.dlq_list()
        if found:
            return [{"function": e.function, "payload": json.loads(e.payload)} for e in found]
        await asyncio.sleep(0.05)
    raise AssertionError("nothing was dead-lettered within 10 s")
