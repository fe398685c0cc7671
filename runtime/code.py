"""Function code: a directory used in place, or a .zip unpacked safely into a fresh directory.

A zip is untrusted input.  Before anything is written, every member is checked: no absolute
path, no ``..`` component, no link pointing outside the code directory, and the unpacked total
within Lambda's 250 MB.  Members are then written only below a new directory, counting the
bytes actually produced (a member's declared size can lie).
"""

from __future__ import annotations

import io
import lzma
import os
import shutil
import stat
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from .errors import InvalidParameterValueException, InvalidZipFileException

UNZIPPED_LIMIT = 262_144_000  # Lambda: 250 MB unzipped, code and layers
MAX_MEMBERS = 100_000
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


def prepare_code(code: str | os.PathLike[str] | bytes, dest_root: str | os.PathLike[str]) -> str:
    """Return a directory holding the function's code.

    ``code`` is a directory (used in place), a path to a .zip file, or zip bytes; zips are
    unpacked into a new directory under ``dest_root``.
    """
    if isinstance(code, bytes):
        return unpack_zip(io.BytesIO(code), dest_root)
    path = Path(code)
    if path.is_dir():
        return str(path.resolve())
    if path.is_file():
        with path.open("rb") as f:
            return unpack_zip(f, dest_root)
    raise InvalidParameterValueException(
        f"code: {str(code)!r} is neither a directory nor a .zip file"
    )


def unpack_zip(source: io.BufferedIOBase | io.BytesIO, dest_root: str | os.PathLike[str]) -> str:
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError) as exc:
        raise InvalidZipFileException(f"Could not unzip uploaded file: {exc}") from None
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
    return dest


def _is_link(info: zipfile.ZipInfo) -> bool:
    return info.create_system == 3 and stat.S_ISLNK(info.external_attr >> 16)


def _safe_name(name: str) -> PurePosixPath:
    if "\\" in name or "\x00" in name:
        raise InvalidZipFileException(
            f"Could not unzip uploaded file: member {name!r} has an invalid name"
        )
    path = PurePosixPath(name)
    if not path.parts and not name.endswith("/"):
        raise InvalidZipFileException(f"Could not unzip uploaded file: member {name!r} has no name")
    if path.is_absolute() or (path.parts and path.parts[0].endswith(":")):
        raise InvalidZipFileException(
            f"Could not unzip uploaded file: member {name!r} is an absolute path"
        )
    if ".." in path.parts:
        raise InvalidZipFileException(
            f"Could not unzip uploaded file: member {name!r} leaves the code directory"
        )
    return path


def _check_members(members: list[zipfile.ZipInfo]) -> None:
    if len(members) > MAX_MEMBERS:
        raise InvalidZipFileException(
            f"Could not unzip uploaded file: more than {MAX_MEMBERS} members"
        )
    total = 0
    for info in members:
        _safe_name(info.filename)
        if info.flag_bits & 0x1:
            raise InvalidZipFileException(
                f"Could not unzip uploaded file: member {info.filename!r} is encrypted"
            )
        total += info.file_size
        if total > UNZIPPED_LIMIT:
            raise InvalidParameterValueException(
                f"Unzipped size must be smaller than {UNZIPPED_LIMIT} bytes"
            )


def _check_link(name: PurePosixPath, target: str) -> None:
    if target.startswith("/") or "\x00" in target:
        raise InvalidZipFileException(
            f"Could not unzip uploaded file: link {name} points outside the code directory"
        )
    depth = len(name.parts) - 1
    for part in PurePosixPath(target).parts:
        depth += -1 if part == ".." else (0 if part == "." else 1)
        if depth < 0:
            raise InvalidZipFileException(
                f"Could not unzip uploaded file: link {name} points outside the code directory"
            )


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
        except _UNPACK_ERRORS as exc:
            raise InvalidZipFileException(f"Could not unzip uploaded file: {exc}") from None
    for target, link in links:
        try:
            os.symlink(link, target)
        except OSError as exc:
            raise InvalidZipFileException(f"Could not unzip uploaded file: {exc}") from None
    # Each link stays inside on its own, but a chain can still leave: "x/b" -> ".." and
    # "a" -> "x/b/.." resolves to the parent of the code directory.  Check what they resolve to.
    root = os.path.realpath(dest)
    for target, _link in links:
        real = os.path.realpath(target)
        if real != root and not real.startswith(root + os.sep):
            where = target.relative_to(dest)
            raise InvalidZipFileException(
                f"Could not unzip uploaded file: link {where} points outside the code directory"
            )
