"""Blob store on any S3 API (MinIO, SeaweedFS, AWS S3), through the minio SDK.

The SDK is synchronous, so every call runs in one small thread pool owned by
the store (never a thread per call); the HTTP connection pool is sized to
match. Names are checked by the port (``check_bucket``/``check_key``) before
any request, then by the SDK's own rules, so a bad name is ``InvalidKey``
whatever the server would have said.

How the port maps onto S3:

- ``put`` is one PutObject (or a multipart upload above 5 MiB): S3 makes an
  object visible only once complete, so readers see the old or the new one.
- ``put_stream`` spools the body to a temporary file (1 MiB in memory at most,
  then disk), hashing as it goes, so ``max_bytes`` and ``accept`` are judged
  before a single byte reaches the server: a refused upload stores nothing
  and leaves no incomplete multipart upload behind.
- The SHA-256 of what we write is kept as user metadata (``x-amz-meta-sha256``)
  so ``stat`` and ``copy`` can report it. Anyone with write access to the
  bucket can set that header, so treat it as information, not proof.
- A HEAD request has no error body: a 404 does not say whether the key or the
  bucket is missing. Where the port must tell them apart, a second request
  (HEAD bucket) decides, only on that failure path.
- ``list`` relies on S3's own order (UTF-8 key order, start-after as a key),
  which AWS S3 and MinIO keep. SeaweedFS lists in folder-walk order instead;
  listing folder by folder to correct that would cost a request per folder on
  every server, so the adapter does not.
- Unlike the local store, AWS S3 and SeaweedFS let ``a`` and ``a/b`` both be
  objects (MinIO refuses: ``InvalidKey``, as locally). Keys the port accepts
  but the SDK refuses (all-whitespace keys, bucket names such as ``a.-b`` or
  ``1.2.3.4``) are ``InvalidKey`` too.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import hashlib
import inspect
import io
import os
import re
import tempfile
import threading
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import certifi
import urllib3
from minio import Minio
from minio.commonconfig import CopySource
from minio.datatypes import Object
from minio.error import MinioException, S3Error, ServerError
from minio.helpers import check_bucket_name, check_object_name
from minio.time import from_http_header

from customlabels.ports.blobs import (
    BlobStoreError,
    WRITE_BATCH,
    Chunks,
    InvalidKey,
    NoSuchBucket,
    NoSuchKey,
    ObjectInfo,
    Rejected,
    Unavailable,
    check_bucket,
    check_key,
    receive,
)

T = TypeVar("T")

DEFAULT_WORKERS = 16
STAT_CONCURRENCY = 8  # stat_many leaves half the pool to other callers
SPOOL_IN_MEMORY = 1 << 20  # put_stream keeps up to this much in memory, then spills to disk
_SHA256_HEADER = "x-amz-meta-sha256"  # the SDK sends metadata key "sha256" as this header
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_COPY_ATTEMPTS = 3


class S3BlobStore:
    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        *,
        secure: bool = False,
        region: str = "us-east-1",
        max_workers: int = DEFAULT_WORKERS,
        spool_dir: Path | None = None,
    ) -> None:
        """``endpoint`` is ``host:port``; a URL (``https://host:port``) also works,
        its scheme then deciding ``secure``. Giving ``region`` saves the SDK a
        GetBucketLocation request per bucket. ``spool_dir``: where ``put_stream``
        spills bodies over 1 MiB (default: the system's temporary folder)."""
        if "://" in endpoint:
            url = urlsplit(endpoint)
            endpoint, secure = url.netloc, url.scheme == "https"
        self._spool_dir = spool_dir
        self._http = _http_client(max_workers)
        self._client = Minio(
            endpoint,
            access_key=access_key,
            secret_key=secret_key,
            secure=secure,
            region=region,
            http_client=self._http,
        )
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers, thread_name_prefix="s3-blobs")

    # --- lifecycle ----------------------------------------------------------
    async def start(self) -> None:
        """Nothing to do: connections are opened on first use."""

    async def close(self) -> None:
        # Let calls in flight finish (an upload cut off halfway helps no one).
        await asyncio.to_thread(self._executor.shutdown, wait=True)
        self._http.clear()  # close the idle connections

    # --- buckets --------------------------------------------------------------
    async def ensure_bucket(self, bucket: str) -> None:
        _check_bucket(bucket)
        await self._run(self._ensure_bucket_sync, bucket)

    def _ensure_bucket_sync(self, bucket: str) -> None:
        if self._client.bucket_exists(bucket):
            return
        try:
            self._client.make_bucket(bucket)
        except S3Error as exc:
            # Another process created it between our HEAD and PUT: fine. Some
            # servers say BucketAlreadyExists even to the owner, so look again.
            if exc.code == "BucketAlreadyOwnedByYou":
                return
            if exc.code == "BucketAlreadyExists" and self._client.bucket_exists(bucket):
                return
            raise

    def _require_bucket(self, bucket: str) -> None:
        if not self._client.bucket_exists(bucket):
            raise NoSuchBucket(f"bucket {bucket!r} does not exist")

    # --- writes ---------------------------------------------------------------
    async def put(self, bucket: str, key: str, data: bytes) -> ObjectInfo:
        _check(bucket, key)
        return await self._run(self._put_sync, bucket, key, bytes(data))

    def _put_sync(self, bucket: str, key: str, data: bytes) -> ObjectInfo:
        digest = hashlib.sha256(data).hexdigest()
        return self._upload(bucket, key, io.BytesIO(data), len(data), digest)

    async def put_stream(
        self,
        bucket: str,
        key: str,
        chunks: Chunks,
        *,
        max_bytes: int,
        accept: Callable[[str], Awaitable[bool] | bool] | None = None,
    ) -> ObjectInfo:
        _check(bucket, key)
        # Refuse a missing bucket before reading (and spooling) the body.
        await self._run(self._require_bucket, bucket)
        spool = _Spool(self._spool_dir)
        handed_over = False
        try:
            await receive(chunks, max_bytes, lambda block: self._run(spool.write, block))
            if accept is not None and not await _call_accept(accept, spool.sha256):
                raise Rejected(f"object {bucket}/{key} was refused after upload; nothing was stored")
            # From here the upload thread owns the spool and closes it when done,
            # even if we are cancelled: it may still be reading it.
            future = self._executor.submit(self._upload_spool, bucket, key, spool)
            future.add_done_callback(lambda _: spool.close())
            handed_over = True
            return await _translated(asyncio.wrap_future(future))
        finally:
            if not handed_over:
                spool.close()  # synchronous on purpose, so it runs on cancellation too

    def _upload_spool(self, bucket: str, key: str, spool: _Spool) -> ObjectInfo:
        return self._upload(bucket, key, spool.rewound(), spool.size, spool.sha256)

    def _upload(self, bucket: str, key: str, data: io.IOBase, size: int, digest: str) -> ObjectInfo:
        # One PutObject up to 5 MiB, a multipart upload above (the SDK aborts it
        # on failure). Parts go one at a time: the SDK would otherwise start
        # threads of its own per upload, outside our pool.
        result = self._client.put_object(
            bucket, key, data, size, metadata={"sha256": digest}, num_parallel_uploads=1
        )
        return ObjectInfo(bucket, key, size, _response_time(result.http_headers), digest)

    async def copy(self, src_bucket: str, src_key: str, dst_bucket: str, dst_key: str) -> ObjectInfo:
        _check(src_bucket, src_key)
        _check(dst_bucket, dst_key)
        return await self._run(self._copy_sync, src_bucket, src_key, dst_bucket, dst_key)

    def _copy_sync(self, src_bucket: str, src_key: str, dst_bucket: str, dst_key: str) -> ObjectInfo:
        for attempt in range(_COPY_ATTEMPTS):
            source, etag = self._head(src_bucket, src_key)
            if (src_bucket, src_key) == (dst_bucket, dst_key):
                # S3 refuses a copy onto itself that changes nothing; the result
                # is the object as it is.
                return self._with_sha256(source)
            # Checked first because SeaweedFS answers a copy into a missing
            # bucket with a 500 (retried, then an opaque error), not NoSuchBucket.
            self._require_bucket(dst_bucket)
            try:
                # if-match: copy exactly the version we just stat'ed, so its size
                # and hash describe what was copied.
                result = self._client.copy_object(
                    dst_bucket,
                    dst_key,
                    CopySource(src_bucket, src_key, match_etag=etag),
                    # Over 5 GiB the SDK composes parts, which does not carry the
                    # source's metadata over: give the hash explicitly.
                    metadata={"sha256": source.sha256} if source.sha256 else None,
                )
            except S3Error as exc:
                if exc.code == "PreconditionFailed" and attempt < _COPY_ATTEMPTS - 1:
                    continue  # the source was replaced meanwhile: copy the new one
                raise
            info = ObjectInfo(dst_bucket, dst_key, source.size, _aware(result.last_modified), source.sha256)
            return self._with_sha256(info)
        raise AssertionError("unreachable")

    def _with_sha256(self, info: ObjectInfo) -> ObjectInfo:
        """``info`` with its hash; an object written by another S3 client has no
        hash in its metadata, and a write must report one: read it back."""
        sha256 = info.sha256 or self._hash_object(info.bucket, info.key)
        return ObjectInfo(info.bucket, info.key, info.size, info.modified, sha256)

    def _hash_object(self, bucket: str, key: str) -> str:
        digest = hashlib.sha256()
        response = self._client.get_object(bucket, key)
        try:
            for block in response.stream(WRITE_BATCH):
                digest.update(block)
        finally:
            _release(response)
        return digest.hexdigest()

    async def delete(self, bucket: str, key: str) -> None:
        _check(bucket, key)
        # S3 answers 204 for a missing key, NoSuchBucket for a missing bucket.
        await self._run(self._client.remove_object, bucket, key)

    # --- reads ----------------------------------------------------------------
    async def get(self, bucket: str, key: str) -> bytes:
        _check(bucket, key)
        return await self._run(self._get_sync, bucket, key)

    def _get_sync(self, bucket: str, key: str) -> bytes:
        response = self._client.get_object(bucket, key)
        try:
            return response.read()
        finally:
            _release(response)

    async def read_range(self, bucket: str, key: str, start: int, length: int) -> bytes:
        _check(bucket, key)
        if length < 0:
            raise ValueError(f"length must be >= 0, not {length}")
        return await self._run(self._read_range_sync, bucket, key, start, length)

    def _read_range_sync(self, bucket: str, key: str, start: int, length: int) -> bytes:
        if length == 0:
            self._stat_sync(bucket, key)  # still NoSuchKey for a missing object
            return b""
        # A negative start is a suffix range ("the last N bytes"): one request,
        # no stat, and the server clamps N to the object's size.
        wanted = f"bytes={start}-{start + length - 1}" if start >= 0 else f"bytes={start}"
        try:
            response = self._client.get_object(bucket, key, request_headers={"Range": wanted})
        except S3Error as exc:
            if exc.code == "InvalidRange":  # starts at or past the end (or the object is empty)
                return b""
            raise
        try:
            if response.status == 206:
                # A suffix range may hold more than `length` bytes: read only those.
                return _read_at_most(response, length)
            # 200: the server ignored the Range header and sent it all.
            data = response.read()
            begin = start if start >= 0 else max(len(data) + start, 0)
            return data[begin : begin + length]
        finally:
            _release(response)

    def stream(self, bucket: str, key: str, chunk_size: int = 1 << 20) -> Chunks:
        # A plain function so a bad name fails at the call; the request itself
        # is made on the first iteration.
        _check(bucket, key)
        if chunk_size <= 0:
            raise ValueError(f"chunk_size must be > 0, not {chunk_size}")
        return self._stream(bucket, key, chunk_size)

    async def _stream(self, bucket: str, key: str, chunk_size: int) -> Chunks:
        # One GET for the whole object, so the stream reads one version even if
        # the key is replaced meanwhile; each chunk is read in a worker thread.
        response = await self._run(self._client.get_object, bucket, key)
        try:
            chunks = response.stream(chunk_size)
            while chunk := await self._run(next, chunks, b""):
                yield chunk
        finally:
            _release(response)  # also when the reader stops early: drop the connection

    async def stat(self, bucket: str, key: str) -> ObjectInfo:
        _check(bucket, key)
        return await self._run(self._stat_sync, bucket, key)

    def _stat_sync(self, bucket: str, key: str) -> ObjectInfo:
        return self._head(bucket, key)[0]

    def _head(self, bucket: str, key: str) -> tuple[ObjectInfo, str | None]:
        """The object's info and ETag (which a copy needs)."""
        try:
            obj = self._client.stat_object(bucket, key)
        except S3Error as exc:
            if exc.code == "NoSuchKey":
                self._require_bucket(bucket)  # a HEAD's 404 does not say which is missing
            raise
        return _info(bucket, key, obj), obj.etag

    def _stat_or_none(self, bucket: str, key: str) -> ObjectInfo | None:
        try:
            return _info(bucket, key, self._client.stat_object(bucket, key))
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchBucket"):
                return None
            raise

    async def stat_many(self, bucket: str, keys: Sequence[str]) -> dict[str, ObjectInfo]:
        _check_bucket(bucket)
        for key in keys:
            _check_key(key)
        if not keys or not await self._run(self._client.bucket_exists, bucket):
            return {}
        # S3 has no batch HEAD: one request per key, a few at a time.
        limit = asyncio.Semaphore(STAT_CONCURRENCY)

        async def one(key: str) -> ObjectInfo | None:
            async with limit:
                return await self._run(self._stat_or_none, bucket, key)

        infos = await asyncio.gather(*(one(key) for key in keys))
        return {key: info for key, info in zip(keys, infos) if info is not None}

    async def list(self, bucket: str, prefix: str = "", *, limit: int = 1000, after: str = "") -> list[ObjectInfo]:
        _check_bucket(bucket)
        return await self._run(self._list_sync, bucket, prefix, limit, after)

    def _list_sync(self, bucket: str, prefix: str, limit: int, after: str) -> list[ObjectInfo]:
        if limit <= 0:
            self._require_bucket(bucket)
            return []
        # S3 lists in UTF-8 byte order, the port's key order, and start-after
        # skips everything up to `after` on the server. (SeaweedFS does not: it
        # lists in folder-walk order; see the contract tests.) The SDK fetches
        # pages of up to 1000 keys; we stop reading pages once we have `limit`.
        listing = self._client.list_objects(bucket, prefix=prefix or None, recursive=True, start_after=after or None)
        found: list[ObjectInfo] = []
        for obj in listing:
            if obj.is_dir or not _addressable(obj.object_name):
                continue  # folder markers and keys the port cannot name: not objects
            found.append(ObjectInfo(bucket, obj.object_name, obj.size or 0, _aware(obj.last_modified)))
            if len(found) >= limit:
                break
        return found

    # --- plumbing -------------------------------------------------------------
    async def _run(self, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
        """``fn`` in the store's thread pool, its SDK errors as the port's."""
        loop = asyncio.get_running_loop()
        return await _translated(loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs)))


