"""AWS Batch shapes: job definitions, job queues, jobs, and their validation.

Every API shape is a msgspec Struct whose JSON form is the Batch API's own (camelCase keys,
absent fields omitted), so the service encodes what the store returns and decodes requests with
:func:`parse`. Fields of the API that warmstart does not model (``nodeProperties``,
``eksProperties``, volumes, ...) are ignored when a request is parsed.

warmstart extension, **function jobs**: a job definition without ``containerProperties`` whose
``parameters`` hold ``"warmstart:function": "<function name>"`` runs that function (registered
in the engine) instead of a container command. The key rides in the standard parameters map, so
boto3 and the AWS CLI can register such a definition unchanged. The function's event is the
``payload`` given to ``Store.submit_job`` (raw JSON bytes), else the job's parameters without
the ``warmstart:`` keys, as a JSON object.

Validation errors raise :class:`ClientException`, Batch's error for a request it refuses.
"""

from __future__ import annotations

import re
from typing import Any, Final, TypeVar

import msgspec

from ..errors import WarmstartError

# -- job states -------------------------------------------------------------------------------

SUBMITTED: Final = "SUBMITTED"
PENDING: Final = "PENDING"
RUNNABLE: Final = "RUNNABLE"
STARTING: Final = "STARTING"
RUNNING: Final = "RUNNING"
SUCCEEDED: Final = "SUCCEEDED"
FAILED: Final = "FAILED"
JOB_STATUSES: Final = (SUBMITTED, PENDING, RUNNABLE, STARTING, RUNNING, SUCCEEDED, FAILED)
FINAL_STATUSES: Final = frozenset({SUCCEEDED, FAILED})

ENABLED: Final = "ENABLED"
DISABLED: Final = "DISABLED"
ACTIVE: Final = "ACTIVE"
INACTIVE: Final = "INACTIVE"
VALID: Final = "VALID"
DELETED: Final = "DELETED"

RETRY: Final = "RETRY"
EXIT: Final = "EXIT"
N_TO_N: Final = "N_TO_N"
SEQUENTIAL: Final = "SEQUENTIAL"

#: the parameter that turns a job definition into a function job (see the module docstring)
FUNCTION_PARAMETER: Final = "warmstart:function"
RESERVED_PARAMETER_PREFIX: Final = "warmstart:"

MAX_ATTEMPTS: Final = 10
MAX_EXIT_RULES: Final = 5
MAX_PATTERN: Final = 512
MIN_TIMEOUT_S: Final = 60
MIN_ARRAY_SIZE: Final = 2
MAX_ARRAY_SIZE: Final = 10_000
MAX_DEPENDENCIES: Final = 20
MAX_TAGS: Final = 50
MIN_MEMORY_MIB: Final = 4
DEFAULT_VCPUS: Final = 1.0
DEFAULT_MEMORY_MIB: Final = 2048

_NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,128}")
_JOB_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
# Batch's documented alphabet for onReason / onStatusReason, and digits for onExitCode; either
# may end with one '*' that makes the rest a prefix match.
_REASON_GLOB_RE = re.compile(r"[A-Za-z0-9.:\s]*\*?")
_EXIT_GLOB_RE = re.compile(r"[0-9]*\*?")
_NUMBER_RE = re.compile(r"[0-9]+(\.[0-9]+)?")


class ClientException(WarmstartError):
    """Batch refused the request: a bad value, an unknown resource, a wrong state (HTTP 400)."""

    code = "ClientException"
    status = 400


# -- shapes shared by requests and answers ----------------------------------------------------


class Shape(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True):
    """Base of the API shapes: camelCase JSON, absent fields left out as AWS leaves them."""


class KeyValuePair(Shape):
    name: str | None = None
    value: str | None = None


class ResourceRequirement(Shape):
    type: str
    value: str


class _Container(Shape):
    """The members ``containerProperties`` and a job's ``container`` share, in AWS's order."""

    image: str | None = None
    vcpus: int | None = None
    memory: int | None = None
    command: list[str] | None = None
    environment: list[KeyValuePair] | None = None
    resource_requirements: list[ResourceRequirement] | None = None
    job_role_arn: str | None = None
    execution_role_arn: str | None = None
    user: str | None = None


class ContainerProperties(_Container):
    """The modeled part of ``containerProperties``."""

    privileged: bool | None = None
    readonly_root_filesystem: bool | None = None
    instance_type: str | None = None


class ContainerOverrides(Shape):
    vcpus: int | None = None
    memory: int | None = None
    command: list[str] | None = None
    instance_type: str | None = None
    environment: list[KeyValuePair] | None = None
    resource_requirements: list[ResourceRequirement] | None = None


