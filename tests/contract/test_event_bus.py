"""Contract of the event bus port (``customlabels.ports.events``), for every adapter.

Each adapter enters as a *factory* in ``FACTORIES``: given the pytest request,
it returns a ``BusFactory`` whose ``open()`` gives a started bus on one shared
storage (a SQLite file; for Kafka, a broker and a topic prefix). Opening a
second bus on the same storage is how tests restart a "process". Tests touch
buses only through the port, so a new adapter needs only a new factory.

Kafka runs twice: on Tansu (a Kafka-protocol broker started once per session
as a child process, ``tests.support.tansu``), and on the official
apache/kafka image through testcontainers where a Docker engine answers
(not collected where none does; the run's summary says so in one line).

Contract points these tests pin down beyond the port's docstring:
- A group that has never subscribed starts at the oldest retained message.
- ``close()`` returns even while a handler hangs (adapters bound the wait),
  and the cut-off delivery is redelivered to the group after a restart.
- Deliveries cut off that way count towards ``max_attempts``.
"""
from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections import Counter, defaultdict
from typing import Callable, Protocol

import pytest

from customlabels.adapters.kafka_events import KafkaEventBus
from customlabels.adapters.sqlite_events import SqliteEventBus
from customlabels.ports.events import EventBus, Message, dead_letter_topic
from tests.support.docker import docker_variant
from tests.support.tansu import APACHE_KAFKA_IMAGE, apache_kafka_container

# How long a test waits for something the bus must do: a liveness bound only, so it is generous.
# No assertion depends on speed; a healthy bus is done in milliseconds, and waiting ends as soon as it is.
WAIT_SECONDS = 30.0


# --- the adapters under test -------------------------------------------------
class BusFactory(Protocol):
    async def open(self) -> EventBus:
        """A started bus on this factory's storage; still-open ones are closed at teardown."""

    async def close_all(self) -> None: ...


class SqliteBuses:
    # Short timings keep every test well under a second or two.
    SETTINGS = dict(
        poll_seconds=0.05,
        retry_backoff_seconds=0.01,
        max_retry_backoff_seconds=0.05,
        close_timeout_seconds=0.2,
    )

    def __init__(self, request: pytest.FixtureRequest):
        self.path = request.getfixturevalue("tmp_path") / "events.db"
        self.opened: list[SqliteEventBus] = []

    async def open(self) -> EventBus:
        bus = SqliteEventBus(self.path, **self.SETTINGS)
        await bus.start()
        self.opened.append(bus)
        return bus

    async def close_all(self) -> None:
        for bus in self.opened:
            await bus.close()  # closing twice is a no-op


class KafkaBuses:
    """Buses on the session's Tansu broker, under a topic (and group) prefix of their own."""

    BROKER_FIXTURE = "tansu"
    # Short group timings: with aiokafka's defaults a first join takes ~5 s.
    # fetch_max_wait_ms: Tansu answers a fetch only when about half of it has
    # passed, even when records are there (real Kafka answers at once).
    SETTINGS = dict(
        session_timeout_ms=2000,
        heartbeat_interval_ms=500,
        rebalance_timeout_ms=2000,
        fetch_max_wait_ms=20,
        retry_backoff_seconds=0.01,
        max_retry_backoff_seconds=0.05,
        close_timeout_seconds=0.2,
        join_timeout_seconds=15,
    )

    def __init__(self, request: pytest.FixtureRequest):
        self.broker = request.getfixturevalue(self.BROKER_FIXTURE)
        self.prefix = f"contract-{uuid.uuid4().hex[:8]}."
        self.opened: list[KafkaEventBus] = []

    async def open(self) -> EventBus:
        bus = KafkaEventBus(self.broker.bootstrap_servers, topic_prefix=self.prefix, **self.SETTINGS)
        await bus.start()
        self.opened.append(bus)
        return bus

    async def close_all(self) -> None:
        for bus in self.opened:
            await bus.close()  # closing twice is a no-op

    def diagnostics(self) -> str:
        return self.broker.log_tail()


class ApacheKafkaBuses(KafkaBuses):
    """The same on the genuine broker (apache/kafka, KRaft) in Docker."""

    BROKER_FIXTURE = "apache_kafka"

    def diagnostics(self) -> str:
        stdout, stderr = self.broker.get_logs()
        return "\n".join((stdout + stderr).decode(errors="replace").splitlines()[-40:])


