"""One running model version on this hosting replica: its inference units,
request routing, admission control, autoscaling and scale to zero.

Routing: a request goes to the serving unit with the fewest requests in
flight; the unit batches whatever arrives together (see ``unit``). If the
unit dies before answering, the request is sent again to another unit (or
to the replacement, once it is up): a request is answered or refused, never
lost.

Admission control (throttling): each unit accepts at most
``queue_seconds`` of work (its measured seconds per image times the requests
in flight, at least ``MIN_QUEUE_PER_UNIT``); beyond the capacity of every
unit together the request is refused with ``ThrottlingException``, which the
AWS SDKs retry with backoff. So latency stays bounded (about
``queue_seconds`` of queueing at worst) however many clients push.

Autoscaling, every ``TICK`` seconds, between MinInferenceUnits and
MaxInferenceUnits:

* out: when requests in flight averaged at least ``HIGH_WATER`` per runner
  (work queued behind every runner of every unit) over the last
  ``scale_out_seconds``, one more unit starts (another only after that long
  again);
* in: when, over the last ``scale_in_seconds``, the requests in flight would
  have kept one unit fewer below ``LOW_WATER`` per runner, the least busy
  unit stops taking requests, drains and stops;
* to zero: a version tagged ``customlabels:scale-to-zero-after-seconds``
  stops all its units after that many idle seconds and starts one again on
  the next request (a cold start, measured and logged).

A unit that dies is replaced at once (after a growing pause if it keeps
dying), and every unit is pinged every ``HEALTH_SECONDS``; one that does not
answer within ``HEALTH_TIMEOUT`` is killed and replaced.
"""
from __future__ import annotations

import asyncio
import collections
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from customlabels import errors

from services.hosting import metrics
from services.hosting.unit_client import UnitDied, UnitProcess

log = logging.getLogger("customlabels.hosting")

TICK = 0.25
HIGH_WATER = 2.0  # requests in flight per runner that mean queueing
LOW_WATER = 0.5
MIN_QUEUE_PER_UNIT = 16
HEALTH_SECONDS = 10.0
HEALTH_TIMEOUT = 15.0
ATTEMPTS = 4  # sends of one request (a unit dying under it each time)
MAX_REPLACE_PAUSE = 30.0
WAIT_FOR_UNIT = 30.0  # longest a request waits for a unit to come up (cold start, replacement)


@dataclass(frozen=True)
class Scaling:
    min_units: int
    max_units: int
    scale_to_zero_seconds: float | None = None
    scale_out_seconds: float = 3.0
    scale_in_seconds: float = 60.0
    queue_seconds: float = 1.0
    start_timeout: float = 120.0


class NotServing(Exception):
    """The pool is stopping or stopped."""


def event(what: str, **fields: Any) -> str:
    """A structured log line: one JSON object."""
    return json.dumps({"event": what, **fields}, default=str)


