"""AWS Batch's API (REST-JSON: every operation a ``POST /v1/<operation>``) over the batch store.

    boto3.client("batch") ── POST /v1/submitjob … ──▶ read_body ──▶ authenticate ──▶ store
                                                                        └─ terminate: kill orders
                                                                           to the runner

Operations and shapes are botocore's ``batch`` model (2016-08-10): SubmitJob, DescribeJobs,
ListJobs, TerminateJob, CancelJob, RegisterJobDefinition, DeregisterJobDefinition,
DescribeJobDefinitions, CreateJobQueue, DescribeJobQueues, UpdateJobQueue, DeleteJobQueue.
Errors are ``ClientException`` (400) and ``ServerException`` (500), with ``x-amzn-ErrorType``
(``protocol.operation`` answers them).
warmstart adds ``GET /warmstart/jobs/{jobId}/logs[?attempt=N]``: the kept output of an attempt
(Batch sends it to CloudWatch Logs, which warmstart does not have), as text.
The store's calls are short transactions, run in a thread so a 10,000-child array submit does
not hold up the loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Protocol, cast

import msgspec
import orjson
from aiohttp import web

from ..batch.model import (
    MAX_ATTEMPTS,
    ClientException,
    CreateJobQueueRequest,
    JobQueueDetail,
    KillOrder,
    RegisterJobDefinitionRequest,
    SubmitJobRequest,
    UpdateJobQueueRequest,
    parse,
)
from ..batch.store import Store
from ..errors import RequestTooLargeException, WarmstartError
from .body import within
from .protocol import (
    Authenticate,
    AwsError,
    Handler,
    ReadBody,
    Unavailable,
    WireFormat,
    operation,
)
from .shapes import JSON

#: SubmitJob's largest request is far smaller; an oversized body is refused before it is read
BODY_LIMIT = 1_048_576
#: a job's default status filter in ListJobs, as AWS answers without one
DEFAULT_LIST_STATUS = "RUNNING"


class Killer(Protocol):
    """Whoever runs the attempts: told which ones TerminateJob (or DeleteJobQueue) ends.

    ``kill`` is called from the operation's worker thread, so it must be safe from any
    thread (:meth:`JobRunner.kill <runtime.batch.runner.JobRunner.kill>` hands the orders to
    its loop)."""

    def kill(self, orders: list[KillOrder]) -> None: ...


Operation = Callable[[dict[str, Any]], Any]


class BatchApi:
    """The operations over ``store``; ``routes()`` lists them for aiohttp.

    ``killer`` (the runner) is told of terminations and ``on_change`` (the runner's wake) is
    called after every operation. Without a store (the service's ``[batch] enabled = false``)
    every operation answers ServerException.
    """

    def __init__(
        self,
        store: Store | None = None,
        *,
        killer: Killer | None = None,
        authenticate: Authenticate | None = None,
        clock: Callable[[], float] = time.time,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        if store is None:
            store = cast(Store, Unavailable("the batch queue is not running on this service"))
        self.store: Store = store
        self.killer = killer
        self.authenticate = authenticate
        self.clock = clock
        self.on_change = on_change

    def routes(self) -> list[web.RouteDef]:
        read = within(BODY_LIMIT, _too_large)
        routes = [
            web.post(f"/v1/{name}", self._operation(getattr(self, method_name), read))
            for name, method_name in _METHODS.items()
        ]
        logs = operation(self._log, read, WIRE, self.authenticate)
        routes.append(web.get("/warmstart/jobs/{jobId}/logs", logs))
        return routes

    def _operation(self, op: Operation, read: ReadBody) -> Handler:
        """``op`` on the body's JSON object, in a thread; its answer as JSON."""

        async def run(request: web.Request, body: bytes) -> web.Response:
            params = _json_object(body)
            try:
                result = await asyncio.to_thread(op, params)
            except msgspec.ValidationError as exc:  # a request shape's own check
                raise ClientException(str(exc)) from None
            if self.on_change is not None:
                self.on_change()  # a submit or a queue change: the runner looks again now
            return web.Response(body=orjson.dumps(result), headers={"Content-Type": JSON})

        return operation(run, read, WIRE, self.authenticate)

    async def _log(self, request: web.Request, body: bytes) -> web.Response:
        attempt = _attempt(request.query.get("attempt"))
        log = await asyncio.to_thread(self.job_log, request.match_info["jobId"], attempt)
        return web.Response(body=log, content_type="text/plain", charset="utf-8")

    # -- operations (run in a worker thread: each is one store transaction) ---------------------

    def job_log(self, job_id: str, attempt: int | None = None) -> bytes:
        """The kept output of attempt ``attempt`` (1-based; None: the latest) of ``job_id``:
        empty while it runs, or when it printed nothing. An unknown job is a ClientException."""
        return self.store.read_log(job_id, attempt)

    def submit_job(self, params: dict[str, Any]) -> Any:
        request = parse(SubmitJobRequest, params)
        return _plain(self.store.submit_job(request, self.clock()))

    def describe_jobs(self, params: dict[str, Any]) -> Any:
        ids = _strings(params, "jobs", required=True)
        if len(ids) > 100:
            raise ClientException("jobs: at most 100 job ids per request")
        return {"jobs": _plain(self.store.describe_jobs(ids))}

    def list_jobs(self, params: dict[str, Any]) -> Any:
        array = params.get("arrayJobId")
        queue = params.get("jobQueue")
        if not queue and not array and not params.get("multiNodeJobId"):
            raise ClientException("jobQueue, arrayJobId or multiNodeJobId is required")
        status = params.get("jobStatus") or (None if array else DEFAULT_LIST_STATUS)
        page = self.store.list_jobs(
            job_queue=queue,
            array_job_id=array,
            job_status=status,
            max_results=_max_results(params),
            next_token=params.get("nextToken"),
        )
        return _page("jobSummaryList", page)

    def terminate_job(self, params: dict[str, Any]) -> Any:
        job_id, reason = _job_and_reason(params)
        orders = self.store.terminate_job(job_id, reason, self.clock())
        if orders and self.killer is not None:
            self.killer.kill(orders)
        return {}

    def cancel_job(self, params: dict[str, Any]) -> Any:
        job_id, reason = _job_and_reason(params)
        self.store.cancel_job(job_id, reason, self.clock())
        return {}

    def register_job_definition(self, params: dict[str, Any]) -> Any:
        request = parse(RegisterJobDefinitionRequest, params)
        definition = self.store.register_job_definition(request, self.clock())
        return {
            "jobDefinitionName": definition.job_definition_name,
            "jobDefinitionArn": definition.job_definition_arn,
            "revision": definition.revision,
        }

    def deregister_job_definition(self, params: dict[str, Any]) -> Any:
        self.store.deregister_job_definition(_string(params, "jobDefinition"))
        return {}

    def describe_job_definitions(self, params: dict[str, Any]) -> Any:
        page = self.store.describe_job_definitions(
            _strings(params, "jobDefinitions") or None,
            job_definition_name=params.get("jobDefinitionName"),
            status=params.get("status"),
            max_results=_max_results(params),
            next_token=params.get("nextToken"),
        )
        return _page("jobDefinitions", page)

    def create_job_queue(self, params: dict[str, Any]) -> Any:
        return _queue_ref(
            self.store.create_job_queue(parse(CreateJobQueueRequest, params), self.clock())
        )

    def describe_job_queues(self, params: dict[str, Any]) -> Any:
        page = self.store.describe_job_queues(
            _strings(params, "jobQueues") or None,
            max_results=_max_results(params),
            next_token=params.get("nextToken"),
        )
        return _page("jobQueues", page)

    def update_job_queue(self, params: dict[str, Any]) -> Any:
        return _queue_ref(
            self.store.update_job_queue(parse(UpdateJobQueueRequest, params), self.clock())
        )

    def delete_job_queue(self, params: dict[str, Any]) -> Any:
        orders = self.store.delete_job_queue(_string(params, "jobQueue"), self.clock())
        if orders and self.killer is not None:
            self.killer.kill(orders)
        return {}


_METHODS = {
    "submitjob": "submit_job",
    "describejobs": "describe_jobs",
    "listjobs": "list_jobs",
    "terminatejob": "terminate_job",
    "canceljob": "cancel_job",
    "registerjobdefinition": "register_job_definition",
    "deregisterjobdefinition": "deregister_job_definition",
    "describejobdefinitions": "describe_job_definitions",
    "createjobqueue": "create_job_queue",
    "describejobqueues": "describe_job_queues",
    "updatejobqueue": "update_job_queue",
    "deletejobqueue": "delete_job_queue",
}
#: the operations' paths (``POST /v1/<operation>``, botocore's batch model)
PATHS = frozenset(f"/v1/{name}" for name in _METHODS)


def _too_large(size: int) -> WarmstartError:
    return RequestTooLargeException(f"Request must be smaller than {BODY_LIMIT} bytes")


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        params = orjson.loads(body or b"{}")
    except orjson.JSONDecodeError as exc:
        raise ClientException(f"The request body is not valid JSON: {exc}") from None
    if not isinstance(params, dict):
        raise ClientException("The request body must be a JSON object")
    return params


def _string(params: dict[str, Any], key: str) -> str:
    value = params.get(key)
    if not isinstance(value, str) or not value:
        raise ClientException(f"{key} is required and must be a string")
    return value


def _strings(params: dict[str, Any], key: str, *, required: bool = False) -> list[str]:
    value = params.get(key)
    if value is None and not required:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ClientException(f"{key} must be a list of strings")
    return value


def _job_and_reason(params: dict[str, Any]) -> tuple[str, str]:
    return _string(params, "jobId"), _string(params, "reason")


def _attempt(value: str | None) -> int | None:
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= MAX_ATTEMPTS:
        raise ClientException(f"attempt {value!r} must be an integer from 1 to {MAX_ATTEMPTS}")
    return int(value)


def _max_results(params: dict[str, Any]) -> int | None:
    value = params.get("maxResults")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1000:
        raise ClientException("maxResults must be an integer from 1 to 1000")
    return value


def _plain(value: Any) -> Any:
    """A store record as the API's JSON (camelCase, absent fields omitted)."""
    return msgspec.to_builtins(value)


def _queue_ref(detail: JobQueueDetail) -> dict[str, Any]:
    """CreateJobQueue's and UpdateJobQueue's answer."""
    return {"jobQueueName": detail.job_queue_name, "jobQueueArn": detail.job_queue_arn}


def _page(key: str, page: Any) -> dict[str, Any]:
    out: dict[str, Any] = {key: _plain(page.items)}
    if page.next_token:
        out["nextToken"] = page.next_token
    return out


def _error(error: AwsError) -> web.Response:
    """Batch's error answer: REST-JSON, the name both in ``__type`` and ``x-amzn-ErrorType``."""
    body = orjson.dumps({"__type": error.code, "message": error.message})
    return web.Response(
        body=body,
        status=error.status,
        headers={"x-amzn-ErrorType": error.code, "Content-Type": JSON},
    )


WIRE = WireFormat("Batch API", _error, "ServerException")
