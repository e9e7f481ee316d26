"""The training service's documents: the version document, and how DescribeProjectVersions shows it.

``versions`` holds one document per model version: what DescribeProjectVersions
shows, plus the training job's checkpoints (``job``: which stage is done,
where its output lies, how many workers took it up). Nothing here reads or
writes the store.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from customlabels import clock
from customlabels.events import TrainingFailed
from customlabels.ports.documents import Collection, Index

VERSIONS = "versions"
COLLECTIONS = (
    Collection(VERSIONS, (Index(("project_arn", "name"), unique=True), Index(("project_arn", "created_ms")))),
)
# A version in these states can't be deleted: training is writing it, or hosting is serving it.
BUSY = ("TRAINING_IN_PROGRESS", "COPYING_IN_PROGRESS", "STARTING", "RUNNING", "STOPPING")


def new_version(arn: str, project_arn: str, name: str, created: datetime, output_config: dict,
                description: str | None, job: dict, status: str, message: str) -> dict[str, Any]:
    return {
        "_id": arn,
        "project_arn": project_arn,
        "name": name,
        "created_at": created.isoformat(),
        "created_ms": int(created.timestamp() * 1000),
        "status": status,
        "status_message": message,
        "description": description,
        "output_config": output_config,
        "job": {**job, "attempts": 0},
        "model": None,  # ModelLocation fields once trained
        "results": {},  # TrainingDataResult / TestingDataResult / ManifestSummary keys
        "evaluation": None,  # {f1_score, summary: {bucket, key}}
        "billable_seconds": None,
        "training_end": None,
        "min_inference_units": None,
        "max_inference_units": None,
    }


def fail(doc: dict, message: str) -> list[TrainingFailed]:
    """Mark the version failed (a change for ``update_version``); the event to emit with it."""
    doc["status"] = "TRAINING_FAILED" if doc["job"].get("kind") != "copy" else "COPYING_FAILED"
    doc["status_message"] = message
    doc["training_end"] = doc["training_end"] or clock.now().isoformat()
    return [TrainingFailed(project_arn=doc["project_arn"], version_arn=doc["_id"], version_name=doc["name"],
                           status_message=message)]


def _s3(location: dict | None) -> dict | None:
    return {"Bucket": location["bucket"], "Name": location["key"]} if location else None


def _manifest(location: dict | None) -> dict | None:
    return {"S3Object": _s3(location)} if location else None


def _data_result(results: dict, split: str) -> dict | None:
    found = {part: results.get(f"{split}.{part}") for part in ("input", "output", "validation")}
    if not any(found.values()):
        return None
    return {
        "Input": {"Assets": [{"GroundTruthManifest": _manifest(found["input"])}]} if found["input"] else None,
        "Output": {"Assets": [{"GroundTruthManifest": _manifest(found["output"])}]} if found["output"] else None,
        "Validation": {"Assets": [{"GroundTruthManifest": _manifest(found["validation"])}]} if found["validation"] else None,
    }


def description(doc: dict) -> dict[str, Any]:
    results = doc.get("results") or {}
    evaluation = doc.get("evaluation")
    return {
        "ProjectVersionArn": doc["_id"],
        "CreationTimestamp": clock.parse(doc["created_at"]),
        "Status": doc["status"],
        "StatusMessage": doc.get("status_message"),
        "BillableTrainingTimeInSeconds": doc.get("billable_seconds"),
        "TrainingEndTimestamp": clock.parse(doc["training_end"]) if doc.get("training_end") else None,
        "OutputConfig": doc["output_config"],
        "TrainingDataResult": _data_result(results, "training"),
        "TestingDataResult": _data_result(results, "testing"),
        "EvaluationResult": {"F1Score": evaluation["f1_score"], "Summary": {"S3Object": _s3(evaluation["summary"])}}
        if evaluation else None,
        "ManifestSummary": _manifest(results.get("manifest_summary")),
        "MinInferenceUnits": doc.get("min_inference_units"),
        "MaxInferenceUnits": doc.get("max_inference_units"),
        "SourceProjectVersionArn": doc.get("source_version_arn"),
        "VersionDescription": doc.get("description"),
        "Feature": "CUSTOM_LABELS",
    }
