"""A trained version's evaluation as the model page shows it: the summary
file as tables, and each test image of the evaluation manifest snapshot with
its ground truth and the model's predictions, each prediction marked true
positive, false positive or false negative at the label's assumed threshold.

Pure functions over the files the evaluation wrote (their formats are
customlabels.ml.evaluation's); the page recomputes precision, recall and F1
at other thresholds from the same predictions.
"""
from __future__ import annotations

from typing import Any

from customlabels.manifests.lines import (
    CLASSIFICATION_TYPE,
    DETECTION_TYPE,
    METADATA_SUFFIX,
)
from customlabels.ml.evaluation.snapshot import DETAILS_KEY, EVALUATION_ATTRIBUTE

from services.console import labeling

SNAPSHOT_NAME = "testing/evaluation-manifest-snapshot.manifest"


def snapshot_key(summary_key: str) -> str:
    """The snapshot sits in the version's output folder, beside the summary file."""
    folder = summary_key.rsplit("/", 1)[0] + "/" if "/" in summary_key else ""
    return folder + SNAPSHOT_NAME


def summary_view(summary: dict) -> dict[str, Any]:
    aggregated = summary.get("AggregatedEvaluationResults") or {}
    details = summary.get("EvaluationDetails") or {}
    labels = sorted(details.get("Labels") or [])
    matrix = None
    if aggregated.get("ConfusionMatrix"):
        cells = {(c["GroundTruthLabel"], c["PredictedLabel"]): c["Value"] for c in aggregated["ConfusionMatrix"]}
        matrix = {"labels": labels, "rows": [[cells.get((t, p), 0.0) for p in labels] for t in labels]}
    return {
        "f1": aggregated.get("F1Score"),
        "precision": aggregated.get("Precision"),
        "recall": aggregated.get("Recall"),
        "average_precision": aggregated.get("AveragePrecision"),
        "average_recall": aggregated.get("AverageRecall"),
        "training_images": details.get("NumberOfTrainingImages"),
        "testing_images": details.get("NumberOfTestingImages"),
        "ended": details.get("EvaluationEndTimestamp"),
        "labels": [
            {"label": r["Label"], "images": r.get("NumberOfTestingImages"), **{k.lower(): v for k, v in (r.get("Metrics") or {}).items()}}
            for r in summary.get("LabelEvaluationResults") or []
        ],
        "matrix": matrix,
    }


def _outcome(flags: dict) -> str:
    if flags.get("is-true-positive"):
        return "TP"
    if flags.get("is-false-positive"):
        return "FP"
    if flags.get("is-false-negative"):
        return "FN"
    return "TN"


def test_image_view(line: dict) -> dict[str, Any]:
    """One snapshot line: ground truth (labels, boxes) and predictions
    ({label, confidence, outcome, box?}), confidences as 0..1."""
    truth_line = {k: v for k, v in line.items() if not k.startswith(EVALUATION_ATTRIBUTE)}
    truth = labeling.entry_view(truth_line)
    predictions = []
    for attribute, meta in line.items():
        if not (attribute.startswith(EVALUATION_ATTRIBUTE) and attribute.endswith(METADATA_SUFFIX)) or not isinstance(meta, dict):
            continue
        if meta.get("type") == CLASSIFICATION_TYPE:
            predictions.append({"label": meta.get("class-name"), "confidence": float(meta.get("confidence", 0)),
                                "outcome": _outcome(meta.get(DETAILS_KEY) or {})})
        elif meta.get("type") == DETECTION_TYPE:
            value = line.get(attribute[: -len(METADATA_SUFFIX)]) or {}
            names = meta.get("class-map") or {}
            for annotation, obj in zip(value.get("annotations") or [], meta.get("objects") or []):
                predictions.append({
                    "label": names.get(str(annotation.get("class_id")), "?"),
                    "confidence": float(obj.get("confidence", 0)),
                    "outcome": _outcome(obj.get(DETAILS_KEY) or {}),
                    "box": [float(annotation[k]) for k in ("left", "top", "width", "height")],
                })
    return {"ref": truth["ref"], "bucket": truth["bucket"], "key": truth["key"], "name": truth["name"],
            "labels": truth["labels"], "boxes": truth["boxes"], "size": truth["size"],
            "predictions": sorted(predictions, key=lambda p: -p["confidence"])}


OVERALL = (("f1", "F1"), ("precision", "Precision"), ("recall", "Recall"),
           ("average_precision", "mAP (IoU 0.5)"), ("average_recall", "mAR (IoU 0.5)"),
           ("training_images", "Training images"), ("testing_images", "Test images"))
PER_LABEL = ("f1score", "precision", "recall", "threshold", "images")


def side_by_side(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Two ``summary_view``s beside each other: the overall figures, then every
    label either has, each with both versions' metrics and b's F1 minus a's."""
    overall = [{"title": title, "a": a.get(key), "b": b.get(key), "delta": _delta(a.get(key), b.get(key))}
               for key, title in OVERALL if a.get(key) is not None or b.get(key) is not None]
    rows_a, rows_b = ({row["label"]: row for row in view["labels"]} for view in (a, b))
    labels = []
    for label in sorted(set(rows_a) | set(rows_b)):
        left, right = rows_a.get(label, {}), rows_b.get(label, {})
        labels.append({"label": label, "a": {k: left.get(k) for k in PER_LABEL}, "b": {k: right.get(k) for k in PER_LABEL},
                       "delta": _delta(left.get("f1score"), right.get("f1score"))})
    return {"overall": overall, "labels": labels}


def _delta(a: Any, b: Any) -> float | None:
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (a, b))
    return b - a if numbers else None
