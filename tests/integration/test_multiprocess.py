"""Every service its own OS process, talking only through HTTP, events and the
shared stores — as the distributed deployment runs them."""
from __future__ import annotations

import asyncio
import io
import json
import time

import pytest
from aiokafka import AIOKafkaProducer

from tests.support.api import all_entries, classification_line, jpeg, manifest, wait_dataset
from tests.integration.test_notifications import minio_record
from tests.support.cluster import Cluster

LINES = 2000


@pytest.fixture(params=["embedded-adapters", "kafka-mongodb-s3"])
def cluster(request, tmp_path, unique):
    """Each service a process; over the embedded adapters (shared files) or over
    real Kafka (Tansu), MongoDB-protocol (SecantusDB) and S3 (SeaweedFS) servers."""
    env, s3 = {}, None
    if request.param == "kafka-mongodb-s3":
        s3 = request.getfixturevalue("seaweedfs_server")
        env = {
            "CUSTOMLABELS_S3_NOTIFICATIONS_TOPIC": f"{unique}-objects",
            "CUSTOMLABELS_KAFKA_BOOTSTRAP": request.getfixturevalue("tansu").bootstrap_servers,
            "CUSTOMLABELS_KAFKA_TOPIC_PREFIX": f"{unique}.",
            "CUSTOMLABELS_MONGODB_URI": request.getfixturevalue("secantus_uri"),
            "CUSTOMLABELS_MONGODB_DATABASE": unique,
            "CUSTOMLABELS_S3_ENDPOINT": s3.endpoint,
            "CUSTOMLABELS_S3_ACCESS_KEY": s3.access_key,
            "CUSTOMLABELS_S3_SECRET_KEY": s3.secret_key,
        }
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
    deadline = time.monotonic() + 60
    while not (client.describe_dataset(DatasetArn=dataset)["DatasetDescription"].get("StatusMessage") or "").startswith("Importing"):
        assert time.monotonic() < deadline, "the import never reached its writing phase"
        time.sleep(0.005)
    cluster.processes["datasets"].kill()
    cluster.processes["datasets"].start()

    description = wait_dataset(client, dataset, timeout=120)
    assert description["Status"] == "CREATE_COMPLETE", (description, cluster.logs())
    assert description["DatasetStats"]["TotalEntries"] == LINES
    entries = all_entries(client, dataset)
    assert sorted(json.dumps(e, sort_keys=True) for e in entries) == sorted(json.dumps(l, sort_keys=True) for l in lines)
