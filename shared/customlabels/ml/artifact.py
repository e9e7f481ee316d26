"""The model artifact: one ONNX file and its card, and the one way to run them.

    model.onnx   the exported network (preprocessed images in, scores or boxes out)
    model.json   the card: task, labels, per-label assumed thresholds, input size
                 and preprocessing, backbone, provenance (datasets, budget, metrics)

Evaluation and hosting both score images with ``ServedModel``, so what a
running model answers is what evaluation reported for the same image. The
snippet in the README shows the same thing with plain onnxruntime.

Scores are 0..1 inside; the API's ``Confidence`` is ``100 * score``.
``MinConfidence`` follows the reference: omitted, each label's assumed
threshold applies; given, it replaces them for every label (0 returns all).

Loading a model imports neither torch nor the training code: a classifier is
run by ``OnnxScores`` (onnxruntime, numpy and Pillow only), so a serving
process starts in well under a second. The session runs on CUDA when this
onnxruntime has the CUDA provider and a GPU answers, else on the CPU
(``providers()``).
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MODELS_BUCKET = "customlabels-models"  # where the training service keeps every version's artifact
ONNX_NAME = "model.onnx"
CARD_NAME = "model.json"
TASKS = ("multiclass", "multilabel", "detection")


def artifact_prefix(version_arn: str) -> str:
    """``.../project/<p>/version/<v>/<ms>`` -> ``<p>/<v>/<ms>/``: the artifact's folder in MODELS_BUCKET."""
    tail = version_arn.split(":project/", 1)[1]
    project, _, rest = tail.partition("/version/")
    version, _, ms = rest.rpartition("/")
    return f"{project}/{version}/{ms}/"


@dataclass
class ModelCard:
    task: str
    labels: list[str]
    preprocessing: dict[str, Any]
    backbone: str
    thresholds: dict[str, float] = field(default_factory=dict)  # filled in by evaluation
    provenance: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=2, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> ModelCard:
        return cls(**json.loads(data))

    def threshold(self, label: str) -> float:
        return self.thresholds.get(label, 0.5)


@dataclass(frozen=True)
class Prediction:
    label: str
    score: float  # 0..1
    box: tuple[float, float, float, float] | None = None  # left, top, width, height as ratios

    @property
    def confidence(self) -> float:
        return round(100.0 * self.score, 3)


def providers() -> list[str]:
    """onnxruntime execution providers, best first: CUDA where this build has it, then the CPU."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available] or ["CPUExecutionProvider"]


def session(onnx_path: str | Path, *, threads: int | None = None, spinning: bool | None = None,
            provider_names: Sequence[str] | None = None):
    """An onnxruntime session for ``onnx_path``.

    ``threads``: intra-op threads (None: onnxruntime's default, one per core).
    ``spinning=False`` makes idle pool threads sleep instead of spinning, which
    a server sharing its cores with decoding and networking wants.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    if spinning is not None:
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return ort.InferenceSession(str(onnx_path), options, providers=list(provider_names or providers()))


class OnnxFile:
    """An exported model on onnxruntime, with what its metadata says: labels, task, backbone, preprocessing."""

    def __init__(self, onnx_path: str | Path, **session_options: Any) -> None:
        from customlabels.ml.preprocess import Preprocessing

        self.session = session(onnx_path, **session_options)
        meta = self.session.get_modelmeta().custom_metadata_map
        self.labels: list[str] = json.loads(meta["customlabels.labels"])
        self.task: str = meta["customlabels.task"]
        self.backbone: str = meta["customlabels.backbone"]
        self.preprocessing = Preprocessing.from_dict(json.loads(meta["customlabels.preprocessing"]))
        self.metadata = dict(meta)


class OnnxScores(OnnxFile):
    """An exported classifier: ``(N, 3, S, S)`` float32 in, ``(N, labels)`` scores out (no torch needed)."""

    def predict_array(self, batch):
        return self.session.run([self.session.get_outputs()[0].name], {self.session.get_inputs()[0].name: batch})[0]


class ServedModel:
    """An artifact loaded into onnxruntime (CUDA when available, else CPU).

    ``threads``, ``spinning`` and ``provider_names`` tune the session (see
    ``session``); the defaults suit a one-off scoring run.
    """

    def __init__(self, onnx_path: str | Path, card: ModelCard, *, threads: int | None = None,
                 spinning: bool | None = None, provider_names: Sequence[str] | None = None) -> None:
        self.card = card
        if card.task == "detection":
            from customlabels.ml.detector_onnx import OnnxDetector

            self.runtime = OnnxDetector(onnx_path, threads=threads, spinning=spinning, provider_names=provider_names)
        else:
            self.runtime = OnnxScores(onnx_path, threads=threads, spinning=spinning, provider_names=provider_names)
        self.preprocessing = self.runtime.preprocessing

    @property
    def providers(self) -> list[str]:
        """The providers the session really runs on."""
        runtime_session = getattr(self.runtime, "session", None)
        return list(runtime_session.get_providers()) if runtime_session is not None else []

    @classmethod
    def load(cls, folder: str | Path, *, threads: int | None = None, **session_options: Any) -> ServedModel:
        folder = Path(folder)
        return cls(folder / ONNX_NAME, ModelCard.from_json((folder / CARD_NAME).read_bytes()), threads=threads,
                   **session_options)

    def predict(self, images: Sequence[bytes]) -> list[list[Prediction]]:
        """Every label's score (classification) or every box (detection), per image, best first."""
        return self.predictions_from_array(self.preprocess(images))

    def preprocess(self, images: Sequence[bytes]):
        from customlabels.ml.preprocess import preprocess

        return preprocess(images, self.preprocessing)

    def predictions_from_array(self, batch) -> list[list[Prediction]]:
        """Predictions for an already preprocessed batch (what a batching server feeds)."""
        labels = self.card.labels
        if self.card.task == "detection":
            per_image = self.runtime.predict_array(batch)
            return [
                sorted((Prediction(labels[d.label_index], float(d.score), (d.left, d.top, d.width, d.height))
                        for d in found), key=lambda p: -p.score)
                for found in per_image
            ]
        scores = self.runtime.predict_array(batch)
        return [sorted((Prediction(label, float(s)) for label, s in zip(labels, row)), key=lambda p: -p.score)
                for row in scores]

    def select(self, predictions: list[Prediction], min_confidence: float | None = None,
               max_results: int | None = None) -> list[Prediction]:
        """The reference's answer: above each label's threshold (or MinConfidence), best first."""
        if min_confidence is None:
            kept = [p for p in predictions if p.score >= self.card.threshold(p.label)]
        else:
            kept = [p for p in predictions if p.confidence >= min_confidence]
        return kept[:max_results] if max_results else kept
