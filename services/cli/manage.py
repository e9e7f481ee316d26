"""``customlabels projects|datasets|versions list|describe|delete``: see and remove what a server holds.

    customlabels projects list
    customlabels datasets list --project flowers --json
    customlabels versions describe --project flowers --version v1
    customlabels versions delete --project flowers --version v1 --wait

They speak only the public API (DescribeProjects, DescribeDataset,
DescribeProjectVersions and the three Deletes), so they work against any
customlabels server and the reference service. ``list`` and ``describe``
print a table (or ``key: value`` lines) for people, and with ``--json`` the
API's own answers, for scripts. ``delete`` asks the server (which refuses
what cannot go yet, and says why); with ``--wait`` it returns once the
resource is gone.

Wiring (``services/cli/main.py``)::

    manage.add_commands(commands, connection, _Formatter, lambda args: rekognition(endpoint_of(args)))
"""
from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from customlabels.arns import parse_arn

from services.cli.common import Refused, find_project

ClientFactory = Callable[[argparse.Namespace], Any]
DATASET_TYPES = ("train", "test")
POLL_SECONDS = 0.5


def add_commands(commands, connection, formatter, make_client: ClientFactory) -> None:
    """Add ``projects``, ``datasets`` and ``versions`` (each with list, describe, delete) to ``commands``."""
    def verbs(name: str, help_text: str, description: str, examples: str):
        parser = commands.add_parser(name, parents=[connection(argparse.SUPPRESS)], formatter_class=formatter,
                                     help=help_text, description=description, epilog="Examples:\n" + examples)
        return parser.add_subparsers(title="commands", metavar="COMMAND")

    def command(group, name: str, help_text: str, run: Callable[[argparse.Namespace, Any], int], *,
                project: bool = True, output: bool = True) -> argparse.ArgumentParser:
        parser = group.add_parser(name, parents=[connection(argparse.SUPPRESS)], formatter_class=formatter,
                                  help=help_text, description=help_text[0].upper() + help_text[1:] + ".")
        if project:
            parser.add_argument("--project", required=True, metavar="NAME", help="project name")
        if output:
            parser.add_argument("--json", action="store_true", help="print the API's answer as JSON")
        parser.set_defaults(handler=lambda args: run(args, make_client(args)))
        return parser

    def waits(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--wait", action="store_true", help="return once it is gone")
        parser.add_argument("--timeout", type=float, default=600, help="seconds to wait at most (default 600)")

    projects = verbs("projects", "list, describe or delete projects",
                     "Projects (DescribeProjects, DeleteProject). A project is deleted with its datasets;\n"
                     "the server refuses while it still has model versions (delete those first).",
                     "  customlabels projects list\n  customlabels projects describe flowers --json\n"
                     "  customlabels projects delete flowers --wait\n")
    command(projects, "list", "every project, newest first", list_projects, project=False)
    command(projects, "describe", "a project: its datasets and model versions", describe_project,
            project=False).add_argument("name", metavar="NAME", help="project name")
    delete = command(projects, "delete", "delete a project and its datasets", delete_project,
                     project=False, output=False)
    delete.add_argument("name", metavar="NAME", help="project name")
    waits(delete)

    datasets = verbs("datasets", "list, describe or delete a project's datasets",
                     "A project's TRAIN and TEST datasets (DescribeDataset, DeleteDataset).",
                     "  customlabels datasets list --project flowers\n"
                     "  customlabels datasets delete --project flowers --type test --wait\n")
    command(datasets, "list", "the project's datasets with their entry and label counts", list_datasets)
    command(datasets, "describe", "one dataset", describe_dataset).add_argument(
        "--type", required=True, choices=DATASET_TYPES, help="which dataset")
    delete = command(datasets, "delete", "delete a dataset and its entries", delete_dataset, output=False)
    delete.add_argument("--type", required=True, choices=DATASET_TYPES, help="which dataset")
    waits(delete)

    versions = verbs("versions", "list, describe or delete a project's model versions",
                     "A project's model versions (DescribeProjectVersions, DeleteProjectVersion).\n"
                     "A version is deleted with its model files; its evaluation files stay in the\n"
                     "output bucket. The server refuses while it trains or runs (stop it first).",
                     "  customlabels versions list --project flowers\n"
                     "  customlabels versions describe --project flowers --version v1\n"
                     "  customlabels versions delete --project flowers --version v1 --wait\n")
    command(versions, "list", "the project's model versions, newest first", list_versions)
    command(versions, "describe", "one model version", describe_version).add_argument(
        "--version", required=True, help="version name")
    delete = command(versions, "delete", "delete a model version", delete_version, output=False)
    delete.add_argument("--version", required=True, help="version name")
    waits(delete)


# --- projects ---------------------------------------------------------------------------
def list_projects(args: argparse.Namespace, rek) -> int:
    projects = [p for page in rek.get_paginator("describe_projects").paginate() for p in page["ProjectDescriptions"]]
    if args.json:
        return _print_json(projects)
    _print_table(("NAME", "STATUS", "CREATED", "DATASETS"), (
        (parse_arn(p["ProjectArn"]).project_name, p["Status"], _when(p.get("CreationTimestamp")),
         ", ".join(f"{d['DatasetType']} {d['Status']}" for d in p.get("Datasets", [])) or "-")
        for p in projects))
    return 0


def describe_project(args: argparse.Namespace, rek) -> int:
    project = _project(rek, args.name)
    versions = _versions(rek, project["ProjectArn"])
    if args.json:
        return _print_json({"Project": project, "ProjectVersions": versions})
    _print_fields((("name", args.name), ("arn", project["ProjectArn"]), ("status", project["Status"]),
                   ("created", _when(project.get("CreationTimestamp")))))
    print()
    if project.get("Datasets"):
        _print_dataset_table(rek, project)
    else:
        print("no datasets yet")
    print()
    if versions:
        _print_version_table(versions)
    else:
        print("no model versions yet")
    return 0


def delete_project(args: argparse.Namespace, rek) -> int:
    arn = _project(rek, args.name)["ProjectArn"]
    rek.delete_project(ProjectArn=arn)
    if args.wait:
        _wait_until_gone(lambda: find_project(rek, args.name) is None, f"project {args.name}", args.timeout)
    print(f"deleted project {args.name}" if args.wait else f"deleting project {args.name}")
    return 0


# --- datasets ---------------------------------------------------------------------------
def list_datasets(args: argparse.Namespace, rek) -> int:
    project = _project(rek, args.project)
    if args.json:
        return _print_json([_describe_dataset(rek, d["DatasetArn"]) for d in project.get("Datasets", [])])
    _print_dataset_table(rek, project)
    return 0


def describe_dataset(args: argparse.Namespace, rek) -> int:
    arn = _dataset_arn(rek, args.project, args.type)
    dataset = _describe_dataset(rek, arn)
    if args.json:
        return _print_json(dataset)
    stats = dataset.get("DatasetStats") or {}
    _print_fields((("arn", arn), ("status", dataset["Status"]),
                   ("message", dataset.get("StatusMessage", "")), ("created", _when(dataset.get("CreationTimestamp"))),
                   ("updated", _when(dataset.get("LastUpdatedTimestamp"))),
                   ("entries", stats.get("TotalEntries", 0)), ("labeled", stats.get("LabeledEntries", 0)),
                   ("labels", stats.get("TotalLabels", 0)), ("with errors", stats.get("ErrorEntries", 0))))
    return 0


def delete_dataset(args: argparse.Namespace, rek) -> int:
    arn = _dataset_arn(rek, args.project, args.type)
    rek.delete_dataset(DatasetArn=arn)
    if args.wait:
        def gone() -> bool:
            project = find_project(rek, args.project)
            return project is None or all(d["DatasetArn"] != arn for d in project.get("Datasets", []))
        _wait_until_gone(gone, f"the {args.type} dataset of {args.project}", args.timeout)
    print(f"{'deleted' if args.wait else 'deleting'} the {args.type} dataset of project {args.project}")
    return 0


# --- versions ---------------------------------------------------------------------------
def list_versions(args: argparse.Namespace, rek) -> int:
    versions = _versions(rek, _project(rek, args.project)["ProjectArn"])
    if args.json:
        return _print_json(versions)
    _print_version_table(versions)
    return 0


def describe_version(args: argparse.Namespace, rek) -> int:
    version = _version(rek, args.project, args.version)
    if args.json:
        return _print_json(version)
    evaluation = version.get("EvaluationResult") or {}
    summary = (evaluation.get("Summary") or {}).get("S3Object") or {}
    output = version.get("OutputConfig") or {}
    _print_fields((
        ("name", args.version), ("arn", version["ProjectVersionArn"]), ("status", version["Status"]),
        ("message", version.get("StatusMessage", "")), ("created", _when(version.get("CreationTimestamp"))),
        ("trained in", f"{version['BillableTrainingTimeInSeconds']} s" if "BillableTrainingTimeInSeconds" in version else "-"),
        ("F1", _f1(version)),
        ("summary", f"s3://{summary['Bucket']}/{summary['Name']}" if summary else "-"),
        ("output", f"s3://{output['S3Bucket']}/{output.get('S3KeyPrefix', '')}" if output else "-"),
        ("inference units", _units(version)),
    ))
    return 0


def delete_version(args: argparse.Namespace, rek) -> int:
    version = _version(rek, args.project, args.version)
    rek.delete_project_version(ProjectVersionArn=version["ProjectVersionArn"])
    if args.wait:
        project_arn = _project(rek, args.project)["ProjectArn"]
        _wait_until_gone(lambda: not rek.describe_project_versions(
            ProjectArn=project_arn, VersionNames=[args.version])["ProjectVersionDescriptions"],
            f"version {args.version}", args.timeout)
    print(f"{'deleted' if args.wait else 'deleting'} version {args.version} of project {args.project}")
    return 0


# --- lookups ----------------------------------------------------------------------------
def _project(rek, name: str) -> dict:
    project = find_project(rek, name)
    if project is None:
        raise Refused(f"ResourceNotFoundException: no project named {name!r}")
    return project


def _dataset_arn(rek, project_name: str, dataset_type: str) -> str:
    for dataset in _project(rek, project_name).get("Datasets", []):
        if dataset["DatasetType"] == dataset_type.upper():
            return dataset["DatasetArn"]
    raise Refused(f"ResourceNotFoundException: project {project_name} has no {dataset_type.upper()} dataset")


def _describe_dataset(rek, arn: str) -> dict:
    return rek.describe_dataset(DatasetArn=arn)["DatasetDescription"]


def _versions(rek, project_arn: str) -> list[dict]:
    pages = rek.get_paginator("describe_project_versions").paginate(ProjectArn=project_arn)
    return [v for page in pages for v in page["ProjectVersionDescriptions"]]


def _version(rek, project_name: str, version_name: str) -> dict:
    project_arn = _project(rek, project_name)["ProjectArn"]
    found = rek.describe_project_versions(ProjectArn=project_arn, VersionNames=[version_name])
    if not found["ProjectVersionDescriptions"]:
        raise Refused(f"ResourceNotFoundException: project {project_name} has no version {version_name!r}")
    return found["ProjectVersionDescriptions"][0]


def _wait_until_gone(gone: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not gone():
        if time.monotonic() > deadline:
            raise Refused(f"Timeout: {what} is still there after {timeout:.0f} s (it is being deleted)")
        time.sleep(POLL_SECONDS)


# --- output -----------------------------------------------------------------------------
def _print_dataset_table(rek, project: dict) -> None:
    rows = []
    for dataset in project.get("Datasets", []):
        description = _describe_dataset(rek, dataset["DatasetArn"])
        stats = description.get("DatasetStats") or {}
        rows.append((dataset["DatasetType"], description["Status"], stats.get("TotalEntries", 0), stats.get("LabeledEntries", 0),
                     stats.get("TotalLabels", 0), stats.get("ErrorEntries", 0),
                     _when(description.get("LastUpdatedTimestamp"))))
    _print_table(("DATASET", "STATUS", "ENTRIES", "LABELED", "LABELS", "ERRORS", "UPDATED"), rows)


def _print_version_table(versions: Sequence[dict]) -> None:
    _print_table(("VERSION", "STATUS", "F1", "CREATED", "UNITS"), (
        (_version_name(v["ProjectVersionArn"]), v["Status"], _f1(v), _when(v.get("CreationTimestamp")), _units(v))
        for v in versions))


def _print_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """Columns as wide as their widest cell; numbers right-aligned; '(none)' for no rows."""
    rows = [[str(cell) for cell in row] for row in rows]
    if not rows:
        print("(none)")
        return
    widths = [max(len(headers[i]), *(len(row[i]) for row in rows)) for i in range(len(headers))]
    numeric = [all(_is_number(row[i]) for row in rows) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if n else c.ljust(w) for c, w, n in zip(cells, widths, numeric)).rstrip()

    print(line(headers))
    for row in rows:
        print(line(row))


def _print_fields(fields: Iterable[tuple[str, object]]) -> None:
    fields = list(fields)
    width = max(len(name) for name, _ in fields)
    for name, value in fields:
        print(f"{name + ':':{width + 1}} {value if value not in (None, '') else '-'}")


def _print_json(answer: object) -> int:
    print(json.dumps(answer, indent=2, default=lambda v: v.isoformat() if isinstance(v, datetime) else str(v)))
    return 0


def _version_name(arn: str) -> str:
    parsed = parse_arn(arn)
    return parsed.version_name if parsed and parsed.version_name else arn  # an alias ARN has no version name


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if isinstance(value, datetime) else "-"


def _f1(version: dict) -> str:
    score = (version.get("EvaluationResult") or {}).get("F1Score")
    return f"{score:.3f}" if isinstance(score, (int, float)) else "-"


def _units(version: dict) -> str:
    low, high = version.get("MinInferenceUnits"), version.get("MaxInferenceUnits")
    if low is None:
        return "-"
    return f"{low}-{high}" if high and high != low else str(low)


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False
