"""The feedback service's collections, and how their documents look through each API.

Collections (one concept each):

* ``flow_definitions``: one per flow definition, ``_id`` ``<account>/<name>``
  (names are unique per account; ``accounts.record_id``), with its account.
* ``human_loops``: one per human loop, ``_id`` ``<account>/<name>``, with its
  account (its flow definition's): what was captured (image, predictions,
  thresholds), the answers, the status.
* ``loop_counts``: loops opened per flow definition per minute/hour/day,
  the counters the caps are checked against (changed in the same commit as
  the loop they count).
* ``projects``: per project, the live version and the retraining state
  (reviewed TRAIN entries since then, the training in flight).
* ``comparisons`` and ``promotions``: one per challenger version.
* ``audits``: per audit flow and version, reviewed and accepted counts.

Everything here is mapping: the handlers live in the helper modules.
"""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from customlabels.ports.documents import Collection, Index

FLOWS = "flow_definitions"
LOOPS = "human_loops"
LOOP_COUNTS = "loop_counts"
PROJECTS = "projects"
COMPARISONS = "comparisons"
PROMOTIONS = "promotions"
AUDITS = "audits"

COLLECTIONS = (
    Collection(FLOWS, (Index(("account", "created_ms")),)),
    Collection(LOOPS, (
        Index(("flow_arn", "created_ms")),
        Index(("account", "project_name", "status", "priority")),
        Index(("flow_arn", "status", "priority")),
        Index(("account", "status", "created_ms")),
        Index(("status", "created_ms")),  # the tick's expiry, across accounts
    )),
    Collection(LOOP_COUNTS),
    Collection(PROJECTS),
    Collection(COMPARISONS, (Index(("project_arn", "created_ms")),)),
    Collection(PROMOTIONS, (Index(("state",)),)),
    Collection(AUDITS, (Index(("flow_arn",)),)),
)

# Loop statuses (A2I's HumanLoopStatus).
IN_PROGRESS, COMPLETED, STOPPED, FAILED = "InProgress", "Completed", "Stopped", "Failed"
# Answer kinds (the review API's).
ACCEPT, CORRECT, NEGATIVE, SKIP = "ACCEPT", "CORRECT", "NEGATIVE", "SKIP"


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def iso_ms(ms: int) -> str:
    """A2I's timestamps in output.json: UTC ISO 8601 with milliseconds and Z."""
    return from_ms(ms).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


# --- flow definitions (sagemaker) -------------------------------------------------------
def flow_summary(doc: dict[str, Any]) -> dict[str, Any]:
    """ListFlowDefinitions' item."""
    return {
        "FlowDefinitionName": doc["name"],
        "FlowDefinitionArn": doc["arn"],
        "FlowDefinitionStatus": doc["status"],
        "CreationTime": from_ms(doc["created_ms"]),
        "FailureReason": doc.get("failure_reason"),
    }


def flow_description(doc: dict[str, Any]) -> dict[str, Any]:
    """DescribeFlowDefinition's answer: the summary and the definition itself."""
    return {
        **flow_summary(doc),
        "HumanLoopRequestSource": doc.get("request_source"),
        "HumanLoopActivationConfig": doc.get("activation_config"),
        "HumanLoopConfig": doc.get("human_loop_config"),
        "OutputConfig": doc["output_config"],
        "RoleArn": doc["role_arn"],
    }


# --- human loops (sagemaker-a2i-runtime) -------------------------------------------------
def loop_summary(doc: dict[str, Any]) -> dict[str, Any]:
    """ListHumanLoops' item."""
    return {
        "HumanLoopName": doc["name"],
        "HumanLoopStatus": doc["status"],
        "CreationTime": from_ms(doc["created_ms"]),
        "FailureReason": doc.get("failure_reason"),
        "FlowDefinitionArn": doc["flow_arn"],
    }


def loop_description(doc: dict[str, Any]) -> dict[str, Any]:
    """DescribeHumanLoop's answer (the input is not shown, as A2I does)."""
    return {
        **loop_summary(doc),
        "HumanLoopArn": doc["arn"],
        "FailureCode": doc.get("failure_code"),
        "HumanLoopOutput": {"OutputS3Uri": output_uri(doc)} if doc["status"] == COMPLETED else None,
    }


def output_location(flow_output_path: str, flow_name: str, loop_name: str, created_ms: int) -> tuple[str, str]:
    """(bucket, key) of a loop's output.json, in A2I's layout:
    ``<S3OutputPath>/<flow>/<YYYY>/<MM>/<DD>/<hh>/<mm>/<ss>/<loop>/output.json`` (creation time, UTC)."""
    bucket, prefix = split_s3_path(flow_output_path)
    stamp = from_ms(created_ms).strftime("%Y/%m/%d/%H/%M/%S")
    return bucket, f"{prefix}{flow_name}/{stamp}/{loop_name}/output.json"


