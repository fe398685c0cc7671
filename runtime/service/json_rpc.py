"""AWS's JSON 1.1 protocol: every operation is ``POST /`` naming itself in ``X-Amz-Target``.

    POST /  X-Amz-Target: <prefix>.<Operation>  Content-Type: application/x-amz-json-1.1
      ──▶ read_body (size cap first) ──▶ authenticate hook ──▶ prefix → service, Operation → method
      ──▶ JSON object ──▶ await method(params) ──▶ 200 with the response object as JSON

A service registers under its target prefix (ECS: ``AmazonEC2ContainerServiceV20141113``,
EventBridge: ``AWSEvents``) an object whose coroutine methods are its operations in
snake_case (``RunTask`` → ``run_task(params)``), each taking and returning a JSON object.
Errors are ``{"__type": code, "message": ...}`` with the error's status, as botocore's JSON
parser reads them: ``UnknownOperationException`` (400) for a target nobody serves,
``SerializationException`` (400) for a body that is not a JSON object, and the service's own
internal error name (500) for anything unexpected, which is logged.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from ..errors import RequestTooLargeException, WarmstartError
from ..wording import request_id
from .body import read_body
from .lambda_api import Authenticate
from .shapes import is_aws_error

log = logging.getLogger("warmstart.service")

CONTENT_TYPE = "application/x-amz-json-1.1"
TARGET_HEADER = "X-Amz-Target"
#: the largest request body read (ECS's largest request, a task definition, is far smaller)
BODY_LIMIT = 1_048_576

Operation = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class UnknownOperationException(WarmstartError):
    code = "UnknownOperationException"
    status = 400


class SerializationException(WarmstartError):
    code = "SerializationException"
    status = 400


@dataclass(frozen=True)
class _Service:
    target: object
    operations: frozenset[str]
    internal_error: str


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
        self._services: dict[str, _Service] = {}

    def register(
        self,
        prefix: str,
        target: object,
        operations: Iterable[str],
        *,
        internal_error: str = "InternalFailure",
    ) -> None:
        """Serve ``operations`` of ``target`` under ``prefix``; each must be a method of it."""
        names = frozenset(operations)
        missing = [op for op in names if not callable(getattr(target, method_name(op), None))]
        if missing:
            raise ValueError(f"{type(target).__name__} lacks operations {sorted(missing)}")
        self._services[prefix] = _Service(target, names, internal_error)

    async def handle(self, request: web.Request) -> web.Response:
        """Answer one JSON 1.1 call (never raises: every failure is an error response)."""
        service: _Service | None = None
        try:
            body = await read_body(request, self.body_limit, self._too_large)
            if self.authenticate is not None:
                await self.authenticate(request, body)
            service, operation = self._resolve(request.headers.get(TARGET_HEADER, ""))
            return _response(200, await operation(_params(body)))
        except Exception as exc:
            return self._failed(exc, service)

    def _resolve(self, target: str) -> tuple[_Service, Operation]:
        prefix, _, name = target.rpartition(".")
        service = self._services.get(prefix)
        if service is None or name not in service.operations:
            raise UnknownOperationException(f"Unknown operation {target!r}")
        operation: Operation = getattr(service.target, method_name(name))
        return service, operation

    def _too_large(self, size: int) -> WarmstartError:
        return RequestTooLargeException(
            f"Request must be smaller than {self.body_limit} bytes (got at least {size})"
        )

    def _failed(self, exc: Exception, service: _Service | None) -> web.Response:
        if is_aws_error(exc):
            return _error(exc.code, exc.message, exc.status)
        log.exception("unexpected error in a JSON 1.1 operation", exc_info=exc)
        internal = service.internal_error if service is not None else "InternalFailure"
        return _error(internal, f"{type(exc).__name__}: {exc}", 500)


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


def _error(code: str, message: str, status: int) -> web.Response:
    return _response(status, {"__type": code, "message": message}, {"x-amzn-ErrorType": code})


def _response(
    status: int, document: dict[str, Any], headers: dict[str, str] | None = None
) -> web.Response:
    out = {"Content-Type": CONTENT_TYPE, "x-amzn-RequestId": request_id(), **(headers or {})}
    return web.Response(body=orjson.dumps(document), status=status, headers=out)
