"""Two accounts on one real server, through stock boto3 clients (rekognition, s3, sagemaker,
sagemaker-a2i-runtime, the review API).

The server gets Alice's key from ``CUSTOMLABELS_CREDENTIALS`` (account 111111111111) and Bob's
from the file ``CUSTOMLABELS_CREDENTIALS_FILE`` (account 222222222222). Each sees only its own
projects, datasets, versions, flow definitions, human loops and buckets; another account's ARN
is AccessDeniedException, and so is another account's bucket. A version is copied into Bob's
account only once Alice's project policy allows it; the copy then runs under Bob's key.
Objects can be read with presigned URLs, which expire and cannot be altered; the object routes
answer S3's errors (``AccessDenied``, ``SignatureDoesNotMatch``).
"""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from xml.etree import ElementTree as ET

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from customlabels.client import Endpoint, ObjectClient, ObjectStoreError, review_client
from customlabels.ml.runtime.artifact import CARD_NAME, MODELS_BUCKET, artifact_prefix
from customlabels.tags import FLOW_DEFINITION

from tests.support.api import (
    classification_line,
    error_code,
    jpeg,
    manifest,
    wait_dataset,
    wait_for,
)
from tests.support.models import flower_photos
from tests.support.server import ServerProcess
from tests.support.training import BUDGET_TAG

ALICE = ("AKIDALICE", "alice-secret-0123456789", "111111111111")
BOB = ("AKIDBOB", "bob-secret-0123456789", "222222222222")
ROLE = "arn:aws:iam::111111111111:role/unused"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("accounts")
    secrets_file = folder / "credentials"
    secrets_file.write_text(f"# a Kubernetes secret, mounted as a file\n{':'.join(BOB)}\n")
    process = ServerProcess(folder / "data", extra_env={
        "CUSTOMLABELS_CREDENTIALS": ":".join(ALICE), "CUSTOMLABELS_CREDENTIALS_FILE": str(secrets_file)}).start()
    yield process
    process.stop()


def client(server, who, name: str, **config):
    key, secret, _ = who
    endpoint = server.endpoint + ("/objects" if name == "s3" else "")
    return boto3.client(name, endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=key,
                        aws_secret_access_key=secret,
                        config=Config(retries={"max_attempts": 1}, **config))


def s3(server, who, **config):
    return client(server, who, "s3", s3={"addressing_style": "path"}, **config)


def uploads(server, who) -> ObjectClient:
    return ObjectClient(Endpoint(url=server.endpoint, access_key=who[0], secret_key=who[1]))


def review(server, who):
    return review_client(Endpoint(url=server.endpoint, access_key=who[0], secret_key=who[1]))


def denied(call, *args, **kwargs) -> str:
    """The error code of a call that must fail (AccessDeniedException, AccessDenied...)."""
    with pytest.raises(ClientError) as refused:
        call(*args, **kwargs)
    return error_code(refused)


def test_keys_from_the_variable_and_from_the_file_both_sign(server):
    for who in (ALICE, BOB):
        assert client(server, who, "rekognition").describe_projects()["ProjectDescriptions"] == []
    wrong = (ALICE[0], "not-the-secret", ALICE[2])
    assert denied(client(server, wrong, "rekognition").describe_projects) == "InvalidSignatureException"
    dev = ("AKIDCUSTOMLABELS", "customlabels-dev-secret", "000000000000")  # given keys replace the development pair
    assert denied(client(server, dev, "rekognition").describe_projects) == "UnrecognizedClientException"


