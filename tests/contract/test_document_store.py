"""Contract of the document store port, run against every adapter.

Every test talks to the port only, through the ``document_store`` fixture. To
add an adapter, append a factory to ``STORE_FACTORIES``: it gets pytest's
``tmp_path`` and returns an unstarted store. Called twice with the same path it
must return stores on the same data (the reopen test relies on that), and
different paths must give independent, empty stores.

A factory may also have ``prepare(request)``, called before it is used in a
test (to reach session fixtures such as a server), and ``async
cleanup(tmp_path)``, awaited after the test's stores are closed.

The MongoDB adapter runs against SecantusDB (a MongoDB wire-protocol server
started once per session) and, where a Docker engine exists, against the
official MongoDB image; without one that variant is not collected (the run's
summary says so in one line).
"""
from __future__ import annotations

import asyncio
import hashlib
import re
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Iterator

import pytest
from motor.motor_asyncio import AsyncIOMotorClient

from customlabels.adapters.mongo_documents import MongoDocumentStore
from customlabels.adapters.sqlite_documents import SqliteDocumentStore
from customlabels.ports.documents import (
    ANY_VERSION,
    AnyOf,
    Collection,
    Contains,
    Delete,
    DocumentStore,
    DuplicateKey,
    Eq,
    Index,
    Insert,
    Put,
    ScopedStore,
    Update,
    VersionConflict,
)
from tests.support.docker import docker_variant
from tests.support.secantus import MONGO_IMAGE, mongo_replica_set_container

StoreFactory = Callable[[Path], DocumentStore]


def sqlite_store(tmp_path: Path) -> DocumentStore:
    return SqliteDocumentStore(tmp_path / "documents.sqlite3")


class MongoStoreFactory:
    """Stores on the MongoDB server a session fixture provides, one database per
    test: named after ``tmp_path``, so a second store of the test finds the same
    data, and dropped when the test is over."""

    def __init__(self, name: str, server_fixture: str) -> None:
        self.__name__ = name  # the test id
        self.server_fixture = server_fixture
        self.uri: str | None = None

    def prepare(self, request: pytest.FixtureRequest) -> None:
        self.uri = request.getfixturevalue(self.server_fixture)

    def __call__(self, tmp_path: Path) -> DocumentStore:
        assert self.uri, "prepare() first"
        return MongoDocumentStore(self.uri, database_name(tmp_path))

    async def cleanup(self, tmp_path: Path) -> None:
        client = AsyncIOMotorClient(self.uri)
        try:
            await client.drop_database(database_name(tmp_path))
        finally:
            client.close()


def database_name(tmp_path: Path) -> str:
    """Readable (the test's folder name) and unique (a hash of the whole path),
    within MongoDB's 63-character limit."""
    readable = re.sub(r"[^A-Za-z0-9_]", "_", tmp_path.name)[:40]
    return f"{readable}_{hashlib.sha1(str(tmp_path).encode()).hexdigest()[:10]}"


@pytest.fixture(scope="session")
def mongodb_container_uri() -> Iterator[str]:
    """The official MongoDB image as a one-node replica set (transactions need one)."""
    with mongo_replica_set_container() as container:
        yield container.get_connection_url()


mongo_secantus_store = MongoStoreFactory("mongo_secantus_store", "secantus_uri")
mongo_container_store = MongoStoreFactory("mongo_container_store", "mongodb_container_uri")

# Asked once, at collection (~0.1 s without an engine): without Docker the
# container variant is left out, and the run's summary says so in one line,
# rather than every contract test being skipped one by one.
STORE_FACTORIES: list[StoreFactory] = [sqlite_store, mongo_secantus_store]
if docker_variant(f"the document store contract on the {MONGO_IMAGE} image"):
    STORE_FACTORIES.append(mongo_container_store)

ITEMS = "test.items"  # general queries
ACCOUNTS = "test.accounts"  # unique single field
ENTRIES = "test.entries"  # unique pair
COLLECTIONS = [
    Collection(ITEMS, (Index(("kind",)), Index(("dataset_id", "source_ref")), Index(("rank",)))),
    Collection(ACCOUNTS, (Index(("email",), unique=True),)),
    Collection(ENTRIES, (Index(("dataset_id", "source_ref"), unique=True),)),
]


@pytest.fixture(params=STORE_FACTORIES, ids=lambda factory: factory.__name__)
async def document_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[DocumentStore]:
    factory = request.param
    if hasattr(factory, "prepare"):
        factory.prepare(request)
    store = factory(tmp_path)
    await store.start(COLLECTIONS)
    yield store
    await store.close()
    if hasattr(factory, "cleanup"):
        await factory.cleanup(tmp_path)


@pytest.fixture
async def reopen(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Callable[[], Awaitable[DocumentStore]]]:
    """Opens another store on the data of this test's ``document_store``."""
    factory: StoreFactory = request.node.callspec.params["document_store"]
    opened: list[DocumentStore] = []

    async def open_again() -> DocumentStore:
        store = factory(tmp_path)
        await store.start(COLLECTIONS)
        opened.append(store)
        return store

    yield open_again
    for store in opened:
        await store.close()


