"""Embedded document store: the documents port on one SQLite file.

Layout: one table per collection, ``(id TEXT PRIMARY KEY, version INTEGER,
doc TEXT)`` with ``doc`` the JSON body (without ``_id``/``_version``, which are
the columns). Declared ``Index`` fields become expression indexes on
``json_extract(doc, '$.field')``; queries are built from the very same
expressions (``_field_expr``) so the planner can use them.

Threading: sqlite3 connections must not be shared across threads, and one
writer at a time is all SQLite allows anyway, so the store owns one connection
used only from one worker thread. Each port call is one function run there,
which also serialises commits within the process. Other processes may open the
same file: WAL mode plus ``BEGIN IMMEDIATE`` and a busy timeout handle that.
A ``read_only`` store (an inspector beside a running server) opens the file
read-only and never takes a lock a writer could be waiting on, nor waits on
one: WAL readers see the last committed state even while a writer, running
or frozen, holds the write lock.

Durability: WAL with ``synchronous=NORMAL`` keeps every committed transaction
across a process crash (kill -9); only an OS crash or power loss may drop the
last few commits.
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, TypeVar

from customlabels.ports.documents import (
    ANY_VERSION,
    AnyOf,
    Collection,
    Condition,
    Contains,
    Delete,
    Document,
    DocumentStoreError,
    DuplicateKey,
    Eq,
    Index,
    Insert,
    Page,
    Put,
    Update,
    VersionConflict,
    Write,
    check_collection_name,
    check_field_name,
    check_unique_fields,
    check_update_fields,
    decode_cursor,
    encode_cursor,
    split_document,
)

T = TypeVar("T")
Params = list[Any]

# json_extract turns booleans into 0/1, so sort values in cursors are never booleans here.
_CURSOR_SCALARS = (int, float, str)
_GET_MANY_CHUNK = 500  # stay well below SQLite's bound-parameter limit


class SqliteDocumentStore:
    """``DocumentStore`` on a SQLite file (created if missing, unless ``read_only``)."""

    def __init__(self, path: str | Path, *, read_only: bool = False) -> None:
        self._path = Path(path)
        self._read_only = read_only
        self._executor: ThreadPoolExecutor | None = None
        self._closed = False
        # Only touched on the worker thread:
        self._conn: sqlite3.Connection | None = None
        self._collections: dict[str, Collection] = {}

    # --- lifecycle ---------------------------------------------------------
    async def start(self, collections: Sequence[Collection]) -> None:
        if self._closed:
            raise DocumentStoreError("store is closed")
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-documents")
        await self._run(self._start_sync, list(collections))

    async def close(self) -> None:
        if self._executor is None or self._closed:
            self._closed = True
            return
        await self._run(self._close_sync)
        self._closed = True
        self._executor.shutdown(wait=True)

    # --- reads -------------------------------------------------------------
    async def get(self, collection: str, id: str) -> Document | None:
        return await self._run(self._get_sync, collection, id)

    async def get_many(self, collection: str, ids: Sequence[str]) -> dict[str, Document]:
        return await self._run(self._get_many_sync, collection, list(ids))

    async def find(
        self,
        collection: str,
        where: Sequence[Condition] = (),
        *,
        order_by: Sequence[str] = (),
        descending: bool = False,
        limit: int = 100,
        after: str | None = None,
    ) -> Page:
        if not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a positive integer, not {limit!r}")
        return await self._run(
            self._find_sync, collection, list(where), list(order_by), descending, limit, after
        )

    async def count(self, collection: str, where: Sequence[Condition] = ()) -> int:
        return await self._run(self._count_sync, collection, list(where))

    # --- writes ------------------------------------------------------------
    async def commit(self, writes: Sequence[Write]) -> None:
        if self._read_only:
            raise DocumentStoreError(f"{self._path} is open read-only")
        if writes:
            await self._run(self._commit_sync, list(writes))

    # --- plumbing ------------------------------------------------------------
    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._executor is None or self._closed:
            raise DocumentStoreError("store is not started (or already closed)")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    # Everything below runs on the worker thread only.

    def _start_sync(self, collections: list[Collection]) -> None:
        if self._conn is None:
            self._conn = _connect_read_only(self._path) if self._read_only else _connect(self._path)
        for spec in collections:
            _table(spec.name)  # validate every name before creating anything
            for index in spec.indexes:
                _validate_index(index)
        if not self._read_only:
            with _transaction(self._conn):
                for spec in collections:
                    _create_collection(self._conn, spec)
        for spec in collections:
            self._collections[spec.name] = spec

    def _close_sync(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _db(self, collection: str) -> tuple[sqlite3.Connection, str]:
        """The connection and quoted table of a collection declared in ``start``."""
        if collection not in self._collections:
            raise DocumentStoreError(f"collection {collection!r} was not declared in start()")
        assert self._conn is not None
        return self._conn, _table(collection)

    def _get_sync(self, collection: str, id: str) -> Document | None:
        conn, table = self._db(collection)
        row = conn.execute(f"SELECT id, version, doc FROM {table} WHERE id = ?", (id,)).fetchone()
        return _document(row) if row else None

    def _get_many_sync(self, collection: str, ids: list[str]) -> dict[str, Document]:
        conn, table = self._db(collection)
        unique_ids = list(dict.fromkeys(ids))
        found: dict[str, Document] = {}
        for start in range(0, len(unique_ids), _GET_MANY_CHUNK):
            chunk = unique_ids[start : start + _GET_MANY_CHUNK]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT id, version, doc FROM {table} WHERE id IN ({marks})"
            for row in conn.execute(sql, chunk):
                found[row[0]] = _document(row)
        return found

    def _count_sync(self, collection: str, where: list[Condition]) -> int:
        conn, table = self._db(collection)
        sql, params = _where_sql(where)
        return conn.execute(f"SELECT count(*) FROM {table} WHERE {sql}", params).fetchone()[0]

    def _find_sync(
        self,
        collection: str,
        where: list[Condition],
        order_by: list[str],
        descending: bool,
        limit: int,
        after: str | None,
    ) -> Page:
        conn, table = self._db(collection)
        keys = _sort_keys(order_by)
        values = None if after is None else decode_cursor(after, len(keys), _CURSOR_SCALARS)
        sql, params = _find_sql(table, where, keys, descending, limit + 1, values)
        rows = conn.execute(sql, params).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        items = [_document(row) for row in rows]
        # Columns 3.. are the sort values (ending with id) of the last row.
        next_cursor = encode_cursor(list(rows[-1][3:])) if more else None
        return Page(items=items, next_cursor=next_cursor)

    def _commit_sync(self, writes: list[Write]) -> None:
        assert self._conn is not None
        with _transaction(self._conn):
            for write in writes:
                self._apply(write)

    def _apply(self, write: Write) -> None:
        conn, table = self._db(write.collection)
        apply = _APPLY.get(type(write))
        if apply is None:
            raise TypeError(f"not a write: {write!r}")
        apply(conn, table, self._collections[write.collection], write)


# --- connection and schema ----------------------------------------------------
def _connect(path: Path) -> sqlite3.Connection:
    if str(path) != ":memory:":
        path.parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: no implicit transactions; we BEGIN/COMMIT ourselves.
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes in WAL mode
    conn.execute("PRAGMA busy_timeout=5000")  # other processes on the same file
    return conn


def _connect_read_only(path: Path) -> sqlite3.Connection:
    """A connection that can only read an existing file: no journal-mode change, no lock taken."""
    if not path.is_file():
        raise DocumentStoreError(f"no document file at {path}")
    return sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, isolation_level=None)


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``; roll back on any error.

    IMMEDIATE takes the write lock up front so a read-then-write inside the
    transaction cannot be invalidated by another process's commit.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


@functools.lru_cache(maxsize=1024)
def _table(collection: str) -> str:
    """The quoted table name of a collection (``datasets.entries`` -> ``c_datasets__entries``):
    distinct names give distinct tables, since the port's names never hold "__"."""
    return '"c_' + check_collection_name(collection).replace(".", "__") + '"'


