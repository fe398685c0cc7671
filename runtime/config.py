"""Function and pool configuration, validated where it is made.

Range errors name the field and the allowed range, as Lambda's InvalidParameterValueException
does.  A ``timeout_s`` over 900 is accepted and marks a batch function (DESIGN.md section 5).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import PurePosixPath
from typing import Any, Literal

import msgspec

from .agent.protocol import MAX_LOG
from .arns import function_arn
from .errors import InvalidParameterValueException

LAMBDA_MAX_TIMEOUT_S = 900
NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: the engine's name of a published version: the function's, a dot, the version's number
VERSION_NAME_RE = re.compile(r"^([A-Za-z0-9_-]{1,64})\.([0-9]{1,10})$")
HANDLER_RE = re.compile(r"^[^\s]+$")
ENV_KEY_RE = re.compile(r"^[a-zA-Z]([a-zA-Z0-9_])+$")
ENV_MAX_BYTES = 4096
#: the oldest Python the agent runs on (Lambda's oldest python runtime)
MIN_PYTHON = (3, 9)
#: a command name on PATH: no spaces, no slashes, not starting with a dot or a dash
_COMMAND_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$")
_VERSION_PROBE = "import sys; print('%d.%d' % sys.version_info[:2])"
_PROBE_TIMEOUT_S = 10.0
#: (real path, mtime, size) of an interpreter -> its version, or why it is refused
_probed: dict[tuple[str, int, int], tuple[int, int] | str] = {}
#: Lambda's OS-only runtimes: the code's executable ``bootstrap`` is the runtime, served the
#: Lambda Runtime API by the agent (process backend)
CUSTOM_RUNTIMES = frozenset({"provided", "provided.al2", "provided.al2023"})
#: Lambda's Node.js runtimes: ``index.handler`` style handlers run by our Node.js runtime
#: client (``runtime/agent/nodejs/``) on the ``node`` found on PATH (or in the image)
NODE_RUNTIMES = frozenset(f"nodejs{major}.x" for major in (16, 18, 20, 22, 24))
#: keys Lambda sets itself and refuses to let a function override
RESERVED_ENV_KEYS = frozenset(
    {
        "_HANDLER",
        "_X_AMZN_TRACE_ID",
        "AWS_DEFAULT_REGION",
        "AWS_REGION",
        "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_INITIALIZATION_TYPE",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_LAMBDA_RUNTIME_API",
        "LAMBDA_TASK_ROOT",
        "LAMBDA_RUNTIME_DIR",
    }
)


def _range(
    field: str, value: Any, low: float, high: float | None = None, *, integer: bool = False
) -> None:
    types = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, types) or value != value:  # NaN != NaN
        expected = "an integer" if integer else "a number"
        raise InvalidParameterValueException(f"{field}: expected {expected}, got {value!r}")
    if value < low or (high is not None and value > high):
        allowed = f"{low}-{high}" if high is not None else f">= {low}"
        raise InvalidParameterValueException(
            f"{field}: {value} is outside the allowed range {allowed}"
        )


class ImageConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What overrides a container image's own settings (Lambda's ``ImageConfig``): each unset
    field keeps the image's ENTRYPOINT, CMD or WORKDIR."""

    entry_point: list[str] | None = None
    command: list[str] | None = None
    working_directory: str | None = None

    def __post_init__(self) -> None:
        for field in ("entry_point", "command"):
            value = getattr(self, field)
            if value is not None and (
                len(value) > 1500 or not all(isinstance(part, str) for part in value)
            ):
                raise InvalidParameterValueException(
                    f"image_config.{field}: a list of at most 1,500 strings"
                )
        directory = self.working_directory
        if directory is not None and (
            not isinstance(directory, str) or not directory.startswith("/") or len(directory) > 1000
        ):
            raise InvalidParameterValueException(
                f"image_config.working_directory: {directory!r} must be an absolute path "
                "(at most 1,000 characters)"
            )


class FunctionConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A function: its code, handler, limits and pool settings (DESIGN.md section 2)."""

    name: str
    #: the handler (``module.function``); a container image's runtime reads its own (unset)
    handler: str = ""
    #: a directory or a .zip file (none for a container image, whose code is in the image)
    code: str = ""
    #: "Zip": the code, run by its runtime; "Image": the container ``image`` is the function
    #: (its entrypoint is the runtime, served the Lambda Runtime API; container backend)
    package_type: Literal["Zip", "Image"] = "Zip"
    image_config: ImageConfig | None = None
    #: the Python interpreter: for the process backend a command on PATH or an absolute path,
    #: a Python 3.9+ (checked at registration; unset: the engine's own); for the container
    #: backend a command or absolute path inside the image (unset: python3); or one of
    #: CUSTOM_RUNTIMES, whose runtime is the code's executable ``bootstrap``; or one of
    #: NODE_RUNTIMES (``nodejs20.x``), run by the ``node`` on PATH
    runtime: str | None = None
    memory_mb: int = 128
    timeout_s: float = 3
    environment: dict[str, str] = msgspec.field(default_factory=dict)
    ephemeral_storage_mb: int = 512
    reserved_concurrency: int | None = None
    provisioned_concurrency: int = 0
    keepalive_s: float = 300.0
    max_uses: int | None = None
    backend: Literal["process", "container"] = "process"
    start: Literal["fork", "spawn"] = "fork"
    #: the container image of the container backend
    image: str | None = None
    #: the container backend's network: none unless the function asks for one
    network: bool = False
    #: resubmit an invocation that hit its timeout as a batch job, once
    spill_on_timeout: bool = False
    description: str = ""
    #: a published version's number, or "$LATEST" (the function itself); a version's ``name``
    #: is ``<function>.<version>`` and its environments say ``function_name`` and ``version``
    version: str = "$LATEST"

    def __post_init__(self) -> None:
        if not self._name_ok():
            raise InvalidParameterValueException(
                f"name: {self.name!r} must be 1-64 letters, digits, hyphens or underscores"
            )
        if self.package_type == "Image":
            self._check_image()
        else:
            self._check_zip()
        self.code = os.fspath(self.code)
        _range("memory_mb", self.memory_mb, 128, 10240, integer=True)
        _range("timeout_s", self.timeout_s, 1)
        _range("ephemeral_storage_mb", self.ephemeral_storage_mb, 512, 10240, integer=True)
        _range("keepalive_s", self.keepalive_s, 0)
        _range("provisioned_concurrency", self.provisioned_concurrency, 0, integer=True)
        if self.reserved_concurrency is not None:
            _range("reserved_concurrency", self.reserved_concurrency, 0, integer=True)
            if self.provisioned_concurrency > self.reserved_concurrency:
                raise InvalidParameterValueException(
                    f"provisioned_concurrency: {self.provisioned_concurrency} exceeds "
                    f"reserved_concurrency {self.reserved_concurrency}"
                )
        if self.max_uses is not None:
            _range("max_uses", self.max_uses, 1, integer=True)
        if self.backend not in ("process", "container"):
            raise InvalidParameterValueException(
                f"backend: {self.backend!r} must be 'process' or 'container'"
            )
        if self.start not in ("fork", "spawn"):
            raise InvalidParameterValueException(f"start: {self.start!r} must be 'fork' or 'spawn'")
        if self.backend == "container" and not self.image:
            raise InvalidParameterValueException("image: the container backend needs an image")
        self._check_runtime()
        self._check_environment()

    def _check_zip(self) -> None:
        if self.package_type != "Zip":
            raise InvalidParameterValueException(
                f"package_type: {self.package_type!r} must be 'Zip' or 'Image'"
            )
        if (
            not isinstance(self.handler, str)
            or not HANDLER_RE.fullmatch(self.handler)
            or len(self.handler) > 128
        ):
            raise InvalidParameterValueException(
                f"handler: {self.handler!r} must be 'module.function' "
                "(at most 128 characters, no spaces)"
            )
        if not isinstance(self.code, (str, os.PathLike)) or not str(self.code):
            raise InvalidParameterValueException("code: a directory or a .zip file is required")
        if self.image_config is not None:
            raise InvalidParameterValueException(
                "image_config: only a function of package_type 'Image' has one"
            )

    def _check_image(self) -> None:
        """A container image is the function: no code, no runtime, the container backend."""
        if self.backend != "container":
            raise InvalidParameterValueException(
                "package_type: an 'Image' function runs on the container backend "
                "(backend = 'container')"
            )
        if self.code:
            raise InvalidParameterValueException(
                "code: an 'Image' function's code is in its image; remove 'code'"
            )
        if self.runtime is not None:
            raise InvalidParameterValueException(
                "runtime: an 'Image' function's runtime is its image's entrypoint; remove 'runtime'"
            )
        if (
            not isinstance(self.handler, str)
            or len(self.handler) > 128
            or (self.handler and not HANDLER_RE.fullmatch(self.handler))
        ):
            raise InvalidParameterValueException(
                f"handler: {self.handler!r} must be empty or 'module.function'"
            )

    def _check_runtime(self) -> None:
        """The interpreter's spelling; whether it exists and is a Python is
        :func:`check_interpreter`'s question, asked at registration."""
        runtime = self.runtime
        if runtime is None:
            return
        if runtime in CUSTOM_RUNTIMES or runtime in NODE_RUNTIMES:
            return
        where = "on the image's PATH" if self.backend == "container" else "on PATH"
        if not isinstance(runtime, str) or not _plain_command_or_path(runtime):
            raise InvalidParameterValueException(
                f"runtime: {runtime!r} must be a Python interpreter: a command {where} such as "
                "'python3', or an absolute path to one (unset: "
                + ("'python3'" if self.backend == "container" else "this engine's own")
                + ")"
            )

    def _check_environment(self) -> None:
        if not isinstance(self.environment, dict):
            raise InvalidParameterValueException(
                "environment: expected a mapping of names to strings"
            )
        reserved = sorted(k for k in self.environment if k in RESERVED_ENV_KEYS)
        if reserved:
            raise InvalidParameterValueException(
                "environment: reserved keys cannot be set: " + ", ".join(reserved)
            )
        size = 0
        for key, value in self.environment.items():
            if not isinstance(key, str) or not ENV_KEY_RE.fullmatch(key):
                raise InvalidParameterValueException(
                    f"environment: {key!r} is not a valid name ([a-zA-Z][a-zA-Z0-9_]+)"
                )
            if not isinstance(value, str):
                raise InvalidParameterValueException(
                    f"environment: value of {key} must be a string"
                )
            size += len(key.encode()) + len(value.encode())
        if size > ENV_MAX_BYTES:
            raise InvalidParameterValueException(
                f"environment: {size} bytes exceeds the allowed total of {ENV_MAX_BYTES}"
            )

    def _name_ok(self) -> bool:
        name: object = self.name  # msgspec checks types only when converting
        if not isinstance(name, str):
            return False
        if self.version == "$LATEST":
            return NAME_RE.fullmatch(self.name) is not None
        match = VERSION_NAME_RE.fullmatch(self.name)
        return match is not None and match[2] == self.version

    @property
    def function_name(self) -> str:
        """The function's name: ``name`` without a published version's number."""
        return self.name if self.version == "$LATEST" else self.name.rpartition(".")[0]

    @property
    def custom_runtime(self) -> bool:
        """An OS-only runtime (``provided.*``): the code's ``bootstrap`` runs, not a handler."""
        return self.runtime in CUSTOM_RUNTIMES

    @property
    def node_runtime(self) -> bool:
        """A Node.js runtime (``nodejs20.x``): our runtime client runs the handler."""
        return self.runtime in NODE_RUNTIMES

    @property
    def image_package(self) -> bool:
        """A container image is the function: its entrypoint is the runtime."""
        return self.package_type == "Image"

    @property
    def runtime_api(self) -> bool:
        """Run by a foreign runtime the agent serves the Lambda Runtime API to (a custom
        runtime's ``bootstrap``, our Node.js client, an image's entrypoint), not by the
        agent's own Python loop."""
        return self.custom_runtime or self.node_runtime or self.image_package

    @property
    def is_batch(self) -> bool:
        """Longer than Lambda allows: invocations go to the batch queue."""
        return self.timeout_s > LAMBDA_MAX_TIMEOUT_S

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FunctionConfig:
        """Build from plain data (a config file, an API body); unknown keys are refused."""
        try:
            return msgspec.convert(data, cls)
        except msgspec.ValidationError as exc:
            raise InvalidParameterValueException(str(exc)) from None

    def replace(self, **changes: Any) -> FunctionConfig:
        """A validated copy with ``changes`` applied."""
        fields = msgspec.structs.asdict(self)
        fields["environment"] = dict(self.environment)  # the copy must not share the mapping
        return type(self)(**{**fields, **changes})


