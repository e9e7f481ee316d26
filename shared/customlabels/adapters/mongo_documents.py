"""Distributed document store: the documents port on MongoDB, through motor.

Layout: one MongoDB collection per port collection, same name, in the database
given to the constructor. A stored document is the port's document as is, plus
the integer ``_version`` field that the store maintains.

Decisions (the SQLite adapter is the reference; differences are listed last):

* Indexes. A declared ``Index`` becomes a MongoDB index created at ``start``
  (``create_index`` is a no-op for an identical existing index). A non-unique
  index gets ``_id`` appended, so "filter on the fields, order by ``_id``" (the
  default order of ``find``) is served by the index without a sort stage.
  MongoDB's unique indexes treat a missing field as null, so, like the SQLite
  adapter, writes missing a unique field raise ``ValueError``.
* Commits. ``commit`` is one multi-document transaction with write concern
  "majority", run by motor's ``with_transaction``: it retries the whole
  transaction on ``TransientTransactionError`` (a write conflict with a
  concurrent transaction) and the commit on ``UnknownTransactionCommitResult``.
  Retries back off with jitter so that many commits on one hot document do not
  spin. Any other error aborts the transaction: nothing of the commit applies.
* Versions. Conditional writes put the expected ``_version`` in the write's
  filter, so the check and the write are one atomic document operation; no
  match means ``VersionConflict``. ``Put`` with ``ANY_VERSION`` must replace the
  document and bump its version in one step, which a replacement cannot do
  (no ``$inc``); it is an update with an aggregation pipeline instead:
  ``$replaceWith`` the new body (wrapped in ``$literal`` so strings such as
  ``"$x"`` stay data) merged with ``_version: ifNull($_version, 0) + 1``,
  upserted. That is one round trip with no read, and correct outside a
  transaction too.
* Batching. Consecutive unconditional writes (``Insert``, ``Put`` with
  ``ANY_VERSION``, ``Delete`` with ``ANY_VERSION``) to one collection go to the
  server as one ordered ``bulk_write`` inside the transaction: a 500-document
  commit is one round trip instead of 500. Conditional writes need their own
  match count, so they are sent one by one.
* Queries. ``Eq`` on a field also guards against arrays (MongoDB's ``{f: v}``
  would match a list holding ``v``; the port's ``Eq`` compares scalars), and
  ``Contains`` likewise only looks at string fields, not lists of strings.
  ``AnyOf`` uses ``$elemMatch``, which only matches arrays. BSON keeps booleans
  and numbers apart, so ``Eq(f, 1)`` never matches ``true``.
* Order and pages. ``find`` sorts by the ``order_by`` fields then ``_id`` in
  one direction. The cursor is the last document's sort values; the next page
  is a rooted ``$or`` of keyset segments ("equal on the first i keys, beyond on
  key i"), each combined with the query's conditions so every branch can use
  an index. MongoDB's ``$gt``/``$lt`` only compare values of the same BSON
  type bracket while sort order spans brackets (null < numbers < strings <
  objects < booleans), so "beyond" also names the later brackets with
  ``$type``. Missing fields sort as null: first ascending, last descending, as
  in the SQLite adapter.

Differences from the SQLite adapter (the port does not pin these down):

* A field holding booleans, objects or lists sorts in BSON order (booleans
  after strings); SQLite sorts booleans as 0/1 and objects and lists as their
  JSON text. Paging past a document whose sort field is an object or a list
  raises ``TypeError`` (MongoDB sorts lists by their smallest or largest
  element, which no keyset can express).
* Dotted field names look through lists of objects in MongoDB, not in SQLite.
* Driver errors other than duplicate keys (no server, timeouts) propagate as
  pymongo exceptions, not ``DocumentStoreError``.
"""
from __future__ import annotations

import asyncio
import functools
import random
import re
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Sequence

from bson.codec_options import TypeDecoder, TypeRegistry
from bson.int64 import Int64
from motor.motor_asyncio import (
    AsyncIOMotorClient,
    AsyncIOMotorClientSession,
    AsyncIOMotorCollection,
    AsyncIOMotorDatabase,
)
from pymongo import ASCENDING, DESCENDING, DeleteOne, InsertOne, UpdateOne, WriteConcern
from pymongo.errors import BulkWriteError, CollectionInvalid, DuplicateKeyError, OperationFailure

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
    field_value,
    split_document,
)

