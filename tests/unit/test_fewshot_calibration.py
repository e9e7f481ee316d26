"""Calibrated confidences, the calibration error, and the pseudo-label gate: on synthetic logits and features.

Fast (no backbone, no image): the parts of the few-shot recipe whose behaviour
follows from their definition. The measured effect on real images is
``make bench-fewshot``'s.
"""
from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest
import torch
from customlabels.ml.calibration import MAX_SCALE, fit_calibration
from customlabels.ml.evaluation import (
    calibrated_floor,
    evaluate_classification,
    expected_calibration_error,
    summary_file,
)
from customlabels.ml.probes import (
    PSEUDO_CONFIDENCE,
    Gate,
    ProbeData,
    Recipe,
    fit_probe,
    fit_recipe,
    out_of_fold_logits,
    pseudo_labels,
)


def softmax(z: np.ndarray) -> np.ndarray:
    return torch.from_numpy(z).softmax(dim=1).numpy()


def sample_multiclass(rng, n: int, labels: int, true_scale: float):
    """Logits whose labels are drawn from softmax(true_scale * logits): calibrated at scale ``true_scale``."""
    z = rng.normal(0, 2, (n, labels))
    probabilities = softmax(true_scale * z)
    y = np.array([rng.choice(labels, p=p) for p in probabilities])
    return z, np.eye(labels, dtype=np.float32)[y]


# --- the calibration error ---------------------------------------------------------------
def test_ece_by_hand_multiclass():
    # top scores .9 .9 .6 .3 (bins 13, 13, 9, 4 of 15); right, wrong, right, right
    scores = np.array([[.9, .1], [.9, .1], [.4, .6], [.3, .2]])
    truth = np.array([[1, 0], [0, 1], [0, 1], [1, 0]], bool)
    # bin 13: mean score .9, 1 of 2 right: gap .4 x 2/4; bin 9: .6 vs 1: .4 x 1/4; bin 4: .3 vs 1: .7 x 1/4
    assert expected_calibration_error(truth, scores, multi_label=False) == pytest.approx(.2 + .1 + .175)


def test_ece_by_hand_multilabel_is_the_mean_over_labels_with_ground_truth():
    scores = np.array([[.8, .1, .5], [.8, .3, .5]])
    truth = np.array([[1, 0, 0], [0, 0, 0]], bool)  # the second and third labels have no ground truth here
    # label 0: both in bin 12, mean score .8, half present: .3
    assert expected_calibration_error(truth, scores, multi_label=True) == pytest.approx(.3)
    assert expected_calibration_error(np.zeros((0, 2), bool), np.zeros((0, 2)), multi_label=False) == 0.0
    with pytest.raises(ValueError, match="images, labels"):
        expected_calibration_error(truth, scores[:, :2], multi_label=True)


def _few_shot_like_scores(n: int, rng) -> np.ndarray:
    """Two-label scores spread like a good few-shot classifier's: top scores mostly 0.6-1."""
    top = rng.beta(4, 1.2, n) * 0.5 + 0.5
    return np.stack([top, 1 - top], axis=1)


def test_the_calibrated_floor_is_what_a_calibrated_model_measures():
    rng = np.random.default_rng(7)
    scores = _few_shot_like_scores(150, rng)
    floor = calibrated_floor(scores, multi_label=False)
    measured = []  # test sets drawn from the scores: a model calibrated by construction, measured
    for _ in range(400):
        right = rng.random(150) < scores[:, 0]
        truth = np.stack([right, ~right], axis=1)
        measured.append(expected_calibration_error(truth, scores, multi_label=False))
    assert floor == pytest.approx(np.mean(measured), abs=0.006)
    assert floor > 0.02  # not 0: each bin's share right is a small-sample estimate


def test_the_floor_falls_with_the_square_root_of_the_test_images():
    rng = np.random.default_rng(8)
    small, large = (calibrated_floor(_few_shot_like_scores(n, rng), multi_label=False) for n in (150, 600))
    assert large == pytest.approx(small / 2, rel=0.25)


def test_the_floor_of_certain_scores_is_zero_and_every_label_counts_for_multilabel():
    assert calibrated_floor(np.array([[1.0, 0.0]] * 20), multi_label=False) == 0.0
    assert calibrated_floor(np.array([[1.0, 0.0]] * 20), multi_label=True) == 0.0
    scores = np.random.default_rng(9).random((100, 3))
    assert calibrated_floor(scores, multi_label=True) == calibrated_floor(scores, multi_label=True)  # seeded
    assert calibrated_floor(scores, multi_label=True) > 0.05


