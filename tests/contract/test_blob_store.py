"""Contract of the blob store port: every adapter must pass it.

Tests go through the port only, via the one parametrised ``blob_store``
fixture. To add an adapter, append a ``Backend`` to ``BACKENDS``: its ``open``
must return a started store, and opening again with the same ``tmp_path``
(and server) must reach the same objects (the persistence test relies on it).
A backend on a server names the session fixture that provides it; tests use
fresh, unique bucket names, so a shared server needs no cleanup between
tests. S3 runs on SeaweedFS (``weed mini``, started once per session), on
moto's standalone server (the one S3 server here that lists in S3's key
order, so the listing-order and start-after tests that SeaweedFS fails run
there) and, where a Docker engine exists, on the official MinIO image.
Filesystem specifics of the local adapter are in ``TestLocalBlobStore`` at
the end.
"""
from __future__ import annotations

import asyncio
import hashlib
import io
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Iterator

import pytest

from customlabels.adapters.local_blobs import TMP_DIR, LocalBlobStore
from customlabels.adapters.s3_blobs import S3BlobStore
from customlabels.ports.blobs import BlobStore, InvalidKey, NoSuchBucket, NoSuchKey, ObjectInfo, Rejected, Unavailable
from tests.support.docker import docker_variant
from tests.support.moto import MotoS3
from tests.support.seaweedfs import MINIO_IMAGE, S3Endpoint, minio_container, minio_endpoint


@dataclass(frozen=True)
class Backend:
    name: str
    open: Callable[[Path, Any], Awaitable[BlobStore]]  # (tmp_path, server): same both -> same objects
    server: str | None = None  # the session fixture whose value is passed to ``open``
    # Tests this backend's server is known to fail, with why: they still run, as
    # strict xfails, so a server that gets fixed turns them into failures to remove.
    deviations: dict[str, str] = field(default_factory=dict)

    def server_for(self, request: pytest.FixtureRequest) -> Any:
        return request.getfixturevalue(self.server) if self.server else None


async def _open_local(tmp_path: Path, _server: None) -> BlobStore:
    store = LocalBlobStore(tmp_path / "blobs")
    await store.start()
    return store


async def _open_s3(_tmp_path: Path, server: S3Endpoint) -> BlobStore:
    store = S3BlobStore(server.endpoint, server.access_key, server.secret_key)
    await store.start()
    return store


@pytest.fixture(scope="session")
def minio_server() -> Iterator[S3Endpoint]:
    """The official MinIO image (only collected where a Docker engine runs)."""
    with minio_container() as container:
        yield minio_endpoint(container)


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Endpoint]:
    """moto's S3 server, once per session: S3's listing order without Docker."""
    with MotoS3(tmp_path_factory.mktemp("moto")) as server:
        yield server.s3()


# SeaweedFS walks its folders to list: a folder "p/" sorts as "p" (before "p-q"
# and "p.txt"), and start-after is read as a path, so after="a" skips every
# "a/..." key. AWS S3, MinIO and moto list in UTF-8 key order as the port requires;
# the adapter relies on that rather than listing folder by folder itself.
_SEAWEEDFS_LIST_ORDER = (
    "SeaweedFS 4.48 lists in folder-walk order, not S3's UTF-8 key order, and treats start-after as a path"
)
SEAWEEDFS_DEVIATIONS = {
    "test_key_order": _SEAWEEDFS_LIST_ORDER,
    "test_pagination": _SEAWEEDFS_LIST_ORDER,
    "test_after_in_the_middle_of_a_folder": _SEAWEEDFS_LIST_ORDER,
}

BACKENDS = [
    pytest.param(Backend("local", _open_local), id="local"),
    pytest.param(
        Backend("seaweedfs", _open_s3, server="seaweedfs_server", deviations=SEAWEEDFS_DEVIATIONS), id="s3-seaweedfs"
    ),
    pytest.param(Backend("moto", _open_s3, server="moto_server"), id="s3-moto"),
]
# Asked once, at collection: without an engine this fails at once (no socket).
MINIO_RUNS = docker_variant(f"the blob store contract on the {MINIO_IMAGE} image")
if MINIO_RUNS:
    BACKENDS.append(pytest.param(Backend("minio", _open_s3, server="minio_server"), id="s3-minio"))


@pytest.fixture(params=BACKENDS)
async def blob_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BlobStore]:
    backend: Backend = request.param
    if reason := backend.deviations.get(request.function.__name__):
        request.applymarker(pytest.mark.xfail(reason=reason, strict=True))
    store = await backend.open(tmp_path, backend.server_for(request))
    yield store
    await store.close()


@pytest.fixture
async def reopen(request: pytest.FixtureRequest, blob_store: BlobStore, tmp_path: Path):
    """Open another instance of the same backend over the same storage."""
    backend: Backend = request.node.callspec.params["blob_store"]
    server = backend.server_for(request)
    opened: list[BlobStore] = []

    async def _reopen() -> BlobStore:
        opened.append(await backend.open(tmp_path, server))
        return opened[-1]

    yield _reopen
    for store in opened:
        await store.close()


def _unique_bucket() -> str:
    return f"test-{uuid.uuid4().hex[:16]}"


@pytest.fixture
async def bucket(blob_store: BlobStore) -> str:
    name = _unique_bucket()
    await blob_store.ensure_bucket(name)
    return name


@pytest.fixture
async def other_bucket(blob_store: BlobStore) -> str:
    name = _unique_bucket()
    await blob_store.ensure_bucket(name)
    return name


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def chunks_of(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def collect(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in chunks])


