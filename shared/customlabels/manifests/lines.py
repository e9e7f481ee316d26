"""Validate one SageMaker Ground Truth manifest line as the reference does.

Pure functions, no I/O. Two steps:

1. :func:`parse_line` applies the *terminal* checks. A line that is not a JSON
   object (blank, not UTF-8, over ``MAX_LINE_CHARS`` characters, ``NaN``...),
   has no ``source-ref``, or whose ``source-ref`` is not ``s3://bucket/key``
   becomes a :class:`RejectedLine`: it is not stored and counts as invalid.
   Error and warning arrays left by an earlier export (ListDatasetEntries) are
   stripped here, so exported lines re-import unchanged.
2. :func:`validate_line` applies the *non-terminal* checks and returns the
   :class:`Entry` to store, with every problem embedded where the reference
   puts it: image-level in a top-level ``errors`` array, label attribute
   metadata problems in ``<attr>-metadata.errors``, label attribute problems in
   ``<attr>.errors``, box problems in ``<attr>.annotations[i].errors``;
   warnings likewise in ``warnings`` arrays.

Choices where the reference is silent or ambiguous:

* A ``source-ref`` seen again later in a manifest: the later line wins. The
  caller dedupes (see ``manifest.dedupe_by_source_ref``); superseded lines are
  neither valid nor invalid.
* Messages are the reference's text; a detail sentence is appended where it
  helps (``message.startswith(reference_text)`` always holds).
* Classification ``confidence`` is checked (a number in 0..1) only when
  present: the reference's docs call it required, but real SageMaker output
  (the birds manifest) omits it, and the reference says it is unused.
  ``creation-date`` must be a non-empty string; its exact ISO form is not
  checked (the reference's own examples mix ``T`` and space separators).
* ``groundtruth/image-classification-multilabel`` (SageMaker's multi-label
  job) is accepted: the attribute is a list of class ids, ``class-map`` names
  them, each becomes an image-level label.
* Where a problem belongs to something that cannot hold an ``errors`` array
  (an integer or list label attribute, metadata that is not an object), it goes
  to the image-level ``errors``, naming the attribute.
* A malformed annotation (no integer ``class_id``, a non-numeric coordinate)
  gets ERROR_INVALID_LABEL_ATTRIBUTE_FORMAT in that annotation; the other boxes
  stay usable. ERROR_MISSING_CLASS_MAP_ID and ERROR_INVALID_LABEL_NAME_LENGTH
  of a box's class are reported in the box too. A missing box confidence is
  reported once, in the metadata, listing the boxes; those boxes are unusable.
* A box is checked against the real image size when the caller knows it, else
  against ``image_size``; a millionth of a pixel of float noise is tolerated.
  ERROR_INVALID_BOUNDING_BOX (negative or off frame) takes precedence over
  ERROR_BOUNDING_BOX_TOO_SMALL (a side not over 1 px once an image whose longer
  side exceeds 1280 px is scaled down to 1280).
* ERROR_TOO_MANY_BOUNDING_BOXES counts every annotation on the line (valid or
  not, all detection attributes); the line is kept but unusable.
* More than 50 distinct labels on one image: ERROR_TOO_MANY_LABELS_IN_IMAGE, a
  code of ours (the reference documents the limit, not a code); line unusable.
* An object-detection attribute with an empty ``annotations`` list is valid:
  WARNING_NO_ATTRIBUTE_ANNOTATIONS on the attribute and, when the line ends up
  with no label at all, WARNING_NO_ANNOTATIONS at the top, as the reference's
  example shows. Such a line is ``labeled`` (a human looked and found nothing)
  but has no labels and is not used for training ("ignored").
* Keys with no ``-metadata`` partner (or metadata with no attribute) get
  ERROR_NO_LABEL_ATTRIBUTES each. If no label attribute of the line is valid,
  ERROR_NO_VALID_LABEL_ATTRIBUTES follows and the line is unusable. A line
  with nothing but ``source-ref`` is a valid unlabeled entry, with no warning.
* Unusable lines (``Entry.invalid``: a code of ``codes.LINE_FATAL_CODES`` at
  image level) are stored with their errors but give no labels and no boxes.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field

from customlabels.ports.blobs import split_s3_uri

from . import codes as c
from .limits import (
    FRAME_TOLERANCE,
    MAX_BOXES_PER_IMAGE,
    MAX_LABEL_NAME_LENGTH,
    MAX_LABELS_PER_IMAGE,
    MAX_LINE_CHARS,
    MIN_BOX_SIDE,
    TRAINING_MAX_SIDE,
)

SOURCE_REF = "source-ref"
METADATA_SUFFIX = "-metadata"

CLASSIFICATION_TYPE = "groundtruth/image-classification"
MULTILABEL_TYPE = "groundtruth/image-classification-multilabel"
DETECTION_TYPE = "groundtruth/object-detection"

CLASSIFICATION = "classification"
DETECTION = "detection"
MIXED = "mixed"

# Where a validation report lives; removed before validating so that exported
# lines re-import unchanged. "cl-errors"/"cl-metadata" are what some reference
# exports carry instead (see its ERROR_UNSUPPORTED_USE_CASE_TYPE example).
_REPORT_KEYS = ("errors", "warnings", "cl-errors")
_TOP_REPORT_KEYS = (*_REPORT_KEYS, "cl-metadata")



# --------------------------------------------------------------------------
# Public types
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class RejectedLine:
    """A line that failed a terminal check: not stored, counted as invalid."""
    line_number: int  # 1-based
    code: str
    message: str


@dataclass(frozen=True)
class ParsedLine:
    """A line that passed the terminal checks."""
    line_number: int
    source_ref: str
    bucket: str
    key: str
    data: dict  # the JSON object, earlier errors/warnings stripped; never mutated afterwards


@dataclass(frozen=True)
class ImageCheck:
    """What the caller learned about the image (customlabels.images)."""
    width: int | None = None
    height: int | None = None
    error_code: str | None = None  # ERROR_INVALID_IMAGE / ERROR_INVALID_IMAGE_DIMENSION
    error_message: str | None = None


@dataclass(frozen=True)
class Entry:
    """What gets stored for one image."""
    source_ref: str
    line: dict                      # as ListDatasetEntries returns it: errors/warnings embedded
    labels: tuple[str, ...]         # distinct usable labels (image-level + classes of valid boxes), sorted
    bounding_boxes: dict[str, int]  # label -> number of valid boxes
    labeled: bool                   # at least one valid label attribute (an empty detection one counts)
    has_errors: bool                # any ERROR_* anywhere in the line
    task: str | None                # "classification" | "detection" | "mixed" | None (unlabeled)
    invalid: bool = False           # unusable for training: a LINE_FATAL_CODES error at image level
    image_labels: tuple[str, ...] = ()  # the image-level labels alone (classification attributes)
    boxes: tuple[tuple[str, float, float, float, float], ...] = ()  # valid boxes: label, left, top, width, height (px)
    image_size: tuple[float, float] | None = None  # width, height the boxes are measured in


# --------------------------------------------------------------------------
# Step 1: terminal checks
# --------------------------------------------------------------------------

def parse_line(raw: str | bytes, line_number: int) -> ParsedLine | RejectedLine:
    """Apply the terminal checks to one manifest line (without or with its line break)."""
    text = _decode(raw)
    if text is None:
        return _reject(line_number, c.ERROR_INVALID_JSON_LINE, "The line is not valid UTF-8.")
    if len(text) > MAX_LINE_CHARS:
        return _reject(line_number, c.ERROR_INVALID_JSON_LINE,
                       f"The line has {len(text)} characters; the maximum is {MAX_LINE_CHARS}.")
    if not text.strip():
        return _reject(line_number, c.ERROR_INVALID_JSON_LINE, "The line is blank.")
    try:
        data = _DECODER.decode(text)
    except (ValueError, RecursionError) as exc:
        return _reject(line_number, c.ERROR_INVALID_JSON_LINE, _json_detail(exc))
    if not isinstance(data, dict):
        return _reject(line_number, c.ERROR_INVALID_JSON_LINE, "A JSON Line must be a JSON object.")

    _strip_reports(data)
    if SOURCE_REF not in data:
        return _reject(line_number, c.ERROR_MISSING_SOURCE_REF)
    source_ref = data[SOURCE_REF]
    location = split_s3_uri(source_ref)
    if location is None:
        return _reject(line_number, c.ERROR_INVALID_SOURCE_REF_FORMAT, 'Expected "s3://bucket/key".')
    return ParsedLine(line_number, source_ref, *location, data)


def _decode(raw: str | bytes) -> str | None:
    if isinstance(raw, (bytes, bytearray, memoryview)):
        try:
            raw = bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            return None
    # A BOM is what Windows editors put first; it carries no meaning.
    return raw.rstrip("\r\n").removeprefix("\ufeff")


def _reject_constant(name: str) -> None:
    # Python's json accepts NaN and Infinity; JSON does not.
    raise ValueError(f"{name} is not valid JSON.")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)  # built once: json.loads(..., kw) rebuilds it per call


def _json_detail(exc: BaseException) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at character {exc.pos + 1}."
    if isinstance(exc, RecursionError):
        return "The JSON is nested too deeply."
    return str(exc)


def _reject(line_number: int, code: str, detail: str | None = None) -> RejectedLine:
    return RejectedLine(line_number, code, c.message(code, detail))


def _strip_reports(data: dict) -> None:
    """Remove errors/warnings embedded by an earlier validation, everywhere we put them."""
    for key in _TOP_REPORT_KEYS:
        # "cl-metadata" is the reference's bookkeeping unless it belongs to an attribute "cl".
        if key in data and not (key == "cl-metadata" and "cl" in data):
            del data[key]
    for value in data.values():
        if not isinstance(value, dict):
            continue
        for key in _REPORT_KEYS:
            value.pop(key, None)
        annotations = value.get("annotations")
        if isinstance(annotations, list):
            for annotation in annotations:
                if isinstance(annotation, dict):
                    for key in _REPORT_KEYS:
                        annotation.pop(key, None)


# --------------------------------------------------------------------------
# Step 2: non-terminal checks
# --------------------------------------------------------------------------

@dataclass
class _Attribute:
    """What one label attribute contributes to its line."""
    kind: str                     # CLASSIFICATION or DETECTION
    valid: bool
    labels: list[str] = field(default_factory=list)
    boxes: dict[str, int] = field(default_factory=dict)  # label -> valid boxes
    annotation_count: int = 0     # every annotation listed, for the 50-box limit
    box_list: list[tuple[str, float, float, float, float]] = field(default_factory=list)  # valid boxes, pixels
    frame: tuple[float, float] | None = None  # the image size the boxes are relative to


def validate_line(parsed: ParsedLine, image: ImageCheck | None = None) -> Entry:
    """Check a parsed line's labels; return the entry to store, problems embedded."""
    data = parsed.data
    report = _Report(data)
    if image is not None and image.error_code:
        # Whatever the caller found wrong with the image makes the line unusable.
        report.image_error(image.error_code, message=image.error_message, fatal=True)

    names, orphans = _pair_attributes(data)
    for key in orphans:
        report.image_error(c.ERROR_NO_LABEL_ATTRIBUTES, _orphan_detail(key))
    frame = _known_frame(image)
    attributes = [a for a in (_validate_attribute(name, data, report, frame) for name in names) if a]
    valid = [a for a in attributes if a.valid]

    labels: set[str] = set()
    image_labels: set[str] = set()
    boxes: dict[str, int] = {}
    box_list: list[tuple[str, float, float, float, float]] = []
    image_size = frame
    for attribute in valid:
        labels.update(attribute.labels)
        if attribute.kind == CLASSIFICATION:
            image_labels.update(attribute.labels)
        for label, count in attribute.boxes.items():
            boxes[label] = boxes.get(label, 0) + count
        box_list.extend(attribute.box_list)
        image_size = image_size or attribute.frame
    _check_line_limits(report, names, orphans, valid, attributes, labels)

    invalid = report.fatal
    if valid and not labels and not invalid:
        report.image_warning(c.WARNING_NO_ANNOTATIONS)
    return Entry(
        source_ref=parsed.source_ref,
        line=report.render(),
        labels=() if invalid else tuple(sorted(labels)),
        bounding_boxes={} if invalid else dict(sorted(boxes.items())),
        labeled=bool(valid),
        has_errors=report.error_count > 0,
        task=_task({a.kind for a in valid}),
        invalid=invalid,
        image_labels=() if invalid else tuple(sorted(image_labels)),
        boxes=() if invalid else tuple(box_list),
        image_size=image_size,
    )


