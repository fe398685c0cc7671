"""Request authentication for the AWS-style endpoints: SigV4 (API Gateway's API keys are
checked in :func:`runtime.apigw.proxy.check_api_key`).

Pure functions over method, raw path, raw query, header pairs and body bytes, so any HTTP
server can call them. Written from the AWS Signature Version 4 specification; failures are
:class:`AuthError` carrying the error name, message and HTTP status AWS itself answers with.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from urllib.parse import quote, unquote_to_bytes

__all__ = [
    "ALGORITHM",
    "TIMESTAMP",
    "AuthError",
    "canonical_query",
    "canonical_request",
    "canonical_uri",
    "check_authorization",
    "signature",
    "signing_key",
    "verify_sigv4",
]

ALGORITHM = "AWS4-HMAC-SHA256"
TERMINATOR = "aws4_request"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
#: the strftime format of ``X-Amz-Date`` (ISO 8601 basic format, UTC)
TIMESTAMP = "%Y%m%dT%H%M%SZ"
_TIMESTAMP_RE = re.compile(r"[0-9]{8}T[0-9]{6}Z")  # ASCII digits only, unlike \d
_SHA256_RE = re.compile(r"[0-9a-fA-F]{64}")
_DATE_RE = re.compile(r"[0-9]{8}")
_REQUIRED_PARAMS = ("Credential", "SignedHeaders", "Signature")

MISSING_TOKEN = "Missing Authentication Token"
INVALID_TOKEN = "The security token included in the request is invalid."
SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)

Headers = Iterable[tuple[str, str]]


class AuthError(Exception):
    """A rejected request: ``code`` is the AWS error name, ``status`` the HTTP status."""

    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


def _incomplete(message: str) -> AuthError:
    return AuthError("IncompleteSignatureException", message, 400)


def _invalid(message: str = SIGNATURE_MISMATCH) -> AuthError:
    return AuthError("InvalidSignatureException", message, 403)


@dataclass(frozen=True)
class _Authorization:
    """The parsed ``Authorization`` header."""

    raw: str
    access_key: str
    date: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str


# --- canonical request ------------------------------------------------------------------------


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4, plus AWS's rule that empty segments (``//``) are dropped."""
    kept: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if kept:
                kept.pop()
        elif segment not in ("", "."):
            kept.append(segment)
    lead = "/" if path.startswith("/") else ""
    trail = "/" if path.endswith("/") and kept else ""
    return lead + "/".join(kept) + trail


def canonical_uri(raw_path: str) -> str:
    """The CanonicalURI of a non-S3 service: the path as sent, normalized, then encoded again.

    ``/functions/my%20fn`` becomes ``/functions/my%2520fn``: every byte outside RFC 3986's
    unreserved set (and ``/``) is percent-encoded, including the ``%`` of existing escapes.
    """
    return quote(_remove_dot_segments(raw_path) or "/", safe="/~")


def _encode(component: str) -> str:
    """Decode percent-escapes to the exact bytes, then RFC 3986-encode them."""
    return quote(unquote_to_bytes(component), safe="-_.~")


def canonical_query(raw_query: str) -> str:
    """The CanonicalQueryString: pairs re-encoded per RFC 3986, sorted by key then value.

    A bare ``key`` counts as ``key=``. ``+`` is a literal plus (``%2B``), not a space.
    """
    pairs = []
    for item in raw_query.split("&"):
        if item:
            key, _, value = item.partition("=")
            pairs.append((_encode(key), _encode(value)))
    return "&".join(f"{key}={value}" for key, value in sorted(pairs))


def _header_map(headers: Headers) -> dict[str, list[str]]:
    """Lower-cased header names to their values, in the order they arrived."""
    found: dict[str, list[str]] = {}
    for name, value in headers:
        found.setdefault(name.strip().lower(), []).append(value)
    return found


def _trimall(value: str) -> str:
    return " ".join(value.split())


def _canonical_headers(header_map: Mapping[str, list[str]], names: Iterable[str]) -> str:
    """``name:value\\n`` per signed header; repeated headers joined with commas."""
    lines = (
        f"{name}:{','.join(_trimall(v) for v in header_map.get(name, []))}\n" for name in names
    )
    return "".join(lines)


