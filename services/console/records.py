"""What the console keeps: browser sessions (its only collection) and thumbnails.

A session document is stored under the SHA-256 of the cookie's value, never
the value itself, so whoever reads the document store cannot sign in with
what they find there. Thumbnails are derived data in the console's own
internal bucket, addressed by the image version they were made from.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from customlabels.ports.blobs import RESERVED_BUCKET_PREFIX
from customlabels.ports.documents import Collection, Index

SESSIONS = "sessions"
COLLECTIONS = (Collection(SESSIONS, (Index(("last_seen",)),)),)  # the least recently seen are swept first

# Thumbnails: a bucket no user can name (``check_user_address`` refuses the
# reserved prefix), written and read by the console alone.
THUMBNAILS_BUCKET = f"{RESERVED_BUCKET_PREFIX}-console"


@dataclass(frozen=True)
class Session:
    """A signed-in browser.

    ``origin`` is the scheme://host the session was created on: a cookie
    replayed on any other origin finds no session. ``csrf`` is the token every
    state-changing request must echo. Times are epoch seconds.
    """

    id_hash: str
    access_key: str
    csrf: str
    origin: str
    created: float
    last_seen: float


def id_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def session_doc(session: Session) -> dict:
    return {
        "_id": session.id_hash,
        "access_key": session.access_key,
        "csrf": session.csrf,
        "origin": session.origin,
        "created": session.created,
        "last_seen": session.last_seen,
    }


def session_from_doc(doc: dict) -> Session:
    return Session(doc["_id"], doc["access_key"], doc["csrf"], doc["origin"], doc["created"], doc["last_seen"])
