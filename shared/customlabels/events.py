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
from customlabels.ml.runtime.artifact import CARD_NAME, ONNX_NAME
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
    """TRAINING_FAILED (or COPYING_FAILED): the version's job ended without a model."""

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
    calibration_error: float | None = None  # a classifier's expected calibration error on the test set (our extension)


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
        return self.prefix + ONNX_NAME

    @property
    def card_key(self) -> str:
        return self.prefix + CARD_NAME


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



# --- feedback: captured predictions, human loops, retraining, promotion ----------------
class PredictionCaptured(ProjectScoped):
    """Hosting: a DetectCustomLabels answer met the activation conditions of the flow
    definition bound to the version; the image is kept at ``image``. The feedback service
    opens one human loop per flow definition and image (the loop's name derives from both),
    so a retried call or a redelivery never opens a second one."""

    topic: ClassVar[str] = "hosting.captures"
    flow_definition_arn: str
    version_arn: str  # the version that answered
    request: dict[str, Any]  # the request as made, the image given by its kept location
    task: str  # the model's: classification | multilabel | detection
    labels: list[str]  # the model's labels
    image: "ObjectLocation"
    image_sha256: str
    predictions: list[dict[str, Any]]  # every prediction, as DetectCustomLabels' CustomLabels items
    thresholds: dict[str, float]  # per label, the confidence (0-100) it is reported from
    activation: dict[str, Any]  # the conditions with each node's EvaluationResult
    selected: list[dict[str, Any]]  # the predictions the true confidence checks matched


class FeedbackEvent(ProjectScoped):
    topic: ClassVar[str] = "feedback"


class HumanLoopCompleted(Event):
    """A human loop got its TaskCount answers; its output.json is at ``output``. Keyed by
    its flow definition (a loop started by StartHumanLoop may belong to no project)."""

    topic: ClassVar[str] = "feedback"
    project_arn: str | None
    flow_definition_arn: str
    human_loop_name: str
    human_loop_arn: str
    version_arn: str | None
    output: "ObjectLocation"
    outcome: str  # the consolidated answer: ACCEPT | CORRECT | NEGATIVE
    audit: bool  # from an audit flow (random sample only): measures accuracy, never trains

    @property
    def partition_key(self) -> str:
        return self.flow_definition_arn


class FeedbackAccepted(FeedbackEvent):
    """A reviewed image becomes a training entry: the datasets service upserts ``line`` (a
    Ground Truth line) into the project's TRAIN dataset by its source-ref, unless an image
    with ``image_sha256`` is in the project's TEST dataset; it answers with FeedbackEntryWritten."""

    human_loop_name: str
    flow_definition_arn: str
    line: dict[str, Any]
    image_sha256: str


class FeedbackEntryWritten(ProjectScoped):
    """The datasets service's answer to FeedbackAccepted: the entry is in the TRAIN dataset
    ``dataset_arn`` (``written``) or was refused, and why."""

    topic: ClassVar[str] = "datasets"
    dataset_arn: str | None
    human_loop_name: str
    source_ref: str
    written: bool
    reason: str | None = None


class RetrainingRequested(FeedbackEvent):
    """The project's retraining policy holds: version ``version_name`` is to be trained."""

    version_name: str
    reason: str
    reviewed_entries: int
    live_version_arn: str | None = None


class VersionsCompared(FeedbackEvent):
    """The live version and a challenger scored on the same test images; the report is at ``report``."""

    live_version_arn: str
    challenger_version_arn: str
    verdict: str  # better | not worse | worse
    promote: bool
    reason: str
    report: "ObjectLocation"


class AliasSwitchRequested(FeedbackEvent):
    """Promotion: hosting is to point the project's stable ARN at ``version_arn`` (running)."""

    alias_arn: str
    version_arn: str


class AliasSwitched(ProjectScoped):
    """Hosting: the project's stable ARN now answers with ``version_arn``."""

    topic: ClassVar[str] = "hosting"
    alias_arn: str
    version_arn: str
    previous_version_arn: str | None = None


class VersionPromoted(FeedbackEvent):
    """A challenger took over the stable ARN and the version it replaced was stopped."""

    alias_arn: str
    version_arn: str
    previous_version_arn: str
    report: "ObjectLocation | None" = None

for _event in EVENT_TYPES.values():
    _event.model_rebuild()
