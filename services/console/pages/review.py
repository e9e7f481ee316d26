"""The review queue: the human loops waiting for an answer, one image at a
time, answered with single keys (accept, correct, negative, skip) through
the answer API: ListReviewTasks, GetReviewTask, AnswerReviewTask.

The reviewer (the API's ``WorkerId``) is the name the page sends, or the
signed-in access key when it sends none; ListReviewTasks leaves out what
that reviewer already answered or skipped, so two reviewers see their own
queues of the same loops.
"""
from __future__ import annotations

from typing import Any

from aiohttp import web
from customlabels import errors

from services.console import review
from services.console.calls import Calls, project_name
from services.console.images import Images, object_url
from services.console.pages import read_json
from services.console.views import Views

QUEUE_LIMIT = 500  # tasks listed (and counted) per queue request; more shows as "500+"


class ReviewPages:
    def __init__(self, calls: Calls, views: Views, images: Images):
        self.calls = calls
        self.views = views
        self.images = images

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/review", self.queue, name="review"),
            web.get("/review/tasks.json", self.tasks),
            web.get("/review/tasks/{name}.json", self.task),
            web.post("/review/tasks/{name}/answer", self.answer),
        ]

    async def queue(self, request: web.Request) -> web.Response:
        filters = _filters(request)
        projects = sorted(project_name(p["ProjectArn"]) for p in await self.calls.projects())
        flows = [f["FlowDefinitionName"] for f in await self.calls.flows()]
        return self.views.render(request, "review.html", projects=projects, flows=flows, filters=filters, data={
            "tasks_url": "/console/review/tasks.json", "task_url": "/console/review/tasks/",
            "worker": request["session"].access_key, **filters})

    async def tasks(self, request: web.Request) -> web.Response:
        """The reviewer's queue: JSON {tasks: [{name, project, confidence}], more}."""
        filters = _filters(request)
        found, more = await self.calls.review_tasks(limit=QUEUE_LIMIT, **_list_params(filters, self._worker(request)))
        return web.json_response({"more": more, "tasks": [
            {"name": t["HumanLoopName"], "project": project_name(t["ProjectArn"]) if t.get("ProjectArn") else None,
             "confidence": t.get("TopConfidence")} for t in found]})

    async def task(self, request: web.Request) -> web.Response:
        task = (await self.calls.router.call("GetReviewTask", {"HumanLoopName": request.match_info["name"]}))["ReviewTask"]
        s3 = ((task.get("Image") or {}).get("S3Object")) or {}
        url = None
        if s3:
            ref = f"s3://{s3['Bucket']}/{s3['Name']}"
            version = (await self.images.versions([ref])).get(ref)
            if version:
                url = f"{object_url(s3['Bucket'], s3['Name'])}?v={version}"
        return web.json_response(review.task_view(task, url))

    async def answer(self, request: web.Request) -> web.Response:
        """JSON {verdict, labels | boxes + size, worker, seconds}: AnswerReviewTask."""
        try:
            params = review.answer_params(request.match_info["name"], await read_json(request),
                                         request["session"].access_key)
        except review.AnswerProblem as problem:
            raise errors.InvalidParameter(str(problem)) from None
        answer = await self.calls.router.call("AnswerReviewTask", params)
        return web.json_response({"status": answer["Status"], "answers": answer.get("AnswerCount"),
                                  "task_count": answer.get("TaskCount"), "worker": params["WorkerId"]})

    @staticmethod
    def _worker(request: web.Request) -> str:
        return request.query.get("worker", "").strip() or request["session"].access_key


def _filters(request: web.Request) -> dict[str, str]:
    return {"project": request.query.get("project", "").strip()[:255], "flow": request.query.get("flow", "").strip()[:63]}


def _list_params(filters: dict[str, str], worker: str) -> dict[str, Any]:
    params: dict[str, Any] = {"WorkerId": worker[: review.MAX_WORKER_ID], "Status": "InProgress"}
    if filters["project"]:
        params["ProjectName"] = filters["project"]
    if filters["flow"]:
        params["FlowDefinitionName"] = filters["flow"]
    return params