async def keys(store: BlobStore, bucket: str, prefix: str = "", **kwargs) -> list[str]:
    return [info.key for info in await store.list(bucket, prefix, **kwargs)]


# --- put / get / stat ---------------------------------------------------------------------
class TestPutGetStat:
    async def test_round_trip(self, blob_store: BlobStore, bucket: str) -> None:
        data = b"\x00\x01binary\xffdata" * 100
        info = await blob_store.put(bucket, "images/cat.jpg", data)
        assert (info.bucket, info.key, info.size, info.sha256) == (bucket, "images/cat.jpg", len(data), sha(data))
        assert info.modified.tzinfo is not None
        assert await blob_store.get(bucket, "images/cat.jpg") == data

    async def test_empty_object(self, blob_store: BlobStore, bucket: str) -> None:
        info = await blob_store.put(bucket, "empty", b"")
        assert info.size == 0 and info.sha256 == sha(b"")
        assert await blob_store.get(bucket, "empty") == b""

    async def test_stat(self, blob_store: BlobStore, bucket: str) -> None:
        await blob_store.put(bucket, "a/b.txt", b"hello")
        info = await blob_store.stat(bucket, "a/b.txt")
        assert (info.bucket, info.key, info.size) == (bucket, "a/b.txt", 5)
        assert isinstance(info.modified, datetime) and info.modified.tzinfo is not None

    async def test_stat_many(self, blob_store: BlobStore, bucket: str) -> None:
        await blob_store.put(bucket, "a/1", b"one")
        await blob_store.put(bucket, "a/2", b"two!")
        found = await blob_store.stat_many(bucket, ["a/1", "a/2", "a/missing"])
        assert {k: v.size for k, v in found.items()} == {"a/1": 3, "a/2": 4}
        assert await blob_store.stat_many(bucket + "-none", ["a/1"]) == {}
        with pytest.raises(InvalidKey):
            await blob_store.stat_many(bucket, ["../x"])

    async def test_overwrite_replaces(self, blob_store: BlobStore, bucket: str) -> None:
        await blob_store.put(bucket, "k", b"old content, longer")
        info = await blob_store.put(bucket, "k", b"new")
        assert info.size == 3
        assert await blob_store.get(bucket, "k") == b"new"
        assert (await blob_store.stat(bucket, "k")).size == 3

    async def test_unicode_and_odd_but_valid_keys(self, blob_store: BlobStore, bucket: str) -> None:
        for key in ["é/ü ñ.jpg", "with space", ".hidden", "a..b", "x/...", "dash-_~!$&'()+,;=@", "日本/画像.png"]:
            await blob_store.put(bucket, key, key.encode())
            assert await blob_store.get(bucket, key) == key.encode()

    async def test_longest_key(self, blob_store: BlobStore, bucket: str) -> None:
        key = "/".join(["k" * 200] * 5) + "/" + "z" * 19  # exactly 1024 bytes, short segments
        assert len(key.encode()) == 1024
        await blob_store.put(bucket, key, b"x")
        assert await keys(blob_store, bucket) == [key]

    async def test_missing_key(self, blob_store: BlobStore, bucket: str) -> None:
        with pytest.raises(NoSuchKey):
            await blob_store.get(bucket, "nope")
        with pytest.raises(NoSuchKey):
            await blob_store.stat(bucket, "nope")

    async def test_prefix_of_objects_is_not_an_object(self, blob_store: BlobStore, bucket: str) -> None:
        await blob_store.put(bucket, "dir/file", b"x")
        with pytest.raises(NoSuchKey):
            await blob_store.get(bucket, "dir")
        with pytest.raises(NoSuchKey):
            await blob_store.stat(bucket, "dir")

    async def test_ensure_bucket_is_idempotent(self, blob_store: BlobStore, bucket: str) -> None:
        await blob_store.put(bucket, "k", b"v")
        await blob_store.ensure_bucket(bucket)
        assert await blob_store.get(bucket, "k") == b"v"

    async def test_persists_across_instances(self, blob_store: BlobStore, bucket: str, reopen) -> None:
        await blob_store.put(bucket, "photos/1.jpg", b"one")
        other = await reopen()
        assert await other.get(bucket, "photos/1.jpg") == b"one"
        assert await keys(other, bucket) == ["photos/1.jpg"]


