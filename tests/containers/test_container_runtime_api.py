"""Foreign runtimes in containers: a ``provided.al2023`` zip's ``bootstrap`` and container
images (``package_type = "Image"``, Lambda's ``PackageType=Image``) whose entrypoint is the
runtime, served the Lambda Runtime API on 127.0.0.1:9001 inside a container with no network.

The images are built locally from the test image (``image_support``): one whose entrypoint
runs awslambdaric, one whose entrypoint runs AWS's shell-and-curl tutorial runtime.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiodocker
import orjson
import pytest
from docker_support import IMAGE
from helpers import FUNCTIONS
from image_support import BOOTSTRAP_IMAGE, RIC_IMAGE, build, remove
from runtimeapi_support import PROVIDED, need_curl, need_node
from service_support import aws_lambda, boto, call, config_of, serving

from runtime import Engine, FunctionConfig, InvalidParameterValueException, PoolConfig
from runtime.config import ImageConfig, StemCellConfig
from runtime.loop import run as loop_run
from runtime.pools.container import (
    RUNTIME_API_PORT,
    ContainerBackend,
    ForeignRuntime,
    ImageFacts,
    SandboxKey,
    container_paths,
    foreign_runtime,
)

POOL = PoolConfig(trust_image_binds=True)


@pytest.fixture(scope="module")
def images() -> Iterator[None]:
    """Both Lambda-style test images, built for this module and removed after it."""

    async def make() -> None:
        async with aiodocker.Docker() as docker:
            await build(docker, RIC_IMAGE)
            await build(docker, BOOTSTRAP_IMAGE)

    async def drop() -> None:
        async with aiodocker.Docker() as docker:
            await remove(docker, RIC_IMAGE)
            await remove(docker, BOOTSTRAP_IMAGE)

    loop_run(make())
    yield
    loop_run(drop())


def image_fn(name: str, image: str = RIC_IMAGE, **fields: Any) -> FunctionConfig:
    return FunctionConfig(
        name=name, package_type="Image", backend="container", image=image, **fields
    )


def curl_code(tmp_path: Path) -> str:
    code = tmp_path / "code"
    code.mkdir()
    shutil.copyfile(PROVIDED / "curl_bootstrap.sh", code / "bootstrap")
    (code / "bootstrap").chmod(0o755)
    return str(code)


# -- without Docker: what a container of each kind is told ----------------------------------


def test_each_foreign_runtime_is_told_its_command_port_and_folder() -> None:
    facts = ImageFacts(
        {}, entrypoint=("/lambda-entrypoint.sh",), command=("app.handler",), working_dir="/w"
    )
    image = foreign_runtime(image_fn("i", image="x"), facts)
    assert image == ForeignRuntime(("/lambda-entrypoint.sh", "app.handler"), "/w", image=True)
    overridden = foreign_runtime(
        image_fn(
            "o",
            image="x",
            image_config=ImageConfig(command=["app.other"], working_directory="/var/task/sub"),
        ),
        facts,
    )
    assert overridden is not None
    assert overridden.argv == ("/lambda-entrypoint.sh", "app.other")
    assert overridden.cwd == "/var/task/sub"
    entry = foreign_runtime(
        image_fn("e", image="x", image_config=ImageConfig(entry_point=["/bin/run"])), facts
    )
    assert entry is not None
    assert entry.argv == ("/bin/run", "app.handler")
    provided = foreign_runtime(
        FunctionConfig(
            name="p",
            handler="h.h",
            code="/c",
            runtime="provided.al2023",
            backend="container",
            image="x",
        ),
        None,
    )
    assert provided is not None
    assert provided.init("/var/task/p-3") == {
        "bootstrap": ["/var/task/p-3/bootstrap"],
        "runtime_api_port": RUNTIME_API_PORT,
        "runtime_cwd": "/var/task/p-3",
    }
    python = FunctionConfig(name="py", handler="a.b", code="/c", backend="container", image="x")
    assert foreign_runtime(python, None) is None


def test_an_image_function_has_an_empty_handler_and_no_execution_env(tmp_path: Path) -> None:
    from docker_support import env_config, make_spec

    spec = make_spec(str(tmp_path), "")
    spec.init_config["environ"]["AWS_EXECUTION_ENV"] = "AWS_Lambda_python3"
    runtime = ForeignRuntime(("/e",), "/", image=True)
    init, _ = container_paths(spec.init_config, env_config(str(tmp_path), 1), runtime=runtime)
    assert init["environ"]["_HANDLER"] == ""
    assert "AWS_EXECUTION_ENV" not in init["environ"]
    assert init["environ"]["LAMBDA_RUNTIME_DIR"] == "/var/runtime"
    assert init["bootstrap"] == ["/e"]
    assert init["runtime_api_port"] == 9001


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"backend": "process"}, "runs on the container backend"),
        ({"code": "/somewhere"}, "code is in its image"),
        ({"runtime": "python3"}, "runtime is its image's entrypoint"),
        ({"image_config": {"working_directory": "relative"}}, "absolute path"),
        ({"image_config": {"command": "app.handler"}}, "image_config.command"),
    ],
)
def test_an_image_function_is_refused_what_it_cannot_have(
    fields: dict[str, Any], message: str
) -> None:
    doc = {"name": "bad", "package_type": "Image", "backend": "container", "image": "x", **fields}
    with pytest.raises(InvalidParameterValueException, match=message):
        FunctionConfig.from_dict(doc)


def test_a_zip_function_takes_no_image_config() -> None:
    with pytest.raises(InvalidParameterValueException, match="only a function of package_type"):
        FunctionConfig(name="z", handler="a.b", code="/c", image_config=ImageConfig())


# -- on the Docker Engine ----------------------------------------------------------------


def test_a_provided_runtime_in_a_container_keeps_its_tmp_and_dies_on_timeout(
    arun: Any, tmp_path: Path
) -> None:
    need_curl()
    code = curl_code(tmp_path)

    async def main() -> None:
        async with Engine(POOL) as engine:
            await engine.register(
                FunctionConfig(
                    name="sh",
                    handler="function.handler",
                    code=code,
                    runtime="provided.al2023",
                    backend="container",
                    image=IMAGE,
                    timeout_s=1,
                )
            )
            first = await engine.invoke("sh", {"n": 1})
            second = await engine.invoke("sh", {"n": 2})
            assert first.function_error is None, first.payload
            assert first.json()["echo"] == {"n": 1}
            assert second.json()["echo"] == {"n": 2}
            assert first.report is not None
            assert first.report.cold
            assert second.report is not None
            assert not second.report.cold
            assert first.json()["shell"] == second.json()["shell"]  # one runtime process
            assert "handling" in second.log_tail
            assert "function.handler" in second.log_tail
            assert second.report.max_memory_used_mb > 0  # the container's cgroup
            stats = engine.stats()["sh"]["environments"]
            assert stats["busy"] == 0

    arun(main(), timeout=60)


#: a runtime that, asked to hang, starts a child of its own and waits on it; asked anything
#: else, says whether the child of an earlier (killed) runtime still lives
GROUP_BOOTSTRAP = """\
#!/bin/sh
set -eu
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation"
while true; do
  HEADERS="$(mktemp)"
  EVENT=$(curl -sS -D "$HEADERS" "$API/next")
  RID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$HEADERS" | tr -d '[:space:]' | cut -d: -f2)
  rm -f "$HEADERS"
  case "$EVENT" in
    *hang*) sleep 1000 & echo $! > /tmp/child.pid; wait ;;
    *)
      STATE=none
      if [ -f /tmp/child.pid ]; then
        if kill -0 "$(cat /tmp/child.pid)" 2>/dev/null; then STATE=alive; else STATE=gone; fi
      fi
      curl -sS -o /dev/null "$API/$RID/response" -d "{\\"child\\": \\"$STATE\\"}" ;;
  esac