def test_a_score_of_one_falls_in_the_last_bin():
    assert expected_calibration_error(np.array([[1, 0]], bool), np.array([[1.0, 0.0]]), multi_label=False) == 0.0


def test_the_summary_file_carries_the_calibration_error_of_classifiers():
    evaluation = evaluate_classification(["a", "b"], [{"a"}, {"b"}, {"a"}], [[.9, .1], [.2, .8], [.6, .4]])
    summary = summary_file(evaluation, project_version_arn="arn", evaluation_end=datetime(2026, 1, 1),
                           number_of_training_images=3)
    assert summary["AggregatedEvaluationResults"]["ExpectedCalibrationError"] == pytest.approx(
        expected_calibration_error(evaluation.truth, evaluation.scores, multi_label=False))


# --- fitting the calibration ------------------------------------------------------------
@pytest.mark.parametrize("true_scale", [0.4, 2.5])
def test_temperature_scaling_recovers_the_scale_and_keeps_every_decision(true_scale):
    rng = np.random.default_rng(1)
    z, y = sample_multiclass(rng, 4000, 5, true_scale)
    scale, shift = fit_calibration(z, y, "multiclass")
    assert np.allclose(scale, scale[0]) and not shift.any()
    assert scale[0] == pytest.approx(true_scale, rel=0.1)
    test_z, test_y = sample_multiclass(rng, 4000, 5, true_scale)
    before = expected_calibration_error(test_y > 0, softmax(test_z), multi_label=False)
    after = expected_calibration_error(test_y > 0, softmax(test_z * scale), multi_label=False)
    assert after < 0.03 < before, (before, after)
    assert (softmax(test_z * scale).argmax(1) == test_z.argmax(1)).all()


def test_platt_scaling_per_label_recovers_each_labels_map():
    rng = np.random.default_rng(2)
    z = rng.normal(0, 2, (6000, 2))
    true_a, true_b = np.array([0.5, 2.0]), np.array([1.0, -0.5])
    y = (rng.random(z.shape) < 1 / (1 + np.exp(-(z * true_a + true_b)))).astype(np.float32)
    scale, shift = fit_calibration(z, y, "multilabel")
    np.testing.assert_allclose(scale, true_a, rtol=0.1)
    np.testing.assert_allclose(shift, true_b, atol=0.1)


def test_separable_held_out_logits_do_not_drive_the_scores_to_certainty():
    z = np.array([[3.0, -3.0], [-3.0, 3.0]] * 10)  # every held-out image right, by a wide margin
    scale, _ = fit_calibration(z, np.eye(2, dtype=np.float32)[[0, 1] * 10], "multiclass")
    assert 1 < scale[0] < 2.5 < MAX_SCALE  # sharper, as the images say, but held by the prior


def test_a_multilabel_label_with_few_held_out_images_stays_near_the_identity():
    z = np.array([[2.0], [1.5], [-1.0]])
    scale, shift = fit_calibration(z, np.array([[1], [1], [0]], np.float32), "multilabel")
    assert 0.5 < scale[0] < 3 and abs(shift[0]) < 1.5  # three images: the prior holds it


# --- the pseudo-label gate ---------------------------------------------------------------
def test_multiclass_gate_keeps_confident_images_up_to_the_cap_per_label():
    identity = Gate(np.ones(3, np.float32), np.zeros(3, np.float32))
    logits = np.array([[9, 0, 0], [8, 0, 0], [7, 0, 0], [0, 9, 0], [1, 1, 1], [0, 0, 1.0]], np.float32)
    kept, targets, weights = pseudo_labels(logits, identity, "multiclass", labeled_per_label=np.array([0.5, 1, 1]))
    # label 0 may take floor(3 * 0.5) = 1 image: the most confident; the uncertain rows are left out
    assert kept.tolist() == [0, 3]
    assert targets.argmax(1).tolist() == [0, 1] and weights.tolist() == [1, 1]
    assert softmax(logits[[4, 5]]).max(axis=1).max() < PSEUDO_CONFIDENCE


