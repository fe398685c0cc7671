"""Function and pool configuration (runtime/config.py): defaults and validation."""

from __future__ import annotations

import math
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from helpers import FUNCTIONS

from runtime.config import RESERVED_ENV_KEYS, FunctionConfig, PoolConfig, check_interpreter
from runtime.engine import Engine
from runtime.errors import InvalidParameterValueException


def fn(**kw: Any) -> FunctionConfig:
    base: dict[str, Any] = {"name": "fn", "handler": "app.handler", "code": "/srv/code"}
    return FunctionConfig(**{**base, **kw})


def refused(message: str) -> Any:
    """pytest.raises for InvalidParameterValueException with a message matched literally."""
    return pytest.raises(InvalidParameterValueException, match=re.escape(message))


# -- FunctionConfig -------------------------------------------------------------------------


def test_defaults() -> None:
    c = fn()
    assert (c.name, c.handler, c.code) == ("fn", "app.handler", "/srv/code")
    assert c.memory_mb == 128
    assert c.timeout_s == 3
    assert c.ephemeral_storage_mb == 512
    assert c.backend == "process"
    assert c.start == "fork"
    assert c.environment == {}
    assert c.reserved_concurrency is None
    assert c.provisioned_concurrency == 0
    assert c.keepalive_s == 300.0
    assert c.max_uses is None
    assert c.runtime is None
    assert c.image is None
    assert c.spill_on_timeout is False
    assert c.description == ""
    assert not c.is_batch


def test_default_environment_is_not_shared() -> None:
    a, b = fn(), fn()
    a.environment["X1"] = "1"
    assert b.environment == {}


def test_code_path_like_becomes_a_string() -> None:
    assert fn(code=Path("/srv/code")).code == "/srv/code"
    with refused("code: a directory or a .zip file is required"):
        fn(code="")
    with refused("code: a directory or a .zip file is required"):
        fn(code=123)


def test_limits_at_the_edges_are_accepted() -> None:
    for memory in (128, 10240):
        assert fn(memory_mb=memory).memory_mb == memory
    for storage in (512, 10240):
        assert fn(ephemeral_storage_mb=storage).ephemeral_storage_mb == storage
    assert fn(timeout_s=1).timeout_s == 1
    assert fn(timeout_s=2.5).timeout_s == 2.5
    assert fn(keepalive_s=0).keepalive_s == 0
    assert fn(max_uses=1).max_uses == 1
    assert fn(reserved_concurrency=0).reserved_concurrency == 0
    c = fn(reserved_concurrency=5, provisioned_concurrency=5)
    assert (c.reserved_concurrency, c.provisioned_concurrency) == (5, 5)
    assert fn(provisioned_concurrency=3).provisioned_concurrency == 3  # no reserved: unbounded


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"memory_mb": 127}, "memory_mb: 127 is outside the allowed range 128-10240"),
        ({"memory_mb": 10241}, "memory_mb: 10241 is outside the allowed range 128-10240"),
        ({"memory_mb": 0}, "memory_mb: 0 is outside the allowed range 128-10240"),
        ({"timeout_s": 0}, "timeout_s: 0 is outside the allowed range >= 1"),
        ({"timeout_s": 0.5}, "timeout_s: 0.5 is outside the allowed range >= 1"),
        ({"timeout_s": -3}, "timeout_s: -3 is outside the allowed range >= 1"),
        (
            {"ephemeral_storage_mb": 511},
            "ephemeral_storage_mb: 511 is outside the allowed range 512-10240",
        ),
        (
            {"ephemeral_storage_mb": 10241},
            "ephemeral_storage_mb: 10241 is outside the allowed range 512-10240",
        ),
        ({"keepalive_s": -1}, "keepalive_s: -1 is outside the allowed range >= 0"),
        ({"max_uses": 0}, "max_uses: 0 is outside the allowed range >= 1"),
        (
            {"reserved_concurrency": -1},
            "reserved_concurrency: -1 is outside the allowed range >= 0",
        ),
        (
            {"provisioned_concurrency": -1},
            "provisioned_concurrency: -1 is outside the allowed range >= 0",
        ),
        (
            {"reserved_concurrency": 2, "provisioned_concurrency": 3},
            "provisioned_concurrency: 3 exceeds reserved_concurrency 2",
        ),
        (
            {"reserved_concurrency": 0, "provisioned_concurrency": 1},
            "provisioned_concurrency: 1 exceeds reserved_concurrency 0",
        ),
    ],
)
def test_range_errors_name_the_field_and_range(changes: dict[str, Any], message: str) -> None:
    with refused(message) as excinfo:
        fn(**changes)
    assert excinfo.value.code == "InvalidParameterValueException"
    assert excinfo.value.status == 400
    assert excinfo.value.message == message