class _Spool:
    """A ``put_stream`` body on its way in: in memory up to 1 MiB, then in an
    unnamed temporary file (nothing to clean up even after a kill -9), hashed as
    it is written. The lock keeps a close (a cancelled upload) from landing in
    the middle of a write running in a worker thread."""

    def __init__(self, spool_dir: Path | None) -> None:
        self._file = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY, dir=spool_dir)  # noqa: SIM115 - closed by close()
        self._hash = hashlib.sha256()
        self._lock = threading.Lock()
        self.size = 0

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def write(self, data: bytes) -> None:
        with self._lock:
            self._file.write(data)
            self._hash.update(data)
            self.size += len(data)

    def rewound(self) -> io.IOBase:
        self._file.seek(0)
        return self._file  # type: ignore[return-value]

    def close(self) -> None:
        with self._lock:
            self._file.close()


# --- helpers ------------------------------------------------------------------
def _check_bucket(bucket: str) -> None:
    check_bucket(bucket)
    try:
        check_bucket_name(bucket, strict=True)  # what the SDK (and S3) will insist on
    except ValueError as exc:
        raise InvalidKey(f"bucket name {bucket!r} is not accepted by S3: {exc}") from None


def _check_key(key: str) -> None:
    check_key(key)
    try:
        check_object_name(key)
    except ValueError:
        raise InvalidKey(f"object key {key!r} is not accepted by S3: it is blank") from None


