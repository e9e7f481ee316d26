"""What every ``customlabels`` command shares: its errors, how it reaches the
server, argument types, progress bars and finding a project by name."""
from __future__ import annotations

import argparse
import sys

from tqdm import tqdm

from customlabels.arns import parse_arn
from customlabels.client import Endpoint


class CliError(Exception):
    """An error the CLI reports as one line and turns into an exit code."""

    exit_code = 1


class UsageError(CliError):
    """The command line or its inputs are wrong (exit code 2)."""

    exit_code = 2


class Refused(CliError):
    """The service (or waiting on it) said no (exit code 1)."""

    exit_code = 1


def endpoint_of(args: argparse.Namespace) -> Endpoint:
    """The server and region the command talks to: --endpoint-url/--region, else the environment."""
    try:
        return Endpoint.from_env(url=getattr(args, "endpoint_url", None), region=getattr(args, "region", None))
    except ValueError as exc:
        raise UsageError(f"error: {exc}") from None


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def progress_bar(**options) -> tqdm:
    # disable=None: bars only on a terminal, so logs and pipes stay clean.
    return tqdm(file=sys.stderr, disable=None, **options)


def find_project(rek, name: str) -> dict | None:
    """The project named ``name`` (DescribeProjects), or None."""
    # Filter by name server-side, and check the names here too, in case a server
    # answers with every project.
    for page in rek.get_paginator("describe_projects").paginate(ProjectNames=[name]):
        for project in page.get("ProjectDescriptions", []):
            parsed = parse_arn(project["ProjectArn"])
            if parsed is not None and parsed.project_name == name:
                return project
    return None


def find_project_arn(rek, name: str) -> str:
    """The ARN of the project named ``name``; Refused if there is none."""
    project = find_project(rek, name)
    if project is None:
        raise Refused(f"ResourceNotFoundException: no project named {name!r}")
    return project["ProjectArn"]