@pytest.mark.parametrize(
    "field",
    [
        "memory_mb",
        "timeout_s",
        "ephemeral_storage_mb",
        "keepalive_s",
        "provisioned_concurrency",
        "reserved_concurrency",
        "max_uses",
    ],
)
@pytest.mark.parametrize("value", [True, False, "256", None, [1], math.nan])
def test_not_a_number(field: str, value: Any) -> None:
    if value is None and field in ("reserved_concurrency", "max_uses"):
        return  # None means "no limit" for these two
    with pytest.raises(InvalidParameterValueException, match=rf"^{field}: expected an? "):
        fn(**{field: value})


@pytest.mark.parametrize(
    "field",
    [
        "memory_mb",
        "ephemeral_storage_mb",
        "provisioned_concurrency",
        "reserved_concurrency",
        "max_uses",
    ],
)
def test_integer_fields_refuse_fractions(field: str) -> None:
    with refused(f"{field}: expected an integer, got 256.5"):
        fn(**{field: 256.5})


def test_float_fields_refuse_nan() -> None:
    with refused("timeout_s: expected a number, got nan"):
        fn(timeout_s=math.nan)
    with refused("keepalive_s: expected a number, got nan"):
        fn(keepalive_s=math.nan)


def test_timeout_over_900_is_a_batch_function() -> None:
    assert not fn(timeout_s=900).is_batch
    assert not fn(timeout_s=899.5).is_batch
    long = fn(timeout_s=901)
    assert long.timeout_s == 901
    assert long.is_batch
    assert fn(timeout_s=900.001).is_batch
    assert fn(timeout_s=86400).is_batch


@pytest.mark.parametrize(
    "name",
    ["", "a" * 65, "my function", " fn", "fn ", "fn\n", "fn/x", "fn.x", "fn:1", "é", None, 5],
)
def test_bad_name(name: Any) -> None:
    with pytest.raises(
        InvalidParameterValueException,
        match=r"^name: .* must be 1-64 letters, digits, hyphens or underscores$",
    ):
        fn(name=name)


def test_good_names() -> None:
    for name in ("a", "a" * 64, "My-Function_2", "0"):
        assert fn(name=name).name == name


@pytest.mark.parametrize(
    "handler",
    ["", "app handler", " app.handler", "app.handler\n", "app.\thandler", "a" * 129, None],
)
def test_bad_handler(handler: Any) -> None:
    with pytest.raises(
        InvalidParameterValueException,
        match=r"^handler: .* must be 'module\.function' \(at most 128 characters, no spaces\)$",
    ):
        fn(handler=handler)


def test_good_handlers() -> None:
    for handler in ("app.handler", "pkg/mod.fn", "a" * 128, "index.lambda_handler"):
        assert fn(handler=handler).handler == handler


@pytest.mark.parametrize(
    "key", ["AWS_REGION", "_HANDLER", "AWS_LAMBDA_FUNCTION_NAME", "LAMBDA_TASK_ROOT"]
)
def test_reserved_environment_keys(key: str) -> None:
    assert key in RESERVED_ENV_KEYS
    with refused(f"environment: reserved keys cannot be set: {key}"):
        fn(environment={"OK": "1", key: "x"})


