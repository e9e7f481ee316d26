"""Flow definitions: which predictions go to human review. List them, create
one with the condition builder and caps (CreateFlowDefinition), bind it to a
project (the tag ``customlabels:flow-definition``, through TagResource), and
delete it (DeleteFlowDefinition, which refuses while loops are open: the
refusal is shown as the API words it)."""
from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web
from customlabels import errors
from customlabels.tags import FLOW_DEFINITION

from services.console import flow_form
from services.console.calls import Calls, project_name, version_name
from services.console.views import Views

WAITING_SHOWN = 100  # open loops counted per flow on the list; more shows as "100+"
BUILDER_ROWS = 3  # rows the form offers; the page's script adds more (up to flow_form.MAX_ROWS)


class FlowPages:
    def __init__(self, calls: Calls, views: Views, region: str):
        self.calls = calls
        self.views = views
        self.region = region

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/flows", self.index, name="flows"),
            web.get("/flows/new", self.new),
            web.post("/flows", self.create),
            web.get("/flows/{name}", self.flow),
            web.post("/flows/{name}/bind", self.bind),
            web.post("/flows/{name}/unbind", self.unbind),
            web.post("/flows/{name}/delete", self.delete),
        ]

    async def index(self, request: web.Request) -> web.Response:
        summaries = await self.calls.flows()
        projects = await self.calls.projects()
        project_tags = await asyncio.gather(*(self.calls.tags(p["ProjectArn"]) for p in projects))
        bound: dict[str, list[str]] = {}
        for project, found in zip(projects, project_tags):
            if found.get(FLOW_DEFINITION):
                bound.setdefault(found[FLOW_DEFINITION], []).append(project_name(project["ProjectArn"]))
        rows = []
        for summary in summaries:
            name = summary["FlowDefinitionName"]
            description = await self.calls.router.call("DescribeFlowDefinition", {"FlowDefinitionName": name})
            waiting, more = await self.calls.review_tasks(limit=WAITING_SHOWN, FlowDefinitionName=name, Status="InProgress")
            rows.append({"name": name, "status": summary["FlowDefinitionStatus"], "created": summary["CreationTime"],
                         "conditions": flow_form.sentences(flow_form.conditions_text(description.get("HumanLoopActivationConfig"))),
                         "waiting": f"{len(waiting)}{'+' if more else ''}", "projects": sorted(bound.get(summary["FlowDefinitionArn"], []))})
        return self.views.render(request, "flows.html", flows=rows)

    # --- create ----------------------------------------------------------------------------
    async def new(self, request: web.Request, *, problem: str | None = None, status: int = 200) -> web.Response:
        form = request.get("form") or {}
        rows = flow_form.rows_from_form(form) if form else [
            {"kind": "confidence", "label": "*", "op": "lt", "value": "70", "min": ""}]
        rows += [{"kind": "", "label": "", "op": "", "value": "", "min": ""}] * max(1, BUILDER_ROWS - len(rows))
        return self.views.render(request, "flow-new.html", status=status, problem=problem, form=form, rows=rows,
                                 max_rows=flow_form.MAX_ROWS, default_output=flow_form.DEFAULT_OUTPUT,
                                 confidence_ops=flow_form.CONFIDENCE_OPS, count_ops=flow_form.COUNT_OPS)

    async def create(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items() if k != "csrf"}
        request["form"] = form
        try:
            params = flow_form.create_params(form, region=self.region, account=self.calls.account())
            await self.calls.router.call("CreateFlowDefinition", params)
        except flow_form.BuilderProblem as problem:
            return await self.new(request, problem=str(problem), status=400)
        except errors.ApiError as error:
            return await self.new(request, problem=f"{error.code}: {error.message}", status=error.status)
        raise web.HTTPSeeOther(f"/console/flows/{params['FlowDefinitionName']}")

    # --- one flow ---------------------------------------------------------------------------
    async def flow(self, request: web.Request, *, problem: str | None = None, status: int = 200) -> web.Response:
        name = request.match_info["name"]
        description = await self.calls.router.call("DescribeFlowDefinition", {"FlowDefinitionName": name})
        text = flow_form.conditions_text(description.get("HumanLoopActivationConfig"))
        projects = await self.calls.projects()
        bindings = await self._bindings(description["FlowDefinitionArn"], projects)
        waiting, more = await self.calls.review_tasks(limit=WAITING_SHOWN, FlowDefinitionName=name, Status="InProgress")
        return self.views.render(
            request, "flow.html", status=status, problem=problem, name=name, description=description,
            sentences=flow_form.sentences(text), document=json.dumps(json.loads(text), indent=2) if text else None,
            loop_config=description.get("HumanLoopConfig"), bindings=bindings,
            waiting=f"{len(waiting)}{'+' if more else ''}",
            unbound=sorted(project_name(p["ProjectArn"]) for p in projects
                           if not any(b["arn"] == p["ProjectArn"] for b in bindings)))

    async def _bindings(self, flow_arn: str, projects: list[dict[str, Any]]) -> list[dict[str, str]]:
        """The projects and versions whose tag binds this flow."""
        found = []
        for project in projects:
            arn = project["ProjectArn"]
            if (await self.calls.tags(arn)).get(FLOW_DEFINITION) == flow_arn:
                found.append({"kind": "project", "arn": arn, "title": project_name(arn)})
            for version in await self.calls.versions(arn):
                if (await self.calls.tags(version["ProjectVersionArn"])).get(FLOW_DEFINITION) == flow_arn:
                    found.append({"kind": "version", "arn": version["ProjectVersionArn"],
                                  "title": f"{project_name(arn)} · {version_name(version['ProjectVersionArn'])}"})
        return found

    async def bind(self, request: web.Request) -> web.Response:
        """Form {project}: every version of the project sends its predictions through this flow."""
        name = request.match_info["name"]
        form = await request.post()
        description = await self.calls.router.call("DescribeFlowDefinition", {"FlowDefinitionName": name})
        project = await self.calls.project(str(form.get("project", "")))
        await self.calls.router.call("TagResource", {"ResourceArn": project["ProjectArn"],
                                                     "Tags": {FLOW_DEFINITION: description["FlowDefinitionArn"]}})
        raise web.HTTPSeeOther(f"/console/flows/{name}")

    async def unbind(self, request: web.Request) -> web.Response:
        """Form {arn}: the project or version stops using this flow (its tag is removed)."""
        name = request.match_info["name"]
        form = await request.post()
        arn = str(form.get("arn", ""))
        description = await self.calls.router.call("DescribeFlowDefinition", {"FlowDefinitionName": name})
        if (await self.calls.tags(arn)).get(FLOW_DEFINITION) != description["FlowDefinitionArn"]:
            return await self.flow(request, problem=f"{arn} is not bound to flow definition {name}.", status=400)
        await self.calls.router.call("UntagResource", {"ResourceArn": arn, "TagKeys": [FLOW_DEFINITION]})
        raise web.HTTPSeeOther(f"/console/flows/{name}")

    async def delete(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        form = await request.post()
        if form.get("confirm") != name:
            return await self.flow(request, problem=f"To delete {name}, type its name exactly.", status=400)
        try:
            await self.calls.router.call("DeleteFlowDefinition", {"FlowDefinitionName": name})
        except errors.ApiError as error:
            if error.status == 404:
                raise  # nothing to show the refusal on
            return await self.flow(request, problem=f"{error.code}: {error.message}", status=error.status)
        raise web.HTTPSeeOther("/console/flows")
