"""customlabels.ml.evaluation: metrics, summary file, evaluation manifest snapshot, manifest summary.

Expected numbers are worked out by hand in the comments; scikit-learn and
small brute-force implementations cross-check the rest.
"""
from __future__ import annotations

import copy
import json
import random
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest
from sklearn import metrics as sklearn_metrics  # a dependency of the package: a missing one is an error, not a skip

from customlabels.manifests import ImageCheck, RejectedLine, parse_line, problem, validate_line
from customlabels.manifests import codes as C
from customlabels.ml.evaluation import (
    EVALUATION_ATTRIBUTE,
    IGNORED,
    INVALID,
    IOU_THRESHOLD,
    NO_PREDICTION_THRESHOLD,
    VALID,
    Box,
    LineResult,
    average_precision,
    code_counts,
    evaluate_classification,
    evaluate_detection,
    evaluation_manifest_lines,
    iou,
    line_result,
    manifest_summary,
    match_image,
    pr_curve,
    rejected_line_result,
    summary_file,
    summary_file_name,
)
from customlabels.ml.evaluation.metrics import RECALL_POINTS


WHEN = datetime(2019, 11, 21, 7, 30, 23, 910943, tzinfo=UTC)
ARN = "arn:aws:rekognition:us-east-1:123456789012:project/p/version/v1/1574317227432"
DETAILS = "rekognition-custom-labels-evaluation-details"
FLAGS = ("is-true-positive", "is-true-negative", "is-false-positive", "is-false-negative")


def only(ev, label):
    return ev.metrics[label]


# ==========================================================================
# Classification: thresholds and per-label metrics
# ==========================================================================

def test_threshold_is_the_best_f1_score():
    # Label a, scores .9 .4 .3 on images labelled a, b, a (2 positives):
    #   t=.9: TP1 FP0 FN1  F1 = 2/3
    #   t=.4: TP1 FP1 FN1  F1 = 1/2
    #   t=.3: TP2 FP1 FN0  P = 2/3, R = 1, F1 = 0.8   <- best
    ev = evaluate_classification(["a", "b"], [{"a"}, {"b"}, {"a"}], [[.9, .1], [.4, .6], [.3, .7]])
    a = only(ev, "a")
    assert (a.threshold, a.true_positives, a.false_positives, a.false_negatives) == (0.3, 2, 1, 0)
    assert a.precision == pytest.approx(2 / 3) and a.recall == 1.0 and a.f1 == pytest.approx(0.8)
    assert a.testing_images == 2
    # Label b, scores .1 .6 .7 on a, b, a (1 positive):
    #   t=.7: TP0 FP1 -> F1 0;  t=.6: TP1 FP1 FN0 -> P .5 R 1 F1 2/3 (best);  t=.1: TP1 FP2 -> F1 .5
    b = only(ev, "b")
    assert (b.threshold, b.precision, b.recall) == (0.6, 0.5, 1.0)
    assert b.f1 == pytest.approx(2 / 3) and b.testing_images == 1


def test_equal_f1_prefers_the_higher_threshold():
    # Positives at .9 and .6, negatives at .8 and .7:
    #   t=.9: TP1 FP0 FN1 -> P 1,  R .5, F1 2/3
    #   t=.6: TP2 FP2 FN0 -> P .5, R 1,  F1 2/3   (same F1: the higher threshold wins)
    ev = evaluate_classification(["x", "y"], [{"x"}, {"y"}, {"y"}, {"x"}], [[.9, 0], [.8, 1], [.7, 1], [.6, 0]])
    x = only(ev, "x")
    assert x.threshold == 0.9 and (x.precision, x.recall) == (1.0, 0.5) and x.f1 == pytest.approx(2 / 3)


def test_equal_scores_are_kept_or_dropped_together():
    # One positive and one negative, both at .5: the only threshold keeps both.
    ev = evaluate_classification(["x", "y"], [{"x"}, {"y"}], [[.5, .5], [.5, .5]])
    x = only(ev, "x")
    assert (x.threshold, x.true_positives, x.false_positives) == (0.5, 1, 1)
    assert x.f1 == pytest.approx(2 / 3)


def test_label_without_test_images_is_reported_but_not_aggregated():
    # z has no test image: F1 is 0 at every threshold, so the highest score (.4) is kept;
    # the aggregates average x and y only.
    ev = evaluate_classification(["x", "y", "z"], [{"x"}, {"y"}], [[.9, .1, .4], [.1, .9, .2]])
    z = only(ev, "z")
    assert (z.threshold, z.precision, z.recall, z.f1, z.testing_images) == (0.4, 0.0, 0.0, 0.0, 0)
    assert not z.evaluated
    assert (ev.aggregate.precision, ev.aggregate.recall, ev.aggregate.f1) == (1.0, 1.0, 1.0)


def test_reproduces_the_reference_example_summary_exactly():
    # The reference's example summary (im-summary-file-api.md): CAP 390 test images, WATCH 234.
    # Its numbers decode to CAP: TP 381 FP 7 FN 9; WATCH: TP 227 FP 9 FN 7. Scores built so that
    # the best-F1 threshold of each label (.99) lands on exactly those counts:
    #   CAP   .99 on 381 CAP + 7 WATCH images, .5 on the other 227 WATCH, .1 on the other 9 CAP
    #   WATCH .99 on 227 WATCH + 9 CAP images, .5 on the other 381 CAP, .1 on the other 7 WATCH
    truth, scores = [], []
    truth += [{"CAP"}] * 390
    scores += [[.99, .99]] * 9 + [[.99, .5]] * 372 + [[.1, .5]] * 9
    truth += [{"WATCH"}] * 234
    scores += [[.99, .99]] * 7 + [[.5, .99]] * 220 + [[.5, .1]] * 7
    ev = evaluate_classification(["CAP", "WATCH"], truth, np.array(scores))
    cap, watch = only(ev, "CAP"), only(ev, "WATCH")
    assert (cap.true_positives, cap.false_positives, cap.false_negatives) == (381, 7, 9)
    assert (watch.true_positives, watch.false_positives, watch.false_negatives) == (227, 9, 7)
    # Every number below is copied from the reference's file; equality is exact.
    assert (cap.precision, cap.recall, cap.f1) == (0.9819587628865979, 0.9769230769230769, 0.9794344473007711)
    assert (watch.precision, watch.recall, watch.f1) == (0.961864406779661, 0.9700854700854701, 0.9659574468085106)
    assert ev.aggregate.precision == 0.9719115848331294
    assert ev.aggregate.recall == 0.9735042735042735
    assert ev.aggregate.f1 == 0.9726959470546408 == ev.f1_score
    summary = summary_file(ev, project_version_arn=ARN, evaluation_end=WHEN, number_of_training_images=5216)
    assert summary["EvaluationDetails"]["NumberOfTestingImages"] == 624
    assert [(r["Label"], r["NumberOfTestingImages"]) for r in summary["LabelEvaluationResults"]] == [
        ("CAP", 390), ("WATCH", 234)]


