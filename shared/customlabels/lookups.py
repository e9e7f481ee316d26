"""What a service asks another for, through the public operations: the owner answers."""
from __future__ import annotations

from typing import Any

from customlabels import errors
from customlabels.arns import parse_arn
from customlabels.ports.operations import OperationRouter


async def describe_project(router: OperationRouter, project_arn: str) -> dict[str, Any]:
    """The project ``project_arn`` names, as DescribeProjects shows it; ResourceNotFound if there is none."""
    parsed = parse_arn(project_arn)
    if parsed is None or parsed.kind != "project":
        raise errors.ResourceNotFound(f"project {project_arn} does not exist")
    answer = await router.call("DescribeProjects", {"ProjectNames": [parsed.project_name]})
    for project in answer.get("ProjectDescriptions", []):
        if project["ProjectArn"] == project_arn:
            return project
    raise errors.ResourceNotFound(f"project {project_arn} does not exist")
