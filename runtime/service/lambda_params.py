"""The Lambda API's request members, checked and turned into warmstart's values.

Each function takes the decoded JSON (or a header, or a query parameter) of one operation and
returns what the engine needs, or raises the error Lambda raises, worded with the API's member
names (``MemorySize: ...``, not ``memory_mb: ...``).  Code helpers unpack ``Code.ZipFile`` and
``S3Bucket = "local"`` code; they block, and run in a thread.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import orjson
from aiohttp import web

from ..arns import parse_function_arn
from ..asyncinvoke.model import DestinationConfig, EventInvokeConfig
from ..code import prepare_code
from ..config import CUSTOM_RUNTIMES, NODE_RUNTIMES, FunctionConfig, ImageConfig, PoolConfig
from ..errors import InvalidParameterValueException, InvalidRequestContentException
from ..pagination import decode_token, encode_token
from .shapes import (
    DEFAULT_ROLE,
    CodeInfo,
    FunctionRecord,
    PreconditionFailedException,
    default_runtime,
    host_architecture,
)

CLIENT_CONTEXT_LIMIT = 3583
#: the Lambda runtime identifiers this service takes (botocore's Runtime enum also names
#: python2.7 to python3.8, which Lambda no longer takes for new functions, and python3.15)
SUPPORTED_RUNTIMES = (
    tuple(f"python3.{minor}" for minor in range(9, 15))
    + tuple(sorted(NODE_RUNTIMES))
    + tuple(sorted(CUSTOM_RUNTIMES))
)
#: the API runtimes the engine runs itself, not on the service's Python interpreter
_ENGINE_RUNTIMES = CUSTOM_RUNTIMES | NODE_RUNTIMES
#: FunctionConfig fields as the Lambda API names them, for error messages
_API_NAMES = {
    "name": "FunctionName",
    "handler": "Handler",
    "memory_mb": "MemorySize",
    "timeout_s": "Timeout",
    "environment": "Environment.Variables",
    "ephemeral_storage_mb": "EphemeralStorage.Size",
    "reserved_concurrency": "ReservedConcurrentExecutions",
    "provisioned_concurrency": "ProvisionedConcurrentExecutions",
}
_UNSUPPORTED = ("Layers", "FileSystemConfigs")
IMAGE_NO_HANDLER = (
    "Please don't provide Handler or Runtime or Layer when the intended function PackageType "
    "is Image."
)


def json_object(body: bytes) -> dict[str, Any]:
    """A request body that must be a JSON object (an empty body is ``{}``)."""
    if not body:
        return {}
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequestContentException(
            f"Could not parse request body into json: {exc}"
        ) from None
    if not isinstance(doc, dict):
        raise InvalidRequestContentException("The request body must be a JSON object")
    return doc


def client_context(header: str) -> dict[str, Any]:
    """``X-Amz-Client-Context``: base64 of a JSON object, at most 3583 bytes."""
    if len(header) > CLIENT_CONTEXT_LIMIT:
        raise InvalidRequestContentException(
            f"Client context must be at most {CLIENT_CONTEXT_LIMIT} bytes"
        )
    try:
        doc = orjson.loads(base64.b64decode(header, validate=True))
    except (binascii.Error, ValueError):
        doc = None
    if not isinstance(doc, dict):
        raise InvalidRequestContentException(
            "Client context must be a valid Base64-encoded JSON object."
        )
    return doc


def decode_zip(value: Any) -> bytes:
    if not isinstance(value, str):
        raise InvalidParameterValueException("Code.ZipFile: base64-encoded zip bytes are required")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error:
        raise InvalidParameterValueException("Code.ZipFile: not valid base64") from None


def check_runtime(value: Any) -> str:
    """One of :data:`SUPPORTED_RUNTIMES` (kept as given, though every function runs on the
    service's interpreter); None means this interpreter's.

    Anything else is an InvalidParameterValueException naming the supported values, also a
    value Lambda does not know at all (which Lambda answers with a ValidationException)."""
    if value is None:
        return default_runtime()
    if not isinstance(value, str) or value not in SUPPORTED_RUNTIMES:
        raise InvalidParameterValueException(
            f"The runtime parameter of {value} is not supported by this service; supported: "
            + ", ".join(SUPPORTED_RUNTIMES)
        )
    return value


def engine_runtime(runtime: str, current: str | None = None) -> dict[str, Any]:
    """The FunctionConfig change an API ``Runtime`` makes: a custom runtime (``provided.*``) or
    a Node.js one (``nodejs20.x``) is the engine's to run; a Python one runs on the service's
    interpreter (or the configured one, which it leaves alone)."""
    if runtime in _ENGINE_RUNTIMES:
        return {} if runtime == current else {"runtime": runtime}
    return {"runtime": None} if current in _ENGINE_RUNTIMES else {}


def check_unsupported(doc: dict[str, Any]) -> None:
    for key in _UNSUPPORTED:
        if doc.get(key):
            raise InvalidParameterValueException(f"{key}: not supported by warmstart")
    arches = doc.get("Architectures")
    if arches is not None and arches != [host_architecture()]:
        raise InvalidParameterValueException(
            f"Architectures: this machine runs {host_architecture()} only"
        )


def check_revision(doc: dict[str, Any], record: FunctionRecord) -> None:
    wanted = doc.get("RevisionId")
    if wanted is not None and wanted != record.revision_id:
        raise PreconditionFailedException(
            "The Revision Id provided does not match the latest Revision Id. "
            "Call the GetFunction/GetAlias API to retrieve the latest Revision Id"
        )


def config_changes(doc: dict[str, Any]) -> dict[str, Any]:
    """FunctionConfig fields from CreateFunction / UpdateFunctionConfiguration members."""
    changes: dict[str, Any] = {}
    for member, field in (
        ("Handler", "handler"),
        ("Timeout", "timeout_s"),
        ("MemorySize", "memory_mb"),
    ):
        if member in doc:
            changes[field] = doc[member]
    if "Timeout" in doc and (
        isinstance(doc["Timeout"], bool) or not isinstance(doc["Timeout"], int)
    ):
        raise InvalidParameterValueException(
            f"Timeout: expected an integer, got {doc['Timeout']!r}"
        )
    if "Description" in doc:
        description = doc["Description"]
        if not isinstance(description, str) or len(description) > 256:
            raise InvalidParameterValueException("Description: a string of at most 256 characters")
        changes["description"] = description
    if "Environment" in doc:
        changes["environment"] = _variables(doc["Environment"])
    if "EphemeralStorage" in doc:
        storage = doc["EphemeralStorage"]
        if not isinstance(storage, dict) or "Size" not in storage:
            raise InvalidParameterValueException("EphemeralStorage: {'Size': MB} is required")
        changes["ephemeral_storage_mb"] = storage["Size"]
    return changes


def image_config(value: Any) -> ImageConfig | None:
    """``ImageConfig`` (EntryPoint, Command, WorkingDirectory) as the engine's; an empty one
    (``{}``) clears the overrides."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidParameterValueException("ImageConfig: expected a structure")
    fields = {
        "EntryPoint": "entry_point",
        "Command": "command",
        "WorkingDirectory": "working_directory",
    }
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise InvalidParameterValueException(f"ImageConfig: unknown members {', '.join(unknown)}")
    for member in ("EntryPoint", "Command"):
        parts = value.get(member)
        if parts is not None and (
            not isinstance(parts, list) or not all(isinstance(p, str) for p in parts)
        ):
            raise InvalidParameterValueException(f"ImageConfig.{member}: a list of strings")
    if not value:
        return None
    try:
        return ImageConfig(**{fields[k]: v for k, v in value.items()})
    except InvalidParameterValueException as exc:  # worded with the API's member names
        message = str(exc)
        for member, field in fields.items():
            message = message.replace(f"image_config.{field}", f"ImageConfig.{member}")
        raise InvalidParameterValueException(message) from None


def image_uri(code: Any) -> str:
    """``Code.ImageUri``: a local image's reference (no registry is reachable)."""
    uri = code.get("ImageUri") if isinstance(code, dict) else None
    if not isinstance(uri, str) or not uri or len(uri) > 1000:
        raise InvalidParameterValueException(
            "Please provide ImageUri when the intended function PackageType is Image."
        )
    return uri


def description(doc: dict[str, Any]) -> str:
    """``Description`` (absent: empty), at most 256 characters."""
    value = doc.get("Description", "")
    if not isinstance(value, str) or len(value) > 256:
        raise InvalidParameterValueException("Description: a string of at most 256 characters")
    return value


def routing_weights(doc: dict[str, Any]) -> dict[str, float]:
    """``RoutingConfig.AdditionalVersionWeights`` (absent: no routing); the versions and
    weights are checked against the function's versions by ``runtime.versions``."""
    routing = doc.get("RoutingConfig")
    if routing is None:
        return {}
    weights = routing.get("AdditionalVersionWeights") if isinstance(routing, dict) else None
    if weights is None and isinstance(routing, dict):
        return {}
    if not isinstance(weights, dict):
        raise InvalidParameterValueException(
            "RoutingConfig: expected {'AdditionalVersionWeights': {version: weight}}"
        )
    return weights


def _variables(environment: Any) -> dict[str, str]:
    if not isinstance(environment, dict):
        raise InvalidParameterValueException("Environment: expected {'Variables': {...}}")
    variables = environment.get("Variables") or {}
    if not isinstance(variables, dict):
        raise InvalidParameterValueException("Environment.Variables: expected a map of strings")
    return variables


def role(value: Any) -> str:
    return value if isinstance(value, str) and value else DEFAULT_ROLE


def api_worded(build: Callable[[], FunctionConfig]) -> FunctionConfig:
    """Run ``build``; a field named in an error becomes its Lambda API member name."""
    try:
        return build()
    except InvalidParameterValueException as exc:
        raise _reworded(exc) from None


async def api_worded_async(work: Awaitable[Any]) -> Any:
    try:
        return await work
    except InvalidParameterValueException as exc:
        raise _reworded(exc) from None


def _reworded(exc: InvalidParameterValueException) -> InvalidParameterValueException:
    field, sep, rest = exc.message.partition(": ")
    if sep and field in _API_NAMES:
        return InvalidParameterValueException(f"{_API_NAMES[field]}: {rest}")
    return exc


def query_int(request: web.Request, key: str, default: int, low: int, high: int) -> int:
    text = request.query.get(key)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise InvalidParameterValueException(f"{key}: {text!r} is outside the range {low}-{high}")
    return value


def encode_marker(name: str) -> str:
    return encode_token(name)


def decode_marker(marker: str | None) -> str:
    """The name after which a page starts ("" for the first page)."""
    if not marker:
        return ""
    name = decode_token(marker)
    if name is None:
        raise InvalidParameterValueException(
            f"Marker: {marker!r} is not a marker this service gave"
        )
    return name


def unpack_upload(value: Any, root: str) -> tuple[str, CodeInfo, bytes]:
    """``Code.ZipFile`` (base64) unpacked into a fresh directory under ``root``; the zip's
    bytes too (kept for the other nodes of a cluster)."""
    data = decode_zip(value)
    code_dir = prepare_code(data, root)
    return code_dir, CodeInfo.of_zip(data, code_dir), data


def local_code(path: str, root: str) -> tuple[str, CodeInfo, bytes | None]:
    """``S3Bucket = "local"``: a directory used in place, or a .zip unpacked under ``root``
    (with its bytes, as for an upload)."""
    if os.path.isdir(path):
        code_dir = os.path.realpath(path)
        return code_dir, CodeInfo.of_directory(code_dir), None
    if not os.path.isfile(path):
        raise InvalidParameterValueException(f"Code.S3Key: {path} is not a directory or a file")
    data = _read_file(path)
    code_dir = prepare_code(data, root)
    return code_dir, CodeInfo.of_zip(data, code_dir), data


def code_info(code: str) -> CodeInfo:
    """CodeSha256 and CodeSize of a function registered from a directory or a .zip path."""
    if os.path.isdir(code):
        return CodeInfo.of_directory(code)
    try:
        return CodeInfo.of_zip(_read_file(code), code)
    except OSError:
        return CodeInfo("", 0, code)


def _read_file(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


# -- async invocation settings (Put/Get/Update/DeleteFunctionEventInvokeConfig) ------------------


def event_invoke_config(doc: dict[str, Any]) -> EventInvokeConfig:
    """The settings of a Put/UpdateFunctionEventInvokeConfig body (ranges are the store's)."""
    for member in ("MaximumRetryAttempts", "MaximumEventAgeInSeconds"):
        value = doc.get(member)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise InvalidParameterValueException(f"{member}: expected an integer, got {value!r}")
    destinations = doc.get("DestinationConfig")
    try:
        parsed = None if destinations is None else msgspec.convert(destinations, DestinationConfig)
    except msgspec.ValidationError as exc:
        raise InvalidParameterValueException(f"DestinationConfig: {exc}") from None
    return EventInvokeConfig(
        maximum_retry_attempts=doc.get("MaximumRetryAttempts"),
        maximum_event_age_in_seconds=doc.get("MaximumEventAgeInSeconds"),
        destination_config=parsed,
    )


def destinations_of(config: EventInvokeConfig) -> list[tuple[str, str]]:
    """(member, ARN) of each destination the config names."""
    found = []
    if config.destination_config is not None:
        for member, target in (
            ("DestinationConfig.OnSuccess.Destination", config.destination_config.on_success),
            ("DestinationConfig.OnFailure.Destination", config.destination_config.on_failure),
        ):
            if target is not None and target.destination is not None:
                found.append((member, target.destination))
    return found


def destination_function(arn: str, pool: PoolConfig) -> str | None:
    """The name of the function ``arn`` names in this service's region and account (with no
    qualifier or ``$LATEST``), else None."""
    parsed = parse_function_arn(arn)
    if parsed is None or not parsed.name or parsed.qualifier not in (None, "", "$LATEST"):
        return None
    if (parsed.partition, parsed.region, parsed.account) != ("aws", pool.region, pool.account_id):
        return None
    return parsed.name
