"""The service as configured: [auth] keys make it verify SigV4, [routes] are served as API
Gateway routes (with api keys where required), both through ``warmstart serve``'s own app."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import botocore.exceptions
import pytest
from helpers import FUNCTIONS
from service_support import call, lambda_client, serving

from runtime.configfile import load

APIGW = FUNCTIONS / "apigw_echo"
CONFIG = f"""
[pool]
account_id = "111122223333"

[service]
port = 0
route_body_limit_bytes = 1000

[functions.echo2]
handler = "app.echo_v2"
code = "{APIGW}"

[functions.echo1]
handler = "app.echo_v1"
code = "{APIGW}"

[auth]
keys = {{ AKIDTEST = "secret" }}
api_keys = ["k-0123456789"]

[routes."GET /hello"]
function = "echo2"

[routes."ANY /items/{{id}}"]
function = "echo1"
payload_format = "1.0"

[routes."POST /private"]
function = "echo2"
api_key_required = true
"""


pytestmark = pytest.mark.usefixtures("no_leaked_threads")


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    path = tmp_path / "warmstart.toml"
    path.write_text(CONFIG)
    return path


def test_configured_keys_make_the_lambda_api_verify_sigv4(
    arun: Callable[..., Any], config_path: Path
) -> None:
    async def main() -> None:
        async with serving(load(config_path)) as svc:
            good = await call(lambda_client, svc.url)
            try:
                listed = (await call(good.list_functions))["Functions"]
                assert sorted(f["FunctionName"] for f in listed) == ["echo1", "echo2"]
                reply = await call(good.invoke, FunctionName="echo2", Payload=b'{"a": 1}')
                assert reply["StatusCode"] == 200
                reply["Payload"].close()
            finally:
                good.close()

            bad = await call(lambda_client, svc.url, secret="wrong")
            try:
                for operation, kwargs in (
                    (bad.list_functions, {}),
                    (bad.invoke, {"FunctionName": "echo2", "Payload": b"{}"}),
                ):
                    with pytest.raises(botocore.exceptions.ClientError) as caught:
                        await call(operation, **kwargs)
                    assert caught.value.response["Error"]["Code"] == "InvalidSignatureException"
            finally:
                bad.close()
            assert svc.engine is not None
            assert svc.engine.stats()["echo2"]["invocations"] == 1  # the refused call never ran

            unsigned = f"{svc.url}/2015-03-31/functions/"
            async with aiohttp.ClientSession() as http, http.get(unsigned) as resp:
                assert resp.status == 403
                assert resp.headers["x-amzn-ErrorType"].startswith(
                    "MissingAuthenticationTokenException"
                )

    arun(main())


def test_routes_are_served_as_api_gateway(arun: Callable[..., Any], config_path: Path) -> None:
    async def main() -> None:
        async with serving(load(config_path)) as svc, aiohttp.ClientSession() as http:
            async with http.get(f"{svc.url}/hello?x=1&x=2", headers={"X-Tag": "t"}) as resp:
                assert resp.status == 200
                event = await resp.json()
            assert event["version"] == "2.0"
            assert event["routeKey"] == "GET /hello"
            assert event["rawPath"] == "/hello"
            assert event["queryStringParameters"] == {"x": "1,2"}
            assert event["headers"]["x-tag"] == "t"
            # the same account as the ARN of the function the event went to
            assert svc.engine is not None
            arn = svc.engine.pool.function_arn("echo2")
            assert arn.split(":")[4] == event["requestContext"]["accountId"] == "111122223333"
            assert event["headers"]["x-forwarded-port"] == str(svc.port)
            assert event["headers"]["x-forwarded-proto"] == "http"
            assert event["headers"]["x-forwarded-for"] == "127.0.0.1"

            json_body = {"data": b'{"n": 1}', "headers": {"Content-Type": "application/json"}}
            async with http.put(f"{svc.url}/items/42", **json_body) as resp:
                assert resp.status == 200
                assert resp.headers.getall("X-Echo") == ["one", "two"]
                event = await resp.json()
            assert event["resource"] == "/items/{id}"
            assert event["requestContext"]["accountId"] == "111122223333"
            assert event["httpMethod"] == "PUT"
            assert event["pathParameters"] == {"id": "42"}
            assert event["body"] == '{"n": 1}'
            assert event["isBase64Encoded"] is False

            async with http.get(f"{svc.url}/nowhere") as resp:
                assert resp.status == 404
            async with http.post(f"{svc.url}/hello", data=b"x" * 2000) as resp:
                # the body is read (and refused) before routing: 413, though no POST /hello route
                assert resp.status == 413
            async with http.get(f"{svc.url}/items/1", data=b"x" * 2000) as resp:
                assert resp.status == 413  # over [service].route_body_limit_bytes

    arun(main())


def test_api_key_required_routes(arun: Callable[..., Any], config_path: Path) -> None:
    async def main() -> None:
        async with serving(load(config_path)) as svc, aiohttp.ClientSession() as http:
            url = f"{svc.url}/private"
            async with http.post(url, data=b"{}") as resp:
                assert resp.status == 403
                assert await resp.json() == {"message": "Forbidden"}
            async with http.post(url, data=b"{}", headers={"x-api-key": "nope"}) as resp:
                assert resp.status == 403
            async with http.post(url, data=b"{}", headers={"X-Api-Key": "k-0123456789"}) as resp:
                assert resp.status == 200
                assert (await resp.json())["routeKey"] == "POST /private"
            assert svc.engine is not None
            assert svc.engine.stats()["echo2"]["invocations"] == 1

    arun(main())
