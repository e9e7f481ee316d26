"""Human loops: opened from captured predictions or by StartHumanLoop, answered, completed.

The A2I runtime operations (StartHumanLoop, DescribeHumanLoop, ListHumanLoops,
StopHumanLoop, DeleteHumanLoop) and the loop's life:

    InProgress --TaskCount answers--> Completed   (output.json written, events emitted)
               --StopHumanLoop-----> Stopped
               --nobody in time----> Failed (Expired; TaskAvailabilityLifetimeInSeconds)

Invariants:

* A captured prediction opens at most one loop per flow definition and image:
  the loop's name is derived from both (``capture_loop_name``), and the insert
  is the dedupe, so a retried DetectCustomLabels or a redelivered event opens
  nothing new.
* A flow's caps are counters written in the same commit as the loop they
  count, so concurrent openings never exceed them.
* Completing a loop writes its output.json first (same key every time), then
  commits the loop's new status with HumanLoopCompleted and, for a loop whose
  answer can train (not an audit flow, an image of a project), FeedbackAccepted
  carrying the Ground Truth line, in one unit of work: a crash in between
  leaves the loop InProgress with nothing emitted, and the answer is simply
  taken again.
* A loop belongs to its flow definition's account (``accounts``): its name
  is unique there, and only that account's callers reach it by name. What a
  StartHumanLoop input names (``projectArn``, ``projectVersionArn``, the
  ``taskObject`` image) must be that account's too: AccessDeniedException
  otherwise, nothing opened.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

from customlabels import clock, errors
from customlabels.arns import account_of, project_name_of
from customlabels.buckets import BucketOwners
from customlabels.events import (
    FeedbackAccepted,
    HumanLoopCompleted,
    ObjectLocation,
    PredictionCaptured,
)
from customlabels.images import ImageProblem, inspect_blob
from customlabels.messaging import UnitOfWork
from customlabels.ports.blobs import BlobStore
from customlabels.ports.documents import (
    Delete,
    DuplicateKey,
    Eq,
    Insert,
    Put,
    ScopedStore,
    VersionConflict,
    stored,
)

from services.feedback import paging
from services.feedback.accounts import HUMAN_LOOP, AccountScope, record_id
from services.feedback.answers import consolidate
from services.feedback.flows import CAP_SECONDS, FlowDefinitions
from services.feedback.ground_truth import ground_truth_line
from services.feedback.records import (
    AUDITS,
    COMPLETED,
    FAILED,
    IN_PROGRESS,
    LOOP_COUNTS,
    LOOPS,
    STOPPED,
    iso_ms,
    loop_description,
    loop_summary,
    output_location,
)

DEFAULT_PAGE = 100
CAPTURE_PREFIX = "dcl-"
_UI_ANSWER = {"detection": "crowd-bounding-box", "multilabel": "crowd-image-classifier-multi-select"}


def project_name(project_arn: str | None) -> str | None:
    return project_name_of(project_arn) if project_arn else None


def capture_loop_name(flow_arn: str, image_sha256: str) -> str:
    """The one loop a flow definition opens for an image."""
    return CAPTURE_PREFIX + hashlib.sha256(f"{flow_arn}\n{image_sha256}".encode()).hexdigest()[:24]


class CapReached(Exception):
    """The flow definition opened as many loops as its caps allow in a window."""


class Loops:
    def __init__(self, store: ScopedStore, uow: Callable[[], UnitOfWork], blobs: BlobStore, tokens,
                 flows: FlowDefinitions, accounts: AccountScope, buckets: BucketOwners,
                 audit_counted: Callable[[str], Awaitable[Any]]):
        """``audit_counted(flow_arn)``: called once an audit loop's answer is counted (rewrites the report)."""
        self.audit_counted = audit_counted
        self.store = store
        self.uow = uow
        self.blobs = blobs
        self.tokens = tokens
        self.flows = flows
        self.accounts = accounts
        self.buckets = buckets

    async def get(self, name: str) -> dict[str, Any]:
        """The human loop named ``name`` in the caller's account, or ResourceNotFound."""
        doc = await self.store.get(LOOPS, record_id(self.accounts.current(), name))
        if doc is None:
            raise errors.ResourceNotFound(f"human loop {name} does not exist")
        return doc

    # --- opening ------------------------------------------------------------------------
    async def on_prediction_captured(self, event: PredictionCaptured, uow: UnitOfWork) -> None:
        flow = await self.flows.by_arn(event.flow_definition_arn)
        if flow is None:
            return  # deleted since hosting read it: nothing to review into
        name = capture_loop_name(flow["arn"], event.image_sha256)
        if await self.store.get(LOOPS, record_id(flow["account"], name)):
            return
        image = {"bucket": event.image.bucket, "key": event.image.key, "sha256": event.image_sha256,
                 **await self._image_size(event.image.bucket, event.image.key)}
        doc = self._new(name, flow, event.occurred_at and int(event.occurred_at.timestamp() * 1000), source="capture",
                        project_arn=event.project_arn, version_arn=event.version_arn, task=event.task,
                        labels=list(event.labels), image=image, predictions=list(event.predictions),
                        thresholds=dict(event.thresholds), selected=list(event.selected),
                        input_content={
                            "aiServiceRequest": event.request,
                            "aiServiceResponse": {"CustomLabels": list(event.predictions)},
                            "humanTaskActivationConditionResults": event.activation,
                            "selectedAiServiceResponse": {"CustomLabels": list(event.selected)},
                        })
        try:
            await self._insert(doc, flow, uow)  # a concurrent delivery's insert makes the commit fail: redelivered
        except CapReached:
            return  # counted in loop_counts; the prediction is not reviewed

    async def start(self, req: dict[str, Any]) -> dict[str, Any]:
        """StartHumanLoop: the caller's own loop; its InputContent is what reviewers see.

        Optional members of InputContent (a JSON object) make it reviewable
        like a captured prediction: ``taskObject`` (``s3://bucket/key`` of the
        image), ``projectArn`` (the answer becomes an entry of its TRAIN
        dataset), ``projectVersionArn`` (the model that predicted: audit flows
        count per version), ``customLabels`` (predictions, as
        DetectCustomLabels' CustomLabels), ``taskType``
        (classification | multilabel | detection).
        """
        name, flow_arn = req["HumanLoopName"], req["FlowDefinitionArn"]
        raw = req["HumanLoopInput"]["InputContent"]
        try:
            content = json.loads(raw)
        except ValueError as bad:
            raise errors.InvalidParameter(f"HumanLoopInput.InputContent must be serialized JSON: {bad}") from None
        flow = await self.flows.by_arn(flow_arn)
        if flow is None:
            raise errors.InvalidParameter(f"flow definition {flow_arn} does not exist")
        existing = await self.store.get(LOOPS, record_id(flow["account"], name))
        if existing is not None:
            return self._same_loop(existing, flow_arn, raw)
        fields = await self._reviewable(content if isinstance(content, dict) else {}, flow["account"])
        doc = self._new(name, flow, clock.now_ms(), source="StartHumanLoop", input_content=content, raw_input=raw, **fields)
        uow = self.uow()
        try:
            await self._insert(doc, flow, uow)
            await uow.commit()
        except CapReached as reached:
            raise errors.ServiceQuotaExceeded(str(reached)) from None
        except DuplicateKey:  # a loop of that name was opened meanwhile: the same request, or a conflict
            existing = await self.store.get(LOOPS, doc["_id"])
            if existing is None:
                raise errors.Conflict(f"human loop {name} changed meanwhile; try again") from None
            return self._same_loop(existing, flow_arn, raw)
        return {"HumanLoopArn": doc["arn"]}

    def _same_loop(self, existing: dict[str, Any], flow_arn: str, raw: str) -> dict[str, Any]:
        if existing["status"] == IN_PROGRESS and existing["flow_arn"] == flow_arn and existing.get("raw_input") == raw:
            return {"HumanLoopArn": existing["arn"]}  # the same request again
        raise errors.Conflict(f"a human loop named {existing['name']} exists ({existing['status']}) with other input; "
                              "human loop names are unique")

    async def _reviewable(self, content: dict[str, Any], account: str) -> dict[str, Any]:
        """What of the input makes the loop reviewable; AccessDenied for what names another account's."""
        fields: dict[str, Any] = {}
        version, project = content.get("projectVersionArn"), content.get("projectArn")
        if isinstance(version, str) and "/version/" in version:
            fields["version_arn"] = version
        if isinstance(project, str) and ":project/" in project and "/version/" not in project:
            fields["project_arn"] = project
        for arn in (fields.get("version_arn"), fields.get("project_arn")):
            if arn is not None and account_of(arn) not in (account, None):
                raise errors.AccessDenied(f"HumanLoopInput names {arn[:300]}, a resource of another account than {account}")
        predictions = content.get("customLabels")
        if isinstance(predictions, list) and all(isinstance(p, dict) and "Name" in p and "Confidence" in p for p in predictions):
            fields["predictions"] = predictions
            fields["labels"] = sorted({p["Name"] for p in predictions})
        task = content.get("taskType")
        if task in ("classification", "multilabel", "detection"):
            fields["task"] = task
        elif fields.get("predictions"):
            fields["task"] = "detection" if any(p.get("Geometry") for p in fields["predictions"]) else "classification"
        ref = content.get("taskObject")
        if isinstance(ref, str) and ref.startswith("s3://") and "/" in ref[5:]:
            bucket, key = ref[5:].split("/", 1)
            try:
                await self.buckets.check(bucket, account)
            except errors.InvalidParameter:
                pass  # no such bucket can exist: the image is unreadable, the loop simply not trainable
            fields["image"] = {"bucket": bucket, "key": key, "sha256": await self._sha256(bucket, key),
                               **await self._image_size(bucket, key)}
        return fields

    def _new(self, name: str, flow: dict[str, Any], created_ms: int | None, *, source: str, **fields: Any) -> dict[str, Any]:
        """A new loop of ``flow``, in the flow's account."""
        created_ms = created_ms or clock.now_ms()
        bucket, key = output_location(flow["output_config"]["S3OutputPath"], flow["name"], name, created_ms)
        predictions = fields.get("predictions") or []
        return {
            "_id": record_id(flow["account"], name),
            "account": flow["account"],
            "name": name,
            "arn": self.accounts.arn(HUMAN_LOOP, flow["account"], name),
            "flow_arn": flow["arn"],
            "flow_name": flow["name"],
            "created_ms": created_ms,
            "status": IN_PROGRESS,
            "source": source,
            "audit": flow["audit"],
            "task_count": flow["task_count"],
            "task": fields.pop("task", None) or flow.get("ui"),
            "title": flow.get("title"),
            "description": flow.get("description"),
            "expires_ms": created_ms + flow["availability_seconds"] * 1000 if flow.get("availability_seconds") else None,
            "project_arn": None,
            "version_arn": None,
            "labels": [],
            "image": None,
            "predictions": [],
            "thresholds": {},
            "selected": [],
            # Reviewers see the least confident first.
            "priority": max((p["Confidence"] for p in predictions), default=0.0),
            "answers": [],
            "skips": [],
            "consolidated": None,
            "entry": None,
            "output": {"bucket": bucket, "key": key},
            **fields,
            "project_name": project_name(fields.get("project_arn")),
        }

    async def _insert(self, doc: dict[str, Any], flow: dict[str, Any], uow: UnitOfWork) -> None:
        """Add the loop's insert and its cap counters to ``uow``; CapReached if a cap is full."""
        now = clock.now_ms()
        counters = []
        for window, cap in (flow.get("caps") or {}).items():
            counter_id = f"{flow['_id']}:{window}"
            bucket = now // (CAP_SECONDS[window] * 1000)
            counter = await self.store.get(LOOP_COUNTS, counter_id)
            count = counter["count"] if counter and counter["bucket"] == bucket else 0
            if count >= cap:
                capped = (counter or {}).get("capped", 0) + 1
                await self.store.commit([Put(LOOP_COUNTS, {**stored(counter), "capped": capped})])
                raise CapReached(f"flow definition {flow['name']} opened its {cap} loop(s) this {window} "
                                 f"(tag customlabels:max-loops-per-{window})")
            counters.append(Put(LOOP_COUNTS, {"_id": counter_id, "bucket": bucket, "count": count + 1,
                                              "capped": (counter or {}).get("capped", 0)},
                                expected_version=counter["_version"] if counter else 0))
        uow.add(Insert(LOOPS, doc), *counters)

    async def _image_size(self, bucket: str, key: str) -> dict[str, Any]:
        try:
            info = await inspect_blob(self.blobs, bucket, key)
        except ImageProblem:
            return {}
        return {"width": info.width, "height": info.height}

    async def _sha256(self, bucket: str, key: str) -> str | None:
        try:
            return hashlib.sha256(await self.blobs.get(bucket, key)).hexdigest()
        except Exception:  # noqa: BLE001 - an unreadable image is simply not trainable
            return None

    # --- A2I operations -----------------------------------------------------------------
    async def describe(self, req: dict[str, Any]) -> dict[str, Any]:
        return loop_description(await self.get(req["HumanLoopName"]))

    async def list(self, req: dict[str, Any]) -> dict[str, Any]:
        flow_arn = req["FlowDefinitionArn"]
        if await self.flows.by_arn(flow_arn) is None:
            raise errors.ResourceNotFound(f"flow definition {flow_arn} does not exist")
        descending = req.get("SortOrder", "Descending") == "Descending"
        after, before = req.get("CreationTimeAfter"), req.get("CreationTimeBefore")
        scope = ["ListHumanLoops", flow_arn, descending, str(after), str(before)]
        docs, token = await paging.page(
            self.store, self.tokens, LOOPS, [Eq("flow_arn", flow_arn)], order_by=("created_ms",), descending=descending,
            limit=req.get("MaxResults", DEFAULT_PAGE), token=req.get("NextToken"), scope=scope,
            keep=lambda doc: paging.in_range(doc["created_ms"], after, before, descending=descending))
        return {"HumanLoopSummaries": [loop_summary(d) for d in docs], "NextToken": token}

    async def stop(self, req: dict[str, Any]) -> dict[str, Any]:
        doc = await self.get(req["HumanLoopName"])
        if doc["status"] == STOPPED:
            return {}
        if doc["status"] != IN_PROGRESS:
            raise errors.InvalidParameter(f"human loop {doc['name']} is {doc['status']}: only a loop in progress can be stopped")
        doc.update(status=STOPPED, stopped_ms=clock.now_ms())
        await self.save(doc)
        return {}

    async def delete(self, req: dict[str, Any]) -> dict[str, Any]:
        doc = await self.get(req["HumanLoopName"])
        if doc["status"] == IN_PROGRESS:
            raise errors.InvalidParameter(f"human loop {doc['name']} is in progress: stop it first (StopHumanLoop)")
        uow = self.uow()
        uow.add(Delete(LOOPS, doc["_id"], expected_version=doc["_version"]))
        try:
            await uow.commit()
        except VersionConflict:
            raise errors.Conflict(f"human loop {doc['name']} changed meanwhile; try again") from None
        return {}

    async def save(self, doc: dict[str, Any], *events) -> None:
        uow = self.uow()
        uow.add(Put(LOOPS, stored(doc), expected_version=doc["_version"]))
        uow.emit(*events)
        try:
            await uow.commit()
        except VersionConflict:
            raise errors.Conflict(f"human loop {doc['name']} changed meanwhile; try again") from None

    # --- completion ---------------------------------------------------------------------
    async def complete(self, doc: dict[str, Any]) -> None:
        """``doc`` has its TaskCount answers: output.json, then status and events in one commit."""
        consolidated = consolidate(doc["answers"], predictions=doc["predictions"], thresholds=doc["thresholds"],
                                   task=doc["task"])
        now = clock.now_ms()
        doc.update(status=COMPLETED, completed_ms=now, consolidated=consolidated)
        output = ObjectLocation(**doc["output"])
        await self.blobs.ensure_bucket(output.bucket)
        await self.blobs.put(output.bucket, output.key, json.dumps(output_json(doc), indent=1).encode())
        events: list = [HumanLoopCompleted(
            project_arn=doc["project_arn"], flow_definition_arn=doc["flow_arn"],
            human_loop_name=doc["name"], human_loop_arn=doc["arn"], version_arn=doc["version_arn"],
            output=output, outcome=consolidated["kind"], audit=doc["audit"])]
        image = doc.get("image")
        trainable = not doc["audit"] and doc.get("project_arn") and image and image.get("sha256")
        if trainable:
            line = ground_truth_line(
                source_ref=f"s3://{image['bucket']}/{image['key']}", task=doc["task"], truth=consolidated,
                image_size=(image["width"], image["height"]) if image.get("width") else None,
                flow_name=doc["flow_name"], loop_name=doc["name"], version_arn=doc["version_arn"], answers=doc["answers"])
            events.append(FeedbackAccepted(project_arn=doc["project_arn"], human_loop_name=doc["name"],
                                           flow_definition_arn=doc["flow_arn"], line=line, image_sha256=image["sha256"]))
        uow = self.uow()
        uow.add(Put(LOOPS, stored(doc), expected_version=doc["_version"]))
        if doc["audit"] and doc.get("version_arn"):
            uow.add(await self._audit_count(doc, consolidated["kind"] == "ACCEPT"))
        uow.emit(*events)
        await uow.commit()  # VersionConflict: the caller takes the answer again on a fresh read
        if doc["audit"] and doc.get("version_arn"):
            await self.audit_counted(doc["flow_arn"])

    async def _audit_count(self, doc: dict[str, Any], accepted: bool) -> Put:
        audit_id = f"{doc['flow_arn']}|{doc['version_arn']}"
        found = await self.store.get(AUDITS, audit_id)
        counts = stored(found) if found else {"_id": audit_id, "flow_arn": doc["flow_arn"], "flow_name": doc["flow_name"],
                                              "version_arn": doc["version_arn"], "reviewed": 0, "accepted": 0}
        counts["reviewed"] += 1
        counts["accepted"] += int(accepted)
        return Put(AUDITS, counts, expected_version=found["_version"] if found else 0)

    async def expire(self, now_ms: int, limit: int = 100) -> int:
        """Fail the loops nobody finished within their flow's TaskAvailabilityLifetimeInSeconds."""
        page = await self.store.find(LOOPS, [Eq("status", IN_PROGRESS)], order_by=("created_ms",), limit=limit)
        expired = 0
        for doc in page.items:
            if doc.get("expires_ms") and doc["expires_ms"] <= now_ms:
                doc.update(status=FAILED, failure_code="Expired",
                           failure_reason="no reviewer completed the task within TaskAvailabilityLifetimeInSeconds")
                try:
                    await self.save(doc)
                    expired += 1
                except errors.Conflict:
                    pass  # answered meanwhile
        return expired

    async def on_entry_written(self, loop_id: str, entry: dict[str, Any]) -> None:
        """What became of the loop's FeedbackAccepted (shown to reviewers); ``loop_id``: ``record_id``'s."""
        for _ in range(5):
            doc = await self.store.get(LOOPS, loop_id)
            if doc is None or doc.get("entry") == entry:
                return
            doc["entry"] = entry
            try:
                await self.save(doc)
                return
            except errors.Conflict:
                continue


