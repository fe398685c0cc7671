"""The worker wire format (runtime/agent/protocol.py): round trips, streaming, hostile input."""

from __future__ import annotations

import os
import random
import socket
import threading
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime.agent import protocol as P
from runtime.agent.protocol import (
    FIELD_COUNTS,
    HEADER,
    HEADER_SIZE,
    MAGIC,
    MAX_BODY,
    Decoder,
    Frame,
    ProtocolError,
    decode,
    encode,
    read_frame,
)

U64_MAX = 2**64 - 1
KINDS = sorted(FIELD_COUNTS)
SIX_MB = 6 * 1024 * 1024


def as_tuple(frame: Frame) -> tuple[int, list[bytes], int, int, int]:
    return (frame.kind, frame.fields, frame.a, frame.b, frame.flags)


def sample_fields(kind: int) -> list[bytes]:
    samples = [b"req-1", b'{"k": [1, 2, 3]}', b"log line\n", b"\x00\xff" * 7]
    return samples[: FIELD_COUNTS[kind]]


def raw_frame(
    kind: int = P.INIT,
    fields: list[bytes] | None = None,
    *,
    magic: bytes = MAGIC,
    nfields: int | None = None,
    size: int | None = None,
    body: bytes | None = None,
) -> bytes:
    """A frame built by hand, so that any header field can lie."""
    fields = [b"{}"] if fields is None else fields
    if body is None:
        body = b"".join(P.FIELD.pack(len(f)) + f for f in fields)
    header = HEADER.pack(
        magic,
        kind,
        len(fields) if nfields is None else nfields,
        0,
        len(body) if size is None else size,
        0,
        0,
    )
    return header + body


# -- round trips ----------------------------------------------------------------------------


def test_header_layout() -> None:
    assert HEADER_SIZE == 28
    data = encode(P.FORKED, [], a=7, b=9, flags=P.FATAL)
    assert data[:2] == b"WS"
    assert data == HEADER.pack(b"WS", P.FORKED, 0, P.FATAL, 0, 7, 9)


@pytest.mark.parametrize("kind", KINDS, ids=[P.KIND_NAMES[k] for k in KINDS])
def test_round_trip_every_kind(kind: int) -> None:
    fields = sample_fields(kind)
    data = encode(kind, fields, a=123456789, b=U64_MAX, flags=P.FATAL)
    expected = (kind, fields, 123456789, U64_MAX, P.FATAL)
    assert as_tuple(decode(data)) == expected
    frames = Decoder().feed(data)
    assert [as_tuple(f) for f in frames] == [expected]
    # a tuple of fields encodes the same as a list
    assert encode(kind, tuple(fields), a=123456789, b=U64_MAX, flags=P.FATAL) == data


@pytest.mark.parametrize("kind", KINDS, ids=[P.KIND_NAMES[k] for k in KINDS])
def test_round_trip_empty_fields(kind: int) -> None:
    fields = [b""] * FIELD_COUNTS[kind]
    data = encode(kind, fields)
    assert len(data) == HEADER_SIZE + 4 * len(fields)
    assert as_tuple(decode(data)) == (kind, fields, 0, 0, 0)
    decoder = Decoder()
    assert [as_tuple(f) for f in decoder.feed(data)] == [(kind, fields, 0, 0, 0)]
    assert decoder.pending == 0


def test_decoded_fields_are_bytes_independent_of_the_input() -> None:
    data = bytearray(encode(P.INVOKE, [b"id", b"payload", b"{}"]))
    frame = decode(data)
    streamed = Decoder().feed(bytes(data))[0]
    data[-3:] = b"XXX"
    for f in (frame, streamed):
        assert all(type(field) is bytes for field in f.fields)
        assert f.fields == [b"id", b"payload", b"{}"]


