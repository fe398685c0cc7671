"""``warmstart jobs`` through a service's Batch API (``--endpoint``) and straight on the store
(``--data-dir``): the same commands, the same output, the same errors.

The test plays the runner: it claims, starts and finishes attempts on its own connection to the
store file, between two polls of ``--wait`` (``jobs.pause`` is replaced), so every
state the command sees is known in advance.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeKiller
from service_support import port_open, warmstart

from runtime.batch.model import (
    CreateJobQueueRequest,
    RegisterJobDefinitionRequest,
    SubmitJobRequest,
    parse,
)
from runtime.batch.store import SqliteStore
from runtime.cli import jobs, main
from runtime.configfile import AuthConfig
from runtime.loop import new_event_loop
from runtime.service.batch_api import BatchApi
from runtime.service.gateway import authenticator
from runtime.service.protocol import Authenticate

NOW = 1_800_000_000.0
UNKNOWN = "ClientException: Job nope does not exist"


@contextlib.contextmanager
def served(
    path: Path, authenticate: Authenticate | None = None
) -> Iterator[tuple[str, FakeKiller]]:
    """A BatchApi over its own connection to ``path``, on a loopback port, in a thread with its
    own loop (the CLI runs its loop in the test's thread)."""
    from aiohttp import web

    killer = FakeKiller()
    store = SqliteStore(path)
    api = BatchApi(store, killer=killer, authenticate=authenticate)
    loop = new_event_loop()
    app = web.Application()
    app.router.add_routes(api.routes())
    runner = web.AppRunner(app)

    async def start() -> int:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return int(runner.addresses[0][1])

    async def stop() -> None:
        await runner.cleanup()
        await loop.shutdown_default_executor()

    port = loop.run_until_complete(start())
    thread = threading.Thread(target=loop.run_forever, name="batch-api")
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}", killer
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.run_until_complete(stop())
        loop.close()
        store.close()
    assert not thread.is_alive()
    assert not port_open(port), f"port {port} still accepts connections"


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SqliteStore]:
    """The data directory's store, with definition ``work`` and queue ``q``; the test's own
    connection, for playing the runner."""
    monkeypatch.chdir(tmp_path)  # no ./warmstart.toml
    monkeypatch.setenv("WARMSTART_DATA_DIR", str(tmp_path / "elsewhere"))
    for name in ("WARMSTART_ACCESS_KEY_ID", "WARMSTART_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    with SqliteStore(tmp_path / "data" / "batch.sqlite3") as db:
        definition = {
            "jobDefinitionName": "work",
            "type": "container",
            "containerProperties": {"image": "busybox", "command": ["echo", "Ref::word"]},
            "parameters": {"word": "hello"},
        }
        db.register_job_definition(parse(RegisterJobDefinitionRequest, definition), NOW)
        queue = {"jobQueueName": "q", "priority": 1}
        db.create_job_queue(parse(CreateJobQueueRequest, queue), NOW)
        yield db


@pytest.fixture(params=["direct", "endpoint"])
def target(request: pytest.FixtureRequest, store: SqliteStore) -> Iterator[list[str]]:
    """The options that point the CLI at the store: ``--data-dir``, or a served BatchApi."""
    request.getfixturevalue("no_leaked_threads")
    if request.param == "direct":
        yield ["--data-dir", str(store.path.parent)]
        return
    with served(store.path) as (url, _):
        yield ["--endpoint", url]


Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Run:
    """``warmstart ARGS`` in this process: (exit status, stdout, stderr)."""

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            code = main(list(args))
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return run


def submit(cli: Run, target: list[str], *options: str) -> str:
    """Submit job ``one`` of ``work`` on ``q``; the target first, as --command takes the rest."""
    code, out, err = cli(
        "jobs", "submit", "one", *target, "--queue", "q", "--definition", "work", *options
    )
    assert code == 0, err
    return out.strip()


def describe(cli: Run, target: list[str], job_id: str) -> dict[str, Any]:
    code, out, err = cli("jobs", "describe", job_id, "--json", *target)
    assert code == 0, err
    job: dict[str, Any]
    (job,) = json.loads(out)["jobs"]
    return job


def finish(store: SqliteStore, job_id: str, exit_code: int, log: bytes = b"") -> None:
    """One attempt of ``job_id``, claimed, started and ended by the test's runner."""
    (claim,) = store.claim("node-a", NOW, 1)
    assert claim.job_id == job_id
    store.started(job_id, NOW + 1)
    store.finished(job_id, claim.attempt, exit_code, None, None, NOW + 2, log=log)


# -- submit, describe, list, logs -----------------------------------------------------------------


def test_submit_describe_and_logs(cli: Run, target: list[str], store: SqliteStore) -> None:
    job_id = submit(
        cli,
        target,
        "--parameters", "word=yo", "extra=1",
        "--env", "LEVEL=debug",
        "--attempts", "2",
        "--timeout", "120",
        "--command", "echo", "Ref::word", "--not-an-option",
    )  # fmt: skip
    job = describe(cli, target, job_id)
    assert (job["jobName"], job["status"]) == ("one", "RUNNABLE")
    assert job["parameters"] == {"word": "yo", "extra": "1"}
    assert job["container"]["command"] == ["echo", "yo", "--not-an-option"]
    assert job["container"]["environment"] == [{"name": "LEVEL", "value": "debug"}]
    assert job["retryStrategy"] == {"attempts": 2}
    assert job["timeout"] == {"attemptDurationSeconds": 120}

    finish(store, job_id, 1, b"first\n")
    finish(store, job_id, 0, b"second\n")
    assert cli("jobs", "logs", job_id, *target) == (0, "second\n", "")
    assert cli("jobs", "logs", job_id, "--attempt", "1", *target) == (0, "first\n", "")
    code, out, err = cli("jobs", "logs", job_id, "--attempt", "3", *target)
    assert (code, out) == (0, "")
    assert err == f"warmstart: no output kept for {job_id} (attempt 3)\n"

    code, out, _ = cli("jobs", "describe", job_id, *target)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"{job_id}  one  SUCCEEDED"
    assert "  reason:     Essential container in task exited" in lines
    assert "  command:    echo yo --not-an-option" in lines
    assert "  attempt 1:  exit 1, Essential container in task exited" in lines
    assert "  attempt 2:  exit 0, Essential container in task exited" in lines


def test_submit_json_and_describe_several(cli: Run, target: list[str]) -> None:
    code, out, _ = cli(
        "jobs", "submit", "two", "--queue", "q", "--definition", "work:1", "--json", *target
    )
    answer = json.loads(out)
    assert (code, answer["jobName"]) == (0, "two")
    assert answer["jobArn"].endswith(f":job/{answer['jobId']}")
    first = submit(cli, target, "--depends-on", answer["jobId"])
    code, out, _ = cli("jobs", "describe", first, answer["jobId"], "--json", *target)
    jobs = json.loads(out)["jobs"]
    assert [j["jobId"] for j in jobs] == [first, answer["jobId"]]
    assert jobs[0]["status"] == "PENDING"
    assert jobs[0]["dependsOn"] == [{"jobId": answer["jobId"]}]


def test_list_a_queue_as_a_table_and_as_json(
    cli: Run, target: list[str], store: SqliteStore
) -> None:
    done = submit(cli, target)
    waiting = submit(cli, target)
    finish(store, done, 0)
    code, out, _ = cli("jobs", "list", "--queue", "q", "--status", "runnable", *target)
    header, *rows = out.splitlines()
    assert code == 0
    assert header.split() == ["JOB", "ID", "NAME", "STATUS", "CREATED", "REASON"]
    assert [row.split()[:3] for row in rows] == [[waiting, "one", "RUNNABLE"]]
    assert cli("jobs", "list", "--queue", "q", *target)[1].splitlines()[1:] == []  # RUNNING

    code, out, _ = cli("jobs", "list", "--queue", "q", "--all", "--json", *target)
    jobs = json.loads(out)["jobSummaryList"]
    assert {j["jobId"]: j["status"] for j in jobs} == {done: "SUCCEEDED", waiting: "RUNNABLE"}
    code, out, _ = cli("jobs", "list", "--queue", "q", "--all", *target)
    (succeeded,) = [row for row in out.splitlines() if row.startswith(done)]
    assert succeeded.endswith("  Essential container in task exited")


def test_list_follows_next_token_through_an_array(cli: Run, target: list[str]) -> None:
    # ListJobs answers up to 1000 summaries a page
    parent = submit(cli, target, "--array-size", "1001")
    args = ("jobs", "list", "--array-job", parent, "--status", "RUNNABLE", "--json", *target)
    code, out, err = cli(*args)
    assert code == 0, err
    children = json.loads(out)["jobSummaryList"]
    assert [c["arrayProperties"]["index"] for c in children] == list(range(1001))
    assert children[7]["jobId"] == f"{parent}:7"


# -- cancel and terminate -------------------------------------------------------------------------


def test_cancel_fails_a_waiting_job(cli: Run, target: list[str], store: SqliteStore) -> None:
    job_id = submit(cli, target)
    code, out, err = cli("jobs", "cancel", job_id, "--reason", "not needed", *target)
    assert (code, out) == (0, "")
    assert err == f"warmstart: cancel: {job_id} FAILED: not needed\n"
    job = describe(cli, target, job_id)
    assert (job["status"], job["isCancelled"]) == ("FAILED", True)


def test_terminate_stops_a_running_job(cli: Run, target: list[str], store: SqliteStore) -> None:
    job_id = submit(cli, target)
    store.claim("node-a", NOW, 1)
    store.started(job_id, NOW)
    code, _, err = cli("jobs", "cancel", job_id, "--reason", "late", *target)
    assert code == 0
    assert err.endswith("RUNNING (a started job stops with --terminate)\n")
    code, _, err = cli("jobs", "cancel", job_id, "--reason", "enough", "--terminate", *target)
    assert (code, err) == (0, f"warmstart: terminate: {job_id} RUNNING\n")
    # a runner anywhere finds the order in the store, whoever took the request
    (order,) = store.kill_requests("node-a")
    assert (order.job_id, order.reason) == (job_id, "enough")


def test_terminate_reaches_the_services_killer(cli: Run, store: SqliteStore) -> None:
    job_id = submit(cli, ["--data-dir", str(store.path.parent)])
    store.claim("node-a", NOW, 1)
    with served(store.path) as (url, killer):
        code, _, err = cli(
            "jobs", "cancel", job_id, "--reason", "stop", "--terminate", "--endpoint", url
        )
        assert code == 0, err
    assert [(o.job_id, o.node, o.reason) for o in killer.orders] == [(job_id, "node-a", "stop")]


# -- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["describe", "nope"],
        ["logs", "nope"],
        ["cancel", "nope", "--reason", "r"],
        ["cancel", "nope", "--reason", "r", "--terminate"],
        ["wait", "nope"],
        ["list", "--array-job", "nope"],
    ],
    ids=lambda args: "-".join(a for a in args if a != "nope"),
)
def test_an_unknown_job_is_a_client_exception(cli: Run, target: list[str], args: list[str]) -> None:
    assert cli("jobs", *args, *target) == (2, "", f"warmstart: {UNKNOWN}\n")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--queue", "nope"], "ClientException: Job queue nope does not exist"),
        (["--array-size", "1"], "ClientException: arrayProperties.size 1 must be between"),
        (["--timeout", "5"], "ClientException: timeout.attemptDurationSeconds 5 is below"),
        (["--attempts", "11"], "ClientException: retryStrategy.attempts 11 must be between"),
    ],
)
def test_a_refused_submit(cli: Run, target: list[str], options: list[str], message: str) -> None:
    code, out, err = cli(
        "jobs", "submit", "x", "--queue", "q", "--definition", "work", *options, *target
    )
    assert (code, out) == (2, "")
    assert err.startswith(f"warmstart: {message}"), err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["submit", "x", "--queue", "q", "--definition", "d", "--parameters", "k"], "'k': use K"),
        (["submit", "x", "--queue", "q", "--definition", "d", "--env", "=v"], "'=v': use KEY"),
        (["submit", "x", "--queue", "q", "--definition", "d", "--command"], "expected the com"),
        (["submit", "x", "--queue", "q"], "--definition"),
        (["list"], "one of the arguments --queue --array-job is required"),
        (["list", "--queue", "q", "--status", "DONE"], "invalid choice: 'DONE'"),
        (["list", "--queue", "q", "--status", "RUNNING", "--all"], "not allowed with"),
        (["logs", "x", "--attempt", "0"], "'0': expected a positive integer"),
        (["wait", "x", "--interval", "0"], "'0': expected a number of seconds above 0"),
        (["cancel", "x"], "--reason"),
        (["describe", "x", "--endpoint", "http://h", "--data-dir", "d"], "not allowed with"),
    ],
)
def test_bad_arguments_are_usage_errors(cli: Run, args: list[str], message: str) -> None:
    code, out, err = cli("jobs", *args)
    assert (code, out) == (2, "")
    assert "usage: warmstart jobs" in err
    assert message in err, err


