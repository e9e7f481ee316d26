"""What a version trains on: task from the labels, splits, and failures a user can act on."""
from __future__ import annotations

import pytest

from services.training.data import DataProblem, prepare
from tests.support.api import classification_line, detection_line


def cls(i: int, *labels: str) -> dict:
    line = classification_line("b", f"c{i}.jpg", labels[0])
    for n, label in enumerate(labels[1:], 1):
        extra = classification_line("b", f"c{i}.jpg", label, attribute=f"extra{n}")
        line.update({k: v for k, v in extra.items() if k != "source-ref"})
    return line


def det(i: int, boxes=((0, 10, 10, 30, 30),), class_map=None) -> dict:
    return detection_line("b", f"d{i}.jpg", (100, 100), list(boxes), class_map or {"0": "raccoon", "1": "dog"})


def test_single_labels_make_a_multiclass_classifier_tested_on_a_stratified_fifth():
    data = prepare([cls(i, "cat" if i % 4 else "dog") for i in range(40)], None)
    assert (data.task, data.labels, data.auto_split) == ("multiclass", ["cat", "dog"], True)
    assert len(data.training.examples) + len(data.testing.examples) == 40
    test_labels = sorted(e.image_labels[0] for e in data.testing.examples)
    assert test_labels == ["cat"] * 6 + ["dog"] * 2  # 20 % of 30 and of 10
    assert data.summary()["statistics"]["testing"]["valid_json_lines"] == 8


def test_the_split_is_the_same_on_a_retry():
    lines = [cls(i, "cat" if i % 2 else "dog") for i in range(30)]
    first, again = prepare(lines, None, seed=7), prepare(lines, None, seed=7)
    assert [e.key for e in first.testing.examples] == [e.key for e in again.testing.examples]


def test_several_labels_on_an_image_make_it_multilabel():
    data = prepare([cls(i, "cat", "dog") if i % 3 == 0 else cls(i, "cat") for i in range(12)], None)
    assert data.task == "multilabel"


def test_boxes_make_a_detector_and_images_without_boxes_are_negatives():
    lines = [det(i) for i in range(10)] + [det(10, boxes=())]
    data = prepare(lines, None)
    assert (data.task, data.labels) == ("detection", ["raccoon"])
    negatives = [e for e in data.training.examples + data.testing.examples if not e.boxes]
    assert len(negatives) == 1
    assert data.training.examples[0].boxes[0] == ("raccoon", 10.0, 10.0, 30.0, 30.0)


def test_a_mixed_dataset_trains_the_majority_kind_and_reports_the_rest():
    lines = [det(i) for i in range(8)] + [cls(i, "cat") for i in range(3)]
    data = prepare(lines, None)
    assert data.task == "detection"
    training = data.summary()["statistics"]["training"]
    assert training["ignored_json_lines"] == 3 and training["use_case"] == "OBJECT_LOCALIZATION"
    warned = [line for line in data.training.validation_lines("OBJECT_LOCALIZATION")
              if any(w["code"] == "WARNING_IGNORED_FOR_USE_CASE" for w in line.get("warnings", []))]
    assert len(warned) == 3


def test_test_labels_the_model_never_saw_are_left_out_of_the_ground_truth():
    train = [cls(i, "cat" if i % 2 else "dog") for i in range(10)]
    test = [cls(100, "cat"), cls(101, "dog"), cls(102, "cat")] + [cls(103, "bird")]
    data = prepare(train, test)
    assert not data.auto_split
    assert [e.image_labels for e in data.testing.examples] == [("cat",), ("dog",), ("cat",), ()]


@pytest.mark.parametrize("train, test, message", [
    ([cls(i, "cat") for i in range(5)], None, "needs at least 2 labels"),
    ([cls(i, "cat" if i % 2 else "dog") for i in range(6)], [cls(0, "dog")], "in both the training and the testing"),
    ([cls(i, "cat" if i % 2 else "dog") for i in range(6)], [cls(9, "bird"), cls(10, "fish"), cls(11, "cat")],
     "33% of the testing labels"),
    ([{"source-ref": f"s3://b/u{i}.jpg"} for i in range(5)], None, "no usable labeled images"),
    ([cls(i, "cat") for i in range(5)] + [cls(5, "bird")] + [dict(cls(6, "dog"), errors=[{"code": "ERROR_INVALID_IMAGE"}])],
     None, "label 'dog' has no usable training images: its lines (7) are invalid"),
])
def test_data_that_cannot_train_fails_with_a_reason(train, test, message):
    with pytest.raises(DataProblem) as excinfo:
        prepare(train, test)
    assert message in excinfo.value.message
    assert excinfo.value.summary["statistics"]["training"]["total_json_lines"] == len(train)