def test_decode_accepts_a_memoryview() -> None:
    data = encode(P.RESULT, [b"id", b"out", b"log"], a=5, b=6)
    assert as_tuple(decode(memoryview(data))) == (P.RESULT, [b"id", b"out", b"log"], 5, 6, 0)


def test_frame_repr_names_the_kind_and_sizes() -> None:
    frame = decode(encode(P.INVOKE, [b"id", b"abc", b""], a=1))
    assert repr(frame) == "<Frame INVOKE a=1 b=0 flags=0 fields=[2,3,0]>"
    assert repr(Frame(200, [])) == "<Frame 200 a=0 b=0 flags=0 fields=[]>"


def test_large_payload_round_trip() -> None:
    payload = random.Random(1).randbytes(SIX_MB)
    data = encode(P.INVOKE, [b"req", payload, b"{}"], a=99)
    assert as_tuple(decode(data)) == (P.INVOKE, [b"req", payload, b"{}"], 99, 0, 0)

    whole = Decoder().feed(data)
    assert len(whole) == 1
    assert whole[0].fields[1] == payload

    decoder = Decoder()
    frames: list[Frame] = []
    for pos in range(0, len(data), 65536):
        frames += decoder.feed(data[pos : pos + 65536])
        if pos + 65536 < len(data):
            assert decoder.pending == pos + 65536
    assert decoder.pending == 0
    assert len(frames) == 1
    assert frames[0].fields == [b"req", payload, b"{}"]


def test_body_of_exactly_max_body_is_allowed() -> None:
    field = b"x" * (MAX_BODY - 4)
    data = encode(P.INIT, [field])
    assert decode(data).fields[0] == field


# -- the incremental decoder ----------------------------------------------------------------


def test_decoder_byte_by_byte() -> None:
    frames = [
        encode(P.INIT, [b'{"handler": "app.handler"}']),
        encode(P.INIT_OK, [b""], a=10, b=20),
        encode(P.EXITED, [], a=4242, b=256),
        encode(P.ERROR, [b"id", b'{"errorType": "X"}', b"trace"], a=1, b=2, flags=P.FATAL),
    ]
    stream = b"".join(frames)
    decoder = Decoder()
    got: list[Frame] = []
    for i in range(len(stream)):
        got += decoder.feed(stream[i : i + 1])
        consumed = sum(map(len, frames[: len(got)]))
        assert decoder.pending == i + 1 - consumed
    assert decoder.pending == 0
    assert [as_tuple(f) for f in got] == [as_tuple(decode(f)) for f in frames]


def test_decoder_several_frames_in_one_chunk_and_a_partial_one() -> None:
    a = encode(P.INVOKE, [b"1", b"{}", b"{}"], a=1)
    b = encode(P.FORKED, [], a=2, b=3)
    c = encode(P.RESULT, [b"1", b"null", b""], a=4, b=5)
    decoder = Decoder()
    frames = decoder.feed(a + b + c[:10])
    assert [f.kind for f in frames] == [P.INVOKE, P.FORKED]
    assert decoder.pending == 10
    frames = decoder.feed(c[10:] + a)
    assert [as_tuple(f) for f in frames] == [as_tuple(decode(c)), as_tuple(decode(a))]
    assert decoder.pending == 0


def test_pending_while_incomplete() -> None:
    data = encode(P.INIT, [b"x" * 100])
    decoder = Decoder()
    assert decoder.pending == 0
    assert decoder.feed(b"") == []
    assert decoder.pending == 0
    assert decoder.feed(data[:5]) == []  # not even a header yet
    assert decoder.pending == 5
    assert decoder.feed(data[5:HEADER_SIZE]) == []  # a header, no body
    assert decoder.pending == HEADER_SIZE
    assert decoder.feed(data[HEADER_SIZE:-1]) == []
    assert decoder.pending == len(data) - 1
    assert decoder.feed(b"") == []
    assert decoder.pending == len(data) - 1
    assert len(decoder.feed(data[-1:])) == 1
    assert decoder.pending == 0