done
"""


def test_a_timeout_kills_what_the_runtime_started_and_keeps_tmp(arun: Any, tmp_path: Path) -> None:
    need_curl()
    code = tmp_path / "code"
    code.mkdir()
    (code / "bootstrap").write_text(GROUP_BOOTSTRAP)
    (code / "bootstrap").chmod(0o755)

    async def main() -> None:
        async with Engine(POOL) as engine:
            await engine.register(
                FunctionConfig(
                    name="grp",
                    handler="h.h",
                    code=str(code),
                    runtime="provided.al2023",
                    backend="container",
                    image=IMAGE,
                    timeout_s=1,
                )
            )
            before = await engine.invoke("grp", {})
            assert before.json() == {"child": "none"}
            hung = await engine.invoke("grp", {"do": "hang"})
            assert orjson.loads(hung.payload)["errorType"] == "Sandbox.Timedout"
            after = await engine.invoke("grp", {})
            assert after.report is not None
            assert after.report.cold  # a new runtime, in the same container: /tmp kept
            assert after.json() == {"child": "gone"}  # the old runtime's child was killed too

    arun(main(), timeout=60)


def test_a_node_function_in_a_container(arun: Any) -> None:
    """``nodejs20.x`` on the container backend: our client on the image's ``node`` (the test
    image binds the host's /usr), answering at 127.0.0.1:9001."""
    need_node()

    async def main() -> None:
        async with Engine(POOL) as engine:
            fields: dict[str, Any] = {
                "code": str(FUNCTIONS / "nodejs"),
                "runtime": "nodejs20.x",
                "backend": "container",
                "image": IMAGE,
            }
            await engine.register(FunctionConfig(name="nc", handler="index.context", **fields))
            await engine.register(FunctionConfig(name="ne", handler="index.throwError", **fields))
            first = await engine.invoke("nc", {})
            second = await engine.invoke("nc", {})
            assert first.function_error is None, first.payload
            assert first.json()["functionName"] == "nc"
            assert first.json()["invokedFunctionArn"].endswith(":function:nc")
            assert first.report is not None
            assert first.report.cold
            assert second.report is not None
            assert not second.report.cold
            assert second.report.max_memory_used_mb > 0  # the container's cgroup
            failed = await engine.invoke("ne", {})
            assert failed.function_error == "Unhandled"
            doc = failed.json()
            assert (doc["errorType"], doc["errorMessage"]) == ("TypeError", "bad thing")
            assert "Invoke Error" in failed.log_tail

    arun(main(), timeout=60)


