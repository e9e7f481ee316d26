"""The one way to train a model for a task (what the training service's worker thread calls).

    trained = train("multiclass", [(image_bytes, {"cat"}), ...], labels=["cat", "dog"], budget_seconds=600)
    trained = train("detection", [(image_bytes, [Box("cat", 0.1, 0.2, 0.3, 0.4)]), ...], labels=["cat"],
                    budget_seconds=600)
    export(trained, "model.onnx")    # customlabels.ml.export

A classification sample is ``(image bytes, set of label names)``
(``classifier.train_classifier``); a detection sample is ``(image bytes,
[evaluation.detection.Box])`` with boxes as ratios of the image
(``detector.train_detector``). Either way the run ends within about a second
of ``budget_seconds``, reports ``(stage, fraction, message)`` to ``progress``
(which may raise to stop it), and raises ``ValueError`` for samples that
cannot make a model. Weights come from ``weights_dir`` (default:
``weights.default_root()``). ``unlabeled``: bytes of images nobody has
labeled, which a classifier learns from too (pseudo-labels behind a
confidence gate, kept only when cross-validation says they help); a detector
does not use them.
"""
from __future__ import annotations

from collections.abc import Sequence

from customlabels.ml.classifier import TrainedClassifier, train_classifier
from customlabels.ml.detector import TrainedDetector, train_detector
from customlabels.ml.runtime.onnx_file import DETECTION
from customlabels.ml.train_utils import Progress


def train(task: str, samples: Sequence[tuple], *, labels: list[str], budget_seconds: float,
          progress: Progress | None = None, weights_dir: str | None = None,
          device: str | None = None, unlabeled: Sequence[bytes] = ()) -> TrainedClassifier | TrainedDetector:
    """A model for ``task`` ("multiclass", "multilabel" or "detection") trained on ``samples`` within the budget."""
    if task == DETECTION:
        return train_detector(samples, labels=labels, budget_seconds=budget_seconds, progress=progress,
                              weights_dir=weights_dir, device=device)
    return train_classifier(samples, task=task, labels=labels, budget_seconds=budget_seconds, progress=progress,
                            weights_dir=weights_dir, device=device, unlabeled=unlabeled)
