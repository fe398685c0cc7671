"""AWS's JSON 1.1 protocol: every operation is ``POST /`` naming itself in ``X-Amz-Target``.

    POST /  X-Amz-Target: <prefix>.<Operation>  Content-Type: application/x-amz-json-1.1
      ──▶ read_body (size cap first) ──▶ authenticate hook ──▶ prefix → service, Operation → method
      ──▶ JSON object ──▶ await method(params) ──▶ 200 with the response object as JSON

A service registers under its target prefix (ECS: ``AmazonEC2ContainerServiceV20141113``,
EventBridge: ``AWSEvents``) an object whose coroutine methods are its operations in
snake_case (``RunTask`` → ``run_task(params)``), each taking and returning a JSON object.
Each operation is one ``protocol.operation``; its errors are ``{"__type": code, "message":
...}`` with the error's status, as botocore's JSON parser reads them:
``UnknownOperationException`` (400) for a target nobody serves, ``SerializationException``
(400) for a body that is not a JSON object, and the service's own internal error name (500)
for anything unexpected, which is logged.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import orjson
from aiohttp import web

from ..errors import RequestTooLargeException, WarmstartError
from ..stamps import request_id
from .body import within
from .protocol import (
    Authenticate,
    AwsError,
    Handler,
    UnknownOperationException,
    WireFormat,
    operation,
)

CONTENT_TYPE = "application/x-amz-json-1.1"
TARGET_HEADER = "X-Amz-Target"
#: the largest request body read (ECS's largest request, a task definition, is far smaller)
BODY_LIMIT = 1_048_576

Operation = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
#: what a failure is called when no service is addressed
INTERNAL_FAILURE = "InternalFailure"


class SerializationException(WarmstartError):
    code = "SerializationException"
    status = 400


def method_name(operation: str) -> str:
    """``RegisterTaskDefinition`` → ``register_task_definition``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", operation).lower()


def is_json_rpc(request: web.BaseRequest) -> bool:
    """Whether a request is a JSON 1.1 call: ``POST /`` with an ``X-Amz-Target`` header."""
    return request.method == "POST" and request.path == "/" and TARGET_HEADER in request.headers


class JsonRpc:
    """The registry of JSON 1.1 services and the handler that dispatches to them."""

    def __init__(
        self, authenticate: Authenticate | None = None, body_limit: int = BODY_LIMIT
    ) -> None:
        self.authenticate = authenticate
        self.body_limit = body_limit
        self._read = within(body_limit, self._too_large)
        #: the handler of each ``<prefix>.<Operation>`` served
        self._operations: dict[str, Handler] = {}
        self._unknown = operation(_unknown, self._read, _wire(INTERNAL_FAILURE), authenticate)

    def register(
        self,
        prefix: str,
        target: object,
        operations: Iterable[str],
        *,
        internal_error: str = INTERNAL_FAILURE,
    ) -> None:
        """Serve ``operations`` of ``target`` under ``prefix``; each must be a method of it."""
        names = frozenset(operations)
        missing = [op for op in names if not callable(getattr(target, method_name(op), None))]
        if missing:
            raise ValueError(f"{type(target).__name__} lacks operations {sorted(missing)}")
        wire = _wire(internal_error)
        for name in names:
            run = _run(getattr(target, method_name(name)))
            self._operations[f"{prefix}.{name}"] = operation(
                run, self._read, wire, self.authenticate
            )

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Answer one JSON 1.1 call (never raises: every failure is an error response)."""
        target = request.headers.get(TARGET_HEADER, "")
        return await self._operations.get(target, self._unknown)(request)

    def _too_large(self, size: int) -> WarmstartError:
        return RequestTooLargeException(
            f"Request must be smaller than {self.body_limit} bytes (got at least {size})"
        )


def _run(method: Operation) -> Callable[[web.Request, bytes], Awaitable[web.Response]]:
    async def run(request: web.Request, body: bytes) -> web.Response:
        return _response(200, await method(_params(body)))

    return run


async def _unknown(request: web.Request, body: bytes) -> web.Response:
    """A target nobody serves (found out after the body is read and authenticated)."""
    target = request.headers.get(TARGET_HEADER, "")
    raise UnknownOperationException(f"Unknown operation {target!r}")


def _wire(internal_error: str) -> WireFormat:
    """JSON 1.1's errors, ``internal_error`` naming an unexpected failure."""
    return WireFormat("JSON 1.1", _error, internal_error)


def _params(body: bytes) -> dict[str, Any]:
    """The request's JSON object; an empty body is an empty object, as AWS takes it."""
    if not body.strip():
        return {}
    try:
        params = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise SerializationException(f"The request body is not valid JSON: {exc}") from None
    if not isinstance(params, dict):
        raise SerializationException("The request body must be a JSON object.")
    return params


def _error(error: AwsError) -> web.Response:
    code = error.code
    return _response(
        error.status, {"__type": code, "message": error.message}, {"x-amzn-ErrorType": code}
    )


def _response(
    status: int, document: dict[str, Any], headers: dict[str, str] | None = None
) -> web.Response:
    out = {"Content-Type": CONTENT_TYPE, "x-amzn-RequestId": request_id(), **(headers or {})}
    return web.Response(body=orjson.dumps(document), status=status, headers=out)