def test_the_gate_reads_calibrated_scores():
    logits = np.array([[1.5, 0.0]], np.float32)  # softmax .82: below the gate as it stands
    unsure = pseudo_labels(logits, Gate(np.ones(2, np.float32), np.zeros(2, np.float32)), "multiclass", np.ones(2) * 5)
    sure = pseudo_labels(logits, Gate(np.full(2, 3, np.float32), np.zeros(2, np.float32)), "multiclass", np.ones(2) * 5)
    assert len(unsure[0]) == 0 and sure[0].tolist() == [0]


def test_multilabel_gate_marks_unsure_labels_unknown():
    identity = Gate(np.ones(2, np.float32), np.zeros(2, np.float32))
    logits = np.array([[5.0, 0.0], [-5.0, -5.0], [0.0, 0.1]], np.float32)
    kept, targets, weights = pseudo_labels(logits, identity, "multilabel", labeled_per_label=np.array([5, 5]))
    assert kept.tolist() == [0, 1]  # the third image is unsure of both labels
    assert targets.tolist() == [[1, 0], [0, 0]]
    assert weights.tolist() == [[1, 0], [1, 1]]  # the first image's second label is unknown, not absent


def clusters(rng, per_class: int, centres: np.ndarray, spread: float = 1.0):
    x = np.concatenate([c + spread * rng.normal(size=(per_class, centres.shape[1])) for c in centres])
    y = np.repeat(np.eye(len(centres), dtype=np.float32), per_class, axis=0)
    return x.astype(np.float32), y


def test_pseudo_labels_let_unlabeled_images_move_the_boundary():
    # Two Gaussian classes; the two labeled images per class sit on the far sides, so a probe on them alone
    # puts its boundary off-centre. Confident unlabeled images pull it back.
    rng = np.random.default_rng(3)
    centres = np.array([[-2.0, 0.0], [2.0, 0.0]])
    labeled = np.array([[-1.0, 3.0], [-1.2, 2.5], [1.0, -3.0], [1.1, -2.6]], np.float32)
    targets = np.eye(2, dtype=np.float32)[[0, 0, 1, 1]]
    unlabeled, _ = clusters(rng, 100, centres, 0.7)
    test_x, test_y = clusters(rng, 500, centres, 0.7)
    data = ProbeData(labeled, [], targets, "multiclass", unlabeled)
    # the label-smoothed probe's scores are timid; calibration (fitted on held-out logits) sharpens them like this
    gate = Gate(np.full(2, 3.0, np.float32), np.zeros(2, np.float32))
    rows = np.arange(4)
    accuracy = {r.name: (fit_recipe(r, data, rows, gate).logits(test_x).argmax(1) == test_y.argmax(1)).mean()
                for r in (Recipe(), Recipe(pseudo_labels=True))}
    assert accuracy["linear + pseudo-labels"] > accuracy["linear"] + 0.02, accuracy


def test_out_of_fold_logits_come_from_probes_that_never_saw_the_image():
    # Labels that are pure noise: a probe scoring its own training rows fits them, held-out rows are chance.
    rng = np.random.default_rng(4)
    x = rng.normal(size=(60, 200)).astype(np.float32)
    y = np.eye(2, dtype=np.float32)[rng.integers(0, 2, 60)]
    data = ProbeData(x, [], y, "multiclass")
    folds = np.arange(60) % 5
    held_out = (out_of_fold_logits(Recipe(), data, folds, None).argmax(1) == y.argmax(1)).mean()
    seen = (fit_probe(x, y, "multiclass").logits(x).argmax(1) == y.argmax(1)).mean()
    assert seen == 1.0 and held_out < 0.7


def test_multiclass_probes_fit_smoothed_targets_and_multilabel_ones_the_labels_as_given():
    # Separable rows: an unsmoothed probe drives its training scores to certainty, bounded only by the L2 penalty;
    # a smoothed one stops where its scores match the smoothed targets (1 - 0.1 + 0.1 / 2 = 0.95 for two labels).
    x, y = clusters(np.random.default_rng(5), 20, np.array([[-3.0, 0.0], [3.0, 0.0]]), 0.5)

    def confidence(probe):
        return softmax(probe.logits(x)).max(axis=1).mean()
    assert confidence(fit_probe(x, y, "multiclass", smoothing=0.0)) > 0.99
    assert 0.9 < confidence(fit_probe(x, y, "multiclass")) < 0.97
    smoothed, plain = fit_probe(x, y, "multilabel"), fit_probe(x, y, "multilabel", smoothing=0.0)
    assert np.array_equal(smoothed.weight, plain.weight) and np.array_equal(smoothed.bias, plain.bias)
