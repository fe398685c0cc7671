"""API Gateway's Lambda proxy integration, free of any web server: routes in, events out,
function results back as HTTP responses.

::

    configfile [routes."GET /pets/{id}"] ── routes.parse_route_key ──▶ routes.Route
                                                                           │
    HttpRequest ─▶ proxy.handle ── routes.Router.match ──▶ RouteMatch ─────┘
                      │ proxy.check_api_key (routes that require a key)
                      ├─▶ events.build_event (payload format 1.0 or 2.0) ─▶ invoke(function, bytes)
                      └─▶ proxy.response_v1 / response_v2 ─▶ HttpResponse (+ the request's ids)

- :mod:`.routes`: route keys, path templates and the precedence of matching;
- :mod:`.events`: :class:`~.events.HttpRequest` and the proxy events built from it;
- :mod:`.proxy`: :func:`~.proxy.handle`, the API key check and the mapping of a function's
  result to an :class:`~.proxy.HttpResponse`, with the gateway's own errors.

Nothing here imports aiohttp or the service: ``service.gateway`` reads an aiohttp request
into an ``HttpRequest``, passes an ``invoke`` that calls the engine, and writes the
``HttpResponse`` back.
"""

from .events import (
    ApiInfo,
    HttpRequest,
    RequestIds,
    build_event,
    build_event_v1,
    build_event_v2,
    format_request_time,
    is_text_type,
    random_ids,
    wall_clock_ms,
)
from .proxy import (
    HttpResponse,
    Invoke,
    InvokeOutcome,
    check_api_key,
    gateway_error,
    handle,
    request_id_headers,
    response_v1,
    response_v2,
    with_request_ids,
)
from .routes import Route, RouteKey, RouteMatch, Router, parse_route_key

__all__ = [
    "ApiInfo",
    "HttpRequest",
    "HttpResponse",
    "Invoke",
    "InvokeOutcome",
    "RequestIds",
    "Route",
    "RouteKey",
    "RouteMatch",
    "Router",
    "build_event",
    "build_event_v1",
    "build_event_v2",
    "check_api_key",
    "format_request_time",
    "gateway_error",
    "handle",
    "is_text_type",
    "parse_route_key",
    "random_ids",
    "request_id_headers",
    "response_v1",
    "response_v2",
    "wall_clock_ms",
    "with_request_ids",
]
