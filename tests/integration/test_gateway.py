"""The wire: authentication, errors and the object routes, over real HTTP."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import subprocess
import urllib.error
import urllib.request
import uuid
from unittest import mock
from xml.etree import ElementTree as ET

import pytest
from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from customlabels.config import DEV_ACCESS_KEY, DEV_SECRET_KEY
from tests.support.api import classification_line, jpeg, manifest, wait_dataset
from tests.support.server import REPO, ServerProcess

TARGET = "RekognitionService."


def raw_call(server, operation, body, *, key=DEV_ACCESS_KEY, secret=DEV_SECRET_KEY, sign=True, when=None, target=None):
    """POST / like boto3 does, with knobs to break it. Returns (status, headers, json body)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = AWSRequest(
        method="POST",
        url=server.endpoint + "/",
        data=data,
        headers={"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": target or TARGET + operation},
    )
    if sign:
        auth = SigV4Auth(Credentials(key, secret), "rekognition", "us-east-1")
        if when is None:
            auth.add_auth(request)
        else:  # sign as a client whose clock reads ``when``
            with mock.patch("botocore.auth.get_current_datetime", lambda: when.replace(tzinfo=None)):
                auth.add_auth(request)
    prepared = request.prepare()
    http = urllib.request.Request(prepared.url, data=data, method="POST", headers=dict(prepared.headers))
    try:
        with urllib.request.urlopen(http) as response:
            return response.status, dict(response.headers), json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read() or b"{}")


def test_request_id_and_content_type(server):
    status, headers, body = raw_call(server, "DescribeProjects", {})
    assert status == 200
    assert "ProjectDescriptions" in body
    assert headers["x-amzn-RequestId"]
    assert headers["Content-Type"].startswith("application/x-amz-json-1.1")


@pytest.mark.parametrize(
    "kwargs, status, error",
    [
        ({"sign": False}, 403, "MissingAuthenticationTokenException"),
        ({"secret": "wrong-secret"}, 403, "InvalidSignatureException"),
        ({"key": "AKIDUNKNOWN"}, 403, "UnrecognizedClientException"),
        ({"when": dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=16)}, 403, "InvalidSignatureException"),
    ],
)
def test_authentication_failures_change_nothing(server, unique, kwargs, status, error):
    got_status, headers, body = raw_call(server, "CreateProject", {"ProjectName": unique}, **kwargs)
    assert (got_status, body["__type"]) == (status, error)
    assert body["message"] and headers["x-amzn-RequestId"]
    assert server.rekognition().describe_projects(ProjectNames=[unique])["ProjectDescriptions"] == []


def test_clock_skew_within_15_minutes_is_accepted(server):
    status, _, _ = raw_call(server, "DescribeProjects", {}, when=dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=14))
    assert status == 200


def test_stale_signature_says_expired(server):
    _, _, body = raw_call(server, "DescribeProjects", {}, when=dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=2))
    assert "Signature expired" in body["message"]


@pytest.mark.parametrize(
    "target, error",
    [
        ("RekognitionService.NoSuchOperation", "UnknownOperationException"),
        ("SomethingElse.CreateProject", "UnknownOperationException"),
        ("RekognitionService.DetectFaces", "UnsupportedOperationException"),
        ("RekognitionService.DetectLabels", "UnsupportedOperationException"),
    ],
)
def test_operations_we_do_not_serve_are_clear_400s(server, target, error):
    body = {"ProjectVersionArn": "arn:aws:rekognition:us-east-1:000000000000:project/p/version/v/1", "MinInferenceUnits": 1}
    status, _, answer = raw_call(server, "", body if "Start" in target else {}, target=target)
    assert (status, answer["__type"]) == (400, error)
    assert answer["message"]


def test_malformed_json_and_wrong_types(server):
    status, _, body = raw_call(server, "CreateProject", b"{not json")
    assert (status, body["__type"]) == (400, "SerializationException")
    status, _, body = raw_call(server, "DescribeProjects", {"MaxResults": "ten"})
    assert (status, body["__type"]) == (400, "SerializationException")  # a wrong JSON type, as AWS answers it
    assert "MaxResults" in body["message"] or "maxResults" in body["message"]
    status, _, body = raw_call(server, "DescribeProjects", {"MaxResults": 0, "ProjectNames": []})
    assert body["__type"] == "InvalidParameterException" and "2 validation errors" in body["message"]


def test_oversize_body_is_refused(server):
    huge = {"ProjectName": "x", "Tags": {"k": "v" * (9 * 1024 * 1024)}}
    status, _, body = raw_call(server, "CreateProject", huge)
    assert status == 413 and body["__type"] == "RequestEntityTooLargeException"


