"""The config file's service sections: [service], [auth], [routes."METHOD /path"]."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import ROOT, refused, write_toml

from runtime.configfile import (
    CODE_UPLOAD_LIMIT,
    AuthConfig,
    RouteConfig,
    ServiceConfig,
    load,
)

FN = '[functions.hello]\nhandler = "app.handler"\ncode = "c"\n'

GOOD = (
    FN
    + """
[service]
host = "0.0.0.0"
port = 8080
shutdown_timeout_s = 5
code_upload_limit_bytes = 1048576

[auth]
keys = { AKIDEXAMPLE = "wJalrXUtnFEMI", SECOND_KEY = "s2" }
api_keys = ["k-1234567890abcdefghij"]

[routes."GET /hello"]
function = "hello"

[routes."ANY /items/{id}"]
function = "hello"
payload_format = "1.0"
api_key_required = true
timeout_ms = 1500

[routes."$default"]
function = "hello"
"""
)


def test_service_auth_and_routes_are_loaded(tmp_path: Path) -> None:
    config = load(write_toml(tmp_path, GOOD))
    assert config.service == ServiceConfig(
        host="0.0.0.0", port=8080, shutdown_timeout_s=5.0, code_upload_limit_bytes=1048576
    )
    assert config.auth == AuthConfig(
        keys={"AKIDEXAMPLE": "wJalrXUtnFEMI", "SECOND_KEY": "s2"},
        api_keys=["k-1234567890abcdefghij"],
    )
    assert config.auth.enabled
    assert list(config.routes) == ["GET /hello", "ANY /items/{id}", "$default"]
    items = config.routes["ANY /items/{id}"]
    assert items == RouteConfig(
        key="ANY /items/{id}",
        function="hello",
        payload_format="1.0",
        api_key_required=True,
        timeout_ms=1500,
    )
    default = config.routes["$default"]
    assert (default.payload_format, default.timeout_ms) == ("2.0", 29_000)


def test_the_connection_limits_are_loaded(tmp_path: Path) -> None:
    text = (
        "[service]\nheader_timeout_s = 2\nbody_timeout_s = 3.5\nkeepalive_timeout_s = 4\n"
        "max_connections = 64\n"
    )
    service = load(write_toml(tmp_path, text)).service
    assert (service.header_timeout_s, service.body_timeout_s) == (2.0, 3.5)
    assert (service.keepalive_timeout_s, service.max_connections) == (4.0, 64)
    default = ServiceConfig()
    assert (default.header_timeout_s, default.body_timeout_s) == (10.0, 30.0)
    assert (default.keepalive_timeout_s, default.max_connections) == (75.0, None)


def test_defaults_without_the_sections(tmp_path: Path) -> None:
    config = load(write_toml(tmp_path, FN))
    assert config.service == ServiceConfig()
    assert (config.service.host, config.service.port) == ("127.0.0.1", 9000)
    assert config.service.code_upload_limit_bytes == CODE_UPLOAD_LIMIT
    assert not config.auth.enabled
    assert config.routes == {}


def test_the_example_config_loads() -> None:
    config = load(ROOT / "examples" / "warmstart.toml")
    assert set(config.functions) >= {"hello", "counter", "slow"}
    assert len(config.routes) >= 2
    for route in config.routes.values():
        assert Path(config.functions[route.function].code).is_dir()


REJECTIONS = [
    ("[service]\nport = 70000\n", "service.port", "outside the allowed range 0-65535"),
    ("[service]\nport = \"80\"\n", "service.port", "expected `int`, got `str`"),
    ("[service]\nhots = \"x\"\n", "service.hots", "unknown key"),
    ("[service]\nhost = \"\"\n", "service.host", "must be a host name"),
    ("[service]\nshutdown_timeout_s = -1\n", "service.shutdown_timeout_s", "outside"),
    ("service = 3\n", "service", "expected a table, got an integer"),
    ("[service]\nheader_timeout_s = 0\n", "service.header_timeout_s",
     "0 is outside the allowed range 0.1-3600"),
    ("[service]\nbody_timeout_s = 7200\n", "service.body_timeout_s",
     "7200.0 is outside the allowed range 0.1-3600"),
    ("[service]\nkeepalive_timeout_s = \"75\"\n", "service.keepalive_timeout_s",
     "expected `float`, got `str`"),
    ("[service]\nmax_connections = 0\n", "service.max_connections",
     "0 is outside the allowed range 1-1000000"),
    ("[service]\nmax_connections = 1.5\n", "service.max_connections", "expected `int | null`"),
    ("[auth]\nkeys = { \"AK/ID\" = \"s\" }\n", "auth.keys", "letters, digits or underscores"),
    ("[auth]\nkeys = { AKID = 3 }\n", "auth.keys.AKID", "expected a string, got an integer"),
    ("[auth]\nkeys = { AKID = \"\" }\n", "auth.keys", "the secret of AKID is empty"),
    ("[auth]\napi_keys = [\"a b\"]\n", "auth.api_keys", "without spaces"),
    ("[auth]\napi_keys = [\"k\", \"k\"]\n", "auth.api_keys", "listed twice"),
    ("[auth]\napi_keys = \"k\"\n", "auth.api_keys", "expected `array`, got `str`"),
    ("[auth]\nsecret = 1\n", "auth.secret", "unknown key"),
    (FN + '[routes."GET /x"]\nfunction = "nope"\n', 'routes."GET /x".function',
     "'nope' is not declared in [functions] (declared: hello)"),
    (FN + '[routes."FETCH /x"]\nfunction = "hello"\n', 'routes."FETCH /x"',
     "method 'FETCH' is not one of"),
    (FN + '[routes."GET x"]\nfunction = "hello"\n', 'routes."GET x"', "must start with '/'"),
    (FN + '[routes.hello]\nfunction = "hello"\n', "routes.hello",
     "expected 'METHOD /path' or '$default'"),
    (FN + '[routes."GET /{p+}/x"]\nfunction = "hello"\n', 'routes."GET /{p+}/x"',
     "must be the last segment"),
    (FN + '[routes."GET /a/{x}"]\nfunction = "hello"\n[routes."GET /a/{y}"]\nfunction = "hello"\n',
     'routes."GET /a/{y}"', "matches exactly the same requests as 'GET /a/{x}'"),
    (FN + '[routes."GET /x"]\nfunction = "hello"\npayload_format = "3.0"\n',
     'routes."GET /x".payload_format', "expected one of: 1.0, 2.0"),
    (FN + '[routes."GET /x"]\nfunction = "hello"\ntimeout_ms = 30000\n',
     'routes."GET /x".timeout_ms', "outside the allowed range 50-29000"),
    (FN + '[routes."GET /x"]\nfunction = "hello"\napi_key_required = true\n',
     'routes."GET /x".api_key_required', "[auth] has no api_keys"),
    (FN + '[routes."GET /x"]\nfunction = "hello"\npath = "/y"\n', 'routes."GET /x".path',
     "the route key gives it"),
    (FN + '[routes."GET /x"]\nfuncton = "hello"\n', 'routes."GET /x".funct' + "on",
     "unknown key"),
    (FN + '[routes."GET /x"]\npayload_format = "1.0"\n', 'routes."GET /x".function',
     "required, but missing"),
    ('routes = ["GET /x"]\n' + FN, "routes", "expected a table, got an array"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "key", "reason"), REJECTIONS)
def test_rejections_name_file_key_and_reason(
    tmp_path: Path, text: str, key: str, reason: str
) -> None:
    refused(tmp_path, text, key, reason)
