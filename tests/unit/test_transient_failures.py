"""Event handlers meet failures that pass (a peer restarting, a full disk) and failures that do not.

``EventHandlers.handle`` retries a transient failure in place until it passes,
so the bus never counts it towards dead-lettering (issue 12 item 5: an upload
event was dead-lettered while the projects service restarted); any other
failure goes back to the bus at once.
"""
from __future__ import annotations

import errno
import time

import pytest

from customlabels import errors
from customlabels.adapters.sqlite_documents import SqliteDocumentStore
from customlabels.events import ImageUploaded
from customlabels.messaging import APPLIED_EVENTS, MESSAGING_COLLECTIONS, EventHandlers, transient
from customlabels.ports.documents import ScopedStore


@pytest.fixture
async def store(tmp_path):
    documents = SqliteDocumentStore(tmp_path / "documents.sqlite")
    scoped = ScopedStore(documents, "datasets")
    await documents.start(scoped.collections(MESSAGING_COLLECTIONS))
    yield scoped
    await documents.close()


def test_what_is_transient():
    assert transient(errors.Throttling("the projects service could not be reached; retry"))
    assert transient(errors.ServiceUnavailable("out of disk space"))
    assert transient(OSError(errno.ENOSPC, "No space left on device"))
    assert not transient(errors.ResourceNotFound("no such project"))
    assert not transient(ValueError("a bug"))


async def test_a_transient_failure_is_retried_in_place_until_it_passes(store):
    calls = []

    async def on_upload(event, uow):
        calls.append(time.monotonic())
        if len(calls) < 4:
            raise errors.Throttling("the projects service could not be reached; retry")

    handlers = EventHandlers("datasets", store, bus=None, relay=None, handlers={ImageUploaded: on_upload})
    event = ImageUploaded(bucket="b", object_key="p/train/a.jpg", size=1)
    await handlers.handle(event.to_message())  # returns only once applied
    assert len(calls) == 4
    assert calls[-1] - calls[0] >= 0.2 + 0.4 + 0.8 - 0.05  # backing off
    assert await store.get(APPLIED_EVENTS, event.event_id)
    await handlers.handle(event.to_message())  # applied once: a redelivery changes nothing
    assert len(calls) == 4


async def test_any_other_failure_goes_back_to_the_bus_at_once(store):
    calls = []

    async def on_upload(event, uow):
        calls.append(event)
        raise errors.ResourceNotFound("no such project")

    handlers = EventHandlers("datasets", store, bus=None, relay=None, handlers={ImageUploaded: on_upload})
    event = ImageUploaded(bucket="b", object_key="p/train/a.jpg", size=1)
    with pytest.raises(errors.ResourceNotFound):
        await handlers.handle(event.to_message())
    assert len(calls) == 1 and not await store.get(APPLIED_EVENTS, event.event_id)
