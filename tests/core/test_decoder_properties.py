"""Property tests of the decoders that take outside bytes: zip uploads, the TOML configuration
file, SigV4 headers and schedule expressions.

Each decoder either decodes its input or refuses it with its own error (the one its callers
turn into a 4xx answer or a message naming the key); no input makes it raise anything else.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import stat
import tempfile
import types
import typing
import warnings
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar, cast
from unittest import mock
from urllib.parse import urlsplit

import msgspec
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from runtime.code import prepare_code, remove_code
from runtime.config import BatchConfig, FunctionConfig, PoolConfig
from runtime.configfile import (
    AuthConfig,
    ConfigFile,
    ConfigFileError,
    RouteConfig,
    ScheduleConfig,
    ServiceConfig,
    load,
)
from runtime.errors import InvalidParameterValueException
from runtime.schedules.expressions import Schedule, ScheduleExpressionError
from runtime.schedules.expressions import parse as parse_schedule
from runtime.service.auth import ALGORITHM, AuthError, check_authorization, verify_sigv4

UTC = timezone.utc

T = TypeVar("T")
E = TypeVar("E", bound=BaseException)

PROPERTY = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def attempt(call: Callable[[], T], error: type[E]) -> T | E:
    """What ``call`` returns, or the ``error`` it raises; any other exception propagates."""
    try:
        return call()
    except error as exc:
        return exc


def mostly(usual: st.SearchStrategy[T], odd: st.SearchStrategy[T]) -> st.SearchStrategy[T]:
    """``usual`` three times in four, else ``odd``."""
    return st.integers(0, 3).flatmap(lambda n: odd if n == 0 else usual)


# -- zip uploads (runtime/code.py) -------------------------------------------------------------

#: replaced by "<the example's root>/outside": absolute member names that point somewhere
#: this test can look, instead of at the real file system
OUT = "@OUT@"


@dataclass(frozen=True)
class Entry:
    """A zip member as Hypothesis draws it; a name ending in '/' is a directory."""

    name: str
    data: bytes = b""
    deflate: bool = False
    link: str | None = None


def zip_of(entries: list[Entry], outside: str) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns on duplicate names; they are the point
        with zipfile.ZipFile(buf, "w") as zf:
            for entry in entries:
                name = stored_name(entry.name.replace(OUT, outside))
                # zipfile cannot write an empty name (ZipInfo.is_dir fails): forge it below
                info = zipfile.ZipInfo(name or "\x7f", (2024, 1, 1, 0, 0, 0))
                info.create_system = 3
                info.compress_type = zipfile.ZIP_DEFLATED if entry.deflate else zipfile.ZIP_STORED
                if entry.link is not None:
                    info.external_attr = (stat.S_IFLNK | 0o777) << 16
                    zf.writestr(info, entry.link.replace(OUT, outside))
                elif info.is_dir():
                    info.external_attr = (stat.S_IFDIR | 0o755) << 16 | 0x10
                    zf.writestr(info, b"")
                else:
                    info.external_attr = (stat.S_IFREG | 0o644) << 16
                    zf.writestr(info, entry.data)
                info.filename = name  # the central directory is written from these at close
    return buf.getvalue()


component = st.one_of(
    st.sampled_from(
        ["..", ".", "", "a", "b", "A", "\u00e9", "C:", "x\\y", "\\", " ", "\uff41", "\u200b"]
    ),
    st.text(st.characters(exclude_characters="/"), max_size=8),
)
#: a name any unpacker should accept (unless another member makes it a file and a directory)
safe_name = st.builds(
    lambda lead, parts, trail: lead + "/".join(parts) + trail,
    st.sampled_from(["", "./"]),
    st.lists(
        st.sampled_from(["a", "b", "lib", "x.py", "\u00e9", " ", "a:b"]), min_size=1, max_size=3
    ),
    st.sampled_from(["", "/"]),
)
wild_name = st.builds(
    lambda lead, parts, trail: lead + "/".join(parts) + trail,
    st.sampled_from(["", "", "", "/", "//", f"/{OUT}/", "./", "../"]),
    st.lists(component, max_size=4),
    st.sampled_from(["", "", "/"]),
)
member_name = mostly(safe_name, wild_name)
member = st.builds(Entry, member_name, st.binary(max_size=64), st.booleans())


@st.composite
def members(draw: st.DrawFn) -> list[Entry]:
    """Random members, some of them repeated (the same name with other contents)."""
    drawn = draw(st.lists(member, max_size=6))
    if len(drawn) > 0 and draw(st.booleans()):
        again = draw(st.sampled_from(drawn))
        drawn.insert(draw(st.integers(0, len(drawn))), replace(again, data=draw(st.binary())))
    return drawn


def stored_name(name: str) -> str:
    """The name zipfile writes and reads back: it cuts a name at its first NUL."""
    return name.partition("\x00")[0]


def name_parts(name: str) -> tuple[str, ...] | None:
    """The path a member name stands for inside the code directory, or None when the archive
    must be refused for it: backslashes, an empty name, an absolute path or a drive, '..'."""
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if "\\" in name or name.startswith("/") or (not parts and not name.endswith("/")):
        return None
    if ".." in parts or (parts and parts[0].endswith(":")):
        return None
    return parts


def expected_tree(names: list[str], entries: list[Entry]) -> tuple[dict[str, bytes], set[str]]:
    """Files (path -> contents) and directories after writing the members in order; raises
    ValueError when one member needs a directory where another put a file, or the reverse."""
    kinds: dict[tuple[str, ...], str] = {}
    files: dict[tuple[str, ...], bytes] = {}

    def make_dirs(parts: tuple[str, ...]) -> None:
        for i in range(1, len(parts) + 1):
            if kinds.setdefault(parts[:i], "dir") != "dir":
                raise ValueError(f"{parts[:i]} is a file")

    for name, entry in zip(names, entries, strict=True):
        parts = name_parts(name)
        assert parts is not None
        if name.endswith("/"):
            make_dirs(parts)
            continue
        make_dirs(parts[:-1])
        if kinds.setdefault(parts, "file") != "file":
            raise ValueError(f"{parts} is a directory")
        files[parts] = entry.data
    dirs = {"/".join(p) for p, kind in kinds.items() if kind == "dir"}
    return {"/".join(p): data for p, data in files.items()}, dirs


def unpacked_tree(root: Path) -> tuple[dict[str, bytes], set[str]]:
    files = {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    dirs = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_dir()}
    return files, dirs


@dataclass
class Upload:
    """One example's directories: ``dest`` (dest_root) two levels down in ``root``, so that
    every '..' or absolute name drawn here would land inside ``root`` if it escaped."""

    root: Path
    made: list[Path] = field(default_factory=list)

    @property
    def dest(self) -> Path:
        return self.root / "work" / "functions"

    @property
    def outside(self) -> str:
        return str(self.root / "outside").lstrip("/")

    def unpack(self, source: bytes, via_file: bool = False) -> Path | None:
        """The new code directory, or None when the upload was refused; either way checks
        that nothing was written outside dest_root and a refusal left nothing behind."""
        before = set(self.dest.iterdir()) if self.dest.exists() else set()
        code: bytes | Path = source
        if via_file:
            code = self.root / "upload.zip"
            code.write_bytes(source)
        result = attempt(lambda: prepare_code(code, self.dest), InvalidParameterValueException)
        if isinstance(result, InvalidParameterValueException):
            assert type(result) is InvalidParameterValueException
            assert result.status == 400
        out = None if isinstance(result, InvalidParameterValueException) else Path(result)
        around = {p.name for p in self.root.iterdir()} - {"work", "upload.zip"}
        assert not around, f"written outside dest_root: {around}"
        if (self.root / "work").exists():
            assert {p.name for p in (self.root / "work").iterdir()} <= {"functions"}
        after = set(self.dest.iterdir()) if self.dest.exists() else set()
        if out is None:
            assert after == before, "a refused upload left something behind"
            return None
        assert out.parent == Path(os.path.realpath(self.dest))
        assert after - before == {out}, "not unpacked into one fresh directory"
        for path in out.rglob("*"):
            real = Path(os.path.realpath(path))
            assert real == out or out in real.parents, f"{path} resolves outside"
        self.made.append(out)
        return out


@pytest.fixture
def upload(tmp_path: Path) -> Iterator[Callable[[], Upload]]:
    """A fresh Upload for each Hypothesis example; what they unpacked is removed after."""
    uploads: list[Upload] = []

    def fresh() -> Upload:
        uploads.append(Upload(Path(tempfile.mkdtemp(dir=tmp_path))))
        return uploads[-1]

    yield fresh
    for made in (out for up in uploads for out in up.made):
        assert remove_code(str(made))
        assert not made.exists()


@settings(PROPERTY, max_examples=150)
@given(entries=members())
def test_zip_unpacks_exactly_its_members_or_is_refused_whole(
    upload: Callable[[], Upload], entries: list[Entry]
) -> None:
    up = upload()
    names = [stored_name(e.name.replace(OUT, up.outside)) for e in entries]
    out = up.unpack(zip_of(entries, up.outside))
    event("unpacked" if out else "refused")
    if any(name_parts(name) is None for name in names):
        assert out is None, f"unsafe member unpacked: {names}"
        return
    try:
        expected = expected_tree(names, entries)
    except ValueError:  # a file and a directory of one name: refused, like a corrupt zip
        assert out is None
        return
    assert out is not None, f"safe members refused: {names}"
    assert unpacked_tree(out) == expected


arbitrary_zip_bytes = st.one_of(
    st.binary(max_size=512),
    # an end-of-central-directory record with random fields, so the parser reads further
    st.builds(lambda head, tail: head + b"PK\x05\x06" + tail, st.binary(), st.binary(max_size=24)),
    st.builds(lambda a, b: b"PK\x03\x04" + a + b"PK\x01\x02" + b, st.binary(), st.binary()),
)


@settings(PROPERTY, max_examples=200)
@given(data=arbitrary_zip_bytes, via_file=st.booleans())
def test_arbitrary_bytes_are_unpacked_or_refused(
    upload: Callable[[], Upload], data: bytes, via_file: bool
) -> None:
    upload().unpack(data, via_file)


BASE_ENTRIES = [
    Entry("app.py", b"def handler(event, context):\n    return event\n" * 4, deflate=True),
    Entry("lib/"),
    Entry("lib/util.py", b"X = 1\n", deflate=False),
    Entry("lib/data.bin", bytes(range(256)), deflate=True),
    Entry("lib/link", link="util.py"),
    Entry("up", link="lib/.."),
]


@settings(PROPERTY, max_examples=200)
@given(
    flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1),
    via_file=st.booleans(),
)
def test_a_zip_with_flipped_bytes_is_unpacked_or_refused(
    upload: Callable[[], Upload], flips: list[tuple[float, int]], via_file: bool
) -> None:
    up = upload()
    data = bytearray(zip_of(BASE_ENTRIES, up.outside))
    for where, value in flips:
        data[int(where * len(data))] = value
    up.unpack(bytes(data), via_file)


@settings(PROPERTY, max_examples=100)
@given(
    entries=st.lists(member, max_size=3),
    links=st.lists(st.tuples(member_name, member_name), min_size=1, max_size=3),
)
def test_links_never_resolve_outside_the_code_directory(
    upload: Callable[[], Upload], entries: list[Entry], links: list[tuple[str, str]]
) -> None:
    up = upload()
    entries = entries + [Entry(name.rstrip("/") or "x", link=target) for name, target in links]
    up.unpack(zip_of(entries, up.outside))


# -- the TOML configuration file (runtime/configfile.py) ---------------------------------------

#: TOML promises 64-bit integers; tomllib reads any size
toml_int = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.integers(),
    st.sampled_from([2**63 - 1, -(2**63), 2**63, -(2**63) - 1, 2**64, -(10**30)]),
)
toml_scalar = st.one_of(
    st.text(max_size=10),
    toml_int,
    st.floats(),
    st.booleans(),
    st.datetimes(timezones=st.none() | st.just(UTC)),
    st.dates(),
    st.times(),
)
toml_key = st.text(max_size=6)
toml_value = st.recursive(
    toml_scalar,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(toml_key, inner, max_size=3),
    max_leaves=6,
)

FUNCTION_NAMES = ["hello", "fn-2", "bad name", ""]
#: plausible strings for fields whose type alone says little
PLAUSIBLE: dict[str, list[Any]] = {
    "handler": ["app.handler", "a b"],
    "code": ["code", "fn.zip", "~/code", "/abs/code", ""],
    "runtime": ["python3", "/usr/bin/python3", "../python", "py thon"],
    "image": ["img:latest", ""],
    "host": ["127.0.0.1", "0.0.0.0", "", "a b"],
    "function": FUNCTION_NAMES,
    "expression": ["rate(5 minutes)", "cron(0 3 * * ? *)", "rate(1 hours)", "cron(* * * * * *)"],
    "input": ['{"a": 1}', "not json", {"report": "daily"}, {"a": [1, {"b": "c"}]}],
    "work_dir": ["state", "~", ""],
    "data_dir": ["data", ""],
    "keys": [{"AKIDEXAMPLE": "secret"}, {"bad id": "s"}, {"K": ""}, {"K": 1}],
    "api_keys": [["a-key"], ["a-key", "a-key"], ["has space"], [""], [1]],
    "environment": [{"GREETING": "hi"}, {"AWS_REGION": "x"}, {"A": "1"}, {"GOOD": 1}],
}


def for_hint(hint: Any) -> st.SearchStrategy[Any]:
    """Values of a struct field's declared type (None has no TOML spelling)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is bool:
        return st.booleans()
    if hint is int:
        return st.integers(-5, 20_000) | toml_int
    if hint is float:
        return st.floats() | st.integers(-5, 5_000)
    if hint is str:
        return st.text(max_size=10)
    if origin is typing.Literal:
        return st.sampled_from(args)
    if origin in (typing.Union, types.UnionType):
        return st.one_of([for_hint(a) for a in args if a is not type(None)])
    if origin is dict:
        return st.dictionaries(st.text(max_size=6), for_hint(args[1]), max_size=3)
    if origin in (list, tuple):
        return st.lists(for_hint(args[0]), max_size=2)
    if isinstance(hint, type) and issubclass(hint, msgspec.Struct):
        return table_of(hint)
    raise AssertionError(f"no strategy for {hint!r}")


