"""Server-side check of AWS Signature Version 4 (``Authorization`` header only).

The signature is recomputed with botocore's own ``SigV4Auth`` /
``S3SigV4Auth`` (canonical request, string to sign, signing key), pointed at
the request as received, so client and server cannot drift apart. What the
server must decide for itself is done here:

* only the headers the client listed in ``SignedHeaders`` are canonicalised,
  with the values as received;
* the payload hash is the one the server computed from the body, never the
  client's ``x-amz-content-sha256`` (S3 clients sign with that header, so when
  present it must equal the server's hash);
* the path: SigV4 URI-encodes the path a second time for every service except
  S3 (botocore's ``SigV4Auth`` quotes the already-encoded path, ``S3SigV4Auth``
  does not). For S3 the path is decoded and re-encoded once, as S3 servers
  do, which is what botocore sends and what spec-following clients sign;
* query parameters are decoded and re-encoded, then sorted (botocore's
  ``_canonical_query_string_params``).

Decisions: a request without ``X-Amz-Date`` or ``Date`` fails with AWS's
IncompleteSignature wording as an ``InvalidSignatureException``; a request
with ``X-Amz-Security-Token`` is refused (``UnrecognizedClientException``)
since this server issues no session tokens and must not appear to honour one;
presigned (query-string) requests are refused by ``verify_request``; a payload
sent unsigned (``UNSIGNED-PAYLOAD``, aws-chunked streaming) fails the
payload-hash check unless the caller passes that literal as the body's hash
(the object routes do, and then check the body themselves: the chunk
signatures of S3's ``STREAMING-AWS4-HMAC-SHA256-PAYLOAD`` with
``chunk_signatures``). A request dated too far in the past says "Signature
expired", too far in the future "Signature not yet current", in AWS's words.

Presigned URLs (``verify_presigned_request``, for reading objects: GET and
HEAD) are S3's two query-string forms:

* SigV4 (``X-Amz-Algorithm``, ``-Credential``, ``-Date``, ``-Expires``,
  ``-SignedHeaders``, ``-Signature``): the canonical request of the path as
  received, the query without ``X-Amz-Signature``, the signed headers, and
  ``UNSIGNED-PAYLOAD``; valid from ``X-Amz-Date`` (less the clock skew) for
  ``X-Amz-Expires`` seconds, at most 7 days (604800), as S3 allows. What
  ``boto3.client("s3", config=Config(signature_version="s3v4"))`` presigns.
* S3's query form of Signature Version 2 (``AWSAccessKeyId``, ``Signature``,
  ``Expires``): HMAC-SHA1 over the method, Content-MD5, Content-Type, the
  expiry, the ``x-amz-*`` headers and the resource ``/<bucket>/<key>`` with
  its sub-resources (``response-content-type``...). It is what a stock boto3
  S3 client presigns (botocore picks it for ``generate_presigned_url`` unless
  told ``s3v4``), and it signs the resource without the endpoint's path: the
  mount the object routes live under (``/objects``) is not part of it. Valid
  until ``Expires`` (epoch seconds), which may lie at most 7 days ahead.

An expired URL is ``AccessDenied`` ("Request has expired", S3's words); a
changed one (path, query, signature) an ``InvalidSignatureException``.
"""
from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from urllib.parse import quote, unquote, urlsplit

from botocore.auth import SIGV4_TIMESTAMP, UNSIGNED_PAYLOAD, HmacV1QueryAuth, S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.compat import HTTPHeaders
from botocore.credentials import Credentials

from customlabels import errors

ALGORITHM = "AWS4-HMAC-SHA256"
TERMINATOR = "aws4_request"
SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
)
INVALID_TOKEN = "The security token included in the request is invalid."
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

MAX_PRESIGNED_SECONDS = 7 * 24 * 3600  # S3's limit on a presigned URL's life
EXPIRED = "Request has expired"
PRESIGNED_METHODS = ("GET", "HEAD")
_V4_QUERY = ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders",
             "X-Amz-Signature")
_V2_QUERY = ("AWSAccessKeyId", "Signature", "Expires")

