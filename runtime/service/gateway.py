"""What a config's ``[auth]`` and ``[routes]`` turn into: the service's two hooks.

``authenticator(auth)`` verifies SigV4 on every AWS-style operation when access keys are
configured; ``front_door(engine, config)`` serves the API Gateway routes, reading each body
within ``[service].route_body_limit_bytes`` before building the event.

The routes themselves are served by :mod:`runtime.apigw`, which knows no web server; this
module is its aiohttp side::

    web.Request ─ read_body ─▶ from_aiohttp ─▶ apigw.handle(HttpRequest, router, invoke)
                                                   │ engine_invoke(engine): engine.invoke
    web.Response ◀─ to_aiohttp ◀─ HttpResponse ◀───┘
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from urllib.parse import quote

from aiohttp import web
from multidict import CIMultiDict

from ..apigw import (
    ApiInfo,
    HttpRequest,
    HttpResponse,
    Invoke,
    InvokeOutcome,
    Route,
    Router,
    gateway_error,
    handle,
    wall_clock_ms,
)
from ..configfile import AuthConfig, ConfigFile
from ..engine import Engine
from ..errors import RequestTooLargeException
from .auth import verify_sigv4
from .body import read_body
from .protocol import Authenticate

__all__ = [
    "FrontDoor",
    "authenticator",
    "engine_invoke",
    "from_aiohttp",
    "front_door",
    "to_aiohttp",
]

#: hop-by-hop and framing headers a function may not set: the server frames the response
_FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding", "connection"})
#: what a request target may hold as it is; anything else is percent-encoded
_URL_SAFE = "".join(chr(c) for c in range(0x21, 0x7F))


def authenticator(auth: AuthConfig) -> Authenticate | None:
    """SigV4 against ``auth.keys``; None (no checks) when no keys are configured."""
    if not auth.keys:
        return None
    keys = dict(auth.keys)

    async def authenticate(request: web.Request, body: bytes) -> None:
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers]
        verify_sigv4(
            request.method, request.raw_path, "", headers, body, keys, datetime.now(timezone.utc)
        )

    return authenticate


FrontDoor = Callable[[web.Request], Awaitable[web.StreamResponse]]
TOO_LARGE = gateway_error(413, "Request Entity Too Large")


def front_door(engine: Engine, config: ConfigFile) -> FrontDoor | None:
    """The API Gateway routes of ``config``; None when it has none."""
    if not config.routes:
        return None
    router = Router(
        [
            Route(key, r.function, r.payload_format, r.api_key_required, r.timeout_ms)
            for key, r in config.routes.items()
        ]
    )
    api_keys = frozenset(config.auth.api_keys)
    invoke = engine_invoke(engine)
    limit = config.service.route_body_limit_bytes
    # the account of the events is the one in the function ARNs they are sent to
    api = ApiInfo(account_id=engine.pool.account_id)

    async def serve_route(request: web.Request) -> web.StreamResponse:
        try:
            body = await read_body(request, limit)
        except RequestTooLargeException:
            return to_aiohttp(TOO_LARGE)
        resp = await handle(from_aiohttp(request, body), router, invoke, api_keys, api=api)
        return to_aiohttp(resp)

    return serve_route


def engine_invoke(engine: Engine) -> Invoke:
    """An ``invoke`` for ``apigw.handle``: a RequestResponse ``engine.invoke`` of the function."""

    async def invoke(function: str, payload: bytes) -> InvokeOutcome:
        result = await engine.invoke(function, payload)
        return InvokeOutcome(result.payload, result.function_error)

    return invoke


# -- aiohttp adapters -------------------------------------------------------------------------


def from_aiohttp(
    request: web.BaseRequest, body: bytes, now_ms: Callable[[], int] = wall_clock_ms
) -> HttpRequest:
    """The neutral request for an aiohttp request whose body has been read.

    Bytes that are not printable ASCII in the path or query are percent-encoded and header
    bytes that are not UTF-8 replaced: aiohttp's pure-Python parser hands them over as lone
    surrogates, which no JSON event can carry.
    """
    path, _, query = request.raw_path.partition("?")
    if not path.startswith("/"):  # absolute-form request target
        path, query = request.rel_url.raw_path, request.rel_url.raw_query_string
    headers = [
        (name.decode("utf-8", "replace"), value.decode("utf-8", "replace"))
        for name, value in request.raw_headers
    ]
    version = request.version
    return HttpRequest(
        method=request.method,
        raw_path=_url_text(path),
        raw_query=_url_text(query.partition("#")[0]),
        headers=headers,
        body=body,
        source_ip=request.remote or "127.0.0.1",  # no peer address: a unix socket, this host
        time_epoch_ms=now_ms(),
        host=_first(headers, "host") or _url_text(request.host),
        protocol=f"HTTP/{version.major}.{version.minor}",
        user_agent=_first(headers, "user-agent") or "",
        scheme=request.scheme,
        server_port=_listening_port(request),
    )


def _url_text(text: str) -> str:
    return quote(text.encode("utf-8", "surrogateescape"), safe=_URL_SAFE)


def _first(headers: list[tuple[str, str]], name: str) -> str | None:
    return next((value for key, value in headers if key.lower() == name), None)


def _listening_port(request: web.BaseRequest) -> int:
    """The port the server accepted the connection on; behind a unix socket (no port), the
    port the client addressed (the Host header's, else the scheme's default)."""
    transport = request.transport
    sockname = transport.get_extra_info("sockname") if transport is not None else None
    if isinstance(sockname, tuple) and len(sockname) >= 2 and isinstance(sockname[1], int):
        return sockname[1]
    return request.url.port or (443 if request.scheme == "https" else 80)


def to_aiohttp(resp: HttpResponse) -> web.Response:
    """An aiohttp response; repeated headers (Set-Cookie) stay repeated."""
    headers = CIMultiDict(
        (name, value) for name, value in resp.headers if name.lower() not in _FRAMING_HEADERS
    )
    return web.Response(status=resp.status, body=resp.body, headers=headers)
