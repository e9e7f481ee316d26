"""Tags on projects, datasets and model versions; project policies.

Tags live in one document per resource ARN. A dataset or version can be
tagged once the project's read model knows it (from the owner's events).
Policies carry revision ids so concurrent writers cannot overwrite each other,
as in the reference: updating or deleting names the revision it replaces.
"""
from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

from customlabels import clock, errors
from customlabels.ports.documents import Collection, Delete, Eq, Index, Put, VersionConflict, DuplicateKey

if TYPE_CHECKING:
    from services.projects.service import ProjectsService

TAGS = "tags"
POLICIES = "policies"
COLLECTIONS = (
    Collection(TAGS, (Index(("project_arn",)),)),
    Collection(POLICIES, (Index(("project_arn", "name"), unique=True),)),
)
MAX_TAGS = 50
MAX_POLICIES_PER_PROJECT = 5


def tag_writes(resource_arn: str, project_arn: str, tags: dict[str, str], existing: dict | None = None) -> list:
    if not tags and existing is None:
        return []
    doc = {"_id": resource_arn, "project_arn": project_arn, "tags": {**(existing or {}).get("tags", {}), **tags}}
    version = existing["_version"] if existing else 0
    return [Put(TAGS, doc, expected_version=version)]


def untag_all_writes(resource_arn: str) -> list:
    return [Delete(TAGS, resource_arn)]


def _policy_id(project_arn: str, name: str) -> str:
    return f"{project_arn}|{name}"


