"""API Gateway's Lambda proxy events, payload formats 1.0 and 2.0, built from a neutral request.

    HttpRequest ──(route match)──▶ build_event ──▶ 1.0: REST API proxy event
                                                └─▶ 2.0: HTTP API event

The shapes are AWS's documented examples field for field (tests/service/test_apigw.py holds them
as literals).  The rules that are easy to get wrong:

- 1.0 ``headers`` / ``queryStringParameters`` keep the *last* value of a repeated name, the
  ``multiValue*`` maps keep all of them; an absent query string or path parameter map is
  ``null``, never ``{}``; ``stageVariables`` is ``null``.
- 2.0 lower-cases header names and joins repeated values with commas, joins repeated query
  parameters with commas, moves ``Cookie`` headers into ``cookies``, and *omits* empty maps.
- A body is base64-encoded (``isBase64Encoded: true``) when it is not UTF-8 or its content type
  is not text-like; otherwise it is passed as a string.
- The gateway adds ``X-Forwarded-For`` (the client's own chain with the TCP peer appended:
  "client, peer"), ``X-Forwarded-Port`` and ``X-Forwarded-Proto`` (where the front door
  listens, whatever the client claimed); ``sourceIp`` is the TCP peer, the chain's last address
  (and its only one when the client sent none), so a client cannot choose its own ``sourceIp``.
- 1.0's ``identity.apiKey`` / ``apiKeyId`` are the key and its id on routes that require one,
  ``null`` elsewhere.

Nothing here reads a clock or a random source: the request carries its time, and request ids are
passed in (``random_ids`` makes realistic ones).
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from .routes import DEFAULT_ROUTE, RouteMatch

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_TEXT_TYPES = frozenset(
    {
        "application/json",
        "application/javascript",
        "application/xml",
        "application/x-www-form-urlencoded",
        "application/graphql",
        "application/yaml",
        "application/x-yaml",
    }
)
_TEXT_SUFFIXES = ("+json", "+xml", "+yaml")
_IDENTITY_KEYS = (
    "accessKey",
    "accountId",
    "apiKey",
    "apiKeyId",
    "caller",
    "cognitoAuthenticationProvider",
    "cognitoAuthenticationType",
    "cognitoIdentityId",
    "cognitoIdentityPoolId",
    "principalOrgId",
    "sourceIp",
    "user",
    "userAgent",
    "userArn",
)

#: the headers the gateway sets itself, replacing (or, for X-Forwarded-For, extending) the client's
_FORWARDED = frozenset({"x-forwarded-for", "x-forwarded-port", "x-forwarded-proto"})

Headers = list[tuple[str, str]]


@dataclass(frozen=True)
class HttpRequest:
    """An HTTP request as the gateway saw it, independent of any web framework.

    ``raw_path`` keeps the client's percent-encoding; ``raw_query`` is the query string as
    received, without the ``?``; ``headers`` keeps the client's order, casing and repeats.
    ``time_epoch_ms`` is when the request arrived (None: ``handle`` stamps it).
    ``source_ip`` is the TCP peer; ``scheme`` and ``server_port`` say where the front door
    listens.  Strings are text without lone surrogates (``from_aiohttp`` sees to that).
    """

    method: str
    raw_path: str
    raw_query: str = ""
    headers: Headers = field(default_factory=list)
    body: bytes = b""
    source_ip: str = "127.0.0.1"
    time_epoch_ms: int | None = None
    host: str = "localhost"
    protocol: str = "HTTP/1.1"
    user_agent: str = ""
    scheme: str = "http"
    server_port: int = 80

    def header(self, name: str) -> str | None:
        """The last value of a header, matched case-insensitively."""
        wanted = name.lower()
        found = None
        for key, value in self.headers:
            if key.lower() == wanted:
                found = value
        return found


@dataclass(frozen=True)
class ApiInfo:
    """What the event says about the API itself."""

    #: PoolConfig's default account, so that events and function ARNs agree out of the box
    account_id: str = "000000000000"
    api_id: str = "warmstart"
    stage: str = "$default"


@dataclass(frozen=True)
class RequestIds:
    """The gateway's ids for one request: ``requestId`` and 1.0's ``extendedRequestId``."""

    request_id: str
    extended_request_id: str


def random_ids() -> RequestIds:
    """Ids shaped like AWS's: a UUID, and 16 base64 characters for the extended id."""
    return RequestIds(str(uuid.uuid4()), base64.b64encode(os.urandom(11)).decode())


