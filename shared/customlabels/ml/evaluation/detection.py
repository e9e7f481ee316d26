"""Object localization: boxes matched to ground-truth boxes, then counted per label.

Coordinates are in pixels with the origin at the image's top-left corner, as
Ground Truth manifests store them (``left``, ``top``, ``width``, ``height``).
IoU does not depend on the unit, so ratios work too as long as the truth and
the predictions of an image use the same one; the evaluation manifest snapshot
writes what it is given, and Ground Truth expects pixels.

Matching (the reference documents none; this is COCO's, at one IoU):

* per image and per label, predictions in descending score order (equal
  scores keep their input order);
* each takes the not-yet-matched ground-truth box of its label with the
  highest IoU, if that IoU is at least :data:`IOU_THRESHOLD` (ties: the first
  box); a ground-truth box is matched at most once;
* a matched prediction is a true positive once kept, any other a false
  positive; an unmatched ground-truth box is a false negative.

Matching once over all predictions is enough for every threshold: greedy
matching in score order never lets a lower-scored prediction change what a
higher-scored one matched.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from .metrics import AggregateMetrics, LabelMetrics, average_precision, label_metrics, macro_average, pr_curve

# The reference does not document its IoU; 0.5 is the PASCAL VOC / COCO
# "AP50" convention, and the one every box metric here uses.
IOU_THRESHOLD = 0.5


@dataclass(frozen=True)
class Box:
    """A ground-truth box (``score`` None) or a predicted one (``score`` in 0..1)."""
    label: str
    left: float
    top: float
    width: float
    height: float
    score: float | None = None

    @property
    def area(self) -> float:
        # A negative side is a degenerate box: no area, so IoU 0 with anything.
        return max(self.width, 0.0) * max(self.height, 0.0)


@dataclass(frozen=True)
class DetectionImage:
    """One test image: its boxes and what each prediction matched."""
    truth: tuple[Box, ...]
    predictions: tuple[Box, ...]
    matches: tuple[int | None, ...]  # per prediction: index of the matched truth box, or None


@dataclass(frozen=True)
class DetectionEvaluation:
    labels: tuple[str, ...]
    metrics: dict[str, LabelMetrics]  # per label, in ``labels`` order
    aggregate: AggregateMetrics       # with average_precision and average_recall
    images: tuple[DetectionImage, ...]

    @property
    def number_of_testing_images(self) -> int:
        return len(self.images)

    @property
    def f1_score(self) -> float:
        """What DescribeProjectVersions returns as EvaluationResult.F1Score."""
        return self.aggregate.f1


def iou_matrix(a: Sequence[Box], b: Sequence[Box]) -> np.ndarray:
    """IoU of every box of ``a`` with every box of ``b``: shape (len(a), len(b)).

    A zero-area box has IoU 0 with every box, itself included: two empty boxes
    would be 0/0, and a box of no area locates nothing.
    """
    if not a or not b:
        return np.zeros((len(a), len(b)))
    ax0, ay0, ax1, ay1, a_area = _corners(a)
    bx0, by0, bx1, by1, b_area = _corners(b)
    width = np.clip(np.minimum(ax1[:, None], bx1[None, :]) - np.maximum(ax0[:, None], bx0[None, :]), 0, None)
    height = np.clip(np.minimum(ay1[:, None], by1[None, :]) - np.maximum(ay0[:, None], by0[None, :]), 0, None)
    intersection = width * height
    union = a_area[:, None] + b_area[None, :] - intersection
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, intersection / np.where(union > 0, union, 1), 0.0)


def _corners(boxes: Sequence[Box]):
    left = np.array([b.left for b in boxes], dtype=np.float64)
    top = np.array([b.top for b in boxes], dtype=np.float64)
    width = np.clip(np.array([b.width for b in boxes], dtype=np.float64), 0, None)
    height = np.clip(np.array([b.height for b in boxes], dtype=np.float64), 0, None)
    return left, top, left + width, top + height, width * height


def _label_array(boxes: Sequence[Box]) -> np.ndarray:
    return np.array([box.label for box in boxes], dtype=object)


def iou(a: Box, b: Box) -> float:
    return float(iou_matrix([a], [b])[0, 0])


def match_image(
    truth: Sequence[Box], predictions: Sequence[Box], iou_threshold: float = IOU_THRESHOLD
) -> tuple[int | None, ...]:
    """Greedy matching of one image's predictions (see the module docstring)."""
    overlaps = iou_matrix(predictions, truth)
    same_label = _label_array(predictions)[:, None] == _label_array(truth)[None, :]
    # Pairs that may match: same label and IoU over the bar; -1 marks the rest.
    candidates = np.where(same_label & (overlaps >= iou_threshold), overlaps, -1.0)
    order = sorted(range(len(predictions)), key=lambda i: -predictions[i].score)  # sorted() is stable
    matches: list[int | None] = [None] * len(predictions)
    taken = np.zeros(len(truth), dtype=bool)
    for i in order:
        row = np.where(taken, -1.0, candidates[i])
        if row.size and row.max() >= 0:
            j = int(np.argmax(row))  # first of equal IoUs
            matches[i] = j
            taken[j] = True
    return tuple(matches)