class EvaluateOnExit(Shape):
    """One retry rule: when all given patterns match, ``action`` (RETRY | EXIT) decides."""

    action: str
    on_status_reason: str | None = None
    on_reason: str | None = None
    on_exit_code: str | None = None


class RetryStrategy(Shape):
    attempts: int | None = None
    evaluate_on_exit: list[EvaluateOnExit] | None = None


class JobTimeout(Shape):
    attempt_duration_seconds: int | None = None


class ArrayProperties(Shape):
    size: int | None = None


class JobDependency(Shape):
    job_id: str | None = None
    type: str | None = None


class ComputeEnvironmentOrder(Shape):
    order: int
    compute_environment: str


# -- job definitions --------------------------------------------------------------------------


class RegisterJobDefinitionRequest(Shape):
    job_definition_name: str
    type: str
    parameters: dict[str, str] | None = None
    container_properties: ContainerProperties | None = None
    retry_strategy: RetryStrategy | None = None
    propagate_tags: bool | None = None
    timeout: JobTimeout | None = None
    tags: dict[str, str] | None = None
    platform_capabilities: list[str] | None = None


class RegisterJobDefinitionResponse(Shape):
    job_definition_name: str
    job_definition_arn: str
    revision: int


class JobDefinition(Shape):
    job_definition_name: str
    job_definition_arn: str
    revision: int
    type: str
    status: str = ACTIVE
    parameters: dict[str, str] | None = None
    retry_strategy: RetryStrategy | None = None
    container_properties: ContainerProperties | None = None
    timeout: JobTimeout | None = None
    tags: dict[str, str] | None = None
    propagate_tags: bool | None = None
    platform_capabilities: list[str] | None = None

    @property
    def function(self) -> str | None:
        """The warmstart function this definition runs, or None for a container job."""
        return (self.parameters or {}).get(FUNCTION_PARAMETER)


# -- job queues -------------------------------------------------------------------------------


class CreateJobQueueRequest(Shape):
    job_queue_name: str
    priority: int
    state: str = ENABLED
    compute_environment_order: list[ComputeEnvironmentOrder] | None = None
    scheduling_policy_arn: str | None = None
    tags: dict[str, str] | None = None


class UpdateJobQueueRequest(Shape):
    job_queue: str
    state: str | None = None
    priority: int | None = None
    compute_environment_order: list[ComputeEnvironmentOrder] | None = None
    scheduling_policy_arn: str | None = None


class JobQueueDetail(Shape):
    job_queue_name: str
    job_queue_arn: str
    state: str
    priority: int
    compute_environment_order: list[ComputeEnvironmentOrder] = msgspec.field(default_factory=list)
    status: str = VALID
    status_reason: str | None = None
    scheduling_policy_arn: str | None = None
    tags: dict[str, str] | None = None


class CreateJobQueueResponse(Shape):
    job_queue_name: str
    job_queue_arn: str


# -- jobs -------------------------------------------------------------------------------------


class SubmitJobRequest(Shape):
    job_name: str
    job_queue: str
    job_definition: str
    array_properties: ArrayProperties | None = None
    depends_on: list[JobDependency] | None = None
    parameters: dict[str, str] | None = None
    container_overrides: ContainerOverrides | None = None
    retry_strategy: RetryStrategy | None = None
    propagate_tags: bool | None = None
    timeout: JobTimeout | None = None
    tags: dict[str, str] | None = None


class SubmitJobResponse(Shape):
    job_name: str
    job_id: str
    job_arn: str | None = None


class AttemptContainerDetail(Shape):
    exit_code: int | None = None
    reason: str | None = None
    log_stream_name: str | None = None


class AttemptDetail(Shape):
    container: AttemptContainerDetail | None = None
    started_at: int | None = None
    stopped_at: int | None = None
    status_reason: str | None = None


class ContainerDetail(_Container):
    """A job's container as it runs: the definition with the submit's overrides applied."""

    instance_type: str | None = None
    exit_code: int | None = None
    reason: str | None = None
    log_stream_name: str | None = None


class ArrayPropertiesDetail(Shape):
    status_summary: dict[str, int] | None = None
    status_summary_last_updated_at: int | None = None
    size: int | None = None
    index: int | None = None