FACTORIES = [
    pytest.param(SqliteBuses, id="sqlite"),
    pytest.param(KafkaBuses, id="kafka-tansu"),
]
if docker_variant(f"the event bus contract on the {APACHE_KAFKA_IMAGE} image"):
    FACTORIES.append(pytest.param(ApacheKafkaBuses, id="kafka-apache"))


@pytest.fixture(scope="session")
def apache_kafka():
    container = apache_kafka_container()
    yield container
    container.stop()


@pytest.fixture(params=FACTORIES)
async def bus_factory(request: pytest.FixtureRequest):
    factory: BusFactory = request.param(request)
    failures = request.session.testsfailed
    yield factory
    await factory.close_all()
    if request.session.testsfailed > failures and hasattr(factory, "diagnostics"):
        _show(request, f"{request.node.nodeid} failed; the broker's log:\n{factory.diagnostics()}")


def _show(request: pytest.FixtureRequest, text: str) -> None:
    # Straight to the terminal: output captured during teardown is not shown
    # for a test whose call already failed.
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter:
        reporter.write_line("")
        reporter.write_line(text)


@pytest.fixture
async def event_bus(bus_factory: BusFactory) -> EventBus:
    return await bus_factory.open()


@pytest.fixture
def unique(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Topic and group names no other test (or earlier run on the same broker) uses."""
    test = re.sub(r"[^A-Za-z0-9]+", "-", request.node.name).strip("-")[:80]
    run = uuid.uuid4().hex[:8]
    return lambda what: f"{test}.{run}.{what}"


# --- helpers -----------------------------------------------------------------
def message(topic: str, n: int = 0, key: str = "k") -> Message:
    return Message(
        topic=topic,
        key=key,
        id=uuid.uuid4().hex,
        type="Counted",
        payload={"n": n, "nested": {"list": [1, "two"]}},
        headers={"trace": f"t-{n}"},
    )


async def eventually(condition: Callable[[], bool], timeout: float = WAIT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


class Recorder:
    """A handler that records what it handled; ``fail`` decides whether a delivery raises."""

    def __init__(self, fail: Callable[[Message, int], bool] = lambda m, delivery: False):
        self.fail = fail
        self.handled: list[Message] = []
        self.deliveries: Counter[str] = Counter()  # per message id

    async def __call__(self, m: Message) -> None:
        self.deliveries[m.id] += 1
        await asyncio.sleep(0)  # let other consumers interleave
        if self.fail(m, self.deliveries[m.id]):
            raise RuntimeError(f"refusing {m.id} (delivery {self.deliveries[m.id]})")
        self.handled.append(m)

    def ids(self) -> list[str]:
        return [m.id for m in self.handled]

    async def wait_for(self, m: Message) -> None:
        await eventually(lambda: m.id in self.ids())


class Hang:
    """A handler that never returns from its first delivery: a consumer dying mid-handler."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.deliveries = 0

    async def __call__(self, m: Message) -> None:
        self.deliveries += 1
        self.started.set()
        await asyncio.Event().wait()


async def close_with_hung_handler(bus: EventBus) -> None:
    # The adapter must bound its own wait; this outer limit only turns a hang into a failure.
    await asyncio.wait_for(bus.close(), 10)


# --- delivery ----------------------------------------------------------------
async def test_published_messages_reach_a_subscriber(event_bus: EventBus, unique):
    topic = unique("topic")
    sent = [message(topic, n) for n in range(3)]
    recorder = Recorder()
    await event_bus.subscribe(unique("group"), [topic], recorder)

    await event_bus.publish(sent)

    await recorder.wait_for(sent[-1])
    assert recorder.handled == sent  # every field survives the trip, in order


async def test_every_group_gets_every_message(event_bus: EventBus, unique):
    topic = unique("topic")
    sent = [message(topic, n) for n in range(5)]
    first, second = Recorder(), Recorder()
    await event_bus.subscribe(unique("first"), [topic], first)
    await event_bus.subscribe(unique("second"), [topic], second)

    await event_bus.publish(sent)

    await first.wait_for(sent[-1])
    await second.wait_for(sent[-1])
    assert first.ids() == second.ids() == [m.id for m in sent]


async def test_a_failing_handler_gets_the_message_again_until_it_succeeds(event_bus: EventBus, unique):
    topic = unique("topic")
    flaky, marker = message(topic, 1), message(topic, 2)
    recorder = Recorder(fail=lambda m, delivery: m.id == flaky.id and delivery <= 2)
    await event_bus.subscribe(unique("group"), [topic], recorder, max_attempts=5)

    await event_bus.publish([flaky, marker])

    await recorder.wait_for(marker)  # same topic, so anything of flaky's came before
    assert recorder.deliveries[flaky.id] == 3
    assert recorder.ids() == [flaky.id, marker.id]  # handled successfully exactly once
    assert recorder.deliveries[marker.id] == 1


async def test_a_poison_message_goes_to_the_dead_letter_topic_and_consumption_goes_on(event_bus: EventBus, unique):
    topic, group = unique("topic"), unique("group")
    poison, after = message(topic, 1), message(topic, 2)
    recorder = Recorder(fail=lambda m, delivery: m.id == poison.id)
    dead = Recorder()
    await event_bus.subscribe(group, [topic], recorder, max_attempts=3)
    await event_bus.subscribe(unique("operators"), [dead_letter_topic(topic)], dead)

    await event_bus.publish([poison, after])

    await recorder.wait_for(after)
    await dead.wait_for(poison)
    assert recorder.deliveries[poison.id] == 3
    assert recorder.ids() == [after.id]
    [dead_letter] = dead.handled
    assert (dead_letter.topic, dead_letter.key, dead_letter.id) == (dead_letter_topic(topic), poison.key, poison.id)
    assert (dead_letter.type, dead_letter.payload) == (poison.type, poison.payload)
    assert dead_letter.headers["trace"] == poison.headers["trace"]
    assert "refusing" in dead_letter.headers["error"]
    assert dead_letter.headers["attempts"] == "3"
    assert dead_letter.headers["original-topic"] == topic
    assert dead_letter.headers["group"] == group


async def test_messages_with_one_key_are_handled_in_publish_order(event_bus: EventBus, unique):
    topic = unique("topic")
    keys = ["a", "b", "c", "d"]
    sent = [message(topic, n, key=keys[n % len(keys)]) for n in range(200)]
    # A few first deliveries fail: a retry must not let later messages overtake.
    recorder = Recorder(fail=lambda m, delivery: m.payload["n"] % 37 == 5 and delivery == 1)
    await event_bus.subscribe(unique("group"), [topic], recorder)

    for start in range(0, len(sent), 20):  # several publish calls, not one batch
        await event_bus.publish(sent[start : start + 20])

    await eventually(lambda: len(recorder.handled) >= len(sent))
    handled_by_key: dict[str, list[int]] = defaultdict(list)
    for m in recorder.handled:
        handled_by_key[m.key].append(m.payload["n"])
    assert handled_by_key == {k: [m.payload["n"] for m in sent if m.key == k] for k in keys}


async def test_a_slow_handler_does_not_hold_up_another_topic(event_bus: EventBus, unique):
    slow_topic, fast_topic = unique("slow"), unique("fast")
    slow, fast = message(slow_topic), message(fast_topic)
    slow_started, release = asyncio.Event(), asyncio.Event()
    handled: list[str] = []

    async def handler(m: Message) -> None:
        if m.topic == slow_topic:
            slow_started.set()
            await release.wait()
        handled.append(m.topic)

    await event_bus.subscribe(unique("group"), [slow_topic, fast_topic], handler)
    await event_bus.publish([slow])
    await asyncio.wait_for(slow_started.wait(), WAIT_SECONDS)
    await event_bus.publish([fast])

    # The slow handler is held until released below: the fast topic's message is handled meanwhile.
    await eventually(lambda: handled == [fast_topic])
    release.set()
    await eventually(lambda: handled == [fast_topic, slow_topic])


async def test_stop_lets_the_running_handler_finish(event_bus: EventBus, unique):
    topic, group = unique("topic"), unique("group")
    first, marker = message(topic, 1), message(topic, 2)
    started, release = asyncio.Event(), asyncio.Event()
    finished: list[str] = []

    async def handler(m: Message) -> None:
        started.set()
        await release.wait()
        finished.append(m.id)

    subscription = await event_bus.subscribe(group, [topic], handler)
    await event_bus.publish([first])
    await asyncio.wait_for(started.wait(), WAIT_SECONDS)

    stopping = asyncio.create_task(subscription.stop())
    finished_when_stopped: list[list[str]] = []
    stopping.add_done_callback(lambda _: finished_when_stopped.append(list(finished)))
    # Give a stop that does not wait for the handler the time to return (then the check below fails);
    # a correct stop is still waiting, so the handler is released.
    await asyncio.wait({stopping}, timeout=0.5)
    release.set()
    await asyncio.wait_for(stopping, WAIT_SECONDS)
    assert finished_when_stopped == [[first.id]], "stop() returned before the running handler had finished"

    # The finished handler counted: the group resumes after it.
    recorder = Recorder()
    await event_bus.subscribe(group, [topic], recorder)
    await event_bus.publish([marker])
    await recorder.wait_for(marker)
    assert recorder.ids() == [marker.id]


# --- restarts ----------------------------------------------------------------
async def test_messages_published_while_no_consumer_runs_are_delivered_on_subscribe(bus_factory: BusFactory, unique):
    topic, group = unique("topic"), unique("group")
    early = [message(topic, n) for n in range(3)]
    publisher = await bus_factory.open()
    await publisher.publish(early)  # before the group ever subscribed
    await publisher.close()

    bus = await bus_factory.open()
    recorder = Recorder()
    subscription = await bus.subscribe(group, [topic], recorder)
    await recorder.wait_for(early[-1])
    await subscription.stop()

    later = [message(topic, n) for n in range(3, 6)]
    await bus.publish(later)  # while the group is stopped
    again = Recorder()
    await bus.subscribe(group, [topic], again)
    await again.wait_for(later[-1])
    assert recorder.ids() == [m.id for m in early]
    assert again.ids() == [m.id for m in later]


async def test_a_committed_offset_survives_reopening(bus_factory: BusFactory, unique):
    topic, group = unique("topic"), unique("group")
    sent = [message(topic, n) for n in range(3)]
    bus = await bus_factory.open()
    recorder = Recorder()
    await bus.subscribe(group, [topic], recorder)
    await bus.publish(sent)
    await recorder.wait_for(sent[-1])
    await bus.close()

    reopened = await bus_factory.open()
    again = Recorder()
    await reopened.subscribe(group, [topic], again)
    marker = message(topic, 99)
    await reopened.publish([marker])
    await again.wait_for(marker)
    assert again.ids() == [marker.id]


async def test_a_delivery_cut_off_by_close_is_redelivered_after_reopening(bus_factory: BusFactory, unique):
    topic, group = unique("topic"), unique("group")
    sent = [message(topic, 1), message(topic, 2)]
    bus = await bus_factory.open()
    hang = Hang()
    await bus.subscribe(group, [topic], hang)
    await bus.publish(sent)
    await asyncio.wait_for(hang.started.wait(), WAIT_SECONDS)
    await close_with_hung_handler(bus)  # the "process" dies mid-handler

    reopened = await bus_factory.open()
    recorder = Recorder()
    await reopened.subscribe(group, [topic], recorder)
    await recorder.wait_for(sent[-1])
    assert recorder.ids() == [m.id for m in sent]


async def test_deliveries_cut_off_by_a_crash_count_as_attempts(bus_factory: BusFactory, unique):
    # A message that kills its consumer every time must not stop the group forever.
    topic, group = unique("topic"), unique("group")
    killer, after = message(topic, 1), message(topic, 2)
    hangs = []
    for run in range(2):
        bus = await bus_factory.open()
        if run == 0:
            await bus.publish([killer, after])
        hangs.append(Hang())
        await bus.subscribe(group, [topic], hangs[-1], max_attempts=2)
        await asyncio.wait_for(hangs[-1].started.wait(), WAIT_SECONDS)
        await close_with_hung_handler(bus)

    bus = await bus_factory.open()
    recorder, dead = Recorder(), Recorder()
    await bus.subscribe(group, [topic], recorder, max_attempts=2)
    await bus.subscribe(unique("operators"), [dead_letter_topic(topic)], dead)
    await recorder.wait_for(after)
    await dead.wait_for(killer)
    assert [h.deliveries for h in hangs] == [1, 1]
    assert recorder.ids() == [after.id]
    assert dead.handled[0].headers["attempts"] == "2"
    assert dead.handled[0].headers["group"] == group
