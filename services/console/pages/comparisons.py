"""Is the new version better, and which one do callers get? The comparison
reports the feedback loop writes (one per challenger, read from the output
bucket: ``comparison.report_key``), two versions' evaluations side by side,
and the promotions: where each project's stable ARN points
(DescribeProjectVersions with ``VersionNames=["live"]``) and the reports
that decided to move it."""
from __future__ import annotations

from typing import Any

from aiohttp import web
from customlabels import errors, tags
from customlabels.arns import STABLE_VERSION_NAME, stable_arn_of
from customlabels.ports.blobs import BlobStore

from services.console import comparison, evaluation
from services.console.calls import Calls, project_name, version_name
from services.console.files import read_json
from services.console.views import Views

POLICY_TAGS = (tags.FLOW_DEFINITION, tags.RETRAIN_AFTER_ENTRIES, tags.RETRAIN_DEBOUNCE_SECONDS, tags.AUTO_PROMOTE,
               tags.PROMOTE_MAX_LABEL_F1_DROP)


class Reports:
    """The comparison reports of a project's versions, newest first."""

    def __init__(self, calls: Calls, blobs: BlobStore):
        self.calls = calls
        self.blobs = blobs

    async def of(self, project: dict[str, Any], versions: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        found = []
        for version in versions if versions is not None else await self.calls.versions(project["ProjectArn"]):
            location = comparison.report_key(version.get("OutputConfig"), version_name(version["ProjectVersionArn"]))
            report = await read_json(self.blobs, *location) if location else None
            if isinstance(report, dict):
                found.append({**comparison.report_view(report), "project": project_name(project["ProjectArn"]),
                              "challenger_status": version["Status"]})
        return sorted(found, key=lambda r: str(r["created"] or ""), reverse=True)


class ComparisonPages:
    def __init__(self, calls: Calls, views: Views, reports: Reports, blobs: BlobStore):
        self.calls = calls
        self.views = views
        self.reports = reports
        self.blobs = blobs

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/comparisons", self.index, name="comparisons"),
            web.get("/comparisons/{project}/{version}", self.report),
            web.get("/projects/{project}/compare", self.side_by_side),
        ]

    async def index(self, request: web.Request) -> web.Response:
        """Every project's reports, or one project's (``?project=``) with the form to compare two of its versions."""
        chosen = request.query.get("project", "")
        projects = sorted(await self.calls.projects(), key=lambda p: project_name(p["ProjectArn"]))
        reports, versions = [], []
        for project in projects:
            if chosen and project_name(project["ProjectArn"]) != chosen:
                continue
            found = await self.calls.versions(project["ProjectArn"])
            reports += await self.reports.of(project, found)
            if chosen:
                versions = [version_name(v["ProjectVersionArn"]) for v in found]
        reports.sort(key=lambda r: str(r["created"] or ""), reverse=True)
        return self.views.render(request, "comparisons.html", reports=reports, chosen=chosen, versions=versions,
                                 projects=[project_name(p["ProjectArn"]) for p in projects])

    async def report(self, request: web.Request) -> web.Response:
        name, version = request.match_info["project"], request.match_info["version"]
        project = await self.calls.project(name)
        description = await self.calls.version(project["ProjectArn"], version)
        found = await self.reports.of(project, [description])
        if not found:
            raise errors.ResourceNotFound(f"Version {version} of {name} has no comparison report: the feedback loop "
                                          "writes one when it compares a version it trained with the live one.")
        return self.views.render(request, "comparison.html", name=name, report=found[0])

    async def side_by_side(self, request: web.Request) -> web.Response:
        """``?a=&b=``: two versions' evaluation summaries, overall and per label."""
        name = request.match_info["project"]
        project = await self.calls.project(name)
        names = [version_name(v["ProjectVersionArn"]) for v in await self.calls.versions(project["ProjectArn"])]
        chosen = [request.query.get("a") or (names[1] if len(names) > 1 else ""), request.query.get("b") or (names[0] if names else "")]
        sides = []
        for version in chosen:
            description = await self.calls.version(project["ProjectArn"], version) if version else None
            summary = None
            if description and description.get("EvaluationResult"):
                location = description["EvaluationResult"]["Summary"]["S3Object"]
                summary = evaluation.summary_view(await read_json(self.blobs, location["Bucket"], location["Name"]) or {})
            sides.append({"name": version, "status": description["Status"] if description else None, "summary": summary})
        table = evaluation.side_by_side(*(s["summary"] for s in sides)) if all(s["summary"] for s in sides) else None
        return self.views.render(request, "compare.html", name=name, versions=names, sides=sides, table=table)


class PromotionPages:
    def __init__(self, calls: Calls, views: Views, reports: Reports):
        self.calls = calls
        self.views = views
        self.reports = reports

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/promotions", self.index, name="promotions")]

    async def index(self, request: web.Request) -> web.Response:
        """Per project: the stable ARN, the version it answers with, the policy tags, and the decisions so far."""
        rows = []
        for project in sorted(await self.calls.projects(), key=lambda p: project_name(p["ProjectArn"])):
            arn = project["ProjectArn"]
            live = (await self.calls.router.call("DescribeProjectVersions", {
                "ProjectArn": arn, "VersionNames": [STABLE_VERSION_NAME]}))["ProjectVersionDescriptions"]
            target = next((v for v in live if v.get("SourceProjectVersionArn")), None)
            project_tags = await self.calls.tags(arn)
            history = await self.reports.of(project)
            rows.append({
                "name": project_name(arn), "stable_arn": stable_arn_of(arn),
                "target": version_name(target["SourceProjectVersionArn"]) if target else None,
                "target_status": target["Status"] if target else None,
                "policy": {tag.removeprefix(tags.PREFIX): project_tags[tag] for tag in POLICY_TAGS if tag in project_tags},
                "history": history,
            })
        return self.views.render(request, "promotions.html", projects=rows)
