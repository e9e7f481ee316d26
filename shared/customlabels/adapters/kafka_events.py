"""Distributed event bus over Kafka (aiokafka).

Implements ``customlabels.ports.events.EventBus`` for a multi-process
deployment; ``tests/contract/test_event_bus.py`` checks it against the same
contract as the embedded ``SqliteEventBus``, on a real broker.

Wire format
- One Kafka record per message: key = ``message.key`` (so the events of one
  key land in one partition, in order), value = the JSON payload, headers =
  ``message.headers`` plus ``customlabels-id`` and ``customlabels-type``.
  Header names starting with ``customlabels-`` are reserved.
- ``topic_prefix`` namespaces every topic *and* consumer group this bus
  touches (several deployments, or test runs, can share one cluster).
  Handlers see topic names without it.

Topics are created on demand (admin ``create_topics``, "already exists" is
fine) before the first publish or subscribe of a topic, rather than relying
on broker auto-creation: production clusters usually disable it, a consumer
subscribed to a topic that does not exist yet would not notice its creation
before the next metadata refresh (5 minutes), and the attempts topic (below)
needs its own settings (one partition, compacted). Topics get ``partitions``
partitions and ``replication_factor`` replicas; the default 1 suits a
one-broker cluster, production wants 3 (with ``min.insync.replicas`` 2, so
that ``acks="all"`` means two copies).

Publishing: one producer per bus, ``acks="all"``; ``publish`` sends every
message, then waits for all of them, so it returns once they are durable.
aiokafka keeps at most one batch in flight per partition, so retries cannot
reorder a key's messages. The idempotent producer is off: aiokafka cannot
use it against every broker (Tansu's InitProducerId), and consumers
deduplicate by message id anyway.

Consuming: every ``subscribe`` is one group member (an ``AIOKafkaConsumer``,
``auto_offset_reset="earliest"`` so a new group starts at the oldest retained
message, auto-commit off) plus one task per assigned partition, the
*worker*. A fetch task hands records to the workers; a worker delivers its
partition's records one at a time, in offset order, so a slow handler holds
up only its own partition. A worker that has too many records waiting has
its partition paused. ``subscribe`` returns once the member has joined the
group and got its first assignment (bounded by ``join_timeout_seconds``).

Long handlers (a training job runs for many minutes) keep their member in
the group: the fetch task goes on calling ``getmany`` while handlers run, so
aiokafka's ``max_poll_interval_ms`` (the longest time between polls before a
member leaves its group; 5 minutes) is never reached because of a handler,
and heartbeats come from aiokafka's own task. Checked with the interval cut
to 3 s and a 12 s handler, asleep or busy in a thread: no rebalance, the
record committed once.
What does cut a long handler short is a rebalance (below).

Offsets: a worker commits ``offset + 1`` only after the handler returned or
the record was dead-lettered. Right after a success the commit is held back
if another record is already waiting: it then goes out together with (in
parallel to) that record's attempt record, one round trip instead of two.

Attempts: like ``offsets.attempts`` of the SQLite bus, the deliveries
*started* for the record at a partition's committed offset are written
durably before each delivery, so deliveries cut short by a crash count
towards ``max_attempts``. The broker cannot keep them with the offset
(aiokafka cannot read offset-commit metadata back through a public API, and
Tansu drops it), so they go to a compacted topic ``<group>.attempts``, one
partition, key ``<topic>:<partition>``, value ``{"offset", "timestamp",
"attempts"}``. A member reads it to the end when it is assigned partitions.
A count only applies to the record it names (offset and timestamp), so stale
ones (committed past) need no cleanup; compaction keeps one per key. The topic
rolls a segment every ``attempts_segment_ms`` so compaction can run, which
bounds what a member reads at each assignment.

Dead letters: after ``max_attempts`` started deliveries the record is copied
(same key, value and headers) to ``dead_letter_topic(topic)`` with the
headers ``error``, ``attempts``, ``original-topic`` and ``group``, then its
offset is committed. Without transactions those two steps are not atomic: a
crash between them dead-letters the message twice (same id). A record that
cannot be decoded is dead-lettered at once with ``attempts`` = ``0``.

Rebalances: before partitions are taken away, their running handlers get
``rebalance_timeout_ms`` to finish (and commit); after that they are
cancelled and their records go to the new owner uncommitted. Handlers that
can run longer should hand their work off and return.

Stopping: ``Subscription.stop()`` lets running handlers finish, commits, then
leaves the group. ``close()`` does the same for every subscription but gives
handlers only ``close_timeout_seconds`` (or its ``timeout``) before
cancelling them; a cancelled delivery is not committed, so the message comes
again, to this group, after a restart.

Delivery is at least once: a commit that fails (a rebalance got in between,
the broker went away) means the next owner handles the message again.

Limits: a group name is part of a topic name (``<group>.attempts``), so it
must be a legal topic name too (letters, digits, ``.``, ``_``, ``-``). Unlike
the SQLite bus, a second subscription of a group is allowed: it is another
member, and the group's partitions are split between them. Payloads must be
JSON-serialisable and header values strings.
"""
from __future__ import annotations

