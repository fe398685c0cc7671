"""The README's examples run as written."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from helpers import ROOT

BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def test_readme_has_the_two_commands_first() -> None:
    text = (ROOT / "README.md").read_text()
    assert text.index("make run") < text.index("```python")
    assert text.index("make test") < text.index("```python")


#: what each python block of the README must print
EXPECTED = [
    ['"echo":{"name":"warmstart"}', "\nNone\n", "True ", "START RequestId:", "REPORT RequestId:"],
    ['"echo":{"x":1}', "'invocations': 1", "'cold_starts': 1"],
]


def test_every_readme_block_is_checked() -> None:
    assert len(BLOCKS) == len(EXPECTED)


@pytest.mark.parametrize(("block", "expected"), list(zip(BLOCKS, EXPECTED, strict=True)))
def test_readme_example_runs(block: str, expected: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-c", block], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    for text in expected:
        assert text in done.stdout, (text, done.stdout)
