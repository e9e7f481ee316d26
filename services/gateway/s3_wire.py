"""S3's wire format on the object routes: request bodies as S3 clients send them, answers as S3 gives them.

Bodies (``ObjectBody``): what PutObject and UploadPart carry, in each form
``x-amz-content-sha256`` names (``payload_of``):

* a hex SHA-256 (or no header): the bytes themselves, signed by their hash;
* ``UNSIGNED-PAYLOAD``: the bytes themselves, unsigned;
* ``STREAMING-UNSIGNED-PAYLOAD-TRAILER`` (what boto3 and the AWS CLI send over
  TLS) and ``STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]`` (the SDKs' signed
  streaming): S3's aws-chunked encoding, ``<hex size>[;chunk-signature=<sig>]
  CRLF <data> CRLF``... ending with a zero-size chunk, then the trailing
  headers (``x-amz-checksum-*``, ``x-amz-trailer-signature``) and an empty
  line. Signed chunks are checked one by one against the chain of the
  request's signature (``services.gateway.sigv4.ChunkSignatures``).

Invariants: a body is read in slices of at most ``SLICE`` bytes, whatever
sizes its chunks declare (memory stays bounded); every digest the client
claims (``Content-MD5``, ``x-amz-checksum-crc32``/``sha1``/``sha256``, in a
header or a trailer) is compared with the bytes received, and a mismatch
is ``BadDigest``; ``crc32c`` and ``crc64nvme`` are accepted unchecked (no
library at hand computes them). A chunk's signature is checked at the chunk's
end and ``ObjectBody.check`` when the stream is over, both before the blob
store keeps anything, so a refused body stores nothing. The MD5 of the bytes is always computed: it is the object's ETag.

Answers: errors as S3's ``<Error><Code>...`` XML under S3's codes
(``s3_error_response``), the XML results of the multipart operations, HTTP
dates and byte ranges.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import re
import zlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from typing import Protocol
from xml.etree import ElementTree as ET

from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from customlabels import errors

from services.gateway.sigv4 import ChunkSignatures

S3_NAMESPACE = "http://s3.amazonaws.com/doc/2006-03-01/"
SLICE = 1 << 20  # the most of a body held in memory at once

UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
_STREAMING = (STREAMING_UNSIGNED_TRAILER, STREAMING_SIGNED, STREAMING_SIGNED_TRAILER)
_HEX64 = re.compile(r"[0-9a-f]{64}")
_CHUNK_HEADER = re.compile(rb"([0-9a-fA-F]{1,16})(?:;chunk-signature=([0-9a-f]{64}))?\r\n")
MAX_TRAILERS = 8

# Our error codes under the names S3 gives the same refusals.
_S3_CODES = {
    "AccessDeniedException": "AccessDenied",
    "MissingAuthenticationTokenException": "AccessDenied",
    "InvalidSignatureException": "SignatureDoesNotMatch",
    "UnrecognizedClientException": "InvalidAccessKeyId",
    "InvalidObjectKey": "InvalidArgument",
    "InvalidParameterException": "InvalidArgument",
    "ServiceUnavailableException": "ServiceUnavailable",
    "InternalServerError": "InternalError",
}


# --------------------------------------------------------------------------- answers


def s3_code(error: errors.ApiError) -> str:
    return _S3_CODES.get(error.code, error.code.removesuffix("Exception"))


def s3_error_response(error: errors.ApiError, request_id: str, *, with_body: bool = True) -> web.Response:
    """An error as S3 answers it (``<Error><Code>``...), which S3 clients turn into their exceptions
    (a HEAD's answer has no body: S3 clients read its status)."""
    root = ET.Element("Error")
    for name, text in (("Code", s3_code(error)), ("Message", error.message), ("RequestId", request_id)):
        ET.SubElement(root, name).text = text
    if not with_body:
        return web.Response(status=error.status)
    return web.Response(status=error.status, body=ET.tostring(root, encoding="utf-8", xml_declaration=True),
                        content_type="application/xml")


def xml_result(name: str, fields: Mapping[str, str]) -> web.Response:
    """A 200 whose body is S3's ``<name>`` result element holding ``fields`` in order."""
    root = ET.Element(name, xmlns=S3_NAMESPACE)
    for field, text in fields.items():
        ET.SubElement(root, field).text = text
    return web.Response(body=ET.tostring(root, encoding="utf-8", xml_declaration=True), content_type="application/xml")


def http_date(moment: datetime) -> str:
    """``Last-Modified``'s form: ``Wed, 21 Oct 2015 07:28:00 GMT``."""
    return format_datetime(moment.replace(microsecond=0), usegmt=True)


def quoted_etag(md5_hex: str) -> str:
    return f'"{md5_hex}"'


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The first and last byte ``Range: bytes=a-b`` asks of an object of ``size`` bytes (``a-``, ``-n`` too);
    None for no range or one S3 ignores (several ranges, another unit, a malformed one);
    ``InvalidRange`` when it starts past the end."""
    match = re.fullmatch(r"bytes=(\d*)-(\d*)", (header or "").strip())
    if match is None or match.groups() == ("", ""):
        return None
    first, last = match.groups()
    if first == "":  # the last n bytes
        if int(last) == 0 or size == 0:
            raise errors.InvalidRange(f"the range {header} holds no byte of the object's {size}")
        return max(size - int(last), 0), size - 1
    if last != "" and int(last) < int(first):
        return None
    if int(first) >= size:
        raise errors.InvalidRange(f"the range {header} starts past the object's {size} bytes")
    return int(first), min(int(last), size - 1) if last != "" else size - 1


def completed_parts(document: bytes) -> list[tuple[int, str]]:
    """The ``(PartNumber, ETag)`` pairs of a CompleteMultipartUpload request, checked: at least one,
    numbers ascending (``InvalidPartOrder``), each ETag the quoted (or bare) MD5 hex S3 gave the part."""
    try:
        root = ET.fromstring(document)
    except ET.ParseError:
        raise errors.MalformedXML("the CompleteMultipartUpload document is not well-formed XML") from None
    parts = []
    for part in root:
        if part.tag.rpartition("}")[2] != "Part":
            continue
        fields = {child.tag.rpartition("}")[2]: (child.text or "").strip() for child in part}
        number, etag = fields.get("PartNumber", ""), fields.get("ETag", "").strip('"')
        if not number.isdigit() or not 1 <= int(number) <= 10000 or not re.fullmatch(r"[0-9a-f]{32}", etag):
            raise errors.MalformedXML("each Part needs a PartNumber from 1 to 10000 and the ETag its upload answered")
        if parts and int(number) <= parts[-1][0]:
            raise errors.InvalidPartOrder("the parts must be listed in ascending PartNumber order, each once")
        parts.append((int(number), etag))
    if not parts:
        raise errors.MalformedXML("the CompleteMultipartUpload document lists no Part")
    return parts


# --------------------------------------------------------------------------- bodies


@dataclass(frozen=True)
class Payload:
    """How a body is sent, as its ``x-amz-content-sha256`` says. ``claimed`` is what the request's
    signature covers in place of the body's hash, known before the body is read (a hex SHA-256 or a
    literal); None without the header: the signature then covers the body's own hash, known at its end."""

    claimed: str | None

    @property
    def chunked(self) -> bool:
        return self.claimed in _STREAMING

    @property
    def signed_chunks(self) -> bool:
        return self.claimed in (STREAMING_SIGNED, STREAMING_SIGNED_TRAILER)

    @property
    def trailer(self) -> bool:
        return self.claimed in (STREAMING_UNSIGNED_TRAILER, STREAMING_SIGNED_TRAILER)


