"""Web frameworks behind the front door, as they are deployed on Lambda.

A FastAPI app under Mangum is served by ``warmstart serve`` in both payload formats, and the
redirects it builds from the request must lead an HTTP client back to the front door; the
events of the same service are read with Powertools' event classes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from aws_lambda_powertools.utilities.data_classes import (
    APIGatewayProxyEvent,
    APIGatewayProxyEventV2,
)
from helpers import FUNCTIONS
from service_support import ServeProcess

ACCOUNT = "111122223333"
API_KEY = "k-0123456789"
CONFIG = """
[pool]
account_id = "{account}"

[functions.web]
handler = "app.handler"
code = "{asgi}"
timeout_s = 30

[functions.echo]
handler = "app.echo_v{major}"
code = "{echo}"

[auth]
api_keys = ["{key}"]

[routes."ANY /{{proxy+}}"]
function = "web"
payload_format = "{fmt}"

[routes."ANY /echo/{{proxy+}}"]
function = "echo"
payload_format = "{fmt}"
api_key_required = true
"""


@pytest.fixture(scope="module", params=["1.0", "2.0"])
def fmt(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, fmt: str) -> Iterator[ServeProcess]:
    """One ``warmstart serve`` per payload format, shared by the module's tests."""
    config = tmp_path_factory.mktemp(f"frameworks-{fmt}") / "warmstart.toml"
    config.write_text(
        CONFIG.format(
            account=ACCOUNT,
            asgi=FUNCTIONS / "asgi_app",
            echo=FUNCTIONS / "apigw_echo",
            major=fmt[0],
            key=API_KEY,
            fmt=fmt,
        )
    )
    serve = ServeProcess(config)
    try:
        yield serve
    finally:
        serve.close()


def get(url: str, **kwargs: Any) -> httpx.Response:
    with httpx.Client(follow_redirects=True, timeout=30) as client:
        return client.get(url, **kwargs)


def test_redirect_to_the_trailing_slash_leads_back_to_the_front_door(
    server: ServeProcess,
) -> None:
    resp = get(f"{server.url}/items?q=1")
    (redirect,) = resp.history
    assert redirect.status_code == 307  # Starlette's redirect_slashes
    assert redirect.headers["location"] == f"{server.url}/items/?q=1"
    assert resp.status_code == 200
    assert resp.json() == {"items": ["a", "b"], "url": f"{server.url}/items/?q=1"}


def test_redirect_to_url_for_leads_back_to_the_front_door(server: ServeProcess) -> None:
    resp = get(f"{server.url}/go")
    (redirect,) = resp.history
    assert redirect.status_code == 303
    assert redirect.headers["location"] == f"{server.url}/landing"
    assert resp.status_code == 200
    assert resp.json() == {"landed": True, "base_url": f"{server.url}/", "client": "127.0.0.1"}


def echo(server: ServeProcess, **headers: str) -> tuple[httpx.Response, dict[str, Any]]:
    resp = get(f"{server.url}/echo/a%20b?x=1&x=2", headers={"x-api-key": API_KEY, **headers})
    assert resp.status_code == 200
    return resp, resp.json()


def test_the_answer_carries_the_request_ids_of_the_event(server: ServeProcess, fmt: str) -> None:
    resp, event = echo(server)
    context = event["requestContext"]
    if fmt == "1.0":
        assert resp.headers["x-amzn-RequestId"] == context["requestId"]
        assert resp.headers["x-amz-apigw-id"] == context["extendedRequestId"]
        assert context["identity"]["apiKey"] == API_KEY
        assert re.fullmatch(r"[a-z0-9]{10}", context["identity"]["apiKeyId"])
    else:
        assert resp.headers["apigw-requestid"] == context["requestId"]
    assert context["accountId"] == ACCOUNT


@pytest.mark.parametrize("fmt", ["1.0"], indirect=True)
def test_powertools_reads_the_rest_api_event(server: ServeProcess) -> None:
    port = server.url.rsplit(":", 1)[1]
    _, raw = echo(server, **{"X-Forwarded-For": "198.51.100.1"})
    event = APIGatewayProxyEvent(raw)
    assert event.request_context.account_id == ACCOUNT
    assert event.request_context.identity.source_ip == "127.0.0.1"
    assert event.request_context.identity.api_key == API_KEY
    key_id = raw["requestContext"]["identity"]["apiKeyId"]
    assert event.request_context.identity.api_key_id == key_id
    assert event.headers["x-forwarded-for"] == "198.51.100.1, 127.0.0.1"
    assert event.headers["x-forwarded-port"] == port
    assert event.headers["x-forwarded-proto"] == "http"
    assert event.multi_value_query_string_parameters == {"x": ["1", "2"]}
    assert event.path_parameters == {"proxy": "a b"}


@pytest.mark.parametrize("fmt", ["2.0"], indirect=True)
def test_powertools_reads_the_http_api_event(server: ServeProcess) -> None:
    port = server.url.rsplit(":", 1)[1]
    _, raw = echo(server, cookie="a=1; b=2")
    event = APIGatewayProxyEventV2(raw)
    assert event.request_context.account_id == ACCOUNT
    assert event.request_context.http.source_ip == "127.0.0.1"
    assert event.headers["x-forwarded-for"] == "127.0.0.1"
    assert event.headers["x-forwarded-port"] == port
    assert event.headers["x-forwarded-proto"] == "http"
    assert event.cookies == ["a=1", "b=2"]
    assert event.raw_path == "/echo/a%20b"
    assert event.query_string_parameters == {"x": "1,2"}
