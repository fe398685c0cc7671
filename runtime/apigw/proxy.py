"""API Gateway's proxy integration: HTTP request → route → Lambda event → invoke → HTTP response.

    HttpRequest ─▶ Router.match ──no route──▶ 404 {"message":"Not Found"}
                      │ api_key_required, no valid x-api-key ──▶ 403 {"message":"Forbidden"}
                      ▼
                 build_event (1.0 or 2.0) ─▶ invoke(function, event bytes)
                      │  integration timeout ──▶ 504 {"message":"Endpoint request timed out"}
                      │  throttled           ──▶ 429 {"message":"Too Many Requests"}
                      │  function error      ──▶ 502 {"message":"Internal server error"}
                      ▼
                 response_v1 / response_v2 (malformed output ──▶ 502) ─▶ HttpResponse
                      + the request's ids (apigw-requestid; x-amzn-RequestId, x-amz-apigw-id)

Nothing here knows a web server: ``service.gateway`` turns an aiohttp request into an
:class:`~.events.HttpRequest` and an :class:`HttpResponse` back into an aiohttp response.
``invoke`` is any coroutine function ``(function_name, payload) -> InvokeOutcome``;
``service.gateway.engine_invoke(engine)`` makes one from an ``Engine``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..errors import RequestTooLargeException, TooManyRequestsException, WarmstartError
from .events import ApiInfo, HttpRequest, RequestIds, build_event, random_ids, wall_clock_ms
from .routes import RouteMatch, Router

__all__ = [
    "HttpResponse",
    "Invoke",
    "InvokeOutcome",
    "check_api_key",
    "gateway_error",
    "handle",
    "request_id_headers",
    "response_v1",
    "response_v2",
    "with_request_ids",
]

JSON = "application/json"
#: the API fields of an event when ``handle`` is given none; built once, not per request
_DEFAULT_API = ApiInfo()


@dataclass(frozen=True)
class HttpResponse:
    """What the gateway answers: ``headers`` may repeat a name (one Set-Cookie per cookie)."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        """The first value of a header, matched case-insensitively."""
        wanted = name.lower()
        return next((v for k, v in self.headers if k.lower() == wanted), None)


@dataclass(frozen=True)
class InvokeOutcome:
    """What the gateway needs from an invocation: the payload and Lambda's function error."""

    payload: bytes
    function_error: str | None = None


Invoke = Callable[[str, bytes], Awaitable[InvokeOutcome]]


def gateway_error(status: int, message: str) -> HttpResponse:
    """A response the gateway makes itself, as ``{"message": ...}``."""
    return HttpResponse(status, [("Content-Type", JSON)], orjson.dumps({"message": message}))


def not_found() -> HttpResponse:
    return gateway_error(404, "Not Found")


def forbidden() -> HttpResponse:
    return gateway_error(403, "Forbidden")


def bad_gateway() -> HttpResponse:
    return gateway_error(502, "Internal server error")


def timed_out() -> HttpResponse:
    return gateway_error(504, "Endpoint request timed out")


def throttled() -> HttpResponse:
    return gateway_error(429, "Too Many Requests")


# -- response mapping -------------------------------------------------------------------------


class _Malformed(Exception):
    """The function's output is not a proxy response the gateway can map (502)."""


def response_v1(payload: bytes) -> HttpResponse:
    """Map a 1.0 (REST proxy) result: a JSON object with an integer ``statusCode``; else 502."""
    try:
        doc = orjson.loads(payload)
        if not isinstance(doc, dict) or "statusCode" not in doc:
            raise _Malformed
        return _proxy_response(doc, _headers_v1(doc))
    except (orjson.JSONDecodeError, _Malformed):
        return bad_gateway()


def response_v2(payload: bytes) -> HttpResponse:
    """Map a 2.0 (HTTP API) result.

    A JSON object with ``statusCode`` is a response (headers, cookies, body, isBase64Encoded).
    Any other valid JSON is the body of a 200 ``application/json`` response (AWS's inference
    rule; a JSON string becomes its text).  Invalid JSON or a bad field is a 502.
    """
    try:
        doc = orjson.loads(payload)
        if isinstance(doc, dict) and "statusCode" in doc:
            return _proxy_response(doc, _headers_v2(doc))
    except (orjson.JSONDecodeError, _Malformed):
        return bad_gateway()
    body = doc.encode() if isinstance(doc, str) else payload
    return HttpResponse(200, [("Content-Type", JSON)], body)


def _proxy_response(doc: dict[str, Any], headers: list[tuple[str, str]]) -> HttpResponse:
    status = doc["statusCode"]
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise _Malformed
    if not any(name.lower() == "content-type" for name, _ in headers):
        headers.append(("Content-Type", JSON))
    return HttpResponse(status, headers, _body(doc))


def _body(doc: dict[str, Any]) -> bytes:
    body = doc.get("body")
    if body is None:
        return b""
    if not isinstance(body, str):
        raise _Malformed
    if not doc.get("isBase64Encoded"):
        return body.encode()
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _Malformed from exc


