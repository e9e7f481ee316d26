"""Human-loop activation conditions: A2I's condition language with Custom Labels condition types.

A flow definition's ``HumanLoopActivationConditions`` is a JSON string::

    {"Conditions": [
      {"ConditionType": "CustomLabelConfidenceCheck",
       "ConditionParameters": {"LabelName": "*", "ConfidenceLessThan": 60}},
      {"Or": [{"ConditionType": "DetectionCount",
               "ConditionParameters": {"LabelName": "*", "MinConfidence": 50, "CountEquals": 0}},
              {"ConditionType": "Sampling", "ConditionParameters": {"RandomSamplingPercentage": 1}}]}]}

Grammar (as AWS documents it): the members of ``Conditions`` are alternatives
(any true one starts a review); a member is a condition
``{"ConditionType", "ConditionParameters"}`` or a combinator ``{"And": [...]}``
/ ``{"Or": [...]}`` of at least two members; combinators nest two levels deep
at most. Every node is evaluated (reviewers see what each true one picked).

Condition types (ours; AWS defines the same shapes for moderation labels):

* ``CustomLabelConfidenceCheck``: ``LabelName`` (exact, case-sensitive, or
  ``"*"``) and at least one of ``ConfidenceEquals``, ``ConfidenceLessThan``,
  ``ConfidenceLessThanEquals``, ``ConfidenceGreaterThan``,
  ``ConfidenceGreaterThanEquals`` (0-100). True when a prediction (an image
  label or a box) of that name meets all of them; the predictions it matched
  are what reviewers are shown (``selectedAiServiceResponse``).
* ``DetectionCount``: ``LabelName`` (or ``"*"``), optional ``MinConfidence``
  (0-100, default 0) and exactly one of ``CountEquals``, ``CountLessThan``,
  ``CountGreaterThan``: the number of predictions of that name at or above
  ``MinConfidence``. ``"*"`` with ``CountEquals: 0`` flags images where
  nothing was found.
* ``Sampling``: ``RandomSamplingPercentage`` (0.01-100). Deterministic: the
  first 8 bytes of SHA-256(flow definition ARN ‖ SHA-256 of the image ‖ the
  node's path), read as an unsigned big-endian integer over 2^64, times 100,
  below the percentage. So a retried call with the same image gets the same
  decision, alone it samples that share of all images, and under ``And`` that
  share of the images meeting the other conditions (the hashes are
  independent of the predictions).

Conditions are evaluated on everything the model predicted, before
``MinConfidence``/``MaxResults`` filtering. A flow whose every condition is a
``Sampling`` is an *audit* flow: a random sample of live traffic whose answers
measure accuracy and never become training data.

``parse`` validates a document (``ConditionError`` says what is wrong, in
words the API returns); ``Conditions.evaluate`` is pure and fast (no I/O).
"""
from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

CONFIDENCE_CHECK = "CustomLabelConfidenceCheck"
DETECTION_COUNT = "DetectionCount"
SAMPLING = "Sampling"
ANY_LABEL = "*"
MAX_COMBINATOR_DEPTH = 2
MAX_DOCUMENT_CHARS = 10240  # HumanLoopActivationConditions in botocore's model

_COMPARISONS = {
    "ConfidenceEquals": lambda value, bound: value == bound,
    "ConfidenceLessThan": lambda value, bound: value < bound,
    "ConfidenceLessThanEquals": lambda value, bound: value <= bound,
    "ConfidenceGreaterThan": lambda value, bound: value > bound,
    "ConfidenceGreaterThanEquals": lambda value, bound: value >= bound,
}
_COUNTS = {
    "CountEquals": lambda count, bound: count == bound,
    "CountLessThan": lambda count, bound: count < bound,
    "CountGreaterThan": lambda count, bound: count > bound,
}
_PARAMETERS = {
    CONFIDENCE_CHECK: {"LabelName", *_COMPARISONS},
    DETECTION_COUNT: {"LabelName", "MinConfidence", *_COUNTS},
    SAMPLING: {"RandomSamplingPercentage"},
}


