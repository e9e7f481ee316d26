"""Datasets: create (empty, uploaded from the browser, from a Ground Truth
manifest, as a copy), import a dropped batch, split off a test set, delete,
and the status the pages poll."""
from __future__ import annotations

from typing import Any

from aiohttp import web
from customlabels import errors
from customlabels.ports.blobs import BlobStore

from customlabels.manifests.converters import manifest_key, to_jsonl
from services.console.calls import DATASET_TYPES, Calls, project_name
from services.console.images import UPLOAD_BUCKET
from services.console.imports import MODES, Batch, batch_conversion
from services.console.pages import read_json
from services.console.views import Views

SOURCES = ("upload", "manifest", "copy", "empty")


class DatasetPages:
    def __init__(self, calls: Calls, views: Views, blobs: BlobStore):
        self.calls = calls
        self.views = views
        self.blobs = blobs

    def routes(self) -> list[web.RouteDef]:
        base = "/projects/{project}/datasets"
        return [
            web.get(base + "/new", self.new),
            web.post(base, self.create),
            web.post(base + "/{kind}/import", self.import_batch),
            web.get(base + "/{kind}/status.json", self.status),
            web.post(base + "/{kind}/delete", self.delete),
            web.post("/projects/{project}/split", self.split),
        ]

    async def new(self, request: web.Request, *, problem: str | None = None, status: int = 200) -> web.Response:
        project = await self.calls.project(request.match_info["project"])
        kind = request.query.get("kind", "train")
        if kind not in DATASET_TYPES:
            kind = "train"
        exists = {k: self.calls.dataset_arn(project, k) is not None for k in DATASET_TYPES}
        copyable = [
            {"arn": d["DatasetArn"], "title": f"{project_name(p['ProjectArn'])} · {d['DatasetType'].lower()}"}
            for p in await self.calls.projects() for d in p.get("Datasets", [])
        ]
        return self.views.render(request, "dataset-new.html", status=status, name=project_name(project["ProjectArn"]),
                                 kind=kind, exists=exists, copyable=copyable, modes=MODES, problem=problem,
                                 form=request.get("form") or {})

    async def create(self, request: web.Request) -> web.Response:
        """The non-upload sources (uploads go through import_batch)."""
        name = request.match_info["project"]
        form = await request.post()
        request["form"] = {k: str(v) for k, v in form.items() if k != "csrf"}
        kind, source = str(form.get("kind", "")), str(form.get("source", ""))
        if kind not in DATASET_TYPES or source not in SOURCES[1:]:
            return await self.new(request, problem="Choose the dataset (train or test) and where its images come from.", status=400)
        project = await self.calls.project(name)
        params: dict[str, Any] = {"ProjectArn": project["ProjectArn"], "DatasetType": DATASET_TYPES[kind]}
        if source == "manifest":
            bucket, key = str(form.get("bucket", "")).strip(), str(form.get("key", "")).strip().lstrip("/")
            if not bucket or not key:
                return await self.new(request, problem="Enter the manifest's bucket and key.", status=400)
            params["DatasetSource"] = {"GroundTruthManifest": {"S3Object": {"Bucket": bucket, "Name": key}}}
        elif source == "copy":
            params["DatasetSource"] = {"DatasetArn": str(form.get("dataset", ""))}
        try:
            await self.calls.router.call("CreateDataset", params)
        except errors.ApiError as error:
            return await self.new(request, problem=f"{error.code}: {error.message}", status=error.status)
        raise web.HTTPSeeOther(f"/console/projects/{name}/datasets/{kind}")

    async def import_batch(self, request: web.Request) -> web.Response:
        """JSON {mode, paths}: the uploaded files become entries of the dataset,
        which is created from a manifest when the project has none yet. A
        labeled import replaces the entries it names (as UpdateDatasetEntries
        does); an unlabeled one only adds images the dataset does not have."""
        name, kind = request.match_info["project"], request.match_info["kind"]
        project = await self.calls.project(name)
        if kind not in DATASET_TYPES:
            raise errors.ResourceNotFound(f"A project has a train and a test dataset, not {kind!r}.")
        batch = Batch.from_request(name, kind, await read_json(request), bucket=self.calls.bucket(UPLOAD_BUCKET))
        conversion = await batch_conversion(self.blobs, batch)
        if not conversion.entries:
            raise errors.InvalidParameter("None of the files is an image to import: " + "; ".join(conversion.warnings[:5]))
        arn = self.calls.dataset_arn(project, kind)
        kept = 0
        if arn is not None and batch.mode == "unlabeled":  # an unlabeled line never replaces an entry's labels
            existing = await self.calls.source_refs(arn)
            entries = [e for e in conversion.entries if e.line["source-ref"] not in existing]
            kept = len(conversion.entries) - len(entries)
            conversion.entries = entries
            if not entries:
                return web.json_response({"images": 0, "kept": kept, "created": False, "warnings": [
                    f"all {kept} images were already in the dataset; they keep their labels"]})
        if arn is None:
            key = manifest_key(batch.prefix)
            await self.blobs.put(batch.bucket, key, to_jsonl(conversion.lines))
            await self.calls.router.call("CreateDataset", {
                "ProjectArn": project["ProjectArn"], "DatasetType": DATASET_TYPES[kind],
                "DatasetSource": {"GroundTruthManifest": {"S3Object": {"Bucket": batch.bucket, "Name": key}}},
            })
        else:
            await self.calls.update_entries(arn, conversion.lines)
        warnings = conversion.warnings[:200]
        if kept:
            warnings.append(f"{kept} images were already in the dataset and keep their labels")
        return web.json_response({"images": len(conversion.entries), "kept": kept, "warnings": warnings,
                                  "created": arn is None})

    async def status(self, request: web.Request) -> web.Response:
        _, arn = await self.calls.dataset(request.match_info["project"], request.match_info["kind"])
        description = await self.calls.describe_dataset(arn)
        return web.json_response({"status": description["Status"], "message": description.get("StatusMessage") or "",
                                  "stats": description.get("DatasetStats") or {}})

    async def split(self, request: web.Request) -> web.Response:
        """Create an empty test dataset if there is none, then move 20 % of the
        training images into it (DistributeDatasetEntries, stratified by label)."""
        name = request.match_info["project"]
        project = await self.calls.project(name)
        train, test = self.calls.dataset_arn(project, "train"), self.calls.dataset_arn(project, "test")
        if train is None:
            raise errors.InvalidParameter(f"Project {name} has no training dataset to split.")
        if test is None:
            test = (await self.calls.router.call(
                "CreateDataset", {"ProjectArn": project["ProjectArn"], "DatasetType": "TEST"}))["DatasetArn"]
            await self.calls.wait_dataset(test)
        await self.calls.router.call("DistributeDatasetEntries", {"Datasets": [{"Arn": train}, {"Arn": test}]})
        raise web.HTTPSeeOther(f"/console/projects/{name}")

    async def delete(self, request: web.Request) -> web.Response:
        name, kind = request.match_info["project"], request.match_info["kind"]
        form = await request.post()
        if form.get("confirm") != "delete":
            raise errors.InvalidParameter("To delete the dataset, type delete in the box.")
        _, arn = await self.calls.dataset(name, kind)
        await self.calls.router.call("DeleteDataset", {"DatasetArn": arn})
        raise web.HTTPSeeOther(f"/console/projects/{name}")

