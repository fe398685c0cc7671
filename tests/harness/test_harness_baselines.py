"""Baselines: the raw unix-socket floor in-process (the pool baselines run end to end in
test_harness_cli, in a subprocess, so their helper processes end with it)."""

from __future__ import annotations

from typing import Any

import pytest

from runtime.harness.baselines import NAMES, RawTarget, make_baseline, noop
from runtime.harness.load import LoadShape
from runtime.harness.runner import measure


def test_raw_floor_runs_and_its_processes_end(arun: Any) -> None:
    target = RawTarget(2)
    result = arun(measure(target, LoadShape(concurrency=2, requests=40), b'{"k": [1, 2]}'))
    assert result.requests == 40
    assert not result.recorder.errors
    assert len(target.floor.procs) == 2
    assert all(proc.returncode == 0 for proc in target.floor.procs)


def test_open_loop_through_the_floor(arun: Any) -> None:
    target = RawTarget(1)
    result = arun(measure(target, LoadShape(rate=500, requests=20), b"{}"))
    assert result.requests == 20
    # request i is not sent before i / 500 s: the 20th (i = 19) at 38 ms at the earliest
    assert result.elapsed_s >= 19 / 500


def test_noop_decodes_and_encodes() -> None:
    assert noop(b'{"a": [1, 2]}') == b'{"a":[1,2]}'


def test_every_name_has_a_baseline_and_others_are_refused() -> None:
    assert {make_baseline(name, 1).label for name in NAMES} == set(NAMES)
    with pytest.raises(ValueError, match="unknown baseline 'docker'"):
        make_baseline("docker", 1)