# --- helpers -----------------------------------------------------------------
async def insert_all(store: DocumentStore, collection: str, docs: list[dict[str, Any]]) -> None:
    await store.commit([Insert(collection, doc) for doc in docs])


async def walk(store: DocumentStore, collection: str, where=(), *, limit: int, **kw: Any) -> list[list[str]]:
    """Every page of a query, as lists of ids."""
    pages, cursor = [], None
    while True:
        page = await store.find(collection, where, limit=limit, after=cursor, **kw)
        pages.append([doc["_id"] for doc in page.items])
        assert len(page.items) <= limit
        cursor = page.next_cursor
        if cursor is None:
            return pages
        assert len(pages) < 10_000, "pagination does not end"


def ids(page) -> list[str]:
    return [doc["_id"] for doc in page.items]


# --- insert / get ------------------------------------------------------------------
async def test_insert_then_get_returns_the_document_with_id_and_version(document_store):
    doc = {
        "_id": "a",
        "int": 7,
        "float": 1.5,
        "whole_float": 2.0,
        "big": 2**53 + 1,
        "yes": True,
        "no": False,
        "nothing": None,
        "text": "héllo ✓ \"quoted\" \n",
        "nested": {"list": [1, "two", {"three": False}, None, 4.25], "empty": {}},
        "empty_list": [],
    }
    await document_store.commit([Insert(ITEMS, doc)])

    got = await document_store.get(ITEMS, "a")

    assert got == {**doc, "_version": 1}
    assert type(got["int"]) is int and type(got["big"]) is int
    assert type(got["whole_float"]) is float
    assert got["yes"] is True and got["no"] is False and got["nothing"] is None
    assert got["nested"]["list"][2]["three"] is False


async def test_get_of_a_missing_document_is_none(document_store):
    assert await document_store.get(ITEMS, "nope") is None


async def test_insert_of_an_existing_id_raises_duplicate_key_and_keeps_the_original(document_store):
    await document_store.commit([Insert(ITEMS, {"_id": "a", "n": 1})])

    with pytest.raises(DuplicateKey):
        await document_store.commit([Insert(ITEMS, {"_id": "a", "n": 2})])

    assert await document_store.get(ITEMS, "a") == {"_id": "a", "n": 1, "_version": 1}


async def test_a_version_in_a_written_document_is_ignored(document_store):
    await document_store.commit([Insert(ITEMS, {"_id": "a", "n": 1, "_version": 42})])
    got = await document_store.get(ITEMS, "a")
    assert got["_version"] == 1

    await document_store.commit([Put(ITEMS, {**got, "n": 2})])  # a read doc written back

    assert await document_store.get(ITEMS, "a") == {"_id": "a", "n": 2, "_version": 2}


# --- unique indexes and atomicity -----------------------------------------------
async def test_unique_index_violation_raises_and_applies_nothing_of_the_commit(document_store):
    await document_store.commit([Insert(ACCOUNTS, {"_id": "u1", "email": "a@x"})])

    with pytest.raises(DuplicateKey):
        await document_store.commit(
            [
                Insert(ACCOUNTS, {"_id": "u2", "email": "b@x"}),
                Put(ITEMS, {"_id": "side-effect", "kind": "k"}),
                Update(ACCOUNTS, "u1", {"name": "changed"}),
                Insert(ACCOUNTS, {"_id": "u3", "email": "a@x"}),  # clashes with u1
            ]
        )

    assert await document_store.get(ACCOUNTS, "u2") is None
    assert await document_store.get(ACCOUNTS, "u3") is None
    assert await document_store.get(ITEMS, "side-effect") is None
    assert await document_store.get(ACCOUNTS, "u1") == {"_id": "u1", "email": "a@x", "_version": 1}
    assert await document_store.count(ACCOUNTS) == 1


async def test_unique_index_within_one_commit(document_store):
    with pytest.raises(DuplicateKey):
        await document_store.commit(
            [Insert(ACCOUNTS, {"_id": "u1", "email": "a@x"}), Insert(ACCOUNTS, {"_id": "u2", "email": "a@x"})]
        )
    assert await document_store.count(ACCOUNTS) == 0


async def test_composite_unique_index_is_on_the_tuple_of_values(document_store):
    await insert_all(
        document_store,
        ENTRIES,
        [
            {"_id": "e1", "dataset_id": "d1", "source_ref": "a.jpg"},
            {"_id": "e2", "dataset_id": "d1", "source_ref": "b.jpg"},
            {"_id": "e3", "dataset_id": "d2", "source_ref": "a.jpg"},
        ],
    )

    with pytest.raises(DuplicateKey):
        await document_store.commit([Put(ENTRIES, {"_id": "e4", "dataset_id": "d2", "source_ref": "a.jpg"})])

    assert await document_store.count(ENTRIES) == 3


