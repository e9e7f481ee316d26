"""The metric core shared by classification and detection: one label's scores in, its numbers out.

Both tasks reduce, per label, to the same input: every prediction of the
label (a score and whether it is right: the image really has the label, or the
box matched a ground-truth box) and the number of ground-truth items
(images or boxes). :func:`pr_curve` turns that into a precision-recall curve;
from it :func:`label_metrics` finds the assumed threshold and the numbers at
it, and :func:`average_precision` integrates it.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# When a label has no prediction at all there is no score to choose from. Any
# threshold then gives F1 = 0, and the tie-break (highest threshold) points at
# the top of the range: the label is only reported at full confidence.
NO_PREDICTION_THRESHOLD = 1.0

# COCO's recall grid (pycocotools, torchmetrics): 101 points built with
# np.linspace exactly as they do, float quirks included (0.35 comes out as
# 0.35000000000000003), so that our AP equals theirs on the same matches.
RECALL_POINTS = np.linspace(0.0, 1.0, 101)


@dataclass(frozen=True)
class LabelMetrics:
    """One label's evaluation at its assumed threshold."""
    label: str
    threshold: float          # the assumed threshold: a prediction counts when score >= threshold
    precision: float
    recall: float
    f1: float
    true_positives: int
    false_positives: int
    false_negatives: int
    testing_images: int       # test images whose ground truth has the label (NumberOfTestingImages)
    ground_truths: int        # positives counted by the metrics: images (classification) or boxes (detection)
    average_precision: float | None = None  # detection only; None when the label has no ground-truth box
    average_recall: float | None = None     # detection only; likewise

    @property
    def evaluated(self) -> bool:
        """True when the test set has the label, so its numbers say something (and enter the aggregates)."""
        return self.ground_truths > 0


@dataclass(frozen=True)
class AggregateMetrics:
    """The test set as a whole: macro averages over the evaluated labels."""
    precision: float
    recall: float
    f1: float
    average_precision: float | None = None  # detection only
    average_recall: float | None = None     # detection only


@dataclass(frozen=True)
class Curve:
    """The precision-recall curve at each distinct score, highest score first."""
    thresholds: np.ndarray      # distinct scores, descending
    true_positives: np.ndarray  # kept predictions that are right, at score >= threshold
    false_positives: np.ndarray
    positives: int              # ground-truth items

    @property
    def precision(self) -> np.ndarray:
        kept = self.true_positives + self.false_positives  # never 0: each threshold keeps its own prediction
        return self.true_positives / kept

    @property
    def recall(self) -> np.ndarray:
        if self.positives == 0:
            return np.zeros(len(self.thresholds))
        return self.true_positives / self.positives


def pr_curve(scores: np.ndarray, correct: np.ndarray, positives: int) -> Curve:
    """Precision and recall at each distinct score of one label's predictions.

    ``correct[i]`` says whether prediction ``i`` is a true positive once kept.
    Predictions with equal scores are kept or dropped together (a threshold
    can't separate them), so the curve has one point per distinct score.
    """
    scores = np.asarray(scores, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    order = np.argsort(-scores, kind="stable")
    scores, correct = scores[order], correct[order]
    tp = np.cumsum(correct)
    fp = np.cumsum(~correct)
    # The last prediction of each run of equal scores closes that threshold's point.
    ends = np.flatnonzero(np.append(scores[1:] != scores[:-1], True)) if len(scores) else np.array([], dtype=int)
    return Curve(scores[ends], tp[ends], fp[ends], positives)


def f1_of(precision: float, recall: float) -> float:
    # The harmonic mean of P and R, as the reference computes it: its example
    # summary (CAP: P = 381/388, R = 381/390) reports 0.9794344473007711, which
    # is 2PR/(P+R); 2TP/(2TP+FP+FN) gives ...712.
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def label_metrics(label: str, curve: Curve, testing_images: int) -> LabelMetrics:
    """The assumed threshold of one label and its precision, recall and F1 there.

    The assumed threshold is the score threshold that gives the label its best
    F1 on the test set (reference: "calculated based on the best F1 score
    achieved on the test dataset"). Candidates are the distinct scores of the
    label's predictions, and a prediction counts when ``score >= threshold``
    (DetectCustomLabels returns nothing *lower* than MinConfidence). Among
    thresholds with the same best F1 the highest wins: the same F1 with fewer
    predictions shown to users.
    """
    positives = curve.positives
    if len(curve.thresholds) == 0:
        return LabelMetrics(label, NO_PREDICTION_THRESHOLD, 0.0, 0.0, 0.0, 0, 0, positives, testing_images, positives)
    tp, fp = curve.true_positives, curve.false_positives
    # Choose on the exact ratio 2TP/(2TP+FP+FN): equal ratios give equal
    # floats, so ties are real ties. np.argmax takes the first maximum, which
    # is the highest threshold because the curve runs from the highest score.
    best = int(np.argmax(2 * tp / (2 * tp + fp + (positives - tp))))
    tp_best, fp_best = int(tp[best]), int(fp[best])
    precision = tp_best / (tp_best + fp_best)
    recall = tp_best / positives if positives else 0.0
    return LabelMetrics(
        label=label,
        threshold=float(curve.thresholds[best]),
        precision=precision,
        recall=recall,
        f1=f1_of(precision, recall),
        true_positives=tp_best,
        false_positives=fp_best,
        false_negatives=positives - tp_best,
        testing_images=testing_images,
        ground_truths=positives,
    )


def average_precision(curve: Curve) -> float:
    """Area under the interpolated precision-recall curve, COCO's 101-point way.

    Precision is first made monotone (at each recall, the best precision at
    that recall or beyond), then read at recall 0, 0.01, ..., 1 and averaged;
    a recall the curve never reaches reads 0.
    """
    if len(curve.thresholds) == 0 or curve.positives == 0:
        return 0.0
    envelope = np.maximum.accumulate(curve.precision[::-1])[::-1]
    at = np.searchsorted(curve.recall, RECALL_POINTS, side="left")
    reached = at < len(envelope)
    return float(np.where(reached, envelope[np.minimum(at, len(envelope) - 1)], 0.0).mean())


def macro_average(metrics: Sequence[LabelMetrics], *, detection: bool = False) -> AggregateMetrics:
    """Aggregate precision, recall and F1: plain means over the labels the test set has.

    The reference's example summary is reproduced exactly this way: its
    aggregate Precision 0.9719115848331294 is the mean of CAP's 0.98195...
    and WATCH's 0.96186..., likewise Recall and F1Score (F1 is the mean of
    the per-label F1s, not the harmonic mean of the aggregate P and R).
    Labels without ground truth in the test set are left out: with nothing to
    find, their recall is undefined and they would only drag the mean.
    """
    evaluated = [m for m in metrics if m.evaluated]
    if not evaluated:
        zero = 0.0 if detection else None
        return AggregateMetrics(0.0, 0.0, 0.0, zero, zero)

    def mean(values) -> float:
        return float(np.mean(values))

    return AggregateMetrics(
        precision=mean([m.precision for m in evaluated]),
        recall=mean([m.recall for m in evaluated]),
        f1=mean([m.f1 for m in evaluated]),
        average_precision=mean([m.average_precision for m in evaluated]) if detection else None,
        average_recall=mean([m.average_recall for m in evaluated]) if detection else None,
    )
