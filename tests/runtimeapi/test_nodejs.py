"""``runtime = "nodejs20.x"``: our Node.js runtime client (runtime/agent/nodejs/runtime.js) run
by the agent against its Lambda Runtime API, through the real Engine and through boto3
CreateFunction/Invoke; and a ``provided.al2023`` bootstrap written with Node's own ``http``.

Without ``node`` on PATH these tests skip, except under ``CI``, where they fail.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
from helpers import FUNCTIONS, eventually, write_toml
from runtimeapi_support import need_node, processes_in
from service_support import boto, call, config_of, serving

from runtime import Engine, FunctionConfig, InvokeResult, configfile
from runtime.config import NODE_RUNTIMES, check_interpreter
from runtime.errors import InvalidParameterValueException
from runtime.pools.process import NODE_RUNTIME_JS, python_for
from runtime.service.lambda_params import check_runtime, engine_runtime

APP = FUNCTIONS / "nodejs"
ARN = "arn:aws:lambda:us-east-1:000000000000:function:"
#: a log line of Lambda's Node.js text format: time, request id, level, message
LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)\t([^\t]+)\t([A-Z]+)\t(.*)$")


@pytest.fixture
def code_root(code_root: Path) -> Path:
    """The conftest's code directory (no process left in it after the test), for tests that
    run ``node``: they need it on PATH."""
    need_node()
    return code_root


def app_code(code_root: Path, name: str = "app", extra: dict[str, str] | None = None) -> str:
    """A code directory under ``code_root`` (whose fixture fails a test that leaves a
    process running there): the test app, plus ``extra`` files."""
    code = code_root / name
    shutil.copytree(APP, code)
    for rel, text in (extra or {}).items():
        (code / rel).parent.mkdir(parents=True, exist_ok=True)
        (code / rel).write_text(text)
    return str(code)


def node_fn(name: str, code: str, handler: str, **fields: Any) -> FunctionConfig:
    fields.setdefault("timeout_s", 10)
    fields.setdefault("runtime", "nodejs20.x")
    return FunctionConfig(name=name, handler=handler, code=code, **fields)


def error_of(result: InvokeResult) -> dict[str, Any]:
    assert result.function_error == "Unhandled", result.payload
    doc: dict[str, Any] = result.json()
    return doc


def log_lines(log: str) -> list[tuple[str, str, str]]:
    """The (request id, level, message) of each line in Lambda's Node.js format."""
    found = []
    for line in log.split("\n"):  # not splitlines(): a record may hold a "\r"
        match = LOG_LINE.match(line)
        if match:
            found.append((match[2], match[3], match[4]))
    return found


# -- configuration -------------------------------------------------------------------------


@pytest.mark.parametrize("runtime", sorted(NODE_RUNTIMES))
def test_node_runtimes_are_configs_not_interpreters(runtime: str) -> None:
    config = FunctionConfig.from_dict(
        {"name": "f", "handler": "src/app.handler", "code": "/tmp", "runtime": runtime}
    )
    assert config.node_runtime
    assert config.runtime_api
    assert not config.custom_runtime
    check_interpreter(config)  # not probed as a Python
    assert python_for(runtime) == python_for(None)  # the agent runs on the engine's Python
    assert Path(NODE_RUNTIME_JS).is_file()


def test_register_refuses_a_node_runtime_without_node(
    arun: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))

    async def main() -> None:
        async with Engine() as engine:
            fn = node_fn("nonode", app_code(tmp_path), "index.state")
            with pytest.raises(InvalidParameterValueException, match="'node' is not on PATH"):
                await engine.register(fn)

    arun(main())


# -- through the engine --------------------------------------------------------------------


