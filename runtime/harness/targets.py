"""What a benchmark sends requests to.

- ``EmbeddedTarget``: a function on an engine inside this process (``--handler``/``--config``);
  every outcome carries the engine's REPORT figures.
- ``EndpointTarget``: a function on a running warmstart service, through Lambda's Invoke route
  (``POST {endpoint}/2015-03-31/functions/{name}/invocations``); the REPORT figures come from
  the ``X-Amz-Log-Result`` log tail when the service sends one.
- ``HttpTarget``: any URL.

Each has ``start``, ``call(payload) -> Outcome`` and ``close``; expected failures (function
errors, throttles, HTTP errors) are outcomes, not exceptions.
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from ..config import FunctionConfig, PoolConfig
from ..engine import Engine
from ..errors import TooManyRequestsException, WarmstartError
from .results import OK, Outcome

if TYPE_CHECKING:
    import aiohttp


class Target(Protocol):
    label: str

    async def start(self) -> None: ...

    async def call(self, payload: bytes) -> Outcome: ...

    async def close(self) -> None: ...

    def describe(self) -> dict[str, Any]: ...


_ERROR_KEYS = ("errorType", "Type", "__type")
_THROTTLE_KEYS = ("Reason",)


def error_type(body: bytes, default: str = "Unhandled", keys: tuple[str, ...] = _ERROR_KEYS) -> str:
    """The first non-empty string under ``keys`` of a JSON error document (Lambda's
    ``errorType`` by default), or ``default`` when there is none."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return default
    if isinstance(doc, dict):
        for key in keys:
            found = doc.get(key)
            if isinstance(found, str) and found:
                return found
    return default


class EmbeddedTarget:
    """A function registered on an engine of its own.

    ``cold=True`` registers it with ``max_uses=1``: every invocation gets a new environment, so
    every recorded sample is a cold start (``expect_cold`` lets the report check that).
    """

    label = "warmstart"

    def __init__(
        self, config: FunctionConfig, pool: PoolConfig | None = None, *, cold: bool = False
    ) -> None:
        self.config = config.replace(max_uses=1) if cold else config
        self.pool = pool
        self.expect_cold = cold
        self.engine: Engine | None = None

    async def start(self) -> None:
        engine = Engine(self.pool)
        await engine.start()
        try:
            await engine.register(self.config)
        except BaseException:
            await engine.close()
            raise
        self.engine = engine

    async def call(self, payload: bytes) -> Outcome:
        assert self.engine is not None
        try:
            result = await self.engine.invoke(self.config.name, payload)
        except TooManyRequestsException as exc:
            return Outcome(throttle=exc.reason)
        except WarmstartError as exc:
            return Outcome(error_type=exc.code)
        report = result.report
        failed = error_type(result.payload) if result.function_error else None
        if report is None:
            return OK if failed is None else Outcome(error_type=failed)
        return Outcome(
            failed,
            None,
            report.cold,
            report.init_duration_ms,
            report.billed_duration_ms,
            report.memory_size_mb,
        )

    async def close(self) -> None:
        if self.engine is not None:
            await self.engine.close()
            self.engine = None

    def describe(self) -> dict[str, Any]:
        c = self.config
        return {
            "kind": "embedded",
            "function": c.name,
            "handler": c.handler,
            "code": c.code,
            "memory_mb": c.memory_mb,
            "start": c.start,
            "backend": c.backend,
            "cold": self.expect_cold,
        }


def parse_report(log: str) -> dict[str, str]:
    """Fields of the last ``REPORT`` line of a log (``{"Billed Duration": "3 ms", ...}``)."""
    for line in reversed(log.splitlines()):
        if line.startswith("REPORT "):
            fields = {}
            for part in line[len("REPORT ") :].split("\t"):
                key, sep, value = part.partition(": ")
                if sep:
                    fields[key.strip()] = value.strip()
            return fields
    return {}


def _number(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return float(text.split()[0])
    except (ValueError, IndexError):
        return None


def outcome_from_log(log_result: str | None, failed: str | None) -> Outcome:
    """An Invoke answer's outcome: the error type and the REPORT figures of its log tail."""
    fields: dict[str, str] = {}
    if log_result:
        try:
            fields = parse_report(base64.b64decode(log_result).decode(errors="replace"))
        except (binascii.Error, ValueError):
            fields = {}
    if not fields:
        return OK if failed is None else Outcome(error_type=failed)
    init = _number(fields.get("Init Duration"))
    billed = _number(fields.get("Billed Duration"))
    memory = _number(fields.get("Memory Size"))
    return Outcome(
        failed,
        None,
        init is not None,
        init,
        None if billed is None else int(billed),
        None if memory is None else int(memory),
    )


class _HttpBase:
    """An aiohttp session with as many connections as requests in flight."""

    def __init__(self, connections: int) -> None:
        self.connections = connections
        self.session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        import aiohttp

        connector = aiohttp.TCPConnector(limit=self.connections)
        self.session = aiohttp.ClientSession(connector=connector)

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None


class EndpointTarget(_HttpBase):
    """A function on a warmstart service (or anything that speaks Lambda's Invoke)."""

    label = "warmstart"

    def __init__(self, endpoint: str, function: str, connections: int) -> None:
        super().__init__(connections)
        self.endpoint = endpoint.rstrip("/")
        self.function = function
        self.url = f"{self.endpoint}/2015-03-31/functions/{function}/invocations"
        self.headers = {"X-Amz-Log-Type": "Tail", "Content-Type": "application/json"}

    async def call(self, payload: bytes) -> Outcome:
        assert self.session is not None
        async with self.session.post(self.url, data=payload, headers=self.headers) as resp:
            body = await resp.read()
            status = resp.status
            function_error = resp.headers.get("X-Amz-Function-Error")
            log_result = resp.headers.get("X-Amz-Log-Result")
            amz_error = resp.headers.get("X-Amzn-ErrorType", "")
        if status == 429:
            return Outcome(throttle=error_type(body, "TooManyRequestsException", _THROTTLE_KEYS))
        if status >= 400:
            name = amz_error.split(":")[0] or error_type(body, f"HTTP {status}")
            return Outcome(error_type=name)
        failed = error_type(body) if function_error else None
        return outcome_from_log(log_result, failed)

    def describe(self) -> dict[str, Any]:
        return {"kind": "endpoint", "endpoint": self.endpoint, "function": self.function}


class HttpTarget(_HttpBase):
    """Any URL: the payload is POSTed (or a GET is sent); 4xx/5xx count as errors."""

    label = "warmstart"

    def __init__(self, url: str, connections: int, method: str = "POST") -> None:
        super().__init__(connections)
        self.url = url
        self.method = method
        self.post = method == "POST"
        self.headers = {"Content-Type": "application/json"} if self.post else None

    async def call(self, payload: bytes) -> Outcome:
        assert self.session is not None
        data = payload if self.post else None
        async with self.session.request(
            self.method, self.url, data=data, headers=self.headers
        ) as resp:
            await resp.read()
            status = resp.status
        if status == 429:
            return Outcome(throttle="HTTP 429")
        if status >= 400:
            return Outcome(error_type=f"HTTP {status}")
        return OK

    def describe(self) -> dict[str, Any]:
        return {"kind": "url", "url": self.url, "method": self.method}
