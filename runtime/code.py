"""Function code: a directory used in place, or a .zip unpacked safely into a fresh directory;
and the work directories code and environments live in, removed once nothing uses them.

A zip is untrusted input.  Before anything is written, every member is checked: no absolute
path, no ``..`` component, no link pointing outside the code directory, and the unpacked total
within Lambda's 250 MB.  Members are then written only below a new directory, counting the
bytes actually produced (a member's declared size can lie).  Every refusal is an
InvalidParameterValueException (400, so clients do not retry it): a file that is not a readable
zip gets Lambda's own message, an unsafe member a message naming it.

Directories unpacked here are remembered, and :func:`remove_code` removes only those: a
directory used in place belongs to its user and is never removed.  A work directory carries an
owner file (pid, process start time, boot id), so that a later run can tell the leftovers of a
dead run from the directory of a live one (:func:`remove_dead_work_dirs`).
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import lzma
import os
import shutil
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

from .errors import InvalidParameterValueException, ServiceException

UNZIPPED_LIMIT = 262_144_000  # Lambda: 250 MB unzipped, code and layers
MAX_MEMBERS = 100_000
#: Lambda's answer to a file that is not a zip it can read
UNZIP_FAILED = "Could not unzip uploaded file. Please check your file, then try to upload again."
_CHUNK = 1 << 20
#: what a corrupt member's data or a member path that collides with another raises while unpacking
_UNPACK_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    EOFError,
    NotImplementedError,
    ValueError,  # also UnicodeDecodeError; a negative seek from a forged header offset
    OSError,  # bz2 data errors; a file member where another member needs a directory
    zlib.error,
    lzma.LZMAError,
)
#: write failures that are this machine's (a full disk), not the zip's
_MACHINE_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EMFILE, errno.ENFILE, errno.ENOMEM}
)
#: real paths of the directories this process unpacked and has not removed yet
_unpacked: set[str] = set()


def prepare_code(code: str | os.PathLike[str] | bytes, dest_root: str | os.PathLike[str]) -> str:
    """Return a directory holding the function's code.

    ``code`` is a directory (used in place), a path to a .zip file, or zip bytes; zips are
    unpacked into a new directory under ``dest_root``.  Anything unusable raises
    InvalidParameterValueException.
    """
    if isinstance(code, bytes):
        return unpack_zip(io.BytesIO(code), dest_root)
    path = Path(code)
    if path.is_dir():
        return str(path.resolve())
    if path.is_file():
        try:
            with path.open("rb") as f:
                return unpack_zip(f, dest_root)
        except OSError as exc:  # unreadable, or gone since it was looked at
            raise InvalidParameterValueException(f"code: cannot read {str(code)!r}: {exc}") from exc
    raise InvalidParameterValueException(
        f"code: {str(code)!r} is neither a directory nor a .zip file"
    )


def unpack_zip(source: io.BufferedIOBase | io.BytesIO, dest_root: str | os.PathLike[str]) -> str:
    """Unpack the zip ``source`` into a new directory under ``dest_root`` and return it."""
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError) as exc:
        raise InvalidParameterValueException(UNZIP_FAILED) from exc
    with archive:
        members = archive.infolist()
        _check_members(members)
        os.makedirs(dest_root, exist_ok=True)
        dest = tempfile.mkdtemp(prefix="code-", dir=dest_root)
        try:
            _extract(archive, members, Path(dest))
        except BaseException:
            shutil.rmtree(dest, ignore_errors=True)
            raise
    _unpacked.add(os.path.realpath(dest))
    return dest


def remove_code(code_dir: str) -> bool:
    """Remove ``code_dir`` if this process unpacked it (and has not removed it yet).

    A directory used in place is left alone.  Returns whether the directory was removed.
    """
    real = os.path.realpath(code_dir)
    try:
        _unpacked.remove(real)  # one atomic step: of two callers, only one removes
    except KeyError:
        return False
    shutil.rmtree(real, ignore_errors=True)
    return True


def drained_code(retired: dict[int, str], live_generations: Iterable[int]) -> list[str]:
    """Take from ``retired`` (the last generation running each directory -> the directory)
    the directories no live generation runs any more, oldest first.

    Generations only grow, so a directory is free once every live environment is of a later
    generation than the last one that ran it."""
    oldest = min(live_generations, default=None)
    free = sorted(g for g in retired if oldest is None or g < oldest)
    return [retired.pop(g) for g in free]


def _is_link(info: zipfile.ZipInfo) -> bool:
    return info.create_system == 3 and stat.S_ISLNK(info.external_attr >> 16)


def _refused(what: str) -> InvalidParameterValueException:
    return InvalidParameterValueException(f"Could not unzip uploaded file: {what}")


def _safe_name(name: str) -> PurePosixPath:
    if "\\" in name or "\x00" in name:
        raise _refused(f"member {name!r} has an invalid name")
    path = PurePosixPath(name)
    if not path.parts and not name.endswith("/"):
        raise _refused(f"member {name!r} has no name")
    if path.is_absolute() or (path.parts and path.parts[0].endswith(":")):
        raise _refused(f"member {name!r} is an absolute path")
    if ".." in path.parts:
        raise _refused(f"member {name!r} leaves the code directory")
    return path


def _check_members(members: list[zipfile.ZipInfo]) -> None:
    if len(members) > MAX_MEMBERS:
        raise _refused(f"more than {MAX_MEMBERS} members")
    total = 0
    for info in members:
        _safe_name(info.filename)
        if info.flag_bits & 0x1:
            raise _refused(f"member {info.filename!r} is encrypted")
        total += info.file_size
        if total > UNZIPPED_LIMIT:
            raise InvalidParameterValueException(
                f"Unzipped size must be smaller than {UNZIPPED_LIMIT} bytes"
            )


def _check_link(name: PurePosixPath, target: str) -> None:
    if target.startswith("/") or "\x00" in target:
        raise _refused(f"link {name} points outside the code directory")
    depth = len(name.parts) - 1
    for part in PurePosixPath(target).parts:
        depth += -1 if part == ".." else (0 if part == "." else 1)
        if depth < 0:
            raise _refused(f"link {name} points outside the code directory")


def _extract(archive: zipfile.ZipFile, members: list[zipfile.ZipInfo], dest: Path) -> None:
    written = 0
    links: list[tuple[Path, str]] = []
    for info in members:
        name = _safe_name(info.filename)
        target = dest.joinpath(*name.parts)
        try:
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if _is_link(info):
                link = archive.read(info).decode()
                _check_link(name, link)
                links.append((target, link))
                continue
            written = _write_file(archive, info, target, written)
        except _UNPACK_ERRORS as exc:
            raise _unpack_failed(exc) from exc
    _make_links(dest, links)


def _write_file(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, written: int) -> int:
    """Write one member, counting its real bytes into ``written``; returns the new count."""
    with archive.open(info) as src, open(target, "wb") as out:
        while chunk := src.read(_CHUNK):
            written += len(chunk)
            if written > UNZIPPED_LIMIT:
                raise InvalidParameterValueException(
                    f"Unzipped size must be smaller than {UNZIPPED_LIMIT} bytes"
                )
            out.write(chunk)
    mode = (info.external_attr >> 16) & 0o777
    if mode:
        os.chmod(target, mode | 0o400)
    return written


def _unpack_failed(exc: BaseException) -> Exception:
    if isinstance(exc, OSError) and exc.errno in _MACHINE_ERRNOS:
        return ServiceException(f"could not write the unpacked code: {exc}")
    return InvalidParameterValueException(UNZIP_FAILED)


def _make_links(dest: Path, links: list[tuple[Path, str]]) -> None:
    for target, link in links:
        try:
            os.symlink(link, target)
        except OSError as exc:
            raise _unpack_failed(exc) from exc
    # Each link stays inside on its own, but a chain can still leave: "x/b" -> ".." and
    # "a" -> "x/b/.." resolves to the parent of the code directory.  Check what they resolve to.
    root = os.path.realpath(dest)
    for target, _link in links:
        real = os.path.realpath(target)
        if real != root and not real.startswith(root + os.sep):
            raise _refused(f"link {target.relative_to(dest)} points outside the code directory")


# -- work directories and their owners ------------------------------------------------------

WORK_DIR_PREFIX = "warmstart-"
#: the file in each work directory naming the process that made it
OWNER_FILE = ".warmstart-owner"
_BOOT_ID = "/proc/sys/kernel/random/boot_id"


def make_work_dir(parent: str | None = None, prefix: str = WORK_DIR_PREFIX) -> str:
    """A new directory under ``parent`` (the system temp dir by default) owned by this process.

    ``prefix`` must start with ``warmstart-`` for :func:`remove_dead_work_dirs` to find it.
    """
    parent = parent or tempfile.gettempdir()
    os.makedirs(parent, exist_ok=True)
    path = tempfile.mkdtemp(prefix=prefix, dir=parent)
    partial = os.path.join(path, OWNER_FILE + ".new")
    with open(partial, "w") as f:
        json.dump(owner_record(), f)
    os.replace(partial, os.path.join(path, OWNER_FILE))  # never seen half written
    return path


def owner_record() -> dict[str, Any]:
    """What identifies this process beyond its pid, which the system reuses: its start time,
    the boot, and the pid namespace its pid belongs to."""
    pid = os.getpid()
    return {"pid": pid, "start": _start_time(pid), "boot": _read(_BOOT_ID), "pidns": _pid_ns()}


def remove_dead_work_dirs(parent: str | None = None) -> list[str]:
    """Remove the ``warmstart-*`` directories under ``parent`` whose owner process is gone;
    returns them.

    A directory without a readable owner file is kept (it may be a live run's that has not
    written it yet, or not ours at all), and so is one whose owner cannot be judged from here
    (another pid namespace)."""
    parent = parent or tempfile.gettempdir()
    removed: list[str] = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return removed
    for entry in entries:
        if entry.name.startswith(WORK_DIR_PREFIX) and _is_dead_run(entry):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(entry.path)
    return removed


def _is_dead_run(entry: os.DirEntry[str]) -> bool:
    try:
        if not entry.is_dir(follow_symlinks=False) or entry.stat().st_uid != os.getuid():
            return False
        with open(os.path.join(entry.path, OWNER_FILE)) as f:
            owner = json.load(f)
    except (OSError, ValueError):
        return False
    return isinstance(owner, dict) and not owner_alive(owner)


def owner_alive(owner: dict[str, Any]) -> bool:
    """Whether the process an :func:`owner_record` describes still runs (True when unsure)."""
    pid = owner.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return True
    boot = _read(_BOOT_ID)
    if owner.get("boot") and boot and owner["boot"] != boot:
        return False  # the machine restarted since
    if owner.get("pidns") != _pid_ns():
        return True  # its pid names another process here
    started = owner.get("start")
    if isinstance(started, int) and os.path.isdir("/proc/self"):
        return _start_time(pid) == started  # a reused pid started later
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # alive, someone else's
        return True
    return True


def _start_time(pid: int) -> int | None:
    """Process ``pid``'s start, in clock ticks after boot (/proc/<pid>/stat field 22)."""
    line = _read(f"/proc/{pid}/stat")
    if line is None:
        return None
    # the command name (field 2) may hold spaces and parentheses: count from its end
    fields = line.rpartition(")")[2].split()
    with contextlib.suppress(IndexError, ValueError):
        return int(fields[19])
    return None


def _pid_ns() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None