def test_decoder_keeps_its_own_copy_of_a_partial_chunk() -> None:
    data = encode(P.INIT, [b"hello"])
    chunk = bytearray(data[:-2])
    decoder = Decoder()
    assert decoder.feed(chunk) == []  # type: ignore[arg-type]
    chunk[:] = b"\x00" * len(chunk)
    assert decoder.feed(data[-2:])[0].fields == [b"hello"]


def frames_strategy() -> st.SearchStrategy[list[tuple[int, list[bytes], int, int, int]]]:
    def fields_for(kind: int) -> st.SearchStrategy[tuple[int, list[bytes], int, int, int]]:
        return st.tuples(
            st.just(kind),
            st.lists(
                st.binary(max_size=64), min_size=FIELD_COUNTS[kind], max_size=FIELD_COUNTS[kind]
            ),
            st.integers(0, U64_MAX),
            st.integers(0, U64_MAX),
            st.integers(0, 255),
        )

    return st.lists(st.sampled_from(KINDS).flatmap(fields_for), max_size=8)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(frames=frames_strategy(), data=st.data())
def test_decoder_any_chunking_yields_the_same_frames(
    frames: list[tuple[int, list[bytes], int, int, int]], data: st.DataObject
) -> None:
    stream = b"".join(encode(k, f, a, b, flags) for k, f, a, b, flags in frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=20)))
    decoder = Decoder()
    got: list[Frame] = []
    prev = 0
    for cut in [*cuts, len(stream)]:
        got += decoder.feed(stream[prev:cut])
        prev = cut
    assert decoder.pending == 0
    assert [as_tuple(f) for f in got] == [(k, f, a, b, flags) for k, f, a, b, flags in frames]


# -- hostile input --------------------------------------------------------------------------


def decode_both(data: bytes) -> Iterator[str]:
    """The message each of decode() and Decoder.feed() raises for ``data``."""
    with pytest.raises(ProtocolError) as excinfo:
        decode(data)
    yield str(excinfo.value)
    with pytest.raises(ProtocolError) as excinfo:
        Decoder().feed(data)
    yield str(excinfo.value)


def test_bad_magic() -> None:
    for message in decode_both(raw_frame(magic=b"HT")):
        assert message == "bad magic b'HT'"


@pytest.mark.parametrize("pad", [b"\x01\x00\x00", b"\x00\x00\xff"])
def test_nonzero_padding(pad: bytes) -> None:
    data = bytearray(encode(P.FORKED, [], a=1, b=2))
    data[5:8] = pad
    for message in decode_both(bytes(data)):
        assert message == f"nonzero header padding {pad!r}"


@pytest.mark.parametrize("kind", [0, 10, 255])
def test_unknown_kind(kind: int) -> None:
    for message in decode_both(raw_frame(kind)):
        assert message == f"unknown frame kind {kind}"


@pytest.mark.parametrize(
    ("kind", "fields"),
    [
        (P.INIT, []),
        (P.INIT, [b"a", b"b"]),
        (P.INVOKE, [b"id", b"payload"]),
        (P.FORKED, [b"x"]),
        (P.INIT_ERROR, [b"e"]),
    ],
)
def test_wrong_field_count(kind: int, fields: list[bytes]) -> None:
    expected = FIELD_COUNTS[kind]
    name = P.KIND_NAMES[kind]
    for message in decode_both(raw_frame(kind, fields)):
        assert message == f"{name} frame with {len(fields)} fields, expected {expected}"


def test_body_over_max_body_refused_on_the_header_alone() -> None:
    header = raw_frame(P.INIT, [], nfields=1, size=1 << 30, body=b"")
    assert len(header) == HEADER_SIZE
    decoder = Decoder()
    with pytest.raises(ProtocolError, match=rf"frame body of {1 << 30} bytes exceeds {MAX_BODY}"):
        decoder.feed(header)
    # split: the refusal comes as soon as the header is whole, with no body buffered
    decoder = Decoder()
    assert decoder.feed(header[:20]) == []
    with pytest.raises(ProtocolError, match="exceeds"):
        decoder.feed(header[20:])
    with pytest.raises(ProtocolError, match="exceeds"):
        decode(header)


