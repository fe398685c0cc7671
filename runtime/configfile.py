"""The TOML configuration file: an engine's pool and functions, and the service around them.

```toml
[pool]                      # PoolConfig fields
account_concurrency = 100

[functions.hello]           # FunctionConfig fields; the name is the table key
handler = "app.handler"
code = "examples/hello"     # relative paths (code, work_dir) are relative to this file
memory_mb = 256
environment = { GREETING = "hi" }

[functions.resize]          # a container image is the function: its entrypoint is the runtime
package_type = "Image"
backend = "container"
image = "resize:latest"     # a local image (docker build); no registry is reached
image_config = { command = ["app.handler"] }   # entry_point, command, working_directory

[service]                   # ServiceConfig: `warmstart serve`
host = "127.0.0.1"
port = 9000
header_timeout_s = 10       # then 408; also how long a new connection may stay silent
body_timeout_s = 30         # the longest pause inside a body; then 408
keepalive_timeout_s = 75
max_connections = 512       # default: 512, or half the open-file limit when lower

[auth]                      # AuthConfig: SigV4 keys and API Gateway API keys
keys = { AKIDEXAMPLE = "secret" }
api_keys = ["a-long-random-api-key"]

[routes."GET /hello"]       # RouteConfig: an API Gateway route; the route key is the table key
function = "hello"
payload_format = "2.0"

[schedules.nightly]         # ScheduleConfig: an EventBridge schedule rule; the name is the key
expression = "cron(0 3 * * ? *)"
function = "hello"
input = { report = "daily" }  # optional: sent instead of the Scheduled Event (or a JSON string)

[batch]                     # BatchConfig: the embedded batch queue and its compute environment
data_dir = "data"           # relative to this file; holds batch.sqlite3
max_vcpus = 8
memory_mib = 16384

[store]                     # StoreConfig: several nodes on one Redis (without url: batch.sqlite3)
url = "redis://127.0.0.1:6379/0"   # also --store URL and $WARMSTART_STORE
lease_s = 10                # a node silent this long loses its work to the others
```

``load(path)`` returns a ``ConfigFile``.  Every rejection (a missing or unreadable file, bad
TOML, an unknown section or key, a bad value, a route naming an undeclared function) raises
``ConfigFileError`` naming the file, the dotted key and the reason.  A new top-level section is
one entry in ``SECTIONS``; checks across sections go in ``_cross_check``.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import typing
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import msgspec
import orjson

from .apigw.routes import (
    DEFAULT_TIMEOUT_MS,
    TIMEOUT_MS_RANGE,
    RouteKey,
    parse_route_key,
)
from .config import BatchConfig, FunctionConfig, PoolConfig, _range
from .errors import InvalidParameterValueException
from .schedules.expressions import ScheduleExpressionError
from .schedules.expressions import parse as parse_schedule

# tomllib is in the standard library from 3.11; tomli is the same parser for 3.10
_toml: Any = importlib.import_module("tomllib" if sys.version_info >= (3, 11) else "tomli")

S = TypeVar("S", bound=msgspec.Struct)

# msgspec's wording: "Expected `int`, got `str` - at `$.memory_mb`"
_AT = re.compile(r"^(?P<reason>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_MISSING = re.compile(r"^Object missing required field `(\w+)`(?: - at `\$(?P<path>[^`]*)`)?")


class ConfigFileError(InvalidParameterValueException):
    """A configuration file was rejected: ``path``, ``key`` (dotted, or None) and ``reason``."""

    def __init__(self, path: str, key: str | None, reason: str) -> None:
        where = f"{path}: {key}" if key else path
        super().__init__(f"{where}: {reason}")
        self.path = path
        self.key = key
        self.reason = reason


#: Lambda's limit for a CreateFunction / UpdateFunctionCode request (a base64 zip in JSON)
CODE_UPLOAD_LIMIT = 69_905_067
#: API Gateway's payload limit
ROUTE_BODY_LIMIT = 10_485_760
#: the allowed range of the HTTP front's timeouts, in seconds
TIMEOUT_S_RANGE = (0.1, 3600)
MAX_CONNECTIONS_RANGE = (1, 1_000_000)
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_KEY_ID = re.compile(r"^[A-Za-z0-9_]{1,128}$")
_API_KEY = re.compile(r"^\S{1,128}$")


class ServiceConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``warmstart serve``: where it listens and the limits of its HTTP front."""

    #: loopback by default; anything else should come with [auth]
    host: str = "127.0.0.1"
    #: 0 picks a free port
    port: int = 9000
    #: on SIGTERM/SIGINT, how long in-flight requests and invocations may take to finish
    shutdown_timeout_s: float = 30.0
    #: request size cap of CreateFunction / UpdateFunctionCode (base64 zip inside JSON)
    code_upload_limit_bytes: int = CODE_UPLOAD_LIMIT
    #: request size cap of API Gateway routes
    route_body_limit_bytes: int = ROUTE_BODY_LIMIT
    #: how long a request's headers may take to arrive in full (then 408), and how long a
    #: new connection may wait before it starts a request (then closed)
    header_timeout_s: float = 10.0
    #: the longest pause while a request's body arrives (then 408)
    body_timeout_s: float = 30.0
    #: how long a keep-alive connection may stay idle between requests (then closed)
    keepalive_timeout_s: float = 75.0
    #: open connections at most; at the cap a new one closes the longest idle one.  None:
    #: 512, or half the open-file limit when that is lower
    max_connections: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not self.host or any(c.isspace() for c in self.host):
            raise InvalidParameterValueException(
                f"host: {self.host!r} must be a host name or address"
            )
        _range("port", self.port, 0, 65535, integer=True)
        _range("shutdown_timeout_s", self.shutdown_timeout_s, 0)
        _range("code_upload_limit_bytes", self.code_upload_limit_bytes, 1024, integer=True)
        _range("route_body_limit_bytes", self.route_body_limit_bytes, 0, integer=True)
        _range("header_timeout_s", self.header_timeout_s, *TIMEOUT_S_RANGE)
        _range("body_timeout_s", self.body_timeout_s, *TIMEOUT_S_RANGE)
        _range("keepalive_timeout_s", self.keepalive_timeout_s, *TIMEOUT_S_RANGE)
        if self.max_connections is not None:
            _range("max_connections", self.max_connections, *MAX_CONNECTIONS_RANGE, integer=True)


class StoreConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Where the durable state lives (``[store]``): without ``url``, the SQLite file in
    ``[batch] data_dir`` (one node); with a Redis URL, that Redis, shared by every node
    that names it (DESIGN §9)."""

    #: ``redis://HOST:PORT/DB`` (``rediss://``, ``unix://`` too); ``$WARMSTART_STORE`` and
    #: ``warmstart serve --store`` override it
    url: str | None = None
    #: every key starts with it: clusters that share one Redis keep apart by prefix
    prefix: str = "warmstart"
    #: refuse a Redis without ``appendonly yes`` (its restart would lose accepted work)
    require_append_only: bool = True
    #: a node that stops renewing its lease for this long loses its work to the others
    lease_s: float = 10.0
    #: this node's id in the cluster; default ``host/pid/start time`` (set a stable one per
    #: pod so that a restarted node is known for the same node)
    node_id: str | None = None
    #: how the other nodes reach this one for forwarded invokes; default: the URL it listens
    #: on (``$WARMSTART_ADVERTISE_URL`` overrides)
    advertise_url: str | None = None

    def __post_init__(self) -> None:
        if self.url is not None:
            from .redisdb import check_url

            check_url(self.url)
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", self.prefix):
            raise InvalidParameterValueException("prefix: 1-64 letters, digits, '.', '-' or '_'")
        _range("lease_s", self.lease_s, 0.1, 3600)
        if self.node_id is not None and not re.fullmatch(r"[A-Za-z0-9_./:-]{1,128}", self.node_id):
            raise InvalidParameterValueException(
                "node_id: 1-128 letters, digits, '.', '/', ':', '-' or '_'"
            )
        if self.advertise_url is not None and not re.fullmatch(
            r"https?://[^\s/]+/?", self.advertise_url
        ):
            raise InvalidParameterValueException(
                f"advertise_url: {self.advertise_url!r} is not http://HOST:PORT"
            )

    @property
    def shared(self) -> bool:
        """Whether the state is in Redis (several nodes), not in the SQLite file."""
        return self.url is not None


class AuthConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Credentials the service accepts; with none configured, auth is off."""

    #: SigV4 access key id -> secret access key
    keys: dict[str, str] = msgspec.field(default_factory=dict)
    #: values accepted in ``x-api-key`` on routes with ``api_key_required``
    api_keys: list[str] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        for key_id, secret in self.keys.items():
            if not _KEY_ID.fullmatch(key_id):
                raise InvalidParameterValueException(
                    f"keys: access key id {key_id!r} must be 1-128 letters, digits or underscores"
                )
            if not secret:
                raise InvalidParameterValueException(f"keys: the secret of {key_id} is empty")
        for i, value in enumerate(self.api_keys):
            if not _API_KEY.fullmatch(value):
                raise InvalidParameterValueException(
                    f"api_keys: entry {i} must be 1-128 characters without spaces"
                )
        if len(set(self.api_keys)) != len(self.api_keys):
            raise InvalidParameterValueException("api_keys: an API key is listed twice")

    @property
    def enabled(self) -> bool:
        """SigV4 verification is on when at least one access key is configured."""
        return bool(self.keys)


class RouteConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """An API Gateway route: the table key (``GET /pets/{id}``, ``ANY /{proxy+}``, ``$default``)
    to a function.  ``key`` follows ``apigw.routes.parse_route_key``'s grammar.
    """

    key: str
    function: str
    payload_format: Literal["1.0", "2.0"] = "2.0"
    api_key_required: bool = False
    #: the integration timeout; API Gateway's default (and maximum) is 29 s
    timeout_ms: int = DEFAULT_TIMEOUT_MS

    def __post_init__(self) -> None:
        _range("timeout_ms", self.timeout_ms, *TIMEOUT_MS_RANGE, integer=True)


_RULE_NAME = re.compile(r"^[.\-_A-Za-z0-9]{1,64}$")


class ScheduleConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """An EventBridge schedule rule (``[schedules.NAME]``) whose one target is ``function``.

    Rules from the file are upserted into the service's rule store at start (the store's
    rules that left the file are deleted; rules created through the API are kept).
    """

    name: str
    #: ``rate(5 minutes)`` or ``cron(0 12 * * ? *)``, EventBridge's syntax, UTC
    expression: str
    function: str
    #: JSON text sent instead of EventBridge's Scheduled Event (an inline table is encoded)
    input: str | None = None
    enabled: bool = True
    description: str | None = None

    def __post_init__(self) -> None:
        if not _RULE_NAME.fullmatch(self.name):
            raise InvalidParameterValueException(
                "a schedule name is 1-64 letters, digits, '.', '-' or '_'"
            )
        try:
            parse_schedule(self.expression)
        except ScheduleExpressionError as exc:
            raise InvalidParameterValueException(f"expression: {exc.reason}") from None
        if self.input is not None:
            try:
                orjson.loads(self.input)
            except orjson.JSONDecodeError as exc:
                raise InvalidParameterValueException(f"input: not valid JSON ({exc})") from None
        if self.description is not None and len(self.description) > 512:
            raise InvalidParameterValueException("description: at most 512 characters")


