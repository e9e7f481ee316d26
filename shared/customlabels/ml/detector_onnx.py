"""ONNX export of a trained detector, and a small onnxruntime runtime for it.

    export_detector_onnx(trained, "model.onnx")
    detections = OnnxDetector("model.onnx").predict([image_bytes, ...])  # per image: [Detection, ...]

The graph is the whole ``DetectorNet``, post-processing included: input
``images`` ``(batch, 3, S, S)`` float32 exactly as ``preprocess.preprocess``
makes it (``resize="stretch"``; dynamic batch), outputs of a fixed size per
image:

* ``boxes`` ``(batch, K, 4)`` float32: x0, y0, x1, y1 as ratios of the image;
* ``scores`` ``(batch, K)`` float32, best first, 0 for padding;
* ``labels`` ``(batch, K)`` int64, indices into ``customlabels.labels``.

Decoding, per-class NMS (``torchvision::nms`` becomes ONNX
``NonMaxSuppression``) and the top-K choice are in the graph, so plain
onnxruntime gives the final boxes. Opset 17, TorchScript exporter, metadata
props as the classifier's export (``customlabels.labels``, ``.task`` =
"detection", ``.backbone``, ``.preprocessing``).
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from customlabels.ml.artifact import OnnxFile
from customlabels.ml.preprocess import preprocess

if TYPE_CHECKING:  # the runtime half of this module must not need torch (serving loads it)
    from customlabels.ml.detector import TrainedDetector

OPSET = 17
INPUT_NAME = "images"
OUTPUT_NAMES = ("boxes", "scores", "labels")


@dataclass(frozen=True)
class Detection:
    """A predicted box: ratios of the image, clipped to [0, 1]."""

    label_index: int
    score: float
    left: float
    top: float
    width: float
    height: float


def to_detections(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> list[list[Detection]]:
    """The model's fixed-size outputs -> lists of detections (padding, score 0, dropped)."""
    out = []
    for image_boxes, image_scores, image_labels in zip(boxes, scores, labels):
        found = []
        for (x0, y0, x1, y1), score, label in zip(image_boxes.tolist(), image_scores.tolist(), image_labels.tolist()):
            if score <= 0:
                continue
            x0, y0 = min(max(x0, 0.0), 1.0), min(max(y0, 0.0), 1.0)
            x1, y1 = min(max(x1, x0), 1.0), min(max(y1, y0), 1.0)
            found.append(Detection(int(label), min(float(score), 1.0), x0, y0, x1 - x0, y1 - y0))
        out.append(found)
    return out



def export_detector_onnx(trained: TrainedDetector, path: str | Path, extra_metadata: dict | None = None) -> Path:
    """Write ``trained`` as an ONNX file at ``path`` and return the path."""
    import torch

    from customlabels.ml.onnx_export import write_metadata

    path = Path(path)
    model = trained.model.eval().cpu().to(memory_format=torch.contiguous_format)
    size = trained.input_size
    example = torch.zeros(2, 3, size, size)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notices
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            dynamic_axes={INPUT_NAME: {0: "batch"}, **{name: {0: "batch"} for name in OUTPUT_NAMES}},
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    write_metadata(path, trained, extra_metadata)
    return path


class OnnxDetector(OnnxFile):
    """Finds objects with an exported detector on onnxruntime (CUDA when present, else the CPU)."""

    def predict(self, images: Sequence[bytes], batch_size: int = 16) -> list[list[Detection]]:
        """Detections per image (ratios of the image, best first)."""
        out: list[list[Detection]] = []
        for i in range(0, len(images), batch_size):
            out.extend(self.predict_array(preprocess(images[i : i + batch_size], self.preprocessing)))
        return out

    def predict_array(self, batch: np.ndarray) -> list[list[Detection]]:
        """Detections for an already preprocessed ``(N, 3, S, S)`` float32 batch."""
        return to_detections(*self.run(batch))

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The raw fixed-size outputs ``boxes (N, K, 4)``, ``scores (N, K)``, ``labels (N, K)``."""
        boxes, scores, labels = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: batch})
        return boxes, scores, labels