def payload_of(headers: Mapping[str, str]) -> Payload:
    claimed = headers.get("x-amz-content-sha256")
    if claimed is None or claimed in (UNSIGNED_PAYLOAD, *_STREAMING) or _HEX64.fullmatch(claimed):
        return Payload(claimed)
    if claimed.startswith("STREAMING-"):
        raise errors.NotImplementedOperation(f"x-amz-content-sha256 {claimed[:60]!r} is not served: sign with "
                                             f"AWS4-HMAC-SHA256 ({STREAMING_SIGNED}) or send {STREAMING_UNSIGNED_TRAILER}")
    raise errors.InvalidArgument(f"x-amz-content-sha256 must be the body's hex SHA-256, {UNSIGNED_PAYLOAD} or one of "
                                 f"{', '.join(_STREAMING)}, not {claimed[:70]!r}")


class Reader(Protocol):
    """What an ``ObjectBody`` reads from: an aiohttp ``StreamReader`` (``request.content``)."""

    async def readexactly(self, n: int) -> bytes: ...

    async def readuntil(self, separator: bytes = b"\n") -> bytes: ...

    def iter_chunked(self, n: int) -> AsyncIterator[bytes]: ...


class _Crc32:
    def __init__(self) -> None:
        self.value = 0

    def update(self, data: bytes) -> None:
        self.value = zlib.crc32(data, self.value)

    def digest(self) -> bytes:
        return self.value.to_bytes(4, "big")


