"""The operation table: every API this product speaks, the operations it serves, and who owns each.

This is the only hand-written list of operations. Everything else about an
operation comes from its API's botocore service model: the protocol (AWS
JSON 1.1 or REST-JSON), the signing name, the ``X-Amz-Target`` prefix, the
HTTP route, the input and output shapes. ``customlabels.wire.apis`` loads
those models; this module stays free of them, so that knowing who owns what
costs nothing.

Invariants (checked at import):

* An operation name is served by one API only, so ``router.call(name, params)``
  needs no API name.
* An operation has exactly one owner: a service (a folder under ``services/``).
* ``EVERY_OPERATION`` is allowed only for an API whose model this package ships
  (its operations are whatever that model defines).

Answers that follow from the table (``customlabels.wire.apis`` and the routers):
an operation of a served API's model that is not listed here is answered
``UnsupportedOperationException``; a listed operation whose owner is not
running (or not configured) is answered ``UnsupportedOperationException``
too, saying which service serves it; a target or route that no model has is
``UnknownOperationException``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

# Service models this package ships, in botocore's data layout:
# ``<MODELS_DIR>/<service name>/<api version>/service-2.json`` (stock boto3
# loads them when this folder is on its loader's search path).
MODELS_DIR = Path(__file__).resolve().parent / "models"

REVIEW_API = "customlabels-review"

EVERY_OPERATION = "*"

# api (botocore service name) -> owner service -> the operations it owns there.
SERVED: Mapping[str, Mapping[str, tuple[str, ...] | str]] = {
    "rekognition": {
        "projects": (
            "CreateProject", "DescribeProjects", "DeleteProject",
            "PutProjectPolicy", "ListProjectPolicies", "DeleteProjectPolicy",
            "TagResource", "UntagResource", "ListTagsForResource",
        ),
        "datasets": (
            "CreateDataset", "DescribeDataset", "DeleteDataset", "UpdateDatasetEntries",
            "ListDatasetEntries", "ListDatasetLabels", "DistributeDatasetEntries",
        ),
        "training": ("CreateProjectVersion", "DescribeProjectVersions", "DeleteProjectVersion", "CopyProjectVersion"),
        "hosting": ("StartProjectVersion", "StopProjectVersion", "DetectCustomLabels"),
    },
    # Flow definitions: the SageMaker subset A2I needs (JSON 1.1, signing name sagemaker).
    "sagemaker": {
        "feedback": ("CreateFlowDefinition", "DescribeFlowDefinition", "ListFlowDefinitions", "DeleteFlowDefinition"),
    },
    # Human loops (REST-JSON, signing name sagemaker).
    "sagemaker-a2i-runtime": {
        "feedback": ("StartHumanLoop", "DescribeHumanLoop", "ListHumanLoops", "StopHumanLoop", "DeleteHumanLoop"),
    },
    # Reviewers' answers: our own API, described by models/customlabels-review/<version>/service-2.json.
    # Its operations and shapes belong to the feedback service: edit that JSON model (any
    # operation it defines is served, owned by feedback); validation, routing, signing and
    # serialization follow from it with no change here or in the rest of the wire layer.
    REVIEW_API: {"feedback": EVERY_OPERATION},
}

# Services raise the errors of ``customlabels.errors`` (named as Rekognition
# names them); each API answers them under its own names. Codes not listed
# for an API keep their name there. The status comes from the API's model
# where it gives one (REST-JSON error shapes do), else from the error class.
_A2I_STYLE_ERRORS = {
    "InvalidParameterException": "ValidationException",
    "ResourceInUseException": "ConflictException",
    "ResourceAlreadyExistsException": "ConflictException",
    "LimitExceededException": "ServiceQuotaExceededException",
    "InternalServerError": "InternalServerException",
}
ERROR_NAMES: Mapping[str, Mapping[str, str]] = {
    "rekognition": {},
    "sagemaker": {
        "InvalidParameterException": "ValidationException",
        "ResourceNotFoundException": "ResourceNotFound",
        "ResourceInUseException": "ResourceInUse",
        "ResourceAlreadyExistsException": "ResourceInUse",
        "ConflictException": "ResourceInUse",
        "LimitExceededException": "ResourceLimitExceeded",
        "ServiceQuotaExceededException": "ResourceLimitExceeded",
    },
    "sagemaker-a2i-runtime": _A2I_STYLE_ERRORS,
    REVIEW_API: _A2I_STYLE_ERRORS,
}


def shipped_operations(api: str) -> tuple[str, ...]:
    """The operations of a model this package ships (read straight from its JSON)."""
    versions = sorted((MODELS_DIR / api).glob("*/service-2.json"))
    if not versions:
        raise FileNotFoundError(f"no service model for {api} under {MODELS_DIR}")
    return tuple(json.loads(versions[-1].read_text())["operations"])


def _operations_of(api: str, listed: tuple[str, ...] | str) -> tuple[str, ...]:
    if listed == EVERY_OPERATION:
        return shipped_operations(api)
    assert isinstance(listed, tuple), f"{api}: list operations as a tuple or EVERY_OPERATION"
    return listed


def _build() -> tuple[dict[str, str], dict[str, str]]:
    owners: dict[str, str] = {}
    apis: dict[str, str] = {}
    for api, by_owner in SERVED.items():
        for owner, listed in by_owner.items():
            for operation in _operations_of(api, listed):
                if operation in apis:
                    raise ValueError(f"{operation} is served by both {apis[operation]} and {api}: names must be unique")
                owners[operation], apis[operation] = owner, api
    return owners, apis


# operation -> owner service; operation -> API (botocore service name).
OWNERS, API_OF = _build()


def served_operations(api: str) -> frozenset[str]:
    """The operations of ``api`` this product serves (empty for an API not in the table)."""
    return frozenset(operation for operation, name in API_OF.items() if name == api)
