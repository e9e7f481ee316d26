"""Datasets and entries through the stock boto3 client, with real images."""
from __future__ import annotations

import asyncio
import json
import struct
import uuid
import zlib
from pathlib import Path

import pytest

from customlabels.adapters.sqlite_events import SqliteEventBus
from customlabels.ports.events import Message, dead_letter_topic
from tests.support.api import (
    create_from_manifest,
    all_entries,
    classification_line,
    detection_line,
    jpeg,
    manifest,
    wait_dataset,
    wait_for,
    wait_gone,
)

CAT_BUCKET = "devopstar-ground-truth-input"


@pytest.fixture
def project(rekognition, unique):
    return rekognition.create_project(ProjectName=unique)["ProjectArn"]


@pytest.fixture(scope="session")
def cat_images(server, datasets_dir):
    """The cat-bbox images where its manifest's source-refs point."""
    objects = server.objects()
    for path in sorted((datasets_dir / "groundtruth-manifests/cat-bbox/images").glob("*.jpg")):
        objects.put(CAT_BUCKET, f"input-images/{path.name}", path.read_bytes())
    return datasets_dir / "groundtruth-manifests/cat-bbox/output.manifest"


@pytest.fixture(scope="session")
def flowers(server, datasets_dir):
    """Ten real flower photos per class in bucket 'flowers', as (key, label)."""
    objects = server.objects()
    pairs = []
    for label_dir in sorted((datasets_dir / "flowers-small").iterdir()):
        if label_dir.is_dir():
            for path in sorted(label_dir.glob("*.jpg"))[:10]:
                key = f"{label_dir.name}/{path.name}"
                objects.put("flowers", key, path.read_bytes())
                pairs.append((key, label_dir.name))
    return pairs


def test_empty_dataset_lifecycle(rekognition, project):
    arn = rekognition.create_dataset(ProjectArn=project, DatasetType="TEST")["DatasetArn"]
    assert "/dataset/test/" in arn
    description = wait_dataset(rekognition, arn)
    assert description["Status"] == "CREATE_COMPLETE"
    assert description["StatusMessageCode"] == "SUCCESS"
    assert description["DatasetStats"] == {"LabeledEntries": 0, "TotalEntries": 0, "TotalLabels": 0, "ErrorEntries": 0}
    with pytest.raises(rekognition.exceptions.ResourceAlreadyExistsException):
        rekognition.create_dataset(ProjectArn=project, DatasetType="TEST")
    rekognition.delete_dataset(DatasetArn=arn)
    wait_gone(lambda: rekognition.describe_dataset(DatasetArn=arn))


def test_dataset_appears_in_describe_projects(rekognition, project, unique):
    arn = rekognition.create_dataset(ProjectArn=project, DatasetType="TRAIN")["DatasetArn"]
    wait_dataset(rekognition, arn)

    def listed() -> list[dict]:  # the projects service learns of it from the datasets service's events
        (description,) = rekognition.describe_projects(ProjectNames=[unique])["ProjectDescriptions"]
        return [d for d in description["Datasets"] if d["Status"] == "CREATE_COMPLETE"]

    (dataset,) = wait_for(listed, 30, "DescribeProjects to list the dataset as CREATE_COMPLETE")
    assert (dataset["DatasetArn"], dataset["DatasetType"]) == (arn, "TRAIN")


def test_cat_bbox_manifest_imports_with_its_images(rekognition, objects, project, cat_images):
    arn = create_from_manifest(rekognition, objects, project, CAT_BUCKET, cat_images.read_bytes())
    description = wait_dataset(rekognition, arn)
    assert description["Status"] == "CREATE_COMPLETE", description.get("StatusMessage")
    lines = [json.loads(line) for line in cat_images.read_text().splitlines() if line.strip()]
    stats = description["DatasetStats"]
    assert stats["TotalEntries"] == len(lines)
    assert stats["TotalLabels"] == 1
    (label,) = rekognition.list_dataset_labels(DatasetArn=arn)["DatasetLabelDescriptions"]
    boxes = sum(len(line["cat-ground-truth"]["annotations"]) for line in lines)
    with_boxes = sum(1 for line in lines if line["cat-ground-truth"]["annotations"])
    # the line with no boxes is labeled (a person looked: no cat) but names no label
    assert stats["LabeledEntries"] == len(lines)
    assert label == {"LabelName": "Cat", "LabelStats": {"EntryCount": with_boxes, "BoundingBoxCount": boxes}}
    entries = all_entries(rekognition, arn)
    assert sorted(e["source-ref"] for e in entries) == sorted(line["source-ref"] for line in lines)
    empty = next(e for e in entries if not e["cat-ground-truth"]["annotations"])
    assert empty["warnings"][0]["code"] == "WARNING_NO_ANNOTATIONS"


