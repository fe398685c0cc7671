"""Code and work directories go away once nothing uses them.

A function's unpacked code is removed when the last environment of the generations that run it
has stopped (after an update replaced it, or after unregister); a running call finishes on the
old code first.  At start an engine removes the work directories of runs that died without
closing, judged by the owner file in each, and never a live run's.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import ROOT, eventually
from service_support import boto, call, config_of, serving

from runtime import Engine, FunctionConfig, InvalidParameterValueException, PoolConfig
from runtime import code as code_mod
from runtime.code import OWNER_FILE, drained_code, make_work_dir, owner_alive, owner_record

ROLE = "arn:aws:iam::000000000000:role/test"
#: what a version of the test function is made of: it answers its version, read from its code
#: directory when it runs (so a call on removed code fails), once the file ``event["gate"]``
#: exists (10 s at most)
APP = """\
import os, time

def handler(event, context):
    deadline = time.monotonic() + 10
    while "gate" in event and not os.path.exists(event["gate"]) and time.monotonic() < deadline:
        time.sleep(0.01)
    with open(os.path.join(os.environ["LAMBDA_TASK_ROOT"], "version.txt")) as f:
        return f.read()
"""
PADDING = 1 << 20  # compressible bytes, so each unpacked copy is worth noticing


def version_zip(version: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("app.py", APP)
        archive.writestr("version.txt", version)
        archive.writestr("padding.bin", bytes(PADDING))
    return buffer.getvalue()


def walk(root: Path) -> list[tuple[str, list[str], list[str]]]:
    """``os.walk`` of ``root``: it skips what disappears while it looks (code being removed)."""
    return list(os.walk(root))


def code_dirs(root: Path) -> list[Path]:
    """Every unpacked code directory under ``root``."""
    return sorted(
        Path(top, d) for top, dirs, _ in walk(root) for d in dirs if d.startswith("code-")
    )


def versions(root: Path) -> list[str]:
    found = []
    for path in code_dirs(root):
        try:
            found.append((path / "version.txt").read_text())
        except FileNotFoundError:
            found.append("(being removed)")
    return sorted(found)


def disk_bytes(root: Path) -> int:
    total = 0
    for top, _, files in walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(top, name)).st_size
            except FileNotFoundError:
                pass
    return total


def is_dir(path: Path) -> bool:
    return path.is_dir()


def open_gate(path: Path) -> None:
    path.touch()


def listing(path: Path) -> set[Path]:
    return set(path.iterdir())


def owner_of(work_dir: Path) -> Any:
    return json.loads((work_dir / OWNER_FILE).read_text())


def engine_work_dir(engine: Engine) -> str:
    return engine._work_dir


def function(name: str, code: Path, **fields: Any) -> FunctionConfig:
    return FunctionConfig(name=name, handler="app.handler", code=str(code), **fields)


# -- the engine: code of replaced generations and removed functions -------------------------------


@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_create_update_delete_cycles_leave_only_the_live_code(
    arun: Callable[..., Any], tmp_path: Path, start: str
) -> None:
    zips = tmp_path / "zips"
    zips.mkdir()
    for version in ("v1", "v2", "v3"):
        (zips / f"{version}.zip").write_bytes(version_zip(version))
    work = tmp_path / "work"

    async def main() -> None:
        async with Engine(PoolConfig(work_dir=str(work))) as engine:
            for _ in range(3):
                await engine.register(function("f", zips / "v1.zip", start=start))
                assert (await engine.invoke("f")).payload == b'"v1"'
                await engine.update("f", code=str(zips / "v2.zip"))
                assert (await engine.invoke("f")).payload == b'"v2"'
                await engine.update("f", code=str(zips / "v3.zip"), timeout_s=5)
                assert (await engine.invoke("f")).payload == b'"v3"'
                await engine.update("f", memory_mb=256)  # same code, a new generation
                await eventually(lambda: versions(work) == ["v3"], 10.0)
                await engine.unregister("f")
                await eventually(lambda: code_dirs(work) == [], 10.0)
            await engine.register(function("f", zips / "v1.zip", start=start))
            await engine.update("f", code=str(zips / "v2.zip"))
            await eventually(lambda: versions(work) == ["v2"], 10.0)
            assert disk_bytes(work) < PADDING + 256 * 1024  # the live code, logs, no copies
            assert (await engine.invoke("f")).payload == b'"v2"'
        assert list(work.iterdir()) == []

    arun(main())
    assert {p.name for p in zips.iterdir()} == {"v1.zip", "v2.zip", "v3.zip"}


def test_code_unpacked_for_a_refused_registration_is_removed(
    arun: Callable[..., Any], tmp_path: Path
) -> None:
    zipped = tmp_path / "v1.zip"
    zipped.write_bytes(version_zip("v1"))
    work = tmp_path / "work"

    async def main() -> None:
        async with Engine(PoolConfig(work_dir=str(work), account_concurrency=10)) as engine:
            with pytest.raises(InvalidParameterValueException, match="reserved_concurrency"):
                await engine.register(function("greedy", zipped, reserved_concurrency=10))
            assert code_dirs(work) == []
            results = await asyncio.gather(
                engine.register(function("f", zipped)),
                engine.register(function("f", zipped)),
                return_exceptions=True,
            )
            assert sorted(type(r).__name__ for r in results) == [
                "NoneType",
                "ResourceConflictException",
            ]
            assert versions(work) == ["v1"]

    arun(main())


def test_drained_code_waits_for_every_generation_that_runs_it() -> None:
    retired = {0: "a", 2: "b", 5: "c"}
    assert drained_code(retired, [0, 6]) == []
    assert drained_code(retired, [3, 6, 3]) == ["a", "b"]
    assert retired == {5: "c"}
    assert drained_code(retired, [5]) == []
    assert drained_code(retired, []) == ["c"]
    assert retired == {}


def test_a_directory_used_in_place_is_never_removed(
    arun: Callable[..., Any], tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "app.py").write_text(APP)
    (src / "version.txt").write_text("dir")
    zipped = tmp_path / "v1.zip"
    zipped.write_bytes(version_zip("v1"))
    work = tmp_path / "work"

    async def main() -> None:
        async with Engine(PoolConfig(work_dir=str(work))) as engine:
            await engine.register(function("f", src))
            assert (await engine.invoke("f")).payload == b'"dir"'
            await engine.update("f", code=str(zipped))
            assert (await engine.invoke("f")).payload == b'"v1"'
            await engine.update("f", code=str(src))
            await eventually(lambda: code_dirs(work) == [], 10.0)
            await engine.unregister("f")
            await asyncio.sleep(0.2)  # what unregister sets going has had its chance
        assert {"app.py", "version.txt"} <= {p.name for p in src.iterdir()}

    arun(main())


def test_a_running_call_finishes_on_the_old_code_before_it_is_removed(
    arun: Callable[..., Any], tmp_path: Path
) -> None:
    old_zip, new_zip = tmp_path / "old.zip", tmp_path / "new.zip"
    old_zip.write_bytes(version_zip("old"))
    new_zip.write_bytes(version_zip("new"))
    work = tmp_path / "work"

    async def main() -> None:
        async with Engine(PoolConfig(work_dir=str(work))) as engine:
            await engine.register(function("f", old_zip, timeout_s=10))
            [old_dir] = code_dirs(work)
            gate = tmp_path / "gate"
            running = asyncio.ensure_future(engine.invoke("f", {"gate": str(gate)}))
            await eventually(lambda: engine.stats()["f"]["environments"]["busy"] == 1, 5.0)
            await engine.update("f", code=str(new_zip))
            assert (await engine.invoke("f")).payload == b'"new"'  # a new environment
            await asyncio.sleep(0.1)  # removal, were it wrongly due, has had its chance
            assert is_dir(old_dir), "removed while a call ran on it"
            assert not running.done()
            t0 = time.monotonic()
            open_gate(gate)
            result = await asyncio.wait_for(running, 10.0)
            assert time.monotonic() - t0 < 5.0
            assert result.function_error is None, result.payload
            assert result.payload == b'"old"'
            await eventually(lambda: not old_dir.exists(), 10.0)
            assert versions(work) == ["new"]

    arun(main())


# -- the service: uploads unpacked by CreateFunction and UpdateFunctionCode ---------------------


@pytest.mark.usefixtures("aws_env", "no_leaked_threads")
def test_service_uploads_are_removed_on_update_and_delete(
    arun: Callable[..., Any], tmp_path: Path
) -> None:
    work = tmp_path / "work"

    async def main() -> None:
        config = config_of(pool=PoolConfig(work_dir=str(work)))
        async with serving(config) as svc, boto(svc.url) as client:
            for _ in range(3):
                await call(
                    client.create_function,
                    FunctionName="f",
                    Role=ROLE,
                    Handler="app.handler",
                    Code={"ZipFile": version_zip("v1")},
                )
                result = await call(client.invoke, FunctionName="f", Payload=b"{}")
                assert result["Payload"].read() == b'"v1"'
                await call(client.update_function_code, FunctionName="f", ZipFile=version_zip("v2"))
                await call(
                    client.update_function_code,
                    FunctionName="f",
                    ZipFile=version_zip("dry"),
                    DryRun=True,
                )
                result = await call(client.invoke, FunctionName="f", Payload=b"{}")
                assert result["Payload"].read() == b'"v2"'
                await eventually(lambda: versions(work) == ["v2"], 10.0)
                await call(client.delete_function, FunctionName="f")
                await eventually(lambda: code_dirs(work) == [], 10.0)
            assert disk_bytes(work) < 256 * 1024
        assert list(work.iterdir()) == []

    arun(main())


# -- work directories of dead runs ------------------------------------------------------------


def write_owner(path: Path, owner: Any) -> Path:
    path.mkdir()
    (path / "left.bin").write_bytes(bytes(4096))
    (path / OWNER_FILE).write_text(owner if isinstance(owner, str) else json.dumps(owner))
    return path


def a_dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait()
    return child.pid


def test_start_removes_dead_runs_work_dirs_and_keeps_live_ones(
    arun: Callable[..., Any], tmp_path: Path
) -> None:
    me = owner_record()
    dead = {
        "exited": {**me, "pid": a_dead_pid()},
        "pid-reused": {**me, "start": me["start"] - 1},  # this pid, an older process
        "other-boot": {**me, "boot": "00000000-0000-0000-0000-000000000000"},
    }
    removed = [write_owner(tmp_path / f"warmstart-{k}", v) for k, v in dead.items()]
    removed.append(write_owner(tmp_path / "warmstart-code-upload", dead["pid-reused"]))
    kept = [
        write_owner(tmp_path / "warmstart-live", me),
        write_owner(tmp_path / "warmstart-other-pid-namespace", {**dead["exited"], "pidns": "x"}),
        write_owner(tmp_path / "warmstart-unreadable", "{not json"),
        write_owner(tmp_path / "warmstart-no-pid", {"start": 1}),
        write_owner(tmp_path / "someone-else", dead["exited"]),
    ]
    no_owner = tmp_path / "warmstart-no-owner-file"
    no_owner.mkdir()
    kept.append(no_owner)

    async def main() -> None:
        async with Engine(PoolConfig(work_dir=str(tmp_path))) as engine:
            assert listing(tmp_path) == {*kept, Path(engine_work_dir(engine))}
            assert owner_of(Path(engine_work_dir(engine))) == me
            assert (await engine_with_function(engine, tmp_path)).payload == b'"here"'

    arun(main())


async def engine_with_function(engine: Engine, tmp_path: Path) -> Any:
    src = tmp_path / "src-for-a-call"
    src.mkdir()
    (src / "app.py").write_text(APP)
    (src / "version.txt").write_text("here")
    await engine.register(function("f", src))
    return await engine.invoke("f")


ENGINE_THEN_SLEEP = """\
import asyncio, sys
from runtime import Engine, PoolConfig

