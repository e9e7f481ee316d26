"""A write refused for want of disk space is a 503 that says so (``errors.storage_unavailable``), whatever raised it."""
from __future__ import annotations

import errno
import sqlite3

import pytest

from customlabels import errors


def full_sqlite_error(tmp_path) -> sqlite3.Error:
    """The error SQLite itself raises when its database may not grow (max_page_count stands in for the disk)."""
    connection = sqlite3.connect(tmp_path / "full.sqlite")
    connection.execute("CREATE TABLE t (x BLOB)")
    connection.execute("PRAGMA max_page_count = 2")
    try:
        connection.execute("INSERT INTO t VALUES (?)", (b"x" * 100_000,))
    except sqlite3.Error as error:
        return error
    finally:
        connection.close()
    raise AssertionError("SQLite took the row")


def test_no_space_and_quota_and_a_full_database_are_503s(tmp_path):
    for exc in (OSError(errno.ENOSPC, "No space left on device"), OSError(errno.EDQUOT, "Disk quota exceeded"),
                full_sqlite_error(tmp_path)):
        answer = errors.storage_unavailable(exc)
        assert isinstance(answer, errors.ServiceUnavailable), exc
        assert answer.status == 503 and answer.code == "ServiceUnavailableException"
        assert "out of disk space" in answer.message and "changed nothing" in answer.message


def test_a_cause_deep_in_the_chain_counts():
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as inner:
            raise RuntimeError("commit failed") from inner
    except RuntimeError as outer:
        assert errors.storage_unavailable(outer) is not None


@pytest.mark.parametrize("exc", [OSError(errno.EACCES, "Permission denied"), ValueError("no"),
                                 sqlite3.OperationalError("database is locked")])
def test_other_errors_are_not(exc):
    assert errors.storage_unavailable(exc) is None
