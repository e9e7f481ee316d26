"""S3's multipart uploads over the blob store, as ``upload_file`` and ``aws s3 cp`` use them above 8 MB.

An upload is a record at ``customlabels-internal/multipart-uploads/<id>/upload``
(JSON: bucket, key, account) with its parts beside it (``part-00001``...), in
the blob store itself, so every gateway replica sees the same uploads.
CompleteMultipartUpload streams the listed parts, in order, into one
``put_stream`` of the target object (readers see the old object or the whole
new one; memory stays bounded), then forgets the upload: its record first,
then its parts.

Invariants:

* An upload id is 32 hex digits (``secrets.token_hex``): nothing else can name
  a record or reach outside ``multipart-uploads/``.
* An upload serves its own bucket and key (another: ``NoSuchUpload``) and its
  own account (another: ``AccessDenied``).
* A part's ETag is the quoted MD5 of its bytes; a CompleteMultipartUpload whose
  listed ETag does not match the part's bytes, or names a part never uploaded,
  is ``InvalidPart`` and stores nothing.
* Nothing is left behind for good: an upload whose newest object (record or
  part) is older than ``ABANDONED_AFTER`` is removed by ``sweep``, which every
  gateway runs at start and every ``SWEEP_SECONDS`` (S3's usual lifecycle rule,
  AbortIncompleteMultipartUpload after 7 days). So are the parts of a process
  killed between Complete's store and its clean-up. Never visible to users
  meanwhile: they are in the internal bucket.
"""
from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from customlabels import errors
from customlabels.ports.blobs import (
    RESERVED_BUCKET_PREFIX,
    BlobStore,
    NoSuchBucket,
    NoSuchKey,
)

UPLOADS_BUCKET = RESERVED_BUCKET_PREFIX
UPLOADS_PREFIX = "multipart-uploads/"
MAX_PART_NUMBER = 10000  # S3's
ABANDONED_AFTER = timedelta(days=7)  # an upload untouched this long is removed by ``sweep``
SWEEP_SECONDS = 3600.0
_UPLOAD_ID = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class Upload:
    id: str
    bucket: str
    key: str
    account: str

    @property
    def folder(self) -> str:
        return f"{UPLOADS_PREFIX}{self.id}/"

    @property
    def record_key(self) -> str:
        return self.folder + "upload"

    def part_key(self, number: int) -> str:
        return f"{self.folder}part-{number:05d}"

    def check_owner(self, account: str) -> None:
        if account != self.account:
            raise errors.AccessDenied(f"upload {self.id} belongs to another account than {account}")


def part_number(text: str | None) -> int:
    """A ``partNumber`` query value, checked: 1 to 10000."""
    if text is None or not text.isdigit() or not 1 <= int(text) <= MAX_PART_NUMBER:
        raise errors.InvalidArgument(f"partNumber must be an integer from 1 to {MAX_PART_NUMBER}, not {str(text)[:20]!r}")
    return int(text)


class MultipartUploads:
    def __init__(self, blobs: BlobStore):
        self.blobs = blobs

    async def create(self, bucket: str, key: str, account: str) -> Upload:
        upload = Upload(secrets.token_hex(16), bucket, key, account)
        await self.blobs.ensure_bucket(UPLOADS_BUCKET)
        record = {"bucket": bucket, "key": key, "account": account}
        await self.blobs.put(UPLOADS_BUCKET, upload.record_key, json.dumps(record).encode())
        return upload

    async def find(self, upload_id: str, bucket: str, key: str) -> Upload:
        """The upload ``upload_id`` of ``bucket``/``key``; ``NoSuchUpload`` for any other
        (unknown, completed, aborted, or another object's)."""
        missing = errors.NoSuchUpload(f"upload {upload_id[:40]!r} of s3://{bucket}/{key} does not exist: it was "
                                      "never created, or was completed or aborted")
        if not _UPLOAD_ID.fullmatch(upload_id):
            raise missing
        try:
            record = json.loads(await self.blobs.get(UPLOADS_BUCKET, f"{UPLOADS_PREFIX}{upload_id}/upload"))
        except (NoSuchBucket, NoSuchKey):
            raise missing from None
        if (record["bucket"], record["key"]) != (bucket, key):
            raise missing
        return Upload(upload_id, bucket, key, record["account"])

    async def assembled(self, upload: Upload, parts: list[tuple[int, str]]) -> AsyncIterator[bytes]:
        """The bytes of ``parts`` (``(number, MD5 hex)``, ascending) in order; ``InvalidPart`` for a part
        missing or whose bytes do not have that MD5 (raised before the stream ends, so nothing is stored)."""
        for number, etag in parts:
            md5 = hashlib.md5()
            try:
                async for block in self.blobs.stream(UPLOADS_BUCKET, upload.part_key(number)):
                    md5.update(block)
                    yield block
            except NoSuchKey:
                raise errors.InvalidPart(f"part {number} of upload {upload.id} was never uploaded") from None
            if md5.hexdigest() != etag:
                raise errors.InvalidPart(f"part {number} of upload {upload.id} has ETag \"{md5.hexdigest()}\", "
                                         f"not \"{etag}\"")

    async def forget(self, upload: Upload) -> None:
        """Remove the upload: its record (it is gone from then on), then its parts."""
        await self.blobs.delete(UPLOADS_BUCKET, upload.record_key)
        while batch := await self.blobs.list(UPLOADS_BUCKET, upload.folder, limit=1000):
            for info in batch:
                await self.blobs.delete(UPLOADS_BUCKET, info.key)

    async def sweep(self, now: datetime | None = None) -> int:
        """Remove every upload whose newest object is older than ``ABANDONED_AFTER``; how many."""
        newest: dict[str, datetime] = {}
        after = ""
        try:
            while batch := await self.blobs.list(UPLOADS_BUCKET, UPLOADS_PREFIX, limit=1000, after=after):
                for info in batch:
                    upload_id = info.key.removeprefix(UPLOADS_PREFIX).split("/", 1)[0]
                    newest[upload_id] = max(newest.get(upload_id, info.modified), info.modified)
                if batch[-1].key <= after:  # a store that pages oddly: what was read is enough for this round
                    break
                after = batch[-1].key
        except NoSuchBucket:
            return 0
        cutoff = (now or datetime.now(UTC)) - ABANDONED_AFTER
        abandoned = [upload_id for upload_id, modified in newest.items()
                     if modified < cutoff and _UPLOAD_ID.fullmatch(upload_id)]
        for upload_id in abandoned:
            await self.forget(Upload(upload_id, bucket="", key="", account=""))
        return len(abandoned)
