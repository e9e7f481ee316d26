"""The model-version operations the feedback loop drives, through the public API (the router).

Retraining and promotion never touch another service's data: they call
CreateProjectVersion, DescribeProjectVersions, Start/StopProjectVersion and
ListTagsForResource like any client, so every step is the owner's own
operation with its own checks and events.
"""
from __future__ import annotations

from typing import Any

from customlabels import errors
from customlabels.ports.operations import OperationRouter


def version_name(version_arn: str) -> str:
    return version_arn.split("/version/", 1)[1].rsplit("/", 1)[0]


def created_ms(version_arn: str) -> int:
    """A version's creation time, from its ARN (``.../version/<name>/<epoch-ms>``)."""
    return int(version_arn.rsplit("/", 1)[1])


class VersionApi:
    def __init__(self, router: OperationRouter):
        self.router = router

    async def describe(self, project_arn: str, version_arn: str) -> dict[str, Any] | None:
        """The version's DescribeProjectVersions item; None once it is gone."""
        try:
            found = await self.router.call("DescribeProjectVersions", {
                "ProjectArn": project_arn, "VersionNames": [version_name(version_arn)]})
        except errors.ResourceNotFound:
            return None
        return next((v for v in found["ProjectVersionDescriptions"] if v["ProjectVersionArn"] == version_arn), None)

    async def by_name(self, project_arn: str, name: str) -> dict[str, Any] | None:
        found = await self.router.call("DescribeProjectVersions", {"ProjectArn": project_arn, "VersionNames": [name]})
        return next((v for v in found["ProjectVersionDescriptions"] if not v["ProjectVersionArn"].endswith("/0")), None)

    async def training_in_progress(self, project_arn: str) -> bool:
        found = await self.router.call("DescribeProjectVersions", {"ProjectArn": project_arn, "MaxResults": 10})
        return any(v["Status"] == "TRAINING_IN_PROGRESS" for v in found["ProjectVersionDescriptions"])

    async def tags(self, arn: str) -> dict[str, str]:
        try:
            return (await self.router.call("ListTagsForResource", {"ResourceArn": arn})).get("Tags") or {}
        except errors.ResourceNotFound:
            return {}

    async def create(self, project_arn: str, name: str, output_config: dict[str, Any], tags: dict[str, str]) -> str:
        """The new version's ARN (the existing one's, when a retry finds it created)."""
        try:
            return (await self.router.call("CreateProjectVersion", {
                "ProjectArn": project_arn, "VersionName": name, "OutputConfig": output_config, "Tags": tags,
            }))["ProjectVersionArn"]
        except errors.ResourceInUse:
            existing = await self.by_name(project_arn, name)
            if existing is None:
                raise  # a dataset is busy: try again later
            return existing["ProjectVersionArn"]

    async def start(self, version_arn: str, min_units: int, max_units: int | None) -> None:
        params: dict[str, Any] = {"ProjectVersionArn": version_arn, "MinInferenceUnits": min_units}
        if max_units:
            params["MaxInferenceUnits"] = max_units
        try:
            await self.router.call("StartProjectVersion", params)
        except errors.ResourceInUse:
            pass  # starting or running already

    async def stop(self, version_arn: str) -> None:
        try:
            await self.router.call("StopProjectVersion", {"ProjectVersionArn": version_arn})
        except (errors.ResourceInUse, errors.ResourceNotFound):
            pass  # not running (any more), or gone
