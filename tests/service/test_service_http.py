"""The service's own endpoints and hooks: /healthz, /metrics, logs, authenticate, front door."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families
from service_support import basic, boto, call, config_of, serving
from yarl import URL

from runtime.cli.client import ServiceClient, ServiceError
from runtime.configfile import AuthConfig
from runtime.service import gateway, protocol
from runtime.service.app import create_app, is_reserved_path, start_engine
from runtime.service.body import within

pytestmark = pytest.mark.usefixtures("no_leaked_threads")


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text exposition, by name and sorted labels."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_healthz_and_metrics(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        config = config_of(
            basic("echo"), basic("fail", "flexible"), basic("capped", reserved_concurrency=0)
        )
        async with serving(config) as svc, aiohttp.ClientSession() as http:
            async with http.get(svc.url + "/healthz") as resp:
                assert resp.status == 200
                assert await resp.json() == {"status": "ok", "functions": 3}
            invoke = svc.url + "/2015-03-31/functions/{}/invocations"
            for _ in range(3):
                async with http.post(invoke.format("echo"), data=b"{}") as resp:
                    assert resp.status == 200
            async with http.post(invoke.format("fail"), data=b'{"fail": true}') as resp:
                assert resp.headers["X-Amz-Function-Error"] == "Unhandled"
            async with http.post(invoke.format("capped"), data=b"{}") as resp:
                assert resp.status == 429
                assert (await resp.json())["Reason"] == (
                    "ReservedFunctionConcurrentInvocationLimitExceeded"
                )
            async with http.get(svc.url + "/metrics") as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"].startswith("text/plain")
                found = samples(await resp.text())

        fn = (("function", "echo"),)
        assert found[("warmstart_functions", ())] == 3
        assert found[("warmstart_invocations_total", fn)] == 3
        assert found[("warmstart_cold_starts_total", fn)] == 1
        assert found[("warmstart_errors_total", fn)] == 0
        assert found[("warmstart_errors_total", (("function", "fail"),))] == 1
        assert found[("warmstart_throttles_total", (("function", "capped"),))] == 1
        assert found[("warmstart_invocation_duration_seconds_count", fn)] == 3
        assert found[("warmstart_invocation_duration_seconds_sum", fn)] > 0
        ready = (("function", "echo"), ("state", "ready"))
        assert found[("warmstart_environments", ready)] == 1
        busy = (("function", "echo"), ("state", "busy"))
        assert found[("warmstart_environments", busy)] == 0
        assert found[("warmstart_gb_seconds_total", fn)] > 0

    arun(main())


def test_each_app_has_its_own_registry(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        async with (
            serving(config_of(basic("one"))) as a,
            serving(config_of(basic("two"))) as b,
            aiohttp.ClientSession() as http,
        ):
            for svc, name, other in ((a, "one", "two"), (b, "two", "one")):
                async with http.get(svc.url + "/metrics") as resp:
                    text = await resp.text()
                assert f'function="{name}"' in text
                assert f'function="{other}"' not in text

    arun(main())


def test_authenticate_runs_before_every_aws_operation(arun: Callable[..., Any]) -> None:
    seen: list[tuple[str, str, bytes]] = []

    class Denied(Exception):
        code = "InvalidSignatureException"
        message = "The request signature we calculated does not match"
        status = 403

    async def authenticate(request: web.Request, body: bytes) -> None:
        seen.append((request.method, request.path, body))
        if request.headers.get("X-Deny"):
            raise Denied()

    async def main() -> None:
        async with serving(config_of(basic("echo")), authenticate=authenticate) as svc:
            async with boto(svc.url) as client:
                await call(client.invoke, FunctionName="echo", Payload=b'{"signed": 1}')
                await call(client.list_functions)
                await call(client.get_account_settings)
                await call(
                    client.put_function_concurrency,
                    FunctionName="echo",
                    ReservedConcurrentExecutions=2,
                )
            assert seen == [
                ("POST", "/2015-03-31/functions/echo/invocations", b'{"signed": 1}'),
                ("GET", "/2015-03-31/functions", b""),
                ("GET", "/2016-08-19/account-settings", b""),
                (
                    "PUT",
                    "/2017-10-31/functions/echo/concurrency",
                    b'{"ReservedConcurrentExecutions": 2}',
                ),
            ]
            async with aiohttp.ClientSession(headers={"X-Deny": "1"}) as http:
                for method, path in (
                    ("POST", "/2015-03-31/functions/echo/invocations"),
                    ("DELETE", "/2015-03-31/functions/echo"),
                    ("GET", "/warmstart/logs/echo"),
                ):
                    async with http.request(method, svc.url + path) as resp:
                        assert resp.status == 403
                        assert resp.headers["x-amzn-ErrorType"] == "InvalidSignatureException"
                        assert (await resp.json())["message"].startswith("The request signature")
                async with http.get(svc.url + "/healthz") as resp:
                    assert resp.status == 200  # health and metrics are not AWS operations
            assert svc.engine is not None
            assert [c.name for c in svc.engine.functions()] == ["echo"]
            assert svc.engine.stats()["echo"]["invocations"] == 1

    arun(main())


def test_sigv4_through_the_hook(arun: Callable[..., Any]) -> None:
    """The auth module's verifier as the hook: boto3 and the CLI's client sign and pass."""
    authenticate = gateway.authenticator(AuthConfig(keys={"AKIDTEST": "secret"}))

    async def main() -> None:
        async with serving(config_of(basic("echo")), authenticate=authenticate) as svc:
            async with boto(svc.url) as client:
                result = await call(client.invoke, FunctionName="echo", Payload=b'{"a": 1}')
                assert result["Payload"].read() == b'{"a":1}'
                listed = await call(client.list_functions, MaxItems=1)
                assert [f["FunctionName"] for f in listed["Functions"]] == ["echo"]
            async with ServiceClient(svc.url, credentials=("AKIDTEST", "secret")) as signed:
                assert (await signed.invoke("echo", b"[2]")).payload == b"[2]"
                assert [f["FunctionName"] for f in await signed.list_functions()] == ["echo"]
                assert "START RequestId" in await signed.logs("echo")
            async with ServiceClient(svc.url) as unsigned:
                with pytest.raises(ServiceError) as caught:
                    await unsigned.invoke("echo", b"{}")
            assert (caught.value.code, caught.value.status) == (
                "MissingAuthenticationTokenException",
                403,
            )
            async with ServiceClient(svc.url, credentials=("AKIDTEST", "wrong")) as forged:
                with pytest.raises(ServiceError) as caught:
                    await forged.list_functions()
            assert caught.value.code == "InvalidSignatureException"

    arun(main())


def test_front_door_gets_every_other_path(arun: Callable[..., Any]) -> None:
    async def front_door(request: web.Request) -> web.Response:
        return web.json_response({"front_door": request.path, "method": request.method})

    async def main() -> None:
        async with (
            serving(config_of(basic("echo")), front_door=front_door) as svc,
            aiohttp.ClientSession() as http,
        ):
            for method, path in (("GET", "/hello"), ("POST", "/"), ("PUT", "/a/b/c")):
                async with http.request(method, svc.url + path) as resp:
                    assert await resp.json() == {"front_door": path, "method": method}
            async with http.get(svc.url + "/2015-03-31/nothing/here") as resp:
                assert resp.status == 404
                assert resp.headers["x-amzn-ErrorType"] == "UnknownOperationException"
            async with http.post(svc.url + "/healthz") as resp:
                assert resp.status == 405
            # an encoded newline in the path is still a path for the front door
            async with http.get(URL(svc.url + "/a%0Ab", encoded=True)) as resp:
                assert await resp.json() == {"front_door": "/a\nb", "method": "GET"}
        async with (
            serving(config_of()) as svc,
            aiohttp.ClientSession() as http,
            http.get(svc.url + "/hello") as resp,
        ):
            assert resp.status == 404
            assert await resp.json() == {"message": "Not Found"}

    arun(main())


@pytest.mark.parametrize(
    ("path", "reserved"),
    [
        ("/2015-03-31/functions", True),
        ("/2017-10-31/functions/x/concurrency", True),
        ("/2018-06-01/runtime/invocation/next", True),
        ("/2016-08-19/account-settings", True),
        ("/healthz", True),
        ("/metrics", True),
        ("/warmstart/logs/x", True),
        ("/hello", False),
        ("/", False),
        ("/2015-03-31x", False),
        ("/metricsx", False),
    ],
)
def test_reserved_paths(path: str, reserved: bool) -> None:
    assert is_reserved_path(path) is reserved


def test_logs_recent_and_followed(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        async with serving(config_of(basic("echo"), basic("other"))) as svc:
            async with aiohttp.ClientSession() as http:
                invoke = svc.url + "/2015-03-31/functions/{}/invocations"
                async with http.post(invoke.format("echo"), data=b"{}") as resp:
                    rid = resp.headers["x-amzn-RequestId"]
                async with http.get(svc.url + "/warmstart/logs/echo") as resp:
                    text = await resp.text()
                assert f"START RequestId: {rid}" in text
                assert f"REPORT RequestId: {rid}" in text
                async with http.get(svc.url + "/warmstart/logs/missing") as resp:
                    assert resp.status == 404

                follow = await http.get(svc.url + "/warmstart/logs/echo", params={"follow": "1"})
                backlog = await follow.content.readuntil(b"\n")
                assert backlog.startswith(f"START RequestId: {rid}".encode())
                await follow.content.readuntil(f"REPORT RequestId: {rid}".encode())
                await follow.content.readuntil(b"\n")
                async with http.post(invoke.format("other"), data=b"{}"):
                    pass
                async with http.post(invoke.format("echo"), data=b"{}") as resp:
                    second = resp.headers["x-amzn-RequestId"]
                chunk = await asyncio.wait_for(follow.content.readuntil(b"\n"), 5.0)
                assert chunk == f"START RequestId: {second} Version: $LATEST\n".encode()
            # the server shuts down while the client still follows: the stream ends, no hang
            follow.release()

    arun(main())


def test_shutdown_ends_followers(arun: Callable[..., Any]) -> None:
    async def main() -> None:
        async with aiohttp.ClientSession() as http:
            async with serving(config_of(basic("echo"), shutdown_timeout_s=5)) as svc:
                follow = await http.get(svc.url + "/warmstart/logs/echo", params={"follow": "1"})
                assert follow.status == 200
                t0 = asyncio.get_running_loop().time()
            assert asyncio.get_running_loop().time() - t0 < 2.0
            assert await asyncio.wait_for(follow.content.read(), 2.0) == b""
            follow.release()

    arun(main())


def test_an_app_without_background_answers_store_operations_with_internal_errors(
    arun: Callable[..., Any],
) -> None:
    async def main() -> None:
        config = config_of(basic("echo"))
        engine = await start_engine(config)
        try:
            async with (
                TestServer(create_app(engine, config)) as server,
                aiohttp.ClientSession() as http,
            ):
                url = str(server.make_url("/"))
                configs = url + "2019-09-25/functions/echo/event-invoke-config"
                async with http.get(configs) as resp:
                    assert (resp.status, resp.headers["x-amzn-ErrorType"]) == (
                        500,
                        "ServiceException",
                    )
                    assert await resp.json() == {
                        "Type": "Service",
                        "Message": "async invocation settings need the service's durable "
                        "store (warmstart serve)",
                    }
                rules = {"X-Amz-Target": "AWSEvents.ListRules"}
                async with http.post(url, headers=rules, data=b"{}") as resp:
                    assert resp.status == 500
                    assert await resp.json(content_type=None) == {
                        "__type": "ServiceException",
                        "message": "EventBridge rules need the service's data directory",
                    }
                async with http.post(url + "v1/listjobs", data=b'{"jobQueue": "q"}') as resp:
                    assert (resp.status, resp.headers["x-amzn-ErrorType"]) == (
                        500,
                        "ServerException",
                    )
                    assert await resp.json() == {
                        "__type": "ServerException",
                        "message": "the batch queue is not running on this service",
                    }
                # DeleteFunction needs no store: without one there are no settings to delete
                async with http.delete(url + "2015-03-31/functions/echo") as resp:
                    assert resp.status == 204
            assert engine.functions() == []
        finally:
            await engine.close()
            await asyncio.get_running_loop().shutdown_default_executor()

    arun(main())


def test_unexpected_errors_are_each_apis_internal_error(arun: Callable[..., Any]) -> None:
    """A bug (here in the hook) is logged and answered as the API's internal error."""

    async def authenticate(request: web.Request, body: bytes) -> None:
        raise RuntimeError("boom")

    lambda_error = {"Type": "Service", "Message": "RuntimeError: boom"}

    def json_error(code: str) -> dict[str, str]:
        return {"__type": code, "message": "RuntimeError: boom"}

    ecs = {"X-Amz-Target": "AmazonEC2ContainerServiceV20141113.ListClusters"}
    events = {"X-Amz-Target": "AWSEvents.ListRules"}
    unknown = {"X-Amz-Target": "Nobody.Serves"}
    cases: list[tuple[str, dict[str, str], str, dict[str, str]]] = [
        ("/2015-03-31/functions", {}, "ServiceException", lambda_error),
        ("/v1/listjobs", {}, "ServerException", json_error("ServerException")),
        ("/", ecs, "ServerException", json_error("ServerException")),
        ("/", events, "InternalException", json_error("InternalException")),
        ("/", unknown, "InternalFailure", json_error("InternalFailure")),
    ]

    async def main() -> None:
        async with (
            serving(config_of(basic("echo")), authenticate=authenticate) as svc,
            aiohttp.ClientSession() as http,
        ):
            for path, headers, code, expected in cases:
                async with http.post(svc.url + path, headers=headers, data=b"{}") as resp:
                    assert (resp.status, resp.headers["x-amzn-ErrorType"]) == (500, code), path
                    doc = await resp.json(content_type=None)
                    assert doc == expected, path

    arun(main())


