"""The feedback service: the loop from served predictions back to a better model.

    PredictionCaptured (hosting)     -> a human loop for the bound flow definition (loops)
    AnswerReviewTask x TaskCount     -> output.json, HumanLoopCompleted, FeedbackAccepted (review, loops)
    FeedbackEntryWritten (datasets)  -> counted toward the project's retraining (retraining)
    N reviewed entries, quiet        -> RetrainingRequested, CreateProjectVersion (retraining)
    challenger TRAINING_COMPLETED    -> compared with the live version, VersionsCompared (comparison)
    verdict allows, auto-promote     -> started, AliasSwitchRequested, stable ARN moved, old one stopped,
                                        VersionPromoted (promotion)
    ImageUploaded (inference bucket) -> DetectCustomLabels on the stable ARN, answer beside the image (inference)

APIs: SageMaker's flow-definition operations, the A2I runtime's human-loop
operations, and the answer API reviewers use (``customlabels-review``). The
``tick`` loop (every TICK_SECONDS) moves retraining and promotions along and
expires loops; each step it takes is committed, so a restarted replica
resumes where the last one stopped.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from customlabels import clock
from customlabels.arns import account_of, project_name_of, stable_arn_of
from customlabels.events import (
    AliasSwitched,
    Event,
    FeedbackEntryWritten,
    ImageUploaded,
    PredictionCaptured,
)
from customlabels.messaging import EventHandler, UnitOfWork
from customlabels.ports.operations import Operations
from customlabels.service import Service

from services.feedback import records
from services.feedback.accounts import AccountScope, record_id
from services.feedback.audit import AuditReports
from services.feedback.comparison import Comparisons
from services.feedback.flows import FlowDefinitions
from services.feedback.inference import InferenceBucket
from services.feedback.loops import Loops
from services.feedback.promotion import Promotions
from services.feedback.retraining import Retraining
from services.feedback.review import ReviewTasks
from services.feedback.versions import VersionApi

log = logging.getLogger("customlabels.feedback")

TICK_SECONDS = 1.0


class FeedbackService(Service):
    name = "feedback"
    collections = records.COLLECTIONS

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        accounts = AccountScope(ctx.settings.region, ctx.settings.account_id)
        versions = VersionApi(ctx.router)
        self.flows = FlowDefinitions(self.store, self.uow, ctx.tokens, accounts, ctx.buckets)
        self.audits = AuditReports(self.store, ctx.blobs, self.flows)
        self.loops = Loops(self.store, self.uow, ctx.blobs, ctx.tokens, self.flows, accounts, ctx.buckets,
                           self.audits.write)
        self.review = ReviewTasks(self.loops, self.project_labels)
        self.retraining = Retraining(self.store, self.uow, versions, Comparisons(ctx.blobs))
        self.promotions = Promotions(self.store, self.uow, versions, self.stable_arn)
        self.inference = InferenceBucket(ctx.router, ctx.blobs, ctx.buckets, ctx.settings.region)
        self._ticker: asyncio.Task | None = None

    def operations(self) -> Operations:
        return {
            # sagemaker (JSON 1.1)
            "CreateFlowDefinition": self.flows.create,
            "DescribeFlowDefinition": self.flows.describe,
            "ListFlowDefinitions": self.flows.list,
            "DeleteFlowDefinition": self.flows.delete,
            # sagemaker-a2i-runtime (REST-JSON)
            "StartHumanLoop": self.loops.start,
            "DescribeHumanLoop": self.loops.describe,
            "ListHumanLoops": self.loops.list,
            "StopHumanLoop": self.loops.stop,
            "DeleteHumanLoop": self.loops.delete,
            # customlabels-review
            "ListReviewTasks": self.review.list_tasks,
            "GetReviewTask": self.review.get_task,
            "AnswerReviewTask": self.review.answer,
        }

    def handlers(self) -> Mapping[type[Event], EventHandler]:
        return {
            PredictionCaptured: self.loops.on_prediction_captured,
            FeedbackEntryWritten: self.on_entry_written,
            AliasSwitched: self.on_alias_switched,
            ImageUploaded: self.inference.on_image_uploaded,
        }

    async def start(self) -> None:
        await super().start()
        self._ticker = asyncio.create_task(self._tick_loop(), name="feedback-tick")

    async def stop(self) -> None:
        if self._ticker:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
        await super().stop()

    # --- events ---------------------------------------------------------------------------
    async def on_entry_written(self, event: FeedbackEntryWritten, uow: UnitOfWork) -> None:
        await self.retraining.on_entry_written(event, uow)
        loop_id = record_id(account_of(event.project_arn) or self.ctx.settings.account_id, event.human_loop_name)
        await self.loops.on_entry_written(loop_id, {
            "written": event.written, "reason": event.reason, "source_ref": event.source_ref,
            "dataset_arn": event.dataset_arn})

    async def on_alias_switched(self, event: AliasSwitched, uow: UnitOfWork) -> None:
        await self.retraining.on_alias_switched(event, uow)
        await self.promotions.on_alias_switched(event, uow)

    # --- collaborators' lookups -----------------------------------------------------------
    def stable_arn(self, project_arn: str) -> str:
        return stable_arn_of(project_arn)

    async def project_labels(self, project_arn: str) -> set[str]:
        """The labels of the project's datasets (what a reviewer may answer with)."""
        name = project_name_of(project_arn)
        found = await self.ctx.router.call("DescribeProjects", {"ProjectNames": [name]})
        labels: set[str] = set()
        for project in found.get("ProjectDescriptions", []):
            if project["ProjectArn"] != project_arn:
                continue
            for dataset in project.get("Datasets") or []:
                token = None
                while True:
                    params = {"DatasetArn": dataset["DatasetArn"], **({"NextToken": token} if token else {})}
                    page = await self.ctx.router.call("ListDatasetLabels", params)
                    labels.update(d["LabelName"] for d in page.get("DatasetLabelDescriptions", []))
                    token = page.get("NextToken")
                    if not token:
                        break
        return labels

    # --- the loop that moves things along ----------------------------------------------------
    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            for step in (lambda: self.loops.expire(clock.now_ms()), self.retraining.tick, self.promotions.tick):
                try:
                    await step()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("feedback tick failed; retrying")
