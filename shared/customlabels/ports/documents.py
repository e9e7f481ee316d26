"""Document store port: the one way services keep state.

A document is a JSON-able dict with a string ``_id``. The store adds ``_version``
(an integer bumped by every write) so callers can do optimistic, conditional
updates. All writes of one ``commit`` are atomic: either every write applies or
none does. Queries filter on declared indexed fields and page with an opaque
cursor in a stable order (the sort fields, then ``_id``).

Adapters: ``customlabels.adapters.sqlite_documents`` (embedded) and
``customlabels.adapters.mongo_documents`` (distributed). Both apply the rules
at the end of this module to names, documents and updates before any I/O, so
they refuse exactly the same input, and both must pass
``tests/contract/test_document_store.py``.
"""
from __future__ import annotations

import base64
import binascii
import json
import math
import re
from dataclasses import dataclass, field, replace
from typing import Any, Awaitable, Callable, Protocol, Sequence, TypeVar, Union

Document = dict[str, Any]
T = TypeVar("T")


# --- errors ---------------------------------------------------------------
class DocumentStoreError(Exception):
    """Base class of the store's own errors."""


class DuplicateKey(DocumentStoreError):
    """An insert hit an existing ``_id`` or a unique index. Nothing was written."""


class VersionConflict(DocumentStoreError):
    """A conditional write found another version (or no document). Nothing was written."""


# --- collections and indexes ---------------------------------------------
@dataclass(frozen=True)
class Index:
    """Fields queried together. ``unique`` makes the tuple of values unique
    (every document of the collection must then have all these fields)."""

    fields: tuple[str, ...]
    unique: bool = False


@dataclass(frozen=True)
class Collection:
    """A named collection and its indexes, declared once at start-up."""

    name: str
    indexes: tuple[Index, ...] = ()


# --- query conditions ------------------------------------------------------
@dataclass(frozen=True)
class Eq:
    """``field`` equals ``value`` (a scalar: str, int, float, bool or None)."""

    field: str
    value: Any


@dataclass(frozen=True)
class AnyOf:
    """``field`` is a list holding at least one of ``values``."""

    field: str
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Contains:
    """``field`` is a string containing ``text`` (case-sensitive substring)."""

    field: str
    text: str


Condition = Union[Eq, AnyOf, Contains]


@dataclass(frozen=True)
class Page:
    items: list[Document]
    # Opaque, JSON-able cursor for the next page; None on the last page.
    next_cursor: str | None


# --- writes ----------------------------------------------------------------
ANY_VERSION = -1  # for ``expected_version``: write whatever version is there


@dataclass(frozen=True)
class Insert:
    """Create a document; ``DuplicateKey`` if its ``_id`` or a unique key exists."""

    collection: str
    doc: Document


@dataclass(frozen=True)
class Put:
    """Create or replace the whole document by ``_id``.

    ``expected_version``: ``ANY_VERSION`` (default) writes unconditionally;
    ``0`` means "must not exist yet"; ``n > 0`` means "must be at version n".
    """

    collection: str
    doc: Document
    expected_version: int = ANY_VERSION


@dataclass(frozen=True)
class Update:
    """Set top-level fields of an existing document (``VersionConflict`` if it
    is missing or not at ``expected_version``)."""

    collection: str
    id: str
    set: Document
    expected_version: int = ANY_VERSION


@dataclass(frozen=True)
class Delete:
    """Remove a document. Missing documents are fine unless a version is expected."""

    collection: str
    id: str
    expected_version: int = ANY_VERSION


Write = Union[Insert, Put, Update, Delete]


class DocumentStore(Protocol):
    async def start(self, collections: Sequence[Collection]) -> None:
        """Open the store and create collections and indexes (idempotent)."""

    async def close(self) -> None: ...

    async def get(self, collection: str, id: str) -> Document | None: ...

    async def get_many(self, collection: str, ids: Sequence[str]) -> dict[str, Document]:
        """The documents that exist among ``ids``, keyed by id."""

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
        """Documents matching every condition, ordered by ``order_by`` then ``_id``.

        ``after`` is a ``Page.next_cursor`` from the same query; a cursor that
        does not decode raises ``ValueError``.
        """

    async def count(self, collection: str, where: Sequence[Condition] = ()) -> int: ...

    async def commit(self, writes: Sequence[Write]) -> None:
        """Apply all writes atomically, in order."""


@dataclass
class ScopedStore:
    """A service's view of the store: it can only name its own collections.

    Collections are stored as ``<service>.<name>``; this is how the runtime keeps
    one service from reading another's state even when they share a database.
    """

    store: DocumentStore
    service: str
    _prefix: str = field(init=False)

    def __post_init__(self) -> None:
        self._prefix = f"{self.service}."

    def name(self, collection: str) -> str:
        if "." in collection:
            raise ValueError(f"collection names are local to a service: {collection!r}")
        return self._prefix + collection

    def collections(self, specs: Sequence[Collection]) -> list[Collection]:
        return [Collection(self.name(c.name), c.indexes) for c in specs]

    async def get(self, collection: str, id: str) -> Document | None:
        return await self.store.get(self.name(collection), id)

    async def get_many(self, collection: str, ids: Sequence[str]) -> dict[str, Document]:
        return await self.store.get_many(self.name(collection), ids)

    async def find(self, collection: str, where: Sequence[Condition] = (), **kw: Any) -> Page:
        return await self.store.find(self.name(collection), where, **kw)

    async def count(self, collection: str, where: Sequence[Condition] = ()) -> int:
        return await self.store.count(self.name(collection), where)

    async def commit(self, writes: Sequence[Write]) -> None:
        await self.store.commit([_rename(w, self.name(w.collection)) for w in writes])