def test_cold_then_warm_keeps_module_state(arun: Any, code_root: Path) -> None:
    async def main() -> None:
        async with Engine() as engine:
            await engine.register(node_fn("st", app_code(code_root), "index.state"))
            first = await engine.invoke("st", b'{"a": 1}')
            second = await engine.invoke("st", b'{"a": 2}')
            assert first.function_error is None, first.payload
            assert first.json()["event"] == {"a": 1}
            assert (second.json()["count"], second.json()["event"]) == (2, {"a": 2})
            assert first.json()["pid"] == second.json()["pid"]
            assert first.report is not None
            assert first.report.cold
            assert first.report.init_duration_ms is not None
            assert second.report is not None
            assert not second.report.cold
            assert engine.stats()["st"]["cold_starts"] == 1

    arun(main())


def test_context_and_environment(arun: Any, code_root: Path) -> None:
    async def main() -> None:
        async with Engine() as engine:
            code = app_code(code_root)
            await engine.register(node_fn("ctx", code, "index.context", timeout_s=7, memory_mb=256))
            result = await engine.invoke(
                "ctx",
                b"{}",
                client_context={"custom": {"k": "v"}},
                identity={"cognitoIdentityId": "id1", "cognitoIdentityPoolId": "pool1"},
            )
            doc = result.json()
            assert doc["functionName"] == "ctx"
            assert doc["functionVersion"] == "$LATEST"
            assert doc["invokedFunctionArn"] == ARN + "ctx"
            assert doc["memoryLimitInMB"] == "256"  # a string, as Lambda's context has it
            assert doc["awsRequestId"] == result.request_id
            assert doc["logGroupName"] == "/aws/lambda/ctx"
            assert doc["logStreamName"]
            assert doc["identity"] == {"cognitoIdentityId": "id1", "cognitoIdentityPoolId": "pool1"}
            assert doc["clientContext"] == {"custom": {"k": "v"}}
            assert 5000 < doc["remaining"] <= 7000
            assert doc["waits"] is True
            assert doc["legacy"] == ["function", "function", "function"]
            assert doc["trace"].startswith("Root=1-")
            assert doc["executionEnv"] == "AWS_Lambda_nodejs20.x"
            assert doc["handler"] == "index.context"
            assert doc["taskRoot"] == code
            assert doc["nodePath"].split(":")[-1] == code
            assert re.fullmatch(r"127\.0\.0\.1:\d+", doc["runtimeApi"])
            again = (await engine.invoke("ctx")).json()
            assert again["trace"] != doc["trace"]  # set per invocation
            assert "identity" not in again  # undefined without the header, as in Lambda
            assert "clientContext" not in again

    arun(main())


def test_warm_calls_are_not_held_by_delayed_acks(arun: Any, code_root: Path) -> None:
    """The Runtime API writes headers and body apart: with Nagle's algorithm on, each /next
    body waited for the runtime's delayed ACK (40 ms or more on Linux) before it left."""

    async def main() -> None:
        async with Engine() as engine:
            await engine.register(node_fn("quick", app_code(code_root), "index.state"))
            await engine.invoke("quick")
            durations = []
            for _ in range(5):
                report = (await engine.invoke("quick")).report
                assert report is not None
                durations.append(report.duration_ms)
            assert sorted(durations)[2] < 40, durations

    arun(main())


@pytest.mark.parametrize(
    ("wait", "order", "timers_seen"),
    # at once means synchronously, inside the callback, as Lambda serializes the answer
    [(True, ["handler", "after callback", "timer"], 1), (False, ["handler"], 0)],
    ids=["waits-for-empty-loop", "answers-at-once"],
)
def test_callback_waits_for_empty_event_loop(
    arun: Any, code_root: Path, wait: bool, order: list[str], timers_seen: int
) -> None:
    """The answer is serialized when it is posted: with the flag set, after the timer ran;
    without it, at once, and the timer runs later in the environment kept warm."""

    async def main() -> None:
        async with Engine() as engine:
            await engine.register(node_fn("cb", app_code(code_root), "index.callback"))
            first = await engine.invoke("cb", {"wait": wait})
            assert first.function_error is None, first.payload
            assert first.json() == {
                "order": order,
                "late": [f"timer of {first.request_id}"][:timers_seen],
            }
            second = await engine.invoke("cb", {"wait": True})
            assert second.report is not None
            assert not second.report.cold
            assert second.json()["late"] == [
                f"timer of {first.request_id}",
                f"timer of {second.request_id}",
            ]

    arun(main())


