"""The HTTP front's limits, over real loopback sockets: header, body and keep-alive timeouts,
the connection cap, one-line bad requests, handlers cancelled when their client leaves, and
the SigV4 header checked (scope included) before a body is read."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from helpers import FUNCTIONS
from service_support import basic, boto, call, config_of, serving

from runtime import FunctionConfig, InvokeResult, PoolConfig
from runtime.cli.client import ServiceClient, sigv4_headers
from runtime.configfile import AuthConfig, ConfigFile, ServiceConfig
from runtime.service.connections import (
    REQUEST_TIMEOUT,
    ServiceRunner,
    cancelled_on_disconnect,
    default_max_connections,
)

pytestmark = pytest.mark.usefixtures("no_leaked_threads")

#: the timeouts of these tests, and how much later than one an answer may come
TIMEOUT = 0.3
SLACK = 2.0
INVOKE = "/2015-03-31/functions/{}/invocations"
MARKER = str(FUNCTIONS / "marker")


def request(method: str, path: str, *headers: str, body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *headers]
    if body and not any(h.lower().startswith(("content-length", "transfer-")) for h in headers):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


HEALTHZ = request("GET", "/healthz")


class Raw:
    """One client connection on a real socket."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @property
    def port(self) -> int:
        return int(self.writer.get_extra_info("sockname")[1])

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def response(self, within: float = SLACK + 5) -> tuple[int, bytes]:
        """The next response's status and body (Content-Length bodies only)."""
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), within)
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, await asyncio.wait_for(self.reader.readexactly(length), within)

    async def rest(self, within: float) -> bytes:
        """Everything until the server closes, which must happen ``within`` seconds."""
        return await asyncio.wait_for(self.reader.read(), within)

    async def get(self, data: bytes = HEALTHZ) -> int:
        self.send(data)
        status, _ = await self.response()
        return status

    def close(self) -> None:
        self.writer.close()


@contextlib.asynccontextmanager
async def raw(url: str) -> AsyncIterator[Raw]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    conn = Raw(reader, writer)
    try:
        yield conn
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def limits(**service: Any) -> dict[str, Any]:
    fields = dict(header_timeout_s=TIMEOUT, body_timeout_s=TIMEOUT, keepalive_timeout_s=30.0)
    return {**fields, **service}


# -- timeouts -------------------------------------------------------------------------------------

INCOMPLETE = {
    "headers-without-blank-line": request("GET", "/healthz")[:-2],
    "chunked-body-never-ends": request("POST", INVOKE.format("echo"), "Transfer-Encoding: chunked")
    + b"5\r\nhello\r\n",
    "content-length-longer-than-data": request("POST", INVOKE.format("echo"), "Content-Length: 100")
    + b'{"a": 1}',
}


@pytest.mark.parametrize("sent", INCOMPLETE.values(), ids=INCOMPLETE.keys())
def test_an_incomplete_request_gets_408_then_close(arun: Callable[..., Any], sent: bytes) -> None:
    async def main() -> None:
        async with serving(config_of(basic("echo"), **limits())) as svc, raw(svc.url) as conn:
            t0 = time.monotonic()
            conn.send(sent)
            answer = await conn.rest(TIMEOUT + SLACK)
            elapsed = time.monotonic() - t0
            assert answer == REQUEST_TIMEOUT
            assert TIMEOUT * 0.8 <= elapsed < TIMEOUT + SLACK
            assert svc.engine is not None
            assert svc.engine.stats()["echo"]["invocations"] == 0

    arun(main())


def test_headers_sent_a_byte_at_a_time_still_time_out(arun: Callable[..., Any]) -> None:
    """The header timeout bounds all of the headers, not each pause between their bytes."""

    async def main() -> None:
        async with serving(config_of(**limits())) as svc, raw(svc.url) as conn:
            t0 = time.monotonic()

            async def drip() -> None:
                for byte in HEALTHZ[:-2]:
                    conn.send(bytes([byte]))
                    await asyncio.sleep(TIMEOUT / 10)

            dripping = asyncio.create_task(drip())
            try:
                assert await conn.rest(TIMEOUT + SLACK) == REQUEST_TIMEOUT
            finally:
                dripping.cancel()
            assert TIMEOUT * 0.8 <= time.monotonic() - t0 < TIMEOUT + SLACK

    arun(main())