def _pair_attributes(data: dict) -> tuple[list[str], list[str]]:
    """Label attribute names (each with its -metadata), and keys lacking a partner."""
    names, orphans = [], []
    for key in data:
        if key == SOURCE_REF:
            continue
        if key.endswith(METADATA_SUFFIX):
            base = key[: -len(METADATA_SUFFIX)]
            if base in data and base != SOURCE_REF:
                continue  # handled with its attribute
        if key + METADATA_SUFFIX in data:
            names.append(key)
        else:
            orphans.append(key)
    return names, orphans


def _orphan_detail(key: str) -> str:
    if key.endswith(METADATA_SUFFIX):
        return f'"{key}" has no "{key[: -len(METADATA_SUFFIX)]}" label attribute.'
    return f'"{key}" has no "{key}{METADATA_SUFFIX}".'


def _known_frame(image: ImageCheck | None) -> tuple[float, float] | None:
    if image is not None and (image.width or 0) > 0 and (image.height or 0) > 0:
        return image.width, image.height
    return None


def _check_line_limits(report, names, orphans, valid, attributes, labels) -> None:
    if (names or orphans) and not valid:
        report.image_error(c.ERROR_NO_VALID_LABEL_ATTRIBUTES)
    box_count = sum(a.annotation_count for a in attributes)
    if box_count > MAX_BOXES_PER_IMAGE:
        report.image_error(c.ERROR_TOO_MANY_BOUNDING_BOXES,
                           f"The image has {box_count} bounding boxes; the maximum is {MAX_BOXES_PER_IMAGE}.")
    if len(labels) > MAX_LABELS_PER_IMAGE:
        report.image_error(c.ERROR_TOO_MANY_LABELS_IN_IMAGE,
                           f"The image has {len(labels)} labels; the maximum is {MAX_LABELS_PER_IMAGE}.")