def _plain_command_or_path(value: str) -> bool:
    """A command name, or an absolute path without ``..``, whitespace or control characters."""
    if _COMMAND_RE.fullmatch(value):
        return True
    if not value.startswith("/") or any(c.isspace() or not c.isprintable() for c in value):
        return False
    return ".." not in PurePosixPath(value).parts and not value.endswith("/")


def check_interpreter(config: FunctionConfig) -> None:
    """Refuse a process-backend ``runtime`` that is not an executable Python 3.9 or later.

    Runs the interpreter once per path (the answer is kept while the file is unchanged), so
    it blocks: call it off the event loop.  A container's interpreter lives in its image and
    is not checked here.
    """
    if config.runtime is None or config.backend != "process" or config.runtime_api:
        return
    found = shutil.which(config.runtime)
    if found is None:
        raise InvalidParameterValueException(
            f"runtime: {config.runtime!r} is not an executable "
            + ("file" if "/" in config.runtime else "on PATH")
            + " (the process backend runs a Python 3.9+ interpreter: a command such as "
            "'python3', or a path to one; unset, this engine's own)"
        )
    real = os.path.realpath(found)
    try:
        info = os.stat(real)
    except OSError as exc:
        raise InvalidParameterValueException(f"runtime: {config.runtime!r}: {exc}") from None
    key = (real, info.st_mtime_ns, info.st_size)
    answer = _probed.get(key)
    if answer is None:
        answer = _probed[key] = _probe_version(found)
    if isinstance(answer, str) or answer < MIN_PYTHON:
        why = answer if isinstance(answer, str) else f"Python {answer[0]}.{answer[1]}"
        raise InvalidParameterValueException(
            f"runtime: {config.runtime!r} is not a Python 3.9+ interpreter ({why})"
        )


