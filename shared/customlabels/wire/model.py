"""Requests and results checked against a botocore service model.

Nothing here is written per operation or per API: request validation and the
shapes of responses come from the API's ``service-2.json`` (botocore's
``rekognition``, ``sagemaker``, ``sagemaker-a2i-runtime``, or one this package
ships), so a server accepts exactly what the model (and so boto3) describes.
Which operations are served comes from ``customlabels.wire.table``; how they
travel over HTTP from ``customlabels.wire.protocols``.

Three kinds of input are checked, by the same walk:

* a request decoded from the wire (``parse_document``/``parse_request``):
  blobs in base64, timestamps as epoch seconds or ISO 8601 strings;
* a request handed over in process (``validate_params``), as boto3 takes it
  (blobs as bytes, timestamps as datetimes): it must be one a client could
  send, so a member the model lacks is refused, which HTTP cannot show;
* a service's result (``check_response``): only the shape's members.

Decisions, where the model does not say:

* Unknown members of a request from the wire are ignored and dropped, at every
  level, as AWS JSON services do (it lets newer clients talk to an older
  server). In process they are refused, as boto3 refuses them: "Unknown
  parameter in input".
* A value of the wrong JSON type (a string for an integer, ``true`` for an
  integer, a number for a list ...) is a ``SerializationException``, as AWS
  answers it: deserialisation fails before validation runs. All such errors
  are listed together.
* Constraint violations (required, length, size, range, pattern, enum, blob
  length, bad base64) are an ``InvalidParameterException`` (each API names it
  its own way: ``ValidationException`` for SageMaker) in AWS's wording:
  ``N validation error(s) detected: Value '...' at 'a.b' failed to satisfy
  constraint: ...; ...``. Paths are lowerCamel like AWS's; list items are
  ``name.<1-based index>.member``; a bad map key or scalar map value is
  reported at the map as "Map keys/value must satisfy constraint: [...]".
  Every violation is counted; the message lists the first
  ``MAX_LISTED_VIOLATIONS``. Values are cut to ``MAX_VALUE_CHARS`` characters,
  blobs are shown only by size and sensitive values are redacted.
* ``null`` members count as absent; an empty body counts as ``{}``.
* Model patterns are Java regular expressions, matched against the whole value
  (``Member must satisfy regular expression pattern`` means a full match in
  AWS). They are translated where Java and Python differ (``\\p{L}``, ``.``);
  those the served operations use are compiled at load (a pattern Python
  cannot reproduce stops the load), any other on first use.
"""
from __future__ import annotations

import base64
import binascii
import functools
import json
import math
import re
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from typing import Any, Collection, Literal

import botocore.session
from botocore.model import ServiceModel, Shape

from customlabels import errors

from customlabels.wire.java_patterns import ModelError, compile_java_pattern, translate_java_pattern  # noqa: F401 (re-exported)
from customlabels.wire.table import MODELS_DIR, served_operations

SERVICE_NAME = "rekognition"

# The Rekognition operations this product serves (from the operation table).
CUSTOM_LABELS_OPERATIONS = served_operations(SERVICE_NAME)

MAX_LISTED_VIOLATIONS = 10
MAX_VALUE_CHARS = 100

# AWS's integer shapes are Java int and long.
_INT_BOUNDS = {"integer": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}
_SCALAR_TYPES = frozenset({"string", "integer", "long", "float", "double", "boolean", "blob", "timestamp"})
_EXPECTED = {
    "structure": "an object", "map": "an object", "list": "a list", "string": "a string",
    "integer": "an integer", "long": "an integer", "float": "a number", "double": "a number",
    "boolean": "a boolean", "blob": "a base64-encoded string",
    "timestamp": "a timestamp (epoch seconds or an ISO 8601 string)",
}


class ResponseModelError(errors.InternalServerError):
    """A service returned a result that does not match the operation's output shape (a service bug)."""


