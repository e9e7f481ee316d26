"""The evaluation service: scores a trained model on its test images, as the reference defines it.

    TrainingFinished -> the exported artifact (the very file hosting serves) run
                        with ``ServedModel`` on the test images
                     -> EvaluationSummary-<project>-<version>.json and the
                        evaluation manifest snapshot in the output bucket
                     -> EvaluationCompleted (F1, per-label assumed thresholds)
                        or EvaluationFailed with the reason

Scoring the exported ONNX file, not the torch model it came from, is what
makes "one artifact, one answer" hold: the thresholds and the snapshot's
confidences are exactly what DetectCustomLabels will return.

It keeps one document per evaluated version (F1 and where the files are) so
that a redelivered TrainingFinished answers with the same result instead of
evaluating again.
"""
from __future__ import annotations

import asyncio
import json
import logging
import tempfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from customlabels import clock
from customlabels.arns import parse_arn
from customlabels.events import (
    EvaluationCompleted,
    EvaluationFailed,
    Event,
    ObjectLocation,
    TrainingFinished,
)
from customlabels.images import ImageProblem
from customlabels.manifests import stored_line_targets
from customlabels.manifests.targets import is_localization
from customlabels.messaging import EventHandler, UnitOfWork, transient
from customlabels.ml.runtime.artifact import CARD_NAME, ONNX_NAME
from customlabels.ml.runtime.served import ServedModel
from customlabels.ml.evaluation import (
    Box,
    evaluate_classification,
    evaluate_detection,
    evaluation_manifest_lines,
    summary_file,
    summary_file_name,
)
from customlabels.ports.blobs import get_many, split_s3_uri
from customlabels.ports.documents import Collection, Put
from customlabels.service import Service

log = logging.getLogger(__name__)

EVALUATIONS = "evaluations"
BATCH = 32