import asyncio
import json
import logging
import re
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    TopicPartition,
)
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code
from aiokafka.protocol.group import LeaveGroupRequest
from aiokafka.structs import ConsumerRecord

from customlabels.ports.events import Handler, Message, dead_letter_topic

log = logging.getLogger(__name__)

_ID_HEADER = "customlabels-id"
_TYPE_HEADER = "customlabels-type"
_RESERVED_HEADER_PREFIX = "customlabels-"
_DEAD_LETTER_HEADERS = ("error", "attempts", "original-topic", "group")
_ERROR_HEADER_LIMIT = 2000  # keeps a huge exception message from bloating the record
_CUT_SHORT = "no error recorded: the last delivery was cut short (crash or forced close)"
_LEGAL_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")  # Kafka's rule for topic names


class KafkaEventBus:
    """The distributed ``EventBus``; see the module docstring for its semantics."""

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        client_id: str = "customlabels",
        topic_prefix: str = "",
        partitions: int = 3,
        replication_factor: int = 1,
        session_timeout_ms: int = 10_000,
        heartbeat_interval_ms: int = 3_000,
        rebalance_timeout_ms: int = 60_000,
        fetch_max_wait_ms: int = 500,
        retry_backoff_seconds: float = 0.05,
        max_retry_backoff_seconds: float = 2.0,
        close_timeout_seconds: float = 30.0,
        join_timeout_seconds: float = 60.0,
        max_buffered_per_partition: int = 500,
        attempts_segment_ms: int = 600_000,
    ):
        self.bootstrap_servers = bootstrap_servers
        self.client_id = client_id
        self.topic_prefix = topic_prefix
        self.partitions = partitions
        self.replication_factor = replication_factor
        self.session_timeout_ms = session_timeout_ms
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.rebalance_timeout_ms = rebalance_timeout_ms
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.retry_backoff_seconds = retry_backoff_seconds
        self.max_retry_backoff_seconds = max_retry_backoff_seconds
        self.close_timeout_seconds = close_timeout_seconds
        self.join_timeout_seconds = join_timeout_seconds
        self.max_buffered_per_partition = max_buffered_per_partition
        self.attempts_segment_ms = attempts_segment_ms
        self._producer: AIOKafkaProducer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._known_topics: set[str] = set()  # Kafka names this bus created or found existing
        self._subscriptions: list[_Subscription] = []

    # --- lifecycle -----------------------------------------------------------
    async def start(self) -> None:
        if self._producer is not None:
            return
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap_servers,
            client_id=self.client_id,
            acks="all",
            enable_idempotence=False,
        )
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap_servers, client_id=self.client_id)
        try:
            await producer.start()
            await admin.start()
        except BaseException:
            await producer.stop()
            await admin.close()
            raise
        self._producer, self._admin = producer, admin

    async def close(self, timeout: float | None = None) -> None:
        """Stop every subscription, then the producer.

        Running handlers get ``timeout`` seconds (default:
        ``close_timeout_seconds``) to finish; then they are cancelled and their
        messages are delivered again after a restart."""
        if self._producer is None:
            return
        grace = self.close_timeout_seconds if timeout is None else timeout
        try:
            # The producer stays up meanwhile: finishing handlers may publish.
            await asyncio.gather(*(s.stop(grace) for s in list(self._subscriptions)))
        finally:
            producer, admin, self._producer, self._admin = self._producer, self._admin, None, None
            await producer.stop()
            await admin.close()

    # --- the port ------------------------------------------------------------
    async def publish(self, messages: Sequence[Message]) -> None:
        messages = list(messages)
        if not messages:
            return
        for m in messages:
            _check_headers(m.headers)
        await self._ensure_topics({self.kafka_topic(m.topic) for m in messages})
        producer = self._live_producer()
        # Queue everything first so the producer can batch, then wait for all.
        sent = []
        try:
            for m in messages:
                sent.append(await producer.send(self.kafka_topic(m.topic), **_encode(m)))
        finally:
            await _all_or_raise(sent)

    async def subscribe(
        self,
        group: str,
        topics: Sequence[str],
        handler: Handler,
        *,
        max_attempts: int = 5,
    ) -> _Subscription:
        if isinstance(topics, str):
            raise TypeError("topics must be a sequence of topic names, not one string")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        topics = list(dict.fromkeys(topics))
        subscription = _Subscription(self, group, topics, handler, max_attempts)
        await self._ensure_topics({self.kafka_topic(t) for t in topics})
        await self._ensure_topics({subscription.attempts.topic}, attempts_log=True)
        self._subscriptions.append(subscription)
        try:
            await subscription.start()
        except BaseException:
            await subscription.stop(0)
            raise
        return subscription

    # --- names ---------------------------------------------------------------
    def kafka_topic(self, topic: str) -> str:
        name = self.topic_prefix + topic
        if not _LEGAL_TOPIC.fullmatch(name):
            raise ValueError(f"{name!r} is not a legal Kafka topic name (letters, digits, '.', '_', '-'; at most 249)")
        return name

    def port_topic(self, kafka_topic: str) -> str:
        return kafka_topic[len(self.topic_prefix) :]

    # --- for subscriptions ---------------------------------------------------
    def _live_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise RuntimeError("KafkaEventBus is not started (or already closed)")
        return self._producer

    async def _ensure_topics(self, names: set[str], *, attempts_log: bool = False) -> None:
        missing = sorted(names - self._known_topics)
        if not missing:
            return
        if self._admin is None:
            raise RuntimeError("KafkaEventBus is not started (or already closed)")
        response = await self._admin.create_topics([self._new_topic(n, attempts_log) for n in missing])
        for topic, code, *_ in response.topic_errors:
            error = for_code(code)
            if code and error is not TopicAlreadyExistsError:
                raise error(f"creating topic {topic!r}")
        self._known_topics.update(missing)

    def _new_topic(self, name: str, attempts_log: bool) -> NewTopic:
        if attempts_log:
            # One partition: a member reads all of it at each assignment anyway.
            configs = {"cleanup.policy": "compact", "segment.ms": str(self.attempts_segment_ms)}
            return NewTopic(name, 1, self.replication_factor, topic_configs=configs)
        return NewTopic(name, self.partitions, self.replication_factor)

    def _forget(self, subscription: _Subscription) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)

    def _backoff(self, attempts: int) -> float:
        return min(self.retry_backoff_seconds * 2 ** (attempts - 1), self.max_retry_backoff_seconds)