def _task(kinds: set[str]) -> str | None:
    if len(kinds) > 1:
        return MIXED
    return next(iter(kinds), None)


# --- one label attribute ------------------------------------------------------

def _validate_attribute(name: str, data: dict, report: _Report, frame) -> _Attribute | None:
    """Validate ``name`` and ``name-metadata``; None when the type can't even be told."""
    meta_key = name + METADATA_SUFFIX
    meta = data[meta_key]
    if not isinstance(meta, dict):
        report.meta_error(name, c.ERROR_INVALID_LABEL_ATTRIBUTE_METADATA_FORMAT, "It must be a JSON object.")
        return None
    use_case = meta.get("type")
    if not isinstance(use_case, str):
        report.meta_error(name, c.ERROR_INVALID_LABEL_ATTRIBUTE_METADATA_FORMAT, "The type field is missing.")
        return None
    validator = _VALIDATORS.get(use_case)
    if validator is None:
        report.meta_error(name, c.ERROR_UNSUPPORTED_USE_CASE_TYPE, metadata=meta_key)
        return None

    # Format problems of the metadata are gathered into one error per metadata.
    problems = _common_metadata_problems(meta)
    attribute = validator(name, data[name], meta, report, frame, problems)
    if problems:
        report.meta_error(name, c.ERROR_INVALID_LABEL_ATTRIBUTE_METADATA_FORMAT, " ".join(problems))
        attribute.valid = False
    return attribute


