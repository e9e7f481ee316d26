"""The watched inference bucket: images dropped in are answered by the project's live model.

An image stored at ``customlabels-inference/<project>/<any path>.jpg|png``
(the gateway's object PUT, or the object store's notification in distributed
mode: an ImageUploaded event) is sent to DetectCustomLabels on the project's
stable ARN, as any caller would, so capture and the flow's conditions apply
exactly as for API calls. The answer (or the error, in the API's terms) is
written beside the image as ``<key>.json``. Redelivery asks again and
rewrites the same answer: the model is deterministic and capture dedupes by
image. The project is the one of that name in the bucket's account
(``customlabels.buckets``: the account that first wrote to it).
"""
from __future__ import annotations

import json

from customlabels import errors
from customlabels.arns import Arns
from customlabels.buckets import BucketOwners
from customlabels.config import INFERENCE_BUCKET
from customlabels.events import ImageUploaded
from customlabels.messaging import UnitOfWork
from customlabels.ports.blobs import BlobStore
from customlabels.ports.operations import OperationRouter

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
ANSWER_SUFFIX = ".json"


class InferenceBucket:
    def __init__(self, router: OperationRouter, blobs: BlobStore, buckets: BucketOwners, region: str):
        self.router = router
        self.blobs = blobs
        self.buckets = buckets
        self.region = region

    async def on_image_uploaded(self, event: ImageUploaded, uow: UnitOfWork) -> None:
        key = event.object_key
        if event.bucket != INFERENCE_BUCKET or "/" not in key or not key.lower().endswith(IMAGE_SUFFIXES):
            return
        account = await self.buckets.owner(event.bucket)
        if account is None:
            return  # nobody's bucket (emptied, never claimed): no account's project to answer with
        project_name = key.split("/", 1)[0]
        request = {"ProjectVersionArn": Arns(self.region, account).stable(project_name),
                   "Image": {"S3Object": {"Bucket": event.bucket, "Name": key}}}
        try:
            answer = await self.router.call("DetectCustomLabels", request)
        except errors.Throttling:
            raise  # the bus redelivers: ask again later
        except errors.ApiError as refused:
            answer = {"Error": {"Code": refused.code, "Message": refused.message}}
        body = {"Image": {"Bucket": event.bucket, "Name": key}, "ProjectVersionArn": request["ProjectVersionArn"], **answer}
        await self.blobs.put(event.bucket, key + ANSWER_SUFFIX, json.dumps(body, indent=1).encode())
