"""Models: train a version (budget, live progress), read its evaluation and
test results, start and stop it, try it on a photo, copy the code to call it."""
from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from customlabels import errors
from customlabels.images import IMAGE_MAX_BYTES
from customlabels.ports.blobs import BlobStore
from customlabels.tags import MAX_TRAINING_SECONDS, SCALE_TO_ZERO_AFTER_SECONDS
from customlabels.wire.http import read_within

from services.console import evaluation, labeling
from services.console.calls import Calls, version_name
from services.console.files import read_file
from services.console.images import Images, object_url, thumbnail_url, too_large
from services.console.security import request_origin
from services.console.views import Views

OUTPUT_BUCKET = "customlabels-output"
TABS = ("evaluation", "results", "use", "details")
MAX_VALIDATION_LINES = 500  # problem lines listed on the details tab


class ModelPages:
    def __init__(self, calls: Calls, views: Views, images: Images, blobs: BlobStore, region: str):
        self.calls = calls
        self.views = views
        self.images = images
        self.blobs = blobs
        self.region = region

    def routes(self) -> list[web.RouteDef]:
        base = "/projects/{project}/models/{version}"
        return [
            web.get("/projects/{project}/train", self.train_form),
            web.post("/projects/{project}/train", self.train),
            web.get(base, self.model, name="model"),
            web.get(base + "/status.json", self.status),
            web.post(base + "/start", self.start),
            web.post(base + "/stop", self.stop),
            web.post(base + "/scale-to-zero", self.scale_to_zero),
            web.post(base + "/detect", self.detect),
            web.post(base + "/delete", self.delete),
        ]

    # --- training ---------------------------------------------------------------------
    async def train_form(self, request: web.Request, *, problem: str | None = None, status: int = 200) -> web.Response:
        name = request.match_info["project"]
        project = await self.calls.project(name)
        arns = {kind: self.calls.dataset_arn(project, kind) for kind in ("train", "test")}
        stats = {kind: (await self.calls.describe_dataset(arn)).get("DatasetStats") if arn else None for kind, arn in arns.items()}
        labels = await self.calls.labels([a for a in arns.values() if a])
        warnings = []
        if len(labels) < 2 and not any(counts["boxes"] for counts in labels.values()):
            warnings.append(f"The datasets have {len(labels)} label(s): a classifier needs at least 2.")
        if not stats["train"] or not stats["train"].get("LabeledEntries"):
            warnings.append("The training dataset has no labeled images yet.")
        if not stats["test"] or not stats["test"].get("TotalEntries"):
            warnings.append("There is no test dataset: 20 % of the training images will be held out for testing.")
        suggested = f"{name}.{datetime.now(UTC).strftime('%Y-%m-%dT%H.%M.%S')}"
        return self.views.render(request, "train.html", status=status, name=name, stats=stats, labels=labels,
                                 warnings=warnings, problem=problem, suggested=suggested, form=request.get("form") or {})

    async def train(self, request: web.Request) -> web.Response:
        name = request.match_info["project"]
        form = await request.post()
        request["form"] = {k: str(v) for k, v in form.items() if k != "csrf"}
        version, budget = str(form.get("version", "")).strip(), str(form.get("budget", "")).strip()
        if budget and not (budget.isdigit() and 10 <= int(budget) <= 86400):
            return await self.train_form(request, problem="The time budget is a whole number of seconds, 10 to 86400.", status=400)
        project = await self.calls.project(name)
        params: dict[str, Any] = {
            "ProjectArn": project["ProjectArn"], "VersionName": version,
            "OutputConfig": {"S3Bucket": self.calls.bucket(OUTPUT_BUCKET), "S3KeyPrefix": f"{name}/"},
        }
        if budget:
            params["Tags"] = {MAX_TRAINING_SECONDS: budget}
        try:
            await self.calls.router.call("CreateProjectVersion", params)
        except errors.ApiError as error:
            return await self.train_form(request, problem=f"{error.code}: {error.message}", status=error.status)
        raise web.HTTPSeeOther(f"/console/projects/{name}/models/{version}")

    # --- a version ----------------------------------------------------------------------
    async def model(self, request: web.Request) -> web.Response:
        name, version = request.match_info["project"], request.match_info["version"]
        project = await self.calls.project(name)
        description = await self.calls.version(project["ProjectArn"], version)
        tab = request.query.get("tab") or ("evaluation" if description.get("EvaluationResult") else "details")
        tab = tab if tab in TABS else "evaluation"
        summary, tests = None, []
        if description.get("EvaluationResult") and tab in ("evaluation", "results"):
            location = description["EvaluationResult"]["Summary"]["S3Object"]
            summary = evaluation.summary_view(json.loads(await self._read(location["Bucket"], location["Name"]) or b"{}"))
            snapshot = await self._read(location["Bucket"], evaluation.snapshot_key(location["Name"]))
            tests = [evaluation.test_image_view(json.loads(line)) for line in (snapshot or b"").splitlines() if line.strip()]
            await self._add_urls(tests)
        tags = await self.calls.tags(description["ProjectVersionArn"])
        details = await self._details(description) if tab == "details" else None
        return self.views.render(
            request, "model.html", name=name, version=version, tab=tab, tabs=TABS, description=description,
            summary=summary, tests=tests, details=details, tags=tags, scale_to_zero=tags.get(SCALE_TO_ZERO_AFTER_SECONDS, ""),
            snippets=snippets(request_origin(request), self.region, project["ProjectArn"], description["ProjectVersionArn"]),
            data={"status_url": f"/console/projects/{name}/models/{version}/status.json",
                  "detect_url": f"/console/projects/{name}/models/{version}/detect",
                  "status": description["Status"], "expect": _expected(request, description["Status"]), "tests": tests,
                  "thresholds": {row["label"]: row.get("threshold") for row in (summary or {}).get("labels", [])}},
        )

    async def _read(self, bucket: str, key: str) -> bytes | None:
        return await read_file(self.blobs, bucket, key)

    async def _add_urls(self, views: list[dict[str, Any]]) -> None:
        versions = await self.images.versions(v["ref"] for v in views)
        for view in views:
            version = versions.get(view["ref"])
            view["thumb"] = thumbnail_url(view["ref"], version) if version else None
            view["src"] = f"{object_url(view['bucket'], view['key'])}?v={version}" if version else None

    async def _details(self, description: dict[str, Any]) -> dict[str, Any]:
        """The manifest summary and the lines the validation manifests flag."""
        summary_location = (description.get("ManifestSummary") or {}).get("S3Object")
        manifest_summary = None
        if summary_location:
            raw = await self._read(summary_location["Bucket"], summary_location["Name"])
            manifest_summary = json.loads(raw) if raw else None
        problems = []
        for split, result in (("training", description.get("TrainingDataResult")), ("testing", description.get("TestingDataResult"))):
            for asset in ((result or {}).get("Validation") or {}).get("Assets") or []:
                s3 = ((asset.get("GroundTruthManifest") or {}).get("S3Object")) or {}
                raw = await self._read(s3.get("Bucket", ""), s3.get("Name", "")) if s3 else None
                for text in (raw or b"").splitlines():
                    if len(problems) >= MAX_VALIDATION_LINES:
                        break
                    line = json.loads(text) if text.strip() else None
                    sentences = labeling.readable_problems(line) if isinstance(line, dict) else []
                    if sentences:
                        problems.append({"split": split, "ref": line.get("source-ref", "?"), "problems": sentences})
        return {"manifest_summary": manifest_summary, "problems": problems}

    async def status(self, request: web.Request) -> web.Response:
        project = await self.calls.project(request.match_info["project"])
        description = await self.calls.version(project["ProjectArn"], request.match_info["version"])
        return web.json_response({
            "status": description["Status"], "message": description.get("StatusMessage") or "",
            "f1": (description.get("EvaluationResult") or {}).get("F1Score"),
            "min_units": description.get("MinInferenceUnits"), "max_units": description.get("MaxInferenceUnits"),
        })

    async def _arn(self, request: web.Request) -> str:
        project = await self.calls.project(request.match_info["project"])
        return (await self.calls.version(project["ProjectArn"], request.match_info["version"]))["ProjectVersionArn"]

    def _back(self, request: web.Request, *, expect: str | None = None) -> web.HTTPSeeOther:
        """Back to the Use tab, which watches the status until it is ``expect``:
        hosting tells training (which describes versions) through an event, so
        the new status shows a moment after the call."""
        return web.HTTPSeeOther(f"/console/projects/{request.match_info['project']}/models/"
                                f"{request.match_info['version']}?tab=use" + (f"&expect={expect}" if expect else ""))

    async def start(self, request: web.Request) -> web.Response:
        form = await request.post()
        try:
            low, high = int(str(form.get("min_units", "1"))), int(str(form.get("max_units", "") or form.get("min_units", "1")))
        except ValueError:
            raise errors.InvalidParameter("Inference units are whole numbers.") from None
        await self.calls.router.call("StartProjectVersion", {"ProjectVersionArn": await self._arn(request),
                                                               "MinInferenceUnits": low, "MaxInferenceUnits": high})
        raise self._back(request, expect="RUNNING")

    async def stop(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("confirm") != "stop":
            raise errors.InvalidParameter("To stop the model, type stop in the box.")
        await self.calls.router.call("StopProjectVersion", {"ProjectVersionArn": await self._arn(request)})
        raise self._back(request, expect="STOPPED")

    async def scale_to_zero(self, request: web.Request) -> web.Response:
        form = await request.post()
        seconds = str(form.get("seconds", "")).strip()
        arn = await self._arn(request)
        if not seconds:
            await self.calls.router.call("UntagResource", {"ResourceArn": arn, "TagKeys": [SCALE_TO_ZERO_AFTER_SECONDS]})
        elif seconds.isdigit() and int(seconds) > 0:
            await self.calls.router.call("TagResource", {"ResourceArn": arn, "Tags": {SCALE_TO_ZERO_AFTER_SECONDS: seconds}})
        else:
            raise errors.InvalidParameter("Idle seconds before scaling to zero: a whole number above 0, or empty to keep units running.")
        raise self._back(request)

    async def detect(self, request: web.Request) -> web.Response:
        """The photo in the body, through DetectCustomLabels; every label the
        model finds (MinConfidence 0), so the page's slider can filter."""
        data = await read_within(request, IMAGE_MAX_BYTES)
        if data is None:
            raise too_large(request, "The photo", IMAGE_MAX_BYTES)
        if not data:
            raise errors.InvalidParameter("Send one photo: the request had no body.")
        answer = await self.calls.router.call("DetectCustomLabels", {
            "ProjectVersionArn": await self._arn(request), "Image": {"Bytes": data}, "MinConfidence": 0.0})
        return web.json_response({"labels": answer.get("CustomLabels", [])})

    async def delete(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("confirm") != request.match_info["version"]:
            raise errors.InvalidParameter("To delete the version, type its name exactly.")
        await self.calls.router.call("DeleteProjectVersion", {"ProjectVersionArn": await self._arn(request)})
        raise web.HTTPSeeOther(f"/console/projects/{request.match_info['project']}")


def _expected(request: web.Request, status: str) -> str | None:
    """The status the page waits for after Start (RUNNING) or Stop (STOPPED), unless it is there or failed."""
    expect = request.query.get("expect")
    return expect if expect in ("RUNNING", "STOPPED") and status not in (expect, "FAILED") else None


def snippets(origin: str, region: str, project_arn: str, arn: str) -> dict[str, str]:
    """boto3 and AWS CLI calls for this version, with a named profile where the
    credentials go: no key or secret ever appears in a page."""
    python = f'''import boto3

# Credentials come from the profile (aws configure --profile customlabels), never from code.
rekognition = boto3.Session(profile_name="customlabels").client(
    "rekognition", endpoint_url="{origin}", region_name="{region}")
arn = "{arn}"

rekognition.start_project_version(ProjectVersionArn=arn, MinInferenceUnits=1)
rekognition.get_waiter("project_version_running").wait(
    ProjectArn="{project_arn}", VersionNames=["{version_name(arn)}"])
with open("photo.jpg", "rb") as image:
    found = rekognition.detect_custom_labels(ProjectVersionArn=arn, Image={{"Bytes": image.read()}}, MinConfidence=50)
for label in found["CustomLabels"]:
    print(label["Name"], label["Confidence"], label.get("Geometry", {{}}).get("BoundingBox"))
rekognition.stop_project_version(ProjectVersionArn=arn)
'''
    cli = f'''aws --profile customlabels --region {region} --endpoint-url {origin} rekognition \\
  start-project-version --project-version-arn "{arn}" --min-inference-units 1

aws --profile customlabels --region {region} --endpoint-url {origin} rekognition \\
  detect-custom-labels --project-version-arn "{arn}" \\
  --image-bytes fileb://photo.jpg --min-confidence 50

aws --profile customlabels --region {region} --endpoint-url {origin} rekognition \\
  stop-project-version --project-version-arn "{arn}"
'''
    return {"python": python, "cli": cli}
