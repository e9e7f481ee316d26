"""customlabels.manifests: Ground Truth manifest lines validated as the reference does."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from customlabels.manifests import (
    MAX_LINE_CHARS,
    MAX_MANIFEST_BYTES,
    Entry,
    ImageCheck,
    ParsedLine,
    RejectedLine,
    bucket_problem,
    codes as C,
    dedupe_by_source_ref,
    entry_line_json,
    first_error,
    invalid_rows_problem,
    iter_manifest_lines,
    label_count_problem,
    line_codes,
    line_count_problem,
    line_is_invalid,
    line_problems,
    manifest_problems,
    manifest_size_problem,
    parse_line,
    summarize,
    too_many_invalid,
    validate_line,
)

MANIFESTS = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "groundtruth-manifests"
SOURCE_REF = "s3://bucket/images/a.jpg"


# --------------------------------------------------------------------------
# Builders for hand-written lines
# --------------------------------------------------------------------------

def cls(name: str = "label", class_name: str = "cat", value=0, **meta) -> dict:
    """An image-level (classification) label attribute and its metadata."""
    metadata = {
        "class-name": class_name, "confidence": 0.9, "type": "groundtruth/image-classification",
        "job-name": "labeling-job/x", "human-annotated": "yes", "creation-date": "2020-04-15T20:17:23.433061",
    }
    metadata.update(meta)
    return {name: value, f"{name}-metadata": metadata}


def od(boxes=((10, 20, 100, 50, 0),), name: str = "bb", size=(640, 480), class_map=None, objects=None,
       **meta) -> dict:
    """An object-detection label attribute; boxes are (left, top, width, height, class_id)."""
    annotations = [{"class_id": cid, "left": l, "top": t, "width": w, "height": h} for l, t, w, h, cid in boxes]
    metadata = {
        "objects": objects if objects is not None else [{"confidence": 1} for _ in boxes],
        "class-map": class_map if class_map is not None else {"0": "Echo", "1": "Echo Dot"},
        "type": "groundtruth/object-detection", "human-annotated": "yes",
        "creation-date": "2013-11-18T02:53:27", "job-name": "my job",
    }
    metadata.update(meta)
    attribute = {"image_size": [{"width": size[0], "height": size[1], "depth": 3}], "annotations": annotations}
    return {name: attribute, f"{name}-metadata": metadata}


def multilabel(ids, name: str = "ml", class_map=None, **meta) -> dict:
    metadata = {
        "job-name": "labeling-job/ml", "class-map": class_map if class_map is not None else {"0": "dog", "1": "cat", "2": "ball"},
        "human-annotated": "yes", "creation-date": "2021-01-01T00:00:00", "confidence-map": {"0": 0.9},
        "type": "groundtruth/image-classification-multilabel",
    }
    metadata.update(meta)
    return {name: ids, f"{name}-metadata": metadata}


def line(*parts: dict, source_ref: str = SOURCE_REF) -> dict:
    data = {"source-ref": source_ref}
    for part in parts:
        data.update(part)
    return data


def parsed(data: dict | str, number: int = 1) -> ParsedLine:
    result = parse_line(data if isinstance(data, str) else json.dumps(data), number)
    assert isinstance(result, ParsedLine), result
    return result


def check(data: dict, image: ImageCheck | None = None) -> Entry:
    return validate_line(parsed(data), image)


def located(entry: Entry) -> list[tuple[tuple, str]]:
    return [(where, problem["code"]) for where, problem in line_problems(entry.line)]


# --------------------------------------------------------------------------
# Terminal line errors
# --------------------------------------------------------------------------

@pytest.mark.parametrize("raw, detail", [
    ('{"source-ref": "s3://b/k"', "unterminated"),
    ("[1, 2]", "not an object"),
    ('"s3://b/k"', "a string"),
    ("42", "a number"),
    ("null", "null"),
    ("", "blank"),
    ("   \t ", "whitespace only"),
    ('{"source-ref": "s3://b/k", "x": NaN}', "NaN is not JSON"),
    ('{"source-ref": "s3://b/k", "x": Infinity}', "Infinity is not JSON"),
    (b'{"source-ref": "s3://b/\xff"}', "not UTF-8"),
])
def test_invalid_json_lines_are_rejected(raw, detail):
    result = parse_line(raw, 7)
    assert isinstance(result, RejectedLine), detail
    assert (result.line_number, result.code) == (7, C.ERROR_INVALID_JSON_LINE)
    assert result.message.startswith("The JSON Line has an invalid format.")


def test_line_length_limit_is_100000_characters():
    def padded(length: int) -> str:
        head = '{"source-ref": "s3://b/k.jpg", "pad": "'
        return head + "x" * (length - len(head) - 2) + '"}'

    assert isinstance(parse_line(padded(MAX_LINE_CHARS), 1), ParsedLine)
    too_long = parse_line(padded(MAX_LINE_CHARS + 1), 2)
    assert isinstance(too_long, RejectedLine) and too_long.code == C.ERROR_INVALID_JSON_LINE
    assert "100000" in too_long.message


def test_missing_source_ref_is_rejected():
    result = parse_line(json.dumps(cls()), 3)
    assert result == RejectedLine(3, C.ERROR_MISSING_SOURCE_REF, "The source-ref key is missing.")


@pytest.mark.parametrize("source_ref", [
    "S3://bucket/key.jpg", "https://bucket/key.jpg", "s3:/bucket/key.jpg", "s3://bucket", "s3://bucket/",
    "s3:///key.jpg", " s3://bucket/key.jpg", "bucket/key.jpg", "", 5, None, ["s3://bucket/key.jpg"],
])
def test_invalid_source_ref_format_is_rejected(source_ref):
    result = parse_line(json.dumps({"source-ref": source_ref}), 1)
    assert isinstance(result, RejectedLine)
    assert result.code == C.ERROR_INVALID_SOURCE_REF_FORMAT
    assert result.message.startswith("The format of the source-ref value is invalid.")


def test_parsed_line_splits_bucket_and_key_and_accepts_bytes_with_crlf():
    result = parse_line(b'\xef\xbb\xbf{"source-ref": "s3://my-bucket/a/b c.jpg"}\r\n', 9)
    assert result == ParsedLine(9, "s3://my-bucket/a/b c.jpg", "my-bucket", "a/b c.jpg",
                                {"source-ref": "s3://my-bucket/a/b c.jpg"})


# --------------------------------------------------------------------------
# Valid lines
# --------------------------------------------------------------------------

def test_line_with_only_source_ref_is_a_valid_unlabeled_entry():
    entry = check(line())
    assert entry == Entry(SOURCE_REF, {"source-ref": SOURCE_REF}, (), {}, labeled=False, has_errors=False,
                          task=None, invalid=False)


def test_image_level_single_label():
    entry = check(line(cls(class_name="Sunrise")))
    assert (entry.labels, entry.task, entry.labeled, entry.has_errors) == (("Sunrise",), "classification", True, False)
    assert entry.bounding_boxes == {}
    assert entry.line == line(cls(class_name="Sunrise"))  # nothing embedded


def test_image_level_multi_label_with_several_attribute_pairs():
    entry = check(line(cls("sport0", "football"), cls("sport1", "ball", value=1), cls("sport2", "ball", value=2)))
    assert entry.labels == ("ball", "football")
    assert entry.task == "classification" and not entry.has_errors


def test_classification_confidence_may_be_absent_as_in_real_sagemaker_output():
    data = line(cls())
    del data["label-metadata"]["confidence"]
    entry = check(data)
    assert entry.labels == ("cat",) and not entry.has_errors


def test_sagemaker_multilabel_type_gives_one_label_per_class():
    entry = check(line(multilabel([2, 0])))
    assert entry.labels == ("ball", "dog")
    assert (entry.task, entry.labeled, entry.has_errors) == ("classification", True, False)


def test_multilabel_with_an_unknown_class_id_keeps_the_known_ones():
    entry = check(line(multilabel([0, 5])))
    assert entry.labels == ("dog",)
    assert located(entry) == [(("ml-metadata",), C.ERROR_MISSING_CLASS_MAP_ID)]
    assert not entry.invalid


def test_multilabel_with_no_class_is_annotated_but_has_no_label():
    entry = check(line(multilabel([])))
    assert located(entry) == [((), C.WARNING_NO_ANNOTATIONS), (("ml-metadata",), C.WARNING_NO_ATTRIBUTE_ANNOTATIONS)]
    assert (entry.labels, entry.labeled, entry.has_errors, entry.invalid) == ((), True, False, False)


def test_multilabel_that_is_not_a_list_of_ids():
    entry = check(line(multilabel(["dog"]), cls()))
    assert located(entry) == [((), C.ERROR_INVALID_LABEL_ATTRIBUTE_FORMAT)]
    assert entry.line["errors"][0]["message"].startswith("The format of the label attribute ml is invalid.")


def test_bounding_boxes():
    entry = check(line(od([(399, 251, 155, 101, 1), (86, 65, 220, 334, 0), (1, 1, 5, 5, 0)])))
    assert entry.labels == ("Echo", "Echo Dot")
    assert entry.bounding_boxes == {"Echo": 2, "Echo Dot": 1}
    assert (entry.task, entry.labeled, entry.has_errors) == ("detection", True, False)


def test_classification_and_detection_on_one_line_is_mixed():
    entry = check(line(cls(class_name="kitchen"), od()))
    assert entry.task == "mixed"
    assert entry.labels == ("Echo", "kitchen") and entry.bounding_boxes == {"Echo": 1}


def test_fractional_coordinates_and_float_noise_at_the_frame_edge():
    # 404.6 + 95.4 == 500.00000000000006 in floating point: still inside a 500 px frame.
    entry = check(line(od([(404.6, 256.2, 95.4, 86.80000000000001, 0), (177, 0.5, 95.39999999999998, 1.25, 0)],
                          size=(500, 500))))
    assert entry.bounding_boxes == {"Echo": 2} and not entry.has_errors
    off = check(line(od([(404.6, 0, 95.5, 10, 0)], size=(500, 500)), cls()))
    assert located(off) == [(("bb",), C.ERROR_NO_VALID_ANNOTATIONS), (("bb", 0), C.ERROR_INVALID_BOUNDING_BOX)]


def test_empty_annotations_give_the_no_annotations_warnings():
    entry = check(line(od([], class_map={}, objects=[])))
    assert located(entry) == [((), C.WARNING_NO_ANNOTATIONS), (("bb",), C.WARNING_NO_ATTRIBUTE_ANNOTATIONS)]
    assert entry.line["warnings"] == [{"code": "WARNING_NO_ANNOTATIONS", "message": "No annotations were found."}]
    assert (entry.labels, entry.bounding_boxes, entry.labeled, entry.has_errors, entry.task, entry.invalid) == (
        (), {}, True, False, "detection", False)


def test_empty_annotations_beside_a_label_warn_only_on_the_attribute():
    entry = check(line(od([], class_map={}, objects=[]), cls()))
    assert located(entry) == [(("bb",), C.WARNING_NO_ATTRIBUTE_ANNOTATIONS)]
    assert entry.labels == ("cat",) and entry.task == "mixed"


# --------------------------------------------------------------------------
# Non-terminal errors: each hand-written line triggers exactly its code
# --------------------------------------------------------------------------

def test_no_label_attributes_attribute_without_metadata():
    entry = check(line(cls(), {"stray": 1}))
    assert located(entry) == [((), C.ERROR_NO_LABEL_ATTRIBUTES)]
    assert entry.line["errors"][0]["message"].startswith("No label attributes found.")
    assert entry.labels == ("cat",) and entry.has_errors and not entry.invalid


def test_no_label_attributes_metadata_without_attribute_leaves_nothing_valid():
    data = line(cls())
    del data["label"]
    entry = check(data)
    assert located(entry) == [((), C.ERROR_NO_LABEL_ATTRIBUTES), ((), C.ERROR_NO_VALID_LABEL_ATTRIBUTES)]
    assert entry.invalid and not entry.labeled and entry.labels == ()


def test_invalid_label_attribute_format_of_an_image_level_attribute():
    entry = check(line(cls(), cls("other", "dog", value="zero")))
    assert located(entry) == [((), C.ERROR_INVALID_LABEL_ATTRIBUTE_FORMAT)]  # an int can't hold errors
    assert entry.labels == ("cat",)


@pytest.mark.parametrize("value", ["zero", True, 1.0, None, [0]])
def test_image_level_attribute_must_be_an_integer(value):
    entry = check(line(cls(), cls("other", "dog", value=value)))
    assert located(entry) == [((), C.ERROR_INVALID_LABEL_ATTRIBUTE_FORMAT)]


@pytest.mark.parametrize("image_size", [
    None, [], [{"width": 640, "height": 480}], [{"width": 0, "height": 480, "depth": 3}],
    [{"width": 640, "height": "480", "depth": 3}], [{"width": 640, "height": 480, "depth": 3}] * 2,
])
def test_detection_image_size_must_be_one_complete_size(image_size):
    data = line(od(), cls())
    data["bb"]["image_size"] = image_size
    assert located(check(data)) == [(("bb",), C.ERROR_INVALID_LABEL_ATTRIBUTE_FORMAT)]


def test_invalid_label_attribute_format_of_a_detection_attribute():
    data = line(od(), cls())
    del data["bb"]["image_size"]
    entry = check(data)
    assert located(entry) == [(("bb",), C.ERROR_INVALID_LABEL_ATTRIBUTE_FORMAT)]
    assert entry.line["bb"]["errors"][0]["message"].startswith("The format of the label attribute bb is invalid.")
    assert entry.labels == ("cat",)


def test_invalid_label_attribute_format_of_one_annotation():
    data = line(od([(1, 1, 50, 50, 0), (5, 5, 50, 50, 1)]))
    data["bb"]["annotations"][1]["left"] = "5"
    entry = check(data)
    assert located(entry) == [(("bb", 1), C.ERROR_INVALID_LABEL_ATTRIBUTE_FORMAT)]
    assert entry.bounding_boxes == {"Echo": 1}


@pytest.mark.parametrize("change", [
    {"human-annotated": "maybe"}, {"human-annotated": True}, {"confidence": 1.5}, {"confidence": "high"},
    {"confidence": True}, {"creation-date": ""}, {"creation-date": None}, {"class-name": None}, {"class-name": 3},
])
def test_invalid_label_attribute_metadata_format(change):
    entry = check(line(cls(), cls("other", "dog", **change)))
    assert located(entry) == [(("other-metadata",), C.ERROR_INVALID_LABEL_ATTRIBUTE_METADATA_FORMAT)]
    assert entry.labels == ("cat",)


def test_invalid_metadata_format_missing_fields_and_non_object():
    data = line(cls(), cls("other", "dog"), cls("third", "cow"))
    del data["other-metadata"]["creation-date"]
    data["third-metadata"] = "not an object"
    entry = check(data)
    assert located(entry) == [((), C.ERROR_INVALID_LABEL_ATTRIBUTE_METADATA_FORMAT),
                              (("other-metadata",), C.ERROR_INVALID_LABEL_ATTRIBUTE_METADATA_FORMAT)]
    assert "creation-date" in entry.line["other-metadata"]["errors"][0]["message"]


def test_detection_metadata_without_class_map_or_objects():
    data = line(od(), od(name="b2"), cls())
    del data["bb-metadata"]["class-map"]
    data["b2-metadata"]["objects"] = {"confidence": 1}
    entry = check(data)
    assert located(entry) == [(("bb-metadata",), C.ERROR_INVALID_LABEL_ATTRIBUTE_METADATA_FORMAT),
                              (("b2-metadata",), C.ERROR_INVALID_LABEL_ATTRIBUTE_METADATA_FORMAT)]
    assert entry.labels == ("cat",)


def test_no_valid_label_attributes():
    entry = check(line(cls(class_name="")))
    assert located(entry) == [((), C.ERROR_NO_VALID_LABEL_ATTRIBUTES),
                              (("label-metadata",), C.ERROR_INVALID_LABEL_NAME_LENGTH)]
    assert entry.line["errors"] == [{"code": "ERROR_NO_VALID_LABEL_ATTRIBUTES", "message": "No valid label attributes found."}]
    assert entry.invalid and entry.has_errors and not entry.labeled and entry.task is None


@pytest.mark.parametrize("use_case", ["groundtruth/wrongtype", "groundtruth/semantic-segmentation", ""])
def test_unsupported_use_case_type(use_case):
    entry = check(line(cls(), od(name="BB", type=use_case)))
    assert located(entry) == [(("BB-metadata",), C.ERROR_UNSUPPORTED_USE_CASE_TYPE)]
    assert entry.line["BB-metadata"]["errors"][0]["message"] == (
        "The use case type of the BB-metadata label attribute metadata is unsupported. Check the type field.")
    assert entry.labels == ("cat",)


def test_unsupported_use_case_type_alone_leaves_no_valid_attribute():
    entry = check(line(od(name="BB", type="groundtruth/wrongtype")))
    assert located(entry) == [((), C.ERROR_NO_VALID_LABEL_ATTRIBUTES), (("BB-metadata",), C.ERROR_UNSUPPORTED_USE_CASE_TYPE)]
    assert entry.invalid


@pytest.mark.parametrize("length, ok", [(0, False), (1, True), (256, True), (257, False)])
def test_label_name_length(length, ok):
    entry = check(line(cls(), cls("other", "x" * length)))
    assert located(entry) == ([] if ok else [(("other-metadata",), C.ERROR_INVALID_LABEL_NAME_LENGTH)])
    assert len(entry.labels) == (2 if ok else 1)


def test_label_name_length_of_a_box_class():
    entry = check(line(od([(1, 1, 50, 50, 0), (1, 1, 50, 50, 1)], class_map={"0": "ok", "1": "y" * 257})))
    assert located(entry) == [(("bb", 1), C.ERROR_INVALID_LABEL_NAME_LENGTH)]
    assert entry.bounding_boxes == {"ok": 1}


@pytest.mark.parametrize("value", ["1e999", "-1e999", "1" + "0" * 400, "true", "null", '"5"'])
def test_box_coordinates_must_be_finite_json_numbers(value):
    raw = json.dumps(line(od([(1, 1, 50, 50, 0), (5, 5, 50, 50, 1)]))).replace('"left": 5', f'"left": {value}')
    entry = validate_line(parsed(raw), None)
    assert located(entry) == [(("bb", 1), C.ERROR_INVALID_LABEL_ATTRIBUTE_FORMAT)]


@pytest.mark.parametrize("box", [
    (-1, 10, 50, 50, 0), (10, -0.5, 50, 50, 0), (10, 10, -50, 50, 0),   # negative values
    (600, 10, 41, 50, 0), (10, 400, 50, 81, 0), (640, 0, 5, 5, 0),      # off a 640x480 frame
])
def test_invalid_bounding_box(box):
    entry = check(line(od([box, (0, 0, 640, 480, 1)])))
    assert located(entry) == [(("bb", 0), C.ERROR_INVALID_BOUNDING_BOX)]
    assert entry.bounding_boxes == {"Echo Dot": 1}
    assert entry.line["bb"]["annotations"][0]["errors"][0]["message"].startswith("The bounding box has off frame values.")


def test_bounding_box_checked_against_the_real_image_size_when_known():
    data = line(od([(500, 300, 100, 100, 0)], size=(640, 480)))
    assert not check(data).has_errors
    entry = check(data, ImageCheck(width=320, height=240))
    assert located(entry) == [((), C.ERROR_NO_VALID_LABEL_ATTRIBUTES), (("bb",), C.ERROR_NO_VALID_ANNOTATIONS),
                              (("bb", 0), C.ERROR_INVALID_BOUNDING_BOX)]
    # A bigger real image makes a box that is off the declared frame fine.
    assert not check(line(od([(700, 10, 100, 100, 0)])), ImageCheck(width=1000, height=800)).has_errors


@pytest.mark.parametrize("size, box, ok", [
    ((640, 480), (0, 0, 1, 50, 0), False),        # a side of exactly 1 px is not over 1 px
    ((640, 480), (0, 0, 50, 0, 0), False),
    ((640, 480), (0, 0, 1.01, 1.01, 0), True),
    ((1280, 720), (0, 0, 1.01, 5, 0), True),      # 1280 px is not scaled
    ((2560, 1440), (0, 0, 2, 50, 0), False),      # scaled by 1/2: 1 px
    ((2560, 1440), (0, 0, 2.1, 50, 0), True),     # scaled by 1/2: 1.05 px
    ((1000, 3840), (0, 0, 50, 3, 0), False),      # the longer side is the height: scaled by 1/3
    ((1000, 3840), (0, 0, 50, 3.3, 0), True),
])
def test_bounding_box_too_small_after_scaling_to_1280(size, box, ok):
    entry = check(line(od([box, (0, 0, 100, 100, 1)], size=size)))
    assert located(entry) == ([] if ok else [(("bb", 0), C.ERROR_BOUNDING_BOX_TOO_SMALL)])


def test_too_small_uses_the_real_image_size_for_scaling():
    data = line(od([(0, 0, 2, 50, 0), (0, 0, 100, 100, 1)], size=(640, 480)))
    assert not check(data).has_errors
    entry = check(data, ImageCheck(width=2560, height=1920))
    assert located(entry) == [(("bb", 0), C.ERROR_BOUNDING_BOX_TOO_SMALL)]
    assert "1280" in entry.line["bb"]["annotations"][0]["errors"][0]["message"]


def test_no_valid_annotations():
    entry = check(line(od([(-1, 0, 10, 10, 0), (0, 0, 10, 10, 9)]), cls()))
    assert located(entry) == [(("bb",), C.ERROR_NO_VALID_ANNOTATIONS),
                              (("bb", 0), C.ERROR_INVALID_BOUNDING_BOX), (("bb", 1), C.ERROR_MISSING_CLASS_MAP_ID)]
    assert entry.labels == ("cat",) and entry.bounding_boxes == {}


def test_missing_bounding_box_confidence():
    short = check(line(od([(1, 1, 50, 50, 0), (1, 1, 50, 50, 1)], objects=[{"confidence": 0}])))
    assert located(short) == [(("bb-metadata",), C.ERROR_MISSING_BOUNDING_BOX_CONFIDENCE)]
    assert short.bounding_boxes == {"Echo": 1}
    without = check(line(od([(1, 1, 50, 50, 0), (1, 1, 50, 50, 1)], objects=[{}, {"confidence": 1}])))
    assert located(without) == [(("bb-metadata",), C.ERROR_MISSING_BOUNDING_BOX_CONFIDENCE)]
    assert without.bounding_boxes == {"Echo Dot": 1}


def test_missing_class_map_id():
    entry = check(line(od([(1, 1, 50, 50, 0), (1, 1, 50, 50, 7)])))
    assert located(entry) == [(("bb", 1), C.ERROR_MISSING_CLASS_MAP_ID)]
    assert entry.line["bb"]["annotations"][1]["errors"][0]["message"].startswith(
        "One of more class ids is missing from the class map.")
    assert entry.bounding_boxes == {"Echo": 1}


@pytest.mark.parametrize("count, ok", [(50, True), (51, False)])
def test_too_many_bounding_boxes(count, ok):
    entry = check(line(od([(i, i, 20, 20, 0) for i in range(count)])))
    if ok:
        assert not entry.has_errors and entry.bounding_boxes == {"Echo": 50}
    else:
        assert located(entry) == [((), C.ERROR_TOO_MANY_BOUNDING_BOXES)]
        assert entry.invalid and entry.labeled and entry.labels == () and entry.bounding_boxes == {}


def test_too_many_bounding_boxes_counts_every_detection_attribute():
    entry = check(line(od([(i, i, 20, 20, 0) for i in range(30)]), od([(i, i, 20, 20, 1) for i in range(21)], name="b2")))
    assert located(entry) == [((), C.ERROR_TOO_MANY_BOUNDING_BOXES)]


@pytest.mark.parametrize("count, ok", [(50, True), (51, False)])
def test_too_many_labels_in_one_image(count, ok):
    entry = check(line(*(cls(f"a{i}", f"label{i}") for i in range(count))))
    if ok:
        assert len(entry.labels) == 50 and not entry.has_errors
    else:
        assert located(entry) == [((), C.ERROR_TOO_MANY_LABELS_IN_IMAGE)]
        assert entry.invalid and entry.labels == ()


@pytest.mark.parametrize("code", [C.ERROR_INVALID_IMAGE, C.ERROR_INVALID_IMAGE_DIMENSION])
def test_image_problems_reported_by_the_caller(code):
    entry = check(line(od()), ImageCheck(error_code=code))
    assert located(entry) == [((), code)]
    assert entry.line["errors"] == [{"code": code, "message": C.MESSAGES[code]}]
    assert entry.invalid and entry.labeled and entry.labels == () and entry.bounding_boxes == {}
    custom = check(line(cls()), ImageCheck(error_code=code, error_message="The image is 5000x5000 px."))
    assert custom.line["errors"] == [{"code": code, "message": "The image is 5000x5000 px."}]


def test_every_code_has_a_message():
    constants = [v for k, v in vars(C).items() if k.startswith(("ERROR_", "WARNING_"))]
    assert len(constants) > 30
    assert set(constants) == set(C.MESSAGES)


# --------------------------------------------------------------------------
# Stripping, re-import and serialization
# --------------------------------------------------------------------------

def test_old_errors_and_warnings_are_stripped_everywhere():
    data = line(od([(1, 1, 50, 50, 0)]), cls())
    old = [{"code": "ERROR_X", "message": "old"}]
    data["errors"] = data["warnings"] = data["cl-errors"] = old
    data["cl-metadata"] = {"is_labeled": True}
    for key in ("bb", "bb-metadata", "label-metadata"):
        data[key]["errors"] = data[key]["warnings"] = data[key]["cl-errors"] = old
    data["bb"]["annotations"][0]["errors"] = old
    result = parsed(data)
    assert result.data == line(od([(1, 1, 50, 50, 0)]), cls())
    entry = validate_line(result, None)
    assert not entry.has_errors and entry.line == result.data


def test_export_then_reimport_gives_the_same_line():
    data = line(
        od([(-1, 0, 10, 10, 0), (0, 0, 1, 1, 1), (5, 5, 20, 20, 1), (0, 0, 10, 10, 4)], objects=[{"confidence": 1}] * 3),
        od([], name="empty", class_map={}, objects=[]),
        cls("bad", class_name="x" * 300),
        {"stray": {"a": 1}},
    )
    first = check(data)
    assert first.bounding_boxes == {"Echo Dot": 1}  # box 3: unknown class and no confidence
    assert located(first) == [
        ((), C.ERROR_NO_LABEL_ATTRIBUTES),
        (("bb", 0), C.ERROR_INVALID_BOUNDING_BOX), (("bb", 1), C.ERROR_BOUNDING_BOX_TOO_SMALL),
        (("bb", 3), C.ERROR_MISSING_CLASS_MAP_ID), (("bb-metadata",), C.ERROR_MISSING_BOUNDING_BOX_CONFIDENCE),
        (("empty",), C.WARNING_NO_ATTRIBUTE_ANNOTATIONS), (("bad-metadata",), C.ERROR_INVALID_LABEL_NAME_LENGTH),
    ]
    exported = entry_line_json(first)
    again = validate_line(parsed(exported, 2), None)
    assert again.line == first.line
    assert entry_line_json(again) == exported
    assert again == first


def test_validation_never_changes_the_parsed_line():
    result = parsed(line(od([(-1, 0, 10, 10, 0), (1, 1, 10, 10, 0)])))
    before = json.dumps(result.data)
    bad_image = validate_line(result, ImageCheck(error_code=C.ERROR_INVALID_IMAGE))
    good = validate_line(result, None)
    assert json.dumps(result.data) == before
    assert C.ERROR_INVALID_IMAGE in line_codes(bad_image.line) and C.ERROR_INVALID_IMAGE not in line_codes(good.line)


def test_entry_line_json_is_compact_and_keeps_key_order():
    data = {"source-ref": "s3://b/ü.jpg", "z": 0, "z-metadata": cls(class_name="étoile")["label-metadata"]}
    entry = check(data)
    text = entry_line_json(entry)
    assert text.startswith('{"source-ref":"s3://b/ü.jpg","z":0,"z-metadata":{"class-name":"étoile",')
    assert ": " not in text and ", " not in text
    assert json.loads(text) == data


_JUNK = [None, True, 0, -1, 1.5, 10 ** 400, "", "x", [], [1], {}, {"a": 1}, [{"width": 1}]]


def _mutate(value, rng: random.Random):
    """A copy of a JSON value with one randomly chosen node replaced by junk."""
    if isinstance(value, dict) and value and rng.random() < 0.8:
        key = rng.choice(list(value))
        return {**value, key: _mutate(value[key], rng)}
    if isinstance(value, list) and value and rng.random() < 0.8:
        index = rng.randrange(len(value))
        return [*value[:index], _mutate(value[index], rng), *value[index + 1:]]
    return rng.choice(_JUNK)


def test_damaged_lines_never_crash_and_reimport_unchanged():
    rng = random.Random(1234)
    samples = [line(od([(1, 1, 50, 50, 0), (3, 3, 40, 40, 1)]), cls()), line(multilabel([0, 1])),
               line(od([], class_map={}, objects=[]))]
    for _ in range(3000):
        data = _mutate(rng.choice(samples), rng)
        result = parse_line(json.dumps(data), 1)
        if isinstance(result, RejectedLine):
            continue
        image = rng.choice([None, ImageCheck(width=30, height=30), ImageCheck(error_code=C.ERROR_INVALID_IMAGE)])
        entry = validate_line(result, image)
        assert entry.has_errors == any(code.startswith("ERROR_") for code in line_codes(entry.line))
        assert validate_line(parsed(entry_line_json(entry)), image) == entry


# --------------------------------------------------------------------------
# Manifest-level rules
# --------------------------------------------------------------------------

def test_first_error_and_line_is_invalid_for_per_line_reports():
    box_only = check(line(od([(-1, 0, 10, 10, 0), (1, 1, 10, 10, 0)])))
    assert first_error(box_only) == (C.ERROR_INVALID_BOUNDING_BOX,
                                     "The bounding box has off frame values. The box has negative values.")
    assert not line_is_invalid(box_only)
    bad_image = check(line(od([(-1, 0, 10, 10, 0)])), ImageCheck(error_code=C.ERROR_INVALID_IMAGE))
    assert first_error(bad_image)[0] == C.ERROR_INVALID_IMAGE  # image level comes first
    assert line_is_invalid(bad_image)
    with pytest.raises(ValueError, match=f"^{SOURCE_REF} has no errors$"):
        first_error(check(line(od([], class_map={}, objects=[]))))  # warnings are not errors


def test_iter_manifest_lines():
    assert list(iter_manifest_lines(b"")) == []
    assert list(iter_manifest_lines(b"a")) == [(1, b"a")]
    assert list(iter_manifest_lines(b"a\nb\n")) == [(1, b"a"), (2, b"b")]
    assert list(iter_manifest_lines(b"a\n\nb\r\n\n")) == [(1, b"a"), (2, b""), (3, b"b\r"), (4, b"")]


@pytest.mark.parametrize("invalid, total, fails", [
    (0, 0, False), (0, 10, False), (20, 100, False), (21, 100, True), (1, 5, False), (2, 5, True),
    (50_000, 250_000, False), (50_001, 250_000, True),
])
def test_twenty_percent_rule(invalid, total, fails):
    assert too_many_invalid(invalid, total) is fails
    assert (invalid_rows_problem(invalid, total) is not None) is fails


def _import(text: str, image=None):
    rejected, good = [], []
    for number, raw in iter_manifest_lines(text.encode()):
        result = parse_line(raw, number)
        (rejected if isinstance(result, RejectedLine) else good).append(result)
    good, superseded = dedupe_by_source_ref(good)
    entries = [validate_line(p, image(p) if image else None) for p in good]
    return summarize(entries, rejected, superseded)


def test_blank_and_invalid_lines_count_and_the_rule_is_cumulative():
    ok = [json.dumps(line(cls(class_name=n), source_ref=f"s3://b/{i}.jpg")) for i, n in enumerate("abcdefgh")]
    # 8 good + 1 blank + 1 broken = 20 % invalid: still fine.
    stats = _import("\n".join(ok + ["", "{oops"]) + "\n")
    assert (stats.total_lines, stats.valid_lines, stats.invalid_lines) == (10, 8, 2)
    assert not stats.too_many_invalid and manifest_problems(stats) == []
    # One more bad image on top: 3 of 10 (two terminal kinds + one image problem).
    stats = _import("\n".join(ok + ["", "{oops"]) + "\n",
                    image=lambda p: ImageCheck(error_code=C.ERROR_INVALID_IMAGE) if p.key == "0.jpg" else None)
    assert (stats.total_lines, stats.valid_lines, stats.invalid_lines) == (10, 7, 3)
    assert stats.too_many_invalid
    assert [p["code"] for p in manifest_problems(stats)] == [C.ERROR_TOO_MANY_INVALID_ROWS_IN_MANIFEST]
    assert stats.error_codes == {C.ERROR_INVALID_IMAGE: 1, C.ERROR_INVALID_JSON_LINE: 2}


def test_later_line_wins_for_a_repeated_source_ref():
    first = json.dumps(line(cls(class_name="old"), source_ref="s3://b/x.jpg"))
    other = json.dumps(line(cls(class_name="keep"), source_ref="s3://b/y.jpg"))
    later = json.dumps(line(cls(class_name="new"), source_ref="s3://b/x.jpg"))
    items, superseded = dedupe_by_source_ref([parsed(first, 1), parsed(other, 2), parsed(later, 3)])
    assert [p.line_number for p in items] == [2, 3] and superseded == 1
    stats = _import("\n".join([first, other, later]))
    assert (stats.total_lines, stats.valid_lines, stats.superseded_lines, stats.labels) == (3, 2, 1, ("keep", "new"))


def test_ignored_lines_are_not_invalid():
    stats = _import("\n".join([json.dumps(line(source_ref="s3://b/1.jpg")),
                               json.dumps(line(od([], class_map={}, objects=[]), source_ref="s3://b/2.jpg")),
                               json.dumps(line(cls(), source_ref="s3://b/3.jpg"))]))
    assert (stats.total_lines, stats.valid_lines, stats.ignored_lines, stats.invalid_lines) == (3, 1, 2, 0)


def test_manifest_limits():
    assert manifest_size_problem(MAX_MANIFEST_BYTES) is None
    assert manifest_size_problem(MAX_MANIFEST_BYTES + 1)["code"] == C.ERROR_MANIFEST_SIZE_TOO_LARGE
    assert line_count_problem(250_000) is None
    assert line_count_problem(250_001)["code"] == C.ERROR_MANIFEST_ROWS_EXCEEDS_MAXIMUM
    assert label_count_problem([f"l{i}" for i in range(250)] * 2) is None
    problem = label_count_problem(f"l{i}" for i in range(251))
    assert problem == {"code": C.ERROR_MANIFEST_TOO_MANY_LABELS,
                       "message": "The manifest file has too many labels. 251 labels; the maximum is 250."}
    assert bucket_problem(["a", "a"]) is None
    assert bucket_problem(["a", "b"])["code"] == C.ERROR_IMAGES_IN_MULTIPLE_S3_BUCKETS


def test_too_many_labels_in_a_manifest():
    text = "\n".join(json.dumps(line(cls(class_name=f"c{i}"), source_ref=f"s3://b/{i}.jpg")) for i in range(251))
    stats = _import(text)
    assert len(stats.labels) == 251
    assert [p["code"] for p in manifest_problems(stats)] == [C.ERROR_MANIFEST_TOO_MANY_LABELS]


# --------------------------------------------------------------------------
# The real Ground Truth manifests
# --------------------------------------------------------------------------

needs_manifests = pytest.mark.skipif(not MANIFESTS.is_dir(), reason="shared datasets not present")

# name -> (lines, valid, invalid, ignored, {label: images}, {label: boxes}, task)
REAL = {
    "bees-bbox.manifest": (500, 491, 2, 7, {"bee": 491}, {"bee": 904}, "detection"),
    "logo-bbox.manifest": (470, 428, 0, 42, {"BCBS": 428}, {"BCBS": 492}, "detection"),
    "birds-classification.manifest": (477, 477, 0, 0, {
        "American_Goldfinch": 60, "Blue_Jay": 60, "Bobolink": 60, "Cardinal": 57, "Mallard": 60,
        "Northern_Flicker": 60, "Purple_Finch": 60, "Ruby_throated_Hummingbird": 60}, {}, "classification"),
    "driverlicense-bbox.manifest": (14, 14, 0, 0, {"DOB": 13, "address": 13, "dl_number": 14, "name": 14},
                                    {"DOB": 13, "address": 13, "dl_number": 14, "name": 14}, "detection"),
    "cat-bbox/output.manifest": (4, 3, 0, 1, {"Cat": 3}, {"Cat": 4}, "detection"),
}


def _load(name: str, image: ImageCheck | None):
    rejected, entries, numbers = [], [], []
    for number, raw in iter_manifest_lines((MANIFESTS / name).read_bytes()):
        result = parse_line(raw, number)
        if isinstance(result, RejectedLine):
            rejected.append(result)
        else:
            entries.append(validate_line(result, image))
            numbers.append(number)
    return rejected, entries, numbers


@needs_manifests
@pytest.mark.parametrize("name", sorted(REAL))
def test_real_manifest_without_image_checks(name):
    lines, valid, invalid, ignored, label_entries, label_boxes, task = REAL[name]
    rejected, entries, _ = _load(name, None)
    stats = summarize(entries, rejected)
    assert rejected == []
    assert (stats.total_lines, stats.valid_lines, stats.invalid_lines, stats.ignored_lines) == (lines, valid, invalid, ignored)
    assert stats.label_entries == label_entries and stats.label_boxes == label_boxes
    assert stats.labels == tuple(sorted(label_entries))
    assert {e.task for e in entries} == {task}
    assert all(e.labeled for e in entries)
    assert manifest_problems(stats) == []
    # Every line survives an export and re-import unchanged.
    for entry in entries:
        assert validate_line(parsed(entry_line_json(entry)), None) == entry


@needs_manifests
@pytest.mark.parametrize("name", sorted(REAL))
def test_real_manifest_with_every_image_invalid(name):
    lines = REAL[name][0]
    rejected, entries, _ = _load(name, ImageCheck(error_code=C.ERROR_INVALID_IMAGE, error_message="Not found."))
    stats = summarize(entries, rejected)
    assert (stats.total_lines, stats.valid_lines, stats.invalid_lines, stats.labels) == (lines, 0, lines, ())
    assert stats.error_codes[C.ERROR_INVALID_IMAGE] == lines
    assert all(e.invalid and e.has_errors and e.line["errors"][0]["code"] == C.ERROR_INVALID_IMAGE for e in entries)
    assert stats.too_many_invalid


@needs_manifests
def test_bees_lines_with_more_than_50_boxes():
    _, entries, numbers = _load("bees-bbox.manifest", None)
    flagged = {n: e for n, e in zip(numbers, entries) if C.ERROR_TOO_MANY_BOUNDING_BOXES in line_codes(e.line)}
    assert sorted(flagged) == [236, 292]
    assert [len(e.line["bees-500"]["annotations"]) for _, e in sorted(flagged.items())] == [51, 54]
    assert sum(len(e.line["bees-500"]["annotations"]) for e in entries) == 1009
    # Fractional pixel coordinates are everywhere in this manifest and all valid.
    fractional = sum(isinstance(a["left"], float) or isinstance(a["width"], float)
                     for e in entries for a in e.line["bees-500"]["annotations"])
    assert fractional > 500
    assert sum(bool(e.has_errors) for e in entries) == 2


@needs_manifests
def test_cat_manifest_empty_annotations_line_is_a_warning():
    _, entries, numbers = _load("cat-bbox/output.manifest", None)
    first = entries[0]
    assert numbers[0] == 1 and first.line["cat-ground-truth-metadata"]["class-map"] == {}
    assert first.line["warnings"] == [{"code": "WARNING_NO_ANNOTATIONS", "message": "No annotations were found."}]
    assert (first.has_errors, first.labeled, first.labels, first.invalid) == (False, True, (), False)
    assert [line_codes(e.line) for e in entries[1:]] == [[], [], []]


@needs_manifests
def test_driverlicense_zero_confidence_boxes_are_valid_and_large_images_scaled():
    _, entries, _ = _load("driverlicense-bbox.manifest", None)
    assert sum(sum(e.bounding_boxes.values()) for e in entries) == 54
    assert not any(e.has_errors for e in entries)