def test_multi_label_is_inferred_and_has_no_confusion_matrix():
    ev = evaluate_classification(["a", "b"], [{"a", "b"}, {"a"}, set()], [[.8, .7], [.9, .2], [.1, .3]])
    assert ev.multi_label and ev.confusion_matrix is None
    # b: positives only image 0 (.7); t=.7 keeps it alone: P 1 R 1.
    b = only(ev, "b")
    assert (b.threshold, b.precision, b.recall, b.f1) == (0.7, 1.0, 1.0, 1.0)
    assert evaluate_classification(["a", "b"], [{"a"}, {"b"}], [[1, 0], [0, 1]], multi_label=True).multi_label


def test_confusion_matrix_by_hand():
    # Ground truth a a a b; argmax predictions a b a b.
    # a: 2 of 3 predicted a, 1 of 3 predicted b; b: 1 of 1 predicted b.
    ev = evaluate_classification(["b", "a"], [{"a"}, {"a"}, {"a"}, {"b"}],
                                 [[.1, .9], [.8, .2], [.3, .7], [.6, .4]])
    assert ev.confusion_matrix == [
        {"GroundTruthLabel": "a", "PredictedLabel": "a", "Value": 2 / 3},
        {"GroundTruthLabel": "a", "PredictedLabel": "b", "Value": 1 / 3},
        {"GroundTruthLabel": "b", "PredictedLabel": "a", "Value": 0.0},
        {"GroundTruthLabel": "b", "PredictedLabel": "b", "Value": 1.0},
    ]


def test_confusion_matrix_argmax_ties_go_to_the_first_label():
    ev = evaluate_classification(["x", "y"], [{"y"}, {"x"}], [[.5, .5], [.5, .5]])
    cells = {(c["GroundTruthLabel"], c["PredictedLabel"]): c["Value"] for c in ev.confusion_matrix}
    assert cells == {("x", "x"): 1.0, ("x", "y"): 0.0, ("y", "x"): 1.0, ("y", "y"): 0.0}


def test_classification_rejects_bad_input():
    with pytest.raises(ValueError, match="not one of the model's labels"):
        evaluate_classification(["a", "b"], [{"c"}], [[.5, .5]])
    with pytest.raises(ValueError, match="shape"):
        evaluate_classification(["a", "b"], [{"a"}], [[.5, .5, .5]])
    with pytest.raises(ValueError, match="0 to 1"):
        evaluate_classification(["a", "b"], [{"a"}], [[float("nan"), .5]])
    with pytest.raises(ValueError, match="0 to 1"):
        evaluate_classification(["a", "b"], [{"a"}], [[1.5, .5]])
    with pytest.raises(ValueError, match="distinct"):
        evaluate_classification(["a", "a"], [{"a"}], [[.5, .5]])
    with pytest.raises(TypeError, match="image 0: true labels must be a collection of labels, not the string 'a'"):
        evaluate_classification(["a", "b"], ["a"], [[.5, .5]])


# --- scikit-learn cross-checks -----------------------------------------------------

def _random_classification(seed: int, images: int, labels: int, multi_label: bool):
    rng = np.random.default_rng(seed)
    names = [f"l{i}" for i in range(labels)]
    if multi_label:
        truth = rng.random((images, labels)) < 0.35
    else:
        truth = np.eye(labels, dtype=bool)[rng.integers(0, labels, images)]
    # Scores correlated with the truth, rounded so that ties happen.
    scores = np.clip(np.round(truth * 0.35 + rng.random((images, labels)) * 0.65, 2), 0, 1)
    true_labels = [{names[j] for j in np.flatnonzero(row)} for row in truth]
    return names, truth, scores, true_labels


@pytest.mark.parametrize("seed,multi_label", [(1, False), (2, False), (3, True), (4, True)])
def test_per_label_metrics_match_sklearn(seed, multi_label):
    names, truth, scores, true_labels = _random_classification(seed, 120, 5, multi_label)
    ev = evaluate_classification(names, true_labels, scores)
    predicted = ev.predicted()
    p, r, f, support = sklearn_metrics.precision_recall_fscore_support(truth, predicted, average=None, zero_division=0)
    for j, name in enumerate(names):
        m = only(ev, name)
        assert (m.precision, m.recall, m.f1) == pytest.approx((p[j], r[j], f[j]), abs=1e-12)
        assert m.testing_images == support[j]
    present = truth.any(axis=0)
    macro = sklearn_metrics.precision_recall_fscore_support(
        truth[:, present], predicted[:, present], average=None, zero_division=0)
    assert ev.aggregate.precision == pytest.approx(macro[0].mean(), abs=1e-12)
    assert ev.aggregate.recall == pytest.approx(macro[1].mean(), abs=1e-12)
    assert ev.aggregate.f1 == pytest.approx(macro[2].mean(), abs=1e-12)


def _f1_by_counting(truth, predicted) -> float:
    tp = int((truth & predicted).sum())
    return 2 * tp / (truth.sum() + predicted.sum()) if tp else 0.0


