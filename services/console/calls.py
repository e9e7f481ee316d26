"""The public operations the console calls, and the few patterns it repeats
over them (find a project by name, page through every result, wait on a
dataset, save lines in chunks).

Every call goes through ``router.call(operation, params)`` with the dicts the
wire layer produces: the console is one more client of the API, with no
other path to any service's data.

Accounts: a signed-in request runs inside ``signed_in(access_key)`` (the
console's guard enters it once per request), so every call it makes, in
process or over HTTP, is made for that key's account, through the same door
as a boto3 call signed with the key (``customlabels.wire.dispatch``); the
console's own uploads and results go to that account's buckets (``bucket``).
"""
from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable
from typing import Any

from contextlib import AbstractContextManager

from customlabels import errors
from customlabels.arns import parse_arn
from customlabels.buckets import account_bucket
from customlabels.config import Settings
from customlabels.ports.operations import OperationRouter
from customlabels.wire.dispatch import Caller, acting_as, current_account

from customlabels.manifests.converters import chunk_jsonl

DATASET_DONE = ("CREATE_COMPLETE", "UPDATE_COMPLETE", "CREATE_FAILED", "UPDATE_FAILED")
DATASET_TYPES = {"train": "TRAIN", "test": "TEST"}
BUSY_WAIT_SECONDS = 60.0  # how long a save waits for a dataset that is busy with an earlier change