Filter = dict[str, Any]
Session = AsyncIOMotorClientSession


_GET_MANY_CHUNK = 1000  # keeps each $in far below the 16 MB command limit
_NAMESPACE_EXISTS = 48  # server error code of a concurrent create_collection
_DUPLICATE_KEY = 11000
_MAJORITY = WriteConcern("majority")
_RETRY_BASE_S = 0.002  # first backoff after a write conflict
_RETRY_CAP_S = 0.1


class _Int64AsInt(TypeDecoder):
    """pymongo decodes BSON int64 as ``bson.Int64``; the port promises plain ints."""

    bson_type = Int64

    def transform_bson(self, value: Int64) -> int:
        return int(value)


class MongoDocumentStore:
    """``DocumentStore`` on the MongoDB database ``database`` at ``uri``.

    The server must be MongoDB 4.2 or later (pipeline updates) and support
    multi-document transactions: a replica set or a sharded cluster (a
    one-node replica set is enough).
    """

    def __init__(self, uri: str, database: str) -> None:
        self._uri = uri
        self._database_name = database
        self._client: AsyncIOMotorClient | None = None
        self._collections: dict[str, Collection] = {}
        self._closed = False

    # --- lifecycle ---------------------------------------------------------
    async def start(self, collections: Sequence[Collection]) -> None:
        if self._closed:
            raise DocumentStoreError("store is closed")
        collections = list(collections)
        for spec in collections:  # validate everything before creating anything
            check_collection_name(spec.name)
            for index in spec.indexes:
                _index_keys(index)
        if self._client is None:
            # Created here, not in __init__: motor binds to the running loop.
            self._client = AsyncIOMotorClient(self._uri, type_registry=TypeRegistry([_Int64AsInt()]))
        existing = set(await self._db.list_collection_names())
        for spec in collections:
            await self._create_collection(spec, exists=spec.name in existing)
            self._collections[spec.name] = spec

    async def close(self) -> None:
        self._closed = True
        if self._client is not None:
            self._client.close()
            self._client = None

    # --- reads -------------------------------------------------------------
    async def get(self, collection: str, id: str) -> Document | None:
        return await self._collection(collection).find_one({"_id": id})

    async def get_many(self, collection: str, ids: Sequence[str]) -> dict[str, Document]:
        coll = self._collection(collection)
        unique_ids = list(dict.fromkeys(ids))
        found: dict[str, Document] = {}
        for start in range(0, len(unique_ids), _GET_MANY_CHUNK):
            chunk = unique_ids[start : start + _GET_MANY_CHUNK]
            async for doc in coll.find({"_id": {"$in": chunk}}):
                found[doc["_id"]] = doc
        return found

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
        coll = self._collection(collection)
        keys = _sort_keys(order_by)
        query = _where_filter(where)
        if after is not None:
            query = _after_filter(query, keys, decode_cursor(after, len(keys)), descending)
        direction = DESCENDING if descending else ASCENDING
        cursor = coll.find(query, sort=[(key, direction) for key in keys], limit=limit + 1)
        docs = await cursor.to_list(length=limit + 1)
        more = len(docs) > limit
        docs = docs[:limit]
        next_cursor = encode_cursor([_sort_value(docs[-1], key) for key in keys]) if more else None
        return Page(items=docs, next_cursor=next_cursor)

    async def count(self, collection: str, where: Sequence[Condition] = ()) -> int:
        return await self._collection(collection).count_documents(_where_filter(where))

    # --- writes ------------------------------------------------------------
    async def commit(self, writes: Sequence[Write]) -> None:
        if not writes:
            return
        steps = self._plan(list(writes))  # validates everything before any I/O
        attempts = 0

        async def run(session: Session) -> None:
            nonlocal attempts
            if attempts:  # with_transaction is retrying after a write conflict
                await asyncio.sleep(_backoff(attempts))
            attempts += 1
            for step in steps:
                await step.run(session)

        async with await self._require_client().start_session() as session:
            await session.with_transaction(run, write_concern=_MAJORITY)

    # --- plumbing ------------------------------------------------------------
    @property
    def _db(self) -> AsyncIOMotorDatabase:
        return self._require_client()[self._database_name]

    def _require_client(self) -> AsyncIOMotorClient:
        if self._client is None:
            raise DocumentStoreError("store is not started (or already closed)")
        return self._client

    def _collection(self, name: str) -> AsyncIOMotorCollection:
        """The MongoDB collection of a collection declared in ``start``."""
        client = self._require_client()
        if name not in self._collections:
            raise DocumentStoreError(f"collection {name!r} was not declared in start()")
        return client[self._database_name][name]

    async def _create_collection(self, spec: Collection, *, exists: bool) -> None:
        # Created explicitly so that the first write to it may happen inside a
        # transaction whatever the server's rules on implicit creation there.
        if not exists:
            try:
                await self._db.create_collection(spec.name)
            except CollectionInvalid:
                pass  # another process created it meanwhile
            except OperationFailure as exc:
                if exc.code != _NAMESPACE_EXISTS:
                    raise
        coll = self._db[spec.name]
        for index in spec.indexes:
            await coll.create_index(_index_keys(index), unique=index.unique)

    def _plan(self, writes: list[Write]) -> list[_BulkStep | _CheckedStep]:
        """The steps of a commit, validating every write: runs of unconditional
        writes to one collection become one ordered bulk write; each conditional
        write is a step of its own (its match count must be checked)."""
        steps: list[_BulkStep | _CheckedStep] = []
        for write in writes:
            if not isinstance(write, (Insert, Put, Update, Delete)):
                raise TypeError(f"not a write: {write!r}")
            coll = self._collection(write.collection)
            prepared = _prepare(self._collections[write.collection], write)
            if not isinstance(prepared, (InsertOne, UpdateOne, DeleteOne)):
                steps.append(_CheckedStep(coll, prepared))
            elif steps and isinstance(steps[-1], _BulkStep) and steps[-1].coll.name == coll.name:
                steps[-1].ops.append(prepared)
            else:
                steps.append(_BulkStep(coll, [prepared]))
        return steps