async def main():
    async with Engine(PoolConfig(work_dir=sys.argv[1])) as engine:
        print(engine._work_dir, flush=True)
        await asyncio.sleep(60)

asyncio.run(main())
"""


def test_the_work_dir_of_a_sigkilled_run_is_removed_at_the_next_start(
    arun: Callable[..., Any], tmp_path: Path
) -> None:
    parent = tmp_path / "runs"
    with subprocess.Popen(
        [sys.executable, "-c", ENGINE_THEN_SLEEP, str(parent)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    ) as other:
        assert other.stdout is not None
        try:
            left = Path(other.stdout.readline().strip())
            assert left.parent == parent
            assert left.is_dir()

            async def while_it_lives() -> None:
                async with Engine(PoolConfig(work_dir=str(parent))) as engine:
                    assert listing(parent) == {left, Path(engine_work_dir(engine))}

            arun(while_it_lives())
        finally:
            other.send_signal(signal.SIGKILL)
            other.wait(10)

    async def after_its_death() -> None:
        async with Engine(PoolConfig(work_dir=str(parent))) as engine:
            assert listing(parent) == {Path(engine_work_dir(engine))}

    arun(after_its_death())


def test_owner_of_this_process_is_alive_and_a_made_dir_names_it(tmp_path: Path) -> None:
    me = owner_record()
    assert me["pid"] == os.getpid()
    assert owner_alive(me)
    assert not owner_alive({**me, "start": me["start"] + 1})
    assert owner_alive({"pid": "1"})  # not judged: kept
    made = Path(make_work_dir(str(tmp_path / "new"), "warmstart-x-"))
    assert made.parent == tmp_path / "new"
    assert made.name.startswith("warmstart-x-")
    assert owner_of(made) == me
    assert [p.name for p in made.iterdir()] == [OWNER_FILE]
    assert code_mod.remove_dead_work_dirs(str(tmp_path / "new")) == []
    assert code_mod.remove_dead_work_dirs(str(tmp_path / "missing")) == []