def test_body_of_max_body_plus_one_is_refused() -> None:
    header = raw_frame(P.INIT, [], nfields=1, size=MAX_BODY + 1, body=b"")
    with pytest.raises(
        ProtocolError, match=f"frame body of {MAX_BODY + 1} bytes exceeds {MAX_BODY}"
    ):
        Decoder().feed(header)
    header = raw_frame(P.INIT, [], nfields=1, size=MAX_BODY, body=b"")
    decoder = Decoder()
    assert decoder.feed(header) == []  # within the limit: waits for the body
    assert decoder.pending == HEADER_SIZE


def test_field_length_running_past_the_body() -> None:
    body = P.FIELD.pack(100) + b"short"
    for message in decode_both(raw_frame(P.INIT, [b""], body=body)):
        assert message == "field of 100 bytes runs past the frame body"


def test_field_length_itself_truncated() -> None:
    # INVOKE needs three fields; the body holds one and two stray bytes of a length
    body = P.FIELD.pack(2) + b"id" + b"\x01\x00"
    for message in decode_both(raw_frame(P.INVOKE, [b"", b"", b""], body=body)):
        assert message == "truncated field length"


def test_stray_bytes_after_the_last_field() -> None:
    body = P.FIELD.pack(2) + b"{}" + b"junk"
    for message in decode_both(raw_frame(P.INIT, [b""], body=body)):
        assert message == "4 stray bytes after the last field"


def test_decode_of_a_truncated_frame() -> None:
    data = encode(P.INVOKE, [b"id", b"payload", b"{}"])
    with pytest.raises(
        ProtocolError, match=rf"frame of {len(data) - 1} bytes, header says {len(data)}"
    ):
        decode(data[:-1])
    with pytest.raises(ProtocolError, match=r"short frame: 10 bytes"):
        decode(data[:10])
    with pytest.raises(ProtocolError, match=r"short frame: 0 bytes"):
        decode(b"")
    with pytest.raises(
        ProtocolError, match=rf"frame of {len(data) + 1} bytes, header says {len(data)}"
    ):
        decode(data + b"x")


def test_encode_refuses_a_body_over_max_body() -> None:
    with pytest.raises(
        ProtocolError, match=rf"frame body of {MAX_BODY + 1} bytes exceeds {MAX_BODY}"
    ):
        encode(P.INIT, [b"x" * (MAX_BODY - 3)])
    # the four length bytes of each field count too
    with pytest.raises(ProtocolError, match="exceeds"):
        encode(P.INVOKE, [b"", b"x" * (MAX_BODY - 8), b""])


def test_decoder_error_after_good_frames_in_the_same_chunk() -> None:
    good = encode(P.FORKED, [], a=1, b=2)
    with pytest.raises(ProtocolError, match="bad magic"):
        Decoder().feed(good + b"XX" + good[2:])


