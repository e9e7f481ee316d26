"""The embedded data folder (``CUSTOMLABELS_DATA``): its format number and the migrations between formats.

What the folder holds: ``documents.sqlite`` (every service's collections),
``events.sqlite`` (the event log and consumer offsets), ``objects/`` (the
local blob store), ``token-secret.key`` (signs pagination tokens) and
``hosting/`` (a cache of model files, rebuilt from ``objects/``). How these
are laid out and what their documents look like is the folder's *format*,
one number, recorded in ``FORMAT_FILE``.

Invariants:

* ``open_data_folder`` runs before any store opens the folder. A new folder
  gets the current format written at once; a folder from an older format is
  migrated step by step, ``MIGRATIONS[n]`` turning format ``n`` into
  ``n + 1``, and the format file is rewritten (atomically) after each step,
  so a migration cut short by a crash is run again from its start: every
  migration must be idempotent.
* A folder written by a newer release (a format above ``FORMAT``) is refused
  with ``DataFolderError`` before anything in it changes.
* Format 0 is a folder with data but no format file: what releases before the
  format file (0.1.0 and earlier) left. Its layout is format 1's, so the
  migration to 1 only records the number.

To change the format: append the migration from the current format to
``MIGRATIONS`` (FORMAT follows), and test it on a folder the previous release
wrote (``tests/integration/test_data_folder.py`` shows how).
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Callable, Sequence

log = logging.getLogger(__name__)

FORMAT_FILE = "customlabels-data.json"


class DataFolderError(Exception):
    """The folder cannot be opened by this release; the message says why and what to do."""


def _unversioned_to_1(folder: Path) -> None:
    """Format 0 -> 1: the layout did not change; only the format file is new (written by the caller)."""


# MIGRATIONS[n] turns format n into format n + 1 (idempotent: it may run again after a crash).
MIGRATIONS: tuple[Callable[[Path], None], ...] = (_unversioned_to_1,)
FORMAT = len(MIGRATIONS)  # the format this release writes


def release() -> str:
    """This release's version (the installed package's), for the record."""
    try:
        return metadata.version("customlabels")
    except metadata.PackageNotFoundError:
        return "unknown"


def read_format(folder: Path) -> int | None:
    """The folder's format: None for a missing or empty folder, 0 for data without a format file."""
    path = Path(folder) / FORMAT_FILE
    if not path.exists():
        has_data = Path(folder).is_dir() and any(Path(folder).iterdir())
        return 0 if has_data else None
    try:
        number = json.loads(path.read_text())["format"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataFolderError(f"{path} is not a customlabels format file ({e}); restore it from a backup") from None
    if not isinstance(number, int) or isinstance(number, bool) or number < 0:
        raise DataFolderError(f"{path} names format {number!r}, which is not a format number")
    return number


def write_format(folder: Path, number: int) -> None:
    """Record ``number`` as the folder's format, atomically (a reader sees the old file or the new one)."""
    folder = Path(folder)
    body = json.dumps({"format": number, "written_by": f"customlabels {release()}"}, indent=2) + "\n"
    fd, temporary = tempfile.mkstemp(dir=folder, prefix=f".{FORMAT_FILE}.", suffix=".part")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, folder / FORMAT_FILE)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def check_readable(number: int, where: object, *, current: int = FORMAT) -> None:
    """DataFolderError if format ``number`` (of the folder or backup ``where``) is newer than this release reads."""
    if number > current:
        raise DataFolderError(
            f"{where} was written by a newer customlabels (data format {number}; customlabels {release()} reads "
            f"formats up to {current}): run the release that wrote it, or restore a backup this release made; "
            "nothing was changed")


def open_data_folder(folder: Path, migrations: Sequence[Callable[[Path], None]] = MIGRATIONS) -> int:
    """Make ``folder`` ready for this release (create it, or migrate it) and return its format."""
    folder = Path(folder)
    current = len(migrations)
    folder.mkdir(parents=True, exist_ok=True)
    found = read_format(folder)
    if found is None:
        write_format(folder, current)
        return current
    check_readable(found, f"data folder {folder}", current=current)
    for number in range(found, current):
        log.info("migrating data folder %s from format %d to %d", folder, number, number + 1)
        migrations[number](folder)
        write_format(folder, number + 1)
    return current
