"""Who a bucket belongs to: the one rule the gateway and every service apply to a bucket a request names.

A bucket belongs to one account, or to nobody:

* customlabels' own buckets belong to nobody. Those under
  ``RESERVED_BUCKET_PREFIX`` (manifest snapshots, thumbnails, these owner
  records) are never named by a user; ``READ_ONLY_BUCKETS`` (models, captured
  review images) are written by the services alone; what of them a key may
  read is the reader's rule (the gateway serves a model's files only to its
  version's account, and lists neither).
* A bucket named ``customlabels-<name>-<12 digits>`` belongs to that account
  by its name (``account_bucket``: where the console keeps another account's
  uploads and results), so nobody else can take it first.
* Any other bucket belongs to the account that first wrote to it (``check``
  with ``write=True`` claims an unclaimed bucket). The owner is recorded in the
  blob store itself, at ``customlabels-internal/bucket-owners/<bucket>``, so
  every process (gateway, services, console) reads the same record, whichever
  adapter holds the objects.
* A bucket with objects but no record was filled before accounts existed (or
  by the object store's own clients): it belongs to the default account
  (``CUSTOMLABELS_ACCOUNT_ID``), which is recorded the first time it is asked.
  An empty bucket without a record is unclaimed.

Invariants:

* A record, once written, never changes: an owner is cached for the life of
  the process.
* Another account's bucket is refused before anything is read or written: with
  ``AccessDeniedException`` by default, or the error the caller's API gives
  for an unreadable object (``refuse=errors.InvalidS3Object``).
* Two accounts writing to a new bucket at the same moment: both may pass the
  check (the blob store has no conditional put); the record then names one of
  them, and from then on only that one.
"""
from __future__ import annotations

import re

from customlabels import errors
from customlabels.ml.runtime.artifact import MODELS_BUCKET
from customlabels.ports.blobs import (
    RESERVED_BUCKET_PREFIX,
    BlobStore,
    BlobStoreError,
    NoSuchBucket,
    NoSuchKey,
    check_bucket,
    is_reserved_bucket,
)

REVIEWS_BUCKET = "customlabels-reviews"  # images of captured predictions, kept for review (hosting writes them)
READ_ONLY_BUCKETS = frozenset({MODELS_BUCKET, REVIEWS_BUCKET})
OWNERS_BUCKET = RESERVED_BUCKET_PREFIX
OWNERS_PREFIX = "bucket-owners/"
_NAMED_FOR_ACCOUNT = re.compile(r"^customlabels-[a-z0-9.-]+-(\d{12})$")


def account_bucket(base: str, account: str, default_account: str) -> str:
    """The bucket customlabels names ``base`` for ``account``: ``base`` itself for the default account
    (the CLI's and the README's names), ``<base>-<account>`` for another, which is that account's by its name."""
    return base if account == default_account else f"{base}-{account}"


class BucketOwners:
    def __init__(self, blobs: BlobStore, default_account: str):
        """``default_account``: the owner of buckets filled before accounts existed."""
        self.blobs = blobs
        self.default_account = default_account
        self._known: dict[str, str] = {}  # bucket -> owner; records never change
        self._ready = False

    async def owner(self, bucket: str) -> str | None:
        """The account ``bucket`` belongs to; None while nobody has claimed it (or for customlabels' own)."""
        if is_reserved_bucket(bucket) or bucket in READ_ONLY_BUCKETS:
            return None
        if bucket in self._known:
            return self._known[bucket]
        if named := _NAMED_FOR_ACCOUNT.match(bucket):
            return named.group(1)
        try:
            owner = (await self.blobs.get(OWNERS_BUCKET, OWNERS_PREFIX + bucket)).decode()
        except (NoSuchBucket, NoSuchKey):
            owner = None
        if owner is None and await self._has_objects(bucket):
            owner = await self._record(bucket, self.default_account)
        if owner is not None:
            self._known[bucket] = owner
        return owner

    async def check(self, bucket: str, account: str, *, write: bool = False,
                    refuse: type[errors.ApiError] = errors.AccessDenied) -> None:
        """Refuse ``account`` a bucket it may not use: another account's, one of customlabels' own
        (or, to write, a read-only one). A write to an unclaimed bucket claims it for ``account``."""
        try:
            check_bucket(bucket)
        except BlobStoreError as bad:  # no such bucket can exist: the caller's API names the problem
            raise (errors.InvalidParameter if refuse is errors.AccessDenied else refuse)(str(bad)) from None
        if is_reserved_bucket(bucket):
            raise refuse(f"bucket {bucket} is reserved for customlabels itself")
        if bucket in READ_ONLY_BUCKETS:
            if write:
                raise refuse(f"bucket {bucket} is read-only: only customlabels' services write there")
            return
        owner = await self.owner(bucket)
        if owner is None and write:
            owner = await self._record(bucket, account)
        if owner is not None and owner != account:
            raise refuse(f"bucket {bucket} belongs to another account than {account}")

    async def check_uri(self, uri: str, account: str, *, write: bool = False,
                        refuse: type[errors.ApiError] = errors.AccessDenied) -> None:
        """``check`` for the bucket of an ``s3://bucket/...`` location."""
        bucket = uri.split("://", 1)[-1].split("/", 1)[0]
        await self.check(bucket, account, write=write, refuse=refuse)

    async def _has_objects(self, bucket: str) -> bool:
        try:
            return bool(await self.blobs.list(bucket, limit=1))
        except NoSuchBucket:
            return False

    async def _record(self, bucket: str, account: str) -> str:
        """Write ``account`` as the owner unless one is recorded; the owner as recorded afterwards."""
        if not self._ready:
            await self.blobs.ensure_bucket(OWNERS_BUCKET)
            self._ready = True
        key = OWNERS_PREFIX + bucket
        try:
            return (await self.blobs.get(OWNERS_BUCKET, key)).decode()
        except NoSuchKey:
            pass
        await self.blobs.put(OWNERS_BUCKET, key, account.encode())
        owner = (await self.blobs.get(OWNERS_BUCKET, key)).decode()  # a concurrent claim may have won
        self._known[bucket] = owner
        return owner