_SIGNATURE = re.compile(r"[0-9a-f]{64}")
_HEADER_NAME = re.compile(r"[a-z0-9!#$%&'*+.^_`|~-]+")
_SCOPE_DATE = re.compile(r"\d{8}")
_AMZ_DATE = re.compile(r"\d{8}T\d{6}Z")


@dataclass(frozen=True)
class _Authorization:
    """The parts of ``AWS4-HMAC-SHA256 Credential=k/d/r/s/aws4_request, SignedHeaders=a;b, Signature=x``."""

    access_key: str
    date: str
    region: str
    service: str
    terminator: str
    signed_headers: tuple[str, ...]
    signature: str


def verify_request(
    *,
    method: str,
    path: str,
    query_string: str,
    headers: Mapping[str, str],
    body_sha256: str,
    credentials: Mapping[str, str],
    region: str,
    service: str | Collection[str],
    now: datetime,
    max_skew_seconds: int = 900,
) -> str:
    """Check a header-signed request; return its access key or raise an ApiError (403).

    ``path`` is the path exactly as received, still percent-encoded (aiohttp's
    ``request.raw_path`` up to the ``?``); ``query_string`` is the raw query
    without ``?`` (aiohttp's ``request.rel_url.raw_query_string``: its
    ``request.query_string`` is already partly decoded, and decoding twice
    turns a literal ``%41`` into ``A``); ``headers`` may be any mapping, repeated names included
    (an aiohttp ``CIMultiDict``); ``body_sha256`` is the hex SHA-256 of the body
    the server read (lowercase, as hashlib writes it), or the payload literal the
    signature covers instead (``UNSIGNED-PAYLOAD``, ``STREAMING-...``) when the
    caller checks the body otherwise; ``credentials`` maps access keys to secret keys;
    ``service`` is the signing name the scope must name, or the names it may
    name (``POST /`` serves several JSON APIs).
    """
    received = _lowercase_headers(headers)
    authorization = _only(received, "authorization")
    if authorization is None:
        if "x-amz-signature" in query_string.lower():
            raise errors.InvalidSignature(
                "Query-string (presigned) authentication is not supported; sign with an Authorization header."
            )
        raise errors.MissingAuthenticationToken("Missing Authentication Token")
    auth = _parse_authorization(authorization)
    amz_date, request_time = _request_time(received)
    _check_scope(auth, amz_date, region=region, service=service)
    _check_signed_headers(auth, received)
    _check_skew(amz_date, request_time, now, max_skew_seconds)
    secret = credentials.get(auth.access_key)
    if secret is None or "x-amz-security-token" in received:
        raise errors.UnrecognizedClient(INVALID_TOKEN)
    _check_content_sha256(received, body_sha256)
    expected = _expected_signature(
        auth, secret, amz_date, method=method, path=path, query_pairs=_query_pairs(query_string),
        received=received, payload_hash=body_sha256,
    )
    if not _SIGNATURE.fullmatch(auth.signature) or not hmac.compare_digest(expected, auth.signature):
        raise errors.InvalidSignature(SIGNATURE_MISMATCH)
    return auth.access_key


def verify_presigned_request(
    *,
    method: str,
    path: str,
    query_string: str,
    headers: Mapping[str, str],
    credentials: Mapping[str, str],
    region: str,
    now: datetime,
    mount: str = "",
    max_skew_seconds: int = 900,
) -> str:
    """Check a presigned S3 request (SigV4 or SigV2 query string, GET or HEAD); return its access key
    or raise an ApiError (403). ``path``, ``query_string`` and ``headers`` as for ``verify_request``;
    ``mount``: the prefix of ``path`` the object routes are served under (``/objects``), which the
    SigV2 resource ``/<bucket>/<key>`` leaves out."""
    if method.upper() not in PRESIGNED_METHODS:
        raise errors.InvalidSignature(f"A presigned URL reads an object (GET or HEAD); {method[:10]} must be signed "
                                      "with an Authorization header.")
    received = _lowercase_headers(headers)
    if "authorization" in received:
        raise errors.InvalidSignature("Only one auth mechanism allowed: the query string's signature or the "
                                      "Authorization header, not both.")
    pairs = _query_pairs(query_string)
    names = {name for name, _ in pairs}
    if "x-amz-security-token" in {name.lower() for name in names}:
        raise errors.UnrecognizedClient(INVALID_TOKEN)
    now = now if now.tzinfo else now.replace(tzinfo=timezone.utc)
    if names & {"X-Amz-Algorithm", "X-Amz-Signature"}:
        return _verify_presigned_v4(method, path, pairs, received, credentials, region, now, max_skew_seconds)
    if names & {"AWSAccessKeyId", "Signature"}:
        return _verify_presigned_v2(method, path, query_string, pairs, received, credentials, now, mount)
    raise errors.MissingAuthenticationToken("Missing Authentication Token")


