"""SigV4 and API-key authentication, checked against botocore as the real signing client."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from functools import partial
from pathlib import Path
from typing import Any, cast
from unittest import mock
from urllib.parse import urlsplit

import boto3
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from botocore import UNSIGNED
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from botocore.utils import percent_encode, percent_encode_sequence
from helpers import AwsService
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.service.auth import (
    SIGNATURE_MISMATCH,
    AuthError,
    canonical_query,
    canonical_request,
    canonical_uri,
    check_authorization,
    signature,
    signing_key,
    verify_sigv4,
)

AKID = "AKIDEXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
CREDS = {AKID: SECRET, "AKIDOTHER": "other-secret"}
T0 = datetime(2024, 1, 1, 0, 0, 0)
ENDPOINT = "http://127.0.0.1:9000"
INVOKE = "/2015-03-31/functions/my-fn/invocations"
E2E_THREAD = "auth-e2e-boto3"


@dataclass(frozen=True)
class Signed:
    """A signed request as the server receives it."""

    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    body: bytes

    def verify(self, now: datetime = T0, **kw: Any) -> str:
        return verify_sigv4(
            self.method, self.path, self.query, self.headers, self.body, CREDS, now, **kw
        )

    def with_header(self, name: str, value: str) -> Signed:
        kept = [(k, v) for k, v in self.headers if k.lower() != name.lower()]
        return replace(self, headers=[*kept, (name, value)])

    def without_header(self, name: str) -> Signed:
        return replace(self, headers=[(k, v) for k, v in self.headers if k.lower() != name.lower()])

    def header(self, name: str) -> str:
        return next(v for k, v in self.headers if k.lower() == name.lower())


def encoded_path(segments: Sequence[str]) -> str:
    """The path as botocore's serializers build it: each label percent-encoded."""
    return "/" + "/".join(percent_encode(s, safe="") for s in segments)


def sign(
    path: str = INVOKE,
    query: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
    *,
    method: str = "POST",
    service: str = "lambda",
    region: str = "us-east-1",
    headers: dict[str, str] | None = None,
    akid: str = AKID,
    secret: str = SECRET,
    token: str | None = None,
    when: datetime = T0,
) -> Signed:
    """Sign with botocore at a frozen time, then hand back what goes on the wire."""
    url = ENDPOINT + path
    if query:
        # botocore encodes a list of pairs as well as a mapping (repeated keys need the list);
        # its stubs admit only the mapping
        url += f"?{percent_encode_sequence(list(query))}"  # type: ignore[arg-type]
    request = AWSRequest(method=method, url=url, data=body, headers=headers or {})
    with mock.patch("botocore.auth.get_current_datetime", return_value=when):
        SigV4Auth(Credentials(akid, secret, token), service, region).add_auth(request)
    prepared = request.prepare()
    parts = urlsplit(prepared.url)
    wire = list(prepared.headers.items())
    wire.append(("Host", parts.netloc))  # urllib3 adds it after signing, as sent
    # the body went in as bytes, and prepare() hands it on as it was
    return Signed(method, parts.path, parts.query, wire, cast(bytes, prepared.body or b""))


def rejects(signed: Signed, code: str, **kw: Any) -> AuthError:
    with pytest.raises(AuthError) as info:
        signed.verify(**kw)
    assert info.value.code == code, info.value.message
    return info.value


# --- acceptance -------------------------------------------------------------------------------

ACCEPTED = {
    "lambda-invoke": dict(path=INVOKE, body=b'{"k": "v"}'),
    "lambda-list": dict(path="/2015-03-31/functions/", method="GET", query=[("MaxItems", "50")]),
    "encoded-path": dict(
        path=encoded_path(["2015-03-31", "functions", "my fn:é~,", "invocations"]),
        query=[("Qualifier", "$LATEST")],
    ),
    "messy-query": dict(
        method="GET",
        query=[("b", "x y"), ("a", "~:,é"), ("a", ""), ("a", "1"), ("sp ace", "+/=&?"), ("c", "")],
    ),
    "binary-body": dict(body=bytes(range(256))),
    "empty-body": dict(body=b""),
    "batch": dict(service="batch", path="/v1/submitjob", body=b'{"jobName": "j"}'),
    "ecs": dict(
        service="ecs",
        path="/",
        body=b"{}",
        headers={
            "X-Amz-Target": "AmazonEC2ContainerServiceV20141113.ListClusters",
            "Content-Type": "application/x-amz-json-1.1",
        },
    ),
    "events": dict(
        service="events",
        path="/",
        body=b'{"Entries": []}',
        headers={"X-Amz-Target": "AWSEvents.PutEvents"},
    ),
    "header-whitespace": dict(headers={"X-Custom": "  a   b \t c  ", "X-Other": ""}),
    "dot-segments": dict(path="//2015-03-31/./functions/../functions//my-fn/invocations/"),
    "encoded-slash": dict(path="/2015-03-31/functions/a%2Fb%25c/invocations"),
    "session-token": dict(token="FQoGZXIvYXdzEJr//////////token"),
    "other-region": dict(region="eu-west-3"),
}


