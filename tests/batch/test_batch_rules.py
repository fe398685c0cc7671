"""Batch's rules as tables: retries, array parents, dependencies, cancel/terminate, commands."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from runtime.batch import rules
from runtime.batch.model import (
    FAILED,
    PENDING,
    RUNNABLE,
    RUNNING,
    STARTING,
    SUBMITTED,
    SUCCEEDED,
    ClientException,
    ContainerOverrides,
    ContainerProperties,
    EvaluateOnExit,
    JobDependency,
    KeyValuePair,
    ResourceRequirement,
    RetryStrategy,
)


@pytest.mark.parametrize(
    ("pattern", "value", "match"),
    [
        ("137", "137", True),
        ("137", "1370", False),
        ("13*", "137", True),
        ("13*", "13", True),
        ("13*", "1", False),
        ("*", "anything", True),
        ("*", None, True),
        ("*", "", True),
        ("1*", None, False),
        ("Host EC2*", "Host EC2 (instance i-1) terminated.", True),
        ("host EC2*", "Host EC2 (instance i-1) terminated.", False),  # case matters
        ("Essential container in task exited", "Essential container in task exited", True),
        ("Essential container", "Essential container in task exited", False),
        ("", None, True),
        ("", "x", False),
    ],
)
def test_glob_match(pattern: str, value: str | None, match: bool) -> None:
    assert rules.glob_match(pattern, value) is match


def rule(action: str = "EXIT", **conditions: str) -> EvaluateOnExit:
    return EvaluateOnExit(action=action, **conditions)


@pytest.mark.parametrize(
    ("r", "outcome", "match"),
    [
        (rule(on_exit_code="1"), (1, None, None), True),
        (rule(on_exit_code="1"), (None, None, None), False),
        (rule(on_exit_code="1*"), (137, None, None), True),
        (rule(on_reason="OutOfMemory*"), (137, "OutOfMemoryError: killed", None), True),
        (rule(on_exit_code="137", on_reason="Out*"), (137, "Other", None), False),
        (rule(on_exit_code="137", on_reason="Out*"), (137, "Out of memory", None), True),
        (rule(on_status_reason="Host EC2*"), (None, None, "Host EC2 (x) terminated"), True),
        (rule(), (5, "r", "s"), True),  # no conditions: matches every outcome
    ],
)
def test_rule_matches(r: EvaluateOnExit, outcome: tuple[Any, Any, Any], match: bool) -> None:
    assert rules.rule_matches(r, *outcome) is match


SPOT_STYLE = RetryStrategy(
    attempts=3,
    evaluate_on_exit=[
        rule("RETRY", on_status_reason="Host EC2*"),
        rule("EXIT", on_reason="*"),
    ],
)
EXIT_ON_ONE = RetryStrategy(attempts=3, evaluate_on_exit=[rule("exit", on_exit_code="1")])
FIRST_WINS = RetryStrategy(
    attempts=5,
    evaluate_on_exit=[rule("EXIT", on_exit_code="2*"), rule("RETRY", on_exit_code="2")],
)

# strategy, attempt, (exit code, reason, status reason) -> next status
JUDGE_TABLE = [
    (None, 1, (0, None, None), SUCCEEDED),
    (None, 1, (1, None, None), FAILED),  # one attempt by default
    (RetryStrategy(attempts=2), 1, (1, None, None), RUNNABLE),
    (RetryStrategy(attempts=2), 2, (1, None, None), FAILED),
    (RetryStrategy(attempts=10), 9, (None, None, None), RUNNABLE),
    (RetryStrategy(attempts=10), 10, (None, None, None), FAILED),
    (EXIT_ON_ONE, 1, (1, None, None), FAILED),
    (EXIT_ON_ONE, 1, (2, None, None), RUNNABLE),  # no rule matches: retried
    (EXIT_ON_ONE, 3, (2, None, None), FAILED),  # ...while attempts remain
    (EXIT_ON_ONE, 1, (0, None, None), SUCCEEDED),  # exit 0 never consults the rules
    (SPOT_STYLE, 1, (None, None, "Host EC2 (i-1) terminated."), RUNNABLE),
    (SPOT_STYLE, 1, (1, None, None), FAILED),  # onReason "*" matches a missing reason
    (SPOT_STYLE, 3, (None, None, "Host EC2 (i-1) terminated."), FAILED),
    (FIRST_WINS, 1, (2, None, None), FAILED),
    (FIRST_WINS, 1, (3, None, None), RUNNABLE),
]


@pytest.mark.parametrize(("strategy", "attempt", "outcome", "status"), JUDGE_TABLE)
def test_judge_attempt(
    strategy: RetryStrategy | None, attempt: int, outcome: tuple[Any, Any, Any], status: str
) -> None:
    assert rules.judge_attempt(strategy, attempt, *outcome).status == status


def test_judge_attempt_reasons() -> None:
    ok = rules.judge_attempt(None, 1, 0, None, None)
    assert ok == (SUCCEEDED, rules.ESSENTIAL_EXITED, rules.ESSENTIAL_EXITED)
    failed = rules.judge_attempt(None, 1, 3, "OutOfMemoryError", None)
    assert failed == (FAILED, rules.ESSENTIAL_EXITED, rules.ESSENTIAL_EXITED)
    retry = rules.judge_attempt(RetryStrategy(attempts=2), 1, 3, None, None)
    assert retry == (RUNNABLE, None, rules.ESSENTIAL_EXITED)
    lost = rules.judge_attempt(None, 1, None, None, None)
    assert lost.attempt_reason == rules.NOT_STARTED
    given = rules.judge_attempt(None, 1, 1, None, "Custom reason")
    assert given == (FAILED, "Custom reason", "Custom reason")


def test_timeout_and_termination_are_never_retried() -> None:
    many = RetryStrategy(attempts=10)
    timed_out = rules.judge_attempt(many, 1, 137, None, None, timed_out=True)
    assert timed_out == (FAILED, rules.TIMEOUT_REASON, rules.TIMEOUT_REASON)
    killed = rules.judge_attempt(many, 1, 143, None, None, kill_reason="Stopped by operator")
    assert killed.status == FAILED
    assert killed.status_reason == "Stopped by operator"
    # a termination wins even over a clean exit that raced the kill
    assert rules.judge_attempt(many, 1, 0, None, None, kill_reason="x").status == FAILED


def test_runner_died_matches_the_usual_lost_host_rule() -> None:
    reason = rules.runner_died("node-a")
    assert "node-a" in reason
    assert rules.exit_action(SPOT_STYLE, None, None, reason) == "RETRY"


@pytest.mark.parametrize(
    ("size", "done", "failed", "status"),
    [
        (3, 0, 0, None),
        (3, 2, 0, None),
        (3, 2, 2, None),  # a failed child does not end the parent early
        (3, 3, 0, SUCCEEDED),
        (3, 3, 1, FAILED),
        (3, 3, 3, FAILED),
    ],
)
def test_array_parent_status(size: int, done: int, failed: int, status: str | None) -> None:
    assert rules.array_parent_status(size, done, failed) == status


def test_status_summary_lists_every_status() -> None:
    assert rules.status_summary({RUNNING: 2, FAILED: 1}) == {
        SUBMITTED: 0,
        PENDING: 0,
        RUNNABLE: 0,
        STARTING: 0,
        RUNNING: 2,
        SUCCEEDED: 0,
        FAILED: 1,
    }


@pytest.mark.parametrize(
    ("statuses", "status"),
    [
        ([], RUNNABLE),
        ([SUCCEEDED], RUNNABLE),
        ([SUCCEEDED, RUNNING], PENDING),
        ([PENDING, FAILED], FAILED),
        ([SUCCEEDED, SUCCEEDED], RUNNABLE),
    ],
)
def test_dependency_status(statuses: list[str], status: str) -> None:
    assert rules.dependency_status(statuses) == status


TARGETS = {
    "plain": rules.Target(RUNNING, None),
    "arr3": rules.Target(PENDING, 3),
    "arr4": rules.Target(PENDING, 4),
}


def test_plan_dependencies() -> None:
    deps = [
        JobDependency(job_id="plain"),
        JobDependency(job_id="arr3", type="N_TO_N"),
        JobDependency(type="SEQUENTIAL"),
        JobDependency(job_id="plain", type="SEQUENTIAL"),  # with a jobId: a plain dependency
        JobDependency(job_id="arr4"),
    ]
    plan = rules.plan_dependencies(deps, 3, TARGETS)
    assert plan == (("plain", "arr4"), ("arr3",), True)


@pytest.mark.parametrize(
    ("deps", "size", "message"),
    [
        ([JobDependency(job_id="nope")], None, "nope does not exist"),
        ([JobDependency(job_id="arr4", type="N_TO_N")], 3, "not an array job of size 3"),
        ([JobDependency(job_id="plain", type="N_TO_N")], 3, "not an array job"),
    ],
)
def test_plan_dependency_errors(deps: list[JobDependency], size: int | None, message: str) -> None:
    with pytest.raises(ClientException, match=message):
        rules.plan_dependencies(deps, size, TARGETS)


@pytest.mark.parametrize(
    ("index", "gate", "sequential", "n_to_n", "expected"),
    [
        (0, False, False, [], (0, False)),
        (0, True, False, [], (1, False)),
        (0, False, True, [], (0, False)),  # the first child starts a sequential array
        (1, False, True, [], (1, False)),
        (2, True, True, [RUNNING, SUCCEEDED], (3, False)),
        (2, False, False, [FAILED, RUNNING], (1, True)),
    ],
)
def test_child_blockers(
    index: int, gate: bool, sequential: bool, n_to_n: list[str], expected: tuple[int, bool]
) -> None:
    assert rules.child_blockers(index, gate=gate, sequential=sequential, n_to_n=n_to_n) == expected


@pytest.mark.parametrize(
    ("status", "cancel", "terminate"),
    [
        (SUBMITTED, rules.FAIL, rules.FAIL),
        (PENDING, rules.FAIL, rules.FAIL),
        (RUNNABLE, rules.FAIL, rules.FAIL),
        (STARTING, rules.NOTHING, rules.KILL),
        (RUNNING, rules.NOTHING, rules.KILL),
        (SUCCEEDED, rules.NOTHING, rules.NOTHING),
        (FAILED, rules.NOTHING, rules.NOTHING),
    ],
)
def test_cancel_and_terminate(status: str, cancel: str, terminate: str) -> None:
    assert rules.cancel_effect(status) == cancel
    assert rules.terminate_effect(status) == terminate


def test_substitute_whole_tokens_only() -> None:
    params = {"in": "a.txt", "codec": "mp3"}
    command = ["ffmpeg", "-i", "Ref::in", "-c", "Ref::codec", "--x=Ref::in", "Ref::missing"]
    assert rules.substitute(command, params) == [
        "ffmpeg",
        "-i",
        "a.txt",
        "-c",
        "mp3",
        "--x=Ref::in",
        "Ref::missing",
    ]


def test_resolve_container_applies_overrides() -> None:
    props = ContainerProperties(
        image="img",
        command=["run", "Ref::n"],
        environment=[KeyValuePair(name="A", value="1"), KeyValuePair(name="B", value="2")],
        resource_requirements=[
            ResourceRequirement(type="VCPU", value="2"),
            ResourceRequirement(type="MEMORY", value="512"),
        ],
    )
    over = ContainerOverrides(
        command=["other", "Ref::n"],
        environment=[KeyValuePair(name="B", value="3")],
        resource_requirements=[ResourceRequirement(type="MEMORY", value="1024")],
    )
    container = rules.resolve_container(props, over, {"n": "7"})
    assert container.image == "img"
    assert container.command == ["other", "7"]
    assert container.environment == [
        KeyValuePair(name="A", value="1"),
        KeyValuePair(name="B", value="3"),
    ]
    assert rules.container_resources(container) == (2.0, 1024, 0)


@pytest.mark.parametrize(
    ("props", "over", "resources"),
    [
        (ContainerProperties(image="i"), None, (1.0, 2048, 0)),
        (ContainerProperties(image="i", vcpus=4, memory=100), None, (4.0, 100, 0)),
        (ContainerProperties(image="i", vcpus=4), ContainerOverrides(vcpus=2), (2.0, 2048, 0)),
        (
            ContainerProperties(
                image="i", resource_requirements=[ResourceRequirement(type="VCPU", value="0.5")]
            ),
            ContainerOverrides(vcpus=8),  # the legacy field does not beat resourceRequirements
            (0.5, 2048, 0),
        ),
        (
            ContainerProperties(
                image="i", resource_requirements=[ResourceRequirement(type="GPU", value="2")]
            ),
            None,
            (1.0, 2048, 2),
        ),
    ],
)
def test_container_resources(
    props: ContainerProperties, over: ContainerOverrides | None, resources: tuple[float, int, int]
) -> None:
    container = rules.resolve_container(props, over, {})
    assert rules.container_resources(container) == resources
    assert rules.container_resources(None) == (1.0, 2048, 0)


def test_job_environment() -> None:
    container = rules.resolve_container(
        ContainerProperties(image="i", environment=[KeyValuePair(name="X", value="1")]), None, {}
    )
    env = rules.job_environment(
        container, job_id="j:4", attempt=2, queue="q", compute_environment="ce", array_index=4
    )
    assert env == {
        "X": "1",
        "AWS_BATCH_JOB_ID": "j:4",
        "AWS_BATCH_JOB_ATTEMPT": "2",
        "AWS_BATCH_JQ_NAME": "q",
        "AWS_BATCH_CE_NAME": "ce",
        "AWS_BATCH_JOB_ARRAY_INDEX": "4",
    }
    plain = rules.job_environment(
        None, job_id="j", attempt=1, queue="q", compute_environment="ce", array_index=None
    )
    assert "AWS_BATCH_JOB_ARRAY_INDEX" not in plain


def test_function_event_leaves_out_warmstart_keys() -> None:
    event = rules.function_event({"warmstart:function": "f", "size": "3"})
    assert orjson.loads(event) == {"size": "3"}


def test_merged_parameters() -> None:
    assert rules.merged_parameters({"a": "1", "b": "2"}, {"b": "3"}) == {"a": "1", "b": "3"}
    assert rules.merged_parameters(None, None) == {}