def output_uri(doc: dict[str, Any]) -> str:
    return f"s3://{doc['output']['bucket']}/{doc['output']['key']}"


def split_s3_path(path: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` (or ``https://bucket/a/b``) -> ("bucket", "a/b/"); the prefix ends in "/" unless empty."""
    rest = path.split("://", 1)[1]
    bucket, _, prefix = rest.partition("/")
    prefix = prefix.strip("/")
    return bucket, f"{prefix}/" if prefix else ""


# --- review tasks (the answer API, customlabels-review) -----------------------------------
TASK_TYPES = {"multiclass": "CLASSIFICATION", "classification": "CLASSIFICATION", "multilabel": "MULTILABEL",
              "detection": "DETECTION"}


def task_summary(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "HumanLoopName": doc["name"],
        "FlowDefinitionArn": doc["flow_arn"],
        "ProjectArn": doc.get("project_arn"),
        "ProjectVersionArn": doc.get("version_arn"),
        "Status": doc["status"],
        "CreationTime": from_ms(doc["created_ms"]),
        "AnswerCount": len(doc["answers"]),
        "TaskCount": doc["task_count"],
        "TopConfidence": doc.get("priority"),
        "Image": _image(doc),
    }


def task_description(doc: dict[str, Any]) -> dict[str, Any]:
    """GetReviewTask's answer: everything a reviewer's screen shows."""
    consolidated, entry = doc.get("consolidated"), doc.get("entry")
    predictions = doc.get("predictions", [])
    reported = reported_predictions(predictions, doc.get("thresholds") or {}, doc.get("task"))
    return {
        **task_summary(doc),
        "HumanLoopArn": doc["arn"],
        "TaskType": TASK_TYPES.get(doc.get("task") or ""),
        "Title": doc.get("title"),
        "Description": doc.get("description"),
        "Predictions": [_prediction(p, reported=any(p is r for r in reported)) for p in predictions],
        "SelectedPredictions": [_prediction(p) for p in doc.get("selected", [])],
        "Thresholds": [{"Name": k, "Confidence": v} for k, v in sorted((doc.get("thresholds") or {}).items())],
        "Labels": sorted(doc.get("allowed_labels") or doc.get("labels") or []),
        "Answers": [
            {"WorkerId": a["worker_id"], "Verdict": a["kind"], "Labels": answer_labels(a),
             "SubmissionTime": from_ms(a["submitted_ms"]), "TimeSpentInSeconds": a.get("seconds"),
             "Comment": a.get("comment")}
            for a in doc["answers"]
        ],
        "Skips": [s["worker_id"] for s in doc.get("skips", [])],
        "ConsolidatedAnswer": {"Verdict": consolidated["kind"], "Labels": answer_labels(consolidated),
                               "Agreement": consolidated["agreement"]} if consolidated else None,
        "Entry": {"Written": entry["written"], "Reason": entry.get("reason"), "DatasetArn": entry.get("dataset_arn"),
                  "SourceRef": entry.get("source_ref")} if entry else None,
        "OutputS3Uri": output_uri(doc) if doc["status"] == COMPLETED else None,
    }


def answer_labels(answer: dict[str, Any]) -> list[dict[str, Any]]:
    """An answer's labels as the API shows them: one per box (detection), else one per label."""
    if answer.get("boxes"):
        return [{"Name": b["Label"], "BoundingBox": {k: b[k] for k in ("Width", "Height", "Left", "Top")}}
                for b in answer["boxes"]]
    return [{"Name": label} for label in answer.get("labels", [])]


DEFAULT_THRESHOLD = 50.0  # a label the captured thresholds name none for


def reported_predictions(predictions: list[dict[str, Any]], thresholds: dict[str, float],
                         task: str | None) -> list[dict[str, Any]]:
    """What the model's answer said, best first: the predictions at or above their label's threshold;
    for a detector those with a box, for a single-label classifier only the best. ACCEPT accepts these."""
    kept = sorted((p for p in predictions if p["Confidence"] >= thresholds.get(p["Name"], DEFAULT_THRESHOLD)),
                  key=lambda p: -p["Confidence"])
    if task == "detection":
        return [p for p in kept if (p.get("Geometry") or {}).get("BoundingBox")]
    return kept if task == "multilabel" else kept[:1]


def _prediction(item: dict[str, Any], reported: bool | None = None) -> dict[str, Any]:
    """A DetectCustomLabels CustomLabels item in the review API's shape."""
    out = {"Name": item["Name"], "Confidence": item["Confidence"]}
    box = (item.get("Geometry") or {}).get("BoundingBox")
    if box:
        out["BoundingBox"] = box
    if reported is not None:
        out["Reported"] = reported
    return out


def _image(doc: dict[str, Any]) -> dict[str, Any] | None:
    image = doc.get("image")
    if not image:
        return None
    return {"S3Object": {"Bucket": image["bucket"], "Name": image["key"]}, "Width": image.get("width"),
            "Height": image.get("height")}
