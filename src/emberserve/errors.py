"""Ember's one error hierarchy.

Every error a client can see is a :class:`ServerError`. Each class carries the HTTP status, the
gRPC status code name and TorchServe's exception ``type`` name used in the ``{code, type, message}``
body, so the HTTP edge and the gRPC edge each render errors in exactly one place and never guess
from message text::

    EmberError
    ├── ConfigError                      startup: bad config.properties / CLI value (exit code 2)
    └── ServerError                      500 INTERNAL          InternalServerException
        ├── BadRequestError              400 INVALID_ARGUMENT  BadRequestException
        │   ├── InvalidModelError        400 INVALID_ARGUMENT  InvalidModelException
        │   │   └── ArchiveError         400 INVALID_ARGUMENT  InvalidModelException (hostile/broken archive)
        │   ├── DownloadArchiveError     400 INVALID_ARGUMENT  DownloadArchiveException
        │   ├── UrlNotAllowedError       400 PERMISSION_DENIED ModelException
        │   └── InvalidKeyError          400 PERMISSION_DENIED InvalidKeyException
        ├── InvalidModelVersionError     403 FAILED_PRECONDITION InvalidModelVersionException
        ├── ForbiddenError               403 PERMISSION_DENIED ForbiddenException
        ├── NotFoundError                404 NOT_FOUND         ResourceNotFoundException
        │   ├── ModelNotFoundError       404 NOT_FOUND         ModelNotFoundException
        │   └── ModelVersionNotFoundError 404 NOT_FOUND        ModelVersionNotFoundException
        ├── MethodNotAllowedError        405 UNIMPLEMENTED     MethodNotAllowedException
        │   └── ModelApiDisabledError    405 PERMISSION_DENIED MethodNotAllowedException
        ├── RequestTimeoutError          408 DEADLINE_EXCEEDED RequestTimeoutException
        ├── ConflictError                409 ALREADY_EXISTS    ConflictStatusException
        ├── PayloadTooLargeError         413 RESOURCE_EXHAUSTED PayloadTooLargeException
        ├── InternalServerError          500 INTERNAL          InternalServerException
        │   └── WorkerDiedError          500 INTERNAL          InternalServerException ("Worker died.")
        ├── ServiceUnavailableError      503 UNAVAILABLE       ServiceUnavailableException
        ├── InsufficientStorageError     507 RESOURCE_EXHAUSTED InternalServerException
        └── PredictionError              any status from the handler (InternalServerException)

Example::

    >>> err = ModelNotFoundError("Model not found: nosuch")
    >>> (err.http_status, err.grpc_code, err.type_name, err.message)
    (404, 'NOT_FOUND', 'ModelNotFoundException', 'Model not found: nosuch')
"""

from __future__ import annotations

import errno
from typing import ClassVar


class EmberError(Exception):
    """Root of every error Ember raises on purpose."""


class ConfigError(EmberError):
    """A configuration value (file, environment or CLI) is invalid; the server refuses to start."""

    exit_code: ClassVar[int] = 2


class ServerError(EmberError):
    """An error a client receives as ``{"code": …, "type": …, "message": …}``."""

    http_status: int = 500
    grpc_code: str = "INTERNAL"
    type_name: str = "InternalServerException"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def body(self) -> dict[str, object]:
        """The JSON body TorchServe sends for this error (key order matters to diff-based tests)."""
        return {"code": self.http_status, "type": self.type_name, "message": self.message}


class BadRequestError(ServerError):
    http_status = 400
    grpc_code = "INVALID_ARGUMENT"
    type_name = "BadRequestException"


class InvalidModelError(BadRequestError):
    type_name = "InvalidModelException"


class ArchiveError(InvalidModelError):
    """A model archive is broken or hostile (zip-slip, bomb, bad manifest, unsafe YAML…)."""


class DownloadArchiveError(BadRequestError):
    type_name = "DownloadArchiveException"


class UrlNotAllowedError(BadRequestError):
    grpc_code = "PERMISSION_DENIED"
    type_name = "ModelException"


