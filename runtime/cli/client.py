"""A small async client of a warmstart service's Lambda API, for the CLI's ``--endpoint`` mode.

Not boto3: no retries, no credential chain; answers are plain dicts, and an error answer raises
``ServiceError`` carrying Lambda's error code, message and HTTP status.  Given credentials, it
signs every request with SigV4 (for a service with ``[auth]`` keys).
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import aiohttp
import orjson
from yarl import URL

from ..errors import WarmstartError
from ..service.auth import ALGORITHM, TERMINATOR, TIMESTAMP, canonical_request, signature


class ServiceError(WarmstartError):
    """An error answer of the service: ``code``, ``message`` and ``status`` are its own."""

    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class EndpointUnreachable(WarmstartError):
    """Nothing answers at the endpoint."""

    code = "EndpointUnreachable"


@dataclass(frozen=True)
class Invocation:
    """What Invoke answered."""

    status: int
    payload: bytes
    function_error: str | None
    log_tail: str
    request_id: str


def zip_directory(root: str) -> bytes:
    """The files under ``root`` as zip bytes (``__pycache__`` left out)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            for name in sorted(filenames):
                path = os.path.join(dirpath, name)
                archive.write(path, os.path.relpath(path, root))
    return buffer.getvalue()


def code_bytes(path: str) -> bytes:
    """A directory zipped, or a .zip file's bytes."""
    if os.path.isdir(path):
        return zip_directory(path)
    with open(path, "rb") as f:
        return f.read()


def sigv4_headers(
    method: str,
    url: str,
    body: bytes,
    credentials: tuple[str, str],
    region: str = "us-east-1",
    service: str = "lambda",
    now: datetime | None = None,
) -> dict[str, str]:
    """The headers that sign a request to ``url`` (path and query as they will be sent)."""
    key_id, secret = credentials
    parts = urlsplit(url)
    stamp = (now or datetime.now(timezone.utc)).strftime(TIMESTAMP)
    payload_hash = hashlib.sha256(body).hexdigest()
    headers = {"host": parts.netloc, "x-amz-content-sha256": payload_hash, "x-amz-date": stamp}
    names = sorted(headers)
    canonical = canonical_request(
        method, parts.path or "/", parts.query, list(headers.items()), names, payload_hash
    )
    scope = f"{stamp[:8]}/{region}/{service}/{TERMINATOR}"
    signed = signature(secret, stamp, region, service, canonical)
    headers["Authorization"] = (
        f"{ALGORITHM} Credential={key_id}/{scope}, "
        f"SignedHeaders={';'.join(names)}, Signature={signed}"
    )
    return headers


