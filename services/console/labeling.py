"""Manifest lines as the labeling pages see them, and the edits they make.

Pure functions, no I/O. A line is read into an ``entry view`` (its image-level
labels, its boxes in image pixels, its problems as sentences) and written back
by replacing only what the page edited:

- ``relabel`` replaces the line's image-level labels (every
  ``groundtruth/image-classification`` attribute and multi-label attribute)
  and keeps everything else (boxes, other attributes);
- ``rebox`` replaces the line's object-detection attributes with one
  ``bounding-box`` attribute holding the given boxes, and keeps the rest.

New attributes are written by the shared converters
(``customlabels.manifests.converters``: one way to write a label or a box).
A label's attribute name is derived from the label but made of safe
characters, so any label text (markup, spaces, "-metadata") can never
collide with another key of the line.
"""
from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from customlabels.manifests import ParsedLine, line_problems, parse_line, validate_line
from customlabels.manifests.lines import (
    CLASSIFICATION_TYPE,
    DETECTION_TYPE,
    METADATA_SUFFIX,
    MULTILABEL_TYPE,
)

from customlabels.manifests.converters import (
    BOX_ATTRIBUTE,
    Box,
    creation_date,
    detection_line,
    image_label,
)

REPORT_KEYS = ("errors", "warnings", "cl-errors", "cl-metadata")
LABEL_ATTRIBUTE_PREFIX = "console-label-"
JOB_NAME = "labeling-job/customlabels-console"


class LineProblem(ValueError):
    """The line sent back is not a manifest line the page could have shown."""


def _parsed(line: Any) -> ParsedLine:
    if not isinstance(line, dict):
        raise LineProblem("each change needs the entry's manifest line, as a JSON object")
    parsed = parse_line(json.dumps(line), 1)
    if not isinstance(parsed, ParsedLine):
        raise LineProblem(f"{parsed.code}: {parsed.message}")
    return parsed


def _kind(line: dict, attribute: str) -> str | None:
    meta = line.get(attribute + METADATA_SUFFIX)
    return meta.get("type") if isinstance(meta, dict) else None


def entry_view(line: dict) -> dict[str, Any]:
    """What the grid and the editor show of one ListDatasetEntries line."""
    parsed = _parsed(line)
    entry = validate_line(parsed)
    boxes = []
    for attribute, value in line.items():
        if _kind(line, attribute) != DETECTION_TYPE or not isinstance(value, dict):
            continue
        names = line[attribute + METADATA_SUFFIX].get("class-map") or {}
        for annotation in value.get("annotations") or []:
            if not isinstance(annotation, dict):
                continue
            try:
                box = [float(annotation[k]) for k in ("left", "top", "width", "height")]
            except (KeyError, TypeError, ValueError):
                continue
            boxes.append({"label": str(names.get(str(annotation.get("class_id")), "?")),
                          "left": box[0], "top": box[1], "width": box[2], "height": box[3],
                          "error": bool(annotation.get("errors"))})
    return {
        "ref": parsed.source_ref,
        "bucket": parsed.bucket,
        "key": parsed.key,
        "name": parsed.key.rsplit("/", 1)[-1],
        "labels": list(entry.image_labels),
        "boxes": boxes,
        "labeled": entry.labeled,
        "size": list(entry.image_size) if entry.image_size else None,
        "problems": readable_problems(line),
        "line": line,
    }


def readable_problems(line: dict) -> list[str]:
    """Every error and warning embedded in the line, one sentence each, saying where."""
    sentences = []
    for where, problem in line_problems(line):
        place = "image" if not where else (f"{where[0]}" if len(where) == 1 else f"{where[0]} box {where[1] + 1}")
        sentences.append(f"{place}: {problem.get('code', '?')}: {problem.get('message', '')}")
    return sentences


def _without(line: dict, drop) -> dict:
    out = {}
    for key, value in line.items():
        if key in REPORT_KEYS:
            continue
        base = key.removesuffix(METADATA_SUFFIX)
        if drop(base):
            continue
        out[key] = _clean(value)
    return out


def _clean(value: Any) -> Any:
    """A value without the errors/warnings the service embedded in it."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if k not in ("errors", "warnings")}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def label_attribute(label: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_]+", "_", label)[:40]
    return f"{LABEL_ATTRIBUTE_PREFIX}{safe}-{hashlib.sha256(label.encode()).hexdigest()[:8]}"


def relabel(line: dict, labels: list[str]) -> dict:
    """``line`` with exactly ``labels`` as its image-level labels."""
    _parsed(line)
    if not isinstance(labels, list) or not all(isinstance(label, str) and label for label in labels):
        raise LineProblem("labels must be a list of non-empty texts")
    out = _without(line, lambda attribute: _kind(line, attribute) in (CLASSIFICATION_TYPE, MULTILABEL_TYPE))
    created = creation_date()
    for label in sorted(set(labels)):
        out.update(image_label(label, attribute=label_attribute(label), created=created, job_name=JOB_NAME))
    return out


def rebox(line: dict, boxes: list[dict], size: list[int]) -> dict:
    """``line`` with exactly ``boxes`` (label, left, top, width, height in pixels
    of an image ``size`` = [width, height]) as its bounding boxes. No boxes
    where the line had some means "nothing here" (an empty annotation list);
    no boxes on a line that never had any leaves it without a box attribute."""
    _parsed(line)
    try:
        width, height = (int(v) for v in size)
        parsed_boxes = [Box(str(b["label"]), float(b["left"]), float(b["top"]), float(b["width"]), float(b["height"]))
                        for b in boxes]
    except (KeyError, TypeError, ValueError):
        raise LineProblem("boxes need label, left, top, width and height; size needs width and height") from None
    had_boxes = any(_kind(line, a) == DETECTION_TYPE for a in line)
    out = _without(line, lambda attribute: _kind(line, attribute) == DETECTION_TYPE)
    if not parsed_boxes and not had_boxes:
        return out
    class_ids = {name: i for i, name in enumerate(sorted({b.class_name for b in parsed_boxes}))}
    drawn = detection_line(out["source-ref"], (width, height, 3), parsed_boxes, class_ids,
                           created=creation_date(), job_name=JOB_NAME)
    out[BOX_ATTRIBUTE] = drawn[BOX_ATTRIBUTE]
    out[BOX_ATTRIBUTE + METADATA_SUFFIX] = drawn[BOX_ATTRIBUTE + METADATA_SUFFIX]
    return out