def _backoff(attempts: int) -> float:
    """Seconds to wait before retrying a transaction: full jitter, capped
    exponential, so that commits contending for one document spread out."""
    return random.uniform(0, min(_RETRY_CAP_S, _RETRY_BASE_S * 2 ** min(attempts, 16)))


# --- names and indexes ----------------------------------------------------------
def _index_keys(index: Index) -> list[tuple[str, int]]:
    if not index.fields:
        raise ValueError("an index needs at least one field")
    keys = [(check_field_name(name), ASCENDING) for name in index.fields]
    if not index.unique and "_id" not in index.fields:
        # Entries then come in (fields, _id) order: find's default order.
        keys.append(("_id", ASCENDING))
    return keys


# --- documents --------------------------------------------------------------------
def _check_unique_fields_set(spec: Collection, fields: Document) -> None:
    """Like ``check_unique_fields`` for an Update: only the top-level fields it
    replaces can lose a unique field (the stored document had them all)."""
    for index in spec.indexes:
        if index.unique:
            for name in index.fields:
                if name.split(".")[0] in fields and field_value(fields, name) is None:
                    raise ValueError(f"{spec.name}: unique field {name!r} is missing")


# --- writes ---------------------------------------------------------------------
BulkOp = InsertOne | UpdateOne | DeleteOne
# A conditional write, ready to run: raises VersionConflict when it matches nothing.
CheckedWrite = Callable[[AsyncIOMotorCollection, Session], Awaitable[None]]


@dataclass
class _BulkStep:
    coll: AsyncIOMotorCollection
    ops: list[BulkOp]

    async def run(self, session: Session) -> None:
        try:
            await self.coll.bulk_write(self.ops, ordered=True, session=session)
        except BulkWriteError as exc:
            first = (exc.details.get("writeErrors") or [{}])[0]  # ordered: it stopped there
            if first.get("code") == _DUPLICATE_KEY:
                raise DuplicateKey(first.get("errmsg", str(exc))) from exc
            raise


@dataclass
class _CheckedStep:
    coll: AsyncIOMotorCollection
    write: CheckedWrite

    async def run(self, session: Session) -> None:
        try:
            await self.write(self.coll, session)
        except DuplicateKeyError as exc:
            raise DuplicateKey(str(exc)) from exc


