"""Capture: DetectCustomLabels answers that meet a bound flow definition's conditions.

Binding: the tag ``customlabels:flow-definition`` (a FlowDefinitionArn) on a
version, or on its project for all its versions; the version's own tag wins.
``Capture`` keeps, per version this replica serves, the bound flow and its
parsed conditions, read in the background (ListTagsForResource,
DescribeFlowDefinition) when the version's units come up and every
``REFRESH_SECONDS`` after, so a tag change applies within that time and no
request ever waits for it.

On the request path (``offer``) the answer is already computed; what remains
is evaluating the conditions on every prediction the model made (before
MinConfidence/MaxResults) and, when they hold, putting the capture on a
bounded queue: microseconds, and never an error for the caller. While the
feedback service cannot be reached, the last binding read stays in force; a
version whose flow could not be read yet (feedback down when its units came
up) captures every answer as pending, and the writer evaluates the flow's
conditions on it once they can be read. A background
writer keeps the image in ``CAPTURE_BUCKET`` under
``<project>/<sha256>.<jpg|png>`` and commits PredictionCaptured through the
outbox, so the feedback service being down loses nothing (the event waits in
the outbox and on the bus). The feedback service opens one loop per flow and
image (the loop name derives from both); this replica also remembers the
last ``SEEN_LIMIT`` (flow, image) pairs it captured, so a retried call or a
load test repeating an image costs nothing more. A full queue drops the
capture (counted in ``customlabels_captures_total{outcome="dropped"}``);
a store that is down or full holds the writer up until it is back (new
captures are dropped once the queue is full); a replica killed before its
writer committed loses at most the captures still queued.
"""
from __future__ import annotations

import asyncio
import collections
import dataclasses
import hashlib
import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from customlabels import activation, errors, tags
from customlabels.arns import account_of, project_name_of
from customlabels.buckets import REVIEWS_BUCKET
from customlabels.events import Event, ObjectLocation, PredictionCaptured
from customlabels.messaging import TRANSIENT_PAUSES, transient
from customlabels.ports.blobs import BlobStore
from customlabels.ports.operations import OperationRouter
from customlabels.wire.dispatch import Caller, acting_as

from services.hosting import metrics

log = logging.getLogger("customlabels.hosting")

CAPTURE_BUCKET = REVIEWS_BUCKET
# Who reads a version's flow definition: hosting, for the version's account (flow names are per account).
CAPTURE_CALLER = "customlabels-hosting"
REFRESH_SECONDS = 5.0
QUEUE_LIMIT = 1000
SEEN_LIMIT = 10_000


@dataclass(frozen=True)
class Binding:
    flow_arn: str
    conditions: activation.Conditions | None  # None: every answer opens a loop (A2I's rule without conditions)
    pending: bool = False  # the flow could not be read yet: capture every answer, decide when it can


class _Unreadable(Exception):
    """The flow definition could not be read now (the feedback service is down or throttling)."""


@dataclass(frozen=True)
class _Capture:
    binding: Binding
    project_arn: str
    version_arn: str
    request: dict[str, Any]
    image: bytes
    image_sha256: str
    facts: dict[str, Any]
    evaluation: activation.Evaluation
    predictions: list[dict[str, Any]]


def custom_labels(rows: list) -> list[dict[str, Any]]:
    """A unit's ``[label, confidence, box]`` rows as DetectCustomLabels' CustomLabels items."""
    items = []
    for name, confidence, box in rows:
        item: dict[str, Any] = {"Name": name, "Confidence": confidence}
        if box is not None:
            left, top, width, height = box
            item["Geometry"] = {"BoundingBox": {"Width": width, "Height": height, "Left": left, "Top": top}}
        items.append(item)
    return items