@pytest.mark.parametrize(
    ("handler", "event", "payload"),
    [
        ("index.undefined", {}, None),
        ("index.sync", {}, None),
        ("index.succeed", {}, {"legacy": "succeed"}),
        ("index.nested.deeper.fn", {}, "nested"),
    ],
    ids=["undefined-is-null", "sync-without-callback-is-null", "context-succeed", "nested-path"],
)
def test_results(arun: Any, code_root: Path, handler: str, event: Any, payload: Any) -> None:
    async def main() -> None:
        async with Engine() as engine:
            await engine.register(node_fn("res", app_code(code_root), handler))
            result = await engine.invoke("res", event)
            assert result.function_error is None, result.payload
            assert result.json() == payload

    arun(main())


@pytest.mark.parametrize(
    ("handler", "event", "error_type", "message", "trace_head"),
    [
        ("index.throwError", {}, "TypeError", "bad thing", "TypeError: bad thing"),
        (
            "index.throwError",
            {"named": True},
            "NamedError",
            "a named one",
            "NamedError: a named one",
        ),
        ("index.reject", {}, "RangeError", "rejected", "RangeError: rejected"),
        ("index.callbackError", {}, "Error", "called back with an error", "Error: called back"),
        ("index.throwString", {}, "string", "just a string", None),
        ("index.throwNumber", {}, "number", "42", None),
    ],
)
def test_function_errors_as_lambda_formats_them(
    arun: Any,
    code_root: Path,
    handler: str,
    event: Any,
    error_type: str,
    message: str,
    trace_head: str | None,
) -> None:
    async def main() -> None:
        async with Engine() as engine:
            await engine.register(node_fn("err", app_code(code_root), handler))
            result = await engine.invoke("err", event)
            doc = error_of(result)
            assert set(doc) == {"errorType", "errorMessage", "trace"}
            assert (doc["errorType"], doc["errorMessage"]) == (error_type, message)
            if trace_head is None:
                assert doc["trace"] == []  # a thrown non-Error has no stack
            else:
                assert doc["trace"][0].startswith(trace_head)
                assert any("index.js" in line for line in doc["trace"][1:])
            invoke_errors = [m for _, level, m in log_lines(result.log) if level == "ERROR"]
            assert len(invoke_errors) == 1
            assert invoke_errors[0].startswith("Invoke Error \t{")
            logged = json.loads(invoke_errors[0].split("\t", 1)[1])
            assert logged["errorMessage"] == message
            after = await engine.invoke("err", event)  # a function error keeps it warm
            assert after.report is not None
            assert not after.report.cold

    arun(main())