def evaluate_detection(
    labels: Sequence[str],
    true_boxes: Sequence[Sequence[Box]],
    predicted_boxes: Sequence[Sequence[Box]],
    *,
    iou_threshold: float = IOU_THRESHOLD,
) -> DetectionEvaluation:
    """Evaluate a detector on a test set.

    ``true_boxes[i]`` and ``predicted_boxes[i]`` are the boxes of test image
    ``i`` (either may be empty). Every box label must be one of ``labels`` (the
    model's labels); predictions need a score in 0..1. Per label: the assumed
    threshold, precision, recall and F1 counted in boxes; AP (COCO 101-point)
    and AR (the recall with every prediction kept), both at ``iou_threshold``.
    """
    labels = tuple(labels)
    if len(set(labels)) != len(labels) or not labels:
        raise ValueError("labels must be distinct, and there must be at least one")
    if len(true_boxes) != len(predicted_boxes):
        raise ValueError(f"{len(true_boxes)} images of ground truth but {len(predicted_boxes)} of predictions")
    images = tuple(
        _image(index, tuple(truth), tuple(predictions), set(labels), iou_threshold)
        for index, (truth, predictions) in enumerate(zip(true_boxes, predicted_boxes, strict=True))
    )
    per_label = _per_label(labels, images)
    return DetectionEvaluation(labels, per_label, macro_average(list(per_label.values()), detection=True), images)


def _image(index: int, truth: tuple[Box, ...], predictions: tuple[Box, ...], known: set, iou_threshold: float):
    for box in truth + predictions:
        if box.label not in known:
            raise ValueError(f"image {index}: label {box.label!r} is not one of the model's labels")
    for box in predictions:
        if box.score is None or not 0 <= box.score <= 1:
            raise ValueError(f"image {index}: a predicted box needs a score from 0 to 1, got {box.score!r}")
    return DetectionImage(truth, predictions, match_image(truth, predictions, iou_threshold))


def _per_label(labels: tuple[str, ...], images: tuple[DetectionImage, ...]) -> dict[str, LabelMetrics]:
    """Each label's numbers, from one pass over the images."""
    scores: dict[str, list[float]] = {label: [] for label in labels}
    correct: dict[str, list[bool]] = {label: [] for label in labels}
    boxes = dict.fromkeys(labels, 0)    # ground-truth boxes
    images_with = dict.fromkeys(labels, 0)  # test images with at least one such box
    for image in images:
        for label in {box.label for box in image.truth}:
            images_with[label] += 1
        for box in image.truth:
            boxes[box.label] += 1
        for box, match in zip(image.predictions, image.matches, strict=True):
            scores[box.label].append(box.score)
            correct[box.label].append(match is not None)
    return {label: _label(label, scores[label], correct[label], boxes[label], images_with[label]) for label in labels}


def _label(label: str, scores: list[float], correct: list[bool], positives: int, testing_images: int) -> LabelMetrics:
    """One label's metrics from every prediction of it, right or wrong, and its ground-truth box count."""
    curve = pr_curve(np.array(scores, dtype=np.float64), np.array(correct, dtype=bool), positives)
    metrics = label_metrics(label, curve, testing_images)
    if positives == 0:
        return metrics  # AP and AR are undefined without a box to find
    # AR: the share of boxes found once every prediction is kept (the end of the curve).
    found = int(curve.true_positives[-1]) if len(curve.thresholds) else 0
    return replace(metrics, average_precision=average_precision(curve), average_recall=found / positives)
