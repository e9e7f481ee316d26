"""The activation-condition language (customlabels.activation): parsing, evaluation, sampling."""
from __future__ import annotations

import hashlib
import json

import pytest

from customlabels.activation import ConditionError, parse, sampled

SHA = hashlib.sha256(b"an image").hexdigest()
FLOW = "arn:aws:sagemaker:us-east-1:000000000000:flow-definition/f"


def doc(*conditions) -> str:
    return json.dumps({"Conditions": list(conditions)})


def check(label="*", **comparisons):
    return {"ConditionType": "CustomLabelConfidenceCheck", "ConditionParameters": {"LabelName": label, **comparisons}}


def count(label="*", **parameters):
    return {"ConditionType": "DetectionCount", "ConditionParameters": {"LabelName": label, **parameters}}


def sample(percentage):
    return {"ConditionType": "Sampling", "ConditionParameters": {"RandomSamplingPercentage": percentage}}


PREDICTIONS = [{"Name": "dent", "Confidence": 41.7}, {"Name": "scratch", "Confidence": 88.0},
               {"Name": "dent", "Confidence": 65.0, "Geometry": {"BoundingBox": {"Left": 0.1, "Top": 0.1, "Width": 0.2, "Height": 0.2}}}]


def evaluate(text, predictions=PREDICTIONS):
    return parse(text).evaluate(predictions, flow_arn=FLOW, image_sha256=SHA)


def test_a_confidence_check_selects_what_it_matched():
    result = evaluate(doc(check("dent", ConfidenceLessThan=60)))
    assert result.activated and result.selected == [PREDICTIONS[0]]
    assert result.results["Conditions"][0]["EvaluationResult"] is True


def test_every_comparison_must_hold_and_star_matches_any_label():
    assert evaluate(doc(check(ConfidenceGreaterThanEquals=60, ConfidenceLessThan=70))).selected == [PREDICTIONS[2]]
    assert evaluate(doc(check("scratch", ConfidenceEquals=88.0))).activated
    assert not evaluate(doc(check("Dent", ConfidenceLessThan=100))).activated  # names are case-sensitive


def test_detection_count_flags_an_image_where_nothing_was_found():
    nothing = doc(count(MinConfidence=50, CountEquals=0))
    assert not evaluate(nothing).activated
    assert evaluate(nothing, [{"Name": "dent", "Confidence": 20.0}]).activated
    assert evaluate(doc(count("dent", CountGreaterThan=1))).activated
    assert not evaluate(doc(count("dent", MinConfidence=50, CountGreaterThan=1))).activated
    assert evaluate(doc(count("dent", MinConfidence=50, CountLessThan=2))).activated


def test_and_or_combine_and_every_node_reports_its_result():
    text = doc({"Or": [check(ConfidenceLessThan=10), {"And": [check("scratch", ConfidenceGreaterThan=80), count(CountEquals=3)]}]})
    result = evaluate(text)
    assert result.activated
    node = result.results["Conditions"][0]
    assert node["EvaluationResult"] is True
    assert [child["EvaluationResult"] for child in node["Or"]] == [False, True]
    assert [child["EvaluationResult"] for child in node["Or"][1]["And"]] == [True, True]


def test_any_true_member_activates_and_all_are_evaluated():
    result = evaluate(doc(check(ConfidenceLessThan=1), check("scratch", ConfidenceGreaterThan=50)))
    assert result.activated and [c["EvaluationResult"] for c in result.results["Conditions"]] == [False, True]


def test_sampling_follows_the_published_rule():
    """first 8 bytes of SHA-256(flow ARN || SHA-256(image) || node path) / 2^64 * 100 < percentage"""
    node = "0"
    digest = hashlib.sha256(FLOW.encode() + bytes.fromhex(SHA) + node.encode()).digest()
    share = int.from_bytes(digest[:8], "big") / 2**64 * 100
    assert sampled(share + 0.001, flow_arn=FLOW, image_sha256=bytes.fromhex(SHA), path=(0,))
    assert not sampled(share - 0.001, flow_arn=FLOW, image_sha256=bytes.fromhex(SHA), path=(0,))
    assert evaluate(doc(sample(share + 0.001))).activated == evaluate(doc(sample(share + 0.001))).activated is True


def test_sampling_takes_about_its_share_and_the_same_image_always_gets_the_same_decision():
    conditions = parse(doc(sample(10)))
    images = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(4000)]
    taken = [conditions.evaluate([], flow_arn=FLOW, image_sha256=image).activated for image in images]
    assert 0.085 < sum(taken) / len(taken) < 0.115
    assert taken == [conditions.evaluate([], flow_arn=FLOW, image_sha256=image).activated for image in images]
    other_flow = [conditions.evaluate([], flow_arn=FLOW + "2", image_sha256=image).activated for image in images]
    assert other_flow != taken  # another flow samples other images


def test_a_flow_of_samples_only_is_an_audit_flow():
    assert parse(doc(sample(2))).audit and parse(doc({"Or": [sample(1), sample(2)]})).audit
    assert not parse(doc(sample(2), check(ConfidenceLessThan=50))).audit
    assert parse(doc(sample(2))).samples and not parse(doc(check(ConfidenceLessThan=50))).samples


BAD = [
    ("{", "not valid JSON"),
    (json.dumps([]), 'one member, "Conditions"'),
    (json.dumps({"Conditions": []}), "non-empty list"),
    (json.dumps({"Conditions": [], "Other": 1}), 'one member, "Conditions"'),
    (doc({"ConditionType": "ModerationLabelConfidenceCheck", "ConditionParameters": {}}), "is not one of"),
    (doc({"ConditionType": "Sampling"}), "needs ConditionParameters"),
    (doc(check()), "at least one of"),
    (doc(check(ConfidenceLessThan=101)), "from 0 to 100"),
    (doc(check(ConfidenceLessThan="50")), "from 0 to 100"),
    (doc(check(ConfidenceLessThan=True)), "from 0 to 100"),
    (doc(check(ConfidenceLessThen=50)), "takes no parameter(s) ConfidenceLessThen"),
    (doc({"ConditionType": "CustomLabelConfidenceCheck", "ConditionParameters": {"ConfidenceLessThan": 5}}), "needs LabelName"),
    (doc(count()), "exactly one of"),
    (doc(count(CountEquals=0, CountLessThan=3)), "exactly one of"),
    (doc(count(CountEquals=-1)), "whole number"),
    (doc(count(CountEquals=1.5)), "whole number"),
    (doc(sample(0.001)), "from 0.01 to 100"),
    (doc({"And": [sample(1)]}), "at least 2"),
    (doc({"And": [sample(1), sample(2)], "Or": [sample(1), sample(2)]}), "nothing else"),
    (doc({"And": [sample(1), {"Or": [sample(1), {"And": [sample(1), sample(2)]}]}]}), "2 levels deep"),
    (doc({"ConditionType": "Sampling", "ConditionParameters": {"RandomSamplingPercentage": 1}, "Extra": 1}), "unknown member"),
    ("x" * 10241, "the limit is 10240"),
]


@pytest.mark.parametrize(("text", "words"), BAD, ids=[w for _, w in BAD])
def test_a_bad_document_says_what_is_wrong(text, words):
    with pytest.raises(ConditionError) as bad:
        parse(text)
    assert words in str(bad.value)


def test_two_levels_of_combinators_are_allowed():
    assert parse(doc({"Or": [check(ConfidenceLessThan=60), {"And": [sample(2), check("dent", ConfidenceGreaterThanEquals=95)]}]}))