def _common_metadata_problems(meta: dict) -> list[str]:
    problems = []
    if meta.get("human-annotated") not in ("yes", "no"):
        problems.append('human-annotated must be "yes" or "no".')
    date = meta.get("creation-date")
    if not (isinstance(date, str) and date):
        problems.append("creation-date is missing.")
    return problems


def _classification(name, value, meta, report, frame, problems) -> _Attribute:
    """``groundtruth/image-classification``: one image-level label per attribute."""
    attribute = _Attribute(CLASSIFICATION, valid=True)
    if type(value) is not int:
        report.attr_error(name, c.ERROR_INVALID_LABEL_ATTRIBUTE_FORMAT, "An image-level label attribute is an integer.")
        attribute.valid = False
    if "confidence" in meta and not _is_confidence(meta["confidence"]):
        problems.append("confidence must be a number from 0 to 1.")
    label = meta.get("class-name")
    if not isinstance(label, str):
        problems.append("class-name is missing or not a string.")
        attribute.valid = False
    elif not _name_length_ok(label):
        report.meta_error(name, c.ERROR_INVALID_LABEL_NAME_LENGTH, f"class-name has {len(label)} characters.")
        attribute.valid = False
    else:
        attribute.labels.append(label)
    return attribute


def _multilabel(name, value, meta, report, frame, problems) -> _Attribute:
    """SageMaker's ``groundtruth/image-classification-multilabel``: a list of class ids."""
    attribute = _Attribute(CLASSIFICATION, valid=False)
    class_map = _class_map(meta, problems)
    confidences = meta.get("confidence-map")
    if confidences is not None and not (
        isinstance(confidences, dict) and all(_is_confidence(v) for v in confidences.values())
    ):
        problems.append("confidence-map must map class ids to numbers from 0 to 1.")
    if not (isinstance(value, list) and all(type(v) is int for v in value)):
        report.attr_error(name, c.ERROR_INVALID_LABEL_ATTRIBUTE_FORMAT, "A multi-label attribute is a list of class ids.")
        return attribute
    if class_map is None:
        return attribute
    if not value:
        # Annotated, nothing applies: valid, no label (the list can't hold the warning).
        report.meta_warning(name, c.WARNING_NO_ATTRIBUTE_ANNOTATIONS)
        attribute.valid = True
        return attribute

    missing, too_long = [], []
    for class_id in value:
        label = class_map.get(str(class_id))
        if label is None:
            missing.append(class_id)
        elif not _name_length_ok(label):
            too_long.append(class_id)
        elif label not in attribute.labels:
            attribute.labels.append(label)
    if missing:
        report.meta_error(name, c.ERROR_MISSING_CLASS_MAP_ID, f"Class ids not in class-map: {missing}.")
    if too_long:
        report.meta_error(name, c.ERROR_INVALID_LABEL_NAME_LENGTH, f"Class ids with such names: {too_long}.")
    attribute.valid = bool(attribute.labels)
    return attribute


