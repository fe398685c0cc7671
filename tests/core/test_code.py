"""Function code (runtime/code.py): directories in place, zips unpacked safely or refused."""

from __future__ import annotations

import errno
import io
import os
import random
import re
import stat
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from runtime import code
from runtime.code import prepare_code
from runtime.errors import InvalidParameterValueException, ServiceException

LIMIT = code.UNZIPPED_LIMIT


@dataclass
class Member:
    name: str
    data: bytes = b""
    mode: int = 0o644
    link: str | None = None  # a symlink to this target instead of a file


def build_zip(
    members: list[Member],
    *,
    compression: int = zipfile.ZIP_DEFLATED,
    forge: Callable[[list[zipfile.ZipInfo]], None] | None = None,
) -> bytes:
    """A zip of ``members``; ``forge`` may edit the central directory entries before close."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for m in members:
            info = zipfile.ZipInfo(m.name, date_time=(2024, 1, 1, 0, 0, 0))
            info.create_system = 3
            info.compress_type = compression
            if m.link is not None:
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
                zf.writestr(info, m.link)
            elif m.name.endswith("/"):
                info.external_attr = (stat.S_IFDIR | 0o755) << 16 | 0x10
                zf.writestr(info, b"")
            else:
                info.external_attr = (stat.S_IFREG | m.mode) << 16
                zf.writestr(info, m.data)
        if forge is not None:
            forge(zf.filelist)  # the central directory is written from these at close
    return buf.getvalue()


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    """dest_root; not created up front, so a refusal before any write leaves it absent."""
    return tmp_path / "work" / "functions" / "f"


# -- accepted code ------------------------------------------------------------------------


def test_directory_is_used_in_place_and_resolved(
    tmp_path: Path, dest: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "app.py").write_text("def handler(e, c): return e\n")
    alias = tmp_path / "alias"
    alias.symlink_to(src)
    monkeypatch.chdir(tmp_path)

    assert prepare_code(str(src), dest) == str(src.resolve())
    assert prepare_code(src, dest) == str(src.resolve())
    assert prepare_code("src", dest) == str(src.resolve())
    assert prepare_code(str(alias), dest) == str(src.resolve())
    assert prepare_code("./alias/../src", dest) == str(src.resolve())
    assert not dest.exists()  # nothing copied
    assert tree(src) == {"app.py"}


SAMPLE = [
    Member("app.py", b"def handler(event, context):\n    return event\n", 0o644),
    Member("bin/run.sh", b"#!/bin/sh\necho hi\n", 0o755),
    Member("secret.txt", b"s3cret", 0o600),
    Member("writeonly.txt", b"w", 0o200),  # made readable by its owner
    Member("empty/"),
    Member("lib/v1/tool.py", b"x = 1\n", 0o644),
    Member("lib/current", link="v1"),
    Member("bin/tool", link="../lib/v1/tool.py"),
    Member("lib/self", link="."),
    Member("data/zeros.bin", bytes(100_000), 0o644),
]


def check_sample(out: str, dest: Path) -> None:
    root = Path(out)
    assert root.is_dir()
    assert root.parent == dest
    assert root.name.startswith("code-")
    assert tree(root) == {
        "app.py",
        "bin",
        "bin/run.sh",
        "bin/tool",
        "secret.txt",
        "writeonly.txt",
        "empty",
        "lib",
        "lib/v1",
        "lib/v1/tool.py",
        "lib/current",
        "lib/self",
        "data",
        "data/zeros.bin",
    }
    for m in SAMPLE:
        path = root / m.name
        if m.link is not None:
            assert path.is_symlink()
            assert os.readlink(path) == m.link
        elif m.name.endswith("/"):
            assert path.is_dir()
            assert not any(path.iterdir())
        else:
            assert path.read_bytes() == m.data
            expected = m.mode | 0o400
            assert stat.S_IMODE(path.stat().st_mode) == expected, m.name
    assert (root / "bin" / "tool").read_bytes() == b"x = 1\n"
    assert (root / "lib" / "current" / "tool.py").read_bytes() == b"x = 1\n"


def test_zip_file_path_is_unpacked_into_a_new_directory(tmp_path: Path, dest: Path) -> None:
    archive = tmp_path / "code.zip"
    archive.write_bytes(build_zip(SAMPLE))
    first = prepare_code(str(archive), dest)
    check_sample(first, dest)
    second = prepare_code(archive, dest)  # a Path too; each call gets a fresh directory
    check_sample(second, dest)
    assert first != second
    assert set(dest.iterdir()) == {Path(first), Path(second)}
    assert {p.name for p in tmp_path.iterdir()} == {"code.zip", "work"}


def test_zip_bytes_are_unpacked(dest: Path) -> None:
    out = prepare_code(build_zip(SAMPLE), dest)
    check_sample(out, dest)


def test_stored_zip_and_zip_from_zipfile_write(tmp_path: Path, dest: Path) -> None:
    src = tmp_path / "src"
    (src / "pkg").mkdir(parents=True)
    (src / "pkg" / "__init__.py").write_text("")
    (src / "app.py").write_text("print('hi')\n")
    (src / "app.py").chmod(0o751)
    archive = tmp_path / "stored.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        for path in sorted(src.rglob("*")):
            zf.write(path, path.relative_to(src))
    root = Path(prepare_code(archive, dest))
    assert tree(root) == {"app.py", "pkg", "pkg/__init__.py"}
    assert (root / "app.py").read_text() == "print('hi')\n"
    assert stat.S_IMODE((root / "app.py").stat().st_mode) == 0o751


def test_empty_zip_gives_an_empty_directory(dest: Path) -> None:
    out = Path(prepare_code(build_zip([]), dest))
    assert out.is_dir()
    assert not any(out.iterdir())


def test_a_dot_slash_directory_entry_is_the_root(dest: Path) -> None:
    out = Path(prepare_code(build_zip([Member("./"), Member("./a.py", b"a")]), dest))
    assert tree(out) == {"a.py"}


def test_member_lying_small_never_writes_past_its_declared_size(dest: Path) -> None:
    """zipfile stops at the declared size; with a matching CRC the rest is just not written."""

    def forge(infos: list[zipfile.ZipInfo]) -> None:
        infos[0].file_size = 10
        infos[0].CRC = zlib.crc32(bytes(10))

    out = Path(prepare_code(build_zip([Member("big.bin", bytes(50_000))], forge=forge), dest))
    assert (out / "big.bin").read_bytes() == bytes(10)


# -- refused zips ---------------------------------------------------------------------------


@dataclass
class Bad:
    id: str
    data: Callable[[], bytes]
    #: the message (a regex); every refusal is an InvalidParameterValueException (400)
    match: str
    #: refused while checking the member list, before dest_root is even created
    early: bool = True
    patches: dict[str, object] = field(default_factory=dict)
    #: what zipfile said, kept as the refusal's cause (a regex), for a zip that is not readable
    cause: str | None = None


def _forged(members: list[Member], forge: Callable[[list[zipfile.ZipInfo]], None]) -> bytes:
    return build_zip(members, forge=forge)


def _set(
    attr: str, value: object, index: int | None = 0
) -> Callable[[list[zipfile.ZipInfo]], None]:
    """Forge ``attr`` of one central directory entry, or of all of them (index None)."""

    def forge(infos: list[zipfile.ZipInfo]) -> None:
        for info in infos if index is None else [infos[index]]:
            setattr(info, attr, value)

    return forge


def _corrupt_member_data() -> bytes:
    data = bytearray(build_zip([Member("a.py", random.Random(0).randbytes(4000))]))
    start = 30 + len("a.py")  # the first local header, then the deflate stream
    data[start] = 0xFF  # a final block of the reserved type 3
    return bytes(data)


def _crc_mismatch() -> bytes:
    """A stored member with one byte of its data changed: it reads, but its CRC is wrong."""
    data = bytearray(build_zip([Member("a.py", b"print('a')\n" * 20)], compression=0))
    data[30 + len("a.py") + 5] ^= 0x01
    return bytes(data)


def _central_directory(offset: int, value: bytes) -> Callable[[], bytes]:
    """``_GOOD`` with bytes of its first central directory entry overwritten."""

    def make() -> bytes:
        data = bytearray(_GOOD)
        at = data.index(b"PK\x01\x02") + offset
        data[at : at + len(value)] = value
        return bytes(data)

    return make


_GOOD = build_zip([Member("app.py", b"print('hello')\n" * 100), Member("lib/x.py", b"x = 1\n")])
_UNZIP = re.escape(code.UNZIP_FAILED)

BAD = [
    Bad("dotdot", lambda: build_zip([Member("../evil.py", b"x")]),
        r"member '\.\./evil\.py' leaves the code directory"),
    Bad("dotdot-nested", lambda: build_zip([Member("a/../../evil", b"x")]),
        r"member 'a/\.\./\.\./evil' leaves the code directory"),
    Bad("dotdot-after-good", lambda: build_zip([Member("ok.py", b"x"), Member("x/../../evil")]),
        r"member 'x/\.\./\.\./evil' leaves the code directory"),
    Bad("absolute", lambda: build_zip([Member("/etc/evil", b"x")]),
        r"member '/etc/evil' is an absolute path"),
    Bad("drive", lambda: build_zip([Member("C:/evil", b"x")]),
        r"member 'C:/evil' is an absolute path"),
    Bad("backslash", lambda: build_zip([Member("..\\evil.py", b"x")]),
        r"member '\.\.\\\\evil\.py' has an invalid name"),
    Bad("dot-name", lambda: build_zip([Member(".", b"x")]), r"member '\.' has no name"),
    Bad("empty-name", lambda: _forged([Member("x", b"x")], _set("filename", "")),
        r"member '' has no name"),
    Bad("encrypted", lambda: _forged([Member("a.py", b"x")], _set("flag_bits", 0x1)),
        r"member 'a\.py' is encrypted"),
    Bad("link-dotdot", lambda: build_zip([Member("lib/link", link="../../outside")]),
        r"link lib/link points outside the code directory", early=False),
    Bad("link-absolute", lambda: build_zip([Member("passwd", link="/etc/passwd")]),
        r"link passwd points outside the code directory", early=False),
    Bad("link-chain", lambda: build_zip([Member("x/b", link=".."), Member("a", link="x/b/..")]),
        r"link a points outside the code directory", early=False),
    Bad("link-chain-deeper",
        lambda: build_zip([Member("x/up", link=".."), Member("y", link="x/up/../etc")]),
        r"link y points outside the code directory", early=False),
    Bad("declared-size", lambda: _forged([Member("big.bin", b"x")], _set("file_size", LIMIT + 1)),
        rf"Unzipped size must be smaller than {LIMIT} bytes"),
    Bad("declared-size-total",
        lambda: _forged([Member(f"m{i}", b"x") for i in range(3)],
                        _set("file_size", LIMIT // 3 + 1, index=None)),
        rf"Unzipped size must be smaller than {LIMIT} bytes"),
    Bad("real-size-lies",
        lambda: _forged([Member("ok.py", b"x"), Member("big.bin", bytes(5000))],
                        _set("file_size", 10, index=1)),
        _UNZIP, early=False, patches={"UNZIPPED_LIMIT": 1000},
        cause=r"Bad CRC-32 for file 'big\.bin'"),
    Bad("too-many-members", lambda: build_zip([Member(f"f{i}") for i in range(3)]),
        r"more than 2 members", patches={"MAX_MEMBERS": 2}),
    Bad("file-then-dir", lambda: build_zip([Member("a", b"x"), Member("a/b", b"y")]),
        _UNZIP, early=False, cause=r"File exists"),
    Bad("crc-mismatch", _crc_mismatch, _UNZIP, early=False, cause=r"Bad CRC-32 for file 'a\.py'"),
    Bad("corrupt-deflate", _corrupt_member_data, _UNZIP, early=False,
        cause=r"Error -3 .*: invalid block type"),
    Bad("central-directory-magic", _central_directory(0, b"XX"), _UNZIP,
        cause=r"Bad magic number for central directory"),
    Bad("central-directory-offset", _central_directory(42, b"\xff\xff\xff\x00"), _UNZIP,
        early=False, cause=r"Truncated file header"),
    Bad("unknown-compression", lambda: _forged([Member("a.py", b"x")], _set("compress_type", 99)),
        _UNZIP, early=False, cause=r"compression"),
    Bad("future-version", lambda: _forged([Member("a.py", b"x")], _set("extract_version", 99)),
        _UNZIP, cause=r"zip file version 9\.9"),
    Bad("truncated-half", lambda: _GOOD[: len(_GOOD) // 2], _UNZIP,
        cause=r"File is not a zip file"),
    Bad("truncated-end", lambda: _GOOD[:-1], _UNZIP, cause=r"File is not a zip file"),
    Bad("truncated-header", lambda: _GOOD[:10], _UNZIP, cause=r"File is not a zip file"),
    Bad("random-bytes", lambda: random.Random(7).randbytes(5000), _UNZIP,
        cause=r"File is not a zip file"),
    Bad("empty", lambda: b"", _UNZIP, cause=r"File is not a zip file"),
]  # fmt: skip


@pytest.mark.parametrize("via", ["bytes", "file"])
@pytest.mark.parametrize("bad", BAD, ids=[b.id for b in BAD])
def test_untrusted_zip_is_refused(
    bad: Bad, via: str, tmp_path: Path, dest: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in bad.patches.items():
        monkeypatch.setattr(code, name, value)
    data = bad.data()
    source: bytes | Path = data
    if via == "file":
        source = tmp_path / "upload.zip"
        source.write_bytes(data)
    before = tree(tmp_path)
    etc_evil = os.path.lexists("/etc/evil")

    with pytest.raises(InvalidParameterValueException, match=bad.match) as excinfo:
        prepare_code(source, dest)

    refusal = excinfo.value
    assert type(refusal) is InvalidParameterValueException
    assert refusal.status == 400  # a client retries a 5xx: never for a file that cannot change
    if bad.cause is None:
        assert refusal.message != code.UNZIP_FAILED
    else:
        assert refusal.message == code.UNZIP_FAILED
        assert re.search(bad.cause, str(refusal.__cause__)), refusal.__cause__
    assert_nothing_left(tmp_path, dest, before)
    assert os.path.lexists("/etc/evil") == etc_evil
    if bad.early:
        assert not dest.exists(), "refused only after starting to write"


def assert_nothing_left(tmp_path: Path, dest: Path, before: set[str]) -> None:
    created = tree(tmp_path) - before
    allowed = {str(p.relative_to(tmp_path)) for p in (dest, *dest.parents) if tmp_path in p.parents}
    assert created <= allowed, f"created outside dest_root: {sorted(created - allowed)}"
    if dest.exists():
        assert list(dest.iterdir()) == [], "a half-unpacked directory was left behind"


def test_a_full_disk_is_the_services_fault_not_the_zips(
    dest: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full_disk(path: object, mode: str = "r") -> io.BufferedWriter:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(code, "open", full_disk, raising=False)  # shadows the builtin there
    before = tree(tmp_path)
    with pytest.raises(ServiceException, match=r"could not write the unpacked code: .*No space"):
        prepare_code(build_zip(SAMPLE), dest)
    assert_nothing_left(tmp_path, dest, before)


def test_real_size_counter_stops_a_member_past_the_limit(
    dest: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bytes written are counted too, should a declared size ever get past the check."""
    monkeypatch.setattr(code, "UNZIPPED_LIMIT", 1000)
    monkeypatch.setattr(code, "_check_members", lambda members: None)
    data = build_zip([Member("a.py", b"x" * 600), Member("b.bin", bytes(600))])
    before = tree(tmp_path)
    with pytest.raises(
        InvalidParameterValueException, match="Unzipped size must be smaller than 1000 bytes"
    ):
        prepare_code(data, dest)
    assert_nothing_left(tmp_path, dest, before)