def test_each_account_sees_and_touches_only_its_own(server, unique):
    rek = {who: client(server, who, "rekognition") for who in (ALICE, BOB)}
    objects = {who: s3(server, who) for who in (ALICE, BOB)}
    sagemaker = {who: client(server, who, "sagemaker") for who in (ALICE, BOB)}
    a2i = {who: client(server, who, "sagemaker-a2i-runtime") for who in (ALICE, BOB)}
    projects, datasets, flows, loops = {}, {}, {}, {}
    for who in (ALICE, BOB):  # the same names in both accounts
        bucket = f"{unique}-{who[2]}"
        uploads(server, who).put(bucket, "a.jpg", jpeg())
        projects[who] = rek[who].create_project(ProjectName=unique)["ProjectArn"]
        datasets[who] = rek[who].create_dataset(ProjectArn=projects[who], DatasetType="TRAIN")["DatasetArn"]
        flows[who] = sagemaker[who].create_flow_definition(
            FlowDefinitionName=unique, RoleArn=ROLE, OutputConfig={"S3OutputPath": f"s3://{bucket}/reviews"})["FlowDefinitionArn"]
        loops[who] = a2i[who].start_human_loop(HumanLoopName=unique, FlowDefinitionArn=flows[who], HumanLoopInput={
            "InputContent": json.dumps({"taskObject": f"s3://{bucket}/a.jpg",
                                        "customLabels": [{"Name": "cat", "Confidence": 40.0}]})})["HumanLoopArn"]
        assert all(arn.split(":")[4] == who[2] for arn in (projects[who], datasets[who], flows[who], loops[who]))

    for who, other in ((ALICE, BOB), (BOB, ALICE)):
        own_bucket, other_bucket = f"{unique}-{who[2]}", f"{unique}-{other[2]}"
        listed = [p["ProjectArn"] for p in rek[who].describe_projects()["ProjectDescriptions"]]
        assert projects[who] in listed and projects[other] not in listed
        assert [p["ProjectArn"] for p in rek[who].describe_projects(ProjectNames=[unique])["ProjectDescriptions"]] == [projects[who]]
        assert wait_dataset(rek[who], datasets[who])["Status"] == "CREATE_COMPLETE"
        flow_arns = [f["FlowDefinitionArn"] for f in sagemaker[who].list_flow_definitions()["FlowDefinitionSummaries"]]
        assert flows[who] in flow_arns and flows[other] not in flow_arns
        assert sagemaker[who].describe_flow_definition(FlowDefinitionName=unique)["FlowDefinitionArn"] == flows[who]
        assert a2i[who].describe_human_loop(HumanLoopName=unique)["HumanLoopArn"] == loops[who]
        tasks = review(server, who).list_review_tasks(FlowDefinitionName=unique)["ReviewTasks"]
        assert [t["FlowDefinitionArn"] for t in tasks] == [flows[who]]
        assert [o["Key"] for o in objects[who].list_objects_v2(Bucket=own_bucket)["Contents"]] == ["a.jpg"]

        # another account's ARN: AccessDeniedException, in each API
        version = projects[other].rsplit("/", 1)[0] + "/version/v1/1700000000000"
        for call, params in [
            (rek[who].describe_project_versions, {"ProjectArn": projects[other]}),
            (rek[who].delete_project, {"ProjectArn": projects[other]}),
            (rek[who].create_dataset, {"ProjectArn": projects[other], "DatasetType": "TEST"}),
            (rek[who].describe_dataset, {"DatasetArn": datasets[other]}),
            (rek[who].list_dataset_entries, {"DatasetArn": datasets[other]}),
            (rek[who].update_dataset_entries, {"DatasetArn": datasets[other], "Changes": {"GroundTruth": b"{}"}}),
            (rek[who].delete_dataset, {"DatasetArn": datasets[other]}),
            (rek[who].create_project_version, {"ProjectArn": projects[other], "VersionName": "v1",
                                               "OutputConfig": {"S3Bucket": own_bucket}}),
            (rek[who].put_project_policy, {"ProjectArn": projects[other], "PolicyName": "p", "PolicyDocument": "{}"}),
            (rek[who].tag_resource, {"ResourceArn": projects[other], "Tags": {"k": "v"}}),
            (rek[who].start_project_version, {"ProjectVersionArn": version, "MinInferenceUnits": 1}),
            (rek[who].detect_custom_labels, {"ProjectVersionArn": version, "Image": {"Bytes": jpeg()}}),
            (rek[who].delete_project_version, {"ProjectVersionArn": version}),
            (a2i[who].start_human_loop, {"HumanLoopName": f"{unique}-x", "FlowDefinitionArn": flows[other],
                                         "HumanLoopInput": {"InputContent": "{}"}}),
            (a2i[who].list_human_loops, {"FlowDefinitionArn": flows[other]}),
        ]:
            assert denied(call, **params) == "AccessDeniedException", call.__name__
        # another account's bucket, on the object routes and in requests
        assert denied(objects[who].get_object, Bucket=other_bucket, Key="a.jpg") == "AccessDenied"
        for attempt, args in ((uploads(server, who).get, (other_bucket, "a.jpg")),
                              (uploads(server, who).put, (other_bucket, "b.jpg", b"x"))):
            with pytest.raises(ObjectStoreError) as refused:
                attempt(*args)
            assert (refused.value.status, refused.value.code) == (403, "AccessDenied")
        assert denied(objects[who].delete_object, Bucket=other_bucket, Key="a.jpg") == "AccessDenied"
        assert denied(objects[who].list_objects_v2, Bucket=other_bucket) == "AccessDenied"
        assert denied(rek[who].create_dataset, ProjectArn=projects[who], DatasetType="TEST", DatasetSource={
            "GroundTruthManifest": {"S3Object": {"Bucket": other_bucket, "Name": "a.jpg"}}}) == "InvalidS3ObjectException"
        assert denied(rek[who].create_project_version, ProjectArn=projects[who], VersionName="v1",
                      OutputConfig={"S3Bucket": other_bucket}) == "AccessDeniedException"
        assert denied(sagemaker[who].create_flow_definition, FlowDefinitionName=f"{unique}-x", RoleArn=ROLE,
                      OutputConfig={"S3OutputPath": f"s3://{other_bucket}/x"}) == "AccessDeniedException"
        for system in ("customlabels-models", "customlabels-reviews", "customlabels-internal"):
            assert denied(objects[who].list_objects_v2, Bucket=system) == "AccessDenied"

    # nothing of the other account changed
    for who in (ALICE, BOB):
        bucket = f"{unique}-{who[2]}"
        (project,) = rek[who].describe_projects(ProjectNames=[unique])["ProjectDescriptions"]
        assert [d["DatasetType"] for d in project["Datasets"]] == ["TRAIN"]
        assert rek[who].describe_project_versions(ProjectArn=projects[who])["ProjectVersionDescriptions"] == []
        assert [o["Key"] for o in objects[who].list_objects_v2(Bucket=bucket)["Contents"]] == ["a.jpg"]
        assert a2i[who].describe_human_loop(HumanLoopName=unique)["HumanLoopStatus"] == "InProgress"
    # an answer counts for the reviewer's own loop, under the reviewer's key
    assert review(server, ALICE).answer_review_task(HumanLoopName=unique, Verdict="ACCEPT")["Status"] == "Completed"
    answers = review(server, ALICE).get_review_task(HumanLoopName=unique)["ReviewTask"]["Answers"]
    assert [a["WorkerId"] for a in answers] == [ALICE[0]]
    assert a2i[BOB].describe_human_loop(HumanLoopName=unique)["HumanLoopStatus"] == "InProgress"


