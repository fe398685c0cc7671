"""Clusters: names tasks are grouped under.  ``default`` always exists; there are no instances.

A cluster here places nothing (every task runs on this node's Docker Engine): it is the
namespace RunTask, ListTasks and DescribeTasks take, with ECS's ``Cluster`` shape.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .errors import ClusterNotFoundException, InvalidParameterException
from .listing import page
from .naming import NAME_RE, Arns, cluster_name
from .taskdef import tags

DEFAULT = "default"

#: ``(running, pending)`` task counts of a cluster
Counts = Callable[[str], tuple[int, int]]


class Clusters:
    """The clusters of one account and region; ``counts`` supplies their task counts."""

    def __init__(self, arns: Arns, counts: Counts) -> None:
        self.arns = arns
        self._counts = counts
        self._clusters: dict[str, list[Any]] = {DEFAULT: []}

    def __len__(self) -> int:
        return len(self._clusters)

    def resolve(self, ref: Any) -> str:
        """The name of the cluster ``ref`` (a name or an ARN; None: ``default``) names."""
        if ref is None or ref == "":
            return DEFAULT
        name = cluster_name(ref) if isinstance(ref, str) else ""
        if name not in self._clusters:
            raise ClusterNotFoundException("Cluster not found.")
        return name

    def create(self, request: dict[str, Any]) -> dict[str, Any]:
        """CreateCluster; creating one that exists returns it (ECS is idempotent here too)."""
        name = request.get("clusterName") or DEFAULT
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            raise InvalidParameterException(
                "Invalid cluster name. Up to 255 letters (uppercase and lowercase), numbers, "
                "underscores, and hyphens are allowed."
            )
        self._clusters.setdefault(name, tags(request.get("tags"), InvalidParameterException))
        return {"cluster": self.shape(name)}

    def describe(self, request: dict[str, Any]) -> dict[str, Any]:
        """DescribeClusters: ``default`` when none are named; unknown ones as failures."""
        refs = request.get("clusters") or [DEFAULT]
        if not isinstance(refs, list):
            raise InvalidParameterException("clusters must be a list of names or ARNs.")
        clusters, failures = [], []
        for ref in refs:
            name = cluster_name(ref) if isinstance(ref, str) else ""
            if name in self._clusters:
                clusters.append(self.shape(name))
            else:
                failures.append({"arn": self._arn_of(ref), "reason": "MISSING"})
        return {"clusters": clusters, "failures": failures}

    def list(self, request: dict[str, Any]) -> dict[str, Any]:
        """ListClusters, by name."""
        arns = [self.arns.cluster(name) for name in sorted(self._clusters)]
        items, token = page(arns, request.get("nextToken"), request.get("maxResults"))
        answer: dict[str, Any] = {"clusterArns": items}
        if token is not None:
            answer["nextToken"] = token
        return answer

    def shape(self, name: str) -> dict[str, Any]:
        running, pending = self._counts(name)
        return {
            "clusterArn": self.arns.cluster(name),
            "clusterName": name,
            "status": "ACTIVE",
            "registeredContainerInstancesCount": 0,
            "runningTasksCount": running,
            "pendingTasksCount": pending,
            "activeServicesCount": 0,
            "statistics": [],
            "tags": list(self._clusters[name]),
            "settings": [{"name": "containerInsights", "value": "disabled"}],
            "capacityProviders": [],
            "defaultCapacityProviderStrategy": [],
        }

    def _arn_of(self, ref: Any) -> str:
        if isinstance(ref, str) and ref.startswith("arn:"):
            return ref
        return self.arns.cluster(str(ref))