async def test_update_and_put_into_a_unique_value_raise_duplicate_key(document_store):
    await insert_all(document_store, ACCOUNTS, [{"_id": "u1", "email": "a@x"}, {"_id": "u2", "email": "b@x"}])

    with pytest.raises(DuplicateKey):
        await document_store.commit([Update(ACCOUNTS, "u2", {"email": "a@x"})])
    with pytest.raises(DuplicateKey):
        await document_store.commit([Put(ACCOUNTS, {"_id": "u2", "email": "a@x"})])

    assert await document_store.get(ACCOUNTS, "u2") == {"_id": "u2", "email": "b@x", "_version": 1}


async def test_a_unique_value_freed_earlier_in_the_commit_can_be_reused(document_store):
    await document_store.commit([Insert(ACCOUNTS, {"_id": "u1", "email": "a@x"})])

    await document_store.commit(
        [Update(ACCOUNTS, "u1", {"email": "old@x"}), Insert(ACCOUNTS, {"_id": "u2", "email": "a@x"})]
    )

    found = await document_store.find(ACCOUNTS, [Eq("email", "a@x")])
    assert ids(found) == ["u2"]


async def test_version_conflict_applies_nothing_of_the_commit(document_store):
    await document_store.commit([Insert(ITEMS, {"_id": "a", "n": 1})])

    with pytest.raises(VersionConflict):
        await document_store.commit(
            [
                Insert(ITEMS, {"_id": "b", "n": 1}),
                Update(ITEMS, "a", {"n": 2}),
                Update(ITEMS, "a", {"n": 3}, expected_version=1),  # now at 2
            ]
        )

    assert await document_store.get(ITEMS, "b") is None
    assert await document_store.get(ITEMS, "a") == {"_id": "a", "n": 1, "_version": 1}


async def test_writes_of_one_commit_apply_in_order(document_store):
    await document_store.commit(
        [
            Insert(ITEMS, {"_id": "a", "n": 1}),
            Update(ITEMS, "a", {"n": 2}, expected_version=1),
            Put(ITEMS, {"_id": "a", "m": 3}, expected_version=2),
            Insert(ITEMS, {"_id": "b"}),
            Delete(ITEMS, "b", expected_version=1),
        ]
    )

    assert await document_store.get(ITEMS, "a") == {"_id": "a", "m": 3, "_version": 3}
    assert await document_store.get(ITEMS, "b") is None


async def test_an_empty_commit_is_fine(document_store):
    await document_store.commit([])
    assert await document_store.count(ITEMS) == 0


# --- Put -------------------------------------------------------------------------
async def test_put_creates_then_replaces_the_whole_document(document_store):
    await document_store.commit([Put(ITEMS, {"_id": "a", "x": 1, "y": 2})])
    assert await document_store.get(ITEMS, "a") == {"_id": "a", "x": 1, "y": 2, "_version": 1}

    await document_store.commit([Put(ITEMS, {"_id": "a", "x": 10})])

    assert await document_store.get(ITEMS, "a") == {"_id": "a", "x": 10, "_version": 2}


async def test_put_expecting_version_zero_only_creates(document_store):
    await document_store.commit([Put(ITEMS, {"_id": "a", "x": 1}, expected_version=0)])
    assert (await document_store.get(ITEMS, "a"))["_version"] == 1

    with pytest.raises(VersionConflict):
        await document_store.commit([Put(ITEMS, {"_id": "a", "x": 2}, expected_version=0)])

    assert await document_store.get(ITEMS, "a") == {"_id": "a", "x": 1, "_version": 1}


async def test_put_expecting_a_version(document_store):
    await document_store.commit([Put(ITEMS, {"_id": "a", "x": 1})])
    await document_store.commit([Put(ITEMS, {"_id": "a", "x": 2}, expected_version=1)])
    assert await document_store.get(ITEMS, "a") == {"_id": "a", "x": 2, "_version": 2}

    with pytest.raises(VersionConflict):
        await document_store.commit([Put(ITEMS, {"_id": "a", "x": 3}, expected_version=1)])
    with pytest.raises(VersionConflict):
        await document_store.commit([Put(ITEMS, {"_id": "missing", "x": 3}, expected_version=1)])

    assert await document_store.get(ITEMS, "a") == {"_id": "a", "x": 2, "_version": 2}
    assert await document_store.get(ITEMS, "missing") is None


# --- Update ------------------------------------------------------------------------
async def test_update_sets_top_level_fields_and_bumps_the_version(document_store):
    await document_store.commit([Insert(ITEMS, {"_id": "a", "keep": "k", "n": 1, "sub": {"a": 1, "b": 2}})])

    await document_store.commit([Update(ITEMS, "a", {"n": 2, "new": [1.5], "sub": {"c": 3}, "keep2": None})])

    assert await document_store.get(ITEMS, "a") == {
        "_id": "a",
        "keep": "k",
        "n": 2,
        "new": [1.5],
        "sub": {"c": 3},  # a top-level field is replaced, not merged
        "keep2": None,
        "_version": 2,
    }


