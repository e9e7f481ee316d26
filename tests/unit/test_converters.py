"""The manifest converters, run over the real datasets in ../shared/datasets.

Expected counts are recomputed here from the raw files in the simplest way possible
(ElementTree over the XMLs, counting folders), so that a converter bug cannot hide
behind a shared helper.
"""
from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import pytest
from PIL import Image

from customlabels.manifests import converters
from customlabels.manifests.converters import ConversionError
from tests.support.coco import raccoon_as_coco

# ../shared/datasets relative to the project root (CUSTOMLABELS_DATASETS overrides).
DATASETS = Path(os.environ.get("CUSTOMLABELS_DATASETS") or Path(__file__).resolve().parents[3] / "shared" / "datasets")
FLOWERS = DATASETS / "flowers-small"
MICRO = DATASETS / "microcontroller"
BCCD = DATASETS / "bccd"
RACCOON = DATASETS / "raccoon"
NOW = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=timezone.utc)
CREATED = "2024-05-06T07:08:09.123456"
BUCKET = "imgs"


# --- independent readings of the raw data ------------------------------------------------


def xml_class_counts(xml_files) -> Counter:
    return Counter(obj.findtext("name") for f in xml_files for obj in ET.parse(f).getroot().iter("object"))


def box_class_counts(lines) -> Counter:
    """Boxes per class name, read back through each line's own class-map."""
    counts = Counter()
    for line in lines:
        names = line["bounding-box-metadata"]["class-map"]
        for ann in line["bounding-box"]["annotations"]:
            counts[names[str(ann["class_id"])]] += 1
    return counts


def image_labels(line) -> list[str]:
    return sorted(
        v["class-name"] for k, v in line.items()
        if k.endswith("-metadata") and v["type"] == "groundtruth/image-classification"
    )


def split_stems(split: str) -> list[str]:
    return (BCCD / "ImageSets" / "Main" / f"{split}.txt").read_text().split()


def by_key(conversion) -> dict:
    return {entry.key: entry for entry in conversion.entries}


# --- (a) folder per label --------------------------------------------------------------


def test_flowers_small_has_200_images_in_5_classes_of_40():
    result = converters.folder_classification(FLOWERS, bucket=BUCKET, prefix="flowers/train", now=NOW)

    assert len(result.entries) == 200
    per_class = Counter(label for line in result.lines for label in image_labels(line))
    assert per_class == {name: 40 for name in ("daisy", "dandelion", "roses", "sunflowers", "tulips")}
    # Every line is single-label, and the folder on disk agrees with the label.
    for entry in result.entries:
        assert image_labels(entry.line) == [entry.image.parent.name]
        assert entry.key == f"flowers/train/{entry.image.parent.name}/{entry.image.name}"
    # LICENSE.txt is the only thing that is not an image.
    assert result.warnings == ["skipped LICENSE.txt: not a .jpg, .jpeg or .png image"]


def test_flowers_line_is_exactly_the_reference_format():
    result = converters.folder_classification(FLOWERS, bucket=BUCKET, prefix="p/", now=NOW)
    entry = next(e for e in result.entries if e.image.parent.name == "roses")

    assert entry.line == {
        "source-ref": f"s3://{BUCKET}/p/roses/{entry.image.name}",
        "roses": 1,
        "roses-metadata": {
            "confidence": 1,
            "job-name": "labeling-job/roses",
            "class-name": "roses",
            "human-annotated": "yes",
            "creation-date": CREATED,
            "type": "groundtruth/image-classification",
        },
    }


def test_folder_rules_on_a_small_tree(tmp_path):
    def image(path: Path, fmt="JPEG"):
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (80, 80)).save(path, fmt)

    image(tmp_path / "cats" / "a.jpg")
    image(tmp_path / "cats" / "b.PNG", "PNG")
    image(tmp_path / "dogs" / "nested" / "c.jpeg")  # the nearest folder names the label
    image(tmp_path / "loose.jpg")  # no label folder
    image(tmp_path / "dogs" / "d.gif", "GIF")
    image(tmp_path / ".cache" / "e.jpg")  # hidden: ignored silently
    (tmp_path / "dogs" / "notes.txt").write_text("hi")

    result = converters.folder_classification(tmp_path, bucket=BUCKET, attribute="animal", now=NOW)

    assert {e.key: image_labels(e.line) for e in result.entries} == {
        "cats/a.jpg": ["cats"], "cats/b.PNG": ["cats"], "dogs/nested/c.jpeg": ["nested"],
    }
    assert all(e.line["animal"] == 1 and e.line["animal-metadata"]["job-name"] == "labeling-job/animal"
               for e in result.entries)
    assert sorted(result.warnings) == [
        "skipped dogs/d.gif: not a .jpg, .jpeg or .png image",
        "skipped dogs/notes.txt: not a .jpg, .jpeg or .png image",
        "skipped loose.jpg: not inside a label folder",
    ]


