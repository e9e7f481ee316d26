"""HTTP pieces every customlabels server shares: request ids, error bodies, the API routes.

Every answer carries ``x-amzn-RequestId``. An error of an API is answered in
that API's form (``customlabels.wire.protocols``); an error outside any API
(no such route, a bug) as ``{"__type", "message"}`` with the code also in
``x-amzn-ErrorType``, which every AWS SDK reads. Anything unexpected is a 500
``InternalServerError`` (a bug, logged with the request id).

``add_api_routes`` gives a server every API of the operation table: ``POST /``
for the JSON 1.1 APIs (picked by ``X-Amz-Target``) and one route per REST-JSON
operation. The gateway adds SigV4 (``authenticate``); a service's internal API
adds nothing. Both answer through the same router ``handle``.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import uuid
from typing import Awaitable, Callable

from aiohttp import web
from multidict import CIMultiDict

from customlabels import errors
from customlabels.ports.operations import OperationRouter
from customlabels.wire.apis import Api, api_for_target, json_signing_names, served_apis
from customlabels.wire.dispatch import CALLER_HEADER, Caller
from customlabels.wire.model import encode_json
from customlabels.wire.protocols import ERROR_TYPE_HEADER, WireRequest, WireResponse

log = logging.getLogger("customlabels.http")

JSON_CONTENT_TYPE = "application/x-amz-json-1.1"
REQUEST_ID = web.RequestKey("request_id", str)  # this request's x-amzn-RequestId

# Checks a request's signature against the signing names it may use and returns who
# signed it (access key and account); raises an ApiError (403).
# Arguments: the request, the SHA-256 (hex) of its body, the acceptable signing names.
Authenticate = Callable[[web.Request, str, frozenset[str]], Caller]


@web.middleware
async def request_ids(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    request_id = str(uuid.uuid4())
    request[REQUEST_ID] = request_id
    try:
        response = await handler(request)
    except errors.ApiError as error:
        response = _error_response(error)
    except web.HTTPException as http:  # aiohttp's own: no such route, wrong method
        response = _error_response(_http_error(request, http))
    except Exception as exc:
        if (unavailable := errors.storage_unavailable(exc)) is not None:
            log.warning("refused a request: a store cannot take it now (%s)", exc, extra={"request_id": request_id})
            response = _error_response(unavailable)
        else:
            log.exception("internal error", extra={"request_id": request_id})
            response = _error_response(errors.InternalServerError(f"internal error; request id {request_id}"))
    if not response.prepared:
        response.headers["x-amzn-RequestId"] = request_id
    return response


def _http_error(request: web.Request, http: web.HTTPException) -> errors.ApiError:
    """aiohttp's 404/405: no route of any API (or of the object store) answers this method and path."""
    message = f"{http.reason}: no operation or route of this server answers {request.method} {request.path}"
    if http.status not in (404, 405):
        return errors.from_code(http.reason.replace(" ", ""), message, http.status)
    error = errors.UnknownOperation(message)
    error.status = http.status
    return error


def _error_response(error: errors.ApiError) -> web.Response:
    return web.Response(
        status=error.status, body=encode_json(error.to_body()), content_type=JSON_CONTENT_TYPE,
        headers={ERROR_TYPE_HEADER: error.code},
    )


def add_api_routes(app: web.Application, router: OperationRouter, *, max_body: int,
                   authenticate: Authenticate | None = None) -> None:
    """Serve every API of the operation table on ``app`` through ``router``.

    ``max_body``: the largest request body (RequestEntityTooLargeException
    beyond); ``authenticate``: None on the internal network (the caller is
    the ``CALLER_HEADER`` the gateway sent), SigV4 at the gateway (the caller
    is the key that signed; a ``CALLER_HEADER`` a client sent is replaced).
    """
    front = _ApiFront(router, max_body, authenticate)
    app.router.add_post("/", front.json_api)
    for api in served_apis().values():
        for route in api.routes:
            app.router.add_route(route.method, route.path, functools.partial(front.rest_api, api, route.operation))


class _ApiFront:
    def __init__(self, router: OperationRouter, max_body: int, authenticate: Authenticate | None):
        self.router = router
        self.max_body = max_body
        self.authenticate = authenticate

    async def json_api(self, request: web.Request) -> web.Response:
        """``POST /``: the API is the one whose target prefix ``X-Amz-Target`` names."""
        target = request.headers.get("X-Amz-Target", "")
        api = api_for_target(target)
        try:
            wire = await self._read(request, api.signing_name if api else None)
            if api is None:
                raise errors.UnknownOperation(f"Unknown operation: X-Amz-Target {target[:100]!r}")
            operation = api.model.resolve_target(target)
        except errors.ApiError as error:
            if api is None:
                raise
            return _response(api.encode_error(error))
        return _response(await self.router.handle(operation, wire))

    async def rest_api(self, api: Api, operation: str, request: web.Request) -> web.Response:
        """A REST-JSON route: the operation is the route's."""
        try:
            wire = await self._read(request, api.signing_name)
            api.model.check_served(operation)
        except errors.ApiError as error:
            return _response(api.encode_error(error))
        return _response(await self.router.handle(operation, wire))

    async def _read(self, request: web.Request, signing_name: str | None) -> WireRequest:
        """The request with its body, read within the limit, and authenticated (if this server does)."""
        body = await read_within(request, self.max_body)
        if body is None:
            raise errors.RequestEntityTooLarge(f"the request body is larger than the {self.max_body}-byte limit")
        headers = request.headers
        if self.authenticate is not None:
            names = frozenset({signing_name}) if signing_name else json_signing_names()
            caller = self.authenticate(request, hashlib.sha256(body).hexdigest(), names)
            headers = CIMultiDict(headers)
            headers[CALLER_HEADER] = caller.header()
        return WireRequest(
            method=request.method, path_qs=request.raw_path, headers=headers, body=bytes(body),
            path_params=dict(request.match_info),
        )


async def read_within(request: web.Request, limit: int) -> bytes | None:
    """The whole request body, or None as soon as it is (or declares itself) longer than
    ``limit`` bytes: never more than ``limit`` plus one chunk is held.

    The one way a handler reads a body whole. ``StreamReader.read(n)`` is not it: it
    returns what has arrived so far (at most n bytes), so on a busy machine a body that
    comes in several packets is cut short.
    """
    if request.content_length is not None and request.content_length > limit:
        return None
    body = bytearray()
    async for chunk in request.content.iter_any():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def _response(answer: WireResponse) -> web.Response:
    return web.Response(status=answer.status, headers=answer.headers, body=answer.body)
