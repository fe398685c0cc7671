"""Where a sync invoke runs in a cluster (pure: no I/O, the members' published load in).

    this node has an idle warm environment of the function ──▶ here
    else, in the function's probe order over the live nodes (its home node first):
        the first with an idle warm one ──▶ there (forwarded once)
        the first with free capacity    ──▶ there (a cold start on the home node if it can)
        none                            ──▶ the least loaded (overload)

The probe order is OpenWhisk's (``ShardingContainerPoolBalancer``): the function's hash
picks a home node (``hash % n``) and a step size among the numbers pairwise coprime with
``n`` (``step_sizes(n)[hash % len]``), and the order walks ``home, home + step, ...`` modulo
``n``: every node once, the same order on every node, and functions spread over the nodes so
that each one's warm environments concentrate on few nodes.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from functools import lru_cache

from .members import Member

__all__ = ["function_hash", "probe_order", "route", "step_sizes"]


def function_hash(name: str) -> int:
    """A hash of ``name`` that every node computes alike (not Python's salted ``hash``)."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big")


@lru_cache(maxsize=64)
def step_sizes(n: int) -> tuple[int, ...]:
    """The numbers up to ``n`` coprime with ``n`` and with each other, smallest first."""
    steps: list[int] = []
    for candidate in range(1, n + 1):
        if math.gcd(candidate, n) == 1 and all(math.gcd(candidate, s) == 1 for s in steps):
            steps.append(candidate)
    return tuple(steps)


def probe_order(hash_: int, n: int) -> list[int]:
    """The indexes of ``n`` nodes in the order a function of hash ``hash_`` tries them."""
    if n <= 0:
        return []
    home = hash_ % n
    steps = step_sizes(n)
    step = steps[hash_ % len(steps)]
    return [(home + i * step) % n for i in range(n)]


def route(function: str, members: Sequence[Member], here: str) -> str:
    """The id of the node that should run a call of ``function`` (``here`` when none is
    better); ``members`` are the live nodes with their last published load."""
    if not members:
        return here
    nodes = sorted(members, key=lambda m: m.id)
    order = [nodes[i] for i in probe_order(function_hash(function), len(nodes))]
    own = next((m for m in nodes if m.id == here), None)
    if own is not None and own.load.idle.get(function, 0) > 0:
        return here
    for member in order:
        if member.load.idle.get(function, 0) > 0:
            return member.id
    if own is not None and own.load.free > 0 and own.load.waiting == 0:
        home = order[0]
        if home.id == here or home.load.free <= 0:
            return here
        return home.id
    for member in order:
        if member.load.free > 0 and member.load.waiting == 0:
            return member.id
    return min(order, key=lambda m: (m.load.waiting - m.load.free, m.load.busy)).id