def test_reserved_keys_are_all_named() -> None:
    with refused("environment: reserved keys cannot be set: AWS_REGION, _HANDLER"):
        fn(environment={"_HANDLER": "x", "AWS_REGION": "y"})


@pytest.mark.parametrize(
    "key", ["1ABC", "A", "_X", "MY-VAR", "MY VAR", "MY.VAR", "KEY\n", "", "ÄB", 7]
)
def test_invalid_environment_names(key: Any) -> None:
    with refused(f"environment: {key!r} is not a valid name ([a-zA-Z][a-zA-Z0-9_]+)"):
        fn(environment={key: "x"})


def test_valid_environment() -> None:
    env = {"AB": "", "My_Var_2": "value with spaces", "PATH_EXTRA": "/opt/bin"}
    assert fn(environment=env).environment == env


def test_environment_values_must_be_strings() -> None:
    with refused("environment: value of COUNT must be a string"):
        fn(environment={"COUNT": 3})
    with refused("environment: expected a mapping of names to strings"):
        fn(environment=[("AB", "x")])


def test_environment_size_limit() -> None:
    key = "BIG"
    at_limit = {key: "x" * (4096 - len(key))}
    assert fn(environment=at_limit).environment == at_limit
    with refused("environment: 4097 bytes exceeds the allowed total of 4096"):
        fn(environment={key: "x" * (4097 - len(key))})
    # counted in UTF-8 bytes, over all keys and values
    with refused("environment: 4102 bytes exceeds the allowed total of 4096"):
        fn(environment={"AA": "é" * 1024, "BB": "é" * 1025})


def test_backend_and_start() -> None:
    assert fn(backend="container", image="python:3.12-slim").image == "python:3.12-slim"
    assert fn(start="spawn").start == "spawn"
    with refused("image: the container backend needs an image"):
        fn(backend="container")
    with refused("image: the container backend needs an image"):
        fn(backend="container", image="")
    with refused("backend: 'docker' must be 'process' or 'container'"):
        fn(backend="docker")
    with refused("start: 'forkserver' must be 'fork' or 'spawn'"):
        fn(start="forkserver")


# -- runtime: the interpreter ----------------------------------------------------------------

RUNTIME_SPELLING = (
    "runtime: {!r} must be a Python interpreter: a command on PATH such as 'python3', or an "
    "absolute path to one (unset: this engine's own)"
)


@pytest.mark.parametrize(
    "runtime", ["python3", "python3.12", "pypy3", "/usr/bin/python3", "/opt/venv/bin/python"]
)
def test_runtime_names_and_absolute_paths_are_accepted(runtime: str) -> None:
    assert fn(runtime=runtime).runtime == runtime
    assert fn(runtime=runtime, backend="container", image="img").runtime == runtime


@pytest.mark.parametrize(
    "runtime",
    ["", " ", "python3 ", "py thon", "python3\n", "../python3", "bin/python3", "./python3",
     "/opt/../usr/bin/python3", "/usr/bin/", "-c", ".python", "py\x00thon", "/usr/bin/py thon"],
)  # fmt: skip
def test_runtime_junk_is_refused_for_both_backends(runtime: str) -> None:
    with refused(RUNTIME_SPELLING.format(runtime)):
        fn(runtime=runtime)
    container = RUNTIME_SPELLING.replace("on PATH", "on the image's PATH").replace(
        "this engine's own", "'python3'"
    )
    with refused(container.format(runtime)):
        fn(runtime=runtime, backend="container", image="img")
    with refused(RUNTIME_SPELLING.format(runtime)):
        fn().replace(runtime=runtime)


def test_runtime_must_be_a_string() -> None:
    with refused(RUNTIME_SPELLING.format(3)):
        fn(runtime=3)
    with pytest.raises(InvalidParameterValueException, match=r"Expected `str \| null`, got `int`"):
        FunctionConfig.from_dict({"name": "fn", "handler": "a.b", "code": "/c", "runtime": 3})