@dataclass(frozen=True)
class ChunkSignatures:
    """The chain the signatures of an aws-chunked body follow (S3's ``STREAMING-AWS4-HMAC-SHA256-PAYLOAD``
    and ``...-TRAILER``): each chunk's signature signs the SHA-256 of its data and the signature before it,
    starting from the request's own (``seed``); the trailer's signs its canonical lines the same way."""

    signing_key: bytes
    amz_date: str
    scope: str  # <date>/<region>/<service>/aws4_request
    seed: str

    def chunk(self, previous: str, data_sha256: str) -> str:
        return self._sign("AWS4-HMAC-SHA256-PAYLOAD", previous, f"{_EMPTY_SHA256}\n{data_sha256}")

    def trailer(self, previous: str, trailer_sha256: str) -> str:
        return self._sign("AWS4-HMAC-SHA256-TRAILER", previous, trailer_sha256)

    def _sign(self, algorithm: str, previous: str, tail: str) -> str:
        text = f"{algorithm}\n{self.amz_date}\n{self.scope}\n{previous}\n{tail}"
        return hmac.new(self.signing_key, text.encode(), hashlib.sha256).hexdigest()


def chunk_signatures(headers: Mapping[str, str], credentials: Mapping[str, str]) -> ChunkSignatures:
    """The chain of a request ``verify_request`` has accepted (its scope, date, key and signature)."""
    received = _lowercase_headers(headers)
    auth = _parse_authorization(_only(received, "authorization") or "")
    amz_date, _ = _request_time(received)
    key = ("AWS4" + credentials[auth.access_key]).encode()
    for part in (auth.date, auth.region, auth.service, TERMINATOR):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return ChunkSignatures(key, amz_date, f"{auth.date}/{auth.region}/{auth.service}/{TERMINATOR}", auth.signature)


def _verify_presigned_v4(method: str, path: str, pairs: list[tuple[str, str]], received: dict[str, list[str]],
                         credentials: Mapping[str, str], region: str, now: datetime, max_skew_seconds: int) -> str:
    params = {name: _single_param(pairs, name) for name in _V4_QUERY}
    if params["X-Amz-Algorithm"] != ALGORITHM:
        raise errors.InvalidSignature(f"X-Amz-Algorithm must be {ALGORITHM}, not {params['X-Amz-Algorithm'][:40]!r}.")
    amz_date = params["X-Amz-Date"]
    signed_at = _amz_date(amz_date)
    expires = params["X-Amz-Expires"]
    if not expires.isdigit() or not 1 <= int(expires) <= MAX_PRESIGNED_SECONDS:
        raise errors.InvalidSignature(
            f"X-Amz-Expires must be a number of seconds from 1 to {MAX_PRESIGNED_SECONDS} (7 days), not {expires[:20]!r}.")
    auth = _Authorization(*_parse_credential(params["X-Amz-Credential"]),
                          signed_headers=_parse_signed_headers(params["X-Amz-SignedHeaders"]),
                          signature=params["X-Amz-Signature"])
    _check_scope(auth, amz_date, region=region, service="s3")
    if "host" not in auth.signed_headers:
        raise errors.InvalidSignature("'host' must be a signed header.")
    absent = sorted(name for name in auth.signed_headers if name not in received)
    if absent:
        raise errors.InvalidSignature(f"Signed header(s) missing from the request: {', '.join(absent)}.")
    if signed_at > now + timedelta(seconds=max_skew_seconds):
        raise errors.InvalidSignature(f"Request is not yet valid: it was signed for {amz_date}.")
    if now > signed_at + timedelta(seconds=int(expires)):
        raise errors.AccessDenied(EXPIRED)
    secret = credentials.get(auth.access_key)
    if secret is None:
        raise errors.UnrecognizedClient(INVALID_TOKEN)
    expected = _expected_signature(
        auth, secret, amz_date, method=method, path=path,
        query_pairs=[(name, value) for name, value in pairs if name != "X-Amz-Signature"],
        received=received, payload_hash=UNSIGNED_PAYLOAD,
    )
    if not _SIGNATURE.fullmatch(auth.signature) or not hmac.compare_digest(expected, auth.signature):
        raise errors.InvalidSignature(SIGNATURE_MISMATCH)
    return auth.access_key


