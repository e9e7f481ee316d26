"""What the services have stored, read from their document store: where a killed job stood.

A crash test kills a process mid-job and then has to prove *where* the job
was when it died (not merely that it recovers). The API shows a job's
progress only coarsely (and not at all while the process is frozen, see
``ServerProcess.kill_when``), so these helpers read the documents themselves,
with the adapter the services use: the embedded ``SqliteDocumentStore`` on
``<data>/documents.sqlite``, opened read-only (SQLite lets it read while the
server writes, or while it is frozen holding the write lock), or MongoDB.
Read after a kill -9, they see exactly what the dead process had committed.
"""
from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path

from customlabels.adapters.mongo_documents import MongoDocumentStore
from customlabels.adapters.sqlite_documents import SqliteDocumentStore
from customlabels.ports.documents import Collection, DocumentStore


def documents(data_dir: Path, collection: str, env: Mapping[str, str] | None = None) -> list[dict]:
    """Every document of ``collection`` (``<service>.<name>``, e.g. ``datasets.jobs``).

    ``env``: the processes' adapter settings, where they keep their documents in
    MongoDB (``CUSTOMLABELS_MONGODB_URI``) rather than under ``data_dir``."""
    return asyncio.run(_documents(_store(Path(data_dir), env or {}), collection))


def _store(data_dir: Path, env: Mapping[str, str]) -> DocumentStore:
    if env.get("CUSTOMLABELS_MONGODB_URI"):
        return MongoDocumentStore(env["CUSTOMLABELS_MONGODB_URI"], env["CUSTOMLABELS_MONGODB_DATABASE"])
    return SqliteDocumentStore(data_dir / "documents.sqlite", read_only=True)


async def _documents(store: DocumentStore, collection: str) -> list[dict]:
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