def fake_interpreter(tmp_path: Path, name: str, body: str) -> Path:
    """An executable script standing in for an interpreter; it notes each run in ``runs``."""
    path = tmp_path / name
    path.write_text(f"#!/bin/sh\necho ran >> {tmp_path / 'runs'}\n{body}\n")
    path.chmod(0o755)
    return path


def runs(tmp_path: Path) -> int:
    path = tmp_path / "runs"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_check_interpreter_runs_a_python_once_per_path(tmp_path: Path) -> None:
    check_interpreter(fn(runtime=sys.executable))
    check_interpreter(fn())  # unset: the engine's own, nothing to ask
    check_interpreter(fn(runtime="/nowhere/python3", backend="container", image="img"))
    python = fake_interpreter(tmp_path, "python3.13", "echo 3.13")
    for _ in range(3):
        check_interpreter(fn(runtime=str(python)))
    assert runs(tmp_path) == 1  # the answer is kept while the file is unchanged


def bad_interpreters(tmp_path: Path) -> list[tuple[str, str]]:
    """(runtime, the refusal's message) for interpreters that exist nowhere or are no Python."""
    silent = fake_interpreter(tmp_path, "silent", "true")
    old = fake_interpreter(tmp_path, "python2", "echo 2.7")
    failing = fake_interpreter(tmp_path, "failing", "echo 3.12; exit 1")
    not_executable = tmp_path / "python-not-executable"
    not_executable.write_text("#!/bin/sh\necho 3.12\n")
    cases = [
        ("no-such-python", "runtime: 'no-such-python' is not an executable on PATH"),
        (str(tmp_path / "missing"), f"runtime: '{tmp_path / 'missing'}' is not an executable file"),
        (str(not_executable), f"runtime: '{not_executable}' is not an executable file"),
        (str(silent), f"runtime: '{silent}' is not a Python 3.9+ interpreter ('{silent} -c "
                      "<print version>' exited 0 without a version)"),
        (str(failing), f"runtime: '{failing}' is not a Python 3.9+ interpreter ('{failing} -c "
                       "<print version>' exited 1 without a version)"),
        (str(old), f"runtime: '{old}' is not a Python 3.9+ interpreter (Python 2.7)"),
    ]  # fmt: skip
    if shutil.which("node"):
        cases.append(("node", "runtime: 'node' is not a Python 3.9+ interpreter"))
    return cases


def test_check_interpreter_refuses_what_is_not_a_python_3_9(tmp_path: Path) -> None:
    for runtime, message in bad_interpreters(tmp_path):
        with refused(message):
            check_interpreter(fn(runtime=runtime))


def test_engine_refuses_a_bad_runtime_at_registration_and_update(
    arun: Callable[..., Any], tmp_path: Path
) -> None:
    work = tmp_path / "work"
    basic = str(FUNCTIONS / "basic")

    async def main() -> None:
        async with Engine(PoolConfig(work_dir=str(work))) as engine:
            for runtime, message in bad_interpreters(tmp_path):
                with refused(message):
                    await engine.register(fn(code=basic, handler="app.echo", runtime=runtime))
                assert engine.functions() == []
            assert not any(work.rglob("functions")), "refused, yet given a directory"
            good = fn(name="good", code=basic, handler="app.echo", runtime=sys.executable)
            await engine.register(good)
            for runtime, message in bad_interpreters(tmp_path):
                with refused(message):
                    await engine.update("good", runtime=runtime, memory_mb=256)
            assert engine.get_function("good") == good
            assert engine.stats()["good"]["generation"] == 0
            result = await engine.invoke("good", {"ok": True})
            assert result.payload == b'{"ok":true}'

    arun(main())


# -- from_dict and replace ------------------------------------------------------------------


