"""The training job of one version, in stages that checkpoint into the version document.

1. **snapshot**: the TRAIN (and TEST) dataset entries, read through the
   datasets API, written to the output bucket as the input manifests: what
   this version was trained on, fixed even if the datasets change later.
2. **prepare** (``data.prepare``): task, labels, splits, or TRAINING_FAILED
   with the validation manifests and ``manifest_summary.json``.
3. **train**: images fetched from the blob store, ``train_classifier`` or
   ``train_detector`` within the budget in a worker thread (progress goes to
   StatusMessage and ``TrainingProgress`` events), exported to ONNX; the
   artifact (``model.onnx`` + ``model.json``) is stored, and
   ``TrainingFinished`` asks the evaluation service to score it.

A worker killed during a stage is replaced by one that starts again from the
last checkpoint (the snapshot is reused; the training stage runs again with
the budget it has left: the seconds it trained are committed with every
progress report, ``job.training_seconds``, and a resumed run gets what is left
but at least ``RESUME_FLOOR_SECONDS``, the least budget a version may have, so
that a model comes out); the attempt count is committed before any work, so a job
that kills every worker fails after ``MAX_ATTEMPTS``. A job handed back on
purpose (shutdown, or a Kafka rebalance that moves its partition) stops its
training thread at the next progress report and gives its attempt back.
A process trains one version at a time (``TrainingService.training_slot``).
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import tempfile
import threading
import time
from contextlib import suppress
from pathlib import Path
from typing import Any, Awaitable, Callable

from customlabels import clock
from customlabels.events import (
    EvaluationCompleted,
    ModelLocation,
    ObjectLocation,
    TrainingFinished,
    TrainingProgress,
    VersionCompleted,
)
from customlabels.messaging import transient
from customlabels.ml.runtime.artifact import MODELS_BUCKET, ONNX_NAME, ModelCard, artifact_prefix
from customlabels.ports.blobs import BlobStore, get_many
from customlabels.ports.documents import ScopedStore
from customlabels.ports.operations import OperationRouter

from services.training import records
from services.training.data import DETECTION, DataProblem, Split, TrainingData, prepare

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
RESUME_FLOOR_SECONDS = 10  # a resumed training's least budget (the least a version may ask for)
PROGRESS_SECONDS = 2.0  # at most one progress write per this many seconds
ENTRIES_PAGE = 100


# ``update_version(arn, change)``: apply ``change(doc)`` to the version and commit it with the
# events ``change`` returns (see ``TrainingService.update_version``); the updated doc, or None.
UpdateVersion = Callable[[str, Callable[[dict], Any]], Awaitable["dict | None"]]


class Worker:
    def __init__(self, store: ScopedStore, blobs: BlobStore, router: OperationRouter, update_version: UpdateVersion,
                 *, device: str | None) -> None:
        """``router`` reaches the datasets service; ``device``: cuda, cpu or None (cuda when present)."""
        self.stop = threading.Event()  # tells the training thread to give up at its next progress report
        self.store = store
        self.blobs = blobs
        self.router = router
        self.update_version = update_version
        self.device = device

    async def run(self, arn: str) -> None:
        doc = await self.store.get(records.VERSIONS, arn)
        if doc is None or doc["status"] not in ("TRAINING_IN_PROGRESS", "COPYING_IN_PROGRESS"):
            return  # deleted, or finished: a redelivered request
        if doc["job"].get("stage") == "trained":
            return  # the evaluation service has it

        def count_attempt(d):
            d["job"]["attempts"] += 1

        doc = await self.update_version(arn, count_attempt)
        if doc["job"]["attempts"] > MAX_ATTEMPTS:
            await self.fail(arn, f"the training worker stopped {MAX_ATTEMPTS} times while training this version "
                                 "(killed, or out of memory); create the version again, with a smaller budget or "
                                 "fewer images")
            return
        try:
            if doc["job"]["kind"] == "copy":
                await self.copy(doc)
            else:
                await self.train(doc)
        except asyncio.CancelledError:
            # Shutdown or a consumer-group rebalance hands the job back: it will be redelivered, and this
            # attempt doesn't count against it (a killed worker never gets here, so that one does).
            self.stop.set()
            await asyncio.shield(self.update_version(arn, _hand_back))
            raise
        except DataProblem as problem:
            await self.fail(arn, problem.message)
        except Exception as e:  # a bug or a broken store: fail with the reason rather than loop
            if transient(e):  # the datasets service restarting, a full disk: the handler waits, then resumes
                with suppress(Exception):
                    await self.update_version(arn, _hand_back)
                raise
            log.exception("training %s failed", arn)
            await self.fail(arn, f"training failed on an internal error ({type(e).__name__}: {e}); "
                                 "please report it with the version ARN")

    async def fail(self, arn: str, message: str) -> None:
        await self.update_version(arn, lambda d: records.fail(d, message))

    # --- stage 1: the snapshot ------------------------------------------------------------
    async def train(self, doc: dict) -> None:
        arn = doc["_id"]
        out = Output(doc, self.blobs)
        if "snapshot" not in doc["job"]:
            await self.progress(arn, "Reading the datasets")
            snapshot = {}
            for dataset_type, dataset_arn in sorted(doc["job"]["datasets"].items()):
                lines = await self.dataset_lines(dataset_arn)
                split = "training" if dataset_type == "TRAIN" else "testing"
                location = await out.put_lines(f"{split}/input.manifest", lines)
                snapshot[split] = {"location": location, "dataset_arn": dataset_arn, "lines": len(lines),
                                   "sha256": hashlib.sha256(_jsonl(lines)).hexdigest()}

            def checkpoint(d):
                d["job"]["snapshot"] = snapshot
                d["results"].update({f"{split}.input": s["location"] for split, s in snapshot.items()})

            doc = await self.update_version(arn, checkpoint)
        snapshot = doc["job"]["snapshot"]
        train_lines = await out.get_lines(snapshot["training"]["location"])
        test_lines = await out.get_lines(snapshot["testing"]["location"]) if "testing" in snapshot else None

        # --- stage 2: prepare --------------------------------------------------------------
        try:
            data = prepare(train_lines, test_lines, seed=doc["created_ms"] % (2**32))
        except DataProblem as problem:
            await self.write_results(doc, out, problem.training, problem.testing, problem.summary,
                                     "NOT_DETERMINED")
            raise
        await self.write_results(doc, out, data.training, data.testing, data.summary(), data.use_case)

        # --- stage 3: train, export, store ----------------------------------------------------
        started = time.monotonic()
        trained, card = await self.fit(doc, data)
        seconds = doc["job"].get("training_seconds", 0.0) + time.monotonic() - started  # earlier attempts' too
        location = ModelLocation(bucket=MODELS_BUCKET, prefix=artifact_prefix(arn))
        card.provenance.update({
            "version_arn": arn, "datasets": {s: {k: v for k, v in snap.items() if k != "location"}
                                             for s, snap in snapshot.items()},
            "budget_seconds": doc["job"]["budget_seconds"], "training_seconds": round(seconds, 1),
            "trained_at": clock.now().isoformat(), "number_of_training_images": len(data.training.examples),
            "auto_split": data.auto_split,
        })
        await self.store_artifact(trained, card, location)
        test_manifest = await out.put_lines("testing/evaluated.manifest", data.testing.lines)

        def trained_stage(d):
            d["job"]["stage"] = "trained"
            d["model"] = location.model_dump()
            d["billable_seconds"] = int(round(seconds))
            d["status_message"] = "Evaluating the model on the test images"
            return [TrainingFinished(
                project_arn=d["project_arn"], version_arn=d["_id"], version_name=d["name"], model=location,
                test_manifest=ObjectLocation(**test_manifest), output=ObjectLocation(**out.location("")),
                number_of_training_images=len(data.training.examples))]

        await self.update_version(arn, trained_stage)

    async def dataset_lines(self, dataset_arn: str) -> list[dict]:
        lines, token = [], None
        while True:
            params = {"DatasetArn": dataset_arn, "MaxResults": ENTRIES_PAGE}
            if token:
                params["NextToken"] = token
            page = await self.router.call("ListDatasetEntries", params)
            lines.extend(json.loads(line) for line in page.get("DatasetEntries", []))
            token = page.get("NextToken")
            if not token:
                return lines

    async def write_results(self, doc: dict, out: Output, training: Split, testing: Split | None,
                            summary: dict, use_case: str) -> None:
        results = {"training.validation": await out.put_lines("training/validation.manifest",
                                                                training.validation_lines(use_case)),
                   "training.output": await out.put_lines("training/output.manifest", training.lines),
                   "manifest_summary": await out.put("manifest_summary.json", json.dumps(summary, indent=2).encode())}
        if testing is not None:
            results["testing.validation"] = await out.put_lines("testing/validation.manifest",
                                                                testing.validation_lines(use_case))
            results["testing.output"] = await out.put_lines("testing/output.manifest", testing.lines)
        await self.update_version(doc["_id"], lambda d: d["results"].update(results))

    # --- training ----------------------------------------------------------------------
    async def fit(self, doc: dict, data: TrainingData):
        arn = doc["_id"]
        budget = doc["job"]["budget_seconds"]
        await self.progress(arn, f"Fetching {len(data.training.examples)} training images")
        images = await get_many(self.blobs, [(e.bucket, e.key) for e in data.training.examples])
        items = [(image, e) for image, e in zip(images, data.training.examples) if image is not None]
        missing = len(images) - len(items)
        if not items:
            raise DataProblem(f"none of the {len(images)} training images could be read from the object store: "
                              "were they deleted?", data.summary(), data.training, data.testing)
        if data.unlabeled:
            await self.progress(arn, f"Fetching {len(data.unlabeled)} unlabeled training images")
        unlabeled = [image for image in await get_many(self.blobs, [(e.bucket, e.key) for e in data.unlabeled])
                     if image is not None]
        loop = asyncio.get_running_loop()
        reports: asyncio.Queue = asyncio.Queue()

        def progress(stage: str, fraction: float, message: str) -> None:
            if self.stop.is_set():
                raise TrainingStopped("the job was handed back")
            loop.call_soon_threadsafe(reports.put_nowait, (stage, fraction, message))

        spent = doc["job"].get("training_seconds", 0.0)  # by earlier attempts, cut short
        left = max(RESUME_FLOOR_SECONDS, budget - spent)
        relay = asyncio.create_task(self.relay_progress(doc, budget, spent, reports))
        try:
            trained = await asyncio.to_thread(_fit, data, items, unlabeled, left, progress, self.device)
        finally:
            relay.cancel()
        card = ModelCard(task=data.task, labels=list(trained.labels), preprocessing=trained.preprocessing.to_dict(),
                         backbone=trained.backbone, provenance={"missing_images": missing, "log": trained.log,
                                                                "unlabeled_images": len(unlabeled),
                                                                "stopped_early": trained.stopped_early})
        return trained, card

    async def relay_progress(self, doc: dict, budget: float, spent: float, reports: asyncio.Queue) -> None:
        """The training thread's reports, at most one per ``PROGRESS_SECONDS``, as the version's StatusMessage
        and TrainingProgress events, each committed with the seconds of the budget used so far (``spent`` by
        earlier attempts, and this one's)."""
        last, started = 0.0, time.monotonic()
        while True:
            stage, _, message = await reports.get()
            if time.monotonic() - last < PROGRESS_SECONDS and stage != "done":
                continue
            last = time.monotonic()
            used = spent + last - started
            fraction = min(1.0, used / budget)
            text = f"Training ({fraction:.0%} of the {budget:.0f} s budget): {message}"
            event = TrainingProgress(project_arn=doc["project_arn"], version_arn=doc["_id"],
                                     version_name=doc["name"], stage=stage, fraction=fraction, message=message)
            await self.progress(doc["_id"], text, event, training_seconds=used)

    async def progress(self, arn: str, message: str, event: TrainingProgress | None = None,
                       training_seconds: float | None = None) -> None:
        def change(d):
            if d["status"] == "TRAINING_IN_PROGRESS":
                d["status_message"] = message
                if training_seconds is not None:
                    d["job"]["training_seconds"] = round(training_seconds, 1)
                return [event] if event else []
            return []

        await self.update_version(arn, change)

    async def store_artifact(self, trained, card: ModelCard, location: ModelLocation) -> None:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / ONNX_NAME
            await asyncio.to_thread(_export, trained, path, card)
            await self.blobs.put(location.bucket, location.onnx_key, path.read_bytes())
        await self.blobs.put(location.bucket, location.card_key, card.to_json())

    # --- copies -----------------------------------------------------------------------
    async def copy(self, doc: dict) -> None:
        source = await self.store.get(records.VERSIONS, doc["job"]["source"])
        if source is None or not source.get("model"):
            await self.fail(doc["_id"], "the source model version was deleted before it could be copied")
            return
        src = ModelLocation(**source["model"])
        dst = ModelLocation(bucket=MODELS_BUCKET, prefix=artifact_prefix(doc["_id"]))
        for key_of in ("onnx_key", "card_key"):
            await self.blobs.copy(src.bucket, getattr(src, key_of), dst.bucket, getattr(dst, key_of))

        def copied(d):
            d.update(status="COPYING_COMPLETED", status_message="The model was copied.", model=dst.model_dump(),
                     evaluation=source.get("evaluation"), results=dict(source.get("results") or {}),
                     billable_seconds=source.get("billable_seconds"), training_end=source.get("training_end"))
            d["job"]["stage"] = "copied"
            return [VersionCompleted(project_arn=d["project_arn"], version_arn=d["_id"], version_name=d["name"], model=dst)]

        await self.update_version(doc["_id"], copied)


class TrainingStopped(Exception):
    """Raised in the training thread to end it early: its job was handed back."""


def _hand_back(doc: dict) -> None:
    doc["job"]["attempts"] = max(0, doc["job"]["attempts"] - 1)


async def complete(event: EvaluationCompleted, store: ScopedStore, blobs: BlobStore,
                   update_version: UpdateVersion) -> None:
    """Evaluation is done: the thresholds go into the card, and the version is TRAINING_COMPLETED."""
    doc = await store.get(records.VERSIONS, event.version_arn)
    if doc is None or doc["status"] != "TRAINING_IN_PROGRESS" or not doc.get("model"):
        return
    location = ModelLocation(**doc["model"])
    card = ModelCard.from_json(await blobs.get(location.bucket, location.card_key))
    card.thresholds = dict(event.thresholds)
    card.metrics = {"f1_score": event.f1_score, "summary": event.summary.model_dump(),
                    "expected_calibration_error": event.calibration_error}
    await blobs.put(location.bucket, location.card_key, card.to_json())

    def completed(d):
        if d["status"] != "TRAINING_IN_PROGRESS":
            return []
        d.update(status="TRAINING_COMPLETED", status_message=_ready_message(card),
                 training_end=clock.now().isoformat(),
                 evaluation={"f1_score": event.f1_score, "summary": event.summary.model_dump()})
        d["results"]["testing.output"] = event.snapshot.model_dump()
        d["job"]["stage"] = "evaluated"
        return [VersionCompleted(project_arn=d["project_arn"], version_arn=d["_id"], version_name=d["name"],
                                 model=location)]

    await update_version(event.version_arn, completed)


def _ready_message(card: ModelCard) -> str:
    """A completed version's StatusMessage: ready, and why training ended before its budget when it did."""
    stopped = card.provenance.get("stopped_early")
    if not stopped:
        return "The model is ready to start."
    return (f"The model is ready to start. Training ended after {card.provenance.get('training_seconds')} s of its "
            f"{card.provenance.get('budget_seconds')} s budget: {stopped}.")


async def remove_artifact(blobs, doc: dict) -> None:
    """A deleted version's model files (the evaluation files in the user's bucket stay, as the reference's do)."""
    if not doc.get("model"):
        return
    location = ModelLocation(**doc["model"])
    for key in (location.onnx_key, location.card_key):
        try:
            await blobs.delete(location.bucket, key)
        except Exception:
            log.warning("could not delete %s/%s", location.bucket, key)


class Output:
    """The version's folder in the user's output bucket: ``<S3KeyPrefix><version name>/``."""

    def __init__(self, doc: dict, blobs) -> None:
        config = doc["output_config"]
        self.bucket = config["S3Bucket"]
        self.prefix = f"{config.get('S3KeyPrefix') or ''}{doc['name']}/"
        self.blobs = blobs

    def location(self, name: str) -> dict:
        return {"bucket": self.bucket, "key": self.prefix + name}

    async def put(self, name: str, data: bytes) -> dict:
        await self.blobs.ensure_bucket(self.bucket)
        await self.blobs.put(self.bucket, self.prefix + name, data)
        return self.location(name)

    async def put_lines(self, name: str, lines: list[dict]) -> dict:
        return await self.put(name, _jsonl(lines))

    async def get_lines(self, location: dict) -> list[dict]:
        data = await self.blobs.get(location["bucket"], location["key"])
        return [json.loads(line) for line in data.splitlines() if line.strip()]


def _jsonl(lines: list[dict]) -> bytes:
    return b"".join(json.dumps(line, separators=(",", ":")).encode() + b"\n" for line in lines)


# --- in the worker thread ------------------------------------------------------------------
def _fit(data: TrainingData, items, unlabeled: list[bytes], budget: float, progress, device: str | None):
    """The model for ``data.task``, trained on ``(image bytes, entry)`` items and, for a classifier, the
    ``unlabeled`` images' bytes (weights from ``CUSTOMLABELS_WEIGHTS``)."""
    from customlabels.ml.evaluation.detection import Box
    from customlabels.ml.train import train

    if data.task == DETECTION:  # boxes as ratios of the image
        samples = [(image, [Box(label, left / w, top / h, width / w, height / h)
                            for label, left, top, width, height in e.boxes])
                   for image, e in items for w, h in [e.image_size or (1, 1)]]
    else:
        samples = [(image, set(e.image_labels)) for image, e in items]
    return train(data.task, samples, labels=data.labels, budget_seconds=budget, progress=progress, device=device,
                 unlabeled=unlabeled)


def _export(trained, path: Path, card: ModelCard) -> None:
    """``trained`` as an ONNX file at ``path``, carrying the datasets it was trained on."""
    from customlabels.ml.export import export

    export(trained, path, extra_metadata={"customlabels.provenance": card.provenance.get("datasets", {})})
