"""The few-shot benchmark's sets, built from ../shared/datasets, and their seeded splits.

    pool = load_set("micro-parts")              # Pool: images (bytes), label sets, the task
    split = few_shot_split(pool, shots=10, seed=0, unlabeled=30)
    split.train, split.unlabeled, split.test    # disjoint index arrays into the pool

| set | task | from | images |
|---|---|---|---|
| flowers-small | multi-class | the 5 folders | 200 (40 per label) |
| bccd | multi-label | each image's box classes as image labels (RBC, WBC, Platelets) | 364 |
| micro-parts | multi-class | every microcontroller box, cropped (4 boards: ESP8266, Heltec_ESP32_Lora, ...) | 177 |
| bccd-cells | multi-class | 100 seeded boxes per cell class, cropped | 300 |

A crop is the box widened by ``CROP_MARGIN`` of its size on every side
(clipped to the image), saved as JPEG (quality 95): what a user who cut parts
out of photos would upload. Boxes under ``MIN_CROP_SIDE`` pixels are left out
(BCCD has degenerate ones); a crop with a side under the service's
``IMAGE_MIN_SIDE`` (64 px, the reference's minimum too) is enlarged to it, keeping its aspect.

``few_shot_split``: per label, ``shots`` training images, then ``unlabeled``
more per label whose labels training never sees, and every other image is the
test set. For multi-label, every label is a yes/no question, so it gets
``shots`` images *with* it and ``shots`` *without* it (at most half of the
images of either kind not yet drawn, so the test images keep both): images are drawn
in a seeded order, the rarest (label, present or absent) first, until each
has its count; likewise for the unlabeled pool. (Drawing only images with
each label gave bccd training sets where every image has every label: RBC and
WBC are on 96 and 98 % of its images, and Platelets on 55 %, so nothing could
be learned and every method predicted "all present".) The splits of one seed
are nested across shot counts in nothing but the seed: each is drawn on its
own.
"""
from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from customlabels.images import IMAGE_MIN_SIDE

DATASETS = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"
CROP_MARGIN = 0.1
MIN_CROP_SIDE = 8
CELLS_PER_CLASS = 100
SETS = ("flowers-small", "bccd", "micro-parts", "bccd-cells")


@dataclass
class Pool:
    name: str
    task: str  # multiclass | multilabel
    labels: list[str]
    images: list[bytes]
    truth: list[set[str]]
    names: list[str]  # a file name per image (unique within the pool)

    def targets(self) -> np.ndarray:
        return np.array([[label in t for label in self.labels] for t in self.truth], dtype=np.float32)


@dataclass
class Split:
    train: np.ndarray
    unlabeled: np.ndarray
    test: np.ndarray


@lru_cache(maxsize=None)
def load_set(name: str) -> Pool:
    if name == "flowers-small":
        files = sorted((DATASETS / "flowers-small").glob("*/*.jpg"))
        labels = sorted({f.parent.name for f in files})
        return Pool(name, "multiclass", labels, [f.read_bytes() for f in files], [{f.parent.name} for f in files],
                    [f"{f.parent.name}-{f.name}" for f in files])
    if name == "bccd":
        records = [r for r in map(_voc, sorted((DATASETS / "bccd" / "Annotations").glob("*.xml"))) if r[2]]
        labels = sorted({o[0] for _, _, objects in records for o in objects})
        return Pool(name, "multilabel", labels,
                    [(DATASETS / "bccd" / "JPEGImages" / filename).read_bytes() for _, filename, _ in records],
                    [{o[0] for o in objects} for _, _, objects in records], [filename for _, filename, _ in records])
    if name == "micro-parts":
        xmls = sorted((DATASETS / "microcontroller").glob("*/*.xml"))
        return _crops(name, [(x.with_suffix(".jpg"), objects) for x, _, objects in map(_voc, xmls)], None)
    if name == "bccd-cells":
        records = [(DATASETS / "bccd" / "JPEGImages" / filename, objects)
                   for _, filename, objects in map(_voc, sorted((DATASETS / "bccd" / "Annotations").glob("*.xml")))]
        return _crops(name, records, CELLS_PER_CLASS)
    raise ValueError(f"unknown set {name!r}; known: {', '.join(SETS)}")


