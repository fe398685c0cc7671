"""Node identity and liveness: which process a stored claim or a labelled container belongs
to, and whether that process may still run.

A node id is ``host/pid/start time``: a pid reused after a restart is another node, and a node
on this host whose process is gone is known dead at once (no silence to wait out). The event
dispatcher (``events@<node>``), the batch runner (``<node>+<n>``) and the container pool's
labels all build on it.
"""

from __future__ import annotations

import os
import socket

__all__ = ["local_node_id", "node_alive"]


def local_node_id() -> str:
    """This process as a node: ``host/pid/start time``, so a restarted pid is another node."""
    return f"{socket.gethostname()}/{os.getpid()}/{_start_ticks(os.getpid())}"


def node_alive(node_id: str) -> bool:
    """Whether the node that labelled a container may still run (another host: assume so)."""
    try:
        host, pid, ticks = node_id.rsplit("/", 2)
    except ValueError:
        return True
    if host != socket.gethostname() or not pid.isdigit():
        return True
    return _start_ticks(int(pid)) == ticks


def _start_ticks(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return ""
    return stat.rsplit(b")", 1)[1].split()[19].decode()