@st.composite
def plausible_garbage(draw: st.DrawFn) -> bytes:
    """Random bytes, or a header with random (often valid) values and a random body."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=300))
    kind = draw(st.integers(0, 11))
    nfields = draw(st.one_of(st.just(FIELD_COUNTS.get(kind, 0)), st.integers(0, 255)))
    body = draw(st.binary(max_size=200))
    size = draw(st.one_of(st.just(len(body)), st.integers(0, 2**32 - 1)))
    magic = draw(st.sampled_from([MAGIC, b"WT", b"\x00\x00"]))
    header = HEADER.pack(magic, kind, nfields, draw(st.integers(0, 255)), size, 0, 0)
    return header + body + draw(st.binary(max_size=40))


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(garbage=plausible_garbage(), data=st.data())
def test_garbage_raises_only_protocol_error(garbage: bytes, data: st.DataObject) -> None:
    try:
        frame = decode(garbage)
    except ProtocolError:
        pass
    else:
        assert frame.kind in FIELD_COUNTS

    cuts = sorted(data.draw(st.lists(st.integers(0, len(garbage)), max_size=10)))
    decoder = Decoder()
    fed = 0
    prev = 0
    error = None
    try:
        for cut in [*cuts, len(garbage)]:
            for frame in decoder.feed(garbage[prev:cut]):
                assert frame.kind in FIELD_COUNTS
                assert len(frame.fields) == FIELD_COUNTS[frame.kind]
            fed += cut - prev
            prev = cut
            # never holds more than it was given, and never more than one bounded frame
            assert decoder.pending <= fed
            assert decoder.pending <= fed
            assert decoder.pending < HEADER_SIZE + MAX_BODY
    except ProtocolError as exc:
        error = str(exc)
    assert error is None or error  # a refusal always says why


# -- properties of the decoder on outside bytes -------------------------------------------

Contents = tuple[int, list[bytes], int, int, int]


def frame_strategy(max_field: int = 64) -> st.SearchStrategy[Contents]:
    """One frame's contents: a kind, its number of fields, the two numbers and the flags."""

    def contents(kind: int) -> st.SearchStrategy[Contents]:
        count = FIELD_COUNTS[kind]
        return st.tuples(
            st.just(kind),
            st.lists(st.binary(max_size=max_field), min_size=count, max_size=count),
            st.integers(0, U64_MAX),
            st.integers(0, U64_MAX),
            st.integers(0, 255),
        )

    return st.sampled_from(KINDS).flatmap(contents)


@st.composite
def damaged_stream(draw: st.DrawFn) -> bytes:
    """Good frames, some bytes overwritten, some inserted or cut, maybe a tail missing.

    Overwrites favour the headers, where one byte decides how the rest is read."""
    frames = [encode(*f) for f in draw(st.lists(frame_strategy(), max_size=5))]
    starts = [sum(map(len, frames[:i])) for i in range(len(frames))]
    data = bytearray(b"".join(frames))
    for _ in range(draw(st.integers(0, 4))):
        action = draw(st.sampled_from(["header", "set", "insert", "delete"]))
        pos = draw(st.integers(0, len(data)))
        if action == "header" and starts:
            action = "set"
            pos = draw(st.sampled_from(starts)) + draw(st.integers(0, HEADER_SIZE - 1))
        if action == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif pos < len(data):
            if action == "set":
                data[pos] = draw(st.integers(0, 255))
            else:
                del data[pos]
    return bytes(data[: draw(st.integers(0, len(data)))])


def outside_bytes() -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=400), damaged_stream(), plausible_garbage())


@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow])
@given(stream=outside_bytes(), data=st.data())
def test_outside_bytes_yield_the_frames_they_encode_or_protocol_error(
    stream: bytes, data: st.DataObject
) -> None:
    """Whatever arrives, in whatever pieces: each frame given out is exactly the bytes it came
    from (its one encoding), the rest is held back (bounded) or refused as a ProtocolError."""
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    decoder = Decoder()
    got: list[Frame] = []
    fed = 0
    refusal: str | None
    try:
        for cut in [*cuts, len(stream)]:
            got += decoder.feed(stream[fed:cut])
            fed = cut
            consumed = fed - decoder.pending
            assert b"".join(encode(*as_tuple(f)) for f in got) == stream[:consumed]
            assert decoder.pending <= fed
            assert decoder.pending < HEADER_SIZE + MAX_BODY
    except ProtocolError as exc:
        refusal = str(exc)
    else:
        refusal = None
    if refusal is not None:
        assert refusal  # a refusal always says why
        # what was given out before the refusal is still a good prefix
        assert stream.startswith(b"".join(encode(*as_tuple(f)) for f in got))
        return
    # the whole stream held no error: decoded at once it gives the same frames
    if decoder.pending == 0 and stream:
        assert [as_tuple(f) for f in Decoder().feed(stream)] == [as_tuple(f) for f in got]