async def test_update_with_expected_version(document_store):
    await document_store.commit([Insert(ITEMS, {"_id": "a", "n": 1})])
    await document_store.commit([Update(ITEMS, "a", {"n": 2}, expected_version=1)])

    with pytest.raises(VersionConflict):
        await document_store.commit([Update(ITEMS, "a", {"n": 3}, expected_version=1)])

    assert await document_store.get(ITEMS, "a") == {"_id": "a", "n": 2, "_version": 2}


@pytest.mark.parametrize("expected", [ANY_VERSION, 0, 1])
async def test_update_of_a_missing_document_is_a_conflict(document_store, expected):
    with pytest.raises(VersionConflict):
        await document_store.commit([Update(ITEMS, "missing", {"n": 1}, expected_version=expected)])
    assert await document_store.get(ITEMS, "missing") is None


async def test_concurrent_conditional_updates_let_exactly_one_win(document_store):
    await document_store.commit([Insert(ITEMS, {"_id": "a", "winner": None})])

    results = await asyncio.gather(
        *(document_store.commit([Update(ITEMS, "a", {"winner": i}, expected_version=1)]) for i in range(10)),
        return_exceptions=True,
    )

    winners = [i for i, result in enumerate(results) if result is None]
    assert len(winners) == 1
    assert all(isinstance(r, VersionConflict) for r in results if r is not None)
    assert await document_store.get(ITEMS, "a") == {"_id": "a", "winner": winners[0], "_version": 2}


async def test_concurrent_unconditional_updates_all_apply(document_store):
    await document_store.commit([Insert(ITEMS, {"_id": "a"})])

    await asyncio.gather(*(document_store.commit([Update(ITEMS, "a", {f"f{i}": i})]) for i in range(20)))

    got = await document_store.get(ITEMS, "a")
    assert got["_version"] == 21
    assert {k: v for k, v in got.items() if k.startswith("f")} == {f"f{i}": i for i in range(20)}


# --- Delete ----------------------------------------------------------------------
async def test_delete(document_store):
    await insert_all(document_store, ITEMS, [{"_id": "a"}, {"_id": "b"}])

    await document_store.commit([Delete(ITEMS, "a"), Delete(ITEMS, "never-existed")])

    assert await document_store.get(ITEMS, "a") is None
    assert await document_store.get(ITEMS, "b") == {"_id": "b", "_version": 1}
    assert await document_store.count(ITEMS) == 1


async def test_delete_with_expected_version(document_store):
    await document_store.commit([Insert(ITEMS, {"_id": "a"}), Update(ITEMS, "a", {"n": 1})])

    with pytest.raises(VersionConflict):
        await document_store.commit([Delete(ITEMS, "a", expected_version=1)])
    assert (await document_store.get(ITEMS, "a"))["_version"] == 2

    await document_store.commit([Delete(ITEMS, "a", expected_version=2)])
    assert await document_store.get(ITEMS, "a") is None


async def test_delete_of_a_missing_document_with_expected_version_is_a_conflict(document_store):
    with pytest.raises(VersionConflict):
        await document_store.commit([Delete(ITEMS, "missing", expected_version=1)])


async def test_a_deleted_id_can_be_inserted_again_at_version_one(document_store):
    await document_store.commit([Insert(ITEMS, {"_id": "a", "n": 1}), Update(ITEMS, "a", {"n": 2})])
    await document_store.commit([Delete(ITEMS, "a")])

    await document_store.commit([Insert(ITEMS, {"_id": "a", "n": 3})])

    assert await document_store.get(ITEMS, "a") == {"_id": "a", "n": 3, "_version": 1}


# --- find: conditions ------------------------------------------------------------------
QUERY_DOCS = [
    {"_id": "d1", "kind": "cat", "rank": 1, "flag": True, "tags": ["red", "big"], "title": "Big Red Cat"},
    {"_id": "d2", "kind": "dog", "rank": 2, "flag": False, "tags": ["blue"], "title": "small blue dog"},
    {"_id": "d3", "kind": "cat", "rank": 2.5, "flag": None, "tags": [], "title": "a.b literal dot"},
    {"_id": "d4", "kind": "cat", "rank": 1, "tags": ["blue", "red"], "title": "axb no dot"},
    {"_id": "d5", "kind": "bird", "flag": 1, "tags": "red", "title": 42},  # tags: not a list
]


@pytest.fixture
async def query_store(document_store):
    await insert_all(document_store, ITEMS, QUERY_DOCS)
    return document_store


