"""A dataset's images and their labels: the thumbnail grid (filters, paging,
bulk labels from the keyboard), the editor (image-level labels and boxes),
saving edits and renaming a label, all through ListDatasetEntries,
ListDatasetLabels and UpdateDatasetEntries."""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from customlabels import errors

from services.console import labeling
from services.console.calls import Calls
from services.console.images import Images, object_url, thumbnail_url
from services.console.pages import read_json
from services.console.views import Views

PAGE_SIZE = 50  # the API allows 100; 50 thumbnails fill a screen and stay light
STATES = ("all", "labeled", "unlabeled", "errors")


@dataclass(frozen=True)
class Filters:
    """The grid's filters, as query parameters and as ListDatasetEntries arguments."""

    label: str = ""
    state: str = "all"
    text: str = ""

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> Filters:
        state = query.get("state", "all")
        return cls(query.get("label", "")[:255], state if state in STATES else "all", query.get("q", "")[:255])

    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = {}
        if self.label:
            params["ContainsLabels"] = [self.label]
        if self.state == "labeled":
            params["Labeled"] = True
        elif self.state == "unlabeled":
            params["Labeled"] = False
        elif self.state == "errors":
            params["HasErrors"] = True
        if self.text:
            params["SourceRefContains"] = self.text
        return params

    def query(self) -> dict[str, str]:
        return {k: v for k, v in (("label", self.label), ("state", self.state), ("q", self.text)) if v and v != "all"}

    def expected_total(self, stats: Mapping[str, int], labels: Mapping[str, Mapping[str, int]]) -> int | None:
        """How many entries the filter selects, where DatasetStats or the label counts say."""
        if self.text:
            return None
        if self.label:
            return None if self.state != "all" else labels.get(self.label, {}).get("images", 0)
        total, labeled = stats.get("TotalEntries", 0), stats.get("LabeledEntries", 0)
        return {"all": total, "labeled": labeled, "unlabeled": total - labeled, "errors": stats.get("ErrorEntries", 0)}[self.state]