def test_unknown_arn_is_not_found(server):
    rekognition = server.rekognition()
    with pytest.raises(rekognition.exceptions.ResourceNotFoundException):
        rekognition.describe_dataset(DatasetArn="arn:aws:rekognition:us-east-1:000000000000:project/none/dataset/train/1")
    with pytest.raises(rekognition.exceptions.ResourceNotFoundException):
        rekognition.list_tags_for_resource(ResourceArn="arn:aws:rekognition:eu-west-1:000000000000:project/none/1")


# --- objects -----------------------------------------------------------------------------------
def signed_object_request(server, method, path, data=b"", *, secret=DEV_SECRET_KEY):
    request = AWSRequest(method=method, url=server.endpoint + path, data=data,
                         headers={"x-amz-content-sha256": hashlib.sha256(data).hexdigest()})
    S3SigV4Auth(Credentials(DEV_ACCESS_KEY, secret), "s3", "us-east-1").add_auth(request)
    prepared = request.prepare()
    http = urllib.request.Request(prepared.url, data=data if method == "PUT" else None, method=method, headers=dict(prepared.headers))
    try:
        with urllib.request.urlopen(http) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_put_and_get_object(server, unique):
    image = jpeg()
    assert signed_object_request(server, "PUT", f"/objects/{unique}/images/a%20cat.jpg", image) == (200, b"")  # S3's
    assert signed_object_request(server, "GET", f"/objects/{unique}/images/a%20cat.jpg") == (200, image)
    status, body = signed_object_request(server, "GET", f"/objects/{unique}/images/nothing.jpg")
    assert status == 404 and s3_code(body) == "NoSuchKey"


def s3_code(body: bytes) -> str:
    """The code of an S3 error answer (``<Error><Code>``)."""
    return ET.fromstring(body).findtext("Code")


def files_holding(root, data: bytes, skip=(".git", ".venv", "weights", "__pycache__")) -> list[str]:
    """Every file under ``root`` (links not followed, folders named in ``skip`` left out) whose content is ``data``."""
    found = []
    for folder, folders, names in os.walk(root):
        folders[:] = [f for f in folders if f not in skip]
        for name in names:
            path = os.path.join(folder, name)
            try:
                if os.path.isfile(path) and not os.path.islink(path) and os.path.getsize(path) == len(data):
                    with open(path, "rb") as f:
                        if f.read() == data:
                            found.append(path)
            except OSError:
                continue  # a temporary file renamed meanwhile
    return found


@pytest.mark.parametrize("path", ["/objects/b0cket/../etc/passwd", "/objects/b0cket/a/%2E%2E/%2E%2E/x", "/objects/b0cket//etc/passwd",
                                  "/objects/b0cket/a%5C..%5Cx"])
def test_object_keys_cannot_escape_their_bucket(server, tmp_path_factory, path):
    payload = f"escape probe {uuid.uuid4()}".encode()  # written nowhere else, so any copy of it is this PUT's
    status, body = signed_object_request(server, "PUT", path, payload)
    assert status in (400, 404)
    if status == 400:
        assert s3_code(body) == "InvalidArgument"
    # Refused, so stored nowhere: not in a bucket, not beside the data folder (anywhere in this run's
    # temporary folders, the server's data among them), not in the server's working folder.
    for root in (tmp_path_factory.getbasetemp(), REPO):
        assert files_holding(root, payload) == [], f"{path} was written under {root}"


def test_object_writes_need_a_valid_signature(server, unique):
    status, body = signed_object_request(server, "PUT", f"/objects/{unique}/x.jpg", b"data", secret="wrong")
    assert status == 403 and s3_code(body) == "SignatureDoesNotMatch"
    assert signed_object_request(server, "GET", f"/objects/{unique}/x.jpg")[0] == 404
    unsigned = urllib.request.Request(f"{server.endpoint}/objects/{unique}/y.jpg", data=b"data", method="PUT")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(unsigned)
    assert e.value.code == 403


def test_oversize_object_is_refused_and_not_stored(tmp_path):
    small = ServerProcess(tmp_path / "data", extra_env={"CUSTOMLABELS_MAX_OBJECT_BYTES": "1000"}).start()
    try:
        status, body = signed_object_request(small, "PUT", "/objects/images/big.jpg", b"x" * 2000)
        assert status == 413 and s3_code(body) == "EntityTooLarge"
        assert signed_object_request(small, "GET", "/objects/images/big.jpg")[0] == 404
        assert signed_object_request(small, "PUT", "/objects/images/ok.jpg", b"x" * 1000)[0] == 200
    finally:
        small.stop()


