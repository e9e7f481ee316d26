"""The feedback service's pure parts: statistics, answers, Ground Truth lines, scoring, the verdict."""
from __future__ import annotations

import json

import pytest

from customlabels import errors
from customlabels.manifests import ImageCheck, parse_line, validate_line
from customlabels.ml.evaluation import Box
from services.feedback.answers import check_answer, consolidate, reported
from services.feedback.comparison import verdict
from services.feedback.ground_truth import ground_truth_line
from services.feedback.records import output_location, split_s3_path
from services.feedback.scoring import Case, Scores, cases_from_lines, score
from services.feedback.statistics import mcnemar, wilson

# --- statistics (reference figures: feedback-loop.md section 8) ----------------------------


def test_mcnemar_matches_the_reference_figures():
    large = mcnemar(15, 30)
    assert large.method == "chi-square" and large.statistic == pytest.approx(4.356, abs=1e-3)
    assert large.p_value == pytest.approx(0.037, abs=5e-4)
    small = mcnemar(2, 9)
    assert small.method == "exact" and small.p_value == pytest.approx(0.065, abs=5e-4)
    assert mcnemar(9, 2).p_value == small.p_value  # two-sided
    assert mcnemar(0, 0).p_value == 1.0


def test_the_exact_test_is_used_below_25_discordant_pairs():
    assert mcnemar(13, 12).method == "chi-square" and mcnemar(12, 12).method == "exact"
    assert mcnemar(5, 5).p_value == 1.0


def test_wilson_matches_the_reference_figures():
    assert wilson(470, 500) == (pytest.approx(0.916, abs=5e-4), pytest.approx(0.958, abs=5e-4))
    assert wilson(48, 50) == (pytest.approx(0.865, abs=5e-4), pytest.approx(0.989, abs=5e-4))
    assert wilson(0, 0) == (0.0, 1.0)
    low, high = wilson(10, 10)
    assert high == pytest.approx(1.0) and 0.70 < low < 0.73
    with pytest.raises(ValueError):
        wilson(3, 2)


# --- answers -------------------------------------------------------------------------
LABELS = {"cat", "dog", "bird"}


def test_a_correct_classification_answer_names_one_known_label():
    assert check_answer({"Verdict": "CORRECT", "Labels": [{"Name": "dog"}]}, task="multiclass", labels=LABELS) == \
        {"kind": "CORRECT", "labels": ["dog"], "boxes": []}
    assert check_answer({"Verdict": "CORRECT", "Labels": [{"Name": "dog"}, {"Name": "cat"}]}, task="multilabel", labels=LABELS)["labels"] == ["cat", "dog"]
    assert check_answer({"Verdict": "NEGATIVE"}, task="multiclass", labels=LABELS) == {"kind": "NEGATIVE", "labels": [], "boxes": []}


BAD_ANSWERS = [
    ({"Verdict": "MAYBE"}, "multiclass", "Verdict must be one of"),
    ({"Verdict": "ACCEPT", "Labels": [{"Name": "dog"}]}, "multiclass", "CORRECT only"),
    ({"Verdict": "CORRECT"}, "multiclass", "needs Labels"),
    ({"Verdict": "CORRECT", "Labels": [{"Name": "horse"}]}, "multiclass", "horse are not in the project"),
    ({"Verdict": "CORRECT", "Labels": [{"Name": "dog"}, {"Name": "cat"}]}, "multiclass", "exactly one"),
    ({"Verdict": "CORRECT", "Labels": [{"Name": "dog"}, {"Name": "dog"}]}, "multilabel", "twice"),
    ({"Verdict": "CORRECT", "Labels": [{"Name": "dog", "BoundingBox": {"Left": 0, "Top": 0, "Width": .5, "Height": .5}}]}, "multiclass",
     "without BoundingBox"),
    ({"Verdict": "CORRECT", "Labels": [{"Name": "dog"}]}, "detection", "needs its BoundingBox"),
    ({"Verdict": "CORRECT", "Labels": [{"Name": "dog", "BoundingBox": {"Left": 0.6, "Top": 0, "Width": 0.5, "Height": 0.5}}]},
     "detection", "lies outside the image"),
    ({"Verdict": "CORRECT", "Labels": [{"Name": "dog", "BoundingBox": {"Left": 0.1, "Top": 0, "Width": 0, "Height": 0.5}}]},
     "detection", "above 0"),
]