class LabelingPages:
    def __init__(self, calls: Calls, views: Views, images: Images):
        self.calls = calls
        self.views = views
        self.images = images

    def routes(self) -> list[web.RouteDef]:
        base = "/projects/{project}/datasets/{kind}"
        return [
            web.get(base, self.grid, name="dataset"),
            web.get(base + "/entries.json", self.entries),
            web.get(base + "/edit", self.editor),
            web.post(base + "/entries", self.save),
            web.post("/projects/{project}/labels/rename", self.rename),
        ]

    async def _page(self, arn: str, filters: Filters, token: str | None) -> dict[str, Any]:
        params = {"DatasetArn": arn, "MaxResults": PAGE_SIZE, **filters.params(), **({"NextToken": token} if token else {})}
        answer = await self.calls.router.call("ListDatasetEntries", params)
        views = [labeling.entry_view(json.loads(line)) for line in answer["DatasetEntries"]]
        versions = await self.images.versions(v["ref"] for v in views)
        for view in views:
            version = versions.get(view["ref"])
            view["thumb"] = thumbnail_url(view["ref"], version) if version else None
            view["src"] = f"{object_url(view['bucket'], view['key'])}?v={version}" if version else None
        return {"entries": views, "next": answer.get("NextToken")}

    async def _context(self, request: web.Request) -> dict[str, Any]:
        name, kind = request.match_info["project"], request.match_info["kind"]
        project, arn = await self.calls.dataset(name, kind)
        arns = [a for a in (self.calls.dataset_arn(project, k) for k in ("train", "test")) if a]
        return {"name": name, "kind": kind, "arn": arn, "labels": await self.calls.labels(arns),
                "filters": Filters.from_query(request.query), "token": request.query.get("token") or None,
                "page_number": max(1, _int(request.query.get("page"), 1))}

    async def grid(self, request: web.Request) -> web.Response:
        context = await self._context(request)
        description = await self.calls.describe_dataset(context["arn"])
        try:
            page = await self._page(context["arn"], context["filters"], context["token"])
        except errors.ApiError as error:
            if error.code != "ResourceNotReadyException":
                raise
            page = {"entries": [], "next": None}
        stats = description.get("DatasetStats") or {}
        total = context["filters"].expected_total(stats, context["labels"])
        return self.views.render(
            request, "grid.html", description=description, stats=stats, page=page, total=total,
            pages=None if total is None else max(1, -(-total // PAGE_SIZE)), page_size=PAGE_SIZE,
            states=STATES, **context,
            data={"project": context["name"], "kind": context["kind"], "entries": page["entries"],
                  "labels": sorted(context["labels"]), "next": page["next"], "page": context["page_number"],
                  "query": context["filters"].query(), "token": context["token"]},
        )

    async def entries(self, request: web.Request) -> web.Response:
        """A page of entries as JSON (the editor walks across pages with it)."""
        name, kind = request.match_info["project"], request.match_info["kind"]
        _, arn = await self.calls.dataset(name, kind)
        return web.json_response(await self._page(arn, Filters.from_query(request.query), request.query.get("token") or None))

    async def editor(self, request: web.Request) -> web.Response:
        context = await self._context(request)
        page = await self._page(context["arn"], context["filters"], context["token"])
        index = min(max(0, _int(request.query.get("i"), 0)), max(0, len(page["entries"]) - 1))
        return self.views.render(
            request, "editor.html", **context,
            data={"project": context["name"], "kind": context["kind"], "entries": page["entries"], "index": index,
                  "labels": sorted(context["labels"]), "next": page["next"], "page": context["page_number"],
                  "query": context["filters"].query(), "token": context["token"]},
        )

    async def save(self, request: web.Request) -> web.Response:
        """JSON {changes: [{line, labels} | {line, boxes, size}]}: the edited lines
        go to UpdateDatasetEntries (replacing those entries by source-ref)."""
        name, kind = request.match_info["project"], request.match_info["kind"]
        body = await read_json(request)
        changes = body.get("changes") if isinstance(body, dict) else None
        if not isinstance(changes, list) or not changes:
            raise errors.InvalidParameter("changes must list the edited entries.")
        lines = []
        try:
            for change in changes:
                if not isinstance(change, dict):
                    raise labeling.LineProblem("each change must be a JSON object")
                line = change.get("line")
                if "labels" in change:
                    line = labeling.relabel(line, change["labels"])
                if "boxes" in change:
                    line = labeling.rebox(line, change["boxes"], change.get("size"))
                lines.append(line)
        except labeling.LineProblem as problem:
            raise errors.InvalidParameter(str(problem)) from None
        _, arn = await self.calls.dataset(name, kind)
        await self.calls.update_entries(arn, lines)
        return web.json_response({"saved": len(lines), "entries": [labeling.entry_view(line) for line in lines]})

    async def rename(self, request: web.Request) -> web.Response:
        """JSON {from, to}: every entry of both datasets carrying the label gets the new name."""
        name = request.match_info["project"]
        body = await read_json(request)
        old, new = (str(body.get(k, "")) if isinstance(body, dict) else "" for k in ("from", "to"))
        if not old or not new or len(new) > 255:
            raise errors.InvalidParameter("Give the label's current name and a new name of 1 to 255 characters.")
        project = await self.calls.project(name)
        renamed = 0
        for kind in ("train", "test"):
            arn = self.calls.dataset_arn(project, kind)
            if arn is None:
                continue
            lines, token = [], None
            while True:
                answer = await self.calls.router.call("ListDatasetEntries", {
                    "DatasetArn": arn, "ContainsLabels": [old], "MaxResults": 100, **({"NextToken": token} if token else {})})
                for raw in answer["DatasetEntries"]:
                    lines.append(_renamed(json.loads(raw), old, new))
                token = answer.get("NextToken")
                if not token:
                    break
            if lines:
                await self.calls.update_entries(arn, lines)
                renamed += len(lines)
        return web.json_response({"renamed": renamed})


def _renamed(line: dict, old: str, new: str) -> dict:
    view = labeling.entry_view(line)
    labels = [new if label == old else label for label in view["labels"]]
    line = labeling.relabel(line, labels) if old in view["labels"] else line
    if any(box["label"] == old for box in view["boxes"]) and view["size"]:
        boxes = [{**box, "label": new if box["label"] == old else box["label"]} for box in view["boxes"]]
        line = labeling.rebox(line, boxes, view["size"])
    return line


def _int(text: str | None, default: int) -> int:
    try:
        return int(text or default)
    except ValueError:
        return default
