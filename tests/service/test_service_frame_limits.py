"""Results at the frame limits, through boto3 against a real ``warmstart serve``: a big result
beside a big log comes back whole with its log's end, and a result over Lambda's limit is its
error document, the worker staying warm."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from helpers import FUNCTIONS
from service_support import ServeProcess, aws_client

BIG = FUNCTIONS / "big_output"
MB = 1024 * 1024


def test_big_results_through_boto3(tmp_path: Path) -> None:
    config = tmp_path / "warmstart.toml"
    config.write_text(
        f'[pool]\nlog_cap_bytes = 1900000\n[batch]\ndata_dir = "{tmp_path / "data"}"\n'
        f'[functions.big]\nhandler = "app.handler"\ncode = "{BIG}"\ntimeout_s = 30\n'
    )
    serve = ServeProcess(config)
    try:
        lam: Any = aws_client("lambda", serve.url)
        event = json.dumps({"print": 1_900_000, "return": 5 * MB}).encode()
        answer = lam.invoke(FunctionName="big", Payload=event, LogType="Tail")
        assert "FunctionError" not in answer
        assert len(answer["Payload"].read()) == 5 * MB
        assert "last line of the log" in base64.b64decode(answer["LogResult"]).decode()
        too_big = json.dumps({"return": 6_291_557}).encode()
        answer = lam.invoke(FunctionName="big", Payload=too_big)
        assert answer["FunctionError"] == "Unhandled"
        body = json.loads(answer["Payload"].read())
        assert body["errorType"] == "Function.ResponseSizeTooLarge"
        assert "6291556 bytes" in body["errorMessage"]
        warm = lam.invoke(FunctionName="big", Payload=b"{}")
        assert "FunctionError" not in warm
        lam.close()
    finally:
        serve.close()