def test_unknown_paths_and_methods_are_json_errors_with_request_ids(server):
    for method, path in (("GET", "/"), ("GET", "/nothing"), ("PATCH", "/objects/abc/key")):
        request = urllib.request.Request(server.endpoint + path, method=method)
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(request)
        assert e.value.code in (404, 405)
        assert e.value.headers["x-amzn-RequestId"]
        body = e.value.read()  # S3's XML on the object routes
        assert (s3_code(body) if path.startswith("/objects/") else json.loads(body)["message"])


def test_internal_bucket_is_not_reachable(server):
    status, body = signed_object_request(server, "GET", "/objects/customlabels-internal/jobs/x.manifest")
    assert status == 403 and s3_code(body) == "AccessDenied"


def test_aws_cli_works_unchanged(server, unique):
    env = {**server.env, "AWS_DEFAULT_REGION": "us-east-1"}
    cli = [str(server_python_bin("aws")), "--endpoint-url", server.endpoint, "rekognition"]
    out = subprocess.run([*cli, "create-project", "--project-name", unique], env=env, capture_output=True, text=True, check=True)
    arn = json.loads(out.stdout)["ProjectArn"]
    assert re.fullmatch(rf"arn:aws:rekognition:us-east-1:\d{{12}}:project/{unique}/\d{{13}}", arn), arn
    out = subprocess.run([*cli, "describe-projects", "--project-names", unique], env=env, capture_output=True, text=True, check=True)
    (described,) = json.loads(out.stdout)["ProjectDescriptions"]
    assert (described["ProjectArn"], described["Status"]) == (arn, "CREATED")


def server_python_bin(name: str):
    import sys
    from pathlib import Path

    return Path(sys.executable).parent / name


def test_a_pagination_token_signed_with_another_secret_is_refused(tmp_path):
    """NextToken is signed with CUSTOMLABELS_TOKEN_SECRET: a server (or replica) with another secret refuses
    it, and the same server with the first secret again takes it (so the secret is what refused it)."""
    server = ServerProcess(tmp_path / "data", extra_env={"CUSTOMLABELS_TOKEN_SECRET": "the-first-secret"}).start()
    try:
        client, objects = server.rekognition(), server.objects()
        for name in ("first", "second", "third"):
            client.create_project(ProjectName=name)
        objects.put_many("images", [(f"{i}.jpg", jpeg()) for i in range(4)])
        objects.put("images", "m.manifest", manifest([classification_line("images", f"{i}.jpg", "cat") for i in range(4)]))
        dataset = client.create_dataset(ProjectArn=client.describe_projects(ProjectNames=["first"])["ProjectDescriptions"][0]["ProjectArn"],
                                        DatasetType="TRAIN", DatasetSource={
                                            "GroundTruthManifest": {"S3Object": {"Bucket": "images", "Name": "m.manifest"}}})["DatasetArn"]
        wait_dataset(client, dataset)
        pages = {
            "DescribeProjects": lambda **token: client.describe_projects(MaxResults=1, **token)["ProjectDescriptions"],
            "ListDatasetEntries": lambda **token: client.list_dataset_entries(DatasetArn=dataset, MaxResults=2, **token)["DatasetEntries"],
        }
        tokens = {"DescribeProjects": client.describe_projects(MaxResults=1)["NextToken"],
                  "ListDatasetEntries": client.list_dataset_entries(DatasetArn=dataset, MaxResults=2)["NextToken"]}
        second_pages = {name: page(NextToken=tokens[name]) for name, page in pages.items()}

        server.extra_env["CUSTOMLABELS_TOKEN_SECRET"] = "another-secret"
        server.restart()
        client = server.rekognition()
        for name, page in pages.items():
            with pytest.raises(client.exceptions.InvalidPaginationTokenException):
                page(NextToken=tokens[name])
        fresh = client.describe_projects(MaxResults=1)["NextToken"]  # its own tokens work
        assert fresh != tokens["DescribeProjects"] and pages["DescribeProjects"](NextToken=fresh) == second_pages["DescribeProjects"]

        server.extra_env["CUSTOMLABELS_TOKEN_SECRET"] = "the-first-secret"
        server.restart()
        client = server.rekognition()
        assert {name: page(NextToken=tokens[name]) for name, page in pages.items()} == second_pages
    finally:
        server.stop()
