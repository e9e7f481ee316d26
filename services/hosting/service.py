"""The hosting service: StartProjectVersion, StopProjectVersion, DetectCustomLabels.

State (collection ``versions``, one document per startable version):

* a read model of the versions that finished training (``VersionCompleted``:
  where the artifact lies; ``VersionDeleted`` forgets it), and
* hosting's side of each: ``status`` (STARTING, RUNNING, FAILED, STOPPING,
  STOPPED, or None before the first start), ``desired`` (RUNNING or
  STOPPED: whether units should run), Min/MaxInferenceUnits, the
  scale-to-zero setting and a ``generation`` bumped by every start.

The API calls only change documents (and emit ``VersionStatusChanged``,
which the training service shows in DescribeProjectVersions); a
**reconcile loop** (every ``RECONCILE_SECONDS``, and at once after a change
here) makes this replica's units match them: it starts a ``ModelPool`` for
every version that should run, moves STARTING to RUNNING once the pool's
units are up and health-checked (or to FAILED with the reason), stops pools
whose version should not run, and moves STOPPING to STOPPED once they are
gone. So a restarted hosting service brings back the units of every RUNNING
version by itself, and requests meanwhile wait for them as for a cold start.

Distributed mode, several hosting replicas: every replica runs its own
units for every RUNNING version (so Min/MaxInferenceUnits count per replica,
and the gateway spreads requests over replicas); the first replica whose
pool is up moves the version to RUNNING and the first whose pool is gone
moves it to STOPPED (conditional writes: exactly one wins), the others
follow within a reconcile period. A simple, honest scheme: capacity grows
with replicas, nothing needs a lease, and a replica that dies takes only its
own units with it.

DetectCustomLabels takes ``Image.Bytes`` (at most 4 MB, the reference's
documented limit, though its model lets 5 MB through) or
``Image.S3Object`` from the blob store (at most 15 MB), refuses anything but
PNG and JPEG before it reaches a unit, and answers with the labels the unit
chose: above each label's assumed threshold when MinConfidence is omitted,
above MinConfidence otherwise (0 returns every label), best first, at most
MaxResults, with ``Geometry.BoundingBox`` ratios for detection models only.

Each project also has a stable ARN (``aliases``): DetectCustomLabels on it
answers with the project's live version, which promotion moves. Answers of
a version bound to a flow definition are offered to ``capture``, which opens
human loops (PredictionCaptured) without slowing or failing the call.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Mapping

from customlabels import clock, errors
from customlabels.arns import account_of
from customlabels.events import AliasSwitchRequested, Event, VersionCompleted, VersionDeleted, VersionStatusChanged
from customlabels.images import IMAGE_MAX_BYTES
from customlabels.messaging import EventHandler, UnitOfWork, transient
from customlabels.ml.runtime.artifact import CARD_NAME, ONNX_NAME
from customlabels.ports.blobs import InvalidKey, NoSuchBucket, NoSuchKey
from customlabels.ports.documents import Collection, Delete, Eq, Index, Insert, Put, VersionConflict, retry_on_conflict, stored
from customlabels.ports.operations import Operations
from customlabels.service import Service
from customlabels.tags import SCALE_TO_ZERO_AFTER_SECONDS as SCALE_TO_ZERO_TAG

from services.hosting import metrics
from services.hosting.aliases import COLLECTION as ALIASES_COLLECTION, Aliases
from services.hosting.capture import Capture, custom_labels
from services.hosting.pool import ModelPool, NotServing, Scaling, event
from services.hosting.protocol import CALIBRATION_FILE
from services.hosting.unit_client import UnitError

log = logging.getLogger("customlabels.hosting")

VERSIONS = "versions"
RECONCILE_SECONDS = 1.0
ARRIVAL_SECONDS = 10.0  # how long a call waits for a version that completed a moment ago (``_arriving``)
IMAGE_BYTES_LIMIT = 4 * 1024 * 1024  # the reference's documented limit for Image.Bytes
S3_IMAGE_LIMIT = IMAGE_MAX_BYTES  # 15 MB, as for dataset images
_JPEG, _PNG = b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n"


_UNIT_ERRORS = {cls.code: cls for cls in (errors.ImageTooLarge, errors.InvalidImageFormat, errors.InvalidParameter)}


@dataclass(frozen=True)
class HostingConfig:
    """Knobs, from the environment (``CUSTOMLABELS_HOSTING_*``); the defaults suit one machine."""

    max_units: int = 8  # the most Min/MaxInferenceUnits a version may ask for (LimitExceededException)
    scale_out_seconds: float = 3.0
    scale_in_seconds: float = 60.0
    queue_seconds: float = 1.0
    start_timeout: float = 120.0
    unit_threads: int = 0  # 0: one per core
    unit_runners: int = 0  # 0: 2 on a CPU, 1 on a GPU
    unit_max_batch: int = 0  # 0: measured
    unit_max_wait_ms: float = 2.0
    unit_spinning: int = 0  # 1: onnxruntime's threads spin between runs (lower latency, CPU burnt when idle)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> HostingConfig:
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for name in cls.__dataclass_fields__:
            raw = env.get(f"CUSTOMLABELS_HOSTING_{name.upper()}")
            if raw:
                values[name] = type(getattr(cls, name))(raw)  # int or float, as the default
        return cls(**values)

    def unit_options(self) -> dict[str, Any]:
        return {"threads": self.unit_threads, "runners": self.unit_runners, "max_batch": self.unit_max_batch,
                "max_wait_ms": self.unit_max_wait_ms, "spinning": self.unit_spinning}


class HostingService(Service):
    name = "hosting"
    collections = (Collection(VERSIONS, (Index(("desired",)), Index(("status",)))), ALIASES_COLLECTION)

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        self.config = HostingConfig.from_env()
        self.models_dir = Path(ctx.settings.data_dir) / "hosting" / "models"
        self.pools: dict[str, ModelPool] = {}
        self._stopping: dict[str, asyncio.Task] = {}
        self._bringing_up: dict[str, asyncio.Task] = {}
        self._wake: asyncio.Event | None = None
        self._reconciler: asyncio.Task | None = None
        self.aliases = Aliases(self.store, ctx.arns, VERSIONS)
        self.capture = Capture(ctx.router, ctx.blobs, self._emit)

    def operations(self) -> Operations:
        return {
            "StartProjectVersion": self.start_project_version,
            "StopProjectVersion": self.stop_project_version,
            "DetectCustomLabels": self.detect_custom_labels,
        }

    def handlers(self) -> Mapping[type[Event], EventHandler]:
        return {VersionCompleted: self.on_version_completed, VersionDeleted: self.on_version_deleted,
                AliasSwitchRequested: self.aliases.on_switch_requested}

    async def start(self) -> None:
        await super().start()
        await self.capture.start()
        self._wake = asyncio.Event()
        self._reconciler = asyncio.create_task(self._reconcile_loop(), name="hosting-reconcile")

    async def stop(self) -> None:
        if self._reconciler:
            self._reconciler.cancel()
            await asyncio.gather(self._reconciler, return_exceptions=True)
        for task in list(self._bringing_up.values()):
            task.cancel()
        await asyncio.gather(*self._bringing_up.values(), return_exceptions=True)
        await asyncio.gather(*(pool.stop(grace=5.0) for pool in self.pools.values()),
                             *self._stopping.values(), return_exceptions=True)
        self.pools.clear()
        await self.capture.stop()
        await super().stop()

    # --- lookups ---------------------------------------------------------------------------
    async def _version(self, arn: str, *, for_detect: bool = False) -> dict[str, Any]:
        parsed = self.ctx.arns.parse(arn)
        if parsed is not None and parsed.stable:
            raise errors.InvalidParameter(
                f"{arn} is project {parsed.project_name}'s stable ARN, not a version: start or stop the version it "
                "points at (DescribeProjectVersions with VersionNames ['live'] shows it)")
        doc = await self.store.get(VERSIONS, arn)
        if doc is None:
            doc = await self._arriving(arn, for_detect)
        return doc

    async def _arriving(self, arn: str, for_detect: bool) -> dict[str, Any]:
        """A version hosting does not know yet. One whose training (or copy) just completed is on its way
        (``VersionCompleted``, through training's outbox and the bus): waited for, up to ``ARRIVAL_SECONDS``,
        so a caller that saw TRAINING_COMPLETED can start it at once. Otherwise raises: not trained (yet),
        or not there at all."""
        status = await self._training_status(arn)
        if status is None:
            raise errors.ResourceNotFound(f"model version {arn} does not exist")
        if status in ("TRAINING_COMPLETED", "COPYING_COMPLETED"):
            deadline = time.monotonic() + ARRIVAL_SECONDS
            while time.monotonic() < deadline:
                await asyncio.sleep(0.05)
                if (doc := await self.store.get(VERSIONS, arn)) is not None:
                    return doc
            raise errors.ServiceUnavailable(f"model version {arn} is {status}, and hosting has not received it "
                                            "yet (its services are busy or restarting): retry in a few seconds")
        message = f"model version {arn} is {status}; only a TRAINING_COMPLETED version can be started"
        raise (errors.ResourceNotReady if for_detect else errors.ResourceInUse)(message)

    async def _training_status(self, arn: str) -> str | None:
        """The version's status as the training service has it; None when there is no such version."""
        parsed = self.ctx.arns.parse(arn)
        if parsed is None or parsed.kind != "version":
            return None
        try:
            projects = await self.ctx.router.call("DescribeProjects", {"ProjectNames": [parsed.project_name]})
            for project in projects.get("ProjectDescriptions", []):
                found = await self.ctx.router.call("DescribeProjectVersions", {
                    "ProjectArn": project["ProjectArn"], "VersionNames": [parsed.version_name]})
                for version in found.get("ProjectVersionDescriptions", []):
                    if version["ProjectVersionArn"] == arn:
                        return version["Status"]
        except errors.ApiError as failure:
            if transient(failure):  # training could not be asked: say so, rather than "does not exist"
                raise
        return None

    async def _scale_to_zero_seconds(self, arn: str) -> float | None:
        try:
            tags = (await self.ctx.router.call("ListTagsForResource", {"ResourceArn": arn})).get("Tags") or {}
        except errors.ResourceNotFound:
            return None
        raw = tags.get(SCALE_TO_ZERO_TAG)
        if raw is None:
            return None
        try:
            seconds = float(raw)
        except ValueError:
            seconds = -1.0
        if not seconds > 0:
            raise errors.InvalidParameter(f"the tag {SCALE_TO_ZERO_TAG} must be a number of seconds above 0, not {raw!r}")
        return seconds

    # --- operations ----------------------------------------------------------------------------
    async def start_project_version(self, req: dict[str, Any]) -> dict[str, Any]:
        arn = req["ProjectVersionArn"]
        min_units = req["MinInferenceUnits"]
        max_units = req.get("MaxInferenceUnits")
        if max_units is not None and max_units < min_units:
            raise errors.InvalidParameter(
                f"MaxInferenceUnits ({max_units}) must be at least MinInferenceUnits ({min_units})")
        if max(min_units, max_units or 0) > self.config.max_units:
            raise errors.LimitExceeded(
                f"at most {self.config.max_units} inference units per model here (CUSTOMLABELS_HOSTING_MAX_UNITS)")
        doc = await self._version(arn)
        if doc.get("status") in ("STARTING", "RUNNING", "STOPPING"):
            raise errors.ResourceInUse(f"model version {arn} is {doc['status']}")
        scale_to_zero = await self._scale_to_zero_seconds(arn)
        units = f"{min_units} inference unit{'s' if min_units > 1 else ''}"
        doc.update(
            status="STARTING",
            status_message=f"starting {units}" + (f" (autoscaling up to {max_units})" if max_units else ""),
            desired="RUNNING",
            min_units=min_units,
            max_units=max_units,
            scale_to_zero_seconds=scale_to_zero,
            generation=doc.get("generation", 0) + 1,
            updated_at=clock.now().isoformat(),
        )
        await self._commit_status(doc)
        return {"Status": "STARTING"}

    async def stop_project_version(self, req: dict[str, Any]) -> dict[str, Any]:
        arn = req["ProjectVersionArn"]
        doc = await self._version(arn)
        if doc.get("status") not in ("STARTING", "RUNNING", "FAILED"):
            raise errors.ResourceInUse(
                f"model version {arn} is {doc.get('status') or 'TRAINING_COMPLETED'}, not running: nothing to stop")
        doc.update(status="STOPPING", status_message="stopping its inference units", desired="STOPPED",
                   updated_at=clock.now().isoformat())
        await self._commit_status(doc)
        return {"Status": "STOPPING"}

    async def _emit(self, event: Event) -> None:
        """Commit one event through the outbox (capture's writer)."""
        uow = self.uow()
        uow.emit(event)
        await uow.commit()

    async def _commit_status(self, doc: dict[str, Any]) -> None:
        uow = self.uow()
        uow.add(Put(VERSIONS, stored(doc), expected_version=doc["_version"]))
        uow.emit(_status_event(doc))
        try:
            await uow.commit()
        except VersionConflict:
            raise errors.ResourceInUse(f"model version {doc['_id']} changed meanwhile; retry") from None
        self._poke()

    async def detect_custom_labels(self, req: dict[str, Any]) -> dict[str, Any]:
        """Answer with the version named, or, for a project's stable ARN, with the version it points at
        (re-read once if that one stopped meanwhile: a promotion switched it)."""
        requested = req["ProjectVersionArn"]
        arn = await self.aliases.resolve(requested) or requested
        try:
            return await self._detect(arn, req)
        except errors.ResourceNotReady:
            if arn == requested:
                raise
            now = await self.aliases.resolve(requested, fresh=True)
            if now == arn:
                raise
            return await self._detect(now, req)

    async def _detect(self, arn: str, req: dict[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        request_id = uuid.uuid4().hex[:16]
        outcome = "ok"
        try:
            pool = self.pools.get(arn)
            if pool is None or not pool.accepting:
                pool = await self._pool_for_request(arn)
            image = await self._image(req.get("Image") or {}, account_of(arn) or self.ctx.settings.account_id)
            capture = self.capture.bound(arn)
            try:
                answer = await pool.detect(image, req.get("MinConfidence"), req.get("MaxResults"), capture)
            except NotServing:
                raise errors.ResourceNotReady(f"model version {arn} is stopping") from None
            except UnitError as refused:
                raise _UNIT_ERRORS.get(refused.code, errors.InternalServerError)(refused.message) from None
        except errors.ApiError as error:
            outcome = error.code
            raise
        finally:
            seconds = time.perf_counter() - started
            if outcome != "ResourceNotFoundException":  # unknown ARNs would make a series each
                metrics.REQUESTS.labels(version=arn, outcome=outcome).inc()
                metrics.LATENCY.labels(version=arn).observe(seconds)
            if log.isEnabledFor(logging.DEBUG) or outcome not in ("ok", "ThrottlingException"):
                log.log(logging.DEBUG if outcome == "ok" else logging.INFO,
                        event("detect", request_id=request_id, version=arn, outcome=outcome,
                              ms=round(seconds * 1000, 2)))
        if "capture" in answer:
            self.capture.offer(arn, {k: v for k, v in req.items() if k != "Image"}, image, answer["capture"])
        return {"CustomLabels": custom_labels(answer["labels"])}

    async def _pool_for_request(self, arn: str) -> ModelPool:
        """The pool for a version this replica does not serve at this moment: ResourceNotReady unless it
        is RUNNING (then its units come up here, as for a cold start: another replica started it, or
        this one restarted)."""
        doc = await self._version(arn, for_detect=True)
        if doc.get("desired") == "RUNNING" and doc.get("status") == "RUNNING":
            self._ensure_pool(doc)
            task = self._bringing_up.get(arn)
            if task is not None:
                await asyncio.wait({task}, timeout=self.config.start_timeout)
            pool = self.pools.get(arn)
            if pool is not None and pool.accepting:
                return pool
        status = doc.get("status") or "TRAINING_COMPLETED"
        raise errors.ResourceNotReady(
            f"model version {arn} is {status}, not RUNNING: start it with StartProjectVersion and wait "
            "for RUNNING (the project_version_running waiter)")

    async def _image(self, image: dict[str, Any], account: str) -> bytes:
        """The image's bytes: given, or read from a bucket of ``account`` (the version's)."""
        data, s3 = image.get("Bytes"), image.get("S3Object")
        if (data is None) == (s3 is None):
            raise errors.InvalidParameter("give the image as exactly one of Image.Bytes and Image.S3Object")
        if data is not None:
            if len(data) > IMAGE_BYTES_LIMIT:
                raise errors.ImageTooLarge(f"the image is {len(data)} bytes; Image.Bytes takes at most "
                                    f"{IMAGE_BYTES_LIMIT // 1024 // 1024} MB (use Image.S3Object for up to 15 MB)")
            name = "the image"
        else:
            bucket, key = s3.get("Bucket"), s3.get("Name")
            name = f"s3://{bucket}/{key}"
            if not bucket or not key:
                raise errors.InvalidParameter("Image.S3Object needs Bucket and Name")
            await self.ctx.buckets.check(bucket, account, refuse=errors.InvalidS3Object)
            try:
                info = await self.ctx.blobs.stat(bucket, key)
                if info.size > S3_IMAGE_LIMIT:
                    raise errors.ImageTooLarge(f"{name} is {info.size} bytes; the limit is "
                                        f"{S3_IMAGE_LIMIT // 1024 // 1024} MB")
                data = await self.ctx.blobs.get(bucket, key)
            except (NoSuchKey, NoSuchBucket, InvalidKey) as problem:
                raise errors.InvalidS3Object(f"{name} cannot be read: {type(problem).__name__}") from None
        if not (data.startswith((_JPEG, _PNG))):
            raise errors.InvalidImageFormat(f"{name} is not a PNG or JPEG image")
        return data

    # --- events ------------------------------------------------------------------------------
    async def on_version_completed(self, event: VersionCompleted, uow: UnitOfWork) -> None:
        doc = await self.store.get(VERSIONS, event.version_arn)
        model = {"bucket": event.model.bucket, "prefix": event.model.prefix}
        if doc is None:
            uow.add(Insert(VERSIONS, {
                "_id": event.version_arn, "project_arn": event.project_arn, "version_name": event.version_name,
                "model": model, "status": None, "desired": "STOPPED", "generation": 0,
                "updated_at": clock.now().isoformat(),
            }))
        else:
            doc["model"] = model
            uow.add(Put(VERSIONS, stored(doc), expected_version=doc["_version"]))

    async def on_version_deleted(self, event: VersionDeleted, uow: UnitOfWork) -> None:
        uow.add(Delete(VERSIONS, event.version_arn))
        self._poke()  # the reconcile loop stops its units, if any
        # The local copy of the artifact (a running unit keeps its open file until it stops).
        await asyncio.to_thread(shutil.rmtree, self._model_folder(event.version_arn), True)

    def _model_folder(self, arn: str) -> Path:
        return self.models_dir / hashlib.sha256(arn.encode()).hexdigest()[:24]

    # --- reconciliation ---------------------------------------------------------------------
    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def _reconcile_loop(self) -> None:
        while True:
            try:
                await self.reconcile()
            except asyncio.CancelledError:
                raise
            except Exception:  # the store may be down for a while: try again
                log.exception("hosting reconcile failed; retrying")
            try:
                await asyncio.wait_for(self._wake.wait(), RECONCILE_SECONDS)
            except TimeoutError:
                pass
            self._wake.clear()

    async def reconcile(self) -> None:
        wanted = {d["_id"]: d for d in await self._all(Eq("desired", "RUNNING"))}
        for arn, pool in list(self.pools.items()):
            doc = wanted.get(arn)
            if doc is None or doc.get("generation") != pool.generation:
                self._stop_pool(arn)
        for doc in wanted.values():
            pool = self.pools.get(doc["_id"])
            if pool is None:
                self._ensure_pool(doc)
            elif pool.accepting and doc.get("status") == "STARTING":
                await self._advance(doc["_id"], doc["generation"], "STARTING", "RUNNING", "the model is running")
        for doc in await self._all(Eq("status", "STOPPING")):
            if doc["_id"] not in self.pools and doc["_id"] not in self._stopping:
                await self._advance(doc["_id"], doc.get("generation"), "STOPPING", "STOPPED", "the model is stopped")

    async def _all(self, condition) -> list[dict[str, Any]]:
        docs, cursor = [], None
        while True:
            page = await self.store.find(VERSIONS, [condition], limit=100, after=cursor)
            docs += page.items
            cursor = page.next_cursor
            if cursor is None:
                return docs

    def _ensure_pool(self, doc: dict[str, Any]) -> None:
        arn = doc["_id"]
        if arn in self.pools:
            return
        self.capture.watch(arn, doc["project_arn"])  # its flow binding, read while the units start
        scaling = Scaling(
            min_units=doc["min_units"],
            max_units=doc.get("max_units") or doc["min_units"],
            scale_to_zero_seconds=doc.get("scale_to_zero_seconds"),
            scale_out_seconds=self.config.scale_out_seconds,
            scale_in_seconds=self.config.scale_in_seconds,
            queue_seconds=self.config.queue_seconds,
            start_timeout=self.config.start_timeout,
        )
        pool = ModelPool(arn, self._model_folder(arn), scaling, generation=doc["generation"], unit_options=self.config.unit_options())
        self.pools[arn] = pool
        task = asyncio.create_task(self._bring_up(pool, doc), name=f"bring-up-{arn}")
        self._bringing_up[arn] = task
        task.add_done_callback(lambda _t: self._bringing_up.pop(arn, None))

    async def _bring_up(self, pool: ModelPool, doc: dict[str, Any]) -> None:
        arn = doc["_id"]
        started = time.perf_counter()
        try:
            await self._fetch_model(doc["model"], pool.model_dir)
            # Measured afresh at every start (the machine may have changed); the pool's later
            # units (scale-out, replacements, cold starts) reuse it.
            (pool.model_dir / CALIBRATION_FILE).unlink(missing_ok=True)
            await pool.start()
        except asyncio.CancelledError:
            await pool.stop(grace=0)
            raise
        except Exception as exc:  # noqa: BLE001 - any failure is the reason it FAILED
            log.error(event("start-failed", version=arn, error=str(exc)))
            if self.pools.get(arn) is pool:
                del self.pools[arn]
            await pool.stop(grace=0)
            await self._advance(arn, doc["generation"], doc.get("status"), "FAILED",
                                f"the inference units could not start: {exc}", desired="FAILED")
            return
        if self.pools.get(arn) is not pool:  # stopped while starting
            await pool.stop(grace=0)
            return
        pool.accepting = True
        log.info(event("pool-started", version=arn, units=len(pool.serving), seconds=round(time.perf_counter() - started, 3),
                       pids=pool.pids, max_batch=pool.facts.get("max_batch"),
                       seconds_per_image=pool.facts.get("seconds_per_image")))
        if doc.get("status") == "STARTING":
            await self._advance(arn, doc["generation"], "STARTING", "RUNNING", "the model is running")

    def _stop_pool(self, arn: str) -> None:
        pool = self.pools.pop(arn, None)
        if pool is None:
            return
        self.capture.forget(arn)
        bring_up = self._bringing_up.get(arn)
        if bring_up is not None:
            bring_up.cancel()

        async def stop() -> None:
            try:
                await pool.stop()
            finally:
                self._stopping.pop(arn, None)
                self._poke()  # STOPPING -> STOPPED

        self._stopping[arn] = asyncio.create_task(stop(), name=f"stop-{arn}")

    async def _advance(self, arn: str, generation: int | None, expected: str | None, status: str, message: str,
                       **changes: Any) -> None:
        """Move the version from ``expected`` to ``status``, if it is still there (first replica wins;
        a later reconcile pass tries again if the document kept changing)."""

        async def attempt() -> None:
            doc = await self.store.get(VERSIONS, arn)
            if doc is None or doc.get("generation") != generation or doc.get("status") != expected:
                return
            doc.update(status=status, status_message=message, updated_at=clock.now().isoformat(), **changes)
            uow = self.uow()
            uow.add(Put(VERSIONS, stored(doc), expected_version=doc["_version"]))
            uow.emit(_status_event(doc))
            if status == "RUNNING":
                await self.aliases.follow_running(doc, uow)
            await uow.commit()
            log.info(event("status", version=arn, status=status, message=message))

        await retry_on_conflict(attempt)

    async def _fetch_model(self, model: dict[str, str], folder: Path) -> None:
        """The artifact in this replica's local cache (units load it from there)."""
        if (folder / ONNX_NAME).exists() and (folder / CARD_NAME).exists():
            return
        folder.mkdir(parents=True, exist_ok=True)
        for name in (CARD_NAME, ONNX_NAME):  # the ONNX file last: its presence means complete
            key = f"{model['prefix']}{name}"
            try:
                data = await self.ctx.blobs.get(model["bucket"], key)
            except (NoSuchKey, NoSuchBucket) as missing:
                raise RuntimeError(f"the model artifact s3://{model['bucket']}/{key} is missing") from missing
            tmp = folder / f".{name}.{uuid.uuid4().hex}"
            await asyncio.to_thread(tmp.write_bytes, data)
            os.replace(tmp, folder / name)


def _status_event(doc: dict[str, Any]) -> VersionStatusChanged:
    return VersionStatusChanged(
        project_arn=doc["project_arn"],
        version_arn=doc["_id"],
        version_name=doc["version_name"],
        status=doc["status"],
        status_message=doc.get("status_message"),
        min_inference_units=doc.get("min_units"),
        max_inference_units=doc.get("max_units"),
    )
