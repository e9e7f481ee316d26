"""Embedded event bus: a durable event log in one SQLite file (WAL mode).

Implements ``customlabels.ports.events.EventBus`` for a single-process
deployment; ``tests/contract/test_event_bus.py`` checks it.

How it works
- ``events`` is an append-only log; ``seq`` gives the order. ``publish``
  appends a batch in one transaction and wakes this process's consumers at
  once. Consumers also poll every ``poll_seconds``, so events that another
  process writes to the same file are seen too.
- Every (group, topic) pair of a subscription is one asyncio task, the
  *consumer*. It hands the topic's events to the handler one at a time in seq
  order and commits ``offsets.next_seq`` only after the handler returned. A
  slow handler holds up nothing but its own (group, topic).
- A group that has never subscribed to a topic starts at the oldest event
  still kept, so events published before a service's first start are not
  lost. Later starts carry on from the committed offset.
- ``offsets.attempts`` counts the deliveries *started* for the event at
  ``next_seq``, and it is written before each delivery. Thus a delivery cut
  short by a crash (kill -9 mid-handler) or a forced close still counts, and
  a message that kills the process every time is dead-lettered after
  ``max_attempts`` deliveries instead of looping forever.
- After ``max_attempts`` failed deliveries the event is published to
  ``dead_letter_topic(topic)`` with headers ``error``, ``attempts``,
  ``original-topic`` and ``group``; that publish and the offset advance are
  one transaction, so a crash cannot dead-letter an event twice.
- Durability: publishes are fsynced (``synchronous=FULL``) because the port
  promises a durable message when ``publish`` returns. Offset writes use
  ``synchronous=NORMAL``: they survive a process crash and only a power loss
  can undo one, which costs a redelivery, never a lost message.
- Every SQLite call runs on one worker thread (a single-thread executor), so
  the connection is never shared between threads and the event loop never
  blocks on disk.

Stopping: ``Subscription.stop()`` lets a running handler finish, commits it,
then returns; it waits as long as the handler takes. ``close()`` stops every
consumer the same way but gives running handlers only ``close_timeout_seconds``
(or its ``timeout`` argument) before cancelling them; a cancelled delivery is
not committed, so the event comes again on the next start.

Retention: ``trim()`` deletes events older than a threshold that every group
that ever subscribed to their topic has handled; a background task calls it
every ``trim_interval_seconds`` with ``retention_seconds``. Events of a topic
no group has subscribed to (dead-letter topics, usually) are never trimmed,
and a group that stops subscribing for good keeps its topics from being
trimmed (its row in ``offsets`` must then be deleted by hand).

Limits: several processes may publish to one file, but each (group, topic)
must be consumed by one process at a time; within a bus a second
subscription of the same (group, topic) is refused. Payloads and headers must
be JSON-serialisable; they come back as JSON gives them (lists for tuples).
"""
from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, TypeVar

from customlabels.ports.events import Handler, Message, dead_letter_topic

log = logging.getLogger(__name__)

T = TypeVar("T")

