"""The one request path for operations handled in this process.

resolve the operation -> validate against its API's model -> call the owner's
handler -> check the result against the model (in tests) -> serialize ->
answer errors in the API's own names and wire form.

Every way into a handler goes through ``Dispatch``:

* ``handle`` (a ``WireRequest`` in, a ``WireResponse`` out): the gateway in
  embedded mode, and every service's internal HTTP API;
* ``call`` (boto3-style params in, the result as a client reads it back out):
  services calling each other and the console, in process.

Invariants:

* A handler only ever sees params its model accepts: from the wire they
  are decoded and validated (``ApiModel.parse_document``); in process they
  are validated by the same checks (``ApiModel.validate_params``), and a
  dict no client could send (a wrong type, a broken constraint, a member the
  model lacks) is refused with the error a client would get
  (``InvalidParameterException``, ``ValidationException``,
  ``SerializationException``...).
* Errors leave in the API's terms: ``Api.name_error`` renames the generic
  ``customlabels.errors`` classes in place, so in-process callers can still
  ``except errors.ResourceNotFound`` and HTTP clients get the API's codes.
* With ``check_responses`` (``CUSTOMLABELS_CHECK_RESPONSES=1``, which the
  test suite sets), every result must fit its operation's output shape,
  unknown members included; a mismatch is a 500 naming every problem. Without
  it, members the model lacks are dropped, as a client would never see them.
* Who is calling: while a handler runs, ``current_caller()`` is the access
  key whose signature the gateway verified (a reviewer, an account's key)
  with its account, also in the calls it makes to other services, in process
  or over HTTP (``CALLER_HEADER``, which the gateway always sets itself);
  None where no signed request started the work (event handlers, or work a
  service does in its own name: ``acting_as(None)``).
* Accounts kept apart, at every handler's door: a request made for a caller
  may name only that caller's account in its ARNs (``Caller.check_arns``),
  except the members an operation lets name another account
  (``FOREIGN_ARN_MEMBERS``: the source of CopyProjectVersion, which its owner
  checks against the source project's policy). Another account's ARN is
  AccessDeniedException, as AWS answers it; nothing runs.
"""
from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Mapping

from customlabels import errors
from customlabels.ports.operations import OperationHandler, Operations
from customlabels.wire.apis import Api, api_of
from customlabels.wire.protocols import WireRequest, WireResponse
from customlabels.wire.table import OWNERS

CHECK_RESPONSES_ENV = "CUSTOMLABELS_CHECK_RESPONSES"
# The verified caller (``<account>:<access key>``), from the gateway to the owner (internal network only).
CALLER_HEADER = "x-customlabels-caller"

# Our ARNs carry their account as the fifth field: arn:aws:<service>:<region>:<account>:<resource>.
_ACCOUNT_IN_ARN = re.compile(r"arn:aws[a-z-]*:(?:rekognition|sagemaker):[a-z0-9-]*:(\d{12}):")
# operation -> the members that may name another account's resource (their owner checks the permission).
FOREIGN_ARN_MEMBERS: Mapping[str, frozenset[str]] = {
    "CopyProjectVersion": frozenset({"SourceProjectArn", "SourceProjectVersionArn"}),
}


@dataclass(frozen=True)
class Caller:
    """Who signed the request being served: an access key and the account it belongs to."""

    access_key: str
    account: str

    def header(self) -> str:
        return f"{self.account}:{self.access_key}"

    @classmethod
    def from_header(cls, value: str | None) -> "Caller | None":
        account, _, key = (value or "").partition(":")
        return cls(key, account) if key and len(account) == 12 and account.isdigit() else None

    def check_arns(self, operation: str, params: Mapping[str, Any]) -> None:
        """AccessDenied if ``params`` name another account's resource where the operation allows none."""
        allowed = FOREIGN_ARN_MEMBERS.get(operation, frozenset())
        for member, value in _string_members(params):
            if member in allowed:
                continue
            match = _ACCOUNT_IN_ARN.match(value)
            if match and match.group(1) != self.account:
                raise errors.AccessDenied(
                    f"User {self.access_key} of account {self.account} is not authorized to perform "
                    f"{operation} on resource {value[:300]}")