def test_one_operation_reads_then_authenticates_then_runs(
    arun: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    """``protocol.operation``: an oversized body is refused before the hook sees it, the hook
    before the operation runs; what is not an AWS error is logged and named by the wire."""
    steps: list[str] = []

    def render(error: protocol.AwsError) -> web.Response:
        doc = {"code": error.code, "message": error.message}
        return web.json_response(doc, status=error.status)

    async def authenticate(request: web.Request, body: bytes) -> None:
        steps.append(f"auth {body!r}")
        if request.headers.get("X-Deny"):
            raise protocol.ServerException("denied", "AccessDenied")

    async def run(request: web.Request, body: bytes) -> web.StreamResponse:
        steps.append("run")
        if request.headers.get("X-Boom"):
            raise KeyError("boom")
        return web.Response(body=body)

    wire = protocol.WireFormat("Test API", render, "Oops")
    app = web.Application()
    app.router.add_post("/", protocol.operation(run, within(4), wire, authenticate))

    async def main() -> None:
        async with TestServer(app) as server, aiohttp.ClientSession() as http:

            async def answer(body: bytes, **headers: str) -> tuple[int, bytes]:
                async with http.post(server.make_url("/"), data=body, headers=headers) as resp:
                    return resp.status, await resp.read()

            assert await answer(b"12345") == (
                413,
                b'{"code": "RequestTooLargeException", "message": "Request must be smaller '
                b'than 4 bytes (got at least 5)"}',
            )
            assert steps == []
            denied = (500, b'{"code": "AccessDenied", "message": "denied"}')
            assert await answer(b"ab", **{"X-Deny": "1"}) == denied
            assert steps == ["auth b'ab'"]
            assert await answer(b"ok") == (200, b"ok")
            assert steps == ["auth b'ab'", "auth b'ok'", "run"]
            with caplog.at_level(logging.ERROR, "warmstart.service"):
                assert await answer(b"", **{"X-Boom": "1"}) == (
                    500,
                    b'{"code": "Oops", "message": "KeyError: \'boom\'"}',
                )
            logged = [r.getMessage() for r in caplog.records if r.name == "warmstart.service"]
            assert logged == ["unexpected error in a Test API operation"]

    arun(main())


def test_an_unavailable_store_fails_where_it_is_first_used() -> None:
    store: Any = protocol.Unavailable("no store here", "ServiceException")
    with pytest.raises(protocol.StoreUnavailable) as caught:
        store.get_rule  # noqa: B018 - reaching for a method is enough
    assert (caught.value.code, caught.value.status, caught.value.message) == (
        "ServiceException",
        500,
        "no store here",
    )
    assert not hasattr(store, "__len__")
