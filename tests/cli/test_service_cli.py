"""``warmstart serve`` as a real process, and the CLI commands against it and embedded."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from service_support import BASIC, WARMSTART, ServeProcess, agents_of, warmstart

CONFIG = f"""
[service]
shutdown_timeout_s = 20

[functions.echo]
handler = "app.echo"
code = "{BASIC}"

[functions.fail]
handler = "app.flexible"
code = "{BASIC}"

[functions.slow]
handler = "app.flexible"
code = "{BASIC}"
timeout_s = 10
"""


@pytest.fixture(scope="module")
def config_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "warmstart.toml"
    path.write_text(CONFIG)
    return path


def busy(url: str, function: str) -> int:
    with urllib.request.urlopen(url + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    wanted = f'warmstart_environments{{function="{function}",state="busy"}} '
    line = next(line for line in text.splitlines() if line.startswith(wanted))
    return int(float(line.split()[-1]))


def test_sigterm_lets_the_call_in_flight_finish(config_path: Path) -> None:
    serve = ServeProcess(config_path)
    try:
        pid = serve.pid
        call = subprocess.Popen(
            [WARMSTART, "invoke", "slow", '{"s": 1.0}', "--endpoint", serve.url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 10
        while busy(serve.url, "slow") == 0:
            assert time.monotonic() < deadline, "the invocation never started"
            time.sleep(0.02)
        assert agents_of(pid)
        code, took = serve.stop()
        out, err = call.communicate(timeout=15)
        assert (call.returncode, out) == (0, '"ok"\n'), err
        duration = err.split("\tDuration: ", 1)[1].split(" ms", 1)[0]
        assert float(duration) >= 1000, err
        assert code == 0
        assert 0.5 < took < 10, took
        assert "shutting down" in serve.proc.stderr.read()  # type: ignore[union-attr]
    finally:
        serve.close()
    assert not agents_of(pid)


def test_invoke_against_a_running_service(server: ServeProcess) -> None:
    done = warmstart("invoke", "echo", '{"x": 1}', "--endpoint", server.url)
    assert (done.returncode, done.stdout) == (0, '{"x":1}\n')
    assert done.stderr.startswith("REPORT RequestId: ")
    assert done.stderr.count("\n") == 1

    tail = warmstart("invoke", "echo", "-", "--tail", "--endpoint", server.url, stdin="[1, 2]")
    assert (tail.returncode, tail.stdout) == (0, "[1,2]\n")
    lines = tail.stderr.splitlines()
    assert lines[0].startswith("START RequestId: ")
    assert lines[-1].startswith("REPORT RequestId: ")

    failed = warmstart("invoke", "fail", '{"fail": true}', "--endpoint", server.url)
    assert failed.returncode == 1
    assert json.loads(failed.stdout)["errorMessage"] == "asked to fail"

    event = warmstart("invoke", "echo", "--type", "Event", "--endpoint", server.url)
    assert (event.returncode, event.stdout) == (0, "")
    assert "accepted (202)" in event.stderr
    dry = warmstart("invoke", "echo", "--type", "DryRun", "--endpoint", server.url)
    assert (dry.returncode, dry.stdout) == (0, "")
    assert "204" in dry.stderr

    missing = warmstart("invoke", "missing", "--endpoint", server.url)
    assert missing.returncode == 2
    assert "ResourceNotFoundException: Function not found" in missing.stderr
    bad = warmstart("invoke", "echo", "{nope", "--endpoint", server.url)
    assert bad.returncode == 2
    assert "InvalidRequestContentException" in bad.stderr


def test_functions_and_logs_against_a_running_service(server: ServeProcess, tmp_path: Path) -> None:
    code = tmp_path / "shout"
    code.mkdir()
    (code / "app.py").write_text(
        "import os\ndef handler(event, context):\n"
        "    print('shouting')\n    return os.environ['WORD'].upper()\n"
    )
    created = warmstart(
        "functions", "create", "shout", "--handler", "app.handler", "--code", str(code),
        "--memory", "256", "--timeout", "4", "--env", "WORD=hey", "--endpoint", server.url,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    doc = json.loads(created.stdout)
    assert (doc["FunctionName"], doc["MemorySize"], doc["Timeout"]) == ("shout", 256, 4)

    listed = warmstart("functions", "list", "--endpoint", server.url)
    assert listed.returncode == 0
    rows = listed.stdout.splitlines()
    assert rows[0].split()[:3] == ["NAME", "RUNTIME", "HANDLER"]
    assert [row.split()[0] for row in rows[1:]] == ["echo", "fail", "shout", "slow"]
    as_json = warmstart("functions", "list", "--json", "--endpoint", server.url)
    assert len(json.loads(as_json.stdout)["Functions"]) == 4

    invoked = warmstart("invoke", "shout", "--endpoint", server.url)
    assert invoked.stdout == '"HEY"\n'
    logs = warmstart("logs", "shout", "--endpoint", server.url)
    assert logs.returncode == 0
    assert "shouting" in logs.stdout
    assert logs.stdout.splitlines()[-1].startswith("REPORT RequestId: ")

    deleted = warmstart("functions", "delete", "shout", "--endpoint", server.url)
    assert deleted.returncode == 0
    again = warmstart("functions", "delete", "shout", "--endpoint", server.url)
    assert again.returncode == 2
    assert "ResourceNotFoundException" in again.stderr


def _report_id(stderr: str) -> str:
    """The request id of the REPORT line ``warmstart invoke`` prints on stderr."""
    match = re.search(r"^REPORT RequestId: (\S+)", stderr, re.MULTILINE)
    assert match is not None, stderr
    return match[1]


def _read_until(proc: subprocess.Popen[bytes], needle: bytes, deadline: float) -> bytes:
    """``proc``'s stdout until ``needle`` appears; fails at ``deadline`` or at end of output."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    seen = b""
    while needle not in seen:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {needle!r} in time; the follower printed {seen!r}"
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            chunk = os.read(fd, 65536)
            assert chunk, f"the follower ended before {needle!r}; it printed {seen!r}"
            seen += chunk
    return seen


