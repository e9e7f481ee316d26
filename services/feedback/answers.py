"""Reviewers' answers: checking one, and consolidating a loop's answers into one (pure).

An answer is one of:

* ``ACCEPT``: the model's answer is right, i.e. what DetectCustomLabels
  reported: the predictions at or above their label's threshold (for a
  single-label classifier, the best of them; none reported means "nothing
  here").
* ``CORRECT``: the right labels (classification: exactly one; multi-label:
  one or more) or boxes (detection: each with a label and ratios of the
  image, as DetectCustomLabels' BoundingBox).
* ``NEGATIVE``: none of the project's labels is in the image.
* ``SKIP``: this reviewer passes; the loop waits for someone else.

A loop completes after ``TaskCount`` answers (skips don't count). The
consolidated answer is the majority: answers are grouped by what they say
(ACCEPT; NEGATIVE; CORRECT with the same labels, box labels counted), the
largest group wins, a tie goes to the group answered first, and the winning
group's first answer gives the boxes. ``agreement`` is the winning group's
share, so disagreement stays visible.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from customlabels import errors

from services.feedback.records import ACCEPT, CORRECT, NEGATIVE, SKIP, reported_predictions

KINDS = (ACCEPT, CORRECT, NEGATIVE, SKIP)
DETECTION, MULTILABEL = "detection", "multilabel"
_EDGE = 1e-6  # float noise tolerated at the image's edges


def check_answer(req: Mapping[str, Any], *, task: str | None, labels: Iterable[str]) -> dict[str, Any]:
    """AnswerReviewTask's ``Verdict`` and ``Labels`` as stored: ``{"kind", "labels", "boxes"}``;
    InvalidParameter (ValidationException) when they cannot stand."""
    kind = req.get("Verdict")
    given = list(req.get("Labels") or [])
    if kind not in KINDS:
        raise errors.InvalidParameter(f"Verdict must be one of {', '.join(KINDS)}, not {kind!r}")
    if kind != CORRECT:
        if given:
            raise errors.InvalidParameter(f"Labels go with the verdict CORRECT only, not {kind}")
        return {"kind": kind, "labels": [], "boxes": []}
    known = set(labels)
    if not given:
        raise errors.InvalidParameter("a CORRECT answer needs Labels (NEGATIVE: none of the labels is in the image)")
    unknown = sorted({item.get("Name") for item in given} - known, key=str)
    if unknown:
        raise errors.InvalidParameter(f"label(s) {', '.join(map(str, unknown))} are not in the project "
                                      f"(its labels: {', '.join(sorted(known)) or 'none'})")
    if task == DETECTION:
        missing = [index for index, item in enumerate(given, 1) if not item.get("BoundingBox")]
        if missing:
            raise errors.InvalidParameter(f"this is a detection task: every label needs its BoundingBox (label(s) {missing} have none)")
        boxes = [_check_box(item["Name"], item["BoundingBox"], index) for index, item in enumerate(given, 1)]
        return {"kind": kind, "labels": sorted({b["Label"] for b in boxes}), "boxes": boxes}
    if any(item.get("BoundingBox") for item in given):
        raise errors.InvalidParameter(f"this is a {task or 'classification'} task: give Labels without BoundingBox")
    names = [item["Name"] for item in given]
    if len(set(names)) != len(names):
        raise errors.InvalidParameter("Labels names a label twice")
    if task != MULTILABEL and len(names) != 1:
        raise errors.InvalidParameter(f"this model gives one label per image: Labels takes exactly one, not {len(names)}")
    return {"kind": kind, "labels": sorted(names), "boxes": []}


def _check_box(label: str, box: Mapping[str, Any], index: int) -> dict[str, Any]:
    try:
        left, top, width, height = (float(box[k]) for k in ("Left", "Top", "Width", "Height"))
    except (KeyError, TypeError, ValueError):
        raise errors.InvalidParameter(f"label {index}'s BoundingBox needs Left, Top, Width and Height, ratios of the image") from None
    if not (width > 0 and height > 0):
        raise errors.InvalidParameter(f"label {index}'s BoundingBox must have a width and a height above 0")
    if left < -_EDGE or top < -_EDGE or left + width > 1 + _EDGE or top + height > 1 + _EDGE:
        raise errors.InvalidParameter(
            f"label {index}'s BoundingBox ({left:g}, {top:g}, {width:g} x {height:g}) lies outside the image: "
            "Left, Top, Width and Height are ratios, and the box must fit within 0..1")
    return {"Label": label, "Left": max(0.0, left), "Top": max(0.0, top),
            "Width": min(width, 1 - max(0.0, left)), "Height": min(height, 1 - max(0.0, top))}


def reported(predictions: Sequence[Mapping[str, Any]], thresholds: Mapping[str, float], task: str | None) -> dict[str, Any]:
    """What the model's answer said (``records.reported_predictions``), as an answer's labels and boxes."""
    kept = reported_predictions(list(predictions), dict(thresholds), task)
    if task == DETECTION:
        boxes = [{"Label": p["Name"], **{k: p["Geometry"]["BoundingBox"][k] for k in ("Left", "Top", "Width", "Height")}}
                 for p in kept]
        return {"labels": sorted({b["Label"] for b in boxes}), "boxes": boxes}
    return {"labels": sorted({p["Name"] for p in kept}), "boxes": []}


def consolidate(answers: Sequence[Mapping[str, Any]], *, predictions: Sequence[Mapping[str, Any]],
                thresholds: Mapping[str, float], task: str | None) -> dict[str, Any]:
    """The majority answer (``answers`` in the order given, skips excluded), what it means and how many agreed."""
    if not answers:
        raise ValueError("nothing to consolidate")
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for answer in answers:
        groups.setdefault(_meaning(answer), []).append(answer)
    winner = max(groups.values(), key=len)  # max keeps the first of equals: the group answered first
    first = winner[0]
    if first["kind"] == ACCEPT:
        truth = reported(predictions, thresholds, task)
    elif first["kind"] == NEGATIVE:
        truth = {"labels": [], "boxes": []}
    else:
        truth = {"labels": list(first["labels"]), "boxes": list(first["boxes"])}
    return {"kind": first["kind"], **truth, "agreement": round(len(winner) / len(answers), 4),
            "agreeing": len(winner), "answers": len(answers)}


def _meaning(answer: Mapping[str, Any]) -> tuple:
    if answer["kind"] != CORRECT:
        return (answer["kind"],)
    counted = Counter(b["Label"] for b in answer["boxes"]) if answer["boxes"] else Counter(answer["labels"])
    return (CORRECT, tuple(sorted(counted.items())))