@pytest.mark.parametrize(("answer", "task", "words"), BAD_ANSWERS, ids=[b[2] for b in BAD_ANSWERS])
def test_a_bad_answer_is_a_validation_error(answer, task, words):
    with pytest.raises(errors.InvalidParameter) as bad:
        check_answer(answer, task=task, labels=LABELS)
    assert words in str(bad.value)


def test_boxes_are_kept_as_ratios_with_their_label():
    answer = check_answer({"Verdict": "CORRECT", "Labels": [
        {"Name": "dog", "BoundingBox": {"Left": 0.5, "Top": 0.25, "Width": 0.5, "Height": 0.75}}]}, task="detection", labels=LABELS)
    assert answer == {"kind": "CORRECT", "labels": ["dog"], "boxes": [{"Label": "dog", "Left": 0.5, "Top": 0.25, "Width": 0.5, "Height": 0.75}]}


PREDICTED = [{"Name": "cat", "Confidence": 80.0}, {"Name": "dog", "Confidence": 60.0}, {"Name": "bird", "Confidence": 10.0}]
THRESHOLDS = {"cat": 50.0, "dog": 55.0, "bird": 50.0}


def test_accept_means_what_the_model_reported():
    assert reported(PREDICTED, THRESHOLDS, "multiclass")["labels"] == ["cat"]
    assert reported(PREDICTED, THRESHOLDS, "multilabel")["labels"] == ["cat", "dog"]
    assert reported(PREDICTED, {"cat": 90.0, "dog": 90.0, "bird": 90.0}, "multiclass")["labels"] == []


def answer(worker, kind, labels=()):
    return {"worker_id": worker, "kind": kind, "labels": list(labels), "boxes": [], "submitted_ms": 0}


def test_the_majority_wins_and_the_disagreement_shows():
    result = consolidate([answer("a", "CORRECT", ["dog"]), answer("b", "ACCEPT"), answer("c", "CORRECT", ["dog"])],
                         predictions=PREDICTED, thresholds=THRESHOLDS, task="multiclass")
    assert (result["kind"], result["labels"], result["agreement"], result["agreeing"]) == ("CORRECT", ["dog"], 0.6667, 2)
    accepted = consolidate([answer("a", "ACCEPT"), answer("b", "ACCEPT"), answer("c", "NEGATIVE")],
                           predictions=PREDICTED, thresholds=THRESHOLDS, task="multiclass")
    assert (accepted["kind"], accepted["labels"]) == ("ACCEPT", ["cat"])


def test_a_tie_goes_to_the_answer_given_first():
    first = consolidate([answer("a", "NEGATIVE"), answer("b", "CORRECT", ["dog"])], predictions=PREDICTED,
                        thresholds=THRESHOLDS, task="multiclass")
    assert (first["kind"], first["agreement"]) == ("NEGATIVE", 0.5)


# --- Ground Truth lines ----------------------------------------------------------------
REVIEWED = [{"worker_id": "w1", "submitted_ms": 1_780_000_000_123, "seconds": 3.5},
            {"worker_id": "w2", "submitted_ms": 1_780_000_001_456, "seconds": 2.0}]


def line_for(task, truth, size=(200, 100)):
    return ground_truth_line(source_ref="s3://b/img.jpg", task=task, truth=truth, image_size=size, flow_name="widgets",
                             loop_name="dcl-1", version_arn="arn:v1", answers=REVIEWED)


def stored(line, size=(200, 100)):
    """The entry the datasets service would store for ``line``."""
    return validate_line(parse_line(json.dumps(line), 1), ImageCheck(*size))


