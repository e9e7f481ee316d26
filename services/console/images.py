"""Image bytes between the browser and the blob store: uploads into the
user's bucket, images and server-made thumbnails back to a signed-in page.

Invariants:
- Uploads land in the signed-in account's upload bucket (``UPLOAD_BUCKET``,
  the CLI's, for the default account; ``customlabels-images-<account>`` for
  another: ``Calls.bucket``) under ``<project>/<train|test>/<path>`` (the
  CLI's layout), through the blob store port's own key checks. An image must be a PNG or JPEG within the API's limits
  (``customlabels.images.inspect_image``: magic bytes, size, 64..4096 px,
  aspect ratio) before anything is stored; an oversized body is refused from
  its Content-Length, before it is read.
- Only PNG and JPEG bytes are ever served, with the type their magic bytes
  say, never an upload as HTML or SVG; never from a bucket users may not
  name (``customlabels.ports.blobs.check_user_address``, the gateway's rule),
  nor from another account's (``customlabels.buckets``: AccessDenied).
- A thumbnail's URL names the image version it shows (size and modification
  time), so it is cached for good; the thumbnail itself is kept in the
  console's bucket under a hash of that version. Decoding is bounded by
  ``decode_image`` (no decompression bombs) and by a semaphore.
"""
from __future__ import annotations

import asyncio
import hashlib
import io
import os
from collections.abc import Callable, Iterable
from urllib.parse import quote

from aiohttp import web
from customlabels import errors
from customlabels.images import (
    IMAGE_MAX_BYTES,
    ImageProblem,
    decode_image,
    inspect_image,
)
from customlabels.ports.blobs import (
    BlobStore,
    BlobStoreError,
    InvalidKey,
    NoSuchBucket,
    NoSuchKey,
    ObjectInfo,
    ReservedBucket,
    check_key,
    check_user_address,
    is_reserved_bucket,
    split_s3_uri,
)
from customlabels.buckets import BucketOwners
from customlabels.wire.http import read_within

from services.console.records import THUMBNAILS_BUCKET
from services.console.views import IMMUTABLE

UPLOAD_BUCKET = "customlabels-images"  # the CLI's default bucket, same <project>/<dataset>/ layout
ANNOTATION_SUFFIXES = (".xml", ".json", ".txt", ".yaml", ".yml")
MAX_ANNOTATION_BYTES = 64 * 1024 * 1024
THUMBNAIL_SIDE = 256
THUMBNAIL_QUALITY = 80
_TYPES = {b"\x89PNG": "image/png", b"\xff\xd8\xff": "image/jpeg"}


def image_type(head: bytes) -> str | None:
    return next((kind for magic, kind in _TYPES.items() if head.startswith(magic)), None)


def object_url(bucket: str, key: str) -> str:
    return f"/console/objects/{bucket}/{quote(key)}"


def version_tag(info: ObjectInfo) -> str:
    return f"{info.size}-{int(info.modified.timestamp() * 1000)}"