@pytest.mark.parametrize("seed", [5, 6, 7])
def test_threshold_is_the_highest_of_the_best_by_brute_force(seed):
    names, truth, scores, true_labels = _random_classification(seed, 80, 4, True)
    ev = evaluate_classification(names, true_labels, scores)
    for j, name in enumerate(names):
        f1_at = {t: _f1_by_counting(truth[:, j], scores[:, j] >= t) for t in np.unique(scores[:, j])}
        best = max(f1_at.values())
        assert only(ev, name).threshold == max(t for t, f in f1_at.items() if f == pytest.approx(best, abs=1e-12))
        assert only(ev, name).f1 == pytest.approx(best, abs=1e-12)


@pytest.mark.parametrize("seed", [8, 9])
def test_confusion_matrix_matches_sklearn(seed):
    names, truth, scores, true_labels = _random_classification(seed, 150, 4, False)
    ev = evaluate_classification(names, true_labels, scores)
    expected = sklearn_metrics.confusion_matrix(truth.argmax(1), scores.argmax(1), labels=range(4), normalize="true")
    got = {(c["GroundTruthLabel"], c["PredictedLabel"]): c["Value"] for c in ev.confusion_matrix}
    for g in range(4):
        for p in range(4):
            assert got[names[g], names[p]] == pytest.approx(expected[g, p], abs=1e-12)


def test_pr_curve_matches_sklearn():
    _, truth, scores, _ = _random_classification(10, 200, 1, True)
    curve = pr_curve(scores[:, 0], truth[:, 0], int(truth[:, 0].sum()))
    precision, recall, thresholds = sklearn_metrics.precision_recall_curve(truth[:, 0], scores[:, 0])
    # sklearn: ascending thresholds, plus a final (P=1, R=0) point.
    assert np.allclose(curve.thresholds, thresholds[::-1])
    assert np.allclose(curve.precision, precision[:-1][::-1])
    assert np.allclose(curve.recall, recall[:-1][::-1])


# ==========================================================================
# Detection: IoU and matching
# ==========================================================================

def box(label, left, top, width, height, score=None):
    return Box(label, left, top, width, height, score)


def test_iou_by_hand():
    a = box("c", 0, 0, 10, 10)
    assert iou(a, a) == 1.0
    assert iou(a, box("c", 5, 0, 10, 10)) == pytest.approx(50 / 150)   # half-overlap sideways
    assert iou(a, box("c", 1, 1, 10, 10)) == pytest.approx(81 / 119)
    assert iou(a, box("c", 0, 0, 5, 10)) == 0.5                           # contained half
    assert iou(a, box("c", 10, 0, 10, 10)) == 0.0                         # touching edges
    assert iou(a, box("c", 50, 50, 5, 5)) == 0.0                          # apart
    assert iou(a, box("d", 0, 0, 10, 10)) == 1.0                          # IoU ignores labels; matching doesn't


def test_iou_of_zero_area_boxes_is_zero():
    flat = box("c", 2, 2, 0, 5)
    assert iou(flat, flat) == 0.0
    assert iou(flat, box("c", 0, 0, 10, 10)) == 0.0
    assert iou(box("c", 0, 0, 0, 0), box("c", 0, 0, 0, 0)) == 0.0
    assert iou(box("c", 0, 0, -5, 10), box("c", -5, 0, 5, 10)) == 0.0   # a negative side has no area


def test_matching_at_exactly_the_iou_threshold():
    assert IOU_THRESHOLD == 0.5
    truth = [box("c", 0, 0, 10, 10)]
    assert match_image(truth, [box("c", 0, 0, 5, 10, .9)]) == (0,)         # IoU 0.5: a match
    assert match_image(truth, [box("c", 0, 0, 4.9, 10, .9)]) == (None,)    # IoU 0.49


def test_matching_is_greedy_by_score():
    # Truth A (0,0,10,10), B (6,0,10,10).
    # p1 (.9) at x=2: IoU A = 80/120 = .67, IoU B = 60/140 = .43 -> takes A.
    # p2 (.8) at x=0: IoU A = 1 but A is taken; IoU B = 40/160 = .25 -> no match.
    truth = [box("c", 0, 0, 10, 10), box("c", 6, 0, 10, 10)]
    predictions = [box("c", 0, 0, 10, 10, .8), box("c", 2, 0, 10, 10, .9)]
    assert match_image(truth, predictions) == (None, 0)


def test_matching_takes_the_best_iou_among_free_boxes():
    # p (.9) overlaps A with IoU .43 and B with IoU .67: B.
    truth = [box("c", 0, 0, 10, 10), box("c", 6, 0, 10, 10)]
    assert match_image(truth, [box("c", 4, 0, 10, 10, .9)]) == (1,)


def test_one_prediction_per_ground_truth_box_and_labels_must_agree():
    truth = [box("c", 0, 0, 10, 10)]
    # The duplicate is a false positive; equal scores keep input order.
    assert match_image(truth, [box("c", 0, 0, 10, 10, .7), box("c", 0, 0, 10, 10, .7)]) == (0, None)
    assert match_image(truth, [box("d", 0, 0, 10, 10, .9)]) == (None,)


def _greedy_by_hand(truth, predictions, threshold=IOU_THRESHOLD):
    """The matching rule written the slow, obvious way."""
    matches, taken = [None] * len(predictions), set()
    for i in sorted(range(len(predictions)), key=lambda k: -predictions[k].score):
        best, best_iou = None, -1.0
        for j, t in enumerate(truth):
            if j in taken or t.label != predictions[i].label:
                continue
            overlap = iou(predictions[i], t)
            if overlap >= threshold and overlap > best_iou:
                best, best_iou = j, overlap
        if best is not None:
            matches[i] = best
            taken.add(best)
    return tuple(matches)


def _random_boxes(rng: random.Random, count: int, labels, scored: bool):
    return [box(rng.choice(labels), rng.randint(0, 40), rng.randint(0, 40), rng.randint(0, 30), rng.randint(0, 30),
                round(rng.random(), 1) if scored else None) for _ in range(count)]


