"""``GET /warmstart/logs/{name}?follow=1``: a function's log, streamed as invocations end.

While at least one client follows, one listener sits in ``engine.log_listeners`` and hands
each finished invocation's log text to the queues of that function's followers (the engine
formats log text only while a listener exists, so nothing is paid when nobody follows).  A
follower too slow to keep up loses entries and is told how many.  ``close`` ends every stream
(graceful shutdown must not wait for clients that would follow forever).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from ..engine import Engine

#: entries a follower may fall behind before losing some
QUEUE_SIZE = 1000
#: how often a quiet stream checks that its client is still there
PROBE_S = 2.0


class _Follower:
    __slots__ = ("dropped", "name", "queue")

    def __init__(self, name: str) -> None:
        self.name = name
        self.queue: asyncio.Queue[str | None] = asyncio.Queue(QUEUE_SIZE)
        self.dropped = 0

    def put(self, text: str | None) -> None:
        try:
            self.queue.put_nowait(text)
        except asyncio.QueueFull:
            if text is None:  # the end must get through: make room for it
                self.queue.get_nowait()
                self.queue.put_nowait(None)
            else:
                self.dropped += 1


async def _next(request: web.Request, follower: _Follower) -> str | None:
    """The next entry, or None when the stream ends (closed, or the client went away)."""
    while True:
        try:
            return await asyncio.wait_for(follower.queue.get(), PROBE_S)
        except asyncio.TimeoutError:
            transport = request.transport
            if transport is None or transport.is_closing():
                return None


class LogFollowers:
    """The clients following logs of ``engine``'s functions."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._followers: set[_Follower] = set()
        self._closed = False

    def _on_log(self, name: str, text: str) -> None:
        for follower in self._followers:
            if follower.name == name:
                follower.put(text)

    def _add(self, follower: _Follower) -> None:
        if not self._followers:
            self.engine.log_listeners.append(self._on_log)
        self._followers.add(follower)

    def _remove(self, follower: _Follower) -> None:
        self._followers.discard(follower)
        if not self._followers and self._on_log in self.engine.log_listeners:
            self.engine.log_listeners.remove(self._on_log)

    async def stream(self, request: web.Request, name: str, backlog: str) -> web.StreamResponse:
        """Send ``backlog``, then each new entry of ``name`` until the client or server leaves."""
        response = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        if self._closed:
            await response.write_eof()
            return response
        follower = _Follower(name)
        self._add(follower)
        try:
            if backlog:
                await response.write(backlog.encode())
            while (text := await _next(request, follower)) is not None:
                if follower.dropped:
                    notice = f"[warmstart: {follower.dropped} log entries dropped]\n"
                    follower.dropped = 0
                    await response.write(notice.encode())
                await response.write(text.encode())
        finally:
            self._remove(follower)
        await response.write_eof()
        return response

    def close(self) -> None:
        """End every stream; later ones end at once."""
        self._closed = True
        for follower in list(self._followers):
            follower.put(None)