class _ReceivedRequestV2Query(HmacV1QueryAuth):
    """botocore's SigV2 query signer, dated with the URL's own expiry instead of now + a lifetime."""

    def __init__(self, credentials: Credentials, expires: str):
        super().__init__(credentials)
        self._expires_at = expires

    def _get_date(self) -> str:
        return self._expires_at


def _verify_presigned_v2(method: str, path: str, query_string: str, pairs: list[tuple[str, str]],
                         received: dict[str, list[str]], credentials: Mapping[str, str], now: datetime,
                         mount: str) -> str:
    access_key, signature, expires = (_single_param(pairs, name) for name in _V2_QUERY)
    if not expires.isdigit():
        raise errors.InvalidSignature(f"Expires must be a time in epoch seconds, not {expires[:20]!r}.")
    if now.timestamp() > int(expires):
        raise errors.AccessDenied(EXPIRED)
    if int(expires) > now.timestamp() + MAX_PRESIGNED_SECONDS:
        raise errors.InvalidSignature(f"Expires must lie at most {MAX_PRESIGNED_SECONDS} seconds (7 days) ahead.")
    secret = credentials.get(access_key)
    if secret is None:
        raise errors.UnrecognizedClient(INVALID_TOKEN)
    resource = path[len(mount):] if mount and path.startswith(mount + "/") else path
    signed = HTTPHeaders()
    for name, values in received.items():
        if name in ("content-md5", "content-type") or name.startswith("x-amz-"):
            for value in values:
                signed[name] = value
    signer = _ReceivedRequestV2Query(Credentials(access_key, secret), expires)
    expected = signer.get_signature(method.upper(), urlsplit("http://server/?" + query_string), signed,
                                    auth_path=quote(unquote(resource), safe="/~"))
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise errors.InvalidSignature(SIGNATURE_MISMATCH)
    return access_key


def _single_param(pairs: list[tuple[str, str]], name: str) -> str:
    values = [value for key, value in pairs if key == name]
    if len(values) != 1:
        raise errors.InvalidSignature(f"A presigned URL needs exactly one {name} query parameter.")
    return values[0]


# --------------------------------------------------------------------------- parsing


def _lowercase_headers(headers: Mapping[str, str]) -> dict[str, list[str]]:
    """Every value of every header under its lowercase name; items() keeps a multidict's repeats."""
    received: dict[str, list[str]] = {}
    for name, value in headers.items():
        received.setdefault(name.lower(), []).append(value)
    return received


def _only(received: dict[str, list[str]], name: str) -> str | None:
    values = received.get(name)
    if values is None:
        return None
    if len(values) > 1:
        raise errors.InvalidSignature(f"The request has more than one {name} header.")
    return values[0]


def _parse_authorization(value: str) -> _Authorization:
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise errors.InvalidSignature(
            f"Unsupported Authorization algorithm {algorithm[:40]!r}: only {ALGORITHM} is accepted."
        )
    parts: dict[str, str] = {}
    for component in rest.split(","):
        if not component.strip():
            continue
        key, equals, part = component.strip().partition("=")
        if not equals or key in parts:
            raise errors.InvalidSignature(f"Authorization header is malformed near {component.strip()[:40]!r}.")
        parts[key] = part
    missing = [name for name in ("Credential", "SignedHeaders", "Signature") if not parts.get(name)]
    if missing:
        raise errors.InvalidSignature(
            " ".join(f"Authorization header requires '{name}' parameter." for name in missing)
        )
    return _Authorization(
        *_parse_credential(parts["Credential"]),
        signed_headers=_parse_signed_headers(parts["SignedHeaders"]),
        signature=parts["Signature"],
    )