def table_of(
    struct: type[msgspec.Struct], hidden: frozenset[str] = frozenset()
) -> st.SearchStrategy[dict[str, Any]]:
    """A table of ``struct``'s fields, each sometimes present, mostly with a value of its type
    or a plausible one, else anything; now and then with an unknown or a hidden key."""
    hints = typing.get_type_hints(struct)
    fields = {}
    for name in struct.__struct_fields__:
        if name in hidden:
            continue
        typed = for_hint(hints[name])
        if name in PLAUSIBLE:
            typed = st.sampled_from(PLAUSIBLE[name]) | typed
        fields[name] = mostly(typed, toml_value)
    extra_key = st.sampled_from(sorted(hidden | {"nmae", "method", "path"})) | toml_key
    extra: st.SearchStrategy[dict[str, Any]] = st.just({}) | st.dictionaries(
        extra_key, toml_value, max_size=1
    )
    return st.builds(
        lambda known, more: {**known, **more}, st.fixed_dictionaries({}, optional=fields), extra
    )


def named_tables(names: list[str], table: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.dictionaries(st.sampled_from(names) | st.text(max_size=8), table, max_size=3)


ROUTE_KEYS = ["GET /hello", "$default", "ANY /{proxy+}", "POST /a/{id}", "POST /a/{other}", "GET"]
RULE_NAMES = ["nightly", "every.5-min_x", "bad name"]

SECTIONS: dict[str, st.SearchStrategy[Any]] = {
    "pool": table_of(PoolConfig),
    "functions": named_tables(FUNCTION_NAMES, table_of(FunctionConfig, frozenset({"name"}))),
    "service": table_of(ServiceConfig),
    "auth": table_of(AuthConfig),
    "routes": named_tables(ROUTE_KEYS, table_of(RouteConfig, frozenset({"key"}))),
    "schedules": named_tables(RULE_NAMES, table_of(ScheduleConfig, frozenset({"name"}))),
    "batch": table_of(BatchConfig),
}

config_document = st.builds(
    lambda known, unknown: {**known, **unknown},
    st.fixed_dictionaries(
        {}, optional={name: section | toml_value for name, section in SECTIONS.items()}
    ),
    st.just({})
    | st.dictionaries(
        st.sampled_from(["pools", "function", "x.y"]) | toml_key, toml_value, max_size=1
    ),
)


def toml_text(value: Any) -> str:
    """``value`` in TOML, tables inline."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_text(v) for v in value) + "]"
    assert isinstance(value, dict)
    return "{" + ", ".join(f"{toml_text(k)} = {toml_text(v)}" for k, v in value.items()) + "}"


def toml_document(doc: dict[str, Any]) -> str:
    return "".join(f"{toml_text(key)} = {toml_text(value)}\n" for key, value in doc.items())


def loads_or_refuses(path: Path) -> ConfigFile | ConfigFileError:
    config = attempt(lambda: load(path), ConfigFileError)
    if isinstance(config, ConfigFileError):
        where = f"{path}: {config.key}" if config.key else str(path)
        assert config.path == str(path)
        assert config.reason
        assert str(config) == f"{where}: {config.reason}"
        return config
    assert isinstance(config, ConfigFile)
    assert config.path == str(path)
    return config


def check_document(tmp_path: Path, doc: dict[str, Any]) -> ConfigFile | ConfigFileError:
    """Written as TOML, ``doc`` loads, or is refused naming a key in one of its sections."""
    path = tmp_path / "warmstart.toml"
    path.write_text(toml_document(doc), encoding="utf-8")
    outcome = loads_or_refuses(path)
    if isinstance(outcome, ConfigFileError):
        key = outcome.key
        assert key is not None, f"a valid TOML document refused without a key: {outcome}"
        assert any(key == top or key.startswith(top + ".") for top in doc), (key, sorted(doc))
        event(f"refused in [{next((top for top in SECTIONS if key.startswith(top)), 'other')}]")
    else:
        event("loaded")
        assert set(doc) <= set(SECTIONS)
    return outcome


@settings(PROPERTY, max_examples=150)
@given(doc=config_document)
def test_a_config_document_loads_or_is_refused_naming_a_key(
    tmp_path: Path, doc: dict[str, Any]
) -> None:
    check_document(tmp_path, doc)


@st.composite
def one_section(draw: st.DrawFn) -> dict[str, Any]:
    """One section alone, next to a valid [functions.hello], so that each section is reached
    and checked past the others."""
    name = draw(st.sampled_from(sorted(SECTIONS)))
    return {
        "functions": {"hello": {"handler": "app.handler", "code": "c"}},
        name: draw(SECTIONS[name]),
    }


@settings(PROPERTY, max_examples=150)
@given(doc=one_section())
def test_each_section_loads_or_is_refused_naming_a_key(tmp_path: Path, doc: dict[str, Any]) -> None:
    check_document(tmp_path, doc)


#: two levels of tables and arrays are enough for what JSON encoding can trip on
shallow = toml_scalar | st.lists(toml_scalar, max_size=2)
input_table = st.dictionaries(
    toml_key, shallow | st.dictionaries(toml_key, shallow, max_size=2), max_size=3
)


@settings(PROPERTY, max_examples=100)
@given(table=input_table)
def test_a_schedule_input_table_is_sent_as_json_or_refused(
    tmp_path: Path, table: dict[str, Any]
) -> None:
    """An inline ``input`` table is encoded as the JSON text the target receives."""
    rule = {"expression": "rate(5 minutes)", "function": "hello", "input": table}
    doc = {"functions": {"hello": {"handler": "app.handler", "code": "c"}}}
    outcome = check_document(tmp_path, {**doc, "schedules": {"nightly": rule}})
    if isinstance(outcome, ConfigFile):
        sent = outcome.schedules["nightly"].input
        assert sent is not None
        assert isinstance(json.loads(sent), dict)


@settings(PROPERTY, max_examples=200)
@given(
    data=st.one_of(
        st.binary(max_size=200),
        st.text(max_size=200).map(str.encode),
        st.builds(
            lambda t, b: t.encode() + b,
            st.sampled_from(['[pool]\nx = "', "[functions.a]\n", "a = 1\n"]),
            st.binary(max_size=20),
        ),
    )
)
def test_any_bytes_as_a_config_file_load_or_are_refused(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "warmstart.toml"
    path.write_bytes(data)
    loads_or_refuses(path)


# -- SigV4 headers (runtime/service/auth.py) ---------------------------------------------------

AKID = "AKIDEXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
CREDS = {AKID: SECRET, "AKIDOTHER": "other-secret"}
T0 = datetime(2024, 1, 1, 0, 0, 0)
INVOKE = "/2015-03-31/functions/my-fn/invocations"
#: every code verify_sigv4 documents, with its HTTP status
AWS_CODES = {
    "MissingAuthenticationTokenException": 403,
    "IncompleteSignatureException": 400,
    "UnrecognizedClientException": 403,
    "InvalidSignatureException": 403,
}


@dataclass(frozen=True)
class Signed:
    """A request signed by botocore, as the server receives it (see tests/test_auth.py)."""

    path: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str:
        return next(v for k, v in self.headers if k.lower() == name.lower())

    def with_headers(self, *pairs: tuple[str, str], drop: tuple[str, ...] = ()) -> Signed:
        names = {n.lower() for n in drop} | {n.lower() for n, _ in pairs}
        kept = [(k, v) for k, v in self.headers if k.lower() not in names]
        return replace(self, headers=[*kept, *pairs])


def sign(body: bytes = b'{"k": "v"}') -> Signed:
    request = AWSRequest(method="POST", url="http://127.0.0.1:9000" + INVOKE, data=body)
    with mock.patch("botocore.auth.get_current_datetime", return_value=T0):
        SigV4Auth(Credentials(AKID, SECRET), "lambda", "us-east-1").add_auth(request)
    prepared = request.prepare()
    parts = urlsplit(prepared.url)
    wire = [*prepared.headers.items(), ("Host", parts.netloc)]
    # the body went in as bytes, and prepare() hands it on as it was
    return Signed(parts.path, wire, cast(bytes, prepared.body or b""))


SIGNED = sign()
REAL_AUTH = SIGNED.header("Authorization")
REAL_FIELDS = REAL_AUTH.partition(" ")[2].split(", ")  # Credential=..., SignedHeaders=..., ...
REAL_VALUES = dict(f.split("=", 1) for f in REAL_FIELDS)
REAL_HASH = hashlib.sha256(SIGNED.body).hexdigest()


def outcome(signed: Signed, **kw: Any) -> str | AuthError:
    """What verify_sigv4 says, checked against check_authorization (its body-less half)."""
    early = attempt(lambda: check_authorization(signed.headers, CREDS, T0, **kw), AuthError)
    result = attempt(
        lambda: verify_sigv4("POST", signed.path, "", signed.headers, signed.body, CREDS, T0, **kw),
        AuthError,
    )
    if isinstance(result, AuthError):
        assert AWS_CODES.get(result.code) == result.status, (result.code, result.status)
        assert result.message
    if isinstance(early, AuthError):  # refused before the body: refused the same way after
        assert isinstance(result, AuthError)
        assert (result.code, result.message) == (early.code, early.message)
    else:  # a known key id, the signature not checked yet
        assert early in CREDS
    if not isinstance(result, AuthError):  # only the one key that signed verifies
        assert result == early == AKID
    return result


def refused(signed: Signed, **kw: Any) -> AuthError:
    result = outcome(signed, **kw)
    assert isinstance(result, AuthError), "an altered request verified"
    return result


header_text = st.text(max_size=40) | st.text(st.characters(max_codepoint=255), max_size=40)

credential = st.one_of(
    st.just(REAL_VALUES["Credential"]),
    st.lists(
        st.sampled_from(
            [
                *REAL_VALUES["Credential"].split("/"),
                "",
                "x",
                "2024010",
                "\u0662\u0660\u0662\u0664\u0660\u0661\u0660\u0661",
            ]
        )
        | header_text,
        max_size=7,
    ).map("/".join),
)
signed_headers = st.one_of(
    st.just(REAL_VALUES["SignedHeaders"]),
    st.lists(
        st.sampled_from(["host", "Host", " host ", ":authority", "x-amz-date", ""]) | header_text,
        max_size=4,
    ).map(";".join),
)
signature_value = st.one_of(
    st.just(REAL_VALUES["Signature"]),
    st.text("0123456789abcdefABCDEF", max_size=70),
    header_text,
)
scope_part = (
    st.sampled_from(
        ["", "AKIDOTHER", "NOPE", "20240102", "2024-01-01", "eu-west-1", "ecs", "aws4_request "]
    )
    | header_text
)
auth_field = st.one_of(
    credential.map("Credential={}".format),
    signed_headers.map("SignedHeaders={}".format),
    signature_value.map("Signature={}".format),
    st.sampled_from(REAL_FIELDS),
    st.builds(
        "{}{}{}".format,
        st.sampled_from(["Credential", "credential", "SignedHeaders ", " Signature", "Sig", ""]),
        st.sampled_from(["=", "==", "", " = "]),
        header_text,
    ),
    header_text,
)


@st.composite
def authorization(draw: st.DrawFn) -> str:
    """Near misses of ``AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...``:
    the real fields dropped, repeated, reordered, emptied or replaced, or made up, with odd
    separators and prefixes."""
    prefixes = ["AWS4-HMAC-SHA256", " AWS4-HMAC-SHA256", "aws4-hmac-sha256", "AWS4-HMAC-SHA1"]
    prefix = draw(mostly(st.just(ALGORITHM), st.sampled_from(prefixes) | header_text))
    if draw(st.booleans()):
        fields = draw(st.lists(auth_field, max_size=6))
    else:
        fields = list(REAL_FIELDS)
        for _ in range(draw(st.integers(0, 3))):
            ops = ["drop", "repeat", "swap", "replace", "empty", "insert", "scope", "scope"]
            op = draw(st.sampled_from(ops))
            i = draw(st.integers(0, max(len(fields) - 1, 0)))
            if op == "scope":  # one element of the credential scope changed
                parts = REAL_VALUES["Credential"].split("/")
                parts[draw(st.integers(0, 4))] = draw(scope_part)
                fields = [f for f in fields if not f.startswith("Credential=")]
                fields.insert(i, "Credential=" + "/".join(parts))
            elif op == "insert" or not fields:
                fields.insert(i, draw(auth_field))
            elif op == "drop":
                del fields[i]
            elif op == "repeat":
                fields.insert(i, fields[i])
            elif op == "swap":
                j = draw(st.integers(0, len(fields) - 1))
                fields[i], fields[j] = fields[j], fields[i]
            elif op == "replace":
                fields[i] = draw(auth_field)
            else:
                fields[i] = fields[i].partition("=")[0] + "="
    gap = mostly(
        st.just(", "), st.sampled_from([",", ",,", " , ", ";", " ", "", ",\u00a0", ", \t"])
    )
    separators = draw(st.lists(gap, min_size=len(fields), max_size=len(fields)))
    space = draw(mostly(st.just(" "), st.sampled_from(["", "  ", "\t", ", "])))
    return (
        prefix
        + space
        + "".join(
            sep + f if i else f for i, (sep, f) in enumerate(zip(separators, fields, strict=True))
        )
    )


@settings(PROPERTY, max_examples=200)
@given(value=header_text)
def test_any_authorization_text_is_incomplete(value: str) -> None:
    err = refused(SIGNED.with_headers(("Authorization", value)))
    assert err.code == "IncompleteSignatureException"


@settings(PROPERTY, max_examples=300)
@given(values=st.lists(authorization(), max_size=2))
def test_near_miss_authorization_headers_verify_or_are_refused_with_aws_codes(
    values: list[str],
) -> None:
    signed = SIGNED.with_headers(*(("Authorization", v) for v in values), drop=("Authorization",))
    result = outcome(signed)
    event(str(getattr(result, "code", result)))
    assert result == AKID or isinstance(result, AuthError)
    if not values:
        assert isinstance(result, AuthError)
        assert result.code == "MissingAuthenticationTokenException"


@settings(PROPERTY, max_examples=100)
@given(
    day=(
        st.text(st.characters(categories=["Nd"]), min_size=8, max_size=8) | st.text(max_size=10)
    ).filter(lambda d: not re.fullmatch("[0-9]{8}", d))
)
def test_a_credential_date_that_is_not_yyyymmdd_is_incomplete(day: str) -> None:
    """The scope's date is eight ASCII digits; any other digits are not YYYYMMDD."""
    credential = REAL_VALUES["Credential"].replace("/20240101/", f"/{day}/")
    header = REAL_AUTH.replace(REAL_VALUES["Credential"], credential)
    err = refused(SIGNED.with_headers(("Authorization", header)))
    assert err.code == "IncompleteSignatureException", err.message


amz_date = st.one_of(
    header_text,
    st.datetimes().map(lambda t: t.strftime("%Y%m%dT%H%M%SZ")),
    st.builds(
        "{}T{}Z".format,
        st.text("0123456789\u0660\u0661\u0662", min_size=7, max_size=9),
        st.text("0123456789\u0660\u0661\u0662", min_size=5, max_size=7),
    ),
    st.sampled_from(
        ["20241301T000000Z", "20240230T000000Z", "20240101T246000Z", "20240101T000000z"]
    ),
)


@settings(PROPERTY, max_examples=200)
@given(value=amz_date)
def test_any_x_amz_date_is_refused_unless_it_is_the_signed_one(value: str) -> None:
    result = outcome(SIGNED.with_headers(("X-Amz-Date", value)))
    assert (result == AKID) == (value == SIGNED.header("X-Amz-Date")), result


http_date = st.one_of(
    header_text,
    st.builds(
        "{}{}".format,
        # near the ends of the calendar too, where an offset moves the instant off it
        st.one_of(
            st.datetimes(),
            st.datetimes(datetime(9999, 12, 31)),
            st.datetimes(max_value=datetime(1, 1, 1, 1)),
        ).map(lambda t: t.strftime("%a, %d %b %Y %H:%M:%S ")),
        st.sampled_from(["GMT", "-0000", "+2359", "-2359", "-0001", "+0001"]),
    ),
    st.builds(
        "{}, {:02d} {} {} {:02d}:{:02d}:{:02d} {}".format,
        st.sampled_from(["Mon", "Fri", "Xyz"]),
        st.integers(0, 99),
        st.sampled_from(["Jan", "Feb", "Dec", "Foo"]),
        st.sampled_from([0, 1, 69, 99, 1970, 2024, 9999, 10000]) | st.integers(0, 99999),
        st.integers(0, 99),
        st.integers(0, 99),
        st.integers(0, 99),
        st.sampled_from(["GMT", "UT", "EST", "-0000", "+2359", "-2359", "+9999", "Z", ""])
        | st.integers(-9999, 9999).map("{:+05d}".format),
    ),
)


@settings(PROPERTY, max_examples=200)
@given(value=http_date)
def test_any_date_header_is_refused_with_aws_codes(value: str) -> None:
    """``Date`` stands in for a missing ``X-Amz-Date``; the signature covered the latter."""
    refused(SIGNED.with_headers(("Date", value), drop=("X-Amz-Date",)))


@st.composite
def content_sha256(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["text", "hex", "mutated", "unsigned"]))
    if kind == "text":
        return draw(header_text)
    if kind == "hex":
        return draw(st.text("0123456789abcdefABCDEF", min_size=62, max_size=66))
    if kind == "unsigned":
        return draw(st.sampled_from(["UNSIGNED-PAYLOAD", "unsigned-payload", "UNSIGNED-PAYLOAD "]))
    chars = list(REAL_HASH)
    for _ in range(draw(st.integers(0, 2))):
        i = draw(st.integers(0, len(chars) - 1))
        chars[i] = draw(st.sampled_from("0123456789abcdefABCDEFgé "))
    return "".join(chars)