def test_limit_is_lambdas_250_mb() -> None:
    assert LIMIT == 250 * 1024 * 1024 == 262_144_000


def test_declared_size_at_the_limit_is_accepted(
    dest: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(code, "UNZIPPED_LIMIT", 1000)
    out = Path(prepare_code(build_zip([Member("a", bytes(500)), Member("b", bytes(500))]), dest))
    assert (out / "a").stat().st_size + (out / "b").stat().st_size == 1000


def test_zip_of_zeros_over_the_limit_is_refused_cheaply(
    dest: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A small, highly compressible bomb: refused from its declared size, nothing unpacked."""
    monkeypatch.setattr(code, "UNZIPPED_LIMIT", 1_000_000)
    data = build_zip([Member("zeros.bin", bytes(2_000_000))])
    assert len(data) < 10_000
    with pytest.raises(InvalidParameterValueException, match="Unzipped size"):
        prepare_code(data, dest)
    assert not dest.exists()


def test_path_that_does_not_exist(tmp_path: Path, dest: Path) -> None:
    missing = tmp_path / "nope.zip"
    with pytest.raises(
        InvalidParameterValueException,
        match=r"code: '.*nope\.zip' is neither a directory nor a \.zip file",
    ):
        prepare_code(missing, dest)
    with pytest.raises(
        InvalidParameterValueException, match=r"neither a directory nor a \.zip file"
    ):
        prepare_code(str(missing), dest)
    assert tree(tmp_path) == set()


def test_empty_file(tmp_path: Path, dest: Path) -> None:
    empty = tmp_path / "empty.zip"
    empty.touch()
    with pytest.raises(InvalidParameterValueException, match=re.escape(code.UNZIP_FAILED)):
        prepare_code(empty, dest)
    assert tree(tmp_path) == {"empty.zip"}


def test_random_mutations_only_ever_raise_zip_errors(tmp_path: Path, dest: Path) -> None:
    """Flipped bytes anywhere in a good zip: unpacked, or refused as a bad parameter (400)."""
    rng = random.Random(1234)
    good = build_zip([*SAMPLE[:3], Member("lib/x.py", b"x = 1\n" * 50)])
    for _ in range(400):
        data = bytearray(good)
        for _ in range(rng.randint(1, 3)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        try:
            out = prepare_code(bytes(data), dest)
        except InvalidParameterValueException:
            continue
        assert Path(out).parent == dest
    for entry in dest.iterdir():
        for path in entry.rglob("*"):
            if path.is_symlink():
                real = Path(os.path.realpath(path))
                assert real == entry or entry in real.parents