class _Patterns(dict):
    """Compiled model patterns, each compiled on first use (``preload`` compiles a set at once)."""

    def __missing__(self, pattern: str) -> re.Pattern[str]:
        compiled = self[pattern] = compile_java_pattern(pattern)
        return compiled

    def preload(self, shapes: Iterator[Shape]) -> None:
        """Compile every pattern of ``shapes``; any failure stops the load, listing them all."""
        failures: list[str] = []
        for shape in shapes:
            pattern = shape.metadata.get("pattern")
            if pattern is None or pattern in self:
                continue
            try:
                self[pattern]
            except ModelError as exc:
                failures.append(f"{shape.name}: {exc}")
        if failures:
            raise ModelError("; ".join(failures))


def _reachable_shapes(roots: Iterator[Shape | None]) -> Iterator[Shape]:
    """Every shape reachable from ``roots``, each once."""
    seen: set[str] = set()
    stack = [root for root in roots if root is not None]
    while stack:
        shape = stack.pop()
        if shape.name in seen:
            continue
        seen.add(shape.name)
        yield shape
        if shape.type_name == "structure":
            stack.extend(shape.members.values())
        elif shape.type_name == "list":
            stack.append(shape.member)
        elif shape.type_name == "map":
            stack.extend((shape.key, shape.value))


# --------------------------------------------------------------------------- validation


class _TypeMismatch(Exception):
    """A value of the wrong type: a deserialisation error, not a constraint violation."""


def _member_path(parent: str, member: str) -> str:
    """AWS names fields lowerCamel in messages: 'DatasetSource' -> 'datasetSource'."""
    name = member[:1].lower() + member[1:]
    return f"{parent}.{name}" if parent else name


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "bytes"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def _truncate(text: str) -> str:
    return text if len(text) <= MAX_VALUE_CHARS else text[:MAX_VALUE_CHARS] + "..."


def _render(shape: Shape | None, value: Any) -> str:
    """A value as AWS quotes it in messages: short, never blob contents or sensitive data."""
    if value is None:
        return "null"
    if shape is not None and shape.metadata.get("sensitive"):
        return "'*** Sensitive Data Redacted ***'"
    if shape is not None and shape.type_name == "blob" and isinstance(value, str):
        return f"'<{len(value)} characters of base64>'"
    text = _truncate(_plain(value))  # _plain shows bytes by their size only
    if not text.isascii():  # an unpaired surrogate would break whoever logs or encodes the message
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return f"'{text}'"


def _plain(value: Any) -> str:
    """Java-ish toString, as in AWS messages (true, [a, b], {k=v}), cut at MAX_VALUE_CHARS.

    Built lazily from tokens so that a huge or deeply nested value costs no
    more than the characters shown.
    """
    shown: list[str] = []
    size = 0
    for token in _tokens(value, depth=0):
        shown.append(token)
        size += len(token)
        if size > MAX_VALUE_CHARS:
            break
    return _truncate("".join(shown))


def _tokens(value: Any, depth: int) -> Iterator[str]:
    if depth > 8:
        yield "..."
    elif value is None:
        yield "null"
    elif isinstance(value, bool):
        yield "true" if value else "false"
    elif isinstance(value, (bytes, bytearray, memoryview)):
        yield f"<{len(value)} bytes>"  # never blob contents
    elif isinstance(value, (list, tuple)):
        yield "["
        for index, item in enumerate(value):
            yield ", " if index else ""
            yield from _tokens(item, depth + 1)
        yield "]"
    elif isinstance(value, Mapping):
        yield "{"
        for index, (key, item) in enumerate(value.items()):
            yield f"{', ' if index else ''}{_truncate(str(key))}="
            yield from _tokens(item, depth + 1)
        yield "}"
    else:
        yield _truncate(str(value))


def _length_failures(metadata: Mapping[str, Any], length: int) -> list[str]:
    """Length of a string/blob and size of a list/map share AWS's wording."""
    failures = []
    if "min" in metadata and length < metadata["min"]:
        failures.append(f"Member must have length greater than or equal to {metadata['min']}")
    if "max" in metadata and length > metadata["max"]:
        failures.append(f"Member must have length less than or equal to {metadata['max']}")
    return failures