def test_an_awslambdaric_image_cold_warm_errors_timeout(arun: Any, images: None) -> None:
    async def main() -> None:
        async with Engine(POOL) as engine:
            await engine.register(image_fn("ric", timeout_s=1, memory_mb=256))
            first = await engine.invoke("ric", {"i": 1})
            assert first.function_error is None, first.payload
            doc = first.json()
            assert doc["event"] == {"i": 1}  # Content-Type application/json: a dict
            assert doc["calls"] == 1
            assert doc["cwd"] == "/var/task"  # the image's WORKDIR
            assert doc["handler"] == "app.handler"  # exported by the image's entrypoint
            assert doc["task_root"] == "/var/task"
            assert doc["runtime_dir"] == "/var/runtime"
            assert doc["execution_env"] is None
            assert doc["image_env"] == "yes"  # the image's own ENV is kept
            assert doc["function_name"] == "ric"
            assert doc["memory"] == "256"
            assert doc["arn"].endswith(":function:ric")
            assert 0 < doc["remaining_ms"] <= 1000
            warm = await engine.invoke("ric", {})
            assert warm.json()["calls"] == 2  # module state kept
            assert warm.json()["started"] == doc["started"]
            assert first.report is not None
            assert first.report.cold
            assert first.report.init_duration_ms
            assert warm.report is not None
            assert not warm.report.cold

            failed = await engine.invoke("ric", {"do": "raise"})
            assert failed.function_error == "Unhandled"
            error = orjson.loads(failed.payload)
            assert error["errorType"] == "KeyError"
            assert error["requestId"] == failed.request_id
            assert "[ERROR] KeyError" in failed.log_tail
            after_error = await engine.invoke("ric", {})
            assert after_error.json()["calls"] == 4  # a handled error keeps the environment

            timed_out = await engine.invoke("ric", {"do": "sleep", "seconds": 30})
            assert orjson.loads(timed_out.payload)["errorType"] == "Sandbox.Timedout"
            assert "Task timed out after 1.00 seconds" in timed_out.payload.decode()
            cold = await engine.invoke("ric", {})
            assert cold.report is not None
            assert cold.report.cold
            assert cold.json()["calls"] == 1

            crashed = await engine.invoke("ric", {"do": "exit"})
            body = orjson.loads(crashed.payload)
            assert body["errorType"] == "Runtime.ExitError"
            assert "exit status 3" in body["errorMessage"]
            again = await engine.invoke("ric", {})
            assert again.report is not None
            assert again.report.cold
            assert engine.stats()["ric"]["environments"]["busy"] == 0

    arun(main(), timeout=90)


