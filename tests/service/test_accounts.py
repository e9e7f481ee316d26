"""Accounts kept apart, in process: what each account's key sees and touches.

Every call is made for a caller (``acting_as``, what the gateway sets for a
signed request and the console for its signed-in user), through the same
door: Alice's key is account 111111111111, Bob's 222222222222. Covered here:
projects (the same name in both, listing, another's ARN), buckets (claims,
another's bucket in CreateDataset, CreateProjectVersion, manifest lines,
watched uploads, flow outputs), flow definitions and human loops (names per
account, lists, the review API, WorkerId), and CopyProjectVersion's policy
rule. The wire (stock boto3 against a real server) is
``tests/integration/test_accounts.py``.
"""
from __future__ import annotations

import json

import pytest
from customlabels import errors
from customlabels.buckets import BucketOwners, account_bucket
from customlabels.events import ImageUploaded
from customlabels.wire.dispatch import Caller, acting_as

from tests.support.api import classification_line, jpeg, manifest
from tests.support.embedded import all_entries, wait_dataset, wait_until, wait_version
from tests.support.training import OUTPUT

DEFAULT = "000000000000"
ALICE = Caller("AKIDALICE", "111111111111")
BOB = Caller("AKIDBOB", "222222222222")
ROLE = "arn:aws:iam::111111111111:role/unused"


async def call(api, caller: Caller | None, operation: str, params: dict) -> dict:
    with acting_as(caller):
        return await api.call(operation, params)


@pytest.fixture
def owners(embedded) -> BucketOwners:
    return BucketOwners(embedded.blobs, DEFAULT)


async def own_bucket(embedded, owners, caller: Caller, bucket: str, objects: dict[str, bytes]) -> str:
    """``bucket`` claimed by ``caller``'s account, holding ``objects``: the bucket."""
    await owners.check(bucket, caller.account, write=True)
    for key, data in objects.items():
        await embedded.put_object(bucket, key, data)
    return bucket


async def project_with_dataset(embedded, owners, caller: Caller, name: str, lines: list | None = None) -> tuple[str, str]:
    """A project of ``caller``'s account with a complete TRAIN dataset (one labeled image by default):
    (project ARN, dataset ARN). Its images and manifest are in the account's bucket ``<name>-<account>``."""
    bucket = f"{name}-{caller.account}"
    await own_bucket(embedded, owners, caller, bucket, {"a.jpg": jpeg()})
    lines = lines if lines is not None else [classification_line(bucket, "a.jpg", "cat")]
    await embedded.put_object(bucket, "train.manifest", manifest(lines))
    project = (await call(embedded.api, caller, "CreateProject", {"ProjectName": name}))["ProjectArn"]
    dataset = (await call(embedded.api, caller, "CreateDataset", {
        "ProjectArn": project, "DatasetType": "TRAIN",
        "DatasetSource": {"GroundTruthManifest": {"S3Object": {"Bucket": bucket, "Name": "train.manifest"}}},
    }))["DatasetArn"]
    assert (await wait_dataset(embedded.api, dataset))["Status"] == "CREATE_COMPLETE"

    async def shown():
        found = await call(embedded.api, caller, "DescribeProjects", {"ProjectNames": [name]})
        return [d["Status"] for p in found["ProjectDescriptions"] for d in p["Datasets"]]

    await wait_until(shown, lambda statuses: statuses == ["CREATE_COMPLETE"], f"{name}'s dataset in DescribeProjects")
    return project, dataset


# --- projects ---------------------------------------------------------------------------
async def test_the_same_project_name_in_two_accounts_and_each_sees_its_own(api, unique):
    alice = (await call(api, ALICE, "CreateProject", {"ProjectName": unique}))["ProjectArn"]
    bob = (await call(api, BOB, "CreateProject", {"ProjectName": unique}))["ProjectArn"]
    assert alice.split(":")[4] == ALICE.account and bob.split(":")[4] == BOB.account
    for caller, own, other in ((ALICE, alice, bob), (BOB, bob, alice)):
        by_name = await call(api, caller, "DescribeProjects", {"ProjectNames": [unique]})
        assert [p["ProjectArn"] for p in by_name["ProjectDescriptions"]] == [own]
        listed = await call(api, caller, "DescribeProjects", {})
        arns = {p["ProjectArn"] for p in listed["ProjectDescriptions"]}
        assert own in arns and other not in arns
        assert {arn.split(":")[4] for arn in arns} == {caller.account}
    with pytest.raises(errors.ResourceInUse):  # unique per account still
        await call(api, ALICE, "CreateProject", {"ProjectName": unique})


