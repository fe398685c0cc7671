"""One AWS operation over HTTP, the same for every API the service speaks.

    request ──▶ read the body (its cap first) ──▶ authenticate ──▶ run ──▶ response
                  │ RequestTooLargeException       │ AuthError       │ an AWS error, or anything
                  ▼                                ▼                 ▼
                  └─────────── wire.render(error): the API's error answer ◀──┘

An *AWS error* is anything carrying ``code`` (the error name), ``message`` and ``status``:
every :class:`~runtime.errors.WarmstartError`, and the ``Authenticate`` hook's refusals. Any
other exception is a bug: it is logged, and answered as the API's internal error
(:class:`ServerException` under the API's name for it), so a client never sees a traceback.

What differs between APIs is only the :class:`WireFormat`: how an error is written (Lambda's
REST-JSON with ``x-amzn-ErrorType``, Batch's REST-JSON, JSON 1.1's ``__type``) and what the
internal error is called.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import NoReturn, Protocol, TypeGuard

from aiohttp import web

from ..errors import WarmstartError

__all__ = [
    "Authenticate",
    "AwsError",
    "Handler",
    "ReadBody",
    "Run",
    "ServerException",
    "StoreUnavailable",
    "Unavailable",
    "UnknownOperationException",
    "WireFormat",
    "is_aws_error",
    "operation",
]

log = logging.getLogger("warmstart.service")

#: ``async (request, body) -> None``; refuses by raising an AWS error (``code``, ``message``,
#: ``status``), e.g. :class:`~runtime.service.auth.AuthError`
Authenticate = Callable[[web.Request, bytes], Awaitable[None]]
#: the body of a request, read within the operation's cap (see :func:`~.body.read_body`)
ReadBody = Callable[[web.Request], Awaitable[bytes]]
#: the operation itself, given the request and its body
Run = Callable[[web.Request, bytes], Awaitable[web.StreamResponse]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class AwsError(Protocol):
    """What an error answer is made of: WarmstartError, or the auth hook's AuthError."""

    code: str
    message: str
    status: int


def is_aws_error(exc: BaseException) -> TypeGuard[AwsError]:
    """Whether ``exc`` carries AWS's error fields (see :class:`AwsError`)."""
    return (
        isinstance(getattr(exc, "code", None), str)
        and isinstance(getattr(exc, "message", None), str)
        and isinstance(getattr(exc, "status", None), int)
    )


class UnknownOperationException(WarmstartError):
    """No operation at the request's target: 400 for a JSON 1.1 ``X-Amz-Target``, 404 for a
    REST path under an API version prefix."""

    code = "UnknownOperationException"
    status = 400

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class ServerException(WarmstartError):
    """A failure on the service's side, under the name the API gives it (``code``): Lambda's
    ServiceException, Batch's and ECS's ServerException, EventBridge's InternalException."""

    code = "ServerException"
    status = 500

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class StoreUnavailable(ServerException):
    """A store the API was built without was used (see :class:`Unavailable`)."""


class Unavailable:
    """Stands in for a store an API is served without (an app made without the background, or
    Batch with ``[batch] enabled = false``): reaching for any of its methods raises
    :class:`StoreUnavailable` with ``message``, under the API's internal error ``code``, so an
    operation fails where it would have first used the store."""

    def __init__(self, message: str, code: str | None = None) -> None:
        self._message = message
        self._code = code

    def __getattr__(self, name: str) -> NoReturn:
        if name.startswith("__"):  # copy, pickle and friends probe these
            raise AttributeError(name)
        raise StoreUnavailable(self._message, self._code)


@dataclass(frozen=True)
class WireFormat:
    """How one API answers errors: ``render`` writes an AWS error as its response;
    ``internal_error`` names an unexpected failure; ``api`` names the API in the log."""

    api: str
    render: Callable[[AwsError], web.Response]
    internal_error: str

    def failed(self, exc: Exception) -> web.Response:
        """``exc`` as this API's error answer; one without AWS's fields is logged."""
        if is_aws_error(exc):
            return self.render(exc)
        log.exception("unexpected error in a %s operation", self.api, exc_info=exc)
        return self.render(ServerException(f"{type(exc).__name__}: {exc}", self.internal_error))


def operation(
    run: Run, read: ReadBody, wire: WireFormat, authenticate: Authenticate | None = None
) -> Handler:
    """The aiohttp handler of one operation: ``read`` the body (refusing an oversized one
    before it is read), ``authenticate`` it, ``run``; every exception becomes ``wire``'s
    error answer."""
    if authenticate is None:

        async def handler(request: web.Request) -> web.StreamResponse:
            try:
                return await run(request, await read(request))
            except Exception as exc:
                return wire.failed(exc)

        return handler

    async def authenticated(request: web.Request) -> web.StreamResponse:
        try:
            body = await read(request)
            await authenticate(request, body)
            return await run(request, body)
        except Exception as exc:
            return wire.failed(exc)

    return authenticated
