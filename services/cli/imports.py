"""What an ``import-*`` command does once its images are converted to manifest lines.

Order of work, chosen so that mistakes surface before anything slow happens:
convert (local, done by the caller) -> find or create the project -> upload the
images -> create the dataset from a manifest, or add the lines to the existing
dataset -> wait for the dataset to settle -> print its statistics.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass

from customlabels.client import ObjectClient
from services.cli.common import Refused, find_project, progress_bar
from customlabels.manifests.converters import Conversion, chunk_jsonl, label_counts, manifest_key, to_jsonl


@dataclass(frozen=True)
class ImportOptions:
    project: str
    dataset_type: str  # TRAIN or TEST, as the API spells it
    bucket: str
    prefix: str  # normalized: "" or ending in "/"
    create_project: bool
    workers: int
    timeout: float


def run_import(rek, objects: ObjectClient, conversion: Conversion, options: ImportOptions) -> int:
    project = ensure_project(rek, options.project, options.create_project)
    upload_entries(objects, options.bucket, conversion, options.workers)
    existing = dataset_of(project, options.dataset_type)
    if existing is None:
        arn = create_dataset(rek, objects, project["ProjectArn"], conversion, options)
        description = wait_for_dataset(rek, arn, options.timeout, "Creating dataset")
    else:
        arn = existing["DatasetArn"]
        description = update_dataset(rek, arn, conversion, options.timeout)
    print_stats(arn, description)
    return 0


# --- projects -----------------------------------------------------------------------


def ensure_project(rek, name: str, create: bool, timeout: float = 60.0) -> dict:
    project = find_project(rek, name)
    if project is None and not create:
        raise Refused(
            f"ResourceNotFoundException: no project named {name!r}; "
            "pass --create-project to create it"
        )
    if project is None:
        try:
            rek.create_project(ProjectName=name)
            print(f"Created project {name}", file=sys.stderr)
        except rek.exceptions.ResourceInUseException:
            pass  # created by someone else meanwhile: use it
    return _wait_for_project(rek, name, timeout)


def _wait_for_project(rek, name: str, timeout: float) -> dict:
    """A new project is CREATING for a moment; datasets need it CREATED."""
    deadline = time.monotonic() + timeout
    while True:
        project = find_project(rek, name)
        if project is not None and project.get("Status", "CREATED") == "CREATED":
            return project
        if time.monotonic() > deadline:
            status = project.get("Status") if project else "missing"
            raise Refused(f"Timeout: project {name} is still {status} after {timeout:.0f} s")
        time.sleep(0.5)


# --- images -------------------------------------------------------------------------


def upload_entries(objects: ObjectClient, bucket: str, conversion: Conversion, workers: int) -> None:
    items = [(entry.key, entry.image) for entry in conversion.entries]
    with progress_bar(total=len(items), desc=f"Uploading to s3://{bucket}", unit="img") as bar:
        objects.put_many(bucket, items, workers=workers, progress=lambda _answer: bar.update(1))


# --- datasets -----------------------------------------------------------------------


def dataset_of(project: dict, dataset_type: str) -> dict | None:
    return next((d for d in project.get("Datasets", []) if d.get("DatasetType") == dataset_type), None)


def create_dataset(
    rek, objects: ObjectClient, project_arn: str, conversion: Conversion, options: ImportOptions
) -> str:
    """Store the manifest next to the images and create the dataset from it."""
    key = manifest_key(options.prefix)
    objects.put(options.bucket, key, to_jsonl(conversion.lines))
    print(f"Wrote manifest s3://{options.bucket}/{key}", file=sys.stderr)
    answer = rek.create_dataset(
        ProjectArn=project_arn,
        DatasetType=options.dataset_type,
        DatasetSource={"GroundTruthManifest": {"S3Object": {"Bucket": options.bucket, "Name": key}}},
    )
    return answer["DatasetArn"]


def update_dataset(rek, arn: str, conversion: Conversion, timeout: float) -> dict:
    """Add (or replace, by source-ref) the lines, one blob under 5 MB at a time.

    The service takes one update at a time per dataset, so each chunk waits for
    the previous one to finish. Work already in progress is waited out first; an
    earlier failure is not ours to judge (the service decides whether to accept).
    """
    description = wait_for_dataset(rek, arn, timeout, "Waiting for dataset", accept_failed=True)
    chunks = list(chunk_jsonl(conversion.lines))
    for number, chunk in enumerate(chunks, start=1):
        rek.update_dataset_entries(DatasetArn=arn, Changes={"GroundTruth": chunk})
        label = "Updating dataset" + (f" ({number}/{len(chunks)})" if len(chunks) > 1 else "")
        description = wait_for_dataset(rek, arn, timeout, label)
    return description


def wait_for_dataset(rek, arn: str, timeout: float, what: str, accept_failed: bool = False) -> dict:
    """Poll DescribeDataset until *_COMPLETE (returned) or *_FAILED (raised, unless accepted)."""
    deadline, delay = time.monotonic() + timeout, 0.5
    with progress_bar(desc=what, bar_format="{desc}: {elapsed} {postfix}") as bar:
        while True:
            description = rek.describe_dataset(DatasetArn=arn)["DatasetDescription"]
            status = description.get("Status", "")
            bar.set_postfix_str(status)
            if status.endswith("_COMPLETE") or (accept_failed and status.endswith("_FAILED")):
                return description
            if status.endswith("_FAILED"):
                message = description.get("StatusMessage") or "no reason given"
                raise Refused(f"{status}: {message}")
            if time.monotonic() > deadline:
                raise Refused(f"Timeout: dataset is still {status} after {timeout:.0f} s")
            time.sleep(delay)
            delay = min(delay * 1.5, 3.0)


def print_stats(arn: str, description: dict) -> None:
    stats = description.get("DatasetStats", {})
    print(f"Dataset: {arn}")
    print(f"Status: {description.get('Status')}")
    for name in ("TotalEntries", "LabeledEntries", "TotalLabels", "ErrorEntries"):
        print(f"{name}: {stats.get(name, 0)}")
    if stats.get("ErrorEntries"):
        print(
            f"warning: {stats['ErrorEntries']} entries have errors; list them with "
            f"`aws rekognition list-dataset-entries --dataset-arn {arn} --has-errors`",
            file=sys.stderr,
        )


# --- output helpers -----------------------------------------------------------------


def describe_conversion(conversion: Conversion) -> str:
    counts = label_counts(conversion.lines)
    per_label = ", ".join(f"{name} {count}" for name, count in sorted(counts.items()))
    return f"Found {len(conversion.entries)} images, {len(counts)} labels ({per_label})"
