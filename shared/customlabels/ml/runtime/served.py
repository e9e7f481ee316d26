"""A model artifact loaded for scoring: the one way evaluation and hosting run a model.

Evaluation and hosting both score images with ``ServedModel``, so what a
running model answers is what evaluation reported for the same image. The
snippet in the README shows the same thing with plain onnxruntime.

Scores are 0..1 inside; the API's ``Confidence`` is ``100 * score``.
``MinConfidence`` follows the reference: omitted, each label's assumed
threshold applies; given, it replaces them for every label (0 returns all).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from customlabels.ml.runtime.artifact import CARD_NAME, ONNX_NAME, ModelCard
from customlabels.ml.runtime.onnx_file import DETECTION, OnnxFile, to_detections
from customlabels.ml.runtime.preprocess import preprocess


@dataclass(frozen=True)
class Prediction:
    label: str
    score: float  # 0..1
    box: tuple[float, float, float, float] | None = None  # left, top, width, height as ratios

    @property
    def confidence(self) -> float:
        return round(100.0 * self.score, 3)


class ServedModel:
    """An artifact (ONNX file + card) in onnxruntime (CUDA when available, else CPU).

    ``threads``, ``spinning`` and ``provider_names`` tune the session (see
    ``onnx_file.session``); the defaults suit a one-off scoring run. The labels
    and thresholds are the card's; the preprocessing is the file's own.
    """

    def __init__(self, onnx_path: str | Path, card: ModelCard, *, threads: int | None = None,
                 spinning: bool | None = None, provider_names: Sequence[str] | None = None) -> None:
        self.card = card
        self.onnx = OnnxFile(onnx_path, threads=threads, spinning=spinning, provider_names=provider_names)
        self.preprocessing = self.onnx.preprocessing

    @classmethod
    def load(cls, folder: str | Path, **session_options) -> ServedModel:
        """The artifact in ``folder`` (``ONNX_NAME`` and ``CARD_NAME``)."""
        folder = Path(folder)
        return cls(folder / ONNX_NAME, ModelCard.from_json((folder / CARD_NAME).read_bytes()), **session_options)

    @property
    def providers(self) -> list[str]:
        """The providers the session really runs on."""
        return list(self.onnx.session.get_providers())

    def predict(self, images: Sequence[bytes]) -> list[list[Prediction]]:
        """Every label's score (classification) or every box (detection), per image, best first."""
        return self.predictions_from_array(self.preprocess(images))

    def preprocess(self, images: Sequence[bytes]) -> np.ndarray:
        return preprocess(images, self.preprocessing)

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """The graph's raw outputs for a preprocessed batch (what a server times and warms up with)."""
        return self.onnx.run(batch)

    def predictions_from_array(self, batch: np.ndarray) -> list[list[Prediction]]:
        """Predictions for an already preprocessed batch (what a batching server feeds)."""
        labels = self.card.labels
        if self.card.task == DETECTION:
            return [
                sorted((Prediction(labels[d.label_index], float(d.score), (d.left, d.top, d.width, d.height))
                        for d in found), key=lambda p: -p.score)
                for found in to_detections(*self.run(batch))
            ]
        (scores,) = self.run(batch)
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