def _prepare(spec: Collection, write: Write) -> BulkOp | CheckedWrite:
    """Validate a write and turn it into a bulk operation (unconditional) or a
    checked write (conditional)."""
    if isinstance(write, Insert):
        doc_id, body = split_document(write.doc)
        check_unique_fields(spec, body)
        return InsertOne(_stored(doc_id, body, 1))
    if isinstance(write, Put):
        _check_expected(write.expected_version)
        doc_id, body = split_document(write.doc)
        check_unique_fields(spec, body)
        if write.expected_version == ANY_VERSION:
            return UpdateOne({"_id": doc_id}, _replace_and_bump(doc_id, body), upsert=True)
        if write.expected_version == 0:
            return functools.partial(_insert_new, doc_id, body)
        return functools.partial(_replace_at, doc_id, body, write.expected_version)
    if isinstance(write, Update):
        _check_expected(write.expected_version)
        _check_unique_fields_set(spec, check_update_fields(write.set))
        return functools.partial(_update, write.id, write.set, write.expected_version)
    _check_expected(write.expected_version)
    if write.expected_version == ANY_VERSION:
        return DeleteOne({"_id": write.id})
    return functools.partial(_delete_at, write.id, write.expected_version)


def _stored(doc_id: str, body: Document, version: int) -> Document:
    return {"_id": doc_id, **body, "_version": version}


def _replace_and_bump(doc_id: str, body: Document) -> list[Filter]:
    """Update pipeline: replace the document with ``body``, version + 1 (1 if new)."""
    version = {"$add": [{"$ifNull": ["$_version", 0]}, 1]}
    return [{"$replaceWith": {"$mergeObjects": [{"$literal": body}, {"_id": doc_id, "_version": version}]}}]


def _check_expected(expected: int) -> None:
    if expected != ANY_VERSION and (not isinstance(expected, int) or expected < 0):
        raise ValueError(f"expected_version must be ANY_VERSION, 0 or positive, not {expected!r}")


async def _insert_new(
    doc_id: str, body: Document, coll: AsyncIOMotorCollection, session: Session
) -> None:
    """Put expecting version 0: "must not exist yet" is an insert."""
    try:
        await coll.insert_one(_stored(doc_id, body, 1), session=session)
    except DuplicateKeyError as exc:
        if _is_id_clash(exc):  # a clash on a unique index stays DuplicateKey
            raise VersionConflict(f"{coll.name}/{doc_id}: expected no document, found one") from exc
        raise


async def _replace_at(
    doc_id: str, body: Document, expected: int, coll: AsyncIOMotorCollection, session: Session
) -> None:
    query = {"_id": doc_id, "_version": expected}
    result = await coll.replace_one(query, _stored(doc_id, body, expected + 1), session=session)
    if result.matched_count == 0:
        raise VersionConflict(f"{coll.name}/{doc_id}: missing or not at version {expected}")


async def _update(
    doc_id: str, fields: Document, expected: int, coll: AsyncIOMotorCollection, session: Session
) -> None:
    query: Filter = {"_id": doc_id}
    if expected != ANY_VERSION:
        query["_version"] = expected
    change: Filter = {"$inc": {"_version": 1}}
    if fields:
        change["$set"] = fields
    result = await coll.update_one(query, change, session=session)
    if result.matched_count == 0:  # an Update of a missing document is a conflict too
        raise VersionConflict(f"{coll.name}/{doc_id}: missing or not at version {expected}")


async def _delete_at(
    doc_id: str, expected: int, coll: AsyncIOMotorCollection, session: Session
) -> None:
    result = await coll.delete_one({"_id": doc_id, "_version": expected}, session=session)
    if result.deleted_count == 0:
        raise VersionConflict(f"{coll.name}/{doc_id}: missing or not at version {expected}")


def _is_id_clash(exc: DuplicateKeyError) -> bool:
    """Whether a duplicate key error is on ``_id`` (not on a unique index)."""
    details = exc.details or {}
    if "keyPattern" in details:
        return details["keyPattern"] == {"_id": 1}
    return "index: _id_ " in str(details.get("errmsg", exc))


# --- conditions --------------------------------------------------------------------
_NOT_ARRAY = {"$not": {"$type": "array"}}


def _where_filter(conditions: Sequence[Condition]) -> Filter:
    parts = [_condition_filter(cond) for cond in conditions]
    if not parts:
        return {}
    return parts[0] if len(parts) == 1 else {"$and": parts}


def _condition_filter(cond: Condition) -> Filter:
    if isinstance(cond, Eq):
        return _eq_filter(cond)
    if isinstance(cond, AnyOf):
        return _any_of_filter(cond)
    if isinstance(cond, Contains):
        return _contains_filter(cond)
    raise TypeError(f"not a condition: {cond!r}")