class Capture:
    def __init__(self, router: OperationRouter, blobs: BlobStore, emit: Callable[[Event], Awaitable[None]]):
        """``emit(event)`` commits one event through the hosting service's outbox."""
        self.router = router
        self.blobs = blobs
        self.emit = emit
        self.bindings: dict[str, Binding | None] = {}  # version ARN -> its flow, None when unbound
        self.watched: dict[str, str] = {}  # version ARN -> project ARN, for the versions served here
        self.queue: asyncio.Queue[_Capture] = asyncio.Queue(QUEUE_LIMIT)
        self.seen: collections.OrderedDict[tuple[str, str], None] = collections.OrderedDict()
        self._tasks: list[asyncio.Task] = []
        self._reads: set[asyncio.Task] = set()
        self._bucket_ready = False

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._write_loop(), name="capture-writer"),
                       asyncio.create_task(self._refresh_loop(), name="capture-bindings")]

    async def stop(self) -> None:
        for task in (*self._tasks, *self._reads):
            task.cancel()
        await asyncio.gather(*self._tasks, *self._reads, return_exceptions=True)

    # --- bindings ----------------------------------------------------------------------------
    def watch(self, version_arn: str, project_arn: str) -> None:
        """A version this replica now serves: read its binding now, and keep it fresh."""
        if version_arn not in self.watched:
            self.watched[version_arn] = project_arn
            task = asyncio.create_task(self.refresh(version_arn), name=f"capture-binding-{version_arn}")
            self._reads.add(task)
            task.add_done_callback(self._reads.discard)

    def forget(self, version_arn: str) -> None:
        self.watched.pop(version_arn, None)
        self.bindings.pop(version_arn, None)

    def bound(self, version_arn: str) -> bool:
        """Whether answers of this version are to be offered (its units then report every prediction)."""
        return self.bindings.get(version_arn) is not None

    async def refresh(self, version_arn: str) -> None:
        project_arn = self.watched.get(version_arn)
        if project_arn is None:
            return
        try:
            self.bindings[version_arn] = await self._read_binding(version_arn, project_arn)
        except _Unreadable as unreadable:  # keep the last binding read; none yet: capture, decide later
            if self.bindings.get(version_arn) is None:
                self.bindings[version_arn] = Binding(str(unreadable), None, pending=True)
        except Exception as exc:  # noqa: BLE001 - keep the last known binding; try again next period
            log.warning("capture: reading the binding of %s failed (%s); trying again", version_arn, exc)

    async def _read_binding(self, version_arn: str, project_arn: str) -> Binding | None:
        flow_arn = (await self._tags(version_arn)).get(tags.FLOW_DEFINITION) or \
            (await self._tags(project_arn)).get(tags.FLOW_DEFINITION)
        if not flow_arn or ":flow-definition/" not in flow_arn:
            return None
        try:
            with acting_as(Caller(CAPTURE_CALLER, account_of(version_arn) or "")):
                flow = await self.router.call("DescribeFlowDefinition", {"FlowDefinitionName": flow_arn.rsplit("/", 1)[1]})
        except errors.ApiError as failure:
            log.info("capture: %s names flow definition %s: %s", version_arn, flow_arn, failure.message)
            if transient(failure):  # the feedback service is down or busy: the flow is still the tag's
                raise _Unreadable(flow_arn) from None
            return None  # no such flow
        if flow["FlowDefinitionArn"] != flow_arn:
            return None
        text = ((flow.get("HumanLoopActivationConfig") or {}).get("HumanLoopActivationConditionsConfig") or {}) \
            .get("HumanLoopActivationConditions")
        return Binding(flow_arn, activation.parse(text) if text else None)

    async def _tags(self, arn: str) -> dict[str, str]:
        try:
            return (await self.router.call("ListTagsForResource", {"ResourceArn": arn})).get("Tags") or {}
        except errors.ResourceNotFound:
            return {}

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_SECONDS)
            for version_arn in list(self.watched):
                await self.refresh(version_arn)

    # --- the request path ------------------------------------------------------------------
    def offer(self, version_arn: str, request: dict[str, Any], image: bytes, facts: dict[str, Any]) -> None:
        """Evaluate the bound conditions on the unit's capture facts; queue the capture when they hold. Never raises."""
        binding, project_arn = self.bindings.get(version_arn), self.watched.get(version_arn)
        if binding is None or project_arn is None:
            return
        try:
            predictions = custom_labels(facts["all"])
            conditions = binding.conditions
            digest = hashlib.sha256(image).hexdigest() if conditions is None or conditions.samples else None
            if conditions is None:  # no conditions, or not known yet (pending: the writer decides)
                evaluation = activation.Evaluation(True, {}, [])
            else:
                evaluation = conditions.evaluate(predictions, flow_arn=binding.flow_arn, image_sha256=digest)
            if not evaluation.activated:
                return
            digest = digest or hashlib.sha256(image).hexdigest()
            if (binding.flow_arn, digest) in self.seen:
                metrics.CAPTURES.labels(outcome="repeated").inc()
                return
            self.queue.put_nowait(_Capture(binding, project_arn, version_arn, request, image, digest, facts, evaluation,
                                           predictions))
            self._remember(binding.flow_arn, digest)
        except asyncio.QueueFull:
            metrics.CAPTURES.labels(outcome="dropped").inc()
        except Exception:  # noqa: BLE001 - capture must never fail the caller
            log.exception("capture: evaluating the conditions failed")
            metrics.CAPTURES.labels(outcome="failed").inc()

    def _remember(self, flow_arn: str, digest: str) -> None:
        self.seen[(flow_arn, digest)] = None
        while len(self.seen) > SEEN_LIMIT:
            self.seen.popitem(last=False)

    # --- the writer ------------------------------------------------------------------------
    async def _write_loop(self) -> None:
        while True:
            capture = await self.queue.get()
            if capture.binding.pending:
                capture = await self._decided(capture)
                if capture is None:
                    continue
            if await self._written(capture):
                metrics.CAPTURES.labels(outcome="captured").inc()
            else:
                self.seen.pop((capture.binding.flow_arn, capture.image_sha256), None)
                metrics.CAPTURES.labels(outcome="failed").inc()

    async def _written(self, capture: _Capture) -> bool:
        """Write ``capture``: a store that is down or full (``transient``) is waited for, however long
        (the bounded queue drops new captures meanwhile); any other failure gets three tries."""
        failures, pause = 0, TRANSIENT_PAUSES[0]
        while True:
            try:
                await self._write(capture)
                return True
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - counted, logged, tried again
                if transient(exc):
                    log.warning("capture: writing %s waits for the store (%s)", capture.image_sha256[:12], exc)
                    await asyncio.sleep(pause)
                    pause = min(2 * pause, TRANSIENT_PAUSES[1])
                    continue
                failures += 1
                log.exception("capture: writing %s failed (attempt %d)", capture.image_sha256[:12], failures)
                if failures == 3:
                    return False
                await asyncio.sleep(0.5 * failures)

    async def _decided(self, capture: _Capture) -> _Capture | None:
        """A pending capture once its version's flow could be read: with that flow's verdict, or None
        when the conditions do not hold, the flow is gone or the version is no longer served here."""
        while (binding := self.bindings.get(capture.version_arn)) is not None and binding.pending:
            await asyncio.sleep(REFRESH_SECONDS / 5)
        if binding is None or binding.flow_arn != capture.binding.flow_arn:
            self.seen.pop((capture.binding.flow_arn, capture.image_sha256), None)
            return None
        evaluation = activation.Evaluation(True, {}, []) if binding.conditions is None else \
            binding.conditions.evaluate(capture.predictions, flow_arn=binding.flow_arn, image_sha256=capture.image_sha256)
        if not evaluation.activated:
            return None
        return dataclasses.replace(capture, binding=binding, evaluation=evaluation)

    async def _write(self, capture: _Capture) -> None:
        if not self._bucket_ready:
            await self.blobs.ensure_bucket(CAPTURE_BUCKET)
            self._bucket_ready = True
        project_name = project_name_of(capture.project_arn)
        extension = "png" if capture.image.startswith(b"\x89PNG") else "jpg"
        key = f"{project_name}/{capture.image_sha256}.{extension}"
        await self.blobs.put(CAPTURE_BUCKET, key, capture.image)
        request = {k: v for k, v in capture.request.items() if k != "Image"}
        request["Image"] = {"S3Object": {"Bucket": CAPTURE_BUCKET, "Name": key}}
        facts = capture.facts
        await self.emit(PredictionCaptured(
            project_arn=capture.project_arn, flow_definition_arn=capture.binding.flow_arn,
            version_arn=capture.version_arn, request=request, task=facts["task"], labels=facts["labels"],
            image=ObjectLocation(bucket=CAPTURE_BUCKET, key=key), image_sha256=capture.image_sha256,
            predictions=capture.predictions, thresholds=facts["thresholds"],
            activation=capture.evaluation.results, selected=capture.evaluation.selected,
        ))