class Images:
    def __init__(self, blobs: BlobStore, buckets: BucketOwners, *, account: Callable[[], str],
                 bucket_of: Callable[[str], str], decoders: int | None = None):
        """``account()``: the signed-in account; ``bucket_of(base)``: its bucket ``base`` (``Calls``'s)."""
        self.blobs = blobs
        self.buckets = buckets
        self.account = account
        self.bucket_of = bucket_of
        self._decoding = asyncio.Semaphore(decoders or max(1, (os.cpu_count() or 2)))

    async def start(self) -> None:
        await self.blobs.ensure_bucket(THUMBNAILS_BUCKET)
        await self.blobs.ensure_bucket(UPLOAD_BUCKET)

    # --- uploads ---------------------------------------------------------------------
    async def upload(self, request: web.Request) -> web.Response:
        """PUT /console/uploads/{project}/{kind}/{path}: one image or annotation file."""
        project, kind, path = request.match_info["project"], request.match_info["kind"], request.match_info["path"]
        if kind not in ("train", "test"):
            raise errors.InvalidParameter("Uploads go to the train or the test dataset.")
        key = f"{project}/{kind}/{path}"
        try:
            check_key(key)
        except InvalidKey as exc:
            raise errors.InvalidParameter(f"{path} cannot be uploaded: {exc}") from None
        name = path.rsplit("/", 1)[-1]
        is_annotation = name.lower().endswith(ANNOTATION_SUFFIXES)
        limit = MAX_ANNOTATION_BYTES if is_annotation else IMAGE_MAX_BYTES
        body = await read_within(request, limit)
        if body is None:
            raise too_large(request, name, limit)
        if not body:
            raise errors.InvalidParameter(f"{name} is empty.")
        info = None
        if not is_annotation:
            try:
                info = inspect_image(body, body[-1024:], len(body), name=name)  # the whole file as head: never NeedMoreBytes
            except ImageProblem as problem:
                raise errors.InvalidImageFormat(problem.message) from None
        bucket = self.bucket_of(UPLOAD_BUCKET)
        await self.buckets.check(bucket, self.account(), write=True)
        await self.blobs.ensure_bucket(bucket)
        stored = await self.blobs.put(bucket, key, body)
        return web.json_response({
            "bucket": bucket, "key": key, "size": stored.size,
            "width": info.width if info else None, "height": info.height if info else None,
        })

    # --- serving -------------------------------------------------------------------
    async def _address(self, request: web.Request) -> tuple[str, str]:
        """The object the URL names, by the gateway's rules (``check_user_address``, the bucket's account)."""
        bucket, key = request.match_info["bucket"], request.match_info["key"]
        try:
            check_user_address(bucket, key)
        except ReservedBucket as exc:
            raise errors.AccessDenied(str(exc)) from None
        except InvalidKey as exc:
            raise errors.InvalidParameter(str(exc)) from None
        await self.buckets.check(bucket, self.account())
        return bucket, key

    async def _read_image(self, bucket: str, key: str) -> tuple[bytes, str]:
        try:
            info = await self.blobs.stat(bucket, key)
            if info.size > IMAGE_MAX_BYTES:
                raise errors.ImageTooLarge(f"s3://{bucket}/{key} is larger than {IMAGE_MAX_BYTES // 1024 // 1024} MB")
            data = await self.blobs.get(bucket, key)
        except (NoSuchBucket, NoSuchKey):
            raise errors.ResourceNotFound(f"s3://{bucket}/{key} does not exist") from None
        kind = image_type(data[:4])
        if kind is None:
            raise errors.InvalidImageFormat(f"s3://{bucket}/{key} is not a PNG or JPEG image")
        return data, kind

    async def image(self, request: web.Request) -> web.Response:
        """GET /console/objects/{bucket}/{key}: the image itself (PNG or JPEG only)."""
        bucket, key = await self._address(request)
        data, kind = await self._read_image(bucket, key)
        cache = IMMUTABLE if request.query.get("v") else "private, no-cache"
        return web.Response(body=data, content_type=kind, headers={"Cache-Control": cache})

    async def thumbnail(self, request: web.Request) -> web.Response:
        """GET /console/thumbnails/{bucket}/{key}?v=<version>: at most 256 px, JPEG."""
        bucket, key = await self._address(request)
        version = request.query.get("v", "")
        cached_key = "thumbs/" + hashlib.sha256(f"{bucket}/{key}\n{version}".encode()).hexdigest() + ".jpg"
        try:
            data = await self.blobs.get(THUMBNAILS_BUCKET, cached_key)
        except (NoSuchKey, NoSuchBucket):
            data = await self._make_thumbnail(bucket, key, version)
            await self.blobs.put(THUMBNAILS_BUCKET, cached_key, data)
        return web.Response(body=data, content_type="image/jpeg", headers={"Cache-Control": IMMUTABLE})

    async def _make_thumbnail(self, bucket: str, key: str, version: str) -> bytes:
        try:
            info = await self.blobs.stat(bucket, key)
        except (NoSuchBucket, NoSuchKey):
            raise errors.ResourceNotFound(f"s3://{bucket}/{key} does not exist") from None
        if version_tag(info) != version:
            raise errors.ResourceNotFound(f"s3://{bucket}/{key} has changed; reload the page")
        data, _ = await self._read_image(bucket, key)
        async with self._decoding:
            try:
                return await asyncio.to_thread(_thumbnail_bytes, data)
            except ImageProblem as problem:
                raise errors.InvalidImageFormat(problem.message) from None

    async def versions(self, refs: Iterable[str]) -> dict[str, str]:
        """source-ref -> version tag, for the refs whose objects exist in buckets the account may read
        (one stat call per bucket)."""
        by_bucket: dict[str, list[str]] = {}
        for ref in refs:
            parts = split_s3_uri(ref)
            if parts and not is_reserved_bucket(parts[0]):
                by_bucket.setdefault(parts[0], []).append(parts[1])
        found: dict[str, str] = {}
        for bucket, keys in by_bucket.items():
            try:
                await self.buckets.check(bucket, self.account())
                infos = await self.blobs.stat_many(bucket, keys)
            except (BlobStoreError, InvalidKey, errors.ApiError):
                continue
            for key, info in infos.items():
                found[f"s3://{bucket}/{key}"] = version_tag(info)
        return found


def thumbnail_url(source_ref: str, version: str) -> str:
    bucket, key = split_s3_uri(source_ref) or ("", "")
    return f"/console/thumbnails/{bucket}/{quote(key)}?v={version}"


def too_large(request: web.Request, name: str, limit: int) -> errors.ApiError:
    """The answer to a photo over ``limit`` bytes: its declared size where the request gave one."""
    size = f"{request.content_length / 1024 / 1024:.1f} MB" if request.content_length else "larger than that"
    return errors.ImageTooLarge(f"{name}: {size}; the limit is {limit // 1024 // 1024} MB.")


def _thumbnail_bytes(data: bytes) -> bytes:
    image = decode_image(data, draft_to=(THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=THUMBNAIL_QUALITY, optimize=True)
    return out.getvalue()
