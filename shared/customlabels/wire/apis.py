"""The APIs this product speaks, each built from the operation table and its service model.

An ``Api`` knows everything about one API that does not depend on who
handles it: its model (validation), its protocol (HTTP form), its signing
name (SigV4 scope) and its names for errors. Who owns each operation is the
table's (``customlabels.wire.table.OWNERS``). Routers and HTTP fronts ask
these two modules; nothing else lists APIs or operations.

Invariants:

* Built once per process (``served_apis``); loading fails if a model lacks a
  listed operation, has a pattern Python cannot reproduce, or uses a wire
  feature ``customlabels.wire.protocols`` does not implement.
* JSON 1.1 APIs share ``POST /`` and differ by target prefix; REST-JSON
  routes of different APIs never collide (both checked at load).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Mapping

from customlabels import errors
from customlabels.wire.model import ApiModel, ModelError, load_api_model
from customlabels.wire.protocols import JsonProtocol, RestJsonProtocol, Route, WireRequest, WireResponse
from customlabels.wire.table import API_OF, ERROR_NAMES, SERVED

_PROTOCOLS = {"json": JsonProtocol, "rest-json": RestJsonProtocol}


@dataclass(frozen=True)
class Api:
    name: str  # botocore service name
    model: ApiModel
    protocol: JsonProtocol | RestJsonProtocol
    signing_name: str
    error_names: Mapping[str, str]  # our (Rekognition) code -> this API's code

    @classmethod
    def load(cls, name: str) -> "Api":
        model = load_api_model(name)
        protocol_name = model.service_model.metadata["protocol"]
        if protocol_name not in _PROTOCOLS:
            raise ModelError(f"{name} speaks {protocol_name}, which customlabels.wire.protocols does not implement")
        return cls(name, model, _PROTOCOLS[protocol_name](model), model.service_model.signing_name, ERROR_NAMES.get(name, {}))

    @property
    def target_prefix(self) -> str | None:
        return self.model.target_prefix if isinstance(self.protocol, JsonProtocol) else None

    @property
    def routes(self) -> tuple[Route, ...]:
        return self.protocol.routes if isinstance(self.protocol, RestJsonProtocol) else ()

    # -- requests and results

    def decode(self, operation: str, request: WireRequest) -> dict[str, Any]:
        """The request's params, validated against the model (raises the generic ApiErrors)."""
        return self.protocol.decode(operation, request)

    def encode(self, operation: str, result: Mapping[str, Any] | None) -> WireResponse:
        return self.protocol.encode(operation, result)

    # -- errors

    def name_error(self, error: errors.ApiError) -> errors.ApiError:
        """Give ``error`` this API's name and status (in place) and return it.

        The status is the one this API's model gives the error's shape, if
        any (A2I's ConflictException is 409), else the error class's own.
        """
        canonical = errors.canonical_code(error)
        error.code = self.error_names.get(canonical, canonical)
        modelled = self._modelled_status(error.code)
        error.status = modelled or (type(error).status if type(error) is not errors.ApiError else error.status)
        return error

    def encode_error(self, error: errors.ApiError) -> WireResponse:
        self.name_error(error)
        return self.protocol.encode_error(error.code, error.message, error.status)

    def error_from_wire(self, code: str, message: str, status: int) -> errors.ApiError:
        """The ApiError an answer of this API describes, as the class a service would have raised."""
        error = errors.from_code(code, message, status)
        if type(error) is errors.ApiError:  # not one of our names: perhaps this API's name for one
            ours = next((ours for ours, theirs in self.error_names.items() if theirs == code), None)
            error = errors.from_code(ours, message, status) if ours else error
        return self.name_error(error)

    def _modelled_status(self, code: str) -> int | None:
        model = self.model.service_model
        if code not in model.shape_names:
            return None
        shape = model.shape_for(code)
        return shape.metadata.get("error", {}).get("httpStatusCode") if shape.metadata.get("exception") else None


@functools.cache
def served_apis() -> Mapping[str, Api]:
    """Every API of the operation table, loaded (the first call takes a few tenths of a second)."""
    loaded = {name: Api.load(name) for name in SERVED}
    _check_apart(loaded.values())
    return loaded


def api_of(operation: str) -> Api:
    """The API that serves ``operation``; UnknownOperationException if none does."""
    name = API_OF.get(operation)
    if name is None:
        raise errors.UnknownOperation(f"{operation!r} is not an operation this server serves")
    return served_apis()[name]


def api_for_target(target: str | None) -> Api | None:
    """The JSON 1.1 API whose target prefix ``X-Amz-Target`` names; None if no API has it."""
    prefix = (target or "").partition(".")[0]
    return next((api for api in served_apis().values() if api.target_prefix and api.target_prefix == prefix), None)


def json_signing_names() -> frozenset[str]:
    """The signing names of the APIs that share ``POST /``."""
    return frozenset(api.signing_name for api in served_apis().values() if api.target_prefix)


def _check_apart(apis) -> None:
    prefixes: dict[str, str] = {}
    routes: dict[tuple[str, str], str] = {}
    for api in apis:
        if api.target_prefix:
            if api.target_prefix in prefixes:
                raise ModelError(f"{api.name} and {prefixes[api.target_prefix]} share the target prefix {api.target_prefix}")
            prefixes[api.target_prefix] = api.name
        for route in api.routes:
            if (route.method, route.path) in routes or route.path == "/":
                raise ModelError(f"{api.name}: {route.method} {route.path} is taken")
            routes[route.method, route.path] = api.name
