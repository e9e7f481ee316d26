"""Multipart uploads nobody finishes are removed after ``ABANDONED_AFTER``, as S3's lifecycle rule does.

A real server, stock boto3: one upload left untouched for longer than that
(its files' times set back while the server is stopped), one parts folder
whose record is gone (a process killed between CompleteMultipartUpload's
store and its clean-up), and one upload of today. The restarted gateway's
sweep removes the first two and leaves the third to be completed.
"""
from __future__ import annotations

import os
import shutil
import time

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from customlabels.config import DEV_ACCESS_KEY, DEV_SECRET_KEY
from services.gateway.multipart import ABANDONED_AFTER, UPLOADS_BUCKET, UPLOADS_PREFIX
from tests.support.api import wait_for
from tests.support.server import ServerProcess


def s3_client(server):
    return boto3.client("s3", endpoint_url=server.endpoint + "/objects", region_name="us-east-1",
                        aws_access_key_id=DEV_ACCESS_KEY, aws_secret_access_key=DEV_SECRET_KEY,
                        config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"}))


def complete(client, key: str, upload: str, etag: str):
    return client.complete_multipart_upload(Bucket="drops", Key=key, UploadId=upload, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": etag}]})


def test_uploads_untouched_for_longer_than_the_limit_are_swept_and_todays_stay(tmp_path):
    server = ServerProcess(tmp_path / "data").start()
    try:
        client = s3_client(server)
        uploads = {}
        for key in ("old.bin", "fresh.bin"):
            upload = client.create_multipart_upload(Bucket="drops", Key=key)["UploadId"]
            etag = client.upload_part(Bucket="drops", Key=key, UploadId=upload, PartNumber=1, Body=key.encode())["ETag"]
            uploads[key] = (upload, etag)
        server.stop()

        folders = server.data_dir / "objects" / UPLOADS_BUCKET / UPLOADS_PREFIX.rstrip("/")
        old, fresh = (folders / uploads[key][0] for key in ("old.bin", "fresh.bin"))
        orphan = folders / ("f" * 32)  # parts whose record a killed CompleteMultipartUpload had removed
        orphan.mkdir()
        shutil.copy(old / "part-00001", orphan / "part-00001")
        long_ago = time.time() - ABANDONED_AFTER.total_seconds() - 3600
        for path in (*old.iterdir(), *orphan.iterdir()):
            os.utime(path, (long_ago, long_ago))

        server.start()
        client = s3_client(server)
        wait_for(lambda: not old.exists() and not orphan.exists(), 30, "the sweep at start to remove both")
        with pytest.raises(ClientError) as swept:
            complete(client, "old.bin", *uploads["old.bin"])
        assert swept.value.response["Error"]["Code"] == "NoSuchUpload"
        assert fresh.exists()
        complete(client, "fresh.bin", *uploads["fresh.bin"])
        assert client.get_object(Bucket="drops", Key="fresh.bin")["Body"].read() == b"fresh.bin"
        assert not fresh.exists()  # completed: forgotten as always
    finally:
        server.stop()
