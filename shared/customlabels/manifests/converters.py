"""Turn labeled image collections into Ground Truth manifest lines.

Every converter returns a :class:`Conversion`: one :class:`Entry` per image (the local
file, the object key to upload it under, and its manifest line as a dict) plus the
warnings about what it had to skip. The converters only read local files; uploading and
talking to the service is the job of the CLI and of the web console, which both import
them from here (services never import each other).

Format decisions (the reference's manifest format, see custom-labels.md):

* Image-level labels mirror what the AWS tooling writes (the Rekognition console's
  label-by-folder import and AWS's own CSV-to-manifest script): the label attribute
  is named after the class, its value is ``1``, and the metadata's ``job-name`` is
  ``labeling-job/<attribute>``. Naming the attribute after the class lets several
  labels sit on one line (multi-label images) without clashing. ``attribute=`` fixes
  the name instead; on multi-label lines it becomes a prefix (``<attribute>_<class>``,
  like the console's ``testdataset-classification_Sunrise``).
* Boxes go under the attribute ``bounding-box`` (what AWS's examples use). Class ids
  are numbered 0..n-1 over the whole conversion (VOC: class names sorted; COCO:
  categories sorted by id), so one id means one class on every line; each line's
  ``class-map`` lists only the classes on that line, as Ground Truth writes it.
* Pascal VOC boxes are 1-based inclusive pixel indices (``xmin=1`` is the first pixel
  column, ``xmax=W`` the last). We convert them to the manifest's 0-based edges the
  way Detectron2 does: ``left = xmin - 1``, ``top = ymin - 1``,
  ``width = xmax - xmin + 1``, ``height = ymax - ymin + 1``; a full-image box becomes
  exactly ``0, 0, W, H``. COCO boxes are already 0-based edges and pass unchanged.
  YOLO boxes (centre and size relative to the image) become pixels of the image's
  real size; YOLO's class numbers are kept as class ids.
* Boxes are never clamped, dropped or repaired: the server validates each line and
  reports bad boxes per line (BCCD's two degenerate boxes, ``xmin == xmax``, arrive
  as 1x1-pixel boxes, which is what a 1-based inclusive box of that size means).
* An image without any object still gets a line: under detection an empty
  ``annotations`` list (a "nothing here" image, as Ground Truth writes it), with
  ``as_labels`` a line with only ``source-ref`` (an unlabeled image).
* ``creation-date`` is one UTC timestamp per conversion, ``%Y-%m-%dT%H:%M:%S.%f``
  like Ground Truth's output; confidences are 1 and ``human-annotated`` is ``yes``.
"""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Iterable, Iterator

from PIL import Image

from customlabels.manifests.lines import CLASSIFICATION_TYPE, DETECTION_TYPE

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
BOX_ATTRIBUTE = "bounding-box"
# UpdateDatasetEntries takes at most 5,242,880 bytes per call; stay clearly under it.
MAX_CHUNK_BYTES = 5_000_000


class ConversionError(ValueError):
    """The input cannot be converted at all (missing folder, unreadable JSON...)."""


@dataclass(frozen=True)
class Entry:
    """One image: where it is here, the key it is uploaded under, and its manifest line."""

    image: Path
    key: str
    line: dict


@dataclass
class Conversion:
    entries: list[Entry] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def lines(self) -> list[dict]:
        return [entry.line for entry in self.entries]


# --- manifest lines -----------------------------------------------------------------


def creation_date(now: datetime | None = None) -> str:
    """Ground Truth's timestamp style: UTC, no offset, microseconds."""
    now = now or datetime.now(timezone.utc)
    return now.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")


def image_label(class_name: str, *, attribute: str, created: str, job_name: str | None = None) -> dict:
    """The attribute pair of one image-level label (merge several for multi-label)."""
    return {
        attribute: 1,
        f"{attribute}-metadata": {
            "confidence": 1,
            "job-name": job_name or f"labeling-job/{attribute}",
            "class-name": class_name,
            "human-annotated": "yes",
            "creation-date": created,
            "type": CLASSIFICATION_TYPE,
        },
    }