def _detection(name, value, meta, report, frame, problems) -> _Attribute:
    """``groundtruth/object-detection``: bounding boxes, each checked on its own."""
    attribute = _Attribute(DETECTION, valid=False)
    class_map = _class_map(meta, problems)
    objects = meta.get("objects")
    if not isinstance(objects, list):
        problems.append("objects must be a list with one {confidence} per annotation.")
    if not isinstance(value, dict):
        report.attr_error(name, c.ERROR_INVALID_LABEL_ATTRIBUTE_FORMAT, "An object-detection attribute is an object.")
        return attribute
    size = _image_size(value.get("image_size"))
    annotations = value.get("annotations")
    attr_problems = []
    if size is None:
        attr_problems.append("image_size must be a list of one {width, height, depth} with positive sizes.")
    if not isinstance(annotations, list):
        attr_problems.append("annotations must be a list.")
    else:
        attribute.annotation_count = len(annotations)
    if attr_problems:
        report.attr_error(name, c.ERROR_INVALID_LABEL_ATTRIBUTE_FORMAT, " ".join(attr_problems))
        return attribute
    if class_map is None or not isinstance(objects, list):
        return attribute
    if not annotations:
        report.attr_warning(name, c.WARNING_NO_ATTRIBUTE_ANNOTATIONS)
        attribute.valid = True
        return attribute

    attribute.frame = frame or size
    boxes = _Boxes(name, report, attribute.frame, class_map, objects)
    for index, annotation in enumerate(annotations):
        label = boxes.check(index, annotation)
        if label is not None:
            attribute.boxes[label] = attribute.boxes.get(label, 0) + 1
            attribute.box_list.append((label, *(float(annotation[k]) for k in ("left", "top", "width", "height"))))
    boxes.report_confidences()
    if not attribute.boxes:
        report.attr_error(name, c.ERROR_NO_VALID_ANNOTATIONS)
        return attribute
    attribute.labels.extend(attribute.boxes)
    attribute.valid = True
    return attribute


