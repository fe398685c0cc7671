"""The TOML config file: what it builds, and every way it is refused (file, key, reason)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "warmstart.toml"
    path.write_text(text)
    return path


def test_loads_pool_and_functions(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
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
    path = write(sub, '[functions.f]\nhandler = "app.h"\ncode = "../fn"\n')
    monkeypatch.chdir(tmp_path)
    assert load(os.path.relpath(path)).functions["f"].code == str(tmp_path / "fn")


def test_empty_file_is_the_defaults(tmp_path: Path) -> None:
    config = load(write(tmp_path, ""))
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
    path = write(tmp_path, text)
    with pytest.raises(ConfigFileError) as caught:
        load(path)
    exc = caught.value
    assert isinstance(exc, InvalidParameterValueException)
    assert (exc.path, exc.key) == (str(path), key)
    assert reason in exc.reason
    assert str(exc) == f"{path}: {key}: {exc.reason}"


def test_stem_cells_in_the_pool(tmp_path: Path) -> None:
    path = write(
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
    path = write(tmp_path, "[pool]\naccount_concurrency = \n")
    with pytest.raises(ConfigFileError) as caught:
        load(path)
    assert str(caught.value).startswith(f"{path}: not valid TOML: ")
    assert "line 2" in caught.value.reason