def test_a_classification_answer_is_a_ground_truth_line_with_provenance():
    line = line_for("multiclass", {"kind": "CORRECT", "labels": ["dog"], "boxes": [], "agreement": 1.0})
    metadata = line["reviewed-label-metadata"]
    assert (metadata["class-name"], metadata["type"], metadata["human-annotated"]) == ("dog", "groundtruth/image-classification", "yes")
    assert metadata["job-name"] == "a2i/widgets" and metadata["confidence"] == 1.0
    assert metadata["creation-date"] == "2026-05-28T20:26:41.456"  # the last answer's submission, UTC
    assert metadata["customlabels-review"] == {"human-loop": "dcl-1", "model-version": "arn:v1", "reviewers": ["w1", "w2"],
                                               "seconds": 5.5, "answer": "CORRECT", "agreement": 1.0}
    entry = stored(line)
    assert (entry.labels, entry.labeled, entry.has_errors) == (("dog",), True, False)


def test_a_multi_label_answer_is_one_attribute_pair_per_label():
    entry = stored(line_for("multilabel", {"kind": "CORRECT", "labels": ["cat", "dog"], "boxes": [], "agreement": 1.0}))
    assert entry.labels == ("cat", "dog") and not entry.has_errors


def test_boxes_become_pixels_of_the_image():
    truth = {"kind": "CORRECT", "labels": ["dog"], "agreement": 0.5,
             "boxes": [{"Label": "dog", "Left": 0.1, "Top": 0.2, "Width": 0.5, "Height": 0.5}]}
    line = line_for("detection", truth)
    assert line["reviewed-boxes"]["annotations"] == [{"class_id": 0, "left": 20, "top": 20, "width": 100, "height": 50}]
    assert line["reviewed-boxes"]["image_size"] == [{"width": 200, "height": 100, "depth": 3}]
    assert line["reviewed-boxes-metadata"]["class-map"] == {"0": "dog"} and line["reviewed-boxes-metadata"]["confidence"] == 0.5
    entry = stored(line)
    assert entry.bounding_boxes == {"dog": 1} and not entry.has_errors


def test_a_negative_answer_is_kept_never_dropped():
    negative = {"kind": "NEGATIVE", "labels": [], "boxes": [], "agreement": 1.0}
    detection = stored(line_for("detection", negative))
    assert detection.labeled and detection.labels == () and not detection.has_errors  # a checked image with nothing in it
    classification = stored(line_for("multiclass", negative))
    assert classification.source_ref == "s3://b/img.jpg" and not classification.labeled  # kept, to be labeled later


# --- output layout ------------------------------------------------------------------------
def test_output_json_goes_where_a2i_puts_it():
    assert split_s3_path("s3://bucket/a/b/") == ("bucket", "a/b/") and split_s3_path("s3://bucket") == ("bucket", "")
    assert output_location("s3://out/reviews", "widgets", "dcl-1", 1_780_000_001_456) == \
        ("out", "reviews/widgets/2026/05/28/20/26/41/dcl-1/output.json")


# --- scoring and the verdict -------------------------------------------------------------
class P:
    def __init__(self, label, score, box=None):
        self.label, self.score, self.box = label, score, box


def test_scoring_pairs_served_answers_with_the_truth():
    cases = [Case("s3://b/1", "b", "1", labels=frozenset({"cat"})), Case("s3://b/2", "b", "2", labels=frozenset({"dog"}))]
    scores = score("multiclass", cases, [[P("cat", 0.9), P("dog", 0.1)], [P("cat", 0.6), P("dog", 0.4)]], {"cat": 0.5, "dog": 0.5})
    assert scores.correct == [True, False]
    assert scores.counts == {"cat": [1, 1, 0], "dog": [0, 0, 1]}
    assert scores.f1("cat") == pytest.approx(2 / 3) and scores.f1("dog") == 0.0
    assert scores.overall_f1() == pytest.approx(1 / 3)