_VALIDATORS = {
    CLASSIFICATION_TYPE: _classification,
    MULTILABEL_TYPE: _multilabel,
    DETECTION_TYPE: _detection,
}


class _Boxes:
    """Checks the annotations of one detection attribute against one frame."""

    def __init__(self, name: str, report: _Report, frame, class_map: dict, objects: list):
        self.name, self.report, self.class_map, self.objects = name, report, class_map, objects
        self.width, self.height = frame
        longer = max(self.width, self.height)
        # Training scales the image down so its longer side is TRAINING_MAX_SIDE.
        self.scale = TRAINING_MAX_SIDE / longer if longer > TRAINING_MAX_SIDE else 1.0
        self.missing_confidence: list[int] = []
        self.bad_confidence: list[int] = []

    def check(self, index: int, annotation) -> str | None:
        """The label of a valid box; None (with errors reported) otherwise."""
        if not isinstance(annotation, dict):
            self.report.attr_error(self.name, c.ERROR_INVALID_LABEL_ATTRIBUTE_FORMAT,
                                   f"annotations[{index}] is not an object.")
            return None
        get = annotation.get
        class_id, left, top, width, height = get("class_id"), get("left"), get("top"), get("width"), get("height")
        if type(class_id) is not int or not (
            _is_number(left) and _is_number(top) and _is_number(width) and _is_number(height)
        ):
            self._error(index, c.ERROR_INVALID_LABEL_ATTRIBUTE_FORMAT,
                        "An annotation has an integer class_id and numeric left, top, width and height.")
            return None
        label_ok = self._check_label(index, class_id)
        confidence_ok = self._check_confidence(index)
        geometry_ok = self._check_geometry(index, left, top, width, height)
        if label_ok and confidence_ok and geometry_ok:
            return self.class_map[str(class_id)]
        return None

    def _check_label(self, index: int, class_id: int) -> bool:
        label = self.class_map.get(str(class_id))
        if label is None:
            self._error(index, c.ERROR_MISSING_CLASS_MAP_ID, f"class_id {class_id} is not in class-map.")
            return False
        if not _name_length_ok(label):
            self._error(index, c.ERROR_INVALID_LABEL_NAME_LENGTH, f"The name of class_id {class_id} has {len(label)} characters.")
            return False
        return True

    def _check_confidence(self, index: int) -> bool:
        obj = self.objects[index] if index < len(self.objects) else None
        if not (isinstance(obj, dict) and "confidence" in obj):
            self.missing_confidence.append(index)
            return False
        if not _is_confidence(obj["confidence"]):
            self.bad_confidence.append(index)
            return False
        return True

    def _check_geometry(self, index: int, left, top, width, height) -> bool:
        if left < 0 or top < 0 or width < 0 or height < 0:
            self._error(index, c.ERROR_INVALID_BOUNDING_BOX, "The box has negative values.")
            return False
        right, bottom = left + width, top + height
        if right > self.width + FRAME_TOLERANCE or bottom > self.height + FRAME_TOLERANCE:
            self._error(index, c.ERROR_INVALID_BOUNDING_BOX,
                        f"The box reaches ({right:g}, {bottom:g}) on a {self.width:g}x{self.height:g} image.")
            return False
        if width * self.scale <= MIN_BOX_SIDE or height * self.scale <= MIN_BOX_SIDE:
            self._error(index, c.ERROR_BOUNDING_BOX_TOO_SMALL, self._too_small_detail(width, height))
            return False
        return True

    def _too_small_detail(self, width, height) -> str:
        detail = f"The box is {width:g}x{height:g} px"
        if self.scale < 1:
            detail += f", {width * self.scale:.3g}x{height * self.scale:.3g} px once the image is scaled to {TRAINING_MAX_SIDE} px"
        return detail + f"; both sides must be over {MIN_BOX_SIDE} px."

    def report_confidences(self) -> None:
        if self.missing_confidence:
            self.report.meta_error(self.name, c.ERROR_MISSING_BOUNDING_BOX_CONFIDENCE,
                                   f"Annotations without one: {self.missing_confidence}.")
        if self.bad_confidence:
            self.report.meta_error(self.name, c.ERROR_INVALID_LABEL_ATTRIBUTE_METADATA_FORMAT,
                                   f"objects confidence must be a number from 0 to 1 (annotations {self.bad_confidence}).")

    def _error(self, index: int, code: str, detail: str) -> None:
        self.report.box_error(self.name, index, code, detail)