_ERROR_HEADER_LIMIT = 2000  # keeps a huge exception message from bloating the log
_CUT_SHORT = "no error recorded: the last delivery was cut short (crash or forced close)"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    -- AUTOINCREMENT: a seq is never reused, even after trim deleted the
    -- newest rows, so an offset can never come to mean another event.
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    key TEXT NOT NULL,
    id TEXT NOT NULL,
    type TEXT NOT NULL,
    payload TEXT NOT NULL,       -- JSON
    headers TEXT NOT NULL,       -- JSON
    published_at REAL NOT NULL   -- unix time, seconds
);
CREATE INDEX IF NOT EXISTS events_by_topic ON events (topic, seq);
CREATE TABLE IF NOT EXISTS offsets (
    group_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    next_seq INTEGER NOT NULL,   -- events of the topic from this seq on are not handled yet
    attempts INTEGER NOT NULL,   -- deliveries started for the event at next_seq
    PRIMARY KEY (group_id, topic)
);
"""


@dataclass(frozen=True)
class _Stored:
    """A message as the log holds it."""

    seq: int
    message: Message


class _Log:
    """The SQLite side of the bus. Runs only on the bus's worker thread."""

    def __init__(self, path: Path, busy_timeout_seconds: float):
        # isolation_level=None: no implicit transactions; ours are explicit.
        self.conn = sqlite3.connect(path, timeout=busy_timeout_seconds, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.executescript(_SCHEMA)
        self._synchronous = ""  # the mode last set, to skip needless PRAGMAs

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def _transaction(self, *, durable: bool) -> Iterator[sqlite3.Connection]:
        # synchronous can only change outside a transaction; it applies to the next commit.
        synchronous = "FULL" if durable else "NORMAL"
        if synchronous != self._synchronous:
            self.conn.execute(f"PRAGMA synchronous={synchronous}")
            self._synchronous = synchronous
        # IMMEDIATE takes the write lock up front, so another process writing
        # the same file makes us wait (busy timeout) rather than fail mid-way.
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
            self.conn.execute("COMMIT")
        except BaseException:
            if self.conn.in_transaction:  # a failed COMMIT leaves it open too
                self.conn.execute("ROLLBACK")
            raise

    # --- the log -----------------------------------------------------------
    def append(self, messages: Sequence[Message], now: float) -> None:
        with self._transaction(durable=True) as conn:
            self._insert(conn, messages, now)

    def read(self, topic: str, from_seq: int, limit: int) -> list[_Stored]:
        rows = self.conn.execute(
            "SELECT seq, key, id, type, payload, headers FROM events"
            " WHERE topic = ? AND seq >= ? ORDER BY seq LIMIT ?",
            (topic, from_seq, limit),
        )
        return [
            _Stored(seq, Message(topic, key, id_, type_, json.loads(payload), json.loads(headers)))
            for seq, key, id_, type_, payload, headers in rows
        ]

    def trim(self, cutoff: float) -> int:
        # A topic without any offsets row gives MIN() = NULL, and "seq < NULL"
        # is never true: nothing unconsumed goes.
        with self._transaction(durable=False) as conn:
            return conn.execute(
                "DELETE FROM events WHERE published_at < ? AND seq < ("
                " SELECT MIN(next_seq) FROM offsets WHERE offsets.topic = events.topic)",
                (cutoff,),
            ).rowcount

    # --- offsets -----------------------------------------------------------
    def join(self, group: str, topic: str) -> tuple[int, int]:
        """The group's (next_seq, attempts) on the topic; a new group starts at 0."""
        with self._transaction(durable=False) as conn:
            conn.execute(
                "INSERT OR IGNORE INTO offsets (group_id, topic, next_seq, attempts) VALUES (?, ?, 0, 0)",
                (group, topic),
            )
            return conn.execute(
                "SELECT next_seq, attempts FROM offsets WHERE group_id = ? AND topic = ?", (group, topic)
            ).fetchone()

    def set_offset(self, group: str, topic: str, next_seq: int, attempts: int) -> None:
        with self._transaction(durable=False) as conn:
            self._update_offset(conn, group, topic, next_seq, attempts)

    def dead_letter(self, group: str, topic: str, message: Message, next_seq: int, now: float) -> None:
        with self._transaction(durable=True) as conn:
            self._insert(conn, [message], now)
            self._update_offset(conn, group, topic, next_seq, 0)

    @staticmethod
    def _insert(conn: sqlite3.Connection, messages: Sequence[Message], now: float) -> None:
        conn.executemany(
            "INSERT INTO events (topic, key, id, type, payload, headers, published_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(m.topic, m.key, m.id, m.type, json.dumps(m.payload), json.dumps(m.headers), now) for m in messages],
        )

    @staticmethod
    def _update_offset(conn: sqlite3.Connection, group: str, topic: str, next_seq: int, attempts: int) -> None:
        conn.execute(
            "UPDATE offsets SET next_seq = ?, attempts = ? WHERE group_id = ? AND topic = ?",
            (next_seq, attempts, group, topic),
        )


class SqliteEventBus:
    """The embedded ``EventBus``; see the module docstring for its semantics."""

    def __init__(
        self,
        path: str | Path,
        *,
        poll_seconds: float = 0.5,
        retry_backoff_seconds: float = 0.05,
        max_retry_backoff_seconds: float = 2.0,
        close_timeout_seconds: float = 30.0,
        retention_seconds: float = 7 * 24 * 3600,
        trim_interval_seconds: float = 3600,
        batch_size: int = 100,
        busy_timeout_seconds: float = 10.0,
    ):
        self.path = Path(path)
        self.poll_seconds = poll_seconds
        self.retry_backoff_seconds = retry_backoff_seconds
        self.max_retry_backoff_seconds = max_retry_backoff_seconds
        self.close_timeout_seconds = close_timeout_seconds
        self.retention_seconds = retention_seconds
        self.trim_interval_seconds = trim_interval_seconds
        self.batch_size = batch_size
        self.busy_timeout_seconds = busy_timeout_seconds
        self._executor: ThreadPoolExecutor | None = None
        self._log: _Log | None = None
        self._trim_task: asyncio.Task | None = None
        self._consumers: dict[tuple[str, str], _Consumer] = {}

    # --- lifecycle -----------------------------------------------------------
    async def start(self) -> None:
        if self._log is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"sqlite-events-{self.path.name}")
        loop = asyncio.get_running_loop()
        self._log = await loop.run_in_executor(self._executor, _Log, self.path, self.busy_timeout_seconds)
        self._trim_task = asyncio.create_task(self._trim_periodically(), name=f"sqlite-events-trim-{self.path.name}")

    async def close(self, timeout: float | None = None) -> None:
        """Stop every consumer, then close the file.

        Running handlers get ``timeout`` seconds (default:
        ``close_timeout_seconds``) to finish; then they are cancelled and their
        events are delivered again on the next start."""
        if self._log is None:
            return
        grace = self.close_timeout_seconds if timeout is None else timeout
        consumers = list(self._consumers.values())
        await asyncio.gather(*(c.stop(grace) for c in consumers))
        self._forget(consumers)
        if self._trim_task:
            self._trim_task.cancel()
            await asyncio.gather(self._trim_task, return_exceptions=True)
        log_, self._log = self._log, None
        # The worker runs jobs in order, so this runs after any write still queued.
        await asyncio.get_running_loop().run_in_executor(self._executor, log_.close)
        self._executor.shutdown(wait=True)

    # --- the port ------------------------------------------------------------
    async def publish(self, messages: Sequence[Message]) -> None:
        messages = list(messages)
        if not messages:
            return
        await self._db(_Log.append, messages, time.time())
        self._wake({m.topic for m in messages})

    async def subscribe(
        self,
        group: str,
        topics: Sequence[str],
        handler: Handler,
        *,
        max_attempts: int = 5,
    ) -> "_Subscription":
        if isinstance(topics, str):
            raise TypeError("topics must be a sequence of topic names, not one string")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        topics = list(dict.fromkeys(topics))
        taken = [t for t in topics if (group, t) in self._consumers]
        if taken:
            raise ValueError(f"group {group!r} already consumes {taken} on this bus")
        consumers = [_Consumer(self, group, topic, handler, max_attempts) for topic in topics]
        # Claim the (group, topic) pairs before the first await, so two racing
        # subscribe calls cannot both pass the check above.
        self._consumers.update({(c.group, c.topic): c for c in consumers})
        try:
            for consumer in consumers:
                await consumer.start()
        except BaseException:
            await asyncio.gather(*(c.stop(0) for c in consumers))
            self._forget(consumers)
            raise
        return _Subscription(self, consumers)

    # --- retention -----------------------------------------------------------
    async def trim(self, older_than_seconds: float) -> int:
        """Delete events older than this that every group of their topic has
        handled; returns how many went."""
        removed = await self._db(_Log.trim, time.time() - older_than_seconds)
        if removed:
            log.info("trimmed %d events from %s", removed, self.path)
        return removed

    async def _trim_periodically(self) -> None:
        while True:
            try:
                await self.trim(self.retention_seconds)
            except Exception:  # a full disk or a long lock must not end retention for good
                log.exception("trimming %s failed; trying again later", self.path)
            await asyncio.sleep(self.trim_interval_seconds)

    # --- for consumers -------------------------------------------------------
    async def _db(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(log, *args)`` on the worker thread."""
        if self._log is None:
            raise RuntimeError("SqliteEventBus is not started (or already closed)")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, self._log, *args)

    def _wake(self, topics: set[str]) -> None:
        for consumer in self._consumers.values():
            if consumer.topic in topics:
                consumer.wake()

    def _forget(self, consumers: Sequence["_Consumer"]) -> None:
        for c in consumers:
            if self._consumers.get((c.group, c.topic)) is c:
                del self._consumers[(c.group, c.topic)]

    def _backoff(self, attempts: int) -> float:
        return min(self.retry_backoff_seconds * 2 ** (attempts - 1), self.max_retry_backoff_seconds)


class _Subscription:
    def __init__(self, bus: SqliteEventBus, consumers: list["_Consumer"]):
        self._bus = bus
        self._consumers = consumers

    async def stop(self, timeout: float | None = None) -> None:
        """Stop consuming. A running handler finishes first (and is committed);
        with a ``timeout`` it is cancelled after that many seconds instead."""
        await asyncio.gather(*(c.stop(timeout) for c in self._consumers))
        self._bus._forget(self._consumers)


class _Consumer:
    """Hands one topic's events to one group's handler, in seq order, as one task.

    ``next_seq`` and ``attempts`` mirror the group's committed row in
    ``offsets``; they change only after the database did."""

    def __init__(self, bus: SqliteEventBus, group: str, topic: str, handler: Handler, max_attempts: int):
        self.bus = bus
        self.group = group
        self.topic = topic
        self.handler = handler
        self.max_attempts = max_attempts
        self.next_seq = 0
        self.attempts = 0
        self._wakeup = asyncio.Event()  # set by a publish on the topic, and by stop()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self.next_seq, self.attempts = await self.bus._db(_Log.join, self.group, self.topic)
        self._task = asyncio.create_task(self._run(), name=f"sqlite-events:{self.group}:{self.topic}")

    def wake(self) -> None:
        self._wakeup.set()

    async def stop(self, timeout: float | None) -> None:
        self._stopping.set()
        self._wakeup.set()
        if self._task is None:
            return
        done, _ = await asyncio.wait({self._task}, timeout=timeout)
        if not done:
            log.warning("cancelling the %s handler of %s after %ss", self.group, self.topic, timeout)
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    # --- the loop ------------------------------------------------------------
    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                delivered = await self._deliver_batch()
            except Exception:
                # The log failed (disk full, lock held past the busy timeout):
                # keep the consumer alive and go on from the committed offset.
                log.exception("consumer %s of %s failed; retrying", self.group, self.topic)
                await self._pause(self.bus.max_retry_backoff_seconds)
                continue
            if not delivered:
                await self._wait_for_events()

    async def _deliver_batch(self) -> bool:
        # Clear before reading: a publish that lands after the read sets it again.
        self._wakeup.clear()
        batch = await self.bus._db(_Log.read, self.topic, self.next_seq, self.bus.batch_size)
        for event in batch:
            if self._stopping.is_set():
                break
            await self._deliver(event)
        return bool(batch)

    async def _wait_for_events(self) -> None:
        if self._stopping.is_set():
            return
        # The timeout is the poll that notices other processes' publishes.
        with suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), self.bus.poll_seconds)

    async def _pause(self, seconds: float) -> None:
        with suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    # --- one event -----------------------------------------------------------
    async def _deliver(self, event: _Stored) -> None:
        """Deliver until the handler returns or the event is dead-lettered;
        return early, uncommitted, only when stop() cuts the retries short."""
        error: BaseException | None = None
        while True:
            if self.attempts >= self.max_attempts:
                await self._dead_letter(event, error)
                return
            if self._stopping.is_set():
                return
            await self._record_attempt(event)
            try:
                await self.handler(event.message)
            except asyncio.CancelledError as exc:
                if asyncio.current_task().cancelling():
                    raise  # we are being cancelled (forced close): not a handler failure
                error = exc  # the handler let an inner cancellation escape: a failure like any other
            except Exception as exc:
                error = exc
            else:
                await self._commit(event.seq + 1)
                return
            log.warning(
                "%s failed on %s %s (attempt %d of %d): %r",
                self.group, self.topic, event.message.id, self.attempts, self.max_attempts, error,
            )
            if self.attempts < self.max_attempts:
                await self._pause(self.bus._backoff(self.attempts))

    async def _record_attempt(self, event: _Stored) -> None:
        # Written before the handler runs, and pinned to this event's seq, so a
        # delivery that never returns (kill -9) still counts after a restart.
        attempts = self.attempts + 1
        await self.bus._db(_Log.set_offset, self.group, self.topic, event.seq, attempts)
        self.next_seq, self.attempts = event.seq, attempts

    async def _commit(self, next_seq: int) -> None:
        await self.bus._db(_Log.set_offset, self.group, self.topic, next_seq, 0)
        self.next_seq, self.attempts = next_seq, 0

    async def _dead_letter(self, event: _Stored, error: BaseException | None) -> None:
        original = event.message
        dead = Message(
            topic=dead_letter_topic(self.topic),
            key=original.key,
            id=original.id,
            type=original.type,
            payload=original.payload,
            headers={
                **original.headers,
                "error": repr(error)[:_ERROR_HEADER_LIMIT] if error is not None else _CUT_SHORT,
                "attempts": str(self.attempts),
                "original-topic": self.topic,
                "group": self.group,
            },
        )
        await self.bus._db(_Log.dead_letter, self.group, self.topic, dead, event.seq + 1, time.time())
        log.error("dead-lettered %s %s for %s after %d attempts", self.topic, original.id, self.group, self.attempts)
        self.next_seq, self.attempts = event.seq + 1, 0
        self.bus._wake({dead.topic})