@pytest.mark.parametrize("case", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_botocore_signed_requests_verify(case: dict[str, Any]) -> None:
    assert sign(**case).verify() == AKID


def test_service_and_region_are_checked_when_given() -> None:
    signed = sign(service="ecs", region="eu-west-1")
    assert signed.verify(service="ecs", region="eu-west-1") == AKID
    err = rejects(signed, "InvalidSignatureException", service="lambda")
    assert err.message == "Credential should be scoped to correct service: 'lambda'."
    err = rejects(signed, "InvalidSignatureException", region="us-east-1")
    assert err.message == "Credential should be scoped to a valid region, not 'eu-west-1'."


def test_date_header_instead_of_x_amz_date() -> None:
    signed = sign(headers={"Date": "placeholder"}, when=T0 + timedelta(seconds=7))
    assert not any(k.lower() == "x-amz-date" for k, _ in signed.headers)
    assert signed.header("Date").endswith("00:00:07 -0000")
    assert signed.verify() == AKID


def test_x_amz_date_wins_over_date() -> None:
    signed = sign().with_header("Date", "Mon, 01 Jan 2024 09:00:00 GMT")
    assert signed.verify() == AKID


def test_unsigned_header_added_after_signing_still_verifies() -> None:
    signed = sign(body=b"x").with_header("X-Amzn-Trace-Id", "Root=1-abc").with_header("Z", "1")
    assert signed.verify() == AKID


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_repeated_headers_are_joined_with_commas() -> None:
    # botocore cannot send a header twice, so sign this one by hand with the public helpers.
    signed = sign(body=b"")
    names = ["host", "x-amz-date", "x-multi"]
    wire = [(k, v) for k, v in signed.headers if k != "Authorization"]
    wire += [("X-Multi", "a"), ("X-Multi", " b  c ")]
    canonical = canonical_request("POST", signed.path, "", wire, names, _sha(b""))
    assert "\nx-multi:a,b c\n" in canonical
    scope = "20240101/us-east-1/lambda/aws4_request"
    sts = f"AWS4-HMAC-SHA256\n20240101T000000Z\n{scope}\n{_sha(canonical.encode())}"
    key = signing_key(SECRET, "20240101", "us-east-1", "lambda")
    sig = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
    assert signature(SECRET, "20240101T000000Z", "us-east-1", "lambda", canonical) == sig
    auth = f"AWS4-HMAC-SHA256 Credential={AKID}/{scope}, SignedHeaders={';'.join(names)}, "
    assert replace(signed, headers=[*wire, ("Authorization", auth + f"Signature={sig}")]).verify()
    wrong = auth + f"Signature={sig[::-1]}"
    rejects(replace(signed, headers=[*wire, ("Authorization", wrong)]), "InvalidSignatureException")


def test_raw_path_with_query_attached_is_split() -> None:
    signed = sign(query=[("a", "b c"), ("Qualifier", "1")])
    joined = replace(signed, path=f"{signed.path}?{signed.query}", query="")
    assert joined.verify() == AKID


def test_x_amz_content_sha256_is_used_when_present() -> None:
    body = b'{"payload": true}'
    signed = sign(body=body, headers={"X-Amz-Content-SHA256": _sha(body)})
    assert "x-amz-content-sha256;x-amz-date" in signed.header("Authorization")
    assert signed.verify() == AKID


def test_unsigned_payload_is_refused_unless_allowed() -> None:
    """``UNSIGNED-PAYLOAD`` leaves the body out of the signature: any body would pass."""
    signed = sign(body=b'{"payload": true}', headers={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"})
    swapped = replace(signed, body=b'{"payload": "swapped"}')
    for request in (signed, swapped):
        err = rejects(request, "IncompleteSignatureException")
        assert err.message == "Unsupported x-amz-content-sha256 value: 'UNSIGNED-PAYLOAD'."
        with pytest.raises(AuthError):
            check_authorization(request.headers, CREDS, T0)
    assert swapped.verify(unsigned_payload=True) == AKID
    assert check_authorization(swapped.headers, CREDS, T0, unsigned_payload=True) == AKID


def test_x_amz_content_sha256_must_match_the_body() -> None:
    signed = sign(body=b"abc", headers={"X-Amz-Content-SHA256": _sha(b"abc")})
    err = rejects(replace(signed, body=b"abd"), "InvalidSignatureException")
    assert "x-amz-content-sha256" in err.message


def test_unsupported_content_sha256_value_is_incomplete() -> None:
    signed = sign(headers={"X-Amz-Content-SHA256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"})
    rejects(signed, "IncompleteSignatureException")


# --- rejection --------------------------------------------------------------------------------


def _flip_signature(s: Signed, last: str) -> Signed:
    auth = s.header("Authorization")
    if auth.endswith(last):
        last = "0" if last != "0" else "1"
    return s.with_header("Authorization", auth[:-1] + last)


TAMPERED = {
    "body": lambda s: replace(s, body=b"payloaD"),
    "body-dropped": lambda s: replace(s, body=b""),
    "query": lambda s: replace(s, query="Qualifier=2"),
    "query-added": lambda s: replace(s, query="Qualifier=1&x=1"),
    "path": lambda s: replace(s, path=s.path.replace("my-fn", "my-fm")),
    "path-encoding": lambda s: replace(s, path=s.path.replace("my-fn", "my%2Dfn")),
    "method": lambda s: replace(s, method="PUT"),
    "signed-header-changed": lambda s: s.with_header("Content-Type", "text/plain"),
    "signed-header-removed": lambda s: s.without_header("Content-Type"),
    "host": lambda s: s.with_header("Host", "127.0.0.1:9001"),
    "signature": lambda s: _flip_signature(s, "0"),
    "non-ascii-signature": lambda s: _flip_signature(s, "é"),
}


@pytest.mark.parametrize("tamper", TAMPERED.values(), ids=TAMPERED.keys())
def test_tampering_is_an_invalid_signature(tamper: Any) -> None:
    signed = sign(
        body=b"payload", query=[("Qualifier", "1")], headers={"Content-Type": "application/json"}
    )
    assert signed.verify() == AKID
    err = rejects(tamper(signed), "InvalidSignatureException")
    assert err.status == 403
    assert err.message == SIGNATURE_MISMATCH


def test_wrong_secret_is_an_invalid_signature() -> None:
    request: dict[str, Any] = dict(body=b"payload", query=[("Qualifier", "1")])
    assert sign(**request).verify() == AKID
    err = rejects(sign(**request, secret="not-the-secret"), "InvalidSignatureException")
    assert err.message == SIGNATURE_MISMATCH


def test_unknown_access_key_is_unrecognized_client() -> None:
    err = rejects(sign(akid="AKIDUNKNOWN"), "UnrecognizedClientException")
    assert (err.status, err.message) == (
        403,
        "The security token included in the request is invalid.",
    )


def test_key_of_another_user_does_not_verify() -> None:
    signed = sign(akid="AKIDOTHER", secret=SECRET)
    rejects(signed, "InvalidSignatureException")
    assert sign(akid="AKIDOTHER", secret="other-secret").verify() == "AKIDOTHER"


def test_stale_signature_is_expired_with_aws_wording() -> None:
    err = rejects(sign(), "InvalidSignatureException", now=T0 + timedelta(minutes=10))
    assert err.message == (
        "Signature expired: 20240101T000000Z is now earlier than 20240101T000500Z "
        "(20240101T001000Z - 5 min.)"
    )


def test_future_signature_is_not_yet_current_with_aws_wording() -> None:
    err = rejects(sign(), "InvalidSignatureException", now=T0 - timedelta(minutes=10))
    assert err.message == (
        "Signature not yet current: 20240101T000000Z is still later than 20231231T235500Z "
        "(20231231T235000Z + 5 min.)"
    )


@pytest.mark.parametrize("offset", [-300, -1, 0, 1, 300])
def test_skew_within_the_window_is_accepted(offset: int) -> None:
    assert sign().verify(now=T0 + timedelta(seconds=offset)) == AKID


@pytest.mark.parametrize("offset", [-301, 301])
def test_skew_just_outside_the_window_is_rejected(offset: int) -> None:
    rejects(sign(), "InvalidSignatureException", now=T0 + timedelta(seconds=offset))


def test_aware_now_and_custom_window() -> None:
    now = datetime(2024, 1, 1, 1, 0, 0, tzinfo=timezone(timedelta(hours=1)))
    assert sign().verify(now=now) == AKID
    err = rejects(
        sign(), "InvalidSignatureException", now=T0 + timedelta(seconds=31), max_skew_s=30
    )
    assert err.message.endswith("(20240101T000031Z - 30 sec.)")


def test_no_authorization_header_is_missing_token() -> None:
    err = rejects(sign().without_header("Authorization"), "MissingAuthenticationTokenException")
    assert (err.status, err.message) == (403, "Missing Authentication Token")


def _auth_edit(old: str, new: str) -> Any:
    return lambda s: s.with_header("Authorization", s.header("Authorization").replace(old, new))


MALFORMED = {
    "algorithm": (_auth_edit("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA1"), "Unsupported Authorization"),
    "bearer": (lambda s: s.with_header("Authorization", "Bearer abc"), "Unsupported Authorization"),
    "no-credential": (_auth_edit("Credential=", "Cred="), "requires 'Credential' parameter"),
    "no-signed-headers": (
        _auth_edit("SignedHeaders=", "Signed="),
        "requires 'SignedHeaders' parameter",
    ),
    "no-signature": (_auth_edit("Signature=", "Sig="), "requires 'Signature' parameter"),
    "nothing": (
        lambda s: s.with_header("Authorization", "AWS4-HMAC-SHA256 "),
        "'Credential' parameter. Authorization header requires 'SignedHeaders'",
    ),
    "scope-short": (_auth_edit("/us-east-1/", "/"), "exactly 5 slash-delimited elements"),
    "scope-terminator": (_auth_edit("aws4_request", "aws5_request"), "valid terminator"),
    "scope-date": (_auth_edit("/20240101/", "/2024-01-01/"), "YYYYMMDD"),
    "host-unsigned": (
        _auth_edit("SignedHeaders=host;", "SignedHeaders="),
        "'Host' or ':authority'",
    ),
    "no-date": (lambda s: s.without_header("X-Amz-Date"), "either a 'X-Amz-Date' or a 'Date'"),
    "bad-amz-date": (lambda s: s.with_header("X-Amz-Date", "2024-01-01T00:00:00Z"), "ISO-8601"),
    "impossible-amz-date": (lambda s: s.with_header("X-Amz-Date", "20241399T000000Z"), "ISO-8601"),
    "bad-date": (
        lambda s: s.without_header("X-Amz-Date").with_header("Date", "yesterday"),
        "not a valid HTTP date",
    ),
}


@pytest.mark.parametrize(("edit", "needle"), MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_authorization_is_incomplete(edit: Any, needle: str) -> None:
    err = rejects(edit(sign()), "IncompleteSignatureException")
    assert err.status == 400
    assert needle in err.message


HEADER_FAULTS = {
    "missing": (lambda s: s.without_header("Authorization"), "MissingAuthenticationTokenException"),
    "malformed": (_auth_edit("Credential=", "Cred="), "IncompleteSignatureException"),
    "no-date": (lambda s: s.without_header("X-Amz-Date"), "IncompleteSignatureException"),
    "unknown-key": (
        _auth_edit(f"Credential={AKID}/", "Credential=AKIDNOPE/"),
        "UnrecognizedClientException",
    ),
    "other-service": (_auth_edit("/lambda/", "/s3/"), "InvalidSignatureException"),
    "other-region": (_auth_edit("/us-east-1/", "/eu-west-1/"), "InvalidSignatureException"),
    "bad-hash": (
        lambda s: s.with_header("X-Amz-Content-SHA256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER"),
        "IncompleteSignatureException",
    ),
}


def test_check_authorization_needs_no_body() -> None:
    signed = sign(body=b'{"big": "body"}')
    scope: dict[str, Any] = dict(service="lambda", region="us-east-1")
    assert check_authorization(signed.headers, CREDS, T0, **scope) == AKID
    with pytest.raises(AuthError) as info:
        check_authorization(signed.headers, CREDS, T0 + timedelta(minutes=6), **scope)
    assert info.value.message.startswith("Signature expired")


@pytest.mark.parametrize(("edit", "code"), HEADER_FAULTS.values(), ids=HEADER_FAULTS.keys())
def test_check_authorization_refuses_what_verify_refuses(edit: Any, code: str) -> None:
    faulty = edit(sign(body=b"{}"))
    scope: dict[str, Any] = dict(service="lambda", region="us-east-1")
    with pytest.raises(AuthError) as early:
        check_authorization(faulty.headers, CREDS, T0, **scope)
    assert early.value.code == code
    late = rejects(faulty, code, **scope)
    assert (late.message, late.status) == (early.value.message, early.value.status)


def test_scope_date_must_match_the_request_date() -> None:
    signed = sign().with_header("X-Amz-Date", "20240102T000000Z")
    err = rejects(signed, "InvalidSignatureException", now=T0 + timedelta(days=1))
    assert err.message == (
        "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from "
        "HTTP: '20240101' != '20240102', from '20240102T000000Z'."
    )


def test_scope_date_checked_against_date_header_too() -> None:
    signed = sign(headers={"Date": "x"}).with_header("Date", "Tue, 02 Jan 2024 00:00:00 GMT")
    rejects(signed, "InvalidSignatureException", now=T0 + timedelta(days=1))


# --- canonical forms --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("", "/"),
        ("/", "/"),
        ("/a b/é", "/a%20b/%C3%A9"),
        ("/my%20fn/x~y", "/my%2520fn/x~y"),
        ("//a/./b/../c/", "/a/c/"),
        ("/a/..", "/"),
        ("/a/.", "/a"),
        ("/../..", "/"),
    ],
)
def test_canonical_uri(raw: str, canonical: str) -> None:
    assert canonical_uri(raw) == canonical


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("", ""),
        ("b=2&a=1&a=0", "a=0&a=1&b=2"),
        ("flag&x=", "flag=&x="),
        ("k=%7e%3a&k=~:", "k=~%3A&k=~%3A"),
        ("q=a+b&r=%20", "q=a%2Bb&r=%20"),
        ("%E2%82%AC=%ff", "%E2%82%AC=%FF"),
        ("a=1&&b=2", "a=1&b=2"),
    ],
)
def test_canonical_query(raw: str, canonical: str) -> None:
    assert canonical_query(raw) == canonical