def _check_scalar(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float)):  # bool is an int
        return value
    raise TypeError(f"condition values must be str, int, float, bool or None, not {value!r}")


def _eq_filter(cond: Eq) -> Filter:
    name, value = check_field_name(cond.field), _check_scalar(cond.value)
    if name in ("_id", "_version"):  # never arrays
        return {name: value}
    # {f: v} alone also matches a list holding v; null also matches a missing field.
    return {name: {"$eq": value, **_NOT_ARRAY}}


def _any_of_filter(cond: AnyOf) -> Filter:
    name = check_field_name(cond.field)
    if name in ("_id", "_version"):
        raise ValueError(f"AnyOf needs a list field, not {name}")
    values = [_check_scalar(value) for value in cond.values]
    if not values:
        return {"_id": {"$in": []}}  # matches nothing
    # $elemMatch only matches arrays: a plain "red" is not a list holding "red".
    return {name: {"$elemMatch": {"$in": values}}}


def _contains_filter(cond: Contains) -> Filter:
    if not isinstance(cond.text, str):
        raise TypeError(f"Contains needs a string, not {cond.text!r}")
    name = check_field_name(cond.field)
    # re.escape leaves no pattern syntax (PCRE reads "\<punctuation>" literally);
    # MongoDB refuses a NUL byte in a pattern, so spell it as an escape.
    pattern = re.escape(cond.text).replace("\x00", "\\x00")
    if name == "_id":
        return {name: {"$regex": pattern}}
    # $regex only matches strings (numbers are never stringified) but, like
    # equality, also matches lists holding a matching string.
    return {name: {"$regex": pattern, **_NOT_ARRAY}}


# --- ordering and keyset pagination ---------------------------------------------
# BSON sort order of the values a sort field may hold; a missing field sorts as
# null. Lists are left out: MongoDB sorts them by their smallest or largest
# element, which no keyset can follow (see _sort_value).
_BRACKETS = ("null", "number", "string", "object", "bool")


def _sort_keys(order_by: Sequence[str]) -> list[str]:
    """The fields to order by, then ``_id`` (a total order)."""
    keys = []
    for name in order_by:
        keys.append(check_field_name(name))
        if name == "_id":  # already total; later fields never matter
            return keys
    return keys + ["_id"]


def _sort_value(doc: Document, key: str) -> Any:
    value = field_value(doc, key)
    if isinstance(value, (dict, list)):
        kind = type(value).__name__
        raise TypeError(f"cannot page past {doc['_id']!r}: its sort field {key!r} holds a {kind}")
    return value


def _after_filter(query: Filter, keys: list[str], values: list[Any], descending: bool) -> Filter:
    """``query`` restricted to what sorts after ``values``: a rooted ``$or`` of
    disjoint keyset segments, each carrying the query so it can use an index."""
    base = [query] if query else []
    branches = []
    for i, (key, value) in enumerate(zip(keys, values)):
        prefix = [{k: v} for k, v in zip(keys[:i], values[:i])]  # {k: None}: null or missing
        for beyond in _beyond(key, value, descending):
            parts = [*base, *prefix, beyond]
            branches.append(parts[0] if len(parts) == 1 else {"$and": parts})
    if not branches:
        return {"_id": {"$in": []}}  # nothing sorts after the last document
    return branches[0] if len(branches) == 1 else {"$or": branches}


def _beyond(key: str, value: Any, descending: bool) -> list[Filter]:
    """Filters for "``key`` sorts after ``value``" in the walk's direction.

    ``$gt``/``$lt`` compare within one type bracket, so the brackets beyond
    ``value``'s are added with ``$type``; null (or missing) is the first bracket.
    """
    if key in ("_id", "_version"):  # always a string / an integer
        return [{key: {"$lt" if descending else "$gt": value}}]
    rank = _BRACKETS.index(_bracket(value))
    if not descending:
        filters = [] if value is None else [{key: {"$gt": value}}]
        later = list(_BRACKETS[rank + 1 :])
        if later:
            filters.append({key: {"$type": later}})
        return filters
    if value is None:
        return []  # descending, null (or missing) comes last
    filters = [{key: {"$lt": value}}]
    earlier = list(_BRACKETS[1:rank])  # not null: it comes last, below
    if earlier:
        filters.append({key: {"$type": earlier}})
    return filters + [{key: None}]


def _bracket(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return "string"