# --- list -----------------------------------------------------------------------------------
class TestList:
    # Chosen to catch a walk that sorts by folder instead of by key:
    # '-' < '.' < '/' < '0' in key (UTF-8 byte) order.
    KEYS = ["a", "a-c", "a.txt", "a0", "b/x", "b/y/z", "b0", "c/d/e/f", "é", "z/€"]
    TRICKY = ["p-q", "p.txt", "p/a", "p/b/c", "p0"]

    async def _fill(self, store: BlobStore, bucket: str, keys_: list[str]) -> None:
        for key in reversed(keys_):
            await store.put(bucket, key, key.encode())

    async def test_key_order(self, blob_store: BlobStore, bucket: str) -> None:
        flat = self.KEYS + self.TRICKY
        await self._fill(blob_store, bucket, flat)
        assert await keys(blob_store, bucket) == sorted(flat, key=lambda k: k.encode())

    async def test_infos_carry_sizes(self, blob_store: BlobStore, bucket: str) -> None:
        await blob_store.put(bucket, "one", b"1")
        await blob_store.put(bucket, "three", b"333")
        infos = await blob_store.list(bucket)
        assert [(i.bucket, i.key, i.size) for i in infos] == [(bucket, "one", 1), (bucket, "three", 3)]
        assert all(isinstance(i, ObjectInfo) for i in infos)

    async def test_prefix(self, blob_store: BlobStore, bucket: str) -> None:
        await self._fill(blob_store, bucket, ["photos/daisy/1.jpg", "photos/daisy/2.jpg", "photos/dandelion/1.jpg",
                                              "photos/rose.jpg", "photosx", "other/1.jpg"])
        assert await keys(blob_store, bucket, "photos/") == [
            "photos/daisy/1.jpg", "photos/daisy/2.jpg", "photos/dandelion/1.jpg", "photos/rose.jpg"]
        assert await keys(blob_store, bucket, "photos/da") == [
            "photos/daisy/1.jpg", "photos/daisy/2.jpg", "photos/dandelion/1.jpg"]
        assert await keys(blob_store, bucket, "photos") == [
            "photos/daisy/1.jpg", "photos/daisy/2.jpg", "photos/dandelion/1.jpg", "photos/rose.jpg", "photosx"]
        assert await keys(blob_store, bucket, "photos/rose.jpg") == ["photos/rose.jpg"]
        assert await keys(blob_store, bucket, "nothing/") == []
        assert await keys(blob_store, bucket, "../") == []

    async def test_pagination(self, blob_store: BlobStore, bucket: str) -> None:
        flat = [f"{d}/{i:02d}" for d in ("a", "a-", "b") for i in range(7)] + ["a.top", "b0"]
        await self._fill(blob_store, bucket, flat)
        pages, after = [], ""
        while page := await keys(blob_store, bucket, limit=4, after=after):
            assert len(page) <= 4
            pages.append(page)
            after = page[-1]
        assert [k for page in pages for k in page] == sorted(flat)
        assert all(len(page) == 4 for page in pages[:-1])

    async def test_after_in_the_middle_of_a_folder(self, blob_store: BlobStore, bucket: str) -> None:
        await self._fill(blob_store, bucket, ["a/1", "a/2", "a/3", "b/1"])
        assert await keys(blob_store, bucket, after="a/2") == ["a/3", "b/1"]
        assert await keys(blob_store, bucket, after="a") == ["a/1", "a/2", "a/3", "b/1"]
        assert await keys(blob_store, bucket, after="a/") == ["a/1", "a/2", "a/3", "b/1"]
        assert await keys(blob_store, bucket, after="a/9") == ["b/1"]
        assert await keys(blob_store, bucket, after="zzz") == []
        assert await keys(blob_store, bucket, "a/", after="a/1", limit=1) == ["a/2"]

    async def test_empty_bucket(self, blob_store: BlobStore, bucket: str) -> None:
        assert await blob_store.list(bucket) == []

    async def test_deleted_objects_disappear(self, blob_store: BlobStore, bucket: str) -> None:
        await self._fill(blob_store, bucket, ["x/1", "x/2"])
        await blob_store.delete(bucket, "x/1")
        assert await keys(blob_store, bucket) == ["x/2"]


# --- delete / copy ------------------------------------------------------------------------
class TestDeleteCopy:
    async def test_delete(self, blob_store: BlobStore, bucket: str) -> None:
        await blob_store.put(bucket, "a/b/c", b"x")
        await blob_store.delete(bucket, "a/b/c")
        with pytest.raises(NoSuchKey):
            await blob_store.get(bucket, "a/b/c")
        assert await blob_store.list(bucket) == []

    async def test_delete_missing_is_fine(self, blob_store: BlobStore, bucket: str) -> None:
        await blob_store.delete(bucket, "never/was")
        await blob_store.put(bucket, "dir/file", b"x")
        await blob_store.delete(bucket, "dir")  # a prefix is not an object
        assert await blob_store.get(bucket, "dir/file") == b"x"

    async def test_delete_then_reuse_prefix_as_object(self, blob_store: BlobStore, bucket: str) -> None:
        await blob_store.put(bucket, "a/b/c", b"deep")
        await blob_store.delete(bucket, "a/b/c")
        await blob_store.put(bucket, "a/b", b"now an object")
        await blob_store.put(bucket, "a/x", b"sibling")
        assert await keys(blob_store, bucket) == ["a/b", "a/x"]

    async def test_copy_within_bucket(self, blob_store: BlobStore, bucket: str) -> None:
        await blob_store.put(bucket, "src", b"payload")
        info = await blob_store.copy(bucket, "src", bucket, "dst/copy")
        assert (info.bucket, info.key, info.size, info.sha256) == (bucket, "dst/copy", 7, sha(b"payload"))
        assert await blob_store.get(bucket, "dst/copy") == b"payload"
        assert await blob_store.get(bucket, "src") == b"payload"

    async def test_copy_across_buckets_overwrites(self, blob_store: BlobStore, bucket: str, other_bucket: str) -> None:
        await blob_store.put(bucket, "src", b"new")
        await blob_store.put(other_bucket, "dst", b"old and longer")
        await blob_store.copy(bucket, "src", other_bucket, "dst")
        assert await blob_store.get(other_bucket, "dst") == b"new"

    async def test_copy_onto_itself(self, blob_store: BlobStore, bucket: str) -> None:
        await blob_store.put(bucket, "same", b"content")
        await blob_store.copy(bucket, "same", bucket, "same")
        assert await blob_store.get(bucket, "same") == b"content"

    async def test_copy_missing_source(self, blob_store: BlobStore, bucket: str) -> None:
        with pytest.raises(NoSuchKey):
            await blob_store.copy(bucket, "nope", bucket, "dst")
        assert await blob_store.list(bucket) == []

    async def test_copy_to_missing_bucket(self, blob_store: BlobStore, bucket: str) -> None:
        await blob_store.put(bucket, "src", b"x")
        with pytest.raises(NoSuchBucket):
            await blob_store.copy(bucket, "src", _unique_bucket(), "dst")