# --- property tests ---------------------------------------------------------------------------

segment = st.one_of(st.text(max_size=12), st.sampled_from([".", "..", "", "~", "a b", "%"]))
pair = st.tuples(st.text(max_size=8), st.text(max_size=8))


@settings(max_examples=150, deadline=None)
@given(
    segments=st.lists(segment, max_size=5),
    query=st.lists(pair, max_size=5),
    body=st.binary(max_size=64),
    service=st.sampled_from(["lambda", "batch", "ecs", "events"]),
)
def test_botocore_signed_requests_always_verify(
    segments: list[str], query: list[tuple[str, str]], body: bytes, service: str
) -> None:
    signed = sign(encoded_path(segments), query, body, service=service)
    assert signed.verify(service=service, region="us-east-1") == AKID


@settings(max_examples=150, deadline=None)
@given(body=st.binary(min_size=1, max_size=64), data=st.data())
def test_flipping_any_body_byte_fails(body: bytes, data: st.DataObject) -> None:
    signed = sign(body=body)
    index = data.draw(st.integers(0, len(body) - 1))
    mask = data.draw(st.integers(1, 255))
    flipped = bytearray(body)
    flipped[index] ^= mask
    with pytest.raises(AuthError) as info:
        replace(signed, body=bytes(flipped)).verify()
    assert info.value.code == "InvalidSignatureException"


