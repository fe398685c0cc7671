"""Properties of API Gateway request → event, for any request a client can send.

Requests are drawn from their parts (method, path segments, query pairs, headers, body), so the
event each must give is known: valid JSON; the path as sent, with what is not printable ASCII
percent-encoded; query parameters decoded (1.0: the last value of a repeated name, 2.0: the
values comma-joined, multiValue lists in order); headers as API Gateway passes them (1.0: the
first casing and the last value, 2.0: lower-cased, comma-joined, cookies apart), plus the
X-Forwarded-* headers the gateway sets; a body that is not text base64-encoded.  Whatever the
request, the answer is the event or one of the front door's own 4xx answers, never an error.

The same properties hold for the neutral request given to ``handle`` and for raw bytes sent to
a real aiohttp server, through both of aiohttp's HTTP parsers (the pure-Python one hands over
raw bytes that the compiled one refuses).
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, quote_plus, unquote

import aiohttp.http
import aiohttp.http_parser
import aiohttp.web_protocol
import orjson
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime.apigw import (
    HttpRequest,
    InvokeOutcome,
    RequestIds,
    Route,
    Router,
    handle,
    is_text_type,
)
from runtime.loop import run
from runtime.service.gateway import from_aiohttp, to_aiohttp

IDS = RequestIds("req-1", "ext-1")
PEER = "127.0.0.1"
API_KEY = "k-secret"
#: names drawn for headers; the X-Forwarded-* ones are the gateway's own, Cookie is 2.0's
HEADER_NAMES = ["X-A", "X-Multi", "Accept", "X-Forwarded-For", "X-Forwarded-Proto",
                "X-Forwarded-Port", "Cookie", "X-Api-Key"]  # fmt: skip
CONTENT_TYPES = [None, "text/plain", "application/json; charset=utf-8", "application/ld+json",
                 "image/png", "application/octet-stream",
                 "multipart/form-data; boundary=x"]  # fmt: skip
FORWARDED = {"x-forwarded-for", "x-forwarded-port", "x-forwarded-proto"}


def routes(fmt: str) -> list[Route]:
    return [
        Route("ANY /private/{proxy+}", "f", payload_format=fmt, api_key_required=True),
        Route("$default", "f", payload_format=fmt),
    ]


async def echo(_function: str, payload: bytes) -> InvokeOutcome:
    """The event back as the body: 2.0 infers a 200, 1.0 gets a proxy response."""
    doc = orjson.loads(payload)
    if "version" in doc:
        return InvokeOutcome(payload)
    return InvokeOutcome(orjson.dumps({"statusCode": 200, "body": payload.decode()}))


# -- what a request is made of ----------------------------------------------------------------


@dataclass(frozen=True)
class Drawn:
    """A request's parts, before and after the client encodes them."""

    method: str
    raw_path: bytes
    query: list[tuple[str, str]]
    raw_query: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    content_type: str | None

    def sent_headers(self) -> list[tuple[bytes, bytes]]:
        if self.content_type is None:
            return self.headers
        return [*self.headers, (b"Content-Type", self.content_type.encode())]


def casings(name: str) -> st.SearchStrategy[str]:
    return st.lists(st.booleans(), min_size=len(name), max_size=len(name)).map(
        lambda upper: "".join(
            c.upper() if u else c.lower() for c, u in zip(name, upper, strict=True)
        )
    )


def _is_plain_char(c: str) -> bool:
    """A character a URL may carry as it is: no delimiter, no '%', nothing below 0x21."""
    return c not in "/?#&=+%;" and ord(c) > 0x20 and c != "\x7f"


def _is_plain(text: str) -> bool:
    return bool(text) and all(map(_is_plain_char, text))


plain = st.text(st.characters(min_codepoint=0x21).filter(_is_plain_char), min_size=1, max_size=6)
any_text = st.text(max_size=8)