class Calls:
    def __init__(self, router: OperationRouter, settings: Settings | None = None):
        self.router = router
        self.settings = settings or Settings()

    # --- whose calls ------------------------------------------------------------------
    def signed_in(self, access_key: str) -> AbstractContextManager[None]:
        """Everything done inside is done for ``access_key``'s account (its calls and bucket checks)."""
        return acting_as(Caller(access_key, self.settings.account_of(access_key)))

    def account(self) -> str:
        """The signed-in user's account."""
        return current_account() or self.settings.account_id

    def bucket(self, base: str) -> str:
        """The signed-in account's bucket ``base`` (``customlabels.buckets.account_bucket``)."""
        return account_bucket(base, self.account(), self.settings.account_id)

    async def every(self, operation: str, member: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Every item of ``member`` in ``operation``'s answers, following NextToken (100 a page)."""
        found, token = [], None
        while True:
            page = await self.router.call(operation, {**(params or {}), "MaxResults": 100, **({"NextToken": token} if token else {})})
            found += page[member]
            token = page.get("NextToken")
            if not token:
                return found

    # --- projects -----------------------------------------------------------------
    async def projects(self) -> list[dict[str, Any]]:
        return await self.every("DescribeProjects", "ProjectDescriptions")

    async def project(self, name: str) -> dict[str, Any]:
        """The project named ``name``; ResourceNotFound when there is none."""
        answer = await self.router.call("DescribeProjects", {"ProjectNames": [name]})
        for project in answer["ProjectDescriptions"]:
            if project_name(project["ProjectArn"]) == name:
                return project
        raise errors.ResourceNotFound(f"There is no project named {name}.")

    # --- datasets -----------------------------------------------------------------
    async def dataset(self, name: str, kind: str) -> tuple[dict[str, Any], str]:
        """The project named ``name`` and the ARN of its ``kind`` (train/test) dataset;
        ResourceNotFound when either is missing."""
        if kind not in DATASET_TYPES:
            raise errors.ResourceNotFound(f"A project has a train and a test dataset, not {kind!r}.")
        project = await self.project(name)
        arn = self.dataset_arn(project, kind)
        if arn is None:
            raise errors.ResourceNotFound(f"Project {name} has no {kind} dataset yet.")
        return project, arn

    @staticmethod
    def dataset_arn(project: dict[str, Any], kind: str) -> str | None:
        wanted = DATASET_TYPES[kind]
        return next((d["DatasetArn"] for d in project.get("Datasets", []) if d["DatasetType"] == wanted), None)

    async def describe_dataset(self, arn: str) -> dict[str, Any]:
        return (await self.router.call("DescribeDataset", {"DatasetArn": arn}))["DatasetDescription"]

    async def labels(self, arns: Iterable[str]) -> dict[str, dict[str, int]]:
        """Label -> {"images": n, "boxes": n}, summed over the datasets."""
        labels: dict[str, dict[str, int]] = {}
        for arn in arns:
            token = None
            while True:
                try:
                    page = await self.router.call("ListDatasetLabels", {"DatasetArn": arn, "MaxResults": 100,
                                                                         **({"NextToken": token} if token else {})})
                except errors.ApiError as error:
                    if error.code == "ResourceNotReadyException":
                        break
                    raise
                for item in page["DatasetLabelDescriptions"]:
                    counts = labels.setdefault(item["LabelName"], {"images": 0, "boxes": 0})
                    counts["images"] += item["LabelStats"].get("EntryCount", 0)
                    counts["boxes"] += item["LabelStats"].get("BoundingBoxCount", 0)
                token = page.get("NextToken")
                if not token:
                    break
        return labels

    async def source_refs(self, arn: str) -> set[str]:
        """Every entry's source-ref (ListDatasetEntries, 100 at a time)."""
        lines = await self.every("ListDatasetEntries", "DatasetEntries", {"DatasetArn": arn})
        return {json.loads(line)["source-ref"] for line in lines}

    async def wait_dataset(self, arn: str, timeout: float = BUSY_WAIT_SECONDS) -> dict[str, Any]:
        """DescribeDataset once the dataset has left its *_IN_PROGRESS state (or at the timeout)."""
        deadline, delay = time.monotonic() + timeout, 0.05
        while True:
            description = await self.describe_dataset(arn)
            if description["Status"] in DATASET_DONE or time.monotonic() > deadline:
                return description
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 1.0)

    async def update_entries(self, arn: str, lines: list[dict[str, Any]]) -> int:
        """UpdateDatasetEntries with ``lines``, in chunks under the API's 5 MB
        limit. A chunk the dataset is too busy to take (an earlier change is
        still being applied) is sent again once it is free, for up to
        ``BUSY_WAIT_SECONDS``. Returns the number of calls made."""
        calls = 0
        for chunk in chunk_jsonl(lines):
            deadline = time.monotonic() + BUSY_WAIT_SECONDS
            while True:
                try:
                    await self.router.call("UpdateDatasetEntries", {"DatasetArn": arn, "Changes": {"GroundTruth": chunk}})
                    calls += 1
                    break
                except errors.ApiError as error:
                    if error.code != "ResourceInUseException" or time.monotonic() > deadline:
                        raise
                    await self.wait_dataset(arn, timeout=max(0.0, deadline - time.monotonic()))
        return calls

    # --- model versions -------------------------------------------------------------
    async def versions(self, project_arn: str, limit: int = 100) -> list[dict[str, Any]]:
        answer = await self.router.call("DescribeProjectVersions", {"ProjectArn": project_arn, "MaxResults": limit})
        return answer["ProjectVersionDescriptions"]

    async def version(self, project_arn: str, name: str) -> dict[str, Any]:
        answer = await self.router.call("DescribeProjectVersions", {"ProjectArn": project_arn, "VersionNames": [name]})
        if not answer["ProjectVersionDescriptions"]:
            raise errors.ResourceNotFound(f"There is no model version {name} in this project.")
        return answer["ProjectVersionDescriptions"][0]

    async def tags(self, arn: str) -> dict[str, str]:
        """The resource's tags; none while the projects service has not heard of it yet (a new version)."""
        try:
            return (await self.router.call("ListTagsForResource", {"ResourceArn": arn}))["Tags"]
        except errors.ApiError as error:
            if error.code != "ResourceNotFoundException":
                raise
            return {}

    # --- the feedback loop ------------------------------------------------------------------
    async def flows(self) -> list[dict[str, Any]]:
        """Every flow definition (ListFlowDefinitions' summaries), newest first."""
        return await self.every("ListFlowDefinitions", "FlowDefinitionSummaries")

    async def review_tasks(self, *, limit: int, **filters: str) -> tuple[list[dict[str, Any]], bool]:
        """Up to ``limit`` review tasks (ListReviewTasks with ``filters``: ProjectName,
        FlowDefinitionName, WorkerId, Status), least confident first, and whether there are more."""
        found, token = [], None
        while len(found) < limit:
            page = await self.router.call("ListReviewTasks", {**filters, "MaxResults": min(100, limit - len(found)),
                                                               **({"NextToken": token} if token else {})})
            found += page["ReviewTasks"]
            token = page.get("NextToken")
            if not token:
                return found, False
        return found, True


def project_name(arn: str) -> str:
    parsed = parse_arn(arn)
    return parsed.project_name if parsed else arn


def version_name(arn: str) -> str:
    parsed = parse_arn(arn)
    return parsed.version_name or arn if parsed else arn