# --- end to end: boto3 against a tiny aiohttp server ------------------------------------------


@pytest.fixture
def clean_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No host AWS configuration may leak into the boto3 clients."""
    for name in ("AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        empty = tmp_path / name.lower()
        empty.write_text("")
        monkeypatch.setenv(name, str(empty))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name in (
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_DEFAULT_REGION",
        "AWS_REGION",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_LAMBDA",
        "AWS_ENDPOINT_URL_ECS",
        "AWS_CA_BUNDLE",
    ):
        monkeypatch.delenv(name, raising=False)


def error_response(err: AuthError, protocol: str) -> web.Response:
    """``err`` as botocore reads it: rest-json (Lambda) or JSON 1.1 (ECS)."""
    if protocol == "rest-json":
        headers = {"Content-Type": "application/json", "x-amzn-ErrorType": err.code}
        doc: dict[str, str] = {"message": err.message}
    else:
        headers = {"Content-Type": "application/x-amz-json-1.1"}
        doc = {"__type": err.code, "message": err.message}
    return web.Response(status=err.status, headers=headers, body=json.dumps(doc))


def make_app(
    service: str, protocol: str, reply: dict[str, Any], seen: list[str]
) -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        seen.append(request.raw_path)
        try:
            verify_sigv4(
                request.method,
                request.raw_path,
                "",
                list(request.headers.items()),
                body,
                CREDS,
                datetime.now(timezone.utc),
                service=service,
                region="us-east-1",
            )
        except AuthError as err:
            return error_response(err, protocol)
        return web.json_response(reply)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


def client(service: AwsService, url: str, secret: str | None = SECRET) -> Any:
    config = Config(
        retries={"max_attempts": 1}, signature_version=UNSIGNED if secret is None else None
    )
    return boto3.session.Session().client(
        service,
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=AKID,
        aws_secret_access_key=secret or "unused",
        config=config,
    )


def call(service: AwsService, url: str, secret: str | None, op: str, **kw: Any) -> Any:
    """Run one boto3 call; returns the result or the ClientError's error code."""
    c = client(service, url, secret)
    try:
        return getattr(c, op)(**kw)
    except ClientError as err:
        return err.response["Error"]["Code"]
    finally:
        c.close()