@settings(PROPERTY, max_examples=200)
@given(value=content_sha256(), unsigned_payload=st.booleans())
def test_any_x_amz_content_sha256_is_refused_unless_it_is_the_body_hash(
    value: str, unsigned_payload: bool
) -> None:
    result = outcome(
        SIGNED.with_headers(("X-Amz-Content-Sha256", value)), unsigned_payload=unsigned_payload
    )
    assert (result == AKID) == (value == REAL_HASH), result
    if value == "UNSIGNED-PAYLOAD" and not unsigned_payload:
        assert isinstance(result, AuthError)
        assert result.code == "IncompleteSignatureException"


# -- schedule expressions (runtime/schedules/expressions.py) --------------------------------------

MONTHS = ["JAN", "FEB", "DEC", "jul", "Foo"]
WEEKDAYS = ["SUN", "MON", "FRI", "sat", "Xyz"]
TOKENS = [*"*?LW#,-/0123456789", *MONTHS, *WEEKDAYS, "LW", "15W", "6L", "2#3"]
#: any run of the symbols and words cron fields are made of
token_soup = st.lists(st.sampled_from(TOKENS), min_size=1, max_size=4).map("".join)


def cron_list(low: int, high: int, names: list[str] | None = None) -> st.SearchStrategy[str]:
    """A list field: ``*``, values, ranges and steps, mostly in range, some just outside."""
    inside = st.integers(low, high)
    number = mostly(inside, st.integers(low - 2, high + 2)).map(str)
    value = number | st.sampled_from(names) if names else number
    ordered = st.builds(lambda a, b: f"{min(a, b)}-{max(a, b)}", inside, inside)
    span = ordered | st.builds("{}-{}".format, value, value)
    step = (st.integers(1, high - low + 1) | st.integers(0, high - low + 2)).map(str)
    item = st.one_of(
        st.just("*"), value, span, st.builds("{}/{}".format, st.just("*") | value | span, step)
    )
    return st.lists(item, min_size=1, max_size=3).map(",".join)