def test_matching_agrees_with_the_obvious_implementation():
    rng = random.Random(11)
    for _ in range(300):
        truth = _random_boxes(rng, rng.randint(0, 6), "ab", False)
        predictions = _random_boxes(rng, rng.randint(0, 8), "ab", True)
        assert match_image(truth, predictions) == _greedy_by_hand(truth, predictions)


# ==========================================================================
# Detection: metrics
# ==========================================================================

def test_detection_metrics_by_hand():
    # One label, two images, 2 ground-truth boxes.
    # Image 0: truth T1; predictions .9 on T1 (TP), .8 elsewhere (FP).
    # Image 1: truth T2; prediction .7 on T2 (TP).
    # Curve: t=.9 P 1 R .5 | t=.8 P .5 R .5 | t=.7 P 2/3 R 1
    # F1: 2/3, 1/2, 0.8 -> threshold .7, P 2/3, R 1, F1 .8.
    # AP: envelope 1, 2/3, 2/3; recall points 0..0.5 (51 of them) read 1, the 50 above read 2/3.
    ev = evaluate_detection(
        ["c"],
        [[box("c", 0, 0, 10, 10)], [box("c", 20, 20, 10, 10)]],
        [[box("c", 0, 0, 10, 10, .9), box("c", 50, 50, 10, 10, .8)], [box("c", 21, 21, 10, 10, .7)]],
    )
    c = only(ev, "c")
    assert (c.threshold, c.true_positives, c.false_positives, c.false_negatives) == (0.7, 2, 1, 0)
    assert c.precision == pytest.approx(2 / 3) and c.recall == 1.0 and c.f1 == pytest.approx(0.8)
    assert c.average_precision == pytest.approx((51 * 1 + 50 * 2 / 3) / 101)
    assert c.average_recall == 1.0
    assert (c.testing_images, c.ground_truths) == (2, 2)
    assert ev.aggregate.average_precision == c.average_precision and ev.f1_score == c.f1


def test_metrics_count_boxes_not_images():
    # One image with 3 boxes of c; 2 found at .8, one missed; a 4th prediction at .3 is wrong.
    # t=.8: TP2 FP0 FN1 -> P 1 R 2/3 F1 .8;  t=.3: TP2 FP1 -> F1 2/3.
    truth = [[box("c", 0, 0, 10, 10), box("c", 20, 0, 10, 10), box("c", 40, 0, 10, 10)]]
    predictions = [[box("c", 0, 0, 10, 10, .8), box("c", 20, 0, 10, 10, .8), box("c", 70, 70, 5, 5, .3)]]
    c = only(evaluate_detection(["c"], truth, predictions), "c")
    assert (c.threshold, c.precision, c.recall, c.testing_images, c.ground_truths) == (0.8, 1.0, 2 / 3, 1, 3)
    assert c.average_recall == pytest.approx(2 / 3)
    # AP: one point (P 1, R 2/3): recall points up to 0.66 read 1 (67 of 101), the rest 0.
    assert c.average_precision == pytest.approx(67 / 101)


def test_detection_edge_cases():
    labels = ["seen", "never_predicted", "absent"]
    truth = [
        [box("seen", 0, 0, 10, 10), box("never_predicted", 30, 30, 10, 10)],
        [],                                    # an image without boxes: its predictions are all wrong
        [box("seen", 0, 0, 0, 10)],            # a zero-area box can't be matched: a false negative
        [box("seen", 5, 5, 10, 10)],           # no prediction at all: a false negative
    ]
    predictions = [
        [box("seen", 0, 0, 10, 10, .9)],
        [box("seen", 0, 0, 10, 10, .4), box("absent", 0, 0, 10, 10, .6), box("absent", 5, 5, 5, 5, .2)],
        [box("seen", 0, 0, 0, 10, .95)],
        [],
    ]
    ev = evaluate_detection(labels, truth, predictions)

    # seen: 3 boxes; predictions .95 (FP: zero area), .9 (TP), .4 (FP).
    #   t=.95: TP0 -> F1 0;  t=.9: TP1 FP1 FN2 -> P .5 R 1/3 F1 .4;  t=.4: TP1 FP2 FN2 -> F1 2/6
    seen = only(ev, "seen")
    assert (seen.threshold, seen.true_positives, seen.false_positives, seen.false_negatives) == (0.9, 1, 1, 2)
    assert seen.f1 == pytest.approx(0.4) and seen.testing_images == 3
    # AP: curve (P 0, R 0), (P .5, R 1/3), (P 1/3, R 1/3); envelope .5 up to recall 1/3 (34 points).
    assert seen.average_precision == pytest.approx(34 * 0.5 / 101)
    assert seen.average_recall == pytest.approx(1 / 3)

    # never_predicted: a box to find, no prediction: everything 0, threshold 1.0, still aggregated.
    never = only(ev, "never_predicted")
    assert (never.threshold, never.precision, never.recall, never.f1) == (NO_PREDICTION_THRESHOLD, 0, 0, 0)
    assert (never.average_precision, never.average_recall, never.false_negatives) == (0.0, 0.0, 1)

    # absent: predicted but never in the ground truth: all wrong, the top score is kept, not aggregated.
    absent = only(ev, "absent")
    assert (absent.threshold, absent.precision, absent.f1, absent.testing_images) == (0.6, 0.0, 0.0, 0)
    assert absent.average_precision is None and absent.average_recall is None and not absent.evaluated

    agg = ev.aggregate
    assert agg.f1 == pytest.approx((0.4 + 0) / 2) and agg.precision == pytest.approx(0.25)
    assert agg.recall == pytest.approx((1 / 3) / 2)
    assert agg.average_precision == pytest.approx(34 * 0.5 / 101 / 2)
    assert agg.average_recall == pytest.approx(1 / 6)
    assert ev.number_of_testing_images == 4


