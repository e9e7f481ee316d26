"""Blob store on a local folder, for embedded mode.

Layout: ``root/<bucket>/<key>``, one plain file per object, so users can browse
their images with any file manager. Writes go to a temporary file in
``root/.tmp`` (same filesystem, so the final ``os.replace`` is atomic), are
fsynced, renamed into place and the folder fsynced: a reader sees the old
object or the new one, never a partial one, and a crash mid-write leaves at
most a temporary file, removed by the next ``start()``. Bucket names never
start with a dot, so ``.tmp`` can never be a bucket.

Keys are checked by the port (``check_bucket``/``check_key``) before anything
touches the disk. On top of that, every path is resolved (symbolic links
included) and must stay inside ``root/<bucket>``: a link that leads out of
the bucket is refused, never followed.

Differences from S3 that come from storing objects as files:

- a key cannot be both an object and a "folder" of other objects: with ``a``
  stored, ``a/b`` is refused with ``InvalidKey`` (and the other way round);
- a key segment is at most 255 bytes (the filesystem's limit on a name);
- listings skip files whose names are not valid keys and do not descend into
  symbolically linked folders (which could loop or list objects twice).

All file I/O runs in worker threads (``asyncio.to_thread``) so the event loop
never blocks on the disk.
"""
from __future__ import annotations

import asyncio
import errno
import hashlib
import inspect
import os
import secrets
import stat
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Awaitable, BinaryIO, Callable, Iterator, Sequence

from customlabels.ports.blobs import (
    Chunks,
    InvalidKey,
    NoSuchBucket,
    NoSuchKey,
    ObjectInfo,
    Rejected,
    check_bucket,
    check_key,
    receive,
)

TMP_DIR = ".tmp"
TMP_SUFFIX = ".part"
NAME_MAX = 255  # bytes in one file name on Linux and macOS filesystems
_COPY_CHUNK = 1 << 20