def test_without_a_store_nothing_is_created(cli: Run, tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    code, _, err = cli("jobs", "list", "--queue", "q", "--data-dir", str(missing))
    assert code == 2
    assert err.startswith(f"warmstart: ClientException: there is no batch store at {missing}/")
    assert not missing.exists()


@pytest.mark.usefixtures("no_leaked_threads")
def test_the_logs_route(store: SqliteStore) -> None:
    request = {"jobName": "j", "jobQueue": "q", "jobDefinition": "work"}
    job_id = store.submit_job(parse(SubmitJobRequest, request), NOW).job_id
    finish(store, job_id, 0, b"caf\xc3\xa9\n")
    with served(store.path) as (url, _):

        def get(path: str) -> tuple[int, dict[str, str], bytes]:
            try:
                with urllib.request.urlopen(url + path, timeout=5) as response:
                    return response.status, dict(response.headers), response.read()
            except urllib.error.HTTPError as exc:
                return exc.code, dict(exc.headers), exc.read()

        status, headers, body = get(f"/warmstart/jobs/{job_id}/logs?attempt=1")
        assert (status, body) == (200, "café\n".encode())
        assert headers["Content-Type"] == "text/plain; charset=utf-8"
        for path, message in [
            ("/warmstart/jobs/nope/logs", "Job nope does not exist"),
            (f"/warmstart/jobs/{job_id}/logs?attempt=x", "attempt 'x' must be an integer"),
            (f"/warmstart/jobs/{job_id}/logs?attempt=11", "from 1 to 10"),
        ]:
            status, headers, body = get(path)
            assert (status, headers["x-amzn-ErrorType"]) == (400, "ClientException")
            doc = json.loads(body)
            assert doc["__type"] == "ClientException"
            assert message in doc["message"]


@pytest.mark.usefixtures("no_leaked_threads")
def test_sigv4_with_the_warmstart_keys(
    cli: Run, store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    check = authenticator(AuthConfig(keys={"AKIDJOBS": "s3cret"}))
    with served(store.path, check) as (url, _):
        target = ["--endpoint", url]
        code, _, err = cli("jobs", "list", "--queue", "q", *target)
        assert code == 2
        assert err.startswith("warmstart: MissingAuthenticationTokenException: ")
        monkeypatch.setenv("WARMSTART_ACCESS_KEY_ID", "AKIDJOBS")
        monkeypatch.setenv("WARMSTART_SECRET_ACCESS_KEY", "wrong")
        assert cli("jobs", "list", "--queue", "q", *target)[0] == 2
        monkeypatch.setenv("WARMSTART_SECRET_ACCESS_KEY", "s3cret")
        parent = submit(cli, target, "--array-size", "2")
        store.claim("node-a", NOW, 1)
        store.started(f"{parent}:0", NOW)
        store.finished(f"{parent}:0", 1, 0, None, None, NOW, log=b"zero\n")
        # a ':' in the path and a query string, both signed
        assert cli("jobs", "logs", f"{parent}:0", "--attempt", "1", *target) == (0, "zero\n", "")


def test_an_endpoint_that_does_not_answer(cli: Run, store: SqliteStore) -> None:
    with served(store.path) as (url, _):
        pass  # the port is closed again
    code, _, err = cli("jobs", "describe", "x", "--endpoint", url)
    assert code == 2
    assert err.startswith(f"warmstart: EndpointUnreachable: cannot reach {url}")


# -- wait -----------------------------------------------------------------------------------------


@pytest.fixture
def between_polls(monkeypatch: pytest.MonkeyPatch) -> Callable[..., list[float]]:
    """Run ``steps`` one per pause of ``--wait``, in order; returns the pauses asked for."""

    def install(*steps: Callable[[], object]) -> list[float]:
        pending = list(steps)
        pauses: list[float] = []

        async def pause(seconds: float) -> None:
            pauses.append(seconds)
            assert pending, "the command polled after the last step"
            pending.pop(0)()

        monkeypatch.setattr(jobs, "pause", pause)
        return pauses

    return install


def test_submit_wait_until_succeeded(
    cli: Run, target: list[str], store: SqliteStore, between_polls: Callable[..., list[float]]
) -> None:
    job: dict[str, str] = {}

    def claim() -> None:
        (found,) = store.claim("node-a", NOW, 1)
        job["id"] = found.job_id

    pauses = between_polls(
        claim,
        lambda: store.started(job["id"], NOW),
        lambda: store.finished(job["id"], 1, 0, None, None, NOW),
    )
    code, out, err = cli("jobs", "submit", "one", "--queue", "q", "--definition", "work",
                         "--wait", "--interval", "0.25", *target)  # fmt: skip
    assert (code, out) == (0, f"{job['id']}\n")
    assert pauses == [0.25, 0.25, 0.25]
    assert err.splitlines() == [
        f"warmstart: {job['id']} RUNNABLE",
        f"warmstart: {job['id']} STARTING",
        f"warmstart: {job['id']} RUNNING",
        f"warmstart: {job['id']} SUCCEEDED: Essential container in task exited",
    ]


def test_wait_for_a_failure(
    cli: Run, target: list[str], store: SqliteStore, between_polls: Callable[..., list[float]]
) -> None:
    job_id = submit(cli, target)
    between_polls(lambda: finish(store, job_id, 3))
    code, out, err = cli("jobs", "wait", job_id, "--interval", "0.01", *target)
    assert (code, out) == (1, "")
    assert err.splitlines()[-1] == (
        f"warmstart: {job_id} FAILED: Essential container in task exited"
    )
    assert cli("jobs", "wait", job_id, *target)[:2] == (1, "")  # already over: no poll


def test_wait_on_an_array_prints_the_children_by_state(
    cli: Run, target: list[str], store: SqliteStore, between_polls: Callable[..., list[float]]
) -> None:
    parent = submit(cli, target, "--array-size", "3")

    def end(index: int, exit_code: int) -> Callable[[], object]:
        return lambda: store.finished(f"{parent}:{index}", 1, exit_code, None, None, NOW)

    def start_two() -> None:
        for claim in store.claim("node-a", NOW, 2):
            store.started(claim.job_id, NOW)

    between_polls(
        start_two, lambda: None, end(0, 0), end(1, 1), lambda: finish(store, f"{parent}:2", 0)
    )
    code, out, err = cli("jobs", "wait", parent, "--interval", "0.01", *target)
    assert (code, out) == (1, "")
    # one line a change: the idle poll printed nothing
    assert err.splitlines() == [
        f"warmstart: {parent} PENDING: 0/3 children done (RUNNABLE 3)",
        f"warmstart: {parent} PENDING: 0/3 children done (RUNNABLE 1, RUNNING 2)",
        f"warmstart: {parent} PENDING: 1/3 children done (RUNNABLE 1, RUNNING 1, SUCCEEDED 1)",
        f"warmstart: {parent} PENDING: 2/3 children done (RUNNABLE 1, SUCCEEDED 1, FAILED 1)",
        f"warmstart: {parent} FAILED: 3/3 children done (SUCCEEDED 2, FAILED 1): "
        "Array Child Job failed",
    ]


def test_the_progress_bar_on_a_terminal() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    with jobs.progress_display(stream) as display:
        for status, done in (("PENDING", 0), ("PENDING", 3), ("FAILED", 4)):
            summary = {"SUCCEEDED": done - done // 4, "FAILED": done // 4, "RUNNING": 4 - done}
            props = {"size": 4, "statusSummary": summary}
            display.update({"jobId": "p", "status": status, "arrayProperties": props})
    text = stream.getvalue()
    assert "0/4" in text
    assert "3/4" in text
    assert "4/4" in text
    assert text.rstrip().endswith("warmstart: p FAILED: 4/4 children done (SUCCEEDED 3, FAILED 1)")
    assert not [t for t in threading.enumerate() if t.name.startswith("Thread-")]


# -- the command as a program ---------------------------------------------------------------------


def test_as_a_program_with_the_default_data_dir(store: SqliteStore, tmp_path: Path) -> None:
    env = {**os.environ, "WARMSTART_DATA_DIR": str(store.path.parent)}

    def jobs(*args: str) -> subprocess.CompletedProcess[str]:
        return warmstart("jobs", *args, env=env)

    submitted = jobs("submit", "cli", "--queue", "q", "--definition", "work")
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    listed = jobs("list", "--queue", "q", "--status", "RUNNABLE")
    assert listed.stdout.splitlines()[1].split()[:3] == [job_id, "cli", "RUNNABLE"]
    assert store.describe_jobs([job_id])[0].job_name == "cli"
    missing = jobs("logs", "nope")
    assert (missing.returncode, missing.stderr) == (2, f"warmstart: {UNKNOWN}\n")


@pytest.mark.parametrize(
    "command",
    [["jobs"], ["jobs", "submit"], ["jobs", "list"], ["jobs", "describe"], ["jobs", "logs"],
     ["jobs", "cancel"], ["jobs", "wait"]],
)  # fmt: skip
def test_help_has_examples(cli: Run, command: list[str]) -> None:
    code, out, _ = cli(*command, "--help")
    assert code == 0
    _, sep, examples = out.partition("\nexamples:\n")
    assert sep, out
    assert "  warmstart " + " ".join(command) + " " in examples


def test_wait_polls_in_real_time_too(cli: Run, target: list[str], store: SqliteStore) -> None:
    job_id = submit(cli, target)
    finisher = threading.Timer(0.1, finish, (store, job_id, 0))
    started = time.monotonic()
    finisher.start()
    try:
        code, _, err = cli("jobs", "wait", job_id, "--interval", "0.02", *target)
    finally:
        finisher.join(5)
    assert (code, err.splitlines()[-1].split()[:3]) == (0, ["warmstart:", job_id, "SUCCEEDED:"])
    assert time.monotonic() - started < 5
