"""``warmstart jobs submit|list|describe|logs|cancel|wait``: AWS Batch jobs from the command line.

::

    warmstart jobs … ──▶ JobsClient ─┬─ --endpoint URL: HttpJobs ── POST /v1/<operation>,
                                     │    GET /warmstart/jobs/{id}/logs ──▶ a service's BatchApi
                                     └─ otherwise: StoreJobs ── BatchApi's operations, in this
                                          process ──▶ <data dir>/batch.sqlite3

Both clients speak the Batch API's JSON (camelCase dicts), so each command is written once and
prints the same either way; an error is the API's own (``ClientException: Job … does not
exist``), printed by ``warmstart`` as ``warmstart: Code: message`` with exit status 2.

Without ``--endpoint`` the command opens the durable store file itself: a service whose data
directory is the same runs the jobs submitted this way, and TerminateJob reaches that service's
runner through the store, which the runner polls for kill orders.
"""

from __future__ import annotations

import abc
import argparse
import asyncio
import contextlib
import io
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from datetime import datetime, timezone
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import quote

import orjson

from ..batch.model import FAILED, FINAL_STATUSES, JOB_STATUSES, SUCCEEDED, ClientException
from .common import command_parser, credentials_from_env, region, run_connected, store_path

if TYPE_CHECKING:  # the store, aiohttp and rich are imported only by the commands that use them
    from rich.progress import Progress

    from ..batch.store import SqliteStore
    from .client import ServiceClient

Job = dict[str, Any]

#: DescribeJobs takes at most this many ids a request
DESCRIBE_BATCH = 100
#: while nothing changes, ``wait`` still prints a line this often (when stderr is not a terminal)
HEARTBEAT_S = 30.0
#: table width when stdout is not a terminal: wide enough that no row wraps in a pipe or a file
PIPE_WIDTH = 1000
STATUS_STYLES = {SUCCEEDED: "green", FAILED: "red", "RUNNING": "cyan"}

#: how ``wait`` sleeps between polls (tests replace it to act between two polls)
pause: Callable[[float], Awaitable[None]] = asyncio.sleep

TARGET_NOTE = """\
Without --endpoint the command works on the batch store file of a data directory: --data-dir,
else --config's (or ./warmstart.toml's) [batch] data_dir, else $WARMSTART_DATA_DIR, else
~/.local/share/warmstart. A service with the same data directory runs the jobs submitted this
way."""

JOBS_EPILOG = f"""\
examples:
  warmstart jobs submit nightly --queue default --definition etl --endpoint http://127.0.0.1:9000
  warmstart jobs list --queue default --all
  warmstart jobs describe JOB_ID
  warmstart jobs logs JOB_ID --attempt 1
  warmstart jobs cancel JOB_ID --reason "not needed" --terminate
  warmstart jobs wait JOB_ID

{TARGET_NOTE}"""

SUBMIT_EPILOG = f"""\
examples:
  warmstart jobs submit nightly --queue default --definition etl --endpoint http://127.0.0.1:9000
  warmstart jobs submit frames --queue q --definition render:2 --array-size 100 --wait
  warmstart jobs submit report --queue q --definition etl --depends-on JOB_ID \\
      --parameters day=2024-06-01 --env LOG_LEVEL=debug --attempts 3 --timeout 3600
  warmstart jobs submit once --queue q --definition shell --command echo hello

Prints the job id (SubmitJob's answer with --json). --command comes last: every argument after
it is the command. With --wait, then waits as `warmstart jobs wait` does.

{TARGET_NOTE}"""

LIST_EPILOG = f"""\
examples:
  warmstart jobs list --queue default                  # RUNNING jobs, as ListJobs answers
  warmstart jobs list --queue default --status failed --endpoint http://127.0.0.1:9000
  warmstart jobs list --array-job JOB_ID --all --json

{TARGET_NOTE}"""

DESCRIBE_EPILOG = f"""\
examples:
  warmstart jobs describe JOB_ID
  warmstart jobs describe JOB_ID OTHER_ID --json      # DescribeJobs' answer

{TARGET_NOTE}"""

