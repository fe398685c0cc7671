"""The HTTP front's connection rules: timeouts, a cap on open connections, terse bad requests.

aiohttp parses requests inside its protocol (``RequestHandler``); ``Connection`` is that
protocol with a clock per phase of the request it is receiving:

    accept ──▶ waiting ── a byte ──▶ headers ── headers done ──▶ body ── body done ──▶ handling
                 │ ▲                   │                          │                      │
                 │ └──────────────── response written ◀───────────┴──────────────────────┘
                 ▼                     ▼                          ▼
       header_timeout_s (first     header_timeout_s:          body_timeout_s without a
       request) or aiohttp's       408, close                 byte: 408, close (closed
       keepalive_timeout_s: close                             only, once a response began)

Handling has no clock: a request may take as long as its function does.  A 408 (or a 400
for a body whose framing breaks) goes out only while the handler still waits for the body, and
that handler is cancelled: handlers read their body before they act.  ``ConnectionGuard``
keeps the open connections; at ``max_connections`` a new one closes the connection idle the
longest, and is itself closed when none is idle.  A malformed request is logged on one line.
``ServiceRunner`` is aiohttp's ``AppRunner`` making these connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Iterator
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.streams import StreamReader

from ..configfile import ServiceConfig

__all__ = [
    "REQUEST_TIMEOUT",
    "Connection",
    "ConnectionGuard",
    "Phase",
    "ServiceRunner",
    "cancelled_on_disconnect",
    "default_max_connections",
]

log = logging.getLogger("warmstart.service")

REQUEST_TIMEOUT = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
#: the cap when the open-file limit does not impose a lower one
MAX_CONNECTIONS = 512


def default_max_connections() -> int:
    """512, or half the soft open-file limit when that is lower: the other half is left to
    the listening socket, the workers' pipes and the store."""
    try:
        import resource
    except ImportError:  # not on Unix: no limit to read
        return MAX_CONNECTIONS
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS
    return max(1, min(MAX_CONNECTIONS, soft // 2))


class Phase(enum.Enum):
    """Where a connection is in receiving its latest request."""

    WAITING = "waiting"  # no byte of a next request yet
    HEADERS = "headers"
    BODY = "body"
    HANDLING = "handling"  # received in full; its response is not written yet


class ConnectionGuard:
    """The open connections of one server, and the cap on them."""

    def __init__(self, max_connections: int) -> None:
        self.max_connections = max_connections
        self._open: dict[Connection, None] = {}  # insertion-ordered set
        self.evicted = 0
        self.refused = 0

    def __repr__(self) -> str:
        idle = sum(1 for conn in self._open if conn.idle)
        return (
            f"<ConnectionGuard open={len(self._open)} idle={idle} max={self.max_connections} "
            f"evicted={self.evicted} refused={self.refused}>"
        )

    def __len__(self) -> int:
        return len(self._open)

    def admit(self, conn: Connection) -> bool:
        """Count ``conn`` in; at the cap, close the connection idle the longest for it.
        False (and ``conn`` is not counted) when every open connection is busy."""
        if len(self._open) >= self.max_connections:
            idle = [other for other in self._open if other.idle]
            if not idle:
                self.refused += 1
                return False
            victim = min(idle, key=lambda other: other.idle_since)
            self.release(victim)  # now, not when its close completes: the next one counts it
            victim.force_close()
            self.evicted += 1
        self._open[conn] = None
        return True

    def release(self, conn: Connection) -> None:
        self._open.pop(conn, None)


class Connection(web.RequestHandler):
    """aiohttp's HTTP/1.1 protocol with the service's timeouts (see the module's picture).

    Reads a few of its base class's attributes (``_messages``, the parsed requests not yet
    handled; ``_request_count``; ``_task_handler``, the task serving them; ``_reading_paused``):
    aiohttp offers no hook where the parser finishes a request's headers or body.
    """

    def __init__(
        self, manager: web.Server, *, guard: ConnectionGuard, settings: ServiceConfig, **kwargs: Any
    ) -> None:
        super().__init__(manager, **kwargs)
        self._guard = guard
        self._header_timeout = settings.header_timeout_s
        self._body_timeout = settings.body_timeout_s
        self.phase = Phase.WAITING
        self.idle_since = self._loop.time()
        # requests are answered in the order they were parsed: the latest one, number
        # self._request_count, was answered when as many responses were written
        self._served = 0  # responses written
        self._began = 0  # the number of the last request whose response began
        self._since = self.idle_since  # when the current phase's clock started
        self._body: StreamReader | None = None  # the latest request's body
        self._pending = False  # bytes of a next request came while one was handled
        self._timer: asyncio.TimerHandle | None = None
        self._cancel_on_loss = 0  # > 0: a disconnect cancels the handler

    @property
    def idle(self) -> bool:
        """Open, between requests, no byte of a next one received."""
        return self.transport is not None and self.phase is Phase.WAITING and not self._messages

    # -- aiohttp's protocol events -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if not self._guard.admit(self):
            self.force_close()
            return
        self._arm(self.idle_since + self._header_timeout)

    def connection_lost(self, exc: BaseException | None) -> None:
        task = self._task_handler
        super().connection_lost(exc)
        self._guard.release(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._cancel_on_loss and task is not None:
            task.cancel()  # as aiohttp's handler_cancellation does, for this request only

    def data_received(self, data: bytes) -> None:
        parsed = self._request_count
        super().data_received(data)
        if self.transport is None:
            return
        now = self._loop.time()
        if self._request_count != parsed and self._messages:
            if self.phase is Phase.BODY and self._body is not None and not self._body.is_eof():
                # the parser gave up inside the body: what it queued is its error
                self._malformed_body(self._messages[-1][0])
                return
            self._body = self._messages[-1][1]
            self._enter(Phase.HANDLING if self._body.is_eof() else Phase.BODY, now)
        elif not data:
            return  # aiohttp re-parsing what it buffered: nothing arrived
        elif self.phase is Phase.WAITING:
            self._enter(Phase.HEADERS, now)
        elif self.phase is Phase.BODY:
            self._since = now
            if self._body is not None and self._body.is_eof():
                self._received(now)
        elif self.phase is Phase.HANDLING:
            self._pending = True

    async def finish_response(
        self, request: web.BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        result = await super().finish_response(request, resp, start_time)
        self._served += 1
        if not request.content.is_eof() and not resp.keep_alive:
            # refused before its body was read: close now rather than read the rest to discard
            self.force_close()
        elif self._answered and self.phase is Phase.HANDLING:
            self._received(self._loop.time())
        return result

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if not isinstance(exc, HttpProcessingError):
            return super().handle_error(request, status, exc, message)
        _log_bad_request(self.peername, _reason(exc))
        title = f"{status} {HTTPStatus(status).phrase}"
        resp = web.Response(status=status, text=f"{title}\n\n{_reason(exc)}\n")
        resp.force_close()
        return resp

    # -- the service's hooks -----------------------------------------------------------------

    def responding(self) -> None:
        """The response to the request being handled began (before its headers are sent)."""
        self._began = self._served + 1

    @property
    def _answered(self) -> bool:
        return self._served >= self._request_count

    # -- clocks ------------------------------------------------------------------------------

    def _received(self, now: float) -> None:
        """The latest request is in: handled next, or done with when it was answered early."""
        if not self._answered:
            self._enter(Phase.HANDLING, now)
        else:
            self._enter(Phase.HEADERS if self._pending else Phase.WAITING, now)

    def _enter(self, phase: Phase, now: float) -> None:
        self.phase = phase
        self._since = now
        if phase is Phase.WAITING:
            self.idle_since = now
        elif phase is Phase.HEADERS:
            self._pending = False
            # aiohttp's keep-alive timer would close it silently; the header clock answers 408
            self.keep_alive(True)
            self._arm(now + self._header_timeout)
        elif phase is Phase.BODY:
            self._arm(now + self._body_timeout)

    def _deadline(self) -> float | None:
        if self.phase is Phase.WAITING:
            # a connection that never sent a request has the headers' time to start one;
            # between requests aiohttp's keep-alive timer closes it
            return self.idle_since + self._header_timeout if self._served == 0 else None
        if self.phase is Phase.HEADERS:
            return self._since + self._header_timeout
        if self.phase is Phase.BODY:
            return self._since + self._body_timeout
        return None

    def _arm(self, deadline: float) -> None:
        if self._timer is not None:
            if self._timer.when() <= deadline:
                return  # it fires first and re-arms for the later deadline
            self._timer.cancel()
        self._timer = self._loop.call_at(deadline, self._expire)

    def _expire(self) -> None:
        self._timer = None
        deadline = self._deadline()
        if deadline is None or self.transport is None:
            return
        now = self._loop.time()
        if self.phase is Phase.BODY and self._reading_paused:
            # the handler has not taken what arrived yet: the client is not the one waiting
            self._since = now
            deadline = now + self._body_timeout
        if now < deadline:
            self._arm(deadline)
            return
        self._timed_out()

    def _timed_out(self) -> None:
        if self.phase is Phase.HEADERS or self._body_awaited(self._request_count):
            self._answer_and_close(REQUEST_TIMEOUT)
        else:
            self.force_close()

    def _malformed_body(self, error: object) -> None:
        """aiohttp answers a body's framing error only after the request waiting for that
        body, which never comes: answer 400 for it now."""
        exc = getattr(error, "exc", None)
        reason = _reason(exc) if isinstance(exc, HttpProcessingError) else "malformed body"
        _log_bad_request(self.peername, reason)
        if self._body_awaited(self._request_count - 1):
            self._answer_and_close(BAD_REQUEST)
        else:
            self.force_close()

    def _body_awaited(self, number: int) -> bool:
        """Whether request ``number``, whose body is incomplete, is the one being handled and
        no response to it began."""
        return (
            self._served + 1 == number
            and self._began < number
            and len(self._messages) <= (self._request_count - number)
        )

    def _answer_and_close(self, answer: bytes) -> None:
        assert self.transport is not None
        self.transport.write(answer)
        # handlers read their body before they act: one still waiting for it has done nothing
        self._cancel_on_loss += 1
        self.force_close()


def _log_bad_request(peername: Any, reason: str) -> None:
    # a malformed request is the client's mistake: one line, not a traceback
    log.warning("warmstart: bad request from %s: %s", _peer(peername), reason)


def _peer(peername: Any) -> str:
    if isinstance(peername, tuple) and len(peername) >= 2:
        host, port = peername[0], peername[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(peername or "unknown")


def _reason(exc: HttpProcessingError) -> str:
    """The parser's message without the raw bytes and caret it appends on later lines."""
    first = (exc.message or type(exc).__name__).strip().splitlines()[0]
    return first.rstrip(":").strip()


@contextlib.contextmanager
def cancelled_on_disconnect(request: web.BaseRequest) -> Iterator[None]:
    """Within this block, a client that disconnects cancels the handler serving ``request``
    (aiohttp's ``handler_cancellation``, for the handlers that only wait, such as Invoke).

    Without a ``Connection`` (a server not made by ``ServiceRunner``) it does nothing.
    """
    conn = request.protocol
    if not isinstance(conn, Connection):
        yield
        return
    conn._cancel_on_loss += 1
    try:
        yield
    finally:
        conn._cancel_on_loss -= 1


async def _responding(request: web.Request, response: web.StreamResponse) -> None:
    conn = request.protocol
    if isinstance(conn, Connection):
        conn.responding()


class _Server(web.Server):
    """aiohttp's low-level server, making ``Connection`` protocols."""

    def __init__(
        self, base: web.Server, guard: ConnectionGuard, settings: ServiceConfig, **kwargs: Any
    ) -> None:
        super().__init__(
            base.request_handler,
            request_factory=base.request_factory,
            loop=asyncio.get_running_loop(),
            **kwargs,
        )
        self.guard = guard
        self.settings = settings

    def __call__(self) -> Connection:
        return Connection(
            self, loop=self._loop, guard=self.guard, settings=self.settings, **self._kwargs
        )


class ServiceRunner(web.AppRunner):
    """An ``AppRunner`` whose connections keep ``settings``' timeouts and connection cap."""

    def __init__(self, app: web.Application, settings: ServiceConfig) -> None:
        self._handler_kwargs: dict[str, Any] = {
            "access_log": None,
            "keepalive_timeout": settings.keepalive_timeout_s,
        }
        super().__init__(
            app,
            handle_signals=False,
            shutdown_timeout=settings.shutdown_timeout_s,
            **self._handler_kwargs,
        )
        self.settings = settings
        cap = settings.max_connections or default_max_connections()
        self.guard = ConnectionGuard(cap)

    async def _make_server(self) -> web.Server:
        # aiohttp makes each connection's protocol in Server.__call__: the one place to
        # give connections a class of our own
        self._app.on_response_prepare.append(_responding)
        base = await super()._make_server()
        return _Server(base, self.guard, self.settings, **self._handler_kwargs)
