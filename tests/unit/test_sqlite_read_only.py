"""A read-only SQLite document store: an inspector beside a writer that may be frozen mid-transaction.

The crash tests freeze the server (SIGSTOP) and read where its jobs stand
before they kill it; the frozen process may hold the write lock, so the reader
must neither take a lock nor wait on one, and must see the last commit.
"""
from __future__ import annotations

import sqlite3

import pytest

from customlabels.adapters.sqlite_documents import SqliteDocumentStore
from customlabels.ports.documents import Collection, DocumentStoreError, Put

JOBS = Collection("test.jobs")


async def test_reads_the_last_commit_while_another_connection_holds_the_write_lock(tmp_path):
    path = tmp_path / "documents.sqlite"
    writer = SqliteDocumentStore(path)
    await writer.start([JOBS])
    await writer.commit([Put(JOBS.name, {"_id": "j", "checkpoint": 500})])
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")  # as a process frozen in the middle of its next commit holds it
    locker.execute("UPDATE c_test__jobs SET doc = json_set(doc, '$.checkpoint', 1000)")
    reader = SqliteDocumentStore(path, read_only=True)
    try:
        await reader.start([JOBS])
        assert (await reader.get(JOBS.name, "j"))["checkpoint"] == 500
        with pytest.raises(DocumentStoreError, match="read-only"):
            await reader.commit([Put(JOBS.name, {"_id": "k"})])
        locker.execute("COMMIT")
        assert (await reader.get(JOBS.name, "j"))["checkpoint"] == 1000
        assert await reader.get(JOBS.name, "k") is None
    finally:
        locker.close()
        await reader.close()
        await writer.close()


async def test_a_missing_file_is_refused_and_not_created(tmp_path):
    path = tmp_path / "documents.sqlite"
    with pytest.raises(DocumentStoreError, match="no document file"):
        await SqliteDocumentStore(path, read_only=True).start([JOBS])
    assert not path.exists()