def labels_line(
    source_ref: str,
    class_names: Iterable[str],
    *,
    created: str,
    attribute: str | None = None,
    job_name: str | None = None,
) -> dict:
    """A line with one image-level label per distinct class (sorted, for stable output)."""
    line: dict = {"source-ref": source_ref}
    for name in sorted(set(class_names)):
        label_attribute = _label_attribute(name, attribute)
        line.update(image_label(name, attribute=label_attribute, created=created, job_name=job_name))
    return line


def _label_attribute(class_name: str, attribute: str | None) -> str:
    return class_name if attribute is None else f"{attribute}_{class_name}"


@dataclass(frozen=True)
class Box:
    """A box in manifest terms: pixels, 0-based top-left origin, any numbers."""

    class_name: str
    left: float
    top: float
    width: float
    height: float


def detection_line(
    source_ref: str,
    size: tuple[int, int, int],
    boxes: list[Box],
    class_ids: dict[str, int],
    *,
    created: str,
    attribute: str = BOX_ATTRIBUTE,
    job_name: str | None = None,
) -> dict:
    """An object-detection line; ``size`` is (width, height, depth) of the image."""
    width, height, depth = size
    annotations = [
        {
            "class_id": class_ids[box.class_name],
            "left": _number(box.left),
            "top": _number(box.top),
            "width": _number(box.width),
            "height": _number(box.height),
        }
        for box in boxes
    ]
    used = sorted({box.class_name for box in boxes}, key=class_ids.__getitem__)
    return {
        "source-ref": source_ref,
        attribute: {
            "image_size": [{"width": width, "height": height, "depth": depth}],
            "annotations": annotations,
        },
        f"{attribute}-metadata": {
            "objects": [{"confidence": 1} for _ in annotations],
            "class-map": {str(class_ids[name]): name for name in used},
            "type": DETECTION_TYPE,
            "human-annotated": "yes",
            "creation-date": created,
            "job-name": job_name or f"labeling-job/{attribute}",
        },
    }


def _number(value: float) -> int | float:
    """Whole numbers as ints, so manifests read ``317`` rather than ``317.0``."""
    return int(value) if float(value).is_integer() else float(value)