def test_presigned_urls_read_an_object_until_they_expire(server, unique):
    bucket = f"{unique}-{ALICE[2]}"
    uploads(server, ALICE).put(bucket, "photos/a b+c.jpg", b"the photo")
    stock, v4 = s3(server, ALICE), s3(server, ALICE, signature_version="s3v4")

    def read(url: str, method: str = "GET") -> bytes:
        with urllib.request.urlopen(urllib.request.Request(url, method=method)) as answer:
            return answer.read()

    def refused(url: str) -> tuple[int, str]:
        with pytest.raises(urllib.error.HTTPError) as error:
            read(url)
        return error.value.code, ET.fromstring(error.value.read()).findtext("Code")

    for signer in (stock, v4):
        url = signer.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "photos/a b+c.jpg"}, ExpiresIn=60)
        assert read(url) == b"the photo"
        head = signer.generate_presigned_url("head_object", Params={"Bucket": bucket, "Key": "photos/a b+c.jpg"}, ExpiresIn=60)
        assert read(head, "HEAD") == b""
        assert refused(url.replace("a%20b", "a%20c")) == (403, "SignatureDoesNotMatch")
        assert refused(url.replace("Expires=", "Expires=1")) == (403, "SignatureDoesNotMatch")  # a longer life
    # Bob's valid URL for Alice's object: his key may not read her bucket
    bobs = s3(server, BOB).generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "photos/a b+c.jpg"})
    assert refused(bobs) == (403, "AccessDenied")
    short = [signer.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "photos/a b+c.jpg"}, ExpiresIn=1)
             for signer in (stock, v4)]
    time.sleep(2.1)
    for url in short:
        code, kind = refused(url)
        assert (code, kind) == (403, "AccessDenied")


