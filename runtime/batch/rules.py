"""AWS Batch's rules as pure functions: retries, array parents, dependencies, cancel/terminate.

No I/O and no clock: a store (SQLite here, Redis later) gathers the facts, asks these functions
what follows, and writes the outcome in one transaction. Every rule that has a documented AWS
behaviour follows it; the few choices warmstart makes are said where they are made.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Final, NamedTuple, TypeVar

import orjson

from .model import (
    DEFAULT_MEMORY_MIB,
    DEFAULT_VCPUS,
    FAILED,
    JOB_STATUSES,
    N_TO_N,
    PENDING,
    RESERVED_PARAMETER_PREFIX,
    RETRY,
    RUNNABLE,
    RUNNING,
    STARTING,
    SUBMITTED,
    SUCCEEDED,
    ClientException,
    ContainerDetail,
    ContainerOverrides,
    ContainerProperties,
    EvaluateOnExit,
    JobDependency,
    RetryStrategy,
)

T = TypeVar("T")

#: an attempt whose container exited, whatever the code (AWS's wording)
ESSENTIAL_EXITED: Final = "Essential container in task exited"
TIMEOUT_REASON: Final = "Job attempt duration exceeded timeout"
DEPENDENCY_FAILED: Final = "Dependent Job failed"
ARRAY_CHILD_FAILED: Final = "Array Child Job failed"
NOT_STARTED: Final = "Task failed to start"


def runner_died(node: str) -> str:
    """An attempt lost with its runner. Worded like AWS's lost-host reason so that the common
    ``onStatusReason: "Host EC2*"`` → RETRY rule treats a dead runner as it treats a lost host."""
    return f"Host EC2 (warmstart node {node}) terminated: the runner process died"


# -- retries ----------------------------------------------------------------------------------


def glob_match(pattern: str, value: str | None) -> bool:
    """Batch's evaluateOnExit glob: exact, or a prefix when the pattern ends with ``*``.
    A missing value (no exit code, no reason) is the empty string."""
    text = "" if value is None else value
    if pattern.endswith("*"):
        return text.startswith(pattern[:-1])
    return text == pattern


def rule_matches(
    rule: EvaluateOnExit, exit_code: int | None, reason: str | None, status_reason: str | None
) -> bool:
    """True when every condition the rule gives matches (a rule giving none matches all)."""
    code = None if exit_code is None else str(exit_code)
    return (
        (rule.on_exit_code is None or glob_match(rule.on_exit_code, code))
        and (rule.on_reason is None or glob_match(rule.on_reason, reason))
        and (rule.on_status_reason is None or glob_match(rule.on_status_reason, status_reason))
    )


def exit_action(
    strategy: RetryStrategy | None,
    exit_code: int | None,
    reason: str | None,
    status_reason: str | None,
) -> str:
    """RETRY or EXIT for a failed attempt: the first matching rule decides; with no rules, or
    when none matches, the job is retried (AWS: "If none of the listed conditions match, then
    the job is retried")."""
    for rule in (strategy.evaluate_on_exit if strategy else None) or ():
        if rule_matches(rule, exit_code, reason, status_reason):
            return rule.action.upper()
    return RETRY


def attempts_allowed(strategy: RetryStrategy | None) -> int:
    return (strategy.attempts if strategy else None) or 1


class Verdict(NamedTuple):
    """What follows an attempt: the job's next status (RUNNABLE for a retry, SUCCEEDED,
    FAILED), its statusReason, and the attempt's own statusReason."""

    status: str
    status_reason: str | None
    attempt_reason: str


def judge_attempt(
    strategy: RetryStrategy | None,
    attempt: int,
    exit_code: int | None,
    reason: str | None,
    status_reason: str | None,
    *,
    timed_out: bool = False,
    kill_reason: str | None = None,
) -> Verdict:
    """Decide a finished attempt (``attempt`` is 1-based).

    A TerminateJob request (``kill_reason``) and a timeout end the job with no retry, as AWS
    does ("If a job is terminated for exceeding the timeout duration, it isn't retried").
    Exit code 0 succeeds; any other outcome is retried while attempts remain and the
    evaluateOnExit rules say RETRY.
    """
    attempt_reason = status_reason or _default_attempt_reason(exit_code, timed_out)
    if kill_reason is not None:
        return Verdict(FAILED, kill_reason, attempt_reason)
    if timed_out:
        return Verdict(FAILED, TIMEOUT_REASON, attempt_reason)
    if exit_code == 0:
        return Verdict(SUCCEEDED, attempt_reason, attempt_reason)
    action = exit_action(strategy, exit_code, reason, attempt_reason)
    if action == RETRY and attempt < attempts_allowed(strategy):
        return Verdict(RUNNABLE, None, attempt_reason)
    return Verdict(FAILED, attempt_reason, attempt_reason)


def _default_attempt_reason(exit_code: int | None, timed_out: bool) -> str:
    if timed_out:
        return TIMEOUT_REASON
    return ESSENTIAL_EXITED if exit_code is not None else NOT_STARTED


# -- array jobs -------------------------------------------------------------------------------


def array_parent_status(size: int, done: int, failed: int) -> str | None:
    """The parent's final status once every child is final, else None (it stays PENDING):
    SUCCEEDED when all children succeeded, FAILED when any failed."""
    if done < size:
        return None
    return FAILED if failed else SUCCEEDED


def status_summary(counts: Mapping[str, int]) -> dict[str, int]:
    """arrayProperties.statusSummary: every job status, zero included, as AWS lists it."""
    return {status: counts.get(status, 0) for status in JOB_STATUSES}


# -- dependencies -----------------------------------------------------------------------------


class Target(NamedTuple):
    """A job named in dependsOn: its status, and its size when it is an array parent."""

    status: str
    array_size: int | None


class DependencyPlan(NamedTuple):
    """dependsOn sorted by effect: ``whole`` jobs the job (for an array, every child) waits
    for; ``n_to_n`` arrays whose child i each child i waits for; ``sequential`` when child i
    waits for child i-1 of the same array."""

    whole: tuple[str, ...]
    n_to_n: tuple[str, ...]
    sequential: bool


def plan_dependencies(
    depends_on: Sequence[JobDependency],
    array_size: int | None,
    targets: Mapping[str, Target],
) -> DependencyPlan:
    """Check dependsOn against the jobs it names (``targets``: those that exist)."""
    whole: list[str] = []
    n_to_n: list[str] = []
    sequential = False
    for dep in depends_on:
        if dep.job_id is None:  # model validation allows this for SEQUENTIAL arrays only
            sequential = True
            continue
        target = targets.get(dep.job_id)
        if target is None:
            raise ClientException(f"dependsOn: job {dep.job_id} does not exist")
        if dep.type == N_TO_N:
            if target.array_size != array_size:
                raise ClientException(
                    f"dependsOn: N_TO_N job {dep.job_id} is not an array job of size {array_size}"
                )
            _append_once(n_to_n, dep.job_id)
        else:
            _append_once(whole, dep.job_id)
    return DependencyPlan(tuple(whole), tuple(n_to_n), sequential)


def _append_once(items: list[str], item: str) -> None:
    if item not in items:
        items.append(item)


def dependency_status(statuses: Iterable[str]) -> str:
    """FAILED if any dependency failed, RUNNABLE once all succeeded, else PENDING."""
    waiting = False
    for status in statuses:
        if status == FAILED:
            return FAILED
        if status != SUCCEEDED:
            waiting = True
    return PENDING if waiting else RUNNABLE


def child_blockers(
    index: int, *, gate: bool, sequential: bool, n_to_n: Sequence[str]
) -> tuple[int, bool]:
    """(unfinished dependencies, whether one already failed) of child ``index`` of a new array
    job. ``gate``: the parent still waits for its whole-job dependencies; ``n_to_n``: the
    statuses of child ``index`` of each N_TO_N dependency."""
    blockers = int(gate) + int(sequential and index > 0)
    failed = False
    for status in n_to_n:
        if status == FAILED:
            failed = True
        elif status != SUCCEEDED:
            blockers += 1
    return blockers, failed


# -- cancel and terminate ---------------------------------------------------------------------

FAIL: Final = "FAIL"
KILL: Final = "KILL"
NOTHING: Final = "NOTHING"

_NOT_STARTED = frozenset({SUBMITTED, PENDING, RUNNABLE})


def cancel_effect(status: str) -> str:
    """CancelJob: SUBMITTED, PENDING and RUNNABLE jobs fail; STARTING and RUNNING ones are left
    alone (the call still succeeds: AWS says to use TerminateJob for them)."""
    return FAIL if status in _NOT_STARTED else NOTHING


def terminate_effect(status: str) -> str:
    """TerminateJob: a job not yet started fails at once; a STARTING or RUNNING one must be
    killed by its runner first; a final one is left as it is."""
    if status in _NOT_STARTED:
        return FAIL
    return KILL if status in (STARTING, RUNNING) else NOTHING


# -- what an attempt runs ---------------------------------------------------------------------


def substitute(command: Sequence[str], parameters: Mapping[str, str]) -> list[str]:
    """Replace each ``Ref::name`` token by its parameter; unknown names stay as written.
    Batch substitutes whole tokens only, and so does this."""
    out = []
    for token in command:
        if token.startswith("Ref::") and token[5:] in parameters:
            token = parameters[token[5:]]
        out.append(token)
    return out


def resolve_container(
    props: ContainerProperties | None,
    overrides: ContainerOverrides | None,
    parameters: Mapping[str, str],
) -> ContainerDetail:
    """The container a job runs: the definition's, with the submit's overrides applied and
    parameters substituted in the command."""
    props = props or ContainerProperties()
    over = overrides or ContainerOverrides()
    command = over.command if over.command is not None else props.command
    return ContainerDetail(
        image=props.image,
        vcpus=over.vcpus if over.vcpus is not None else props.vcpus,
        memory=over.memory if over.memory is not None else props.memory,
        command=substitute(command or [], parameters),
        environment=_merged(props.environment, over.environment, lambda pair: pair.name),
        resource_requirements=_merged(
            props.resource_requirements, over.resource_requirements, lambda req: req.type
        ),
        job_role_arn=props.job_role_arn,
        execution_role_arn=props.execution_role_arn,
        user=props.user,
        instance_type=over.instance_type or props.instance_type,
    )


def _merged(
    base: Sequence[T] | None, extra: Sequence[T] | None, key: Callable[[T], str | None]
) -> list[T] | None:
    """``base`` with ``extra``'s items in place of those of the same ``key``; None if empty."""
    merged = {key(item): item for item in base or ()}
    merged.update((key(item), item) for item in extra or ())
    return list(merged.values()) or None


def container_resources(container: ContainerDetail | None) -> tuple[float, int, int]:
    """(vCPUs, memory MiB, GPUs) an attempt needs. resourceRequirements win over the legacy
    ``vcpus`` / ``memory`` fields, as in Batch; nothing given means 1 vCPU and 2048 MiB."""
    if container is None:
        return DEFAULT_VCPUS, DEFAULT_MEMORY_MIB, 0
    reqs = {req.type: req.value for req in container.resource_requirements or ()}
    vcpus = float(reqs["VCPU"]) if "VCPU" in reqs else float(container.vcpus or DEFAULT_VCPUS)
    memory = int(reqs["MEMORY"]) if "MEMORY" in reqs else container.memory or DEFAULT_MEMORY_MIB
    return vcpus, memory, int(reqs.get("GPU", 0))


def job_environment(
    container: ContainerDetail | None,
    *,
    job_id: str,
    attempt: int,
    queue: str,
    compute_environment: str,
    array_index: int | None,
) -> dict[str, str]:
    """The variables of one attempt: the container's, then those Batch sets itself."""
    env = {p.name: p.value or "" for p in (container.environment if container else None) or ()}
    env["AWS_BATCH_JOB_ID"] = job_id
    env["AWS_BATCH_JOB_ATTEMPT"] = str(attempt)
    env["AWS_BATCH_JQ_NAME"] = queue
    env["AWS_BATCH_CE_NAME"] = compute_environment
    if array_index is not None:
        env["AWS_BATCH_JOB_ARRAY_INDEX"] = str(array_index)
    return {k: v for k, v in env.items() if k}


def function_event(parameters: Mapping[str, str]) -> bytes:
    """The event of a function job submitted without a payload: its parameters as a JSON
    object, warmstart's own keys left out."""
    return orjson.dumps(
        {k: v for k, v in parameters.items() if not k.startswith(RESERVED_PARAMETER_PREFIX)}
    )


def merged_parameters(
    defaults: Mapping[str, str] | None, given: Mapping[str, str] | None
) -> dict[str, str]:
    """The job's parameters: the definition's defaults, overridden by the submit's."""
    return {**(defaults or {}), **(given or {})}