class EvaluationService(Service):
    name = "evaluation"
    collections = (Collection(EVALUATIONS),)

    def handlers(self) -> Mapping[type[Event], EventHandler]:
        return {TrainingFinished: self.on_training_finished}

    async def on_training_finished(self, event: TrainingFinished, uow: UnitOfWork) -> None:
        ids = dict(project_arn=event.project_arn, version_arn=event.version_arn, version_name=event.version_name)
        try:
            result = await self.evaluate(event)
        except EvaluationError as e:
            uow.emit(EvaluationFailed(**ids, status_message=str(e)))
            return
        except Exception as e:
            if transient(e):  # a store's outage: the handler tries again later
                raise
            log.exception("evaluating %s failed", event.version_arn)
            uow.emit(EvaluationFailed(**ids, status_message=f"evaluation failed on an internal error "
                                                            f"({type(e).__name__}: {e})"))
            return
        uow.add(Put(EVALUATIONS, {"_id": event.version_arn, **result}, ))
        uow.emit(EvaluationCompleted(**ids, f1_score=result["f1_score"], thresholds=result["thresholds"],
                                     summary=ObjectLocation(**result["summary"]),
                                     snapshot=ObjectLocation(**result["snapshot"]),
                                     calibration_error=result.get("calibration_error")))

    async def evaluate(self, event: TrainingFinished) -> dict[str, Any]:
        blobs = self.ctx.blobs
        lines = [json.loads(raw) for raw in (await blobs.get(event.test_manifest.bucket, event.test_manifest.key)).splitlines()
                 if raw.strip()]
        with tempfile.TemporaryDirectory() as folder:
            for key, name in ((event.model.onnx_key, ONNX_NAME), (event.model.card_key, CARD_NAME)):
                (Path(folder) / name).write_bytes(await blobs.get(event.model.bucket, key))
            model = await asyncio.to_thread(ServedModel.load, folder)
            cases = [case for case in (_test_case(line, model.card) for line in lines) if case is not None]
            images = await get_many(blobs, [(c["bucket"], c["key"]) for c in cases])
            cases = [dict(c, image=image) for c, image in zip(cases, images) if image is not None]
            if not cases:
                raise EvaluationError("none of the test images could be read: add test images, or check that "
                                      "the test dataset's images are still in their bucket")
            predictions = await asyncio.to_thread(_predict, model, [c.pop("image") for c in cases])
            decoded = [(c, p) for c, p in zip(cases, predictions) if p is not None]
            if not decoded:
                raise EvaluationError("none of the test images could be decoded: they are damaged; replace them "
                                      "with complete PNG or JPEG files")
            cases, predictions = [c for c, _ in decoded], [p for _, p in decoded]
        card = model.card
        if card.task == "detection":
            evaluation = evaluate_detection(
                card.labels, [c["truth"] for c in cases],
                [[_pixel_box(p, c["size"]) for p in found] for c, found in zip(cases, predictions)])
            sizes = [c["size"] for c in cases]
        else:
            column = {label: i for i, label in enumerate(card.labels)}
            scores = [[0.0] * len(card.labels) for _ in cases]
            for row, found in enumerate(predictions):
                for p in found:
                    scores[row][column[p.label]] = p.score
            evaluation = evaluate_classification(card.labels, [c["truth"] for c in cases], scores,
                                                 multi_label=card.task == "multilabel")
            sizes = None
        now = clock.now()
        project_name = parse_arn(event.project_arn).project_name
        prefix = event.output.key
        summary = summary_file(evaluation, project_version_arn=event.version_arn, evaluation_end=now,
                               number_of_training_images=event.number_of_training_images)
        summary_key = prefix + summary_file_name(project_name, event.version_name)
        snapshot = evaluation_manifest_lines([c["line"] for c in cases], evaluation, creation_date=now,
                                             image_sizes=sizes)
        snapshot_key = prefix + "testing/evaluation-manifest-snapshot.manifest"
        await blobs.put(event.output.bucket, summary_key, json.dumps(summary, indent=2).encode())
        await blobs.put(event.output.bucket, snapshot_key,
                        b"".join(json.dumps(line, separators=(",", ":")).encode() + b"\n" for line in snapshot))
        return {
            "f1_score": round(float(evaluation.f1_score), 6),
            "thresholds": {label: float(m.threshold) for label, m in evaluation.metrics.items()},
            "calibration_error": None if card.task == "detection" else evaluation.calibration_error,
            "summary": {"bucket": event.output.bucket, "key": summary_key},
            "snapshot": {"bucket": event.output.bucket, "key": snapshot_key},
            "testing_images": len(cases),
        }


class EvaluationError(Exception):
    """Evaluation can't be done, for a reason the user can act on."""


def _test_case(line: dict, card) -> dict | None:
    """A test line's image and ground truth in the model's labels; None for a line the model isn't tested on."""
    entry = stored_line_targets(line)
    if entry is None:
        return None
    bucket, key = split_s3_uri(entry.source_ref)
    known = set(card.labels)
    if card.task == "detection":
        if not is_localization(entry) or entry.image_size is None:
            return None
        truth = [Box(label, left, top, width, height) for label, left, top, width, height in entry.boxes if label in known]
        return {"line": line, "bucket": bucket, "key": key, "truth": truth, "size": entry.image_size}
    if not entry.image_labels:
        return None
    return {"line": line, "bucket": bucket, "key": key, "truth": {label for label in entry.image_labels if label in known}}


def _pixel_box(prediction, size) -> Box:
    width, height = size
    left, top, box_width, box_height = prediction.box
    return Box(prediction.label, left * width, top * height, box_width * width, box_height * height,
               score=prediction.score)


def _predict(model: ServedModel, images: list[bytes]) -> list[list | None]:
    """Each image's predictions; None for one that cannot be decoded (its header passed the import's
    checks, its pixels are damaged), which training skipped too."""
    out: list[list | None] = []
    for start in range(0, len(images), BATCH):
        inputs = []
        for data in images[start:start + BATCH]:
            try:
                inputs.append(model.preprocess([data]))
            except ImageProblem:
                inputs.append(None)
        decoded = [array for array in inputs if array is not None]
        found = iter(model.predictions_from_array(np.concatenate(decoded)) if decoded else [])
        out.extend(None if array is None else next(found) for array in inputs)
    return out

