"""API errors in the reference's own terms.

Each class carries the ``__type`` boto3 reads to raise the matching exception
(``client.exceptions.ResourceNotFoundException`` ...). Services raise these;
the gateway turns them into ``{"__type", "message"}`` bodies.
"""
from __future__ import annotations


class ApiError(Exception):
    code = "InternalServerError"
    status = 500

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def to_body(self) -> dict[str, str]:
        return {"__type": self.code, "message": self.message}


def _error(code: str, status: int = 400) -> type[ApiError]:
    return type(code, (ApiError,), {"code": code, "status": status, "__doc__": f"``{code}`` ({status})."})


InvalidParameter = _error("InvalidParameterException")
ResourceNotFound = _error("ResourceNotFoundException")
ResourceInUse = _error("ResourceInUseException")
ResourceAlreadyExists = _error("ResourceAlreadyExistsException")
ResourceNotReady = _error("ResourceNotReadyException")
LimitExceeded = _error("LimitExceededException")
InvalidPaginationToken = _error("InvalidPaginationTokenException")
InvalidPolicyRevisionId = _error("InvalidPolicyRevisionIdException")
MalformedPolicyDocument = _error("MalformedPolicyDocumentException")
InvalidS3Object = _error("InvalidS3ObjectException")
ImageTooLarge = _error("ImageTooLargeException")
InvalidImageFormat = _error("InvalidImageFormatException")
ServiceQuotaExceeded = _error("ServiceQuotaExceededException")
Throttling = _error("ThrottlingException")
InternalServerError = _error("InternalServerError", 500)

# Not in the rekognition model, but what AWS JSON services answer for these cases.
SerializationError = _error("SerializationException")
UnknownOperation = _error("UnknownOperationException")
UnsupportedOperation = _error("UnsupportedOperationException")

# Authentication (403), as AWS answers them.
MissingAuthenticationToken = _error("MissingAuthenticationTokenException", 403)
InvalidSignature = _error("InvalidSignatureException", 403)
UnrecognizedClient = _error("UnrecognizedClientException", 403)
AccessDenied = _error("AccessDeniedException", 403)

# Object routes (/objects/...), S3's own codes.
NoSuchBucket = _error("NoSuchBucket", 404)
NoSuchKey = _error("NoSuchKey", 404)
InvalidObjectKey = _error("InvalidObjectKey", 400)
EntityTooLarge = _error("EntityTooLarge", 413)
RequestEntityTooLarge = _error("RequestEntityTooLargeException", 413)

_BY_CODE = {cls.code: cls for cls in list(globals().values()) if isinstance(cls, type) and issubclass(cls, ApiError)}


def from_code(code: str, message: str, status: int = 400) -> ApiError:
    """The error a ``{"__type", "message"}`` body describes (e.g. from another service)."""
    if code in _BY_CODE:
        return _BY_CODE[code](message)
    error = ApiError(message)
    error.code, error.status = code, status
    return error
