"""How an operation travels over HTTP, for the two protocols our APIs use, read from the model.

* AWS JSON 1.1 (``rekognition``, ``sagemaker``, ``customlabels-review``):
  ``POST /`` with ``X-Amz-Target: <targetPrefix>.<Operation>`` and a JSON
  body; errors are ``{"__type": code, "message": ...}``.
* REST-JSON (``sagemaker-a2i-runtime``): each operation has its own method
  and route (``http.requestUri``); input members come from the URI, the query
  string, headers or the JSON body as each member's ``location`` says;
  output members go to headers, the status code or the body likewise;
  errors carry their code in ``x-amzn-ErrorType`` and ``{"message": ...}``.

Timestamps take each shape's ``timestampFormat`` (A2I's are ISO 8601), else
the protocol's default for the place (epoch seconds in a JSON body, ISO 8601
in a URI or query string, RFC 822 in a header), as botocore does.

A protocol only decodes and encodes: validation is the model's
(``ApiModel.parse_document``), and which operations exist is the table's.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Mapping
from urllib.parse import parse_qsl

from botocore.model import OperationModel, Shape

from customlabels.wire.model import (
    ISO8601, RFC822, UNIX_TIMESTAMP, ApiModel, ModelError, decode_json_object, encode_json, format_timestamp,
)

ERROR_TYPE_HEADER = "x-amzn-ErrorType"


@dataclass(frozen=True)
class WireRequest:
    """An API request as it arrived over HTTP (what a router needs to answer or forward it).

    ``path_qs`` is the path and query exactly as received (still
    percent-encoded); ``path_params`` the route's URI members, decoded;
    ``headers`` any case-insensitive mapping.
    """

    method: str
    path_qs: str
    headers: Mapping[str, str]
    body: bytes
    path_params: Mapping[str, str] = field(default_factory=dict)

    @cached_property
    def query(self) -> list[tuple[str, str]]:
        """The query string's (name, value) pairs, decoded, in order."""
        _, _, raw = self.path_qs.partition("?")
        return parse_qsl(raw, keep_blank_values=True)


@dataclass(frozen=True)
class WireResponse:
    """An answer ready for HTTP, in the API's own wire form."""

    status: int
    headers: Mapping[str, str]
    body: bytes


# --------------------------------------------------------------------------- AWS JSON 1.1


class JsonProtocol:
    """``POST /`` with ``X-Amz-Target``; JSON bodies in and out."""

    name = "json"

    def __init__(self, model: ApiModel):
        self.model = model
        self.content_type = f"application/x-amz-json-{model.json_version or '1.1'}"

    def decode(self, operation: str, request: WireRequest) -> dict[str, Any]:
        return self.model.parse_request(operation, request.body)

    def encode(self, operation: str, result: Mapping[str, Any] | None) -> WireResponse:
        return WireResponse(200, {"Content-Type": self.content_type}, self.model.serialize_response(operation, result))

    def encode_error(self, code: str, message: str, status: int) -> WireResponse:
        return WireResponse(status, {"Content-Type": self.content_type}, encode_json({"__type": code, "message": message}))


# --------------------------------------------------------------------------- REST-JSON


@dataclass(frozen=True)
class Route:
    """One REST operation's route: ``path`` in aiohttp's syntax (``/human-loops/{HumanLoopName}``)."""

    method: str
    path: str
    operation: str


class RestJsonProtocol:
    """One route per operation; members placed by their ``location``."""

    name = "rest-json"
    content_type = "application/json"

    def __init__(self, model: ApiModel):
        self.model = model
        self.routes = _routes(model)
        _check_supported(model)

    # -- requests

    def decode(self, operation: str, request: WireRequest) -> dict[str, Any]:
        operation_model = self.model.operation_model(operation)
        shape = operation_model.input_shape
        if shape is None:
            return {}
        document: dict[str, Any] = {}
        payload = shape.serialization.get("payload")
        body = decode_json_object(request.body)
        if payload and request.body.strip():
            document[payload] = body
        for name, member in shape.members.items():
            location = member.serialization.get("location")
            if location is None:
                if not payload:
                    key = member.serialization.get("name", name)
                    if key in body:
                        document[name] = body[key]
                continue
            value = _located_value(member, location, request, bound=shape.members)
            if value is not None:
                document[name] = value
        return self.model.parse_document(operation, document)

    # -- responses

    def encode(self, operation: str, result: Mapping[str, Any] | None) -> WireResponse:
        operation_model = self.model.operation_model(operation)
        shape = operation_model.output_shape
        result = result or {}
        status = int(operation_model.http.get("responseCode", 200))
        headers = {"Content-Type": self.content_type}
        body_members: dict[str, Any] = {}
        payload = shape.serialization.get("payload") if shape is not None else None
        for name, member in (shape.members.items() if shape is not None else ()):
            value = result.get(name)
            if value is None:
                continue
            location = member.serialization.get("location")
            if location == "header":
                headers[member.serialization.get("name", name)] = _header_text(member, value)
            elif location == "statusCode":
                status = int(value)
            elif location is None:
                body_members[name] = value
        if payload:
            document = self.model.wire_document(shape.members[payload], body_members.get(payload))
        else:
            document = self.model.wire_document(shape, body_members)
        return WireResponse(status, headers, encode_json(document))

    def encode_error(self, code: str, message: str, status: int) -> WireResponse:
        headers = {"Content-Type": self.content_type, ERROR_TYPE_HEADER: code}
        return WireResponse(status, headers, encode_json({"message": message}))