def test_real_manifests_without_their_images_fail_cleanly(rekognition, objects, project, datasets_dir):
    """The images of these manifests are not here: each line is reported, nothing crashes."""
    path = datasets_dir / "groundtruth-manifests/driverlicense-bbox.manifest"
    arn = create_from_manifest(rekognition, objects, project, "manifests", path.read_bytes())
    description = wait_dataset(rekognition, arn)
    assert description["Status"] == "CREATE_FAILED"
    assert description["StatusMessageCode"] == "CLIENT_ERROR"
    assert "ERROR_TOO_MANY_INVALID_ROWS_IN_MANIFEST" in description["StatusMessage"]
    assert "line 1: ERROR_INVALID_IMAGE" in description["StatusMessage"]
    assert description["DatasetStats"]["TotalEntries"] == 0


@pytest.mark.parametrize("name", ["bees-bbox", "logo-bbox", "birds-classification", "driverlicense-bbox"])
def test_every_real_manifest_imports_without_crashing(rekognition, objects, unique, datasets_dir, name):
    """Their images are elsewhere: every line reports its missing image and the
    import fails cleanly on the 20 % rule, with a message naming lines."""
    project = rekognition.create_project(ProjectName=f"{unique}-{name}")["ProjectArn"]
    path = datasets_dir / f"groundtruth-manifests/{name}.manifest"
    arn = create_from_manifest(rekognition, objects, project, "manifests", path.read_bytes())
    description = wait_dataset(rekognition, arn)
    assert (description["Status"], description["StatusMessageCode"]) == ("CREATE_FAILED", "CLIENT_ERROR")
    assert description["StatusMessage"].startswith("ERROR_TOO_MANY_INVALID_ROWS_IN_MANIFEST")
    assert "was not found" in description["StatusMessage"]


def test_classification_entries_filters_paging_and_labels(rekognition, objects, project, flowers):
    lines = [classification_line("flowers", key, label) for key, label in flowers]
    lines.append({"source-ref": "s3://flowers/daisy/unlabeled.jpg"})
    objects.put("flowers", "daisy/unlabeled.jpg", jpeg())
    arn = create_from_manifest(rekognition, objects, project, "flowers", lines)
    description = wait_dataset(rekognition, arn)
    assert description["Status"] == "CREATE_COMPLETE", description.get("StatusMessage")
    assert description["DatasetStats"] == {"LabeledEntries": 50, "TotalEntries": 51, "TotalLabels": 5, "ErrorEntries": 0}

    labels = rekognition.list_dataset_labels(DatasetArn=arn)["DatasetLabelDescriptions"]
    assert {(l["LabelName"], l["LabelStats"]["EntryCount"], l["LabelStats"]["BoundingBoxCount"]) for l in labels} == {
        (name, 10, 0) for name in ("daisy", "dandelion", "roses", "sunflowers", "tulips")
    }
    page = rekognition.list_dataset_labels(DatasetArn=arn, MaxResults=2)
    assert [l["LabelName"] for l in page["DatasetLabelDescriptions"]] == ["daisy", "dandelion"]
    rest = rekognition.list_dataset_labels(DatasetArn=arn, MaxResults=10, NextToken=page["NextToken"])
    assert [l["LabelName"] for l in rest["DatasetLabelDescriptions"]] == ["roses", "sunflowers", "tulips"]

    pages, token = [], None
    while True:
        page = rekognition.list_dataset_entries(DatasetArn=arn, MaxResults=7, **({"NextToken": token} if token else {}))
        pages.append(page["DatasetEntries"])
        token = page.get("NextToken")
        if not token:
            break
    refs = [json.loads(line)["source-ref"] for page in pages for line in page]
    assert len(refs) == 51 == len(set(refs)) and max(len(p) for p in pages) == 7

    roses = all_entries(rekognition, arn, ContainsLabels=["roses"])
    assert len(roses) == 10 and all(e["label-metadata"]["class-name"] == "roses" for e in roses)
    assert len(all_entries(rekognition, arn, ContainsLabels=["roses", "tulips"])) == 20
    assert [e["source-ref"] for e in all_entries(rekognition, arn, Labeled=False)] == ["s3://flowers/daisy/unlabeled.jpg"]
    assert len(all_entries(rekognition, arn, Labeled=True)) == 50
    assert len(all_entries(rekognition, arn, SourceRefContains="sunflowers/")) == 10
    assert all_entries(rekognition, arn, HasErrors=True) == []

    first = rekognition.list_dataset_entries(DatasetArn=arn, MaxResults=5)
    with pytest.raises(rekognition.exceptions.InvalidPaginationTokenException):
        rekognition.list_dataset_entries(DatasetArn=arn, MaxResults=5, Labeled=False, NextToken=first["NextToken"])


