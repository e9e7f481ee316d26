"""Background jobs of the datasets service: import, distribute, delete.

A job is a document; a ``DatasetJobRequested`` event runs it. Jobs survive
being killed at any point:
- work is committed in batches, each batch together with the job's
  checkpoint and the dataset's label statistics, so nothing is half-written;
- entry ids are derived from (dataset, source-ref), so a batch written twice
  overwrites itself;
- the bus redelivers the event after a crash and the job resumes from its
  checkpoint; every start counts as an attempt, and a job that keeps failing
  ends FAILED with a SERVICE_ERROR instead of staying IN_PROGRESS forever. A
  start cut short by a failure that passes (``messaging.transient``: a peer
  restarting, a full disk) gives its attempt back: waiting is not failing.

Import runs in two passes over the manifest: the first validates every line
(so the reference's 20 % rule can fail the import before anything is
written), the second writes.
"""
from __future__ import annotations

import logging
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable

from customlabels import clock, manifests
from customlabels.arns import parse_arn
from customlabels.events import DatasetDeleted, DatasetImported, DatasetEntriesChanged, DatasetJobRequested, DatasetStatusChanged
from customlabels.manifests import Entry, ImageCheck, ParsedLine, RejectedLine, parse_line, validate_line
from customlabels.messaging import UnitOfWork, transient
from customlabels.ports.blobs import BlobStore
from customlabels.ports.documents import Delete, Eq, Put, ScopedStore, VersionConflict, retry_on_conflict, stored

from services.datasets.image_checks import ImageChecker
from services.datasets.records import (
    DATASETS,
    ENTRIES,
    INTERNAL_BUCKET,
    JOBS,
    STATS,
    LabelStats,
    entry_doc,
    line_json,
    moved_doc,
    replace_entries,
)

log = logging.getLogger(__name__)

MAX_JOB_ATTEMPTS = 3
BATCH = 500
TEST_SHARE = 0.2
_MAX_REPORTED_LINES = 20
KEEP_ENTRIES = 50_000

# ``drain(dataset_arn, stats, uow)``: in a job's last commit, add the uploads that
# waited for the dataset (counted in ``stats``; None: the dataset is being deleted).
DrainUploads = Callable[[str, "LabelStats | None", UnitOfWork], Awaitable[None]]


