"""The evaluation manifest snapshot: the test manifest with the model's predictions added.

Each line keeps its ground truth untouched and gets the predictions as
``rekognition-custom-labels-evaluation*`` attributes in Ground Truth format
(im-evaluation-manifest-snapshot-api.md), each carrying
``rekognition-custom-labels-evaluation-details`` with the flags that say how
the prediction compares with the ground truth at the label's assumed
threshold.

What a line lists (the reference shows one true positive per task and says
no more):

* Classification: one ``rekognition-custom-labels-evaluation-<n>`` pair per
  label that the model reports (score >= threshold: a true or false positive)
  or that the ground truth has (reported: true positive; not: false
  negative, with the label's score as its confidence); highest score first.
* Detection: one ``rekognition-custom-labels-evaluation`` attribute whose
  ``annotations``/``objects`` list every reported box (true or false
  positive), every box under the threshold that matched a ground-truth box
  (false negative, with its score), and, so that each missed ground-truth box
  shows up, every ground-truth box no prediction matched (false negative at
  the ground truth's coordinates, confidence 0).

Everything else is a true negative and left out, as the reference's per-image
results show TP, FP and FN; ``is-true-negative`` is therefore always false,
present because the format has it. Summing the flags over the snapshot gives
each label's TP, FP and FN of the summary file.

``is-present-in-ground-truth``, as the reference defines it, ignores the
threshold: the label is in the image's ground truth (classification), or the
box matched a ground-truth box (detection).
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
from datetime import datetime

import numpy as np

from customlabels.manifests.lines import CLASSIFICATION_TYPE, DETECTION_TYPE, METADATA_SUFFIX, MULTILABEL_TYPE

from .classification import ClassificationEvaluation
from .detection import Box, DetectionEvaluation
from .summary import reference_timestamp

EVALUATION_ATTRIBUTE = "rekognition-custom-labels-evaluation"
EVALUATION_JOB_NAME = "rekognition-custom-labels-evaluation-job"
DETAILS_KEY = "rekognition-custom-labels-evaluation-details"
DETAILS_VERSION = 1
DEFAULT_DEPTH = 3  # colour images, when the caller gives only width and height


def evaluation_manifest_lines(
    lines: Sequence[dict],
    evaluation: ClassificationEvaluation | DetectionEvaluation,
    *,
    creation_date: datetime,
    image_sizes: Sequence[tuple[int, ...]] | None = None,
) -> list[dict]:
    """The snapshot lines: ``lines[i]`` is the Ground Truth line of test image ``i`` of ``evaluation``.

    The input lines are not modified. Evaluation attributes a line already
    has (from an earlier snapshot) are replaced. ``image_sizes``: per line
    ``(width, height)`` or ``(width, height, depth)``, needed for detection
    only, and only for lines with no object-detection attribute to take
    ``image_size`` from.
    """
    if len(lines) != evaluation.number_of_testing_images:
        raise ValueError(f"{len(lines)} lines for {evaluation.number_of_testing_images} evaluated images")
    if image_sizes is not None and len(image_sizes) != len(lines):
        raise ValueError(f"{len(image_sizes)} image sizes for {len(lines)} lines")
    stamp = reference_timestamp(creation_date)
    if isinstance(evaluation, DetectionEvaluation):
        return [
            _detection_line(line, evaluation, i, stamp, image_sizes[i] if image_sizes is not None else None)
            for i, line in enumerate(lines)
        ]
    predicted = evaluation.predicted()
    return [_classification_line(line, evaluation, predicted, i, stamp) for i, line in enumerate(lines)]


def details(*, positive: bool, reported: bool, in_ground_truth: bool, jobs: list[str]) -> dict:
    """The ``rekognition-custom-labels-evaluation-details`` object of one prediction."""
    return {
        "version": DETAILS_VERSION,
        "ground-truth-labelling-jobs": jobs,
        "is-true-positive": reported and positive,
        "is-true-negative": not reported and not positive,
        "is-false-positive": reported and not positive,
        "is-false-negative": not reported and positive,
        "is-present-in-ground-truth": in_ground_truth,
    }


# --- classification -------------------------------------------------------------

def _classification_line(line: dict, evaluation: ClassificationEvaluation, predicted: np.ndarray, row: int,
                         stamp: str) -> dict:
    out = _without_evaluation(line)
    jobs = ground_truth_jobs(line, (CLASSIFICATION_TYPE, MULTILABEL_TYPE))
    truth, scores, reported = evaluation.truth[row], evaluation.scores[row], predicted[row]
    listed = [j for j in range(len(evaluation.labels)) if reported[j] or truth[j]]
    listed.sort(key=lambda j: -scores[j])  # stable: equal scores keep label order
    for n, j in enumerate(listed):
        attribute = f"{EVALUATION_ATTRIBUTE}-{n}"
        out[attribute] = j  # the class id: the label's index among the model's labels
        out[attribute + METADATA_SUFFIX] = {
            "confidence": float(scores[j]),
            "job-name": EVALUATION_JOB_NAME,
            "class-name": evaluation.labels[j],
            "human-annotated": "no",
            "creation-date": stamp,
            "type": CLASSIFICATION_TYPE,
            DETAILS_KEY: details(positive=bool(truth[j]), reported=bool(reported[j]),
                                 in_ground_truth=bool(truth[j]), jobs=jobs),
        }
    return out


# --- detection --------------------------------------------------------------------

def _detection_line(line: dict, evaluation: DetectionEvaluation, row: int, stamp: str, size) -> dict:
    out = _without_evaluation(line)
    jobs = ground_truth_jobs(line, (DETECTION_TYPE,))
    listed = _listed_boxes(evaluation, row)  # [(box, reported, matched)]
    class_id = {label: i for i, label in enumerate(evaluation.labels)}
    used = sorted({class_id[box.label] for box, _, _ in listed})
    out[EVALUATION_ATTRIBUTE] = {
        "annotations": [_annotation(box, class_id[box.label]) for box, _, _ in listed],
        "image_size": [_image_size(line, size)],
    }
    confidences = [_confidence(box) for box, _, _ in listed]
    out[EVALUATION_ATTRIBUTE + METADATA_SUFFIX] = {
        # Ground Truth puts confidence per object; the reference's example also has one
        # for the attribute, equal to its only object's: the highest of them here.
        "confidence": max(confidences, default=0.0),
        "job-name": EVALUATION_JOB_NAME,
        "class-map": {str(i): evaluation.labels[i] for i in used},
        "human-annotated": "no",
        "objects": [
            {"confidence": confidence,
             DETAILS_KEY: details(positive=matched, reported=reported, in_ground_truth=matched, jobs=jobs)}
            for confidence, (_, reported, matched) in zip(confidences, listed, strict=True)
        ],
        "creation-date": stamp,
        "type": DETECTION_TYPE,
    }
    return out


def _listed_boxes(evaluation: DetectionEvaluation, row: int) -> list[tuple[Box, bool, bool]]:
    """What the line shows: (box, reported at the threshold, matched a ground-truth box)."""
    image = evaluation.images[row]
    predictions = []
    for box, match in zip(image.predictions, image.matches, strict=True):
        reported = box.score >= evaluation.metrics[box.label].threshold
        if reported or match is not None:  # the rest are true negatives
            predictions.append((box, reported, match is not None))
    predictions.sort(key=lambda item: -item[0].score)
    matched = {m for m in image.matches if m is not None}
    # A ground-truth box no prediction matched: a false negative the model gave no box for.
    missed = [(Box(t.label, t.left, t.top, t.width, t.height, 0.0), False, True)
              for j, t in enumerate(image.truth) if j not in matched]
    return predictions + missed


def _confidence(box: Box) -> float:
    return float(box.score) if box.score is not None else 0.0


def _annotation(box: Box, class_id: int) -> dict:
    return {"class_id": class_id, "left": _plain(box.left), "top": _plain(box.top),
            "width": _plain(box.width), "height": _plain(box.height)}


def _plain(number):
    """A JSON-ready number: numpy scalars become Python ones, integers stay integers."""
    return int(number) if isinstance(number, (int, np.integer)) else float(number)


def _image_size(line: dict, size) -> dict:
    if size is not None:
        width, height, *rest = size
        return {"width": _plain(width), "height": _plain(height), "depth": int(rest[0]) if rest else DEFAULT_DEPTH}
    for name in _ground_truth_attributes(line, (DETECTION_TYPE,)):
        value = line[name]
        if isinstance(value, dict) and isinstance(value.get("image_size"), list) and value["image_size"]:
            return dict(value["image_size"][0])
    raise ValueError(f"no image size for {line.get('source-ref')!r}: give image_sizes")


# --- the ground truth of a line ----------------------------------------------------

def ground_truth_jobs(line: dict, types: Sequence[str]) -> list[str]:
    """``ground-truth-labelling-jobs``: the labelling jobs of the line's ground-truth attributes of these types.

    The reference calls it "a list of ground truth fields in the manifest line
    that are used for training" and its example lists a job name
    (``rekognition-custom-labels-training-job``): each attribute's
    ``job-name``, or the attribute's own name when it has none. In line order,
    each once.
    """
    jobs: list[str] = []
    for name in _ground_truth_attributes(line, types):
        job = line[name + METADATA_SUFFIX].get("job-name")
        job = job if isinstance(job, str) and job else name
        if job not in jobs:
            jobs.append(job)
    return jobs


def _ground_truth_attributes(line: dict, types: Sequence[str]) -> list[str]:
    names = []
    for name in line:
        meta = line.get(name + METADATA_SUFFIX)
        if isinstance(meta, dict) and meta.get("type") in types and not name.startswith(EVALUATION_ATTRIBUTE):
            names.append(name)
    return names


def _without_evaluation(line: dict) -> dict:
    """A deep copy of the line, minus any earlier snapshot's evaluation attributes."""
    return {key: copy.deepcopy(value) for key, value in line.items() if not key.startswith(EVALUATION_ATTRIBUTE)}