def source_ref(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def normalize_prefix(prefix: str | None) -> str:
    """``"a/b"`` -> ``"a/b/"``; no leading slash, since keys are relative to the bucket."""
    prefix = (prefix or "").strip("/")
    return f"{prefix}/" if prefix else ""


# --- (a) one folder per label -----------------------------------------------------------


def folder_classification(
    root: str | Path,
    *,
    bucket: str,
    prefix: str = "",
    attribute: str | None = None,
    job_name: str | None = None,
    now: datetime | None = None,
) -> Conversion:
    """Each image is labeled with the name of the folder that holds it.

    The immediate parent folder names the class, so ``root/train/daisy/1.jpg`` is a
    daisy, as in the console's label-by-folder import. Files directly in ``root``
    and files that are not .jpg/.jpeg/.png are skipped with a warning; hidden files
    and folders are ignored.
    """
    root = _existing_dir(root)
    relative = [path.relative_to(root) for path in files_under(root)]
    return labels_from_folders(relative, bucket=bucket, prefix=prefix, attribute=attribute, job_name=job_name,
                               now=now, base=root)


def labels_from_folders(
    paths: Iterable[PurePosixPath | Path],
    *,
    bucket: str,
    prefix: str = "",
    attribute: str | None = None,
    job_name: str | None = None,
    now: datetime | None = None,
    base: Path = Path(),
) -> Conversion:
    """``folder_classification`` over paths relative to a dataset's root, which
    need not be on this machine (the web console's dropped folders); each
    entry's ``image`` is ``base / path``."""
    prefix, created = normalize_prefix(prefix), creation_date(now)
    result = Conversion()
    for relative in paths:
        relative = PurePosixPath(relative.as_posix())
        if relative.suffix.lower() not in IMAGE_SUFFIXES:
            result.warnings.append(f"skipped {relative}: not a .jpg, .jpeg or .png image")
            continue
        if len(relative.parts) < 2:
            result.warnings.append(f"skipped {relative}: not inside a label folder")
            continue
        key = prefix + relative.as_posix()
        line = {"source-ref": source_ref(bucket, key)}
        class_name = relative.parent.name
        line.update(
            image_label(class_name, attribute=attribute or class_name, created=created, job_name=job_name)
        )
        result.entries.append(Entry(base / relative, key, line))
    return result


def _existing_dir(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise ConversionError(f"{path} is not a folder")
    return path


def files_under(root: Path) -> Iterator[Path]:
    """Regular files below ``root``, sorted, skipping hidden files and folders."""
    for path in sorted(root.rglob("*")):
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(root).parts):
            yield path


# --- (b) Pascal VOC -----------------------------------------------------------------


@dataclass
class VocRecord:
    """What one VOC XML says, in VOC's own terms (1-based inclusive corners)."""

    xml: Path
    filename: str
    size: tuple[int, int, int] | None
    objects: list[tuple[str, float, float, float, float]]


def voc_detection(
    root: str | Path,
    *,
    bucket: str,
    prefix: str = "",
    split: str | None = None,
    as_labels: bool = False,
    attribute: str | None = None,
    job_name: str | None = None,
    now: datetime | None = None,
) -> Conversion:
    """Pascal VOC XML annotations to detection lines (or image-level labels).

    Layouts understood: ``Annotations/`` + ``JPEGImages/`` (VOC, BCCD),
    ``annotations/`` + ``images/`` (raccoon), or XML files beside their images
    anywhere under ``root`` (microcontroller). The image is the file the XML's
    ``filename`` names, else the one with the XML's stem. ``split`` picks
    ``ImageSets/Main/<split>.txt`` when it exists, else the folder ``root/<split>``.
    """
    root = _existing_dir(root)
    prefix, created = normalize_prefix(prefix), creation_date(now)
    result = Conversion()
    records: list[tuple[VocRecord, Path]] = []
    seen: set[Path] = set()
    for xml in _voc_xml_files(root, split, result.warnings):
        record = _parse_voc(xml, result.warnings)
        if record is None:
            continue
        image = _find_voc_image(xml, record.filename, root)
        problem = _image_problem(image, seen)
        if problem:
            result.warnings.append(f"skipped {xml.relative_to(root)}: {problem}")
            continue
        seen.add(image)
        records.append((record, image))

    class_ids = _class_ids(name for record, _ in records for name, *_ in record.objects)
    for record, image in records:
        key = prefix + image.relative_to(root).as_posix()
        ref = source_ref(bucket, key)
        if as_labels:
            names = [name for name, *_ in record.objects]
            line = labels_line(ref, names, created=created, attribute=attribute, job_name=job_name)
        else:
            boxes = [_voc_box(*obj) for obj in record.objects]
            size = record.size or _image_size(image)
            line = detection_line(
                ref, size, boxes, class_ids, created=created, attribute=attribute or BOX_ATTRIBUTE, job_name=job_name
            )
        result.entries.append(Entry(image, key, line))
    return result


def _voc_box(name: str, xmin: float, ymin: float, xmax: float, ymax: float) -> Box:
    # 1-based inclusive pixel indices -> 0-based edges (see the module docstring).
    return Box(name, xmin - 1, ymin - 1, xmax - xmin + 1, ymax - ymin + 1)


def _voc_xml_files(root: Path, split: str | None, warnings: list[str]) -> list[Path]:
    annotations = next((d for d in (root / "Annotations", root / "annotations") if d.is_dir()), None)
    if split:
        listing = root / "ImageSets" / "Main" / f"{split}.txt"
        if listing.is_file():
            return _listed_xml_files(listing, annotations or root, warnings)
        if (root / split).is_dir():
            root, annotations = root / split, None
        else:
            raise ConversionError(f"no split {split!r}: neither {listing} nor the folder {root / split} exists")
    if annotations is not None:
        return sorted(annotations.glob("*.xml"))
    return [path for path in files_under(root) if path.suffix.lower() == ".xml"]


def _listed_xml_files(listing: Path, folder: Path, warnings: list[str]) -> list[Path]:
    """The XML files an ImageSets list names (first word of each line, VOC style)."""
    files = []
    for line in listing.read_text().splitlines():
        if not line.strip():
            continue
        xml = folder / f"{line.split()[0]}.xml"
        if xml.is_file():
            files.append(xml)
        else:
            warnings.append(f"skipped {line.split()[0]} listed in {listing.name}: no {xml.name} in {folder}")
    return files


def _parse_voc(xml: Path, warnings: list[str]) -> VocRecord | None:
    try:
        tree = ET.parse(xml).getroot()
    except ET.ParseError as exc:
        warnings.append(f"skipped {xml.name}: not valid XML ({exc})")
        return None
    if tree.tag != "annotation":
        warnings.append(f"skipped {xml.name}: not a Pascal VOC annotation (root element <{tree.tag}>)")
        return None
    objects = []
    for index, obj in enumerate(tree.iter("object")):
        parsed = _voc_object(obj)
        if parsed is None:
            # Unreadable, not merely bad: there is no box to pass on to the server.
            warnings.append(f"{xml.name}: object {index + 1} has no name or no numeric bndbox; left out")
        else:
            objects.append(parsed)
    filename = (tree.findtext("filename") or "").strip().replace("\\", "/").rsplit("/", 1)[-1]
    return VocRecord(xml, filename, _voc_size(tree), objects)


def _voc_object(obj: ET.Element) -> tuple[str, float, float, float, float] | None:
    name = (obj.findtext("name") or "").strip()
    box = obj.find("bndbox")
    if not name or box is None:
        return None
    try:
        xmin, ymin, xmax, ymax = (float(box.findtext(tag) or "") for tag in ("xmin", "ymin", "xmax", "ymax"))
    except ValueError:
        return None
    return name, xmin, ymin, xmax, ymax


def _voc_size(tree: ET.Element) -> tuple[int, int, int] | None:
    """(width, height, depth) from <size>, or None when missing or zero (then we look)."""
    size = tree.find("size")
    if size is None:
        return None
    try:
        width, height = int(float(size.findtext("width") or 0)), int(float(size.findtext("height") or 0))
        depth = int(float(size.findtext("depth") or 0))
    except ValueError:
        return None
    if width <= 0 or height <= 0 or depth <= 0:
        return None
    return width, height, depth


def _find_voc_image(xml: Path, filename: str, root: Path) -> Path | None:
    folders = []
    for folder in (xml.parent, xml.parent.parent / "JPEGImages", xml.parent.parent / "images",
                   root / "JPEGImages", root / "images", root):
        if folder.is_dir() and folder not in folders:
            folders.append(folder)
    if filename:
        for folder in folders:
            if (folder / filename).is_file():
                return folder / filename
    # The filename field is often stale (renamed files); fall back to the XML's stem.
    stems = [xml.stem] + ([Path(filename).stem] if filename else [])
    for folder in folders:
        for stem in stems:
            for suffix in IMAGE_SUFFIXES + tuple(s.upper() for s in IMAGE_SUFFIXES):
                if (folder / f"{stem}{suffix}").is_file():
                    return folder / f"{stem}{suffix}"
    return None


def _image_problem(image: Path | None, seen: set[Path]) -> str | None:
    if image is None:
        return "no image found for it"
    if image.suffix.lower() not in IMAGE_SUFFIXES:
        return f"{image.name} is not a .jpg, .jpeg or .png image"
    if image in seen:
        return f"{image.name} is already described by another annotation file"
    return None


def _image_size(image: Path) -> tuple[int, int, int]:
    """Read (width, height, depth) from the file's header; the pixels are not decoded."""
    with Image.open(image) as opened:
        return opened.width, opened.height, len(opened.getbands())


def _class_ids(names: Iterable[str]) -> dict[str, int]:
    return {name: index for index, name in enumerate(sorted(set(names)))}


# --- (c) COCO -----------------------------------------------------------------------


def coco_detection(
    annotations_file: str | Path,
    images_dir: str | Path,
    *,
    bucket: str,
    prefix: str = "",
    as_labels: bool = False,
    attribute: str | None = None,
    job_name: str | None = None,
    now: datetime | None = None,
) -> Conversion:
    """COCO detection JSON (``images``, ``annotations`` with ``bbox: [x, y, w, h]``,
    ``categories``) to detection lines, or image-level labels with ``as_labels``.

    Each image's ``file_name`` is read relative to ``images_dir`` and becomes its key
    under ``prefix``. ``width``/``height`` come from the JSON (from the file when
    missing or zero); the depth always comes from the file's header. Crowd
    annotations are passed on like any other box.
    """
    images_dir = _existing_dir(images_dir)
    coco = _load_coco(Path(annotations_file))
    prefix, created = normalize_prefix(prefix), creation_date(now)
    result = Conversion()

    category_names = _coco_categories(coco)
    # Dense ids in category-id order; a name used by two categories is one class.
    class_ids: dict[str, int] = {}
    for name in category_names.values():
        class_ids.setdefault(name, len(class_ids))
    boxes_by_image = _coco_boxes(coco, category_names, result.warnings)

    for image_info in coco["images"]:
        file_name = str(image_info.get("file_name", "")).replace("\\", "/").lstrip("/")
        image = images_dir / file_name
        if not file_name or not image.is_file():
            result.warnings.append(f"skipped image {image_info.get('id')}: no file {file_name!r} in {images_dir}")
            continue
        if image.suffix.lower() not in IMAGE_SUFFIXES:
            result.warnings.append(f"skipped {file_name}: not a .jpg, .jpeg or .png image")
            continue
        boxes = boxes_by_image.get(image_info.get("id"), [])
        key = prefix + file_name
        ref = source_ref(bucket, key)
        if as_labels:
            names = [box.class_name for box in boxes]
            line = labels_line(ref, names, created=created, attribute=attribute, job_name=job_name)
        else:
            line = detection_line(
                ref, _coco_size(image_info, image), boxes, class_ids,
                created=created, attribute=attribute or BOX_ATTRIBUTE, job_name=job_name,
            )
        result.entries.append(Entry(image, key, line))
    return result


def _load_coco(path: Path) -> dict:
    try:
        coco = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConversionError(f"{path} does not exist") from None
    except ValueError as exc:
        raise ConversionError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(coco, dict):
        raise ConversionError(f"{path} is not COCO detection JSON: the top level is not an object")
    missing = [k for k in ("images", "annotations", "categories") if not isinstance(coco.get(k), list)]
    if missing:
        raise ConversionError(f"{path} is not COCO detection JSON: no {', '.join(missing)} list")
    return coco


def _coco_categories(coco: dict) -> dict:
    """Category id -> name, in id order."""
    try:
        return {c["id"]: str(c["name"]) for c in sorted(coco["categories"], key=lambda c: c["id"])}
    except (KeyError, TypeError) as exc:
        raise ConversionError(f"COCO categories need an id and a name each ({exc!r})") from None


def _coco_boxes(coco: dict, category_names: dict, warnings: list[str]) -> dict[object, list[Box]]:
    boxes: dict[object, list[Box]] = {}
    for ann in coco["annotations"]:
        bbox = ann.get("bbox")
        name = category_names.get(ann.get("category_id"))
        if name is None or not isinstance(bbox, list) or len(bbox) != 4:
            warnings.append(f"annotation {ann.get('id')}: unknown category or no [x, y, w, h] bbox; left out")
            continue
        boxes.setdefault(ann.get("image_id"), []).append(Box(name, *bbox))
    return boxes


def _coco_size(image_info: dict, image: Path) -> tuple[int, int, int]:
    width, height, depth = _image_size(image)
    if image_info.get("width") and image_info.get("height"):
        width, height = int(image_info["width"]), int(image_info["height"])
    return width, height, depth


# --- (d) YOLO (Ultralytics) -----------------------------------------------------------

YOLO_CLASS_FILES = ("data.yaml", "data.yml", "dataset.yaml", "classes.txt")


def yolo_detection(
    root: str | Path,
    *,
    bucket: str,
    prefix: str = "",
    split: str | None = None,
    as_labels: bool = False,
    attribute: str | None = None,
    job_name: str | None = None,
    now: datetime | None = None,
) -> Conversion:
    """Ultralytics YOLO labels to detection lines (or image-level labels with ``as_labels``).

    Layout (Ultralytics' own): ``data.yaml`` names the classes (``names:`` as a
    list or an ``{id: name}`` map; ``classes.txt``, one name a line, also
    works); each image ``.../images/<sub>/x.jpg`` has its labels in
    ``.../labels/<sub>/x.txt`` (the last ``images`` folder becomes ``labels``;
    an image outside any ``images`` folder has ``x.txt`` beside it). A label
    line is ``class cx cy w h``, all but the class relative to the image's
    width and height (a segmentation polygon, ``class x1 y1 x2 y2 ...``,
    becomes its bounding box). An image without a label file has no objects.
    ``split`` picks the images data.yaml lists under that key (a folder, a
    ``.txt`` list of images, or a list of either), else ``images/<split>``.
    Boxes become pixels of the image (its header gives the size) and are not
    clamped; class ids keep YOLO's numbering.
    """
    root = _existing_dir(root)
    prefix, created = normalize_prefix(prefix), creation_date(now)
    result = Conversion()
    config = _yolo_config(root)
    names = _yolo_names(root, config)
    class_ids = {name: index for index, name in enumerate(names)}
    for image in _yolo_images(root, config, split, result.warnings):
        size = _image_size(image)
        boxes = _yolo_boxes(_yolo_label_file(image), names, size, result.warnings)
        key = prefix + image.relative_to(root).as_posix()
        ref = source_ref(bucket, key)
        if as_labels:
            line = labels_line(ref, [box.class_name for box in boxes], created=created, attribute=attribute, job_name=job_name)
        else:
            line = detection_line(ref, size, boxes, class_ids, created=created,
                                  attribute=attribute or BOX_ATTRIBUTE, job_name=job_name)
        result.entries.append(Entry(image, key, line))
    return result


def _yolo_config(root: Path) -> dict:
    import yaml

    for name in YOLO_CLASS_FILES[:3]:
        if (root / name).is_file():
            try:
                config = yaml.safe_load((root / name).read_text())
            except yaml.YAMLError as exc:
                raise ConversionError(f"{root / name} is not valid YAML: {exc}") from None
            if not isinstance(config, dict):
                raise ConversionError(f"{root / name} is not a YOLO dataset file: its top level is not a mapping")
            return config
    return {}


def _yolo_names(root: Path, config: dict) -> list[str]:
    names = config.get("names")
    if isinstance(names, dict):
        try:
            ordered = sorted((int(k), str(v)) for k, v in names.items())
        except ValueError:
            raise ConversionError("data.yaml names: the keys of a names map must be class numbers") from None
        if [k for k, _ in ordered] != list(range(len(ordered))):
            raise ConversionError("data.yaml names: class numbers must run 0, 1, 2 ... without gaps")
        return [v for _, v in ordered]
    if isinstance(names, list) and names:
        return [str(n) for n in names]
    if (root / "classes.txt").is_file():
        listed = [line.strip() for line in (root / "classes.txt").read_text().splitlines() if line.strip()]
        if listed:
            return listed
    raise ConversionError(f"{root} has no class names: add data.yaml with names: [...] (or classes.txt)")


def _yolo_images(root: Path, config: dict, split: str | None, warnings: list[str]) -> list[Path]:
    if split is None:
        base = root / "images" if (root / "images").is_dir() else root
        return [p for p in files_under(base) if p.suffix.lower() in IMAGE_SUFFIXES and "labels" not in p.relative_to(root).parts]
    listed = config.get(split)
    if listed is None:
        if (root / "images" / split).is_dir():
            listed = f"images/{split}"
        else:
            raise ConversionError(f"no split {split!r}: data.yaml has no {split}: and there is no folder {root / 'images' / split}")
    # data.yaml's path: is where it was written; the folder it sits in is where it is now.
    base = root
    images: list[Path] = []
    for item in listed if isinstance(listed, list) else [listed]:
        where = base / str(item)
        if where.is_dir():
            images += [p for p in files_under(where) if p.suffix.lower() in IMAGE_SUFFIXES]
        elif where.is_file() and where.suffix == ".txt":
            for name in filter(None, (line.strip() for line in where.read_text().splitlines())):
                image = base / name.removeprefix("./")
                if image.is_file() and ".." not in image.relative_to(root).parts:
                    images.append(image)
                else:
                    warnings.append(f"skipped {name} listed in {where.name}: no such image under {root}")
        else:
            raise ConversionError(f"split {split!r}: {where} is neither a folder nor a .txt list of images")
    return images


def _yolo_label_file(image: Path) -> Path:
    parts = list(image.parts)
    if "images" in parts:
        index = len(parts) - 1 - parts[::-1].index("images")
        parts[index] = "labels"
    return Path(*parts).with_suffix(".txt")


def _yolo_boxes(label_file: Path, names: list[str], size: tuple[int, int, int], warnings: list[str]) -> list[Box]:
    if not label_file.is_file():
        return []
    width, height, _ = size
    boxes = []
    for number, text in enumerate(label_file.read_text().splitlines(), start=1):
        fields = text.split()
        if not fields:
            continue
        try:
            class_id, values = int(fields[0]), [float(v) for v in fields[1:]]
        except ValueError:
            warnings.append(f"{label_file.name} line {number}: not 'class cx cy w h' numbers; left out")
            continue
        if class_id < 0 or class_id >= len(names):
            warnings.append(f"{label_file.name} line {number}: class {class_id} is not among the {len(names)} names; left out")
            continue
        if len(values) == 4:
            cx, cy, w, h = values
            left, top = cx - w / 2, cy - h / 2
        elif len(values) >= 6 and len(values) % 2 == 0:  # a polygon: its bounding box
            xs, ys = values[0::2], values[1::2]
            left, top, w, h = min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)
        else:
            warnings.append(f"{label_file.name} line {number}: expected 4 box values or a polygon; left out")
            continue
        boxes.append(Box(names[class_id], left * width, top * height, w * width, h * height))
    return boxes


