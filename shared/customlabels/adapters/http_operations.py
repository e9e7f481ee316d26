"""Operation router for distributed mode: reaches the owning service over HTTP.

Requests travel in the public wire protocol of their API, to the owner's
internal API (``customlabels.service_http``), which answers them through the
one request path (``customlabels.wire.dispatch``): validation and result
checks happen there, once.

* ``handle`` forwards a request as it arrived (method, path, query, body and
  headers, less the signature and hop-by-hop ones) and returns the owner's
  answer as is; the gateway uses it, so nothing is decoded twice.
* ``call`` encodes params with botocore's own serializer for the API's
  protocol and parses the answer with botocore's parser, so an operation
  crosses the network between services exactly as it does from a client;
  the caller of the request being served goes along (``CALLER_HEADER``).

A service that cannot be reached is answered ``ThrottlingException`` (SDKs
retry it), in the API's form.
"""
from __future__ import annotations

from typing import Any, Mapping
from urllib.parse import urlencode

import aiohttp
from botocore.parsers import create_parser
from botocore.serialize import create_serializer
from multidict import CIMultiDict

from customlabels import errors
from customlabels.wire.apis import Api, api_of
from customlabels.wire.dispatch import CALLER_HEADER, current_caller
from customlabels.wire.protocols import WireRequest, WireResponse
from customlabels.wire.table import OWNERS

# Not forwarded: the gateway's own business (the signature was checked there) or the connection's.
_REQUEST_HEADERS_DROPPED = frozenset({
    "host", "authorization", "content-length", "connection", "keep-alive", "transfer-encoding",
    "te", "upgrade", "proxy-authorization", "x-amz-security-token",
})
_RESPONSE_HEADERS_KEPT = frozenset({"content-type", "x-amzn-errortype"})


class HttpOperations:
    def __init__(self, urls: Mapping[str, str], *, timeout_seconds: float = 60):
        """``urls``: service name -> base URL of that service's internal API."""
        self.urls = {name: url.rstrip("/") for name, url in urls.items()}
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._session: aiohttp.ClientSession | None = None

    def owns(self, operation: str) -> bool:
        return OWNERS.get(operation) in self.urls

    async def close(self) -> None:
        if self._session:
            await self._session.close()
            self._session = None

    async def handle(self, operation: str, request: WireRequest) -> WireResponse:
        api = api_of(operation)
        try:
            if not self.owns(operation):
                api.decode(operation, request)  # a bad request is answered as such, served or not
            base = self._owner_url(api, operation)
            headers = {k: v for k, v in request.headers.items() if k.lower() not in _REQUEST_HEADERS_DROPPED}
            status, answer_headers, body = await self._send(api, operation, request.method, base + request.path_qs, headers, request.body)
        except errors.ApiError as error:
            return api.encode_error(error)
        kept = {k: v for k, v in answer_headers.items() if k.lower() in _RESPONSE_HEADERS_KEPT}
        return WireResponse(status, kept, body)

    async def call(self, operation: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        api = api_of(operation)
        try:
            operation_model = api.model.operation_model(operation)
            # Validated here too, so a call botocore's serializer cannot encode fails as the owner would fail it.
            checked = api.model.validate_params(operation, params)
            base = self._owner_url(api, operation)
            request = create_serializer(api.protocol.name, include_validation=False).serialize_to_request(checked, operation_model)
            url = base + request["url_path"]
            if request["query_string"]:
                url += "?" + urlencode(request["query_string"], doseq=True)
            headers = dict(request["headers"])
            if (caller := current_caller()) is not None:  # the signed request this call serves
                headers[CALLER_HEADER] = caller.header()
            status, headers, body = await self._send(api, operation, request["method"], url, headers, request["body"])
        except errors.ApiError as error:
            raise api.name_error(error) from None
        parsed = create_parser(api.protocol.name).parse(
            {"status_code": status, "headers": headers, "body": body},
            operation_model.output_shape if status < 300 else None,
        )
        if status >= 300:
            error = parsed.get("Error") or {}
            raise api.error_from_wire(error.get("Code") or f"HTTP{status}", error.get("Message") or "", status)
        parsed.pop("ResponseMetadata", None)
        return parsed

    def _owner_url(self, api: Api, operation: str) -> str:
        owner = OWNERS[operation]
        if owner not in self.urls:
            raise errors.UnsupportedOperation(f"{operation} is served by the {owner} service, which is not configured here")
        return self.urls[owner]

    async def _send(self, api: Api, operation: str, method: str, url: str, headers: Mapping[str, str],
                    body: bytes) -> tuple[int, CIMultiDict, bytes]:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.request(method, url, data=body or None, headers=dict(headers)) as response:
                return response.status, CIMultiDict(response.headers), await response.read()
        except (aiohttp.ClientError, TimeoutError) as e:
            owner = OWNERS[operation]
            raise errors.Throttling(f"the {owner} service could not be reached ({e or type(e).__name__}); retry") from None