day_of_month = st.one_of(
    cron_list(1, 31),
    st.sampled_from(["L", "LW", "l", "lw", "W", "L-5"]),
    st.integers(0, 32).map("{}W".format),
)
day_of_week = st.one_of(
    cron_list(1, 7, WEEKDAYS),
    st.sampled_from(["L", "MONL", "1-2L"]),
    st.integers(0, 8).map("{}L".format),
    st.builds(
        "{}#{}".format, st.integers(0, 8).map(str) | st.sampled_from(WEEKDAYS), st.integers(0, 6)
    ),
)
#: (Day-of-month, Day-of-week): mostly one of them '?', as EventBridge requires
days = mostly(
    st.tuples(day_of_month, st.just("?")) | st.tuples(st.just("?"), day_of_week),
    st.tuples(day_of_month, day_of_week) | st.just(("?", "?")),
)


MINUTES = cron_list(0, 59)
HOURS = cron_list(0, 23)
MONTH = cron_list(1, 12, MONTHS)
YEAR = cron_list(1970, 2199)


@st.composite
def cron_expression(draw: st.DrawFn) -> str:
    """Six fields of the right shapes; now and then one replaced by anything, or one more or
    one fewer."""
    dom, dow = draw(days)
    fields = [draw(MINUTES), draw(HOURS), dom, draw(MONTH), dow, draw(YEAR)]
    change = draw(st.sampled_from(["none"] * 5 + ["replace", "add", "drop"]))
    i = draw(st.integers(0, 5))
    if change == "replace":
        fields[i] = draw(token_soup | st.text(max_size=4))
    elif change == "add":
        fields.insert(i, draw(token_soup))
    elif change == "drop":
        del fields[i]
    gap = draw(st.sampled_from([" ", "  ", "\t", " \n"]))
    return f"cron({gap.join(fields)})"


