"""``customlabels backup --to DIR`` and ``customlabels restore DIR``: a copy of the embedded data folder.

A backup is taken while the server runs, without pausing it, and restores to
a folder the server serves as it was (projects, entries, trained models):

1. the event log's consumer offsets are read (``O``);
2. every SQLite file (``documents.sqlite`` first, then ``events.sqlite``) is
   copied with SQLite's online backup API, each one a consistent snapshot;
3. in the copy of the event log, every consumer offset is set back to ``O``
   (a consumer that started after step 1 is removed, so it starts from the
   oldest event again);
4. the objects are copied, after the metadata that names them, so every
   object a copied document refers to is there;
5. the other files (the token secret, the format file); ``BACKUP_FILE`` last.

Why step 3 makes the copy consistent: a handler that ran between the two
snapshots has its offset in the copied log but its writes missing from the
copied documents; with the offset set back, the restored server delivers the
event again and the handler applies it. Anything delivered twice this way
changes nothing, since every handler records the events it applied in the
same commit as its writes (``customlabels.messaging``); an event the outbox
relayed between the snapshots is in both copies and likewise deduplicated.

Invariants: a folder without ``BACKUP_FILE`` is not a backup (restore refuses
it); the backup and the restored folder appear whole or not at all (both are
written beside their destination and renamed into place); neither command
writes into a folder that has anything in it, and a refusal changes nothing.
Only the embedded stores are copied: with MongoDB, Kafka or S3 configured,
use those systems' own backups. ``hosting/`` (model files unpacked for the
inference units) is a cache and is not copied.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from customlabels.adapters.data_folder import (
    FORMAT_FILE,
    DataFolderError,
    check_readable,
    read_format,
    release,
)
from customlabels.config import Settings

from services.cli.common import Refused, UsageError

BACKUP_FILE = "customlabels-backup.json"
DOCUMENTS, EVENTS, OBJECTS = "documents.sqlite", "events.sqlite", "objects"
NOT_COPIED = {"hosting", "objects"}  # the cache; objects are copied on their own, after the databases
_SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")
_OBJECTS_TEMP = ".tmp"  # the local blob store's writes in flight


def add_commands(commands, formatter) -> None:
    backup = commands.add_parser(
        "backup", formatter_class=formatter, help="copy the data folder, consistently, while the server runs",
        description=(
            "Copy the embedded data folder (CUSTOMLABELS_DATA, or --data) into a new folder DIR:\n"
            "the documents and the event log through SQLite's online backup, then the objects.\n"
            "The server may keep running and writing: the copy restores to a consistent state.\n"
            "Deployments on MongoDB, Kafka and S3 back those up with their own tools."
        ),
        epilog="Example:\n  customlabels backup --to /backups/customlabels-2025-06-01\n",
    )
    backup.add_argument("--to", required=True, type=Path, metavar="DIR", help="new (or empty) folder for the copy")
    backup.add_argument("--data", type=Path, metavar="FOLDER", help="data folder (default: CUSTOMLABELS_DATA, ./data)")
    backup.set_defaults(handler=run_backup)

    restore = commands.add_parser(
        "restore", formatter_class=formatter, help="make a new data folder from a backup",
        description=(
            "Restore a backup made by `customlabels backup` into a data folder that does not\n"
            "exist yet or is empty (CUSTOMLABELS_DATA, or --data); then start the server on it.\n"
            "A backup from an older release is migrated when the server first opens it."
        ),
        epilog="Example:\n  customlabels restore /backups/customlabels-2025-06-01 --data ./data\n",
    )
    restore.add_argument("backup", type=Path, metavar="DIR", help="a folder `customlabels backup` wrote")
    restore.add_argument("--data", type=Path, metavar="FOLDER", help="data folder to create (default: CUSTOMLABELS_DATA, ./data)")
    restore.set_defaults(handler=run_restore)


def run_backup(args: argparse.Namespace) -> int:
    source = _data_folder(args)
    summary = backup(source, args.to)
    print(f"backed up {source} to {args.to}: {summary['objects']} objects, {summary['bytes'] / 1e6:.1f} MB "
          f"(data format {summary['format']})")
    return 0


def run_restore(args: argparse.Namespace) -> int:
    target = _data_folder(args, must_exist=False)
    summary = restore(args.backup, target)
    print(f"restored {args.backup} (taken {summary['taken']}) into {target}; start the server with "
          f"CUSTOMLABELS_DATA={target}")
    return 0


# --- backup -------------------------------------------------------------------------------
@dataclass
class _Copied:
    objects: int = 0
    bytes: int = 0
    files: list[str] = field(default_factory=list)


def backup(source: Path, destination: Path) -> dict:
    """Copy the data folder ``source`` into the new folder ``destination``; the summary written in BACKUP_FILE."""
    source = source.resolve()
    try:
        number = read_format(source)
    except DataFolderError as e:
        raise Refused(str(e)) from None
    if number is None or not (source / DOCUMENTS).exists():
        raise Refused(f"{source} is not a customlabels data folder (no {DOCUMENTS}): nothing to back up")
    _check_new(destination, "backup folder")
    work = _beside(destination)
    try:
        copied = _Copied()
        offsets = _read_offsets(source / EVENTS)
        for name in _databases(source):  # documents first, then the event log
            _sqlite_copy(source / name, work / name)
            copied.files.append(name)
        if (work / EVENTS).exists():
            _rewind_offsets(work / EVENTS, offsets)
        _copy_objects(source / OBJECTS, work / OBJECTS, copied)
        for entry in sorted(source.iterdir()):
            if entry.name in NOT_COPIED or entry.name in copied.files or _is_sqlite_side_file(entry.name):
                continue
            if entry.is_dir():
                shutil.copytree(entry, work / entry.name, symlinks=True)
            else:
                shutil.copy2(entry, work / entry.name)
            copied.files.append(entry.name)
        summary = {"format": number, "release": release(), "source": str(source),
                   "taken": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                   "objects": copied.objects, "bytes": copied.bytes, "files": sorted(copied.files)}
        os.sync()  # every copied file on disk before the file that says the backup is whole
        _write_durably(work / BACKUP_FILE, json.dumps(summary, indent=2) + "\n")
        _move_into_place(work, destination)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return summary


def _databases(folder: Path) -> list[str]:
    """The SQLite files to snapshot, in order: documents, the event log, then any other."""
    others = sorted(p.name for p in folder.glob("*.sqlite") if p.name not in (DOCUMENTS, EVENTS))
    return [name for name in (DOCUMENTS, EVENTS) if (folder / name).exists()] + others


def _sqlite_copy(source: Path, destination: Path) -> None:
    """A consistent snapshot of a live SQLite database (one read transaction), checked after copying."""
    reader, copy = sqlite3.connect(source), sqlite3.connect(destination)
    try:
        reader.backup(copy)  # all pages in one step: one read transaction, while writers go on (WAL)
        if copy.execute("PRAGMA quick_check").fetchone()[0] != "ok":
            raise Refused(f"the copy of {source.name} fails SQLite's quick_check; the backup was abandoned")
    finally:
        reader.close()
        copy.close()


def _read_offsets(path: Path) -> dict[tuple[str, str], tuple[int, int]]:
    """The event log's consumer offsets, (group, topic) -> (next_seq, attempts): the ``offsets``
    table of ``customlabels.adapters.sqlite_events``."""
    if not path.exists():
        return {}
    db = sqlite3.connect(path)
    try:
        rows = db.execute("SELECT group_id, topic, next_seq, attempts FROM offsets").fetchall()
    finally:
        db.close()
    return {(group, topic): (next_seq, attempts) for group, topic, next_seq, attempts in rows}


def _rewind_offsets(path: Path, offsets: dict[tuple[str, str], tuple[int, int]]) -> None:
    db = sqlite3.connect(path)
    try:
        with db:  # one transaction
            for group, topic in db.execute("SELECT group_id, topic FROM offsets").fetchall():
                if (group, topic) in offsets:
                    next_seq, attempts = offsets[group, topic]
                    db.execute("UPDATE offsets SET next_seq = ?, attempts = ? WHERE group_id = ? AND topic = ?",
                               (next_seq, attempts, group, topic))
                else:
                    db.execute("DELETE FROM offsets WHERE group_id = ? AND topic = ?", (group, topic))
    finally:
        db.close()


def _copy_objects(source: Path, destination: Path, copied: _Copied) -> None:
    """Every object file (never the store's temporary files); one removed meanwhile is skipped. Objects
    are written by atomic rename, so a file read here is a whole object, old or new."""
    destination.mkdir(parents=True)
    if not source.is_dir():
        return
    for folder, subfolders, files in os.walk(source):
        here = Path(folder)
        if here == source:
            subfolders[:] = [name for name in subfolders if name != _OBJECTS_TEMP]
        subfolders.sort()
        target = destination / here.relative_to(source)
        target.mkdir(exist_ok=True)
        for name in sorted(files):
            try:
                shutil.copy2(here / name, target / name, follow_symlinks=False)
            except FileNotFoundError:
                continue  # deleted after the snapshot; the snapshot may still name it (see the docstring)
            copied.objects += 1
            copied.bytes += (target / name).lstat().st_size


# --- restore ------------------------------------------------------------------------------
def restore(source: Path, target: Path) -> dict:
    """Make the new data folder ``target`` from the backup ``source``; the backup's summary."""
    source = source.resolve()
    try:
        summary = json.loads((source / BACKUP_FILE).read_text())
        number = summary["format"]
    except (OSError, ValueError, KeyError, TypeError):
        raise Refused(f"{source} is not a complete customlabels backup (no readable {BACKUP_FILE}); "
                      "nothing was changed") from None
    try:
        check_readable(number, f"backup {source}")
    except DataFolderError as e:
        raise Refused(str(e)) from None
    _check_new(target, "data folder")
    work = _beside(target)
    try:
        shutil.copytree(source, work, symlinks=True, dirs_exist_ok=True,
                        ignore=lambda folder, names: [BACKUP_FILE] if Path(folder) == source else [])
        if not (work / FORMAT_FILE).exists() and number > 0:
            raise Refused(f"{source} names data format {number} but holds no {FORMAT_FILE}; nothing was changed")
        os.sync()  # the restored files on disk before the folder appears under its name
        _move_into_place(work, target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return summary


# --- shared -------------------------------------------------------------------------------
def _data_folder(args: argparse.Namespace, must_exist: bool = True) -> Path:
    settings = Settings.from_env()
    distributed = [name for name, value in (("CUSTOMLABELS_MONGODB_URI", settings.mongodb_uri),
                                            ("CUSTOMLABELS_KAFKA_BOOTSTRAP", settings.kafka_bootstrap),
                                            ("CUSTOMLABELS_S3_ENDPOINT", settings.s3_endpoint)) if value]
    if distributed:
        raise UsageError(f"error: {', '.join(distributed)} set: this deployment keeps its data in MongoDB, Kafka "
                         "or S3, which backup does not copy; use their own backups")
    folder = (args.data or settings.data_dir).resolve()
    if must_exist and not folder.is_dir():
        raise UsageError(f"error: data folder {folder} does not exist (set CUSTOMLABELS_DATA or --data)")
    return folder


def _check_new(folder: Path, what: str) -> None:
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise Refused(f"{what} {folder} already exists and is not empty: choose a new folder; nothing was changed")


def _beside(destination: Path) -> Path:
    """A fresh folder next to ``destination`` (same filesystem: the final rename is atomic)."""
    destination = destination.resolve()
    destination.parent.mkdir(parents=True, exist_ok=True)
    work = destination.parent / f".{destination.name}.partial-{uuid.uuid4().hex[:8]}"
    work.mkdir()
    return work


def _move_into_place(work: Path, destination: Path) -> None:
    """Rename the finished folder onto ``destination`` (absent or empty), then make the rename durable."""
    os.rename(work, destination)  # POSIX: replaces an empty folder, fails on a non-empty one
    fd = os.open(destination.resolve().parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_durably(path: Path, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _is_sqlite_side_file(name: str) -> bool:
    return name.endswith(_SQLITE_SIDE_FILES) and ".sqlite" in name