class ConsoleSession:
    """The web console signed in with ``who``'s key, over plain HTTP (the session cookie kept by hand)."""

    def __init__(self, server, who):
        self.endpoint = server.endpoint
        opener = urllib.request.build_opener(_NoRedirects)
        form = urllib.parse.urlencode({"access_key": who[0], "secret": who[1]}).encode()
        answer = opener.open(urllib.request.Request(f"{self.endpoint}/console/sign-in", data=form, method="POST",
                                                    headers={"Origin": self.endpoint}))
        assert answer.status == 303, answer.status
        self.cookie = answer.headers["Set-Cookie"].split(";", 1)[0]

    def get(self, path: str) -> tuple[int, bytes]:
        request = urllib.request.Request(self.endpoint + path, headers={"Cookie": self.cookie})
        try:
            with urllib.request.urlopen(request) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None

    def http_error_303(self, request, answer, code, message, headers):
        return answer


def test_the_console_acts_for_the_signed_in_account(server, unique):
    bucket = f"{unique}-{ALICE[2]}"
    uploads(server, ALICE).put(bucket, "a.jpg", jpeg())
    client(server, ALICE, "rekognition").create_project(ProjectName=f"{unique}-alices")
    client(server, BOB, "rekognition").create_project(ProjectName=f"{unique}-bobs")
    alice, bob = ConsoleSession(server, ALICE), ConsoleSession(server, BOB)
    for session, own, other in ((alice, "alices", "bobs"), (bob, "bobs", "alices")):
        status, page = session.get("/console/projects")
        assert status == 200 and f"{unique}-{own}".encode() in page and f"{unique}-{other}".encode() not in page
        status, page = session.get(f"/console/projects/{unique}-{other}")
        assert (status, b"ResourceNotFoundException" in page) == (400, True)  # another account's: no project here
    assert alice.get(f"/console/objects/{bucket}/a.jpg") == (200, jpeg())
    status, body = bob.get(f"/console/objects/{bucket}/a.jpg")
    assert status == 403 and b"another account" in body
    version = f"{len(jpeg())}-0"
    status, body = bob.get(f"/console/thumbnails/{bucket}/a.jpg?v={version}")
    assert status == 403 and b"another account" in body


def train_small(server, who, name: str) -> tuple[str, str]:
    """A classifier of flowers-small (8 photos a label) trained in ``who``'s account: (project, version) ARNs."""
    rek, objects = client(server, who, "rekognition"), uploads(server, who)
    bucket = f"{name}-{who[2]}"
    lines = []
    for i, (label, photo) in enumerate(flower_photos(8)):
        objects.put(bucket, f"{label}/{i}.jpg", photo)
        lines.append(classification_line(bucket, f"{label}/{i}.jpg", label))
    objects.put(bucket, "train.manifest", manifest(lines))
    project = rek.create_project(ProjectName=name)["ProjectArn"]
    dataset = rek.create_dataset(ProjectArn=project, DatasetType="TRAIN", DatasetSource={
        "GroundTruthManifest": {"S3Object": {"Bucket": bucket, "Name": "train.manifest"}}})["DatasetArn"]
    assert wait_dataset(rek, dataset)["Status"] == "CREATE_COMPLETE"

    def create():
        try:
            return rek.create_project_version(ProjectArn=project, VersionName="v1", Tags={BUDGET_TAG: "10"},
                                              OutputConfig={"S3Bucket": bucket, "S3KeyPrefix": "out/"})["ProjectVersionArn"]
        except rek.exceptions.ResourceInUseException:
            return None  # the projects service has not heard that the dataset is complete yet

    version = wait_for(create, 60, "CreateProjectVersion to be accepted")
    rek.get_waiter("project_version_training_completed").wait(
        ProjectArn=project, VersionNames=["v1"], WaiterConfig={"Delay": 1, "MaxAttempts": 600})
    return project, version


