"""A project's stable ARN as DescribeProjectVersions shows it.

Hosting owns the alias (where ``.../version/live/0`` points) and says so
with AliasSwitched; this read model keeps the latest per project. Asked by
name (``VersionNames=["live"]``), DescribeProjectVersions lists the stable
ARN as an item of its own: ``ProjectVersionArn`` is the stable ARN,
``SourceProjectVersionArn`` the version it answers with, and the rest is that
version's description (status, evaluation, units), so a stock client sees
where its ARN points. Listing every version leaves it out: it is not a version
(it cannot be deleted, copied or trained).
"""
from __future__ import annotations

from typing import Any, Callable

from customlabels.arns import STABLE_VERSION_NAME
from customlabels.events import AliasSwitched
from customlabels.messaging import UnitOfWork
from customlabels.ports.documents import Collection, Put, ScopedStore

ALIASES = "aliases"
COLLECTION = Collection(ALIASES)


class AliasView:
    def __init__(self, store: ScopedStore, versions: str, describe: Callable[[dict], dict[str, Any]]):
        """``versions``: training's version collection; ``describe``: a version document as the API shows it."""
        self.store = store
        self.versions = versions
        self.describe_version = describe

    async def on_alias_switched(self, event: AliasSwitched, uow: UnitOfWork) -> None:
        uow.add(Put(ALIASES, {"_id": event.project_arn, "alias_arn": event.alias_arn, "version_arn": event.version_arn}))

    async def describe(self, project_arn: str, names: list[str]) -> list[dict[str, Any]]:
        """The stable ARN's item, when ``names`` asks for it and a version has run."""
        if STABLE_VERSION_NAME not in names:
            return []
        alias = await self.store.get(ALIASES, project_arn)
        target = await self.store.get(self.versions, alias["version_arn"]) if alias else None
        if target is None:
            return []
        item = self.describe_version(target)
        item.update(ProjectVersionArn=alias["alias_arn"], SourceProjectVersionArn=target["_id"],
                    StatusMessage=f"The project's stable ARN: it answers with {target['_id']} ({target['status']}).")
        return [item]
