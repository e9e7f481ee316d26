"""Document store port: the one way services keep state.

A document is a JSON-able dict with a string ``_id``. The store adds ``_version``
(an integer bumped by every write) so callers can do optimistic, conditional
updates. All writes of one ``commit`` are atomic: either every write applies or
none does. Queries filter on declared indexed fields and page with an opaque
cursor in a stable order (the sort fields, then ``_id``).

Adapters: ``customlabels.adapters.sqlite_documents`` (embedded) and, later, a
MongoDB adapter. Both must pass ``tests/contract/test_document_store.py``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence, Union

Document = dict[str, Any]


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
    from dataclasses import replace

    return replace(write, collection=collection)