def _range_failures(metadata: Mapping[str, Any], number: float) -> list[str]:
    """On numeric shapes ``min``/``max`` bound the value itself."""
    failures = []
    if "min" in metadata and number < metadata["min"]:
        failures.append(f"Member must have value greater than or equal to {metadata['min']}")
    if "max" in metadata and number > metadata["max"]:
        failures.append(f"Member must have value less than or equal to {metadata['max']}")
    return failures


# What a _Checker walks: a request decoded from the wire, a request handed
# over in process (boto3's Python types), or a service's result.
Mode = Literal["wire", "params", "result"]


class _Checker:
    """One walk of a value against a shape, collecting every problem.

    ``wire`` checks a decoded JSON request and converts it the way boto3
    would hand it over (base64 blobs -> bytes, timestamps -> datetime),
    dropping members the shape does not have; ``params`` checks a request in
    boto3's Python types (bytes or str blobs; datetime, epoch or ISO 8601
    timestamps) and refuses members the shape does not have; ``result``
    checks a service's Python result (bytes, datetime) as is, and reports
    members the shape does not have.
    """

    def __init__(self, patterns: Mapping[str, re.Pattern[str]], mode: Mode):
        self._patterns = patterns
        self._mode = mode
        self._wire = mode == "wire"
        # Messages are kept only for the first problems (they are all that a
        # message lists), so a huge bad list costs no more than a small one.
        self.type_errors: list[str] = []
        self.violations: list[str] = []
        self.type_error_count = 0
        self.violation_count = 0

    # -- dispatch

    def value(self, shape: Shape, value: Any, path: str) -> Any:
        """Check ``value`` (never None) against ``shape``; return it converted."""
        if shape.type_name not in _SCALAR_TYPES:
            return getattr(self, f"_{shape.type_name}")(shape, value, path)
        try:
            converted, failures = self._scalar(shape, value)
        except _TypeMismatch as exc:
            self._type_error(path, shape, value, str(exc))
            return value
        shown = converted if shape.type_name == "blob" else value  # a blob by its decoded size
        for failure in failures:
            self._violation(path, shape, shown, failure)
        return converted

    def _type_error(self, path: str, shape: Shape | None, value: Any, expected: str) -> None:
        self.type_error_count += 1
        if len(self.type_errors) < MAX_LISTED_VIOLATIONS:
            self.type_errors.append(
                f"Value {_render(shape, value)} at '{path or '.'}' is {_json_kind(value)}, expected {expected}"
            )

    def _violation(self, path: str, shape: Shape | None, value: Any, constraint: str) -> None:
        self.violation_count += 1
        if len(self.violations) < MAX_LISTED_VIOLATIONS:
            self.violations.append(
                f"Value {_render(shape, value)} at '{path}' failed to satisfy constraint: {constraint}"
            )

    # -- containers

    def _structure(self, shape: Shape, value: Any, path: str) -> Any:
        if not isinstance(value, Mapping):
            self._type_error(path, shape, value, _EXPECTED["structure"])
            return value
        members = shape.members
        required = shape.required_members
        out = {}
        for name, member_shape in members.items():
            member_value = value.get(name)
            member_path = _member_path(path, name)
            if member_value is None:  # JSON null is the same as absent
                if name in required:
                    self._violation(member_path, None, None, "Member must not be null")
                continue
            out[name] = self.value(member_shape, member_value, member_path)
        unknown = value.keys() - members.keys()
        if unknown and self._mode == "result":  # in a result, an unknown member is a typo in a service
            for name in sorted(map(str, unknown)):
                self.type_error_count += 1
                if len(self.type_errors) < MAX_LISTED_VIOLATIONS:
                    self.type_errors.append(f"'{_member_path(path, name)}' is not a member of {shape.name}")
        elif unknown and self._mode == "params":  # boto3's ParamValidationError, in its words
            for name in sorted(map(str, unknown)):
                self.violation_count += 1
                if len(self.violations) < MAX_LISTED_VIOLATIONS:
                    self.violations.append(
                        f'Unknown parameter in {path or "input"}: "{_truncate(name)}", '
                        f"must be one of: {', '.join(members)}"
                    )
        return out

    def _list(self, shape: Shape, value: Any, path: str) -> Any:
        sequence_types = list if self._wire else (list, tuple)
        if not isinstance(value, sequence_types):
            self._type_error(path, shape, value, _EXPECTED["list"])
            return value
        for failure in _length_failures(shape.metadata, len(value)):
            self._violation(path, shape, value, failure)
        items = []
        for index, item in enumerate(value, 1):
            item_path = f"{path}.{index}.member"
            if item is None:
                self._violation(item_path, None, None, "Member must not be null")
                continue
            items.append(self.value(shape.member, item, item_path))
        return items

    def _map(self, shape: Shape, value: Any, path: str) -> Any:
        if not isinstance(value, Mapping):
            self._type_error(path, shape, value, _EXPECTED["map"])
            return value
        for failure in _length_failures(shape.metadata, len(value)):
            self._violation(path, shape, value, failure)
        out = {}
        for key, item in value.items():
            self._map_key(shape.key, key, path)
            if item is not None and shape.value.type_name not in _SCALAR_TYPES:
                out[key] = self.value(shape.value, item, f"{path}.{_truncate(str(key))}")
            else:
                out[key] = self._map_scalar_value(shape.value, item, path, key)
        return out

    def _map_key(self, key_shape: Shape, key: Any, path: str) -> None:
        # AWS reports a bad key at the map, listing every constraint it breaks.
        try:
            _, failures = self._scalar(key_shape, key)
        except _TypeMismatch as exc:
            self._type_error(path, key_shape, key, f"keys to be {exc}")
            return
        if failures:
            self._violation(path, key_shape, key, f"Map keys must satisfy constraint: [{', '.join(failures)}]")

    def _map_scalar_value(self, value_shape: Shape, item: Any, path: str, key: Any) -> Any:
        if item is None:
            failures, converted = ["Member must not be null"], None
        else:
            try:
                converted, failures = self._scalar(value_shape, item)
            except _TypeMismatch as exc:
                self._type_error(f"{path}.{_truncate(str(key))}", value_shape, item, str(exc))
                return item
        if failures:
            self._violation(path, value_shape, item, f"Map value must satisfy constraint: [{', '.join(failures)}]")
        return converted

    # -- scalars: return (converted value, constraint failures) or raise _TypeMismatch

    def _scalar(self, shape: Shape, value: Any) -> tuple[Any, list[str]]:
        return getattr(self, f"_{shape.type_name}")(shape, value)

    def _string(self, shape: Shape, value: Any) -> tuple[Any, list[str]]:
        if not isinstance(value, str):
            raise _TypeMismatch(_EXPECTED["string"])
        if not value.isascii() and _has_lone_surrogate(value):
            # JSON can smuggle in "\ud800"; it would fail later, deep in a service, as a 500.
            raise _TypeMismatch("a string of valid Unicode (it has an unpaired surrogate)")
        metadata = shape.metadata
        failures = _length_failures(metadata, len(value))
        pattern = metadata.get("pattern")
        if pattern is not None and not self._patterns[pattern].fullmatch(value):
            failures.append(f"Member must satisfy regular expression pattern: {pattern}")
        enum = metadata.get("enum")
        if enum and value not in enum:
            failures.append(f"Member must satisfy enum value set: [{', '.join(enum)}]")
        return value, failures

    def _integer(self, shape: Shape, value: Any) -> tuple[Any, list[str]]:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _TypeMismatch(_EXPECTED[shape.type_name])
        low, high = _INT_BOUNDS[shape.type_name]
        if not low <= value <= high:
            raise _TypeMismatch(f"an integer between {low} and {high}")
        return value, _range_failures(shape.metadata, value)

    _long = _integer

    def _float(self, shape: Shape, value: Any) -> tuple[Any, list[str]]:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _TypeMismatch(_EXPECTED["float"])
        if isinstance(value, float) and not math.isfinite(value):
            raise _TypeMismatch("a finite number")
        return float(value), _range_failures(shape.metadata, value)

    _double = _float

    def _boolean(self, shape: Shape, value: Any) -> tuple[Any, list[str]]:
        if not isinstance(value, bool):
            raise _TypeMismatch(_EXPECTED["boolean"])
        return value, []

    def _blob(self, shape: Shape, value: Any) -> tuple[Any, list[str]]:
        if self._wire:
            if not isinstance(value, str):
                raise _TypeMismatch(_EXPECTED["blob"])
            try:
                data = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                return value, ["Member must be valid Base64-encoded data"]
        elif isinstance(value, (bytes, bytearray, memoryview)):
            data = bytes(value)
        elif isinstance(value, str) and self._mode == "params":  # boto3 sends a str blob as UTF-8
            data = value.encode("utf-8")
        else:
            raise _TypeMismatch("bytes")
        return data, _length_failures(shape.metadata, len(data))

    def _timestamp(self, shape: Shape, value: Any) -> tuple[Any, list[str]]:
        if isinstance(value, datetime) and not self._wire:
            return value, []
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                return datetime.fromtimestamp(value, timezone.utc), []
            except (OverflowError, OSError, ValueError):
                raise _TypeMismatch("a timestamp within range") from None
        if isinstance(value, str) and self._mode != "result":
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                raise _TypeMismatch(_EXPECTED["timestamp"]) from None
            return (parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)), []
        raise _TypeMismatch("a datetime" if self._mode == "result" else _EXPECTED["timestamp"])


