"""The Lambda API's JSON shapes, as botocore's service model (lambda 2015-03-31) reads them.

- ``function_configuration``: the ``FunctionConfiguration`` structure (GetFunctionConfiguration,
  CreateFunction, Update*, each entry of ListFunctions).
- ``CodeInfo`` / ``FunctionRecord``: what Lambda reports about a function that the engine does
  not keep (CodeSha256, CodeSize, LastModified, RevisionId, Runtime and Role as given).
- ``error_response``: an error as botocore's rest-json parser reads it: the code in the
  ``x-amzn-ErrorType`` header, ``{"Type": "User", "message": ...}`` in the body, the modeled
  status, so that boto3 raises ``client.exceptions.<Code>``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import platform
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from ..config import FunctionConfig
from ..errors import WarmstartError
from .protocol import AwsError

#: errors whose modeled message member is ``Message``; every other one uses ``message``
_CAPITAL_MESSAGE = frozenset(
    {"ResourceNotFoundException", "ServiceException", "InvalidZipFileException"}
)
DEFAULT_ROLE = "arn:aws:iam::000000000000:role/warmstart"
JSON = "application/json"


class PreconditionFailedException(WarmstartError):
    """A RevisionId did not match the function's current one."""

    code = "PreconditionFailedException"
    status = 412


class ProvisionedConcurrencyConfigNotFoundException(WarmstartError):
    code = "ProvisionedConcurrencyConfigNotFoundException"
    status = 404


def host_architecture() -> str:
    """Lambda's name for this machine's architecture."""
    return "arm64" if platform.machine().lower() in ("arm64", "aarch64") else "x86_64"


def default_runtime() -> str:
    """The Runtime reported for functions that did not name one: this interpreter's."""
    return f"python{sys.version_info.major}.{sys.version_info.minor}"


def timestamp(seconds: float | None = None) -> str:
    """Lambda's LastModified format: ``2024-05-01T12:00:00.000+0000``."""
    now = time.time() if seconds is None else seconds
    millis = int(now * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{millis:03d}+0000"


@dataclass(frozen=True)
class CodeInfo:
    """CodeSha256 (base64 SHA-256, as Lambda writes it), CodeSize and where the code lives."""

    sha256: str
    size: int
    location: str

    @classmethod
    def of_image(cls, image_id: str, uri: str) -> CodeInfo:
        """An image's: its digest (hex, as Lambda gives an image's) and no size of code."""
        return cls(image_id.removeprefix("sha256:"), 0, uri)

    @classmethod
    def of_zip(cls, data: bytes, location: str) -> CodeInfo:
        """Lambda's own figures: the hash and size of the uploaded zip."""
        digest = base64.b64encode(hashlib.sha256(data).digest()).decode()
        return cls(digest, len(data), location)

    @classmethod
    def of_directory(cls, root: str) -> CodeInfo:
        """A directory has no zip: hash every file's relative path and bytes, in sorted order."""
        digest = hashlib.sha256()
        size = 0
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            for name in sorted(filenames):
                path = os.path.join(dirpath, name)
                if not os.path.isfile(path):
                    continue
                digest.update(os.path.relpath(path, root).encode() + b"\0")
                with open(path, "rb") as f:
                    while chunk := f.read(1 << 20):
                        digest.update(chunk)
                        size += len(chunk)
        return cls(base64.b64encode(digest.digest()).decode(), size, root)


@dataclass
class FunctionRecord:
    """Lambda's bookkeeping for one function, beside the engine's ``FunctionConfig``."""

    code: CodeInfo
    runtime: str = field(default_factory=default_runtime)
    role: str = DEFAULT_ROLE
    last_modified: str = field(default_factory=timestamp)
    revision_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    #: ProvisionedConcurrentExecutions asked for through the API (None: no config)
    provisioned: int | None = None
    provisioned_modified: str = ""

    def touch(self) -> None:
        """A change: new LastModified and RevisionId."""
        self.last_modified = timestamp()
        self.revision_id = str(uuid.uuid4())


def function_configuration(
    config: FunctionConfig, record: FunctionRecord, arn: str
) -> dict[str, Any]:
    """The ``FunctionConfiguration`` structure of ``config`` ($LATEST, or a published version:
    ``config.version``)."""
    name = config.function_name
    shape: dict[str, Any] = {
        "FunctionName": name,
        "FunctionArn": arn,
        "Runtime": record.runtime,
        "Role": record.role,
        "Handler": config.handler,
        "CodeSize": record.code.size,
        "Description": config.description,
        "Timeout": int(config.timeout_s),
        "MemorySize": config.memory_mb,
        "LastModified": record.last_modified,
        "CodeSha256": record.code.sha256,
        "Version": config.version,
        "TracingConfig": {"Mode": "PassThrough"},
        "RevisionId": record.revision_id,
        "State": "Active",
        "LastUpdateStatus": "Successful",
        "PackageType": "Zip",
        "Architectures": [host_architecture()],
        "EphemeralStorage": {"Size": config.ephemeral_storage_mb},
        "SnapStart": {"ApplyOn": "None", "OptimizationStatus": "Off"},
        "LoggingConfig": {"LogFormat": "Text", "LogGroup": f"/aws/lambda/{name}"},
    }
    if config.environment:
        shape["Environment"] = {"Variables": dict(config.environment)}
    if config.image_package:  # the image is the runtime and the handler
        del shape["Runtime"], shape["Handler"]
        shape["PackageType"] = "Image"
        overrides = config.image_config
        if overrides is not None:
            members = {
                "EntryPoint": overrides.entry_point,
                "Command": overrides.command,
                "WorkingDirectory": overrides.working_directory,
            }
            shape["ImageConfigResponse"] = {
                "ImageConfig": {k: v for k, v in members.items() if v is not None}
            }
    return shape


def code_location(config: FunctionConfig, record: FunctionRecord) -> dict[str, Any]:
    """GetFunction's ``Code``: where the zip's code is on this machine, or the image."""
    if config.image_package:
        uri = config.image or ""
        digest = record.code.sha256
        resolved = f"{uri.partition('@')[0]}@sha256:{digest}" if digest else uri
        return {"RepositoryType": "ECR", "ImageUri": uri, "ResolvedImageUri": resolved}
    return {"RepositoryType": "Local", "Location": f"file://{record.code.location}"}


def error_body(code: str, message: str, status: int = 400, **extra: Any) -> bytes:
    """The JSON body of an error; ``extra`` adds modeled members (``Reason``)."""
    key = "Message" if code in _CAPITAL_MESSAGE else "message"
    kind = "Service" if status >= 500 else "User"
    return orjson.dumps({"Type": kind, key: message, **extra})


def error_response(error: AwsError) -> web.Response:
    """``error`` as Lambda answers it, so botocore raises the modeled exception."""
    extra: dict[str, Any] = {}
    reason = getattr(error, "reason", None)
    if isinstance(reason, str):
        extra["Reason"] = reason
    return web.Response(
        body=error_body(error.code, error.message, error.status, **extra),
        status=error.status,
        headers={"x-amzn-ErrorType": error.code, "Content-Type": JSON},
    )


def json_response(data: Any, status: int = 200) -> web.Response:
    """A JSON body (orjson), as every Lambda API operation answers."""
    return web.Response(body=orjson.dumps(data), status=status, headers={"Content-Type": JSON})