@pytest.mark.parametrize("operation, params", [
    ("DeleteProject", lambda arn: {"ProjectArn": arn}),
    ("DescribeProjectVersions", lambda arn: {"ProjectArn": arn}),
    ("CreateDataset", lambda arn: {"ProjectArn": arn, "DatasetType": "TRAIN"}),
    ("CreateProjectVersion", lambda arn: {"ProjectArn": arn, "VersionName": "v1", "OutputConfig": OUTPUT}),
    ("PutProjectPolicy", lambda arn: {"ProjectArn": arn, "PolicyName": "p", "PolicyDocument": '{"Statement": []}'}),
    ("ListProjectPolicies", lambda arn: {"ProjectArn": arn}),
    ("TagResource", lambda arn: {"ResourceArn": arn, "Tags": {"k": "v"}}),
    ("ListTagsForResource", lambda arn: {"ResourceArn": arn}),
])
async def test_another_accounts_project_arn_is_access_denied_and_changes_nothing(api, unique, operation, params):
    bob = (await call(api, BOB, "CreateProject", {"ProjectName": unique}))["ProjectArn"]
    with pytest.raises(errors.AccessDenied) as denied:
        await call(api, ALICE, operation, params(bob))
    assert denied.value.code == "AccessDeniedException" and ALICE.account in denied.value.message
    (project,) = (await call(api, BOB, "DescribeProjects", {"ProjectNames": [unique]}))["ProjectDescriptions"]
    assert (project["Status"], project["Datasets"]) == ("CREATED", [])
    assert (await call(api, BOB, "ListTagsForResource", {"ResourceArn": bob}))["Tags"] == {}
    assert (await call(api, BOB, "ListProjectPolicies", {"ProjectArn": bob}))["ProjectPolicies"] == []


# --- buckets ----------------------------------------------------------------------------
async def test_a_bucket_belongs_to_the_account_that_first_wrote_to_it(embedded, owners, unique):
    assert await owners.owner(unique) is None  # nobody's yet
    await owners.check(unique, BOB.account, write=True)
    assert await owners.owner(unique) == BOB.account
    assert await BucketOwners(embedded.blobs, DEFAULT).owner(unique) == BOB.account  # recorded, not remembered
    await owners.check(unique, BOB.account, write=True)
    for write in (False, True):
        with pytest.raises(errors.AccessDenied, match="another account"):
            await owners.check(unique, ALICE.account, write=write)
    assert await owners.owner(unique) == BOB.account

    named = account_bucket("customlabels-images", ALICE.account, DEFAULT)
    assert named == f"customlabels-images-{ALICE.account}" and account_bucket("customlabels-images", DEFAULT, DEFAULT) == "customlabels-images"
    with pytest.raises(errors.AccessDenied):  # an account's named bucket: nobody else can take it first
        await owners.check(named, BOB.account, write=True)
    await owners.check(named, ALICE.account, write=True)

    await embedded.put_object(f"{unique}-old", "a.txt", b"before accounts")  # filled without any record
    assert await owners.owner(f"{unique}-old") == DEFAULT
    with pytest.raises(errors.AccessDenied):
        await owners.check(f"{unique}-old", ALICE.account)

    for bucket in ("customlabels-internal", "customlabels-models", "customlabels-reviews"):
        with pytest.raises(errors.AccessDenied):
            await owners.check(bucket, ALICE.account, write=True)
    await owners.check("customlabels-models", ALICE.account)  # read-only: what of it a key reads is the reader's rule
    with pytest.raises(errors.AccessDenied):
        await owners.check("customlabels-internal", ALICE.account)


