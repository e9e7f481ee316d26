"""An evaluation's files read as a user reads them, and checked against each other.

A trained version's evaluation is three things a user can download: the
F1 score of DescribeProjectVersions, the summary file (per label: assumed
threshold, precision, recall, F1) and the evaluation manifest snapshot (per
test image: each prediction with its confidence and its true/false
positive/negative flags). They are computed once, by the evaluation service,
so they must agree exactly:

* a prediction is reported (a true or false positive) exactly when its
  confidence reaches its label's assumed threshold;
* summing the flags over the snapshot gives each label's true positives,
  false positives and false negatives, hence the summary's precision, recall
  and F1 for that label;
* the aggregate F1 (summary and DescribeProjectVersions) is the mean of the
  F1 of the labels the test set has; for a detector, the aggregate average
  recall is likewise the mean, per label, of the ground-truth boxes some
  prediction matched at any score.

``check_agreement`` asserts all of that, for a classifier or a detector.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import pytest

EVALUATION = "rekognition-custom-labels-evaluation"
DETAILS = "rekognition-custom-labels-evaluation-details"


@dataclass(frozen=True)
class Listed:
    """One prediction of a snapshot line (or, for a detector, one missed ground-truth box)."""

    label: str
    confidence: float
    reported: bool        # a true or a false positive: shown at the assumed threshold
    positive: bool        # in the ground truth (true positive or false negative)
    matched: bool         # in the ground truth per the reference's is-present-in-ground-truth


def listed(line: dict) -> list[Listed]:
    """What a snapshot line lists, for either task."""
    found = []
    for name, meta in line.items():
        if not (name.startswith(EVALUATION) and name.endswith("-metadata")):
            continue
        if "objects" in meta:  # a detector: one attribute, boxes in annotations/objects
            annotations = line[name.removesuffix("-metadata")]["annotations"]
            for annotation, obj in zip(annotations, meta["objects"], strict=True):
                found.append(_listed(meta["class-map"][str(annotation["class_id"])], obj["confidence"], obj[DETAILS]))
        else:  # a classifier: one attribute per label
            found.append(_listed(meta["class-name"], meta["confidence"], meta[DETAILS]))
    return found


def _listed(label: str, confidence: float, details: dict) -> Listed:
    flags = [details[f"is-{kind}"] for kind in ("true-positive", "false-positive", "false-negative", "true-negative")]
    assert sum(flags) == 1 and not details["is-true-negative"], details  # true negatives are never listed
    return Listed(label, confidence, details["is-true-positive"] or details["is-false-positive"],
                  details["is-true-positive"] or details["is-false-negative"], details["is-present-in-ground-truth"])


def check_agreement(description: dict, summary: dict, snapshot: list[dict]) -> None:
    """The snapshot, the summary file and DescribeProjectVersions' F1 agree (see the module docstring)."""
    results = {r["Label"]: r["Metrics"] for r in summary["LabelEvaluationResults"]}
    predictions = [p for line in snapshot for p in listed(line)]
    assert predictions, "the snapshot lists no prediction at all"
    for p in predictions:
        assert p.reported == (p.confidence >= results[p.label]["Threshold"]), p
    tp = Counter(p.label for p in predictions if p.reported and p.positive)
    fp = Counter(p.label for p in predictions if p.reported and not p.positive)
    fn = Counter(p.label for p in predictions if not p.reported and p.positive)
    with_truth = [label for label in results if tp[label] + fn[label]]
    for label, metrics in results.items():
        precision = tp[label] / (tp[label] + fp[label]) if tp[label] + fp[label] else 0.0
        recall = tp[label] / (tp[label] + fn[label]) if label in with_truth else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        assert (metrics["Precision"], metrics["Recall"], metrics["F1Score"]) == pytest.approx(
            (precision, recall, f1), abs=1e-9), label
    aggregated = summary["AggregatedEvaluationResults"]
    mean_f1 = sum(results[label]["F1Score"] for label in with_truth) / len(with_truth)
    assert aggregated["F1Score"] == pytest.approx(mean_f1, abs=1e-9)
    assert description["EvaluationResult"]["F1Score"] == pytest.approx(aggregated["F1Score"], abs=1e-6)
    if "AverageRecall" in aggregated:  # a detector: boxes some prediction matched, at any score
        found = Counter(p.label for p in predictions if p.matched and p.confidence > 0)
        mean_recall = sum(found[label] / (tp[label] + fn[label]) for label in with_truth) / len(with_truth)
        assert aggregated["AverageRecall"] == pytest.approx(mean_recall, abs=1e-9)