def _routes(model: ApiModel) -> tuple[Route, ...]:
    """Every operation's route (served or not: the unserved ones answer UnsupportedOperationException)."""
    routes: dict[tuple[str, str], Route] = {}
    for name in model.service_model.operation_names:
        http = model.service_model.operation_model(name).http
        path, _, static_query = http["requestUri"].partition("?")
        if static_query:
            raise ModelError(f"{model.name}.{name}: a requestUri with a query ({http['requestUri']}) is not supported")
        route = Route(http["method"], re.sub(r"\{(\w+)\+\}", r"{\1:.+}", path), name)
        if (route.method, route.path) in routes:
            raise ModelError(f"{model.name}: {name} and {routes[route.method, route.path].operation} share {route.method} {path}")
        routes[route.method, route.path] = route
    return tuple(routes.values())


def _check_supported(model: ApiModel) -> None:
    """Refuse at load what this layer does not implement, rather than mis-serve it later."""
    problems = []
    for name in model.served:
        operation: OperationModel = model.service_model.operation_model(name)
        for shape in (operation.input_shape, operation.output_shape):
            if shape is None:
                continue
            payload = shape.serialization.get("payload")
            if payload and shape.members[payload].type_name != "structure":
                problems.append(f"{name}: a {shape.members[payload].type_name} payload")
            for member_name, member in shape.members.items():
                if member.serialization.get("jsonvalue") or member.serialization.get("location") == "headers":
                    problems.append(f"{name}.{member_name}: {member.serialization}")
    if problems:
        raise ModelError(f"{model.name}: not supported by customlabels.wire.protocols: {'; '.join(problems)}")


def _located_value(member: Shape, location: str, request: WireRequest, bound: Mapping[str, Shape]) -> Any:
    """A member's raw value from the URI, the query string or a header; None when absent."""
    key = member.serialization.get("name")
    if location == "uri":
        text = request.path_params.get(key)
        return None if text is None else _from_text(member, text, ISO8601)
    if location == "header":
        text = request.headers.get(key)
        return None if text is None else _from_text(member, text, RFC822)
    if location == "querystring":
        if member.type_name == "map":  # every query parameter no other member names
            named = {m.serialization.get("name") for m in bound.values() if m.serialization.get("location") == "querystring"}
            pairs = [(k, v) for k, v in request.query if k not in named]
            return {k: _from_text(member.value, v, ISO8601) for k, v in pairs} or None
        values = [value for name, value in request.query if name == key]
        if not values:
            return None
        if member.type_name == "list":
            return [_from_text(member.member, value, ISO8601) for value in values]
        return _from_text(member, values[-1], ISO8601)
    raise ModelError(f"member location {location!r} is not supported")


_INTEGER = re.compile(r"[+-]?\d+")


def _from_text(shape: Shape, text: str, default_timestamp_format: str) -> Any:
    """A URI, query or header string as the JSON value the model's checker expects.

    Text that does not convert stays text, so the checker reports it as the
    wrong type (SerializationException), in the same words as a bad JSON value.
    """
    kind = shape.type_name
    if kind in ("integer", "long"):
        return int(text) if _INTEGER.fullmatch(text) else text
    if kind in ("float", "double"):
        try:
            return float(text)
        except ValueError:
            return text
    if kind == "boolean":
        return {"true": True, "false": False}.get(text, text)
    if kind == "timestamp":
        timestamp_format = shape.serialization.get("timestampFormat", default_timestamp_format)
        if timestamp_format == UNIX_TIMESTAMP:
            try:
                return float(text)
            except ValueError:
                return text
        return text  # ISO 8601 (what the checker parses); RFC 822 headers are not used by our models
    return text


def _header_text(shape: Shape, value: Any) -> str:
    if shape.type_name == "timestamp":
        return str(format_timestamp(value, shape.serialization.get("timestampFormat", RFC822)))
    if shape.type_name == "boolean":
        return "true" if value else "false"
    return str(value)