class LocalBlobStore:
    def __init__(self, root: Path, *, stale_temp_seconds: float = 3600.0) -> None:
        """``stale_temp_seconds``: ``start()`` removes temporary files untouched for
        this long. The grace period protects a write in flight in another
        process sharing the same root (a CLI import beside the server)."""
        self._root = Path(root)
        self._stale_temp_seconds = stale_temp_seconds
        self._root_real = os.path.realpath(self._root)

    @property
    def root(self) -> Path:
        return self._root

    # --- lifecycle ----------------------------------------------------------
    async def start(self) -> None:
        await asyncio.to_thread(self._start_sync)

    async def close(self) -> None:
        """Nothing to release: every operation opens and closes its own files."""

    def _start_sync(self) -> None:
        os.makedirs(self._root / TMP_DIR, exist_ok=True)
        self._root_real = os.path.realpath(self._root)
        self._remove_stale_temp_files()

    def _remove_stale_temp_files(self) -> None:
        cutoff = time.time() - self._stale_temp_seconds
        with os.scandir(self._tmp_dir) as entries:
            for entry in entries:
                try:
                    if entry.stat(follow_symlinks=False).st_mtime <= cutoff:
                        os.unlink(entry.path)
                except FileNotFoundError:
                    pass  # removed meanwhile by its writer

    @property
    def _tmp_dir(self) -> str:
        return os.path.join(self._root_real, TMP_DIR)

    # --- buckets --------------------------------------------------------------
    async def ensure_bucket(self, bucket: str) -> None:
        check_bucket(bucket)
        await asyncio.to_thread(self._ensure_bucket_sync, bucket)

    def _ensure_bucket_sync(self, bucket: str) -> None:
        path = os.path.join(self._root_real, bucket)
        try:
            os.mkdir(path)
        except FileExistsError:
            pass
        self._bucket_dir(bucket)  # a file or an escaping link with that name: refuse

    # --- writes ---------------------------------------------------------------
    async def put(self, bucket: str, key: str, data: bytes) -> ObjectInfo:
        _check(bucket, key)
        return await asyncio.to_thread(self._put_sync, bucket, key, bytes(data))

    def _put_sync(self, bucket: str, key: str, data: bytes) -> ObjectInfo:
        self._target(bucket, key)  # fail before writing anything
        with _TempFile(self._tmp_dir) as tmp:
            tmp.write(data)
            return self._commit(tmp, bucket, key)

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
        # Refuse a missing bucket or a conflicting key before reading the body.
        await asyncio.to_thread(self._target, bucket, key)
        tmp = await asyncio.to_thread(_TempFile, self._tmp_dir)
        try:
            await receive(chunks, max_bytes, lambda block: asyncio.to_thread(tmp.write, block))
            if accept is not None and not await _call_accept(accept, tmp.sha256):
                raise Rejected(f"object {bucket}/{key} was refused after upload; nothing was stored")
            return await asyncio.to_thread(self._commit, tmp, bucket, key)
        finally:
            # Synchronous on purpose, so it runs even when the task is cancelled.
            # After a commit the temporary file is already gone: nothing to remove.
            tmp.discard()

    async def copy(self, src_bucket: str, src_key: str, dst_bucket: str, dst_key: str) -> ObjectInfo:
        _check(src_bucket, src_key)
        _check(dst_bucket, dst_key)
        return await asyncio.to_thread(self._copy_sync, src_bucket, src_key, dst_bucket, dst_key)

    def _copy_sync(self, src_bucket: str, src_key: str, dst_bucket: str, dst_key: str) -> ObjectInfo:
        with self._open_object(src_bucket, src_key) as src, _TempFile(self._tmp_dir) as tmp:
            while block := src.read(_COPY_CHUNK):
                tmp.write(block)
            return self._commit(tmp, dst_bucket, dst_key)

    def _commit(self, tmp: _TempFile, bucket: str, key: str) -> ObjectInfo:
        # Checked again here: a long upload gives time for the bucket to go or
        # for a conflicting key to appear.
        target = self._target(bucket, key)
        try:
            st = tmp.commit(target)
        except (NotADirectoryError, FileExistsError, IsADirectoryError) as exc:
            raise InvalidKey(_conflict_message(key)) from exc
        return _info(bucket, key, st, tmp.sha256)

    async def delete(self, bucket: str, key: str) -> None:
        _check(bucket, key)
        await asyncio.to_thread(self._delete_sync, bucket, key)

    def _delete_sync(self, bucket: str, key: str) -> None:
        bucket_dir = self._bucket_dir(bucket)
        path = self._entry_path(bucket, key)
        if os.path.isdir(path) and not os.path.islink(path):
            return  # a folder of other keys is not an object
        try:
            os.unlink(path)  # removes a link itself, never what it points to
        except (FileNotFoundError, NotADirectoryError):
            return  # no such object: nothing to do
        _remove_empty_parents(os.path.dirname(path), bucket_dir)

    # --- reads ----------------------------------------------------------------
    async def get(self, bucket: str, key: str) -> bytes:
        _check(bucket, key)
        return await asyncio.to_thread(self._get_sync, bucket, key)

    def _get_sync(self, bucket: str, key: str) -> bytes:
        with self._open_object(bucket, key) as f:
            return f.read()

    async def read_range(self, bucket: str, key: str, start: int, length: int) -> bytes:
        _check(bucket, key)
        if length < 0:
            raise ValueError(f"length must be >= 0, not {length}")
        return await asyncio.to_thread(self._read_range_sync, bucket, key, start, length)

    def _read_range_sync(self, bucket: str, key: str, start: int, length: int) -> bytes:
        with self._open_object(bucket, key) as f:
            if start < 0:
                start = max(os.fstat(f.fileno()).st_size + start, 0)
            f.seek(start)
            return f.read(length)

    def stream(self, bucket: str, key: str, chunk_size: int = 1 << 20) -> Chunks:
        # A plain function so a bad name fails at the call; the file itself is
        # opened on the first iteration.
        _check(bucket, key)
        if chunk_size <= 0:
            raise ValueError(f"chunk_size must be > 0, not {chunk_size}")
        return self._stream(bucket, key, chunk_size)

    async def _stream(self, bucket: str, key: str, chunk_size: int) -> Chunks:
        # The file stays open throughout, so a replace during the stream does not
        # mix two versions: the old inode is read to its end.
        f = await asyncio.to_thread(self._open_object, bucket, key)
        try:
            while chunk := await asyncio.to_thread(f.read, chunk_size):
                yield chunk
        finally:
            f.close()

    async def stat(self, bucket: str, key: str) -> ObjectInfo:
        _check(bucket, key)
        return await asyncio.to_thread(self._stat_sync, bucket, key)

    async def stat_many(self, bucket: str, keys: Sequence[str]) -> dict[str, ObjectInfo]:
        check_bucket(bucket)
        for key in keys:
            check_key(key)
        return await asyncio.to_thread(self._stat_many_sync, bucket, list(keys))

    def _stat_many_sync(self, bucket: str, keys: list[str]) -> dict[str, ObjectInfo]:
        # Keys of a batch share folders: confine each folder once, then one
        # lstat per key; only a key that is itself a link takes the full path.
        try:
            bucket_dir = self._bucket_dir(bucket)
        except (NoSuchBucket, InvalidKey):
            return {}
        folders: dict[str, str] = {"": bucket_dir}
        found = {}
        for key in keys:
            folder, _, name = key.rpartition("/")
            try:
                if folder not in folders:
                    folders[folder] = self._confine(os.path.join(bucket_dir, folder), bucket, key)
                st = os.lstat(os.path.join(folders[folder], name))
                if stat.S_ISLNK(st.st_mode):
                    found[key] = self._stat_sync(bucket, key)
                elif _is_regular(st):
                    found[key] = _info(bucket, key, st)
            except (OSError, InvalidKey, NoSuchKey):
                continue
        return found

    def _stat_sync(self, bucket: str, key: str) -> ObjectInfo:
        with self._open_object(bucket, key) as f:
            return _info(bucket, key, os.fstat(f.fileno()))

    async def list(self, bucket: str, prefix: str = "", *, limit: int = 1000, after: str = "") -> list[ObjectInfo]:
        check_bucket(bucket)
        return await asyncio.to_thread(self._list_sync, bucket, prefix, limit, after)

    def _list_sync(self, bucket: str, prefix: str, limit: int, after: str) -> list[ObjectInfo]:
        bucket_dir = self._bucket_dir(bucket)
        if limit <= 0:
            return []
        # Start the walk at the deepest folder the prefix names, not at the bucket.
        folder, _, _ = prefix.rpartition("/")
        if folder:
            try:
                check_key(folder)
                start = self._confine(os.path.join(bucket_dir, folder), bucket, folder)
            except InvalidKey:
                return []  # no valid key (or none reachable) starts with this prefix
            base = folder + "/"
        else:
            start, base = bucket_dir, ""
        found: list[ObjectInfo] = []
        for key, st in self._walk(start, base, bucket, prefix, after):
            found.append(_info(bucket, key, st))
            if len(found) >= limit:
                break
        return found

    def _walk(self, folder: str, base: str, bucket: str, prefix: str, after: str) -> Iterator[tuple[str, os.stat_result]]:
        """Objects under ``folder`` (whose keys start with ``base``) in key order.

        One folder is read and sorted at a time. A folder ``x`` sorts as ``x/``,
        which puts its keys exactly where they belong in the bucket's key order
        ("a-b" < "a/c" < "a0"), so a depth-first walk yields keys in order.
        """
        try:
            with os.scandir(folder) as it:
                entries = [(e, e.is_dir(follow_symlinks=False)) for e in it if _valid_name(e.name)]
        except (FileNotFoundError, NotADirectoryError):
            return
        entries.sort(key=lambda item: base + item[0].name + ("/" if item[1] else ""))
        for entry, is_dir in entries:
            key = base + entry.name
            if is_dir:
                sub = key + "/"
                if not (sub.startswith(prefix) or prefix.startswith(sub)):
                    continue  # nothing in there matches the prefix
                if sub < after and not after.startswith(sub):
                    continue  # every key in there sorts before `after`
                yield from self._walk(entry.path, sub, bucket, prefix, after)
            elif key.startswith(prefix) and key > after:
                st = self._listed_file_stat(entry, bucket, key)
                if st is not None:
                    yield key, st

    def _listed_file_stat(self, entry: os.DirEntry, bucket: str, key: str) -> os.stat_result | None:
        try:
            check_key(key)
            if entry.is_symlink():
                self._confine(entry.path, bucket, key)
            st = entry.stat()  # follows an in-bucket link to its file
        except (InvalidKey, OSError):
            return None  # unaddressable name, escaping or dangling link: not an object
        return st if _is_regular(st) else None

    # --- paths ----------------------------------------------------------------
    def _bucket_dir(self, bucket: str) -> str:
        """The bucket's folder, resolved; ``NoSuchBucket`` when there is none."""
        path = os.path.join(self._root_real, bucket)
        if os.path.realpath(path) != path:
            raise InvalidKey(f"bucket {bucket!r} is a symbolic link in the blob folder; refusing to follow it")
        if not os.path.isdir(path):
            raise NoSuchBucket(f"bucket {bucket!r} does not exist")
        return path

    def _confine(self, path: str, bucket: str, key: str) -> str:
        """``path`` with every link resolved, provided it stays inside the bucket."""
        bucket_dir = os.path.join(self._root_real, bucket)
        real = os.path.realpath(path)
        if real != bucket_dir and not real.startswith(bucket_dir + os.sep):
            raise InvalidKey(
                f"object key {key!r} leads out of bucket {bucket!r} through a symbolic link; refusing to follow it"
            )
        return real

    def _entry_path(self, bucket: str, key: str) -> str:
        """Where the key's own directory entry lives: its folder resolved and
        confined, its last name kept as is (so a write replaces a link rather
        than writing through it)."""
        bucket_dir = self._bucket_dir(bucket)
        folder, _, name = key.rpartition("/")
        parent = self._confine(os.path.join(bucket_dir, folder), bucket, key) if folder else bucket_dir
        return os.path.join(parent, name)

    def _target(self, bucket: str, key: str) -> str:
        """Where a write of ``key`` goes, after refusing folder/object conflicts."""
        entry = self._entry_path(bucket, key)  # confined first: look at nothing outside
        _refuse_conflicts(self._bucket_dir(bucket), key)
        return entry

    def _open_object(self, bucket: str, key: str) -> BinaryIO:
        path = self._confine(os.path.join(self._bucket_dir(bucket), key), bucket, key)
        try:
            # O_NONBLOCK: a fifo dropped into the bucket must not hang the open
            # (it changes nothing for regular files).
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
            raise NoSuchKey(f"object {bucket}/{key} does not exist") from exc
        if not _is_regular(os.fstat(fd)):  # a folder (of other keys), a fifo, a device
            os.close(fd)
            raise NoSuchKey(f"object {bucket}/{key} does not exist")
        return os.fdopen(fd, "rb")