LOGS_EPILOG = f"""\
examples:
  warmstart jobs logs JOB_ID                # the latest attempt
  warmstart jobs logs JOB_ID:7 --attempt 2  # array child 7, second attempt

An attempt's output is kept when it ends (its last 256 KiB by default).

{TARGET_NOTE}"""

CANCEL_EPILOG = f"""\
examples:
  warmstart jobs cancel JOB_ID --reason "superseded"
  warmstart jobs cancel JOB_ID --reason "stuck" --terminate

CancelJob fails a job that has not started; a STARTING or RUNNING job needs --terminate
(TerminateJob), which stops its attempt. An array job applies either to all its children.

{TARGET_NOTE}"""

WAIT_EPILOG = f"""\
examples:
  warmstart jobs wait JOB_ID
  warmstart jobs wait JOB_ID --interval 5 --endpoint http://127.0.0.1:9000

Polls DescribeJobs until the job SUCCEEDED (exit 0) or FAILED (exit 1, with its statusReason);
2 on errors. An array job's children show as a progress bar when stderr is a terminal, as a line
per change otherwise.

{TARGET_NOTE}"""


# -- clients --------------------------------------------------------------------------------------


class JobsClient(abc.ABC):
    """The job operations the commands need, over the Batch API's JSON."""

    @abc.abstractmethod
    async def call(self, operation: str, params: dict[str, Any]) -> Any:
        """One Batch operation (``submitjob``, ``listjobs``, …) and its answer."""

    @abc.abstractmethod
    async def job_log(self, job_id: str, attempt: int | None = None) -> str:
        """The kept output of an attempt (1-based; None: the latest)."""

    async def submit_job(self, request: dict[str, Any]) -> Any:
        return await self.call("submitjob", request)

    async def describe_jobs(self, job_ids: Sequence[str]) -> list[Job]:
        """The jobs, in the order asked; an unknown id is a ClientException (DescribeJobs
        itself leaves it out)."""
        found: dict[str, Job] = {}
        for start in range(0, len(job_ids), DESCRIBE_BATCH):
            batch = list(job_ids[start : start + DESCRIBE_BATCH])
            answer = await self.call("describejobs", {"jobs": batch})
            found.update((job["jobId"], job) for job in answer.get("jobs", []))
        for job_id in job_ids:
            if job_id not in found:
                raise ClientException(f"Job {job_id} does not exist")
        return [found[job_id] for job_id in job_ids]

    async def list_jobs(self, params: dict[str, Any]) -> list[Job]:
        """Every summary ListJobs answers for ``params``, page after page."""
        jobs: list[Job] = []
        while True:
            page = await self.call("listjobs", params)
            jobs.extend(page.get("jobSummaryList", []))
            if not page.get("nextToken"):
                return jobs
            params = {**params, "nextToken": page["nextToken"]}

    async def cancel_job(self, job_id: str, reason: str) -> None:
        await self.call("canceljob", {"jobId": job_id, "reason": reason})

    async def terminate_job(self, job_id: str, reason: str) -> None:
        await self.call("terminatejob", {"jobId": job_id, "reason": reason})


class HttpJobs(JobsClient):
    """A service's Batch API, through ``http`` (which signs when it has credentials)."""

    def __init__(self, http: ServiceClient) -> None:
        self.http = http

    async def call(self, operation: str, params: dict[str, Any]) -> Any:
        return await self.http.json("POST", f"/v1/{operation}", params)

    async def job_log(self, job_id: str, attempt: int | None = None) -> str:
        params = None if attempt is None else {"attempt": str(attempt)}
        path = f"/warmstart/jobs/{quote(job_id, safe='')}/logs"
        _, _, content = await self.http.request("GET", path, params=params)
        return content.decode(errors="replace")


class StoreJobs(JobsClient):
    """The store file itself, through the Batch API's operations run in this process, so the
    answers and errors are the service's own."""

    def __init__(self, store: SqliteStore) -> None:
        from ..service.batch_api import BatchApi

        # No killer: a terminated attempt's runner reads the kill order from the store.
        self.api = BatchApi(store)
        self.operations: dict[str, Callable[[dict[str, Any]], Any]] = {
            "submitjob": self.api.submit_job,
            "describejobs": self.api.describe_jobs,
            "listjobs": self.api.list_jobs,
            "canceljob": self.api.cancel_job,
            "terminatejob": self.api.terminate_job,
        }

    async def call(self, operation: str, params: dict[str, Any]) -> Any:
        # each is one short transaction: no need to leave the loop's thread
        return self.operations[operation](params)

    async def job_log(self, job_id: str, attempt: int | None = None) -> str:
        return self.api.job_log(job_id, attempt).decode(errors="replace")


