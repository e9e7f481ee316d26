"""``/objects``: the blob store's face as S3's REST API, so a stock S3 client (boto3's ``s3`` with
``endpoint_url=<server>/objects`` and path-style addressing, the AWS CLI) works unchanged.

Operations, picked by method and query as S3 picks them:

=========================================  ===================================================
``PUT /objects/<bucket>/<key>``             PutObject (every body form: ``services.gateway.s3_wire``)
``PUT ...?partNumber=N&uploadId=U``         UploadPart (``services.gateway.multipart``)
``POST ...?uploads`` / ``POST ...?uploadId`` CreateMultipartUpload / CompleteMultipartUpload
``DELETE ...?uploadId=U``                   AbortMultipartUpload
``GET|HEAD /objects/<bucket>/<key>``        GetObject / HeadObject: ETag, Content-Length,
                                            Last-Modified, Content-Type; ``Range``,
                                            ``If-Match``, ``If-None-Match``; presigned URLs too
``DELETE /objects/<bucket>/<key>``          DeleteObject (204 whether or not the key existed)
``GET /objects/<bucket>/``                  ListObjectsV2 (``services.gateway.object_listing``)
``HEAD`` / ``PUT /objects/<bucket>``        HeadBucket / CreateBucket
=========================================  ===================================================

Anything else of S3's (CopyObject, DeleteObjects, ListParts, versions, ACLs...)
answers ``NotImplemented``. Every answer carries ``x-amz-request-id``; every
error is S3's ``<Error>`` XML under S3's codes (``NoSuchKey``, ``AccessDenied``,
``SignatureDoesNotMatch``, ``EntityTooLarge``, ``BadDigest``...), a 500 being a bug
(logged with the request id).

Who may do what: requests are signed with SigV4 under service name ``s3``.
Buckets named ``customlabels-internal*`` are refused; the models and reviews
buckets are read-only (written by the services alone) and cannot be listed, and
a model's files are served only to its version's account (``may_read``). Any
other bucket belongs to the account that first wrote to it
(``customlabels.buckets``): another account's key gets ``AccessDenied``.

Invariants: nothing is stored unless the whole body arrived, its signature and
every digest it claims hold and the writer may write there (the blob store's
``put_stream`` with ``accept``); bodies stream in bounded memory, up to
``CUSTOMLABELS_MAX_OBJECT_BYTES``. An object's ETag is always the quoted MD5 of
its bytes (for a multipart upload too, where S3 gives an MD5 of MD5s); the
blob store keeps no MD5, so ``Etags`` remembers the ones this process has seen
and reads an object once to learn any other. A PUT or CompleteMultipartUpload
into a watched bucket (``CUSTOMLABELS_WATCHED_BUCKETS``) publishes
``ImageUploaded`` after the object is stored; if that fails the client gets a
500 and retries the (idempotent) write, so the event is not lost.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import mimetypes
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

from aiohttp import web
from customlabels import errors
from customlabels.buckets import READ_ONLY_BUCKETS, BucketOwners
from customlabels.config import Settings
from customlabels.events import ImageUploaded
from customlabels.ml.runtime.artifact import MODELS_BUCKET
from customlabels.ports.blobs import (
    BlobStore,
    InvalidKey,
    NoSuchBucket,
    NoSuchKey,
    ObjectInfo,
    Rejected,
    ReservedBucket,
    check_user_address,
)
from customlabels.ports.events import EventBus
from customlabels.wire.dispatch import Caller
from customlabels.wire.http import REQUEST_ID, read_within

from services.gateway.multipart import ABANDONED_AFTER, SWEEP_SECONDS, UPLOADS_BUCKET, MultipartUploads, part_number
from services.gateway.object_listing import ListRequest, list_objects_v2_xml, list_page
from services.gateway.s3_wire import (
    SLICE,
    UNSIGNED_PAYLOAD,
    ObjectBody,
    byte_range,
    completed_parts,
    http_date,
    payload_of,
    quoted_etag,
    s3_error_response,
    xml_result,
)
from services.gateway.sigv4 import chunk_signatures, verify_presigned_request

OBJECTS_MOUNT = "/objects"  # the routes' prefix: not part of a SigV2 presigned URL's resource
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
MAX_DOCUMENT = 4 << 20  # the largest XML request body (a CompleteMultipartUpload of 10000 parts is about 1.5 MB)

log = logging.getLogger("customlabels.gateway.objects")

# Checks a header-signed request: the request and what its signature covers for the body
# (the body's hex SHA-256 or a payload literal); returns the access key or raises an ApiError (403).
Verify = Callable[[web.Request, str], str]
# Refuses (AccessDenied) a caller who may not read bucket/key.
MayRead = Callable[[Caller, str, str], Awaitable[None]]


class Etags:
    """Each object's ETag, the quoted MD5 of its bytes, for the last ``capacity`` objects asked about.

    An entry holds the size and time the object was stored with, so a replaced object
    (another size or time) is read again rather than given its predecessor's ETag.
    """

    def __init__(self, blobs: BlobStore, capacity: int = 50_000):
        self.blobs = blobs
        self.capacity = capacity
        self._known: OrderedDict[tuple[str, str], tuple[int, datetime, str]] = OrderedDict()

    def remember(self, info: ObjectInfo, md5_hex: str) -> None:
        self._known[info.bucket, info.key] = (info.size, info.modified, md5_hex)
        self._known.move_to_end((info.bucket, info.key))
        while len(self._known) > self.capacity:
            self._known.popitem(last=False)

    async def of(self, info: ObjectInfo) -> str:
        known = self._known.get((info.bucket, info.key))
        if known is None or known[:2] != (info.size, info.modified):
            md5 = hashlib.md5()
            async for block in self.blobs.stream(info.bucket, info.key, SLICE):
                md5.update(block)
            self.remember(info, md5.hexdigest())
            known = self._known[info.bucket, info.key]
        self._known.move_to_end((info.bucket, info.key))
        return quoted_etag(known[2])


class ObjectRoutes:
    def __init__(self, settings: Settings, blobs: BlobStore, buckets: BucketOwners, bus: EventBus, *,
                 verify: Verify, may_read: MayRead):
        self.settings = settings
        self.blobs = blobs
        self.buckets = buckets
        self.bus = bus
        self.verify = verify
        self.may_read = may_read
        self.uploads = MultipartUploads(blobs)
        self.etags = Etags(blobs)

    def add_to(self, app: web.Application) -> None:
        """The routes, the S3 error answers and the ``x-amz-request-id`` header (after ``request_ids``)."""
        app.middlewares.append(self._s3_errors)
        app.on_response_prepare.append(self._request_id_header)
        app.cleanup_ctx.append(self._sweeping)
        objects, bucket = OBJECTS_MOUNT + "/{bucket}/{key:.+}", OBJECTS_MOUNT + "/{bucket}"
        app.router.add_put(objects, self.put)
        app.router.add_get(objects, self.get)  # and HEAD
        app.router.add_post(objects, self.post)
        app.router.add_delete(objects, self.delete)
        for path in (bucket, bucket + "/"):
            app.router.add_get(path, self.bucket_get)  # and HEAD
            app.router.add_put(path, self.create_bucket)

    # --- S3's operations by method and query ---------------------------------------------------
    async def put(self, request: web.Request) -> web.Response:
        if "x-amz-copy-source" in request.headers:
            raise errors.NotImplementedOperation("CopyObject is not served: GET the object and PUT it again")
        if "uploadId" in request.query or "partNumber" in request.query:
            return await self.upload_part(request)
        return await self.put_object(request)

    async def get(self, request: web.Request) -> web.StreamResponse:
        if "uploadId" in request.query:
            raise errors.NotImplementedOperation("ListParts is not served")
        return await self.get_object(request)

    async def post(self, request: web.Request) -> web.Response:
        if "uploads" in request.query:
            return await self.create_multipart_upload(request)
        if "uploadId" in request.query:
            return await self.complete_multipart_upload(request)
        raise errors.NotImplementedOperation("of S3's POST operations on an object, only the multipart upload's "
                                             "are served (?uploads, ?uploadId=...)")

    async def delete(self, request: web.Request) -> web.Response:
        if "uploadId" in request.query:
            return await self.abort_multipart_upload(request)
        return await self.delete_object(request)

    async def bucket_get(self, request: web.Request) -> web.Response:
        return await (self.head_bucket(request) if request.method == "HEAD" else self.list_objects(request))

    # --- objects -------------------------------------------------------------------------------
    async def put_object(self, request: web.Request) -> web.Response:
        bucket, key = self._address(request)
        _refuse_writes(bucket)
        await self.blobs.ensure_bucket(bucket)

        async def may_write(account: str) -> None:
            # Only now is the writer surely known: another account's bucket is refused, an unclaimed one becomes its.
            await self.buckets.check(bucket, account, write=True)

        info, body = await self._receive(request, bucket, key, may_write)
        self.etags.remember(info, body.md5_hex)
        await self._stored(info)
        return web.Response(headers={"ETag": quoted_etag(body.md5_hex)})

    async def get_object(self, request: web.Request) -> web.StreamResponse:
        bucket, key = self._address(request)
        await self.may_read(self._reader(request), bucket, key)
        try:
            info = await self.blobs.stat(bucket, key)
            etag = await self.etags.of(info)
        except NoSuchBucket:
            raise errors.NoSuchBucket(f"bucket {bucket} does not exist") from None
        except NoSuchKey:
            raise errors.NoSuchKey(f"object s3://{bucket}/{key} does not exist") from None
        headers = {"ETag": etag, "Last-Modified": http_date(info.modified), "Accept-Ranges": "bytes"}
        if not _matches(request.headers.get("If-Match", "*"), etag):
            raise errors.PreconditionFailed(f"s3://{bucket}/{key} is no longer the object of ETag "
                                            f"{request.headers['If-Match']}: it is {etag}")
        if "If-None-Match" in request.headers and _matches(request.headers["If-None-Match"], etag):
            return web.Response(status=304, headers=headers)
        span = byte_range(request.headers.get("Range"), info.size)
        first, last = span or (0, info.size - 1)
        response = web.StreamResponse(status=200 if span is None else 206, headers=headers)
        if span is not None:
            response.headers["Content-Range"] = f"bytes {first}-{last}/{info.size}"
        response.content_type = mimetypes.guess_type(key)[0] or "application/octet-stream"
        response.content_length = last - first + 1
        await response.prepare(request)
        if request.method != "HEAD":
            blocks = self.blobs.stream(bucket, key, SLICE) if span is None else self._read_span(bucket, key, first, last)
            async for block in blocks:
                await response.write(block)
        await response.write_eof()
        return response

    async def delete_object(self, request: web.Request) -> web.Response:
        """204 whether or not the key existed, as S3; NoSuchBucket for a missing bucket."""
        bucket, key = self._address(request)
        key_id = self.verify(request, EMPTY_SHA256)
        if bucket == MODELS_BUCKET:  # models go with DeleteProjectVersion, which also forgets the version
            raise errors.AccessDenied(f"bucket {bucket} is read-only: delete a model with DeleteProjectVersion")
        _refuse_writes(bucket)
        await self.buckets.check(bucket, self.settings.account_of(key_id))
        try:
            await self.blobs.list(bucket, limit=0)  # NoSuchBucket, as S3 answers
            await self.blobs.delete(bucket, key)
        except NoSuchBucket:
            raise errors.NoSuchBucket(f"bucket {bucket} does not exist") from None
        return web.Response(status=204)

    # --- multipart uploads -----------------------------------------------------------------------
    async def create_multipart_upload(self, request: web.Request) -> web.Response:
        bucket, key = self._address(request)
        _refuse_writes(bucket)
        account = self.settings.account_of((await self._document(request))[0])
        await self.buckets.check(bucket, account, write=True)
        upload = await self.uploads.create(bucket, key, account)
        return xml_result("InitiateMultipartUploadResult", {"Bucket": bucket, "Key": key, "UploadId": upload.id})

    async def upload_part(self, request: web.Request) -> web.Response:
        bucket, key = self._address(request)
        upload = await self.uploads.find(request.query.get("uploadId", ""), bucket, key)
        number = part_number(request.query.get("partNumber"))

        async def may_write(account: str) -> None:
            upload.check_owner(account)

        _, body = await self._receive(request, UPLOADS_BUCKET, upload.part_key(number), may_write)
        return web.Response(headers={"ETag": quoted_etag(body.md5_hex)})

    async def complete_multipart_upload(self, request: web.Request) -> web.Response:
        bucket, key = self._address(request)
        access_key, document = await self._document(request)
        account = self.settings.account_of(access_key)
        upload = await self.uploads.find(request.query["uploadId"], bucket, key)
        upload.check_owner(account)
        parts = completed_parts(document)
        await self.buckets.check(bucket, account, write=True)
        await self.blobs.ensure_bucket(bucket)
        md5 = hashlib.md5()

        async def content() -> AsyncIterator[bytes]:
            async for block in self.uploads.assembled(upload, parts):
                md5.update(block)
                yield block

        info = await self._store(bucket, key, content())
        await self.uploads.forget(upload)
        self.etags.remember(info, md5.hexdigest())
        await self._stored(info)
        return xml_result("CompleteMultipartUploadResult", {
            "Location": str(request.url.with_query(None)), "Bucket": bucket, "Key": key,
            "ETag": quoted_etag(md5.hexdigest())})

    async def abort_multipart_upload(self, request: web.Request) -> web.Response:
        bucket, key = self._address(request)
        account = self.settings.account_of(self.verify(request, EMPTY_SHA256))
        upload = await self.uploads.find(request.query["uploadId"], bucket, key)
        upload.check_owner(account)
        await self.uploads.forget(upload)
        return web.Response(status=204)

    # --- buckets ---------------------------------------------------------------------------------
    async def list_objects(self, request: web.Request) -> web.Response:
        bucket, _ = self._address(request)
        key_id = self.verify(request, EMPTY_SHA256)
        if bucket in READ_ONLY_BUCKETS:  # they hold every account's models and captured images
            raise errors.AccessDenied(f"bucket {bucket} belongs to no account: it cannot be listed")
        await self.buckets.check(bucket, self.settings.account_of(key_id))
        query = ListRequest.from_query(request.query)
        try:
            listing = await list_page(self.blobs, bucket, query)
        except NoSuchBucket:
            raise errors.NoSuchBucket(f"bucket {bucket} does not exist") from None
        return web.Response(body=list_objects_v2_xml(bucket, query, listing), content_type="application/xml")

    async def head_bucket(self, request: web.Request) -> web.Response:
        bucket, _ = self._address(request)
        await self.buckets.check(bucket, self.settings.account_of(self.verify(request, EMPTY_SHA256)))
        try:
            await self.blobs.list(bucket, limit=0)
        except NoSuchBucket:
            raise errors.NoSuchBucket(f"bucket {bucket} does not exist") from None
        return web.Response()

    async def create_bucket(self, request: web.Request) -> web.Response:
        """Claims an unclaimed bucket for the caller's account (200 again for its own, as S3 in us-east-1);
        ``BucketAlreadyExists`` for another account's. A bucket also comes into being at its first PUT."""
        bucket, _ = self._address(request)
        _refuse_writes(bucket)
        account = self.settings.account_of((await self._document(request))[0])
        if (await self.buckets.owner(bucket)) not in (None, account):
            raise errors.BucketAlreadyExists(f"bucket {bucket} belongs to another account")
        await self.buckets.check(bucket, account, write=True)
        await self.blobs.ensure_bucket(bucket)
        return web.Response(headers={"Location": f"/{bucket}"})

    # --- plumbing --------------------------------------------------------------------------------
    def _address(self, request: web.Request) -> tuple[str, str | None]:
        """The bucket and key (None on the bucket routes), checked; reserved buckets refused."""
        bucket, key = request.match_info["bucket"], request.match_info.get("key")
        try:
            return check_user_address(bucket, key)
        except ReservedBucket as e:
            raise errors.AccessDenied(str(e)) from None
        except InvalidKey as e:
            raise errors.InvalidObjectKey(str(e)) from None

    def _reader(self, request: web.Request) -> Caller:
        """Who reads an object: the key of a signed request, or of a presigned URL (GET and HEAD)."""
        if "Authorization" in request.headers or "?" not in request.raw_path:
            key = self.verify(request, EMPTY_SHA256)
        else:
            key = verify_presigned_request(
                method=request.method,
                path=request.raw_path.split("?", 1)[0],
                query_string=request.rel_url.raw_query_string,
                headers=request.headers,
                credentials=self.settings.credentials,
                region=self.settings.region,
                now=datetime.now(UTC),
                mount=OBJECTS_MOUNT,
                max_skew_seconds=self.settings.max_clock_skew_seconds,
            )
        return Caller(key, self.settings.account_of(key))

    async def _receive(self, request: web.Request, bucket: str, key: str,
                       may_write: Callable[[str], Awaitable[None]]) -> tuple[ObjectInfo, ObjectBody]:
        """Store the request's body at ``bucket``/``key`` once it is whole, signed, matches its digests
        and ``may_write(account)`` lets the signer's account write there."""
        payload = payload_of(request.headers)
        limit = self.settings.max_object_bytes
        declared = request.headers.get("x-amz-decoded-content-length") if payload.chunked else request.content_length
        if declared is not None and str(declared).isdigit() and int(declared) > limit:
            raise errors.EntityTooLarge(f"the object is {declared} bytes; the limit is {limit}")
        # A signature over a hash or literal known now is checked before the body is read.
        signer = self.verify(request, payload.claimed) if payload.claimed is not None else None
        if signer is None and "Authorization" not in request.headers:
            self.verify(request, EMPTY_SHA256)  # MissingAuthenticationToken before reading
        signatures = chunk_signatures(request.headers, self.settings.credentials) if payload.signed_chunks else None
        body = ObjectBody(request.headers, request.content, payload, signatures)

        async def accept(sha256: str) -> bool:
            access_key = signer or self.verify(request, sha256)
            body.check(sha256)
            await may_write(self.settings.account_of(access_key))
            return True

        return await self._store(bucket, key, body.chunks(), accept), body

    async def _store(self, bucket: str, key: str, chunks: AsyncIterator[bytes],
                     accept: Callable[[str], Awaitable[bool]] | None = None) -> ObjectInfo:
        try:
            return await self.blobs.put_stream(bucket, key, chunks, max_bytes=self.settings.max_object_bytes,
                                               accept=accept)
        except Rejected as e:
            raise errors.EntityTooLarge(str(e)) from None
        except InvalidKey as e:
            raise errors.InvalidObjectKey(str(e)) from None

    async def _document(self, request: web.Request) -> tuple[str, bytes]:
        """A small XML request body and the access key that signed it."""
        document = await read_within(request, MAX_DOCUMENT)
        if document is None:
            raise errors.EntityTooLarge(f"the request's XML document is larger than {MAX_DOCUMENT} bytes")
        unsigned = request.headers.get("x-amz-content-sha256") == UNSIGNED_PAYLOAD
        return self.verify(request, UNSIGNED_PAYLOAD if unsigned else hashlib.sha256(document).hexdigest()), document

    async def _read_span(self, bucket: str, key: str, first: int, last: int) -> AsyncIterator[bytes]:
        position = first
        while position <= last:
            block = await self.blobs.read_range(bucket, key, position, min(SLICE, last + 1 - position))
            if not block:
                return  # the object shrank meanwhile: the answer ends short, and the client sees it
            position += len(block)
            yield block

    async def _stored(self, info: ObjectInfo) -> None:
        if info.bucket in self.settings.watched_buckets:
            await self.bus.publish([ImageUploaded(bucket=info.bucket, object_key=info.key, size=info.size).to_message()])

    # --- S3's answers ----------------------------------------------------------------------------
    @web.middleware
    async def _s3_errors(self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                         ) -> web.StreamResponse:
        if request.path != OBJECTS_MOUNT and not request.path.startswith(OBJECTS_MOUNT + "/"):
            return await handler(request)
        try:
            return await handler(request)
        except errors.ApiError as error:
            failure = error
        except web.HTTPException as http:  # aiohttp's own: no route answers this method and path
            if http.status < 400:
                raise
            failure = errors.NotImplementedOperation(f"no S3 operation of this server answers {request.method} "
                                                     f"{request.path}")
            if http.status == 405:
                failure.code, failure.status = "MethodNotAllowed", 405
        except Exception as exc:
            failure = errors.storage_unavailable(exc)
            if failure is None:
                log.exception("internal error", extra={"request_id": request[REQUEST_ID]})
                failure = errors.InternalServerError(f"internal error; request id {request[REQUEST_ID]}")
        return s3_error_response(failure, request[REQUEST_ID], with_body=request.method != "HEAD")

    async def _sweeping(self, app: web.Application) -> AsyncIterator[None]:
        """While the app runs: abandoned multipart uploads removed at start and every ``SWEEP_SECONDS``."""
        async def sweep_forever() -> None:
            while True:
                try:
                    if removed := await self.uploads.sweep():
                        log.info("removed %d multipart uploads abandoned for over %s", removed, ABANDONED_AFTER)
                except Exception:  # noqa: BLE001 - the store may be down: the next round tries again
                    log.exception("sweeping abandoned multipart uploads failed")
                await asyncio.sleep(SWEEP_SECONDS)

        sweeper = asyncio.create_task(sweep_forever(), name="multipart-sweeper")
        yield
        sweeper.cancel()
        await asyncio.gather(sweeper, return_exceptions=True)

    async def _request_id_header(self, request: web.Request, response: web.StreamResponse) -> None:
        if request.path.startswith(OBJECTS_MOUNT + "/") and REQUEST_ID in request:
            response.headers["x-amz-request-id"] = request[REQUEST_ID]
            response.headers["x-amzn-RequestId"] = request[REQUEST_ID]


def _refuse_writes(bucket: str) -> None:
    if bucket == MODELS_BUCKET:  # what hosting serves is written by training alone
        raise errors.AccessDenied(f"bucket {bucket} is read-only: models get there by training or copying")
    if bucket in READ_ONLY_BUCKETS:
        raise errors.AccessDenied(f"bucket {bucket} is read-only: only customlabels' services change it")


def _matches(condition: str, etag: str) -> bool:
    """Whether an ``If-Match`` / ``If-None-Match`` value (``*`` or a list of ETags) names ``etag``."""
    wanted = {tag.strip().removeprefix("W/").strip('"') for tag in condition.split(",")}
    return "*" in wanted or etag.strip('"') in wanted
