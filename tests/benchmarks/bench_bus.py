"""make bench-bus: the event bus through Kafka (Tansu) and through SQLite, side by side.

One run, one process, the same workload on both adapters, one table:
1. throughput: EVENTS events over KEYS keys, published in batches of BATCH
   (as the outbox relay publishes) while one group consumes them with a
   handler that does nothing; events/s from the first publish to the last
   handled event, and each event's publish-to-handle latency under that load
   (mostly time spent queued behind earlier events);
2. round trip: ROUND_TRIPS events, one per publish, each waited for before
   the next: publish-to-handle latency of an idle bus.
The Kafka bus runs on a Tansu broker this script starts on 127.0.0.1 and
stops again, with short group timings (as in the tests) and a 5 ms fetch
wait: Tansu holds a fetch for about half of that wait even when records are
there (real Kafka answers at once), so with Kafka's default 500 ms the
round trip would measure Tansu's wait, not the bus. Every phase is bounded
by PHASE_TIMEOUT_SECONDS. The machine's cores are shared by this process and
the broker.
"""
from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from customlabels.adapters.kafka_events import KafkaEventBus  # noqa: E402
from customlabels.adapters.sqlite_events import SqliteEventBus  # noqa: E402
from customlabels.ports.events import EventBus, Message  # noqa: E402
from tests.support.tansu import TansuBroker  # noqa: E402

EVENTS = 5_000
KEYS = 16  # projects, say: Kafka spreads them over its partitions
BATCH = 100
ROUND_TRIPS = 500
PHASE_TIMEOUT_SECONDS = 120
KAFKA_SETTINGS = dict(
    partitions=3,
    session_timeout_ms=2000,
    heartbeat_interval_ms=500,
    rebalance_timeout_ms=2000,
    fetch_max_wait_ms=5,
)


class Clock:
    """A handler that notes when each event was handled."""

    def __init__(self) -> None:
        self.handled: dict[str, float] = {}
        self.changed = asyncio.Event()

    async def __call__(self, m: Message) -> None:
        self.handled[m.id] = time.perf_counter()
        self.changed.set()

    async def wait_for(self, count: int) -> None:
        while len(self.handled) < count:
            self.changed.clear()
            await self.changed.wait()


def events(topic: str, count: int) -> list[Message]:
    return [
        Message(topic, f"project-{n % KEYS}", uuid.uuid4().hex, "Benchmarked", {"n": n, "labels": ["a", "b"]})
        for n in range(count)
    ]


async def throughput(bus: EventBus, clock: Clock, topic: str) -> tuple[float, list[float]]:
    sent = events(topic, EVENTS)
    published_at: dict[str, float] = {}
    started = time.perf_counter()
    for start in range(0, EVENTS, BATCH):
        batch = sent[start : start + BATCH]
        now = time.perf_counter()
        published_at.update((m.id, now) for m in batch)
        await bus.publish(batch)
    await clock.wait_for(EVENTS)
    elapsed = max(clock.handled.values()) - started
    return EVENTS / elapsed, [clock.handled[i] - t for i, t in published_at.items()]


async def round_trips(bus: EventBus, clock: Clock, topic: str) -> list[float]:
    latencies = []
    for m in events(topic, ROUND_TRIPS):
        before = len(clock.handled)
        published = time.perf_counter()
        await bus.publish([m])
        await clock.wait_for(before + 1)
        latencies.append(clock.handled[m.id] - published)
    return latencies


async def measure(open_bus: Callable[[], Awaitable[EventBus]]) -> dict[str, float]:
    bus = await open_bus()
    try:
        run = uuid.uuid4().hex[:8]
        loaded, idle = Clock(), Clock()
        await bus.subscribe(f"bench-{run}.loaded", [f"bench-{run}.loaded"], loaded)
        await bus.subscribe(f"bench-{run}.idle", [f"bench-{run}.idle"], idle)
        rate, under_load = await asyncio.wait_for(
            throughput(bus, loaded, f"bench-{run}.loaded"), PHASE_TIMEOUT_SECONDS
        )
        unloaded = await asyncio.wait_for(round_trips(bus, idle, f"bench-{run}.idle"), PHASE_TIMEOUT_SECONDS)
    finally:
        await bus.close()
    return {
        "throughput (events/s)": rate,
        "latency under load p50 (ms)": percentile(under_load, 50),
        "latency under load p99 (ms)": percentile(under_load, 99),
        "round trip p50 (ms)": percentile(unloaded, 50),
        "round trip p99 (ms)": percentile(unloaded, 99),
    }


def percentile(seconds: list[float], p: int) -> float:
    return statistics.quantiles(seconds, n=100, method="inclusive")[p - 1] * 1000


def table(sqlite: dict[str, float], kafka: dict[str, float]) -> str:
    rows = [("", "sqlite", "kafka (tansu)", "kafka / sqlite")]
    for name in sqlite:
        rows.append((name, f"{sqlite[name]:,.1f}", f"{kafka[name]:,.1f}", f"{kafka[name] / sqlite[name]:.2f}x"))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
        for row in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-bus-") as tmp:

        async def sqlite_bus() -> EventBus:
            bus = SqliteEventBus(Path(tmp) / "events.db")
            await bus.start()
            return bus

        with TansuBroker(Path(tmp) / "tansu") as broker:

            async def kafka_bus() -> EventBus:
                bus = KafkaEventBus(broker.bootstrap_servers, **KAFKA_SETTINGS)
                await bus.start()
                return bus

            try:
                sqlite = await measure(sqlite_bus)
                kafka = await measure(kafka_bus)
            except BaseException:
                print(broker.log_tail(), file=sys.stderr)
                raise
    print(
        f"event bus: {EVENTS:,} events over {KEYS} keys in batches of {BATCH}, then {ROUND_TRIPS} round trips;"
        f" no-op handler; Kafka on Tansu, {KAFKA_SETTINGS['partitions']} partitions per topic"
    )
    print(table(sqlite, kafka))


if __name__ == "__main__":
    asyncio.run(main())