def encoded(text: st.SearchStrategy[str], raw: bool) -> st.SearchStrategy[tuple[str, bytes]]:
    """A text and how a client may write it: percent-encoded, with '+' for spaces, or (with
    ``raw``) as its UTF-8 bytes."""
    return text.flatmap(
        lambda t: st.sampled_from(
            [quote(t, safe="").encode(), quote_plus(t, safe="").encode()]
            + ([t.encode()] if raw and _is_plain(t) else [])
        ).map(lambda written: (t, written))
    )


ascii_segment = st.one_of(
    st.just(b""),  # repeated slashes
    any_text.map(lambda t: quote(t, safe="").encode()),
)
raw_segment = st.one_of(
    plain.map(str.encode),  # raw UTF-8
    st.binary(min_size=1, max_size=4).map(lambda b: bytes(x | 0x80 for x in b)),  # not UTF-8
)
#: one request in four has raw bytes in its request line (which HTTP does not allow)
raw_bytes = st.integers(0, 3).map(lambda n: n == 0)


@st.composite
def query_pairs(draw: st.DrawFn, raw: bool) -> tuple[list[tuple[str, str]], bytes]:
    pairs: list[tuple[str, str]] = []
    parts: list[bytes] = []
    for _ in range(draw(st.integers(0, 5))):
        key, raw_key = draw(encoded(st.text(min_size=1, max_size=6), raw))
        if len(pairs) > 0 and draw(st.booleans()):  # a repeated name
            key = pairs[draw(st.integers(0, len(pairs) - 1))][0]
            raw_key = quote(key, safe="").encode()
        form = draw(st.sampled_from(["value", "empty", "bare"]))
        if form == "bare":  # no '='
            pairs.append((key, ""))
            parts.append(raw_key)
            continue
        value, raw_value = draw(encoded(any_text, raw)) if form == "value" else ("", b"")
        pairs.append((key, value))
        parts.append(raw_key + b"=" + raw_value)
    return pairs, b"&".join(parts)


header_value = st.binary(max_size=12).map(
    lambda b: bytes(x for x in b if x >= 0x20 and x != 0x7F).strip(b" \t")
)


@st.composite
def header_list(draw: st.DrawFn) -> list[tuple[bytes, bytes]]:
    headers: list[tuple[bytes, bytes]] = []
    for _ in range(draw(st.integers(0, 6))):
        name = draw(
            st.sampled_from(HEADER_NAMES) | st.from_regex(r"X-[A-Za-z0-9]{1,6}", fullmatch=True)
        )
        value = draw(header_value | st.sampled_from([b"198.51.100.1", API_KEY.encode()]))
        headers.append((draw(casings(name)).encode(), value))
    return headers


known_methods = st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
#: one method in four is one HTTP allows but the route table does not name
methods = st.one_of(
    known_methods,
    known_methods,
    known_methods,
    st.from_regex(r"[A-Z]{3,9}", fullmatch=True).filter(lambda m: m not in ("HEAD", "CONNECT")),
)
bodies = st.binary(max_size=40) | st.text(max_size=20).map(str.encode)


@st.composite
def requests(draw: st.DrawFn) -> Drawn:
    raw = draw(raw_bytes)
    segments = draw(st.lists(raw_segment | ascii_segment if raw else ascii_segment, max_size=5))
    headers = draw(header_list())
    if len(segments) > 0 and draw(raw_bytes):  # a route that requires an API key
        segments = [b"private", *segments]
        if draw(st.booleans()):
            headers.append((b"x-api-key", API_KEY.encode()))
    pairs, raw_query = draw(query_pairs(raw))
    return Drawn(
        method=draw(methods),
        raw_path=b"/" + b"/".join(segments),
        query=pairs,
        raw_query=raw_query,
        headers=headers,
        body=draw(bodies),
        content_type=draw(st.sampled_from(CONTENT_TYPES)),
    )


# -- the event each request must give ---------------------------------------------------------