def _parse_credential(credential: str) -> tuple[str, str, str, str, str]:
    scope = credential.split("/")
    if len(scope) != 5 or not all(scope):
        raise errors.InvalidSignature(
            "Credential must have the form <access key>/<YYYYMMDD>/<region>/<service>/aws4_request."
        )
    access_key, date, region, service, terminator = scope
    return access_key, date, region, service, terminator


def _parse_signed_headers(value: str) -> tuple[str, ...]:
    names = tuple(value.split(";"))
    if not all(_HEADER_NAME.fullmatch(name) for name in names):
        raise errors.InvalidSignature("SignedHeaders must be lowercase header names separated by ';'.")
    return names


def _amz_date(amz_date: str) -> datetime:
    """An X-Amz-Date (``YYYYMMDD'T'HHMMSS'Z'``) as a datetime; InvalidSignature for anything else."""
    if not _AMZ_DATE.fullmatch(amz_date):
        raise errors.InvalidSignature("X-Amz-Date must be in the ISO8601 basic format YYYYMMDD'T'HHMMSS'Z'.")
    try:
        return datetime.strptime(amz_date, SIGV4_TIMESTAMP).replace(tzinfo=timezone.utc)
    except ValueError:
        raise errors.InvalidSignature(f"X-Amz-Date {amz_date!r} is not a valid date.") from None


def _request_time(received: dict[str, list[str]]) -> tuple[str, datetime]:
    """The request's time as SigV4 writes it (from X-Amz-Date, else Date) and as a datetime."""
    amz_date = _only(received, "x-amz-date")
    if amz_date is not None:
        return amz_date, _amz_date(amz_date)
    date = _only(received, "date")
    if date is None:
        raise errors.InvalidSignature(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
        )
    try:
        parsed = parsedate_to_datetime(date)
    except (TypeError, ValueError):
        raise errors.InvalidSignature(f"Date header {date[:40]!r} is not an RFC 1123 date.") from None
    parsed = parsed.astimezone(timezone.utc) if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    return parsed.strftime(SIGV4_TIMESTAMP), parsed


# --------------------------------------------------------------------------- checks


def _check_scope(auth: _Authorization, amz_date: str, *, region: str, service: str | Collection[str]) -> None:
    if auth.terminator != TERMINATOR:
        raise errors.InvalidSignature(
            f"Credential should be scoped with a valid terminator: '{TERMINATOR}', not '{auth.terminator[:40]}'."
        )
    services = (service,) if isinstance(service, str) else tuple(sorted(service))
    if auth.service not in services:
        expected = " or ".join(f"'{name}'" for name in services)
        raise errors.InvalidSignature(
            f"Credential should be scoped to correct service: {expected}, not '{auth.service[:40]}'."
        )
    if auth.region != region:
        raise errors.InvalidSignature(
            f"Credential should be scoped to a valid region: this endpoint is '{region}', "
            f"not '{auth.region[:40]}'."
        )
    if not _SCOPE_DATE.fullmatch(auth.date) or auth.date != amz_date[:8]:
        raise errors.InvalidSignature(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
            f"'{auth.date[:40]}' != '{amz_date[:8]}', from '{amz_date}'."
        )


def _check_signed_headers(auth: _Authorization, received: dict[str, list[str]]) -> None:
    signed = set(auth.signed_headers)
    # Host ties the signature to this endpoint; X-Amz-Date to this moment.
    for required in ("host", "x-amz-date"):
        if required not in signed and (required == "host" or required in received):
            raise errors.InvalidSignature(f"'{required}' must be a signed header.")
    absent = sorted(name for name in signed if name not in received)
    if absent:
        raise errors.InvalidSignature(f"Signed header(s) missing from the request: {', '.join(absent)}.")