def test_detection_with_nothing_to_find():
    ev = evaluate_detection(["c"], [[]], [[]])
    assert (ev.aggregate.f1, ev.aggregate.average_precision, ev.aggregate.average_recall) == (0.0, 0.0, 0.0)


def test_detection_rejects_bad_input():
    with pytest.raises(ValueError, match="not one of the model's labels"):
        evaluate_detection(["c"], [[box("d", 0, 0, 1, 1)]], [[]])
    with pytest.raises(ValueError, match="score"):
        evaluate_detection(["c"], [[]], [[box("c", 0, 0, 1, 1)]])
    with pytest.raises(ValueError, match="score"):
        evaluate_detection(["c"], [[]], [[box("c", 0, 0, 1, 1, 1.2)]])
    with pytest.raises(ValueError, match="images"):
        evaluate_detection(["c"], [[], []], [[]])


def _ap_by_hand(scores, correct, positives):
    """COCO's accumulate() written out with loops, ties grouped."""
    pairs = sorted(zip(scores, correct, strict=True), key=lambda p: -p[0])
    points, tp, fp = [], 0, 0
    for k, (score, right) in enumerate(pairs):
        tp, fp = tp + right, fp + (not right)
        if k + 1 == len(pairs) or pairs[k + 1][0] != score:
            points.append((tp / positives, tp / (tp + fp)))
    total = 0.0
    for r in RECALL_POINTS:
        total += max([p for rec, p in points if rec >= r], default=0.0)
    return total / len(RECALL_POINTS)


def test_average_precision_agrees_with_the_obvious_implementation():
    rng = random.Random(12)
    for _ in range(200):
        n = rng.randint(0, 15)
        scores = [round(rng.random(), 1) for _ in range(n)]
        correct = [rng.random() < 0.5 for _ in range(n)]
        positives = sum(correct) + rng.randint(0, 3) or 1
        curve = pr_curve(np.array(scores), np.array(correct, dtype=bool), positives)
        assert average_precision(curve) == pytest.approx(_ap_by_hand(scores, correct, positives), abs=1e-12)


# ==========================================================================
# Summary file
# ==========================================================================

def _summary(ev):
    return summary_file(ev, project_version_arn=ARN, evaluation_end=WHEN, number_of_training_images=10)


def test_summary_file_shape_for_multi_class():
    ev = evaluate_classification(["b", "a"], [{"a"}, {"b"}, {"a"}], [[.9, .1], [.4, .6], [.3, .7]])
    summary = _summary(ev)
    assert list(summary) == ["Version", "EvaluationDetails", "AggregatedEvaluationResults", "LabelEvaluationResults"]
    assert summary["Version"] == 1
    assert summary["EvaluationDetails"] == {
        "ProjectVersionArn": ARN,
        "EvaluationEndTimestamp": "2019-11-21T07:30:23.910943",
        "Labels": ["a", "b"],
        "NumberOfTrainingImages": 10,
        "NumberOfTestingImages": 3,
    }
    aggregated = summary["AggregatedEvaluationResults"]
    assert set(aggregated) == {"Precision", "Recall", "F1Score", "ExpectedCalibrationError", "ConfusionMatrix"}
    assert aggregated["F1Score"] == ev.f1_score
    assert all(set(cell) == {"GroundTruthLabel", "PredictedLabel", "Value"} for cell in aggregated["ConfusionMatrix"])
    for result in summary["LabelEvaluationResults"]:
        assert list(result) == ["Label", "NumberOfTestingImages", "Metrics"]
        assert list(result["Metrics"]) == ["Threshold", "Precision", "Recall", "F1Score"]
    # Labels by F1, best first. a scores .1 .6 .7 on a, b, a: best at .1 (TP2 FP1, F1 .8);
    # b scores .9 .4 .3 on a, b, a: best at .4 (TP1 FP1, F1 2/3).
    assert [(r["Label"], r["Metrics"]["Threshold"], r["Metrics"]["F1Score"])
            for r in summary["LabelEvaluationResults"]] == [("a", 0.1, pytest.approx(0.8)),
                                                           ("b", 0.4, pytest.approx(2 / 3))]
    assert json.loads(json.dumps(summary)) == summary  # plain JSON types only


def test_summary_file_shape_for_multi_label_and_detection():
    ml = evaluate_classification(["a", "b"], [{"a", "b"}, {"a"}], [[.8, .7], [.9, .2]])
    assert set(_summary(ml)["AggregatedEvaluationResults"]) == {"Precision", "Recall", "F1Score",
                                                                 "ExpectedCalibrationError"}
    det = evaluate_detection(["c"], [[box("c", 0, 0, 10, 10)]], [[box("c", 0, 0, 10, 10, .9)]])
    summary = _summary(det)
    assert set(summary["AggregatedEvaluationResults"]) == {
        "Precision", "Recall", "F1Score", "AveragePrecision", "AverageRecall"}
    assert summary["LabelEvaluationResults"] == [{
        "Label": "c", "NumberOfTestingImages": 1,
        "Metrics": {"Threshold": 0.9, "Precision": 1.0, "Recall": 1.0, "F1Score": 1.0}}]
    json.dumps(summary)


def test_summary_sorting_ties_by_name_and_timestamps():
    ev = evaluate_classification(["z", "y"], [{"z"}, {"y"}], [[.9, .1], [.1, .9]])
    assert [r["Label"] for r in _summary(ev)["LabelEvaluationResults"]] == ["y", "z"]
    summary = summary_file(ev, project_version_arn=ARN, number_of_training_images=1,
                           evaluation_end=datetime(2021, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2))))
    assert summary["EvaluationDetails"]["EvaluationEndTimestamp"] == "2021-01-02T01:04:05.000000"
    assert summary_file_name("my-project", "v1") == "EvaluationSummary-my-project-v1.json"


# ==========================================================================
# Evaluation manifest snapshot
# ==========================================================================

