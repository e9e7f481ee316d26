"""Unlabeled training images: carried to a classifier's training, never into the test set or the evaluation."""
from __future__ import annotations

from services.training import data as training_data
from services.training.data import prepare
from tests.support.api import classification_line, detection_line


def labeled(i: int, label: str) -> dict:
    return classification_line("b", f"labeled{i}.jpg", label)


def unlabeled(i: int) -> dict:
    return {"source-ref": f"s3://b/unlabeled{i}.jpg"}


def test_unlabeled_lines_are_carried_for_training_and_counted_as_ignored():
    lines = [labeled(i, "cat" if i % 2 else "dog") for i in range(20)] + [unlabeled(i) for i in range(7)]
    data = prepare(lines, None, seed=3)
    assert sorted(e.key for e in data.unlabeled) == sorted(f"unlabeled{i}.jpg" for i in range(7))
    assert all(not e.image_labels and not e.boxes for e in data.unlabeled)
    # the auto-split test set is drawn from labeled images only
    assert not any(e.key.startswith("unlabeled") for e in data.testing.examples)
    assert not any(line["source-ref"].startswith("s3://b/unlabeled") for line in data.testing.lines)
    assert data.summary()["statistics"]["training"]["ignored_json_lines"] == 7
    # each carried example points at its line in the training split
    for example in data.unlabeled:
        assert data.training.lines[example.index]["source-ref"] == f"s3://b/{example.key}"


def test_unlabeled_lines_of_a_test_dataset_are_never_used():
    train = [labeled(i, "cat" if i % 2 else "dog") for i in range(10)] + [unlabeled(0)]
    test = [classification_line("b", f"test{i}.jpg", "cat") for i in range(3)] + [unlabeled(100 + i) for i in range(4)]
    data = prepare(train, test)
    assert [e.key for e in data.unlabeled] == ["unlabeled0.jpg"]
    assert len(data.testing.examples) == 3 and not data.testing.unlabeled


def test_lines_labeled_for_another_use_case_or_checked_empty_are_not_unlabeled():
    box = detection_line("b", "boxes.jpg", (100, 100), [(0, 10, 10, 30, 30)], {"0": "cat"})
    empty = detection_line("b", "checked.jpg", (100, 100), [], {})  # a person looked and found nothing
    data = prepare([labeled(i, "cat" if i % 2 else "dog") for i in range(10)] + [box, empty, unlabeled(1)], None)
    assert data.task == "multiclass"
    assert [e.key for e in data.unlabeled] == ["unlabeled1.jpg"]


def test_a_detector_gets_no_unlabeled_images():
    boxes = [detection_line("b", f"d{i}.jpg", (100, 100), [(0, 10, 10, 30, 30)], {"0": "raccoon"}) for i in range(6)]
    data = prepare(boxes + [unlabeled(i) for i in range(3)], None)
    assert data.task == "detection" and data.unlabeled == []
    assert len(data.training.unlabeled) == 3  # carried by the split, unused by this task


def test_many_unlabeled_images_are_a_seeded_sample(monkeypatch):
    monkeypatch.setattr(training_data, "MAX_UNLABELED", 5)
    lines = [labeled(i, "cat" if i % 2 else "dog") for i in range(10)] + [unlabeled(i) for i in range(40)]
    first, again, other = (prepare(lines, None, seed=s).unlabeled for s in (1, 1, 2))
    assert len(first) == 5 and len({e.key for e in first}) == 5
    assert [e.key for e in first] == [e.key for e in again]
    assert [e.key for e in first] != [e.key for e in other]