rate_value = st.integers(0, 10**12).map(str) | st.sampled_from(
    ["", "-1", "1.5", "\u0663", "05", "999999999", "1000000000", "10000000000"]
)
rate_unit = st.sampled_from(
    ["minute", "minutes", "hour", "hours", "day", "days", "Minutes", "s", "weeks"]
)
#: rate(value unit) spelled right, with values up to where the firings leave the calendar
rate_expression = st.builds(
    lambda n, unit: f"rate({n} {unit}{'' if n == 1 else 's'})",
    st.integers(1, 100) | st.integers(1, 10**12) | st.sampled_from([999_999_999, 10**10]),
    st.sampled_from(["minute", "hour", "day"]),
)
wild_expression = st.one_of(
    st.text(max_size=40),
    st.builds("rate({} {})".format, rate_value, rate_unit),
    st.builds("rate({})".format, st.lists(rate_value | rate_unit, max_size=3).map(" ".join)),
    st.builds("cron({})".format, st.lists(token_soup, min_size=5, max_size=7).map(" ".join)),
    st.builds("cron(".__add__, st.text(max_size=20)),
)
zones = st.sampled_from([UTC, timezone(timedelta(hours=-11)), timezone(timedelta(hours=14))])
instant = st.one_of(
    st.datetimes(datetime(1970, 1, 1), datetime(2200, 1, 1), timezones=zones),
    st.datetimes(datetime(1900, 1, 1), datetime(9000, 1, 1), timezones=zones),
)