def test_a_detection_image_is_right_when_every_box_matches_and_none_is_extra():
    case = Case("s3://b/1", "b", "1", boxes=(Box("dog", 10, 10, 50, 50),), size=(100, 100))
    right = score("detection", [case], [[P("dog", 0.9, (0.1, 0.1, 0.5, 0.5))]], {"dog": 0.5})
    extra = score("detection", [case], [[P("dog", 0.9, (0.1, 0.1, 0.5, 0.5)), P("dog", 0.8, (0.7, 0.7, 0.2, 0.2))]], {"dog": 0.5})
    below = score("detection", [case], [[P("dog", 0.3, (0.1, 0.1, 0.5, 0.5))]], {"dog": 0.5})
    assert (right.correct, extra.correct, below.correct) == ([True], [False], [False])
    assert extra.counts == {"dog": [1, 1, 0]} and below.counts == {"dog": [0, 0, 1]}


def test_test_cases_come_from_usable_lines_of_the_task():
    classification = {"source-ref": "s3://b/a.jpg", "l": 0, "l-metadata": {"class-name": "cat", "type": "groundtruth/image-classification",
                                                                           "human-annotated": "yes", "creation-date": "2026-01-01"}}
    assert [c.labels for c in cases_from_lines([classification, {"source-ref": "s3://b/unlabeled.jpg"}], "multiclass")] == [frozenset({"cat"})]
    assert cases_from_lines([classification], "detection") == []


def scored(correct, counts=None, labels=("cat",)):
    scores = Scores(correct=list(correct), counts=counts or {}, truth_labels=set(labels))
    return scores


def test_the_verdict_rule():
    live, same = scored([True] * 30 + [False] * 10), scored([True] * 30 + [False] * 10)
    assert verdict(live, same, 0.05).verdict == "not worse"
    better = verdict(scored([False] * 15 + [True] * 25), scored([True] * 40), 0.05)
    assert better.verdict == "better" and better.test.c == 15 and better.test.b == 0
    worse = verdict(scored([True] * 40), scored([False] * 15 + [True] * 25), 0.05)
    assert worse.verdict == "worse" and "significantly more test images wrong" in worse.reason
    dropped = verdict(scored([True] * 2, {"cat": [10, 0, 0]}), scored([True] * 2, {"cat": [5, 0, 5]}), 0.05)
    assert dropped.verdict == "worse" and "cat -0.333" in dropped.reason
    assert verdict(scored([True] * 2, {"cat": [10, 0, 0]}), scored([True] * 2, {"cat": [5, 0, 5]}), 0.5).verdict == "not worse"


def test_what_the_model_reported_is_marked_for_reviewers():
    """ACCEPT accepts what the model reported: at or above each label's threshold (50 where none is known);
    a detector's boxes, a multi-label model's labels, a single-label model's best label only."""
    from services.feedback.records import reported_predictions, task_description

    box = {"Geometry": {"BoundingBox": {"Left": 0.1, "Top": 0.2, "Width": 0.3, "Height": 0.4}}}
    predictions = [{"Name": "a", "Confidence": 40.0, **box}, {"Name": "b", "Confidence": 90.0, **box},
                   {"Name": "a", "Confidence": 70.0, **box}]
    thresholds = {"a": 60.0}
    names = lambda task: [(p["Name"], p["Confidence"]) for p in reported_predictions(predictions, thresholds, task)]
    assert names("detection") == [("b", 90.0), ("a", 70.0)]
    assert names("multilabel") == [("b", 90.0), ("a", 70.0)]
    assert names("multiclass") == [("b", 90.0)]
    assert reported_predictions([{"Name": "a", "Confidence": 99.0}], {}, "detection") == []  # no box, nothing to accept
    doc = {"_id": "000000000000/x", "name": "x", "arn": "arn:aws:sagemaker:us-east-1:000000000000:human-loop/x",
           "flow_arn": "f", "status": "InProgress",
           "created_ms": 0, "answers": [], "task_count": 1, "task": "multiclass", "predictions": predictions,
           "thresholds": thresholds}
    assert [p["Reported"] for p in task_description(doc)["Predictions"]] == [False, True, False]
