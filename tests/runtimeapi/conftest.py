"""Custom runtimes (``provided.*``) written into a fresh code directory per test, and a check
that no runtime process (nor anything it started) outlives the test."""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from runtimeapi_support import PROVIDED, MakeCode, processes_in


@pytest.fixture
def code_root(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "code"
    root.mkdir()
    yield root
    deadline = time.monotonic() + 3.0
    left = processes_in(root)
    while left and time.monotonic() < deadline:
        time.sleep(0.02)
        left = processes_in(root)
    assert not left, f"runtime processes left behind: {left}"


@pytest.fixture
def make_code(code_root: Path) -> MakeCode:
    """``make_code(kind)``: a code directory whose ``bootstrap`` is the ``probe`` runtime
    (http.client), the ``curl`` shell runtime, or ``ric`` (awslambdaric)."""
    count = 0

    def make(kind: str, mode: int = 0o755) -> str:
        nonlocal count
        count += 1
        code = code_root / f"{kind}-{count}"
        code.mkdir()
        bootstrap = code / "bootstrap"
        if kind == "probe":
            source = (PROVIDED / "probe.py").read_text()
            bootstrap.write_text(f"#!{sys.executable} -u\n{source}")
        elif kind == "curl":
            shutil.copyfile(PROVIDED / "curl_bootstrap.sh", bootstrap)
        elif kind == "ric":
            shutil.copyfile(PROVIDED / "ric_app.py", code / "ric_app.py")
            bootstrap.write_text(f'#!/bin/sh\nexec {sys.executable} -m awslambdaric "$_HANDLER"\n')
        elif kind != "empty":
            raise ValueError(kind)
        if bootstrap.exists():
            bootstrap.chmod(mode)
        return str(code)

    return make
