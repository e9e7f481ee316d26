"""bench-fewshot's splits: disjoint, seeded, and for multi-label sets images with and without every label."""
from __future__ import annotations

import numpy as np

from tests.benchmarks.fewshot_sets import few_shot_split, load_set


def test_a_multi_label_split_has_images_with_and_without_every_label_in_training_and_in_test():
    pool = load_set("bccd")  # RBC and WBC are on 96 and 98 % of its images
    targets = pool.targets()
    split = few_shot_split(pool, 5, seed=0, unlabeled=5)
    parts = [split.train, split.unlabeled, split.test]
    assert sorted(np.concatenate(parts).tolist()) == list(range(len(targets)))  # each image in exactly one part
    for part in parts:
        assert (targets[part].sum(axis=0) >= 1).all() and ((1 - targets[part]).sum(axis=0) >= 1).all()
    assert (targets[split.train].sum(axis=0) >= 5).all()
    assert ((1 - targets[split.train]).sum(axis=0) >= np.minimum(5, (1 - targets).sum(axis=0) // 2)).all()
    assert np.array_equal(few_shot_split(pool, 5, seed=0, unlabeled=5).train, split.train)  # seeded


def test_a_multi_class_split_has_shots_images_per_label():
    pool = load_set("flowers-small")
    split = few_shot_split(pool, 10, seed=3)
    assert (pool.targets()[split.train].sum(axis=0) == 10).all() and len(split.test) == len(pool.images) - 50