def _png_header(width: int, height: int) -> bytes:
    """A PNG that claims a size, with a valid IHDR, without its pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk)) + b"\x00" * 64


def test_bad_lines_are_reported_per_entry(rekognition, objects, project, flowers, unique):
    good = [classification_line("flowers", key, label) for key, label in flowers]  # 50 good lines
    real = Path(__file__).resolve().parents[3] / "shared/datasets/flowers-small/daisy"
    photo = sorted(real.glob("*.jpg"))[0].read_bytes()
    objects.put(unique, "text.jpg", b"this is not an image at all")
    objects.put(unique, "truncated.jpg", photo[: len(photo) // 2])
    objects.put(unique, "huge.png", _png_header(20000, 20000))
    objects.put(unique, "box.jpg", jpeg(200, 100))
    box = lambda *boxes, class_map={"0": "thing"}: detection_line(unique, "box.jpg", (200, 100), list(boxes), class_map)
    bad = [
        "{not json",
        json.dumps({"label": 1}),
        json.dumps({"source-ref": "https://example.com/a.jpg"}),
        classification_line(unique, "text.jpg", "x"),
        classification_line(unique, "truncated.jpg", "x"),
        classification_line(unique, "huge.png", "x"),
        classification_line(unique, "missing.jpg", "x"),
    ]
    arn = create_from_manifest(rekognition, objects, project, unique, good + bad)
    description = wait_dataset(rekognition, arn)
    assert description["Status"] == "CREATE_COMPLETE", description.get("StatusMessage")
    errors = {e["source-ref"]: [x["code"] for x in e.get("errors", [])] for e in all_entries(rekognition, arn, HasErrors=True)}
    assert errors == {
        f"s3://{unique}/text.jpg": ["ERROR_INVALID_IMAGE"],
        f"s3://{unique}/truncated.jpg": ["ERROR_INVALID_IMAGE"],
        f"s3://{unique}/huge.png": ["ERROR_INVALID_IMAGE_DIMENSION"],
        f"s3://{unique}/missing.jpg": ["ERROR_INVALID_IMAGE"],
    }
    assert description["DatasetStats"]["TotalEntries"] == 54  # 3 terminal lines dropped
    assert description["DatasetStats"]["ErrorEntries"] == 4

    # boxes: outside the image, zero size, unknown class id; each beside a good box,
    # so the line stays usable and only the broken annotation carries the error
    good_box = (0, 10, 10, 50, 50)
    updates = []
    for name, bad_box in (("outside", (0, 150, 10, 80, 20)), ("zero", (0, 10, 10, 0, 20)), ("unknown", (7, 10, 10, 20, 20))):
        objects.put(unique, f"{name}.jpg", jpeg(200, 100))
        updates.append({**box(good_box, bad_box), "source-ref": f"s3://{unique}/{name}.jpg"})
    rekognition.update_dataset_entries(DatasetArn=arn, Changes={"GroundTruth": manifest(updates)})
    assert wait_dataset(rekognition, arn)["Status"] == "UPDATE_COMPLETE"
    by_ref = {e["source-ref"]: e for e in all_entries(rekognition, arn, SourceRefContains=unique)}
    codes = lambda name: [[x["code"] for x in a.get("errors", [])] for a in by_ref[f"s3://{unique}/{name}.jpg"]["bounding-box"]["annotations"]]
    assert codes("outside") == [[], ["ERROR_INVALID_BOUNDING_BOX"]]
    assert codes("zero") == [[], ["ERROR_BOUNDING_BOX_TOO_SMALL"]]
    assert codes("unknown") == [[], ["ERROR_MISSING_CLASS_MAP_ID"]]
    labels = {l["LabelName"]: l["LabelStats"] for l in rekognition.list_dataset_labels(DatasetArn=arn)["DatasetLabelDescriptions"]}
    assert labels["thing"] == {"EntryCount": 3, "BoundingBoxCount": 3}  # only the valid boxes count


def test_too_many_bad_lines_change_nothing(rekognition, objects, project, flowers):
    lines = [classification_line("flowers", key, label) for key, label in flowers[:10]]
    arn = create_from_manifest(rekognition, objects, project, "flowers", lines)
    before = wait_dataset(rekognition, arn)
    entries_before = all_entries(rekognition, arn)
    rekognition.update_dataset_entries(
        DatasetArn=arn, Changes={"GroundTruth": manifest(["{bad", "{bad", "{bad", classification_line("flowers", flowers[20][0], "x")])}
    )
    after = wait_dataset(rekognition, arn)
    assert after["Status"] == "UPDATE_FAILED"
    assert "ERROR_TOO_MANY_INVALID_ROWS_IN_MANIFEST" in after["StatusMessage"]
    assert after["DatasetStats"] == before["DatasetStats"]
    assert all_entries(rekognition, arn) == entries_before


def test_update_upserts_by_source_ref(rekognition, objects, project, flowers):
    key, _ = flowers[0]
    arn = create_from_manifest(rekognition, objects, project, "flowers", [classification_line("flowers", key, "daisy")])
    wait_dataset(rekognition, arn)
    changes = manifest([classification_line("flowers", key, "tulips"), classification_line("flowers", flowers[1][0], "daisy")])
    rekognition.update_dataset_entries(DatasetArn=arn, Changes={"GroundTruth": changes})
    with pytest.raises(rekognition.exceptions.ResourceInUseException):
        rekognition.update_dataset_entries(DatasetArn=arn, Changes={"GroundTruth": changes})
    description = wait_dataset(rekognition, arn)
    assert description["Status"] == "UPDATE_COMPLETE"
    assert description["DatasetStats"]["TotalEntries"] == 2
    labels = {l["LabelName"]: l["LabelStats"]["EntryCount"] for l in rekognition.list_dataset_labels(DatasetArn=arn)["DatasetLabelDescriptions"]}
    assert labels == {"tulips": 1, "daisy": 1}


def test_update_over_5_mb_is_refused(server, project, rekognition):
    arn = rekognition.create_dataset(ProjectArn=project, DatasetType="TRAIN")["DatasetArn"]
    wait_dataset(rekognition, arn)
    raw = server.rekognition(parameter_validation=False)
    with pytest.raises(raw.exceptions.InvalidParameterException) as e:
        raw.update_dataset_entries(DatasetArn=arn, Changes={"GroundTruth": b"x" * (5 * 1024 * 1024 + 1)})
    assert "groundTruth" in str(e.value)
    assert wait_dataset(rekognition, arn)["Status"] == "CREATE_COMPLETE"


def test_copy_and_distribute(rekognition, objects, project, flowers):
    lines = [classification_line("flowers", key, label) for key, label in flowers]
    train = create_from_manifest(rekognition, objects, project, "flowers", lines)
    wait_dataset(rekognition, train)
    test = rekognition.create_dataset(ProjectArn=project, DatasetType="TEST")["DatasetArn"]
    wait_dataset(rekognition, test)
    rekognition.distribute_dataset_entries(Datasets=[{"Arn": train}, {"Arn": test}])
    train_after, test_after = wait_dataset(rekognition, train), wait_dataset(rekognition, test)
    assert train_after["Status"] == test_after["Status"] == "UPDATE_COMPLETE"
    assert train_after["DatasetStats"]["TotalEntries"] == 40 and test_after["DatasetStats"]["TotalEntries"] == 10
    test_labels = {l["LabelName"]: l["LabelStats"]["EntryCount"] for l in rekognition.list_dataset_labels(DatasetArn=test)["DatasetLabelDescriptions"]}
    assert test_labels == {name: 2 for name in ("daisy", "dandelion", "roses", "sunflowers", "tulips")}
    train_refs = {e["source-ref"] for e in all_entries(rekognition, train)}
    test_refs = {e["source-ref"] for e in all_entries(rekognition, test)}
    assert not train_refs & test_refs and len(train_refs | test_refs) == 50
    with pytest.raises(rekognition.exceptions.InvalidParameterException):
        rekognition.distribute_dataset_entries(Datasets=[{"Arn": train}, {"Arn": test}])  # test is no longer empty

    other = rekognition.create_project(ProjectName=project.rsplit("/", 2)[1] + "-copy")["ProjectArn"]
    copy = rekognition.create_dataset(ProjectArn=other, DatasetType="TRAIN", DatasetSource={"DatasetArn": train})["DatasetArn"]
    copied = wait_dataset(rekognition, copy)
    assert copied["Status"] == "CREATE_COMPLETE", copied.get("StatusMessage")
    assert copied["DatasetStats"] == train_after["DatasetStats"]
    assert sorted(map(json.dumps, all_entries(rekognition, copy))) == sorted(map(json.dumps, all_entries(rekognition, train)))


def test_unknown_dataset_and_bad_sources(rekognition, project):
    missing = project.replace(":project/", ":project/").rsplit("/", 1)[0] + "/dataset/train/1"
    with pytest.raises(rekognition.exceptions.ResourceNotFoundException):
        rekognition.describe_dataset(DatasetArn=missing)
    with pytest.raises(rekognition.exceptions.InvalidS3ObjectException):
        rekognition.create_dataset(
            ProjectArn=project, DatasetType="TRAIN",
            DatasetSource={"GroundTruthManifest": {"S3Object": {"Bucket": "nowhere", "Name": "x.manifest"}}},
        )
    with pytest.raises(rekognition.exceptions.ResourceNotFoundException):
        rekognition.create_dataset(ProjectArn=project.rsplit("/", 1)[0] + "/1", DatasetType="TRAIN")
    # nothing was created by the failed calls
    assert rekognition.describe_projects(ProjectNames=[project.rsplit("/", 2)[1]])["ProjectDescriptions"][0]["Datasets"] == []


def test_tags_on_datasets(rekognition, project):
    arn = rekognition.create_dataset(ProjectArn=project, DatasetType="TRAIN", Tags={"origin": "test"})["DatasetArn"]
    wait_dataset(rekognition, arn)

    def tags() -> dict | None:  # the projects service keeps tags: it learns of the dataset from an event
        try:
            return rekognition.list_tags_for_resource(ResourceArn=arn)["Tags"]
        except rekognition.exceptions.ResourceNotFoundException:
            return None

    assert wait_for(tags, 30, "the dataset's tags") == {"origin": "test"}


def test_images_uploaded_under_a_watched_prefix_become_unlabeled_entries(rekognition, objects, unique):
    project = rekognition.create_project(ProjectName=unique)["ProjectArn"]
    train = rekognition.create_dataset(ProjectArn=project, DatasetType="TRAIN")["DatasetArn"]
    wait_dataset(rekognition, train)
    # Uploads to one bucket are handled one at a time, in the order they were stored: once the
    # last one (new.jpg) is an entry, the two before it have been decided, and left out.
    objects.put("customlabels-images", f"{unique}/train/notes.txt", b"not an image")
    objects.put("customlabels-images", f"{unique}/elsewhere/other.jpg", jpeg())
    objects.put("customlabels-images", f"{unique}/train/new.jpg", jpeg())
    entries = wait_for(lambda: all_entries(rekognition, train), 30, "the uploaded image to become an entry")
    assert entries == [{"source-ref": f"s3://customlabels-images/{unique}/train/new.jpg"}]
    assert rekognition.describe_dataset(DatasetArn=train)["DatasetDescription"]["DatasetStats"]["TotalEntries"] == 1

    # a labeled entry is never overwritten by a later upload of the same image
    labeled = classification_line("customlabels-images", f"{unique}/train/new.jpg", "cat")
    rekognition.update_dataset_entries(DatasetArn=train, Changes={"GroundTruth": manifest([labeled])})
    wait_dataset(rekognition, train)
    objects.put("customlabels-images", f"{unique}/train/new.jpg", jpeg())
    objects.put("customlabels-images", f"{unique}/train/marker.jpg", jpeg())
    wait_for(lambda: len(all_entries(rekognition, train)) == 2, 30, "marker.jpg, uploaded after new.jpg, to be an entry")
    by_ref = {e["source-ref"]: e for e in all_entries(rekognition, train)}
    assert by_ref[labeled["source-ref"]] == labeled


async def _publish(events_file: Path, message: Message) -> None:
    """Publish as another process does: straight into the embedded server's event log."""
    bus = SqliteEventBus(events_file)
    await bus.start()
    try:
        await bus.publish([message])
    finally:
        await bus.close()