@pytest.mark.parametrize(
    "where, expected",
    [
        ([], ["d1", "d2", "d3", "d4", "d5"]),
        ([Eq("kind", "cat")], ["d1", "d3", "d4"]),
        ([Eq("kind", "fish")], []),
        ([Eq("rank", 1)], ["d1", "d4"]),
        ([Eq("rank", 2.5)], ["d3"]),
        ([Eq("flag", True)], ["d1"]),
        ([Eq("flag", False)], ["d2"]),
        ([Eq("flag", 1)], ["d5"]),  # a number is not a boolean
        ([Eq("flag", None)], ["d3", "d4"]),  # null or missing
        ([Eq("rank", None)], ["d5"]),
        ([Eq("kind", "cat"), Eq("rank", 1)], ["d1", "d4"]),
        ([Eq("kind", "cat"), Eq("rank", 2)], []),
        ([AnyOf("tags", ("red",))], ["d1", "d4"]),
        ([AnyOf("tags", ("blue", "big"))], ["d1", "d2", "d4"]),
        ([AnyOf("tags", ("green",))], []),
        ([AnyOf("tags", ())], []),
        ([AnyOf("tags", ("red",)), Eq("rank", 1), Eq("kind", "cat")], ["d1", "d4"]),
        ([Contains("title", "Red")], ["d1"]),
        ([Contains("title", "red")], []),  # case-sensitive
        ([Contains("title", "a.b")], ["d3"]),  # no pattern syntax
        ([Contains("title", "dot")], ["d3", "d4"]),
        ([Contains("title", "4")], []),  # only strings contain text
        ([Contains("title", "o"), Eq("kind", "dog")], ["d2"]),
        ([Eq("tags", "red")], ["d5"]),  # a list holding the value does not equal it
        ([Contains("tags", "re")], ["d5"]),  # nor does a list of strings contain text
    ],
)
async def test_find_conditions(query_store, where, expected):
    page = await query_store.find(ITEMS, where)

    assert ids(page) == expected
    assert page.next_cursor is None
    assert await query_store.count(ITEMS, where) == len(expected)


async def test_find_returns_whole_documents(query_store):
    page = await query_store.find(ITEMS, [Eq("kind", "dog")])
    assert page.items == [{**QUERY_DOCS[1], "_version": 1}]


async def test_find_sees_updates_and_deletes(query_store):
    await query_store.commit([Update(ITEMS, "d2", {"kind": "cat"}), Delete(ITEMS, "d1")])

    assert ids(await query_store.find(ITEMS, [Eq("kind", "cat")])) == ["d2", "d3", "d4"]
    assert await query_store.count(ITEMS, [Eq("kind", "dog")]) == 0


# --- find: ordering --------------------------------------------------------------------
async def test_find_orders_by_the_fields_then_id(query_store):
    page = await query_store.find(ITEMS, [Eq("kind", "cat")], order_by=("rank",))
    assert ids(page) == ["d1", "d4", "d3"]  # d1/d4 tie on rank 1

    page = await query_store.find(ITEMS, [Eq("kind", "cat")], order_by=("rank",), descending=True)
    assert ids(page) == ["d3", "d4", "d1"]


async def test_find_orders_numbers_as_numbers_and_strings_bytewise(document_store):
    await insert_all(
        document_store,
        ITEMS,
        [
            {"_id": "a", "kind": "n", "rank": 10},
            {"_id": "b", "kind": "n", "rank": 9.5},
            {"_id": "c", "kind": "n", "rank": -1},
            {"_id": "d", "kind": "n", "rank": 100},
        ],
    )
    page = await document_store.find(ITEMS, [Eq("kind", "n")], order_by=("rank",))
    assert ids(page) == ["c", "b", "a", "d"]

    strings = [{"_id": f"s-{i}", "kind": "s"} for i in ["b", "B", "a", "aa", "Z"]]
    await insert_all(document_store, ITEMS, strings)
    page = await document_store.find(ITEMS, [Eq("kind", "s")])
    assert ids(page) == ["s-B", "s-Z", "s-a", "s-aa", "s-b"]


@pytest.mark.parametrize("descending", [False, True])
async def test_pagination_over_a_field_of_mixed_types(document_store, descending):
    # Missing and null first, then numbers, then strings (both adapters agree on this).
    values = [None, "b", 3, "a", -1.5, None, 10, "a", 3, "", "10", 2.5]
    docs = [{"_id": f"m{i:02d}", "kind": "m", "rank": v} for i, v in enumerate(values)]
    del docs[0]["rank"]  # missing, like null
    await insert_all(document_store, ITEMS, docs)

    pages = await walk(document_store, ITEMS, [Eq("kind", "m")], order_by=("rank",), descending=descending, limit=1)

    def position(doc: dict[str, Any]) -> tuple:
        rank = doc.get("rank")
        bracket = 0 if rank is None else 1 if isinstance(rank, (int, float)) else 2
        return (bracket, rank if isinstance(rank, (int, float)) else 0, rank if isinstance(rank, str) else "", doc["_id"])

    expected = [d["_id"] for d in sorted(docs, key=position, reverse=descending)]
    assert [i for page in pages for i in page] == expected


