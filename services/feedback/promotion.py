"""Promotion: the challenger takes over the stable ARN, then the version it replaces stops.

A ``promotions`` record per challenger, moved along by ``tick``:

    starting   StartProjectVersion(challenger, the live version's units); once it is RUNNING,
               AliasSwitchRequested (hosting points the stable ARN at it)   -> switching
    switching  waits for hosting's AliasSwitched (asks again every RESEND_SECONDS) -> stopping
    stopping   after SWITCH_GRACE_SECONDS (requests already routed to the old version finish,
               every hosting replica has re-read the alias), StopProjectVersion(old), VersionPromoted -> done
    failed     the challenger could not start: the stable ARN never moved, nothing else changed

Callers of the stable ARN see no error: it points at a RUNNING version at every
moment, and the old one stops only after the switch.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from customlabels import clock
from customlabels.events import (
    AliasSwitched,
    AliasSwitchRequested,
    ObjectLocation,
    VersionPromoted,
)
from customlabels.messaging import UnitOfWork
from customlabels.ports.documents import Eq, Put, ScopedStore, VersionConflict, stored

from services.feedback.records import PROMOTIONS
from services.feedback.versions import VersionApi

log = logging.getLogger("customlabels.feedback")

RESEND_SECONDS = 10.0
SWITCH_GRACE_SECONDS = 2.0
ACTIVE = ("starting", "switching", "stopping")


class Promotions:
    def __init__(self, store: ScopedStore, uow: Callable[[], UnitOfWork], versions: VersionApi, stable_arn: Callable[[str], str]):
        """``stable_arn(project_arn)``: the project's stable ARN."""
        self.store = store
        self.uow = uow
        self.versions = versions
        self.stable_arn = stable_arn

    async def on_alias_switched(self, event: AliasSwitched, uow: UnitOfWork) -> None:
        doc = await self.store.get(PROMOTIONS, event.version_arn)
        if doc is not None and doc["state"] == "switching":
            doc.update(state="stopping", switched_ms=clock.now_ms())
            uow.add(Put(PROMOTIONS, stored(doc), expected_version=doc["_version"]))

    async def tick(self) -> None:
        for state in ACTIVE:
            page = await self.store.find(PROMOTIONS, [Eq("state", state)], limit=100)
            for doc in page.items:
                try:
                    await self.step(doc)
                except VersionConflict:
                    pass
                except Exception:
                    log.exception("promotion of %s failed a step; retrying", doc["_id"])

    async def step(self, doc: dict[str, Any]) -> None:
        now = clock.now_ms()
        project_arn, challenger = doc["project_arn"], doc["_id"]
        alias = doc.get("alias_arn") or self.stable_arn(project_arn)
        if doc["state"] == "starting":
            description = await self.versions.describe(project_arn, challenger)
            status = (description or {}).get("Status")
            if status == "RUNNING":
                doc.update(state="switching", requested_ms=now, alias_arn=alias)
                await self._save(doc, AliasSwitchRequested(project_arn=project_arn, alias_arn=alias, version_arn=challenger))
            elif status in ("TRAINING_COMPLETED", "STOPPED"):
                await self.versions.start(challenger, doc["min_units"], doc.get("max_units"))
            elif status not in ("STARTING",):
                doc.update(state="failed", failure=f"the challenger is {status or 'gone'}: the live version stays")
                await self._save(doc)
        elif doc["state"] == "switching":
            if now - doc["requested_ms"] > RESEND_SECONDS * 1000:
                doc["requested_ms"] = now
                await self._save(doc, AliasSwitchRequested(project_arn=project_arn, alias_arn=alias, version_arn=challenger))
        elif doc["state"] == "stopping" and now - doc["switched_ms"] >= SWITCH_GRACE_SECONDS * 1000:
            await self.versions.stop(doc["live_version_arn"])
            doc.update(state="done", done_ms=now)
            await self._save(doc, VersionPromoted(
                project_arn=project_arn, alias_arn=alias, version_arn=challenger, previous_version_arn=doc["live_version_arn"],
                report=ObjectLocation(**doc["report"]) if doc.get("report") else None))

    async def _save(self, doc: dict[str, Any], *events) -> None:
        uow = self.uow()
        uow.add(Put(PROMOTIONS, stored(doc), expected_version=doc["_version"]))
        uow.emit(*events)
        await uow.commit()
