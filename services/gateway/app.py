"""The gateway: the single front door, in the reference's wire protocol.

- ``POST /``: AWS JSON 1.1. Verifies SigV4, validates the request against
  botocore's model for the ``X-Amz-Target`` operation, calls the service that
  owns it, serializes the answer by the model.
- ``PUT|GET /objects/<bucket>/<key>``: the blob store's S3-style face, signed
  with service name ``s3``, so users can upload images and manifests and read
  evaluation files. It is to the blob store what MinIO is in distributed mode;
  it owns no state of its own.
- ``GET /healthz``, ``GET /readyz``: liveness and readiness; ``GET /metrics``:
  Prometheus metrics (unauthenticated, like the probes).

A PUT into a watched bucket (``CUSTOMLABELS_WATCHED_BUCKETS``) publishes
``ImageUploaded``, as MinIO's bucket notifications do in distributed mode.

Every answer carries ``x-amzn-RequestId``; every error is
``{"__type", "message"}``; 500 means a bug (logged with the request id).
"""
from __future__ import annotations

import hashlib
import mimetypes
from datetime import datetime, timezone

from aiohttp import web

from customlabels import errors
from customlabels.config import Settings
from customlabels.events import ImageUploaded
from customlabels.ml.artifact import MODELS_BUCKET
from customlabels.ports.blobs import BlobStore, InvalidKey, NoSuchBucket, NoSuchKey, Rejected, check_bucket, check_key
from customlabels.ports.events import EventBus
from customlabels.ports.operations import OperationRouter

from customlabels.wire import model as wire
from customlabels.service_http import add_probes
from customlabels.wire.http import JSON_CONTENT_TYPE, request_ids
from services.gateway.sigv4 import verify_request


RESERVED_BUCKET_PREFIX = "customlabels-internal"
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


class Gateway:
    def __init__(self, settings: Settings, router: OperationRouter, blobs: BlobStore, bus: EventBus):
        self.settings = settings
        self.router = router
        self.blobs = blobs
        self.bus = bus
        self.model = wire.load_api_model()

    def app(self) -> web.Application:
        # The JSON API's own limit is checked per request; object routes stream.
        app = web.Application(middlewares=[request_ids], client_max_size=self.settings.max_json_body)
        app.router.add_post("/", self.api)
        app.router.add_put("/objects/{bucket}/{key:.+}", self.put_object)
        app.router.add_get("/objects/{bucket}/{key:.+}", self.get_object)
        add_probes(app)
        return app

    def _verify(self, request: web.Request, body_sha256: str, service: str) -> str:
        return verify_request(
            method=request.method,
            path=request.raw_path.split("?", 1)[0],
            query_string=request.rel_url.raw_query_string,
            headers=request.headers,
            body_sha256=body_sha256,
            credentials=self.settings.credentials,
            region=self.settings.region,
            service=service,
            now=datetime.now(timezone.utc),
            max_skew_seconds=self.settings.max_clock_skew_seconds,
        )

    # --- AWS JSON 1.1 -----------------------------------------------------------------
    async def api(self, request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > self.settings.max_json_body:
            raise errors.RequestEntityTooLarge(
                f"the request body is {request.content_length} bytes; the limit is {self.settings.max_json_body}"
            )
        body = await self._read_limited(request)
        self._verify(request, hashlib.sha256(body).hexdigest(), "rekognition")
        operation = self.model.resolve_target(request.headers.get("X-Amz-Target", ""))
        params = self.model.parse_request(operation, body)
        if not self.router.owns(operation):
            raise errors.UnsupportedOperation(
                f"{operation} is a Custom Labels operation that this customlabels server does not serve yet"
            )
        result = await self.router.call(operation, params)
        return web.Response(body=self.model.serialize_response(operation, result), content_type=JSON_CONTENT_TYPE)

    async def _read_limited(self, request: web.Request) -> bytes:
        limit = self.settings.max_json_body
        body = bytearray()
        async for chunk in request.content.iter_any():
            body += chunk
            if len(body) > limit:
                raise errors.RequestEntityTooLarge(f"the request body is larger than the {limit}-byte limit")
        return bytes(body)

    # --- objects ------------------------------------------------------------------------------
    def _object_address(self, request: web.Request) -> tuple[str, str]:
        bucket, key = request.match_info["bucket"], request.match_info["key"]
        try:
            check_bucket(bucket)
            check_key(key)
        except InvalidKey as e:
            raise errors.InvalidObjectKey(str(e)) from None
        if bucket.startswith(RESERVED_BUCKET_PREFIX):
            raise errors.AccessDenied(f"bucket {bucket} is reserved for customlabels itself")
        return bucket, key

    async def put_object(self, request: web.Request) -> web.Response:
        bucket, key = self._object_address(request)
        if bucket == MODELS_BUCKET:  # what hosting serves is written by training alone
            raise errors.AccessDenied(f"bucket {bucket} is read-only: models get there by training or copying")
        limit = self.settings.max_object_bytes
        if request.content_length is not None and request.content_length > limit:
            raise errors.EntityTooLarge(f"the object is {request.content_length} bytes; the limit is {limit}")
        if "Authorization" not in request.headers:
            self._verify(request, _EMPTY_SHA256, "s3")  # raises MissingAuthenticationToken before reading

        def accept(sha256: str) -> bool:
            self._verify(request, sha256, "s3")
            return True

        await self.blobs.ensure_bucket(bucket)
        try:
            info = await self.blobs.put_stream(bucket, key, request.content.iter_chunked(1 << 20), max_bytes=limit, accept=accept)
        except Rejected as e:
            raise errors.EntityTooLarge(str(e)) from None
        except InvalidKey as e:
            raise errors.InvalidObjectKey(str(e)) from None
        if bucket in self.settings.watched_buckets:
            # Published after the object is stored; if this fails the client gets a
            # 500 and retries the (idempotent) PUT, so the event is not lost.
            await self.bus.publish([ImageUploaded(bucket=bucket, object_key=key, size=info.size).to_message()])
        return web.json_response({"Bucket": bucket, "Key": key, "Size": info.size, "Sha256": info.sha256})

    async def get_object(self, request: web.Request) -> web.StreamResponse:
        bucket, key = self._object_address(request)
        self._verify(request, _EMPTY_SHA256, "s3")
        try:
            info = await self.blobs.stat(bucket, key)
        except NoSuchBucket:
            raise errors.NoSuchBucket(f"bucket {bucket} does not exist") from None
        except NoSuchKey:
            raise errors.NoSuchKey(f"object s3://{bucket}/{key} does not exist") from None
        response = web.StreamResponse(headers={"x-amzn-RequestId": request["request_id"]})
        response.content_type = mimetypes.guess_type(key)[0] or "application/octet-stream"
        response.content_length = info.size
        await response.prepare(request)
        async for chunk in self.blobs.stream(bucket, key):
            await response.write(chunk)
        await response.write_eof()
        return response


def gateway_app(settings: Settings, router: OperationRouter, blobs: BlobStore, bus: EventBus) -> web.Application:
    return Gateway(settings, router, blobs, bus).app()