@settings(max_examples=300)
@given(frame=frame_strategy(max_field=4096))
def test_round_trip_of_random_frames(frame: Contents) -> None:
    data = encode(*frame)
    assert as_tuple(decode(data)) == frame
    assert [as_tuple(f) for f in Decoder().feed(data)] == [frame]
    chunks = iter([data[:HEADER_SIZE], data[HEADER_SIZE:]])
    assert as_tuple(read_frame(lambda n: next(chunks, b""))) == frame


@settings(max_examples=300)
@given(frame=frame_strategy(), data=st.data())
def test_a_truncated_frame_is_refused_or_waited_for(frame: Contents, data: st.DataObject) -> None:
    whole = encode(*frame)
    cut = data.draw(st.integers(0, len(whole) - 1))
    with pytest.raises(ProtocolError):
        decode(whole[:cut])
    decoder = Decoder()
    assert decoder.feed(whole[:cut]) == []
    assert decoder.pending == cut  # waits for the rest; never more than it was given
    chunks = iter([whole[:cut]])
    with pytest.raises(EOFError):
        read_frame(lambda n: next(chunks, b""))


@settings(max_examples=300)
@given(frame=frame_strategy(), size=st.integers(MAX_BODY + 1, 2**32 - 1))
def test_an_oversized_body_length_is_refused_on_the_header(frame: Contents, size: int) -> None:
    header = bytearray(encode(*frame)[:HEADER_SIZE])
    header[8:12] = P.FIELD.pack(size)
    for message in decode_both(bytes(header)):
        assert message == f"frame body of {size} bytes exceeds {MAX_BODY}"
    with pytest.raises(ProtocolError, match="exceeds"):
        read_frame(lambda n: bytes(header))


@settings(max_examples=300)
@given(frame=frame_strategy(), data=st.data())
def test_a_field_length_past_the_body_is_refused(frame: Contents, data: st.DataObject) -> None:
    kind, fields = frame[0], frame[1]
    if not fields:
        return
    index = data.draw(st.integers(0, len(fields) - 1))
    whole = bytearray(encode(*frame))
    pos = HEADER_SIZE + sum(4 + len(f) for f in fields[:index])
    after = len(whole) - pos - 4  # what the body holds after this field's length
    whole[pos : pos + 4] = P.FIELD.pack(data.draw(st.integers(after + 1, 2**32 - 1)))
    for message in decode_both(bytes(whole)):
        assert message.endswith("runs past the frame body"), (P.KIND_NAMES[kind], message)


# -- read_frame over a socket -------------------------------------------------------------


@pytest.fixture
def sockets() -> Iterator[tuple[socket.socket, socket.socket]]:
    left, right = socket.socketpair()
    right.settimeout(10)  # a regression fails instead of hanging; still blocking reads
    yield left, right
    left.close()
    right.close()


def test_read_frame_over_a_socketpair(sockets: tuple[socket.socket, socket.socket]) -> None:
    writer, reader = sockets
    frames = [
        encode(P.INVOKE, [b"id-1", b'{"x": 1}', b"{}"], a=1000),
        encode(P.FORKED, [], a=3, b=4321),
        encode(P.RESULT, [b"id-1", b"", b"log"], a=5, b=6, flags=P.FATAL),
    ]
    writer.sendall(b"".join(frames))
    read = reader.makefile("rb", buffering=0).read
    for data in frames:
        assert as_tuple(read_frame(read)) == as_tuple(decode(data))


