"""Reading request bodies with a size cap, refusing oversized ones before they are read.

A declared ``Content-Length`` over the cap is refused at once, without reading a byte; a
chunked body (or one whose length lies) is counted as it streams and refused as soon as it
passes the cap.  Nothing over the cap is ever held in memory.  Used by every AWS-style API
(``within`` gives an operation its reader) and by the API Gateway routes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from ..errors import RequestTooLargeException, WarmstartError
from .protocol import ReadBody

#: builds the error for a body of ``size`` bytes (at least; a streamed body stops being read)
TooLarge = Callable[[int], WarmstartError]


def _default_too_large(limit: int) -> TooLarge:
    def build(size: int) -> WarmstartError:
        return RequestTooLargeException(
            f"Request must be smaller than {limit} bytes (got at least {size})"
        )

    return build


async def read_body(
    request: web.BaseRequest, limit: int, too_large: TooLarge | None = None
) -> bytes:
    """The whole body of ``request``, at most ``limit`` bytes.

    Raises ``too_large(size)`` (by default ``RequestTooLargeException``) when the declared
    length is over ``limit``, before reading, or when a streamed body passes it.
    """
    declared = request.content_length
    if declared is not None and declared > limit:
        raise (too_large or _default_too_large(limit))(declared)
    if declared == 0 or (declared is None and not request.body_exists):
        return b""
    content = request.content
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await content.readany()
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise (too_large or _default_too_large(limit))(size)
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def within(limit: int, too_large: TooLarge | None = None) -> ReadBody:
    """A reader of bodies of at most ``limit`` bytes (see :func:`read_body`)."""

    def read(request: web.Request) -> Awaitable[bytes]:
        return read_body(request, limit, too_large)

    return read