async def test_another_accounts_bucket_in_a_request_is_refused(embedded, owners, api, unique):
    alice_bucket = await own_bucket(embedded, owners, ALICE, f"{unique}-alice",
                                    {"m.manifest": manifest([classification_line(f"{unique}-alice", "x.jpg", "cat")]),
                                     "x.jpg": jpeg()})
    bob, _ = await project_with_dataset(embedded, owners, BOB, unique)
    # CreateDataset's manifest: InvalidS3ObjectException, as the reference answers an object it cannot read
    with pytest.raises(errors.InvalidS3Object, match="another account"):
        await call(api, BOB, "CreateDataset", {"ProjectArn": bob, "DatasetType": "TEST", "DatasetSource": {
            "GroundTruthManifest": {"S3Object": {"Bucket": alice_bucket, "Name": "m.manifest"}}}})
    # CreateProjectVersion's OutputConfig
    with pytest.raises(errors.AccessDenied, match="another account"):
        await call(api, BOB, "CreateProjectVersion", {"ProjectArn": bob, "VersionName": "v1",
                                                       "OutputConfig": {"S3Bucket": alice_bucket, "S3KeyPrefix": "x/"}})
    # a flow definition's S3OutputPath
    with pytest.raises(errors.AccessDenied, match="another account"):
        await call(api, BOB, "CreateFlowDefinition", {"FlowDefinitionName": unique, "RoleArn": ROLE,
                                                       "OutputConfig": {"S3OutputPath": f"s3://{alice_bucket}/out"}})
    with pytest.raises(errors.ResourceNotFound):
        await call(api, BOB, "DescribeFlowDefinition", {"FlowDefinitionName": unique})
    (project,) = (await call(api, BOB, "DescribeProjects", {"ProjectNames": [unique]}))["ProjectDescriptions"]
    assert [d["DatasetType"] for d in project["Datasets"]] == ["TRAIN"]
    assert (await call(api, BOB, "DescribeProjectVersions", {"ProjectArn": bob}))["ProjectVersionDescriptions"] == []
    assert await owners.owner(alice_bucket) == ALICE.account


async def test_a_manifest_line_in_another_accounts_bucket_is_never_read(embedded, owners, api, unique):
    alice_bucket = await own_bucket(embedded, owners, ALICE, f"{unique}-alice", {"secret.jpg": jpeg(color=(1, 2, 3))})
    bob_bucket = f"{unique}-{BOB.account}"
    lines = [classification_line(bob_bucket, "a.jpg", "cat"), classification_line(bob_bucket, "b.jpg", "dog"),
             classification_line(bob_bucket, "c.jpg", "dog"), classification_line(bob_bucket, "d.jpg", "cat"),
             classification_line(alice_bucket, "secret.jpg", "dog")]
    await own_bucket(embedded, owners, BOB, bob_bucket, {f"{k}.jpg": jpeg() for k in "bcd"})
    _, dataset = await project_with_dataset(embedded, owners, BOB, unique, lines)
    with acting_as(BOB):
        refused = await all_entries(api, dataset, HasErrors=True)
    assert [entry["source-ref"] for entry in refused] == [f"s3://{alice_bucket}/secret.jpg"]
    assert "another account" in json.dumps(refused[0]) and "ERROR_INVALID_IMAGE" in json.dumps(refused[0])


async def test_an_upload_feeds_the_project_of_the_buckets_account(embedded, owners, api, unique):
    _, alice_train = await project_with_dataset(embedded, owners, ALICE, unique)
    _, bob_train = await project_with_dataset(embedded, owners, BOB, unique)
    watched = await own_bucket(embedded, owners, BOB, f"{unique}-watched", {f"{unique}/train/new.jpg": jpeg()})
    await embedded.system.adapters.bus.publish(
        [ImageUploaded(bucket=watched, object_key=f"{unique}/train/new.jpg", size=1).to_message()])

    async def refs(caller, dataset):
        with acting_as(caller):
            return sorted(entry["source-ref"] for entry in await all_entries(api, dataset))

    new = f"s3://{watched}/{unique}/train/new.jpg"
    await wait_until(lambda: refs(BOB, bob_train), lambda found: new in found, "Bob's dataset to get the upload")
    assert new not in await refs(ALICE, alice_train)


