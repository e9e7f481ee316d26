"""The projects service's documents: collection names, how each document is
made, and how the API shows it. Nothing here reads or writes the store.

- ``account_projects``: one per project, with its account (names are unique
  per account), and a read model of its datasets (by type) and its model
  versions, fed by the datasets and training services' events. Projects made
  before accounts existed are in ``projects`` (names unique across the
  deployment); the service moves them over at start (``legacy_moved``).
- ``tags``: one per tagged resource ARN (project, dataset or version), with
  the project it belongs to, so a project's removal takes its tags along.
- ``policies``: one per (project, policy name), carrying a revision id that
  every replacement or deletion must name.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from customlabels import clock
from customlabels.arns import parse_arn
from customlabels.ports.documents import Collection, Delete, Index, Put

PROJECTS = "account_projects"
LEGACY_PROJECTS = "projects"
TAGS = "tags"
POLICIES = "policies"
COLLECTIONS = (
    Collection(PROJECTS, (
        Index(("account", "name"), unique=True), Index(("account", "created_ms")),
        Index(("name",)), Index(("created_ms",)),  # a service's own lookups, across accounts
    )),
    Collection(LEGACY_PROJECTS),
    Collection(TAGS, (Index(("project_arn",)),)),
    Collection(POLICIES, (Index(("project_arn", "name"), unique=True),)),
)


# --- projects --------------------------------------------------------------------------
def new_project(arn: str, name: str, created: datetime, auto_update: str | None) -> dict[str, Any]:
    return {
        "_id": arn,
        "account": parse_arn(arn).account,
        "name": name,
        "created_at": created.isoformat(),
        "created_ms": int(created.timestamp() * 1000),
        "status": "CREATED",
        "auto_update": auto_update,
        "datasets": {},  # read model: TRAIN/TEST -> {arn, created_at, status, status_message, ...}
        "versions": [],  # read model: version ARNs
    }


def legacy_moved(project: dict[str, Any]) -> dict[str, Any]:
    """A project stored before accounts existed, as stored now (with the account its ARN names)."""
    moved = {k: v for k, v in project.items() if k != "_version"}
    moved["account"] = parse_arn(project["_id"]).account
    return moved


def project_resources(project: dict[str, Any]) -> set[str]:
    """The ARNs a project holds: itself, its datasets and its versions."""
    return {project["_id"], *(d["arn"] for d in project["datasets"].values()), *project["versions"]}


def project_description(project: dict[str, Any]) -> dict[str, Any]:
    """A project as DescribeProjects shows it."""
    return {
        "ProjectArn": project["_id"],
        "CreationTimestamp": clock.parse(project["created_at"]),
        "Status": project["status"],
        "Datasets": [
            {
                "CreationTimestamp": clock.parse(d["created_at"]),
                "DatasetType": dataset_type,
                "DatasetArn": d["arn"],
                "Status": d["status"],
                "StatusMessage": d.get("status_message"),
                "StatusMessageCode": d.get("status_message_code"),
            }
            for dataset_type, d in sorted(project["datasets"].items(), reverse=True)
        ],
        "Feature": "CUSTOM_LABELS",
        "AutoUpdate": project.get("auto_update"),
    }


# --- tags ---------------------------------------------------------------------------------
def tag_writes(resource_arn: str, project_arn: str, tags: dict[str, str], existing: dict | None = None) -> list[Put]:
    """The write that adds ``tags`` to a resource's (``existing``: its stored tags document, if any)."""
    if not tags and existing is None:
        return []
    doc = {"_id": resource_arn, "project_arn": project_arn, "tags": {**(existing or {}).get("tags", {}), **tags}}
    return [Put(TAGS, doc, expected_version=existing["_version"] if existing else 0)]


def untag_all_writes(resource_arn: str) -> list[Delete]:
    return [Delete(TAGS, resource_arn)]


# --- policies -------------------------------------------------------------------------------
def policy_id(project_arn: str, name: str) -> str:
    return f"{project_arn}|{name}"


def policy_description(policy: dict[str, Any]) -> dict[str, Any]:
    """A policy as ListProjectPolicies shows it."""
    return {
        "ProjectArn": policy["project_arn"],
        "PolicyName": policy["name"],
        "PolicyRevisionId": policy["revision_id"],
        "PolicyDocument": policy["document"],
        "CreationTimestamp": clock.parse(policy["created_at"]),
        "LastUpdatedTimestamp": clock.parse(policy["updated_at"]),
    }
