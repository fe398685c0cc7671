"""ECS's ARNs and the references its operations accept (a name, ``family:revision``, an ARN).

    task definition  arn:aws:ecs:<region>:<account>:task-definition/<family>:<revision>
    cluster          arn:aws:ecs:<region>:<account>:cluster/<name>
    task             arn:aws:ecs:<region>:<account>:task/<cluster>/<id>
    container        arn:aws:ecs:<region>:<account>:container/<cluster>/<task id>/<uuid>

The region and account are the pool's (``PoolConfig.region``, ``PoolConfig.account_id``), as
in Lambda's function ARNs.  A reference by ARN is matched by its resource part only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_ARN_RE = re.compile(r"^arn:aws[a-zA-Z-]*:ecs:[a-z0-9-]*:\d*:(?P<kind>[a-z-]+)/(?P<rest>.+)$")
_REVISION_RE = re.compile(r"^(?P<family>[^:]+)(?::(?P<revision>[^:]*))?$")


@dataclass(frozen=True)
class Arns:
    """ARN builders for one region and account."""

    region: str
    account: str

    def _arn(self, resource: str) -> str:
        return f"arn:aws:ecs:{self.region}:{self.account}:{resource}"

    def task_definition(self, family: str, revision: int) -> str:
        return self._arn(f"task-definition/{family}:{revision}")

    def cluster(self, name: str) -> str:
        return self._arn(f"cluster/{name}")

    def task(self, cluster: str, task_id: str) -> str:
        return self._arn(f"task/{cluster}/{task_id}")

    def container(self, cluster: str, task_id: str, container_id: str) -> str:
        return self._arn(f"container/{cluster}/{task_id}/{container_id}")


def _resource(ref: str, kind: str) -> str | None:
    """The part after ``<kind>/`` of an ECS ARN of that kind; None for a plain name."""
    match = _ARN_RE.fullmatch(ref)
    if match is None:
        return None
    return match["rest"] if match["kind"] == kind else ""


def task_definition_ref(ref: str) -> tuple[str, int | None] | None:
    """``(family, revision)`` of ``family``, ``family:revision`` or an ARN; None when malformed.

    A revision is None when only the family was named (the latest ACTIVE one is meant).
    """
    resource = _resource(ref, "task-definition")
    if resource == "":
        return None
    match = _REVISION_RE.fullmatch(ref if resource is None else resource)
    if match is None or not NAME_RE.fullmatch(match["family"]):
        return None
    revision = match["revision"]
    if revision is None:
        return (match["family"], None) if resource is None else None  # an ARN names a revision
    if not revision.isdigit() or int(revision) < 1:
        return None
    return match["family"], int(revision)


def cluster_name(ref: str) -> str:
    """The name of a cluster given by name or ARN (a malformed one names no cluster)."""
    resource = _resource(ref, "cluster")
    return ref if resource is None else resource


def task_id(ref: str) -> str:
    """The id of a task given by id or ARN (``task/<cluster>/<id>`` or the older ``task/<id>``)."""
    resource = _resource(ref, "task")
    if resource is None:
        return ref
    return resource.rsplit("/", 1)[-1]