def test_a_silent_connection_is_closed_without_an_answer(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        async with serving(config_of(**limits())) as svc, raw(svc.url) as conn:
            t0 = time.monotonic()
            assert await conn.rest(TIMEOUT + SLACK) == b""
            assert TIMEOUT * 0.8 <= time.monotonic() - t0 < TIMEOUT + SLACK

    arun(main())


def test_an_idle_keep_alive_connection_is_closed_without_an_answer(
    arun: Callable[..., Any],
) -> None:
    async def main() -> None:
        config = config_of(**limits(keepalive_timeout_s=TIMEOUT, header_timeout_s=30.0))
        async with serving(config) as svc, raw(svc.url) as conn:
            assert await conn.get() == 200
            t0 = time.monotonic()
            assert await conn.rest(TIMEOUT + SLACK) == b""
            assert TIMEOUT * 0.8 <= time.monotonic() - t0 < TIMEOUT + SLACK

    arun(main())


def test_busy_connections_are_not_cut(arun: Callable[..., Any]) -> None:
    """Requests one after another for longer than the keep-alive timeout, a body arriving in
    pieces for longer than the body timeout, and a call running longer than every timeout."""
    timeout, pace = 1.0, 0.2  # a pause a fifth of the timeout: a loaded machine cannot stretch it

    async def main() -> None:
        config = config_of(
            basic("echo"),
            basic("sleep", "sleep"),
            header_timeout_s=timeout,
            body_timeout_s=timeout,
            keepalive_timeout_s=timeout,
        )
        async with serving(config) as svc, raw(svc.url) as conn:
            for _ in range(7):
                assert await conn.get() == 200
                await asyncio.sleep(pace)  # the pace of a client, not a wait for the server
            body = b'{"piece": "' + b"x" * 60 + b'"}'
            conn.send(request("POST", INVOKE.format("echo"), f"Content-Length: {len(body)}"))
            for i in range(0, len(body), 10):
                await asyncio.sleep(pace)
                conn.send(body[i : i + 10])
            assert await conn.response() == (200, body.replace(b'": "', b'":"'))
            slow = request("POST", INVOKE.format("sleep"), body=b'{"s": 1.5}')
            assert await conn.get(slow) == 200
            assert await conn.get() == 200

    arun(main())


# -- the connection cap ---------------------------------------------------------------------------


def test_at_the_cap_a_new_client_closes_the_longest_idle_connection(
    arun: Callable[..., Any],
) -> None:
    async def main() -> None:
        async with (
            serving(config_of(**limits(max_connections=3))) as svc,
            raw(svc.url) as first,
            raw(svc.url) as second,
            raw(svc.url) as third,
        ):
            for conn in (first, second, third):
                assert await conn.get() == 200  # accepted, served, now idle
            async with raw(svc.url) as fourth:
                assert await fourth.get() == 200
                assert await first.rest(SLACK) == b""  # idle the longest
            assert await second.get() == 200  # the others stay open
            assert await third.get() == 200

    arun(main())


def test_more_idle_connections_than_the_cap_do_not_lock_clients_out(
    arun: Callable[..., Any],
) -> None:
    cap, extra = 20, 10

    async def main() -> None:
        async with (
            serving(config_of(**limits(max_connections=cap, header_timeout_s=30.0))) as svc,
            contextlib.AsyncExitStack() as stack,
        ):
            silent = [await stack.enter_async_context(raw(svc.url)) for _ in range(cap + extra)]
            async with raw(svc.url) as client:
                assert await client.get() == 200
            # the server took them in the order they connected, each closing the oldest idle one
            for conn in silent[: extra + 1]:
                assert await conn.rest(SLACK) == b""
            for conn in silent[extra + 1 :]:
                assert await conn.get() == 200

    arun(main())


def test_at_the_cap_with_nothing_idle_a_new_client_is_closed(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        config = config_of(basic("sleep", "sleep"), **limits(max_connections=2))
        slow = request("POST", INVOKE.format("sleep"), body=b'{"s": 1.5}')
        async with serving(config) as svc, raw(svc.url) as first, raw(svc.url) as second:
            for conn in (first, second):
                conn.send(slow)
            await wait_for(lambda: busy(svc) == 2)
            async with raw(svc.url) as third:
                assert await third.rest(SLACK) == b""
            for conn in (first, second):
                assert (await conn.response())[0] == 200
            async with raw(svc.url) as fourth:
                assert await fourth.get() == 200

    arun(main())


def busy(svc: Any) -> int:
    return int(svc.engine.stats()["sleep"]["environments"]["busy"])


async def wait_for(check: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "the condition did not hold in time"
        await asyncio.sleep(0.01)


def test_the_default_cap_is_at_most_512_and_half_the_file_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    resource = pytest.importorskip("resource")
    assert 1 <= default_max_connections() <= 512
    monkeypatch.setattr(resource, "getrlimit", lambda _which: (1024, 4096))
    assert default_max_connections() == 512
    monkeypatch.setattr(resource, "getrlimit", lambda _which: (256, 4096))
    assert default_max_connections() == 128
    monkeypatch.setattr(resource, "getrlimit", lambda _which: (resource.RLIM_INFINITY,) * 2)
    assert default_max_connections() == 512


# -- malformed requests ---------------------------------------------------------------------------

MALFORMED = {
    "method": b"G(T / HTTP/1.1\r\nHost: x\r\n\r\n",
    "header": b"GET / HTTP/1.1\r\nHost x\r\n\r\n",
    "content-length": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n",
    "version": b"GET / HTTP/7.3\r\nHost: x\r\n\r\n",
}


@pytest.mark.parametrize("sent", MALFORMED.values(), ids=MALFORMED.keys())
@pytest.mark.parametrize("after_a_request", [False, True], ids=["first", "second"])
def test_a_malformed_request_is_one_log_line(
    arun: Callable[..., Any], caplog: pytest.LogCaptureFixture, sent: bytes, after_a_request: bool
) -> None:
    async def main() -> int:
        async with serving(config_of()) as svc, raw(svc.url) as conn:
            if after_a_request:
                assert await conn.get() == 200
            conn.send(sent)
            status, _ = await conn.response()
            assert status == 400
            assert await conn.rest(SLACK) == b""
            return conn.port

    with caplog.at_level(logging.DEBUG):
        port = arun(main())
    logged = [r for r in caplog.records if r.name.startswith(("aiohttp", "warmstart"))]
    assert [r.levelno for r in logged] == [logging.WARNING]
    (line,) = logged
    assert line.exc_info is None
    text = line.getMessage()
    assert text.startswith(f"warmstart: bad request from 127.0.0.1:{port}: ")
    assert "\n" not in text
    assert len(text) > len(f"warmstart: bad request from 127.0.0.1:{port}: ")


def test_a_malformed_chunk_after_the_headers_is_answered_at_once(
    arun: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    """The handler already waits for the body when its framing turns out wrong: it gets 400
    at once, not the body timeout (30 s here) later, and the log one line."""

    async def main() -> None:
        async with serving(config_of(basic("echo"))) as svc, raw(svc.url) as conn:
            conn.send(request("POST", INVOKE.format("echo"), "Transfer-Encoding: chunked"))
            conn.send(b"5\r\nhello\r\n")
            # the first chunk is in the server's hands before the broken one goes
            await conn.writer.drain()
            await asyncio.sleep(0.1)  # spacing the packets, not waiting for an outcome
            conn.send(b"zz\r\nworld\r\n0\r\n\r\n")
            t0 = time.monotonic()
            assert await conn.rest(SLACK) == b"HTTP/1.1 400 Bad Request\r\n" + (
                b"Connection: close\r\nContent-Length: 0\r\n\r\n"
            )
            assert time.monotonic() - t0 < SLACK
            assert svc.engine is not None
            assert svc.engine.stats()["echo"]["invocations"] == 0

    arun(main())
    logged = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage().split(": ", 2)[-1] for r in logged] == [
        "Invalid character in chunk size"
    ]
    assert logged[0].exc_info is None


# -- a client that leaves -------------------------------------------------------------------------


def test_a_client_that_leaves_cancels_only_the_handlers_that_ask(
    arun: Callable[..., Any],
) -> None:
    """Through the runner the service uses: a handler inside ``cancelled_on_disconnect`` is
    cancelled when its client disconnects; any other one runs to its end."""
    outcome: dict[str, str] = {}
    started = {name: asyncio.Event() for name in ("waits", "writes")}
    release = asyncio.Event()

    async def waits(request: web.Request) -> web.Response:
        with cancelled_on_disconnect(request):
            return await record("waits")

    async def writes(request: web.Request) -> web.Response:
        return await record("writes")

    async def record(name: str) -> web.Response:
        started[name].set()
        try:
            await release.wait()
        except asyncio.CancelledError:
            outcome[name] = "cancelled"
            raise
        outcome[name] = "finished"
        return web.Response(text=name)

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/waits", waits)
        app.router.add_get("/writes", writes)
        runner = ServiceRunner(app, ServiceConfig(port=0))
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            url = f"http://127.0.0.1:{site.port}"
            for name in ("waits", "writes"):
                async with raw(url) as conn:
                    conn.send(request("GET", f"/{name}"))
                    await asyncio.wait_for(started[name].wait(), SLACK)
            await wait_for(lambda: "waits" in outcome, SLACK)
            assert outcome == {"waits": "cancelled"}
            release.set()
            await wait_for(lambda: "writes" in outcome, SLACK)
            assert outcome == {"waits": "cancelled", "writes": "finished"}
        finally:
            await runner.cleanup()

    arun(main())


def test_a_synchronous_invoke_is_cancelled_when_its_client_leaves(
    arun: Callable[..., Any],
) -> None:
    """The service's handler of a RequestResponse Invoke is cancelled by a disconnect (the
    engine then withdraws the call); an Event Invoke is stored all the same."""
    calls: list[tuple[str, str]] = []
    intercepted = {"RequestResponse", "Event"}
    release = asyncio.Event()

    async def main() -> None:
        async with serving(config_of(basic("echo"))) as svc:
            engine = svc.engine
            assert engine is not None
            real = engine.invoke

            async def invoke(
                name: str,
                payload: bytes | str | Any = b"{}",
                invocation_type: str = "RequestResponse",
                **kw: Any,
            ) -> InvokeResult:
                if invocation_type not in intercepted:  # the dispatcher running the Event
                    return await real(name, payload, invocation_type, **kw)
                intercepted.discard(invocation_type)
                calls.append((invocation_type, "started"))
                try:
                    await release.wait()
                except asyncio.CancelledError:
                    calls.append((invocation_type, "cancelled"))
                    raise
                calls.append((invocation_type, "finished"))
                return await real(name, payload, invocation_type, **kw)

            engine.invoke = invoke  # type: ignore[method-assign]
            for kind in ("RequestResponse", "Event"):
                async with raw(svc.url) as conn:
                    conn.send(
                        request(
                            "POST",
                            INVOKE.format("echo"),
                            f"X-Amz-Invocation-Type: {kind}",
                            body=b"{}",
                        )
                    )

                    def started(kind: str = kind) -> bool:
                        return (kind, "started") in calls

                    await wait_for(started, SLACK)
            await wait_for(lambda: ("RequestResponse", "cancelled") in calls, SLACK)
            release.set()
            await wait_for(lambda: ("Event", "finished") in calls, SLACK)
            assert calls == [
                ("RequestResponse", "started"),
                ("Event", "started"),
                ("RequestResponse", "cancelled"),
                ("Event", "finished"),
            ] or calls == [
                ("RequestResponse", "started"),
                ("RequestResponse", "cancelled"),
                ("Event", "started"),
                ("Event", "finished"),
            ]

    arun(main())


# -- authentication before the body ---------------------------------------------------------------

CREDENTIALS = ("AKIDTEST", "secret")


def with_keys(config: ConfigFile) -> ConfigFile:
    return ConfigFile(
        config.path,
        pool=config.pool,
        functions=config.functions,
        service=config.service,
        auth=AuthConfig(keys=dict([CREDENTIALS])),
    )


def test_signed_clients_of_every_api_still_pass(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        async with serving(with_keys(config_of(basic("echo")))) as svc:
            async with boto(svc.url) as lam:
                reply = await call(lam.invoke, FunctionName="echo", Payload=b'{"a": 1}')
                assert reply["Payload"].read() == b'{"a":1}'
            async with boto(svc.url, "batch") as batch:
                assert (await call(batch.describe_job_queues))["jobQueues"] == []
            async with boto(svc.url, "ecs") as ecs:
                assert "clusterArns" in await call(ecs.list_clusters)
            async with boto(svc.url, "events") as events:
                assert (await call(events.list_rules))["Rules"] == []
            async with ServiceClient(svc.url, credentials=CREDENTIALS) as ours:
                assert [f["FunctionName"] for f in await ours.list_functions()] == ["echo"]
                assert "START RequestId" in await ours.logs("echo")
                assert (await ours.json("POST", "/v1/describejobqueues", {}))["jobQueues"] == []

    arun(main())


MISSCOPED = {
    "lambda-for-s3": (
        "POST", INVOKE.format("echo"), {}, "s3", "us-east-1",
        "Credential should be scoped to correct service: 'lambda'.",
    ),
    "lambda-for-eu-west-1": (
        "POST", INVOKE.format("echo"), {}, "lambda", "eu-west-1",
        "Credential should be scoped to a valid region, not 'eu-west-1'.",
    ),
    "batch-for-lambda": (
        "POST", "/v1/describejobqueues", {}, "lambda", "us-east-1",
        "Credential should be scoped to correct service: 'batch'.",
    ),
    "ecs-for-events": (
        "POST", "/", {"X-Amz-Target": "AmazonEC2ContainerServiceV20141113.ListClusters"},
        "events", "us-east-1", "Credential should be scoped to correct service: 'ecs'.",
    ),
    "events-for-ecs": (
        "POST", "/", {"X-Amz-Target": "AWSEvents.ListRules"}, "ecs", "us-east-1",
        "Credential should be scoped to correct service: 'events'.",
    ),
}  # fmt: skip


@pytest.mark.parametrize(
    ("method", "path", "headers", "service", "region", "message"),
    MISSCOPED.values(),
    ids=MISSCOPED.keys(),
)
def test_a_signature_scoped_elsewhere_is_refused(
    arun: Callable[..., Any],
    method: str,
    path: str,
    headers: dict[str, str],
    service: str,
    region: str,
    message: str,
) -> None:
    async def main() -> None:
        async with (
            serving(with_keys(config_of(basic("echo")))) as svc,
            aiohttp.ClientSession() as http,
        ):
            url = svc.url + path
            signed = {**headers, **sigv4_headers(method, url, b"{}", CREDENTIALS, region, service)}
            async with http.request(method, url, data=b"{}", headers=signed) as resp:
                assert resp.status == 403
                assert resp.headers["x-amzn-ErrorType"] == "InvalidSignatureException"
                assert (await resp.json(content_type=None))["message"] == message
            assert svc.engine is not None
            assert svc.engine.stats()["echo"]["invocations"] == 0

    arun(main())


def test_an_unsigned_payload_is_refused(arun: Callable[..., Any]) -> None:
    """A signature that leaves the body out would let anyone on the path swap the body."""

    async def main() -> None:
        async with (
            serving(with_keys(config_of(basic("echo")))) as svc,
            aiohttp.ClientSession() as http,
        ):
            url = svc.url + INVOKE.format("echo")
            signed = AWSRequest(
                "POST", url, data=b'{"v": 1}', headers={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"}
            )
            SigV4Auth(Credentials(*CREDENTIALS), "lambda", "us-east-1").add_auth(signed)
            headers = dict(signed.headers.items())
            async with http.post(url, data=b'{"v": "swapped"}', headers=headers) as resp:
                assert resp.status == 400
                assert resp.headers["x-amzn-ErrorType"] == "IncompleteSignatureException"
                assert "UNSIGNED-PAYLOAD" in (await resp.json())["message"]
            assert svc.engine is not None
            assert svc.engine.stats()["echo"]["invocations"] == 0

    arun(main())


BIG = 60_000_000
REGION_REFUSED = "Credential should be scoped to a valid region, not 'eu-west-1'."
SENT = 4096


@pytest.mark.parametrize("signed", [False, True], ids=["no-authorization", "wrong-region"])
def test_a_refused_big_body_is_not_read(arun: Callable[..., Any], signed: bool) -> None:
    """The answer comes while the client has sent 4 KB of a declared 60 MB, and the server
    closes: it waits for none of the rest."""

    async def main() -> None:
        async with serving(with_keys(config_of())) as svc, raw(svc.url) as conn:
            path = "/2015-03-31/functions"
            headers = [f"Content-Length: {BIG}", "Content-Type: application/json"]
            if signed:
                auth = sigv4_headers("POST", svc.url + path, b"", CREDENTIALS, "eu-west-1")
                headers += [f"{k}: {v}" for k, v in auth.items() if k != "host"]
            conn.send(request("POST", path, *headers) + b"x" * SENT)
            status, body = await conn.response(SLACK)
            assert status == 403
            expected = REGION_REFUSED if signed else "Missing Authentication Token"
            assert json.loads(body)["message"] == expected
            assert await conn.rest(SLACK) == b""

    arun(main())


def test_a_refused_small_request_keeps_its_connection(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        async with serving(with_keys(config_of(basic("echo")))) as svc, raw(svc.url) as conn:
            refused = request("POST", INVOKE.format("echo"), body=b'{"a": 1}')
            for _ in range(2):
                assert await conn.get(refused) == 403
            assert await conn.get() == 200  # /healthz needs no signature

    arun(main())


def ran(mark: str) -> bool:
    """The marker handler left this mark: it ran."""
    return Path(mark).exists()


def test_a_queued_invoke_whose_client_left_never_runs(
    arun: Callable[..., Any], tmp_path: Any
) -> None:
    """End to end: one call holds the only environment, a second waits in the queue and its
    client hangs up; the second handler never runs, the next caller is served."""
    marker = FunctionConfig(
        name="m", handler="app.handler", code=MARKER, reserved_concurrency=1, timeout_s=10
    )
    marks = [str(tmp_path / f"mark-{i}") for i in range(3)]

    async def main() -> None:
        pool = PoolConfig(max_queue=4, queue_timeout_s=10)
        async with serving(config_of(marker, pool=pool)) as svc, aiohttp.ClientSession() as http:
            engine = svc.engine
            assert engine is not None
            url = svc.url + INVOKE.format("m")
            body = json.dumps({"mark": marks[0], "seconds": 0.5})
            first = asyncio.ensure_future(http.post(url, data=body))
            await wait_for(lambda: Path(marks[0]).exists(), SLACK)
            async with raw(svc.url) as conn:
                conn.send(
                    request(
                        "POST", INVOKE.format("m"), body=json.dumps({"mark": marks[1]}).encode()
                    )
                )
                await wait_for(lambda: engine.stats()["m"]["waiting"] == 1, SLACK)
            await wait_for(lambda: engine.stats()["m"]["waiting"] == 0, SLACK)
            third = await http.post(url, data=json.dumps({"mark": marks[2]}))
            assert third.status == 200
            assert (await first).status == 200
            assert ran(marks[2])
            assert not ran(marks[1])
            assert engine.stats()["m"]["invocations"] == 2
            assert not engine._calls

    arun(main())
