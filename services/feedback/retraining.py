"""The retraining policy: reviewed entries in, a new version trained, compared, maybe promoted.

Per project (document in ``projects``):

* ``live_version_arn``: where the project's stable ARN points (AliasSwitched).
* ``reviewed``: source-ref -> when a reviewed answer was written into TRAIN
  (FeedbackEntryWritten); a changed entry counts once. Bulk imports never
  get here, so they never count.
* ``baseline_ms``: entries written before it are spent (trained on by the
  last version feedback requested, or by the live version: its creation time
  counts too).
* ``training``: the version feedback asked for, until it is compared or failed.

Project tags set the policy: ``customlabels:retrain-after-entries`` (N),
``customlabels:retrain-debounce-seconds`` (quiet time after the last entry,
default 5), ``customlabels:max-training-seconds`` (the new version's budget).

``tick`` (called every second) moves each project along: when N entries are
counted, the debounce has passed and no training runs in the project, it
commits RetrainingRequested with the ``training`` record; it then creates the
version through CreateProjectVersion (retried until it is accepted), watches it,
and once it is TRAINING_COMPLETED compares it with the live version
(``comparison``), committing VersionsCompared, the comparison, and a
``promotions`` record when the verdict allows it, in one unit of work. A
killed process resumes from the record: every step is either committed or
redone.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from customlabels import clock, errors, tags
from customlabels.arns import project_name_of
from customlabels.events import (
    AliasSwitched,
    FeedbackEntryWritten,
    ObjectLocation,
    RetrainingRequested,
    VersionsCompared,
)
from customlabels.messaging import UnitOfWork
from customlabels.ports.documents import (
    Insert,
    Put,
    ScopedStore,
    VersionConflict,
    stored,
)

from services.feedback.comparison import Comparisons
from services.feedback.records import COMPARISONS, PROJECTS, PROMOTIONS
from services.feedback.versions import VersionApi, created_ms

log = logging.getLogger("customlabels.feedback")

AFTER_ENTRIES_TAG = tags.RETRAIN_AFTER_ENTRIES
DEBOUNCE_TAG = tags.RETRAIN_DEBOUNCE_SECONDS
BUDGET_TAG = tags.MAX_TRAINING_SECONDS
DEFAULT_DEBOUNCE_SECONDS = 5.0
DEFAULT_OUTPUT = {"S3Bucket": "customlabels-output"}


def new_project(project_arn: str) -> dict[str, Any]:
    return {"_id": project_arn, "live_version_arn": None, "alias_arn": None, "reviewed": {}, "last_entry_ms": 0,
            "baseline_ms": 0, "training": None, "last_failure": None}


def pending_entries(doc: dict[str, Any]) -> int:
    """Reviewed TRAIN entries written since the live version and the last requested training."""
    since = max(doc["baseline_ms"], created_ms(doc["live_version_arn"]) if doc.get("live_version_arn") else 0)
    return sum(1 for ms in doc["reviewed"].values() if ms > since)


class Retraining:
    def __init__(self, store: ScopedStore, uow: Callable[[], UnitOfWork], versions: VersionApi, comparisons: Comparisons):
        self.store = store
        self.uow = uow
        self.versions = versions
        self.comparisons = comparisons

    # --- events ---------------------------------------------------------------------------
    async def on_entry_written(self, event: FeedbackEntryWritten, uow: UnitOfWork) -> None:
        if not event.written:
            return
        doc = await self.store.get(PROJECTS, event.project_arn) or new_project(event.project_arn)
        now = clock.now_ms()
        doc["reviewed"][event.source_ref] = now
        doc["last_entry_ms"] = now
        uow.add(Put(PROJECTS, stored(doc), expected_version=doc.get("_version", 0)))

    async def on_alias_switched(self, event: AliasSwitched, uow: UnitOfWork) -> None:
        doc = await self.store.get(PROJECTS, event.project_arn) or new_project(event.project_arn)
        doc.update(live_version_arn=event.version_arn, alias_arn=event.alias_arn)
        uow.add(Put(PROJECTS, stored(doc), expected_version=doc.get("_version", 0)))

    # --- the policy, moved along ------------------------------------------------------------
    async def tick(self) -> None:
        cursor = None
        while True:
            page = await self.store.find(PROJECTS, [], limit=100, after=cursor)
            for doc in page.items:
                try:
                    await self.step(doc)
                except VersionConflict:
                    pass  # changed meanwhile: the next tick sees it
                except Exception:
                    log.exception("retraining step for %s failed; retrying", doc["_id"])
            cursor = page.next_cursor
            if cursor is None:
                return

    async def step(self, doc: dict[str, Any]) -> None:
        if doc.get("training"):
            await self._follow(doc)
            return
        count = pending_entries(doc)
        if count == 0:
            return
        project_tags = await self.versions.tags(doc["_id"])
        wanted = _positive_int(project_tags.get(AFTER_ENTRIES_TAG))
        if wanted is None or count < wanted:
            return
        debounce = _seconds(project_tags.get(DEBOUNCE_TAG), DEFAULT_DEBOUNCE_SECONDS)
        now = clock.now_ms()
        if now - doc["last_entry_ms"] < debounce * 1000:
            return
        if await self.versions.training_in_progress(doc["_id"]):
            return
        name = f"feedback-{now}"
        reason = (f"{count} human-reviewed TRAIN entries since the live version "
                  f"(tag {AFTER_ENTRIES_TAG} = {wanted})")
        doc["training"] = {"version_name": name, "version_arn": None, "requested_ms": now, "reason": reason,
                           "entries": count}
        uow = self.uow()
        uow.add(Put(PROJECTS, stored(doc), expected_version=doc["_version"]))
        uow.emit(RetrainingRequested(project_arn=doc["_id"], version_name=name, reason=reason, reviewed_entries=count,
                                     live_version_arn=doc.get("live_version_arn")))
        await uow.commit()

    async def _follow(self, doc: dict[str, Any]) -> None:
        training = doc["training"]
        project_arn = doc["_id"]
        if training["version_arn"] is None:
            project_tags = await self.versions.tags(project_arn)
            output = await self._output_config(doc)
            version_tags = {BUDGET_TAG: project_tags[BUDGET_TAG]} if BUDGET_TAG in project_tags else {}
            version_tags[tags.REQUESTED_BY] = "feedback"
            try:
                training["version_arn"] = await self.versions.create(project_arn, training["version_name"], output, version_tags)
            except errors.ResourceInUse:
                return  # a dataset is busy: next tick
            except errors.ApiError as refused:
                await self._give_up(doc, f"CreateProjectVersion refused: {refused.message}")
                return
            await self._save(doc)
            return
        description = await self.versions.describe(project_arn, training["version_arn"])
        if description is None:
            await self._give_up(doc, f"version {training['version_arn']} was deleted before it was compared")
        elif description["Status"] == "TRAINING_FAILED":
            await self._give_up(doc, f"version {training['version_arn']} failed: {description.get('StatusMessage')}")
        elif description["Status"] == "TRAINING_COMPLETED":
            await self._compare(doc, description)

    async def _compare(self, doc: dict[str, Any], challenger: dict[str, Any]) -> None:
        project_arn, live_arn = doc["_id"], doc.get("live_version_arn")
        challenger_arn = challenger["ProjectVersionArn"]
        done_training = {**doc["training"], "finished_ms": clock.now_ms()}
        doc.update(training=None, baseline_ms=max(doc["baseline_ms"], created_ms(challenger_arn)), last_training=done_training)
        doc["reviewed"] = {ref: ms for ref, ms in doc["reviewed"].items() if ms > doc["baseline_ms"]}
        uow = self.uow()
        uow.add(Put(PROJECTS, stored(doc), expected_version=doc["_version"]))
        if live_arn is None or live_arn == challenger_arn:
            log.info("version %s trained; the project has no live version to compare it with", challenger_arn)
            await uow.commit()
            return
        project_tags = await self.versions.tags(project_arn)
        report = await self.comparisons.compare(project_arn=project_arn, live_arn=live_arn, challenger=challenger,
                                                project_tags=project_tags)
        location = ObjectLocation(**report["Report"])
        uow.add(Insert(COMPARISONS, {"_id": challenger_arn, "project_arn": project_arn, "created_ms": clock.now_ms(),
                                     "live_version_arn": live_arn, "verdict": report["Verdict"], "promote": report["Promote"],
                                     "reason": report["Reason"], "report": report["Report"]}))
        uow.emit(VersionsCompared(project_arn=project_arn, live_version_arn=live_arn, challenger_version_arn=challenger_arn,
                                  verdict=report["Verdict"], promote=report["Promote"], reason=report["Reason"], report=location))
        if report["Promote"]:
            live = await self.versions.describe(project_arn, live_arn) or {}
            uow.add(Insert(PROMOTIONS, {
                "_id": challenger_arn, "project_arn": project_arn, "state": "starting", "live_version_arn": live_arn,
                "alias_arn": doc.get("alias_arn"), "min_units": live.get("MinInferenceUnits") or 1,
                "max_units": live.get("MaxInferenceUnits"), "report": report["Report"], "created_ms": clock.now_ms()}))
        await uow.commit()

    async def _give_up(self, doc: dict[str, Any], reason: str) -> None:
        log.warning("retraining of %s: %s", doc["_id"], reason)
        # New reviewed entries are needed before the next try, so a failing setup does not retrain in a loop.
        doc.update(training=None, last_failure={"at_ms": clock.now_ms(), "reason": reason}, baseline_ms=clock.now_ms())
        await self._save(doc)

    async def _save(self, doc: dict[str, Any]) -> None:
        uow = self.uow()
        uow.add(Put(PROJECTS, stored(doc), expected_version=doc["_version"]))
        await uow.commit()

    async def _output_config(self, doc: dict[str, Any]) -> dict[str, Any]:
        """The live version's OutputConfig, so the new version's files land beside its predecessor's."""
        if doc.get("live_version_arn"):
            live = await self.versions.describe(doc["_id"], doc["live_version_arn"])
            if live and live.get("OutputConfig"):
                return live["OutputConfig"]
        project_name = project_name_of(doc["_id"])
        return {**DEFAULT_OUTPUT, "S3KeyPrefix": f"{project_name}/"}


def _positive_int(raw: str | None) -> int | None:
    if raw is None or not raw.strip().isdigit() or int(raw) < 1:
        return None
    return int(raw)


def _seconds(raw: str | None, default: float) -> float:
    try:
        value = float(raw) if raw is not None else default
    except ValueError:
        return default
    return value if value >= 0 else default
