"""May another account copy a model version? The source project's policies decide (PutProjectPolicy).

CopyProjectVersion into another account is allowed only where a policy of the
source project allows the destination account, as Rekognition evaluates a
project policy (an IAM resource-based policy):

* A statement applies when its ``Principal`` names the destination account
  (``"*"``, ``{"AWS": "*"}``, ``{"AWS": "<account>"}``,
  ``{"AWS": "arn:aws:iam::<account>:root"}``, or a list of these), its
  ``Action`` matches ``rekognition:CopyProjectVersion`` (wildcards ``*`` and
  ``?``, case-insensitive, as IAM matches actions) and its ``Resource`` matches
  the source version's ARN (wildcards, case-sensitive). ``NotPrincipal``,
  ``NotAction`` and ``NotResource`` match what their lists do not.
* A Deny that applies refuses, whatever any statement allows; else an Allow
  that applies permits; else the copy is refused.
* Conditions are not evaluated here: a statement with a ``Condition`` grants
  nothing as an Allow and refuses as a Deny (where in doubt, refuse).

Pure: the training service reads the policies (ListProjectPolicies, in its own
name) and asks ``allows``.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

ACTION = "rekognition:CopyProjectVersion"
_ROOT = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}):root$")


def allows(documents: Iterable[str], account: str, resource: str, action: str = ACTION) -> bool:
    """Whether the policy ``documents`` (JSON text) let ``account`` perform ``action`` on ``resource``."""
    allowed = False
    for statement in _statements(documents):
        if not _applies(statement, account, resource, action):
            continue
        if statement.get("Effect") == "Deny":
            return False
        if statement.get("Effect") == "Allow" and "Condition" not in statement:
            allowed = True
    return allowed


def _statements(documents: Iterable[str]) -> Iterable[dict[str, Any]]:
    for document in documents:
        try:
            policy = json.loads(document)
        except ValueError:
            continue  # PutProjectPolicy refuses these; nothing stored so grants anything
        statements = policy.get("Statement") if isinstance(policy, dict) else None
        for statement in statements if isinstance(statements, list) else [statements]:
            if isinstance(statement, dict):
                yield statement


def _applies(statement: dict[str, Any], account: str, resource: str, action: str) -> bool:
    return (_matches(statement, "Principal", lambda p: _principal_names(p, account))
            and _matches(statement, "Action", lambda pattern: _wildcard(str(pattern), action, re.IGNORECASE))
            and _matches(statement, "Resource", lambda pattern: _wildcard(str(pattern), resource)))


def _matches(statement: dict[str, Any], element: str, match) -> bool:
    """The element (or its ``Not`` form) matched; a statement with neither names nothing."""
    if element in statement:
        return any(match(item) for item in _items(statement[element], element))
    if f"Not{element}" in statement:
        return not any(match(item) for item in _items(statement[f"Not{element}"], element))
    return False


def _items(value: Any, element: str) -> list:
    if element == "Principal":
        if value == "*":
            return ["*"]
        if isinstance(value, dict):
            value = value.get("AWS", [])
    return value if isinstance(value, list) else [value]


def _wildcard(pattern: str, value: str, flags: int = 0) -> bool:
    """IAM's matching: ``*`` any run of characters, ``?`` any one, everything else itself."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, flags | re.DOTALL) is not None


def _principal_names(principal: Any, account: str) -> bool:
    principal = str(principal)
    root = _ROOT.match(principal)
    return principal in ("*", account) or (root is not None and root.group(1) == account)