# --- small value checks -------------------------------------------------------

_FLOAT_MAX = sys.float_info.max


def _is_number(value) -> bool:
    # bool is an int subclass in Python, but true/false are not numbers in JSON.
    # 1e999 parses to inf and 10**400 to an int no float can hold: neither is a
    # coordinate (and both would break the arithmetic). NaN fails the comparison.
    return (type(value) is int or type(value) is float) and -_FLOAT_MAX <= value <= _FLOAT_MAX


def _is_confidence(value) -> bool:
    return _is_number(value) and 0 <= value <= 1


def _name_length_ok(label: str) -> bool:
    return 1 <= len(label) <= MAX_LABEL_NAME_LENGTH


def _class_map(meta: dict, problems: list[str]) -> dict | None:
    class_map = meta.get("class-map")
    if isinstance(class_map, dict) and all(isinstance(v, str) for v in class_map.values()):
        return class_map
    problems.append("class-map must map class ids to label names.")
    return None


def _image_size(value) -> tuple[float, float] | None:
    if not (isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict)):
        return None
    size = value[0]
    width, height, depth = size.get("width"), size.get("height"), size.get("depth")
    if _is_number(width) and _is_number(height) and width > 0 and height > 0 and type(depth) is int and depth > 0:
        return width, height
    return None


# --------------------------------------------------------------------------
# The report: problems by location, then embedded into a copy of the line
# --------------------------------------------------------------------------

