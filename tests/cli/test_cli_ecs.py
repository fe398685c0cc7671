"""``warmstart ecs register-task-definition FILE`` against a real ``warmstart serve``: ECS JSON
as written (string numbers included) registers, ECS's refusal is printed and exits 1, a file
that is not one JSON object exits 2."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest
from helpers import ECS_SEED
from service_support import ServeProcess, aws_client, warmstart

TOO_BIG = {**ECS_SEED, "containerDefinitions": [{"name": "web", "image": "i", "memory": "1024"}]}
TOO_BIG_MESSAGE = "The 'memory' setting for container 'web' is greater than for the task."


@pytest.fixture(scope="module")
def config_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ecs-cli")
    path = folder / "warmstart.toml"
    path.write_text(f'[batch]\ndata_dir = "{folder / "data"}"\n')
    return path


def register(path: Path | str, *target: str) -> subprocess.CompletedProcess[str]:
    return warmstart("ecs", "register-task-definition", str(path), *target)


def written(tmp_path: Path, document: Any, name: str = "taskdef.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(document, indent=2))
    return path


def test_the_seed_registers_as_written(server: ServeProcess, tmp_path: Path) -> None:
    ecs = aws_client("ecs", server.url)
    # what the command is for: botocore refuses the definition as written
    with pytest.raises(botocore.exceptions.ParamValidationError):
        ecs.register_task_definition(**ECS_SEED)

    done = register(written(tmp_path, ECS_SEED), "--endpoint", server.url)

    assert (done.returncode, done.stderr) == (0, "")
    definition = json.loads(done.stdout)["taskDefinition"]
    assert definition["family"] == "webserver"
    assert (definition["cpu"], definition["memory"]) == ("256", "512")
    assert definition["containerDefinitions"][0]["memory"] == 100
    found = ecs.describe_task_definition(taskDefinition=definition["taskDefinitionArn"])
    assert found["taskDefinition"]["revision"] == definition["revision"]
    ecs.close()


def test_stdin_is_read_for_a_dash(server: ServeProcess) -> None:
    done = warmstart(
        "ecs", "register-task-definition", "-", "--endpoint", server.url, stdin=json.dumps(ECS_SEED)
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["taskDefinition"]["family"] == "webserver"


def test_a_refused_definition_prints_ecs_error(server: ServeProcess, tmp_path: Path) -> None:
    done = register(written(tmp_path, TOO_BIG), "--endpoint", server.url)

    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == f"warmstart: ClientException: {TOO_BIG_MESSAGE}\n"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param('{"family": "web",', "taskdef.json: not valid JSON: ", id="truncated"),
        pytest.param("family: web\n", "taskdef.json: not valid JSON: ", id="yaml"),
        pytest.param(
            '[{"family": "web"}]',
            "taskdef.json: a task definition is a JSON object, not a list",
            id="a-list",
        ),
    ],
)
def test_a_malformed_file_is_a_one_line_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "taskdef.json"
    path.write_text(content)

    # no service is asked: the endpoint is never reached
    done = register(path, "--endpoint", "http://127.0.0.1:9")

    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith(f"warmstart: {path.parent}/{message}")
    assert done.stderr.count("\n") == 1


def test_a_missing_file(tmp_path: Path) -> None:
    done = register(tmp_path / "nothing.json", "--endpoint", "http://127.0.0.1:9")
    assert done.returncode == 2
    assert done.stderr == f"warmstart: {tmp_path / 'nothing.json'}: No such file or directory\n"


def test_without_an_endpoint_an_embedded_service_checks_it(tmp_path: Path) -> None:
    config = tmp_path / "warmstart.toml"
    config.write_text(f'[batch]\ndata_dir = "{tmp_path / "data"}"\n')
    good = register(written(tmp_path, ECS_SEED), "--config", str(config))
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)["taskDefinition"]["revision"] == 1
    bad = register(written(tmp_path, TOO_BIG, "bad.json"), "--config", str(config))
    assert (bad.returncode, bad.stderr) == (1, f"warmstart: ClientException: {TOO_BIG_MESSAGE}\n")


def test_help_has_examples() -> None:
    done = warmstart("ecs", "register-task-definition", "--help")
    assert done.returncode == 0
    assert "examples:" in done.stdout
    assert "warmstart ecs register-task-definition web.json --endpoint" in done.stdout
