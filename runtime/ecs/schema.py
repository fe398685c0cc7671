"""The JSON structure of the members warmstart keeps without acting on them.

A task definition describes as it was registered, so members like ``volumes`` or
``logConfiguration`` are stored and returned.  A client reading them back (botocore) walks
every object, list and map its model declares, and fails on, say, a string where the model has
a list; scalars it takes as they come.  So what is kept must have the model's nesting, which
these tables give (from botocore's ``ecs`` 2014-11-13 model):

- a Python type (``str``, ``int``, ``bool``): a top-level scalar of that type;
- ``None``: a nested scalar, any JSON scalar;
- ``MAP``: an object of scalars;
- ``[schema]``: a list of that;
- ``{member: schema}``: an object whose listed members (when present) have that structure;
  members that cannot nest are not listed.
"""

from __future__ import annotations

from typing import Any

MAP = "map"
Schema = type | str | list[Any] | dict[str, Any] | None

_NAMED: dict[str, Any] = {}  # an object of scalars only: nothing to list

CONTAINER_KEPT: dict[str, Schema] = {
    "repositoryCredentials": _NAMED,
    "links": [None],
    "restartPolicy": {"ignoredExitCodes": [None]},
    "environmentFiles": [_NAMED],
    "mountPoints": [_NAMED],
    "volumesFrom": [_NAMED],
    "secrets": [_NAMED],
    "dependsOn": [_NAMED],
    "startTimeout": int,
    "versionConsistency": str,
    "hostname": str,
    "user": str,
    "workingDirectory": str,
    "disableNetworking": bool,
    "readonlyRootFilesystem": bool,
    "dnsServers": [None],
    "dnsSearchDomains": [None],
    "extraHosts": [_NAMED],
    "dockerSecurityOptions": [None],
    "interactive": bool,
    "pseudoTerminal": bool,
    "dockerLabels": MAP,
    "ulimits": [_NAMED],
    "logConfiguration": {"options": MAP, "secretOptions": [_NAMED]},
    "healthCheck": {"command": [None]},
    "systemControls": [_NAMED],
    "resourceRequirements": [{"sharingStrategy": {"nvidiaMps": _NAMED}}],
    "firelensConfiguration": {"options": MAP},
    "credentialSpecs": [None],
}

#: ``linuxParameters``, of which warmstart reads ``initProcessEnabled``
LINUX_PARAMETERS: Schema = {
    "capabilities": {"add": [None], "drop": [None]},
    "devices": [{"permissions": [None]}],
    "tmpfs": [{"mountOptions": [None]}],
}

_AUTHORIZED = {"authorizationConfig": _NAMED}
TASK_KEPT: dict[str, Schema] = {
    "taskRoleArn": str,
    "executionRoleArn": str,
    "volumes": [
        {
            "host": _NAMED,
            "dockerVolumeConfiguration": {"driverOpts": MAP, "labels": MAP},
            "efsVolumeConfiguration": _AUTHORIZED,
            "s3filesVolumeConfiguration": _NAMED,
            "fsxWindowsFileServerVolumeConfiguration": _AUTHORIZED,
        }
    ],
    "placementConstraints": [_NAMED],
    "pidMode": str,
    "ipcMode": str,
    "proxyConfiguration": {"properties": [_NAMED]},
    "inferenceAccelerators": [_NAMED],
    "ephemeralStorage": _NAMED,
    "runtimePlatform": _NAMED,
    "enableFaultInjection": bool,
}

TASK_OVERRIDE_KEPT: dict[str, Schema] = {
    "executionRoleArn": str,
    "taskRoleArn": str,
    "ephemeralStorage": _NAMED,
    "inferenceAcceleratorOverrides": [_NAMED],
}

CONTAINER_OVERRIDE_KEPT: dict[str, Schema] = {
    "environmentFiles": [_NAMED],
    "resourceRequirements": CONTAINER_KEPT["resourceRequirements"],
}


def conforms(value: Any, schema: Schema) -> bool:
    """Whether ``value`` has the structure ``schema`` describes (``null`` anywhere is fine)."""
    if value is None or schema is None:
        return True
    if isinstance(schema, type):
        return isinstance(value, schema) and not (schema is int and isinstance(value, bool))
    if isinstance(schema, str):  # MAP
        return isinstance(value, dict) and all(
            not isinstance(v, (dict, list)) for v in value.values()
        )
    if isinstance(schema, list):
        return isinstance(value, list) and all(conforms(item, schema[0]) for item in value)
    if not isinstance(value, dict):
        return False
    return all(conforms(value.get(member), inner) for member, inner in schema.items())


def kept(raw: dict[str, Any], table: dict[str, Schema]) -> tuple[dict[str, Any], str | None]:
    """The members of ``raw`` listed in ``table``, and the first one that does not conform."""
    found: dict[str, Any] = {}
    for field, schema in table.items():
        value = raw.get(field)
        if value is None:
            continue
        if not conforms(value, schema):
            return found, field
        found[field] = value
    return found, None
