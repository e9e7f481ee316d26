"""The datasets service: datasets and their entries.

API calls that change entries (CreateDataset, UpdateDatasetEntries,
DistributeDatasetEntries, DeleteDataset) only record a job and answer at once,
as the reference does (…_IN_PROGRESS); ``jobs.Jobs`` does the work in the
background from a ``DatasetJobRequested`` event.
"""
from __future__ import annotations

from typing import Any, Mapping

from customlabels import clock, errors
from customlabels.events import (
    DatasetCreated, DatasetJobRequested, DatasetStatusChanged, Event, FeedbackAccepted, ImageUploaded, ProjectDeleted,
)
from customlabels.lookups import describe_project
from customlabels.messaging import EventHandler, UnitOfWork
from customlabels.ports.blobs import BlobStoreError, InvalidKey, Unavailable
from customlabels.ports.documents import AnyOf, Contains, DuplicateKey, Eq, Insert, Put, retry_on_conflict, stored
from customlabels.ports.operations import Operations
from customlabels.service import Service

from services.datasets.feedback_entries import FeedbackEntries
from services.datasets.image_checks import ImageChecker
from services.datasets.jobs import Jobs
from services.datasets.records import (
    BUSY,
    COLLECTIONS,
    DATASETS,
    ENTRIES,
    INTERNAL_BUCKET,
    JOBS,
    STATS,
    LabelStats,
    dataset_description,
    line_json,
    new_dataset,
    new_job,
)
from services.datasets.uploads import Uploads


