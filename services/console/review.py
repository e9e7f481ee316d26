"""The review queue's side of the answer API (``customlabels-review``), both ways (pure).

* ``task_view``: GetReviewTask's ``ReviewTask`` as the queue page draws it:
  the image, every prediction with its label's threshold and whether the
  model reported it (what ACCEPT means: the predictions at or above their
  label's threshold; for a single-label classifier the best of them), boxes
  as ratios of the image (the page turns them into pixels of the image it
  loaded), the labels a reviewer may choose from, the answers so far.
* ``answer_params``: what the page sends back, as AnswerReviewTask's
  parameters. Boxes come from the box editor in image pixels with the size
  they were drawn on, and go to the API as ratios of that size.

The API decides what an answer may say (labels of the project, boxes inside
the image, one label for a single-label task): this module only shapes the
request, and refuses what could not be one.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from customlabels.arns import parse_arn

VERDICTS = ("ACCEPT", "CORRECT", "NEGATIVE", "SKIP")
DEFAULT_THRESHOLD = 50.0  # a label the task names no threshold for
MAX_WORKER_ID = 128
MAX_BOXES = 1000


class AnswerProblem(ValueError):
    """The page's answer cannot become an AnswerReviewTask request."""


def task_view(task: Mapping[str, Any], image_url: str | None) -> dict[str, Any]:
    kind = task.get("TaskType") or "CLASSIFICATION"
    thresholds = {t["Name"]: t["Confidence"] for t in task.get("Thresholds") or []}
    predictions = sorted(task.get("Predictions") or [], key=lambda p: -p["Confidence"])
    image = task.get("Image") or {}
    s3 = image.get("S3Object") or {}
    version = parse_arn(task.get("ProjectVersionArn") or "")
    project = parse_arn(task.get("ProjectArn") or "")
    return {
        "name": task["HumanLoopName"],
        "type": kind,
        "status": task["Status"],
        "flow": task["FlowDefinitionArn"].rsplit("/", 1)[-1],
        "project": project.project_name if project else None,
        "version": (version.version_name if version else None),
        "created": task["CreationTime"].isoformat() if hasattr(task["CreationTime"], "isoformat") else str(task["CreationTime"]),
        "title": task.get("Title") or "",
        "description": task.get("Description") or "",
        "answers": task.get("AnswerCount", 0),
        "task_count": task.get("TaskCount", 1),
        "image": {"url": image_url, "ref": f"s3://{s3.get('Bucket')}/{s3.get('Name')}" if s3 else None,
                  "width": image.get("Width"), "height": image.get("Height")},
        "labels": list(task.get("Labels") or []),
        "predictions": [
            {"label": p["Name"], "confidence": p["Confidence"], "threshold": thresholds.get(p["Name"], DEFAULT_THRESHOLD),
             "reported": bool(p.get("Reported")), "box": _box(p.get("BoundingBox"))}
            for p in predictions
        ],
        "selected": [{"label": p["Name"], "confidence": p["Confidence"]} for p in task.get("SelectedPredictions") or []],
        "previous": [{"worker": a["WorkerId"], "verdict": a["Verdict"]} for a in task.get("Answers") or []],
    }


def _box(box: Mapping[str, float] | None) -> dict[str, float] | None:
    if not box:
        return None
    return {"left": box["Left"], "top": box["Top"], "width": box["Width"], "height": box["Height"]}


def answer_params(name: str, body: Any, default_worker: str) -> dict[str, Any]:
    """AnswerReviewTask's parameters for the page's JSON ``{verdict, labels | boxes + size, worker, seconds}``."""
    if not isinstance(body, dict):
        raise AnswerProblem("The answer must be a JSON object.")
    verdict = body.get("verdict")
    if verdict not in VERDICTS:
        raise AnswerProblem(f"verdict must be one of {', '.join(VERDICTS)}.")
    worker = body.get("worker")
    worker = worker.strip() if isinstance(worker, str) and worker.strip() else default_worker
    if len(worker) > MAX_WORKER_ID:
        raise AnswerProblem(f"The reviewer's name has {len(worker)} characters; at most {MAX_WORKER_ID}.")
    params: dict[str, Any] = {"HumanLoopName": name, "Verdict": verdict, "WorkerId": worker}
    seconds = body.get("seconds")
    if isinstance(seconds, (int, float)) and not isinstance(seconds, bool) and math.isfinite(seconds) and seconds >= 0:
        params["TimeSpentInSeconds"] = round(float(seconds), 3)
    if verdict != "CORRECT":
        return params
    if body.get("boxes") is not None:
        params["Labels"] = _box_labels(body["boxes"], body.get("size"))
    else:
        labels = body.get("labels")
        if not isinstance(labels, list) or not all(isinstance(label, str) and label for label in labels):
            raise AnswerProblem("A correction lists the right labels (or, for detection, the boxes).")
        params["Labels"] = [{"Name": label} for label in labels]
    return params


def _box_labels(boxes: Any, size: Any) -> list[dict[str, Any]]:
    try:
        width, height = (float(v) for v in size)
    except (TypeError, ValueError):
        raise AnswerProblem("Boxes need the size, in pixels, of the image they were drawn on.") from None
    if not (width > 0 and height > 0) or not isinstance(boxes, list) or len(boxes) > MAX_BOXES:
        raise AnswerProblem(f"Boxes need a positive image size, and at most {MAX_BOXES} boxes.")
    labels = []
    for number, box in enumerate(boxes, 1):
        try:
            left, top, w, h = (float(box[k]) for k in ("left", "top", "width", "height"))
            label = box["label"]
        except (KeyError, TypeError, ValueError):
            raise AnswerProblem(f"Box {number} needs a label, left, top, width and height.") from None
        if not isinstance(label, str) or not label:
            raise AnswerProblem(f"Box {number} has no label.")
        labels.append({"Name": label, "BoundingBox": {"Left": left / width, "Top": top / height,
                                                       "Width": w / width, "Height": h / height}})
    return labels
