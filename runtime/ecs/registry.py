"""Registered task definitions: families, their revisions, ACTIVE and INACTIVE.

Revisions count from 1 per family and are never reused, deregistered ones included.  A family
named alone means its latest ACTIVE revision; ``family:revision`` and an ARN mean that revision
whatever its status, so a deregistered (INACTIVE) revision can still be described, as on ECS,
but not run.  Time is passed in: the registry reads no clock.
"""

from __future__ import annotations

import copy
from typing import Any

from .errors import ClientException, InvalidParameterException
from .listing import page
from .naming import Arns, task_definition_ref
from .taskdef import tags as check_tags
from .taskdef import task_definition

ACTIVE = "ACTIVE"
INACTIVE = "INACTIVE"
_STATUSES = (ACTIVE, INACTIVE)


class TaskDefinitions:
    """The task definition registry of one account and region."""

    def __init__(self, arns: Arns) -> None:
        self.arns = arns
        self._families: dict[str, list[dict[str, Any]]] = {}
        self._tags: dict[str, list[Any]] = {}

    def __len__(self) -> int:
        return sum(len(revisions) for revisions in self._families.values())

    def register(self, request: Any, now: float) -> dict[str, Any]:
        """RegisterTaskDefinition: a new ACTIVE revision of the request's family."""
        shape = task_definition(request)
        tags = check_tags(request.get("tags"))
        revisions = self._families.setdefault(shape["family"], [])
        revision = len(revisions) + 1
        arn = self.arns.task_definition(shape["family"], revision)
        shape = {"taskDefinitionArn": arn, **shape, "revision": revision, "status": ACTIVE}
        shape["registeredAt"] = now
        shape["registeredBy"] = f"arn:aws:iam::{self.arns.account}:root"
        revisions.append(shape)
        self._tags[arn] = tags
        return {"taskDefinition": copy.deepcopy(shape), "tags": copy.deepcopy(tags)}

    def describe(self, ref: Any, include: Any = None) -> dict[str, Any]:
        """DescribeTaskDefinition; ``include=["TAGS"]`` adds the definition's tags."""
        shape = self._find(ref)
        if shape is None:
            raise ClientException("Unable to describe task definition.")
        answer: dict[str, Any] = {"taskDefinition": copy.deepcopy(shape)}
        if isinstance(include, list) and "TAGS" in include:
            answer["tags"] = copy.deepcopy(self._tags.get(shape["taskDefinitionArn"], []))
        return answer

    def runnable(self, ref: Any) -> dict[str, Any]:
        """The definition RunTask means by ``ref``: it must exist and be ACTIVE."""
        shape = self._find(ref)
        if shape is None:
            raise ClientException("TaskDefinition not found.")
        if shape["status"] != ACTIVE:
            raise ClientException("TaskDefinition is inactive")
        return shape

    def deregister(self, ref: Any, now: float) -> dict[str, Any]:
        """DeregisterTaskDefinition: the revision (it must be named) becomes INACTIVE."""
        parsed = task_definition_ref(ref) if isinstance(ref, str) else None
        if parsed is not None and parsed[1] is None:
            raise ClientException(
                "Invalid revision number. A task definition must be named as family:revision "
                "or by its ARN."
            )
        shape = self._find(ref)
        if shape is None:
            raise ClientException("The specified task definition does not exist.")
        if shape["status"] == ACTIVE:
            shape["status"] = INACTIVE
            shape["deregisteredAt"] = now
        return {"taskDefinition": copy.deepcopy(shape)}

    def list_arns(self, request: dict[str, Any]) -> dict[str, Any]:
        """ListTaskDefinitions: ARNs by family then revision (``sort`` ASC or DESC)."""
        status = _status(request.get("status", ACTIVE), _STATUSES)
        prefix = request.get("familyPrefix") or ""
        if not isinstance(prefix, str):
            raise InvalidParameterException("familyPrefix must be a string.")
        order = request.get("sort", "ASC")
        if order not in ("ASC", "DESC"):
            raise InvalidParameterException("sort must be ASC or DESC.")
        arns = [
            shape["taskDefinitionArn"]
            for family in sorted(self._families)
            if family.startswith(prefix)
            for shape in self._families[family]
            if shape["status"] == status
        ]
        if order == "DESC":
            arns.reverse()
        items, token = page(arns, request.get("nextToken"), request.get("maxResults"))
        return _paged("taskDefinitionArns", items, token)

    def list_families(self, request: dict[str, Any]) -> dict[str, Any]:
        """ListTaskDefinitionFamilies: ACTIVE families have an ACTIVE revision, INACTIVE none."""
        status = _status(request.get("status", ACTIVE), (*_STATUSES, "ALL"))
        prefix = request.get("familyPrefix") or ""
        if not isinstance(prefix, str):
            raise InvalidParameterException("familyPrefix must be a string.")
        found = []
        for family in sorted(self._families):
            active = any(s["status"] == ACTIVE for s in self._families[family])
            wanted = status == "ALL" or active == (status == ACTIVE)
            if family.startswith(prefix) and wanted:
                found.append(family)
        items, token = page(found, request.get("nextToken"), request.get("maxResults"))
        return _paged("families", items, token)

    def _find(self, ref: Any) -> dict[str, Any] | None:
        parsed = task_definition_ref(ref) if isinstance(ref, str) else None
        if parsed is None:
            return None
        family, revision = parsed
        revisions = self._families.get(family, [])
        if revision is None:
            active = [shape for shape in revisions if shape["status"] == ACTIVE]
            return active[-1] if active else None
        return revisions[revision - 1] if revision <= len(revisions) else None


def _status(value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise InvalidParameterException(f"status must be one of {', '.join(allowed)}.")
    return str(value)


def _paged(key: str, items: list[str], token: str | None) -> dict[str, Any]:
    answer: dict[str, Any] = {key: items}
    if token is not None:
        answer["nextToken"] = token
    return answer