def _check_skew(amz_date: str, request_time: datetime, now: datetime, max_skew_seconds: int) -> None:
    now = now if now.tzinfo else now.replace(tzinfo=timezone.utc)
    skew = timedelta(seconds=max_skew_seconds)
    limit = f"{max_skew_seconds // 60} min." if max_skew_seconds % 60 == 0 else f"{max_skew_seconds} s."
    stamp = now.strftime(SIGV4_TIMESTAMP)
    if request_time < now - skew:
        earliest = (now - skew).strftime(SIGV4_TIMESTAMP)
        raise errors.InvalidSignature(
            f"Signature expired: {amz_date} is now earlier than {earliest} ({stamp} - {limit})"
        )
    if request_time > now + skew:
        latest = (now + skew).strftime(SIGV4_TIMESTAMP)
        raise errors.InvalidSignature(
            f"Signature not yet current: {amz_date} is still later than {latest} ({stamp} + {limit})"
        )


def _check_content_sha256(received: dict[str, list[str]], body_sha256: str) -> None:
    claimed = received.get("x-amz-content-sha256")
    if claimed is not None and [value.strip().lower() for value in claimed] != [body_sha256.lower()]:
        raise errors.InvalidSignature(
            "The provided x-amz-content-sha256 header does not match what was computed."
        )


# --------------------------------------------------------------------------- the signature


class _ReceivedRequestSigV4(SigV4Auth):
    """botocore's signer, fed what the server received instead of what a client would send."""

    def __init__(self, credentials: Credentials, service: str, region: str, *,
                 signed_headers: HTTPHeaders, payload_hash: str, query_pairs: list[tuple[str, str]]):
        super().__init__(credentials, service, region)
        self._signed = signed_headers
        self._payload_hash = payload_hash
        self._query_pairs = query_pairs

    def headers_to_sign(self, request: AWSRequest) -> HTTPHeaders:
        return self._signed  # exactly the client's SignedHeaders, not botocore's own selection

    def payload(self, request: AWSRequest) -> str:
        return self._payload_hash  # the server's hash of the body it read

    def canonical_query_string(self, request: AWSRequest) -> str:
        return self._canonical_query_string_params(self._query_pairs)


class _ReceivedRequestS3SigV4(_ReceivedRequestSigV4, S3SigV4Auth):
    def _normalize_url_path(self, path: str) -> str:
        # S3 encodes the path once: decode what arrived, re-encode as botocore encodes keys.
        return quote(unquote(path), safe="/~")


def _expected_signature(auth: _Authorization, secret: str, amz_date: str, *, method: str, path: str,
                        query_pairs: list[tuple[str, str]], received: dict[str, list[str]], payload_hash: str) -> str:
    signer_class = _ReceivedRequestS3SigV4 if auth.service == "s3" else _ReceivedRequestSigV4
    signer = signer_class(
        Credentials(auth.access_key, secret), auth.service, auth.region,
        signed_headers=_signed_header_map(auth.signed_headers, received),
        payload_hash=payload_hash,
        query_pairs=query_pairs,
    )
    # Only the path of this URL is read (the host comes from the signed headers).
    request = AWSRequest(method=method.upper(), url=f"http://server{path if path.startswith('/') else '/' + path}")
    request.context["timestamp"] = amz_date
    canonical_request = signer.canonical_request(request)
    string_to_sign = signer.string_to_sign(request, canonical_request)
    return signer.signature(string_to_sign, request)


def _signed_header_map(names: tuple[str, ...], received: dict[str, list[str]]) -> HTTPHeaders:
    signed = HTTPHeaders()
    for name in names:
        for value in received[name]:
            signed[name] = value  # HTTPHeaders appends: repeated headers join with ',' when canonicalised
    return signed


def _query_pairs(query_string: str) -> list[tuple[str, str]]:
    """Decoded (name, value) pairs; '+' stays '+' (SigV4 encodes spaces as %20, never '+')."""
    pairs = []
    for item in query_string.split("&"):
        if item:
            name, _, value = item.partition("=")
            pairs.append((unquote(name), unquote(value)))
    return pairs
