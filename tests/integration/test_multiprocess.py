"""Every service its own OS process, talking only through HTTP, events and the
shared stores — as the distributed deployment runs them."""
from __future__ import annotations

import asyncio
import io
import json
import time
import uuid
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaProducer
from botocore.exceptions import WaiterError

from tests.integration.test_notifications import minio_record
from tests.support.api import (
    all_entries,
    classification_line,
    create_from_manifest,
    jpeg,
    manifest,
    wait_dataset,
)
from services.datasets.records import JOBS
from tests.support.cluster import EVERY_SERVICE, Cluster
from tests.support.peek import documents
from tests.support.server import DATASETS
from tests.support.training import BUDGET_TAG, OUTPUT

LINES = 2000


def distributed_env(request, unique: str) -> dict[str, str]:
    """Settings for real Kafka (Tansu), MongoDB-protocol (SecantusDB) and S3
    (SeaweedFS) servers, under names of this test's own."""
    s3 = request.getfixturevalue("seaweedfs_server")
    return {
        "CUSTOMLABELS_S3_NOTIFICATIONS_TOPIC": f"{unique}-objects",
        "CUSTOMLABELS_KAFKA_BOOTSTRAP": request.getfixturevalue("tansu").bootstrap_servers,
        "CUSTOMLABELS_KAFKA_TOPIC_PREFIX": f"{unique}.",
        "CUSTOMLABELS_MONGODB_URI": request.getfixturevalue("secantus_uri"),
        "CUSTOMLABELS_MONGODB_DATABASE": unique,
        "CUSTOMLABELS_S3_ENDPOINT": s3.endpoint,
        "CUSTOMLABELS_S3_ACCESS_KEY": s3.access_key,
        "CUSTOMLABELS_S3_SECRET_KEY": s3.secret_key,
    }


@pytest.fixture(params=["embedded-adapters", "kafka-mongodb-s3"])
def cluster(request, tmp_path, unique):
    """projects, datasets and the gateway, each a process; over the embedded
    adapters (shared files) or over real Kafka, MongoDB and S3 servers."""
    env, s3 = {}, None
    if request.param == "kafka-mongodb-s3":
        env, s3 = distributed_env(request, unique), request.getfixturevalue("seaweedfs_server")
    running = Cluster(tmp_path / "data", env=env).start()
    running.s3 = s3
    yield running
    running.stop()


def test_services_as_processes_serve_the_api(cluster):
    client, objects = cluster.gateway.rekognition(), cluster.gateway.objects()
    project = client.create_project(ProjectName="split")["ProjectArn"]
    objects.put("images", "a.jpg", jpeg())
    objects.put("images", "m.manifest", manifest([classification_line("images", "a.jpg", "cat")]))
    dataset = client.create_dataset(ProjectArn=project, DatasetType="TRAIN", DatasetSource={
        "GroundTruthManifest": {"S3Object": {"Bucket": "images", "Name": "m.manifest"}}})["DatasetArn"]
    assert wait_dataset(client, dataset)["DatasetStats"]["LabeledEntries"] == 1, cluster.logs()
    # the projects process learns about the dataset from the datasets process's events
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        (description,) = client.describe_projects(ProjectNames=["split"])["ProjectDescriptions"]
        if description["Datasets"] and description["Datasets"][0]["Status"] == "CREATE_COMPLETE":
            break
        time.sleep(0.1)
    assert description["Datasets"][0]["DatasetArn"] == dataset, cluster.logs()
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.describe_dataset(DatasetArn=dataset.replace("/train/", "/test/"))

    if cluster.s3 is not None:
        # An image put straight into the object store, announced by a bucket
        # notification on Kafka (as MinIO does), becomes an unlabeled entry.
        store = cluster.s3.client()
        if not store.bucket_exists("customlabels-images"):
            store.make_bucket("customlabels-images")
        store.put_object("customlabels-images", "split/train/direct.jpg", io.BytesIO(jpeg()), len(jpeg()))
        asyncio.run(_notify(cluster.env["CUSTOMLABELS_KAFKA_BOOTSTRAP"], cluster.env["CUSTOMLABELS_S3_NOTIFICATIONS_TOPIC"],
                            minio_record("customlabels-images", "split/train/direct.jpg")))
        deadline = time.monotonic() + 60
        while len(all_entries(client, dataset)) < 2:
            assert time.monotonic() < deadline, cluster.logs()
            time.sleep(0.2)
        assert {"source-ref": "s3://customlabels-images/split/train/direct.jpg"} in all_entries(client, dataset)


