"""Image checks for manifest lines, remembered per object.

Checking an image reads its header and its last bytes; a dataset often names
the same objects again (re-imports, copies, updates), so results are kept in
the ``images`` collection and reused while the object's size and modification
time are unchanged.

An image in another account's bucket is never read: its line gets
ERROR_INVALID_IMAGE, saying so (``customlabels.buckets``).
"""
from __future__ import annotations

import asyncio
from typing import Iterable

from customlabels import errors
from customlabels.buckets import BucketOwners
from customlabels.images import ImageProblem, inspect_blob
from customlabels.manifests import ImageCheck
from customlabels.ports.blobs import BlobStore, ObjectInfo
from customlabels.ports.documents import Put, ScopedStore

from services.datasets.records import IMAGES

_NOT_FOUND = "ERROR_INVALID_IMAGE"


class ImageChecker:
    def __init__(self, store: ScopedStore, blobs: BlobStore, buckets: BucketOwners, concurrency: int = 16):
        self.store = store
        self.blobs = blobs
        self.buckets = buckets
        self._limit = asyncio.Semaphore(concurrency)

    async def check_many(self, refs: Iterable[tuple[str, str]], account: str | None = None) -> dict[tuple[str, str], ImageCheck]:
        """Checks for each (bucket, key), from the cache where it is still valid; with ``account``,
        only in the buckets that account may read (the others' images get an error, unread)."""
        refs = list(dict.fromkeys(refs))
        refused = await self._refused(refs, account) if account else {}
        checks = {ref: refused[ref[0]] for ref in refs if ref[0] in refused}
        refs = [ref for ref in refs if ref[0] not in refused]
        cached = await self.store.get_many(IMAGES, [f"{b}/{k}" for b, k in refs])
        infos: dict[tuple[str, str], ObjectInfo] = {}
        for bucket in {b for b, _ in refs}:
            found = await self.blobs.stat_many(bucket, [k for b, k in refs if b == bucket])
            infos.update(((bucket, key), info) for key, info in found.items())
        misses = []
        for ref in refs:
            info, doc = infos.get(ref), cached.get("/".join(ref))
            if info is None:
                checks[ref] = ImageCheck(error_code=_NOT_FOUND, error_message=f"image s3://{ref[0]}/{ref[1]} was not found")
            elif doc is not None and doc["size"] == info.size and doc["modified"] == info.modified.isoformat():
                checks[ref] = _from_doc(doc)
            else:
                misses.append((ref, info))
        docs = await asyncio.gather(*(self._inspect(ref, info) for ref, info in misses))
        for (ref, _), doc in zip(misses, docs):
            checks[ref] = _from_doc(doc)
        if docs:
            await self.store.commit([Put(IMAGES, doc) for doc in docs])
        return checks

    async def _refused(self, refs: list[tuple[str, str]], account: str) -> dict[str, ImageCheck]:
        """bucket -> the check of each of its images, for the buckets ``account`` may not read."""
        refused = {}
        for bucket in {b for b, _ in refs}:
            try:
                await self.buckets.check(bucket, account)
            except errors.ApiError as denied:
                refused[bucket] = ImageCheck(error_code=_NOT_FOUND, error_message=denied.message)
        return refused

    async def _inspect(self, ref: tuple[str, str], info: ObjectInfo) -> dict:
        """A cache document for an object not checked since it last changed."""
        bucket, key = ref
        doc = {"_id": f"{bucket}/{key}", "size": info.size, "modified": info.modified.isoformat()}
        async with self._limit:
            try:
                image = await inspect_blob(self.blobs, bucket, key, info.size)
                doc.update(width=image.width, height=image.height, format=image.format)
            except ImageProblem as problem:
                doc.update(error_code=problem.code, error_message=str(problem))
        return doc


def _from_doc(doc: dict) -> ImageCheck:
    if doc.get("error_code"):
        return ImageCheck(error_code=doc["error_code"], error_message=doc["error_message"])
    return ImageCheck(width=doc["width"], height=doc["height"])