def _check(bucket: str, key: str) -> None:
    _check_bucket(bucket)
    _check_key(key)


def _info(bucket: str, key: str, obj: Object) -> ObjectInfo:
    """ObjectInfo from a HEAD, with the hash we stored as metadata if any."""
    sha256 = (obj.metadata or {}).get(_SHA256_HEADER)
    if sha256 is not None and not _HEX64.match(sha256):
        sha256 = None  # set by someone else, and not a hash: ignore it
    return ObjectInfo(bucket, key, obj.size or 0, _aware(obj.last_modified), sha256)


def _addressable(key: str) -> bool:
    try:
        _check_key(key)
    except InvalidKey:
        return False
    return True


async def _translated(future: Awaitable[T]) -> T:
    """Await ``future``, turning SDK and transport errors into the port's."""
    try:
        return await future
    except S3Error as exc:
        raise _port_error(exc) from exc
    except ServerError as exc:  # a 5xx without an S3 error document
        raise Unavailable(f"the S3 store answered {exc.status_code}: {exc}") from exc
    except urllib3.exceptions.HTTPError as exc:  # unreachable, timed out, or 5xx after the client's retries
        raise Unavailable(f"the S3 store could not be reached: {exc}") from exc
    except MinioException as exc:
        raise BlobStoreError(f"S3 request failed: {exc}") from exc