@contextlib.asynccontextmanager
async def connect(args: argparse.Namespace) -> AsyncIterator[JobsClient]:
    """A client of ``--endpoint``, or of the store under ``--data-dir``."""
    if args.endpoint:
        from .client import ServiceClient

        credentials = credentials_from_env()
        async with ServiceClient(args.endpoint, credentials=credentials, region=region()) as http:
            yield HttpJobs(http)
        return
    from ..batch.store import SqliteStore

    path = store_path(args)
    if not path.exists():  # rather than leave an empty store where a mistyped path led
        raise ClientException(
            f"there is no batch store at {path}: no job queue exists there (give --data-dir, "
            "--config or --endpoint)"
        )
    with SqliteStore(path, region=region()) as store:
        yield StoreJobs(store)


def _run(args: argparse.Namespace, work: Callable[[JobsClient], Coroutine[Any, Any, int]]) -> int:
    return run_connected(connect, args, work)


# -- parsers --------------------------------------------------------------------------------------


def add_parser(commands: Any) -> None:
    """Add ``jobs`` (submit, list, describe, logs, cancel, wait) to the ``warmstart`` commands."""
    jobs = command_parser(commands, "jobs", "submit, list, follow and stop batch jobs", JOBS_EPILOG)
    actions = jobs.add_subparsers(dest="action", required=True)
    _submit_parser(actions)
    _list_parser(actions)
    _describe_parser(actions)
    _logs_parser(actions)
    _cancel_parser(actions)
    _wait_parser(actions)


def _target_options(parser: argparse.ArgumentParser) -> None:
    target = parser.add_mutually_exclusive_group()
    target.add_argument(
        "--endpoint",
        metavar="URL",
        help="a running warmstart service (http://127.0.0.1:9000); requests are SigV4-signed "
        "when WARMSTART_ACCESS_KEY_ID and WARMSTART_SECRET_ACCESS_KEY are set",
    )
    target.add_argument(
        "--data-dir",
        metavar="DIR",
        help="without --endpoint: the data directory whose batch store to use",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="without --endpoint or --data-dir: read [batch] data_dir from FILE "
        "(default ./warmstart.toml when it exists)",
    )


def _pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r}: use KEY=VALUE")
    return key, value


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive integer")
    return int(text)


def _interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number of seconds above 0")
    return value


def _wait_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--interval", type=_interval, default=1.0, metavar="S", help="seconds between polls (1)"
    )


def _submit_parser(actions: Any) -> None:
    p = command_parser(actions, "submit", "submit a job (SubmitJob)", SUBMIT_EPILOG)
    p.add_argument("name", help="the jobName")
    p.add_argument("--queue", required=True, help="the job queue's name or ARN")
    p.add_argument("--definition", required=True, help="the job definition: name[:revision] or ARN")
    p.add_argument("--array-size", type=int, metavar="N", help="an array job of N children")
    many: dict[str, Any] = {"nargs": "+", "action": "extend", "default": []}
    p.add_argument("--depends-on", metavar="ID", help="job ids to wait for (dependsOn)", **many)
    p.add_argument(
        "--parameters", type=_pair, metavar="K=V", help="values for Ref::K in the command", **many
    )
    p.add_argument("--env", type=_pair, metavar="K=V", help="container environment", **many)
    p.add_argument("--attempts", type=int, metavar="N", help="retryStrategy.attempts (1-10)")
    p.add_argument("--timeout", type=int, metavar="S", help="attemptDurationSeconds (60 or more)")
    p.add_argument("--json", action="store_true", help="print SubmitJob's answer")
    p.add_argument("--wait", action="store_true", help="then wait for the job to end")
    _wait_option(p)
    p.add_argument(
        "--command",
        nargs=argparse.REMAINDER,
        metavar="ARG",
        help="the container's command (last: the rest of the line is the command)",
    )
    _target_options(p)
    p.set_defaults(func=submit_command, usage_error=p.error)