def url_text(raw: bytes) -> str:
    """What the event shows of a path or query: printable ASCII as sent, the rest %XX."""
    return "".join(chr(b) if 0x21 <= b < 0x7F else f"%{b:02X}" for b in raw)


def text_headers(drawn: Drawn) -> list[tuple[str, str]]:
    return [(n.decode(), v.decode("utf-8", "replace")) for n, v in drawn.sent_headers()]


def expected_forwarded(headers: list[tuple[str, str]], port: int) -> list[tuple[str, str]]:
    chain = [v.strip() for n, v in headers if n.lower() == "x-forwarded-for" and v.strip()]
    return [
        ("X-Forwarded-For", ", ".join([*chain, PEER])),
        ("X-Forwarded-Port", str(port)),
        ("X-Forwarded-Proto", "http"),
    ]


def check_event(
    event: dict[str, Any], drawn: Drawn, headers: list[tuple[str, str]], port: int
) -> None:
    """``event`` is the one API Gateway builds for ``drawn`` (its headers as text)."""
    passed = [(n, v) for n, v in headers if n.lower() not in FORWARDED]
    passed += expected_forwarded(headers, port)
    if "version" in event:
        check_v2(event, drawn, passed)
    else:
        check_v1(event, drawn, passed)
    check_body(event, drawn)


def check_v1(event: dict[str, Any], drawn: Drawn, headers: list[tuple[str, str]]) -> None:
    assert event["httpMethod"] == drawn.method
    assert event["path"] == url_text(drawn.raw_path)
    multi: dict[str, list[str]] = {}
    casing: dict[str, str] = {}
    for name, value in headers:
        multi.setdefault(casing.setdefault(name.lower(), name), []).append(value)
    assert event["multiValueHeaders"] == multi
    assert event["headers"] == {name: values[-1] for name, values in multi.items()}
    query: dict[str, list[str]] = {}
    for key, value in drawn.query:
        query.setdefault(key, []).append(value)
    assert event["multiValueQueryStringParameters"] == (query or None)
    assert event["queryStringParameters"] == ({k: v[-1] for k, v in query.items()} or None)
    identity = event["requestContext"]["identity"]
    assert identity["sourceIp"] == PEER
    if event["resource"] == "/private/{proxy+}":
        assert identity["apiKey"] == API_KEY
    else:
        assert identity["apiKey"] is None


def check_v2(event: dict[str, Any], drawn: Drawn, headers: list[tuple[str, str]]) -> None:
    assert event["requestContext"]["http"]["method"] == drawn.method
    assert event["rawPath"] == url_text(drawn.raw_path)
    assert event["rawQueryString"] == url_text(drawn.raw_query)
    cookies = [
        part.strip()
        for name, value in headers
        if name.lower() == "cookie"
        for part in value.split(";")
        if part.strip()
    ]
    assert event.get("cookies", []) == cookies
    joined: dict[str, list[str]] = {}
    for name, value in headers:
        if name.lower() != "cookie":
            joined.setdefault(name.lower(), []).append(value)
    assert event["headers"] == {name: ",".join(values) for name, values in joined.items()}
    query: dict[str, list[str]] = {}
    for key, value in drawn.query:
        query.setdefault(key, []).append(value)
    assert event.get("queryStringParameters", {}) == {k: ",".join(v) for k, v in query.items()}
    assert event["requestContext"]["http"]["sourceIp"] == PEER
    if event["routeKey"] == "ANY /private/{proxy+}":
        segments = url_text(drawn.raw_path).split("/")[2:]
        assert event["pathParameters"] == {"proxy": "/".join(unquote(s) for s in segments)}