def _headers_v1(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """``headers`` merged with ``multiValueHeaders``; a name in both takes the multi values."""
    multi = _mapping(doc, "multiValueHeaders")
    overridden = {name.lower() for name in multi}
    headers = [
        _pair(name, value)
        for name, value in _mapping(doc, "headers").items()
        if name.lower() not in overridden
    ]
    for name, values in multi.items():
        if not isinstance(values, list):
            raise _Malformed
        headers.extend(_pair(name, value) for value in values)
    return headers


def _headers_v2(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """``headers``, then one Set-Cookie per entry of ``cookies``."""
    headers = [_pair(name, value) for name, value in _mapping(doc, "headers").items()]
    cookies = doc.get("cookies")
    if cookies is None:
        cookies = []
    if not isinstance(cookies, list):
        raise _Malformed
    headers.extend(("Set-Cookie", _text(cookie)) for cookie in cookies)
    return headers


def _mapping(doc: dict[str, Any], key: str) -> dict[str, Any]:
    value = doc.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _Malformed
    return value


def _text(value: Any) -> str:
    """A header value: strings as they are, numbers and booleans as JSON writes them.  A line
    break would let the function forge headers of its own, so it is refused."""
    if isinstance(value, bool | int | float):
        return orjson.dumps(value).decode()
    if not isinstance(value, str) or "\r" in value or "\n" in value:
        raise _Malformed
    return value


def _pair(name: str, value: Any) -> tuple[str, str]:
    if not name or "\r" in name or "\n" in name or ":" in name:
        raise _Malformed
    return name, _text(value)


# -- api keys ---------------------------------------------------------------------------------


def check_api_key(
    headers: Mapping[str, str] | Iterable[tuple[str, str]], keys: AbstractSet[str]
) -> bool:
    """Whether the request carries exactly one ``x-api-key`` header (any case) and its value is
    one of ``keys``.  API Gateway answers anything else with 403 Forbidden."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    supplied = [value for name, value in pairs if name.strip().lower() == "x-api-key"]
    if len(supplied) != 1:
        return False
    given = supplied[0].encode("utf-8")
    # a list, not a generator: every key is compared, so the time taken does not tell which matched
    matches = [hmac.compare_digest(given, key.encode("utf-8")) for key in keys]
    return any(matches)


# -- the front door ---------------------------------------------------------------------------


async def handle(
    request: HttpRequest,
    router: Router,
    invoke: Invoke,
    api_keys: Collection[str] | None = None,
    now_ms: Callable[[], int] = wall_clock_ms,
    *,
    api: ApiInfo | None = None,
    new_ids: Callable[[], RequestIds] = random_ids,
) -> HttpResponse:
    """Serve one request through API Gateway's Lambda proxy integration.

    ``api_keys`` are the keys accepted in ``x-api-key`` on routes that require one (None: no
    key is valid); the request must carry exactly one such header (``check_api_key``).
    ``now_ms`` stamps a request that carries no ``time_epoch_ms``; ``api`` and ``new_ids``
    fill the event's API and request ids; every answer to a matched route carries the same
    request ids in its headers (``request_id_headers``).  ``invoke`` may raise
    TooManyRequestsException (429); any other WarmstartError (an unknown function, ...) is the
    gateway's 500, and a payload over Lambda's limit is a 413.
    """
    match = router.match(request.method, request.raw_path)
    if match is None:
        return not_found()
    ids = new_ids()
    resp = await _serve(request, match, invoke, api_keys, now_ms, api or _DEFAULT_API, ids)
    return with_request_ids(resp, match.route.payload_format, ids)


async def _serve(
    request: HttpRequest,
    match: RouteMatch,
    invoke: Invoke,
    api_keys: Collection[str] | None,
    now_ms: Callable[[], int],
    api: ApiInfo,
    ids: RequestIds,
) -> HttpResponse:
    route = match.route
    if route.api_key_required and not check_api_key(request.headers, frozenset(api_keys or ())):
        return forbidden()
    time_ms = request.time_epoch_ms if request.time_epoch_ms is not None else now_ms()
    event = build_event(request, match, api, ids, time_ms)
    try:
        outcome = await asyncio.wait_for(
            invoke(route.function, orjson.dumps(event)), route.timeout_ms / 1000
        )
    except asyncio.TimeoutError:
        return timed_out()
    except TooManyRequestsException:
        return throttled()
    except RequestTooLargeException:
        return gateway_error(413, "Request Entity Too Large")
    except WarmstartError:
        return gateway_error(500, "Internal server error")
    if outcome.function_error:
        return bad_gateway()
    if route.payload_format == "1.0":
        return response_v1(outcome.payload)
    return response_v2(outcome.payload)


def request_id_headers(payload_format: str, ids: RequestIds) -> list[tuple[str, str]]:
    """The ids API Gateway answers with: an HTTP API's ``apigw-requestid``; a REST API's
    ``x-amzn-RequestId`` and ``x-amz-apigw-id`` (the event's ``extendedRequestId``)."""
    if payload_format == "1.0":
        return [("x-amzn-RequestId", ids.request_id), ("x-amz-apigw-id", ids.extended_request_id)]
    return [("apigw-requestid", ids.request_id)]


def with_request_ids(resp: HttpResponse, payload_format: str, ids: RequestIds) -> HttpResponse:
    """``resp`` with the gateway's request-id headers; a function's own headers of those names
    are dropped, so the caller always sees the id the event carried."""
    ours = request_id_headers(payload_format, ids)
    names = {name.lower() for name, _ in ours}
    kept = [(name, value) for name, value in resp.headers if name.lower() not in names]
    return HttpResponse(resp.status, [*kept, *ours], resp.body)