# --- flow definitions, human loops, the review API ---------------------------------------
async def flow(api, caller: Caller, owners, embedded, name: str) -> str:
    bucket = await own_bucket(embedded, owners, caller, f"{name}-out-{caller.account}", {})
    return (await call(api, caller, "CreateFlowDefinition", {
        "FlowDefinitionName": name, "RoleArn": ROLE, "OutputConfig": {"S3OutputPath": f"s3://{bucket}/reviews"}}))["FlowDefinitionArn"]


async def test_flows_and_loops_are_per_account(embedded, owners, api, unique):
    flows = {caller: await flow(api, caller, owners, embedded, unique) for caller in (ALICE, BOB)}
    assert {arn.split(":")[4] for arn in flows.values()} == {ALICE.account, BOB.account}
    for caller in (ALICE, BOB):
        described = await call(api, caller, "DescribeFlowDefinition", {"FlowDefinitionName": unique})
        assert described["FlowDefinitionArn"] == flows[caller]
        listed = await call(api, caller, "ListFlowDefinitions", {})
        assert {f["FlowDefinitionArn"].split(":")[4] for f in listed["FlowDefinitionSummaries"]} == {caller.account}
        assert flows[caller] in {f["FlowDefinitionArn"] for f in listed["FlowDefinitionSummaries"]}

    loops = {}
    for caller in (ALICE, BOB):  # the same loop name in each account
        loops[caller] = (await call(api, caller, "StartHumanLoop", {
            "HumanLoopName": unique, "FlowDefinitionArn": flows[caller],
            "HumanLoopInput": {"InputContent": json.dumps({"customLabels": [{"Name": "cat", "Confidence": 50.0}]})}}))["HumanLoopArn"]
    assert loops[ALICE] != loops[BOB] and loops[ALICE].split(":")[4] == ALICE.account
    for caller in (ALICE, BOB):
        assert (await call(api, caller, "DescribeHumanLoop", {"HumanLoopName": unique}))["HumanLoopArn"] == loops[caller]
        listed = await call(api, caller, "ListHumanLoops", {"FlowDefinitionArn": flows[caller]})
        assert [s["HumanLoopName"] for s in listed["HumanLoopSummaries"]] == [unique]
        task = (await call(api, caller, "GetReviewTask", {"HumanLoopName": unique}))["ReviewTask"]
        assert task["HumanLoopArn"] == loops[caller]
        queue = (await call(api, caller, "ListReviewTasks", {}))["ReviewTasks"]
        assert {t["FlowDefinitionArn"].split(":")[4] for t in queue} == {caller.account}

    # another account's flow ARN: the door refuses; nothing opened
    with pytest.raises(errors.AccessDenied):
        await call(api, ALICE, "StartHumanLoop", {"HumanLoopName": f"{unique}-x", "FlowDefinitionArn": flows[BOB],
                                                   "HumanLoopInput": {"InputContent": "{}"}})
    with pytest.raises(errors.AccessDenied):
        await call(api, ALICE, "ListHumanLoops", {"FlowDefinitionArn": flows[BOB]})
    # an input naming another account's project would train it: refused
    bob_project = (await call(api, BOB, "CreateProject", {"ProjectName": unique}))["ProjectArn"]
    with pytest.raises(errors.AccessDenied, match="another account"):
        await call(api, ALICE, "StartHumanLoop", {"HumanLoopName": f"{unique}-y", "FlowDefinitionArn": flows[ALICE],
                                                   "HumanLoopInput": {"InputContent": json.dumps({"projectArn": bob_project})}})
    for name in (f"{unique}-x", f"{unique}-y"):
        with pytest.raises(errors.ResourceNotFound):
            await call(api, ALICE, "DescribeHumanLoop", {"HumanLoopName": name})

    # an answer without WorkerId is the signing key's; it completes Alice's loop only
    answered = await call(api, ALICE, "AnswerReviewTask", {"HumanLoopName": unique, "Verdict": "ACCEPT"})
    assert answered["Status"] == "Completed"
    task = (await call(api, ALICE, "GetReviewTask", {"HumanLoopName": unique}))["ReviewTask"]
    assert [a["WorkerId"] for a in task["Answers"]] == [ALICE.access_key]
    assert (await call(api, BOB, "DescribeHumanLoop", {"HumanLoopName": unique}))["HumanLoopStatus"] == "InProgress"

    await call(api, BOB, "StopHumanLoop", {"HumanLoopName": unique})
    await call(api, BOB, "DeleteHumanLoop", {"HumanLoopName": unique})
    await call(api, BOB, "DeleteFlowDefinition", {"FlowDefinitionName": unique})
    assert (await call(api, ALICE, "DescribeFlowDefinition", {"FlowDefinitionName": unique}))["FlowDefinitionArn"] == flows[ALICE]
    assert (await call(api, ALICE, "DescribeHumanLoop", {"HumanLoopName": unique}))["HumanLoopStatus"] == "Completed"


