"""Operation router port: how the gateway (and a service needing an answer
now) calls the service that owns an API operation.

A service publishes its operations as ``{"CreateProject": handler, ...}``;
each handler takes the validated request dict and returns the response dict,
or raises a ``customlabels.errors.ApiError``. Embedded mode calls handlers in
process (``customlabels.adapters.inprocess_operations``); distributed mode
sends the same dicts over HTTP to the owner.
"""
from __future__ import annotations

from typing import Any, Awaitable, Callable, Mapping, Protocol

OperationHandler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
Operations = Mapping[str, OperationHandler]

# Which service owns which operation of the Custom Labels API.
OWNERS: dict[str, str] = {
    **dict.fromkeys(
        [
            "CreateProject", "DescribeProjects", "DeleteProject",
            "PutProjectPolicy", "ListProjectPolicies", "DeleteProjectPolicy",
            "TagResource", "UntagResource", "ListTagsForResource",
        ],
        "projects",
    ),
    **dict.fromkeys(
        [
            "CreateDataset", "DescribeDataset", "DeleteDataset", "UpdateDatasetEntries",
            "ListDatasetEntries", "ListDatasetLabels", "DistributeDatasetEntries",
        ],
        "datasets",
    ),
    **dict.fromkeys(
        ["CreateProjectVersion", "DescribeProjectVersions", "DeleteProjectVersion", "CopyProjectVersion"],
        "training",
    ),
    **dict.fromkeys(["StartProjectVersion", "StopProjectVersion", "DetectCustomLabels"], "hosting"),
}


class OperationRouter(Protocol):
    def owns(self, operation: str) -> bool:
        """Whether a running service serves ``operation``."""

    async def call(self, operation: str, params: dict[str, Any]) -> dict[str, Any]: ...