class ServiceClient:
    """``async with ServiceClient("http://127.0.0.1:9000") as client: ...``

    ``credentials`` (access key id, secret) sign every request with SigV4 for ``region``.
    """

    def __init__(
        self,
        endpoint: str,
        timeout_s: float = 960.0,
        *,
        credentials: tuple[str, str] | None = None,
        region: str = "us-east-1",
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.credentials = credentials
        self.region = region
        self._session: aiohttp.ClientSession | None = None

    def _prepare(
        self,
        method: str,
        path: str,
        body: bytes,
        params: dict[str, str] | None,
        headers: dict[str, str] | None,
    ) -> tuple[URL, dict[str, str]]:
        """The exact URL to send (already encoded) and the headers, signed when asked."""
        url = self.endpoint + path + (f"?{urlencode(params, quote_via=quote)}" if params else "")
        out = dict(headers or {})
        if self.credentials is not None:
            # the service checks the scope's service: the Batch API's (/v1/...) is batch's
            service = "batch" if path.startswith("/v1/") else "lambda"
            out.update(sigv4_headers(method, url, body, self.credentials, self.region, service))
        return URL(url, encoded=True), out

    async def __aenter__(self) -> ServiceClient:
        self._session = aiohttp.ClientSession(timeout=self.timeout)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, bytes]:
        """(status, headers, body) of one request; an error status raises ServiceError."""
        assert self._session is not None, "use 'async with ServiceClient(...)'"
        data = b"" if body is None else body if isinstance(body, bytes) else orjson.dumps(body)
        url, sent = self._prepare(method, path, data, params, headers)
        try:
            async with self._session.request(method, url, data=data or None, headers=sent) as resp:
                content = await resp.read()
                if resp.status >= 400:
                    raise _error(resp.status, resp.headers, content)
                return resp.status, resp.headers, content
        except aiohttp.ClientConnectionError as exc:
            raise EndpointUnreachable(f"cannot reach {self.endpoint}: {exc}") from None

    async def json(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        _, _, content = await self.request(method, path, body, **kw)
        return orjson.loads(content) if content else {}

    async def invoke(
        self, name: str, payload: bytes, invocation_type: str = "RequestResponse"
    ) -> Invocation:
        """Invoke ``name``; the log tail is always asked for."""
        headers = {"X-Amz-Invocation-Type": invocation_type, "X-Amz-Log-Type": "Tail"}
        status, out, content = await self.request(
            "POST", f"/2015-03-31/functions/{_q(name)}/invocations", payload, headers=headers
        )
        tail = out.get("X-Amz-Log-Result")
        return Invocation(
            status,
            content,
            out.get("X-Amz-Function-Error"),
            base64.b64decode(tail).decode(errors="replace") if tail else "",
            out.get("x-amzn-RequestId", ""),
        )

    async def list_functions(self) -> list[dict[str, Any]]:
        """Every function, following NextMarker."""
        functions: list[dict[str, Any]] = []
        params: dict[str, str] = {}
        while True:
            page = await self.json("GET", "/2015-03-31/functions", params=params)
            functions.extend(page.get("Functions", []))
            if not page.get("NextMarker"):
                return functions
            params = {"Marker": page["NextMarker"]}

    async def create_function(self, name: str, handler: str, code: bytes, **settings: Any) -> Any:
        """CreateFunction from zip bytes; ``settings`` are API members (MemorySize=256, ...)."""
        body = {
            "FunctionName": name,
            "Handler": handler,
            "Code": {"ZipFile": base64.b64encode(code).decode()},
            **settings,
        }
        return await self.json("POST", "/2015-03-31/functions", body)

    async def delete_function(self, name: str) -> None:
        await self.request("DELETE", f"/2015-03-31/functions/{_q(name)}")

    async def logs(self, name: str) -> str:
        _, _, content = await self.request("GET", f"/warmstart/logs/{_q(name)}")
        return content.decode(errors="replace")

    async def follow_logs(self, name: str) -> AsyncIterator[str]:
        """The recent log text, then new entries as they come, until the service stops."""
        assert self._session is not None
        url, headers = self._prepare(
            "GET", f"/warmstart/logs/{_q(name)}", b"", {"follow": "1"}, None
        )
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
        try:
            async with self._session.get(url, headers=headers, timeout=timeout) as resp:
                if resp.status >= 400:
                    raise _error(resp.status, resp.headers, await resp.read())
                async for chunk in resp.content.iter_any():
                    yield chunk.decode(errors="replace")
        except aiohttp.ClientConnectionError as exc:
            raise EndpointUnreachable(f"cannot reach {self.endpoint}: {exc}") from None


def _q(name: str) -> str:
    return quote(name, safe="")


def _error(status: int, headers: Any, content: bytes) -> ServiceError:
    code = (headers.get("x-amzn-ErrorType") or "").split(":")[0]
    message = content.decode(errors="replace")
    try:
        doc = orjson.loads(content)
    except orjson.JSONDecodeError:
        doc = None
    if isinstance(doc, dict):
        message = str(doc.get("message") or doc.get("Message") or message)
    return ServiceError(code or f"HTTP{status}", message, status)
