"""Event bus port: keyed messages on topics, consumed by groups, at least once.

Semantics every adapter keeps (``tests/contract/test_event_bus.py``):
- ``publish`` returns once the message is durable.
- Every consumer group sees every message of the topics it subscribes to;
  within a group each message is handled by one consumer.
- Messages with the same key are handled in publish order.
- A message counts as handled only when the handler returned; if it raises,
  the bus redelivers it (with backoff) up to ``max_attempts`` times, then
  publishes it to ``dead_letter_topic(topic)`` and moves on. A consumer that
  dies mid-handler gets the message again after restart.
So handlers must be idempotent (see ``customlabels.messaging``).

Adapters: ``customlabels.adapters.sqlite_events`` (embedded) and, later, Kafka.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Protocol, Sequence


@dataclass(frozen=True)
class Message:
    topic: str
    key: str
    id: str  # unique per message; consumers deduplicate on it
    type: str  # event type name, e.g. "DatasetCreated"
    payload: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Message], Awaitable[None]]


def dead_letter_topic(topic: str) -> str:
    return f"{topic}.dead-letter"


class Subscription(Protocol):
    async def stop(self) -> None:
        """Stop consuming; a handler that is running finishes first."""


class EventBus(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None:
        """Stop every subscription and release resources."""

    async def publish(self, messages: Sequence[Message]) -> None:
        """Append messages durably, in order."""

    async def subscribe(
        self,
        group: str,
        topics: Sequence[str],
        handler: Handler,
        *,
        max_attempts: int = 5,
    ) -> Subscription:
        """Start consuming ``topics`` as ``group`` in the background."""