def gt_class(name, class_name, job="rekognition-custom-labels-training-job"):
    return {name: 1, f"{name}-metadata": {
        "confidence": 1.0, "job-name": job, "class-name": class_name, "human-annotated": "yes",
        "creation-date": "2019-09-06T00:07:25.488243", "type": "groundtruth/image-classification"}}


def _evaluation_attributes(line):
    return {k: v for k, v in line.items() if k.startswith(EVALUATION_ATTRIBUTE)}


def _flags(details):
    return tuple(name for name in FLAGS if details[name])


def test_classification_snapshot_lines():
    # Labels football (threshold .3, see the first test's "a") and tennis (threshold .6).
    lines = [
        {"source-ref": "s3://b/0.jpg", **gt_class("rekognition-custom-labels-training-0", "football")},
        {"source-ref": "s3://b/1.jpg", **gt_class("rekognition-custom-labels-training-0", "tennis")},
        {"source-ref": "s3://b/2.jpg", **gt_class("job-a", "football", job="labeling-job/a"),
         EVALUATION_ATTRIBUTE + "-7": 0, EVALUATION_ATTRIBUTE + "-7-metadata": {"stale": True}},
    ]
    original = copy.deepcopy(lines)
    ev = evaluate_classification(["football", "tennis"], [{"football"}, {"tennis"}, {"football"}],
                                 [[.9, .1], [.4, .6], [.3, .7]])
    out = evaluation_manifest_lines(lines, ev, creation_date=WHEN)
    assert lines == original  # the input is untouched

    # Image 0: football .9 (TP); tennis .1 is under .6 and not true: not listed.
    first = out[0]
    assert {k: v for k, v in first.items() if not k.startswith(EVALUATION_ATTRIBUTE)} == lines[0]
    assert first[EVALUATION_ATTRIBUTE + "-0"] == 0
    assert first[EVALUATION_ATTRIBUTE + "-0-metadata"] == {
        "confidence": 0.9,
        "job-name": "rekognition-custom-labels-evaluation-job",
        "class-name": "football",
        "human-annotated": "no",
        "creation-date": "2019-11-21T07:30:23.910943",
        "type": "groundtruth/image-classification",
        DETAILS: {
            "version": 1,
            "ground-truth-labelling-jobs": ["rekognition-custom-labels-training-job"],
            "is-true-positive": True,
            "is-true-negative": False,
            "is-false-positive": False,
            "is-false-negative": False,
            "is-present-in-ground-truth": True,
        },
    }
    assert set(_evaluation_attributes(first)) == {EVALUATION_ATTRIBUTE + "-0", EVALUATION_ATTRIBUTE + "-0-metadata"}

    # Image 1 (tennis): tennis .6 reported (TP), football .4 reported (>= .3) but wrong (FP); highest first.
    second = out[1]
    metas = [second[f"{EVALUATION_ATTRIBUTE}-{n}-metadata"] for n in range(2)]
    assert [(m["class-name"], m["confidence"], _flags(m[DETAILS]), m[DETAILS]["is-present-in-ground-truth"])
            for m in metas] == [("tennis", 0.6, ("is-true-positive",), True),
                                ("football", 0.4, ("is-false-positive",), False)]
    assert second[EVALUATION_ATTRIBUTE + "-1"] == 0  # class id of football

    # Image 2 (football): tennis .7 reported (FP), football .3 reported (TP); the stale attribute is gone,
    # and the labelling job is the line's own.
    third = out[2]
    assert EVALUATION_ATTRIBUTE + "-7" not in third
    metas = [third[f"{EVALUATION_ATTRIBUTE}-{n}-metadata"] for n in range(2)]
    assert [(m["class-name"], _flags(m[DETAILS])) for m in metas] == [
        ("tennis", ("is-false-positive",)), ("football", ("is-true-positive",))]
    assert metas[0][DETAILS]["ground-truth-labelling-jobs"] == ["labeling-job/a"]
    json.dumps(out)


def test_classification_snapshot_lists_false_negatives():
    # x: positives .9 and .2, negatives .5 and .4 -> t=.9 (TP1 FN1: F1 2/3) ties t=.2 (TP2 FP2: 4/6): .9 wins,
    # and image 2's x (.2) is a false negative.
    ev = evaluate_classification(["x", "y"], [{"x"}, {"y"}, {"x"}, {"y"}], [[.9, .1], [.5, .9], [.2, .1], [.4, .8]])
    assert only(ev, "x").threshold == 0.9
    out = evaluation_manifest_lines([{"source-ref": f"s3://b/{i}"} for i in range(4)], ev, creation_date=WHEN)
    meta = out[2][EVALUATION_ATTRIBUTE + "-0-metadata"]
    assert (meta["class-name"], meta["confidence"], _flags(meta[DETAILS])) == ("x", 0.2, ("is-false-negative",))
    assert meta[DETAILS]["is-present-in-ground-truth"] is True
    assert meta[DETAILS]["ground-truth-labelling-jobs"] == []  # the line has no ground-truth attribute


@pytest.mark.parametrize("seed", [13, 14])
def test_classification_snapshot_flags_add_up_to_the_summary(seed):
    names, _, scores, true_labels = _random_classification(seed, 60, 4, seed % 2 == 0)
    ev = evaluate_classification(names, true_labels, scores)
    out = evaluation_manifest_lines([{"source-ref": f"s3://b/{i}"} for i in range(60)], ev, creation_date=WHEN)
    _assert_flags_add_up(ev, [m for line in out for k, m in line.items() if k.endswith("-metadata")])


def _assert_flags_add_up(ev, metas_or_objects, class_of=lambda m: m["class-name"]):
    counted = {label: {"is-true-positive": 0, "is-false-positive": 0, "is-false-negative": 0} for label in ev.labels}
    for item in metas_or_objects:
        details = item[DETAILS]
        assert not details["is-true-negative"]
        assert sum(details[f] for f in FLAGS) == 1
        for flag in counted[class_of(item)]:
            counted[class_of(item)][flag] += details[flag]
    for label, m in ev.metrics.items():
        assert (counted[label]["is-true-positive"], counted[label]["is-false-positive"],
                counted[label]["is-false-negative"]) == (m.true_positives, m.false_positives, m.false_negatives)


