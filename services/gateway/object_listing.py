"""``GET /objects/<bucket>/``: S3's ListObjectsV2 over the blob store, and S3's XML for its answers.

So ``boto3.client("s3", endpoint_url=".../objects")`` lists (``list_objects_v2``
and its paginator) and deletes (``delete_object``) as against S3. The query
parameters are S3's: ``prefix``, ``delimiter``, ``max-keys`` (0-1000, default
1000), ``continuation-token``, ``start-after``, ``encoding-type=url``;
``list-type`` may be absent or ``2`` (ListObjectsV2: ListObjects V1's
``marker`` is not served); ``fetch-owner`` is accepted and ignored (there are
no owners).

Invariants: keys come in the port's key order (UTF-8 byte order, as S3), each
key or common prefix at most once across pages; a continuation token is the
position after the last entry of its page, opaque to clients (base64url); a
bad parameter is an ``InvalidArgument`` and lists nothing. Entries carry
``Key``, ``LastModified``, ``Size`` and ``StorageClass``: no ``ETag`` (the
store does not keep S3's MD5) and no ``Owner``.
"""
from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from urllib.parse import quote
from xml.etree import ElementTree as ET

from multidict import MultiMapping

from customlabels import errors
from customlabels.ports.blobs import BlobStore, ObjectInfo
from services.gateway.s3_wire import S3_NAMESPACE

MAX_KEYS = 1000
_PAST_EVERY_KEY = "\U0010ffff"  # sorts after any character a key can continue a prefix with


@dataclass(frozen=True)
class ListRequest:
    prefix: str = ""
    delimiter: str = ""
    max_keys: int = MAX_KEYS
    after: str = ""  # the position to list after: the token's, else start-after
    continuation_token: str | None = None
    start_after: str = ""
    url_encoded: bool = False

    @classmethod
    def from_query(cls, query: MultiMapping[str]) -> "ListRequest":
        if query.get("list-type", "2") != "2":
            raise errors.InvalidArgument("only ListObjectsV2 is served: list-type must be 2")
        if "marker" in query:
            raise errors.InvalidArgument("marker is ListObjects V1's; use continuation-token or start-after (ListObjectsV2)")
        encoding = query.get("encoding-type")
        if encoding not in (None, "url"):
            raise errors.InvalidArgument(f"encoding-type must be url, not {encoding!r}")
        try:
            max_keys = int(query.get("max-keys", MAX_KEYS))
        except ValueError:
            raise errors.InvalidArgument(f"max-keys must be an integer, not {query['max-keys']!r}") from None
        if max_keys < 0:
            raise errors.InvalidArgument(f"max-keys must not be negative, not {max_keys}")
        token = query.get("continuation-token")
        start_after = query.get("start-after", "")
        return cls(
            prefix=query.get("prefix", ""), delimiter=query.get("delimiter", ""), max_keys=min(max_keys, MAX_KEYS),
            after=_decode_token(token) if token is not None else start_after,
            continuation_token=token, start_after=start_after, url_encoded=encoding == "url",
        )


@dataclass
class Listing:
    objects: list[ObjectInfo]
    common_prefixes: list[str]
    next_after: str | None  # where the next page starts; None when this page is the last


async def list_page(blobs: BlobStore, bucket: str, request: ListRequest) -> Listing:
    """One page: up to ``max_keys`` keys and common prefixes (together), after ``request.after``
    (``NoSuchBucket`` from the store when there is no such bucket)."""
    if request.max_keys == 0:
        await blobs.list(bucket, request.prefix, limit=0)  # still: does the bucket exist?
        return Listing([], [], None)
    objects: list[ObjectInfo] = []
    prefixes: list[str] = []
    cursor = request.after
    while True:
        batch = await blobs.list(bucket, request.prefix, limit=request.max_keys + 1, after=cursor)
        jumped = False
        for info in batch:
            common = _common_prefix(info.key, request)
            if common is not None and prefixes and prefixes[-1] == common:
                cursor = info.key  # a key of the group just listed that the jump below missed
                continue
            if len(objects) + len(prefixes) == request.max_keys:
                return Listing(objects, prefixes, cursor)  # this entry starts the next page
            if common is None:
                objects.append(info)
                cursor = info.key
            else:
                prefixes.append(common)
                cursor = common + _PAST_EVERY_KEY  # past the whole group in one step
                jumped = True
                break
        if not jumped and len(batch) <= request.max_keys:
            return Listing(objects, prefixes, None)  # the store has nothing more


def _common_prefix(key: str, request: ListRequest) -> str | None:
    """The group ``key`` rolls up into (prefix up to the first delimiter after it), or None."""
    if not request.delimiter:
        return None
    rest = key[len(request.prefix):]
    at = rest.find(request.delimiter)
    return None if at < 0 else request.prefix + rest[: at + len(request.delimiter)]


def list_objects_v2_xml(bucket: str, request: ListRequest, listing: Listing) -> bytes:
    """The ListBucketResult S3 answers (``encoding-type=url``: names percent-encoded, as S3 does)."""
    encode = (lambda text: quote(text, safe="/")) if request.url_encoded else (lambda text: text)
    root = ET.Element("ListBucketResult", xmlns=S3_NAMESPACE)

    def add(parent: ET.Element, name: str, text: object) -> None:
        ET.SubElement(parent, name).text = str(text)

    add(root, "Name", bucket)
    add(root, "Prefix", encode(request.prefix))
    if request.delimiter:
        add(root, "Delimiter", encode(request.delimiter))
    add(root, "MaxKeys", request.max_keys)
    add(root, "KeyCount", len(listing.objects) + len(listing.common_prefixes))
    add(root, "IsTruncated", "true" if listing.next_after is not None else "false")
    if request.continuation_token is not None:
        add(root, "ContinuationToken", request.continuation_token)
    if listing.next_after is not None:
        add(root, "NextContinuationToken", _encode_token(listing.next_after))
    if request.start_after:
        add(root, "StartAfter", encode(request.start_after))
    if request.url_encoded:
        add(root, "EncodingType", "url")
    for info in listing.objects:
        contents = ET.SubElement(root, "Contents")
        add(contents, "Key", encode(info.key))
        add(contents, "LastModified", info.modified.strftime("%Y-%m-%dT%H:%M:%S.") + f"{info.modified.microsecond // 1000:03d}Z")
        add(contents, "Size", info.size)
        add(contents, "StorageClass", "STANDARD")
    for prefix in listing.common_prefixes:
        add(ET.SubElement(root, "CommonPrefixes"), "Prefix", encode(prefix))
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def _encode_token(after: str) -> str:
    return base64.urlsafe_b64encode(after.encode("utf-8")).decode("ascii")


def _decode_token(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode("ascii")).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError):
        raise errors.InvalidArgument("The continuation token provided is incorrect") from None
