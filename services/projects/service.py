"""The projects service: projects, their policies and every resource's tags.

It keeps a read model of each project's datasets and model versions, fed by
the datasets and training services' events, so DescribeProjects can list a
project's datasets and DeleteProject can refuse while versions exist, without
reading anyone else's collections.
"""
from __future__ import annotations

from typing import Any, Mapping

from customlabels import clock, errors
from customlabels.events import (
    DatasetCreated,
    DatasetDeleted,
    DatasetStatusChanged,
    Event,
    ProjectCreated,
    ProjectDeleted,
    VersionCreated,
    VersionDeleted,
)
from customlabels.messaging import EventHandler, UnitOfWork
from customlabels.ports.documents import Delete, DuplicateKey, Eq, Insert, Put
from customlabels.ports.operations import Operations
from customlabels.service import Service
from customlabels.wire.dispatch import current_account

from services.projects.policies import Policies
from services.projects.records import (
    COLLECTIONS,
    LEGACY_PROJECTS,
    POLICIES,
    PROJECTS,
    TAGS,
    legacy_moved,
    new_project,
    project_description,
    tag_writes,
    untag_all_writes,
)
from services.projects.tags import Tags


class ProjectsService(Service):
    name = "projects"
    collections = COLLECTIONS

    def __init__(self, ctx):
        super().__init__(ctx)
        self.tags = Tags(self.store)
        self.policies = Policies(self.store, ctx.tokens, find_project=self.project)

    def operations(self) -> Operations:
        return {
            "CreateProject": self.create_project,
            "DescribeProjects": self.describe_projects,
            "DeleteProject": self.delete_project,
            **self.tags.operations(),
            **self.policies.operations(),
        }

    async def start(self) -> None:
        await super().start()
        await self._move_legacy_projects()

    async def _move_legacy_projects(self) -> None:
        """Projects stored before accounts existed move to the per-account collection, one commit
        each (a crash halfway leaves each either moved or not; a second move is a no-op)."""
        while page := (await self.store.find(LEGACY_PROJECTS, limit=100)).items:
            for project in page:
                writes = [Delete(LEGACY_PROJECTS, project["_id"])]
                if await self.store.get(PROJECTS, project["_id"]) is None:
                    writes.insert(0, Insert(PROJECTS, legacy_moved(project)))
                await self.store.commit(writes)

    def handlers(self) -> Mapping[type[Event], EventHandler]:
        return {
            DatasetCreated: self.on_dataset_created,
            DatasetStatusChanged: self.on_dataset_status_changed,
            DatasetDeleted: self.on_dataset_deleted,
            VersionCreated: self.on_version_created,
            VersionDeleted: self.on_version_deleted,
        }

    # --- lookups ---------------------------------------------------------
    async def project(self, arn: str) -> dict[str, Any]:
        """The project named by ``arn``, or ResourceNotFoundException."""
        doc = await self.store.get(PROJECTS, arn)
        if doc is None:
            raise errors.ResourceNotFound(f"project {arn} does not exist")
        return doc

    async def _removal(self, project: dict[str, Any]) -> list:
        """Writes that remove a project with its policies and tags."""
        writes: list = [Delete(PROJECTS, project["_id"], expected_version=project["_version"])]
        for collection in (POLICIES, TAGS):
            page = await self.store.find(collection, [Eq("project_arn", project["_id"])], limit=1000)
            writes += [Delete(collection, doc["_id"]) for doc in page.items]
        return writes

    # --- operations ----------------------------------------------------------
    async def create_project(self, req: dict[str, Any]) -> dict[str, Any]:
        name = req["ProjectName"]
        if req.get("Feature", "CUSTOM_LABELS") != "CUSTOM_LABELS":
            raise errors.InvalidParameter("customlabels serves CUSTOM_LABELS projects only; omit Feature")
        created = clock.now()
        arn = self.ctx.arns.project(name, int(created.timestamp() * 1000))
        project = new_project(arn, name, created, req.get("AutoUpdate"))
        uow = self.uow()
        uow.add(Insert(PROJECTS, project), *tag_writes(arn, arn, req.get("Tags") or {}))
        uow.emit(ProjectCreated(project_arn=arn, project_name=name))
        try:
            await uow.commit()
        except DuplicateKey:
            raise errors.ResourceInUse(f"a project named {name!r} already exists") from None
        return {"ProjectArn": arn}

    async def describe_projects(self, req: dict[str, Any]) -> dict[str, Any]:
        names = req.get("ProjectNames")
        features = req.get("Features")
        if features and "CUSTOM_LABELS" not in features:
            return {"ProjectDescriptions": []}
        # The caller's account: nobody sees another account's projects. A service's own work (no
        # caller) looks projects up by name across accounts, and picks the one by its ARN.
        account = current_account()
        in_account = [Eq("account", account)] if account else []
        scope = ["DescribeProjects", account, sorted(names or [])]
        if names:
            # At most 10 names: look each up on the unique (account, name) index.
            found = []
            for name in sorted(set(names)):
                page = await self.store.find(PROJECTS, [*in_account, Eq("name", name)], limit=100)
                found.extend(page.items)
            found.sort(key=lambda p: p["created_ms"], reverse=True)
            return {"ProjectDescriptions": [project_description(p) for p in found]}
        page = await self.store.find(
            PROJECTS,
            in_account,
            order_by=("created_ms",),
            descending=True,
            limit=req.get("MaxResults", 100),
            after=self.ctx.tokens.decode(req.get("NextToken"), scope),
        )
        return {
            "ProjectDescriptions": [project_description(p) for p in page.items],
            "NextToken": self.ctx.tokens.encode(page.next_cursor, scope),
        }

    async def delete_project(self, req: dict[str, Any]) -> dict[str, Any]:
        project = await self.project(req["ProjectArn"])
        versions = len(project["versions"])
        if not versions:
            # The read model learns of a new version from an event: ask its owner, so a
            # version created a moment ago is not left behind without its project.
            found = await self.ctx.router.call("DescribeProjectVersions", {"ProjectArn": project["_id"], "MaxResults": 1})
            versions = len(found["ProjectVersionDescriptions"])
        if versions:
            raise errors.ResourceInUse(
                f"project {project['_id']} still has model versions: delete them with DeleteProjectVersion first"
            )
        uow = self.uow()
        if project["status"] != "DELETING":
            uow.emit(ProjectDeleted(project_arn=project["_id"], project_name=project["name"]))
        if project["datasets"]:
            # The datasets service deletes them; the last DatasetDeleted removes the project.
            project["status"] = "DELETING"
            uow.add(Put(PROJECTS, project, expected_version=project["_version"]))
        else:
            uow.add(*await self._removal(project))
        await uow.commit()
        return {"Status": "DELETING"}

    # --- read model of datasets and versions -----------------------------------
    async def _update_project(self, event: Event, uow: UnitOfWork, change) -> None:
        project = await self.store.get(PROJECTS, event.project_arn)
        if project is None:
            return  # the project is gone; nothing to keep in step
        change(project)
        if project["status"] == "DELETING" and not project["datasets"]:
            uow.add(*await self._removal(project))
        else:
            uow.add(Put(PROJECTS, project, expected_version=project["_version"]))

    async def on_dataset_created(self, event: DatasetCreated, uow: UnitOfWork) -> None:
        def change(project):
            project["datasets"][event.dataset_type] = {
                "arn": event.dataset_arn,
                "created_at": event.created_at.isoformat(),
                "status": event.status,
            }

        uow.add(*tag_writes(event.dataset_arn, event.project_arn, event.tags))
        await self._update_project(event, uow, change)

    async def on_dataset_status_changed(self, event: DatasetStatusChanged, uow: UnitOfWork) -> None:
        def change(project):
            for dataset in project["datasets"].values():
                if dataset["arn"] == event.dataset_arn:
                    dataset.update(
                        status=event.status,
                        status_message=event.status_message,
                        status_message_code=event.status_message_code,
                    )

        await self._update_project(event, uow, change)

    async def on_dataset_deleted(self, event: DatasetDeleted, uow: UnitOfWork) -> None:
        def change(project):
            project["datasets"] = {t: d for t, d in project["datasets"].items() if d["arn"] != event.dataset_arn}

        uow.add(*untag_all_writes(event.dataset_arn))
        await self._update_project(event, uow, change)

    async def on_version_created(self, event: VersionCreated, uow: UnitOfWork) -> None:
        def change(project):
            if event.version_arn not in project["versions"]:
                project["versions"].append(event.version_arn)

        uow.add(*tag_writes(event.version_arn, event.project_arn, event.tags))
        await self._update_project(event, uow, change)

    async def on_version_deleted(self, event: VersionDeleted, uow: UnitOfWork) -> None:
        def change(project):
            project["versions"] = [v for v in project["versions"] if v != event.version_arn]

        uow.add(*untag_all_writes(event.version_arn))
        await self._update_project(event, uow, change)

