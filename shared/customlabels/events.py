"""Event schemas: the only facts services tell each other.

Events about a project are keyed by its ARN, so one project's events stay in
order on every bus; object events are keyed by bucket. ``topic`` groups the
events one service (or the object store) emits; subscribers pick the types
they handle (see ``customlabels.messaging``).
"""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from customlabels.clock import now
from customlabels.ports.events import Message

EVENT_TYPES: dict[str, type["Event"]] = {}


class Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    topic: ClassVar[str]

    event_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    occurred_at: datetime = Field(default_factory=now)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        EVENT_TYPES[cls.__name__] = cls

    @property
    def partition_key(self) -> str:
        """Events with one key are handled in order."""
        raise NotImplementedError

    def to_message(self) -> Message:
        return Message(
            topic=self.topic,
            key=self.partition_key,
            id=self.event_id,
            type=type(self).__name__,
            payload=self.model_dump(mode="json"),
        )

    @staticmethod
    def from_message(message: Message) -> "Event":
        try:
            event_type = EVENT_TYPES[message.type]
        except KeyError:
            raise ValueError(f"unknown event type {message.type!r}") from None
        return event_type.model_validate(message.payload)


class ProjectScoped(Event):
    project_arn: str

    @property
    def partition_key(self) -> str:
        return self.project_arn


# --- projects ----------------------------------------------------------------
class ProjectEvent(ProjectScoped):
    topic: ClassVar[str] = "projects"


class ProjectCreated(ProjectEvent):
    project_name: str


class ProjectDeleted(ProjectEvent):
    project_name: str


# --- datasets ----------------------------------------------------------------
class DatasetEvent(ProjectScoped):
    topic: ClassVar[str] = "datasets"
    dataset_arn: str


class DatasetCreated(DatasetEvent):
    dataset_type: str  # TRAIN | TEST
    created_at: datetime
    status: str
    tags: dict[str, str] = {}


class DatasetStatusChanged(DatasetEvent):
    """Status, StatusMessage and StatusMessageCode as DescribeDataset shows them."""

    status: str
    status_message: str | None = None
    status_message_code: str | None = None


class DatasetImported(DatasetEvent):
    """An import (create, update, copy or distribute) finished and its entries are stored."""

    job_id: str
    entries_written: int
    lines_with_errors: int


class DatasetEntriesChanged(DatasetEvent):
    """Entries were added, changed or removed; training reads them when it needs them."""

    entry_count: int


class DatasetDeleted(DatasetEvent):
    pass


class DatasetJobRequested(DatasetEvent):
    """Internal to the datasets service: run job ``job_id`` (import, distribute, delete)."""

    topic: ClassVar[str] = "datasets.jobs"
    job_id: str


# --- model versions (emitted by the training service) --------------------------
class VersionEvent(ProjectScoped):
    topic: ClassVar[str] = "training"
    version_arn: str
    version_name: str


class VersionCreated(VersionEvent):
    tags: dict[str, str] = {}


class VersionDeleted(VersionEvent):
    pass


class TrainingRequested(VersionEvent):
    """Internal to the training service: train version ``version_arn`` (the training workers' queue)."""

    topic: ClassVar[str] = "training.jobs"


class TrainingProgress(VersionEvent):
    stage: str
    fraction: float  # of the training budget used
    message: str


class TrainingFinished(VersionEvent):
    """A model is trained and exported; the evaluation service scores it on the test set."""

    model: "ModelLocation"
    test_manifest: "ObjectLocation"  # the test set's JSON Lines, as trained against
    output: "ObjectLocation"  # OutputConfig: where the evaluation files go
    number_of_training_images: int


class TrainingFailed(VersionEvent):
    status_message: str


class VersionCompleted(VersionEvent):
    """TRAINING_COMPLETED: the model can be started (hosting keeps this)."""

    model: "ModelLocation"


class VersionStatusChanged(VersionEvent):
    """Hosting's side of a version's status: STARTING, RUNNING, FAILED, STOPPING, STOPPED."""

    topic: ClassVar[str] = "hosting"
    status: str
    status_message: str | None = None
    min_inference_units: int | None = None
    max_inference_units: int | None = None


# --- evaluation ------------------------------------------------------------------
class EvaluationEvent(VersionEvent):
    topic: ClassVar[str] = "evaluation"


class EvaluationCompleted(EvaluationEvent):
    f1_score: float
    summary: "ObjectLocation"  # EvaluationSummary-<project>-<version>.json in the output bucket
    snapshot: "ObjectLocation"  # the evaluation manifest snapshot
    thresholds: dict[str, float]  # per label, the assumed threshold (0..1)


class EvaluationFailed(EvaluationEvent):
    status_message: str


class ObjectLocation(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    bucket: str
    key: str


class ModelLocation(BaseModel):
    """A model artifact: the ONNX file and its card (labels, thresholds, provenance) side by side."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    bucket: str
    prefix: str  # <prefix>model.onnx, <prefix>model.json

    @property
    def onnx_key(self) -> str:
        return f"{self.prefix}model.onnx"

    @property
    def card_key(self) -> str:
        return f"{self.prefix}model.json"


# --- objects (from the gateway's object routes or the object store's notifications) ---
class ImageUploaded(Event):
    """An object was stored; the datasets service adds images under a watched
    prefix to the matching dataset as unlabeled entries."""

    topic: ClassVar[str] = "objects"
    bucket: str
    object_key: str
    size: int

    @property
    def partition_key(self) -> str:
        return self.bucket


for _event in EVENT_TYPES.values():
    _event.model_rebuild()
