"""Blob store port: buckets of immutable objects addressed by key.

Keys are validated here, once, for every adapter: a key is 1..1024 UTF-8 bytes
of '/'-separated segments, none of them empty, '.' or '..', no leading '/',
no backslash and no control characters. So a key can never name anything
outside its bucket, whatever the adapter stores it on.

Adapters: ``customlabels.adapters.local_blobs`` (embedded) and, later, S3/MinIO.
Both must pass ``tests/contract/test_blob_store.py``.
"""
from __future__ import annotations

import asyncio

import re
from dataclasses import dataclass
from datetime import datetime
from typing import AsyncIterator, Awaitable, Callable, Protocol, Sequence

BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class BlobStoreError(Exception):
    pass


class InvalidKey(BlobStoreError):
    """The bucket name or key is not acceptable; the message says why."""


class NoSuchBucket(BlobStoreError):
    pass


class NoSuchKey(BlobStoreError):
    pass


class Rejected(BlobStoreError):
    """A ``put_stream`` whose ``accept`` check refused the content; nothing was stored."""


class Unavailable(BlobStoreError):
    """The store could not take the request now: unreachable, or it answered 5xx (full, overloaded,
    failing). A write was not made (an object is replaced whole or not at all); the same request
    may succeed later."""


class ReservedBucket(BlobStoreError):
    """The bucket is one of customlabels' own (``RESERVED_BUCKET_PREFIX``): no user names it."""


@dataclass(frozen=True)
class ObjectInfo:
    bucket: str
    key: str
    size: int
    modified: datetime
    sha256: str | None = None  # known right after a write; stat may not know it


def check_bucket(bucket: str) -> str:
    if not BUCKET_NAME.match(bucket) or ".." in bucket:
        raise InvalidKey(
            f"bucket name {bucket!r} is invalid: use 3-63 lowercase letters, digits, '.' or '-', "
            "starting and ending with a letter or digit"
        )
    return bucket


def check_key(key: str) -> str:
    if not key:
        raise InvalidKey("object key is empty")
    if len(key.encode("utf-8")) > 1024:
        raise InvalidKey("object key is longer than 1024 bytes")
    if key.startswith("/"):
        raise InvalidKey(f"object key {key!r} is absolute: keys are relative to their bucket")
    if "\\" in key or _CONTROL.search(key):
        raise InvalidKey(f"object key {key!r} contains a backslash or a control character")
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise InvalidKey(
                f"object key {key!r} has an empty, '.' or '..' segment: keys cannot leave their bucket"
            )
    return key


# Buckets customlabels keeps for itself (manifest snapshots, thumbnails...): written by
# services directly, never named by a user through the gateway's object routes or the console.
RESERVED_BUCKET_PREFIX = "customlabels-internal"


def is_reserved_bucket(bucket: str) -> bool:
    return bucket.startswith(RESERVED_BUCKET_PREFIX)


def check_user_address(bucket: str, key: str | None = None) -> tuple[str, str | None]:
    """The one rule for an object address a user gives (the gateway's /objects routes, the
    console's images): a valid bucket name, a valid key (when there is one), and not one of
    customlabels' own buckets. Raises InvalidKey or ReservedBucket, whose messages say why."""
    check_bucket(bucket)
    if key is not None:
        check_key(key)
    if is_reserved_bucket(bucket):
        raise ReservedBucket(f"bucket {bucket} is reserved for customlabels itself")
    return bucket, key


_S3_URI = re.compile(r"s3://([^/]+)/(.+)", re.DOTALL)


def split_s3_uri(uri: str) -> tuple[str, str] | None:
    """``s3://bucket/key`` -> (bucket, key); None for anything not of that form
    (the bucket and key are not checked: see ``check_bucket``/``check_key``)."""
    match = _S3_URI.fullmatch(uri) if isinstance(uri, str) else None
    return (match.group(1), match.group(2)) if match else None


Chunks = AsyncIterator[bytes]
WRITE_BATCH = 1 << 20  # gather small stream chunks so each write is a useful amount


async def receive(chunks: Chunks, max_bytes: int, write: Callable[[bytes], Awaitable[None]]) -> None:
    """Pass a stream to ``write`` in batches of about ``WRITE_BATCH`` bytes,
    raising ``Rejected`` as soon as it passes ``max_bytes`` (the rest is never read)."""
    pending = bytearray()
    received = 0
    async for chunk in chunks:
        received += len(chunk)
        if received > max_bytes:
            raise Rejected(f"object is larger than the limit of {max_bytes} bytes; nothing was stored")
        pending += chunk
        if len(pending) >= WRITE_BATCH:
            await write(bytes(pending))
            pending.clear()
    if pending:
        await write(bytes(pending))


async def get_many(store: "BlobStore", refs: Sequence[tuple[str, str]], concurrency: int = 16) -> list[bytes | None]:
    """The objects ``(bucket, key)`` in order, ``concurrency`` at a time; None for one that can't be read
    (missing, or refused by the store). ``Unavailable`` is raised, not taken for a missing object."""
    gate = asyncio.Semaphore(concurrency)

    async def one(bucket: str, key: str) -> bytes | None:
        async with gate:
            try:
                return await store.get(bucket, key)
            except Unavailable:
                raise
            except BlobStoreError:
                return None

    return list(await asyncio.gather(*(one(bucket, key) for bucket, key in refs)))


class BlobStore(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def ensure_bucket(self, bucket: str) -> None: ...

    async def put(self, bucket: str, key: str, data: bytes) -> ObjectInfo:
        """Store ``data`` atomically: readers see the old object or the new one."""

    async def put_stream(
        self,
        bucket: str,
        key: str,
        chunks: Chunks,
        *,
        max_bytes: int,
        accept: Callable[[str], Awaitable[bool] | bool] | None = None,
    ) -> ObjectInfo:
        """Stream an object in. Over ``max_bytes`` raises ``Rejected``. When the
        stream ends, ``accept(sha256_hex)`` may still refuse it (for example a
        request signature over the body): then nothing is stored."""

    async def get(self, bucket: str, key: str) -> bytes: ...

    async def read_range(self, bucket: str, key: str, start: int, length: int) -> bytes:
        """Up to ``length`` bytes from ``start`` (negative ``start``: from the end)."""

    def stream(self, bucket: str, key: str, chunk_size: int = 1 << 20) -> Chunks: ...

    async def stat(self, bucket: str, key: str) -> ObjectInfo: ...

    async def stat_many(self, bucket: str, keys: Sequence[str]) -> dict[str, ObjectInfo]:
        """``stat`` of many keys of one bucket at once, for the keys that exist
        (a missing key or bucket is simply left out). Imports check thousands
        of images; one call per batch keeps that cheap."""

    async def list(self, bucket: str, prefix: str = "", *, limit: int = 1000, after: str = "") -> list[ObjectInfo]:
        """Objects whose key starts with ``prefix``, in key order, after key ``after``."""

    async def delete(self, bucket: str, key: str) -> None:
        """Remove an object; a missing object is fine."""

    async def copy(self, src_bucket: str, src_key: str, dst_bucket: str, dst_key: str) -> ObjectInfo: ...
