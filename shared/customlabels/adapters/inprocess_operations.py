"""Operation router for embedded mode: every service's handlers in one process."""
from __future__ import annotations

from typing import Any

from customlabels.errors import UnsupportedOperation
from customlabels.ports.operations import OWNERS, OperationHandler, Operations


class InProcessOperations:
    def __init__(self) -> None:
        self._handlers: dict[str, OperationHandler] = {}

    def register(self, service: str, operations: Operations) -> None:
        for name, handler in operations.items():
            if OWNERS.get(name) != service:
                raise ValueError(f"{service} cannot serve {name}: OWNERS gives it to {OWNERS.get(name)}")
            self._handlers[name] = handler

    def owns(self, operation: str) -> bool:
        return operation in self._handlers

    async def call(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        handler = self._handlers.get(operation)
        if handler is None:
            owner = OWNERS.get(operation, "no service")
            raise UnsupportedOperation(f"{operation} is served by the {owner} service, which is not running here")
        return await handler(params)
