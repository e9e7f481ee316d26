"""Images dropped into a watched bucket become unlabeled dataset entries.

The key says where an image goes: ``<project-name>/<train|test>/<anything>``
in a watched bucket (the layout ``customlabels import-*`` uploads to) feeds
that project's TRAIN or TEST dataset, the project of that name in the
bucket's account (``customlabels.buckets``: the one that first wrote to it). An entry that exists already is never
touched, so a label is never overwritten by an upload.

A dataset busy with a job (an import, a distribution) cannot take writes
beside it without racing the job's own counts; the entry then waits in
``pending_uploads`` and the job adds it in its last commit.
"""
from __future__ import annotations

from typing import Any

from customlabels import clock
from customlabels.arns import parse_arn
from customlabels.buckets import BucketOwners
from customlabels.config import INFERENCE_BUCKET
from customlabels.events import DatasetEntriesChanged, ImageUploaded
from customlabels.manifests import ParsedLine, validate_line
from customlabels.messaging import UnitOfWork
from customlabels.ports.documents import Delete, Eq, Put, ScopedStore, Update
from customlabels.ports.operations import OperationRouter

from services.datasets.image_checks import ImageChecker
from services.datasets.records import DATASETS, ENTRIES, PENDING, STATS, LabelStats, entry_doc, entry_id

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def watched_target(key: str) -> tuple[str, str] | None:
    """(project name, TRAIN|TEST) for a key laid out as <project>/<train|test>/..., else None."""
    parts = key.split("/")
    if len(parts) < 3 or parts[1].lower() not in ("train", "test") or not key.lower().endswith(IMAGE_SUFFIXES):
        return None
    return parts[0], parts[1].upper()


class Uploads:
    def __init__(self, store: ScopedStore, router: OperationRouter, images: ImageChecker, buckets: BucketOwners):
        """``router`` reaches the projects service (the owner of project names)."""
        self.store = store
        self.router = router
        self.images = images
        self.buckets = buckets

    async def on_image_uploaded(self, event: ImageUploaded, uow: UnitOfWork) -> None:
        target = watched_target(event.object_key)
        if target is None or event.bucket == INFERENCE_BUCKET:  # images to answer, not to train on
            return
        account = await self.buckets.owner(event.bucket)
        if account is None:
            return  # nobody's bucket (it was emptied and never claimed): no account's project to feed
        dataset = await self._dataset(*target, account)
        if dataset is None or dataset["status"] in ("DELETE_IN_PROGRESS", "CREATE_FAILED"):
            return
        source_ref = f"s3://{event.bucket}/{event.object_key}"
        if await self.store.get(ENTRIES, entry_id(dataset["_id"], source_ref)):
            return
        (check,) = (await self.images.check_many([(event.bucket, event.object_key)])).values()
        parsed = ParsedLine(line_number=1, source_ref=source_ref, bucket=event.bucket, key=event.object_key, data={"source-ref": source_ref})
        doc = entry_doc(dataset["_id"], validate_line(parsed, check))
        # Committed only if the dataset is still as read: a job that started or
        # finished meanwhile makes this conflict, and the bus redelivers the event
        # to decide again. (A job's own last commit conflicts the same way with
        # this touch, so it never finishes without draining a pending upload.)
        touch = Update(DATASETS, dataset["_id"], {"last_upload_at": clock.now().isoformat()}, expected_version=dataset["_version"])
        if dataset.get("job_id"):
            uow.add(Put(PENDING, {"_id": doc["_id"], "dataset_arn": dataset["_id"], "entry": doc}), touch)
            return
        stats = LabelStats.from_doc(dataset["_id"], await self.store.get(STATS, dataset["_id"]))
        stats.replace(None, doc)
        uow.add(Put(ENTRIES, doc, expected_version=0), stats.write(), touch)
        uow.emit(DatasetEntriesChanged(project_arn=dataset["project_arn"], dataset_arn=dataset["_id"], entry_count=stats.total))

    async def _dataset(self, project_name: str, dataset_type: str, account: str) -> dict[str, Any] | None:
        # An error here (projects unreachable) propagates: the bus redelivers the event.
        answer = await self.router.call("DescribeProjects", {"ProjectNames": [project_name]})
        for project in answer["ProjectDescriptions"]:
            if parse_arn(project["ProjectArn"]).account != account:
                continue
            page = await self.store.find(DATASETS, [Eq("project_arn", project["ProjectArn"]), Eq("dataset_type", dataset_type)], limit=1)
            if page.items:
                return page.items[0]
        return None

    async def drain(self, dataset_arn: str, stats: LabelStats | None, uow: UnitOfWork) -> None:
        """In a job's last commit: add the uploads that waited for it, counted in
        ``stats`` (None: the dataset is being deleted, so drop them)."""
        page = await self.store.find(PENDING, [Eq("dataset_arn", dataset_arn)], limit=10_000)
        if not page.items:
            return
        existing = await self.store.get_many(ENTRIES, [p["entry"]["_id"] for p in page.items])
        for pending in page.items:
            uow.add(Delete(PENDING, pending["_id"]))
            replaced = existing.get(pending["entry"]["_id"])
            # An upload never overwrites an entry; a reviewed answer (``replace``, feedback_entries) does.
            if stats is not None and (replaced is None or pending.get("replace")):
                stats.replace(replaced, pending["entry"])
                uow.add(Put(ENTRIES, pending["entry"], expected_version=replaced["_version"] if replaced else 0))
        if stats is not None:
            uow.add(stats.write())
