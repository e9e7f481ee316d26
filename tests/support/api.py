"""Small helpers the API tests share: waiting, images, manifest lines.

Waiting is polling against a deadline; running out of time is an
AssertionError that names what was awaited (and the last answer), never a
silent pass or a NameError.
"""
from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from typing import TypeVar

from PIL import Image

T = TypeVar("T")

DONE = {"CREATE_COMPLETE", "UPDATE_COMPLETE", "CREATE_FAILED", "UPDATE_FAILED"}


def wait_for(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.1) -> T:
    """``predicate()``'s first truthy answer, asked every ``interval`` seconds for up to ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what} (last answer: {value!r})")
        time.sleep(interval)


def wait_dataset(client, arn: str, timeout: float = 120) -> dict:
    """DescribeDataset once the dataset has left its *_IN_PROGRESS status."""
    deadline = time.monotonic() + timeout
    while True:
        description = client.describe_dataset(DatasetArn=arn)["DatasetDescription"]
        if description["Status"] in DONE:
            return description
        if time.monotonic() > deadline:
            raise AssertionError(f"dataset {arn} still {description['Status']}: {description.get('StatusMessage')}")
        time.sleep(0.05)


def wait_gone(describe, timeout: float = 60) -> None:
    """Until ``describe()`` raises ResourceNotFoundException."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            describe()
        except Exception as e:  # botocore ClientError
            if getattr(e, "response", {}).get("Error", {}).get("Code") == "ResourceNotFoundException":
                return
            raise
        time.sleep(0.05)
    raise AssertionError("resource still there")


def jpeg(width: int = 96, height: int = 80, color=(200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, "JPEG")
    return buffer.getvalue()


def classification_line(bucket: str, key: str, label: str, attribute: str = "label") -> dict:
    return {
        "source-ref": f"s3://{bucket}/{key}",
        attribute: 1,
        f"{attribute}-metadata": {
            "class-name": label,
            "confidence": 1,
            "type": "groundtruth/image-classification",
            "human-annotated": "yes",
            "creation-date": "2026-11-26T00:00:00",
            "job-name": "tests",
        },
    }


def detection_line(bucket: str, key: str, size: tuple[int, int], boxes: list[tuple[int, float, float, float, float]],
                   class_map: dict[str, str]) -> dict:
    width, height = size
    return {
        "source-ref": f"s3://{bucket}/{key}",
        "bounding-box": {
            "image_size": [{"width": width, "height": height, "depth": 3}],
            "annotations": [{"class_id": c, "left": l, "top": t, "width": w, "height": h} for c, l, t, w, h in boxes],
        },
        "bounding-box-metadata": {
            "objects": [{"confidence": 1} for _ in boxes],
            "class-map": class_map,
            "type": "groundtruth/object-detection",
            "human-annotated": "yes",
            "creation-date": "2026-11-26T00:00:00",
            "job-name": "tests",
        },
    }


def manifest(lines: list) -> bytes:
    """JSON lines; a str item is written as is (to test malformed lines)."""
    return "\n".join(item if isinstance(item, str) else json.dumps(item) for item in lines).encode() + b"\n"


def all_entries(client, arn: str, **filters) -> list[dict]:
    entries, token = [], None
    while True:
        kwargs = {"DatasetArn": arn, **filters, **({"NextToken": token} if token else {})}
        page = client.list_dataset_entries(**kwargs)
        entries += [json.loads(line) for line in page["DatasetEntries"]]
        token = page.get("NextToken")
        if not token:
            return entries


def error_code(excinfo) -> str:
    return excinfo.value.response["Error"]["Code"]


def create_from_manifest(rekognition, objects, project, bucket, lines, dataset_type="TRAIN"):
    key = f"manifests/{project.rsplit('/', 2)[1]}-{dataset_type}.manifest"
    objects.put(bucket, key, manifest(lines) if isinstance(lines, list) else lines)
    return rekognition.create_dataset(
        ProjectArn=project,
        DatasetType=dataset_type,
        DatasetSource={"GroundTruthManifest": {"S3Object": {"Bucket": bucket, "Name": key}}},
    )["DatasetArn"]
