"""``warmstart bench`` end to end: options, exit statuses, --json, --report, baselines."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from helpers import FUNCTIONS, ROOT

from runtime.cli import main
from runtime.harness.command import make_payload
from runtime.harness.load import LoadShape
from runtime.harness.progress import LiveProgress
from runtime.harness.runner import measure
from runtime.harness.targets import EmbeddedTarget
from runtime.loop import interruptible

MIXED = str(FUNCTIONS / "harness_mixed")
WARMSTART = str(Path(sys.executable).parent / "warmstart")
THROTTLED = "ReservedFunctionConcurrentInvocationLimitExceeded"

RUN_KEYS = {
    "label": str,
    "requests": int,
    "elapsed_s": float,
    "throughput_rps": float,
    "latency_ms": dict,
    "cold": int,
    "warm": int,
    "errors": dict,
    "throttles": dict,
    "billed_ms_total": int,
    "gb_seconds": float,
    "timeline": list,
    "histogram_us": dict,
}


def check_run(run: dict[str, Any]) -> None:
    """A run's figures have every key, with the right types."""
    for key, kind in RUN_KEYS.items():
        assert isinstance(run[key], kind), (key, run[key])
    assert set(run["latency_ms"]) == {"p50", "p90", "p99", "p99.9", "min", "max", "mean"}
    p = run["latency_ms"]
    assert p["min"] <= p["p50"] <= p["p90"] <= p["p99"] <= p["p99.9"] <= p["max"]
    assert sum(t["requests"] for t in run["timeline"]) == run["requests"]
    assert run["histogram_us"]["count"] == run["requests"]
    assert run["init_ms"] is None or set(run["init_ms"]) == {"count", "p50", "max"}


def bench(*argv: str) -> int:
    return main(["bench", "--quiet", *argv])