# --- stream / read_range ------------------------------------------------------------------
class TestStreamAndRange:
    DATA = bytes(range(256)) * 41  # 10,496 bytes

    async def test_stream(self, blob_store: BlobStore, bucket: str) -> None:
        await blob_store.put(bucket, "big", self.DATA)
        chunks = [chunk async for chunk in blob_store.stream(bucket, "big", chunk_size=1000)]
        assert b"".join(chunks) == self.DATA
        assert all(0 < len(chunk) <= 1000 for chunk in chunks)
        assert await collect(blob_store.stream(bucket, "big")) == self.DATA

    async def test_stream_empty_object(self, blob_store: BlobStore, bucket: str) -> None:
        await blob_store.put(bucket, "empty", b"")
        assert await collect(blob_store.stream(bucket, "empty")) == b""

    async def test_stream_missing(self, blob_store: BlobStore, bucket: str) -> None:
        with pytest.raises(NoSuchKey):
            await collect(blob_store.stream(bucket, "nope"))
        with pytest.raises(NoSuchBucket):
            await collect(blob_store.stream(_unique_bucket(), "nope"))

    @pytest.mark.parametrize(
        "start, length, expected",
        [
            (0, 10, DATA[:10]),
            (100, 50, DATA[100:150]),
            (len(DATA) - 5, 100, DATA[-5:]),  # short at the end
            (len(DATA), 10, b""),  # at the end
            (len(DATA) + 100, 10, b""),  # past the end
            (-10, 10, DATA[-10:]),  # the last 10 bytes
            (-10, 3, DATA[-10:-7]),
            (-len(DATA) - 500, 20, DATA[:20]),  # more than the whole object: from the start
            (5, 0, b""),
        ],
    )
    async def test_read_range(self, blob_store: BlobStore, bucket: str, start: int, length: int, expected: bytes) -> None:
        await blob_store.put(bucket, "obj", self.DATA)
        assert await blob_store.read_range(bucket, "obj", start, length) == expected

    async def test_read_range_missing(self, blob_store: BlobStore, bucket: str) -> None:
        with pytest.raises(NoSuchKey):
            await blob_store.read_range(bucket, "nope", 0, 10)


# --- put_stream -----------------------------------------------------------------------------
class TestPutStream:
    async def test_streams_in(self, blob_store: BlobStore, bucket: str) -> None:
        parts = [os.urandom(n) for n in (1, 1000, 70_000, 0, 5)]
        data = b"".join(parts)
        info = await blob_store.put_stream(bucket, "s/obj", chunks_of(*parts), max_bytes=len(data))
        assert (info.key, info.size, info.sha256) == ("s/obj", len(data), sha(data))
        assert await blob_store.get(bucket, "s/obj") == data

    async def test_many_small_chunks(self, blob_store: BlobStore, bucket: str) -> None:
        parts = [bytes([i % 256]) * 100 for i in range(3000)]  # 300 kB in 100-byte chunks
        info = await blob_store.put_stream(bucket, "small", chunks_of(*parts), max_bytes=10**6)
        assert await blob_store.get(bucket, "small") == b"".join(parts)
        assert info.sha256 == sha(b"".join(parts))

    async def test_over_max_bytes_is_rejected_early(self, blob_store: BlobStore, bucket: str) -> None:
        await blob_store.put(bucket, "k", b"old")
        produced = 0

        async def endless() -> AsyncIterator[bytes]:
            nonlocal produced
            while True:
                produced += 1
                yield b"x" * 1000

        with pytest.raises(Rejected):
            await blob_store.put_stream(bucket, "k", endless(), max_bytes=10_500)
        assert produced <= 12  # stopped right after the limit, did not drain the body
        assert await blob_store.get(bucket, "k") == b"old"
        with pytest.raises(Rejected):
            await blob_store.put_stream(bucket, "new", chunks_of(b"x" * 11), max_bytes=10)
        assert await keys(blob_store, bucket) == ["k"]

    async def test_exactly_max_bytes_is_fine(self, blob_store: BlobStore, bucket: str) -> None:
        info = await blob_store.put_stream(bucket, "k", chunks_of(b"x" * 6, b"y" * 4), max_bytes=10)
        assert info.size == 10

    @pytest.mark.parametrize("asynchronous", [False, True], ids=["sync-accept", "async-accept"])
    async def test_accept_sees_the_hash(self, blob_store: BlobStore, bucket: str, asynchronous: bool) -> None:
        seen: list[str] = []

        def accept_sync(digest: str) -> bool:
            seen.append(digest)
            return True

        async def accept_async(digest: str) -> bool:
            return accept_sync(digest)

        accept = accept_async if asynchronous else accept_sync
        await blob_store.put_stream(bucket, "k", chunks_of(b"ab", b"c"), max_bytes=100, accept=accept)
        assert seen == [sha(b"abc")]
        assert await blob_store.get(bucket, "k") == b"abc"

    @pytest.mark.parametrize("asynchronous", [False, True], ids=["sync-accept", "async-accept"])
    async def test_refused_by_accept_stores_nothing(self, blob_store: BlobStore, bucket: str, asynchronous: bool) -> None:
        await blob_store.put(bucket, "k", b"old")

        async def refuse_async(digest: str) -> bool:
            return False

        accept = refuse_async if asynchronous else (lambda digest: False)
        with pytest.raises(Rejected):
            await blob_store.put_stream(bucket, "k", chunks_of(b"new"), max_bytes=100, accept=accept)
        with pytest.raises(Rejected):
            await blob_store.put_stream(bucket, "fresh", chunks_of(b"new"), max_bytes=100, accept=accept)
        assert await blob_store.get(bucket, "k") == b"old"
        assert await keys(blob_store, bucket) == ["k"]

    async def test_failing_accept_or_body_stores_nothing(self, blob_store: BlobStore, bucket: str) -> None:
        def explode(digest: str) -> bool:
            raise RuntimeError("signature service down")

        with pytest.raises(RuntimeError):
            await blob_store.put_stream(bucket, "k", chunks_of(b"x"), max_bytes=10, accept=explode)

        async def broken_body() -> AsyncIterator[bytes]:
            yield b"partial"
            raise ConnectionResetError("client went away")

        with pytest.raises(ConnectionResetError):
            await blob_store.put_stream(bucket, "k", broken_body(), max_bytes=100)
        assert await blob_store.list(bucket) == []

    async def test_missing_bucket_fails_before_reading_the_body(self, blob_store: BlobStore) -> None:
        read = False

        async def body() -> AsyncIterator[bytes]:
            nonlocal read
            read = True
            yield b"x"

        with pytest.raises(NoSuchBucket):
            await blob_store.put_stream(_unique_bucket(), "k", body(), max_bytes=10)
        assert not read


