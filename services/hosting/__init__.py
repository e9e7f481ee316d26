"""Running models: inference units, DetectCustomLabels.

``HostingService`` is imported on first use, so that an inference unit
(``python -m services.hosting.unit_server``) starts without loading the service's
own dependencies.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from services.hosting.service import HostingService

__all__ = ["HostingService"]


def __getattr__(name: str) -> Any:
    if name == "HostingService":
        from services.hosting.service import HostingService

        return HostingService
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