async def _notify(bootstrap: str, topic: str, value: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value)
    finally:
        await producer.stop()


def test_kill_9_of_the_datasets_service_during_an_import(cluster):
    client, objects = cluster.gateway.rekognition(), cluster.gateway.objects()
    image = jpeg(64, 64)
    keys = [f"img/{i:04d}.jpg" for i in range(LINES)]
    objects.put_many("crash", [(k, image) for k in keys])
    lines = [classification_line("crash", k, f"label{i % 5}") for i, k in enumerate(keys)]
    objects.put("crash", "big.manifest", manifest(lines))
    project = client.create_project(ProjectName="crash")["ProjectArn"]
    dataset = client.create_dataset(ProjectArn=project, DatasetType="TRAIN", DatasetSource={
        "GroundTruthManifest": {"S3Object": {"Bucket": "crash", "Name": "big.manifest"}}})["DatasetArn"]
    import_job = lambda: [j for j in documents(cluster.data_dir, f"datasets.{JOBS}", cluster.env) if j["dataset_arn"] == dataset]
    cluster.processes["datasets"].kill_when(
        lambda: any(job["phase"] == "write" and job["checkpoint"] > 0 for job in import_job()), "the import's writing phase")
    (job,) = import_job()
    assert job["phase"] == "write" and 0 < job["checkpoint"] < LINES, job  # killed mid-way: some entries written, not all
    cluster.processes["datasets"].start()

    description = wait_dataset(client, dataset, timeout=120)
    assert description["Status"] == "CREATE_COMPLETE", (description, cluster.logs())
    assert description["DatasetStats"]["TotalEntries"] == LINES
    entries = all_entries(client, dataset)
    assert sorted(json.dumps(e, sort_keys=True) for e in entries) == sorted(json.dumps(l, sort_keys=True) for l in lines)


# --- model versions: every service a process, over Kafka, MongoDB and S3 ---------------
FLOWERS = {"daisy": 20, "sunflowers": 20}  # 40 photos of flowers-small: 32 to train on, 8 to test
TRAINING_SECONDS = "15"  # the versions' budget (their tag); the least allowed is 10


@pytest.fixture(scope="module")
def every_service(request, tmp_path_factory):
    """Every service of the runtime its own process (training, evaluation and
    hosting included) over Kafka, MongoDB and S3, once for this module: the
    tests below train on it, and tests of hosting start ``trained_version``."""
    unique = f"t{uuid.uuid4().hex[:10]}"
    running = Cluster(tmp_path_factory.mktemp("every-service") / "data", env=distributed_env(request, unique),
                      services=EVERY_SERVICE).start()
    running.s3 = request.getfixturevalue("seaweedfs_server")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def flowers(every_service) -> str:
    """A project whose TRAIN dataset is 40 flowers-small photos of 2 labels (its ARN)."""
    client, objects = every_service.gateway.rekognition(), every_service.gateway.objects()
    photos = [(label, path) for label, count in FLOWERS.items()
              for path in sorted((DATASETS / "flowers-small" / label).glob("*.jpg"))[:count]]
    objects.put_many("flowers", [(f"{label}/{path.name}", path.read_bytes()) for label, path in photos])
    project = client.create_project(ProjectName="flowers")["ProjectArn"]
    lines = [classification_line("flowers", f"{label}/{path.name}", label) for label, path in photos]
    dataset = create_from_manifest(client, objects, project, "flowers", lines)
    assert wait_dataset(client, dataset)["DatasetStats"]["LabeledEntries"] == len(photos), every_service.logs()
    # CreateProjectVersion reads the datasets' status from the projects service,
    # which learns it from the datasets service's events a moment later.
    deadline = time.monotonic() + 30
    while client.describe_projects(ProjectNames=["flowers"])["ProjectDescriptions"][0]["Datasets"][0]["Status"] != "CREATE_COMPLETE":
        assert time.monotonic() < deadline, every_service.logs()
        time.sleep(0.1)
    return project


def train(client, project: str, name: str) -> None:
    client.create_project_version(ProjectArn=project, VersionName=name, OutputConfig=OUTPUT,
                                  Tags={BUDGET_TAG: TRAINING_SECONDS})