# --- atomicity ------------------------------------------------------------------------------
class TestAtomicity:
    async def test_readers_see_old_or_new_never_partial(self, blob_store: BlobStore, bucket: str) -> None:
        old, new = b"o" * 3_000_000, b"n" * 2_000_000
        await blob_store.put(bucket, "k", old)
        writes = [asyncio.create_task(blob_store.put(bucket, "k", new if i % 2 else old)) for i in range(6)]
        reads = [asyncio.create_task(blob_store.get(bucket, "k")) for _ in range(30)]
        for seen in await asyncio.gather(*reads):
            assert seen in (old, new)
        await asyncio.gather(*writes)
        assert await blob_store.get(bucket, "k") in (old, new)

    async def test_stream_with_slow_producer_does_not_expose_partial(self, blob_store: BlobStore, bucket: str) -> None:
        await blob_store.put(bucket, "k", b"old")
        first_taken, gate = asyncio.Event(), asyncio.Event()

        async def slow() -> AsyncIterator[bytes]:
            yield b"first half "
            first_taken.set()  # the store took the first half and asks for more: the upload is under way
            await gate.wait()
            yield b"second half"

        task = asyncio.create_task(blob_store.put_stream(bucket, "k", slow(), max_bytes=100))
        await asyncio.wait_for(first_taken.wait(), 30)
        assert await blob_store.get(bucket, "k") == b"old"
        assert await keys(blob_store, bucket) == ["k"]
        gate.set()
        await task
        assert await blob_store.get(bucket, "k") == b"first half second half"


# --- names ----------------------------------------------------------------------------------
BAD_KEYS = [
    "",
    "..",
    "../escape",
    "a/../../b",
    "/abs",
    "a//b",
    "a/",
    "./x",
    "x/./y",
    "a\\b",
    "..\\..\\win",
    "nul\x00byte",
    "new\nline",
    "del\x7f",
    "tab\there",
    "k" * 1025,
    "é" * 513,  # 513 characters, 1026 bytes
]
BAD_BUCKETS = ["AB", "ab", "-ab", "ab-", "a..b", "a_b", "a b", "x" * 64, "../x", ".tmp", "a/b", ""]


def _calls(store: BlobStore, bucket: str, key: str) -> dict[str, Callable[[], Awaitable[object]]]:
    """Every port operation that takes a (bucket, key), ready to run."""
    return {
        "put": lambda: store.put(bucket, key, b"x"),
        "put_stream": lambda: store.put_stream(bucket, key, chunks_of(b"x"), max_bytes=10),
        "get": lambda: store.get(bucket, key),
        "read_range": lambda: store.read_range(bucket, key, 0, 1),
        "stream": lambda: collect(store.stream(bucket, key)),
        "stat": lambda: store.stat(bucket, key),
        "delete": lambda: store.delete(bucket, key),
        "copy-from": lambda: store.copy(bucket, key, "valid-bucket", "k"),
        "copy-to": lambda: store.copy("valid-bucket", "k", bucket, key),
    }


OPERATIONS = list(_calls(None, "", "").keys())  # type: ignore[arg-type]