# --- CopyProjectVersion across accounts ---------------------------------------------------
def policy(*statements: dict) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def allow(principal, resource="*", action="rekognition:CopyProjectVersion", effect="Allow") -> dict:
    return {"Effect": effect, "Principal": {"AWS": principal}, "Action": action, "Resource": resource}


async def test_a_copy_into_another_account_needs_the_source_projects_policy(embedded, owners, api, unique):
    source, _ = await project_with_dataset(embedded, owners, ALICE, unique)
    version = (await call(api, ALICE, "CreateProjectVersion", {
        "ProjectArn": source, "VersionName": "v1", "OutputConfig": {"S3Bucket": f"{unique}-{ALICE.account}"}}))["ProjectVersionArn"]
    with acting_as(ALICE):
        assert (await wait_version(api, source, "v1"))["Status"] == "TRAINING_FAILED"  # one label: no model
    destination, _ = await project_with_dataset(embedded, owners, BOB, f"{unique}-copy")
    copy = {"SourceProjectArn": source, "SourceProjectVersionArn": version, "DestinationProjectArn": destination,
            "VersionName": "copied", "OutputConfig": {"S3Bucket": f"{unique}-copy-{BOB.account}"}}

    async def refused(reason: str) -> None:
        with pytest.raises(errors.AccessDenied, match="CopyProjectVersion") as denied:
            await call(api, BOB, "CopyProjectVersion", copy)
        assert BOB.account in denied.value.message, reason
        assert (await call(api, BOB, "DescribeProjectVersions", {"ProjectArn": destination}))["ProjectVersionDescriptions"] == [], reason

    await refused("no policy")
    revision = (await call(api, ALICE, "PutProjectPolicy", {"ProjectArn": source, "PolicyName": "copy", "PolicyDocument": policy(
        allow("333333333333"), allow(f"arn:aws:iam::{BOB.account}:root", action="rekognition:DescribeProjects"))}))["PolicyRevisionId"]
    await refused("another account, another action")
    revision = (await call(api, ALICE, "PutProjectPolicy", {"ProjectArn": source, "PolicyName": "copy", "PolicyRevisionId": revision,
                                                            "PolicyDocument": policy(allow(BOB.account), allow(BOB.account, effect="Deny"))}))["PolicyRevisionId"]
    await refused("a Deny wins")
    missing = {**copy, "SourceProjectVersionArn": version.replace("/v1/", "/nope/")}
    with pytest.raises(errors.AccessDenied):  # whether another account's version exists stays unsaid
        await call(api, BOB, "CopyProjectVersion", missing)

    await call(api, ALICE, "PutProjectPolicy", {"ProjectArn": source, "PolicyName": "copy", "PolicyRevisionId": revision,
                                                "PolicyDocument": policy(allow([f"arn:aws:iam::{BOB.account}:root"],
                                                                               resource=version.rsplit("/", 2)[0] + "/*",
                                                                               action="rekognition:Copy*"))})
    # allowed: the copy goes on to the source's own checks (this one has no model to copy)
    with pytest.raises(errors.ResourceInUse, match="only a trained model can be copied"):
        await call(api, BOB, "CopyProjectVersion", copy)
    with pytest.raises(errors.ResourceNotFound):  # and, allowed, a missing source is named as such
        await call(api, BOB, "CopyProjectVersion", missing)
    with pytest.raises(errors.AccessDenied):  # the destination is always the caller's own account
        await call(api, ALICE, "CopyProjectVersion", copy)
