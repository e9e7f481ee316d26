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
from customlabels.ports.blobs import BlobStore, ObjectInfo
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
        infos: dict[tuple[str, str], ObjectInfo] = {}
        for bucket in {b for b, _ in refs}:
            found = await self.blobs.stat_many(bucket, [k for b, k in refs if b == bucket])
            infos.update(((bucket, key), info) for key, info in found.items())
        checks, misses = {}, []
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
