"""Writes and the events they cause, kept together; idempotent event handling.

- ``UnitOfWork`` collects a service's writes and the events they cause and
  commits both in one atomic ``commit``: the events go to the service's
  ``outbox`` collection, never straight to the bus.
- ``OutboxRelay`` moves outbox documents to the bus and then deletes them. A
  crash between the two republishes: consumers deduplicate.
- ``EventHandlers`` subscribes a service to the event types it handles and
  records each applied event id in the same commit as the handler's writes, so
  a redelivered event changes nothing. A handler failing for a reason that
  passes (another service restarting or throttling, a full disk: ``transient``)
  is retried in place, with backoff, for as long as it takes: only other
  failures count towards the bus's dead-lettering, so an event is never lost
  to a peer's restart.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import time
from typing import Awaitable, Callable, Mapping

from customlabels import clock, errors
from customlabels.events import Event
from customlabels.ports.documents import Collection, Delete, DuplicateKey, Insert, ScopedStore, Write
from customlabels.ports.events import EventBus, Message, Subscription

log = logging.getLogger(__name__)

OUTBOX = "outbox"
APPLIED_EVENTS = "applied_events"
MESSAGING_COLLECTIONS = (Collection(OUTBOX), Collection(APPLIED_EVENTS))

_sequence = itertools.count()


def ordered_id() -> str:
    """Ids that sort in creation order within a process (and roughly across)."""
    return f"{time.time_ns():020d}.{next(_sequence) % 1_000_000:06d}"


class UnitOfWork:
    def __init__(self, store: ScopedStore, relay: "OutboxRelay | None" = None):
        self.store = store
        self.relay = relay
        self.writes: list[Write] = []
        self.events: list[Event] = []

    def add(self, *writes: Write) -> None:
        self.writes.extend(writes)

    def emit(self, *events: Event) -> None:
        self.events.extend(events)

    async def commit(self) -> None:
        outbox = [
            Insert(OUTBOX, {"_id": ordered_id(), "message": _message_doc(e.to_message())})
            for e in self.events
        ]
        await self.store.commit([*self.writes, *outbox])
        self.writes, self.events = [], []
        if outbox and self.relay:
            self.relay.wake()


def _message_doc(m: Message) -> dict:
    return {"topic": m.topic, "key": m.key, "id": m.id, "type": m.type, "payload": m.payload}


class OutboxRelay:
    def __init__(self, store: ScopedStore, bus: EventBus, *, poll_seconds: float = 1.0, batch: int = 200):
        self.store = store
        self.bus = bus
        self.poll_seconds = poll_seconds
        self.batch = batch
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._lock = asyncio.Lock()

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"outbox-relay-{self.store.service}")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self.flush()

    async def flush(self) -> int:
        """Publish everything pending now; returns how many messages went out."""
        sent = 0
        async with self._lock:
            while True:
                page = await self.store.find(OUTBOX, order_by=("_id",), limit=self.batch)
                if not page.items:
                    return sent
                await self.bus.publish([Message(**doc["message"]) for doc in page.items])
                await self.store.commit([Delete(OUTBOX, doc["_id"]) for doc in page.items])
                sent += len(page.items)

    async def _run(self) -> None:
        while True:
            try:
                await self.flush()
            except Exception:  # the bus may be down for a while: keep the outbox, retry
                log.exception("outbox relay of %s failed; retrying", self.store.service)
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()


EventHandler = Callable[[Event, UnitOfWork], Awaitable[None]]
TRANSIENT_PAUSES = (0.2, 5.0)  # seconds between retries of a transient failure: the first, doubling up to the last


def transient(exc: BaseException) -> bool:
    """A failure that says "later", not "never": another service could not be reached or is throttling
    (``ThrottlingException``), or answers 503, or this process's disk is full, or the object store
    cannot be reached or answers 5xx."""
    return isinstance(exc, (errors.Throttling, errors.ServiceUnavailable)) or errors.storage_unavailable(exc) is not None


class EventHandlers:
    """Runs a service's handlers, keyed by event type, over the bus."""

    def __init__(
        self,
        service: str,
        store: ScopedStore,
        bus: EventBus,
        relay: OutboxRelay | None,
        handlers: Mapping[type[Event], EventHandler],
        *,
        max_attempts: int = 5,
    ):
        self.service = service
        self.store = store
        self.bus = bus
        self.relay = relay
        self.handlers = {t.__name__: h for t, h in handlers.items()}
        self.topics = sorted({t.topic for t in handlers})
        self.max_attempts = max_attempts
        self._subscriptions: list[Subscription] = []

    async def start(self) -> None:
        # One group per topic, so a long job on one topic never holds up another.
        for topic in self.topics:
            self._subscriptions.append(
                await self.bus.subscribe(
                    f"{self.service}--{topic}", [topic], self.handle, max_attempts=self.max_attempts
                )
            )

    async def stop(self) -> None:
        for subscription in self._subscriptions:
            await subscription.stop()
        self._subscriptions.clear()

    async def handle(self, message: Message) -> None:
        """Apply ``message`` once; a ``transient`` failure is retried here until it passes (a restarting
        peer takes seconds; the bus's few quick redeliveries would dead-letter the event meanwhile)."""
        pause = TRANSIENT_PAUSES[0]
        while True:
            try:
                return await self._apply(message)
            except Exception as exc:
                if not transient(exc):
                    raise
                log.warning("%s: %s %s failed for now (%s); retrying in %.1f s",
                            self.service, message.type, message.id, exc, pause)
                await asyncio.sleep(pause)
                pause = min(2 * pause, TRANSIENT_PAUSES[1])

    async def _apply(self, message: Message) -> None:
        handler = self.handlers.get(message.type)
        if handler is None:
            return  # another service's concern on a shared topic
        event = Event.from_message(message)
        if await self.store.get(APPLIED_EVENTS, event.event_id):
            return
        uow = UnitOfWork(self.store, self.relay)
        await handler(event, uow)
        uow.add(Insert(APPLIED_EVENTS, {"_id": event.event_id, "type": message.type, "at": clock.now().isoformat()}))
        try:
            await uow.commit()
        except DuplicateKey:
            if await self.store.get(APPLIED_EVENTS, event.event_id):
                return  # a concurrent delivery applied it first; ours changed nothing
            raise
