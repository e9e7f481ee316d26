"""The gateway: the single front door, in each API's own wire protocol.

- The APIs of the operation table (``customlabels.wire.table``): ``POST /``
  for the AWS JSON 1.1 ones (Rekognition, SageMaker flow definitions, the
  review API; picked by ``X-Amz-Target``) and the REST-JSON routes of the A2I
  runtime (``/human-loops...``). Each request is verified with SigV4 under
  its API's signing name (``rekognition``, ``sagemaker``, ...) and handed to
  the router, which answers it through the one request path
  (``customlabels.wire.dispatch``: validate, call the owner, serialize,
  errors in the API's form), in process or at the owner over HTTP.
- ``/objects/...``: the blob store as S3's REST API, for stock S3 clients
  (``services.gateway.objects``: PUT, GET, HEAD, DELETE, multipart uploads,
  ListObjectsV2, presigned GET), signed with service name ``s3``; it is to the
  blob store what MinIO is in distributed mode and owns no state of its own.
  Its answers and errors are S3's (XML, ``x-amz-request-id``).
- ``GET /healthz``, ``GET /readyz``: liveness and readiness, unauthenticated;
  ``GET /metrics``: Prometheus metrics, signed like any request (SigV4 with
  the API's keys, signing name ``metrics``): this port may be public.

Every answer carries ``x-amzn-RequestId``; every error is in its API's form
(``{"__type", "message"}`` for JSON 1.1, plus ``x-amzn-ErrorType`` for
REST-JSON, S3's XML on ``/objects``); 500 means a bug (logged with the request id).

To add routes (the console's sub-application, say), build the app with
``Gateway(...).app()`` or ``gateway_app(...)`` and add to it before it starts.
"""
from __future__ import annotations

import hashlib
from datetime import datetime, timezone

from aiohttp import web

from customlabels import errors
from customlabels.arns import Arns
from customlabels.buckets import BucketOwners
from customlabels.config import Settings
from customlabels.ml.runtime.artifact import MODELS_BUCKET
from customlabels.ports.blobs import BlobStore
from customlabels.ports.events import EventBus
from customlabels.ports.operations import OperationRouter
from customlabels.service_http import add_probes
from customlabels.wire.dispatch import Caller, acting_as
from customlabels.wire.http import add_api_routes, request_ids
from services.gateway.objects import ObjectRoutes
from services.gateway.sigv4 import verify_request


METRICS_SIGNING_NAME = "metrics"  # the service name in a /metrics request's SigV4 scope
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


class Gateway:
    def __init__(self, settings: Settings, router: OperationRouter, blobs: BlobStore, bus: EventBus):
        self.settings = settings
        self.router = router
        self.buckets = BucketOwners(blobs, settings.account_id)
        self.objects = ObjectRoutes(settings, blobs, self.buckets, bus, may_read=self._may_read,
                                    verify=lambda request, payload: self._verify(request, payload, "s3"))

    def app(self) -> web.Application:
        # The APIs' own limit is checked per request; object routes stream.
        app = web.Application(middlewares=[request_ids], client_max_size=self.settings.max_json_body)
        add_api_routes(app, self.router, max_body=self.settings.max_json_body, authenticate=self._authenticate_api)
        self.objects.add_to(app)
        add_probes(app, authenticate_metrics=lambda request: self._verify(request, _EMPTY_SHA256, METRICS_SIGNING_NAME))
        return app

    def _verify(self, request: web.Request, body_sha256: str, service: str | frozenset[str]) -> str:
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

    def _authenticate_api(self, request: web.Request, body_sha256: str, signing_names: frozenset[str]) -> Caller:
        key = self._verify(request, body_sha256, signing_names)
        return Caller(key, self.settings.account_of(key))

    async def _may_read(self, caller: Caller, bucket: str, key: str) -> None:
        """AccessDenied for another account's bucket, or a model file of another account's version
        (``<project>/<version>/<ms>/<file>`` in the models bucket: asked of the version's owner as the caller)."""
        await self.buckets.check(bucket, caller.account)
        if bucket != MODELS_BUCKET:
            return
        parts = key.split("/")
        if len(parts) == 4 and parts[2].isdigit():
            wanted = Arns(self.settings.region, caller.account).version(parts[0], parts[1], int(parts[2]))
            try:
                with acting_as(caller):
                    found = await self.router.call("DescribeProjects", {"ProjectNames": [parts[0]]})
                    for project in found["ProjectDescriptions"]:
                        versions = await self.router.call("DescribeProjectVersions", {
                            "ProjectArn": project["ProjectArn"], "VersionNames": [parts[1]]})
                        if any(v["ProjectVersionArn"] == wanted for v in versions["ProjectVersionDescriptions"]):
                            return
            except (errors.InvalidParameter, errors.ResourceNotFound):
                pass  # no such project or version name: not this account's
        raise errors.AccessDenied(f"s3://{bucket}/{key} is not a model of account {caller.account}")


def gateway_app(settings: Settings, router: OperationRouter, blobs: BlobStore, bus: EventBus) -> web.Application:
    return Gateway(settings, router, blobs, bus).app()