async def _dead_letter(events_file: Path, topic: str, message_id: str, group: str, timeout: float = 60) -> Message:
    """The message ``message_id`` from ``topic``'s dead-letter topic, as an operator's consumer group reads it."""
    bus = SqliteEventBus(events_file, poll_seconds=0.05)
    await bus.start()
    found: asyncio.Future = asyncio.get_running_loop().create_future()

    async def handler(message: Message) -> None:
        if message.id == message_id and not found.done():
            found.set_result(message)

    try:
        await bus.subscribe(group, [dead_letter_topic(topic)], handler)  # a new group reads from the oldest event
        return await asyncio.wait_for(found, timeout)
    finally:
        await bus.close()


def test_a_poison_event_on_a_service_topic_is_dead_lettered_and_the_next_event_is_still_handled(
        server, rekognition, objects, unique):
    """An ImageUploaded the datasets service can never read goes, after its attempts, to the topic's
    dead-letter topic; the upload published after it on the same topic (and key) still becomes an entry."""
    project = rekognition.create_project(ProjectName=unique)["ProjectArn"]
    train = rekognition.create_dataset(ProjectArn=project, DatasetType="TRAIN")["DatasetArn"]
    wait_dataset(rekognition, train)
    events = server.data_dir / "events.sqlite"
    poison = Message(topic="objects", key="customlabels-images", id=uuid.uuid4().hex, type="ImageUploaded",
                     payload={"bucket": "customlabels-images", "object_key": f"{unique}/train/poison.jpg",
                              "size": "not a number"})
    asyncio.run(_publish(events, poison))
    objects.put("customlabels-images", f"{unique}/train/after.jpg", jpeg())  # the next event on that topic and key

    entries = wait_for(lambda: all_entries(rekognition, train), 60, "the upload after the poison to become an entry")
    assert entries == [{"source-ref": f"s3://customlabels-images/{unique}/train/after.jpg"}]
    dead = asyncio.run(_dead_letter(events, "objects", poison.id, group=f"{unique}-operators"))
    assert (dead.type, dead.payload) == (poison.type, poison.payload)
    assert dead.headers["original-topic"] == "objects" and dead.headers["group"] == "datasets--objects"
    assert int(dead.headers["attempts"]) >= 2 and "size" in dead.headers["error"]  # pydantic names the bad field


def test_uploads_while_a_job_runs_wait_for_it(rekognition, objects, unique, flowers):
    project = rekognition.create_project(ProjectName=unique)["ProjectArn"]
    lines = [classification_line("flowers", key, label) for key, label in flowers]
    train = create_from_manifest(rekognition, objects, project, "flowers", lines)
    objects.put("customlabels-images", f"{unique}/train/during.jpg", jpeg())  # while the import runs
    assert wait_dataset(rekognition, train)["Status"] == "CREATE_COMPLETE"
    refs = wait_for(lambda: {e["source-ref"] for e in all_entries(rekognition, train)} if len(all_entries(rekognition, train)) == 51 else None,
                    30, "the upload that waited for the import to be an entry")
    assert f"s3://customlabels-images/{unique}/train/during.jpg" in refs
    stats = rekognition.describe_dataset(DatasetArn=train)["DatasetDescription"]["DatasetStats"]
    assert (stats["TotalEntries"], stats["LabeledEntries"]) == (51, 50)
