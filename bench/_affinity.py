"""CPU affinity of this process and everything it started, for P12's pinned and unpinned runs.

A mask in Linux belongs to a thread, and a new thread or process takes its creator's: setting
every thread of the tree once the environments exist (and again after starting a process)
pins the caller, the agents, their HTTP threads and the runtimes they run.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

MODES = ("pinned", "unpinned")


def tree(root: int) -> list[int]:
    """``root`` and every process under it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def threads(pid: int) -> list[int]:
    try:
        return [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return []


def set_affinity(pids: list[int], cpus: set[int]) -> None:
    """Every thread of ``pids`` on ``cpus``."""
    for pid in pids:
        for tid in threads(pid):
            with contextlib.suppress(OSError):
                os.sched_setaffinity(tid, cpus)


def cpus_of(mode: str) -> set[int]:
    """``pinned``: the first CPU this process may use; ``unpinned``: every CPU."""
    if mode == "pinned":
        return {min(os.sched_getaffinity(0))}
    return set(range(os.cpu_count() or 1))


@contextlib.contextmanager
def affinity(mode: str) -> Iterator[Callable[[], None]]:
    """Apply ``mode`` to this process tree (whatever ``taskset`` started it); the callable
    applies it again.  This process's own threads get their mask back at the end."""
    original = os.sched_getaffinity(0)
    cpus = cpus_of(mode)

    def apply() -> None:
        set_affinity(tree(os.getpid()), cpus)

    apply()
    try:
        yield apply
    finally:
        set_affinity([os.getpid()], original)


def cpu_ns(pid: int) -> int:
    """CPU time the process's live threads have run, in ns (``/proc/<tid>/schedstat``)."""
    total = 0
    for tid in threads(pid):
        try:
            total += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return total