class _TempFile:
    """A file being written in ``root/.tmp``; it becomes an object only through
    ``commit``. Used as a context manager, it is removed unless committed."""

    def __init__(self, tmp_dir: str) -> None:
        self.path = os.path.join(tmp_dir, secrets.token_hex(12) + TMP_SUFFIX)
        self._file = open(self.path, "xb")  # the umask gives the usual 0644, unlike mkstemp's 0600
        self._hash = hashlib.sha256()

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self._hash.update(data)

    def commit(self, target: str) -> os.stat_result:
        """Make the content durable, then atomically put it at ``target``."""
        self._file.flush()
        os.fsync(self._file.fileno())
        st = os.fstat(self._file.fileno())
        self._file.close()
        parent = os.path.dirname(target)
        for attempt in range(3):
            os.makedirs(parent, exist_ok=True)
            _remove_if_empty_dir(target)
            try:
                os.replace(self.path, target)
                break
            except FileNotFoundError:
                # A concurrent delete pruned the just-created empty parent: retry.
                if attempt == 2:
                    raise
        _fsync_dir(parent)
        return st

    def discard(self) -> None:
        self._file.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass  # committed (renamed away) or already cleaned

    def __enter__(self) -> _TempFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()


# --- helpers ------------------------------------------------------------------
def _check(bucket: str, key: str) -> None:
    check_bucket(bucket)
    check_key(key)
    for segment in key.split("/"):
        if len(segment.encode("utf-8")) > NAME_MAX:
            raise InvalidKey(
                f"object key {key!r} has a segment longer than {NAME_MAX} bytes, "
                "which the local blob store cannot keep as a file name"
            )


