"""ONNX export of a trained classifier, and a small onnxruntime runtime for it.

    export_onnx(trained, "model.onnx")
    scores = OnnxClassifier("model.onnx").predict([image_bytes, ...])  # (N, len(labels))

The ONNX graph is the whole ``ClassifierNet``: input ``images``
``(batch, 3, S, S)`` float32 as ``preprocess.preprocess`` makes it (dynamic
batch), output ``scores`` ``(batch, len(labels))`` (softmax for multi-class,
sigmoid for multi-label). Opset 17.

Everything needed to use the file travels inside it as metadata properties
(``customlabels.labels``, ``.task``, ``.backbone``, ``.preprocessing``, all
JSON), so the file alone is the model: ``OnnxClassifier`` reads them and applies
the same ``preprocess`` as training, which is what makes its scores equal the
torch model's (checked to 1e-4 in tests/unit/test_ml_classifier.py).

Plain onnxruntime, without this package, needs only the preprocessing steps
written in ``preprocess.py`` (Pillow + numpy).

The exporter is torch's TorchScript-based one (``dynamo=False``): the dynamo
exporter needs ``onnxscript``, one more dependency for the same graph.
"""
from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from customlabels.ml.classifier import TrainedClassifier
from customlabels.ml.artifact import OnnxScores
from customlabels.ml.preprocess import preprocess

OPSET = 17
INPUT_NAME = "images"
OUTPUT_NAME = "scores"


def export_onnx(trained: TrainedClassifier, path: str | Path, *, extra_metadata: dict | None = None) -> Path:
    """Write ``trained`` as an ONNX file at ``path`` and return the path."""
    path = Path(path)
    model = trained.model.eval().cpu()
    model = model.to(memory_format=torch.contiguous_format)  # a plain NCHW graph; the runtime picks its own layout
    size = trained.input_size
    example = torch.zeros(1, 3, size, size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    write_metadata(path, trained, extra_metadata)
    return path


def write_metadata(path: Path, trained, extra_metadata: dict | None = None) -> None:
    """Store what using the file needs inside it (labels, task, backbone, preprocessing), and check it."""
    import onnx

    proto = onnx.load(str(path))
    metadata = {
        "customlabels.labels": json.dumps(trained.labels),
        "customlabels.task": trained.task,
        "customlabels.backbone": trained.backbone,
        "customlabels.preprocessing": json.dumps(trained.preprocessing.to_dict()),
        **{key: value if isinstance(value, str) else json.dumps(value) for key, value in (extra_metadata or {}).items()},
    }
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


class OnnxClassifier(OnnxScores):
    """Scores images with an exported classifier (the same preprocessing as training)."""

    def predict(self, images: Sequence[bytes], batch_size: int = 32) -> np.ndarray:
        """Scores ``(N, len(labels))`` for image bytes."""
        out = [self.predict_array(preprocess(images[i : i + batch_size], self.preprocessing))
               for i in range(0, len(images), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, len(self.labels)), np.float32)