def test_end_to_end_with_every_baseline(tmp_path: Path) -> None:
    out, page = tmp_path / "out.json", tmp_path / "report.html"
    done = subprocess.run(
        [
            WARMSTART,
            "bench",
            "--handler",
            "app.echo",
            "--code",
            MIXED,
            "--requests",
            "30",
            "--warmup",
            "2",
            "-c",
            "2",
            "--payload-size",
            "300",
            "--baseline",
            "raw",
            "--baseline",
            "ppe",
            "--baseline",
            "mp",
            "--json",
            str(out),
            "--report",
            str(page),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # stderr is not a terminal: no progress display
    assert "throughput (req/s)" in done.stdout
    doc = json.loads(out.read_text())
    assert doc["schema"] == "warmstart.bench/1"
    assert doc["target"]["kind"] == "embedded"
    assert doc["load"] == {
        "mode": "closed",
        "concurrency": 2,
        "rate": None,
        "requests": 30,
        "duration_s": None,
        "warmup": 2,
        "payload_bytes": 300,
        "description": "closed loop, concurrency 2, 30 requests, warmup 2",
    }
    check_run(doc["result"])
    assert doc["result"]["requests"] == 30
    assert set(doc["baselines"]) == {"raw", "ppe", "mp"}
    for name, run in doc["baselines"].items():
        check_run(run)
        assert run["requests"] == 30, name
        assert run["workers"] == 2
        for ratio in run["ratios"].values():
            assert isinstance(ratio, float), (name, run["ratios"])
            assert ratio > 0, (name, run["ratios"])
        assert f"{run['ratios']['throughput']:.2f}x" in done.stdout
    assert 'id="latency-histogram"' in page.read_text()


def test_cold_mode_all_samples_cold(tmp_path: Path) -> None:
    out = tmp_path / "cold.json"
    status = bench(
        "--handler", "app.echo", "--code", MIXED, "--cold", "--requests", "6", "--json", str(out)
    )
    assert status == 0
    doc = orjson.loads(out.read_bytes())
    assert doc["cold_check"] == {"expected": "cold", "cold": 6, "warm": 0, "ok": True}
    assert doc["result"]["init_ms"]["count"] == 6
    assert doc["target"]["cold"] is True


def test_config_file_function_with_throttles_and_open_loop(tmp_path: Path) -> None:
    config = tmp_path / "ws.toml"
    config.write_text(
        f'[pool]\ncold_start_cap = 2\n\n[functions.slow]\nhandler = "app.sleepy"\n'
        f'code = "{MIXED}"\nreserved_concurrency = 1\n'
    )
    out = tmp_path / "out.json"
    status = bench(
        "--config",
        str(config),
        "--function",
        "slow",
        "--rate",
        "200",
        "--requests",
        "10",
        "--payload",
        '{"s": 0.03}',
        "--json",
        str(out),
    )
    assert status == 0
    doc = orjson.loads(out.read_bytes())
    assert doc["load"]["mode"] == "open"
    assert doc["target"]["function"] == "slow"
    result = doc["result"]
    assert result["throttles"][THROTTLED] >= 3
    assert result["cold"] + result["warm"] + result["throttles"][THROTTLED] == 10


def test_config_file_error_names_file_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[functions.f]\nhandler = "app.echo"\ncode = "."\nmemory_mb = 64\n')
    assert bench("--config", str(config), "--function", "f", "--requests", "1") == 2
    err = capsys.readouterr().err
    assert f"{config}: functions.f.memory_mb: 64 is outside the allowed range" in err


USAGE_ERRORS = [
    ([], "choose one target"),
    (["--handler", "app.echo", "--url", "http://127.0.0.1:1/"], "choose one target"),
    (["--handler", "app.echo"], "--handler needs --code"),
    (["--config", "x.toml"], "--config needs --function"),
    (["--endpoint", "http://127.0.0.1:1"], "--endpoint needs --function"),
    (["--url", "http://127.0.0.1:1/", "--cold"], "--cold goes with"),
    (["--url", "http://127.0.0.1:1/", "--function", "f"], "--function goes with"),
    (["--handler", "app.echo", "--code", MIXED, "--method", "GET"], "--method goes with"),
    (["--handler", "app.echo", "--code", MIXED, "--payload", "{nope"], "not valid JSON"),
    (["--handler", "app.echo", "--code", MIXED, "--payload-file", "/nonexistent"], "payload"),
    (["--handler", "app.echo", "--code", MIXED, "--requests", "0"], "must be at least 1"),
    (["--handler", "app.echo", "--code", MIXED, "--rate", "-3"], "above 0"),
    (["--handler", "app.echo", "--code", MIXED, "--requests", "1", "--duration", "1"], "not "),
    (["--handler", "app.echo", "--code", MIXED, "--baseline", "docker"], "invalid choice"),
    (["--handler", "app.echo", "--code", MIXED, "--payload", "{}", "--payload-size", "9"], "not "),
]


@pytest.mark.parametrize(("argv", "message"), USAGE_ERRORS)
def test_usage_errors_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        bench(*argv)
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert "usage: warmstart bench" in err
    assert message in err


def test_container_backend_without_an_image_is_the_config_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["--handler", "app.echo", "--code", MIXED, "--backend", "container", "--requests", "1"]
    assert bench(*argv) == 2
    assert "image: the container backend needs an image" in capsys.readouterr().err


def test_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["bench", "--help"])
    assert caught.value.code == 0
    text = capsys.readouterr().out
    assert "examples:" in text
    assert "warmstart bench --handler app.handler --code examples/hello" in text


def test_local_subcommand_still_works(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["local", "--handler", "app.echo", "--code", MIXED, '{"x": 1}']) == 0
    assert capsys.readouterr().out == '{"x":1}\n'


@pytest.mark.parametrize("size", [0, 5, 11, 12, 100, 4096])
def test_generated_payload_is_json_of_the_size(size: int) -> None:
    body = make_payload(size)
    assert isinstance(orjson.loads(body), dict)
    assert len(body) == max(size, 2) or (size < 12 and body == b"{}")


def test_live_progress_draws_on_its_console(arun: Any) -> None:
    from rich.console import Console

    stream = io.StringIO()
    console = Console(file=stream, force_terminal=True, width=120)
    target = EmbeddedTarget(
        __import__("runtime").FunctionConfig(name="p", handler="app.echo", code=MIXED)
    )
    with LiveProgress(console, interval=0.01) as progress:
        arun(measure(target, LoadShape(requests=20), b"{}", progress))
    text = stream.getvalue()
    assert "warmstart" in text
    assert "20 done" in text


def test_readme_bench_command_runs_as_written(tmp_path: Path) -> None:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Benchmark harness", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None
    argv = shlex.split(block[1].replace("\\\n", " "))
    assert argv[:2] == ["warmstart", "bench"]
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    done = subprocess.run(
        [WARMSTART, *argv[1:]], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "latency p99" in done.stdout
    assert json.loads((tmp_path / "results.json").read_text())["result"]["requests"] == 2000
    assert (tmp_path / "report.html").read_text().startswith("<!DOCTYPE html>")


def test_ctrl_c_cancels_the_run(arun: Any) -> None:
    async def main() -> None:
        async def forever() -> None:
            os.kill(os.getpid(), signal.SIGINT)
            await asyncio.sleep(10)

        with pytest.raises(asyncio.CancelledError):
            await interruptible(forever())

    arun(main())
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
