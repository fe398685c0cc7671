"""How much memory an environment used, from the kernel: a process's peak RSS, a cgroup's.

A process worker's Max Memory Used is its own high-water mark (``VmHWM``); a container's is its
memory cgroup's (v1 ``memory.max_usage_in_bytes``, v2 ``memory.peak``), and an OOM kill inside
it shows in the cgroup's ``oom_kill`` counter.  Every reader answers 0 (or None) when the file
is not there: the process has gone, or the kernel does not keep the number.
"""

from __future__ import annotations

import contextlib
import os

_MB = 1024 * 1024
_PEAK_FILES = ("memory.max_usage_in_bytes", "memory.peak")


def peak_rss_mb(pid: int) -> int:
    """A live process's peak resident size (VmHWM), in MB rounded up; 0 if unknown."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return -(-int(line.split()[1]) // 1024)
    except (OSError, ValueError, IndexError):
        pass
    return 0


def memory_cgroup(pid: int) -> str:
    """The memory cgroup directory of a process (v1 memory controller, else the v2 unified)."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return ""
    unified = ""
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return f"/sys/fs/cgroup/memory{path}"
        if controllers == "":
            unified = f"/sys/fs/cgroup{path}"
    return unified


def read_peak(cgroup: str) -> int | None:
    """The cgroup's high-water mark in bytes; None if unreadable."""
    for name in _PEAK_FILES:
        try:
            with open(os.path.join(cgroup, name), "rb") as f:
                return int(f.read())
        except (OSError, ValueError):
            continue
    return None


def reset_peak(cgroup: str) -> None:
    """Start a new high-water mark (cgroup v1 resets it on a write; v2's is per reader)."""
    with (
        contextlib.suppress(OSError),
        open(os.path.join(cgroup, "memory.max_usage_in_bytes"), "wb") as f,
    ):
        f.write(b"0")


def open_peak(cgroup: str) -> int:
    """A descriptor of the cgroup's high-water mark file, kept open: a pread of it costs
    under a microsecond where an open and a read cost tens (this is on every result)."""
    for name in _PEAK_FILES:
        try:
            return os.open(os.path.join(cgroup, name), os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
    return -1


def peak_mb_at(fd: int) -> int:
    """The high-water mark behind ``open_peak``'s descriptor, in MB rounded up; 0 if unknown."""
    if fd < 0:
        return 0
    try:
        return -(-int(os.pread(fd, 32, 0)) // _MB)
    except (OSError, ValueError):
        return 0


def oom_kills(cgroup: str) -> int:
    """How many processes the cgroup's OOM killer has killed (v1 oom_control, v2 events)."""
    for name in ("memory.oom_control", "memory.events"):
        try:
            with open(os.path.join(cgroup, name), "rb") as f:
                for line in f:
                    if line.startswith(b"oom_kill "):
                        return int(line.split()[1])
        except (OSError, ValueError):
            continue
    return 0
