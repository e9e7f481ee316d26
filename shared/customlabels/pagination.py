"""NextToken values: opaque, tamper-proof, bound to the query that made them.

A token wraps a store cursor with an HMAC over (scope, cursor), where the scope
is the operation and its filters. A token that was altered, made by another
server secret, or replayed with different filters raises
``InvalidPaginationTokenException``, as the reference does.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from customlabels.errors import InvalidPaginationToken


class TokenCodec:
    def __init__(self, secret: bytes):
        self._secret = secret

    def _mac(self, scope: str, cursor: str) -> str:
        digest = hmac.new(self._secret, f"{scope}\n{cursor}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest[:18]).decode()

    def encode(self, cursor: str | None, scope: Any) -> str | None:
        if cursor is None:
            return None
        scope_key = _scope_key(scope)
        body = base64.urlsafe_b64encode(cursor.encode()).decode()
        return f"{body}.{self._mac(scope_key, cursor)}"

    def decode(self, token: str | None, scope: Any) -> str | None:
        if not token:
            return None
        try:
            body, mac = token.rsplit(".", 1)
            cursor = base64.urlsafe_b64decode(body.encode()).decode()
        except (ValueError, UnicodeDecodeError):
            raise InvalidPaginationToken("NextToken is not a token this service issued") from None
        if not hmac.compare_digest(mac, self._mac(_scope_key(scope), cursor)):
            raise InvalidPaginationToken(
                "NextToken does not match this request: pass the token unchanged, with the same filters"
            )
        return cursor


def _scope_key(scope: Any) -> str:
    return json.dumps(scope, sort_keys=True, default=str)