# --- wire format ---------------------------------------------------------------
def _check_headers(headers: dict[str, str]) -> None:
    reserved = [name for name in headers if name.startswith(_RESERVED_HEADER_PREFIX)]
    if reserved:
        raise ValueError(f"header names starting with {_RESERVED_HEADER_PREFIX!r} are reserved: {reserved}")


def _encode(m: Message) -> dict[str, Any]:
    headers = [(_ID_HEADER, m.id.encode()), (_TYPE_HEADER, m.type.encode())]
    headers += [(name, value.encode()) for name, value in m.headers.items()]
    return {"key": m.key.encode(), "value": json.dumps(m.payload).encode(), "headers": headers}


def _decode(record: ConsumerRecord, topic: str) -> Message:
    """The message a record carries; raises (KeyError, ValueError) on a foreign record."""
    headers = {name: value.decode() for name, value in record.headers}
    return Message(
        topic=topic,
        key=record.key.decode() if record.key is not None else "",
        id=headers.pop(_ID_HEADER),
        type=headers.pop(_TYPE_HEADER),
        payload=json.loads(record.value),
        headers=headers,
    )


async def _all_or_raise(futures: Iterable[asyncio.Future]) -> None:
    # return_exceptions: a failure must not leave the other results unretrieved.
    for result in await asyncio.gather(*futures, return_exceptions=True):
        if isinstance(result, BaseException):
            raise result


def _partition_key(tp: TopicPartition) -> bytes:
    return f"{tp.topic}:{tp.partition}".encode()


