"""The datasets service's documents: collection names, how each document is
made, and how the API shows it. Nothing here reads or writes the store.

- ``datasets``: one per dataset; ``job_id`` names the job that owns it while
  it is busy (``BUSY`` statuses), and only that job may write its entries.
- ``entries``: one per (dataset, source-ref). The id is derived from both, so
  writing the same line twice (a redelivered import, a resumed job)
  overwrites instead of adding.
- ``label_stats``: one per dataset, changed in the same commit as the entries
  it counts, so DescribeDataset and ListDatasetLabels are never out of step.
- ``jobs``: import, distribute and delete jobs with their checkpoints.
- ``pending_uploads``: uploaded images waiting for a busy dataset's job.
- ``images``: image checks remembered per object (size and mtime).
"""
from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable

from customlabels import clock
from customlabels.manifests import Entry
from customlabels.ports.documents import Collection, Index, Put

DATASETS = "datasets"
ENTRIES = "entries"
STATS = "label_stats"
JOBS = "jobs"
PENDING = "pending_uploads"
IMAGES = "images"
COLLECTIONS = (
    Collection(DATASETS, (Index(("project_arn", "dataset_type"), unique=True),)),
    Collection(
        ENTRIES,
        (
            Index(("dataset_arn", "key"), unique=True),
            Index(("dataset_arn", "labeled", "key")),
            Index(("dataset_arn", "has_errors", "key")),
        ),
    ),
    Collection(STATS),
    Collection(JOBS),
    Collection(PENDING, (Index(("dataset_arn",)),)),
    Collection(IMAGES),
)
INTERNAL_BUCKET = "customlabels-internal"  # snapshots of the manifests jobs import
BUSY = ("CREATE_IN_PROGRESS", "UPDATE_IN_PROGRESS", "DELETE_IN_PROGRESS")


# --- datasets ------------------------------------------------------------------------------
def new_dataset(arn: str, project_arn: str, dataset_type: str, created: datetime, job_id: str) -> dict[str, Any]:
    return {
        "_id": arn,
        "project_arn": project_arn,
        "dataset_type": dataset_type,
        "created_at": created.isoformat(),
        "updated_at": created.isoformat(),
        "status": "CREATE_IN_PROGRESS",
        "status_message": "Creating the dataset.",
        "job_id": job_id,
    }


def dataset_description(dataset: dict[str, Any], stats: "LabelStats") -> dict[str, Any]:
    """A dataset as DescribeDataset shows it."""
    return {
        "CreationTimestamp": clock.parse(dataset["created_at"]),
        "LastUpdatedTimestamp": clock.parse(dataset["updated_at"]),
        "Status": dataset["status"],
        "StatusMessage": dataset.get("status_message"),
        "StatusMessageCode": dataset.get("status_message_code"),
        "DatasetStats": stats.describe(),
    }


# --- jobs ------------------------------------------------------------------------------------
def new_job(kind: str, dataset_arn: str, verb: str, **fields: Any) -> dict[str, Any]:
    """A job document; ``verb`` (CREATE or UPDATE) names the statuses it sets."""
    first_phase = {"import": "snapshot" if fields.get("copy_from") else "validate", "distribute": "plan", "delete": "delete"}[kind]
    return {"_id": uuid.uuid4().hex, "kind": kind, "verb": verb, "dataset_arn": dataset_arn, "phase": first_phase,
            "attempts": 0, "created_at": clock.now().isoformat(), **fields}


# --- entries ---------------------------------------------------------------------------------


def _digest(text: str, size: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:size]


def entry_key(source_ref: str) -> str:
    return _digest(source_ref, 32)


def entry_id(dataset_arn: str, source_ref: str) -> str:
    return f"{_digest(dataset_arn, 16)}:{entry_key(source_ref)}"


def entry_doc(dataset_arn: str, entry: Entry) -> dict[str, Any]:
    return {
        "_id": entry_id(dataset_arn, entry.source_ref),
        "dataset_arn": dataset_arn,
        "key": entry_key(entry.source_ref),
        "source_ref": entry.source_ref,
        "line": entry.line,
        "labels": list(entry.labels),
        "boxes": dict(entry.bounding_boxes),
        "labeled": entry.labeled,
        "has_errors": entry.has_errors,
        "task": entry.task,
    }


def line_json(line: dict[str, Any]) -> str:
    """An entry as ListDatasetEntries returns it: one compact JSON line."""
    return json.dumps(line, separators=(",", ":"), ensure_ascii=False)


def moved_doc(doc: dict[str, Any], dataset_arn: str) -> dict[str, Any]:
    """The same entry in another dataset (copy, distribute)."""
    moved = {k: v for k, v in doc.items() if k != "_version"}
    moved.update(_id=entry_id(dataset_arn, doc["source_ref"]), dataset_arn=dataset_arn)
    return moved


@dataclass
class LabelStats:
    """Counts DescribeDataset and ListDatasetLabels answer from, for one dataset."""

    dataset_arn: str
    total: int = 0
    labeled: int = 0
    errors: int = 0
    labels: dict[str, list[int]] = field(default_factory=dict)  # label -> [entries, boxes]
    version: int = 0  # the stored document's version; 0 when not stored yet

    @classmethod
    def from_doc(cls, dataset_arn: str, doc: dict[str, Any] | None) -> "LabelStats":
        if doc is None:
            return cls(dataset_arn)
        return cls(dataset_arn, doc["total"], doc["labeled"], doc["errors"], doc["labels"], doc["_version"])

    def _apply(self, doc: dict[str, Any], sign: int) -> None:
        self.total += sign
        self.labeled += sign * bool(doc["labeled"])
        self.errors += sign * bool(doc["has_errors"])
        for label in doc["labels"]:
            counts = self.labels.setdefault(label, [0, 0])
            counts[0] += sign
            counts[1] += sign * doc["boxes"].get(label, 0)
            if counts == [0, 0]:
                del self.labels[label]

    def replace(self, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        """Account for an entry written over ``old`` (None: added) or removed (``new`` None)."""
        if old is not None:
            self._apply(old, -1)
        if new is not None:
            self._apply(new, +1)

    def write(self) -> Put:
        """The write that stores these counts; call ``committed`` once it is committed."""
        doc = {"_id": self.dataset_arn, "total": self.total, "labeled": self.labeled, "errors": self.errors, "labels": self.labels}
        return Put(STATS, doc, expected_version=self.version)

    def committed(self) -> None:
        self.version += 1

    def describe(self) -> dict[str, int]:
        return {
            "LabeledEntries": self.labeled,
            "TotalEntries": self.total,
            "TotalLabels": len(self.labels),
            "ErrorEntries": self.errors,
        }


def replace_entries(stats: LabelStats, existing: dict[str, dict], new_docs: Iterable[dict[str, Any]]) -> list[Put]:
    """Puts for ``new_docs`` over the ``existing`` ones (by id), counted in ``stats``."""
    writes = []
    for doc in new_docs:
        stats.replace(existing.get(doc["_id"]), doc)
        writes.append(Put(ENTRIES, doc))
    return writes