def test_from_dict() -> None:
    c = FunctionConfig.from_dict(
        {
            "name": "fn",
            "handler": "app.handler",
            "code": "/srv/code",
            "memory_mb": 512,
            "timeout_s": 10,
            "environment": {"STAGE": "dev"},
            "reserved_concurrency": 4,
            "provisioned_concurrency": 2,
            "backend": "process",
            "start": "spawn",
        }
    )
    assert c == fn(
        memory_mb=512,
        timeout_s=10,
        environment={"STAGE": "dev"},
        reserved_concurrency=4,
        provisioned_concurrency=2,
        start="spawn",
    )


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"memory": 256}, r"Object contains unknown field `memory`"),
        ({"memory_mb": "256"}, r"Expected `int`, got `str` - at `\$.memory_mb`"),
        ({"memory_mb": 256.0}, r"Expected `int`, got `float` - at `\$.memory_mb`"),
        ({"memory_mb": True}, r"Expected `int`, got `bool` - at `\$.memory_mb`"),
        ({"timeout_s": "3"}, r"Expected `float`, got `str` - at `\$.timeout_s`"),
        ({"environment": {"AB": 1}}, r"Expected `str`, got `int` - at `\$.environment\[\.\.\.\]`"),
        ({"environment": ["AB"]}, r"Expected `object`, got `array` - at `\$.environment`"),
        ({"backend": "docker"}, r"Invalid enum value 'docker' - at `\$.backend`"),
        ({"name": 5}, r"Expected `str`, got `int` - at `\$.name`"),
        ({"spill_on_timeout": "yes"}, r"Expected `bool`, got `str` - at `\$.spill_on_timeout`"),
    ],
)
def test_from_dict_rejects_unknown_keys_and_wrong_types(data: dict[str, Any], match: str) -> None:
    base = {"name": "fn", "handler": "app.handler", "code": "/srv/code"}
    with pytest.raises(InvalidParameterValueException, match=match):
        FunctionConfig.from_dict({**base, **data})


def test_from_dict_missing_field_and_not_a_mapping() -> None:
    # a zip function needs code and a handler (an image function has neither)
    with pytest.raises(InvalidParameterValueException, match=r"code: a directory or a \.zip"):
        FunctionConfig.from_dict({"name": "fn", "handler": "app.handler"})
    with pytest.raises(InvalidParameterValueException, match="handler: '' must be"):
        FunctionConfig.from_dict({"name": "fn", "code": "/srv/code"})
    with pytest.raises(InvalidParameterValueException, match=r"Object missing required field"):
        FunctionConfig.from_dict({"handler": "app.handler", "code": "/srv/code"})
    with pytest.raises(InvalidParameterValueException, match=r"Expected `object`, got `array`"):
        FunctionConfig.from_dict([])  # type: ignore[arg-type]


def test_from_dict_runs_the_same_validation() -> None:
    base = {"name": "fn", "handler": "app.handler", "code": "/srv/code"}
    with refused("memory_mb: 127 is outside the allowed range 128-10240"):
        FunctionConfig.from_dict({**base, "memory_mb": 127})
    with refused("environment: reserved keys cannot be set: AWS_REGION"):
        FunctionConfig.from_dict({**base, "environment": {"AWS_REGION": "x"}})
    with refused("image: the container backend needs an image"):
        FunctionConfig.from_dict({**base, "backend": "container"})
    assert FunctionConfig.from_dict({**base, "timeout_s": 901}).is_batch


def test_replace_revalidates() -> None:
    c = fn(memory_mb=256, environment={"STAGE": "dev"})
    d = c.replace(memory_mb=1024, timeout_s=30)
    assert (d.memory_mb, d.timeout_s, d.environment) == (1024, 30, {"STAGE": "dev"})
    assert (c.memory_mb, c.timeout_s) == (256, 3)  # the original is untouched
    with refused("memory_mb: 10241 is outside the allowed range 128-10240"):
        c.replace(memory_mb=10241)
    with refused("provisioned_concurrency: 3 exceeds reserved_concurrency 1"):
        c.replace(reserved_concurrency=1, provisioned_concurrency=3)
    with refused("environment: reserved keys cannot be set: _HANDLER"):
        c.replace(environment={"_HANDLER": "x"})
    with refused("image: the container backend needs an image"):
        c.replace(backend="container")
    assert c.replace(timeout_s=1200).is_batch


