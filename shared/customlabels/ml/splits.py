"""Stratified splits of labelled images (numpy only, so the training service's data step needs no torch).

``targets`` is an ``(images, labels)`` 0/1 array. Each image is filed under
its rarest label (multi-class: its label; no label at all: a group of its
own, as a detector's negative images are), and each group is split on its
own, so a rare label is never left out of training.
"""
from __future__ import annotations

import numpy as np


def stratified_holdout(targets: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of a holdout of about ``fraction``, stratified by label.

    Each group gives ``round(fraction * size)`` images, leaving at least two in
    training: a label with one or two images keeps them all for training.
    """
    rarest = rarest_label(targets)
    chosen = []
    for group in np.unique(rarest):
        members = rng.permutation(np.flatnonzero(rarest == group))
        take = min(round(fraction * len(members)), max(0, len(members) - 2))
        chosen.extend(members[:take].tolist())
    return np.sort(np.asarray(chosen, dtype=np.int64))


def stratified_folds(targets: np.ndarray, folds: int, rng: np.random.Generator) -> np.ndarray:
    """A fold number per row, dealt round-robin within each rarest-label group."""
    groups = rarest_label(targets)
    fold = np.zeros(len(targets), dtype=np.int64)
    for group in np.unique(groups):
        members = rng.permutation(np.flatnonzero(groups == group))
        fold[members] = np.arange(len(members)) % folds
    return fold


def rarest_label(targets: np.ndarray) -> np.ndarray:
    """Per row, the index of its least frequent label (-1 for a row without labels)."""
    counts = targets.sum(axis=0)
    return np.where(targets.any(axis=1), np.argmin(np.where(targets > 0, counts, np.inf), axis=1), -1)
