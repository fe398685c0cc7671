"""The TOML config file: what it builds, and every way it is refused (file, key, reason)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import refused, write_toml

from runtime import InvalidParameterValueException
from runtime.configfile import ConfigFile, ConfigFileError, load

GOOD = """
[pool]
account_concurrency = 50
cold_start_cap = 4
max_queue = 10
queue_timeout_s = 1.5
work_dir = "state"

[functions.hello]
handler = "app.handler"
code = "code/hello"
memory_mb = 256
timeout_s = 10
reserved_concurrency = 2
environment = { GREETING = "hi" }

[functions.absolute]
handler = "app.fail"
code = "/srv/functions/absolute"
start = "spawn"
"""


def test_loads_pool_and_functions(tmp_path: Path) -> None:
    path = write_toml(tmp_path, GOOD)
    config = load(path)
    assert isinstance(config, ConfigFile)
    assert config.path == str(path)
    assert config.pool.account_concurrency == 50
    assert config.pool.queue_timeout_s == 1.5
    assert config.pool.work_dir == str(tmp_path / "state")
    assert list(config.functions) == ["hello", "absolute"]
    hello = config.functions["hello"]
    assert (hello.name, hello.handler, hello.memory_mb, hello.timeout_s) == (
        "hello",
        "app.handler",
        256,
        10.0,
    )
    assert hello.code == str(tmp_path / "code" / "hello")
    assert hello.environment == {"GREETING": "hi"}
    assert hello.reserved_concurrency == 2
    assert config.functions["absolute"].code == "/srv/functions/absolute"
    assert config.functions["absolute"].start == "spawn"


def test_relative_code_is_relative_to_the_file_not_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sub = tmp_path / "conf"
    sub.mkdir()
    path = write_toml(sub, '[functions.f]\nhandler = "app.h"\ncode = "../fn"\n')
    monkeypatch.chdir(tmp_path)
    assert load(os.path.relpath(path)).functions["f"].code == str(tmp_path / "fn")


def test_empty_file_is_the_defaults(tmp_path: Path) -> None:
    config = load(write_toml(tmp_path, ""))
    assert config.functions == {}
    assert config.pool.account_concurrency == 1000


FN = '[functions.hello]\nhandler = "app.handler"\ncode = "c"\n'

REJECTIONS = [
    ("[bogus]\nx = 1\n", "bogus", "unknown section"),
    ("[pool]\naccount_concurency = 5\n", "pool.account_concurency", "unknown key"),
    (FN + "memroy_mb = 256\n", "functions.hello.memroy_mb", "unknown key"),
    (FN + "memory_mb = 5\n", "functions.hello.memory_mb", "outside the allowed range 128-10240"),
    (FN + 'memory_mb = "big"\n', "functions.hello.memory_mb", "expected `int`, got `str`"),
    (FN + "memory_mb = true\n", "functions.hello.memory_mb", "expected `int`, got `bool`"),
    (FN + 'start = "clone"\n', "functions.hello.start", "expected one of"),
    (FN + "environment = { A_B = 1 }\n", "functions.hello.environment.A_B", "expected a string"),
    (FN + 'environment = "A=1"\n', "functions.hello.environment", "expected a table"),
    (FN + 'environment = { AWS_REGION = "x" }\n', "functions.hello.environment", "reserved"),
    (FN + 'name = "other"\n', "functions.hello.name", "the name is the table key"),
    ('[functions.hello]\ncode = "c"\n', "functions.hello.handler", "required, but missing"),
    ('[functions.hello]\nhandler = "a.b"\n', "functions.hello.code", "required, but missing"),
    (
        '[functions.img]\npackage_type = "Image"\nimage = "i"\n',
        "functions.img.package_type",
        "runs on the container backend",
    ),
    (
        '[functions.img]\npackage_type = "Image"\nbackend = "container"\nimage = "i"\n'
        "image_config = { cmd = [] }\n",
        "functions.img.image_config",
        "cmd",
    ),
    ('[functions."bad name"]\nhandler = "a.b"\ncode = "c"\n', "functions.bad name.name", "1-64"),
    ("functions = 3\n", "functions", "expected a table, got an integer"),
    ('[functions]\nhello = "app.handler"\n', "functions.hello", "expected a table, got a string"),
    ("pool = []\n", "pool", "expected a table, got an array"),
    ("[pool]\ncold_start_cap = 0\n", "pool.cold_start_cap", "outside the allowed range"),
    ("[pool]\nqueue_timeout_s = -1.0\n", "pool.queue_timeout_s", "outside the allowed range"),
    ("[pool]\nstem_cells = [{ count = 1 }]\n", "pool.stem_cells[0].image", "required"),
    (
        '[pool]\nstem_cells = [{ image = "i", count = 65 }]\n',
        "pool.stem_cells.count",
        "outside the allowed range 0-64",
    ),
    (
        '[pool]\nstem_cells = [{ image = "i", memory_mb = 64 }]\n',
        "pool.stem_cells.memory_mb",
        "outside the allowed range 128-10240",
    ),
    (
        FN + "provisioned_concurrency = 3\nreserved_concurrency = 1\n",
        "functions.hello.provisioned_concurrency",
        "exceeds reserved_concurrency 1",
    ),
]


@pytest.mark.parametrize(("text", "key", "reason"), REJECTIONS)
def test_rejections_name_file_key_and_reason(
    tmp_path: Path, text: str, key: str, reason: str
) -> None:
    exc = refused(tmp_path, text, key, reason)
    assert isinstance(exc, InvalidParameterValueException)


def test_stem_cells_in_the_pool(tmp_path: Path) -> None:
    path = write_toml(
        tmp_path,
        '[pool]\nstem_cells = [{ image = "img:local", count = 2, memory_mb = 256 },'
        ' { image = "other" }]\n',
    )
    first, second = load(path).pool.stem_cells
    assert (first.image, first.count, first.memory_mb) == ("img:local", 2, 256)
    assert (second.image, second.count, second.memory_mb, second.network) == (
        "other",
        1,
        128,
        False,
    )


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigFileError, match=r"nope\.toml: no such file") as caught:
        load(path)
    assert caught.value.key is None


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError, match="is a directory"):
        load(tmp_path)


def test_bad_toml_names_the_line(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[pool]\naccount_concurrency = \n")
    with pytest.raises(ConfigFileError) as caught:
        load(path)
    assert str(caught.value).startswith(f"{path}: not valid TOML: ")
    assert "line 2" in caught.value.reason


# -- [schedules] ------------------------------------------------------------------------------

SCHEDULE = FN + '[schedules.nightly]\nfunction = "hello"\n'


def test_schedules(tmp_path: Path) -> None:
    path = write_toml(
        tmp_path,
        SCHEDULE
        + 'expression = "cron(0 3 * * ? *)"\ninput = { report = "daily", n = [1, 2] }\n'
        + '[schedules."every-5.min"]\nfunction = "hello"\nexpression = "rate(5 minutes)"\n'
        + 'input = \'{"raw": true}\'\nenabled = false\ndescription = "five"\n',
    )
    config = load(path)
    assert list(config.schedules) == ["nightly", "every-5.min"]
    nightly, five = config.schedules.values()
    assert (nightly.name, nightly.expression, nightly.function, nightly.enabled) == (
        "nightly",
        "cron(0 3 * * ? *)",
        "hello",
        True,
    )
    assert nightly.input == '{"report":"daily","n":[1,2]}'
    assert nightly.description is None
    assert (five.input, five.enabled, five.description) == ('{"raw": true}', False, "five")


SCHEDULE_REJECTIONS = [
    (
        SCHEDULE + 'expression = "cron(0 12 * * * *)"\n',
        "schedules.nightly.expression",
        "Day-of-month '*' and Day-of-week '*' are both specified; one of them must be '?'",
    ),
    (
        SCHEDULE + 'expression = "rate(0 minutes)"\n',
        "schedules.nightly.expression",
        "rate value '0' is not a positive integer",
    ),
    (SCHEDULE, "schedules.nightly.expression", "required, but missing"),
    (
        FN + '[schedules.nightly]\nfunction = "nope"\nexpression = "rate(1 hour)"\n',
        "schedules.nightly.function",
        "'nope' is not declared in [functions] (declared: hello)",
    ),
    (
        SCHEDULE + 'expression = "rate(1 hour)"\ninput = "{not json"\n',
        "schedules.nightly.input",
        "not valid JSON",
    ),
    (SCHEDULE + 'expression = "rate(1 hour)"\nevery = 5\n', "schedules.nightly.every", "unknown"),
    (SCHEDULE + 'expression = "rate(1 hour)"\nname = "x"\n', "schedules.nightly.name", "table key"),
    (
        FN + '[schedules."bad name"]\nfunction = "hello"\nexpression = "rate(1 hour)"\n',
        'schedules."bad name"',
        "1-64 letters",
    ),
    (SCHEDULE + "expression = 5\n", "schedules.nightly.expression", "expected `str`"),
]


@pytest.mark.parametrize(("text", "key", "reason"), SCHEDULE_REJECTIONS)
def test_schedule_rejections_name_the_key_and_reason(
    tmp_path: Path, text: str, key: str, reason: str
) -> None:
    refused(tmp_path, text, key, reason)


# -- [batch] ----------------------------------------------------------------------------------


def test_batch_table(tmp_path: Path) -> None:
    text = (
        '[batch]\ndata_dir = "state/batch"\nmin_vcpus = 1\nmax_vcpus = 4.5\n'
        "memory_mib = 8192\nkill_grace_s = 10\n"
    )
    batch = load(write_toml(tmp_path, text)).batch
    assert batch.data_dir == str(tmp_path / "state" / "batch")
    assert (batch.min_vcpus, batch.max_vcpus, batch.memory_mib) == (1.0, 4.5, 8192)
    assert (batch.kill_grace_s, batch.enabled, batch.timeout_scale) == (10.0, True, 1.0)


def test_batch_defaults(tmp_path: Path) -> None:
    batch = load(write_toml(tmp_path, "")).batch
    assert batch.enabled
    assert batch.data_dir is None
    assert batch.max_vcpus == float(os.cpu_count() or 1)
    assert (batch.min_vcpus, batch.kill_grace_s) == (0.0, 30.0)
    assert batch.memory_mib >= 4


BATCH_REJECTIONS = [
    ("batch = 1\n", "batch", "expected a table, got an integer"),
    ("[batch]\nmax_cpus = 4\n", "batch.max_cpus", "unknown key"),
    ("[batch]\nmax_vcpus = 0\n", "batch.max_vcpus", "outside the allowed range"),
    ('[batch]\nmax_vcpus = "8"\n', "batch.max_vcpus", "expected `float`, got `str`"),
    ("[batch]\nmin_vcpus = -1\n", "batch.min_vcpus", "outside the allowed range"),
    ("[batch]\nmin_vcpus = 8\nmax_vcpus = 4\n", "batch.min_vcpus", "exceeds max_vcpus 4"),
    ("[batch]\nmemory_mib = 2\n", "batch.memory_mib", "outside the allowed range"),
    ("[batch]\nmemory_mib = 1.5\n", "batch.memory_mib", "expected `int`, got `float`"),
    ("[batch]\nkill_grace_s = -1\n", "batch.kill_grace_s", "outside the allowed range"),
    ("[batch]\nenabled = 1\n", "batch.enabled", "expected `bool`, got `int`"),
    ('[batch]\ndata_dir = ""\n', "batch.data_dir", "expected a directory path"),
]


@pytest.mark.parametrize(("text", "key", "reason"), BATCH_REJECTIONS)
def test_batch_rejections_name_the_key_and_reason(
    tmp_path: Path, text: str, key: str, reason: str
) -> None:
    path = write_toml(tmp_path, text)
    with pytest.raises(ConfigFileError) as caught:
        load(path)
    assert (caught.value.path, caught.value.key) == (str(path), key)
    assert reason in caught.value.reason


def test_an_image_function_has_no_code_handler_or_runtime(tmp_path: Path) -> None:
    path = write_toml(
        tmp_path,
        """
[functions.resize]
package_type = "Image"
backend = "container"
image = "resize:latest"
image_config = { command = ["app.handler"], working_directory = "/var/task/src" }
""",
    )
    fn = load(path).functions["resize"]
    assert fn.image_package
    assert fn.runtime_api
    assert (fn.code, fn.handler, fn.runtime) == ("", "", None)
    assert fn.image_config is not None
    assert fn.image_config.command == ["app.handler"]
    assert fn.image_config.entry_point is None
    assert fn.image_config.working_directory == "/var/task/src"