def _port_error(exc: S3Error) -> BlobStoreError:
    where = "/".join(part for part in (exc.bucket_name, exc.object_name) if part)
    if exc.response is not None and exc.response.status >= 500:  # e.g. SeaweedFS "No writable volumes", MinIO's 507
        return Unavailable(f"the S3 store answered {exc.response.status} {exc.code} on {where or 'the service'}: {exc.message}")
    if exc.code == "NoSuchBucket":
        return NoSuchBucket(f"bucket {exc.bucket_name!r} does not exist")
    if exc.code == "NoSuchKey":
        return NoSuchKey(f"object {where} does not exist")
    if exc.code in ("InvalidBucketName", "KeyTooLongError", "InvalidObjectName"):
        return InvalidKey(f"{where}: {exc.message}")
    if exc.code in ("XMinioParentIsObject", "XMinioObjectExistsAsDirectory"):
        # MinIO keeps objects as folders, so like the local store it cannot
        # hold both ``a`` and ``a/b``.
        return InvalidKey(f"object key {exc.object_name!r} conflicts with another object: {exc.message}")
    return BlobStoreError(f"S3 error {exc.code} on {where or 'the service'}: {exc.message}")


async def _call_accept(accept: Callable[[str], Awaitable[bool] | bool], sha256: str) -> bool:
    verdict = accept(sha256)
    if inspect.isawaitable(verdict):
        verdict = await verdict
    return bool(verdict)