def wall_clock_ms() -> int:
    """Milliseconds since the epoch, the clock ``requestTimeEpoch`` uses."""
    return time.time_ns() // 1_000_000


def format_request_time(epoch_ms: int) -> str:
    """``04/Mar/2020:19:15:17 +0000``, whatever the locale."""
    t = time.gmtime(epoch_ms // 1000)
    month = _MONTHS[t.tm_mon - 1]
    clock = f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
    return f"{t.tm_mday:02d}/{month}/{t.tm_year}:{clock} +0000"


def is_text_type(content_type: str) -> bool:
    """True for content types API Gateway passes as text (text/*, JSON, XML, forms, ...)."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media.startswith("text/") or media in _TEXT_TYPES or media.endswith(_TEXT_SUFFIXES)


def encode_body(body: bytes, content_type: str | None) -> tuple[str, bool]:
    """The event's ``body`` string and ``isBase64Encoded`` flag."""
    if content_type is None or is_text_type(content_type):
        try:
            return body.decode("utf-8"), False
        except UnicodeDecodeError:
            pass
    return base64.b64encode(body).decode("ascii"), True


def _domain(host: str) -> tuple[str, str]:
    """``domainName`` (the host without its port) and ``domainPrefix`` (its first label)."""
    name = host
    if name.startswith("["):
        name = name[: name.find("]") + 1]
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    return name, name.split(".", 1)[0]


def forwarded_headers(request: HttpRequest) -> Headers:
    """The client's headers as the gateway passes them on, X-Forwarded-* set by the gateway.

    The client's ``X-Forwarded-For`` chain is kept and the TCP peer appended ("client, peer"),
    in one header; the client's ``X-Forwarded-Port`` / ``X-Forwarded-Proto`` are replaced,
    since only the front door knows where it listens.
    """
    chain: list[str] = []
    rest: Headers = []
    for name, value in request.headers:
        lower = name.lower()
        if lower == "x-forwarded-for":
            if value.strip():
                chain.append(value.strip())
        elif lower not in _FORWARDED:
            rest.append((name, value))
    chain.append(request.source_ip)
    return [
        *rest,
        ("X-Forwarded-For", ", ".join(chain)),
        ("X-Forwarded-Port", str(request.server_port)),
        ("X-Forwarded-Proto", request.scheme),
    ]


def api_key_id(key: str) -> str:
    """An id for an API key, shaped like API Gateway's (10 lower-case letters and digits).

    It is derived from the key, so it stays the same across restarts, and the key cannot be
    read back from it (the id ends up in logs the key must stay out of).
    """
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return base64.b32encode(digest).decode("ascii").lower()[:10]


def _api_key(request: HttpRequest) -> str | None:
    # matched the way proxy.check_api_key matches it, so the event names the key it accepted
    return next(
        (value for name, value in request.headers if name.strip().lower() == "x-api-key"), None
    )


def _query_pairs(raw_query: str) -> list[tuple[str, str]]:
    return parse_qsl(raw_query, keep_blank_values=True)


def _grouped(pairs: Iterable[tuple[str, str]], *, fold_case: bool) -> dict[str, list[str]]:
    """Values by name, in order; with ``fold_case`` names compare case-insensitively and keep
    the casing of their first appearance."""
    groups: dict[str, list[str]] = {}
    names: dict[str, str] = {}
    for name, value in pairs:
        key = names.setdefault(name.lower(), name) if fold_case else name
        groups.setdefault(key, []).append(value)
    return groups


def build_event(
    request: HttpRequest, match: RouteMatch, api: ApiInfo, ids: RequestIds, time_ms: int
) -> dict[str, Any]:
    """The event for the matched route's payload format."""
    if match.route.payload_format == "1.0":
        return build_event_v1(request, match, api, ids, time_ms)
    return build_event_v2(request, match, api, ids, time_ms)


def build_event_v1(
    request: HttpRequest, match: RouteMatch, api: ApiInfo, ids: RequestIds, time_ms: int
) -> dict[str, Any]:
    """A REST API Lambda proxy event (payload format 1.0)."""
    route = match.route
    resource = route.parsed.path or DEFAULT_ROUTE
    headers = _grouped(forwarded_headers(request), fold_case=True)
    query = _grouped(_query_pairs(request.raw_query), fold_case=False)
    body: str | None = None  # no body is null, whatever the content type says
    is_base64 = False
    if request.body:
        body, is_base64 = encode_body(request.body, request.header("content-type"))
    return {
        "resource": resource,
        "path": request.raw_path,
        "httpMethod": request.method,
        "headers": {name: values[-1] for name, values in headers.items()},
        "multiValueHeaders": headers,
        "queryStringParameters": {k: v[-1] for k, v in query.items()} or None,
        "multiValueQueryStringParameters": query or None,
        "requestContext": _context_v1(request, match, api, ids, time_ms),
        "pathParameters": match.path_parameters or None,
        "stageVariables": None,
        "body": body,
        "isBase64Encoded": is_base64,
    }


def _context_v1(
    request: HttpRequest, match: RouteMatch, api: ApiInfo, ids: RequestIds, time_ms: int
) -> dict[str, Any]:
    resource = match.route.parsed.path or DEFAULT_ROUTE
    domain_name, domain_prefix = _domain(request.host)
    identity: dict[str, Any] = dict.fromkeys(_IDENTITY_KEYS)
    identity["sourceIp"] = request.source_ip
    identity["userAgent"] = request.user_agent
    key = _api_key(request) if match.route.api_key_required else None
    if key is not None:
        identity["apiKey"], identity["apiKeyId"] = key, api_key_id(key)
    stage_path = request.raw_path if api.stage == "$default" else f"/{api.stage}{request.raw_path}"
    return {
        "accountId": api.account_id,
        "apiId": api.api_id,
        "domainName": domain_name,
        "domainPrefix": domain_prefix,
        "extendedRequestId": ids.extended_request_id,
        "httpMethod": request.method,
        "identity": identity,
        "path": stage_path,
        "protocol": request.protocol,
        "requestId": ids.request_id,
        "requestTime": format_request_time(time_ms),
        "requestTimeEpoch": time_ms,
        "resourceId": None,
        "resourcePath": resource,
        "stage": api.stage,
    }


def build_event_v2(
    request: HttpRequest, match: RouteMatch, api: ApiInfo, ids: RequestIds, time_ms: int
) -> dict[str, Any]:
    """An HTTP API Lambda event (payload format 2.0); empty maps and lists are omitted."""
    cookies, headers = _split_cookies(forwarded_headers(request))
    joined = {name: ",".join(values) for name, values in _grouped(headers, fold_case=False).items()}
    query = _grouped(_query_pairs(request.raw_query), fold_case=False)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": match.route.key,
        "rawPath": request.raw_path,
        "rawQueryString": request.raw_query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = joined
    if query:
        event["queryStringParameters"] = {name: ",".join(v) for name, v in query.items()}
    event["requestContext"] = _context_v2(request, match.route.key, api, ids, time_ms)
    is_base64 = False
    if request.body:
        event["body"], is_base64 = encode_body(request.body, request.header("content-type"))
    if match.path_parameters:
        event["pathParameters"] = match.path_parameters
    event["isBase64Encoded"] = is_base64
    return event


def _split_cookies(headers: Headers) -> tuple[list[str], Headers]:
    """2.0's ``cookies`` (every Cookie header split at ';') and the other headers, lower-cased."""
    cookies: list[str] = []
    rest: Headers = []
    for name, value in headers:
        lower = name.lower()
        if lower == "cookie":
            cookies.extend(part.strip() for part in value.split(";") if part.strip())
        else:
            rest.append((lower, value))
    return cookies, rest


def _context_v2(
    request: HttpRequest, route_key: str, api: ApiInfo, ids: RequestIds, time_ms: int
) -> dict[str, Any]:
    domain_name, domain_prefix = _domain(request.host)
    return {
        "accountId": api.account_id,
        "apiId": api.api_id,
        "domainName": domain_name,
        "domainPrefix": domain_prefix,
        "http": {
            "method": request.method,
            "path": request.raw_path,
            "protocol": request.protocol,
            "sourceIp": request.source_ip,
            "userAgent": request.user_agent,
        },
        "requestId": ids.request_id,
        "routeKey": route_key,
        "stage": api.stage,
        "time": format_request_time(time_ms),
        "timeEpoch": time_ms,
    }
