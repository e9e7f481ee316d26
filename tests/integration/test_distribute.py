"""DistributeDatasetEntries through boto3 on a real server: what moves, what stays, and a kill -9 mid-way.

The README's rule: about 20 % of the TRAIN dataset's labeled entries move to
the empty TEST dataset, stratified by label. Each entry counts under its
rarest label, and each such group sends round(20 %) of its entries, at least
one and never all; so a rare label gets a test image too, a label with one
entry keeps it, and unlabeled entries stay where they are. Entries move whole
(the same JSON line), never copied, never lost.
"""
from __future__ import annotations

import json
from collections import Counter

import pytest

from services.datasets.records import JOBS
from tests.support.api import (
    all_entries,
    classification_line,
    create_from_manifest,
    error_code,
    jpeg,
    manifest,
    wait_dataset,
)
from tests.support.peek import documents
from tests.support.server import ServerProcess


def labels_of(entry: dict) -> set[str]:
    """The image-level labels of a stored classification line (one attribute per label)."""
    return {meta["class-name"] for name, meta in entry.items() if name.endswith("-metadata") and "class-name" in meta}


def line_with(bucket: str, key: str, *labels: str) -> dict:
    """A classification line with one attribute per label (several: a multi-label entry)."""
    line: dict = {}
    for n, label in enumerate(labels):
        line.update(classification_line(bucket, key, label, attribute=f"label-{n}"))
    return line or {"source-ref": f"s3://{bucket}/{key}"}


def train_and_test(rekognition, objects, project: str, bucket: str, lines: list[dict]) -> tuple[str, str]:
    """A TRAIN dataset of ``lines`` (their images stored) and an empty TEST dataset: their ARNs."""
    objects.put_many(bucket, [(line["source-ref"].split("/", 3)[3], jpeg()) for line in lines])
    train = create_from_manifest(rekognition, objects, project, bucket, lines)
    assert wait_dataset(rekognition, train)["Status"] == "CREATE_COMPLETE"
    test = rekognition.create_dataset(ProjectArn=project, DatasetType="TEST")["DatasetArn"]
    wait_dataset(rekognition, test)
    return train, test


def test_imbalanced_rare_and_multi_label_entries_are_stratified_and_unlabeled_ones_stay(rekognition, objects, unique):
    project = rekognition.create_project(ProjectName=unique)["ProjectArn"]
    groups = {  # an entry's labels -> how many such entries; the group an entry counts under is its rarest label
        ("common",): 30,
        ("uncommon",): 6,
        ("common", "uncommon"): 4,  # multi-label: counts under "uncommon" (10 entries have it, 36 "common")
        ("common", "rare"): 2,      # multi-label: counts under "rare" (2 entries)
        ("lonely",): 1,             # a group of one: it stays in training
        (): 3,                      # unlabeled: never distributed
    }
    lines = [line_with(unique, f"{'-'.join(labels) or 'unlabeled'}/{i}.jpg", *labels)
             for labels, count in groups.items() for i in range(count)]
    train, test = train_and_test(rekognition, objects, project, unique, lines)

    rekognition.distribute_dataset_entries(Datasets=[{"Arn": train}, {"Arn": test}])
    train_after, test_after = wait_dataset(rekognition, train), wait_dataset(rekognition, test)
    assert (train_after["Status"], test_after["Status"]) == ("UPDATE_COMPLETE", "UPDATE_COMPLETE")

    frequency = Counter(label for labels, count in groups.items() for label in labels for _ in range(count))
    rarest = lambda entry: min(labels_of(entry), key=lambda label: (frequency[label], label))
    moved = all_entries(rekognition, test)
    # per group round(20 %), at least one, never all: common 30 -> 6, uncommon 10 -> 2, rare 2 -> 1, lonely 1 -> 0
    assert Counter(rarest(entry) for entry in moved) == {"common": 6, "uncommon": 2, "rare": 1}
    kept = all_entries(rekognition, train)
    assert sum(1 for entry in kept if not labels_of(entry)) == 3 and all(labels_of(entry) for entry in moved)
    # moved whole: every line is in exactly one dataset, unchanged
    as_stored = lambda entries: sorted(json.dumps(entry, sort_keys=True) for entry in entries)
    assert as_stored(kept + moved) == as_stored(lines)
    assert {e["source-ref"] for e in kept}.isdisjoint(e["source-ref"] for e in moved)
    assert train_after["DatasetStats"] == {"LabeledEntries": 34, "TotalEntries": 37, "TotalLabels": 4, "ErrorEntries": 0}
    assert test_after["DatasetStats"] == {"LabeledEntries": 9, "TotalEntries": 9,
                                          "TotalLabels": len({label for e in moved for label in labels_of(e)}),
                                          "ErrorEntries": 0}
    counts = {l["LabelName"]: l["LabelStats"]["EntryCount"]
              for l in rekognition.list_dataset_labels(DatasetArn=test)["DatasetLabelDescriptions"]}
    assert counts == Counter(label for entry in moved for label in labels_of(entry))
    assert "lonely" not in counts and counts["rare"] == 1


