"""Tags on projects, datasets and model versions (TagResource, UntagResource, ListTagsForResource).

A dataset or version can be tagged once the project's read model knows it
(from its owner's events); any other ARN is ResourceNotFound. A resource
has at most ``MAX_TAGS`` tags; concurrent writers to one resource's tags get
ResourceInUse rather than overwriting each other (conditional writes).
"""
from __future__ import annotations

from typing import Any

from customlabels import errors
from customlabels.arns import parse_arn
from customlabels.ports.documents import DuplicateKey, Eq, Put, ScopedStore, VersionConflict

from services.projects.records import PROJECTS, TAGS, project_resources, tag_writes

MAX_TAGS = 50


class Tags:
    def __init__(self, store: ScopedStore):
        self.store = store

    def operations(self):
        return {
            "TagResource": self.tag_resource,
            "UntagResource": self.untag_resource,
            "ListTagsForResource": self.list_tags_for_resource,
        }

    async def _resource_project(self, arn: str) -> str:
        """The project that holds the resource ``arn``; ResourceNotFound if none does."""
        parsed = parse_arn(arn)  # of the caller's account (the dispatch refuses any other)
        if parsed is not None:
            if parsed.kind == "project":
                project = await self.store.get(PROJECTS, arn)
            else:
                page = await self.store.find(PROJECTS, [Eq("account", parsed.account), Eq("name", parsed.project_name)],
                                             limit=1)
                project = page.items[0] if page.items else None
            if project is not None and arn in project_resources(project):
                return project["_id"]
        raise errors.ResourceNotFound(f"resource {arn} does not exist")

    async def tag_resource(self, req: dict[str, Any]) -> dict[str, Any]:
        arn = req["ResourceArn"]
        project_arn = await self._resource_project(arn)
        existing = await self.store.get(TAGS, arn)
        merged = {**(existing or {}).get("tags", {}), **req["Tags"]}
        if len(merged) > MAX_TAGS:
            raise errors.ServiceQuotaExceeded(f"a resource can have at most {MAX_TAGS} tags; {arn} would have {len(merged)}")
        await self._commit(tag_writes(arn, project_arn, req["Tags"], existing or {"tags": {}, "_version": 0}))
        return {}

    async def untag_resource(self, req: dict[str, Any]) -> dict[str, Any]:
        arn = req["ResourceArn"]
        project_arn = await self._resource_project(arn)
        existing = await self.store.get(TAGS, arn)
        if existing:
            tags = {k: v for k, v in existing["tags"].items() if k not in set(req["TagKeys"])}
            doc = {"_id": arn, "project_arn": project_arn, "tags": tags}
            await self._commit([Put(TAGS, doc, expected_version=existing["_version"])])
        return {}

    async def list_tags_for_resource(self, req: dict[str, Any]) -> dict[str, Any]:
        arn = req["ResourceArn"]
        await self._resource_project(arn)
        existing = await self.store.get(TAGS, arn)
        return {"Tags": (existing or {}).get("tags", {})}

    async def _commit(self, writes: list) -> None:
        try:
            await self.store.commit(writes)
        except (VersionConflict, DuplicateKey):
            raise errors.ResourceInUse("the tags of this resource changed concurrently; retry") from None
