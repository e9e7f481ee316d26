"""The S3 store behind the server goes away: every API says ServiceUnavailable (503), nothing else.

A real server keeps its objects on a real SeaweedFS, which is then stopped.
The object API answers S3's ``ServiceUnavailable``, Rekognition's
``ServiceUnavailableException``, where an outage used to surface as
``InternalError`` or, worse, as the user's fault (a manifest that "does not
exist"); calls that need no object keep working, and nothing was changed.
"""
from __future__ import annotations

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from minio.error import S3Error
from urllib3 import HTTPResponse

from customlabels import errors
from customlabels.adapters.s3_blobs import _port_error
from customlabels.config import DEV_ACCESS_KEY, DEV_SECRET_KEY
from customlabels.messaging import transient
from customlabels.ports.blobs import NoSuchKey, Unavailable
from tests.support.api import classification_line, error_code, jpeg, manifest
from tests.support.seaweedfs import SeaweedFS
from tests.support.server import ServerProcess


def s3_client(server):
    return boto3.client("s3", endpoint_url=server.endpoint + "/objects", region_name="us-east-1",
                        aws_access_key_id=DEV_ACCESS_KEY, aws_secret_access_key=DEV_SECRET_KEY,
                        config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"}))


def test_a_stopped_s3_store_is_503_service_unavailable_and_changes_nothing(tmp_path):
    store = SeaweedFS(tmp_path / "s3").start()
    server = None
    try:
        server = ServerProcess(tmp_path / "data", extra_env={
            "CUSTOMLABELS_S3_ENDPOINT": f"http://{store.endpoint}", "CUSTOMLABELS_S3_ACCESS_KEY": store.access_key,
            "CUSTOMLABELS_S3_SECRET_KEY": store.secret_key}).start()
        s3, rekognition = s3_client(server), server.rekognition(retries={"max_attempts": 1})
        s3.put_object(Bucket="shop", Key="cat.jpg", Body=jpeg())
        s3.put_object(Bucket="shop", Key="m.manifest", Body=manifest([classification_line("shop", "cat.jpg", "cat")]))
        project = rekognition.create_project(ProjectName="outage")["ProjectArn"]

        store.stop()

        for call in (lambda: s3.put_object(Bucket="shop", Key="dog.jpg", Body=jpeg()),
                     lambda: s3.get_object(Bucket="shop", Key="cat.jpg")):
            with pytest.raises(ClientError) as refused:
                call()
            assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
            assert error_code(refused) == "ServiceUnavailable"
            assert "object store cannot take requests now" in refused.value.response["Error"]["Message"]
        with pytest.raises(ClientError) as refused:  # not InvalidS3ObjectException: the manifest is there
            rekognition.create_dataset(ProjectArn=project, DatasetType="TRAIN", DatasetSource={
                "GroundTruthManifest": {"S3Object": {"Bucket": "shop", "Name": "m.manifest"}}})
        assert error_code(refused) == "ServiceUnavailableException"
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        assert "retry later" in refused.value.response["Error"]["Message"]
        # The server is still there, and the failed calls changed nothing it keeps.
        (described,) = rekognition.describe_projects(ProjectNames=["outage"])["ProjectDescriptions"]
        assert described["ProjectArn"] == project and described.get("Datasets", []) == []
        assert "InternalError" not in server.log_tail(200)
    finally:
        if server is not None:
            server.stop()
        store.stop()


def s3_error(status: int, code: str) -> S3Error:
    """The SDK's error for an S3 error document answered with ``status``."""
    return S3Error(HTTPResponse(status=status), code, f"{code} said the store", "/shop/cat.jpg", "r", "h",
                   bucket_name="shop", object_name="cat.jpg")


@pytest.mark.parametrize("status, code", [(500, "InternalError"), (503, "SlowDown"), (507, "XMinioStorageFull")])
def test_a_5xx_from_the_store_is_unavailable_and_a_503_to_the_caller(status, code):
    problem = _port_error(s3_error(status, code))
    assert isinstance(problem, Unavailable) and f"{status} {code} on shop/cat.jpg" in str(problem)
    answer = errors.storage_unavailable(problem)
    assert isinstance(answer, errors.ServiceUnavailable) and answer.status == 503
    assert transient(problem)  # a job that meets it waits and tries again; it does not fail


def test_a_4xx_from_the_store_keeps_its_meaning():
    assert isinstance(_port_error(s3_error(404, "NoSuchKey")), NoSuchKey)
    assert errors.storage_unavailable(_port_error(s3_error(403, "AccessDenied"))) is None
    assert not transient(_port_error(s3_error(403, "AccessDenied")))