def _has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _summary(problems: list[str], count: int, noun: str) -> str:
    """'2 validation errors detected: a; b' (AWS's wording), with the first problems listed."""
    listed = "; ".join(problems)
    if count > len(problems):
        listed += f"; ... and {count - len(problems)} more"
    return f"{count} {noun}{'s' if count != 1 else ''} detected: {listed}"


# --------------------------------------------------------------------------- serialisation

UNIX_TIMESTAMP, ISO8601, RFC822 = "unixTimestamp", "iso8601", "rfc822"


def _to_wire(shape: Shape, value: Any, timestamp_format: str = UNIX_TIMESTAMP) -> Any:
    """A service's Python value as JSON for ``shape``: only modelled members, no None.

    Timestamps take the shape's ``timestampFormat`` where it has one (A2I's are
    ISO 8601), else ``timestamp_format`` (the protocol's default for the place).
    """
    kind = shape.type_name
    if kind == "structure":
        members = shape.members
        return {
            name: _to_wire(members[name], member, timestamp_format)
            for name, member in value.items()
            if member is not None and name in members
        }
    if kind == "list":
        return [_to_wire(shape.member, item, timestamp_format) for item in value]
    if kind == "map":
        return {key: _to_wire(shape.value, item, timestamp_format) for key, item in value.items() if item is not None}
    if kind == "timestamp" and isinstance(value, datetime):
        return format_timestamp(value, shape.serialization.get("timestampFormat", timestamp_format))
    if kind == "blob":
        raw = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        return base64.b64encode(raw).decode("ascii")
    return value