class Access:
    def __init__(self, service: "ProjectsService"):
        self.service = service
        self.store = service.store

    def operations(self):
        return {
            "TagResource": self.tag_resource,
            "UntagResource": self.untag_resource,
            "ListTagsForResource": self.list_tags_for_resource,
            "PutProjectPolicy": self.put_project_policy,
            "ListProjectPolicies": self.list_project_policies,
            "DeleteProjectPolicy": self.delete_project_policy,
        }

    # --- tags ------------------------------------------------------------------
    async def _resource_project(self, arn: str) -> str:
        """The project that holds the resource ``arn``; ResourceNotFound if none does."""
        parsed = self.service.ctx.arns.parse(arn)
        if parsed is not None:
            project_arn = None
            if parsed.kind == "project":
                project_arn = arn
                project = await self.store.get("projects", arn)
            else:
                page = await self.store.find("projects", [Eq("name", parsed.project_name)], limit=1)
                project = page.items[0] if page.items else None
            if project is not None:
                known = {project["_id"], *(d["arn"] for d in project["datasets"].values()), *project["versions"]}
                if arn in known:
                    return project_arn or project["_id"]
        raise errors.ResourceNotFound(f"resource {arn} does not exist")

    async def tag_resource(self, req: dict[str, Any]) -> dict[str, Any]:
        arn = req["ResourceArn"]
        project_arn = await self._resource_project(arn)
        existing = await self.store.get(TAGS, arn)
        merged = {**(existing or {}).get("tags", {}), **req["Tags"]}
        if len(merged) > MAX_TAGS:
            raise errors.ServiceQuotaExceeded(f"a resource can have at most {MAX_TAGS} tags; {arn} would have {len(merged)}")
        await self._commit_tags(tag_writes(arn, project_arn, req["Tags"], existing or {"tags": {}, "_version": 0}))
        return {}

    async def untag_resource(self, req: dict[str, Any]) -> dict[str, Any]:
        arn = req["ResourceArn"]
        project_arn = await self._resource_project(arn)
        existing = await self.store.get(TAGS, arn)
        if existing:
            tags = {k: v for k, v in existing["tags"].items() if k not in set(req["TagKeys"])}
            doc = {"_id": arn, "project_arn": project_arn, "tags": tags}
            await self._commit_tags([Put(TAGS, doc, expected_version=existing["_version"])])
        return {}

    async def list_tags_for_resource(self, req: dict[str, Any]) -> dict[str, Any]:
        arn = req["ResourceArn"]
        await self._resource_project(arn)
        existing = await self.store.get(TAGS, arn)
        return {"Tags": (existing or {}).get("tags", {})}

    async def _commit_tags(self, writes: list) -> None:
        try:
            await self.store.commit(writes)
        except (VersionConflict, DuplicateKey):
            raise errors.ResourceInUse("the tags of this resource changed concurrently; retry") from None

    # --- policies ------------------------------------------------------------------
    async def put_project_policy(self, req: dict[str, Any]) -> dict[str, Any]:
        project = await self.service.project(req["ProjectArn"])
        name, revision = req["PolicyName"], req.get("PolicyRevisionId")
        _check_policy_document(req["PolicyDocument"])
        current = await self.store.get(POLICIES, _policy_id(project["_id"], name))
        now = clock.now().isoformat()
        new_revision = uuid.uuid4().hex
        if current is None:
            if revision:
                raise errors.InvalidPolicyRevisionId(
                    f"project {project['_id']} has no policy named {name!r}; omit PolicyRevisionId to create it"
                )
            count = await self.store.count(POLICIES, [Eq("project_arn", project["_id"])])
            if count >= MAX_POLICIES_PER_PROJECT:
                raise errors.LimitExceeded(f"a project can have at most {MAX_POLICIES_PER_PROJECT} policies")
            doc = {"_id": _policy_id(project["_id"], name), "project_arn": project["_id"], "name": name, "created_at": now}
            expected = 0
        else:
            if not revision:
                raise errors.ResourceAlreadyExists(
                    f"policy {name!r} already exists; pass its PolicyRevisionId ({current['revision_id']}) to replace it"
                )
            if revision != current["revision_id"]:
                raise errors.InvalidPolicyRevisionId(
                    f"policy {name!r} is at revision {current['revision_id']}, not {revision}"
                )
            doc, expected = dict(current), current["_version"]
        doc.update(revision_id=new_revision, document=req["PolicyDocument"], updated_at=now)
        try:
            await self.store.commit([Put(POLICIES, doc, expected_version=expected)])
        except (VersionConflict, DuplicateKey):
            raise errors.InvalidPolicyRevisionId(f"policy {name!r} changed concurrently; read it again") from None
        return {"PolicyRevisionId": new_revision}

    async def list_project_policies(self, req: dict[str, Any]) -> dict[str, Any]:
        project = await self.service.project(req["ProjectArn"])
        scope = ["ListProjectPolicies", project["_id"]]
        page = await self.store.find(
            POLICIES,
            [Eq("project_arn", project["_id"])],
            order_by=("name",),
            limit=req.get("MaxResults", 5),
            after=self.service.ctx.tokens.decode(req.get("NextToken"), scope),
        )
        return {
            "ProjectPolicies": [
                {
                    "ProjectArn": p["project_arn"],
                    "PolicyName": p["name"],
                    "PolicyRevisionId": p["revision_id"],
                    "PolicyDocument": p["document"],
                    "CreationTimestamp": clock.parse(p["created_at"]),
                    "LastUpdatedTimestamp": clock.parse(p["updated_at"]),
                }
                for p in page.items
            ],
            "NextToken": self.service.ctx.tokens.encode(page.next_cursor, scope),
        }

    async def delete_project_policy(self, req: dict[str, Any]) -> dict[str, Any]:
        project = await self.service.project(req["ProjectArn"])
        name, revision = req["PolicyName"], req.get("PolicyRevisionId")
        current = await self.store.get(POLICIES, _policy_id(project["_id"], name))
        if current is None:
            raise errors.ResourceNotFound(f"project {project['_id']} has no policy named {name!r}")
        if revision and revision != current["revision_id"]:
            raise errors.InvalidPolicyRevisionId(f"policy {name!r} is at revision {current['revision_id']}, not {revision}")
        try:
            await self.store.commit([Delete(POLICIES, current["_id"], expected_version=current["_version"])])
        except VersionConflict:
            raise errors.InvalidPolicyRevisionId(f"policy {name!r} changed concurrently; read it again") from None
        return {}

    async def removal_writes(self, project_arn: str) -> list:
        """Writes that remove a project's policies and tags along with it."""
        writes: list = []
        for collection in (POLICIES, TAGS):
            page = await self.store.find(collection, [Eq("project_arn", project_arn)], limit=1000)
            writes += [Delete(collection, doc["_id"]) for doc in page.items]
        return writes


def _check_policy_document(document: str) -> None:
    """An IAM-style resource policy: a JSON object with a Statement list."""
    try:
        policy = json.loads(document)
    except json.JSONDecodeError as e:
        raise errors.MalformedPolicyDocument(f"PolicyDocument is not valid JSON: {e.msg} at position {e.pos}") from None
    if not isinstance(policy, dict) or not isinstance(policy.get("Statement"), (list, dict)):
        raise errors.MalformedPolicyDocument('PolicyDocument must be a JSON object with a "Statement" list')
    statements = policy["Statement"] if isinstance(policy["Statement"], list) else [policy["Statement"]]
    for i, statement in enumerate(statements):
        if not isinstance(statement, dict) or statement.get("Effect") not in ("Allow", "Deny"):
            raise errors.MalformedPolicyDocument(f'Statement {i + 1} needs "Effect": "Allow" or "Deny"')
