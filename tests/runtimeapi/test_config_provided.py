"""Custom runtimes in the configuration, the code unpacking, and the API's state machine."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path
from typing import Any

import pytest
from helpers import write_toml

from runtime import configfile
from runtime.agent import runtime_api as R
from runtime.code import prepare_code
from runtime.config import FunctionConfig, check_interpreter
from runtime.pools.process import python_for


@pytest.mark.parametrize("name", ["provided", "provided.al2", "provided.al2023"])
def test_custom_runtimes_are_accepted_on_the_process_backend(name: str) -> None:
    config = FunctionConfig.from_dict(
        {"name": "f", "handler": "h", "code": "/tmp", "runtime": name}
    )
    assert config.custom_runtime
    check_interpreter(config)  # not an interpreter: nothing to probe
    assert python_for(config.runtime) == python_for(None)


def test_custom_runtime_in_the_toml_config(tmp_path: Path) -> None:
    text = (
        '[functions.sh]\nhandler = "function.handler"\ncode = "fn"\nruntime = "provided.al2023"\n'
    )
    loaded = configfile.load(write_toml(tmp_path, text))
    config = loaded.functions["sh"]
    assert config.runtime == "provided.al2023"
    assert config.custom_runtime


def test_custom_runtime_on_the_container_backend() -> None:
    """The container's agent runs the code's bootstrap (tests/containers run it)."""
    config = FunctionConfig(
        name="f",
        handler="h",
        code="/tmp",
        runtime="provided.al2023",
        backend="container",
        image="img",
    )
    assert config.runtime_api
    assert not config.image_package


def test_unzip_keeps_the_bootstrap_executable(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, mode in (("bootstrap", 0o755), ("data.txt", 0o644)):
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (0o100000 | mode) << 16
            archive.writestr(info, "x")
    code = prepare_code(buffer.getvalue(), tmp_path)
    assert os.stat(os.path.join(code, "bootstrap")).st_mode & 0o777 == 0o755
    assert os.stat(os.path.join(code, "data.txt")).st_mode & 0o111 == 0


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Runtime.ImportModuleError", "Runtime.ImportModuleError"),
        ("Function.Foo", "Function.Foo"),
        ("Function.", "Function.Unknown"),
        ("Unhandled", "Runtime.Unknown"),
        ("runtime.lower", "Runtime.Unknown"),
        (None, "Runtime.Unknown"),
    ],
)
def test_error_type_header_validation(header: str | None, expected: str) -> None:
    assert R.valid_error_type(header) == expected


def _invocation(rid: str) -> R.Invocation:
    return R.Invocation(rid, b"{}", [])


def test_exchange_validates_the_id_before_the_state() -> None:
    events: list[tuple[Any, ...]] = []
    ex = R.Exchange(events.append)
    ex.start(_invocation("A"))
    got = ex.next()
    assert got is not None
    assert got.request_id == "A"
    assert events == [("ready",)]
    assert ex.next() is got  # asked again while it runs: the same invocation
    assert ex.finish("XYZ", "InvocationResponse") == R.INVALID_ID
    assert ex.finish("A", "InvocationResponse") is None
    assert ex.finish("XYZ", "InvocationResponse") == R.INVALID_ID
    assert ex.finish("A", "InvocationErrorResponse") == R.transition_error(
        R.SENT, "InvocationErrorResponse"
    )
    assert ex.fail_init() is not None  # after a /next, init/error is refused


def test_exchange_holds_an_invocation_until_the_runtime_asks() -> None:
    ex = R.Exchange(lambda event: None)
    ex.start(_invocation("A"))
    assert ex.next() is not None
    assert ex.finish("A", "InvocationResponse") is None
    ex.start(_invocation("B"))  # the engine's next call, before the runtime's next /next
    assert ex.finish("A", "InvocationResponse") is not None
    assert ex.state == R.SENT  # not delivered yet: a late answer for A is still A's
    got = ex.next()
    assert got is not None
    assert got.request_id == "B"


def test_exchange_makes_a_next_wait_until_an_invocation_or_the_end() -> None:
    ex = R.Exchange(lambda event: None)
    assert ex.next() is None  # nothing to run: the /next waits (parked)
    assert ex.state == R.READY
    ex.start(_invocation("A"))
    got = ex.next()
    assert got is not None
    assert got.request_id == "A"
    ex.close()
    assert ex.next() is None
    assert ex.state == R.CLOSED


def test_init_error_accepted_once_before_next() -> None:
    ex = R.Exchange(lambda event: None)
    assert ex.fail_init() is None
    assert ex.fail_init() is not None