async def test_values_that_look_like_operators_are_stored_as_data(document_store):
    doc = {"_id": "a", "kind": "$kind", "path": "$a.b", "list": ["$x", {"y": "$y"}]}
    await document_store.commit([Put(ITEMS, doc)])
    await document_store.commit([Put(ITEMS, {**doc, "more": "$$ROOT"})])
    await document_store.commit([Update(ITEMS, "a", {"set": "$inc"})])

    got = await document_store.get(ITEMS, "a")

    assert got == {**doc, "more": "$$ROOT", "set": "$inc", "_version": 3}
    assert ids(await document_store.find(ITEMS, [Eq("kind", "$kind")])) == ["a"]
    assert ids(await document_store.find(ITEMS, [Contains("more", "$$")])) == ["a"]


async def test_find_orders_by_several_fields(document_store):
    docs = [
        {"_id": "x1", "dataset_id": "d2", "source_ref": "a"},
        {"_id": "x2", "dataset_id": "d1", "source_ref": "b"},
        {"_id": "x3", "dataset_id": "d1", "source_ref": "a"},
        {"_id": "x4", "dataset_id": "d2", "source_ref": "a"},
    ]
    await insert_all(document_store, ITEMS, docs)

    page = await document_store.find(ITEMS, order_by=("dataset_id", "source_ref"))
    assert ids(page) == ["x3", "x2", "x1", "x4"]

    page = await document_store.find(ITEMS, order_by=("dataset_id", "source_ref"), descending=True)
    assert ids(page) == ["x4", "x1", "x2", "x3"]


# --- find: pagination ------------------------------------------------------------
def ranked_docs(n: int) -> list[dict[str, Any]]:
    # Many ties on rank, some documents without it, ids not in rank order.
    docs = []
    for i in range(n):
        doc = {"_id": f"doc-{(i * 37) % n:04d}", "kind": "even" if i % 2 == 0 else "odd", "seq": i}
        if i % 10 != 0:
            doc["rank"] = i % 7
        docs.append(doc)
    return docs


def sort_key(doc: dict[str, Any]) -> tuple:
    # Missing fields sort first (ascending), as in both SQLite and MongoDB.
    rank = doc.get("rank")
    return (rank is not None, rank if rank is not None else 0, doc["_id"])


