"""Project policies (PutProjectPolicy, ListProjectPolicies, DeleteProjectPolicy).

Policies carry revision ids so concurrent writers cannot overwrite each other,
as in the reference: replacing or deleting a policy names the revision it
replaces; creating one names none. A project has at most
``MAX_POLICIES_PER_PROJECT``. A policy document is an IAM-style JSON object
with a Statement list; anything else is MalformedPolicyDocument and changes
nothing.
"""
from __future__ import annotations

import json
import uuid
from typing import Any, Awaitable, Callable

from customlabels import clock, errors
from customlabels.pagination import TokenCodec
from customlabels.ports.documents import Delete, DuplicateKey, Eq, Put, ScopedStore, VersionConflict

from services.projects.records import POLICIES, policy_description, policy_id

MAX_POLICIES_PER_PROJECT = 5

FindProject = Callable[[str], Awaitable[dict[str, Any]]]


class Policies:
    def __init__(self, store: ScopedStore, tokens: TokenCodec, find_project: FindProject):
        """``find_project(arn)``: the project document, or ResourceNotFound."""
        self.store = store
        self.tokens = tokens
        self.find_project = find_project

    def operations(self):
        return {
            "PutProjectPolicy": self.put_project_policy,
            "ListProjectPolicies": self.list_project_policies,
            "DeleteProjectPolicy": self.delete_project_policy,
        }

    async def put_project_policy(self, req: dict[str, Any]) -> dict[str, Any]:
        project = await self.find_project(req["ProjectArn"])
        name, revision = req["PolicyName"], req.get("PolicyRevisionId")
        _check_policy_document(req["PolicyDocument"])
        current = await self.store.get(POLICIES, policy_id(project["_id"], name))
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
            doc = {"_id": policy_id(project["_id"], name), "project_arn": project["_id"], "name": name, "created_at": now}
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
        project = await self.find_project(req["ProjectArn"])
        scope = ["ListProjectPolicies", project["_id"]]
        page = await self.store.find(
            POLICIES,
            [Eq("project_arn", project["_id"])],
            order_by=("name",),
            limit=req.get("MaxResults", 5),
            after=self.tokens.decode(req.get("NextToken"), scope),
        )
        return {
            "ProjectPolicies": [policy_description(p) for p in page.items],
            "NextToken": self.tokens.encode(page.next_cursor, scope),
        }

    async def delete_project_policy(self, req: dict[str, Any]) -> dict[str, Any]:
        project = await self.find_project(req["ProjectArn"])
        name, revision = req["PolicyName"], req.get("PolicyRevisionId")
        current = await self.store.get(POLICIES, policy_id(project["_id"], name))
        if current is None:
            raise errors.ResourceNotFound(f"project {project['_id']} has no policy named {name!r}")
        if revision and revision != current["revision_id"]:
            raise errors.InvalidPolicyRevisionId(f"policy {name!r} is at revision {current['revision_id']}, not {revision}")
        try:
            await self.store.commit([Delete(POLICIES, current["_id"], expected_version=current["_version"])])
        except VersionConflict:
            raise errors.InvalidPolicyRevisionId(f"policy {name!r} changed concurrently; read it again") from None
        return {}


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
