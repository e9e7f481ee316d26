"""API errors in the reference's own terms.

Each class carries the ``__type`` boto3 reads to raise the matching exception
(``client.exceptions.ResourceNotFoundException`` ...). Services raise these;
the gateway turns them into ``{"__type", "message"}`` bodies.

The names are Rekognition's; a service of another API raises the same
classes and its API answers them under its own names (the operation table's
``ERROR_NAMES``: ``InvalidParameter`` is SageMaker's and A2I's
``ValidationException``, ``ResourceNotFound`` is SageMaker's
``ResourceNotFound``...). Renaming sets ``code`` (and ``status``) on the
instance, so ``except errors.ResourceNotFound`` works whichever API raised it.
"""
from __future__ import annotations

import errno

from customlabels.ports import blobs


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
Conflict = _error("ConflictException")  # A2I: a loop of that name exists with other input (409 there)
Throttling = _error("ThrottlingException")
InternalServerError = _error("InternalServerError", 500)
# The server cannot take writes for now (its disk is full): retryable, as AWS's 503s are.
ServiceUnavailable = _error("ServiceUnavailableException", 503)

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
InvalidArgument = _error("InvalidArgument", 400)  # a listing parameter S3 would refuse
EntityTooLarge = _error("EntityTooLarge", 413)
BadDigest = _error("BadDigest", 400)  # the body does not match its Content-MD5 or x-amz-checksum-*
InvalidDigest = _error("InvalidDigest", 400)  # a Content-MD5 or x-amz-checksum-* that is no digest at all
ContentSha256Mismatch = _error("XAmzContentSHA256Mismatch", 400)
IncompleteBody = _error("IncompleteBody", 400)  # fewer bytes than declared, or a broken aws-chunked framing
MalformedTrailer = _error("MalformedTrailerError", 400)
MalformedXML = _error("MalformedXML", 400)
NoSuchUpload = _error("NoSuchUpload", 404)
InvalidPart = _error("InvalidPart", 400)
InvalidPartOrder = _error("InvalidPartOrder", 400)
InvalidRange = _error("InvalidRange", 416)
PreconditionFailed = _error("PreconditionFailed", 412)
BucketAlreadyExists = _error("BucketAlreadyExists", 409)
NotImplementedOperation = _error("NotImplemented", 501)
RequestEntityTooLarge = _error("RequestEntityTooLargeException", 413)

_BY_CODE = {cls.code: cls for cls in list(globals().values()) if isinstance(cls, type) and issubclass(cls, ApiError)}


_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})
_SQLITE_FULL = 13  # SQLITE_FULL: "database or disk is full"


def storage_unavailable(exc: BaseException) -> ApiError | None:
    """``ServiceUnavailable`` when ``exc`` (or an exception it came from) says a store cannot take
    writes or requests now: no disk space (ENOSPC or EDQUOT, SQLite's SQLITE_FULL), or the object
    store is unreachable or answers 5xx (``blobs.Unavailable``); None for anything else. The failed
    write failed whole: the blob stores write through a temporary file or replace an object whole,
    SQLite rolls the transaction back."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if (isinstance(exc, OSError) and exc.errno in _NO_SPACE) or getattr(exc, "sqlite_errorcode", None) == _SQLITE_FULL:
            return ServiceUnavailable(
                "the server is out of disk space, so it cannot store anything now: this request changed "
                "nothing. Free space where the server keeps its data (CUSTOMLABELS_DATA), then retry")
        if isinstance(exc, blobs.Unavailable):
            return ServiceUnavailable(f"the object store cannot take requests now ({exc}); retry later")
        exc = exc.__cause__ or exc.__context__
    return None


def canonical_code(error: ApiError) -> str:
    """The error's name in these classes' terms, whatever an API renamed it to."""
    return error.code if type(error) is ApiError else type(error).code


def from_code(code: str, message: str, status: int = 400) -> ApiError:
    """The error a ``{"__type", "message"}`` body describes (e.g. from another service)."""
    if code in _BY_CODE:
        return _BY_CODE[code](message)
    error = ApiError(message)
    error.code, error.status = code, status
    return error