def test_read_frame_with_short_reads(sockets: tuple[socket.socket, socket.socket]) -> None:
    writer, reader = sockets
    data = encode(P.INVOKE, [b"id", b"payload" * 10, b"{}"], a=7)

    def trickle() -> None:
        for byte in data:
            writer.sendall(bytes([byte]))

    thread = threading.Thread(target=trickle)
    thread.start()
    try:
        frame = read_frame(lambda n: reader.recv(min(n, 3)))
    finally:
        thread.join()
    assert as_tuple(frame) == as_tuple(decode(data))


def test_read_frame_large_payload(sockets: tuple[socket.socket, socket.socket]) -> None:
    writer, reader = sockets
    payload = b"\xab" * SIX_MB
    data = encode(P.RESULT, [b"id", payload, b""], a=1, b=2)
    thread = threading.Thread(target=writer.sendall, args=(data,))
    thread.start()
    try:
        frame = read_frame(reader.recv)
    finally:
        thread.join()
    assert frame.fields == [b"id", payload, b""]


@pytest.mark.parametrize("cut", [0, 1, HEADER_SIZE - 1, HEADER_SIZE, HEADER_SIZE + 5])
def test_read_frame_peer_closes_mid_frame(
    sockets: tuple[socket.socket, socket.socket], cut: int
) -> None:
    writer, reader = sockets
    data = encode(P.INVOKE, [b"id", b"payload", b"{}"])
    writer.sendall(data[:cut])
    writer.close()
    with pytest.raises(EOFError, match=r"connection closed with \d+ of \d+ bytes unread"):
        read_frame(reader.recv)


def test_read_frame_refuses_a_huge_body_without_reading_it(
    sockets: tuple[socket.socket, socket.socket],
) -> None:
    writer, reader = sockets
    writer.sendall(raw_frame(P.INIT, [], nfields=1, size=1 << 30, body=b""))
    # the writer stays open: reading the body would block until the timeout
    with pytest.raises(ProtocolError, match="exceeds"):
        read_frame(reader.recv)


def test_read_frame_bad_body(sockets: tuple[socket.socket, socket.socket]) -> None:
    writer, reader = sockets
    writer.sendall(raw_frame(P.INIT, [b""], body=P.FIELD.pack(1) + b"xy"))
    with pytest.raises(ProtocolError, match="1 stray bytes after the last field"):
        read_frame(reader.recv)


# -- datagrams on a seqpacket control socket ------------------------------------------------


@pytest.fixture
def seqpacket() -> Iterator[tuple[socket.socket, socket.socket]]:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    right.settimeout(10)
    for end in (left, right):
        P.widen_datagram_buffers(end)
    yield left, right
    left.close()
    right.close()


def test_recv_datagram_reads_a_whole_frame_and_its_fd(
    seqpacket: tuple[socket.socket, socket.socket],
) -> None:
    left, right = seqpacket
    data = encode(P.FORK, [b"e" * (P.MAX_DATAGRAM - HEADER_SIZE - 4)], a=3)
    assert len(data) == P.MAX_DATAGRAM
    passed = os.open(os.devnull, os.O_RDONLY)
    try:
        socket.send_fds(left, [data], [passed])
    finally:
        os.close(passed)
    msg, fds = P.recv_datagram(right, 1)
    for fd in fds:
        os.close(fd)
    assert msg == data
    assert len(fds) == 1
    left.close()
    assert P.recv_datagram(right) == (b"", [])  # the peer closed


def test_recv_datagram_refuses_a_message_it_would_cut(
    seqpacket: tuple[socket.socket, socket.socket],
) -> None:
    left, right = seqpacket
    passed = os.open(os.devnull, os.O_RDONLY)
    try:
        socket.send_fds(left, [b"x" * (P.MAX_DATAGRAM + 1)], [passed])
    finally:
        os.close(passed)
    before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(ProtocolError, match=f"longer than {P.MAX_DATAGRAM} bytes"):
        P.recv_datagram(right, 1)
    assert len(os.listdir("/proc/self/fd")) == before  # the fd that came with it is closed