def check_body(event: dict[str, Any], drawn: Drawn) -> None:
    if not drawn.body:
        assert event.get("body") is None
        assert event["isBase64Encoded"] is False
        return
    try:
        text = drawn.body.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    is_text = drawn.content_type is None or is_text_type(drawn.content_type)
    if is_text and text is not None:
        assert (event["body"], event["isBase64Encoded"]) == (text, False)
    else:
        assert event["isBase64Encoded"] is True
        assert base64.b64decode(event["body"], validate=True) == drawn.body


def api_key_ok(headers: list[tuple[str, str]]) -> bool:
    keys = [v for n, v in headers if n.strip().lower() == "x-api-key"]
    return keys == [API_KEY]


def needs_key(drawn: Drawn) -> bool:
    return drawn.raw_path.startswith(b"/private/") and len(drawn.raw_path) > len(b"/private/")


# -- the neutral request given to handle ------------------------------------------------------

PROPERTY = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def neutral(drawn: Drawn) -> HttpRequest:
    """The request as ``from_aiohttp`` would hand it over (only printable ASCII in the URL)."""
    return HttpRequest(
        method=drawn.method,
        raw_path=url_text(drawn.raw_path),
        raw_query=url_text(drawn.raw_query),
        headers=text_headers(drawn),
        body=drawn.body,
        source_ip=PEER,
        time_epoch_ms=0,
        server_port=9000,
    )


def serve_neutral(req: HttpRequest, fmt: str) -> tuple[int, dict[str, Any] | None]:
    events: list[bytes] = []

    async def invoke(function: str, payload: bytes) -> InvokeOutcome:
        events.append(payload)
        return await echo(function, payload)

    resp = run(handle(req, Router(routes(fmt)), invoke, {API_KEY}, new_ids=lambda: IDS))
    # what the function got must be JSON to any parser, not only to orjson
    return resp.status, json.loads(events[0]) if events else None


@PROPERTY
@given(drawn=requests(), fmt=st.sampled_from(["1.0", "2.0"]))
def test_handle_builds_the_event_api_gateway_builds(drawn: Drawn, fmt: str) -> None:
    req = neutral(drawn)
    status, event = serve_neutral(req, fmt)
    if needs_key(drawn) and not api_key_ok(req.headers):
        assert (status, event) == (403, None)
        return
    assert status == 200
    assert event is not None
    check_event(event, drawn, req.headers, 9000)


@PROPERTY
@given(
    method=st.text(max_size=8),
    path=st.text(max_size=20),
    query=st.text(max_size=20),
    headers=st.lists(st.tuples(st.text(max_size=8), st.text(max_size=8)), max_size=6),
    host=st.text(max_size=12),
    body=st.binary(max_size=20),
    fmt=st.sampled_from(["1.0", "2.0"]),
)
def test_handle_answers_any_text_with_the_event_or_its_own_4xx(
    method: str,
    path: str,
    query: str,
    headers: list[tuple[str, str]],
    host: str,
    body: bytes,
    fmt: str,
) -> None:
    req = HttpRequest(method, path, query, headers, body, host=host, time_epoch_ms=0)
    status, event = serve_neutral(req, fmt)
    assert status in (200, 403)
    if status == 403:
        assert event is None  # refused before the function was invoked
        return
    assert event is not None
    assert event["requestContext"]["requestId"] == "req-1"
    if fmt == "2.0":
        assert (event["rawPath"], event["rawQueryString"]) == (path, query)
    else:
        assert (event["path"], event["httpMethod"]) == (path, method)


# -- raw bytes to a real server, through both of aiohttp's parsers ----------------------------


