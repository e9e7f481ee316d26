"""Hosting's capture while the feedback service is down: nothing that meets the flow's conditions is lost.

The router stands in for the other services (projects answers the tags, feedback the flow
definition, or "could not be reached"); the blob store is the real local adapter.
"""
from __future__ import annotations

import asyncio
import json

import pytest
from customlabels import errors
from customlabels.adapters.local_blobs import LocalBlobStore
from customlabels.ports.blobs import Unavailable

from services.hosting import capture
from services.hosting.capture import Capture

VERSION = "arn:aws:rekognition:us-east-1:000000000000:project/p/version/v1/1"
PROJECT = "arn:aws:rekognition:us-east-1:000000000000:project/p/1"
FLOW = "arn:aws:sagemaker:us-east-1:000000000000:flow-definition/unsure"
UNSURE = {"Conditions": [{"ConditionType": "DetectionCount",
                          "ConditionParameters": {"LabelName": "*", "MinConfidence": 70, "CountEquals": 0}}]}


class Services:
    """Projects (tags) and feedback (the flow), which may be down or may have lost the flow."""

    def __init__(self):
        self.feedback = "down"  # "up", "down" or "flow deleted"

    async def call(self, operation: str, params: dict) -> dict:
        if operation == "ListTagsForResource":
            return {"Tags": {"customlabels:flow-definition": FLOW} if params["ResourceArn"] == VERSION else {}}
        assert operation == "DescribeFlowDefinition"
        if self.feedback == "down":
            raise errors.Throttling("the feedback service could not be reached (connection refused); retry")
        if self.feedback == "flow deleted":
            raise errors.ResourceNotFound("flow definition unsure does not exist")
        return {"FlowDefinitionArn": FLOW, "HumanLoopActivationConfig": {
            "HumanLoopActivationConditionsConfig": {"HumanLoopActivationConditions": json.dumps(UNSURE)}}}


def facts(confidence: float) -> dict:
    return {"all": [["cat", confidence, None]], "task": "multiclass", "labels": ["cat", "dog"], "thresholds": {}}


@pytest.fixture
async def hosting(tmp_path, monkeypatch):
    monkeypatch.setattr(capture, "REFRESH_SECONDS", 0.1)
    services, emitted = Services(), []

    async def emit(event):
        emitted.append(event)

    blobs = LocalBlobStore(tmp_path / "blobs")
    await blobs.start()
    running = Capture(services, blobs, emit)
    await running.start()
    running.watch(VERSION, PROJECT)
    yield running, services, emitted
    await running.stop()


async def settle(running: Capture) -> None:
    """Until the binding read started by ``watch`` or a refresh has finished and the queue is written."""
    for _ in range(50):
        await asyncio.sleep(0.05)
        if not running._reads and running.queue.empty():
            return


async def test_answers_made_while_feedback_was_down_at_start_are_decided_when_it_is_back(hosting):
    running, services, emitted = hosting
    await settle(running)
    assert running.bound(VERSION) and running.bindings[VERSION].pending
    running.offer(VERSION, {"Image": {}}, b"unsure image", facts(40.0))
    running.offer(VERSION, {"Image": {}}, b"sure image", facts(95.0))
    await asyncio.sleep(0.5)
    assert emitted == []  # nothing is decided before the flow's conditions are known

    services.feedback = "up"
    for _ in range(50):
        await asyncio.sleep(0.05)
        if emitted:
            break
    await asyncio.sleep(0.3)
    assert [e.predictions[0]["Confidence"] for e in emitted] == [40.0]  # the flow's own rule, applied late
    assert emitted[0].flow_definition_arn == FLOW and emitted[0].activation


async def test_a_binding_read_once_holds_while_feedback_is_down(hosting):
    running, services, emitted = hosting
    services.feedback = "up"
    await running.refresh(VERSION)
    services.feedback = "down"
    await running.refresh(VERSION)  # what the periodic refresh does during the outage
    binding = running.bindings[VERSION]
    assert binding is not None and not binding.pending and binding.conditions is not None
    running.offer(VERSION, {"Image": {}}, b"unsure image", facts(40.0))
    await settle(running)
    assert len(emitted) == 1


async def test_pending_captures_of_a_flow_that_is_gone_are_dropped(hosting):
    running, services, emitted = hosting
    await settle(running)
    running.offer(VERSION, {"Image": {}}, b"unsure image", facts(40.0))
    services.feedback = "flow deleted"
    await asyncio.sleep(0.6)
    assert running.bindings[VERSION] is None and running.queue.empty() and emitted == []
    assert not running.bound(VERSION)


class OutageBlobStore(LocalBlobStore):
    """The real local store, refusing its first ``outage`` writes as a store that is down does."""

    def __init__(self, root, outage: int):
        super().__init__(root)
        self.outage = outage

    async def put(self, bucket, key, data):
        if self.outage > 0:
            self.outage -= 1
            raise Unavailable("the S3 store could not be reached: connection refused")
        return await super().put(bucket, key, data)


async def test_a_store_outage_longer_than_the_retries_loses_no_capture(tmp_path, monkeypatch):
    monkeypatch.setattr(capture, "TRANSIENT_PAUSES", (0.01, 0.02))
    services, emitted = Services(), []
    services.feedback = "up"

    async def emit(event):
        emitted.append(event)

    blobs = OutageBlobStore(tmp_path / "blobs", outage=20)  # three tries would have given up on it
    await blobs.start()
    running = Capture(services, blobs, emit)
    await running.start()
    try:
        running.watch(VERSION, PROJECT)
        await settle(running)
        running.offer(VERSION, {"Image": {}}, b"unsure image", facts(40.0))
        for _ in range(100):
            await asyncio.sleep(0.02)
            if emitted:
                break
        assert blobs.outage == 0 and len(emitted) == 1
        assert await blobs.get(capture.CAPTURE_BUCKET, emitted[0].image.key) == b"unsure image"
    finally:
        await running.stop()