class InvalidKeyError(BadRequestError):
    # TorchServe's GRPCInterceptor answers PERMISSION_DENIED; clients may test for it.
    grpc_code = "PERMISSION_DENIED"
    type_name = "InvalidKeyException"


class InvalidModelVersionError(ServerError):
    http_status = 403
    grpc_code = "FAILED_PRECONDITION"
    type_name = "InvalidModelVersionException"


class ForbiddenError(ServerError):
    http_status = 403
    grpc_code = "PERMISSION_DENIED"
    type_name = "ForbiddenException"


class NotFoundError(ServerError):
    http_status = 404
    grpc_code = "NOT_FOUND"
    type_name = "ResourceNotFoundException"


class ModelNotFoundError(NotFoundError):
    type_name = "ModelNotFoundException"


class ModelVersionNotFoundError(NotFoundError):
    type_name = "ModelVersionNotFoundException"


class MethodNotAllowedError(ServerError):
    http_status = 405
    grpc_code = "UNIMPLEMENTED"
    type_name = "MethodNotAllowedException"


class ModelApiDisabledError(MethodNotAllowedError):
    grpc_code = "PERMISSION_DENIED"


class RequestTimeoutError(ServerError):
    http_status = 408
    grpc_code = "DEADLINE_EXCEEDED"
    type_name = "RequestTimeoutException"


class ConflictError(ServerError):
    http_status = 409
    grpc_code = "ALREADY_EXISTS"
    type_name = "ConflictStatusException"


class PayloadTooLargeError(ServerError):
    http_status = 413
    grpc_code = "RESOURCE_EXHAUSTED"
    type_name = "PayloadTooLargeException"


class InternalServerError(ServerError):
    pass


class WorkerDiedError(InternalServerError):
    """The worker serving a request died or was killed (timeout): TorchServe answers "Worker died."."""

    def __init__(self, message: str = "Worker died.") -> None:
        super().__init__(message)


class ServiceUnavailableError(ServerError):
    http_status = 503
    grpc_code = "UNAVAILABLE"
    type_name = "ServiceUnavailableException"


class InsufficientStorageError(ServerError):
    http_status = 507
    grpc_code = "RESOURCE_EXHAUSTED"
    type_name = "InternalServerException"

    #: errno values that mean the disk (or a quota or file size limit) is full, not bad input.
    ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})

    @classmethod
    def from_os_error(cls, exc: OSError, doing: str) -> InsufficientStorageError | None:
        """The error to answer when ``exc`` (raised while ``doing``) means no space; else None.

        >>> full = OSError(errno.ENOSPC, "No space left on device")
        >>> InsufficientStorageError.from_os_error(full, "extracting").message
        'Out of disk space while extracting (No space left on device): free some and try again.'
        """
        if exc.errno not in cls.ERRNOS:
            return None
        return cls(f"Out of disk space while {doing} ({exc.strerror}): free some and try again.")


class PredictionError(ServerError):
    """A handler failed a request with a status of its own (``PredictionException(msg, 418)``).

    TorchServe renders these with type ``InternalServerException`` whatever the status.
    """

    def __init__(self, message: str, http_status: int) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.grpc_code = grpc_code_for_status(http_status)


def grpc_code_for_status(status: int) -> str:
    """Map an HTTP status from a handler to a gRPC status code name (total over all ints).

    Follows what TorchServe 0.12 returns for handler-generated statuses.

    >>> [grpc_code_for_status(s) for s in (200, 418, 503, 507, 500)]
    ['OK', 'FAILED_PRECONDITION', 'UNAVAILABLE', 'INTERNAL', 'INTERNAL']
    """
    if status < 400:
        return "OK"
    if status == 503:
        return "UNAVAILABLE"
    if status == 404:
        return "NOT_FOUND"
    if status == 408:
        return "DEADLINE_EXCEEDED"
    if status == 413:
        return "RESOURCE_EXHAUSTED"
    if status < 500:
        return "FAILED_PRECONDITION"
    return "INTERNAL"