class DatasetsService(Service):
    name = "datasets"
    collections = COLLECTIONS

    def __init__(self, ctx):
        super().__init__(ctx)
        images = ImageChecker(self.store, ctx.blobs, ctx.buckets)
        self.uploads = Uploads(self.store, ctx.router, images, ctx.buckets)
        self.feedback_entries = FeedbackEntries(self.store, ctx.blobs, images)
        self.jobs = Jobs(self.store, ctx.blobs, images, drain_uploads=self.uploads.drain)

    async def start(self) -> None:
        await self.ctx.blobs.ensure_bucket(INTERNAL_BUCKET)
        await super().start()

    def operations(self) -> Operations:
        return {
            "CreateDataset": self.create_dataset,
            "DescribeDataset": self.describe_dataset,
            "DeleteDataset": self._retrying(self.delete_dataset),
            "UpdateDatasetEntries": self._retrying(self.update_dataset_entries),
            "ListDatasetEntries": self.list_dataset_entries,
            "ListDatasetLabels": self.list_dataset_labels,
            "DistributeDatasetEntries": self._retrying(self.distribute_dataset_entries),
        }

    def handlers(self) -> Mapping[type[Event], EventHandler]:
        return {
            DatasetJobRequested: self.jobs.run,
            ProjectDeleted: self.on_project_deleted,
            ImageUploaded: self.uploads.on_image_uploaded,
            FeedbackAccepted: self.feedback_entries.on_feedback_accepted,
        }

    # --- lookups ----------------------------------------------------------------
    async def dataset(self, arn: str) -> dict[str, Any]:
        doc = await self.store.get(DATASETS, arn)
        if doc is None:
            raise errors.ResourceNotFound(f"dataset {arn} does not exist")
        return doc

    async def _project(self, arn: str) -> dict[str, Any]:
        """The project, asked of the projects service (its owner); ResourceInUse unless it is CREATED."""
        project = await describe_project(self.ctx.router, arn)
        if project["Status"] != "CREATED":
            raise errors.ResourceInUse(f"project {arn} is {project['Status']}")
        return project

    def _mark_busy(self, uow: UnitOfWork, dataset: dict[str, Any], job_id: str, status: str, message: str) -> None:
        dataset.update(status=status, status_message=message, status_message_code=None, job_id=job_id,
                       updated_at=clock.now().isoformat())
        uow.add(Put(DATASETS, stored(dataset), expected_version=dataset["_version"]))
        uow.emit(DatasetStatusChanged(project_arn=dataset["project_arn"], dataset_arn=dataset["_id"], status=status, status_message=message))

    def _request(self, uow: UnitOfWork, project_arn: str, job: dict[str, Any]) -> None:
        uow.add(Insert(JOBS, job))
        uow.emit(DatasetJobRequested(project_arn=project_arn, dataset_arn=job["dataset_arn"], job_id=job["_id"]))

    @staticmethod
    def _retrying(operation):
        """Run ``operation`` again on a fresh read when its dataset changed
        between read and commit (an upload touched it), a few times."""

        async def run(req: dict[str, Any]) -> dict[str, Any]:
            return await retry_on_conflict(lambda: operation(req), exhausted=lambda: errors.ResourceInUse(
                "the dataset kept changing while this request ran; retry"))

        return run

    # --- operations ----------------------------------------------------------------
    async def create_dataset(self, req: dict[str, Any]) -> dict[str, Any]:
        project = await self._project(req["ProjectArn"])
        dataset_type = req["DatasetType"]
        parsed = self.ctx.arns.parse(project["ProjectArn"])
        created = clock.now()
        arn = parsed.arns.dataset(parsed.project_name, dataset_type, int(created.timestamp() * 1000))
        source = req.get("DatasetSource") or {}
        job_fields: dict[str, Any] = {}
        manifest_key = f"jobs/{arn.rsplit(':', 1)[-1].replace('/', '-')}.manifest"
        if source.get("GroundTruthManifest") and source.get("DatasetArn"):
            raise errors.InvalidParameter("DatasetSource takes GroundTruthManifest or DatasetArn, not both")
        if source.get("GroundTruthManifest"):
            s3 = source["GroundTruthManifest"]["S3Object"]
            await self.ctx.buckets.check(s3["Bucket"], parsed.account, refuse=errors.InvalidS3Object)
            await self._snapshot_manifest(s3, manifest_key)
            job_fields["manifest"] = {"bucket": INTERNAL_BUCKET, "key": manifest_key}
        elif source.get("DatasetArn"):
            origin = await self.dataset(source["DatasetArn"])
            if origin["status"] in BUSY or origin["status"] == "CREATE_FAILED":
                raise errors.ResourceNotReady(f"dataset {origin['_id']} is {origin['status']}; copy it once it is complete")
            job_fields.update(copy_from=origin["_id"], manifest={"bucket": INTERNAL_BUCKET, "key": manifest_key})
        job = new_job("import", arn, "CREATE", **job_fields)
        dataset = new_dataset(arn, project["ProjectArn"], dataset_type, created, job["_id"])
        uow = self.uow()
        uow.add(Insert(DATASETS, dataset))
        uow.emit(DatasetCreated(project_arn=dataset["project_arn"], dataset_arn=arn, dataset_type=dataset_type,
                                created_at=created, status="CREATE_IN_PROGRESS", tags=req.get("Tags") or {}))
        self._request(uow, dataset["project_arn"], job)
        try:
            await uow.commit()
        except DuplicateKey:
            raise errors.ResourceAlreadyExists(
                f"project {project['ProjectArn']} already has a {dataset_type} dataset; delete it first or update its entries"
            ) from None
        return {"DatasetArn": arn}

    async def _snapshot_manifest(self, s3: dict[str, Any], key: str) -> None:
        """Copy the user's manifest, so the import reads what existed when it was asked for."""
        try:
            await self.ctx.blobs.copy(s3["Bucket"], s3["Name"], INTERNAL_BUCKET, key)
        except Unavailable:
            raise  # the store's outage, not the user's manifest: ServiceUnavailable
        except (BlobStoreError, InvalidKey):
            raise errors.InvalidS3Object(f"manifest s3://{s3['Bucket']}/{s3['Name']} does not exist or cannot be read") from None

    async def describe_dataset(self, req: dict[str, Any]) -> dict[str, Any]:
        dataset = await self.dataset(req["DatasetArn"])
        stats = LabelStats.from_doc(dataset["_id"], await self.store.get(STATS, dataset["_id"]))
        return {"DatasetDescription": dataset_description(dataset, stats)}

    async def delete_dataset(self, req: dict[str, Any]) -> dict[str, Any]:
        dataset = await self.dataset(req["DatasetArn"])
        if dataset["status"] in BUSY:
            raise errors.ResourceInUse(f"dataset {dataset['_id']} is {dataset['status']}; delete it when that finishes")
        uow = self.uow()
        self._delete_in(uow, dataset, "Deleting the dataset.")
        await uow.commit()  # VersionConflict: the dataset changed meanwhile; see _retrying
        return {}

    async def update_dataset_entries(self, req: dict[str, Any]) -> dict[str, Any]:
        dataset = await self.dataset(req["DatasetArn"])
        if dataset["status"] in BUSY or dataset["status"] == "CREATE_FAILED":
            raise errors.ResourceInUse(f"dataset {dataset['_id']} is {dataset['status']}; update it when it is complete")
        job = new_job("import", dataset["_id"], "UPDATE")
        job["manifest"] = {"bucket": INTERNAL_BUCKET, "key": f"jobs/{job['_id']}.manifest"}
        await self.ctx.blobs.put(INTERNAL_BUCKET, job["manifest"]["key"], req["Changes"]["GroundTruth"])
        uow = self.uow()
        self._mark_busy(uow, dataset, job["_id"], "UPDATE_IN_PROGRESS", "Updating the dataset entries.")
        self._request(uow, dataset["project_arn"], job)
        await uow.commit()  # VersionConflict: the dataset changed meanwhile; see _retrying
        return {}

    async def list_dataset_entries(self, req: dict[str, Any]) -> dict[str, Any]:
        dataset = await self.dataset(req["DatasetArn"])
        if dataset["status"] in ("CREATE_IN_PROGRESS", "DELETE_IN_PROGRESS"):
            raise errors.ResourceNotReady(f"dataset {dataset['_id']} is {dataset['status']}")
        where: list = [Eq("dataset_arn", dataset["_id"])]
        if req.get("ContainsLabels"):
            where.append(AnyOf("labels", tuple(req["ContainsLabels"])))
        if "Labeled" in req:
            where.append(Eq("labeled", req["Labeled"]))
        if "HasErrors" in req:
            where.append(Eq("has_errors", req["HasErrors"]))
        if req.get("SourceRefContains"):
            where.append(Contains("source_ref", req["SourceRefContains"]))
        scope = ["ListDatasetEntries", dataset["_id"], sorted(req.get("ContainsLabels") or []), req.get("Labeled"),
                 req.get("HasErrors"), req.get("SourceRefContains")]
        page = await self.store.find(ENTRIES, where, order_by=("key",), limit=req.get("MaxResults", 100),
                                     after=self.ctx.tokens.decode(req.get("NextToken"), scope))
        return {
            "DatasetEntries": [line_json(doc["line"]) for doc in page.items],
            "NextToken": self.ctx.tokens.encode(page.next_cursor, scope),
        }

    async def list_dataset_labels(self, req: dict[str, Any]) -> dict[str, Any]:
        dataset = await self.dataset(req["DatasetArn"])
        if dataset["status"] in ("CREATE_IN_PROGRESS", "DELETE_IN_PROGRESS"):
            raise errors.ResourceNotReady(f"dataset {dataset['_id']} is {dataset['status']}")
        stats = LabelStats.from_doc(dataset["_id"], await self.store.get(STATS, dataset["_id"]))
        scope = ["ListDatasetLabels", dataset["_id"]]
        after = self.ctx.tokens.decode(req.get("NextToken"), scope)
        names = sorted(name for name in stats.labels if after is None or name > after)
        limit = req.get("MaxResults", 100)
        page = names[:limit]
        return {
            "DatasetLabelDescriptions": [
                {"LabelName": name, "LabelStats": {"EntryCount": stats.labels[name][0], "BoundingBoxCount": stats.labels[name][1]}}
                for name in page
            ],
            "NextToken": self.ctx.tokens.encode(page[-1] if len(names) > limit else None, scope),
        }

    async def distribute_dataset_entries(self, req: dict[str, Any]) -> dict[str, Any]:
        found = [await self.dataset(item["Arn"]) for item in req["Datasets"]]
        by_type = {d["dataset_type"]: d for d in found}
        if set(by_type) != {"TRAIN", "TEST"} or found[0]["project_arn"] != found[1]["project_arn"]:
            raise errors.InvalidParameter("Datasets must be the TRAIN and the TEST dataset of one project")
        train, test = by_type["TRAIN"], by_type["TEST"]
        for dataset in (train, test):
            if dataset["status"] not in ("CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_FAILED"):
                raise errors.ResourceNotReady(f"dataset {dataset['_id']} is {dataset['status']}")
        test_stats = LabelStats.from_doc(test["_id"], await self.store.get(STATS, test["_id"]))
        if test_stats.total:
            raise errors.InvalidParameter(f"the test dataset {test['_id']} must be empty; it has {test_stats.total} entries")
        job = new_job("distribute", train["_id"], "UPDATE", test_dataset_arn=test["_id"])
        uow = self.uow()
        self._mark_busy(uow, train, job["_id"], "UPDATE_IN_PROGRESS", "Distributing entries to the test dataset.")
        self._mark_busy(uow, test, job["_id"], "UPDATE_IN_PROGRESS", "Receiving entries from the training dataset.")
        self._request(uow, train["project_arn"], job)
        await uow.commit()  # VersionConflict: the dataset changed meanwhile; see _retrying
        return {}

    # --- events -------------------------------------------------------------------------
    async def on_project_deleted(self, event: ProjectDeleted, uow: UnitOfWork) -> None:
        page = await self.store.find(DATASETS, [Eq("project_arn", event.project_arn)], limit=10)
        for dataset in page.items:
            if dataset["status"] != "DELETE_IN_PROGRESS":
                self._delete_in(uow, dataset, "Deleting the dataset with its project.")

    def _delete_in(self, uow: UnitOfWork, dataset: dict[str, Any], message: str) -> None:
        job = new_job("delete", dataset["_id"], "DELETE")
        self._mark_busy(uow, dataset, job["_id"], "DELETE_IN_PROGRESS", message)
        self._request(uow, dataset["project_arn"], job)