def test_the_agent_dying_mid_call_answers_once_and_takes_the_runtime(
    arun: Any, images: None
) -> None:
    async def main() -> None:
        async with Engine(POOL) as engine:
            await engine.register(image_fn("die", timeout_s=10))
            warm = await engine.invoke("die", {})
            assert warm.function_error is None, warm.payload
            died = await engine.invoke("die", {"do": "kill-agent"})
            assert died.function_error == "Unhandled"
            assert orjson.loads(died.payload)["errorType"] == "Runtime.ExitError"
            after = await engine.invoke("die", {"do": "ps"})
            assert after.report is not None
            assert after.report.cold  # a new agent and runtime in the same container
            runtimes = [cmd for cmd in after.json()["ps"] if "awslambdaric" in cmd]
            assert len(runtimes) == 1, after.json()  # the old runtime died with its agent
            assert engine.stats()["die"]["environments"]["busy"] == 0

    arun(main(), timeout=60)


def test_an_image_function_never_takes_a_stem_cell_of_its_image(arun: Any, images: None) -> None:
    """A stem cell mounts the code store over /var/task: an image function, whose code is the
    image's own there, starts a container of its own even when a stem cell of its image and
    size waits."""

    async def main() -> None:
        async with ContainerBackend() as probe:
            python = (await probe.image_facts(RIC_IMAGE)).python  # its agent's, as a key's
        stem = StemCellConfig(image=RIC_IMAGE, count=1, python=python)
        pool = PoolConfig(trust_image_binds=True, stem_cells=(stem,))
        async with Engine(pool) as engine:
            backend = engine._containers
            assert backend is not None
            key = SandboxKey(RIC_IMAGE, python=python)
            await backend.stem_cells_ready(key)
            await engine.register(image_fn("img"))
            result = await engine.invoke("img", {})
            assert result.function_error is None, result.payload  # its own /var/task
            assert result.json()["cwd"] == "/var/task"
            cells = backend.stem_cells(key)
            assert cells is not None
            assert cells.taken == 0

    arun(main(), timeout=90)


def test_image_config_overrides_command_entrypoint_and_workdir(arun: Any, images: None) -> None:
    need_curl()

    async def main() -> None:
        async with Engine(POOL) as engine:
            await engine.register(
                image_fn("other", image_config=ImageConfig(command=["app.other"]))
            )
            other = await engine.invoke("other", {})
            assert other.json() == {"other": True, "cwd": "/var/task"}
            assert "the other handler ran" in other.log_tail

            # WORKDIR moved: awslambdaric looks for the module there, and does not find it
            await engine.register(
                image_fn("moved", image_config=ImageConfig(working_directory="/tmp"))
            )
            moved = await engine.invoke("moved", {})
            assert moved.function_error == "Unhandled"
            assert orjson.loads(moved.payload)["errorType"] == "Runtime.ImportModuleError"

            # the entrypoint replaced: the curl runtime of the other image, on this one
            await engine.register(
                image_fn(
                    "entry",
                    image=BOOTSTRAP_IMAGE,
                    image_config=ImageConfig(command=["function.other"]),
                )
            )
            entry = await engine.invoke("entry", {"k": "v"})
            assert entry.function_error is None, entry.payload
            assert entry.json()["echo"] == {"k": "v"}
            assert "with function.other" in entry.log_tail  # the entrypoint's $1

            await engine.register(
                image_fn("nope", image_config=ImageConfig(entry_point=["/no/such/runtime"]))
            )
            nope = await engine.invoke("nope", {})
            assert nope.function_error == "Unhandled"
            doc = orjson.loads(nope.payload)
            assert doc["errorType"] == "Runtime.InvalidEntrypoint"
            assert "/no/such/runtime" in doc["errorMessage"]

    arun(main(), timeout=90)