# --- consuming -----------------------------------------------------------------
class _AttemptsLog:
    """The group's durable count of deliveries started, per partition (see the
    module docstring). Maps a partition to ``(offset, timestamp, attempts)``:
    the record's timestamp too, so that a count can never be taken for
    another record at the same offset (a topic deleted and created again)."""

    def __init__(self, bus: KafkaEventBus, group: str):
        self.bus = bus
        self.topic = bus.kafka_topic(f"{group}.attempts")

    async def record(self, tp: TopicPartition, record: ConsumerRecord, attempts: int) -> None:
        value = json.dumps({"offset": record.offset, "timestamp": record.timestamp, "attempts": attempts}).encode()
        await self.bus._live_producer().send_and_wait(self.topic, key=_partition_key(tp), value=value)

    async def load(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, tuple[int, int, int]]:
        wanted = {_partition_key(tp): tp for tp in partitions}
        if not wanted:
            return {}
        latest = await self._read_to_end()
        found = {}
        for key, value in latest.items():
            if key in wanted:
                entry = json.loads(value)
                found[wanted[key]] = (entry["offset"], entry["timestamp"], entry["attempts"])
        return found

    async def _read_to_end(self) -> dict[bytes, bytes]:
        """The latest value of every key, up to the end as of now."""
        # A groupless consumer: reading this topic must not touch any group.
        reader = AIOKafkaConsumer(
            bootstrap_servers=self.bus.bootstrap_servers,
            client_id=f"{self.bus.client_id}-attempts",
            enable_auto_commit=False,
            fetch_max_wait_ms=self.bus.fetch_max_wait_ms,
        )
        await reader.start()
        try:
            tp = TopicPartition(self.topic, 0)
            reader.assign([tp])
            await reader.seek_to_beginning(tp)
            end = (await reader.end_offsets([tp]))[tp]
            latest: dict[bytes, bytes] = {}
            while await reader.position(tp) < end:
                for record in (await reader.getmany(tp, timeout_ms=1000)).get(tp, []):
                    if record.offset < end and record.key is not None:
                        latest[record.key] = record.value
            return latest
        finally:
            await reader.stop()