class JobFailed(Exception):
    """The user's input cannot be imported; ``code`` is the reference's error code."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class Superseded(Exception):
    """Another job now owns the dataset (it is being deleted): stop quietly."""


class JobTakenOver(Exception):
    """The job document changed under this run: another worker runs the job now.
    Raised out of the handler, so this delivery fails and the bus decides again."""


@dataclass
class Scan:
    """What the validation pass learned about a manifest."""

    total: int = 0
    invalid: int = 0
    rejected: list[RejectedLine] = field(default_factory=list)
    line_errors: list[str] = field(default_factory=list)
    labels: set[str] = field(default_factory=set)
    last_line: dict[str, int] = field(default_factory=dict)  # source-ref -> the line that wins
    checks: dict[tuple[str, str], ImageCheck] = field(default_factory=dict)
    # Validated entries by line number, kept while the manifest is small enough
    # (every UpdateDatasetEntries call is), so the writing pass need not parse
    # and validate again; None once a large manifest outgrew the budget.
    entries: dict[int, Entry] | None = field(default_factory=dict)

    def keep(self, line_number: int, entry: Entry) -> None:
        if self.entries is not None:
            self.entries[line_number] = entry
            if len(self.entries) > KEEP_ENTRIES:
                self.entries = None

    def report(self, line_number: int, code: str, message: str) -> None:
        if len(self.line_errors) < _MAX_REPORTED_LINES:
            self.line_errors.append(f"line {line_number}: {code} {message}")


async def iter_lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[tuple[int, bytes]]:
    """(1-based line number, raw line) for each line of a streamed manifest."""
    number, pending = 0, b""
    async for chunk in chunks:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            number += 1
            yield number, line.rstrip(b"\r")
    if pending.strip():
        yield number + 1, pending.rstrip(b"\r")


class Jobs:
    def __init__(self, store: ScopedStore, blobs: BlobStore, images: ImageChecker, drain_uploads: DrainUploads):
        self.store = store
        self.blobs = blobs
        self.images = images
        self.drain_uploads = drain_uploads

    # --- entry point -------------------------------------------------------------
    async def run(self, event: DatasetJobRequested, uow: UnitOfWork) -> None:
        job = await self.store.get(JOBS, event.job_id)
        if job is None or job["phase"] in ("done", "failed", "superseded"):
            return
        job["attempts"] = job.get("attempts", 0) + 1
        await self._save(job)
        if job["attempts"] > MAX_JOB_ATTEMPTS:
            await self._finish(job, uow, failed=("SERVICE_ERROR", f"the job failed {MAX_JOB_ATTEMPTS} times; see the service log"))
            return
        try:
            run = {"import": self._import, "distribute": self._distribute, "delete": self._delete}[job["kind"]]
            message = await run(job)
        except JobFailed as failure:
            await self._finish(job, uow, failed=("CLIENT_ERROR", str(failure)))
        except Superseded:
            job["phase"] = "superseded"
            await self._save(job)
        except Exception as exc:
            if transient(exc):  # a peer restarting, a full disk: the handler waits for it; not a failed attempt
                await self._give_back_attempt(job["_id"])
            raise
        else:
            await self._finish(job, uow, message=message)

    async def _give_back_attempt(self, job_id: str) -> None:
        """Best effort (the disk may still be full): the job as stored, with one attempt fewer."""
        with suppress(Exception):
            current = await self.store.get(JOBS, job_id)
            if current is not None and current.get("attempts"):
                current["attempts"] -= 1
                await self._save(current)

    async def _save(self, job: dict[str, Any], *more) -> None:
        await self.store.commit([Put(JOBS, stored(job), expected_version=job["_version"]), *more])
        job["_version"] += 1

    async def _dataset(self, job: dict[str, Any], arn: str | None = None) -> dict[str, Any]:
        dataset = await self.store.get(DATASETS, arn or job["dataset_arn"])
        if dataset is None or dataset.get("job_id") != job["_id"]:
            raise Superseded()
        return dataset

    async def _progress(self, job: dict[str, Any], writes: list, message: str, *arns: str) -> None:
        """Commit a batch with the job's checkpoint and a progress message on its datasets.

        Uploads touch a busy dataset's document (see ``uploads``); such a conflict
        is retried with the document read again. A conflict on the job itself
        means another worker runs it: that one is not retried (JobTakenOver)."""

        async def attempt() -> None:
            datasets = []
            for arn in arns or (job["dataset_arn"],):
                dataset = await self._dataset(job, arn)  # raises Superseded if the dataset moved on
                dataset["status_message"] = message
                datasets.append(Put(DATASETS, stored(dataset), expected_version=dataset["_version"]))
            try:
                await self._save(job, *writes, *datasets)
            except VersionConflict:
                current = await self.store.get(JOBS, job["_id"])
                if current is None or current["_version"] != job["_version"]:
                    raise JobTakenOver(f"job {job['_id']} changed under this run") from None
                raise

        await retry_on_conflict(attempt, exhausted=lambda: JobTakenOver(
            f"job {job['_id']}: its datasets kept changing; the job runs again"))

    async def _finish(self, job: dict[str, Any], uow: UnitOfWork, *, message: str = "", failed: tuple[str, str] | None = None) -> None:
        """Last commit of a job (with the event handler's own): statuses and events."""
        job["phase"] = "failed" if failed else "done"
        uow.add(Put(JOBS, stored(job), expected_version=job["_version"]))
        arns = [job["dataset_arn"], *([job["test_dataset_arn"]] if job.get("test_dataset_arn") else [])]
        for arn in arns:
            dataset = await self.store.get(DATASETS, arn)
            if dataset is None or dataset.get("job_id") != job["_id"]:
                continue
            if job["kind"] == "delete" and not failed:
                await self.drain_uploads(arn, None, uow)
                uow.add(Delete(DATASETS, arn), Delete(STATS, arn))
                uow.emit(DatasetDeleted(project_arn=dataset["project_arn"], dataset_arn=arn))
                continue
            verb = job.get("verb", "UPDATE")
            status = f"{verb}_FAILED" if failed else f"{verb}_COMPLETE"
            dataset.update(
                status=status,
                status_message=failed[1] if failed else (message or "The dataset is ready."),
                status_message_code=failed[0] if failed else "SUCCESS",
                updated_at=clock.now().isoformat(),
                job_id=None,
            )
            uow.add(Put(DATASETS, stored(dataset), expected_version=dataset["_version"]))
            uow.emit(
                DatasetStatusChanged(
                    project_arn=dataset["project_arn"],
                    dataset_arn=arn,
                    status=status,
                    status_message=dataset["status_message"],
                    status_message_code=dataset["status_message_code"],
                )
            )
            stats = LabelStats.from_doc(arn, await self.store.get(STATS, arn))
            await self.drain_uploads(arn, stats, uow)
            if not failed:
                uow.emit(
                    DatasetImported(project_arn=dataset["project_arn"], dataset_arn=arn, job_id=job["_id"],
                                    entries_written=job.get("written", 0), lines_with_errors=job.get("invalid", 0)),
                    DatasetEntriesChanged(project_arn=dataset["project_arn"], dataset_arn=arn, entry_count=stats.total),
                )

    # --- import ----------------------------------------------------------------------
    async def _import(self, job: dict[str, Any]) -> str:
        if job.get("copy_from") and job["phase"] == "snapshot":
            await self._snapshot(job)
        manifest = job.get("manifest")
        if manifest is None:
            return "The dataset is ready."
        scan = await self._scan(manifest["bucket"], manifest["key"], account=parse_arn(job["dataset_arn"]).account)
        if job["phase"] != "write":
            job.update(phase="write", checkpoint=0, written=0, invalid=scan.invalid, total=scan.total)
            await self._save(job)
        await self._write(job, scan)
        return _summary(scan)

    async def _snapshot(self, job: dict[str, Any]) -> None:
        """Freeze the source dataset of a copy as a manifest the import then reads."""
        source = job["copy_from"]

        async def lines() -> AsyncIterator[bytes]:
            cursor = None
            while True:
                page = await self.store.find(ENTRIES, [Eq("dataset_arn", source)], order_by=("key",), limit=BATCH, after=cursor)
                yield b"".join(line_json(doc["line"]).encode() + b"\n" for doc in page.items)
                if page.next_cursor is None:
                    return
                cursor = page.next_cursor

        await self.blobs.put_stream(INTERNAL_BUCKET, job["manifest"]["key"], lines(), max_bytes=manifests.MAX_MANIFEST_BYTES)
        job["phase"] = "validate"
        await self._save(job)

    async def _lines(self, bucket: str, key: str) -> AsyncIterator[tuple[int, bytes]]:
        try:
            info = await self.blobs.stat(bucket, key)
        except Exception as exc:
            if transient(exc):  # the store's outage: the job waits for it
                raise
            raise JobFailed("ERROR_MANIFEST_INACCESSIBLE_OR_UNSUPPORTED_FORMAT", f"The manifest s3://{bucket}/{key} could not be read.") from None
        if info.size > manifests.MAX_MANIFEST_BYTES:
            raise JobFailed("ERROR_MANIFEST_SIZE_TOO_LARGE", f"The manifest is {info.size} bytes; the limit is {manifests.MAX_MANIFEST_BYTES}.")
        async for number, line in iter_lines(self.blobs.stream(bucket, key)):
            if number > manifests.MAX_LINES:
                raise JobFailed("ERROR_MANIFEST_ROWS_EXCEEDS_MAXIMUM", f"The manifest has more than {manifests.MAX_LINES} lines.")
            yield number, line

    async def _scan(self, bucket: str, key: str, *, account: str) -> Scan:
        """The manifest's lines checked, each image read only from a bucket of ``account`` (the dataset's)."""
        scan, batch = Scan(), []
        async for number, raw in self._lines(bucket, key):
            scan.total += 1
            parsed = parse_line(raw, number)
            if isinstance(parsed, RejectedLine):
                scan.invalid += 1
                scan.report(number, parsed.code, parsed.message)
                continue
            batch.append(parsed)
            if len(batch) >= BATCH:
                await self._scan_batch(scan, batch, account)
                batch = []
        await self._scan_batch(scan, batch, account)
        if scan.total == 0:
            raise JobFailed("ERROR_MANIFEST_INACCESSIBLE_OR_UNSUPPORTED_FORMAT", "The manifest is empty.")
        if manifests.too_many_invalid(scan.invalid, scan.total):
            raise JobFailed(
                "ERROR_TOO_MANY_INVALID_ROWS_IN_MANIFEST",
                f"{scan.invalid} of {scan.total} lines are invalid, more than the 20 % allowed. " + "; ".join(scan.line_errors),
            )
        if len(scan.labels) > manifests.MAX_LABELS:
            raise JobFailed("ERROR_MANIFEST_TOO_MANY_LABELS", f"The manifest has {len(scan.labels)} labels; the limit is {manifests.MAX_LABELS}.")
        return scan

    async def _scan_batch(self, scan: Scan, batch: list[ParsedLine], account: str) -> None:
        if not batch:
            return
        scan.checks.update(await self.images.check_many(((p.bucket, p.key) for p in batch), account=account))
        for parsed in batch:
            entry = validate_line(parsed, scan.checks[(parsed.bucket, parsed.key)])
            scan.last_line[parsed.source_ref] = parsed.line_number
            scan.keep(parsed.line_number, entry)
            scan.labels.update(entry.labels)
            if manifests.line_is_invalid(entry):
                scan.invalid += 1
            if entry.has_errors:
                scan.report(parsed.line_number, *manifests.first_error(entry))

    async def _write(self, job: dict[str, Any], scan: Scan) -> None:
        arn = job["dataset_arn"]
        stats = LabelStats.from_doc(arn, await self.store.get(STATS, arn))
        docs = []
        async for number, entry in self._winning_entries(job, scan):
            docs.append(entry_doc(arn, entry))
            if len(docs) >= BATCH:
                await self._write_batch(job, stats, docs, number, scan.total)
                docs = []
        await self._write_batch(job, stats, docs, scan.total, scan.total)

    async def _winning_entries(self, job: dict[str, Any], scan: Scan) -> AsyncIterator[tuple[int, Entry]]:
        """(line number, entry) for each line after the checkpoint whose source-ref it wins."""
        wins = lambda number, source_ref: number > job["checkpoint"] and scan.last_line.get(source_ref) == number
        if scan.entries is not None:
            for number, entry in scan.entries.items():
                if wins(number, entry.source_ref):
                    yield number, entry
            return
        manifest = job["manifest"]
        async for number, raw in self._lines(manifest["bucket"], manifest["key"]):
            parsed = parse_line(raw, number)
            if isinstance(parsed, ParsedLine) and wins(number, parsed.source_ref):
                yield number, validate_line(parsed, scan.checks[(parsed.bucket, parsed.key)])

    async def _write_batch(self, job: dict[str, Any], stats: LabelStats, docs: list[dict], upto: int, total: int) -> None:
        existing = await self.store.get_many(ENTRIES, [d["_id"] for d in docs]) if docs else {}
        writes = [*replace_entries(stats, existing, docs), stats.write()]
        job["checkpoint"] = upto
        job["written"] = job.get("written", 0) + len(docs)
        await self._progress(job, writes, f"Importing: {upto} of {total} manifest lines processed.")
        stats.committed()

    # --- distribute ---------------------------------------------------------------------
    async def _distribute(self, job: dict[str, Any]) -> str:
        train, test = job["dataset_arn"], job["test_dataset_arn"]
        if job["phase"] == "plan":
            job.update(moves=await self._plan_moves(train), phase="move", checkpoint=0)
            await self._save(job)
        train_stats = LabelStats.from_doc(train, await self.store.get(STATS, train))
        test_stats = LabelStats.from_doc(test, await self.store.get(STATS, test))
        moves = job["moves"]
        while job["checkpoint"] < len(moves):
            ids = moves[job["checkpoint"] : job["checkpoint"] + BATCH]
            found = await self.store.get_many(ENTRIES, ids)
            writes = []
            for doc in found.values():
                moved = moved_doc(doc, test)
                train_stats.replace(doc, None)
                test_stats.replace(None, moved)
                writes += [Delete(ENTRIES, doc["_id"]), Put(ENTRIES, moved)]
            writes += [train_stats.write(), test_stats.write()]
            job["checkpoint"] += len(ids)
            await self._progress(job, writes, f"Distributing: {job['checkpoint']} of {len(moves)} entries moved to the test dataset.", train, test)
            train_stats.committed()
            test_stats.committed()
        return f"Distributed: {len(moves)} entries moved from the training to the test dataset."

    async def _plan_moves(self, train: str) -> list[str]:
        """Ids of about 20 % of the labeled entries, stratified by label.

        Each entry is grouped under its rarest label (so rare labels get test
        images too); each group sends round(20 %) of its entries, at least one
        and never all, in a fixed pseudo-random order (the entry key).
        """
        entries, cursor = [], None
        while True:
            page = await self.store.find(ENTRIES, [Eq("dataset_arn", train), Eq("labeled", True)], order_by=("key",), limit=2000, after=cursor)
            entries += [(doc["_id"], doc["labels"]) for doc in page.items if doc["labels"]]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        if len(entries) < 2:
            raise JobFailed("ERROR_INSUFFICIENT_IMAGES_PER_LABEL_FOR_DISTRIBUTE", "The training dataset needs at least 2 labeled entries to distribute.")
        frequency: dict[str, int] = {}
        for _, labels in entries:
            for label in labels:
                frequency[label] = frequency.get(label, 0) + 1
        groups: dict[str, list[str]] = {}
        for entry_id, labels in entries:
            groups.setdefault(min(labels, key=lambda l: (frequency[l], l)), []).append(entry_id)
        moves = []
        for ids in groups.values():
            if len(ids) >= 2:
                moves += ids[: min(len(ids) - 1, max(1, round(len(ids) * TEST_SHARE)))]
        return moves

    # --- delete -----------------------------------------------------------------------------
    async def _delete(self, job: dict[str, Any]) -> str:
        arn = job["dataset_arn"]
        while True:
            page = await self.store.find(ENTRIES, [Eq("dataset_arn", arn)], limit=BATCH)
            if not page.items:
                return "deleted"
            await self._progress(job, [Delete(ENTRIES, d["_id"]) for d in page.items], "Deleting entries.")


def _summary(scan: Scan) -> str:
    written = len(scan.last_line)
    text = f"Imported {written} entries from {scan.total} manifest lines"
    if scan.invalid:
        text += f"; {scan.invalid} lines are invalid (" + "; ".join(scan.line_errors[:5]) + ")"
    return text + "."