class JobDetail(Shape):
    job_name: str
    job_id: str
    job_queue: str
    status: str
    job_definition: str
    job_arn: str | None = None
    attempts: list[AttemptDetail] = msgspec.field(default_factory=list)
    status_reason: str | None = None
    created_at: int | None = None
    retry_strategy: RetryStrategy | None = None
    started_at: int | None = None
    stopped_at: int | None = None
    depends_on: list[JobDependency] = msgspec.field(default_factory=list)
    parameters: dict[str, str] = msgspec.field(default_factory=dict)
    container: ContainerDetail | None = None
    array_properties: ArrayPropertiesDetail | None = None
    timeout: JobTimeout | None = None
    tags: dict[str, str] | None = None
    propagate_tags: bool | None = None
    is_cancelled: bool = False
    is_terminated: bool = False


class ContainerSummary(Shape):
    exit_code: int | None = None
    reason: str | None = None


class ArrayPropertiesSummary(Shape):
    size: int | None = None
    index: int | None = None


class JobSummary(Shape):
    job_id: str
    job_name: str
    job_arn: str | None = None
    created_at: int | None = None
    status: str | None = None
    status_reason: str | None = None
    started_at: int | None = None
    stopped_at: int | None = None
    container: ContainerSummary | None = None
    array_properties: ArrayPropertiesSummary | None = None
    job_definition: str | None = None
    is_cancelled: bool = False
    is_terminated: bool = False


# -- what the store hands the runner (warmstart's own, snake_case) ------------------------------


