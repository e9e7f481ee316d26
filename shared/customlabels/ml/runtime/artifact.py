"""A version's model artifact: where it is stored, its two files, and the card.

    <MODELS_BUCKET>/<project>/<version>/<creation ms>/model.onnx   the exported network
    <MODELS_BUCKET>/<project>/<version>/<creation ms>/model.json   the card

Training writes the artifact, evaluation fills in the card's thresholds and
metrics, hosting serves it; the gateway keeps ``MODELS_BUCKET`` to the services
and the CLI exports from it. The card holds the task, the labels, each label's
assumed threshold, the input size and preprocessing, the backbone and the
provenance (datasets, budget, training log). Plain json and dataclasses: no
numpy, no onnxruntime.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from customlabels.arns import parse_arn

MODELS_BUCKET = "customlabels-models"  # where the training service keeps every version's artifact
ONNX_NAME = "model.onnx"
CARD_NAME = "model.json"


def artifact_prefix(version_arn: str) -> str:
    """``.../project/<p>/version/<v>/<ms>`` -> ``<p>/<v>/<ms>/``: the artifact's folder in MODELS_BUCKET."""
    parsed = parse_arn(version_arn)
    if parsed is None or parsed.kind != "version":
        raise ValueError(f"not a model version ARN: {version_arn!r}")
    return f"{parsed.project_name}/{parsed.version_name}/{parsed.ms}/"


@dataclass
class ModelCard:
    """What a model is and how to use it, beside its ONNX file (``CARD_NAME``)."""

    task: str  # "multiclass", "multilabel" or "detection"
    labels: list[str]
    preprocessing: dict[str, Any]  # ``Preprocessing.to_dict()``
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
