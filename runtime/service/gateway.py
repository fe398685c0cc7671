"""What a config's ``[auth]`` and ``[routes]`` turn into: the service's two hooks.

``authenticator(auth)`` verifies SigV4 on every AWS-style operation when access keys are
configured; ``front_door(engine, config)`` serves the API Gateway routes, reading each body
within ``[service].route_body_limit_bytes`` before building the event.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timezone

from aiohttp import web

from ..configfile import AuthConfig, ConfigFile
from ..engine import Engine
from ..errors import RequestTooLargeException
from .apigw import (
    ApiInfo,
    Route,
    Router,
    engine_invoke,
    from_aiohttp,
    gateway_error,
    handle,
    to_aiohttp,
)
from .auth import verify_sigv4
from .body import read_body
from .lambda_api import Authenticate


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