def _http_client(max_workers: int) -> urllib3.PoolManager:
    """The SDK's default client, with one connection per worker thread (its
    default of 10 would make threads open and drop extra connections),
    timeouts that notice a dead server in seconds, not the SDK's 5 minutes,
    and retries that give up on an unreachable one sooner than on a busy one."""
    return urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=10, read=120),
        maxsize=max_workers,
        cert_reqs="CERT_REQUIRED",
        ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
        # A busy store (5xx) gets five tries; a refused connection two: a store that is down says so in
        # well under a second (ServiceUnavailable), and the retrying is left to the caller (boto3 retries
        # 503s, event handlers wait out transient failures) rather than done twice.
        retries=urllib3.Retry(total=5, connect=2, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
    )


def _read_at_most(response: urllib3.BaseHTTPResponse, size: int) -> bytes:
    parts: list[bytes] = []
    while size > 0 and (block := response.read(size)):
        parts.append(block)
        size -= len(block)
    return b"".join(parts)


def _release(response: urllib3.BaseHTTPResponse) -> None:
    # A body read to its end has already handed its connection back to the pool
    # (for reuse), and then close() touches nothing. A body not read to its end
    # (a reader that stopped early) must not go back with its leftovers: close()
    # drops that connection, release_conn() frees its slot.
    response.close()
    response.release_conn()


def _response_time(headers: object) -> datetime:
    """When the server answered a write, by its own clock: PutObject does not
    return Last-Modified, and its Date header is the closest (same second)."""
    value = headers.get("date") if headers is not None else None  # type: ignore[attr-defined]
    if value:
        try:
            return from_http_header(value)
        except ValueError:
            pass
    return datetime.now(UTC)


def _aware(moment: datetime | None) -> datetime:
    if moment is None:
        return datetime.now(UTC)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)