@pytest.mark.parametrize(
    ("handler", "files", "error_type", "message"),
    [
        ("missing.handler", {}, "Runtime.ImportModuleError", "Error: Cannot find module 'missing'"),
        ("index.nope", {}, "Runtime.HandlerNotFound", "index.nope is undefined or not exported"),
        (
            "index.notAFunction",
            {},
            "Runtime.HandlerNotFound",
            "index.notAFunction is not a function",
        ),
        ("index", {}, "Runtime.MalformedHandlerName", "Bad handler"),
        (
            "bad.handler",
            {"bad.js": "exports.handler = async () => {\n"},
            "Runtime.UserCodeSyntaxError",
            "SyntaxError: ",
        ),
        (
            "needs.handler",
            {"needs.js": "require('not-installed');\nexports.handler = async () => 1;\n"},
            "Runtime.ImportModuleError",
            "Error: Cannot find module 'not-installed'",
        ),
        ("boom.handler", {"boom.js": "throw new RangeError('at import');\n"}, "RangeError", "at"),
    ],
    ids=[
        "missing-module",
        "missing-handler",
        "not-a-function",
        "malformed",
        "syntax",
        "missing-dep",
        "throws-at-import",
    ],
)
def test_init_errors_answer_each_call_and_init_runs_again(
    arun: Any, code_root: Path, handler: str, files: dict[str, str], error_type: str, message: str
) -> None:
    async def main() -> None:
        async with Engine() as engine:
            await engine.register(node_fn("ie", app_code(code_root, extra=files), handler))
            for _ in range(2):
                result = await engine.invoke("ie")
                doc = error_of(result)
                assert doc["errorType"] == error_type
                assert doc["errorMessage"].startswith(message), doc["errorMessage"]
                assert "Uncaught Exception \t" in result.log
                assert error_type in result.log
            assert engine.stats()["ie"]["cold_starts"] == 2

    arun(main())


def test_timeout_kills_the_runtime_and_next_is_cold(arun: Any, code_root: Path) -> None:
    async def main() -> None:
        async with Engine() as engine:
            code = app_code(code_root)
            await engine.register(node_fn("to", code, "index.hang", timeout_s=1))
            t0 = time.monotonic()
            doc = error_of(await engine.invoke("to"))
            assert time.monotonic() - t0 < 3.0
            assert doc["errorType"] == "Sandbox.Timedout"
            assert doc["errorMessage"].endswith("Task timed out after 1.00 seconds")
            await eventually(lambda: not _node_processes(code_root), timeout=2.0)
            again = await engine.invoke("to")
            assert again.report is not None
            assert again.report.cold

    arun(main())


@pytest.mark.parametrize(
    ("handler", "error_type", "message", "logged"),
    [
        ("index.crash", "Error", "thrown in a timer", "Uncaught Exception \t"),
        (
            "index.unhandled",
            "Runtime.UnhandledPromiseRejection",
            "Error: nobody caught this",
            "Unhandled Promise Rejection \t",
        ),
    ],
    ids=["uncaught-exception-in-a-timer", "unhandled-rejection"],
)
def test_a_crash_fails_the_call_and_ends_the_process(
    arun: Any, code_root: Path, handler: str, error_type: str, message: str, logged: str
) -> None:
    async def main() -> None:
        async with Engine() as engine:
            await engine.register(node_fn("crash", app_code(code_root), handler))
            result = await engine.invoke("crash")
            doc = error_of(result)
            assert (doc["errorType"], doc["errorMessage"]) == (error_type, message)
            assert doc["trace"][0] == f"{error_type}: {message}"
            assert logged in result.log
            # the runtime exits (129, 128) just after its error is posted: the environment is
            # retired with the answer, so the very next call, sent at once, starts a new one
            again = await engine.invoke("crash")
            assert again.report is not None
            assert again.report.cold
            assert error_of(again)["errorType"] == error_type
            await eventually(lambda: not processes_in(code_root), timeout=3.0)

    arun(main())


def test_async_handler_that_never_settles(arun: Any, code_root: Path) -> None:
    """The event loop drained with the promise pending: Lambda's Runtime.NodeJsExit, and the
    runtime stays (it is the handler's promise that is lost, not the process)."""

    async def main() -> None:
        async with Engine() as engine:
            await engine.register(node_fn("never", app_code(code_root), "index.never"))
            first = await engine.invoke("never")
            assert error_of(first)["errorType"] == "Runtime.NodeJsExit"
            again = await engine.invoke("never")
            assert error_of(again)["errorType"] == "Runtime.NodeJsExit"
            assert again.report is not None
            assert not again.report.cold

    arun(main())


