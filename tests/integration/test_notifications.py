"""Bucket notifications (MinIO's Kafka target, S3 event format) become ImageUploaded events."""
from __future__ import annotations

import asyncio
import json

from aiokafka import AIOKafkaProducer

from customlabels.adapters.kafka_events import KafkaEventBus
from customlabels.adapters.s3_notifications import KafkaNotificationBridge, uploads_in
from customlabels.events import Event, ImageUploaded


def minio_record(bucket: str, key: str, size: int = 1234, event: str = "s3:ObjectCreated:Put") -> bytes:
    """A record as MinIO's notify_kafka target publishes it (keys URL-encoded, as S3 does)."""
    from urllib.parse import quote_plus

    return json.dumps({
        "EventName": event,
        "Key": f"{bucket}/{key}",
        "Records": [{
            "eventVersion": "2.0", "eventSource": "minio:s3", "awsRegion": "", "eventName": event,
            "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
                   "object": {"key": quote_plus(key, safe="/"), "size": size, "eTag": "abc", "sequencer": "1"}},
        }],
    }).encode()


def test_records_are_read_as_the_s3_event_format():
    (upload,) = uploads_in(minio_record("customlabels-images", "cats/train/a cat+1.jpg", 99))
    assert (upload.bucket, upload.object_key, upload.size) == ("customlabels-images", "cats/train/a cat+1.jpg", 99)
    assert uploads_in(minio_record("b", "k.jpg", event="s3:ObjectRemoved:Delete")) == []
    assert uploads_in(b"not json") == [] and uploads_in(b'{"Records": [{"eventName": "s3:ObjectCreated:Put"}]}') == []


async def test_the_bridge_republishes_notifications_on_the_bus(tansu, unique):
    timings = dict(session_timeout_ms=2000, heartbeat_interval_ms=500)
    bus = KafkaEventBus(tansu.bootstrap_servers, topic_prefix=f"{unique}.", fetch_max_wait_ms=20, rebalance_timeout_ms=2000, **timings)
    await bus.start()
    received: asyncio.Queue = asyncio.Queue()

    async def handler(message):
        await received.put(Event.from_message(message))

    await bus.subscribe(f"{unique}-test", ["objects"], handler)
    producer = AIOKafkaProducer(bootstrap_servers=tansu.bootstrap_servers)
    await producer.start()
    topic = f"{unique}-notifications"
    await producer.send_and_wait(topic, minio_record("customlabels-images", "p/train/x y.jpg", 42))
    await producer.send_and_wait(topic, b"garbage is skipped, not fatal")
    await producer.send_and_wait(topic, minio_record("customlabels-images", "p/train/z.png", 7))
    bridge = KafkaNotificationBridge(tansu.bootstrap_servers, topic, bus, group=f"{unique}-bridge", **timings)
    await bridge.start()
    seen: set = set()
    try:
        while len(seen) < 2:  # at least once: a record may come twice after a retry
            event = await asyncio.wait_for(received.get(), 30)
            assert isinstance(event, ImageUploaded)
            seen.add((event.object_key, event.size))
    finally:
        await bridge.stop()
        await producer.stop()
        await bus.close()
    assert seen == {("p/train/x y.jpg", 42), ("p/train/z.png", 7)}
