"""``/metrics``: Prometheus text from the engine's own counters, one registry per app.

Counters (invocations, errors, throttles, cold starts, billed GB-seconds) and environments by
state are read from ``engine.stats()`` at scrape time, so they count every invocation the engine
ran (Event ones included) and nothing is added to the invoke path.  The duration histogram is
observed by the Invoke route for synchronous invocations: the REPORT line's Duration.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from ..cluster.node import ClusterNode
    from ..cluster.tokens import TokenPool
    from ..engine import Engine

__all__ = ["CONTENT_TYPE", "ServiceMetrics"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
#: from 1 ms to Lambda's 15 minutes
DURATION_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
)

_COUNTERS = (
    ("invocations", "Invocations that ran (function errors included)"),
    ("errors", "Invocations that ended with a function error"),
    ("throttles", "Invocations refused by a concurrency limit"),
    ("cold_starts", "Invocations that started a new environment"),
    ("gb_seconds", "Billed GB-seconds"),
)


class EngineCollector(Collector):
    """Reads ``engine.stats()`` on every scrape."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        stats = self.engine.stats()
        families = {
            key: CounterMetricFamily(f"warmstart_{key}", text, labels=["function"])
            for key, text in _COUNTERS
        }
        environments = GaugeMetricFamily(
            "warmstart_environments", "Environments by state", labels=["function", "state"]
        )
        waiting = GaugeMetricFamily(
            "warmstart_waiting_invocations",
            "Invocations waiting for an environment",
            labels=["function"],
        )
        for name, fn in stats.items():
            for key, family in families.items():
                family.add_metric([name], fn[key])
            for state, count in fn["environments"].items():
                environments.add_metric([name, state], count)
            waiting.add_metric([name], fn["waiting"])
        yield GaugeMetricFamily("warmstart_functions", "Registered functions", value=len(stats))
        yield from families.values()
        yield environments
        yield waiting


class ClusterCollector(Collector):
    """This node among several on one store: the live nodes it sees, the invokes it
    forwarded and received, the Redis trips its concurrency tokens took."""

    def __init__(self, cluster: ClusterNode, tokens: TokenPool | None) -> None:
        self.cluster = cluster
        self.tokens = tokens

    def collect(self) -> Iterator[Metric]:
        cluster = self.cluster
        yield GaugeMetricFamily(
            "warmstart_cluster_nodes",
            "Live nodes sharing this node's store, as of its last beat",
            value=len(cluster.members),
        )
        forwarded = CounterMetricFamily(
            "warmstart_forwarded_invocations",
            "Sync invokes sent to another node, received from one, or not deliverable",
            labels=["direction"],
        )
        for key, direction in (
            ("forwarded", "sent"),
            ("received", "received"),
            ("unreachable", "unreachable"),
        ):
            forwarded.add_metric([direction], cluster.counts[key])
        yield forwarded
        if self.tokens is not None:
            yield CounterMetricFamily(
                "warmstart_concurrency_token_grants",
                "Redis round trips taken for cluster-wide concurrency tokens",
                value=self.tokens.grants,
            )


class ServiceMetrics:
    """The app's registry: the engine's figures plus an invocation duration histogram."""

    def __init__(self, engine: Engine) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(EngineCollector(engine))
        self.duration = Histogram(
            "warmstart_invocation_duration_seconds",
            "Duration of synchronous invocations, as their REPORT line gives it",
            ["function"],
            registry=self.registry,
            buckets=DURATION_BUCKETS,
        )
        self._children: dict[str, Any] = {}

    def watch_cluster(self, cluster: ClusterNode, tokens: TokenPool | None) -> None:
        """Add this node's cluster figures (once it joined)."""
        self.registry.register(ClusterCollector(cluster, tokens))

    def observe(self, function: str, seconds: float) -> None:
        child = self._children.get(function)
        if child is None:
            child = self._children[function] = self.duration.labels(function)
        child.observe(seconds)

    def forget(self, function: str) -> None:
        """Drop a deleted function's histogram series."""
        if self._children.pop(function, None) is not None:
            self.duration.remove(function)

    def render(self) -> bytes:
        """The Prometheus text exposition of everything in the registry."""
        return generate_latest(self.registry)
