"""Browser sessions: sign-in against the configured credentials, then a
server-side session named by an unguessable cookie.

Invariants:
- A session id is 256 random bits; only its SHA-256 is stored (records.py).
- Signing in always creates a new id (no fixation); signing out deletes it.
- A session is valid on the origin it was created on, for at most
  ``IDLE_SECONDS`` without a request and ``MAX_AGE_SECONDS`` in all; an expired
  one is deleted when it is next presented, and every sign-in sweeps away up
  to ``SWEEP`` expired ones (least recently seen first), so abandoned
  sessions do not pile up.
- Secrets are compared in constant time and never stored or logged.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Mapping

from customlabels.ports.documents import (
    Delete,
    Insert,
    ScopedStore,
    Update,
    VersionConflict,
)

from services.console.records import (
    SESSIONS,
    Session,
    id_hash,
    session_doc,
    session_from_doc,
)

COOKIE = "__Host-sid"  # __Host-: Secure, Path=/, no Domain; the browser enforces it
IDLE_SECONDS = 60 * 60
MAX_AGE_SECONDS = 12 * 60 * 60
TOUCH_EVERY_SECONDS = 60  # last_seen is written at most this often per session
SWEEP = 20


def credentials_match(credentials: Mapping[str, str], access_key: str, secret: str) -> bool:
    """Whether ``secret`` is ``access_key``'s, in time that does not depend on
    how much of it matched (both sides are hashed to a fixed length first)."""
    expected = credentials.get(access_key)
    given = hashlib.sha256(secret.encode()).digest()
    wanted = hashlib.sha256((expected if expected is not None else secrets.token_hex(16)).encode()).digest()
    return hmac.compare_digest(given, wanted) and expected is not None


def csrf_matches(session: Session, token: str | None) -> bool:
    return bool(token) and hmac.compare_digest(session.csrf.encode(), token.encode())


class Sessions:
    def __init__(self, store: ScopedStore, credentials: Mapping[str, str], now: Callable[[], float] = time.time):
        self.store = store
        self.credentials = credentials
        self.now = now

    async def sign_in(self, access_key: str, secret: str, origin: str) -> tuple[str, Session] | None:
        """A new session (cookie value, session) when the pair is right, else None."""
        if not credentials_match(self.credentials, access_key, secret):
            return None
        session_id = secrets.token_urlsafe(32)
        now = self.now()
        session = Session(id_hash(session_id), access_key, secrets.token_urlsafe(32), origin, now, now)
        oldest = await self.store.find(SESSIONS, order_by=("last_seen",), limit=SWEEP)
        expired = [Delete(SESSIONS, doc["_id"]) for doc in oldest.items if self._expired(session_from_doc(doc), now)]
        await self.store.commit([Insert(SESSIONS, session_doc(session)), *expired])
        return session_id, session

    @staticmethod
    def _expired(session: Session, now: float) -> bool:
        return now - session.last_seen > IDLE_SECONDS or now - session.created > MAX_AGE_SECONDS

    async def find(self, session_id: str | None, origin: str) -> Session | None:
        """The live session this cookie names on this origin, or None."""
        if not session_id or len(session_id) > 100:
            return None
        doc = await self.store.get(SESSIONS, id_hash(session_id))
        if doc is None:
            return None
        session = session_from_doc(doc)
        now = self.now()
        if self._expired(session, now):
            await self.end(session)
            return None
        if not hmac.compare_digest(session.origin.encode(), origin.encode()):
            return None  # a cookie carried to another origin names nothing there
        if now - session.last_seen > TOUCH_EVERY_SECONDS:
            try:
                await self.store.commit([Update(SESSIONS, session.id_hash, {"last_seen": now})])
            except VersionConflict:  # signed out meanwhile
                return None
        return session

    async def end(self, session: Session) -> None:
        await self.store.commit([Delete(SESSIONS, session.id_hash)])
