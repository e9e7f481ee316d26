"""The Ground Truth line a completed review becomes (pure).

One line per image, keyed by ``source-ref``, in the format Custom Labels reads
(SageMaker Ground Truth output):

* single-label classification: ``reviewed-label`` = 0 and its metadata with
  ``class-name``, type ``groundtruth/image-classification``;
* multi-label: one ``reviewed-label-<n>`` pair per label (Custom Labels'
  own convention), same type;
* detection: ``reviewed-boxes`` with ``image_size`` and ``annotations`` in
  pixels (DetectCustomLabels' ratios scaled by the image's size), metadata
  ``objects``/``class-map``, type ``groundtruth/object-detection``;
* a negative answer: detection keeps the image with an empty
  ``annotations`` list (a valid negative example); classification has no
  "none of these" label, so the image is kept as an unlabeled entry (labeled
  later, never dropped).

Every metadata object says ``human-annotated: yes``, ``job-name`` =
``a2i/<flow definition name>``, ``creation-date`` = the last answer's
submission time (UTC), ``confidence`` = the reviewers' agreement (0.00 for a
single reviewer, as Ground Truth writes it), and the provenance under
``customlabels-review``: the human loop, the model version that predicted,
the reviewers, the seconds they spent.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

CLASSIFICATION_TYPE = "groundtruth/image-classification"
DETECTION_TYPE = "groundtruth/object-detection"
LABEL_ATTRIBUTE = "reviewed-label"
BOXES_ATTRIBUTE = "reviewed-boxes"
PROVENANCE = "customlabels-review"


def creation_date(ms: int) -> str:
    """Ground Truth's creation-date: UTC, ISO 8601, milliseconds, no zone suffix."""
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}"


def ground_truth_line(*, source_ref: str, task: str | None, truth: Mapping[str, Any], image_size: tuple[int, int] | None,
                      flow_name: str, loop_name: str, version_arn: str | None,
                      answers: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``truth``: the consolidated answer (``answers.consolidate``); ``answers``: the loop's answers as stored."""
    reviewers = [a["worker_id"] for a in answers]
    metadata = {
        "confidence": round(truth["agreement"], 2) if len(answers) > 1 else 0.0,
        "job-name": f"a2i/{flow_name}",
        "human-annotated": "yes",
        "creation-date": creation_date(max(a["submitted_ms"] for a in answers)),
        PROVENANCE: {
            "human-loop": loop_name,
            "model-version": version_arn,
            "reviewers": reviewers,
            "seconds": round(sum(a.get("seconds") or 0.0 for a in answers), 3),
            "answer": truth["kind"],
            "agreement": truth["agreement"],
        },
    }
    line: dict[str, Any] = {"source-ref": source_ref}
    if task == "detection":
        if image_size is None:
            raise ValueError("a detection line needs the image's size")
        width, height = image_size
        boxes = truth["boxes"]
        class_ids = {label: index for index, label in enumerate(sorted({b["Label"] for b in boxes}))}
        line[BOXES_ATTRIBUTE] = {
            "image_size": [{"width": width, "height": height, "depth": 3}],
            "annotations": [
                {"class_id": class_ids[b["Label"]],
                 "left": round(b["Left"] * width), "top": round(b["Top"] * height),
                 "width": max(1, round(b["Width"] * width)), "height": max(1, round(b["Height"] * height))}
                for b in boxes
            ],
        }
        line[BOXES_ATTRIBUTE + "-metadata"] = {
            **metadata,
            "objects": [{"confidence": metadata["confidence"]} for _ in boxes],
            "class-map": {str(index): label for label, index in class_ids.items()},
            "type": DETECTION_TYPE,
        }
        return line
    labels = truth["labels"]
    if not labels:
        return line  # a negative classification answer: kept, unlabeled
    if task == "multilabel":
        for index, label in enumerate(labels):
            line[f"{LABEL_ATTRIBUTE}-{index}"] = 0
            line[f"{LABEL_ATTRIBUTE}-{index}-metadata"] = {**metadata, "class-name": label, "type": CLASSIFICATION_TYPE}
        return line
    line[LABEL_ATTRIBUTE] = 0
    line[LABEL_ATTRIBUTE + "-metadata"] = {**metadata, "class-name": labels[0], "type": CLASSIFICATION_TYPE}
    return line