def format_timestamp(value: datetime, timestamp_format: str) -> Any:
    """A datetime as botocore writes it in ``timestamp_format``; a naive one is UTC, never local time."""
    aware = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if timestamp_format == UNIX_TIMESTAMP:
        return aware.timestamp()  # boto3 reads epoch seconds
    utc = aware.astimezone(timezone.utc)
    if timestamp_format == ISO8601:
        return utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if utc.microsecond else "%Y-%m-%dT%H:%M:%SZ")
    if timestamp_format == RFC822:
        return utc.strftime("%a, %d %b %Y %H:%M:%S GMT")
    raise ModelError(f"unknown timestampFormat {timestamp_format!r}")


def _project(shape: Shape, value: Any) -> Any:
    """A result as a client reads it back: only modelled members, no None; values untouched."""
    kind = shape.type_name
    if kind == "structure" and isinstance(value, Mapping):
        members = shape.members
        return {name: _project(members[name], item) for name, item in value.items() if item is not None and name in members}
    if kind == "list" and isinstance(value, (list, tuple)):
        return [_project(shape.member, item) for item in value]
    if kind == "map" and isinstance(value, Mapping):
        return {key: _project(shape.value, item) for key, item in value.items() if item is not None}
    return value


# --------------------------------------------------------------------------- the model