def test_too_few_labeled_entries_fail_the_distribution_and_move_nothing(rekognition, objects, unique):
    project = rekognition.create_project(ProjectName=unique)["ProjectArn"]
    lines = [line_with(unique, "only.jpg", "cat"), line_with(unique, "u1.jpg"), line_with(unique, "u2.jpg")]
    train, test = train_and_test(rekognition, objects, project, unique, lines)
    before = all_entries(rekognition, train)

    rekognition.distribute_dataset_entries(Datasets=[{"Arn": train}, {"Arn": test}])
    for arn in (train, test):
        description = wait_dataset(rekognition, arn)
        assert (description["Status"], description["StatusMessageCode"]) == ("UPDATE_FAILED", "CLIENT_ERROR")
        assert description["StatusMessage"] == ("ERROR_INSUFFICIENT_IMAGES_PER_LABEL_FOR_DISTRIBUTE: "
                                                "The training dataset needs at least 2 labeled entries to distribute.")
    assert all_entries(rekognition, train) == before and all_entries(rekognition, test) == []
    # and a distribution that cannot start is refused at once: the test dataset must be empty, both must be given
    with pytest.raises(rekognition.exceptions.InvalidParameterException) as refused:
        rekognition.distribute_dataset_entries(Datasets=[{"Arn": train}, {"Arn": train}])
    assert "TRAIN and the TEST dataset of one project" in refused.value.response["Error"]["Message"]
    assert error_code(refused) == "InvalidParameterException"


ENTRIES = 10_000  # 2,000 to move: four commits of 500, so a kill lands between two of them


def test_kill_9_mid_distribute_moves_every_entry_once(tmp_path):
    server = ServerProcess(tmp_path / "data").start()
    try:
        client, objects = server.rekognition(), server.objects()
        project = client.create_project(ProjectName="spread")["ProjectArn"]
        lines = [line_with("spread", f"img/{i:05d}.jpg", f"label{i % 10}") for i in range(ENTRIES)]
        train, test = train_and_test(client, objects, project, "spread", lines)
        distribution = lambda: [j for j in documents(server.data_dir, f"datasets.{JOBS}") if j.get("test_dataset_arn") == test]
        client.distribute_dataset_entries(Datasets=[{"Arn": train}, {"Arn": test}])
        server.kill_when(lambda: any(job.get("checkpoint", 0) > 0 for job in distribution()), "the first batch of entries to move")

        # Where the dead process left the job: some entries moved, not all.
        (job,) = distribution()
        assert job["phase"] == "move" and 0 < job["checkpoint"] < len(job["moves"]) == ENTRIES // 5, job["checkpoint"]

        server.start()
        client = server.rekognition()
        train_after, test_after = wait_dataset(client, train, timeout=120), wait_dataset(client, test, timeout=120)
        assert (train_after["Status"], test_after["Status"]) == ("UPDATE_COMPLETE", "UPDATE_COMPLETE")
        kept, moved = all_entries(client, train), all_entries(client, test)
        assert (len(kept), len(moved)) == (ENTRIES - ENTRIES // 5, ENTRIES // 5)
        as_stored = lambda entries: sorted(json.dumps(entry, sort_keys=True) for entry in entries)
        assert as_stored(kept + moved) == as_stored(lines)  # each entry in one dataset, once, unchanged
        assert Counter(label for e in moved for label in labels_of(e)) == {f"label{i}": 200 for i in range(10)}
        assert test_after["DatasetStats"]["TotalEntries"] == ENTRIES // 5
        assert train_after["DatasetStats"]["TotalEntries"] == ENTRIES - ENTRIES // 5
    finally:
        server.stop()