class TestNames:
    @pytest.mark.parametrize("operation", OPERATIONS)
    @pytest.mark.parametrize("key", BAD_KEYS, ids=repr)
    async def test_invalid_key(self, blob_store: BlobStore, bucket: str, operation: str, key: str) -> None:
        with pytest.raises(InvalidKey):
            await _calls(blob_store, bucket, key)[operation]()
        assert await blob_store.list(bucket) == []

    @pytest.mark.parametrize("operation", OPERATIONS)
    async def test_invalid_key_wins_over_missing_bucket(self, blob_store: BlobStore, operation: str) -> None:
        # The name is judged before anything is looked up.
        with pytest.raises(InvalidKey):
            await _calls(blob_store, _unique_bucket(), "../x")[operation]()

    @pytest.mark.parametrize("name", BAD_BUCKETS, ids=repr)
    async def test_invalid_bucket(self, blob_store: BlobStore, name: str) -> None:
        with pytest.raises(InvalidKey):
            await blob_store.ensure_bucket(name)
        with pytest.raises(InvalidKey):
            await blob_store.list(name)
        for operation, call in _calls(blob_store, name, "k").items():
            with pytest.raises(InvalidKey):
                await call()

    async def test_invalid_key_message_says_why(self, blob_store: BlobStore, bucket: str) -> None:
        with pytest.raises(InvalidKey, match="'..'"):
            await blob_store.put(bucket, "a/../b", b"x")

    @pytest.mark.parametrize("operation", [op for op in OPERATIONS if op != "copy-from"])
    async def test_missing_bucket(self, blob_store: BlobStore, operation: str) -> None:
        with pytest.raises(NoSuchBucket):
            await _calls(blob_store, _unique_bucket(), "k")[operation]()

    async def test_list_missing_bucket(self, blob_store: BlobStore) -> None:
        with pytest.raises(NoSuchBucket):
            await blob_store.list(_unique_bucket())

    async def test_copy_from_missing_bucket(self, blob_store: BlobStore, bucket: str) -> None:
        with pytest.raises(NoSuchBucket):
            await blob_store.copy(_unique_bucket(), "k", bucket, "k")


# --- S3 adapter only ------------------------------------------------------------------------
S3_SERVERS = ["seaweedfs_server", "moto_server"] + (["minio_server"] if MINIO_RUNS else [])


@pytest.fixture(params=S3_SERVERS, ids=lambda name: name.removesuffix("_server"))
def s3_server(request: pytest.FixtureRequest) -> S3Endpoint:
    return request.getfixturevalue(request.param)


@pytest.fixture
async def s3(s3_server: S3Endpoint) -> AsyncIterator[S3BlobStore]:
    store = S3BlobStore(s3_server.endpoint, s3_server.access_key, s3_server.secret_key)
    yield store
    await store.close()


@pytest.fixture
async def s3_bucket(s3: S3BlobStore) -> str:
    name = _unique_bucket()
    await s3.ensure_bucket(name)
    return name


def _raw_put(server: S3Endpoint, bucket: str, key: str, data: bytes, **metadata: str) -> None:
    """A write by another S3 client, which knows nothing of our metadata."""
    server.client().put_object(bucket, key, io.BytesIO(data), len(data), metadata=metadata or None)


class TestS3BlobStore:
    async def test_multipart_stream_round_trips_with_its_hash(self, s3: S3BlobStore, s3_bucket: str) -> None:
        data = os.urandom(6 * 1024 * 1024 + 7)  # over the 5 MiB part size: a multipart upload
        parts = [data[i : i + 100_000] for i in range(0, len(data), 100_000)]
        info = await s3.put_stream(s3_bucket, "big", chunks_of(*parts), max_bytes=len(data))
        assert (info.size, info.sha256) == (len(data), sha(data))
        assert await s3.get(s3_bucket, "big") == data
        assert (await s3.stat(s3_bucket, "big")).sha256 == sha(data)
        copied = await s3.copy(s3_bucket, "big", s3_bucket, "big-copy")
        assert (copied.size, copied.sha256) == (len(data), sha(data))
        assert await s3.read_range(s3_bucket, "big", -10, 4) == data[-10:-6]

    async def test_objects_written_by_other_clients(self, s3: S3BlobStore, s3_server: S3Endpoint, s3_bucket: str) -> None:
        _raw_put(s3_server, s3_bucket, "foreign", b"hello")
        _raw_put(s3_server, s3_bucket, "forged", b"hello", sha256="not a hash")
        assert (await s3.stat(s3_bucket, "foreign")).sha256 is None  # stat may not know it
        assert (await s3.stat(s3_bucket, "forged")).sha256 is None
        copied = await s3.copy(s3_bucket, "foreign", s3_bucket, "copy")  # a write must know it
        assert copied.sha256 == sha(b"hello")

    async def test_streams_stopped_early_do_not_poison_the_connection_pool(self, s3: S3BlobStore, s3_bucket: str) -> None:
        data = os.urandom(200_000)
        await s3.put(s3_bucket, "k", data)
        for _ in range(40):  # more than the pool's connections
            chunks = s3.stream(s3_bucket, "k", chunk_size=1000)
            assert await chunks.__anext__() == data[:1000]
            await chunks.aclose()
        assert await s3.get(s3_bucket, "k") == data
        assert await s3.read_range(s3_bucket, "k", 10, 5) == data[10:15]

    async def test_ensure_bucket_races_with_itself(self, s3: S3BlobStore) -> None:
        name = _unique_bucket()
        await asyncio.gather(*(s3.ensure_bucket(name) for _ in range(8)))
        assert await s3.list(name) == []

    async def test_names_the_sdk_refuses_are_invalid(self, s3: S3BlobStore, s3_bucket: str) -> None:
        with pytest.raises(InvalidKey, match="blank"):
            await s3.put(s3_bucket, "   ", b"x")
        for name in ("a.-b", "192.168.1.1"):
            with pytest.raises(InvalidKey):
                await s3.ensure_bucket(name)


