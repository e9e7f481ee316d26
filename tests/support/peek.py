"""What an embedded server has stored, read from its document file: where a killed job stood.

A crash test kills the server mid-job and then has to prove *where* the job
was when it died (not merely that it recovers). The API shows a job's
progress only coarsely, so these helpers read the documents themselves, with
the embedded document store (``SqliteDocumentStore`` on
``<data>/documents.sqlite``), as the service would. SQLite lets them read
while the server writes; read after a kill -9 they see exactly what the dead
process had committed.
"""
from __future__ import annotations

import asyncio
from pathlib import Path

from customlabels.adapters.sqlite_documents import SqliteDocumentStore
from customlabels.ports.documents import Collection


def documents(data_dir: Path, collection: str) -> list[dict]:
    """Every document of ``collection`` (``<service>.<name>``, e.g. ``datasets.jobs``)."""
    return asyncio.run(_documents(Path(data_dir) / "documents.sqlite", collection))


async def _documents(path: Path, collection: str) -> list[dict]:
    store = SqliteDocumentStore(path)
    await store.start([Collection(collection)])
    try:
        found, cursor = [], None
        while True:
            page = await store.find(collection, limit=1000, after=cursor)
            found += page.items
            cursor = page.next_cursor
            if cursor is None:
                return found
    finally:
        await store.close()
