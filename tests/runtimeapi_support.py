"""What the custom-runtime tests share: the runtimes' sources, and a way to find processes
(a runtime and what it started) by the directory they run in."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import FUNCTIONS

PROVIDED = FUNCTIONS / "provided"

MakeCode = Callable[..., str]


def processes_in(root: Path) -> list[tuple[int, str]]:
    """Live processes whose working directory is under ``root`` (a runtime and its children)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cwd = os.readlink(f"/proc/{entry}/cwd")
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if cwd == str(root) or cwd.startswith(f"{root}/"):
            found.append((int(entry), cmdline))
    return found


def need_curl() -> None:
    """Skip without curl (``make system-deps`` installs it), except under CI, where it fails."""
    if shutil.which("curl") is None:
        if os.environ.get("CI"):
            pytest.fail("curl is not installed (make system-deps installs it)")
        pytest.skip("curl is not installed")


def need_node() -> None:
    """Skip without Node.js, except under CI, where a missing ``node`` is a failure."""
    if shutil.which("node") is None:
        if os.environ.get("CI"):
            pytest.fail("node is not on PATH (Node.js 16+ is needed for the nodejs*.x tests)")
        pytest.skip("node is not on PATH (the nodejs*.x runtimes need Node.js 16+)")
