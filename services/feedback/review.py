"""The answer API (``customlabels-review``): what reviewers and the console's review queue call.

* ListReviewTasks: the loops waiting for answers, of a project (by name) or a
  flow definition, least confident first; ``WorkerId`` leaves out the ones
  that reviewer already answered or skipped.
* GetReviewTask: one loop as a reviewer's screen needs it: the image's
  location and size, the model's predictions and thresholds, the labels to
  choose from, the answers so far.
* AnswerReviewTask: ACCEPT, CORRECT, NEGATIVE or SKIP (``answers``), by
  ``WorkerId`` (one answer per reviewer and loop; when omitted, the access key
  that signed the request, or ``anonymous`` where none did).

Each reaches only the loops of the caller's account (``accounts``).

Refused, with nothing changed: labels outside the project, boxes outside
the image (ValidationException); a loop that is not in progress, or a second
answer from the same reviewer (ConflictException).
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from customlabels import clock, errors
from customlabels.ports.documents import Eq, VersionConflict
from customlabels.wire.dispatch import current_caller

from services.feedback import paging
from services.feedback.answers import check_answer
from services.feedback.loops import Loops
from services.feedback.records import (
    IN_PROGRESS,
    LOOPS,
    SKIP,
    task_description,
    task_summary,
)

DEFAULT_PAGE = 50
ANONYMOUS = "anonymous"  # the reviewer of an answer given without WorkerId, where no key signed the request
ATTEMPTS = 5


class ReviewTasks:
    def __init__(self, loops: Loops, project_labels: Callable[[str], Awaitable[set[str]]]):
        """``project_labels(project_arn)``: the labels of the project's datasets."""
        self.loops = loops
        self.store = loops.store
        self.tokens = loops.tokens
        self.project_labels = project_labels

    async def list_tasks(self, req: dict[str, Any]) -> dict[str, Any]:
        status = req.get("Status", IN_PROGRESS)
        project, flow_name, worker = req.get("ProjectName"), req.get("FlowDefinitionName"), req.get("WorkerId")
        account = self.loops.accounts.current()
        flow_arn = (await self.loops.flows.get(flow_name))["arn"] if flow_name else None
        if project:
            where, order = [Eq("account", account), Eq("project_name", project), Eq("status", status)], ("priority",)
        elif flow_arn:
            where, order = [Eq("flow_arn", flow_arn), Eq("status", status)], ("priority",)
        else:
            where, order = [Eq("account", account), Eq("status", status)], ("created_ms",)

        def keep(doc: dict[str, Any]) -> bool:
            if project and flow_arn and doc["flow_arn"] != flow_arn:
                return False
            return worker is None or worker not in {a["worker_id"] for a in (*doc["answers"], *doc.get("skips", []))}

        scope = ["ListReviewTasks", account, project, flow_arn, status, worker]
        docs, token = await paging.page(self.store, self.tokens, LOOPS, where, order_by=order, descending=False,
                                         limit=req.get("MaxResults", DEFAULT_PAGE), token=req.get("NextToken"),
                                         scope=scope, keep=keep)
        return {"ReviewTasks": [task_summary(d) for d in docs], "NextToken": token}

    async def get_task(self, req: dict[str, Any]) -> dict[str, Any]:
        doc = await self.loops.get(req["HumanLoopName"])
        if doc["status"] == IN_PROGRESS and doc.get("project_arn"):
            doc["allowed_labels"] = sorted(set(doc.get("labels") or []) | await self.project_labels(doc["project_arn"]))
        return {"ReviewTask": task_description(doc)}

    async def answer(self, req: dict[str, Any]) -> dict[str, Any]:
        caller = current_caller()
        name, worker = req["HumanLoopName"], req.get("WorkerId") or (caller.access_key if caller else ANONYMOUS)
        for _ in range(ATTEMPTS):
            doc = await self.loops.get(name)
            if doc["status"] != IN_PROGRESS:
                raise errors.Conflict(f"human loop {name} is {doc['status']}: it takes no more answers")
            if worker in {a["worker_id"] for a in doc["answers"]}:
                raise errors.Conflict(f"{worker} has already answered human loop {name}")
            labels = set(doc.get("labels") or [])
            if doc.get("project_arn"):
                labels |= await self.project_labels(doc["project_arn"])
            answer = check_answer(req, task=doc.get("task"), labels=labels)
            now = clock.now_ms()
            seconds = req.get("TimeSpentInSeconds")
            if answer["kind"] == SKIP:
                doc["skips"] = [*doc.get("skips", []), {"worker_id": worker, "at_ms": now}]
            else:
                doc["answers"] = [*doc["answers"], {**answer, "worker_id": worker, "submitted_ms": now,
                                                    "accepted_ms": now - int((seconds or 0) * 1000), "seconds": seconds,
                                                    "comment": req.get("Comment")}]
            try:
                if len(doc["answers"]) >= doc["task_count"]:
                    await self.loops.complete(doc)
                else:
                    await self.loops.save(doc)
            except (VersionConflict, errors.Conflict):
                continue  # another answer landed first: decide again on a fresh read
            return {"Status": doc["status"], "AnswerCount": len(doc["answers"]), "TaskCount": doc["task_count"]}
        raise errors.Conflict(f"human loop {name} kept changing while this answer was taken; try again")
