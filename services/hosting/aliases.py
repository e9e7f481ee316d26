"""The stable ARN each project's callers keep: hosting answers it with the project's live version.

The ARN is ``Arns.stable(project)`` (``.../project/<name>/version/live/0``):
it passes botocore's ProjectVersionArn pattern, so stock clients call
DetectCustomLabels with it unchanged across promotions. One document per
project in ``aliases`` says where it points; it moves

* to the first version of the project that reaches RUNNING, and to any
  version that reaches RUNNING while the one it points at is not running (a
  user stopped the live version and started another: callers keep an
  answering model);
* on a promotion's AliasSwitchRequested (the feedback service), once the
  version asked for is RUNNING here.

Every move is committed with AliasSwitched (the training service shows the
alias in DescribeProjectVersions, the feedback service learns the live
version from it), in the same commit as the status change that caused it.

On the request path ``resolve`` reads the document at most every
``CACHE_SECONDS`` per alias; the caller re-resolves afresh once when the
version it got is no longer serving (it was stopped after a promotion), so a
switch never shows as an error.
"""
from __future__ import annotations

import logging
import time
from typing import Any

from customlabels import clock, errors
from customlabels.arns import Arns, stable_arn_of
from customlabels.events import AliasSwitched, AliasSwitchRequested
from customlabels.messaging import UnitOfWork
from customlabels.ports.documents import Collection, Put, ScopedStore, stored

log = logging.getLogger("customlabels.hosting")

ALIASES = "aliases"
COLLECTION = Collection(ALIASES)
CACHE_SECONDS = 1.0


class Aliases:
    def __init__(self, store: ScopedStore, arns: Arns, versions: str):
        """``versions``: the hosting collection with each version's status."""
        self.store = store
        self.arns = arns
        self.versions = versions
        self._cache: dict[str, tuple[float, str | None]] = {}

    def stable_arn(self, project_arn: str) -> str:
        return stable_arn_of(project_arn)

    async def resolve(self, arn: str, *, fresh: bool = False) -> str | None:
        """The version a stable ARN points at; None for any other ARN. ResourceNotFound for a
        project none of whose versions has run yet."""
        parsed = self.arns.parse(arn)
        if parsed is None or not parsed.stable:
            return None
        cached = self._cache.get(arn)
        if cached is None or fresh or time.monotonic() - cached[0] > CACHE_SECONDS:
            doc = await self.store.get(ALIASES, arn)
            cached = (time.monotonic(), doc["version_arn"] if doc else None)
            self._cache[arn] = cached
        if cached[1] is None:
            raise errors.ResourceNotFound(
                f"{arn} is the stable ARN of project {parsed.project_name}, and none of its versions has run yet: "
                "start one with StartProjectVersion")
        return cached[1]

    async def follow_running(self, version: dict[str, Any], uow: UnitOfWork) -> None:
        """In the commit that moves ``version`` to RUNNING: point the alias at it if nothing else answers."""
        alias_arn = self.stable_arn(version["project_arn"])
        current = await self.store.get(ALIASES, alias_arn)
        if current is not None:
            if current["version_arn"] == version["_id"]:
                return
            target = await self.store.get(self.versions, current["version_arn"])
            if target is not None and target.get("status") == "RUNNING":
                return
        self._point(uow, current, alias_arn, version["project_arn"], version["_id"])

    async def on_switch_requested(self, event: AliasSwitchRequested, uow: UnitOfWork) -> None:
        target = await self.store.get(self.versions, event.version_arn)
        if target is None or target.get("status") != "RUNNING":
            log.warning("alias switch to %s refused: the version is %s here, not RUNNING (the feedback service asks again)",
                        event.version_arn, (target or {}).get("status"))
            return
        alias_arn = self.stable_arn(event.project_arn)
        self._point(uow, await self.store.get(ALIASES, alias_arn), alias_arn, event.project_arn, event.version_arn)

    def _point(self, uow: UnitOfWork, current: dict[str, Any] | None, alias_arn: str, project_arn: str, version_arn: str) -> None:
        doc = {**(stored(current) if current else {"_id": alias_arn}), "project_arn": project_arn,
               "version_arn": version_arn, "switched_at": clock.now().isoformat()}
        uow.add(Put(ALIASES, doc, expected_version=current["_version"] if current else 0))
        uow.emit(AliasSwitched(project_arn=project_arn, alias_arn=alias_arn, version_arn=version_arn,
                               previous_version_arn=current["version_arn"] if current else None))
        self._cache.pop(alias_arn, None)