class ConditionError(ValueError):
    """The conditions document is not valid; the message says where and why."""


@dataclass(frozen=True)
class Evaluation:
    """What a set of conditions made of one prediction."""

    activated: bool
    results: dict[str, Any]  # the document with "EvaluationResult" on every node (humanTaskActivationConditionResults)
    selected: list[dict[str, Any]]  # predictions the true confidence checks matched (selectedAiServiceResponse)


@dataclass(frozen=True)
class Conditions:
    """A parsed, valid conditions document."""

    document: dict[str, Any]
    audit: bool = field(default=False)  # every condition is Sampling
    samples: bool = field(default=False)  # some condition is Sampling: evaluating needs the image's digest

    def evaluate(self, predictions: Sequence[Mapping[str, Any]], *, flow_arn: str, image_sha256: str) -> Evaluation:
        """``predictions``: DetectCustomLabels' ``CustomLabels`` items (Name, Confidence 0-100, Geometry),
        every one the model made; ``image_sha256``: hex digest of the image bytes (needed when ``samples``)."""
        selected: list[dict[str, Any]] = []
        context = _Context(predictions, flow_arn, bytes.fromhex(image_sha256) if image_sha256 else b"", selected)
        members = [_evaluate(node, (index,), context) for index, node in enumerate(self.document["Conditions"])]
        unique, seen = [], set()
        for prediction in selected:
            if id(prediction) not in seen:
                seen.add(id(prediction))
                unique.append(dict(prediction))
        return Evaluation(
            activated=any(result["EvaluationResult"] for result in members),
            results={"Conditions": members},
            selected=unique,
        )


def parse(text: str | Mapping[str, Any]) -> Conditions:
    """Validate a conditions document (a JSON string, or already decoded)."""
    if isinstance(text, str):
        if len(text) > MAX_DOCUMENT_CHARS:
            raise ConditionError(f"HumanLoopActivationConditions has {len(text)} characters; the limit is {MAX_DOCUMENT_CHARS}")
        try:
            document = json.loads(text)
        except ValueError as error:
            raise ConditionError(f"HumanLoopActivationConditions is not valid JSON: {error}") from None
    else:
        document = json.loads(json.dumps(text))  # a private copy
    if not isinstance(document, dict) or set(document) != {"Conditions"}:
        raise ConditionError('HumanLoopActivationConditions must be an object with one member, "Conditions"')
    members = document["Conditions"]
    if not isinstance(members, list) or not members:
        raise ConditionError('"Conditions" must be a non-empty list')
    types: set[str] = set()
    for index, node in enumerate(members):
        _check(node, f"Conditions[{index}]", 0, types)
    return Conditions(document, audit=types == {SAMPLING}, samples=SAMPLING in types)


def sampled(percentage: float, *, flow_arn: str, image_sha256: bytes, path: Sequence[int]) -> bool:
    """The deterministic sampling decision (see the module's docstring)."""
    node = ".".join(str(step) for step in path).encode()
    digest = hashlib.sha256(flow_arn.encode() + image_sha256 + node).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * 100 < percentage