class JobSpec(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The part of a job fixed at submit, stored once per job (array children share their
    parent's): what DescribeJobs shows and what a claim needs to run an attempt."""

    parameters: dict[str, str] = msgspec.field(default_factory=dict)
    retry_strategy: RetryStrategy | None = None
    timeout: JobTimeout | None = None
    depends_on: list[JobDependency] = msgspec.field(default_factory=list)
    container: ContainerDetail | None = None
    tags: dict[str, str] | None = None
    propagate_tags: bool | None = None
    function: str | None = None
    gpus: int = 0


class Claim(msgspec.Struct, kw_only=True, frozen=True):
    """One attempt of one job, handed to the runner on ``node`` by ``Store.claim``.

    ``environment`` already holds Batch's variables (``AWS_BATCH_JOB_ID``,
    ``AWS_BATCH_JOB_ATTEMPT`` = ``attempt``, ``AWS_BATCH_JOB_ARRAY_INDEX`` for array children,
    ``AWS_BATCH_JQ_NAME``, ``AWS_BATCH_CE_NAME``).
    """

    job_id: str
    job_name: str
    attempt: int
    node: str
    job_queue: str
    job_definition: str
    array_index: int | None
    image: str | None
    command: list[str]
    environment: dict[str, str]
    vcpus: float
    memory_mib: int
    gpus: int
    timeout_s: int | None
    function: str | None
    payload: bytes | None
    log_stream_name: str


class KillOrder(msgspec.Struct, kw_only=True, frozen=True):
    """A running attempt the runner on ``node`` must stop, and why."""

    job_id: str
    node: str
    attempt: int
    reason: str


class Finish(msgspec.Struct, kw_only=True, frozen=True):
    """What ``Store.finished`` did: the job's status now, and whether the report counted
    (False for a late report of an attempt the store already closed, e.g. after recover)."""

    job_id: str
    status: str
    applied: bool


class Recovery(msgspec.Struct, kw_only=True, frozen=True):
    """What ``Store.recover`` found of a dead runner's work."""

    requeued: list[str]
    failed: list[str]


# -- parsing and validation -------------------------------------------------------------------

T = TypeVar("T")


def parse(shape: type[T], data: Any) -> T:
    """Decode API data (a dict of camelCase keys) into ``shape``; a type error is a
    ClientException naming the field."""
    try:
        return msgspec.convert(data, shape)
    except msgspec.ValidationError as exc:
        raise ClientException(str(exc)) from None


def check_name(what: str, name: object) -> str:
    """Definition and queue names: up to 128 letters, numbers, hyphens and underscores."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ClientException(
            f"{what} {name!r} is invalid: it can be up to 128 letters (uppercase and "
            "lowercase), numbers, hyphens and underscores"
        )
    return name


def check_job_name(name: object) -> str:
    if not isinstance(name, str) or not _JOB_NAME_RE.fullmatch(name):
        raise ClientException(
            f"jobName {name!r} is invalid: it can be up to 128 letters (uppercase and "
            "lowercase), numbers, hyphens and underscores, and must start with a letter or number"
        )
    return name


def _check_glob(field: str, pattern: str | None, alphabet: re.Pattern[str]) -> None:
    if pattern is None:
        return
    if len(pattern) > MAX_PATTERN:
        raise ClientException(f"{field} can be up to {MAX_PATTERN} characters")
    if not alphabet.fullmatch(pattern):
        allowed = (
            "only numbers"
            if alphabet is _EXIT_GLOB_RE
            else "only letters, numbers, periods, colons and white space"
        )
        raise ClientException(f"{field} {pattern!r} may contain {allowed}, and end with '*'")


def check_retry_strategy(strategy: RetryStrategy | None) -> RetryStrategy | None:
    """Validated, with actions upper-cased (Batch reads them case-insensitively)."""
    if strategy is None:
        return None
    rules = strategy.evaluate_on_exit
    if rules is not None and strategy.attempts is None:
        raise ClientException("retryStrategy.attempts is required with evaluateOnExit")
    attempts = strategy.attempts
    if attempts is not None and not 1 <= attempts <= MAX_ATTEMPTS:
        raise ClientException(
            f"retryStrategy.attempts {attempts} must be between 1 and {MAX_ATTEMPTS}"
        )
    if rules is None:
        return strategy
    if len(rules) > MAX_EXIT_RULES:
        raise ClientException(f"retryStrategy.evaluateOnExit can hold up to {MAX_EXIT_RULES} rules")
    return RetryStrategy(attempts=attempts, evaluate_on_exit=[_check_rule(r) for r in rules])


def _check_rule(rule: EvaluateOnExit) -> EvaluateOnExit:
    action = rule.action.upper()
    if action not in (RETRY, EXIT):
        raise ClientException(f"evaluateOnExit.action {rule.action!r} must be RETRY or EXIT")
    _check_glob("evaluateOnExit.onStatusReason", rule.on_status_reason, _REASON_GLOB_RE)
    _check_glob("evaluateOnExit.onReason", rule.on_reason, _REASON_GLOB_RE)
    _check_glob("evaluateOnExit.onExitCode", rule.on_exit_code, _EXIT_GLOB_RE)
    return msgspec.structs.replace(rule, action=action)


def check_timeout(timeout: JobTimeout | None) -> None:
    seconds = None if timeout is None else timeout.attempt_duration_seconds
    if seconds is not None and seconds < MIN_TIMEOUT_S:
        raise ClientException(
            f"timeout.attemptDurationSeconds {seconds} is below the minimum of {MIN_TIMEOUT_S}"
        )


def check_tags(tags: dict[str, str] | None) -> None:
    if not tags:
        return
    if len(tags) > MAX_TAGS:
        raise ClientException(f"tags: at most {MAX_TAGS} tags are allowed")
    for key, value in tags.items():
        if not 1 <= len(key) <= 128 or len(value) > 256:
            raise ClientException(
                f"tags: key {key!r} must be 1-128 characters and its value up to 256"
            )
        if key.lower().startswith("aws:"):
            raise ClientException(f"tags: the prefix 'aws:' is reserved ({key!r})")


def check_environment(environment: list[KeyValuePair] | None) -> None:
    for pair in environment or ():
        if not pair.name:
            raise ClientException("environment: every variable needs a name")
        if pair.name.startswith("AWS_BATCH"):
            raise ClientException(
                f"environment: {pair.name!r}: names starting with AWS_BATCH are reserved"
            )


def check_resources(
    requirements: list[ResourceRequirement] | None, vcpus: int | None, memory: int | None
) -> None:
    if vcpus is not None and vcpus < 1:
        raise ClientException(f"vcpus {vcpus} must be at least 1")
    if memory is not None and memory < MIN_MEMORY_MIB:
        raise ClientException(f"memory {memory} must be at least {MIN_MEMORY_MIB} MiB")
    seen: set[str] = set()
    for req in requirements or ():
        if req.type not in ("VCPU", "MEMORY", "GPU"):
            raise ClientException(f"resourceRequirements: unknown type {req.type!r}")
        if req.type in seen:
            raise ClientException(f"resourceRequirements: {req.type} is given twice")
        seen.add(req.type)
        _check_requirement(req)


def _check_requirement(req: ResourceRequirement) -> None:
    value = req.value
    if not _NUMBER_RE.fullmatch(value) or (req.type != "VCPU" and "." in value):
        raise ClientException(f"resourceRequirements: {req.type} value {value!r} is not a number")
    number = float(value)
    if req.type == "VCPU" and number <= 0:
        raise ClientException("resourceRequirements: VCPU must be greater than 0")
    if req.type == "MEMORY" and number < MIN_MEMORY_MIB:
        raise ClientException(f"resourceRequirements: MEMORY must be at least {MIN_MEMORY_MIB} MiB")


def check_parameters(parameters: dict[str, str] | None, *, at_submit: bool) -> None:
    for key in parameters or ():
        if not key:
            raise ClientException("parameters: names cannot be empty")
        if at_submit and key == FUNCTION_PARAMETER:
            raise ClientException(
                f"parameters: {FUNCTION_PARAMETER} is set by the job definition only"
            )


def check_register(req: RegisterJobDefinitionRequest) -> RegisterJobDefinitionRequest:
    """Validate a RegisterJobDefinition request; returns it normalized."""
    check_name("jobDefinitionName", req.job_definition_name)
    if req.type != "container":
        raise ClientException(
            f"type {req.type!r} is not supported: warmstart runs 'container' job definitions"
        )
    check_parameters(req.parameters, at_submit=False)
    function = (req.parameters or {}).get(FUNCTION_PARAMETER)
    props = req.container_properties
    if function is not None and props is not None:
        raise ClientException(
            f"a job definition runs either containerProperties or a {FUNCTION_PARAMETER} "
            "function, not both"
        )
    if function is None:
        _check_container(props)
    elif not _NAME_RE.fullmatch(function) or len(function) > 64:
        raise ClientException(f"{FUNCTION_PARAMETER} {function!r} is not a function name")
    check_timeout(req.timeout)
    check_tags(req.tags)
    strategy = check_retry_strategy(req.retry_strategy)
    return msgspec.structs.replace(req, retry_strategy=strategy)


def _check_container(props: ContainerProperties | None) -> None:
    if props is None:
        raise ClientException(
            f"containerProperties is required (or a {FUNCTION_PARAMETER} parameter)"
        )
    if not props.image:
        raise ClientException("containerProperties.image is required")
    check_environment(props.environment)
    check_resources(props.resource_requirements, props.vcpus, props.memory)


def check_queue(req: CreateJobQueueRequest) -> None:
    check_name("jobQueueName", req.job_queue_name)
    check_state(req.state)
    if req.priority < 0:
        raise ClientException(f"priority {req.priority} must be 0 or more")
    check_tags(req.tags)


def check_state(state: str | None) -> None:
    if state is not None and state not in (ENABLED, DISABLED):
        raise ClientException(f"state {state!r} must be ENABLED or DISABLED")


def check_submit(req: SubmitJobRequest) -> SubmitJobRequest:
    """Validate the parts of a SubmitJob request that need nothing from the store."""
    check_job_name(req.job_name)
    size = None if req.array_properties is None else req.array_properties.size
    if size is not None and not MIN_ARRAY_SIZE <= size <= MAX_ARRAY_SIZE:
        raise ClientException(
            f"arrayProperties.size {size} must be between {MIN_ARRAY_SIZE} and {MAX_ARRAY_SIZE}"
        )
    _check_depends_on(req.depends_on, is_array=size is not None)
    check_parameters(req.parameters, at_submit=True)
    overrides = req.container_overrides
    if overrides is not None:
        check_environment(overrides.environment)
        check_resources(overrides.resource_requirements, overrides.vcpus, overrides.memory)
    check_timeout(req.timeout)
    check_tags(req.tags)
    return msgspec.structs.replace(req, retry_strategy=check_retry_strategy(req.retry_strategy))


def _check_depends_on(depends_on: list[JobDependency] | None, *, is_array: bool) -> None:
    if not depends_on:
        return
    if len(depends_on) > MAX_DEPENDENCIES:
        raise ClientException(f"dependsOn: a job can depend on at most {MAX_DEPENDENCIES} jobs")
    for dep in depends_on:
        if dep.type is not None and dep.type not in (N_TO_N, SEQUENTIAL):
            raise ClientException(f"dependsOn.type {dep.type!r} must be N_TO_N or SEQUENTIAL")
        if dep.job_id is None and not (dep.type == SEQUENTIAL and is_array):
            raise ClientException(
                "dependsOn: a jobId is required, except for a SEQUENTIAL dependency of an array job"
            )
        if dep.type == N_TO_N and not is_array:
            raise ClientException("dependsOn: an N_TO_N dependency needs an array job")


def job_definition_arn(region: str, account: str, name: str, revision: int) -> str:
    return f"arn:aws:batch:{region}:{account}:job-definition/{name}:{revision}"


def job_queue_arn(region: str, account: str, name: str) -> str:
    return f"arn:aws:batch:{region}:{account}:job-queue/{name}"


def job_arn(region: str, account: str, job_id: str) -> str:
    return f"arn:aws:batch:{region}:{account}:job/{job_id}"
