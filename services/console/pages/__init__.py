"""The console's pages, one module per part of the workflow; each module's
class takes its collaborators by name and lists its routes."""
from __future__ import annotations

from typing import Any

from aiohttp import web
from customlabels import errors


async def read_json(request: web.Request) -> Any:
    """The request's JSON body, or InvalidParameter."""
    try:
        return await request.json()
    except ValueError:
        raise errors.InvalidParameter("The request body is not JSON.") from None