def _list_parser(actions: Any) -> None:
    p = command_parser(
        actions, "list", "list the jobs of a queue or an array job (ListJobs)", LIST_EPILOG
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--queue", help="the job queue's name or ARN")
    which.add_argument("--array-job", metavar="ID", help="an array job: list its children")
    status = p.add_mutually_exclusive_group()
    status.add_argument(
        "--status", type=str.upper, choices=JOB_STATUSES, help="one status (default RUNNING)"
    )
    status.add_argument("--all", action="store_true", help="jobs in every status")
    p.add_argument("--json", action="store_true", help="print ListJobs' summaries")
    _target_options(p)
    p.set_defaults(func=list_command)


def _describe_parser(actions: Any) -> None:
    p = command_parser(actions, "describe", "show jobs in full (DescribeJobs)", DESCRIBE_EPILOG)
    p.add_argument("job_ids", nargs="+", metavar="ID", help="job ids")
    p.add_argument("--json", action="store_true", help="print DescribeJobs' answer")
    _target_options(p)
    p.set_defaults(func=describe_command)


def _logs_parser(actions: Any) -> None:
    p = command_parser(actions, "logs", "print the output of a job's attempt", LOGS_EPILOG)
    p.add_argument("job_id", metavar="ID", help="the job id")
    p.add_argument(
        "--attempt", type=_positive_int, metavar="N", help="1 for the first (default the latest)"
    )
    _target_options(p)
    p.set_defaults(func=logs_command)


def _cancel_parser(actions: Any) -> None:
    p = command_parser(actions, "cancel", "cancel or terminate a job", CANCEL_EPILOG)
    p.add_argument("job_id", metavar="ID", help="the job id")
    p.add_argument("--reason", required=True, help="the statusReason the job fails with")
    p.add_argument("--terminate", action="store_true", help="TerminateJob: stop a started job too")
    _target_options(p)
    p.set_defaults(func=cancel_command)


def _wait_parser(actions: Any) -> None:
    p = command_parser(actions, "wait", "wait until a job SUCCEEDED or FAILED", WAIT_EPILOG)
    p.add_argument("job_id", metavar="ID", help="the job id")
    _wait_option(p)
    _target_options(p)
    p.set_defaults(func=wait_command)


# -- commands -------------------------------------------------------------------------------------


def submit_request(args: argparse.Namespace) -> dict[str, Any]:
    """The SubmitJob request the options describe."""
    request: dict[str, Any] = {
        "jobName": args.name,
        "jobQueue": args.queue,
        "jobDefinition": args.definition,
    }
    if args.array_size is not None:
        request["arrayProperties"] = {"size": args.array_size}
    if args.depends_on:
        request["dependsOn"] = [{"jobId": job_id} for job_id in args.depends_on]
    if args.parameters:
        request["parameters"] = dict(args.parameters)
    if args.attempts is not None:
        request["retryStrategy"] = {"attempts": args.attempts}
    if args.timeout is not None:
        request["timeout"] = {"attemptDurationSeconds": args.timeout}
    overrides = _overrides(args)
    if overrides:
        request["containerOverrides"] = overrides
    return request


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    if args.env:
        overrides["environment"] = [{"name": k, "value": v} for k, v in args.env]
    if args.command is not None:
        if not args.command:
            args.usage_error("argument --command: expected the command after it")
        overrides["command"] = args.command
    return overrides


def submit_command(args: argparse.Namespace) -> int:
    request = submit_request(args)

    async def work(client: JobsClient) -> int:
        answer = await client.submit_job(request)
        _print(_json_text(answer) if args.json else answer["jobId"])
        if not args.wait:
            return 0
        return await wait_for(client, answer["jobId"], args.interval)

    return _run(args, work)


def list_command(args: argparse.Namespace) -> int:
    which = {"jobQueue": args.queue} if args.queue else {"arrayJobId": args.array_job}
    statuses: Sequence[str | None] = JOB_STATUSES if args.all else [args.status]

    async def work(client: JobsClient) -> int:
        found: dict[str, Job] = {}
        for status in statuses:
            params = which if status is None else {**which, "jobStatus": status}
            for job in await client.list_jobs(params):
                found.setdefault(job["jobId"], job)  # a job may move on between two listings
        jobs = sorted(found.values(), key=_array_order if args.array_job else _newest_first)
        if args.json:
            _print(_json_text({"jobSummaryList": jobs}))
        else:
            print_jobs(jobs, sys.stdout)
        return 0

    return _run(args, work)


def _newest_first(job: Job) -> int:
    return -int(job.get("createdAt") or 0)


def _array_order(job: Job) -> int:
    return int((job.get("arrayProperties") or {}).get("index") or 0)


def describe_command(args: argparse.Namespace) -> int:
    async def work(client: JobsClient) -> int:
        jobs = await client.describe_jobs(args.job_ids)
        if args.json:
            _print(_json_text({"jobs": jobs}))
        else:
            _print("\n\n".join(describe_text(job) for job in jobs))
        return 0

    return _run(args, work)


def logs_command(args: argparse.Namespace) -> int:
    async def work(client: JobsClient) -> int:
        text = await client.job_log(args.job_id, args.attempt)
        sys.stdout.write(text)
        sys.stdout.flush()
        if not text:
            which = "its latest attempt" if args.attempt is None else f"attempt {args.attempt}"
            sys.stderr.write(f"warmstart: no output kept for {args.job_id} ({which})\n")
        return 0

    return _run(args, work)


def cancel_command(args: argparse.Namespace) -> int:
    async def work(client: JobsClient) -> int:
        if args.terminate:
            await client.terminate_job(args.job_id, args.reason)
        else:
            await client.cancel_job(args.job_id, args.reason)
        (job,) = await client.describe_jobs([args.job_id])
        line = f"warmstart: {'terminate' if args.terminate else 'cancel'}: {progress_line(job)}"
        if not args.terminate and job["status"] in ("STARTING", "RUNNING"):
            line += " (a started job stops with --terminate)"
        sys.stderr.write(line + "\n")
        return 0

    return _run(args, work)


def wait_command(args: argparse.Namespace) -> int:
    async def work(client: JobsClient) -> int:
        return await wait_for(client, args.job_id, args.interval)

    return _run(args, work)


async def wait_for(client: JobsClient, job_id: str, interval: float) -> int:
    """Poll ``job_id`` every ``interval`` seconds until it ends, showing its progress on
    stderr; 0 when it SUCCEEDED, 1 when it FAILED."""
    with progress_display(sys.stderr) as display:
        while True:
            (job,) = await client.describe_jobs([job_id])
            display.update(job)
            if job["status"] in FINAL_STATUSES:
                return 0 if job["status"] == SUCCEEDED else 1
            await pause(interval)


# -- output ---------------------------------------------------------------------------------------


def _print(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _json_text(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()


def _time(ms: int | None) -> str:
    if ms is None:
        return ""
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def print_jobs(jobs: list[Job], stream: IO[str]) -> None:
    """A table of job id, name, status, created (UTC) and status reason."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("JOB ID", "NAME", "STATUS", "CREATED", "REASON"):
        table.add_column(column, no_wrap=column != "REASON")
    for job in jobs:
        status = job.get("status") or ""
        # Text cells: a reason with [brackets] must not be read as rich markup
        table.add_row(
            Text(job["jobId"]),
            Text(job["jobName"]),
            Text(status, style=STATUS_STYLES.get(status, "")),
            Text(_time(job.get("createdAt"))),
            Text(job.get("statusReason") or ""),
        )
    if stream.isatty():
        Console(file=stream).print(table)
        return
    # in a pipe: no wrapping, and no trailing blanks for the scripts that read it
    buffer = io.StringIO()
    Console(file=buffer, width=PIPE_WIDTH).print(table)
    stream.write("".join(line.rstrip() + "\n" for line in buffer.getvalue().splitlines()))
    stream.flush()


def describe_text(job: Job) -> str:
    """A job's detail as ``key: value`` lines, its attempts last."""
    container = job.get("container") or {}
    fields = [
        ("reason", job.get("statusReason")),
        ("queue", job.get("jobQueue")),
        ("definition", job.get("jobDefinition")),
        ("created", _time(job.get("createdAt"))),
        ("started", _time(job.get("startedAt"))),
        ("stopped", _time(job.get("stoppedAt"))),
        ("array", _array_text(job)),
        ("depends on", " ".join(d.get("jobId") or "" for d in job.get("dependsOn") or [])),
        ("command", " ".join(container.get("command") or [])),
    ]
    lines = [f"{job['jobId']}  {job['jobName']}  {job['status']}"]
    lines += [f"  {name + ':':<12}{value}" for name, value in fields if value]
    for n, attempt in enumerate(job.get("attempts") or [], 1):
        lines.append(f"  {f'attempt {n}:':<12}{_attempt_text(attempt)}")
    return "\n".join(lines)


def _attempt_text(attempt: dict[str, Any]) -> str:
    container = attempt.get("container") or {}
    code = container.get("exitCode")
    parts = [
        "no exit code" if code is None else f"exit {code}",
        container.get("reason"),
        attempt.get("statusReason"),
    ]
    return ", ".join(p for p in parts if p)


def _array_summary(job: Job) -> tuple[int, dict[str, int]] | None:
    """An array parent's size and children by status; None for any other job."""
    props = job.get("arrayProperties") or {}
    if props.get("size") is None:
        return None
    return int(props["size"]), dict(props.get("statusSummary") or {})


def _array_text(job: Job) -> str:
    summary = _array_summary(job)
    if summary is None:
        index = (job.get("arrayProperties") or {}).get("index")
        return "" if index is None else f"child {index}"
    size, counts = summary
    done = counts.get(SUCCEEDED, 0) + counts.get(FAILED, 0)
    return f"{done}/{size} children done ({_counts_text(counts)})"


def _counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{s} {counts[s]}" for s in JOB_STATUSES if counts.get(s)) or "none yet"


def progress_line(job: Job) -> str:
    """``<id> <status>``, an array's children by status, and the statusReason."""
    line = f"{job['jobId']} {job['status']}"
    if _array_summary(job) is not None:
        line += f": {_array_text(job)}"
    reason = job.get("statusReason")
    return f"{line}: {reason}" if reason else line


class PlainDisplay:
    """A line on ``stream`` each time the job's progress changes, and every HEARTBEAT_S."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self._last = ""
        self._printed_at = 0.0

    def __enter__(self) -> PlainDisplay:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def update(self, job: Job) -> None:
        line, now = progress_line(job), time.monotonic()
        if line != self._last or now - self._printed_at >= HEARTBEAT_S:
            self.stream.write(f"warmstart: {line}\n")
            self.stream.flush()
            self._last, self._printed_at = line, now


class BarDisplay(PlainDisplay):
    """On a terminal: an array job's children as a rich progress bar (SUCCEEDED + FAILED of
    the size), then its final line; any other job as PlainDisplay's lines."""

    def __init__(self, stream: IO[str]) -> None:
        super().__init__(stream)
        self._bar: Progress | None = None
        self._task: Any = None
        self._job: Job | None = None

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
            if self._job is not None:
                super().update(self._job)

    def update(self, job: Job) -> None:
        summary = _array_summary(job)
        if summary is None:
            super().update(job)
            return
        size, counts = summary
        if self._bar is None:
            self._start(job["jobId"], size)
        assert self._bar is not None
        done = counts.get(SUCCEEDED, 0) + counts.get(FAILED, 0)
        self._bar.update(self._task, completed=done, counts=_counts_text(counts))
        self._bar.refresh()  # auto_refresh is off: no refresh thread to outlive the command
        self._job = job

    def _start(self, job_id: str, size: int) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as RichProgress

        self._bar = RichProgress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[counts]}"),
            TimeElapsedColumn(),
            console=Console(file=self.stream),
            auto_refresh=False,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._bar.start()
        self._task = self._bar.add_task(job_id, total=size, counts="")


def progress_display(stream: IO[str]) -> PlainDisplay:
    """A progress bar on a terminal, lines otherwise."""
    return BarDisplay(stream) if stream.isatty() else PlainDisplay(stream)