def wait_trained(cluster, project: str, name: str, timeout: float = 240) -> dict:
    """The version once the ``project_version_training_completed`` waiter saw TRAINING_COMPLETED."""
    client = cluster.gateway.rekognition()
    waiter = client.get_waiter("project_version_training_completed")
    try:
        waiter.wait(ProjectArn=project, VersionNames=[name], WaiterConfig={"Delay": 1, "MaxAttempts": int(timeout)})
    except WaiterError as e:  # TRAINING_FAILED, or still training
        pytest.fail(f"{name}: {e}\n{cluster.logs()}")
    (description,) = client.describe_project_versions(ProjectArn=project, VersionNames=[name])["ProjectVersionDescriptions"]
    return description


@pytest.fixture(scope="module")
def trained_version(every_service, flowers) -> dict:
    """Version v1 of the flowers project, trained by the training process and
    scored by the evaluation process: its DescribeProjectVersions description."""
    train(every_service.gateway.rekognition(), flowers, "v1")
    return wait_trained(every_service, flowers, "v1")


def test_a_version_is_trained_and_evaluated_by_their_own_processes(trained_version):
    assert trained_version["Status"] == "TRAINING_COMPLETED", trained_version["StatusMessage"]
    assert 0.5 < trained_version["EvaluationResult"]["F1Score"] <= 1
    # Billed: the training itself, within the version's life (a loaded machine's overrun is bench-train's to measure).
    billable = trained_version["BillableTrainingTimeInSeconds"]
    elapsed = (trained_version["TrainingEndTimestamp"] - trained_version["CreationTimestamp"]).total_seconds()
    assert 1 <= billable <= elapsed + 1, (billable, elapsed)
    assert trained_version["EvaluationResult"]["Summary"]["S3Object"]["Bucket"] == OUTPUT["S3Bucket"]


def test_the_trained_version_is_started_detects_and_stops_in_its_own_process(every_service, flowers, trained_version):
    """Hosting, its own process, serves what the training process made: start, detect (bytes and S3Object), stop."""
    client = every_service.gateway.rekognition()
    arn = trained_version["ProjectVersionArn"]
    client.start_project_version(ProjectVersionArn=arn, MinInferenceUnits=1)
    client.get_waiter("project_version_running").wait(ProjectArn=flowers, VersionNames=["v1"],
                                                      WaiterConfig={"Delay": 0.5, "MaxAttempts": 240})
    photo = sorted((DATASETS / "flowers-small" / "daisy").glob("*.jpg"))[-1]  # not one of the 40 trained on
    by_bytes = client.detect_custom_labels(ProjectVersionArn=arn, Image={"Bytes": photo.read_bytes()}, MinConfidence=0)
    by_object = client.detect_custom_labels(ProjectVersionArn=arn, MinConfidence=0, Image={
        "S3Object": {"Bucket": "flowers", "Name": "daisy/" + sorted((DATASETS / "flowers-small" / "daisy").glob("*.jpg"))[0].name}})
    for answer in (by_bytes, by_object):
        labels = answer["CustomLabels"]
        assert {label["Name"] for label in labels} == set(FLOWERS)
        assert [label["Confidence"] for label in labels] == sorted((label["Confidence"] for label in labels), reverse=True)
    assert by_bytes["CustomLabels"][0]["Name"] == "daisy"
    client.stop_project_version(ProjectVersionArn=arn)
    deadline = time.monotonic() + 60
    while client.describe_project_versions(ProjectArn=flowers, VersionNames=["v1"])["ProjectVersionDescriptions"][0]["Status"] != "STOPPED":
        assert time.monotonic() < deadline, every_service.logs()
        time.sleep(0.25)
    with pytest.raises(client.exceptions.ResourceNotReadyException):
        client.detect_custom_labels(ProjectVersionArn=arn, Image={"Bytes": photo.read_bytes()})