def canonical_request(
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Headers,
    signed_headers: Iterable[str],
    payload_hash: str,
) -> str:
    """The CanonicalRequest the client signed (exposed for debugging signature mismatches)."""
    names = [name.lower() for name in signed_headers]
    return "\n".join(
        [
            method.upper(),
            canonical_uri(raw_path),
            canonical_query(raw_query),
            _canonical_headers(_header_map(headers), names),
            ";".join(names),
            payload_hash,
        ]
    )


def _string_to_sign(timestamp: str, scope: str, canonical: str) -> str:
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return f"{ALGORITHM}\n{timestamp}\n{scope}\n{digest}"


def _scope(date: str, region: str, service: str) -> str:
    return f"{date}/{region}/{service}/{TERMINATOR}"


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """The derived key: HMAC chain over date, region, service and ``aws4_request``."""
    key = _hmac(f"AWS4{secret}".encode(), date)
    for part in (region, service, TERMINATOR):
        key = _hmac(key, part)
    return key


def signature(secret: str, timestamp: str, region: str, service: str, canonical: str) -> str:
    """The hex SigV4 signature of the CanonicalRequest ``canonical`` signed at ``timestamp``
    (``TIMESTAMP`` format; its date is the credential scope's) for ``region`` and ``service``."""
    date = timestamp[:8]
    to_sign = _string_to_sign(timestamp, _scope(date, region, service), canonical)
    key = signing_key(secret, date, region, service)
    return hmac.new(key, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


# --- parsing and checks -----------------------------------------------------------------------


def _single(header_map: Mapping[str, list[str]], name: str) -> str | None:
    values = header_map.get(name)
    return None if values is None else ",".join(values)


def _auth_params(raw: str) -> dict[str, str]:
    algorithm, _, rest = raw.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise _incomplete(
            f"Unsupported Authorization Type: '{algorithm}'; expected '{ALGORITHM}'. "
            f"Authorization={raw}"
        )
    params: dict[str, str] = {}
    for item in rest.split(","):
        key, eq, value = item.strip().partition("=")
        if key and eq:
            params[key] = value.strip()
    missing = [name for name in _REQUIRED_PARAMS if not params.get(name)]
    if missing:
        needs = " ".join(f"Authorization header requires '{name}' parameter." for name in missing)
        raise _incomplete(f"{needs} Authorization={raw}")
    return params


def _parse_credential(credential: str) -> list[str]:
    parts = credential.split("/")
    if len(parts) != 5 or not all(parts):
        raise _incomplete(
            "Credential must have exactly 5 slash-delimited elements, "
            f"e.g. keyID/date/region/service/term, got '{credential}'"
        )
    if not _DATE_RE.fullmatch(parts[1]):
        raise _incomplete(f"Credential date must be in the YYYYMMDD format, got '{parts[1]}'.")
    if parts[4] != TERMINATOR:
        raise _incomplete(
            f"Credential should be scoped with a valid terminator: '{TERMINATOR}', "
            f"not '{parts[4]}'."
        )
    return parts


def _parse_signed_headers(signed: str) -> tuple[str, ...]:
    names = tuple(name.strip().lower() for name in signed.split(";"))
    if "host" not in names and ":authority" not in names:
        raise _incomplete(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization."
        )
    return names


def _parse_authorization(raw: str) -> _Authorization:
    params = _auth_params(raw)
    access_key, date, region, service, _ = _parse_credential(params["Credential"])
    return _Authorization(
        raw=raw,
        access_key=access_key,
        date=date,
        region=region,
        service=service,
        signed_headers=_parse_signed_headers(params["SignedHeaders"]),
        signature=params["Signature"],
    )


def _request_time(header_map: Mapping[str, list[str]], auth: _Authorization) -> datetime:
    """The signing time from ``X-Amz-Date`` (preferred) or ``Date``, as an aware UTC datetime."""
    amz_date = _single(header_map, "x-amz-date")
    if amz_date is not None:
        if not _TIMESTAMP_RE.fullmatch(amz_date):
            raise _incomplete(
                f"Date must be in ISO-8601 'basic format'. Got '{amz_date}'. "
                "See http://en.wikipedia.org/wiki/ISO_8601"
            )
        try:
            return datetime.strptime(amz_date, TIMESTAMP).replace(tzinfo=timezone.utc)
        except ValueError:
            raise _incomplete(f"Date is not a valid ISO-8601 timestamp: '{amz_date}'.") from None
    http_date = _single(header_map, "date")
    if http_date is None:
        raise _incomplete(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' "
            f"header. Authorization={auth.raw}"
        )
    try:
        return _as_utc(parsedate_to_datetime(http_date))
    except (TypeError, ValueError, OverflowError):  # OverflowError: a year past 9999 in UTC
        raise _incomplete(f"Date header is not a valid HTTP date: '{http_date}'.") from None


def _as_utc(moment: datetime) -> datetime:
    """Naive datetimes are taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def _check_scope(
    auth: _Authorization, timestamp: str, service: str | None, region: str | None
) -> None:
    if auth.date != timestamp[:8]:
        raise _invalid(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
            f"from HTTP: '{auth.date}' != '{timestamp[:8]}', from '{timestamp}'."
        )
    if region is not None and auth.region != region:
        raise _invalid(f"Credential should be scoped to a valid region, not '{auth.region}'.")
    if service is not None and auth.service != service:
        raise _invalid(f"Credential should be scoped to correct service: '{service}'.")


def _skew_text(max_skew_s: int) -> str:
    return f"{max_skew_s // 60} min." if max_skew_s % 60 == 0 else f"{max_skew_s} sec."


def _check_skew(signed_at: datetime, now: datetime, max_skew_s: int) -> None:
    """Reject a signing time more than ``max_skew_s`` away from ``now``, either way."""
    skew = timedelta(seconds=max_skew_s)
    stamp = signed_at.strftime(TIMESTAMP)
    if signed_at < now - skew:
        raise _invalid(
            f"Signature expired: {stamp} is now earlier than "
            f"{(now - skew).strftime(TIMESTAMP)} "
            f"({now.strftime(TIMESTAMP)} - {_skew_text(max_skew_s)})"
        )
    if signed_at > now + skew:
        raise _invalid(
            f"Signature not yet current: {stamp} is still later than "
            f"{(now + skew).strftime(TIMESTAMP)} "
            f"({now.strftime(TIMESTAMP)} + {_skew_text(max_skew_s)})"
        )


def _check_declared_hash(header_map: Mapping[str, list[str]], unsigned_payload: bool) -> None:
    """``X-Amz-Content-Sha256``, when sent, is a SHA-256 in hex (or, when allowed,
    ``UNSIGNED-PAYLOAD``, which leaves the body out of the signature)."""
    declared = _single(header_map, "x-amz-content-sha256")
    if declared is None or _SHA256_RE.fullmatch(declared):
        return
    if declared == UNSIGNED_PAYLOAD and unsigned_payload:
        return
    raise _incomplete(f"Unsupported x-amz-content-sha256 value: '{declared}'.")


def _payload_hash(header_map: Mapping[str, list[str]], body: bytes) -> str:
    """``X-Amz-Content-Sha256`` as sent (checked against the body), else the body's hash."""
    actual = hashlib.sha256(body).hexdigest()
    declared = _single(header_map, "x-amz-content-sha256")
    if declared is None:
        return actual
    if declared == UNSIGNED_PAYLOAD:
        return declared
    if not hmac.compare_digest(declared.lower().encode(), actual.encode()):
        raise _invalid(
            "The provided 'x-amz-content-sha256' header does not match what was computed."
        )
    return declared


def _split_path(raw_path: str, raw_query: str) -> tuple[str, str]:
    """Accept a path with its query attached (aiohttp's ``request.raw_path``)."""
    path, sep, query = raw_path.partition("?")
    return path, ((raw_query or query) if sep else raw_query)


# --- public API -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Checked:
    """An ``Authorization`` header that passed every check short of the signature itself."""

    auth: _Authorization
    timestamp: str
    secret: str


def _check_header(
    header_map: Mapping[str, list[str]],
    credentials: Mapping[str, str],
    now: datetime,
    max_skew_s: int,
    service: str | None,
    region: str | None,
    unsigned_payload: bool,
) -> _Checked:
    raw_auth = _single(header_map, "authorization")
    if raw_auth is None:
        raise AuthError("MissingAuthenticationTokenException", MISSING_TOKEN, 403)
    auth = _parse_authorization(raw_auth)
    signed_at = _request_time(header_map, auth)
    timestamp = signed_at.strftime(TIMESTAMP)
    _check_scope(auth, timestamp, service, region)
    _check_skew(signed_at, _as_utc(now), max_skew_s)
    secret = credentials.get(auth.access_key)
    if secret is None:
        raise AuthError("UnrecognizedClientException", INVALID_TOKEN, 403)
    _check_declared_hash(header_map, unsigned_payload)
    return _Checked(auth, timestamp, secret)


def check_authorization(
    headers: Headers,
    credentials: Mapping[str, str],
    now: datetime,
    *,
    max_skew_s: int = 300,
    service: str | None = None,
    region: str | None = None,
    unsigned_payload: bool = False,
) -> str:
    """Every check of :func:`verify_sigv4` that needs no body; return the access key id.

    Run it as soon as the headers are in, so that an unsigned or misdirected request is
    refused before its body is read: the ``Authorization`` header is present and well formed,
    its credential scope names ``service`` and ``region`` (when given) and the request's date,
    that date is within ``max_skew_s`` of ``now``, the access key is known, and
    ``X-Amz-Content-Sha256`` is a hash (``UNSIGNED-PAYLOAD`` only with ``unsigned_payload``).
    Raises :class:`AuthError` as :func:`verify_sigv4` does.
    """
    checked = _check_header(
        _header_map(headers), credentials, now, max_skew_s, service, region, unsigned_payload
    )
    return checked.auth.access_key


def verify_sigv4(
    method: str,
    raw_path: str,
    raw_query: str,
    headers: list[tuple[str, str]],
    body: bytes,
    credentials: Mapping[str, str],
    now: datetime,
    *,
    max_skew_s: int = 300,
    service: str | None = None,
    region: str | None = None,
    unsigned_payload: bool = False,
) -> str:
    """Verify an AWS Signature Version 4 ``Authorization`` header; return the access key id.

    ``raw_path`` and ``raw_query`` are exactly as sent, still percent-encoded; a ``?query``
    left on ``raw_path`` (aiohttp's ``request.raw_path``) is used when ``raw_query`` is empty.
    ``headers`` are all request headers as (name, value) pairs, repeats allowed. ``credentials``
    maps access key ids to secret keys. ``now`` is naive UTC or timezone-aware. ``service`` and
    ``region``, when given, must match the credential scope. ``X-Amz-Content-Sha256:
    UNSIGNED-PAYLOAD`` (a signature that does not cover the body) is refused unless
    ``unsigned_payload``. ``X-Amz-Security-Token`` is tolerated (signed like any header) but
    not checked.

    Raises :class:`AuthError` with AWS's error name: ``MissingAuthenticationTokenException``
    (no ``Authorization``), ``IncompleteSignatureException`` (malformed),
    ``UnrecognizedClientException`` (unknown key) or ``InvalidSignatureException``.
    """
    header_map = _header_map(headers)
    checked = _check_header(
        header_map, credentials, now, max_skew_s, service, region, unsigned_payload
    )
    auth = checked.auth
    path, query = _split_path(raw_path, raw_query)
    payload_hash = _payload_hash(header_map, body)
    canonical = canonical_request(method, path, query, headers, auth.signed_headers, payload_hash)
    expected = signature(checked.secret, checked.timestamp, auth.region, auth.service, canonical)
    if not hmac.compare_digest(expected.encode(), auth.signature.encode("utf-8")):
        raise _invalid()
    return auth.access_key
