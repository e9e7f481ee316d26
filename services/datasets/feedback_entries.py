"""Reviewed images become TRAIN entries (FeedbackAccepted from the feedback service).

One Ground Truth line, upserted by ``source-ref`` into the project's TRAIN
dataset (a changed answer replaces the entry, counted once), validated like
any imported line. Never into TEST, and never an image the TEST dataset
holds: the guard compares the image's SHA-256 with the TEST images' (a copy
under another name is the same image), so reviewed test images can never
leak into training. The answer to every FeedbackAccepted is a
FeedbackEntryWritten saying what happened.

TEST images' digests are kept in the ``images`` cache beside the image
checks (same key, same size/modification-time validity), so each image is
read once for it, not once per answer.

A TRAIN dataset busy with a job takes the line as a pending upload that
replaces (``replace``), added by the job's last commit, as uploads are.
"""
from __future__ import annotations

import hashlib
import json

from customlabels import clock
from customlabels.events import DatasetEntriesChanged, FeedbackAccepted, FeedbackEntryWritten
from customlabels.manifests import RejectedLine, parse_line, validate_line
from customlabels.messaging import UnitOfWork
from customlabels.ports.blobs import BlobStore, BlobStoreError, Unavailable
from customlabels.ports.documents import Eq, Put, ScopedStore, Update, stored

from services.datasets.image_checks import ImageChecker
from services.datasets.records import DATASETS, ENTRIES, IMAGES, PENDING, STATS, LabelStats, entry_doc


class FeedbackEntries:
    def __init__(self, store: ScopedStore, blobs: BlobStore, images: ImageChecker):
        self.store = store
        self.blobs = blobs
        self.images = images

    async def on_feedback_accepted(self, event: FeedbackAccepted, uow: UnitOfWork) -> None:
        source_ref = event.line.get("source-ref", "")
        datasets = {d["dataset_type"]: d for d in
                    (await self.store.find(DATASETS, [Eq("project_arn", event.project_arn)], limit=10)).items}
        train, test = datasets.get("TRAIN"), datasets.get("TEST")

        def answer(written: bool, reason: str | None = None) -> FeedbackEntryWritten:
            return FeedbackEntryWritten(project_arn=event.project_arn, dataset_arn=train["_id"] if train else None,
                                        human_loop_name=event.human_loop_name, source_ref=source_ref,
                                        written=written, reason=reason)

        if train is None or train["status"] in ("DELETE_IN_PROGRESS", "CREATE_FAILED"):
            uow.emit(answer(False, "the project has no TRAIN dataset to add the reviewed image to"))
            return
        if test is not None and event.image_sha256 in await self.test_digests(test["_id"]):
            uow.emit(answer(False, "the image is in the project's TEST dataset (same SHA-256): it never trains"))
            return
        parsed = parse_line(json.dumps(event.line), 1)
        if isinstance(parsed, RejectedLine):
            uow.emit(answer(False, parsed.message))
            return
        (check,) = (await self.images.check_many([(parsed.bucket, parsed.key)])).values()
        doc = entry_doc(train["_id"], validate_line(parsed, check))
        touch = Update(DATASETS, train["_id"], {"last_upload_at": clock.now().isoformat()}, expected_version=train["_version"])
        if train.get("job_id"):
            uow.add(Put(PENDING, {"_id": doc["_id"], "dataset_arn": train["_id"], "entry": doc, "replace": True}), touch)
            uow.emit(answer(True, "queued behind the dataset's running job"))
            return
        existing = await self.store.get(ENTRIES, doc["_id"])
        stats = LabelStats.from_doc(train["_id"], await self.store.get(STATS, train["_id"]))
        stats.replace(existing, doc)
        uow.add(Put(ENTRIES, doc, expected_version=existing["_version"] if existing else 0), stats.write(), touch)
        uow.emit(DatasetEntriesChanged(project_arn=event.project_arn, dataset_arn=train["_id"], entry_count=stats.total),
                 answer(True))

    async def test_digests(self, dataset_arn: str) -> set[str]:
        """SHA-256 of every image of the dataset, from the cache where it is still valid."""
        refs, cursor = [], None
        while True:
            page = await self.store.find(ENTRIES, [Eq("dataset_arn", dataset_arn)], order_by=("key",), limit=1000, after=cursor)
            for entry in page.items:
                bucket, _, key = entry["source_ref"][len("s3://"):].partition("/")
                refs.append((bucket, key))
            cursor = page.next_cursor
            if cursor is None:
                break
        cached = await self.store.get_many(IMAGES, [f"{b}/{k}" for b, k in refs])
        digests, updates = set(), []
        for bucket in {b for b, _ in refs}:
            infos = await self.blobs.stat_many(bucket, [k for b, k in refs if b == bucket])
            for key, info in infos.items():
                doc = cached.get(f"{bucket}/{key}")
                fresh = doc is not None and doc["size"] == info.size and doc["modified"] == info.modified.isoformat()
                if fresh and doc.get("sha256"):
                    digests.add(doc["sha256"])
                    continue
                try:
                    digest = hashlib.sha256(await self.blobs.get(bucket, key)).hexdigest()
                except Unavailable:
                    raise
                except BlobStoreError:
                    continue  # gone meanwhile: nothing to guard
                digests.add(digest)
                if fresh:  # an image not checked since it changed gets its digest with its next check
                    updates.append(Put(IMAGES, {**stored(doc), "sha256": digest}))
        if updates:
            await self.store.commit(updates)
        return digests