class _Subscription(ConsumerRebalanceListener):
    """One group member: a consumer, a fetch task, and a worker per partition."""

    def __init__(self, bus: KafkaEventBus, group: str, topics: list[str], handler: Handler, max_attempts: int):
        self.bus = bus
        self.group = group
        self.topics = topics
        self.handler = handler
        self.max_attempts = max_attempts
        self.attempts = _AttemptsLog(bus, group)
        self.consumer: AIOKafkaConsumer | None = None  # made in start()
        self.workers: dict[TopicPartition, _PartitionWorker] = {}
        self._recorded: dict[TopicPartition, tuple[int, int, int]] = {}  # loaded at the last assignment
        self._ready = asyncio.Event()  # set while the assignment is known and its attempts loaded
        self._joined = asyncio.Event()  # set at the first assignment
        self._fetching: asyncio.Task | None = None
        self._stopped = False

    async def start(self) -> None:
        bus = self.bus
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bus.bootstrap_servers,
            client_id=bus.client_id,
            group_id=bus.topic_prefix + self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",  # a new group starts at the oldest retained message
            session_timeout_ms=bus.session_timeout_ms,
            heartbeat_interval_ms=bus.heartbeat_interval_ms,
            rebalance_timeout_ms=bus.rebalance_timeout_ms,
            fetch_max_wait_ms=bus.fetch_max_wait_ms,
            max_poll_records=bus.max_buffered_per_partition,
        )
        self.consumer.subscribe([bus.kafka_topic(t) for t in self.topics], listener=self)
        await self.consumer.start()
        self._fetching = asyncio.create_task(self._fetch(), name=f"kafka-events:{self.group}")
        try:
            await asyncio.wait_for(self._joined.wait(), self.bus.join_timeout_seconds)
        except TimeoutError:
            # Consuming starts whenever the group settles; failing the caller
            # (a service starting up) would not make that any sooner.
            log.warning("%s has not joined its group after %ss; going on", self.group, self.bus.join_timeout_seconds)

    async def stop(self, timeout: float | None = None) -> None:
        """Stop consuming. Running handlers finish first (and are committed);
        with a ``timeout`` they are cancelled after that many seconds instead."""
        if self._stopped:
            return
        self._stopped = True
        if self._fetching:
            self._fetching.cancel()
            await asyncio.gather(self._fetching, return_exceptions=True)
        await self._retire(list(self.workers), timeout)
        if self.consumer is not None:
            await _leave_first_generation(self.consumer)
            await self.consumer.stop()  # leaves the group: its partitions move at once
        self.bus._forget(self)

    # --- rebalances (called by aiokafka's coordinator task) ------------------
    async def on_partitions_revoked(self, revoked) -> None:
        self._ready.clear()
        await self._retire(list(revoked), self.bus.rebalance_timeout_ms / 1000)

    async def on_partitions_assigned(self, assigned) -> None:
        try:
            self._recorded = await asyncio.wait_for(self.attempts.load(assigned), self.bus.join_timeout_seconds)
        except Exception:
            # Better deliver without the count than not at all; only a
            # crash-looping message could then get a few deliveries more.
            log.exception("%s could not read %s; delivery attempts start from 0", self.group, self.attempts.topic)
            self._recorded = {}
        finally:
            self._ready.set()
            self._joined.set()

    async def _retire(self, partitions: list[TopicPartition], timeout: float | None) -> None:
        workers = [self.workers.pop(tp) for tp in partitions if tp in self.workers]
        await asyncio.gather(*(w.stop(timeout) for w in workers))

    # --- the fetch loop --------------------------------------------------------
    async def _fetch(self) -> None:
        while True:
            try:
                batches = await self.consumer.getmany(timeout_ms=1000)
                if batches:
                    # Workers must know the attempts of a fresh assignment first.
                    await self._ready.wait()
                    self._dispatch(batches)
            except Exception:
                # The broker went away, say: aiokafka reconnects and rejoins by
                # itself. Whatever it was, this task must not end, or the
                # group member would live on without consuming anything.
                log.exception("%s: fetching failed; retrying", self.group)
                await asyncio.sleep(self.bus.max_retry_backoff_seconds)

    def _dispatch(self, batches: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        assigned = self.consumer.assignment()
        for tp, records in batches.items():
            if tp not in assigned:
                continue  # revoked while the fetch was under way: the new owner reads it
            worker = self.workers.get(tp)
            if worker is None:
                worker = self.workers[tp] = _PartitionWorker(self, tp, self._recorded.get(tp))
            worker.add(records)
            if worker.backlog >= self.bus.max_buffered_per_partition:
                self.consumer.pause(tp)

    def resume(self, tp: TopicPartition) -> None:
        if tp in self.consumer.paused():
            self.consumer.resume(tp)


async def _leave_first_generation(consumer: AIOKafkaConsumer) -> None:
    """Send LeaveGroup where aiokafka would not.

    aiokafka leaves a group on stop() only if its generation is above 0:
    Kafka numbers generations from 1, but Tansu (the test broker) from 0. A
    member that stops in generation 0 stays in the group until its session
    expires, and whoever joins next waits for that (4 s with test timings,
    instead of 1 s). Reaches into aiokafka's coordinator; does nothing if its
    shape ever changes, or on a broker that starts at 1."""
    coordinator = getattr(consumer, "_coordinator", None)
    if getattr(coordinator, "generation", None) != 0 or not getattr(coordinator, "member_id", None):
        return
    try:
        await coordinator._send_req(LeaveGroupRequest(coordinator.group_id, coordinator.member_id))
    except Exception as exc:  # best effort, like aiokafka's own attempt
        log.debug("LeaveGroup for %s failed: %r", coordinator.group_id, exc)


class _PartitionWorker:
    """Delivers one partition's records to the handler, one at a time, in order.

    ``recorded`` mirrors the last ``(offset, timestamp, attempts)`` written to
    the attempts log for this partition; it changes only after the log did."""

    def __init__(self, subscription: _Subscription, tp: TopicPartition, recorded: tuple[int, int, int] | None):
        self.sub = subscription
        self.bus = subscription.bus
        self.tp = tp
        self.topic = self.bus.port_topic(tp.topic)
        self.recorded = recorded
        self._queue: deque[ConsumerRecord] = deque()
        self._pending_commit: int | None = None  # the offset after the last handled record, not committed yet
        self._more = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name=f"kafka-events:{subscription.group}:{tp.topic}:{tp.partition}")

    @property
    def backlog(self) -> int:
        return len(self._queue)

    def add(self, records: list[ConsumerRecord]) -> None:
        self._queue.extend(records)
        self._more.set()

    async def stop(self, timeout: float | None) -> None:
        self._stopping.set()
        self._more.set()
        done, _ = await asyncio.wait({self._task}, timeout=timeout)
        if not done:
            log.warning("cancelling the %s handler of %s after %ss", self.sub.group, self.tp, timeout)
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    # --- the loop ------------------------------------------------------------
    async def _run(self) -> None:
        while not self._stopping.is_set():
            if not self._queue:
                await self._flush_commit()  # nothing follows right away: commit now
                await self._wait_for_records()
                continue
            try:
                delivered = await self._deliver(self._queue[0])
            except Exception:
                # The broker failed us (attempt record, dead letter): the
                # record stays first in line; try again after a pause.
                log.exception("%s: delivering from %s failed; retrying", self.sub.group, self.tp)
                await self._pause(self.bus.max_retry_backoff_seconds)
                continue
            if delivered:
                self._queue.popleft()
                if self.backlog <= self.bus.max_buffered_per_partition // 2:
                    self.sub.resume(self.tp)
        await self._flush_commit()

    async def _wait_for_records(self) -> None:
        self._more.clear()
        if not self._queue and not self._stopping.is_set():
            await self._more.wait()

    async def _pause(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            pass

    # --- one record ----------------------------------------------------------
    async def _deliver(self, record: ConsumerRecord) -> bool:
        """Deliver until the handler returns or the record is dead-lettered
        (True); return False, uncommitted, only when stop() cuts retries short."""
        try:
            message = _decode(record, self.topic)
        except Exception as exc:  # not ours (or corrupt): no handler can take it
            await self._dead_letter(record, exc, attempts=0)
            return True
        error: BaseException | None = None
        while True:
            attempts = self._attempts_started(record)
            if attempts >= self.sub.max_attempts:
                await self._dead_letter(record, error, attempts)
                return True
            if self._stopping.is_set():
                return False
            await self._start_attempt(record, attempts + 1)
            try:
                await self.sub.handler(message)
            except asyncio.CancelledError as exc:
                if asyncio.current_task().cancelling():
                    raise  # we are being cancelled (forced close): not a handler failure
                error = exc  # the handler let an inner cancellation escape: a failure like any other
            except Exception as exc:
                error = exc
            else:
                self._pending_commit = record.offset + 1
                return True
            log.warning(
                "%s failed on %s %s (attempt %d of %d): %r",
                self.sub.group, self.topic, message.id, attempts + 1, self.sub.max_attempts, error,
            )
            if attempts + 1 < self.sub.max_attempts:
                await self._pause(self.bus._backoff(attempts + 1))

    def _attempts_started(self, record: ConsumerRecord) -> int:
        # A recorded count belongs to the record it names; any other is stale.
        if self.recorded and self.recorded[:2] == (record.offset, record.timestamp):
            return self.recorded[2]
        return 0

    async def _start_attempt(self, record: ConsumerRecord, attempts: int) -> None:
        # Written before the handler runs, so a delivery that never returns
        # (kill -9) still counts after a restart. The held-back commit of the
        # previous record goes out at the same time.
        await asyncio.gather(self._flush_commit(), self.sub.attempts.record(self.tp, record, attempts))
        self.recorded = (record.offset, record.timestamp, attempts)

    async def _flush_commit(self) -> None:
        offset, self._pending_commit = self._pending_commit, None
        if offset is None:
            return
        try:
            await self.sub.consumer.commit({self.tp: offset})
        except KafkaError as exc:
            # Typically a rebalance took the partition away: whoever owns it
            # now delivers the record again (at least once).
            log.warning("%s could not commit %s at %d: %r", self.sub.group, self.tp, offset, exc)

    async def _dead_letter(self, record: ConsumerRecord, error: BaseException | None, attempts: int) -> None:
        topic = dead_letter_topic(self.topic)
        headers = [(name, value) for name, value in record.headers if name not in _DEAD_LETTER_HEADERS]
        headers += [
            ("error", (repr(error)[:_ERROR_HEADER_LIMIT] if error is not None else _CUT_SHORT).encode()),
            ("attempts", str(attempts).encode()),
            ("original-topic", self.topic.encode()),
            ("group", self.sub.group.encode()),
        ]
        await self.bus._ensure_topics({self.bus.kafka_topic(topic)})
        await self.bus._live_producer().send_and_wait(
            self.bus.kafka_topic(topic), key=record.key, value=record.value, headers=headers
        )
        log.error("dead-lettered %s offset %d for %s after %d attempts", self.tp, record.offset, self.sub.group, attempts)
        self._pending_commit = record.offset + 1