# --- validation ------------------------------------------------------------------------
def _check(node: Any, where: str, depth: int, types: set[str]) -> None:
    if not isinstance(node, dict):
        raise ConditionError(f"{where} must be an object")
    combinators = [key for key in ("And", "Or") if key in node]
    if combinators:
        if len(node) != 1:
            raise ConditionError(f"{where}: an And/Or object has that one member and nothing else")
        key = combinators[0]
        if depth >= MAX_COMBINATOR_DEPTH:
            raise ConditionError(f"{where}: And/Or nest {MAX_COMBINATOR_DEPTH} levels deep at most")
        children = node[key]
        if not isinstance(children, list) or len(children) < 2:
            raise ConditionError(f"{where}.{key} must list at least 2 conditions")
        for index, child in enumerate(children):
            _check(child, f"{where}.{key}[{index}]", depth + 1, types)
        return
    unknown = set(node) - {"ConditionType", "ConditionParameters"}
    if unknown:
        raise ConditionError(f"{where}: unknown member(s) {', '.join(sorted(unknown))}")
    kind = node.get("ConditionType")
    if kind not in _PARAMETERS:
        raise ConditionError(
            f"{where}: ConditionType {kind!r} is not one of {', '.join(sorted(_PARAMETERS))} (Custom Labels' condition types)")
    parameters = node.get("ConditionParameters")
    if not isinstance(parameters, dict):
        raise ConditionError(f"{where}: {kind} needs ConditionParameters, an object")
    unknown = set(parameters) - _PARAMETERS[kind]
    if unknown:
        raise ConditionError(f"{where}: {kind} takes no parameter(s) {', '.join(sorted(unknown))}")
    types.add(kind)
    if kind == SAMPLING:
        _number(parameters, "RandomSamplingPercentage", where, 0.01, 100, required=True)
        return
    label = parameters.get("LabelName")
    if not isinstance(label, str) or not label:
        raise ConditionError(f'{where}: {kind} needs LabelName, a label\'s name or "*"')
    if kind == CONFIDENCE_CHECK:
        given = [name for name in _COMPARISONS if name in parameters]
        if not given:
            raise ConditionError(f"{where}: {kind} needs at least one of {', '.join(_COMPARISONS)}")
        for name in given:
            _number(parameters, name, where, 0, 100, required=True)
    else:
        _number(parameters, "MinConfidence", where, 0, 100, required=False)
        given = [name for name in _COUNTS if name in parameters]
        if len(given) != 1:
            raise ConditionError(f"{where}: {kind} needs exactly one of {', '.join(_COUNTS)}")
        count = parameters[given[0]]
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ConditionError(f"{where}: {given[0]} must be a whole number of 0 or more, not {count!r}")


def _number(parameters: Mapping[str, Any], name: str, where: str, low: float, high: float, *, required: bool) -> None:
    if name not in parameters:
        if required:
            raise ConditionError(f"{where}: {name} is required")
        return
    value = parameters[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not low <= value <= high:
        raise ConditionError(f"{where}: {name} must be a number from {low:g} to {high:g}, not {value!r}")


# --- evaluation ------------------------------------------------------------------------
@dataclass
class _Context:
    predictions: Sequence[Mapping[str, Any]]
    flow_arn: str
    image_sha256: bytes
    selected: list


def _evaluate(node: dict[str, Any], path: tuple[int, ...], context: _Context) -> dict[str, Any]:
    for key, combine in (("And", all), ("Or", any)):
        if key in node:
            children = [_evaluate(child, (*path, index), context) for index, child in enumerate(node[key])]
            return {key: children, "EvaluationResult": combine(child["EvaluationResult"] for child in children)}
    kind, parameters = node["ConditionType"], node["ConditionParameters"]
    if kind == SAMPLING:
        result = sampled(parameters["RandomSamplingPercentage"], flow_arn=context.flow_arn,
                         image_sha256=context.image_sha256, path=path)
    else:
        label = parameters["LabelName"]
        named = [p for p in context.predictions if label == ANY_LABEL or p["Name"] == label]
        if kind == CONFIDENCE_CHECK:
            matches = [p for p in named
                       if all(test(p["Confidence"], parameters[name]) for name, test in _COMPARISONS.items() if name in parameters)]
            context.selected.extend(matches)
            result = bool(matches)
        else:
            floor = parameters.get("MinConfidence", 0)
            count = sum(1 for p in named if p["Confidence"] >= floor)
            result = next(test(count, parameters[name]) for name, test in _COUNTS.items() if name in parameters)
    return {"ConditionType": kind, "ConditionParameters": parameters, "EvaluationResult": bool(result)}