# algorithm -> (digest size in bytes, a fresh hash; None when not checked)
_DIGESTS = {
    "md5": (16, hashlib.md5),
    "crc32": (4, _Crc32),
    "sha1": (20, hashlib.sha1),
    "sha256": (32, hashlib.sha256),
    "crc32c": (4, None),
    "crc64nvme": (8, None),
}
_CHECKSUM_PREFIX = "x-amz-checksum-"


class ObjectBody:
    """One object's (or part's) bytes as the request sends them; ``chunks()`` yields them decoded,
    ``check(sha256)`` then refuses what does not match the request's claims."""

    def __init__(self, headers: Mapping[str, str], reader: Reader, payload: Payload,
                 signatures: ChunkSignatures | None = None):
        """``headers``: the request's, looked up without regard to case (aiohttp's ``CIMultiDictProxy``);
        ``signatures``: the chain of a ``STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]`` request."""
        if payload.signed_chunks and signatures is None:
            raise ValueError("signed chunks need the request's ChunkSignatures")
        self._reader = reader
        self._payload = payload
        self._signatures = signatures
        self._claimed: dict[str, bytes] = {}  # algorithm -> the digest the client claims
        if "content-md5" in headers:
            self._claim("md5", headers["content-md5"], "Content-MD5")
        for name, value in headers.items():
            if name.lower().startswith(_CHECKSUM_PREFIX) and name.lower() != _CHECKSUM_PREFIX + "type":
                self._claim(name.lower().removeprefix(_CHECKSUM_PREFIX), value, name)
        self._trailers = self._declared_trailers(headers.get("x-amz-trailer", ""))
        self.declared_size = self._declared_size(headers)
        self._hashes = {"md5": hashlib.md5()}
        for algorithm in (*self._claimed, *(name.removeprefix(_CHECKSUM_PREFIX) for name in self._trailers)):
            if _DIGESTS[algorithm][1] is not None:
                self._hashes.setdefault(algorithm, _DIGESTS[algorithm][1]())
        self.size = 0

    @property
    def md5_hex(self) -> str:
        return self._hashes["md5"].hexdigest()

    async def chunks(self) -> AsyncIterator[bytes]:
        source = self._aws_chunked() if self._payload.chunked else self._reader.iter_chunked(SLICE)
        async for block in source:
            self.size += len(block)
            for digest in self._hashes.values():
                digest.update(block)
            yield block

    def check(self, sha256: str) -> None:
        """After the stream: the body is the size it declared and matches every digest claimed for it
        (``sha256``: the hex SHA-256 of the bytes received)."""
        if self.declared_size is not None and self.size != self.declared_size:
            raise errors.IncompleteBody(f"the body holds {self.size} bytes, not the {self.declared_size} declared")
        claimed = self._payload.claimed
        if claimed is not None and _HEX64.fullmatch(claimed) and claimed != sha256:
            raise errors.ContentSha256Mismatch(
                "The provided 'x-amz-content-sha256' header does not match what was computed.")
        for algorithm, expected in self._claimed.items():
            digest = self._hashes.get(algorithm)
            if digest is not None and digest.digest() != expected:
                where = "Content-MD5" if algorithm == "md5" else _CHECKSUM_PREFIX + algorithm
                raise errors.BadDigest(f"The {where} you specified did not match what we received.")

    # -- headers ----------------------------------------------------------------

    def _claim(self, algorithm: str, value: str, where: str) -> None:
        if algorithm not in _DIGESTS:
            raise errors.InvalidArgument(f"{where}: checksum algorithm {algorithm[:20]!r} is not one of "
                                         f"{', '.join(a for a in _DIGESTS if a != 'md5')}")
        try:
            digest = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            digest = b""
        if len(digest) != _DIGESTS[algorithm][0]:
            raise errors.InvalidDigest(f"The {where} you specified is not a base64-encoded {algorithm} digest.")
        self._claimed[algorithm] = digest

    def _declared_trailers(self, header: str) -> tuple[str, ...]:
        names = tuple(name.strip().lower() for name in header.split(",") if name.strip())
        if names and not self._payload.trailer:
            raise errors.InvalidArgument(f"x-amz-trailer needs x-amz-content-sha256 {STREAMING_UNSIGNED_TRAILER} "
                                         f"or {STREAMING_SIGNED_TRAILER}")
        for name in names:
            if not name.startswith(_CHECKSUM_PREFIX) or name.removeprefix(_CHECKSUM_PREFIX) not in _DIGESTS:
                raise errors.InvalidArgument(f"x-amz-trailer may name x-amz-checksum-* headers only, not {name[:40]!r}")
        return names

    def _declared_size(self, headers: Mapping[str, str]) -> int | None:
        text = headers.get("x-amz-decoded-content-length") if self._payload.chunked else None
        if text is None:
            return None
        if not text.isdigit():
            raise errors.InvalidArgument(f"x-amz-decoded-content-length must be a number of bytes, not {text[:20]!r}")
        return int(text)

    # -- aws-chunked ------------------------------------------------------------

    async def _aws_chunked(self) -> AsyncIterator[bytes]:
        signatures = self._signatures
        previous = signatures.seed if signatures else ""
        while True:
            header = _CHUNK_HEADER.fullmatch(await self._line())
            if header is None or (signatures is not None) != (header[2] is not None):
                raise errors.IncompleteBody("the aws-chunked body has a malformed chunk header")
            size, signature = int(header[1], 16), (header[2] or b"").decode()
            data_hash = hashlib.sha256() if signatures is not None else None
            remaining = size
            while remaining:
                block = await self._read(min(remaining, SLICE))
                if data_hash is not None:
                    data_hash.update(block)
                remaining -= len(block)
                yield block
            if signatures is not None:
                if signatures.chunk(previous, data_hash.hexdigest()) != signature:
                    raise errors.InvalidSignature("The chunk signature we calculated does not match the one sent: "
                                                  "the body was altered or signed with another key.")
                previous = signature
            if size == 0:
                break
            if await self._read(2) != b"\r\n":
                raise errors.IncompleteBody("an aws-chunked chunk is longer than its header says")
        self._read_trailers(await self._trailer_lines(), previous)

    async def _trailer_lines(self) -> list[tuple[str, str]]:
        lines = []
        while line := (await self._line())[:-2]:
            name, colon, value = line.decode("latin-1").partition(":")
            if not colon or len(lines) == MAX_TRAILERS:
                raise errors.MalformedTrailer("the aws-chunked body's trailing headers are malformed")
            lines.append((name.strip().lower(), value.strip()))
        return lines

    def _read_trailers(self, lines: list[tuple[str, str]], previous: str) -> None:
        signature = [value for name, value in lines if name == "x-amz-trailer-signature"]
        trailers = [(name, value) for name, value in lines if name != "x-amz-trailer-signature"]
        if sorted(name for name, _ in trailers) != sorted(self._trailers):
            raise errors.MalformedTrailer(f"the trailing headers must be those x-amz-trailer declares "
                                          f"({', '.join(self._trailers) or 'none'}), each once")
        if self._payload.claimed == STREAMING_SIGNED_TRAILER:
            canonical = "".join(f"{name}:{value}\n" for name, value in trailers).encode()
            expected = self._signatures.trailer(previous, hashlib.sha256(canonical).hexdigest())
            if signature != [expected]:
                raise errors.InvalidSignature("The trailer signature we calculated does not match the one sent.")
        elif signature:
            raise errors.MalformedTrailer("x-amz-trailer-signature comes with signed chunks only")
        for name, value in trailers:
            self._claim(name.removeprefix(_CHECKSUM_PREFIX), value, name)

    async def _line(self) -> bytes:
        try:
            line = await self._reader.readuntil(b"\n")
        except (LineTooLong, asyncio.LimitOverrunError, ValueError):
            raise errors.IncompleteBody("the aws-chunked body has an overlong line") from None
        except asyncio.IncompleteReadError:
            line = b""
        if not line.endswith(b"\r\n"):
            raise errors.IncompleteBody("the aws-chunked body ends before its last chunk and trailing headers")
        return line

    async def _read(self, n: int) -> bytes:
        try:
            return await self._reader.readexactly(n)
        except asyncio.IncompleteReadError:
            raise errors.IncompleteBody("the aws-chunked body ends inside a chunk") from None
