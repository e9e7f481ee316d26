"""List operations over the store with filters it cannot express (time ranges).

The store queries equality on indexed fields and pages in a stable order;
``page`` reads it in that order and keeps what ``keep`` accepts, asking the
store for no more than still fits the page, so a page never overshoots and
the store's cursor after the last read document is the next token. In a
time-ordered scan ``keep`` answers ``STOP`` past the range's far end.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from customlabels import errors
from customlabels.pagination import TokenCodec
from customlabels.ports.documents import ScopedStore

STOP = None  # what ``keep`` returns past the end of a time range


async def page(store: ScopedStore, tokens: TokenCodec, collection: str, where: Sequence, *, order_by: Sequence[str],
               descending: bool, limit: int, token: str | None, scope: Any,
               keep: Callable[[dict], bool | None] = lambda doc: True) -> tuple[list[dict], str | None]:
    """(documents, next token); a token from another query is a ValidationException."""
    try:
        cursor = tokens.decode(token, scope)
    except errors.InvalidPaginationToken as bad:
        raise errors.InvalidParameter(str(bad)) from None
    found: list[dict] = []
    while len(found) < limit:
        batch = await store.find(collection, list(where), order_by=order_by, descending=descending,
                                 limit=limit - len(found), after=cursor)
        for doc in batch.items:
            verdict = keep(doc)
            if verdict is STOP:
                return found, None
            if verdict:
                found.append(doc)
        cursor = batch.next_cursor
        if cursor is None:
            return found, None
    return found, tokens.encode(cursor, scope)


def in_range(ms: int, after: datetime | None, before: datetime | None, *, descending: bool) -> bool | None:
    """Whether a creation time lies in [after, before); STOP once a scan in that order has passed the range."""
    if after is not None and ms < after.timestamp() * 1000:
        return STOP if descending else False
    if before is not None and ms >= before.timestamp() * 1000:
        return False if descending else STOP
    return True
