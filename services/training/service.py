"""The training service: model versions, from CreateProjectVersion to TRAINING_COMPLETED.

    CreateProjectVersion -> version TRAINING_IN_PROGRESS, TrainingRequested queued
    TrainingRequested    -> worker.train(): snapshot the datasets, train, export the artifact
                            -> TrainingFinished (evaluation scores it) or TRAINING_FAILED
    EvaluationCompleted  -> thresholds into the model card, TRAINING_COMPLETED, VersionCompleted
    VersionStatusChanged -> hosting's side of the status (STARTING, RUNNING, ...)

A version document holds what DescribeProjectVersions shows plus the job's
checkpoints (``job``): which stage is done and where its output lies, and how
many times a worker took the job up, so a worker killed mid-training is
replaced by one that resumes from the last stage, and a job that keeps killing
its worker fails after ``MAX_ATTEMPTS`` instead of staying in progress.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable, Mapping

from customlabels import clock, errors
from customlabels.events import (
    EvaluationCompleted,
    EvaluationFailed,
    Event,
    TrainingRequested,
    VersionCreated,
    VersionDeleted,
    VersionStatusChanged,
)
from customlabels.messaging import EventHandler, UnitOfWork
from customlabels.ports.documents import Collection, Delete, DuplicateKey, Eq, Index, Insert, Put, VersionConflict
from customlabels.ports.operations import Operations
from customlabels.ml.artifact import MODELS_BUCKET
from customlabels.service import Service

from services.training import versions
from services.training.versions import BUSY, VERSIONS

log = logging.getLogger(__name__)

BUDGET_TAG = "customlabels:max-training-seconds"
MIN_BUDGET, MAX_BUDGET = 10, 7 * 24 * 3600


class TrainingService(Service):
    name = "training"
    collections = (
        Collection(VERSIONS, (Index(("project_arn", "name"), unique=True), Index(("project_arn", "created_ms")))),
    )

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        # One training at a time per process: each uses every core (or the GPU); a second
        # would only halve both and double the memory. Other jobs wait, queued.
        self.training_slot = asyncio.Semaphore(1)

    async def start(self) -> None:
        await self.ctx.blobs.ensure_bucket(MODELS_BUCKET)
        await super().start()

    def operations(self) -> Operations:
        return {
            "CreateProjectVersion": self.create_project_version,
            "DescribeProjectVersions": self.describe_project_versions,
            "DeleteProjectVersion": self.delete_project_version,
            "CopyProjectVersion": self.copy_project_version,
        }

    def handlers(self) -> Mapping[type[Event], EventHandler]:
        return {
            TrainingRequested: self.on_training_requested,
            EvaluationCompleted: self.on_evaluation_completed,
            EvaluationFailed: self.on_evaluation_failed,
            VersionStatusChanged: self.on_hosting_status,
        }

    # --- lookups ---------------------------------------------------------------------------
    async def version(self, arn: str) -> dict[str, Any]:
        doc = await self.store.get(VERSIONS, arn)
        if doc is None:
            raise errors.ResourceNotFound(f"model version {arn} does not exist")
        return doc

    async def project_datasets(self, project_arn: str) -> dict[str, dict]:
        """The project's datasets by type (TRAIN/TEST), from the projects service; ResourceNotFound if none."""
        parsed = self.ctx.arns.parse(project_arn)
        if parsed is None or parsed.kind != "project":
            raise errors.ResourceNotFound(f"project {project_arn} does not exist")
        found = await self.ctx.router.call("DescribeProjects", {"ProjectNames": [parsed.project_name]})
        for project in found.get("ProjectDescriptions", []):
            if project["ProjectArn"] == project_arn:
                return {d["DatasetType"]: d for d in project.get("Datasets", [])}
        raise errors.ResourceNotFound(f"project {project_arn} does not exist")

    async def update_version(self, arn: str, change: Callable[[dict], Awaitable[list[Event]] | list[Event] | None]) -> dict | None:
        """Apply ``change`` to the version and commit with the events it returns, retrying on conflicts."""
        for _ in range(20):
            doc = await self.store.get(VERSIONS, arn)
            if doc is None:
                return None
            result = change(doc)
            emitted = (await result if asyncio.iscoroutine(result) else result) or []
            uow = self.uow()
            uow.add(Put(VERSIONS, doc, expected_version=doc["_version"]))
            uow.emit(*emitted)
            try:
                await uow.commit()
                return doc
            except VersionConflict:
                continue
        raise errors.InternalServerError(f"model version {arn} kept changing under an update")

    # --- operations ------------------------------------------------------------------------
    async def create_project_version(self, req: dict[str, Any]) -> dict[str, Any]:
        project_arn = req["ProjectArn"]
        if req.get("TrainingData") or req.get("TestingData"):
            raise errors.InvalidParameter(
                "customlabels trains from the project's datasets: omit TrainingData and TestingData "
                "(create the datasets with CreateDataset)")
        datasets = await self.project_datasets(project_arn)
        train = datasets.get("TRAIN")
        if train is None:
            raise errors.InvalidParameter(
                f"project {project_arn} has no TRAIN dataset: create one with CreateDataset first")
        for dataset in datasets.values():
            # The dataset's owner has its current status (the projects service's copy lags its events).
            found = await self.ctx.router.call("DescribeDataset", {"DatasetArn": dataset["DatasetArn"]})
            status = found["DatasetDescription"]["Status"]
            if status.endswith("_IN_PROGRESS"):
                raise errors.ResourceInUse(f"dataset {dataset['DatasetArn']} is {status}: wait until it is complete")
            if status.endswith("_FAILED"):
                raise errors.InvalidParameter(f"dataset {dataset['DatasetArn']} is {status}: fix or recreate it first")
        tags = req.get("Tags") or {}
        budget = training_budget(tags, self.ctx.settings.training_budget_seconds)
        return await self._create(
            project_arn, req["VersionName"], req["OutputConfig"], tags,
            description=req.get("VersionDescription"),
            job={"kind": "train", "budget_seconds": budget,
                 "datasets": {t: d["DatasetArn"] for t, d in datasets.items()}},
            status="TRAINING_IN_PROGRESS", message="Waiting for a training worker",
        )

    async def _create(self, project_arn, name, output_config, tags, *, description, job, status, message, extra=None):
        created = clock.now()
        created_ms = int(created.timestamp() * 1000)
        parsed = self.ctx.arns.parse(project_arn)
        arn = self.ctx.arns.version(parsed.project_name, name, created_ms)
        doc = versions.new_version(arn, project_arn, name, created, output_config, description, job, status, message)
        doc.update(extra or {})
        uow = self.uow()
        uow.add(Insert(VERSIONS, doc))
        uow.emit(VersionCreated(project_arn=project_arn, version_arn=arn, version_name=name, tags=tags),
                 TrainingRequested(project_arn=project_arn, version_arn=arn, version_name=name))
        try:
            await uow.commit()
        except DuplicateKey:
            raise errors.ResourceInUse(f"project {project_arn} already has a version named {name!r}") from None
        return {"ProjectVersionArn": arn}

    async def describe_project_versions(self, req: dict[str, Any]) -> dict[str, Any]:
        project_arn = req["ProjectArn"]
        names = req.get("VersionNames")
        scope = ["DescribeProjectVersions", project_arn, sorted(names or [])]
        where: list = [Eq("project_arn", project_arn)]
        if names:
            found = []
            for name in sorted(set(names)):
                found.extend((await self.store.find(VERSIONS, [*where, Eq("name", name)], limit=1)).items)
            found.sort(key=lambda v: v["created_ms"], reverse=True)
            items, cursor = found, None
        else:
            page = await self.store.find(VERSIONS, where, order_by=("created_ms",), descending=True,
                                         limit=req.get("MaxResults", 100),
                                         after=self.ctx.tokens.decode(req.get("NextToken"), scope))
            items, cursor = page.items, page.next_cursor
        if not items and not names:
            await self.project_datasets(project_arn)  # ResourceNotFound for a project that doesn't exist
        return {
            "ProjectVersionDescriptions": [versions.description(v) for v in items],
            "NextToken": self.ctx.tokens.encode(cursor, scope),
        }

    async def delete_project_version(self, req: dict[str, Any]) -> dict[str, Any]:
        doc = await self.version(req["ProjectVersionArn"])
        if doc["status"] in BUSY:
            raise errors.ResourceInUse(
                f"model version {doc['_id']} is {doc['status']}: "
                + ("stop it with StopProjectVersion first" if doc["status"] in ("RUNNING", "STARTING")
                   else "wait until it has finished"))
        uow = self.uow()
        uow.add(Delete(VERSIONS, doc["_id"], expected_version=doc["_version"]))
        uow.emit(VersionDeleted(project_arn=doc["project_arn"], version_arn=doc["_id"], version_name=doc["name"]))
        try:
            await uow.commit()
        except VersionConflict:
            raise errors.ResourceInUse(f"model version {doc['_id']} is changing: try again") from None
        from services.training.worker import remove_artifact

        await remove_artifact(self.ctx.blobs, doc)
        return {"Status": "DELETING"}

    async def copy_project_version(self, req: dict[str, Any]) -> dict[str, Any]:
        source = await self.version(req["SourceProjectVersionArn"])
        if source["project_arn"] != req["SourceProjectArn"]:
            raise errors.ResourceNotFound(
                f"model version {source['_id']} is not in project {req['SourceProjectArn']}")
        if not source.get("model"):
            raise errors.ResourceInUse(
                f"model version {source['_id']} is {source['status']}: only a trained model can be copied")
        await self.project_datasets(req["DestinationProjectArn"])  # the destination must exist
        return await self._create(
            req["DestinationProjectArn"], req["VersionName"], req["OutputConfig"], req.get("Tags") or {},
            description=source.get("description"),
            job={"kind": "copy", "source": source["_id"]},
            status="COPYING_IN_PROGRESS", message="Copying the model",
            extra={"source_version_arn": source["_id"]},
        )

    # --- events ---------------------------------------------------------------------------
    async def on_training_requested(self, event: TrainingRequested, uow: UnitOfWork) -> None:
        from services.training.worker import Worker

        async with self.training_slot:
            await Worker(self).run(event.version_arn)

    async def on_evaluation_completed(self, event: EvaluationCompleted, uow: UnitOfWork) -> None:
        from services.training.worker import complete

        await complete(self, event)

    async def on_evaluation_failed(self, event: EvaluationFailed, uow: UnitOfWork) -> None:
        await self.update_version(event.version_arn, lambda doc: versions.fail(doc, event.status_message))

    async def on_hosting_status(self, event: VersionStatusChanged, uow: UnitOfWork) -> None:
        def change(doc):
            doc.update(status=event.status, status_message=event.status_message,
                       min_inference_units=event.min_inference_units, max_inference_units=event.max_inference_units)

        await self.update_version(event.version_arn, change)


def training_budget(tags: dict[str, str], default: float) -> float:
    """The version's budget: its ``customlabels:max-training-seconds`` tag, else the server's default."""
    value = tags.get(BUDGET_TAG)
    if value is None:
        return float(default)
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not (MIN_BUDGET <= seconds <= MAX_BUDGET):
        raise errors.InvalidParameter(
            f"tag {BUDGET_TAG} must be a number of seconds from {MIN_BUDGET} to {MAX_BUDGET}, not {value!r}")
    return seconds
