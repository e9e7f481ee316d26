"""``/objects``: listing (S3 ListObjectsV2) and DELETE with a stock boto3 S3 client, and signed ``/metrics``.

Everything over real HTTP against the session's server, with boto3's own
``s3`` client pointed at ``<endpoint>/objects``.
"""
from __future__ import annotations

import urllib.error
import urllib.request

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from customlabels.config import DEV_ACCESS_KEY, DEV_SECRET_KEY
from customlabels.ml.runtime.artifact import MODELS_BUCKET


def s3_client(server, *, secret=DEV_SECRET_KEY):
    return boto3.client(
        "s3", endpoint_url=server.endpoint + "/objects", region_name="us-east-1",
        aws_access_key_id=DEV_ACCESS_KEY, aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"}),
    )


@pytest.fixture
def bucket(server, objects, unique):
    """A bucket holding a small tree: a.txt, b/1.txt, b/2.txt, b/c/3.txt, 'd e+f.txt', z.txt."""
    for key in ("a.txt", "b/1.txt", "b/2.txt", "b/c/3.txt", "d e+f.txt", "z.txt"):
        objects.put(unique, key, key.encode())
    return unique


def all_keys(s3, bucket, **params) -> tuple[list[str], list[str], int]:
    """Keys and common prefixes over every page of the paginator, and how many pages it took."""
    keys, prefixes, pages = [], [], 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, **params):
        pages += 1
        keys += [item["Key"] for item in page.get("Contents", [])]
        prefixes += [item["Prefix"] for item in page.get("CommonPrefixes", [])]
    return keys, prefixes, pages


def test_boto3_lists_in_key_order_with_pages_prefixes_and_delimiters(server, bucket):
    s3 = s3_client(server)
    everything = ["a.txt", "b/1.txt", "b/2.txt", "b/c/3.txt", "d e+f.txt", "z.txt"]
    assert all_keys(s3, bucket) == (everything, [], 1)
    assert all_keys(s3, bucket, PaginationConfig={"PageSize": 2}) == (everything, [], 3)
    assert all_keys(s3, bucket, Prefix="b/") == (["b/1.txt", "b/2.txt", "b/c/3.txt"], [], 1)
    assert all_keys(s3, bucket, Delimiter="/") == (["a.txt", "d e+f.txt", "z.txt"], ["b/"], 1)
    assert all_keys(s3, bucket, Prefix="b/", Delimiter="/") == (["b/1.txt", "b/2.txt"], ["b/c/"], 1)
    # a page of one entry at a time, groups counting as entries: each appears exactly once
    assert all_keys(s3, bucket, Delimiter="/", PaginationConfig={"PageSize": 1}) == (
        ["a.txt", "d e+f.txt", "z.txt"], ["b/"], 4)
    assert all_keys(s3, bucket, StartAfter="b/2.txt") == (["b/c/3.txt", "d e+f.txt", "z.txt"], [], 1)
    page = s3.list_objects_v2(Bucket=bucket, Prefix="a")
    assert page["KeyCount"] == 1 and page["IsTruncated"] is False
    assert page["Contents"][0]["Size"] == len(b"a.txt") and page["Contents"][0]["LastModified"].year >= 2024


def test_boto3_deletes_and_the_object_is_gone(server, bucket, objects):
    s3 = s3_client(server)
    s3.delete_object(Bucket=bucket, Key="b/1.txt")
    s3.delete_object(Bucket=bucket, Key="b/1.txt")  # again: S3 answers 204 for a missing key too
    assert all_keys(s3, bucket, Prefix="b/")[0] == ["b/2.txt", "b/c/3.txt"]
    assert s3.get_object(Bucket=bucket, Key="b/2.txt")["Body"].read() == b"b/2.txt"
    with pytest.raises(Exception, match="NoSuchKey"):
        objects.get(bucket, "b/1.txt")


def test_errors_are_s3_errors_and_change_nothing(server, bucket, unique):
    s3 = s3_client(server)
    with pytest.raises(ClientError) as missing:
        s3.list_objects_v2(Bucket=unique + "-none")
    assert missing.value.response["Error"]["Code"] == "NoSuchBucket"
    with pytest.raises(ClientError) as bad_signature:
        s3_client(server, secret="wrong").delete_object(Bucket=bucket, Key="a.txt")
    assert bad_signature.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    for reserved in ("customlabels-internal", MODELS_BUCKET):
        with pytest.raises(ClientError) as denied:
            s3.delete_object(Bucket=reserved, Key="anything")
        assert denied.value.response["Error"]["Code"] == "AccessDenied"
    with pytest.raises(ClientError) as token:
        s3.list_objects_v2(Bucket=bucket, ContinuationToken="not a token!")
    assert token.value.response["Error"]["Code"] == "InvalidArgument"
    assert len(all_keys(s3, bucket)[0]) == 6  # nothing was deleted


def test_unsigned_listing_is_refused(server, bucket):
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{server.endpoint}/objects/{bucket}/?list-type=2")
    assert refused.value.code == 403 and b"<Code>AccessDenied</Code>" in refused.value.read()


def test_metrics_need_the_api_keys(server):
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{server.endpoint}/metrics")
    assert refused.value.code == 403
    request = AWSRequest(method="GET", url=f"{server.endpoint}/metrics", data=b"")
    SigV4Auth(Credentials(DEV_ACCESS_KEY, DEV_SECRET_KEY), "metrics", "us-east-1").add_auth(request)
    with urllib.request.urlopen(urllib.request.Request(request.url, headers=dict(request.headers.items()))) as answer:
        assert answer.status == 200 and b"# TYPE" in answer.read()
    # the probes stay open: load balancers and orchestrators call them without keys
    assert urllib.request.urlopen(f"{server.endpoint}/healthz").status == 200
