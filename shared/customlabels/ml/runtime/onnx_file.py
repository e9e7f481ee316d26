"""An exported model on onnxruntime, and the graph's contract that the exporter and every runtime share.

The graph (``customlabels.ml.export`` writes it; opset 17):

* input ``INPUT`` (``"images"``): ``(batch, 3, S, S)`` float32 exactly as
  ``preprocess.preprocess`` makes it, with a dynamic batch;
* a classifier's output, ``CLASSIFIER_OUTPUTS``: ``scores`` ``(batch, labels)``,
  softmax (multi-class) or sigmoid (multi-label);
* a detector's outputs, ``DETECTOR_OUTPUTS``, a fixed number K per image with
  decoding and per-class NMS inside the graph: ``boxes`` ``(batch, K, 4)``
  x0, y0, x1, y1 as ratios of the image, ``scores`` ``(batch, K)`` best first
  and 0 for padding, ``labels`` ``(batch, K)`` int64 indices into the labels.

Everything needed to use the file travels inside it as metadata properties,
each a JSON value (``metadata``): ``customlabels.labels``, ``.task``,
``.backbone``, ``.preprocessing``, and whatever the exporter adds (training
adds ``.provenance``). So the file alone is the model: ``OnnxFile`` reads them,
and plain onnxruntime needs only the preprocessing in ``preprocess.py``.

The session runs on CUDA when this onnxruntime has the CUDA provider and a
GPU answers, else on the CPU (``providers()``).
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from customlabels.ml.runtime.preprocess import Preprocessing

INPUT = "images"
CLASSIFIER_OUTPUTS = ("scores",)
DETECTOR_OUTPUTS = ("boxes", "scores", "labels")
DETECTION = "detection"  # the task whose graph has DETECTOR_OUTPUTS

LABELS, TASK, BACKBONE, PREPROCESSING = (f"customlabels.{key}" for key in ("labels", "task", "backbone", "preprocessing"))


def output_names(task: str) -> tuple[str, ...]:
    return DETECTOR_OUTPUTS if task == DETECTION else CLASSIFIER_OUTPUTS


def metadata(labels: Sequence[str], task: str, backbone: str, preprocessing: Preprocessing,
             extra: Mapping[str, Any] | None = None) -> dict[str, str]:
    """The file's metadata properties: what using it needs, and ``extra`` (non-strings JSON-encoded)."""
    return {
        LABELS: json.dumps(list(labels)),
        TASK: task,
        BACKBONE: backbone,
        PREPROCESSING: json.dumps(preprocessing.to_dict()),
        **{key: value if isinstance(value, str) else json.dumps(value) for key, value in (extra or {}).items()},
    }


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
    """An exported model in an onnxruntime session, with what its metadata says: labels, task, backbone, preprocessing.

    ``session_options`` go to ``session`` (threads, spinning, provider_names).
    """

    def __init__(self, onnx_path: str | Path, **session_options: Any) -> None:
        self.session = session(onnx_path, **session_options)
        meta = self.session.get_modelmeta().custom_metadata_map
        self.labels: list[str] = json.loads(meta[LABELS])
        self.task: str = meta[TASK]
        self.backbone: str = meta[BACKBONE]
        self.preprocessing = Preprocessing.from_dict(json.loads(meta[PREPROCESSING]))
        self.metadata = dict(meta)
        self.outputs = output_names(self.task)

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """The graph's outputs (``self.outputs``, in that order) for a preprocessed ``(N, 3, S, S)`` batch."""
        return self.session.run(list(self.outputs), {INPUT: batch})


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
    """A detector's fixed-size outputs -> per image, its detections in the graph's order (padding, score 0, dropped)."""
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