def _rename(write: Write, collection: str) -> Write:
    return replace(write, collection=collection)


async def retry_on_conflict(
    attempt: Callable[[], Awaitable[T]], *, attempts: int = 5, exhausted: Callable[[], Exception] | None = None
) -> T | None:
    """``await attempt()`` again while it raises ``VersionConflict``, at most ``attempts`` times.

    ``attempt`` reads what it changes afresh every time and commits
    conditionally, so a conflict only means it read a version another writer
    has since replaced. When every attempt conflicts: ``raise exhausted()``,
    or return None without ``exhausted`` (for writes another replica may
    make instead, which a later pass would redo anyway).
    """
    for _ in range(attempts):
        try:
            return await attempt()
        except VersionConflict:
            continue
    if exhausted is None:
        return None
    raise exhausted()



# --- the rules every adapter applies (before any I/O) ---------------------------------
# Collection names are dot-separated segments without "__" or edge "_" (so an
# adapter may map "." to "__" and still get distinct names). Field names end up
# in SQL expressions and MongoDB query documents: refusing "$" and anything
# else outside the pattern keeps a caller from smuggling in an operator.
_SEGMENT = r"[A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+)*"
_COLLECTION_RE = re.compile(rf"{_SEGMENT}(?:\.{_SEGMENT})*")
_FIELD_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_CURSOR_RE = re.compile(r"[A-Za-z0-9_-]+")
_INT64 = range(-(2**63), 2**63)
STORE_FIELDS = ("_id", "_version")


def check_collection_name(name: str) -> str:
    if not isinstance(name, str) or not _COLLECTION_RE.fullmatch(name):
        raise ValueError(f"invalid collection name: {name!r}")
    return name


def check_field_name(name: str) -> str:
    """A (possibly dotted) field name usable in an index, a condition or an order."""
    if not isinstance(name, str) or not _FIELD_RE.fullmatch(name):
        raise ValueError(f"invalid field name: {name!r}")
    return name


def encode_cursor(values: list[Any]) -> str:
    """An opaque cursor carrying a page's last sort values (ending with its ``_id``)."""
    raw = json.dumps(values, separators=(",", ":"), ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str, length: int, scalars: tuple[type, ...] = (bool, int, float, str)) -> list[Any]:
    """The ``length`` sort values a cursor carries (each None or of an exact type in
    ``scalars``, the last the id); ValueError for anything an adapter did not make."""
    if not isinstance(cursor, str) or not _CURSOR_RE.fullmatch(cursor):
        raise ValueError(f"invalid cursor: {cursor!r}")
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"invalid cursor: {cursor!r}") from exc
    if (
        not isinstance(values, list)
        or len(values) != length
        or not all(v is None or type(v) in scalars for v in values)
        or not isinstance(values[-1], str)  # every order ends with the id
    ):
        raise ValueError(f"invalid cursor (not from this query): {cursor!r}")
    return values


def check_json(value: Any) -> None:
    """Refuse what a document cannot hold: non-JSON types (TypeError), NaN and
    infinities, integers outside 64 bits (ValueError), non-string keys."""
    if value is None or isinstance(value, (str, bool)):
        return
    if isinstance(value, int):
        if value not in _INT64:
            raise ValueError(f"integer out of the 64-bit range: {value}")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"out of range float values are not JSON compliant: {value!r}")
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"document keys must be strings, not {key!r}")
            check_json(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            check_json(item)
    else:
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def stored(doc: Document) -> Document:
    """A copy of ``doc`` to write back, without the version the store manages: taken
    now, so changes made to ``doc`` after the write is queued don't reach it."""
    return {k: v for k, v in doc.items() if k != "_version"}


def split_document(doc: Document) -> tuple[str, Document]:
    """The ``_id`` and the body to store (no ``_id``; any ``_version`` is the store's own)."""
    if not isinstance(doc, dict):
        raise TypeError(f"a document is a dict, not {type(doc).__name__}")
    doc_id = doc.get("_id")
    if not isinstance(doc_id, str) or not doc_id:
        raise ValueError(f"a document needs a non-empty string _id, got {doc_id!r}")
    body = {k: v for k, v in doc.items() if k not in STORE_FIELDS}
    check_json(body)
    return doc_id, body


def check_update_fields(fields: Document) -> Document:
    """The fields an ``Update`` sets: top-level names only, never the store's own or an operator."""
    for name in fields:
        if name in STORE_FIELDS or not isinstance(name, str) or "." in name or name.startswith("$"):
            raise ValueError(f"Update cannot set {name!r}")
    check_json(fields)
    return fields


def field_value(body: Document, dotted: str) -> Any:
    """The value at a dotted field name; None where any part is missing."""
    value: Any = body
    for part in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def check_unique_fields(spec: Collection, body: Document) -> None:
    """A whole document must hold every field of its collection's unique indexes
    (SQLite lets NULLs repeat in a unique index, and MongoDB would index a missing
    field as null and let exactly one such document in)."""
    for index in spec.indexes:
        if index.unique:
            for name in index.fields:
                if name != "_id" and field_value(body, name) is None:
                    raise ValueError(f"{spec.name}: unique field {name!r} is missing")