def test_console_lines_in_lambdas_text_format(arun: Any, code_root: Path) -> None:
    async def main() -> None:
        async with Engine() as engine:
            await engine.register(node_fn("log", app_code(code_root), "index.logs"))
            result = await engine.invoke("log")
            assert result.json() == "logged"
            lines = log_lines(result.log)
            assert all(rid == result.request_id for rid, _, _ in lines)
            assert [(level, message) for _, level, message in lines] == [
                ("INFO", "hello world { n: 1 }"),
                ("INFO", "an info"),
                ("WARN", "a warning"),
                ("ERROR", "an error"),
                ("DEBUG", "a debug"),
                ("TRACE", "a trace"),
                ("INFO", "two\rlines"),  # one record per line, as Lambda's stdout sink
            ]

    arun(main())


ESM_COUNTER = "let n = 0;\nexport const handler = async (e) => ({ esm: true, e, n: ++n });\n"


@pytest.mark.parametrize(
    ("files", "handler"),
    [
        ({"esm.mjs": ESM_COUNTER}, "esm.handler"),
        (
            {"mod/package.json": '{"type": "module"}', "mod/app.js": ESM_COUNTER},
            "mod/app.handler",
        ),
    ],
    ids=["mjs", "js-under-type-module"],
)
def test_es_modules(arun: Any, code_root: Path, files: dict[str, str], handler: str) -> None:
    async def main() -> None:
        async with Engine() as engine:
            await engine.register(node_fn("esm", app_code(code_root, extra=files), handler))
            first = await engine.invoke("esm", {"k": 1})
            second = await engine.invoke("esm", {"k": 2})
            assert first.function_error is None, first.payload
            assert first.json() == {"esm": True, "e": {"k": 1}, "n": 1}
            assert second.json()["n"] == 2

    arun(main())


def test_handler_in_a_subdirectory(arun: Any, code_root: Path) -> None:
    async def main() -> None:
        async with Engine() as engine:
            code = app_code(code_root)
            await engine.register(node_fn("sub", code, "src/app.handler"))
            result = await engine.invoke("sub")
            assert result.function_error is None, result.payload
            assert result.json() == {
                "where": "src/app",
                "greeting": "hello from src/lib",
                "dir": os.path.join(code, "src"),
            }

    arun(main())


NODE_BOOTSTRAP = """#!/usr/bin/env node
// A custom runtime written with Node's own http module: poll /next, echo the event back.
const http = require('http');
const [host, port] = process.env.AWS_LAMBDA_RUNTIME_API.split(':');
const agent = new http.Agent({ keepAlive: true });
let served = 0;

function call(method, path, body) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host, port, path, method, agent }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function loop() {
  console.log('node bootstrap init');
  for (;;) {
    const next = await call('GET', '/2018-06-01/runtime/invocation/next');
    const id = next.headers['lambda-runtime-aws-request-id'];
    served += 1;
    console.log(`node bootstrap handling ${id}`);
    const answer = JSON.stringify({
      echo: JSON.parse(next.body.toString()), served, pid: process.pid,
      handler: process.env._HANDLER, executionEnv: process.env.AWS_EXECUTION_ENV || null,
    });
    await call('POST', `/2018-06-01/runtime/invocation/${id}/response`, answer);
  }
}

loop();
"""


def test_provided_bootstrap_written_in_node(arun: Any, code_root: Path) -> None:
    async def main() -> None:
        code = code_root / "boot"
        code.mkdir()
        (code / "bootstrap").write_text(NODE_BOOTSTRAP)
        (code / "bootstrap").chmod(0o755)
        async with Engine() as engine:
            await engine.register(
                FunctionConfig(
                    name="nb",
                    handler="function.handler",
                    code=str(code),
                    runtime="provided.al2023",
                    timeout_s=10,
                )
            )
            first = await engine.invoke("nb", {"hello": "node"})
            second = await engine.invoke("nb", [1, 2])
            assert first.function_error is None, first.payload
            assert first.json()["echo"] == {"hello": "node"}
            assert first.json()["handler"] == "function.handler"
            assert first.json()["executionEnv"] is None  # none for provided runtimes
            assert (second.json()["echo"], second.json()["served"]) == ([1, 2], 2)
            assert second.json()["pid"] == first.json()["pid"]
            assert "node bootstrap init" in first.log
            assert f"node bootstrap handling {second.request_id}" in second.log

    arun(main())


