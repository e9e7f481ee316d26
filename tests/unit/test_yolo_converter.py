"""The YOLO (Ultralytics) converter behind `customlabels import-yolo` and the
console's YOLO import: a YOLO copy of microcontroller, written here from its VOC
files in the simplest way, must convert to the same boxes as the VOC converter
reads from the originals (to float precision)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from customlabels.manifests import converters
from customlabels.manifests.converters import ConversionError

DATASETS = Path(os.environ.get("CUSTOMLABELS_DATASETS") or Path(__file__).resolve().parents[3] / "shared" / "datasets")
MICRO = DATASETS / "microcontroller" / "train"
REPO = Path(__file__).resolve().parents[2]


def yolo_copy(root: Path, names: list[str], *, as_dict: bool = False) -> Path:
    """microcontroller/train as Ultralytics lays it out: images/train, labels/train, data.yaml."""
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    for xml in sorted(MICRO.glob("*.xml")):
        tree = ET.parse(xml).getroot()
        width, height = int(tree.findtext("size/width")), int(tree.findtext("size/height"))
        rows = []
        for obj in tree.iter("object"):
            xmin, ymin, xmax, ymax = (float(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax"))
            # VOC corners are 1-based inclusive: the box's edges are xmin-1 .. xmax
            left, top, w, h = xmin - 1, ymin - 1, xmax - xmin + 1, ymax - ymin + 1
            rows.append(f"{names.index(obj.findtext('name'))} {(left + w / 2) / width:.10f} {(top + h / 2) / height:.10f} "
                        f"{w / width:.10f} {h / height:.10f}")
        shutil.copy(MICRO / f"{xml.stem}.jpg", root / "images" / "train" / f"{xml.stem}.jpg")
        (root / "labels" / "train" / f"{xml.stem}.txt").write_text("\n".join(rows) + "\n")
    listed = "{" + ", ".join(f"{i}: {n}" for i, n in enumerate(names)) + "}" if as_dict else json.dumps(names)
    (root / "data.yaml").write_text(f"path: /somewhere/else\ntrain: images/train\nval: images/train\nnames: {listed}\n")
    return root


def boxes_by_image(conversion) -> dict[str, list[tuple]]:
    found = {}
    for entry in conversion.entries:
        line = entry.line
        names = line["bounding-box-metadata"]["class-map"]
        found[Path(entry.key).name] = sorted(
            (names[str(a["class_id"])], round(a["left"], 4), round(a["top"], 4), round(a["width"], 4), round(a["height"], 4))
            for a in line["bounding-box"]["annotations"])
    return found


@pytest.fixture(scope="module")
def names():
    return sorted({o.findtext("name") for x in MICRO.glob("*.xml") for o in ET.parse(x).getroot().iter("object")})


@pytest.mark.parametrize("as_dict", [False, True])
def test_yolo_boxes_equal_the_voc_boxes_of_the_same_images(tmp_path, names, as_dict):
    root = yolo_copy(tmp_path / "yolo", names, as_dict=as_dict)
    yolo = converters.yolo_detection(root, bucket="b", prefix="p", split="train")
    voc = converters.voc_detection(MICRO, bucket="b", prefix="p")
    assert not yolo.warnings
    assert len(yolo.entries) == len(voc.entries) == len(list(MICRO.glob("*.jpg")))
    assert boxes_by_image(yolo) == boxes_by_image(voc)
    first = yolo.entries[0]
    assert first.key.startswith("p/images/train/") and first.line["source-ref"] == f"s3://b/{first.key}"
    assert first.line["bounding-box"]["image_size"] == [{"width": 800, "height": 600, "depth": 3}]


def test_images_without_labels_polygons_and_bad_lines(tmp_path, names):
    root = yolo_copy(tmp_path / "yolo", names)
    images = sorted((root / "images" / "train").glob("*.jpg"))
    (root / "labels" / "train" / f"{images[0].stem}.txt").unlink()  # no label file: no objects
    (root / "labels" / "train" / f"{images[1].stem}.txt").write_text(
        "0 0.1 0.1 0.3 0.1 0.3 0.4 0.1 0.4\n"  # a polygon: its bounding box
        "9 0.5 0.5 0.1 0.1\n"  # no class 9
        "1 0.5 0.5\n"  # too few numbers
        "x y z w h\n")
    conversion = converters.yolo_detection(root, bucket="b")
    by_name = {Path(e.key).name: e.line for e in conversion.entries}
    assert by_name[images[0].name]["bounding-box"]["annotations"] == []
    polygon = by_name[images[1].name]["bounding-box"]["annotations"]
    assert len(polygon) == 1
    assert (polygon[0]["left"], polygon[0]["top"]) == pytest.approx((80, 60))
    assert (polygon[0]["width"], polygon[0]["height"]) == pytest.approx((160, 180))
    assert len(conversion.warnings) == 3 and all(images[1].stem in w for w in conversion.warnings)


def test_as_labels_and_classes_txt(tmp_path, names):
    root = yolo_copy(tmp_path / "yolo", names)
    (root / "data.yaml").unlink()
    (root / "classes.txt").write_text("\n".join(names) + "\n")
    conversion = converters.yolo_detection(root, bucket="b", as_labels=True)
    labels = converters.label_counts(conversion.lines)
    assert set(labels) <= set(names) and sum(labels.values()) > 0
    assert all("bounding-box" not in line for line in conversion.lines)


def test_missing_names_or_split_is_an_error(tmp_path, names):
    root = yolo_copy(tmp_path / "yolo", names)
    (root / "data.yaml").write_text("train: images/train\n")
    with pytest.raises(ConversionError, match="no class names"):
        converters.yolo_detection(root, bucket="b")
    (root / "data.yaml").write_text("names: [a]\n")
    with pytest.raises(ConversionError, match="no split 'test'"):
        converters.yolo_detection(root, bucket="b", split="test")


def test_the_cli_command_converts_without_a_server(tmp_path, names):
    root = yolo_copy(tmp_path / "yolo", names)
    done = subprocess.run([sys.executable, "-m", "services.cli.main", "import-yolo", str(root), "--split", "train",
                           "--project", "chips", "--dry-run"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(lines) == len(list(MICRO.glob("*.jpg")))
    assert lines[0]["source-ref"].startswith("s3://customlabels-images/chips/train/images/train/")
    assert "Found 142 images, 4 labels" in done.stderr
