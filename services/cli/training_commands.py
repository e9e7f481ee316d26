"""``customlabels train`` and ``customlabels export``: a model version from the datasets, and its files.

    customlabels train --project flowers --wait            # progress bar, then F1 per label
    customlabels export --project flowers --version v1 -o ./model

Both speak only the public API (CreateProjectVersion, DescribeProjectVersions,
the object routes), so they work against any customlabels server.
"""
from __future__ import annotations

import argparse
import json
import re
import time
from datetime import datetime, timezone
from pathlib import Path

from customlabels.tags import MAX_TRAINING_SECONDS as BUDGET_TAG
from customlabels.client import ObjectClient, rekognition
from customlabels.ml.runtime.artifact import MODELS_BUCKET, artifact_prefix

from services.cli.common import Refused, endpoint_of, progress_bar
from services.cli.imports import ensure_project

_PERCENT = re.compile(r"\((\d+)% of the")


def add_commands(commands, connection, formatter) -> None:
    train = commands.add_parser(
        "train", parents=[connection(argparse.SUPPRESS)], formatter_class=formatter,
        help="train a model version from the project's datasets",
        description=(
            "Create a model version (CreateProjectVersion) from the project's TRAIN dataset,\n"
            "tested on its TEST dataset (or on 20 % of the training images when it has none).\n"
            "The task follows from the labels: one label per image (multi-class), several\n"
            "(multi-label), or bounding boxes (object localization). With --wait, show the\n"
            "progress and finish with the evaluation: F1 per label at its assumed threshold."
        ),
        epilog=(
            "Examples:\n"
            "  customlabels train --project flowers --wait\n"
            "  customlabels train --project cells --version v2 --budget 1200 --wait\n"
        ),
    )
    train.add_argument("--project", required=True, help="project name")
    train.add_argument("--version", help="version name (default: v<UTC timestamp>, printed)")
    train.add_argument("--budget", type=float, metavar="SECONDS",
                       help=f"training time budget (the tag {BUDGET_TAG}; default: the server's)")
    train.add_argument("--output-bucket", default="customlabels-output",
                       help="bucket for the evaluation files (default: customlabels-output)")
    train.add_argument("--output-prefix", default=None, help="key prefix in it (default: <project>/)")
    train.add_argument("--description", help="VersionDescription")
    train.add_argument("--wait", action="store_true", help="wait for the result, showing progress")
    train.add_argument("--timeout", type=float, default=7200, help="seconds to wait at most (default 7200)")
    train.set_defaults(handler=run_train)

    export = commands.add_parser(
        "export", parents=[connection(argparse.SUPPRESS)], formatter_class=formatter,
        help="download a trained model: model.onnx and model.json",
        description=(
            "Download a trained version's artifact: model.onnx (the exact file the server\n"
            "serves) and model.json (labels, per-label thresholds, input size and\n"
            "preprocessing, provenance). The README shows how to run it with plain\n"
            "onnxruntime."
        ),
        epilog="Example:\n  customlabels export --project flowers --version v1 -o ./flowers-model\n",
    )
    export.add_argument("--project", required=True, help="project name")
    export.add_argument("--version", required=True, help="version name")
    export.add_argument("-o", "--output", type=Path, default=Path("."), help="folder to write into (default: .)")
    export.set_defaults(handler=run_export)


def run_train(args: argparse.Namespace) -> int:
    endpoint = endpoint_of(args)
    rek = rekognition(endpoint)
    project = ensure_project(rek, args.project, create=False)
    version = args.version or "v" + datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S")
    tags = {BUDGET_TAG: f"{args.budget:g}"} if args.budget else {}
    params = {
        "ProjectArn": project["ProjectArn"], "VersionName": version, "Tags": tags,
        "OutputConfig": {"S3Bucket": args.output_bucket,
                         "S3KeyPrefix": args.output_prefix if args.output_prefix is not None else f"{args.project}/"},
    }
    if args.description:
        params["VersionDescription"] = args.description
    arn = rek.create_project_version(**params)["ProjectVersionArn"]
    # The name first: start, detect, export and `versions` take it with --version.
    print(f"version {version} of project {args.project}: {arn}")
    if not args.wait:
        return 0
    description = wait_for_training(rek, project["ProjectArn"], version, args.timeout)
    if description["Status"] != "TRAINING_COMPLETED":
        raise Refused(f"{description['Status']}: {description.get('StatusMessage', 'no reason given')}")
    with ObjectClient(endpoint) as objects:
        print_evaluation(description, objects)
    return 0


def wait_for_training(rek, project_arn: str, version: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    with progress_bar(total=100, desc="Training", unit="%", bar_format="{l_bar}{bar}| {elapsed} {postfix}") as bar:
        while True:
            found = rek.describe_project_versions(ProjectArn=project_arn, VersionNames=[version])
            description = found["ProjectVersionDescriptions"][0]
            message = description.get("StatusMessage") or description["Status"]
            match = _PERCENT.search(message)
            if match:
                bar.update(max(0, int(match[1]) - bar.n))
            bar.set_postfix_str(message.split(": ", 1)[-1][:60])
            if description["Status"] != "TRAINING_IN_PROGRESS":
                bar.update(100 - bar.n)
                return description
            if time.monotonic() > deadline:
                raise Refused(f"Timeout: still training after {timeout:.0f} s (the version keeps training)")
            time.sleep(1.0)


def print_evaluation(description: dict, objects: ObjectClient) -> None:
    evaluation = description.get("EvaluationResult") or {}
    print(f"F1 score: {evaluation.get('F1Score', float('nan')):.3f}  "
          f"(training {description.get('BillableTrainingTimeInSeconds', 0)} s)")
    summary_object = (evaluation.get("Summary") or {}).get("S3Object")
    if not summary_object:
        return
    summary = json.loads(objects.get(summary_object["Bucket"], summary_object["Name"]))
    print(f"{'label':24} {'images':>6} {'threshold':>9} {'precision':>9} {'recall':>7} {'F1':>6}")
    for result in summary["LabelEvaluationResults"]:
        m = result["Metrics"]
        print(f"{result['Label'][:24]:24} {result['NumberOfTestingImages']:>6} {m['Threshold']:>9.3f} "
              f"{m['Precision']:>9.3f} {m['Recall']:>7.3f} {m['F1Score']:>6.3f}")
    print(f"summary: s3://{summary_object['Bucket']}/{summary_object['Name']}")


def run_export(args: argparse.Namespace) -> int:
    endpoint = endpoint_of(args)
    rek = rekognition(endpoint)
    project = ensure_project(rek, args.project, create=False)
    found = rek.describe_project_versions(ProjectArn=project["ProjectArn"], VersionNames=[args.version])
    if not found["ProjectVersionDescriptions"]:
        raise Refused(f"ResourceNotFoundException: project {args.project} has no version {args.version!r}")
    description = found["ProjectVersionDescriptions"][0]
    if description["Status"] in ("TRAINING_IN_PROGRESS", "TRAINING_FAILED", "COPYING_IN_PROGRESS", "COPYING_FAILED"):
        raise Refused(f"version {args.version} is {description['Status']}: only a trained model can be exported")
    prefix = artifact_prefix(description["ProjectVersionArn"])
    args.output.mkdir(parents=True, exist_ok=True)
    with ObjectClient(endpoint) as objects:
        for name in ("model.onnx", "model.json"):
            path = args.output / name
            path.write_bytes(objects.get(MODELS_BUCKET, prefix + name))
            print(path)
    return 0