def _validate_index(index: Index) -> None:
    if not index.fields:
        raise ValueError("an index needs at least one field")
    for name in index.fields:
        _field_expr(name)


def _create_collection(conn: sqlite3.Connection, spec: Collection) -> None:
    table = _table(spec.name)
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {table} "
        "(id TEXT PRIMARY KEY, version INTEGER NOT NULL, doc TEXT NOT NULL)"
    )
    for index in spec.indexes:
        columns = [_field_expr(name) for name in index.fields]
        if not index.unique and "_id" not in index.fields:
            # Rows are keyed by rowid, not id: appending id lets the index
            # deliver "ORDER BY fields, id" without a sort step.
            columns.append("id")
        kind = "UNIQUE INDEX" if index.unique else "INDEX"
        # Quoted name spelling out the fields: readable and distinct per index.
        name = f'"{table[1:-1]}({",".join(index.fields)}){" unique" if index.unique else ""}"'
        conn.execute(f"CREATE {kind} IF NOT EXISTS {name} ON {table} ({', '.join(columns)})")


# --- writes ---------------------------------------------------------------------
def _apply_insert(conn: sqlite3.Connection, table: str, spec: Collection, write: Insert) -> None:
    doc_id, body = split_document(write.doc)
    check_unique_fields(spec, body)
    _insert(conn, table, doc_id, body)