def gt_boxes(name, boxes, class_map, size=(1024, 768)):
    return {
        name: {"annotations": [{"class_id": cid, "left": l, "top": t, "width": w, "height": h}
                               for l, t, w, h, cid in boxes],
               "image_size": [{"width": size[0], "height": size[1], "depth": 3}]},
        f"{name}-metadata": {"job-name": "rekognition-custom-labels-training-job", "class-map": class_map,
                             "human-annotated": "yes", "objects": [{"confidence": 1.0}] * len(boxes),
                             "creation-date": "2019-10-21T22:02:18.432644", "type": "groundtruth/object-detection"},
    }


def test_detection_snapshot_lines():
    # Labels cap and hat. Image 0: cap boxes A (found at .95) and B (matched only by a .2 box, under
    # cap's threshold: FN) and C (nothing near it: FN at its own coordinates); hat .5 is wrong (FP).
    # Image 1: the .95 cap box again; two wrong cap boxes at .3 and a wrong hat box at .1 are under
    # their label's threshold and match nothing: true negatives, not listed.
    # cap (4 boxes): t=.95 TP2 FN2 -> F1 4/6; t=.3 TP2 FP2 FN2 -> 4/8; t=.2 TP3 FP2 FN1 -> 6/9 = 4/6: .95 wins.
    A, B, C = (712, 409, 39, 63), (100, 100, 50, 50), (300, 300, 40, 40)
    lines = [
        {"source-ref": "s3://b/0.jpg", **gt_boxes("rekognition-custom-labels-training-0",
                                                  [(*A, 0), (*B, 0), (*C, 0)], {"0": "cap"})},
        {"source-ref": "s3://b/1.jpg", **gt_boxes("rekognition-custom-labels-training-0", [(*A, 0)], {"0": "cap"})},
    ]
    ev = evaluate_detection(
        ["hat", "cap"],
        [[box("cap", *A), box("cap", *B), box("cap", *C)], [box("cap", *A)]],
        [[box("cap", *A, .95), box("cap", 101, 101, 50, 50, .2), box("hat", 500, 500, 20, 20, .5)],
         [box("cap", *A, .95), box("cap", 600, 600, 20, 20, .3), box("cap", 650, 650, 20, 20, .3),
          box("hat", 0, 0, 20, 20, .1)]],
    )
    assert only(ev, "cap").threshold == 0.95 and only(ev, "hat").threshold == 0.5
    original = copy.deepcopy(lines)
    out = evaluation_manifest_lines(lines, ev, creation_date=WHEN)
    assert lines == original

    first = out[0]
    assert set(_evaluation_attributes(first)) == {EVALUATION_ATTRIBUTE, EVALUATION_ATTRIBUTE + "-metadata"}
    attribute, meta = first[EVALUATION_ATTRIBUTE], first[EVALUATION_ATTRIBUTE + "-metadata"]
    assert attribute["image_size"] == [{"width": 1024, "height": 768, "depth": 3}]
    assert [(a["class_id"], a["left"], a["top"], a["width"], a["height"]) for a in attribute["annotations"]] == [
        (1, *A), (0, 500, 500, 20, 20), (1, 101, 101, 50, 50), (1, *C)]
    assert set(meta) == {"confidence", "job-name", "class-map", "human-annotated", "objects", "creation-date", "type"}
    assert (meta["confidence"], meta["job-name"], meta["human-annotated"], meta["type"]) == (
        0.95, "rekognition-custom-labels-evaluation-job", "no", "groundtruth/object-detection")
    assert meta["class-map"] == {"0": "hat", "1": "cap"}
    assert [(o["confidence"], _flags(o[DETAILS]), o[DETAILS]["is-present-in-ground-truth"]) for o in meta["objects"]] == [
        (0.95, ("is-true-positive",), True),
        (0.5, ("is-false-positive",), False),
        (0.2, ("is-false-negative",), True),
        (0.0, ("is-false-negative",), True),
    ]
    assert all(set(o) == {"confidence", DETAILS} for o in meta["objects"])
    assert meta["objects"][0][DETAILS] == {
        "version": 1, "ground-truth-labelling-jobs": ["rekognition-custom-labels-training-job"],
        "is-true-positive": True, "is-true-negative": False, "is-false-positive": False,
        "is-false-negative": False, "is-present-in-ground-truth": True}

    second = out[1][EVALUATION_ATTRIBUTE + "-metadata"]
    assert [o["confidence"] for o in second["objects"]] == [0.95] and second["class-map"] == {"1": "cap"}

    objects = [(o, a) for line in out for o, a in zip(line[EVALUATION_ATTRIBUTE + "-metadata"]["objects"],
                                                       line[EVALUATION_ATTRIBUTE]["annotations"], strict=True)]
    _assert_flags_add_up(ev, [{**o, "label": ev.labels[a["class_id"]]} for o, a in objects],
                         class_of=lambda item: item["label"])
    json.dumps(out)


def test_detection_snapshot_image_sizes():
    ev = evaluate_detection(["c"], [[]], [[box("c", np.float32(0.5), 0, 5, 5, np.float32(.9))]])
    lines = [{"source-ref": "s3://b/0.jpg"}]
    with pytest.raises(ValueError, match="image size"):
        evaluation_manifest_lines(lines, ev, creation_date=WHEN)
    out = evaluation_manifest_lines(lines, ev, creation_date=WHEN, image_sizes=[(640, 480)])
    assert out[0][EVALUATION_ATTRIBUTE]["image_size"] == [{"width": 640, "height": 480, "depth": 3}]
    out = evaluation_manifest_lines(lines, ev, creation_date=WHEN, image_sizes=[np.array([640, 480, 1])])
    assert out[0][EVALUATION_ATTRIBUTE]["image_size"][0]["depth"] == 1
    json.dumps(out)  # numpy numbers became plain ones
    with pytest.raises(ValueError, match="lines"):
        evaluation_manifest_lines(lines * 2, ev, creation_date=WHEN)