def _node_processes(root: Path) -> list[int]:
    return [pid for pid, cmdline in processes_in(root) if NODE_RUNTIME_JS in cmdline]


# -- through boto3 and the service ---------------------------------------------------------


def app_zip(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


HANDLER_BODY = """async (event, context) => {
  if (event.fail) throw new Error('asked to fail');
  console.log('got %j', event);
  return { echo: event, env: process.env.AWS_EXECUTION_ENV, fn: context.functionName };
}"""
ZIPS = {
    "index.mjs": {"index.mjs": f"export const handler = {HANDLER_BODY};\n"},
    "index.js": {"index.js": f"exports.handler = {HANDLER_BODY};\n"},
}


@pytest.mark.usefixtures("aws_env", "no_leaked_threads")
@pytest.mark.parametrize("entry", sorted(ZIPS))
def test_create_and_invoke_through_boto3(arun: Any, entry: str) -> None:
    need_node()

    async def main() -> None:
        async with serving(config_of()) as svc, boto(svc.url) as client:
            created = await call(
                client.create_function,
                FunctionName="nodefn",
                Runtime="nodejs20.x",
                Role="arn:aws:iam::000000000000:role/r",
                Handler="index.handler",
                Code={"ZipFile": app_zip(ZIPS[entry])},
            )
            assert created["Runtime"] == "nodejs20.x"
            answer = await call(
                client.invoke, FunctionName="nodefn", Payload=b'{"x": 1}', LogType="Tail"
            )
            assert "FunctionError" not in answer
            doc = json.loads(answer["Payload"].read())
            assert doc == {"echo": {"x": 1}, "env": "AWS_Lambda_nodejs20.x", "fn": "nodefn"}
            tail = base64.b64decode(answer["LogResult"]).decode()
            lines = log_lines(tail)
            assert [(level, m) for _, level, m in lines] == [("INFO", 'got {"x":1}')]
            assert tail.startswith("START RequestId: ")
            failed = await call(
                client.invoke, FunctionName="nodefn", Payload=b'{"fail": true}', LogType="Tail"
            )
            assert failed["FunctionError"] == "Unhandled"
            error = json.loads(failed["Payload"].read())
            assert (error["errorType"], error["errorMessage"]) == ("Error", "asked to fail")
            assert "Invoke Error \t" in base64.b64decode(failed["LogResult"]).decode()
            got = await call(client.get_function_configuration, FunctionName="nodefn")
            assert got["Runtime"] == "nodejs20.x"
            await call(client.delete_function, FunctionName="nodefn")

    arun(main(), timeout=60)


def test_node_runtime_in_the_toml_config(tmp_path: Path) -> None:
    text = '[functions.js]\nhandler = "src/app.handler"\ncode = "fn"\nruntime = "nodejs22.x"\n'
    loaded = configfile.load(write_toml(tmp_path, text))
    config = loaded.functions["js"]
    assert (config.runtime, config.handler) == ("nodejs22.x", "src/app.handler")
    assert config.node_runtime


@pytest.mark.parametrize(
    ("runtime", "current", "change"),
    [
        ("nodejs20.x", None, {"runtime": "nodejs20.x"}),
        ("nodejs20.x", "nodejs20.x", {}),
        ("python3.12", "nodejs20.x", {"runtime": None}),
        ("provided.al2023", "nodejs20.x", {"runtime": "provided.al2023"}),
    ],
)
def test_api_runtime_names_the_engines_runtime(
    runtime: str, current: str | None, change: dict[str, Any]
) -> None:
    assert check_runtime(runtime) == runtime
    assert engine_runtime(runtime, current) == change