def _string_members(value: Any, member: str = "") -> Iterator[tuple[str, str]]:
    """(member name, value) for every string in a params tree (list items keep their list's name)."""
    if isinstance(value, str):
        yield member, value
    elif isinstance(value, Mapping):
        for name, item in value.items():
            yield from _string_members(item, name)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _string_members(item, member)


_caller: ContextVar[Caller | None] = ContextVar("customlabels_caller", default=None)


def current_caller() -> Caller | None:
    """Who signed the request being handled; None outside a signed request."""
    return _caller.get()


def current_account() -> str | None:
    """The account of the request being handled; None outside a signed request."""
    caller = _caller.get()
    return caller.account if caller else None


@contextlib.contextmanager
def acting_as(caller: Caller | None) -> Iterator[None]:
    """Calls made inside are made for ``caller`` (the console, for its signed-in user), or, with
    None, in the service's own name (no account's door applies: e.g. reading another account's
    project policy to decide a cross-account copy)."""
    token = _caller.set(caller)
    try:
        yield
    finally:
        _caller.reset(token)


def check_responses_from_env(env: Mapping[str, str] | None = None) -> bool:
    """Whether ``CUSTOMLABELS_CHECK_RESPONSES`` asks for results to be checked (1/true/yes)."""
    value = (os.environ if env is None else env).get(CHECK_RESPONSES_ENV, "")
    return value.strip().lower() in {"1", "true", "yes"}


class Dispatch:
    """Handlers registered by their services, answered through the one request path.

    ``where`` ends the "not served here" message ("... which is not running
    here"); ``check_responses`` defaults to the environment's setting.
    """

    def __init__(self, *, check_responses: bool | None = None, where: str = "not running here"):
        self._handlers: dict[str, OperationHandler] = {}
        self.check_responses = check_responses_from_env() if check_responses is None else check_responses
        self._where = where

    def register(self, service: str, operations: Operations) -> None:
        """Serve ``service``'s operations here; each must be the service's in the operation table."""
        for name, handler in operations.items():
            if OWNERS.get(name) != service:
                raise ValueError(f"{service} cannot serve {name}: the operation table gives it to {OWNERS.get(name)}")
            self._handlers[name] = handler

    def owns(self, operation: str) -> bool:
        return operation in self._handlers

    async def call(self, operation: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Validate ``params`` as the wire would, call the handler, return what a client would read back."""
        api = api_of(operation)
        try:
            result = await self._invoke(api, operation, api.model.validate_params(operation, params))
            return api.model.project_result(operation, result)
        except errors.ApiError as error:
            raise api.name_error(error) from None

    async def handle(self, operation: str, request: WireRequest) -> WireResponse:
        """Answer a request that arrived over HTTP, in its API's wire form (errors included)."""
        api = api_of(operation)
        caller = _caller.set(Caller.from_header(request.headers.get(CALLER_HEADER)))
        try:
            result = await self._invoke(api, operation, api.decode(operation, request))
            return api.encode(operation, result)
        except errors.ApiError as error:
            return api.encode_error(error)
        finally:
            _caller.reset(caller)

    async def _invoke(self, api: Api, operation: str, params: dict[str, Any]) -> Mapping[str, Any] | None:
        """Call the owner's handler with validated params (a request is validated even where it is not served)."""
        handler = self._handlers.get(operation)
        if handler is None:
            raise errors.UnsupportedOperation(f"{operation} is served by the {OWNERS[operation]} service, which is {self._where}")
        if (caller := _caller.get()) is not None:
            caller.check_arns(operation, params)
        result = await handler(params)
        if self.check_responses:
            api.model.check_response(operation, result)
        return result
