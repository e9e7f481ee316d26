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
from customlabels.arns import account_of
from customlabels.events import (
    AliasSwitched,
    EvaluationCompleted,
    EvaluationFailed,
    Event,
    TrainingRequested,
    VersionCreated,
    VersionDeleted,
    VersionStatusChanged,
)
from customlabels.lookups import describe_project
from customlabels.messaging import EventHandler, UnitOfWork
from customlabels.ports.documents import Delete, DuplicateKey, Eq, Insert, Put, VersionConflict, retry_on_conflict
from customlabels.ports.operations import Operations
from customlabels.ml.runtime.artifact import MODELS_BUCKET
from customlabels.service import Service
from customlabels.tags import MAX_TRAINING_SECONDS as BUDGET_TAG
from customlabels.wire.dispatch import acting_as

from services.training import copy_policy, records
from services.training.aliases import COLLECTION as ALIASES_COLLECTION, AliasView
from services.training.records import BUSY, COLLECTIONS, VERSIONS
from services.training.worker import Worker, complete, remove_artifact

log = logging.getLogger(__name__)

MIN_BUDGET, MAX_BUDGET = 10, 7 * 24 * 3600


class TrainingService(Service):
    name = "training"
    collections = (*COLLECTIONS, ALIASES_COLLECTION)

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        # One training at a time per process: each uses every core (or the GPU); a second
        # would only halve both and double the memory. Other jobs wait, queued.
        self.training_slot = asyncio.Semaphore(1)
        self.running: set[asyncio.Task] = set()  # the training job in this process, cancelled by stop()
        self.stopping = False  # set by stop(): no job starts after it (one would outlive the shutdown by its budget)
        self.aliases = AliasView(self.store, VERSIONS, records.description)

    async def start(self) -> None:
        await self.ctx.blobs.ensure_bucket(MODELS_BUCKET)
        await super().start()

    async def stop(self) -> None:
        """A shutdown hands the running training job back (``Worker.run``: not counted as a lost
        worker; the next worker resumes from its snapshot) instead of waiting for its budget to end.
        A job queued behind it for the training slot is handed back before it starts."""
        self.stopping = True
        for job in list(self.running):
            job.cancel()
        await super().stop()

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
            AliasSwitched: self.aliases.on_alias_switched,
        }

    # --- lookups ---------------------------------------------------------------------------
    async def version(self, arn: str) -> dict[str, Any]:
        doc = await self.store.get(VERSIONS, arn)
        if doc is None:
            raise errors.ResourceNotFound(f"model version {arn} does not exist")
        return doc

    async def project_datasets(self, project_arn: str) -> dict[str, dict]:
        """The project's datasets by type (TRAIN/TEST), from the projects service; ResourceNotFound if none."""
        project = await describe_project(self.ctx.router, project_arn)
        return {d["DatasetType"]: d for d in project.get("Datasets", [])}

    async def update_version(self, arn: str, change: Callable[[dict], Awaitable[list[Event]] | list[Event] | None]) -> dict | None:
        """Apply ``change`` to the version (None if it doesn't exist) and commit with the events it
        returns, on a fresh read after each conflict."""

        async def attempt() -> dict | None:
            doc = await self.store.get(VERSIONS, arn)
            if doc is None:
                return None
            result = change(doc)
            emitted = (await result if asyncio.iscoroutine(result) else result) or []
            uow = self.uow()
            uow.add(Put(VERSIONS, doc, expected_version=doc["_version"]))
            uow.emit(*emitted)
            await uow.commit()
            return doc

        return await retry_on_conflict(attempt, attempts=20, exhausted=lambda: errors.InternalServerError(
            f"model version {arn} kept changing under an update"))

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
        parsed = self.ctx.arns.parse(project_arn)
        if output_config.get("S3Bucket"):  # the results go there: a bucket of the project's account
            await self.ctx.buckets.check(output_config["S3Bucket"], parsed.account, write=True)
        created = clock.now()
        created_ms = int(created.timestamp() * 1000)
        arn = parsed.arns.version(parsed.project_name, name, created_ms)  # in the project's account
        doc = records.new_version(arn, project_arn, name, created, output_config, description, job, status, message)
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
            "ProjectVersionDescriptions": [records.description(v) for v in items]
            + await self.aliases.describe(project_arn, names or []),
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
        await remove_artifact(self.ctx.blobs, doc)
        return {"Status": "DELETING"}

    async def copy_project_version(self, req: dict[str, Any]) -> dict[str, Any]:
        """A copy into another account needs the source project's permission (``copy_policy``),
        checked before anything else is looked at: without it, whether the source exists stays unsaid."""
        destination = account_of(req["DestinationProjectArn"])
        if account_of(req["SourceProjectVersionArn"]) != destination:
            await self._check_copy_allowed(req["SourceProjectArn"], req["SourceProjectVersionArn"], destination)
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

    async def _check_copy_allowed(self, project_arn: str, version_arn: str, account: str | None) -> None:
        """AccessDenied unless a policy of ``project_arn`` lets ``account`` copy ``version_arn``."""
        documents, token = [], None
        with acting_as(None):  # the training service reads the policies in its own name
            while True:
                try:
                    page = await self.ctx.router.call("ListProjectPolicies", {
                        "ProjectArn": project_arn, **({"NextToken": token} if token else {})})
                except errors.ResourceNotFound:
                    break
                documents += [p["PolicyDocument"] for p in page["ProjectPolicies"]]
                token = page.get("NextToken")
                if not token:
                    break
        if account is None or account_of(project_arn) != account_of(version_arn) or \
                not copy_policy.allows(documents, account, version_arn):
            raise errors.AccessDenied(
                f"account {account} is not authorized to perform {copy_policy.ACTION} on resource {version_arn}: "
                f"no policy of project {project_arn} allows it (PutProjectPolicy)")

    # --- events ---------------------------------------------------------------------------
    async def on_training_requested(self, event: TrainingRequested, uow: UnitOfWork) -> None:
        worker = Worker(self.store, self.ctx.blobs, self.ctx.router, self.update_version,
                        device=self.ctx.settings.training_device)
        async with self.training_slot:
            if self.stopping:  # handed back as a cancelled job is: the event is delivered again after the restart
                raise asyncio.CancelledError
            job = asyncio.create_task(worker.run(event.version_arn), name=f"training {event.version_arn}")
            self.running.add(job)
            try:
                await job
            finally:
                self.running.discard(job)

    async def on_evaluation_completed(self, event: EvaluationCompleted, uow: UnitOfWork) -> None:
        await complete(event, self.store, self.ctx.blobs, self.update_version)

    async def on_evaluation_failed(self, event: EvaluationFailed, uow: UnitOfWork) -> None:
        await self.update_version(event.version_arn, lambda doc: records.fail(doc, event.status_message))

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