@pytest.mark.parametrize("descending", [False, True])
@pytest.mark.parametrize("limit", [1, 7, 100])
async def test_pagination_visits_every_document_once_in_order(document_store, descending, limit):
    docs = ranked_docs(230)
    await insert_all(document_store, ITEMS, docs)

    pages = await walk(document_store, ITEMS, order_by=("rank",), descending=descending, limit=limit)

    expected = [d["_id"] for d in sorted(docs, key=sort_key, reverse=descending)]
    assert [i for page in pages for i in page] == expected
    assert all(len(page) == limit for page in pages[:-1])
    assert len(pages) == -(-len(docs) // limit)


@pytest.mark.parametrize("descending", [False, True])
async def test_pagination_with_a_filter_and_default_order(document_store, descending):
    docs = ranked_docs(150)
    await insert_all(document_store, ITEMS, docs)

    pages = await walk(document_store, ITEMS, [Eq("kind", "odd")], descending=descending, limit=10)

    expected = sorted((d["_id"] for d in docs if d["kind"] == "odd"), reverse=descending)
    assert [i for page in pages for i in page] == expected
    assert len(pages) == 8  # 75 documents


async def test_pagination_by_two_fields_with_an_equality(document_store):
    docs = [
        {"_id": f"e{i:03d}", "dataset_id": f"d{i % 3}", "source_ref": f"img-{i % 11:02d}.jpg"}
        for i in range(99)
    ]
    await insert_all(document_store, ITEMS, docs)

    pages = await walk(document_store, ITEMS, [Eq("dataset_id", "d1")], order_by=("source_ref",), limit=4)

    d1 = [d for d in docs if d["dataset_id"] == "d1"]
    expected = [d["_id"] for d in sorted(d1, key=lambda d: (d["source_ref"], d["_id"]))]
    assert [i for page in pages for i in page] == expected


async def test_a_full_last_page_has_no_cursor(document_store):
    await insert_all(document_store, ITEMS, [{"_id": f"d{i}"} for i in range(10)])

    page = await document_store.find(ITEMS, limit=10)
    assert len(page.items) == 10
    assert page.next_cursor is None

    first = await document_store.find(ITEMS, limit=5)
    second = await document_store.find(ITEMS, limit=5, after=first.next_cursor)
    assert ids(second) == [f"d{i}" for i in range(5, 10)]
    assert second.next_cursor is None


async def test_an_empty_collection_gives_one_empty_page(document_store):
    page = await document_store.find(ITEMS, order_by=("rank",))
    assert page.items == [] and page.next_cursor is None


async def test_cursor_is_a_json_able_value(query_store):
    import json

    page = await query_store.find(ITEMS, limit=2, order_by=("rank",))
    cursor = json.loads(json.dumps(page.next_cursor))

    again = await query_store.find(ITEMS, limit=2, order_by=("rank",), after=cursor)
    assert ids(again) == ["d4", "d2"]  # order: d5 (no rank), d1, d4, d2, d3


@pytest.mark.parametrize("descending", [False, True])
async def test_pagination_while_documents_are_inserted_and_deleted(document_store, descending):
    def doc(i: int) -> dict[str, Any]:
        return {"_id": f"k{i:03d}", "kind": "k", "rank": i // 3}

    def position(d: dict[str, Any]) -> tuple:  # in the order of the walk
        key = (d["rank"], d["_id"])
        return tuple(-x if isinstance(x, int) else _Reversed(x) for x in key) if descending else key

    originals = [doc(i) for i in range(0, 120, 2)]  # even ids; odd ones fit in between
    spare = [doc(i) for i in range(1, 120, 2)]
    await insert_all(document_store, ITEMS, originals)

    seen: list[dict[str, Any]] = []
    behind, ahead, deleted = set(), set(), set()
    cursor = None
    while True:
        page = await document_store.find(
            ITEMS, [Eq("kind", "k")], order_by=("rank",), descending=descending, limit=9, after=cursor
        )
        seen += [{k: v for k, v in d.items() if k != "_version"} for d in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
        last = position(seen[-1])
        # Insert one document the walk has passed and one it has yet to reach,
        # and delete one original it has yet to reach.
        before = [d for d in spare if position(d) < last]
        after = [d for d in spare if position(d) > last]
        unseen = [d for d in originals if position(d) > last and d["_id"] not in deleted]
        writes = []
        if before:
            writes.append(Insert(ITEMS, before[-1]))
            behind.add(before[-1]["_id"])
            spare.remove(before[-1])
        if after:
            writes.append(Insert(ITEMS, after[len(after) // 2]))
            ahead.add(after[len(after) // 2]["_id"])
            spare.remove(after[len(after) // 2])
        if len(unseen) > 3:
            writes.append(Delete(ITEMS, unseen[2]["_id"]))
            deleted.add(unseen[2]["_id"])
        await document_store.commit(writes)

    seen_ids = [d["_id"] for d in seen]
    assert len(seen_ids) == len(set(seen_ids)), "a document was returned twice"
    assert seen == sorted(seen, key=position), "out of order"
    expected = ({d["_id"] for d in originals} - deleted) | ahead
    assert set(seen_ids) == expected
    assert behind and ahead and deleted  # the test did exercise all three
    assert not behind & set(seen_ids)


class _Reversed(str):
    """A string that sorts backwards (to express descending order in a sort key)."""

    def __lt__(self, other: str) -> bool:
        return str.__gt__(self, other)

    def __gt__(self, other: str) -> bool:
        return str.__lt__(self, other)


@pytest.mark.parametrize("cursor", ["not a cursor", "%%%", "!", "\u2603", "e30=garbage=="])
async def test_an_invalid_cursor_raises_value_error(query_store, cursor):
    with pytest.raises(ValueError):
        await query_store.find(ITEMS, order_by=("rank",), after=cursor)


async def test_a_mangled_cursor_raises_value_error(query_store):
    page = await query_store.find(ITEMS, limit=2)
    with pytest.raises(ValueError):
        await query_store.find(ITEMS, limit=2, after=page.next_cursor[: len(page.next_cursor) // 2] + "@")


# --- count / get_many ------------------------------------------------------------------
async def test_count(document_store):
    assert await document_store.count(ITEMS) == 0
    await insert_all(document_store, ITEMS, ranked_docs(50))

    assert await document_store.count(ITEMS) == 50
    assert await document_store.count(ITEMS, [Eq("kind", "even")]) == 25
    assert await document_store.count(ITEMS, [Eq("kind", "even"), Eq("rank", 0)]) == 3  # i = 14, 28, 42
    assert await document_store.count(ITEMS, [Eq("rank", None)]) == 5


async def test_get_many(document_store):
    await insert_all(document_store, ITEMS, [{"_id": f"d{i}", "n": i} for i in range(5)])

    got = await document_store.get_many(ITEMS, ["d3", "missing", "d0", "d3"])

    assert got == {"d3": {"_id": "d3", "n": 3, "_version": 1}, "d0": {"_id": "d0", "n": 0, "_version": 1}}
    assert await document_store.get_many(ITEMS, []) == {}


async def test_get_many_of_many_ids(document_store):
    await insert_all(document_store, ITEMS, [{"_id": f"d{i}", "n": i} for i in range(1500)])

    got = await document_store.get_many(ITEMS, [f"d{i}" for i in range(0, 3000, 2)])

    assert set(got) == {f"d{i}" for i in range(0, 1500, 2)}
    assert got["d1498"]["n"] == 1498


# --- lifecycle ------------------------------------------------------------------
async def test_data_survives_closing_and_reopening(document_store, reopen):
    await document_store.commit(
        [
            Insert(ITEMS, {"_id": "a", "kind": "cat", "f": 0.1}),
            Insert(ACCOUNTS, {"_id": "u1", "email": "a@x"}),
            Update(ITEMS, "a", {"n": 1}),
        ]
    )
    await document_store.close()

    store = await reopen()

    assert await store.get(ITEMS, "a") == {"_id": "a", "kind": "cat", "f": 0.1, "n": 1, "_version": 2}
    assert ids(await store.find(ITEMS, [Eq("kind", "cat")])) == ["a"]
    with pytest.raises(DuplicateKey):  # the unique index is still there
        await store.commit([Insert(ACCOUNTS, {"_id": "u2", "email": "a@x"})])
    await store.commit([Update(ITEMS, "a", {"n": 2}, expected_version=2)])
    assert (await store.get(ITEMS, "a"))["_version"] == 3


async def test_start_again_with_more_collections_keeps_data(document_store):
    await document_store.commit([Insert(ITEMS, {"_id": "a"})])
    more = Collection("test.more", (Index(("tag",)), Index(("code",), unique=True)))

    await document_store.start([*COLLECTIONS, more])
    await document_store.start([more])

    await document_store.commit([Insert("test.more", {"_id": "m", "tag": "t", "code": 1})])
    assert await document_store.get(ITEMS, "a") == {"_id": "a", "_version": 1}
    assert ids(await document_store.find("test.more", [Eq("tag", "t")])) == ["m"]
    with pytest.raises(DuplicateKey):
        await document_store.commit([Insert("test.more", {"_id": "n", "tag": "u", "code": 1})])


async def test_collections_are_separate(document_store):
    await document_store.commit(
        [Insert(ITEMS, {"_id": "same"}), Insert(ENTRIES, {"_id": "same", "dataset_id": "d", "source_ref": "r"})]
    )

    assert (await document_store.get(ITEMS, "same")) == {"_id": "same", "_version": 1}
    assert await document_store.count(ITEMS) == 1
    await document_store.commit([Delete(ITEMS, "same")])
    assert await document_store.get(ENTRIES, "same") is not None


# --- ScopedStore ----------------------------------------------------------------
async def test_scoped_store_prefixes_collection_names(document_store):
    scoped = ScopedStore(document_store, "svc")
    specs = scoped.collections([Collection("things", (Index(("kind",)),))])
    assert specs == [Collection("svc.things", (Index(("kind",)),))]
    await document_store.start(specs)

    await scoped.commit(
        [Insert("things", {"_id": "t1", "kind": "x"}), Put("things", {"_id": "t2", "kind": "y"})]
    )

    assert await document_store.get("svc.things", "t1") == {"_id": "t1", "kind": "x", "_version": 1}
    assert await scoped.get("things", "t2") == {"_id": "t2", "kind": "y", "_version": 1}
    assert set(await scoped.get_many("things", ["t1", "t2"])) == {"t1", "t2"}
    assert ids(await scoped.find("things", [Eq("kind", "x")], limit=5)) == ["t1"]
    assert await scoped.count("things") == 2


@pytest.mark.parametrize("name", ["other.things", "svc.things", "."])
async def test_scoped_store_rejects_names_with_a_dot(document_store, name):
    scoped = ScopedStore(document_store, "svc")

    with pytest.raises(ValueError):
        await scoped.get(name, "x")
    with pytest.raises(ValueError):
        await scoped.commit([Insert(name, {"_id": "x"})])
    with pytest.raises(ValueError):
        scoped.collections([Collection(name)])


# --- the port's input rules (customlabels.ports.documents), applied by every adapter -------
@pytest.mark.parametrize("field", ["$where", "$set", "a.b", "_id", "_version"])
async def test_update_refuses_operators_dotted_and_store_fields_and_changes_nothing(document_store, field):
    await document_store.commit([Insert(ITEMS, {"_id": "a", "n": 1})])

    with pytest.raises(ValueError, match="Update cannot set"):
        await document_store.commit([Update(ITEMS, "a", {"n": 2, field: 1})])

    assert await document_store.get(ITEMS, "a") == {"_id": "a", "n": 1, "_version": 1}


@pytest.mark.parametrize("field", ["$where", "n; DROP TABLE x", "a..b", "1st", ""])
async def test_queries_refuse_field_names_outside_the_rule(document_store, field):
    with pytest.raises(ValueError, match="invalid field name"):
        await document_store.find(ITEMS, [Eq(field, 1)])


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, float("nan"), float("inf")])
async def test_values_a_document_cannot_hold_are_refused_by_every_adapter(document_store, value):
    with pytest.raises(ValueError):
        await document_store.commit([Insert(ITEMS, {"_id": "big", "n": value})])

    assert await document_store.get(ITEMS, "big") is None