def test_detection_snapshot_of_an_image_with_nothing():
    ev = evaluate_detection(["c"], [[box("c", 0, 0, 10, 10)], []], [[box("c", 0, 0, 10, 10, .9)], []])
    out = evaluation_manifest_lines([{"source-ref": "s3://b/0"}, {"source-ref": "s3://b/1"}], ev,
                                    creation_date=WHEN, image_sizes=[(64, 64), (64, 64)])
    assert out[1][EVALUATION_ATTRIBUTE]["annotations"] == []
    assert out[1][EVALUATION_ATTRIBUTE + "-metadata"]["objects"] == []
    assert out[1][EVALUATION_ATTRIBUTE + "-metadata"]["confidence"] == 0.0


# ==========================================================================
# manifest_summary.json
# ==========================================================================

def _entry(line: dict, image: ImageCheck | None = None):
    return validate_line(parse_line(json.dumps(line), 1), image)


def test_line_results_from_stored_entries():
    good = {"source-ref": "s3://b/a.jpg", **gt_class("cls", "cat")}
    bad_image = _entry(good, ImageCheck(error_code=C.ERROR_INVALID_IMAGE))
    unlabeled = _entry({"source-ref": "s3://b/c.jpg"})
    one_bad_box = _entry({"source-ref": "s3://b/d.jpg", **gt_boxes("bb", [(0, 0, 10, 10, 0), (0, 0, 10, 10, 9)],
                                                                    {"0": "cap"})})
    results = [line_result(n, e.line, e.labels, e.task) for n, e in
               enumerate([_entry(good), bad_image, unlabeled, one_bad_box], start=1)]
    assert [r.status for r in results] == [VALID, INVALID, IGNORED, VALID]
    assert results[1].codes == (C.ERROR_INVALID_IMAGE,)
    assert results[3].codes == (C.ERROR_MISSING_CLASS_MAP_ID,) and results[3].has_errors
    assert [r.task for r in results] == ["classification", None, None, "detection"]
    rejected = rejected_line_result(RejectedLine(7, C.ERROR_INVALID_JSON_LINE, "bad"))
    assert (rejected.line_number, rejected.status, rejected.codes) == (7, INVALID, (C.ERROR_INVALID_JSON_LINE,))
    assert code_counts(results + [rejected]) == {C.ERROR_INVALID_IMAGE: 1, C.ERROR_INVALID_JSON_LINE: 1,
                                                 C.ERROR_MISSING_CLASS_MAP_ID: 1}


def test_manifest_summary_shape_and_counts():
    training = [LineResult(1, VALID, (), "classification"), LineResult(2, INVALID, (C.ERROR_INVALID_IMAGE,)),
                LineResult(3, IGNORED, (C.WARNING_NO_ANNOTATIONS,)), LineResult(4, VALID, (), "classification"),
                LineResult(5, VALID, (C.ERROR_MISSING_CLASS_MAP_ID,), "classification")]
    testing = [LineResult(1, VALID, (), "classification"), LineResult(2, VALID, (), "classification")]
    summary = manifest_summary(training, testing)
    assert summary == {
        "statistics": {
            "training": {
                "use_case": "IMAGE_LEVEL_LABELS",
                "total_json_lines": 5,
                "valid_json_lines": 3,
                "invalid_json_lines": 1,
                "ignored_json_lines": 1,
                "error_json_line_indices": [2, 5],   # warnings alone don't list a line
                "errors": [],
            },
            "testing": {
                "use_case": "IMAGE_LEVEL_LABELS",
                "total_json_lines": 2, "valid_json_lines": 2, "invalid_json_lines": 0, "ignored_json_lines": 0,
                "error_json_line_indices": [], "errors": [],
            },
        },
        "errors": [],
    }
    json.dumps(summary)


def test_manifest_summary_too_many_invalid_rows_and_use_case():
    # 2 of 5 invalid (40 % > 20 %): the split's content error, and the use case is not determined.
    training = [LineResult(n, INVALID if n <= 2 else VALID, (C.ERROR_INVALID_IMAGE,) if n <= 2 else (), "detection")
                for n in range(1, 6)]
    testing = [LineResult(1, VALID, (), "detection")]
    summary = manifest_summary(training, testing)
    stats = summary["statistics"]
    assert [e["code"] for e in stats["training"]["errors"]] == [C.ERROR_TOO_MANY_INVALID_ROWS_IN_MANIFEST]
    assert stats["training"]["errors"][0]["message"].startswith("The manifest file contains too many invalid rows.")
    assert stats["training"]["use_case"] == stats["testing"]["use_case"] == "NOT_DETERMINED"
    # Exactly 20 % is allowed; detection on both sides is OBJECT_LOCALIZATION.
    training = [LineResult(n, INVALID if n == 1 else VALID, (), "detection") for n in range(1, 6)]
    summary = manifest_summary(training, testing)
    assert summary["statistics"]["training"]["errors"] == []
    assert summary["statistics"]["testing"]["use_case"] == "OBJECT_LOCALIZATION"
    # Mixed tasks: not determined, unless the caller says; caller errors pass through, not duplicated.
    mixed = manifest_summary([LineResult(1, VALID, (), "classification")], testing)
    assert mixed["statistics"]["training"]["use_case"] == "NOT_DETERMINED"
    overlap = problem(C.ERROR_INSUFFICIENT_LABEL_OVERLAP, percent=50)
    imposed = manifest_summary([LineResult(1, INVALID)], testing, use_case="IMAGE_LEVEL_LABELS", errors=[overlap],
                               training_errors=[problem(C.ERROR_TOO_MANY_INVALID_ROWS_IN_MANIFEST)])
    assert imposed["errors"] == [overlap]
    assert len(imposed["statistics"]["training"]["errors"]) == 1
    assert imposed["statistics"]["training"]["use_case"] == "IMAGE_LEVEL_LABELS"