class _Report:
    """Errors and warnings of one line, kept by where the reference embeds them."""

    def __init__(self, data: dict):
        self.data = data
        self.image_errors: list[dict] = []
        self.image_warnings: list[dict] = []
        # key in the line -> {"errors": [...], "warnings": [...]}
        self.objects: dict[str, dict[str, list]] = {}
        # attribute name -> {annotation index -> [errors]}
        self.boxes: dict[str, dict[int, list]] = {}
        self.error_count = 0
        self.fatal = False  # the line is unusable for training

    def image_error(self, code: str, detail: str | None = None, *, message: str | None = None,
                    fatal: bool = False, **fields) -> None:
        self.image_errors.append({"code": code, "message": message or c.message(code, detail, **fields)})
        self.error_count += 1
        self.fatal = self.fatal or fatal or code in c.LINE_FATAL_CODES

    def image_warning(self, code: str, detail: str | None = None) -> None:
        self.image_warnings.append(c.problem(code, detail))

    def attr_error(self, name: str, code: str, detail: str | None = None) -> None:
        self._object_problem(name, "errors", code, detail, attribute=name)

    def attr_warning(self, name: str, code: str) -> None:
        self._object_problem(name, "warnings", code, None)

    def meta_error(self, name: str, code: str, detail: str | None = None, **fields) -> None:
        self._object_problem(name + METADATA_SUFFIX, "errors", code, detail, **fields)

    def meta_warning(self, name: str, code: str) -> None:
        self._object_problem(name + METADATA_SUFFIX, "warnings", code, None)

    def box_error(self, name: str, index: int, code: str, detail: str | None = None) -> None:
        problem = c.problem(code, detail, attribute=name)
        self.boxes.setdefault(name, {}).setdefault(index, []).append(problem)
        self.error_count += 1

    def _object_problem(self, key: str, kind: str, code: str, detail: str | None, **fields) -> None:
        if not isinstance(self.data.get(key), dict):
            # An integer or a list can't hold an array: the image level takes it, naming the key
            # (unless the reference's message names it already).
            if "{" not in c.MESSAGES.get(code, ""):
                detail = f"{key}: {detail}" if detail else f"In {key}."
            if kind == "errors":
                self.image_error(code, detail, **fields)
            else:
                self.image_warning(code, detail)
            return
        self.objects.setdefault(key, {"errors": [], "warnings": []})[kind].append(c.problem(code, detail, **fields))
        if kind == "errors":
            self.error_count += 1

    def render(self) -> dict:
        """A copy of the line with the problems embedded; only touched parts are copied."""
        line = dict(self.data)
        copied: set[str] = set()

        def own(key: str) -> dict:
            if key not in copied:
                line[key] = dict(line[key])
                copied.add(key)
            return line[key]

        for name, by_index in self.boxes.items():
            attribute = own(name)
            annotations = attribute["annotations"] = list(attribute["annotations"])
            for index, errors in by_index.items():
                annotations[index] = {**annotations[index], "errors": errors}
        for key, found in self.objects.items():
            target = own(key)
            for kind in ("errors", "warnings"):
                if found[kind]:
                    target[kind] = found[kind]
        if self.image_errors:
            line["errors"] = self.image_errors
        if self.image_warnings:
            line["warnings"] = self.image_warnings
        return line


# --------------------------------------------------------------------------
# Helpers for callers
# --------------------------------------------------------------------------

def entry_line_json(entry: Entry) -> str:
    """The entry's line as ListDatasetEntries returns it: compact JSON, key order kept."""
    return json.dumps(entry.line, ensure_ascii=False, separators=(",", ":"))


def line_problems(line: dict):
    """Yield ``(where, problem)`` for every error and warning embedded in ``line``.

    ``where`` is ``()`` for the image, ``(key,)`` for a label attribute or its
    metadata, ``(key, index)`` for a box.
    """
    for kind in ("errors", "warnings"):
        for problem in line.get(kind, ()):
            yield (), problem
    for key, value in line.items():
        if not isinstance(value, dict):
            continue
        for kind in ("errors", "warnings"):
            for problem in value.get(kind, ()):
                yield (key,), problem
        annotations = value.get("annotations")
        if isinstance(annotations, list):
            for index, annotation in enumerate(annotations):
                if isinstance(annotation, dict):
                    for problem in annotation.get("errors", ()):
                        yield (key, index), problem


def line_codes(line: dict) -> list[str]:
    """Every error and warning code embedded in ``line``, in document order."""
    return [problem["code"] for _, problem in line_problems(line)]
