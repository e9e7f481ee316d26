"""The object store's bucket notifications, as ``ImageUploaded`` events.

MinIO (and AWS S3 through a bridge) publishes one JSON record per stored
object to a Kafka topic, in the S3 event notification format:
``{"Records": [{"eventName": "s3:ObjectCreated:Put", "s3": {"bucket": {"name"},
"object": {"key" (URL-encoded), "size"}}}]}``. This bridge reads that topic
as its own consumer group and republishes each created object as an
``ImageUploaded`` event on the bus, committing only after the bus has them
(at least once; the datasets service's handler is idempotent).
"""
from __future__ import annotations

import asyncio
import json
import logging
from urllib.parse import unquote_plus

from aiokafka import AIOKafkaConsumer

from customlabels.events import ImageUploaded
from customlabels.ports.events import EventBus

log = logging.getLogger(__name__)


def uploads_in(value: bytes) -> list[ImageUploaded]:
    """The created objects an S3 event notification record names (none if it is not one)."""
    try:
        records = json.loads(value).get("Records") or []
    except (ValueError, AttributeError):
        return []
    uploads = []
    for record in records:
        try:
            if not str(record["eventName"]).startswith("s3:ObjectCreated:"):
                continue
            s3 = record["s3"]
            uploads.append(
                ImageUploaded(
                    bucket=s3["bucket"]["name"],
                    object_key=unquote_plus(s3["object"]["key"]),
                    size=int(s3["object"].get("size", 0)),
                )
            )
        except (KeyError, TypeError, ValueError):
            log.warning("ignoring a malformed bucket notification record: %.200r", record)
    return uploads


class KafkaNotificationBridge:
    def __init__(self, bootstrap_servers: str, topic: str, bus: EventBus, *, group: str = "customlabels-s3-notifications", **consumer_options):
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.bus = bus
        self.group = group
        self.consumer_options = consumer_options
        self._task: asyncio.Task | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            self.topic,
            bootstrap_servers=self.bootstrap_servers,
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **self.consumer_options,
        )
        await self._consumer.start()
        self._task = asyncio.create_task(self._run(), name="s3-notification-bridge")

    async def _run(self) -> None:
        while True:
            try:
                async for record in self._consumer:
                    uploads = uploads_in(record.value or b"")
                    if uploads:
                        await self.bus.publish([upload.to_message() for upload in uploads])
                    await self._consumer.commit()
            except asyncio.CancelledError:
                raise
            except Exception:  # the bus or Kafka is away: read again from the last commit
                log.exception("bucket notification bridge failed; retrying")
                await asyncio.sleep(1)
                await self._consumer.seek_to_committed()

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._consumer:
            await self._consumer.stop()
