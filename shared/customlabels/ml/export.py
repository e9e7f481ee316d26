"""ONNX export of a trained model, classifier or detector: the graph, and the metadata that makes the file the model.

    export(trained, "model.onnx", extra_metadata={"customlabels.provenance": ...})

The graph is the whole network (``ClassifierNet``, or ``DetectorNet`` with its
post-processing, NMS included: ``torchvision::nms`` becomes ONNX
``NonMaxSuppression``), with the input and outputs that
``customlabels.ml.runtime.onnx_file`` defines and every runtime reads, and its
metadata properties (labels, task, backbone, preprocessing, and
``extra_metadata``). tests/unit/test_ml_classifier.py and test_ml_detector.py
check that onnxruntime then answers what the torch model answers.

The exporter is torch's TorchScript-based one (``dynamo=False``): the dynamo
exporter needs ``onnxscript``, one more dependency for the same graph.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import onnx
import torch

from customlabels.ml.classifier import TrainedClassifier
from customlabels.ml.detector import TrainedDetector
from customlabels.ml.runtime.onnx_file import INPUT, metadata, output_names

OPSET = 17
EXAMPLE_BATCH = 2  # traced with more than one image, so nothing in the graph can assume one


def export(trained: TrainedClassifier | TrainedDetector, path: str | Path, *,
           extra_metadata: dict[str, Any] | None = None) -> Path:
    """Write ``trained`` as an ONNX file at ``path`` (checked by ``onnx.checker``) and return the path."""
    path = Path(path)
    outputs = output_names(trained.task)
    model = trained.model.eval().cpu().to(memory_format=torch.contiguous_format)  # a plain NCHW graph
    example = torch.zeros(EXAMPLE_BATCH, 3, trained.input_size, trained.input_size)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notices
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=[INPUT],
            output_names=list(outputs),
            dynamic_axes={name: {0: "batch"} for name in (INPUT, *outputs)},
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    proto = onnx.load(str(path))
    properties = metadata(trained.labels, trained.task, trained.backbone, trained.preprocessing, extra_metadata)
    for key, value in properties.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return path
