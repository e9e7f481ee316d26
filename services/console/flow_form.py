"""The flow-definition form (pure): CreateFlowDefinition's parameters from
the form (``create_params``), and its condition builder both ways.

``document(rows, combine)`` turns the builder's rows into A2I's activation
conditions document (``customlabels.activation`` defines the language); the
API checks it, so this module only turns form text into numbers and says
which row is not a number. ``sentences(document)`` reads any valid document
back as words for the flow's page.

A row is ``{"kind", "label", "op", "value", "min"}``:

* ``confidence``: a prediction of ``label`` (or ``*``, any label) whose
  confidence is ``op`` (``lt`` less than, ``le``, ``gt`` greater than, ``ge``,
  ``eq``) ``value`` percent (CustomLabelConfidenceCheck);
* ``count``: the number of predictions of ``label`` at or above ``min``
  percent is ``op`` (``eq``, ``lt``, ``gt``) ``value`` (DetectionCount);
* ``sampling``: a ``value`` percent random sample (Sampling).

``combine`` is ``any`` (each row alone opens a review: the document's
members are alternatives) or ``all`` (every row must hold: one ``And``).
Rows whose kind is empty are ignored (the form always offers a blank one).
A conditions document typed as JSON replaces the builder's rows.

SageMaker requires a RoleArn, and a WorkteamArn with a HumanLoopConfig;
customlabels accepts and ignores both (reviewers are whoever answers
through the review API), so the form does not ask and sends placeholders
of the server's account (``ROLE``, ``WORKTEAM``).
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from customlabels import tags
from customlabels.activation import ANY_LABEL, CONFIDENCE_CHECK, DETECTION_COUNT, SAMPLING

KINDS = ("confidence", "count", "sampling")
CONFIDENCE_OPS = {"lt": "ConfidenceLessThan", "le": "ConfidenceLessThanEquals", "gt": "ConfidenceGreaterThan",
                  "ge": "ConfidenceGreaterThanEquals", "eq": "ConfidenceEquals"}
COUNT_OPS = {"eq": "CountEquals", "lt": "CountLessThan", "gt": "CountGreaterThan"}
COMBINE = ("any", "all")
MAX_ROWS = 10

_WORDS = {"ConfidenceLessThan": "under", "ConfidenceLessThanEquals": "at most", "ConfidenceGreaterThan": "over",
          "ConfidenceGreaterThanEquals": "at least", "ConfidenceEquals": "exactly",
          "CountEquals": "exactly", "CountLessThan": "fewer than", "CountGreaterThan": "more than"}


CAPS = {"cap_minute": tags.MAX_LOOPS_PER_MINUTE, "cap_hour": tags.MAX_LOOPS_PER_HOUR, "cap_day": tags.MAX_LOOPS_PER_DAY}
REVIEW_UIS = {"classification": "customlabels-classification", "detection": "customlabels-detection"}
ROLE = "arn:aws:iam::{account}:role/customlabels-console-unused"
WORKTEAM = "arn:aws:sagemaker:{region}:{account}:workteam/private-crowd/customlabels-console-unused"
DEFAULT_OUTPUT = "s3://customlabels-output/reviews"
DEFAULT_TITLE = "Is the model right?"
DEFAULT_DESCRIPTION = "Accept the model's answer, correct it, say none of the labels is there, or skip."


class BuilderProblem(ValueError):
    """The form cannot become a request; the message says which field or row."""


def create_params(form: Mapping[str, str], *, region: str, account: str) -> dict[str, Any]:
    """CreateFlowDefinition's parameters from the form's fields: ``name``,
    ``output``, the builder (``c<i>_*``, ``combine``) or ``json``, the caps
    (``cap_minute|hour|day``), and the review task (``ui``, ``task_count``,
    ``title``, ``description``, ``lifetime``)."""
    field = lambda name: str(form.get(name, "")).strip()  # noqa: E731
    params: dict[str, Any] = {"FlowDefinitionName": field("name"), "RoleArn": ROLE.format(account=account),
                              "OutputConfig": {"S3OutputPath": field("output") or DEFAULT_OUTPUT}}
    typed = field("json")
    if typed:
        text = typed
    else:
        built = document(rows_from_form(form), field("combine") or "any")
        text = json.dumps(built) if built else None
    if text:
        params["HumanLoopActivationConfig"] = {"HumanLoopActivationConditionsConfig": {"HumanLoopActivationConditions": text}}
    caps = [{"Key": tag, "Value": field(name)} for name, tag in CAPS.items() if field(name)]
    if caps:
        params["Tags"] = caps
    ui, count = field("ui"), field("task_count") or "1"
    if not count.isdigit():
        raise BuilderProblem(f"Answers per image must be a whole number, not {count!r}.")
    if ui and ui not in REVIEW_UIS:
        raise BuilderProblem(f"The review screen must be one of {', '.join(REVIEW_UIS)}, or the model's task.")
    if not ui and (count != "1" or field("title") or field("description") or field("lifetime")):
        raise BuilderProblem("A title, instructions, a waiting time or more than one answer per image need a review "
                             "screen: choose classification or detection.")
    if ui:
        config: dict[str, Any] = {
            "WorkteamArn": WORKTEAM.format(region=region, account=account),
            "HumanTaskUiArn": f"arn:aws:sagemaker:{region}:{account}:human-task-ui/{REVIEW_UIS[ui]}",
            "TaskTitle": field("title") or DEFAULT_TITLE, "TaskDescription": field("description") or DEFAULT_DESCRIPTION,
            "TaskCount": int(count)}
        lifetime = field("lifetime")
        if lifetime:
            if not lifetime.isdigit():
                raise BuilderProblem(f"The time a task waits for answers is a whole number of seconds, not {lifetime!r}.")
            config["TaskAvailabilityLifetimeInSeconds"] = int(lifetime)
        params["HumanLoopConfig"] = config
    return params


def rows_from_form(form: Mapping[str, str]) -> list[dict[str, str]]:
    """The builder's rows from the form's ``c<i>_<field>`` fields, in order."""
    rows = []
    for index in range(MAX_ROWS):
        row = {name: str(form.get(f"c{index}_{name}", "")).strip() for name in ("kind", "label", "op", "value", "min")}
        if any(row.values()):
            rows.append(row)
    return rows


def document(rows: Sequence[Mapping[str, str]], combine: str) -> dict[str, Any] | None:
    """The conditions document of the rows; None when there is no row (every prediction is reviewed)."""
    if combine not in COMBINE:
        raise BuilderProblem("Choose whether any condition or all of them must hold.")
    conditions = [_condition(row, number) for number, row in enumerate(rows, 1) if row.get("kind")]
    if not conditions:
        return None
    if combine == "all" and len(conditions) > 1:
        return {"Conditions": [{"And": conditions}]}
    return {"Conditions": conditions}


def _condition(row: Mapping[str, str], number: int) -> dict[str, Any]:
    kind = row["kind"]
    if kind == "sampling":
        return {"ConditionType": SAMPLING,
                "ConditionParameters": {"RandomSamplingPercentage": _number(row.get("value"), number, "the percentage")}}
    label = row.get("label") or ANY_LABEL
    if kind == "confidence":
        op = CONFIDENCE_OPS.get(row.get("op", ""))
        if op is None:
            raise BuilderProblem(f"Condition {number}: choose how the confidence compares.")
        return {"ConditionType": CONFIDENCE_CHECK,
                "ConditionParameters": {"LabelName": label, op: _number(row.get("value"), number, "the confidence")}}
    if kind == "count":
        op = COUNT_OPS.get(row.get("op", ""))
        if op is None:
            raise BuilderProblem(f"Condition {number}: choose how the count compares.")
        count = _number(row.get("value"), number, "the count")
        if count != int(count):
            raise BuilderProblem(f"Condition {number}: the count is a whole number, not {row.get('value')}.")
        parameters: dict[str, Any] = {"LabelName": label, op: int(count)}
        if row.get("min"):
            parameters["MinConfidence"] = _number(row["min"], number, "the minimum confidence")
        return {"ConditionType": DETECTION_COUNT, "ConditionParameters": parameters}
    raise BuilderProblem(f"Condition {number}: the kind must be one of {', '.join(KINDS)}, not {kind!r}.")


def _number(text: str | None, number: int, what: str) -> int | float:
    try:
        value = float(text or "")
    except ValueError:
        raise BuilderProblem(f"Condition {number}: {what} must be a number, not {text!r}.") from None
    if not math.isfinite(value):
        raise BuilderProblem(f"Condition {number}: {what} must be a number, not {text!r}.")
    return int(value) if value == int(value) else value


def conditions_text(config: Mapping[str, Any] | None) -> str | None:
    """The JSON text inside a HumanLoopActivationConfig, or None."""
    return ((config or {}).get("HumanLoopActivationConditionsConfig") or {}).get("HumanLoopActivationConditions")


def sentences(text: str | None) -> list[str]:
    """A flow's conditions in words, one line per alternative; a line for "every prediction" when there are none."""
    if not text:
        return ["every prediction of a bound model (no activation conditions)"]
    try:
        members = json.loads(text)["Conditions"]
    except (ValueError, KeyError, TypeError):
        return [text]
    return [_words(member) for member in members]


def _words(node: Mapping[str, Any]) -> str:
    for key, joiner in (("And", "all of"), ("Or", "any of")):
        if key in node:
            return f"{joiner}: " + "; ".join(f"({_words(child)})" for child in node[key])
    kind, parameters = node.get("ConditionType"), node.get("ConditionParameters") or {}
    label = parameters.get("LabelName")
    who = "any label" if label == ANY_LABEL else f"label {label}"
    if kind == SAMPLING:
        return f"a random {parameters.get('RandomSamplingPercentage')} % of the images"
    if kind == CONFIDENCE_CHECK:
        bounds = " and ".join(f"{_WORDS[name]} {value} %" for name, value in parameters.items() if name in _WORDS)
        return f"{who} predicted with a confidence {bounds}"
    if kind == DETECTION_COUNT:
        counted = next((f"{_WORDS[name]} {value}" for name, value in parameters.items() if name in _WORDS), "?")
        return f"{counted} prediction(s) of {who} at {parameters.get('MinConfidence', 0)} % or more"
    return json.dumps(node)
