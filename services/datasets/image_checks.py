"""Image checks for manifest lines, remembered per object.

Checking an image reads its header and its last bytes; a dataset often names
the same objects again (re-imports, copies, updates), so results are kept in
the ``images`` collection and reused while the object's size and modification
time are unchanged.
"""
from __future__ import annotations

import asyncio
from typing import Iterable

from customlabels.images import ImageProblem, inspect_blob
from customlabels.manifests import ImageCheck
from customlabels.ports.blobs import BlobStore, BlobStoreError, NoSuchBucket, NoSuchKey
from customlabels.ports.documents import Collection, Put, ScopedStore

IMAGES = "images"
COLLECTIONS = (Collection(IMAGES),)
_NOT_FOUND = "ERROR_INVALID_IMAGE"


class ImageChecker:
    def __init__(self, store: ScopedStore, blobs: BlobStore, concurrency: int = 16):
        self.store = store
        self.blobs = blobs
        self._limit = asyncio.Semaphore(concurrency)

    async def check_many(self, refs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], ImageCheck]:
        """Checks for each (bucket, key), from the cache where it is still valid."""
        refs = list(dict.fromkeys(refs))
        cached = await self.store.get_many(IMAGES, [f"{b}/{k}" for b, k in refs])
        results = await asyncio.gather(*(self._check(b, k, cached.get(f"{b}/{k}")) for b, k in refs))
        checks, writes = {}, []
        for ref, (check, write) in zip(refs, results):
            checks[ref] = check
            if write is not None:
                writes.append(write)
        if writes:
            await self.store.commit(writes)
        return checks

    async def _check(self, bucket: str, key: str, cached: dict | None) -> tuple[ImageCheck, Put | None]:
        async with self._limit:
            try:
                info = await self.blobs.stat(bucket, key)
            except (NoSuchKey, NoSuchBucket, BlobStoreError):
                return ImageCheck(error_code=_NOT_FOUND, error_message=f"image s3://{bucket}/{key} was not found"), None
            stamp = {"size": info.size, "modified": info.modified.isoformat()}
            if cached and all(cached.get(k) == v for k, v in stamp.items()):
                return _from_doc(cached), None
            try:
                image = await inspect_blob(self.blobs, bucket, key)
                doc = {**stamp, "width": image.width, "height": image.height, "format": image.format}
            except ImageProblem as problem:
                doc = {**stamp, "error_code": problem.code, "error_message": str(problem)}
            return _from_doc(doc), Put(IMAGES, {"_id": f"{bucket}/{key}", **doc})


def _from_doc(doc: dict) -> ImageCheck:
    if doc.get("error_code"):
        return ImageCheck(error_code=doc["error_code"], error_message=doc["error_message"])
    return ImageCheck(width=doc["width"], height=doc["height"])
