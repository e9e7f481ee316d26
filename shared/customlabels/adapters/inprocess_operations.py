"""Operation router for embedded mode: every service's handlers in one process.

The routing itself is ``customlabels.wire.dispatch.Dispatch``, the one request
path: a call routed here is validated against its API's model exactly like a
call over HTTP, and its result checked in tests.
"""
from __future__ import annotations

from customlabels.wire.dispatch import Dispatch


class InProcessOperations(Dispatch):
    """``register(service, operations)`` for each running service, then ``call`` or ``handle``."""
