"""Nothing stored is lost or duplicated: restarts, and kill -9 in the middle of an import."""
from __future__ import annotations

import json

import pytest

from services.datasets.records import IMAGES, JOBS
from tests.support.api import all_entries, classification_line, jpeg, manifest, wait_dataset
from tests.support.peek import documents
from tests.support.server import ServerProcess

LINES = 5000


@pytest.fixture
def own_server(tmp_path):
    process = ServerProcess(tmp_path / "data").start()
    yield process
    process.stop()


def test_everything_survives_a_restart(own_server):
    client, objects = own_server.rekognition(), own_server.objects()
    project = client.create_project(ProjectName="kept", Tags={"a": "b"})["ProjectArn"]
    objects.put("images", "one.jpg", jpeg())
    objects.put("images", "m.manifest", manifest([classification_line("images", "one.jpg", "cat")]))
    dataset = client.create_dataset(ProjectArn=project, DatasetType="TRAIN", DatasetSource={
        "GroundTruthManifest": {"S3Object": {"Bucket": "images", "Name": "m.manifest"}}})["DatasetArn"]
    before = wait_dataset(client, dataset)
    entries = all_entries(client, dataset)

    own_server.restart()
    client, objects = own_server.rekognition(), own_server.objects()
    (described,) = client.describe_projects(ProjectNames=["kept"])["ProjectDescriptions"]
    assert described["ProjectArn"] == project
    assert client.list_tags_for_resource(ResourceArn=project)["Tags"] == {"a": "b"}
    assert client.describe_dataset(DatasetArn=dataset)["DatasetDescription"] == before
    assert all_entries(client, dataset) == entries
    assert objects.get("images", "one.jpg") == jpeg()


def _upload_images(objects, count: int) -> list[dict]:
    image = jpeg(64, 64)
    keys = [f"img/{i:05d}.jpg" for i in range(count)]
    objects.put_many("bulk", [(key, image) for key in keys])
    return [classification_line("bulk", key, f"label{i % 7}") for i, key in enumerate(keys)]


def import_jobs(data_dir, dataset: str) -> list[dict]:
    """The datasets service's job documents for imports into ``dataset``, as stored."""
    return [j for j in documents(data_dir, f"datasets.{JOBS}") if j["dataset_arn"] == dataset and j["kind"] == "import"]


def images_checked(data_dir, bucket: str) -> int:
    """How many of ``bucket``'s images the import's validation pass has checked (its per-object cache)."""
    return sum(1 for doc in documents(data_dir, f"datasets.{IMAGES}") if doc["_id"].startswith(bucket + "/"))


@pytest.mark.parametrize("phase", ["validating", "writing"])
def test_kill_9_during_a_5000_line_import(own_server, phase):
    client, objects = own_server.rekognition(), own_server.objects()
    lines = _upload_images(objects, LINES)
    objects.put("bulk", "big.manifest", manifest(lines))
    project = client.create_project(ProjectName="crash")["ProjectArn"]
    dataset = client.create_dataset(ProjectArn=project, DatasetType="TRAIN", DatasetSource={
        "GroundTruthManifest": {"S3Object": {"Bucket": "bulk", "Name": "big.manifest"}}})["DatasetArn"]

    if phase == "validating":  # the first batch of images is checked
        reached = lambda: images_checked(own_server.data_dir, "bulk") > 0
    else:  # the first batch of entries is written
        reached = lambda: any(job["checkpoint"] > 0 for job in import_jobs(own_server.data_dir, dataset) if job["phase"] == "write")
    own_server.kill_when(reached, f"the import's {phase} phase")

    # Where the dead process left the job: proof that it was killed in the middle of that phase.
    (job,) = import_jobs(own_server.data_dir, dataset)
    if phase == "validating":
        assert job["phase"] == "validate", job
        assert 0 < images_checked(own_server.data_dir, "bulk") < LINES
    else:
        assert job["phase"] == "write", job
        assert 0 < job["checkpoint"] < LINES, job
    assert job["attempts"] == 1, job

    own_server.start()
    client = own_server.rekognition()
    description = wait_dataset(client, dataset, timeout=180)
    assert description["Status"] == "CREATE_COMPLETE", description.get("StatusMessage")
    assert description["DatasetStats"]["TotalEntries"] == LINES
    assert description["DatasetStats"]["TotalLabels"] == 7
    entries = all_entries(client, dataset)
    assert len(entries) == LINES
    assert sorted(json.dumps(e, sort_keys=True) for e in entries) == sorted(json.dumps(l, sort_keys=True) for l in lines)
    counts = {l["LabelName"]: l["LabelStats"]["EntryCount"] for l in client.list_dataset_labels(DatasetArn=dataset)["DatasetLabelDescriptions"]}
    assert counts == {f"label{i}": len(range(i, LINES, 7)) for i in range(7)}