def test_folder_that_does_not_exist_is_a_conversion_error(tmp_path):
    with pytest.raises(ConversionError):
        converters.folder_classification(tmp_path / "missing", bucket=BUCKET)


# --- (b) Pascal VOC --------------------------------------------------------------------------


def test_microcontroller_train_images_and_boxes_per_class():
    xmls = sorted((MICRO / "train").glob("*.xml"))
    result = converters.voc_detection(MICRO / "train", bucket=BUCKET, now=NOW)

    assert len(xmls) == 142
    assert len(result.entries) == 142
    assert result.warnings == []
    assert box_class_counts(result.lines) == xml_class_counts(xmls)
    assert sum(box_class_counts(result.lines).values()) == 170
    for line in result.lines:
        assert line["bounding-box"]["image_size"] == [{"width": 800, "height": 600, "depth": 3}]
        meta = line["bounding-box-metadata"]
        assert len(meta["objects"]) == len(line["bounding-box"]["annotations"])
        assert meta["type"] == "groundtruth/object-detection"
        assert meta["human-annotated"] == "yes" and meta["creation-date"] == CREATED
        assert meta["job-name"] == "labeling-job/bounding-box"


def test_microcontroller_split_folders_from_the_dataset_root():
    train = converters.voc_detection(MICRO, bucket=BUCKET, split="train")
    test = converters.voc_detection(MICRO, bucket=BUCKET, split="test")
    everything = converters.voc_detection(MICRO, bucket=BUCKET)

    assert len(train.entries) == 142 and len(test.entries) == 7 and len(everything.entries) == 149
    assert all(e.key.startswith("train/") for e in train.entries)
    assert box_class_counts(test.lines) == xml_class_counts((MICRO / "test").glob("*.xml"))
    # The README's totals: both splits together.
    assert box_class_counts(everything.lines) == {
        "ESP8266": 47, "Heltec_ESP32_Lora": 44, "Raspberry_Pi_3": 43, "Arduino_Nano": 43,
    }


def test_voc_corners_become_zero_based_edges():
    # IMG_20181228_101826.xml: one Arduino_Nano, xmin 317 ymin 265 xmax 556 ymax 342.
    result = converters.voc_detection(MICRO / "train", bucket=BUCKET, prefix="b", now=NOW)
    line = by_key(result)["b/IMG_20181228_101826.jpg"].line

    assert line == {
        "source-ref": f"s3://{BUCKET}/b/IMG_20181228_101826.jpg",
        "bounding-box": {
            "image_size": [{"width": 800, "height": 600, "depth": 3}],
            "annotations": [{"class_id": 0, "left": 316, "top": 264, "width": 240, "height": 78}],
        },
        "bounding-box-metadata": {
            "objects": [{"confidence": 1}],
            "class-map": {"0": "Arduino_Nano"},
            "type": "groundtruth/object-detection",
            "human-annotated": "yes",
            "creation-date": CREATED,
            "job-name": "labeling-job/bounding-box",
        },
    }


@pytest.mark.parametrize("split, images", [("train", 205), ("val", 87), ("test", 72), ("trainval", 292)])
def test_bccd_splits_follow_the_imagesets_lists(split, images):
    stems = split_stems(split)
    result = converters.voc_detection(BCCD, bucket=BUCKET, split=split)

    assert len(stems) == images
    assert [e.image.stem for e in result.entries] == stems
    assert all(e.key == f"JPEGImages/{e.image.name}" for e in result.entries)
    assert box_class_counts(result.lines) == xml_class_counts(BCCD / "Annotations" / f"{s}.xml" for s in stems)