def _apply_put(conn: sqlite3.Connection, table: str, spec: Collection, write: Put) -> None:
    doc_id, body = split_document(write.doc)
    check_unique_fields(spec, body)
    if write.expected_version == ANY_VERSION:
        _upsert(conn, table, doc_id, body)  # one statement: the bulk-load path
        return
    current = _current_version(conn, table, doc_id)
    _expect(write.expected_version, current, spec.name, doc_id)
    if current:
        _replace(conn, table, doc_id, current + 1, body)
    else:
        _insert(conn, table, doc_id, body)


def _apply_update(conn: sqlite3.Connection, table: str, spec: Collection, write: Update) -> None:
    # Read-modify-write in Python (not json_set) keeps numbers exactly as
    # json.dumps wrote them; the transaction makes it safe.
    row = conn.execute(f"SELECT version, doc FROM {table} WHERE id = ?", (write.id,)).fetchone()
    if row is None:
        raise VersionConflict(f"{spec.name}/{write.id} does not exist")
    _expect(write.expected_version, row[0], spec.name, write.id)
    body = json.loads(row[1]) | check_update_fields(write.set)
    check_unique_fields(spec, body)
    _replace(conn, table, write.id, row[0] + 1, body)


def _apply_delete(conn: sqlite3.Connection, table: str, spec: Collection, write: Delete) -> None:
    if write.expected_version != ANY_VERSION:
        _expect(write.expected_version, _current_version(conn, table, write.id), spec.name, write.id)
    conn.execute(f"DELETE FROM {table} WHERE id = ?", (write.id,))


_APPLY: dict[type, Callable[[sqlite3.Connection, str, Collection, Any], None]] = {
    Insert: _apply_insert,
    Put: _apply_put,
    Update: _apply_update,
    Delete: _apply_delete,
}


def _current_version(conn: sqlite3.Connection, table: str, doc_id: str) -> int:
    row = conn.execute(f"SELECT version FROM {table} WHERE id = ?", (doc_id,)).fetchone()
    return row[0] if row else 0


def _expect(expected: int, current: int, collection: str, doc_id: str) -> None:
    """``current`` is 0 for a missing document, matching ``expected_version=0``."""
    if expected == ANY_VERSION:
        return
    if not isinstance(expected, int) or expected < 0:
        raise ValueError(f"expected_version must be ANY_VERSION, 0 or positive, not {expected!r}")
    if expected != current:
        raise VersionConflict(f"{collection}/{doc_id}: expected version {expected}, found {current}")


def _insert(conn: sqlite3.Connection, table: str, doc_id: str, body: Document) -> None:
    _write(conn, f"INSERT INTO {table} (id, version, doc) VALUES (?, 1, ?)", (doc_id, _dumps(body)))