def _voc(xml: Path) -> tuple[Path, str, list[tuple[str, float, float, float, float]]]:
    root = ET.parse(xml).getroot()
    objects = []
    for obj in root.iter("object"):
        box = obj.find("bndbox")
        x0, y0, x1, y1 = (float(box.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax"))
        objects.append((obj.find("name").text.strip(), x0, y0, x1, y1))
    return xml, root.findtext("filename"), objects


def _crops(name: str, records, per_class: int | None) -> Pool:
    """Every usable box of ``records`` ([(image path, objects)]) as a crop, or a seeded ``per_class`` of each."""
    boxes = [(path, obj) for path, objects in records for obj in objects
             if min(obj[3] - obj[1], obj[4] - obj[2]) >= MIN_CROP_SIDE]
    labels = sorted({obj[0] for _, obj in boxes})
    if per_class is not None:
        rng = np.random.default_rng(0)
        chosen = []
        for label in labels:
            members = [b for b in boxes if b[1][0] == label]
            chosen += [members[i] for i in sorted(rng.permutation(len(members))[:per_class])]
        boxes = chosen
    images, truth, names, opened = [], [], [], {}
    for k, (path, (label, x0, y0, x1, y1)) in enumerate(boxes):
        if path not in opened:
            opened = {path: Image.open(path).convert("RGB")}  # records are grouped by image
        image = opened[path]
        dx, dy = CROP_MARGIN * (x1 - x0), CROP_MARGIN * (y1 - y0)
        crop = image.crop((max(0, round(x0 - dx)), max(0, round(y0 - dy)),
                           min(image.width, round(x1 + dx)), min(image.height, round(y1 + dy))))
        if min(crop.size) < IMAGE_MIN_SIDE:  # the service refuses smaller images, as the reference does
            scale = IMAGE_MIN_SIDE / min(crop.size)
            crop = crop.resize((max(IMAGE_MIN_SIDE, round(crop.width * scale)),
                                max(IMAGE_MIN_SIDE, round(crop.height * scale))), Image.Resampling.BICUBIC)
        buffer = io.BytesIO()
        crop.save(buffer, "JPEG", quality=95)
        images.append(buffer.getvalue())
        truth.append({label})
        names.append(f"{label}-{k:04d}.jpg")
    return Pool(name, "multiclass", labels, images, truth, names)


def few_shot_split(pool: Pool, shots: int, seed: int, unlabeled: int = 0) -> Split:
    """``shots`` training images per label, ``unlabeled`` more per label without their labels, the rest to test."""
    rng = np.random.default_rng(seed)
    targets = pool.targets().astype(bool)
    # What each label needs ``shots`` of: its images (multi-class), or its images and the images without it.
    outcomes = targets if pool.task == "multiclass" else np.concatenate([targets, ~targets], axis=1)
    order = rng.permutation(len(targets))
    taken = np.zeros(len(targets), bool)

    def draw(per_outcome: int) -> np.ndarray:
        available = outcomes[~taken].sum(axis=0)
        needed = available if pool.task == "multiclass" else available // 2  # leave the test images some of each
        counts = np.zeros(outcomes.shape[1])
        chosen = []
        for outcome in np.argsort(available, kind="stable"):  # rarest first
            for i in order:
                if counts[outcome] >= min(per_outcome, needed[outcome]):
                    break
                if not taken[i] and outcomes[i, outcome]:
                    taken[i] = True
                    chosen.append(i)
                    counts += outcomes[i]
        return np.sort(np.asarray(chosen, dtype=np.int64))

    train = draw(shots)
    pool_unlabeled = draw(unlabeled) if unlabeled else np.zeros(0, np.int64)
    return Split(train, pool_unlabeled, np.flatnonzero(~taken))