def test_logs_follow_until_interrupted(server: ServeProcess) -> None:
    # an invocation in the backlog: once the follower prints it, it is following
    before = warmstart("invoke", "echo", '{"before": 1}', "--endpoint", server.url)
    assert before.returncode == 0, before.stderr
    follow = subprocess.Popen(
        [WARMSTART, "logs", "echo", "--follow", "--endpoint", server.url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        _read_until(follow, f"REPORT RequestId: {_report_id(before.stderr)}".encode(), deadline)
        after = warmstart("invoke", "echo", '{"follow": "me"}', "--endpoint", server.url)
        assert after.returncode == 0, after.stderr
        # only the live stream can have the REPORT of an invocation made after it started
        _read_until(follow, f"REPORT RequestId: {_report_id(after.stderr)}".encode(), deadline)
        follow.send_signal(signal.SIGINT)
        assert follow.wait(10) == 130
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait(5)
        for stream in (follow.stdout, follow.stderr):
            if stream is not None:
                stream.close()


def test_embedded_engine_from_the_config(config_path: Path, tmp_path: Path) -> None:
    done = warmstart("invoke", "echo", '{"embedded": true}', "--config", str(config_path))
    assert (done.returncode, done.stdout) == (0, '{"embedded":true}\n'), done.stderr
    assert "REPORT RequestId:" in done.stderr
    assert "Init Duration" in done.stderr

    listed = warmstart("functions", "list", "--config", str(config_path))
    assert [row.split()[0] for row in listed.stdout.splitlines()[1:]] == ["echo", "fail", "slow"]

    logs = warmstart("logs", "echo", "--config", str(config_path))
    assert (logs.returncode, logs.stdout) == (0, "")

    created = warmstart(
        "functions", "create", "extra", "--handler", "app.echo", "--code", BASIC,
        "--config", str(config_path),
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    assert "embedded engine" in created.stderr

    nowhere = warmstart("invoke", "echo", "--endpoint", "http://127.0.0.1:9")
    assert nowhere.returncode == 2
    assert "cannot reach http://127.0.0.1:9" in nowhere.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["serve"],
        ["invoke"],
        ["functions"],
        ["functions", "create"],
        ["functions", "list"],
        ["functions", "delete"],
        ["logs"],
    ],
)
def test_help_has_examples(command: list[str]) -> None:
    done = warmstart(*command, "--help")
    assert done.returncode == 0
    _, sep, examples = done.stdout.partition("\nexamples:\n")
    assert sep, done.stdout
    # the usage line names the command too: only the examples' own lines count
    assert "  warmstart " + " ".join(command) + " " in examples
