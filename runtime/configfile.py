"""The TOML configuration file: an engine's pool and its functions.

```toml
[pool]                      # PoolConfig fields
account_concurrency = 100

[functions.hello]           # FunctionConfig fields; the name is the table key
handler = "app.handler"
code = "examples/hello"     # relative paths (code, work_dir) are relative to this file
memory_mb = 256
environment = { GREETING = "hi" }
```

``load(path)`` returns a ``ConfigFile``.  Every rejection (a missing or unreadable file, bad
TOML, an unknown section or key, a bad value) raises ``ConfigFileError`` naming the file, the
dotted key and the reason.  A new top-level section is one entry in ``SECTIONS``.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec

from .config import FunctionConfig, PoolConfig
from .errors import InvalidParameterValueException

# tomllib is in the standard library from 3.11; tomli is the same parser for 3.10
_toml: Any = importlib.import_module("tomllib" if sys.version_info >= (3, 11) else "tomli")

S = TypeVar("S", bound=msgspec.Struct)

# msgspec's wording: "Expected `int`, got `str` - at `$.memory_mb`"
_AT = re.compile(r"^(?P<reason>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_MISSING = re.compile(r"^Object missing required field `(\w+)`")


class ConfigFileError(InvalidParameterValueException):
    """A configuration file was rejected: ``path``, ``key`` (dotted, or None) and ``reason``."""

    def __init__(self, path: str, key: str | None, reason: str) -> None:
        where = f"{path}: {key}" if key else path
        super().__init__(f"{where}: {reason}")
        self.path = path
        self.key = key
        self.reason = reason


@dataclass(frozen=True)
class ConfigFile:
    """What a configuration file declares."""

    path: str
    pool: PoolConfig = field(default_factory=PoolConfig)
    functions: dict[str, FunctionConfig] = field(default_factory=dict)


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
    return ConfigFile(path, **sections)


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
    _check_environment(spec.get("environment"), path, f"{where}.environment")
    if isinstance(spec.get("code"), str) and spec["code"]:
        spec["code"] = _resolve(base, spec["code"])
    return _convert({"name": name, **spec}, FunctionConfig, path, where)


SECTIONS: dict[str, Callable[[Any, str, str], Any]] = {
    "pool": _load_pool,
    "functions": _load_functions,
}


def _table(value: Any, path: str, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigFileError(path, where, f"expected a table, got {_kind(value)}")
    return dict(value)


def _check_keys(table: dict[str, Any], struct: type[msgspec.Struct], path: str, where: str) -> None:
    allowed = set(struct.__struct_fields__)
    for key in table:
        if key not in allowed:
            known = ", ".join(sorted(allowed - {"name"}))
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
            raise ConfigFileError(path, f"{where}.{missing[1]}", "required, but missing") from None
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