def _valid_name(name: str) -> bool:
    """A directory entry that can be part of a key (skips undecodable names,
    backslashes, control characters)."""
    try:
        check_key(name)
    except (InvalidKey, UnicodeEncodeError):
        return False
    return True


def _refuse_conflicts(bucket_dir: str, key: str) -> None:
    """Objects are files, so a key cannot also be another key's folder."""
    parts = key.split("/")
    path = bucket_dir
    for part in parts[:-1]:
        path = os.path.join(path, part)
        if os.path.lexists(path) and not os.path.isdir(path):
            raise InvalidKey(_conflict_message(key))
    target = os.path.join(path, parts[-1])
    if os.path.isdir(target) and os.listdir(target):
        raise InvalidKey(_conflict_message(key))


def _conflict_message(key: str) -> str:
    return (
        f"object key {key!r} conflicts with an existing object: the local blob store keeps objects as files, "
        f"so a key cannot also be the folder of other keys (like 'a' and 'a/b'); rename one of them"
    )


def _remove_if_empty_dir(path: str) -> None:
    """An empty folder left where an object now goes (made by hand) would block the rename."""
    if os.path.isdir(path) and not os.path.islink(path):
        try:
            os.rmdir(path)
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise


def _remove_empty_parents(folder: str, bucket_dir: str) -> None:
    """After a delete, prune folders left empty, up to (not including) the bucket."""
    while folder != bucket_dir and folder.startswith(bucket_dir + os.sep):
        try:
            os.rmdir(folder)
        except OSError:
            return  # not empty (or already gone): stop there
        folder = os.path.dirname(folder)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _is_regular(st: os.stat_result) -> bool:
    return stat.S_ISREG(st.st_mode)


def _info(bucket: str, key: str, st: os.stat_result, sha256: str | None = None) -> ObjectInfo:
    modified = datetime.fromtimestamp(st.st_mtime, tz=timezone.utc)
    return ObjectInfo(bucket=bucket, key=key, size=st.st_size, modified=modified, sha256=sha256)


async def _call_accept(accept: Callable[[str], Awaitable[bool] | bool], sha256: str) -> bool:
    verdict = accept(sha256)
    if inspect.isawaitable(verdict):
        verdict = await verdict
    return bool(verdict)