def test_bccd_whole_dataset_and_its_degenerate_boxes_are_passed_on():
    result = converters.voc_detection(BCCD, bucket=BUCKET)

    assert len(result.entries) == 364
    assert box_class_counts(result.lines) == {"RBC": 4155, "WBC": 372, "Platelets": 361}
    # BloodImage_00338 has a box with xmin == xmax == 504, ymin == ymax == 337: it is
    # converted (to the single pixel it names), not dropped or widened.
    boxes = by_key(result)["JPEGImages/BloodImage_00338.jpg"].line["bounding-box"]["annotations"]
    assert {"left": 503, "top": 336, "width": 1, "height": 1} in [
        {k: b[k] for k in ("left", "top", "width", "height")} for b in boxes
    ]


def test_bccd_class_ids_are_one_numbering_for_the_whole_conversion():
    result = converters.voc_detection(BCCD, bucket=BUCKET, split="train")
    seen: dict[str, set] = {}
    for line in result.lines:
        class_map = line["bounding-box-metadata"]["class-map"]
        used = {str(a["class_id"]) for a in line["bounding-box"]["annotations"]}
        assert set(class_map) == used  # per line: exactly the classes on it
        for class_id, name in class_map.items():
            seen.setdefault(name, set()).add(class_id)
    assert seen == {"Platelets": {"0"}, "RBC": {"1"}, "WBC": {"2"}}


def test_bccd_as_labels_makes_multi_label_images():
    result = converters.voc_detection(BCCD, bucket=BUCKET, as_labels=True, now=NOW)
    labels = [image_labels(line) for line in result.lines]

    assert len(labels) == 364
    assert sum(len(l) >= 2 for l in labels) == 354
    first = by_key(result)["JPEGImages/BloodImage_00000.jpg"].line
    assert first["RBC"] == 1 and first["WBC"] == 1
    assert first["WBC-metadata"] == {
        "confidence": 1, "job-name": "labeling-job/WBC", "class-name": "WBC", "human-annotated": "yes",
        "creation-date": CREATED, "type": "groundtruth/image-classification",
    }
    assert not any("bounding-box" in line for line in result.lines)


def test_as_labels_with_an_attribute_prefix():
    result = converters.voc_detection(BCCD, bucket=BUCKET, split="test", as_labels=True, attribute="cells")
    line = result.lines[0]
    assert {k for k in line if k != "source-ref" and not k.endswith("-metadata")} <= {
        "cells_RBC", "cells_WBC", "cells_Platelets"
    }


def test_raccoon_has_200_images_and_217_boxes():
    xmls = sorted((RACCOON / "annotations").glob("*.xml"))
    result = converters.voc_detection(RACCOON, bucket=BUCKET)

    assert len(result.entries) == 200 and result.warnings == []
    assert box_class_counts(result.lines) == xml_class_counts(xmls) == {"raccoon": 217}
    # Sizes come from the XML; they range from thumbnails to 2000 px.
    for entry in result.entries:
        size = ET.parse(RACCOON / "annotations" / f"{entry.image.stem}.xml").getroot().find("size")
        assert entry.line["bounding-box"]["image_size"] == [
            {k: int(size.findtext(k)) for k in ("width", "height", "depth")}
        ]
    labels = converters.voc_detection(RACCOON, bucket=BUCKET, as_labels=True)
    assert [image_labels(line) for line in labels.lines] == [["raccoon"]] * 200


def test_voc_missing_size_reads_the_image_and_stale_filenames_fall_back_to_the_stem(tmp_path):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "images").mkdir()
    Image.new("L", (321, 123)).save(tmp_path / "images" / "pic.png")
    (tmp_path / "annotations" / "pic.xml").write_text(
        "<annotation><filename>old-name.jpg</filename><size><width>0</width><height>0</height></size>"
        "<object><name>thing</name><bndbox><xmin>10.5</xmin><ymin>1</ymin><xmax>20</xmax><ymax>2</ymax>"
        "</bndbox></object><object><name>broken</name></object></annotation>"
    )
    (tmp_path / "annotations" / "orphan.xml").write_text("<annotation><filename>none.jpg</filename></annotation>")

    result = converters.voc_detection(tmp_path, bucket=BUCKET)

    assert [e.key for e in result.entries] == ["images/pic.png"]
    box = result.lines[0]["bounding-box"]
    assert box["image_size"] == [{"width": 321, "height": 123, "depth": 1}]
    assert box["annotations"] == [{"class_id": 0, "left": 9.5, "top": 0, "width": 10.5, "height": 2}]
    assert sorted(result.warnings) == [
        "pic.xml: object 2 has no name or no numeric bndbox; left out",
        "skipped annotations/orphan.xml: no image found for it",
    ]