@pytest.mark.slow
def test_a_version_is_copied_into_another_account_only_as_the_source_policy_allows(server, unique):
    source_project, source = train_small(server, ALICE, unique)
    alice, bob = client(server, ALICE, "rekognition"), client(server, BOB, "rekognition")
    destination = bob.create_project(ProjectName=f"{unique}-copy")["ProjectArn"]
    copy = {"SourceProjectArn": source_project, "SourceProjectVersionArn": source, "DestinationProjectArn": destination,
            "VersionName": "copied", "OutputConfig": {"S3Bucket": f"{unique}-copy-{BOB[2]}", "S3KeyPrefix": "out/"}}

    # refused: no policy, then a policy for another account; nothing is created
    assert denied(bob.copy_project_version, **copy) == "AccessDeniedException"
    statement = {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::333333333333:root"},
                 "Action": "rekognition:CopyProjectVersion", "Resource": source}
    revision = alice.put_project_policy(ProjectArn=source_project, PolicyName="share",
                                        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [statement]}))["PolicyRevisionId"]
    assert denied(bob.copy_project_version, **copy) == "AccessDeniedException"
    assert bob.describe_project_versions(ProjectArn=destination)["ProjectVersionDescriptions"] == []

    # the model's files are its account's: Bob cannot read Alice's, she can
    model_key = artifact_prefix(source) + CARD_NAME
    assert json.loads(s3(server, ALICE).get_object(Bucket=MODELS_BUCKET, Key=model_key)["Body"].read())["labels"]
    with pytest.raises(ObjectStoreError) as refused:
        uploads(server, BOB).get(MODELS_BUCKET, model_key)
    assert (refused.value.status, refused.value.code) == (403, "AccessDenied")

    # allowed: the copy completes in Bob's account, and runs under his key
    statement["Principal"] = {"AWS": BOB[2]}
    alice.put_project_policy(ProjectArn=source_project, PolicyName="share", PolicyRevisionId=revision,
                             PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [statement]}))
    copied = bob.copy_project_version(**copy)["ProjectVersionArn"]
    assert copied.split(":")[4] == BOB[2]

    def status():
        (found,) = bob.describe_project_versions(ProjectArn=destination, VersionNames=["copied"])["ProjectVersionDescriptions"]
        return found["Status"]

    assert wait_for(lambda: (found := status()) != "COPYING_IN_PROGRESS" and found, 120, "the copy") == "COPYING_COMPLETED"
    assert denied(alice.start_project_version, ProjectVersionArn=copied, MinInferenceUnits=1) == "AccessDeniedException"
    assert json.loads(s3(server, BOB).get_object(Bucket=MODELS_BUCKET, Key=artifact_prefix(copied) + CARD_NAME)["Body"].read())
    # a flow of the same name in each account; Bob's copy is bound to his: its answers are reviewed there
    flows = {who: client(server, who, "sagemaker").create_flow_definition(
        FlowDefinitionName=f"{unique}-flow", RoleArn=ROLE,
        OutputConfig={"S3OutputPath": f"s3://{unique}-copy-{BOB[2] if who is BOB else ALICE[2]}/reviews"})["FlowDefinitionArn"]
        for who in (ALICE, BOB)}
    bob.tag_resource(ResourceArn=copied, Tags={FLOW_DEFINITION: flows[BOB]})
    bob.start_project_version(ProjectVersionArn=copied, MinInferenceUnits=1)
    try:
        bob.get_waiter("project_version_running").wait(ProjectArn=destination, VersionNames=["copied"],
                                                        WaiterConfig={"Delay": 1, "MaxAttempts": 180})
        _, photo = flower_photos(1)[0]
        answer = bob.detect_custom_labels(ProjectVersionArn=copied, Image={"Bytes": photo}, MinConfidence=0)
        assert answer["CustomLabels"] and all(item["Name"] for item in answer["CustomLabels"])
        a2i = {who: client(server, who, "sagemaker-a2i-runtime") for who in (ALICE, BOB)}
        captured = wait_for(lambda: a2i[BOB].list_human_loops(FlowDefinitionArn=flows[BOB])["HumanLoopSummaries"], 60,
                            "Bob's flow to open a loop for his model's answer")
        assert len(captured) == 1
        assert a2i[ALICE].list_human_loops(FlowDefinitionArn=flows[ALICE])["HumanLoopSummaries"] == []
        assert denied(alice.detect_custom_labels, ProjectVersionArn=copied, Image={"Bytes": photo}) == "AccessDeniedException"
    finally:
        bob.stop_project_version(ProjectVersionArn=copied)
    wait_for(lambda: status() == "STOPPED" or None, 120, "the copy to stop")
