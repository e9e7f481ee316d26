"""Image-level labels: multi-class (one label per image) and multi-label.

Each label is judged on its own, one image one item: the image is a positive
of the label when its ground truth has the label, and the model predicts the
label when the label's score reaches the label's assumed threshold.
"""
from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np

from .calibration_error import expected_calibration_error
from .metrics import AggregateMetrics, LabelMetrics, label_metrics, macro_average, pr_curve


@dataclass(frozen=True)
class ClassificationEvaluation:
    labels: tuple[str, ...]              # the model's labels, one per score column
    metrics: dict[str, LabelMetrics]     # per label, in ``labels`` order
    aggregate: AggregateMetrics
    multi_label: bool
    confusion_matrix: list[dict] | None  # [{GroundTruthLabel, PredictedLabel, Value}]; None for multi-label
    truth: np.ndarray                    # bool (images, labels): the ground truth
    scores: np.ndarray                   # float (images, labels): the model's scores
    calibration_error: float             # expected calibration error (our extension, see calibration_error.py)

    @property
    def number_of_testing_images(self) -> int:
        return int(self.truth.shape[0])

    @property
    def f1_score(self) -> float:
        """What DescribeProjectVersions returns as EvaluationResult.F1Score."""
        return self.aggregate.f1

    def predicted(self) -> np.ndarray:
        """bool (images, labels): what the model reports at the assumed thresholds."""
        thresholds = np.array([self.metrics[label].threshold for label in self.labels])
        return self.scores >= thresholds


def evaluate_classification(
    labels: Sequence[str],
    true_labels: Sequence[Collection[str]],
    scores,
    *,
    multi_label: bool | None = None,
) -> ClassificationEvaluation:
    """Evaluate a classifier on a test set.

    ``labels``: the model's labels, column order of ``scores``. ``true_labels``:
    per test image, its ground-truth labels (a label outside ``labels`` is a
    ValueError: the model can't know it, drop it first if that is intended).
    ``scores``: (images, labels), each in 0..1. ``multi_label``: None infers it
    (multi-label as soon as one image has two labels or more).
    """
    labels = _check_labels(labels)
    truth = truth_matrix(labels, true_labels)
    scores = _check_scores(scores, truth.shape)
    if multi_label is None:
        multi_label = bool((truth.sum(axis=1) > 1).any())

    per_label = {}
    for column, label in enumerate(labels):
        positives = int(truth[:, column].sum())
        # An image is one item: testing images and ground truths are the same count.
        curve = pr_curve(scores[:, column], truth[:, column], positives)
        per_label[label] = label_metrics(label, curve, testing_images=positives)
    return ClassificationEvaluation(
        labels=labels,
        metrics=per_label,
        aggregate=macro_average(list(per_label.values())),
        multi_label=multi_label,
        confusion_matrix=None if multi_label else confusion_matrix(labels, truth, scores),
        truth=truth,
        scores=scores,
        calibration_error=expected_calibration_error(truth, scores, multi_label=multi_label),
    )


def truth_matrix(labels: Sequence[str], true_labels: Sequence[Collection[str]]) -> np.ndarray:
    column = {label: i for i, label in enumerate(labels)}
    truth = np.zeros((len(true_labels), len(labels)), dtype=bool)
    for row, image_labels in enumerate(true_labels):
        if isinstance(image_labels, str):
            raise TypeError(f"image {row}: true labels must be a collection of labels, not the string {image_labels!r}")
        for label in image_labels:
            if label not in column:
                raise ValueError(f"image {row}: label {label!r} is not one of the model's labels")
            truth[row, column[label]] = True
    return truth


def confusion_matrix(labels: Sequence[str], truth: np.ndarray, scores: np.ndarray) -> list[dict]:
    """The multi-class confusion matrix, as the reference's summary file lists it.

    The predicted label is the top-scoring one (ties: the first in ``labels``
    order), thresholds aside: a confusion matrix asks which label the model
    prefers. Value is the share of the ground-truth label's test images given
    that prediction, so each ground-truth label's values add up to 1: the
    reference's Rooms table reads this way (every ground-truth column sums to
    100 %). Images without exactly one true label are left out. Every pair of
    labels is listed, zeros included, ground truth then prediction in name
    order; a label with no test image has all-zero values.
    """
    single = truth.sum(axis=1) == 1
    true_index = truth[single].argmax(axis=1)
    predicted_index = scores[single].argmax(axis=1)
    counts = np.zeros((len(labels), len(labels)), dtype=np.int64)
    np.add.at(counts, (true_index, predicted_index), 1)
    per_truth = counts.sum(axis=1)

    cells = []
    for g in sorted(range(len(labels)), key=lambda i: labels[i]):
        for p in sorted(range(len(labels)), key=lambda i: labels[i]):
            value = counts[g, p] / per_truth[g] if per_truth[g] else 0.0
            cells.append({"GroundTruthLabel": labels[g], "PredictedLabel": labels[p], "Value": float(value)})
    return cells


def _check_labels(labels: Sequence[str]) -> tuple[str, ...]:
    labels = tuple(labels)
    if len(set(labels)) != len(labels):
        raise ValueError("labels must be distinct")
    if not labels:
        raise ValueError("there must be at least one label")
    return labels


def _check_scores(scores, shape: tuple[int, int]) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != shape:
        raise ValueError(f"scores have shape {scores.shape}; expected (images, labels) = {shape}")
    # NaN fails both comparisons, so it is caught here too.
    if scores.size and not ((scores >= 0) & (scores <= 1)).all():
        raise ValueError("scores must be numbers from 0 to 1")
    return scores