def _probe_version(python: str) -> tuple[int, int] | str:
    """The interpreter's (major, minor), or what went wrong asking it."""
    try:
        done = subprocess.run(
            [python, "-c", _VERSION_PROBE],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=_PROBE_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"it did not answer within {_PROBE_TIMEOUT_S:g} s"
    except OSError as exc:
        return str(exc)
    major, dot, minor = done.stdout.decode(errors="replace").strip().partition(".")
    if done.returncode != 0 or not dot or not (major.isdigit() and minor.isdigit()):
        return f"'{python} -c <print version>' exited {done.returncode} without a version"
    return int(major), int(minor)


class StemCellConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Started, generic containers kept ready for cold starts on one image (OpenWhisk's
    prewarm): a container function whose image, memory, storage, network and interpreter
    match takes one and only initializes its code."""

    image: str
    count: int = 1
    memory_mb: int = 128
    ephemeral_storage_mb: int = 512
    network: bool = False
    python: str = "python3"

    def __post_init__(self) -> None:
        if not isinstance(self.image, str) or not self.image:
            raise InvalidParameterValueException("stem_cells.image: an image is required")
        _range("stem_cells.count", self.count, 0, 64, integer=True)
        _range("stem_cells.memory_mb", self.memory_mb, 128, 10240, integer=True)
        _range(
            "stem_cells.ephemeral_storage_mb", self.ephemeral_storage_mb, 512, 10240, integer=True
        )


def _default_memory_budget_mb() -> int:
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return 0
    return int(pages * 0.8) // (1024 * 1024)


class PoolConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Engine-wide limits and policies."""

    #: Lambda's default account concurrency
    account_concurrency: int = 1000
    #: cold starts in flight at once
    cold_start_cap: int = 16
    #: sum of memory_mb of live environments; 0 for no budget
    memory_budget_mb: int = msgspec.field(default_factory=_default_memory_budget_mb)
    #: invocations that wait at a concurrency limit per function; 0 throttles at once (Lambda)
    max_queue: int = 0
    queue_timeout_s: float = 30.0
    #: where environments keep their /tmp and logs; a fresh temporary directory by default
    work_dir: str | None = None
    #: bytes of each invocation's output kept with its result (its end; at most MAX_LOG)
    log_cap_bytes: int = 1024 * 1024
    #: recent log bytes kept per function
    log_history_bytes: int = 256 * 1024
    region: str = "us-east-1"
    account_id: str = "000000000000"
    #: price per GB-second and per request, for the cost estimate (Lambda x86 list prices)
    price_gb_second: float = 0.0000166667
    price_per_request: float = 0.0000002
    #: mount the host paths a container image names in its ``warmstart.host-binds`` label
    #: (read-only); only for images you built yourself, such as the test image
    trust_image_binds: bool = False
    #: generic containers started ahead of demand, per image and size
    stem_cells: tuple[StemCellConfig, ...] = ()

    def __post_init__(self) -> None:
        _range("account_concurrency", self.account_concurrency, 1, integer=True)
        _range("cold_start_cap", self.cold_start_cap, 1, integer=True)
        _range("memory_budget_mb", self.memory_budget_mb, 0, integer=True)
        _range("max_queue", self.max_queue, 0, integer=True)
        _range("queue_timeout_s", self.queue_timeout_s, 0)
        # a RESULT frame carries a payload at Lambda's limit and this much log together
        _range("log_cap_bytes", self.log_cap_bytes, 4096, MAX_LOG, integer=True)
        _range("log_history_bytes", self.log_history_bytes, 0, integer=True)
        _range("price_gb_second", self.price_gb_second, 0)
        _range("price_per_request", self.price_per_request, 0)

    def function_arn(self, name: str) -> str:
        """``arn:aws:lambda:<region>:<account>:function:<name>``, in this pool's region and
        account."""
        return function_arn(self.region, self.account_id, name)


def _default_vcpus() -> float:
    return float(os.cpu_count() or 1)


def _default_batch_memory_mib() -> int:
    return _default_memory_budget_mb() or 4096


class BatchConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The embedded batch queue (``[batch]``): its SQLite file and its compute environment.

    The compute environment is AWS Batch's managed one in miniature: jobs run on capacity of
    their own (never the invocation pool's environments) between ``min_vcpus`` and
    ``max_vcpus`` and within ``memory_mib``; a job starts only when its vCPUs and memory fit
    what is free.  There is nothing to provision, so the desired capacity (what RUNNABLE jobs
    ask for, clamped to the range) is reported, and free capacity is ``max_vcpus`` minus what
    runs.
    """

    #: run the batch queue (and its runner) with the engine
    enabled: bool = True
    #: the directory of ``batch.sqlite3``; runtime.batch.store's default_data_dir() when unset
    data_dir: str | None = None
    min_vcpus: float = 0.0
    #: one vCPU per CPU of this machine by default
    max_vcpus: float = msgspec.field(default_factory=_default_vcpus)
    #: the memory jobs may reserve together; 80% of this machine's memory by default
    memory_mib: int = msgspec.field(default_factory=_default_batch_memory_mib)
    #: a stopped attempt (timeout, TerminateJob) gets SIGTERM, then SIGKILL this much later
    #: (ECS's default stopTimeout)
    kill_grace_s: float = 30.0
    #: multiplies every attemptDurationSeconds; tests use a small value, since Batch's own
    #: minimum is 60 s
    timeout_scale: float = 1.0

    def __post_init__(self) -> None:
        _range("min_vcpus", self.min_vcpus, 0)
        _range("max_vcpus", self.max_vcpus, 0.01)
        if self.min_vcpus > self.max_vcpus:
            raise InvalidParameterValueException(
                f"min_vcpus: {self.min_vcpus:g} exceeds max_vcpus {self.max_vcpus:g}"
            )
        _range("memory_mib", self.memory_mib, 4, integer=True)
        _range("kill_grace_s", self.kill_grace_s, 0)
        _range("timeout_scale", self.timeout_scale, 0.0001)
        if self.data_dir is not None and (not isinstance(self.data_dir, str) or not self.data_dir):
            raise InvalidParameterValueException("data_dir: expected a directory path")
