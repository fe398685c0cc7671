"""Clusters of real ``warmstart serve`` processes on a real Redis."""

from __future__ import annotations

from cluster_support import cluster

__all__ = ["cluster"]
