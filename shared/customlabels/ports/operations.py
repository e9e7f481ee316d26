"""Operation router port: how the gateway (and a service or the console needing
an answer now) reaches the service that owns an API operation.

A service publishes its operations as ``{"CreateProject": handler, ...}``;
each handler takes the validated request dict and returns the response dict,
or raises a ``customlabels.errors.ApiError``. Embedded mode calls handlers in
process (``customlabels.adapters.inprocess_operations``); distributed mode
sends the request over HTTP to the owner (``customlabels.adapters.http_operations``).
Either way a call is validated against the operation's model, once, where the
handler runs (``customlabels.wire.dispatch``).

Who owns what is the operation table's (``customlabels.wire.table``);
``OWNERS`` is its operation -> owner service view.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Awaitable, Callable, Mapping, Protocol

from customlabels.wire.table import OWNERS  # noqa: F401 (re-exported)

if TYPE_CHECKING:
    from customlabels.wire.protocols import WireRequest, WireResponse

OperationHandler = Callable[[dict[str, Any]], Awaitable[Mapping[str, Any] | None]]
Operations = Mapping[str, OperationHandler]


class OperationRouter(Protocol):
    def owns(self, operation: str) -> bool:
        """Whether a running (or configured) service serves ``operation``."""

    async def call(self, operation: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """boto3-style params in (validated like a request over HTTP); the result as a client reads it.

        Raises the ``customlabels.errors`` class a client's error code names,
        with the API's own code (``ValidationException`` for SageMaker...).
        """

    async def handle(self, operation: str, request: "WireRequest") -> "WireResponse":
        """A request that arrived over HTTP, answered in its API's wire form, errors included."""
