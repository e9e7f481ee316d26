"""Scoring one model on test lines, image by image (pure, given the predictions).

What the comparison needs that the evaluation summary does not give: for
each test image, whether the model's *served* answer (the predictions at or
above each label's threshold) was right, so two versions can be paired on
the same images.

* single-label classification: right when the best reported label is the
  image's label;
* multi-label: right when the reported labels are exactly the image's;
* detection: right when every ground-truth box is matched by a reported box
  of its label at IoU >= 0.5 and no reported box is left over (greedy
  matching by score, ``customlabels.ml.evaluation.match_image``).

Per label, TP/FP/FN count images (classification) or boxes (detection);
F1 = 2TP / (2TP + FP + FN); the overall F1 is the plain mean over the
labels the test set has, as the evaluation summary's is.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from customlabels.manifests import stored_line_targets
from customlabels.manifests.targets import is_localization
from customlabels.ml.evaluation import Box, match_image


@dataclass(frozen=True)
class Case:
    source_ref: str
    bucket: str
    key: str
    labels: frozenset[str] = frozenset()  # classification truth
    boxes: tuple[Box, ...] = ()  # detection truth, pixels
    size: tuple[float, float] | None = None  # width, height the boxes are in


@dataclass
class Scores:
    correct: list[bool] = field(default_factory=list)  # per test case, in order
    counts: dict[str, list[int]] = field(default_factory=dict)  # label -> [tp, fp, fn]
    truth_labels: set[str] = field(default_factory=set)

    def f1(self, label: str) -> float:
        tp, fp, fn = self.counts.get(label, (0, 0, 0))
        return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0

    def overall_f1(self) -> float:
        labels = sorted(self.truth_labels)
        return sum(self.f1(label) for label in labels) / len(labels) if labels else 0.0

    def tally(self, label: str, column: int) -> None:
        self.counts.setdefault(label, [0, 0, 0])[column] += 1


def cases_from_lines(lines: Sequence[Mapping[str, Any]], task: str) -> list[Case]:
    """The lines a model of ``task`` is tested on (usable, with the right kind of labels)."""
    cases = []
    for line in lines:
        entry = stored_line_targets(dict(line))
        if entry is None:
            continue
        bucket, _, key = entry.source_ref[len("s3://"):].partition("/")
        if task == "detection":
            if not is_localization(entry) or entry.image_size is None:
                continue
            boxes = tuple(Box(label, left, top, width, height) for label, left, top, width, height in entry.boxes)
            cases.append(Case(entry.source_ref, bucket, key, boxes=boxes, size=tuple(entry.image_size)))
        elif entry.image_labels:
            cases.append(Case(entry.source_ref, bucket, key, labels=frozenset(entry.image_labels)))
    return cases


def score(task: str, cases: Sequence[Case], predictions: Sequence[Sequence[Any]],
          thresholds: Mapping[str, float]) -> Scores:
    """``predictions``: per case, the model's ``Prediction`` list (label, score 0..1, box ratios);
    ``thresholds``: per label, the score (0..1) a prediction is reported from."""
    scores = Scores()
    for case, found in zip(cases, predictions, strict=True):
        reported = [p for p in found if p.score >= thresholds.get(p.label, 0.5)]
        if task == "detection":
            _score_boxes(scores, case, reported)
        else:
            _score_labels(scores, case, reported, multi_label=task == "multilabel")
    return scores


def _score_labels(scores: Scores, case: Case, reported: list, *, multi_label: bool) -> None:
    if multi_label:
        said = {p.label for p in reported}
    else:
        said = {max(reported, key=lambda p: p.score).label} if reported else set()
    truth = set(case.labels)
    scores.truth_labels |= truth
    scores.correct.append(said == truth)
    for label in said & truth:
        scores.tally(label, 0)
    for label in said - truth:
        scores.tally(label, 1)
    for label in truth - said:
        scores.tally(label, 2)


def _score_boxes(scores: Scores, case: Case, reported: list) -> None:
    width, height = case.size
    boxes = [Box(p.label, p.box[0] * width, p.box[1] * height, p.box[2] * width, p.box[3] * height, score=p.score)
             for p in reported if p.box is not None]
    matches = match_image(case.boxes, boxes)
    matched = {m for m in matches if m is not None}
    scores.truth_labels |= {b.label for b in case.boxes}
    scores.correct.append(len(matched) == len(case.boxes) and all(m is not None for m in matches))
    for box, match in zip(boxes, matches):
        scores.tally(box.label, 0 if match is not None else 1)
    for index, box in enumerate(case.boxes):
        if index not in matched:
            scores.tally(box.label, 2)