def check_expression(text: str, t: datetime) -> None:
    """Parsed, or refused with a reason; a schedule's firings move forward from any ``t``
    and each is one (``last_at_or_before`` finds it), with none between the latest firing
    at or before ``t`` and the next one after it."""
    schedule = attempt(lambda: parse_schedule(text), ScheduleExpressionError)
    if isinstance(schedule, ScheduleExpressionError):
        assert schedule.expression == text
        assert schedule.reason
        assert schedule.code == "ValidationException"
        return
    event("parsed " + type(schedule).__name__)
    assert isinstance(schedule, Schedule)
    assert schedule.expression == text
    following = schedule.next_after(t)
    assert following is None or following > t
    if following is not None:
        assert following.tzinfo is UTC
        assert schedule.last_at_or_before(following) == following
    latest = schedule.last_at_or_before(t)
    assert latest is None or latest <= t
    if latest is not None:
        assert schedule.next_after(latest) == following


@settings(PROPERTY, max_examples=300)
@given(text=wild_expression, t=instant)
def test_any_text_parses_to_a_schedule_or_is_refused(text: str, t: datetime) -> None:
    check_expression(text, t)


@settings(PROPERTY, max_examples=300)
@given(text=rate_expression | cron_expression(), t=instant)
def test_near_miss_expressions_parse_to_schedules_that_fire_forward_or_are_refused(
    text: str, t: datetime
) -> None:
    check_expression(text, t)