# --- manifests as text --------------------------------------------------------------


def manifest_key(prefix: str, now: datetime | None = None) -> str:
    """Where an import keeps its manifest: beside its images, one new key per import."""
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{prefix}manifests/{stamp}.manifest"


def to_jsonl(lines: Iterable[dict]) -> bytes:
    """A manifest file's bytes: one compact JSON object per line, newline-terminated."""
    return b"".join(_encode(line) for line in lines)


def chunk_jsonl(lines: Iterable[dict], max_bytes: int = MAX_CHUNK_BYTES) -> Iterator[bytes]:
    """JSON Lines blobs of at most ``max_bytes`` each, never splitting a line."""
    chunk, size = [], 0
    for line in lines:
        encoded = _encode(line)
        if len(encoded) > max_bytes:
            raise ConversionError(f"one manifest line is {len(encoded)} bytes, over the {max_bytes} byte limit")
        if size + len(encoded) > max_bytes:
            yield b"".join(chunk)
            chunk, size = [], 0
        chunk.append(encoded)
        size += len(encoded)
    if chunk:
        yield b"".join(chunk)


def _encode(line: dict) -> bytes:
    return (json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def label_counts(lines: Iterable[dict]) -> Counter:
    """Per class: images carrying it as a label, plus boxes of it (a summary for humans)."""
    counts: Counter = Counter()
    for line in lines:
        for attribute, value in line.items():
            if not attribute.endswith("-metadata") or not isinstance(value, dict):
                continue
            if value.get("type") == CLASSIFICATION_TYPE:
                counts[value.get("class-name")] += 1
            elif value.get("type") == DETECTION_TYPE:
                names = value.get("class-map", {})
                box_attribute = line.get(attribute.removesuffix("-metadata"), {})
                for ann in box_attribute.get("annotations", []):
                    counts[names.get(str(ann.get("class_id")))] += 1
    return counts