def test_kill_9_of_the_training_service_during_training(every_service, flowers):
    """The job of a training process killed mid-training is redelivered (Kafka, after the group
    rebalances) to the process that replaces it, which resumes from the version's snapshot."""
    client = every_service.gateway.rekognition()
    train(client, flowers, "killed")
    deadline = time.monotonic() + 120
    while True:
        (description,) = client.describe_project_versions(
            ProjectArn=flowers, VersionNames=["killed"])["ProjectVersionDescriptions"]
        if (description["StatusMessage"] or "").startswith("Training ("):
            break
        assert description["Status"] == "TRAINING_IN_PROGRESS", (description, every_service.logs())
        assert time.monotonic() < deadline, f"training never started: {description['StatusMessage']}"
        time.sleep(0.2)
    killed_at = datetime.now(UTC)
    every_service.processes["training"].kill()
    every_service.processes["training"].start()

    description = wait_trained(every_service, flowers, "killed")
    assert description["Status"] == "TRAINING_COMPLETED", description["StatusMessage"]
    assert 0.5 < description["EvaluationResult"]["F1Score"] <= 1
    names = [d["ProjectVersionArn"].split("/")[-2]
             for d in client.describe_project_versions(ProjectArn=flowers)["ProjectVersionDescriptions"]]
    assert names.count("killed") == 1
    # trained from the snapshot taken before the kill, not from a new one
    snapshot = description["TrainingDataResult"]["Input"]["Assets"][0]["GroundTruthManifest"]["S3Object"]
    written = every_service.s3.client().stat_object(snapshot["Bucket"], snapshot["Name"]).last_modified
    assert written < killed_at, f"the snapshot was taken again after the kill ({written} >= {killed_at})"


def test_captured_predictions_survive_the_feedback_and_hosting_services_being_killed(every_service, flowers, trained_version):
    """kill -9 of the feedback process: what hosting captured meanwhile waits on Kafka and opens its
    loops once feedback is back. kill -9 of hosting: the same images again (a client's retries)
    open nothing new. An answer becomes an entry of the project's TRAIN dataset."""
    from tests.support.feedback import client as stock_client, create_flow, review, wait_for

    endpoint = every_service.gateway.endpoint
    rekognition, sagemaker = every_service.gateway.rekognition(), stock_client(endpoint, "sagemaker")
    flow = create_flow(sagemaker, "every-prediction")  # no conditions: every answer is reviewed
    arn = trained_version["ProjectVersionArn"]
    rekognition.tag_resource(ResourceArn=arn, Tags={"customlabels:flow-definition": flow})
    rekognition.start_project_version(ProjectVersionArn=arn, MinInferenceUnits=1)
    rekognition.get_waiter("project_version_running").wait(ProjectArn=flowers, VersionNames=["v1"],
                                                            WaiterConfig={"Delay": 0.5, "MaxAttempts": 240})
    photos = [path.read_bytes() for path in sorted((DATASETS / "flowers-small" / "sunflowers").glob("*.jpg"))[-4:]]

    def loops() -> list[str]:
        found = stock_client(endpoint, "sagemaker-a2i-runtime").list_human_loops(FlowDefinitionArn=flow)
        return sorted(s["HumanLoopName"] for s in found["HumanLoopSummaries"])

    every_service.processes["feedback"].kill()
    for photo in photos[:3]:
        rekognition.detect_custom_labels(ProjectVersionArn=arn, Image={"Bytes": photo})
    every_service.processes["feedback"].start()
    before = wait_for(loops, lambda found: len(found) == 3, "the loops captured while feedback was down", timeout=120)

    every_service.processes["hosting"].kill()
    every_service.processes["hosting"].start()
    # a new image shows capture works again (once hosting has read the binding); the old ones are retries
    wait_for(lambda: (rekognition.detect_custom_labels(ProjectVersionArn=arn, Image={"Bytes": photos[3]}), loops())[1],
             lambda found: len(found) == 4, "capture after hosting's restart", timeout=120, interval=1)
    for photo in photos[:3]:
        rekognition.detect_custom_labels(ProjectVersionArn=arn, Image={"Bytes": photo})
    time.sleep(3)
    after = loops()
    assert len(after) == 4 and set(before) <= set(after), every_service.logs()

    reviews = review(endpoint)
    reviews.answer_review_task(HumanLoopName=before[0], WorkerId="tester", Verdict="CORRECT", Labels=[{"Name": "sunflowers"}])
    dataset = rekognition.describe_projects(ProjectNames=["flowers"])["ProjectDescriptions"][0]["Datasets"][0]["DatasetArn"]
    reviewed = wait_for(lambda: [e for e in all_entries(rekognition, dataset) if "reviewed-label" in e], bool,
                        "the answer in TRAIN", timeout=60)
    assert reviewed[0]["reviewed-label-metadata"]["customlabels-review"]["human-loop"] == before[0]
    rekognition.stop_project_version(ProjectVersionArn=arn)
