"""Linear probes on frozen features: the exact fit, the recipes chosen by cross-validation, pseudo-labels.

    probe = fit_probe(features, targets, "multiclass")            # Probe(weight, bias), numpy
    logits = probe.logits(features)
    data = ProbeData(features, views, targets, unlabeled, "multiclass")
    recipe = Recipe(views=4, pseudo_labels=True)
    oof = out_of_fold_logits(recipe, data, folds, gate)           # every image predicted by a probe that never saw it
    probe = fit_recipe(recipe, data, rows, gate)

Everything here works on cached features (``(images, dim)`` float32 arrays),
so a probe costs a fraction of a second and can be refitted many times: that
is what makes k-fold cross-validation affordable, and on a few dozen images
cross-validation is the only held-out estimate fine enough to fit calibration
and compare log losses on (a 15 % holdout of 50 images is 8 images; one of them
is 12 macro-F1 points: ``classifier`` uses the holdout only as a veto).

A **recipe** says what a probe is fitted on: the clean features of the
labeled images, ``views`` augmented copies of them, and (``pseudo_labels``)
the unlabeled images the probe itself labels with confidence:

* a first probe is fitted on the labeled rows; its logits on the unlabeled
  images are calibrated (``gate``: a scale and shift per label, fitted on
  held-out logits, see ``calibration``) and only confident ones are kept:
  multi-class, an image whose top calibrated score reaches
  ``PSEUDO_CONFIDENCE``; multi-label, each label on its own, present at
  ``PSEUDO_CONFIDENCE`` or more, absent at ``1 - PSEUDO_CONFIDENCE`` or less,
  not counted in between;
* the probe is refitted on labeled rows and pseudo-labeled images, these
  weighted ``PSEUDO_WEIGHT`` (a label the model guessed counts less than one a
  person gave), and each class's pseudo-labels capped at ``PSEUDO_PER_LABEL``
  times its labeled images (so a class the first probe favours cannot swamp
  the others).

Held-out images are never among the rows a probe is fitted on; unlabeled
images are never scored: they have no labels to score against.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

HEAD_L2 = 1.0  # L2 strength of the linear head, as scikit-learn's 1/C
LABEL_SMOOTHING = 0.1  # of the multi-class targets a probe (and fine-tuning) fits: see ``fit_probe``
PSEUDO_CONFIDENCE = 0.9  # calibrated score an unlabeled image's label needs to be taken
PSEUDO_WEIGHT = 0.5  # of a pseudo-labeled image in the loss, against 1 for a labeled one
PSEUDO_PER_LABEL = 3.0  # at most this many pseudo-labeled images per labeled image of a label


@dataclass(frozen=True)
class Probe:
    """A linear head: ``logits = features @ weight.T + bias``."""

    weight: np.ndarray  # (labels, dim) float32
    bias: np.ndarray  # (labels,)

    def logits(self, features: np.ndarray) -> np.ndarray:
        return features @ self.weight.T + self.bias


@dataclass(frozen=True)
class Recipe:
    views: int = 0  # augmented copies of every labeled image's features fitted beside the clean ones
    pseudo_labels: bool = False

    @property
    def name(self) -> str:
        parts = ["linear"] + ([f"{self.views} augmented views"] if self.views else []) + (
            ["pseudo-labels"] if self.pseudo_labels else [])
        return " + ".join(parts)


@dataclass
class ProbeData:
    """The features a probe can be fitted on; rows of ``features``, ``views[k]`` and ``targets`` are the same images."""

    features: np.ndarray  # (N, D) clean features of the labeled images
    views: list[np.ndarray]  # each (N, D): one augmented copy of every labeled image
    targets: np.ndarray  # (N, L) 0/1
    task: str
    unlabeled: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))  # (U, D)


@dataclass(frozen=True)
class Gate:
    """Calibration of a probe's logits for the pseudo-label gate (``calibration.fit_calibration``'s output)."""

    scale: np.ndarray
    shift: np.ndarray


def fit_probe(features: np.ndarray, targets: np.ndarray, task: str, *, weights: np.ndarray | None = None,
              l2: float = HEAD_L2, smoothing: float = LABEL_SMOOTHING) -> Probe:
    """The linear head minimising the L2-regularised logistic loss exactly (L-BFGS).

    The objective of scikit-learn's ``LogisticRegression(C=1/l2)``, multinomial
    for multi-class and one-vs-rest for multi-label, in its mean form, with
    multi-class targets label-smoothed (``smoothing=0``: exactly
    scikit-learn's). Smoothing bounds the logits where the L2 penalty, spread
    over many rows of augmented views, hardly does: at 0.1 it gained about a
    point of macro-F1 at 5 and 10 images per label on every multi-class set
    measured, with a flat optimum (0.1-0.3 alike), so it is no per-set
    setting; on the multi-label set smoothing each label's yes/no cost as
    much (see ``classifier.MEASUREMENTS``). The timid scores it leaves are
    what calibration is for.
    ``weights``: per-row loss weights ``(rows,)``, or per row and label
    ``(rows, labels)`` for multi-label (0: the label is unknown on that row).
    """
    x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    y = torch.from_numpy(np.ascontiguousarray(targets, dtype=np.float32))
    w = None if weights is None else torch.from_numpy(np.asarray(weights, dtype=np.float32))
    weight = torch.zeros(y.shape[1], x.shape[1], requires_grad=True)
    bias = torch.zeros(y.shape[1], requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1, max_iter=500, tolerance_grad=1e-6,
                                  history_size=20, line_search_fn="strong_wolfe")
    penalty = l2 / (2 * len(x))  # sklearn sums the loss; this is its mean form

    def closure():
        optimizer.zero_grad()
        loss = head_loss(x @ weight.T + bias, y, task, smoothing, w) + penalty * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return Probe(weight.detach().numpy(), bias.detach().numpy())


def head_loss(logits: torch.Tensor, y: torch.Tensor, task: str, smoothing: float = 0.0,
              weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean cross-entropy (multi-class) or summed-over-labels binary cross-entropy (multi-label, like one-vs-rest).

    ``smoothing``: label smoothing of multi-class targets; multi-label targets are never smoothed.
    """
    if task == "multiclass":
        losses = F.cross_entropy(logits, y.argmax(dim=1), label_smoothing=smoothing, reduction="none")
        return losses.mean() if weights is None else (losses * weights).sum() / len(y)
    losses = F.binary_cross_entropy_with_logits(logits, y, reduction="none")
    if weights is not None:
        losses = losses * (weights if weights.dim() == 2 else weights[:, None])
    return losses.sum() / len(y)


def fit_recipe(recipe: Recipe, data: ProbeData, rows: np.ndarray, gate: Gate | None) -> Probe:
    """The probe ``recipe`` makes from the labeled ``rows`` (and the unlabeled images, when it takes them)."""
    x = np.concatenate([data.features[rows]] + [view[rows] for view in data.views[: recipe.views]])
    y = np.tile(data.targets[rows], (1 + min(recipe.views, len(data.views)), 1))
    probe = fit_probe(x, y, data.task)
    if not (recipe.pseudo_labels and gate is not None and len(data.unlabeled)):
        return probe
    labeled_per_label = data.targets[rows].sum(axis=0)
    taken, targets, weights = pseudo_labels(probe.logits(data.unlabeled), gate, data.task, labeled_per_label)
    if not len(taken):
        return probe
    row_weights = np.ones((len(x), y.shape[1]) if data.task == "multilabel" else len(x), np.float32)
    return fit_probe(np.concatenate([x, data.unlabeled[taken]]), np.concatenate([y, targets]), data.task,
                     weights=np.concatenate([row_weights, PSEUDO_WEIGHT * weights]))


def pseudo_labels(logits: np.ndarray, gate: Gate, task: str, labeled_per_label: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The confident unlabeled images: ``(indices, targets, weights)``.

    ``weights`` is 1 per kept image (multi-class), or per image and label 1
    where the label is confidently present or absent and 0 where it is not
    known (multi-label). See the module docstring for the gate and the cap.
    """
    z = torch.from_numpy(logits * gate.scale + gate.shift)
    cap = np.floor(PSEUDO_PER_LABEL * labeled_per_label).astype(np.int64)
    if task == "multiclass":
        scores = z.softmax(dim=1).numpy()
        best, confidence = scores.argmax(axis=1), scores.max(axis=1)
        kept = []
        for label in range(scores.shape[1]):
            candidates = np.flatnonzero((best == label) & (confidence >= PSEUDO_CONFIDENCE))
            kept.extend(candidates[np.argsort(-confidence[candidates], kind="stable")][: cap[label]].tolist())
        kept = np.sort(np.asarray(kept, dtype=np.int64))
        targets = np.zeros((len(kept), scores.shape[1]), np.float32)
        targets[np.arange(len(kept)), best[kept]] = 1
        return kept, targets, np.ones(len(kept), np.float32)
    scores = z.sigmoid().numpy()
    present, absent = scores >= PSEUDO_CONFIDENCE, scores <= 1 - PSEUDO_CONFIDENCE
    for label in range(scores.shape[1]):  # the cap applies to a label's confident positives
        positives = np.flatnonzero(present[:, label])
        dropped = positives[np.argsort(-scores[positives, label], kind="stable")][cap[label]:]
        present[dropped, label] = False
    known = present | absent
    kept = np.flatnonzero(known.any(axis=1))
    return kept, present[kept].astype(np.float32), known[kept].astype(np.float32)


def out_of_fold_logits(recipe: Recipe, data: ProbeData, folds: np.ndarray, gate: Gate | None) -> np.ndarray:
    """Each labeled image's logits from the ``recipe`` probe fitted on the other folds."""
    logits = np.zeros(data.targets.shape, np.float32)
    for fold in np.unique(folds):
        held = folds == fold
        logits[held] = fit_recipe(recipe, data, np.flatnonzero(~held), gate).logits(data.features[held])
    return logits
