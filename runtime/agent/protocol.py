"""The worker wire format: length-prefixed binary frames on a unix socket.

This module is the single definition of the format.  It is stdlib-only because the agent
imports it inside any image that has a Python 3.9+, and the engine imports the same file.

A frame is a fixed header followed by ``nfields`` byte fields, each a little-endian u32 length
and that many raw bytes::

    magic "WS" | kind u8 | nfields u8 | flags u8 | pad 3 | body length u32 | a u64 | b u64
    [len u32 | bytes] * nfields

``a`` and ``b`` are two numbers whose meaning depends on the kind (a deadline, a duration, a
pid, a peak RSS).  Payloads travel as the caller's JSON bytes, untouched.

    kind        fields                              a               b
    INIT        config JSON                         -               -
    INIT_OK     init log                            init ns         peak RSS KiB
    INIT_ERROR  error JSON, init log                init ns         -
    INVOKE      request id, payload, context JSON   deadline ms     -
    RESULT      request id, payload, log            duration ns     peak RSS KiB
    ERROR       request id, error JSON, log         duration ns     peak RSS KiB
    FORK        environment JSON (+ one fd)         environment id  -
    FORKED      -                                   environment id  pid
    EXITED      -                                   pid             wait status

Every decoder bounds a length before trusting it: a bad magic, nonzero padding, an unknown
kind, the wrong number of fields, an oversized body or a field running past the body is a
``ProtocolError``.  So a frame that decodes is the one encoding of what it carries.

Two size limits hold.  A frame on a stream socket has a body of at most ``MAX_BODY``: a
RESULT's payload (Lambda's ``RESPONSE_LIMIT`` at most) and its log (at most ``MAX_LOG``) fit
together.  A frame on a seqpacket control socket (a template's or a sandbox's) is one datagram,
which the kernel refuses past the socket's send buffer, so those are kept to ``MAX_DATAGRAM``.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Callable
from typing import TypedDict

MAGIC = b"WS"
HEADER = struct.Struct("<2sBBB3xIQQ")
#: the same layout with its padding read, so that a decoder can refuse padding that is not zero
_HEADER_IN = struct.Struct("<2sBBB3sIQQ")
_PAD = b"\0\0\0"
FIELD = struct.Struct("<I")
HEADER_SIZE = HEADER.size

INIT = 1
INIT_OK = 2
INIT_ERROR = 3
INVOKE = 4
RESULT = 5
ERROR = 6
FORK = 7
FORKED = 8
EXITED = 9

FATAL = 1  # flag: the worker exits right after this frame
#: flag on RESULT or ERROR: the runtime was started again for this call (it exited before
#: taking it); ``a`` is then the time from its new runtime's taking it, and the rest was init
REINIT = 2

#: fields each kind carries
FIELD_COUNTS = {
    INIT: 1,
    INIT_OK: 1,
    INIT_ERROR: 2,
    INVOKE: 3,
    RESULT: 3,
    ERROR: 3,
    FORK: 1,
    FORKED: 0,
    EXITED: 0,
}
KIND_NAMES = {
    INIT: "INIT",
    INIT_OK: "INIT_OK",
    INIT_ERROR: "INIT_ERROR",
    INVOKE: "INVOKE",
    RESULT: "RESULT",
    ERROR: "ERROR",
    FORK: "FORK",
    FORKED: "FORKED",
    EXITED: "EXITED",
}

#: 6 MB payload, up to 1.9 MB of log and slack for the rest; nothing legitimate is larger
MAX_BODY = 8 * 1024 * 1024
#: Lambda's limit on a synchronous response, in bytes (the figure its error message gives)
RESPONSE_LIMIT = 6291556
#: what a RESULT or ERROR body holds beside its payload and log: three field lengths and a
#: request id, with room to spare for a long one a caller chose
FRAME_SLACK = 64 * 1024
#: the most log a RESULT or ERROR frame can carry beside a payload of RESPONSE_LIMIT bytes
MAX_LOG = MAX_BODY - RESPONSE_LIMIT - FRAME_SLACK
#: the largest frame sent on a seqpacket control socket.  Linux refuses a datagram longer than
#: the sender's SO_SNDBUF (212,992 bytes by default, less 32), whatever the receiver reads.
MAX_DATAGRAM = 128 * 1024


class EnvConfig(TypedDict, total=False):
    """FORK's environment JSON: what one environment's worker sets up after the fork (or, as
    INIT's ``env``, after a spawn).  A sandbox is forked with none of it."""

    #: variables set on top of INIT's (the log stream, the initialization type, TMPDIR)
    environ: dict[str, str]
    #: the file the worker's stdout and stderr go to
    log_path: str
    #: an address-space limit (RLIMIT_AS); absent in a container, whose cgroup is the limit
    memory_limit_bytes: int
    #: the environment's directory on the host (the engine's; the agent does not read it)
    dir: str
    #: FORK only: the child leads a process group of its own (a runtime and what it starts
    #: are then killed together)
    group: bool


class _InitRequired(TypedDict):
    handler: str
    task_root: str
    environ: dict[str, str]
    function_name: str
    function_version: str
    invoked_function_arn: str
    memory_mb: int
    log_group_name: str
    log_stream_name: str
    log_path: str


class InitConfig(_InitRequired, total=False):
    """INIT's config JSON: what a template (or a spawned worker) imports the handler with, and
    the static fields of the Lambda context."""

    #: the most log a RESULT or ERROR frame carries (1 MiB when absent)
    log_cap: int
    #: a spawned worker's environment, which a forked one gets with FORK instead
    env: EnvConfig
    #: a foreign runtime's command (argv): a ``bootstrap``, an image's entrypoint and command,
    #: or our Node.js runtime client; the agent runs it and serves it the Lambda Runtime API
    #: (the handler is then the runtime's to read, from ``_HANDLER``)
    bootstrap: list[str]
    #: the Runtime API's port on 127.0.0.1 (0 or absent: a free one; 9001 in a container)
    runtime_api_port: int
    #: the runtime's working directory (absent: ``task_root``)
    runtime_cwd: str
    #: the function's Lambda runtime (``nodejs20.x``, ``provided.al2023``) when it names one:
    #: a managed runtime (Node.js) keeps ``AWS_EXECUTION_ENV``, a custom one gets none
    runtime: str


class ProtocolError(Exception):
    """A frame that cannot be trusted: the connection it came from must be closed."""


class Frame:
    """One decoded frame.  ``fields`` are bytes (memoryview-free: safe to keep)."""

    __slots__ = ("a", "b", "fields", "flags", "kind")

    def __init__(self, kind: int, fields: list[bytes], a: int = 0, b: int = 0, flags: int = 0):
        self.kind = kind
        self.fields = fields
        self.a = a
        self.b = b
        self.flags = flags

    def __repr__(self) -> str:
        sizes = ",".join(str(len(f)) for f in self.fields)
        name = KIND_NAMES.get(self.kind, str(self.kind))
        return f"<Frame {name} a={self.a} b={self.b} flags={self.flags} fields=[{sizes}]>"


def encode(
    kind: int, fields: tuple[bytes, ...] | list[bytes], a: int = 0, b: int = 0, flags: int = 0
) -> bytes:
    """Encode one frame.  Raises ProtocolError for a body over MAX_BODY."""
    if len(fields) == 3:  # INVOKE, RESULT, ERROR: the hot path, unrolled
        f0, f1, f2 = fields
        size = 12 + len(f0) + len(f1) + len(f2)
        if size > MAX_BODY:
            raise ProtocolError(f"frame body of {size} bytes exceeds {MAX_BODY}")
        pack = FIELD.pack
        head = HEADER.pack(MAGIC, kind, 3, flags, size, a, b)
        return b"".join((head, pack(len(f0)), f0, pack(len(f1)), f1, pack(len(f2)), f2))
    parts = [b""]
    size = 0
    pack = FIELD.pack
    for field in fields:
        parts.append(pack(len(field)))
        parts.append(field)
        size += 4 + len(field)
    if size > MAX_BODY:
        raise ProtocolError(f"frame body of {size} bytes exceeds {MAX_BODY}")
    parts[0] = HEADER.pack(MAGIC, kind, len(fields), flags, size, a, b)
    return b"".join(parts)


def parse_header(header: bytes | bytearray | memoryview) -> tuple[int, int, int, int, int, int]:
    """Validate a header; returns (kind, nfields, flags, body length, a, b)."""
    magic, kind, nfields, flags, pad, size, a, b = _HEADER_IN.unpack_from(header)
    if magic != MAGIC:
        raise ProtocolError(f"bad magic {bytes(magic)!r}")
    if pad != _PAD:
        raise ProtocolError(f"nonzero header padding {bytes(pad)!r}")
    expected = FIELD_COUNTS.get(kind)
    if expected is None:
        raise ProtocolError(f"unknown frame kind {kind}")
    if nfields != expected:
        raise ProtocolError(f"{KIND_NAMES[kind]} frame with {nfields} fields, expected {expected}")
    if size > MAX_BODY:
        raise ProtocolError(f"frame body of {size} bytes exceeds {MAX_BODY}")
    return kind, nfields, flags, size, a, b


def parse_fields(body: bytes | bytearray | memoryview, nfields: int) -> list[bytes]:
    """Split a body into exactly ``nfields`` fields that fill it exactly."""
    end = len(body)
    if nfields == 3 and end >= 12:  # INVOKE, RESULT, ERROR: the hot path, unrolled
        unpack = FIELD.unpack_from
        (n0,) = unpack(body, 0)
        p1 = 4 + n0
        if p1 + 4 <= end:
            (n1,) = unpack(body, p1)
            p2 = p1 + 4 + n1
            if p2 + 4 <= end:
                (n2,) = unpack(body, p2)
                if p2 + 4 + n2 == end:
                    return [bytes(body[4:p1]), bytes(body[p1 + 4 : p2]), bytes(body[p2 + 4 : end])]
    fields = []
    pos = 0
    unpack = FIELD.unpack_from
    for _ in range(nfields):
        if pos + 4 > end:
            raise ProtocolError("truncated field length")
        (length,) = unpack(body, pos)
        pos += 4
        if length > end - pos:
            raise ProtocolError(f"field of {length} bytes runs past the frame body")
        fields.append(bytes(body[pos : pos + length]))
        pos += length
    if pos != end:
        raise ProtocolError(f"{end - pos} stray bytes after the last field")
    return fields


def decode(data: bytes | bytearray | memoryview) -> Frame:
    """Decode exactly one whole frame (as a seqpacket message carries it)."""
    if len(data) < HEADER_SIZE:
        raise ProtocolError(f"short frame: {len(data)} bytes")
    kind, nfields, flags, size, a, b = parse_header(data)
    if len(data) != HEADER_SIZE + size:
        raise ProtocolError(f"frame of {len(data)} bytes, header says {HEADER_SIZE + size}")
    return Frame(kind, parse_fields(memoryview(data)[HEADER_SIZE:], nfields), a, b, flags)


class Decoder:
    """Incremental decoder for a byte stream: feed() what arrives, get whole frames back."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        buf = self._buf
        if not buf and len(data) >= HEADER_SIZE:
            # the common case: exactly one whole frame arrived
            kind, nfields, flags, size, a, b = parse_header(data)
            if len(data) == HEADER_SIZE + size:
                return [
                    Frame(kind, parse_fields(memoryview(data)[HEADER_SIZE:], nfields), a, b, flags)
                ]
        if buf:
            buf += data
            view: bytes | bytearray = buf
        else:
            view = data
        frames = []
        pos = 0
        end = len(view)
        while end - pos >= HEADER_SIZE:
            kind, nfields, flags, size, a, b = parse_header(
                memoryview(view)[pos : pos + HEADER_SIZE]
            )
            stop = pos + HEADER_SIZE + size
            if stop > end:
                break
            fields = parse_fields(memoryview(view)[pos + HEADER_SIZE : stop], nfields)
            frames.append(Frame(kind, fields, a, b, flags))
            pos = stop
        if pos == end:
            buf.clear()
        elif buf:
            del buf[:pos]
        else:
            buf += view[pos:]
        return frames

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame held back."""
        return len(self._buf)


def read_exactly(read: Callable[[int], bytes], size: int) -> bytes:
    """Blocking read of ``size`` bytes; raises EOFError when the peer closed first."""
    data = read(size)
    if len(data) == size:
        return data
    chunks = [data]
    remaining = size - len(data)
    while remaining:
        chunk = read(remaining)
        if not chunk:
            raise EOFError(f"connection closed with {remaining} of {size} bytes unread")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_frame(read: Callable[[int], bytes]) -> Frame:
    """Blocking read of one frame from a stream (the agent side)."""
    header = read_exactly(read, HEADER_SIZE)
    kind, nfields, flags, size, a, b = parse_header(header)
    body = read_exactly(read, size) if size else b""
    return Frame(kind, parse_fields(body, nfields), a, b, flags)


def widen_datagram_buffers(sock: socket.socket) -> None:
    """Raise a seqpacket socket's buffers to hold a MAX_DATAGRAM frame with room to spare.

    Only ever raised: a system whose defaults are larger keeps them.  The kernel clamps the
    request to ``net.core.wmem_max`` / ``rmem_max`` (and doubles it), so this is best effort;
    the frames sent there are bounded to fit the usual default anyway.
    """
    for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
        try:
            if sock.getsockopt(socket.SOL_SOCKET, option) < 2 * MAX_DATAGRAM:
                sock.setsockopt(socket.SOL_SOCKET, option, 2 * MAX_DATAGRAM)
        except OSError:
            pass  # not a socket option this platform lets us set: the defaults stand


def recv_datagram(sock: socket.socket, maxfds: int = 0) -> tuple[bytes, list[int]]:
    """One whole message from a seqpacket socket and the fds passed with it (b"" at EOF).

    The kernel silently cuts a message longer than the buffer it is read into; a message
    longer than MAX_DATAGRAM is therefore refused as a ProtocolError, never decoded cut.
    """
    if maxfds:
        data, fds, flags, _ = socket.recv_fds(sock, MAX_DATAGRAM, maxfds)
    else:
        data, _, flags, _ = sock.recvmsg(MAX_DATAGRAM)
        fds = []
    if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
        for fd in fds:
            os.close(fd)
        raise ProtocolError(f"a control message longer than {MAX_DATAGRAM} bytes")
    return data, fds