@dataclass(frozen=True)
class ConfigFile:
    """What a configuration file declares."""

    path: str
    pool: PoolConfig = field(default_factory=PoolConfig)
    functions: dict[str, FunctionConfig] = field(default_factory=dict)
    service: ServiceConfig = field(default_factory=ServiceConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    #: route key (``GET /hello``) -> route, in file order
    routes: dict[str, RouteConfig] = field(default_factory=dict)
    #: schedule rule name -> rule, in file order
    schedules: dict[str, ScheduleConfig] = field(default_factory=dict)
    batch: BatchConfig = field(default_factory=BatchConfig)
    store: StoreConfig = field(default_factory=StoreConfig)


def load(path: str | os.PathLike[str]) -> ConfigFile:
    """Read and validate the TOML file at ``path``."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = _toml.load(f)
    except FileNotFoundError:
        raise ConfigFileError(path, None, "no such file") from None
    except IsADirectoryError:
        raise ConfigFileError(path, None, "is a directory, not a file") from None
    except OSError as exc:
        raise ConfigFileError(path, None, f"cannot be read: {exc.strerror}") from None
    except _toml.TOMLDecodeError as exc:
        raise ConfigFileError(path, None, f"not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigFileError(path, None, f"not UTF-8 text, as TOML must be: {exc}") from None
    return parse(data, path)


def parse(data: dict[str, Any], path: str) -> ConfigFile:
    """Validate already-parsed TOML ``data``; ``path`` names the file in errors and anchors
    relative paths."""
    base = os.path.dirname(os.path.abspath(path))
    sections: dict[str, Any] = {}
    for key, value in data.items():
        loader = SECTIONS.get(key)
        if loader is None:
            known = ", ".join(sorted(SECTIONS))
            raise ConfigFileError(path, key, f"unknown section (expected one of: {known})")
        sections[key] = loader(value, path, base)
    config = ConfigFile(path, **sections)
    _cross_check(config)
    return config


def _cross_check(config: ConfigFile) -> None:
    """Rules between sections: routes name declared functions; API keys exist when required."""
    for key, route in config.routes.items():
        if route.function not in config.functions:
            declared = ", ".join(sorted(config.functions)) or "none"
            raise ConfigFileError(
                config.path,
                f"{_route_where(key)}.function",
                f"{route.function!r} is not declared in [functions] (declared: {declared})",
            )
        if route.api_key_required and not config.auth.api_keys:
            raise ConfigFileError(
                config.path,
                f"{_route_where(key)}.api_key_required",
                "the route requires an API key but [auth] has no api_keys",
            )
    for name, schedule in config.schedules.items():
        if schedule.function not in config.functions:
            declared = ", ".join(sorted(config.functions)) or "none"
            raise ConfigFileError(
                config.path,
                f"{_schedule_where(name)}.function",
                f"{schedule.function!r} is not declared in [functions] (declared: {declared})",
            )


def _load_pool(table: Any, path: str, base: str) -> PoolConfig:
    table = _table(table, path, "pool")
    _check_keys(table, PoolConfig, path, "pool")
    if isinstance(table.get("work_dir"), str):
        table["work_dir"] = _resolve(base, table["work_dir"])
    return _convert(table, PoolConfig, path, "pool")


def _load_functions(table: Any, path: str, base: str) -> dict[str, FunctionConfig]:
    table = _table(table, path, "functions")
    return {
        name: _load_function(name, spec, path, base, f"functions.{name}")
        for name, spec in table.items()
    }


def _load_function(name: str, spec: Any, path: str, base: str, where: str) -> FunctionConfig:
    spec = _table(spec, path, where)
    if "name" in spec:
        raise ConfigFileError(path, f"{where}.name", "the name is the table key; remove 'name'")
    _check_keys(spec, FunctionConfig, path, where)
    if spec.get("package_type", "Zip") != "Image":  # an image function has neither
        for key in ("handler", "code"):
            if key not in spec:
                raise ConfigFileError(path, f"{where}.{key}", "required, but missing")
    _check_environment(spec.get("environment"), path, f"{where}.environment")
    if isinstance(spec.get("code"), str) and spec["code"]:
        spec["code"] = _resolve(base, spec["code"])
    return _convert({"name": name, **spec}, FunctionConfig, path, where)


def _load_service(table: Any, path: str, base: str) -> ServiceConfig:
    table = _table(table, path, "service")
    _check_keys(table, ServiceConfig, path, "service")
    return _convert(table, ServiceConfig, path, "service")


def _load_auth(table: Any, path: str, base: str) -> AuthConfig:
    table = _table(table, path, "auth")
    _check_keys(table, AuthConfig, path, "auth")
    keys = table.get("keys")
    if isinstance(keys, dict):
        for key_id, secret in keys.items():
            if not isinstance(secret, str):
                raise ConfigFileError(
                    path, f"auth.keys.{key_id}", f"expected a string, got {_kind(secret)}"
                )
    return _convert(table, AuthConfig, path, "auth")


def _load_routes(table: Any, path: str, base: str) -> dict[str, RouteConfig]:
    table = _table(table, path, "routes")
    routes = {}
    # a route key's shape -> its first key: two keys of one shape match the same requests
    seen: dict[Any, str] = {}
    for key, spec in table.items():
        where = _route_where(key)
        spec = _table(spec, path, where)
        for reserved in ("key", "method", "path"):
            if reserved in spec:
                raise ConfigFileError(
                    path, f"{where}.{reserved}", "the route key gives it; remove it"
                )
        shape = _route_key(key, path, where).shape()
        _check_keys(spec, RouteConfig, path, where, hidden={"key"})
        routes[key] = _convert({"key": key, **spec}, RouteConfig, path, where)
        if shape in seen:
            raise ConfigFileError(
                path, where, f"matches exactly the same requests as {seen[shape]!r}"
            )
        seen[shape] = key
    return routes


def _route_where(key: str) -> str:
    """``routes."GET /hello"``: route keys are quoted, as in the file."""
    return f"routes.{key}" if _BARE_KEY.fullmatch(key) else f'routes."{key}"'


def _route_key(key: str, path: str, where: str) -> RouteKey:
    """The parsed route key, by the same grammar the front door's router uses."""
    try:
        return parse_route_key(key)
    except ValueError as exc:
        reason = str(exc).split(": ", 1)[-1]
        raise ConfigFileError(path, where, reason) from None


def _load_schedules(table: Any, path: str, base: str) -> dict[str, ScheduleConfig]:
    table = _table(table, path, "schedules")
    schedules = {}
    for name, spec in table.items():
        where = _schedule_where(name)
        spec = _table(spec, path, where)
        if "name" in spec:
            raise ConfigFileError(path, f"{where}.name", "the name is the table key; remove 'name'")
        _check_keys(spec, ScheduleConfig, path, where)
        if isinstance(spec.get("input"), dict):
            try:
                spec["input"] = orjson.dumps(spec["input"]).decode()
            except orjson.JSONEncodeError as exc:  # an integer past 64 bits, a table too deep
                raise ConfigFileError(
                    path, f"{where}.input", f"cannot be sent as JSON: {exc}"
                ) from None
        schedules[name] = _convert({"name": name, **spec}, ScheduleConfig, path, where)
    return schedules


def _schedule_where(name: str) -> str:
    return f"schedules.{name}" if _BARE_KEY.fullmatch(name) else f'schedules."{name}"'


def _load_batch(table: Any, path: str, base: str) -> BatchConfig:
    table = _table(table, path, "batch")
    _check_keys(table, BatchConfig, path, "batch", hidden=frozenset())
    if isinstance(table.get("data_dir"), str) and table["data_dir"]:
        table["data_dir"] = _resolve(base, table["data_dir"])
    return _convert(table, BatchConfig, path, "batch")


def _load_store(table: Any, path: str, base: str) -> StoreConfig:
    table = _table(table, path, "store")
    _check_keys(table, StoreConfig, path, "store", hidden=frozenset())
    return _convert(table, StoreConfig, path, "store")


SECTIONS: dict[str, Callable[[Any, str, str], Any]] = {
    "pool": _load_pool,
    "functions": _load_functions,
    "service": _load_service,
    "auth": _load_auth,
    "routes": _load_routes,
    "schedules": _load_schedules,
    "batch": _load_batch,
    "store": _load_store,
}


def _table(value: Any, path: str, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigFileError(path, where, f"expected a table, got {_kind(value)}")
    return dict(value)


def _check_keys(
    table: dict[str, Any],
    struct: type[msgspec.Struct],
    path: str,
    where: str,
    hidden: AbstractSet[str] = frozenset({"name"}),
) -> None:
    """Refuse keys ``struct`` does not have; ``hidden`` fields come from elsewhere (the key)."""
    allowed = set(struct.__struct_fields__) - hidden
    for key in table:
        if key not in allowed:
            known = ", ".join(sorted(allowed))
            raise ConfigFileError(path, f"{where}.{key}", f"unknown key (expected one of: {known})")


def _check_environment(env: Any, path: str, where: str) -> None:
    if env is None:
        return
    if not isinstance(env, dict):
        raise ConfigFileError(path, where, f"expected a table of strings, got {_kind(env)}")
    for key, value in env.items():
        if not isinstance(value, str):
            raise ConfigFileError(path, f"{where}.{key}", f"expected a string, got {_kind(value)}")


def _convert(table: dict[str, Any], struct: type[S], path: str, where: str) -> S:
    """``msgspec.convert`` with its errors (types) and the structs' own (ranges) re-worded."""
    try:
        return msgspec.convert(table, struct)
    except msgspec.ValidationError as exc:
        missing = _MISSING.match(str(exc))
        if missing is not None:
            inner = (missing["path"] or "").lstrip(".")
            key = f"{where}.{inner}.{missing[1]}" if inner else f"{where}.{missing[1]}"
            raise ConfigFileError(path, key, "required, but missing") from None
        match = _AT.match(str(exc))
        assert match is not None  # the pattern matches any text
        sub = (match["path"] or "").lstrip(".")
        key = f"{where}.{sub}" if sub else where
        reason = _lower_first(match["reason"]) + _choices(struct, sub)
        raise ConfigFileError(path, key, reason) from None
    except InvalidParameterValueException as exc:
        field_name, sep, reason = exc.message.partition(": ")
        if not sep or " " in field_name:
            raise ConfigFileError(path, where, exc.message) from None
        raise ConfigFileError(path, f"{where}.{field_name}", reason) from None


def _choices(struct: type[Any], name: str) -> str:
    """`` (expected one of: ...)`` for a field whose type is a Literal, else nothing."""
    hint = typing.get_type_hints(struct).get(name)
    if typing.get_origin(hint) is not typing.Literal:
        return ""
    return " (expected one of: " + ", ".join(map(str, typing.get_args(hint))) + ")"


def _resolve(base: str, value: str) -> str:
    value = os.path.expanduser(value)
    return value if os.path.isabs(value) else os.path.normpath(os.path.join(base, value))


def _kind(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    names.update({list: "an array", dict: "a table"})
    return names.get(type(value), type(value).__name__)


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]