@dataclass(frozen=True)
class Call:
    """One boto3 operation; ``secret=None`` sends it unsigned."""

    op: str
    secret: str | None = SECRET
    kwargs: dict[str, Any] = field(default_factory=dict)


async def serve_and_call(app: web.Application, service: AwsService, calls: list[Call]) -> list[Any]:
    """Serve ``app`` on 127.0.0.1:0 and run the calls one by one on a worker thread."""
    loop = asyncio.get_running_loop()
    async with TestServer(app, host="127.0.0.1", port=0) as server:
        url = str(server.make_url("")).rstrip("/")
        with ThreadPoolExecutor(1, thread_name_prefix=E2E_THREAD) as pool:
            return [
                await loop.run_in_executor(
                    pool, partial(call, service, url, c.secret, c.op, **c.kwargs)
                )
                for c in calls
            ]


def assert_no_e2e_threads() -> None:
    assert not [t for t in threading.enumerate() if t.name.startswith(E2E_THREAD)]


def test_boto3_lambda_end_to_end(arun: Any, clean_aws_env: None) -> None:
    seen: list[str] = []
    app = make_app("lambda", "rest-json", {"Functions": []}, seen)
    invoke = {"FunctionName": "my fn:é", "Qualifier": "v 1/~,", "Payload": b"\x00\xff binary"}
    calls = [
        Call("list_functions"),
        Call("list_functions", secret="wrong"),
        Call("list_functions", secret=None),
        Call("invoke", kwargs=invoke),
    ]
    ok, wrong, unsigned, invoked = arun(serve_and_call(app, "lambda", calls))
    assert ok["Functions"] == []
    assert wrong == "InvalidSignatureException"
    assert unsigned == "MissingAuthenticationTokenException"
    assert invoked["StatusCode"] == 200
    assert seen[-1] == "/2015-03-31/functions/my%20fn%3A%C3%A9/invocations?Qualifier=v%201%2F~%2C"
    assert_no_e2e_threads()


def test_boto3_ecs_json_protocol_end_to_end(arun: Any, clean_aws_env: None) -> None:
    app = make_app("ecs", "json", {"clusterArns": []}, [])
    calls = [Call("list_clusters"), Call("list_clusters", secret="wrong")]
    ok, wrong = arun(serve_and_call(app, "ecs", calls))
    assert ok["clusterArns"] == []
    assert wrong == "InvalidSignatureException"
    assert_no_e2e_threads()