class RawFrontDoor:
    """``handle`` behind a real aiohttp server on a thread of its own, so that a test can send
    it bytes no HTTP client library would send."""

    def __init__(self, parser: str) -> None:
        self.parser = parser
        self.fmt = "2.0"
        self.port = 0
        self._ready = threading.Event()
        self._stop = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=lambda: run(self._main()), name="raw-front-door")

    def __enter__(self) -> RawFrontDoor:
        self._thread.start()
        assert self._ready.wait(10), "the server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        assert not self._thread.is_alive()

    async def _view(self, raw: web.BaseRequest) -> web.StreamResponse:
        req = from_aiohttp(raw, await raw.read(), now_ms=lambda: 0)
        router = Router(routes(self.fmt))
        return to_aiohttp(await handle(req, router, echo, {API_KEY}, new_ids=lambda: IDS))

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        # a bare server, no router: every request, whatever its path, reaches the view
        runner = web.ServerRunner(web.Server(self._view), access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, PEER, 0)
            await site.start()
            self.port = runner.addresses[0][1]
            self._ready.set()
            await self._stop.wait()
        finally:
            await runner.cleanup()

    def send(self, drawn: Drawn) -> tuple[int, bytes]:
        """Send ``drawn`` as raw bytes on a connection of its own: the status and the body."""
        target = drawn.raw_path + (b"?" + drawn.raw_query if drawn.raw_query else b"")
        lines = [drawn.method.encode() + b" " + target + b" HTTP/1.1",
                 f"Host: {PEER}:{self.port}".encode(), b"Connection: close",
                 f"Content-Length: {len(drawn.body)}".encode()]  # fmt: skip
        lines += [name + b": " + value for name, value in drawn.sent_headers()]
        with socket.create_connection((PEER, self.port), timeout=10) as sock:
            sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + drawn.body)
            received = b"".join(iter(lambda: sock.recv(65536), b""))
        head, _, body = received.partition(b"\r\n\r\n")
        return int(head.split(b" ", 2)[1]), body


PARSERS = {
    "c": aiohttp.http.HttpRequestParser,  # the one aiohttp.web_protocol uses
    "py": aiohttp.http_parser.HttpRequestParserPy,
}


@pytest.fixture(params=sorted(PARSERS))
def front_door(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RawFrontDoor]:
    """The server, parsing with aiohttp's compiled parser (when built) or its pure-Python one."""
    monkeypatch.setattr(aiohttp.web_protocol, "HttpRequestParser", PARSERS[request.param])
    with RawFrontDoor(request.param) as door:
        yield door


def full_headers(door: RawFrontDoor, drawn: Drawn) -> list[tuple[str, str]]:
    """The headers as the server receives them, in order, as text."""
    framing = [("Host", f"{PEER}:{door.port}"), ("Connection", "close"),
               ("Content-Length", str(len(drawn.body)))]  # fmt: skip
    return [*framing, *text_headers(drawn)]


@settings(PROPERTY, max_examples=100)
@given(drawn=requests(), fmt=st.sampled_from(["1.0", "2.0"]))
def test_raw_requests_give_the_event_or_a_4xx(
    front_door: RawFrontDoor, drawn: Drawn, fmt: str
) -> None:
    front_door.fmt = fmt
    status, body = front_door.send(drawn)
    headers = full_headers(front_door, drawn)
    if status == 400:
        # the compiled parser refuses raw bytes in the request line and methods it does not
        # know; the pure-Python one takes everything drawn here
        assert front_door.parser == "c", body
        return
    if needs_key(drawn) and not api_key_ok(headers):
        assert (status, json.loads(body)) == (403, {"message": "Forbidden"})
        return
    assert status == 200, (status, body)
    check_event(json.loads(body), drawn, headers, front_door.port)


def test_raw_non_ascii_request_line_is_percent_encoded_in_the_event() -> None:
    drawn = Drawn("GET", b"/caf\xc3\xa9/\xff", [("q", "\xe9")], b"q=\xc3\xa9", [], b"", None)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(aiohttp.web_protocol, "HttpRequestParser", PARSERS["py"])
        with RawFrontDoor("py") as door:
            status, body = door.send(drawn)
    assert status == 200
    event = json.loads(body)
    assert (event["rawPath"], event["rawQueryString"]) == ("/caf%C3%A9/%FF", "q=%C3%A9")
    assert event["queryStringParameters"] == {"q": "\xe9"}
