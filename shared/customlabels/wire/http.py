"""HTTP pieces every customlabels server shares: request ids and error bodies.

Every answer carries ``x-amzn-RequestId``; every error is
``{"__type", "message"}`` with the error's status; anything unexpected is a
500 ``InternalServerError`` (a bug, logged with the request id).
"""
from __future__ import annotations

import json
import logging
import uuid
from typing import Awaitable, Callable

from aiohttp import web

from customlabels import errors

log = logging.getLogger("customlabels.http")

JSON_CONTENT_TYPE = "application/x-amz-json-1.1"


@web.middleware
async def request_ids(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    request_id = str(uuid.uuid4())
    request["request_id"] = request_id
    try:
        response = await handler(request)
    except errors.ApiError as error:
        response = _error_response(error)
    except web.HTTPException as http:  # aiohttp's own: no such route, wrong method
        response = _error_response(_http_error(http))
    except Exception:
        log.exception("internal error", extra={"request_id": request_id})
        response = _error_response(errors.InternalServerError(f"internal error; request id {request_id}"))
    if not response.prepared:
        response.headers["x-amzn-RequestId"] = request_id
    return response


def _http_error(http: web.HTTPException) -> errors.ApiError:
    return errors.from_code(
        http.reason.replace(" ", ""),
        f"{http.reason}: use POST / for the API, PUT or GET /objects/<bucket>/<key> for objects",
        http.status,
    )


def _error_response(error: errors.ApiError) -> web.Response:
    return web.Response(status=error.status, body=json.dumps(error.to_body()).encode(), content_type=JSON_CONTENT_TYPE)