async def test_an_unreachable_s3_store_is_unavailable_and_says_so_at_once() -> None:
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        endpoint = f"127.0.0.1:{closed.getsockname()[1]}"
    store = S3BlobStore(endpoint, "key", "secret")
    try:
        for call in (lambda: store.get("bkt", "k"), lambda: store.put("bkt", "k", b"x"), lambda: store.list("bkt")):
            started = time.monotonic()
            with pytest.raises(Unavailable, match="could not be reached"):
                await call()
            assert time.monotonic() - started < 3  # two quick connection retries (0.4 s), not a busy store's five (6 s)
    finally:
        await store.close()


# --- local adapter only ---------------------------------------------------------------------
@pytest.fixture
async def local(tmp_path: Path) -> AsyncIterator[LocalBlobStore]:
    store = LocalBlobStore(tmp_path / "blobs")
    await store.start()
    await store.ensure_bucket("bkt")
    yield store
    await store.close()


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


class TestLocalBlobStore:
    async def test_layout_is_browsable(self, local: LocalBlobStore) -> None:
        await local.put("bkt", "daisy/1.jpg", b"jpeg bytes")
        assert (local.root / "bkt" / "daisy" / "1.jpg").read_bytes() == b"jpeg bytes"

    async def test_files_dropped_in_by_hand_are_objects(self, local: LocalBlobStore) -> None:
        (local.root / "bkt" / "by-hand").mkdir()
        (local.root / "bkt" / "by-hand" / "img.png").write_bytes(b"png")
        assert await keys(local, "bkt") == ["by-hand/img.png"]
        assert await local.get("bkt", "by-hand/img.png") == b"png"

    async def test_invalid_names_touch_nothing(self, local: LocalBlobStore) -> None:
        before = _tree(local.root)
        for key in BAD_KEYS:
            for call in _calls(local, "bkt", key).values():
                with pytest.raises(InvalidKey):
                    await call()
        for name in BAD_BUCKETS:
            with pytest.raises(InvalidKey):
                await local.ensure_bucket(name)
        assert _tree(local.root) == before
        assert not (local.root.parent / "escape").exists()

    async def test_object_and_folder_conflict(self, local: LocalBlobStore) -> None:
        await local.put("bkt", "a", b"file")
        with pytest.raises(InvalidKey, match="conflicts"):
            await local.put("bkt", "a/b", b"x")
        with pytest.raises(InvalidKey, match="conflicts"):
            await local.put_stream("bkt", "a/b/c", chunks_of(b"x"), max_bytes=10)
        await local.put("bkt", "d/e", b"file")
        with pytest.raises(InvalidKey, match="conflicts"):
            await local.put("bkt", "d", b"x")
        with pytest.raises(InvalidKey, match="conflicts"):
            await local.copy("bkt", "a", "bkt", "d")
        assert await keys(local, "bkt") == ["a", "d/e"]
        assert os.listdir(local.root / TMP_DIR) == []

    async def test_empty_folder_made_by_hand_does_not_block_a_key(self, local: LocalBlobStore) -> None:
        (local.root / "bkt" / "k").mkdir()
        await local.put("bkt", "k", b"x")
        assert await local.get("bkt", "k") == b"x"

    async def test_segment_longer_than_a_file_name(self, local: LocalBlobStore) -> None:
        with pytest.raises(InvalidKey, match="255"):
            await local.put("bkt", "x" * 256, b"x")

    async def test_delete_prunes_empty_folders_up_to_the_bucket(self, local: LocalBlobStore) -> None:
        await local.put("bkt", "a/b/c/d", b"x")
        await local.put("bkt", "a/keep", b"x")
        await local.delete("bkt", "a/b/c/d")
        assert _tree(local.root / "bkt") == ["a", "a/keep"]
        await local.delete("bkt", "a/keep")
        assert (local.root / "bkt").is_dir() and _tree(local.root / "bkt") == []

    async def test_symlinked_folder_leaving_the_bucket(self, local: LocalBlobStore, tmp_path: Path) -> None:
        outside = tmp_path / "outside"
        outside.mkdir()
        (outside / "secret").write_bytes(b"secret")
        (local.root / "bkt" / "link").symlink_to(outside)
        await local.ensure_bucket("valid-bucket")  # the other end of the copies
        await local.put("valid-bucket", "k", b"x")
        for call in _calls(local, "bkt", "link/secret").values():
            with pytest.raises(InvalidKey, match="symbolic link"):
                await call()
        with pytest.raises(InvalidKey):
            await local.put("bkt", "link/new", b"x")
        assert sorted(os.listdir(outside)) == ["secret"]
        assert (outside / "secret").read_bytes() == b"secret"
        assert await keys(local, "bkt") == []
        assert await keys(local, "bkt", "link/") == []
        assert await local.stat_many("bkt", ["link/secret"]) == {}
        assert await keys(local, "valid-bucket") == ["k"]

    async def test_symlinked_file_leaving_the_bucket(self, local: LocalBlobStore, tmp_path: Path) -> None:
        secret = tmp_path / "secret.txt"
        secret.write_bytes(b"secret")
        (local.root / "bkt" / "leak").symlink_to(secret)
        with pytest.raises(InvalidKey):
            await local.get("bkt", "leak")
        with pytest.raises(InvalidKey):
            await local.read_range("bkt", "leak", 0, 10)
        assert await keys(local, "bkt") == []
        assert await local.stat_many("bkt", ["leak"]) == {}
        await local.put("bkt", "leak", b"replaces the link, not the target")
        assert secret.read_bytes() == b"secret"
        assert await local.get("bkt", "leak") == b"replaces the link, not the target"

    async def test_symlinked_bucket_leaving_the_root(self, local: LocalBlobStore, tmp_path: Path) -> None:
        outside = tmp_path / "elsewhere"
        outside.mkdir()
        (local.root / "evil").symlink_to(outside)
        with pytest.raises(InvalidKey):
            await local.put("evil", "k", b"x")
        with pytest.raises(InvalidKey):
            await local.list("evil")
        assert os.listdir(outside) == []

    async def test_symlink_inside_the_bucket_is_followed(self, local: LocalBlobStore) -> None:
        await local.put("bkt", "real/file", b"data")
        (local.root / "bkt" / "alias").symlink_to(local.root / "bkt" / "real" / "file")
        assert await local.get("bkt", "alias") == b"data"
        assert await keys(local, "bkt") == ["alias", "real/file"]
        assert {k: v.size for k, v in (await local.stat_many("bkt", ["alias", "real/file"])).items()} == {"alias": 4, "real/file": 4}

    async def test_unaddressable_file_names_are_not_listed(self, local: LocalBlobStore) -> None:
        (local.root / "bkt" / "back\\slash").write_bytes(b"x")
        (local.root / "bkt" / "ok").write_bytes(b"x")
        assert await keys(local, "bkt") == ["ok"]

    async def test_a_fifo_is_not_an_object_and_does_not_hang(self, local: LocalBlobStore) -> None:
        os.mkfifo(local.root / "bkt" / "fifo")
        with pytest.raises(NoSuchKey):
            await asyncio.wait_for(local.get("bkt", "fifo"), 5)
        assert await keys(local, "bkt") == []

    async def test_no_temp_files_left_or_listed(self, local: LocalBlobStore) -> None:
        await local.put("bkt", "a", b"x")
        await local.copy("bkt", "a", "bkt", "b")
        with pytest.raises(Rejected):
            await local.put_stream("bkt", "c", chunks_of(b"x" * 20), max_bytes=10)
        with pytest.raises(Rejected):
            await local.put_stream("bkt", "c", chunks_of(b"x"), max_bytes=10, accept=lambda d: False)
        assert os.listdir(local.root / TMP_DIR) == []
        assert await keys(local, "bkt") == ["a", "b"]

    async def test_cancelled_upload_leaves_nothing(self, local: LocalBlobStore) -> None:
        first_taken = asyncio.Event()

        async def hang() -> AsyncIterator[bytes]:
            yield b"x" * 100
            first_taken.set()  # the store took the first chunk and asks for more
            await asyncio.Event().wait()

        task = asyncio.create_task(local.put_stream("bkt", "k", hang(), max_bytes=1000))
        await asyncio.wait_for(first_taken.wait(), 30)
        assert len(os.listdir(local.root / TMP_DIR)) == 1  # cancelled mid-upload: its temporary file is there
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert os.listdir(local.root / TMP_DIR) == []
        assert await keys(local, "bkt") == []

    async def test_start_removes_stale_temp_files_only(self, tmp_path: Path) -> None:
        store = LocalBlobStore(tmp_path / "blobs")
        await store.start()
        stale = tmp_path / "blobs" / TMP_DIR / "stale.part"
        fresh = tmp_path / "blobs" / TMP_DIR / "fresh.part"
        stale.write_bytes(b"half")
        fresh.write_bytes(b"in flight elsewhere")
        an_hour_ago = time.time() - 3700
        os.utime(stale, (an_hour_ago, an_hour_ago))
        await LocalBlobStore(tmp_path / "blobs").start()
        assert os.listdir(tmp_path / "blobs" / TMP_DIR) == ["fresh.part"]
        await LocalBlobStore(tmp_path / "blobs", stale_temp_seconds=0).start()
        assert os.listdir(tmp_path / "blobs" / TMP_DIR) == []

    async def test_kill_9_mid_write_leaves_only_a_temp_file(self, local: LocalBlobStore) -> None:
        await local.put("bkt", "k", b"old")
        script = textwrap.dedent(
            f"""
            import asyncio, sys
            from pathlib import Path
            from customlabels.adapters.local_blobs import LocalBlobStore

            async def body():
                yield b"new" * 400_000  # 1.2 MB, written to the temp file
                print("writing", flush=True)
                await asyncio.Event().wait()

            async def main():
                store = LocalBlobStore(Path({str(local.root)!r}))
                await store.start()
                await store.put_stream("bkt", "k", body(), max_bytes=10**7)

            asyncio.run(main())
            """
        )
        child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
        try:
            assert child.stdout is not None
            assert await asyncio.to_thread(child.stdout.readline) == b"writing\n"
            deadline = time.monotonic() + 30  # until the first 1.2 MB are in its temporary file
            while sum(f.stat().st_size for f in (local.root / TMP_DIR).iterdir()) < 1_200_000:
                assert time.monotonic() < deadline, "the child never wrote its first chunk"
                await asyncio.sleep(0.01)
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
        assert await local.get("bkt", "k") == b"old"
        assert await keys(local, "bkt") == ["k"]
        leftovers = os.listdir(local.root / TMP_DIR)
        assert len(leftovers) == 1
        await LocalBlobStore(local.root, stale_temp_seconds=0).start()
        assert os.listdir(local.root / TMP_DIR) == []
        assert await local.get("bkt", "k") == b"old"

    async def test_stream_reads_one_version_across_a_replace(self, local: LocalBlobStore) -> None:
        await local.put("bkt", "k", b"o" * 10_000)
        chunks = local.stream("bkt", "k", chunk_size=1000)
        first = await chunks.__anext__()
        await local.put("bkt", "k", b"n" * 5_000)
        rest = await collect(chunks)
        assert first + rest == b"o" * 10_000