def _upsert(conn: sqlite3.Connection, table: str, doc_id: str, body: Document) -> None:
    sql = (
        f"INSERT INTO {table} (id, version, doc) VALUES (?, 1, ?) "
        "ON CONFLICT(id) DO UPDATE SET version = version + 1, doc = excluded.doc"
    )
    _write(conn, sql, (doc_id, _dumps(body)))


def _replace(conn: sqlite3.Connection, table: str, doc_id: str, version: int, body: Document) -> None:
    _write(conn, f"UPDATE {table} SET version = ?, doc = ? WHERE id = ?", (version, _dumps(body), doc_id))


def _write(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> None:
    try:
        conn.execute(sql, params)
    except sqlite3.IntegrityError as exc:
        if "UNIQUE" in str(exc):  # primary key (id) or a unique index
            raise DuplicateKey(str(exc)) from exc
        raise


# --- documents -------------------------------------------------------------------
def _document(row: Sequence[Any]) -> Document:
    doc = json.loads(row[2])
    doc["_id"] = row[0]
    doc["_version"] = row[1]
    return doc


def _dumps(body: Document) -> str:
    # allow_nan=False: NaN/Infinity are not JSON and SQLite's json functions reject them.
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


# --- conditions ------------------------------------------------------------------
def _field_expr(name: str) -> str:
    """The SQL expression of a field; identical in indexes and queries."""
    if name == "_id":
        return "id"
    if name == "_version":
        return "version"
    # Spliced into SQL (index expressions cannot be parameters): the port's rule
    # allows only plain identifiers, optionally dotted into nested objects.
    return f"json_extract(doc, '$.{check_field_name(name)}')"


def _json_path(name: str) -> str:
    _field_expr(name)  # validates
    return f"'$.{name}'"


def _json_types(value: Any) -> str:
    """SQL list of the ``json_type`` names a scalar may match.

    json_extract turns true/false into 1/0, so without this Eq(f, 1) would
    also match ``true``.
    """
    if value is None:
        return "('null')"
    if isinstance(value, bool):
        return "('true')" if value else "('false')"
    if isinstance(value, (int, float)):
        return "('integer','real')"
    if isinstance(value, str):
        return "('text')"
    raise TypeError(f"condition values must be str, int, float, bool or None, not {value!r}")


def _where_sql(conditions: Sequence[Condition]) -> tuple[str, Params]:
    parts: list[str] = []
    params: Params = []
    for cond in conditions:
        sql, cond_params = _condition_sql(cond)
        parts.append(f"({sql})")
        params += cond_params
    return (" AND ".join(parts) or "1"), params


def _condition_sql(cond: Condition) -> tuple[str, Params]:
    if isinstance(cond, Eq):
        return _eq_sql(cond)
    if isinstance(cond, AnyOf):
        return _any_of_sql(cond)
    if isinstance(cond, Contains):
        return _contains_sql(cond)
    raise TypeError(f"not a condition: {cond!r}")


def _eq_sql(cond: Eq) -> tuple[str, Params]:
    expr, value = _field_expr(cond.field), cond.value
    types = _json_types(value)  # also validates the value
    if value is None:  # missing or null
        return f"{expr} IS NULL", []
    bound = int(value) if isinstance(value, bool) else value
    if cond.field in ("_id", "_version") or isinstance(value, str):
        # Strings need no type guard (it would stop count() being index-only).
        return f"{expr} = ?", [bound]
    return f"{expr} = ? AND json_type(doc, {_json_path(cond.field)}) IN {types}", [bound]


def _any_of_sql(cond: AnyOf) -> tuple[str, Params]:
    if cond.field in ("_id", "_version"):
        raise ValueError(f"AnyOf needs a list field, not {cond.field}")
    if not cond.values:
        return "0", []
    path = _json_path(cond.field)
    terms, params = [], []
    for value in cond.values:
        terms.append(f"(j.type IN {_json_types(value)} AND j.atom IS ?)")
        params.append(int(value) if isinstance(value, bool) else value)
    return (
        f"json_type(doc, {path}) = 'array' AND EXISTS "
        f"(SELECT 1 FROM json_each(doc, {path}) AS j WHERE {' OR '.join(terms)})"
    ), params


def _contains_sql(cond: Contains) -> tuple[str, Params]:
    if not isinstance(cond.text, str):
        raise TypeError(f"Contains needs a string, not {cond.text!r}")
    expr = _field_expr(cond.field)
    if cond.field in ("_id", "_version"):
        return f"instr({expr}, ?) > 0", [cond.text]
    # instr() is case-sensitive; the type guard skips numbers, which instr would stringify.
    return f"json_type(doc, {_json_path(cond.field)}) = 'text' AND instr({expr}, ?) > 0", [cond.text]


# --- ordering and keyset pagination ---------------------------------------------
def _sort_keys(order_by: Sequence[str]) -> list[str]:
    """SQL expressions to order by: the fields, then id (a total order)."""
    keys = []
    for name in order_by:
        keys.append(_field_expr(name))
        if name == "_id":  # already total; later fields never matter
            return keys
    return keys + ["id"]


def _find_sql(
    table: str,
    where: Sequence[Condition],
    keys: list[str],
    descending: bool,
    fetch: int,
    after: list[Any] | None,
) -> tuple[str, Params]:
    """One SELECT per keyset segment after the cursor, merged by UNION ALL.

    Each segment ("same first i keys, next key beyond") is a plain index range
    that yields rows already in order, so each branch stops after ``fetch``
    rows however deep the cursor is. A single OR of the segments would make
    SQLite scan or sort everything that remains.
    """
    where_sql, where_params = _where_sql(where)
    direction = " DESC" if descending else ""
    columns = ", ".join(f"{key} AS k{i}" for i, key in enumerate(keys))
    order = ", ".join(f"k{i}{direction}" for i in range(len(keys)))
    select = f"SELECT id, version, doc, {columns} FROM {table} WHERE {where_sql}"
    if after is None:
        return f"{select} ORDER BY {order} LIMIT ?", where_params + [fetch]
    branches, params = [], []
    for segment_sql, segment_params in _after_segments(keys, after, descending):
        branches.append(f"SELECT * FROM ({select} AND {segment_sql} ORDER BY {order} LIMIT ?)")
        params += where_params + segment_params + [fetch]
    if not branches:
        return f"{select} AND 0 LIMIT ?", where_params + [fetch]
    return " UNION ALL ".join(branches) + f" ORDER BY {order} LIMIT ?", params + [fetch]


def _after_segments(keys: list[str], values: list[Any], descending: bool) -> list[tuple[str, Params]]:
    """Disjoint predicates that together select every row after ``values``:
    for each key, "the keys before it equal, this one beyond"."""
    segments = []
    for i, (key, value) in enumerate(zip(keys, values)):
        prefix, params = _equal_prefix(keys[:i], values[:i])
        for sql, beyond_params in _beyond(key, value, descending):
            segments.append((" AND ".join(prefix + [sql]), params + beyond_params))
    return segments


def _beyond(key: str, value: Any, descending: bool) -> list[tuple[str, Params]]:
    """Index-range predicates for "``key`` comes after ``value``".

    SQLite sorts NULL (a missing field) first, so ascending, everything non-null
    is beyond NULL; descending, NULLs come last: beyond v is "< v", then NULL.
    """
    if not descending:
        return [(f"{key} IS NOT NULL", [])] if value is None else [(f"{key} > ?", [value])]
    if value is None:
        return []
    if key in ("id", "version"):  # columns, never NULL
        return [(f"{key} < ?", [value])]
    return [(f"{key} < ?", [value]), (f"{key} IS NULL", [])]


def _equal_prefix(keys: list[str], values: list[Any]) -> tuple[list[str], Params]:
    parts, params = [], []
    for key, value in zip(keys, values):
        if value is None:
            parts.append(f"{key} IS NULL")
        else:
            parts.append(f"{key} = ?")
            params.append(value)
    return parts, params