def test_image_functions_through_boto3(arun: Any, images: None) -> None:
    need_curl()

    async def main() -> None:
        async with serving(config_of(pool=POOL)) as svc, boto(svc.url) as client:
            created = await call(
                client.create_function,
                FunctionName="img",
                PackageType="Image",
                Role="arn:aws:iam::000000000000:role/r",
                Code={"ImageUri": RIC_IMAGE},
                Timeout=5,
            )
            assert created["PackageType"] == "Image"
            assert "Runtime" not in created
            assert "Handler" not in created
            assert len(created["CodeSha256"]) == 64  # the image's digest, hex
            answer = await call(
                client.invoke, FunctionName="img", Payload=b'{"x": 1}', LogType="Tail"
            )
            assert "FunctionError" not in answer
            assert json.loads(answer["Payload"].read())["event"] == {"x": 1}

            got = await call(client.get_function, FunctionName="img")
            assert got["Code"]["RepositoryType"] == "ECR"
            assert got["Code"]["ImageUri"] == RIC_IMAGE
            assert got["Code"]["ResolvedImageUri"].endswith(created["CodeSha256"])

            updated = await call(
                client.update_function_configuration,
                FunctionName="img",
                ImageConfig={"Command": ["app.other"]},
            )
            assert updated["ImageConfigResponse"] == {"ImageConfig": {"Command": ["app.other"]}}
            other = await call(client.invoke, FunctionName="img", Payload=b"{}")
            assert json.loads(other["Payload"].read())["other"] is True

            published = await call(client.publish_version, FunctionName="img")
            assert published["Version"] == "1"
            assert published["PackageType"] == "Image"
            code = await call(
                client.update_function_code, FunctionName="img", ImageUri=BOOTSTRAP_IMAGE
            )
            assert code["CodeSha256"] != created["CodeSha256"]
            echoed = await call(client.invoke, FunctionName="img", Payload=b'{"y": 2}')
            # the command override stays: the curl runtime echoes, whatever the handler
            assert json.loads(echoed["Payload"].read())["echo"] == {"y": 2}
            one = await call(client.invoke, FunctionName="img", Qualifier="1", Payload=b"{}")
            assert one["ExecutedVersion"] == "1"
            assert json.loads(one["Payload"].read())["other"] is True  # its image, its command
            got_one = await call(client.get_function, FunctionName="img", Qualifier="1")
            assert got_one["Code"]["ImageUri"] == RIC_IMAGE

            with pytest.raises(client.exceptions.InvalidParameterValueException) as zip_code:
                await call(client.update_function_code, FunctionName="img", ZipFile=b"PK")
            assert "Please provide ImageUri" in str(zip_code.value)
            with pytest.raises(client.exceptions.InvalidParameterValueException) as handler:
                await call(
                    client.create_function,
                    FunctionName="img2",
                    PackageType="Image",
                    Role="arn:aws:iam::000000000000:role/r",
                    Code={"ImageUri": RIC_IMAGE},
                    Handler="app.handler",
                )
            assert "don't provide Handler or Runtime" in str(handler.value)
            with pytest.raises(client.exceptions.InvalidParameterValueException) as missing:
                await call(
                    client.create_function,
                    FunctionName="img3",
                    PackageType="Image",
                    Role="arn:aws:iam::000000000000:role/r",
                    Code={"ImageUri": "warmstart/no-such-image:local"},
                )
            assert "no-such-image" in str(missing.value)
            names = [f["FunctionName"] for f in (await call(client.list_functions))["Functions"]]
            assert names == ["img"]
            await call(client.delete_function, FunctionName="img")

    arun(main(), timeout=120)


def test_image_functions_through_the_aws_cli(arun: Any, images: None, tmp_path: Path) -> None:
    async def main() -> None:
        async with serving(config_of(pool=POOL)) as svc:
            created = await aws_lambda(
                svc.url,
                "create-function",
                "--function-name",
                "cli-img",
                "--package-type",
                "Image",
                "--code",
                f"ImageUri={RIC_IMAGE}",
                "--image-config",
                '{"Command": ["app.other"]}',
                "--role",
                "arn:aws:iam::000000000000:role/r",
            )
            assert created["PackageType"] == "Image"
            assert created["ImageConfigResponse"]["ImageConfig"]["Command"] == ["app.other"]
            out = tmp_path / "out.json"
            meta = await aws_lambda(
                svc.url, "invoke", "--function-name", "cli-img", "--payload", "{}", str(out)
            )
            assert meta["StatusCode"] == 200
            assert "FunctionError" not in meta
            assert json.loads(out.read_text())["other"] is True
            got = await aws_lambda(svc.url, "get-function", "--function-name", "cli-img")
            assert got["Code"]["ImageUri"] == RIC_IMAGE

    arun(main(), timeout=120)


def test_an_image_without_python_says_what_the_agent_needs(arun: Any, tmp_path: Path) -> None:
    """The agent is Python: an image that has none cannot start one, and says so."""

    async def main() -> None:
        # the test image's Python is the host's, through its host binds: not trusted, they
        # are not mounted, and the container has no interpreter
        async with Engine(PoolConfig(trust_image_binds=False)) as engine:
            await engine.register(image_fn("nopy", image=IMAGE))
            result = await engine.invoke("nopy", {})
            assert result.function_error == "Unhandled"
            message = orjson.loads(result.payload)["errorMessage"]
            assert "Python 3.9+" in message

    arun(main(), timeout=60)