def test_replace_copy_does_not_share_the_environment() -> None:
    c = fn(environment={"STAGE": "dev"})
    d = c.replace(memory_mb=512)
    d.environment["STAGE"] = "prod"
    assert c.environment == {"STAGE": "dev"}


def test_round_trip_through_a_dict() -> None:
    c = fn(memory_mb=2048, environment={"AB": "1"}, max_uses=10, backend="container", image="img")
    assert FunctionConfig.from_dict(msgspec.structs.asdict(c)) == c
    assert FunctionConfig.from_dict(msgspec.to_builtins(c)) == c


# -- PoolConfig ---------------------------------------------------------------------------


def test_pool_defaults() -> None:
    p = PoolConfig()
    assert p.account_concurrency == 1000
    assert p.cold_start_cap == 16
    assert p.max_queue == 0
    assert p.queue_timeout_s == 30.0
    assert p.log_cap_bytes == 1024 * 1024
    assert p.log_history_bytes == 256 * 1024
    assert p.region == "us-east-1"
    assert p.account_id == "000000000000"
    assert p.work_dir is None
    assert isinstance(p.memory_budget_mb, int)
    assert p.memory_budget_mb >= 0


def test_pool_edges_accepted() -> None:
    p = PoolConfig(
        account_concurrency=1,
        cold_start_cap=1,
        memory_budget_mb=0,
        max_queue=0,
        queue_timeout_s=0,
        log_cap_bytes=4096,
        log_history_bytes=0,
        price_gb_second=0,
        price_per_request=0,
    )
    assert p.memory_budget_mb == 0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"account_concurrency": 0}, "account_concurrency: 0 is outside the allowed range >= 1"),
        ({"cold_start_cap": 0}, "cold_start_cap: 0 is outside the allowed range >= 1"),
        ({"memory_budget_mb": -1}, "memory_budget_mb: -1 is outside the allowed range >= 0"),
        ({"max_queue": -1}, "max_queue: -1 is outside the allowed range >= 0"),
        ({"queue_timeout_s": -0.5}, "queue_timeout_s: -0.5 is outside the allowed range >= 0"),
        ({"log_cap_bytes": 4095}, "log_cap_bytes: 4095 is outside the allowed range 4096-2031516"),
        ({"log_history_bytes": -1}, "log_history_bytes: -1 is outside the allowed range >= 0"),
        ({"price_gb_second": -1.0}, "price_gb_second: -1.0 is outside the allowed range >= 0"),
        (
            {"price_per_request": -1e-07},
            "price_per_request: -1e-07 is outside the allowed range >= 0",
        ),
        ({"account_concurrency": True}, "account_concurrency: expected an integer, got True"),
        ({"cold_start_cap": 2.5}, "cold_start_cap: expected an integer, got 2.5"),
        ({"max_queue": "10"}, "max_queue: expected an integer, got '10'"),
        ({"queue_timeout_s": None}, "queue_timeout_s: expected a number, got None"),
        ({"queue_timeout_s": math.nan}, "queue_timeout_s: expected a number, got nan"),
    ],
)
def test_pool_validation(changes: dict[str, Any], message: str) -> None:
    with refused(message):
        PoolConfig(**changes)


def test_pool_from_plain_data() -> None:
    p = msgspec.convert({"account_concurrency": 10, "region": "eu-west-1"}, PoolConfig)
    assert (p.account_concurrency, p.region) == (10, "eu-west-1")
    with pytest.raises(msgspec.ValidationError, match="unknown field `regions`"):
        msgspec.convert({"regions": "x"}, PoolConfig)
    with refused("cold_start_cap: 0 is outside the allowed range >= 1"):
        msgspec.convert({"cold_start_cap": 0}, PoolConfig)
