"""API Gateway routes: route keys, path templates and the precedence rules of matching.

A route key is ``"METHOD /path"`` (``GET /hello``, ``ANY /items/{id}``, ``ANY /{proxy+}``) or
``$default``.  For a request, the most specific route wins:

1. an exact path beats a path with variables, which beats a greedy ``{proxy+}`` path;
2. between two templates of the same kind, the one whose leftmost differing segment is more
   specific (a literal beats a variable, a variable beats a greedy tail);
3. for the same path, a route naming the method beats ``ANY``;
4. ``$default`` catches whatever nothing else matched.

Path parameter values are percent-decoded, one segment at a time, so an encoded slash stays
inside its parameter; ``{proxy+}`` captures the rest of the path, slashes included.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import NamedTuple, NoReturn
from urllib.parse import unquote

DEFAULT_ROUTE = "$default"
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "ANY"})
PAYLOAD_FORMATS = ("1.0", "2.0")
#: API Gateway's integration timeout: 50 ms to 29 s, 29 s unless configured
TIMEOUT_MS_RANGE = (50, 29_000)
DEFAULT_TIMEOUT_MS = 29_000

LITERAL, VARIABLE, GREEDY = 0, 1, 2
#: a route's kind, the first precedence key
EXACT, TEMPLATE, GREEDY_TEMPLATE, CATCH_ALL = 0, 1, 2, 3

_VARIABLE_RE = re.compile(r"\{([A-Za-z0-9._-]+)(\+?)\}")
_LITERAL_RE = re.compile(r"[^{}\s?#]+")


class Segment(NamedTuple):
    """One segment of a path template: a literal, a ``{variable}`` or a greedy ``{name+}``."""

    kind: int
    text: str


@dataclass(frozen=True)
class RouteKey:
    """A parsed route key.  ``method`` and ``path`` are empty for ``$default``."""

    key: str
    method: str
    path: str
    segments: tuple[Segment, ...]

    @property
    def kind(self) -> int:
        if self.key == DEFAULT_ROUTE:
            return CATCH_ALL
        kinds = {segment.kind for segment in self.segments}
        if GREEDY in kinds:
            return GREEDY_TEMPLATE
        return TEMPLATE if VARIABLE in kinds else EXACT

    def shape(self) -> tuple[str, tuple[Segment, ...]]:
        """What two keys that would always match the same requests have in common."""
        blanked = tuple(s if s.kind == LITERAL else Segment(s.kind, "") for s in self.segments)
        return self.method, blanked

    def precedence(self) -> tuple[int, tuple[int, ...], bool]:
        """Sort key: smaller is more specific (see the module docstring)."""
        return (self.kind, tuple(s.kind for s in self.segments), self.method == "ANY")

    def match(self, method: str, raw_segments: list[str]) -> dict[str, str] | None:
        """Path parameters if this key matches the request, else None."""
        if self.key == DEFAULT_ROUTE:
            return {}
        if self.method not in ("ANY", method):
            return None
        return _match_segments(self.segments, raw_segments)


def _match_segments(template: tuple[Segment, ...], raw: list[str]) -> dict[str, str] | None:
    params: dict[str, str] = {}
    for i, segment in enumerate(template):
        if segment.kind == GREEDY:
            rest = "/".join(unquote(part) for part in raw[i:])
            if not rest:
                return None
            params[segment.text] = rest
            return params
        if i >= len(raw) or not raw[i]:
            return None
        value = unquote(raw[i])
        if segment.kind == LITERAL:
            if value != segment.text:
                return None
        else:
            params[segment.text] = value
    return params if len(raw) == len(template) else None


def parse_route_key(key: str) -> RouteKey:
    """Parse ``"METHOD /path"`` or ``$default``; a ValueError names the key and the reason."""
    if key == DEFAULT_ROUTE:
        return RouteKey(key, "", "", ())
    method, sep, path = key.partition(" ")
    if not sep:
        _invalid(key, "expected 'METHOD /path' or '$default'")
    if method not in METHODS:
        _invalid(key, f"method {method!r} is not one of {', '.join(sorted(METHODS))}")
    if not path.startswith("/"):
        _invalid(key, "the path must start with '/'")
    return RouteKey(key, method, path, _parse_path(key, path))


def _parse_path(key: str, path: str) -> tuple[Segment, ...]:
    if path == "/":
        return ()
    parts = path[1:].split("/")
    segments = tuple(_parse_segment(key, part) for part in parts)
    names = [s.text for s in segments if s.kind != LITERAL]
    if len(names) != len(set(names)):
        _invalid(key, "a path variable name appears twice")
    if any(s.kind == GREEDY for s in segments[:-1]):
        _invalid(key, "a greedy variable {name+} must be the last segment")
    return segments


def _parse_segment(key: str, part: str) -> Segment:
    if not part:
        _invalid(key, "the path has an empty segment")
    variable = _VARIABLE_RE.fullmatch(part)
    if variable:
        return Segment(GREEDY if variable.group(2) else VARIABLE, variable.group(1))
    if not _LITERAL_RE.fullmatch(part):
        _invalid(key, f"segment {part!r} must be a literal or a whole {{variable}}")
    return Segment(LITERAL, part)


def _invalid(key: str, reason: str) -> NoReturn:
    raise ValueError(f"invalid route key {key!r}: {reason}")


@dataclass(frozen=True)
class Route:
    """A route and its Lambda integration.

    ``payload_format`` is "1.0" (REST API proxy event) or "2.0" (HTTP API event);
    ``timeout_ms`` is the integration timeout (50-29000).
    """

    key: str
    function: str
    payload_format: str = "2.0"
    api_key_required: bool = False
    timeout_ms: int = DEFAULT_TIMEOUT_MS
    parsed: RouteKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "parsed", parse_route_key(self.key))
        if not self.function:
            _invalid(self.key, "the route names no function")
        if self.payload_format not in PAYLOAD_FORMATS:
            _invalid(self.key, f"payload_format {self.payload_format!r} is not '1.0' or '2.0'")
        low, high = TIMEOUT_MS_RANGE
        timeout = self.timeout_ms
        if isinstance(timeout, bool) or not isinstance(timeout, int) or not low <= timeout <= high:
            _invalid(self.key, f"timeout_ms {timeout!r} is outside the allowed range {low}-{high}")


@dataclass(frozen=True)
class RouteMatch:
    """The route a request matched, with its decoded path parameters."""

    route: Route
    path_parameters: dict[str, str]


class Router:
    """Matches (method, raw path) to the most specific route, API Gateway's way."""

    def __init__(self, routes: list[Route] | tuple[Route, ...] = ()) -> None:
        self._routes: list[Route] = []
        for route in routes:
            self.add(route)

    def add(self, route: Route) -> None:
        """Add a route; a ValueError if an existing route matches exactly the same requests."""
        for other in self._routes:
            if other.parsed.shape() == route.parsed.shape():
                reason = "the route is defined twice"
                if other.key != route.key:
                    reason = f"it matches exactly the same requests as {other.key!r}"
                _invalid(route.key, reason)
        self._routes.append(route)
        self._routes.sort(key=lambda r: r.parsed.precedence())

    @property
    def routes(self) -> list[Route]:
        """The routes, most specific first."""
        return list(self._routes)

    def match(self, method: str, raw_path: str) -> RouteMatch | None:
        """The winning route for a request, or None (API Gateway answers 404)."""
        raw_segments = raw_path.split("/")[1:] if raw_path != "/" else []
        for route in self._routes:
            if not raw_path.startswith("/") and route.parsed.kind != CATCH_ALL:
                continue  # "OPTIONS *": only $default can take it
            params = route.parsed.match(method, raw_segments)
            if params is not None:
                return RouteMatch(route, params)
        return None

    def __repr__(self) -> str:
        return f"<Router {len(self._routes)} routes>"