class ModelPool:
    def __init__(self, version_arn: str, model_dir: Path, scaling: Scaling, *, generation: int,
                 unit_options: dict[str, Any] | None = None) -> None:
        self.version_arn = version_arn
        self.model_dir = model_dir
        self.scaling = scaling
        self.generation = generation
        self.unit_options = unit_options or {}
        self.units: list[UnitProcess] = []
        self.starting = 0  # units spawned and not yet up
        self.replacing = 0  # units that died and whose replacement is pending
        self.scaled_to_zero = False  # every unit released for idleness: the next request cold-starts one
        self.outstanding = 0
        self.accepting = False
        self.stopping = False
        self.last_request = time.monotonic()
        self.last_scale = time.monotonic()
        self.cold_start_seconds: list[float] = []
        self.facts: dict[str, Any] = {}
        self._samples: collections.deque[tuple[float, int]] = collections.deque()
        self._available = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self._cold: asyncio.Task | None = None
        self._failures = 0
        self._serial = 0
        self._scaler: asyncio.Task | None = None
        self._labels = {"version": version_arn}

    # --- views ------------------------------------------------------------------------
    @property
    def serving(self) -> list[UnitProcess]:
        return [u for u in self.units if u.serving]

    @property
    def pids(self) -> list[int]:
        return [u.pid for u in self.units if u.pid]

    def capacity(self) -> int:
        seconds = self.facts.get("seconds_per_image") or 0.02
        per_unit = max(MIN_QUEUE_PER_UNIT, math.ceil(self.scaling.queue_seconds / seconds))
        return per_unit * max(1, len(self.serving) + self.starting + self.replacing)

    def _runners(self) -> int:
        return int(self.facts.get("runners") or 1)

    # --- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        """MinInferenceUnits units, started and health-checked; raises if any cannot start."""
        results = await asyncio.gather(*(self._add("start") for _ in range(self.scaling.min_units)),
                                       return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            await self.stop()
            raise failed[0]
        self.last_scale = time.monotonic()
        self._scaler = asyncio.create_task(self._autoscale(), name=f"autoscale-{self.version_arn}")

    async def stop(self, grace: float = 10.0) -> None:
        """Stop taking requests, let those in flight finish (up to ``grace``), stop every unit."""
        self.stopping = True
        self.accepting = False
        self._available.set()  # wake waiters: they see ``stopping``
        if self._scaler:
            self._scaler.cancel()
            await asyncio.gather(self._scaler, return_exceptions=True)
        deadline = time.monotonic() + grace
        while self.outstanding and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await asyncio.gather(*(u.stop(grace=max(0.0, deadline - time.monotonic())) for u in list(self.units)),
                             return_exceptions=True)
        # Units still starting stop themselves when they come up (see _add).
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        self.units.clear()
        metrics.forget(self.version_arn)
        log.info(event("pool-stopped", version=self.version_arn))

    async def _add(self, reason: str) -> UnitProcess:
        self.starting += 1
        self._serial += 1
        name = f"unit-{self.version_arn.rsplit('/', 2)[-2]}-{self._serial}"
        unit = UnitProcess(name, self.model_dir, options=self.unit_options, on_exit=self._on_exit)
        task = asyncio.current_task()
        if task:
            self._tasks.add(task)
        try:
            await unit.start(timeout=self.scaling.start_timeout)
        finally:
            self.starting -= 1
            if task:
                self._tasks.discard(task)
        if self.stopping:
            await unit.stop(grace=0)
            raise NotServing("the model is stopping")
        self.facts = unit.facts
        self.units.append(unit)
        self._available.set()
        self._failures = 0
        metrics.UNITS.labels(**self._labels).set(len(self.serving))
        metrics.UNIT_START.labels(version=self.version_arn, reason=reason).observe(unit.started_seconds or 0)
        log.info(event("unit-started", version=self.version_arn, reason=reason, pid=unit.pid,
                       seconds=round(unit.started_seconds or 0, 3), units=len(self.serving),
                       max_batch=unit.facts.get("max_batch"), providers=unit.facts.get("providers")))
        return unit

    def _spawn(self, reason: str) -> asyncio.Task:
        task = asyncio.create_task(self._add_logged(reason), name=f"{reason}-{self.version_arn}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _add_logged(self, reason: str) -> UnitProcess | None:
        try:
            return await self._add(reason)
        except NotServing:
            return None
        except Exception as exc:  # noqa: BLE001 - logged; the autoscaler tries again
            self._failures += 1
            log.error(event("unit-start-failed", version=self.version_arn, reason=reason, error=str(exc)))
            return None

    def _on_exit(self, unit: UnitProcess) -> None:
        if unit in self.units:
            self.units.remove(unit)
        metrics.UNITS.labels(**self._labels).set(len(self.serving))
        if not self.serving:
            self._available.clear()
        if unit.draining or self.stopping:
            return
        metrics.UNIT_EXITS.labels(**self._labels).inc()
        self._failures += 1
        log.error(event("unit-died", version=self.version_arn, pid=unit.pid, units=len(self.serving)))
        self._schedule_replacement()

    def _schedule_replacement(self) -> None:
        self.replacing += 1  # counted at once, so nothing else starts a unit for the same loss
        task = asyncio.create_task(self._replace(), name=f"replace-{self.version_arn}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _replace(self) -> None:
        try:
            if self._failures > 1:  # it keeps dying: pause longer each time
                await asyncio.sleep(min(MAX_REPLACE_PAUSE, 0.5 * 2 ** (self._failures - 2)))
            if not self.stopping:
                await self._add_logged("replace")
        finally:
            self.replacing -= 1

    # --- requests -----------------------------------------------------------------------
    async def detect(self, image: bytes, min_confidence: float | None, max_results: int | None,
                     capture: bool = False) -> dict[str, Any]:
        if self.stopping or not self.accepting:
            raise NotServing("the model is not running")
        if self.outstanding >= self.capacity():
            raise errors.Throttling(
                f"the model has {self.outstanding} requests in flight, all its {len(self.serving)} inference unit(s) "
                "can take now; retry with backoff (the AWS SDKs do)"
            )
        self.outstanding += 1
        self.last_request = time.monotonic()
        metrics.QUEUE_DEPTH.labels(**self._labels).set(self.outstanding)
        try:
            for attempt in range(ATTEMPTS):
                unit = await self._pick()
                try:
                    answer = await unit.detect(image, min_confidence, max_results, capture)
                except UnitDied:
                    metrics.RETRIES.labels(**self._labels).inc()
                    continue
                if answer.get("first"):
                    metrics.BATCH_SIZE.labels(**self._labels).observe(answer.get("batch", 1))
                answer["unit_pid"] = unit.pid
                return answer
            raise errors.InternalServerError(
                f"the inference unit died {ATTEMPTS} times while serving this request; the image may crash it"
            )
        finally:
            self.outstanding -= 1
            self.last_request = time.monotonic()
            metrics.QUEUE_DEPTH.labels(**self._labels).set(self.outstanding)

    async def _pick(self) -> UnitProcess:
        deadline = time.monotonic() + min(WAIT_FOR_UNIT, self.scaling.start_timeout)
        while True:
            if self.stopping:
                raise NotServing("the model is stopping")
            serving = self.serving
            if serving:
                return min(serving, key=lambda u: u.outstanding)
            if self.scaled_to_zero and (self._cold is None or self._cold.done()):
                self._cold = asyncio.create_task(self._cold_start(), name=f"cold-start-{self.version_arn}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise errors.Throttling("no inference unit came up in time for this request; retry")
            if self._available.is_set():
                self._available.clear()  # set by a unit that has gone again since
            try:
                await asyncio.wait_for(self._available.wait(), min(remaining, 1.0))
            except TimeoutError:
                pass

    async def _cold_start(self) -> None:
        started = time.perf_counter()
        unit = await self._add_logged("cold-start")
        if unit is None:
            return  # the next request tries again
        self.scaled_to_zero = False
        seconds = time.perf_counter() - started
        self.cold_start_seconds.append(seconds)
        metrics.COLD_START.labels(**self._labels).observe(seconds)
        log.info(event("cold-start", version=self.version_arn, seconds=round(seconds, 3), pid=unit.pid))

    # --- autoscaling --------------------------------------------------------------------
    async def _autoscale(self) -> None:
        last_health = time.monotonic()
        while not self.stopping:
            await asyncio.sleep(TICK)
            try:
                self._scale_once(time.monotonic())
                if time.monotonic() - last_health >= HEALTH_SECONDS:
                    last_health = time.monotonic()
                    await self._health_check()
            except Exception:  # the loop must go on
                log.exception("autoscaler of %s failed a round", self.version_arn)

    def _scale_once(self, now: float) -> None:
        s = self.scaling
        self._samples.append((now, self.outstanding))
        keep = max(s.scale_in_seconds, s.scale_out_seconds) + TICK
        while self._samples and self._samples[0][0] < now - keep:
            self._samples.popleft()
        serving = self.serving
        units = len(serving)
        metrics.UNITS.labels(**self._labels).set(units)

        # Scale to zero: idle long enough, nothing in flight or starting.
        if (s.scale_to_zero_seconds is not None and units and not self.outstanding and not self.starting
                and not self.replacing
                and now - self.last_request >= s.scale_to_zero_seconds):
            log.info(event("scale-to-zero", version=self.version_arn, idle_seconds=round(now - self.last_request, 1),
                           units=units))
            self.scaled_to_zero = True
            for unit in serving:
                self._retire(unit)
            metrics.UNITS_DESIRED.labels(**self._labels).set(0)
            return
        if self.scaled_to_zero:
            return  # the next request starts a unit

        # Below Min (a unit died and its replacement failed too): try again.
        if units + self.starting + self.replacing < s.min_units:
            self._schedule_replacement()

        since_scale = now - self.last_scale
        runners = self._runners()
        if units and units + self.starting + self.replacing < s.max_units and since_scale >= s.scale_out_seconds \
                and not self.starting:
            window = [n for t, n in self._samples if t >= now - s.scale_out_seconds]
            if window and sum(window) / len(window) >= HIGH_WATER * runners * units:
                self.last_scale = now
                log.info(event("scale-out", version=self.version_arn, units=units + 1,
                               in_flight_mean=round(sum(window) / len(window), 1)))
                self._spawn("scale-out")
        if units > s.min_units and since_scale >= s.scale_in_seconds:
            window = [n for t, n in self._samples if t >= now - s.scale_in_seconds]
            if window and max(window) <= LOW_WATER * runners * (units - 1) + 1 and \
                    sum(window) / len(window) <= LOW_WATER * runners * (units - 1):
                self.last_scale = now
                victim = min(serving, key=lambda u: u.outstanding)
                log.info(event("scale-in", version=self.version_arn, units=units - 1, pid=victim.pid))
                self._retire(victim)
        metrics.UNITS_DESIRED.labels(**self._labels).set(len(self.serving) + self.starting)

    def _retire(self, unit: UnitProcess) -> None:
        """Stop routing to ``unit``, let it finish what it has, stop it."""
        unit.draining = True
        if unit in self.units:
            self.units.remove(unit)
        if not self.serving:
            self._available.clear()
        task = asyncio.create_task(unit.stop(), name=f"retire-{unit.name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        metrics.UNITS.labels(**self._labels).set(len(self.serving))

    async def _health_check(self) -> None:
        for unit in list(self.serving):
            try:
                await unit.ping(timeout=HEALTH_TIMEOUT)
            except Exception as exc:  # noqa: BLE001 - no answer is the finding
                if unit.dead or unit.draining:
                    continue
                log.error(event("unit-unhealthy", version=self.version_arn, pid=unit.pid, error=repr(exc)))
                await unit.kill()  # on_exit replaces it