class ApiModel:
    """One API's botocore model, ready to check requests and results. Build once (``load_api_model``).

    ``served``: the operations this product serves from the model (by
    default, the operation table's); ``resolve_target`` answers the others
    ``UnsupportedOperationException``. Errors raised here are the generic
    ones of ``customlabels.errors`` (``InvalidParameterException``,
    ``SerializationException``...); each API renames them on the way out
    (``customlabels.wire.apis.Api.name_error``).
    """

    def __init__(self, service_model: ServiceModel | None = None, served: Collection[str] | None = None):
        self._model = service_model or load_service_model(SERVICE_NAME)
        self.name: str = self._model.service_name
        self._operation_names = frozenset(self._model.operation_names)
        self.served = frozenset(served_operations(self.name) if served is None else served)
        missing = self.served - self._operation_names
        if missing:
            raise ModelError(f"the {self.name} model lacks operations: {', '.join(sorted(missing))}")
        self._patterns = _Patterns()
        operations = [self._model.operation_model(name) for name in sorted(self.served)]
        self._patterns.preload(_reachable_shapes(
            shape for operation in operations for shape in (operation.input_shape, operation.output_shape)
        ))
        self.target_prefix: str | None = self._model.metadata.get("targetPrefix")
        self.json_version: str | None = self._model.metadata.get("jsonVersion")

    @property
    def service_model(self) -> ServiceModel:
        return self._model

    def has_operation(self, name: str) -> bool:
        """True for any operation of the model (served or not)."""
        return name in self._operation_names

    def operation_model(self, name: str):
        """botocore's OperationModel; UnknownOperationException if the model has no such operation."""
        if not self.has_operation(name):
            raise errors.UnknownOperation(f"Unknown operation: {_truncate(name)!r}")
        return self._model.operation_model(name)  # botocore caches these

    def resolve_target(self, target: str | None) -> str:
        """The operation named by an ``X-Amz-Target`` header (JSON protocol), if this product serves it.

        Unknown or malformed target -> UnknownOperation; a real operation of
        the model that this product does not serve -> UnsupportedOperation.
        """
        prefix, dot, name = (target or "").partition(".")
        if self.target_prefix is None or prefix != self.target_prefix or not dot or not self.has_operation(name):
            raise errors.UnknownOperation(f"Unknown operation: X-Amz-Target {_truncate(target or '')!r}")
        self.check_served(name)
        return name

    def check_served(self, name: str) -> None:
        """UnsupportedOperationException unless this product serves operation ``name``."""
        if name not in self.served:
            raise errors.UnsupportedOperation(
                f"{name} is not supported: this server serves only {', '.join(sorted(self.served))} of {self.name}"
            )

    def parse_request(self, operation: str, body: bytes) -> dict[str, Any]:
        """Decode and validate a JSON request body; return boto3-style params (blobs as bytes)."""
        return self.parse_document(operation, decode_json_object(body))

    def parse_document(self, operation: str, document: Mapping[str, Any]) -> dict[str, Any]:
        """Validate a request decoded from the wire; return boto3-style params. Unknown members are dropped."""
        return self._check_input(operation, document, "wire")

    def validate_params(self, operation: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
        """Validate a request handed over in process, as boto3 would send it; return the params to use.

        The same checks and errors as ``parse_document``, and a member the
        model lacks is refused (``InvalidParameterException``).
        """
        return self._check_input(operation, params or {}, "params")

    def _check_input(self, operation: str, document: Mapping[str, Any], mode: Mode) -> dict[str, Any]:
        shape = self.operation_model(operation).input_shape
        if shape is None:
            if document and mode == "params":
                raise errors.InvalidParameter(f"{operation} takes no parameters, not {', '.join(map(str, document))}")
            return {}
        checker = _Checker(self._patterns, mode)
        params = checker.value(shape, document, "")
        if checker.type_error_count:
            message = _summary(checker.type_errors, checker.type_error_count, "serialization error")
            raise errors.SerializationError(message)
        if checker.violation_count:
            raise errors.InvalidParameter(_summary(checker.violations, checker.violation_count, "validation error"))
        return params

    def serialize_response(self, operation: str, result: Mapping[str, Any] | None) -> bytes:
        """JSON body for a result: datetimes as epoch seconds, bytes as base64, None dropped.

        Members the output shape does not have are dropped (``check_response``
        reports them); NaN or infinity raise ValueError, as no AWS client can read them.
        """
        shape = self.operation_model(operation).output_shape
        return encode_json(self.wire_document(shape, result))

    @staticmethod
    def wire_document(shape: Shape | None, value: Mapping[str, Any] | None, timestamp_format: str = UNIX_TIMESTAMP) -> dict[str, Any]:
        """``value`` as the JSON document of ``shape`` (see ``_to_wire``)."""
        return _to_wire(shape, value or {}, timestamp_format) if shape is not None else {}

    def check_response(self, operation: str, result: Mapping[str, Any] | None) -> None:
        """Raise ResponseModelError unless ``result`` fits the operation's output shape.

        Strict: a member the shape lacks, a wrong type, a missing required
        member or a broken constraint (enum, range, pattern) each fail.
        """
        shape = self.operation_model(operation).output_shape
        if shape is None:
            if result:
                raise ResponseModelError(f"{operation} has no output, yet its result has {', '.join(map(str, result))}")
            return
        checker = _Checker(self._patterns, "result")
        checker.value(shape, result or {}, "")
        count = checker.type_error_count + checker.violation_count
        if count:
            listed = (checker.type_errors + checker.violations)[:MAX_LISTED_VIOLATIONS]
            raise ResponseModelError(f"{operation} result does not match the model: {_summary(listed, count, 'error')}")

    def project_result(self, operation: str, result: Mapping[str, Any] | None) -> dict[str, Any]:
        """The result as a client reads it back over HTTP: modelled members only, None dropped."""
        shape = self.operation_model(operation).output_shape
        return _project(shape, result or {}) if shape is not None else {}


def encode_json(document: Any) -> bytes:
    """Compact UTF-8 JSON; NaN and infinity raise ValueError (no AWS client reads them)."""
    return json.dumps(document, allow_nan=False, separators=(",", ":")).encode("utf-8")


def decode_json_object(body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}  # AWS JSON services treat an empty body as an empty input
    try:
        # Strictly UTF-8 (json.loads would also guess UTF-16/32 from raw bytes).
        document = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
    except RecursionError:
        raise errors.SerializationError("The request body is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
        raise errors.SerializationError(f"The request body is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise errors.SerializationError(f"The request body must be a JSON object, not {_json_kind(document)}")
    return document


def _reject_constant(name: str) -> Any:
    # Python's json accepts NaN and Infinity; JSON (and AWS) do not.
    raise ValueError(f"{name} is not a JSON value")


@functools.cache
def _loader_session() -> botocore.session.Session:
    session = botocore.session.get_session()
    session.get_component("data_loader").search_paths.append(str(MODELS_DIR))
    return session


@functools.cache
def load_service_model(name: str) -> ServiceModel:
    """botocore's service model ``name`` (``rekognition``...), or one this package ships (``models/``)."""
    return _loader_session().get_service_model(name)


@functools.cache
def load_api_model(name: str = SERVICE_NAME) -> ApiModel:
    """The process-wide ApiModel of an API (Rekognition by default): loading compiles its patterns once."""
    return ApiModel(load_service_model(name))
