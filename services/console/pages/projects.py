"""Projects: the list (create, delete by typing the name) and one project's
overview (its datasets' statistics and its model versions)."""
from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from customlabels import errors

from services.console.calls import Calls, project_name, version_name
from services.console.views import Views


class ProjectPages:
    def __init__(self, calls: Calls, views: Views):
        self.calls = calls
        self.views = views

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/projects", self.index, name="projects"),
            web.post("/projects", self.create),
            web.get("/projects/{project}", self.overview, name="project"),
            web.get("/projects/{project}/status.json", self.status),
            web.post("/projects/{project}/delete", self.delete),
        ]

    async def index(self, request: web.Request, *, problem: str | None = None, typed: str = "") -> web.Response:
        projects = sorted(await self.calls.projects(), key=lambda p: p["CreationTimestamp"], reverse=True)
        latest = await asyncio.gather(*(self._latest_version(p["ProjectArn"]) for p in projects))
        rows = [
            {
                "name": project_name(p["ProjectArn"]),
                "created": p["CreationTimestamp"],
                "status": p["Status"],
                "datasets": sorted(d["DatasetType"].lower() for d in p.get("Datasets", [])),
                "model": model,
            }
            for p, model in zip(projects, latest)
        ]
        return self.views.render(request, "projects.html", projects=rows, problem=problem, typed=typed,
                                 status=400 if problem else 200)

    async def _latest_version(self, project_arn: str) -> dict[str, Any] | None:
        try:
            versions = await self.calls.versions(project_arn, limit=1)
        except errors.ApiError:
            return None
        if not versions:
            return None
        return {"name": version_name(versions[0]["ProjectVersionArn"]), "status": versions[0]["Status"]}

    async def create(self, request: web.Request) -> web.Response:
        form = await request.post()
        name = str(form.get("name", "")).strip()
        if not name:
            return await self.index(request, problem="Enter a project name.")
        try:
            await self.calls.router.call("CreateProject", {"ProjectName": name})
        except errors.ApiError as error:
            return await self.index(request, problem=f"{error.code}: {error.message}", typed=name)
        raise web.HTTPSeeOther(f"/console/projects/{name}")

    async def overview(self, request: web.Request) -> web.Response:
        project = await self.calls.project(request.match_info["project"])
        return self.views.render(request, "project.html", **await self._state(project))

    async def status(self, request: web.Request) -> web.Response:
        """What the overview shows, as JSON, for its polling script."""
        project = await self.calls.project(request.match_info["project"])
        state = await self._state(project)
        return web.json_response({
            "datasets": {kind: d and {"status": d["status"], "message": d["message"], "stats": d["stats"]}
                         for kind, d in state["datasets"].items()},
            "versions": [{**v, "created": v["created"].isoformat()} for v in state["versions"]],
        })

    async def _state(self, project: dict[str, Any]) -> dict[str, Any]:
        datasets: dict[str, Any] = {}
        for kind in ("train", "test"):
            arn = self.calls.dataset_arn(project, kind)
            if arn is None:
                datasets[kind] = None
                continue
            description = await self.calls.describe_dataset(arn)
            datasets[kind] = {
                "status": description["Status"],
                "message": description.get("StatusMessage") or "",
                "stats": description.get("DatasetStats") or {},
            }
        versions = [
            {
                "name": version_name(v["ProjectVersionArn"]),
                "status": v["Status"],
                "message": v.get("StatusMessage") or "",
                "f1": (v.get("EvaluationResult") or {}).get("F1Score"),
                "created": v["CreationTimestamp"],
            }
            for v in await self.calls.versions(project["ProjectArn"])
        ]
        return {"project": project, "name": project_name(project["ProjectArn"]), "datasets": datasets, "versions": versions}

    async def delete(self, request: web.Request) -> web.Response:
        name = request.match_info["project"]
        form = await request.post()
        if form.get("confirm") != name:
            return await self.index(request, problem=f"To delete {name}, type its name exactly.")
        project = await self.calls.project(name)
        try:
            await self.calls.router.call("DeleteProject", {"ProjectArn": project["ProjectArn"]})
        except errors.ApiError as error:
            return await self.index(request, problem=f"{error.code}: {error.message}")
        raise web.HTTPSeeOther("/console/projects")