def output_json(doc: dict[str, Any]) -> dict[str, Any]:
    """A completed loop's output.json, in A2I's format (plus our consolidated answer)."""
    ui = _UI_ANSWER.get(doc.get("task") or "", "crowd-image-classifier")
    image = doc.get("image") or {}
    answers = []
    for a in doc["answers"]:
        if ui == "crowd-bounding-box":
            width, height = image.get("width") or 1, image.get("height") or 1
            content = {"boundingBoxes": [{"label": b["Label"], "left": round(b["Left"] * width), "top": round(b["Top"] * height),
                                          "width": round(b["Width"] * width), "height": round(b["Height"] * height)}
                                         for b in a["boxes"]],
                       "inputImageProperties": {"width": image.get("width"), "height": image.get("height")}}
        elif ui == "crowd-image-classifier-multi-select":
            content = {"labels": a["labels"]}
        else:
            content = {"label": a["labels"][0] if a["labels"] else None}
        answers.append({
            "answerContent": {ui: content, "customlabels-answer": {"kind": a["kind"], "labels": a["labels"], "boxes": a["boxes"]}},
            "acceptanceTime": iso_ms(a.get("accepted_ms") or a["submitted_ms"]),
            "submissionTime": iso_ms(a["submitted_ms"]),
            "timeSpentInSeconds": a.get("seconds"),
            "workerId": a["worker_id"],
        })
    out = {
        "flowDefinitionArn": doc["flow_arn"],
        "humanAnswers": answers,
        "humanLoopName": doc["name"],
        "inputContent": doc.get("input_content"),
        "customlabels": {"consolidatedAnswer": doc.get("consolidated"), "audit": doc["audit"],
                         "projectVersionArn": doc.get("version_arn"),
                         "image": f"s3://{image['bucket']}/{image['key']}" if image else None},
    }
    if doc.get("source") == "capture":
        out["awsManagedHumanLoopRequestSource"] = "Custom/Rekognition/DetectCustomLabels/Image/V1"
    return out