def test_voc_unknown_split_is_a_conversion_error():
    with pytest.raises(ConversionError, match="no split 'holdout'"):
        converters.voc_detection(BCCD, bucket=BUCKET, split="holdout")


# --- (c) COCO ------------------------------------------------------------------------------


def test_coco_from_raccoon_matches_the_voc_conversion(tmp_path):
    coco = converters.coco_detection(raccoon_as_coco(tmp_path / "coco.json"), RACCOON / "images",
                                     bucket=BUCKET, prefix="r", now=NOW)
    voc = converters.voc_detection(RACCOON, bucket=BUCKET, now=NOW)

    assert len(coco.entries) == 200 and coco.warnings == []
    assert box_class_counts(coco.lines) == {"raccoon": 217}
    voc_by_image = {e.image.name: e.line for e in voc.entries}
    for entry in coco.entries:
        assert entry.key == f"r/{entry.image.name}"
        assert entry.line["source-ref"] == f"s3://{BUCKET}/r/{entry.image.name}"
        assert entry.line["bounding-box"] == voc_by_image[entry.image.name]["bounding-box"]
        assert entry.line["bounding-box-metadata"] == voc_by_image[entry.image.name]["bounding-box-metadata"]


def test_coco_boxes_pass_through_and_problems_are_reported(tmp_path):
    first_image = sorted((RACCOON / "images").iterdir())[0]
    with Image.open(first_image) as opened:
        real = [opened.width, opened.height, len(opened.getbands())]
    (tmp_path / "coco.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": first_image.name},  # no size: read from the file
                   {"id": 2, "file_name": "missing.jpg", "width": 10, "height": 10}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 3, "bbox": [-5, 2.25, 0, 40]},  # bad, but passed on
            {"id": 2, "image_id": 1, "category_id": 99, "bbox": [1, 1, 1, 1]},
            {"id": 3, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4]},
        ],
        "categories": [{"id": 3, "name": "tail"}, {"id": 1, "name": "head"}],
    }))

    result = converters.coco_detection(tmp_path / "coco.json", RACCOON / "images", bucket=BUCKET)

    line = result.lines[0]
    assert line["bounding-box"]["image_size"] == [dict(zip(("width", "height", "depth"), real))]
    assert line["bounding-box"]["annotations"] == [
        {"class_id": 1, "left": -5, "top": 2.25, "width": 0, "height": 40},
        {"class_id": 0, "left": 1, "top": 2, "width": 3, "height": 4},
    ]
    assert line["bounding-box-metadata"]["class-map"] == {"0": "head", "1": "tail"}
    assert result.warnings == [
        "annotation 2: unknown category or no [x, y, w, h] bbox; left out",
        f"skipped image 2: no file 'missing.jpg' in {RACCOON / 'images'}",
    ]
    labels = converters.coco_detection(tmp_path / "coco.json", RACCOON / "images", bucket=BUCKET, as_labels=True)
    assert image_labels(labels.lines[0]) == ["head", "tail"]


def test_coco_that_is_not_coco_is_a_conversion_error(tmp_path):
    (tmp_path / "a.json").write_text("{not json")
    (tmp_path / "b.json").write_text('{"images": []}')
    for name in ("a.json", "b.json", "c.json"):
        with pytest.raises(ConversionError):
            converters.coco_detection(tmp_path / name, RACCOON / "images", bucket=BUCKET)


# --- manifests as bytes ------------------------------------------------------------------------


def test_jsonl_chunks_stay_under_the_limit_and_keep_lines_whole():
    lines = converters.voc_detection(BCCD, bucket=BUCKET).lines
    whole = converters.to_jsonl(lines)
    chunks = list(converters.chunk_jsonl(lines, max_bytes=20_000))

    assert len(chunks) > 10
    assert all(len(c) <= 20_000 and c.endswith(b"\n") for c in chunks)
    assert b"".join(chunks) == whole
    assert [json.loads(l) for l in whole.splitlines()] == lines
    assert list(converters.chunk_jsonl(lines)) == [whole]  # 364 lines fit one 5 MB call
    with pytest.raises(ConversionError):
        list(converters.chunk_jsonl(lines, max_bytes=100))


def test_prefixes_are_normalized():
    assert converters.normalize_prefix(None) == ""
    assert converters.normalize_prefix("/a/b") == "a/b/"
    assert converters.normalize_prefix("a/b/") == "a/b/"
