"""Operation router for distributed mode: calls the owning service over HTTP.

Requests and answers use the public wire protocol itself (botocore's own JSON
serializer and parser, driven by the same service model), so an operation
crosses the network between services exactly as it arrives from a client.
"""
from __future__ import annotations

import json
from typing import Any, Mapping

import aiohttp
from botocore.parsers import create_parser
from botocore.serialize import create_serializer

from customlabels import errors
from customlabels.ports.operations import OWNERS
from customlabels.wire import load_api_model


class HttpOperations:
    def __init__(self, urls: Mapping[str, str], *, timeout_seconds: float = 60):
        """``urls``: service name -> base URL of that service's internal API."""
        self.urls = dict(urls)
        self.model = load_api_model().service_model
        self._serializer = create_serializer("json", include_validation=False)
        self._parser = create_parser("json")
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._session: aiohttp.ClientSession | None = None

    def owns(self, operation: str) -> bool:
        return OWNERS.get(operation) in self.urls

    async def close(self) -> None:
        if self._session:
            await self._session.close()
            self._session = None

    async def call(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        owner = OWNERS.get(operation)
        if owner not in self.urls:
            raise errors.UnsupportedOperation(f"{operation} is served by the {owner} service, which is not configured here")
        operation_model = self.model.operation_model(operation)
        request = self._serializer.serialize_to_request(params, operation_model)
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.post(self.urls[owner].rstrip("/") + "/", data=request["body"], headers=request["headers"]) as response:
                body = await response.read()
                status = response.status
        except aiohttp.ClientError as e:
            raise errors.Throttling(f"the {owner} service could not be reached ({e}); retry") from None
        if status != 200:
            raise _error(body, status)
        parsed = self._parser.parse({"status_code": 200, "headers": {}, "body": body}, operation_model.output_shape)
        parsed.pop("ResponseMetadata", None)
        return parsed


def _error(body: bytes, status: int) -> errors.ApiError:
    try:
        payload = json.loads(body)
        return errors.from_code(payload["__type"], payload.get("message", ""), status)
    except (ValueError, KeyError, TypeError):
        return errors.InternalServerError(f"a service answered {status} without an error body")
