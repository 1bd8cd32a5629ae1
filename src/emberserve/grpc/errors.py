"""The one place a :class:`~emberserve.errors.ServerError` becomes a gRPC status.

Every servicer method runs inside :func:`rpc_errors` (unary answers) or :func:`rpc_stream_errors`
(streamed answers): a ``ServerError`` ends the call with the error's own ``grpc_code``, anything
else is logged with its traceback and ends the call with ``INTERNAL`` and a generic text.

Details text: TorchServe sends ``"<message>\\n<java exception class>"``; Ember keeps the message as
the first line and puts TorchServe's exception ``type`` name (the REST body's ``"type"``) on the
second, so clients that read the first line, or look for ``ModelNotFoundException``, keep working.
The same information is also attached as a standard rich error (``grpc-status-details-bin``:
``google.rpc.Status`` with one ``google.rpc.ErrorInfo``) for clients that prefer structure::

    >>> err = status_of(ModelNotFoundError("Model not found: nosuch"))
    >>> err.code, err.details
    (<StatusCode.NOT_FOUND: (5, 'not found')>, 'Model not found: nosuch\\nModelNotFoundException')
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Concatenate, NoReturn, ParamSpec, TypeVar

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2

from emberserve.errors import BadRequestError, InternalServerError, ModelNotFoundError, ServerError  # noqa: F401 (doctest)

log = logging.getLogger("emberserve.grpc")

#: ErrorInfo.domain of every rich error Ember sends.
ERROR_DOMAIN = "emberserve"
DETAILS_METADATA_KEY = "grpc-status-details-bin"

P = ParamSpec("P")
S = TypeVar("S")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class GrpcStatus:
    """A ServerError as gRPC sees it: code, details text and the rich ``google.rpc.Status``."""

    code: grpc.StatusCode
    details: str
    rich: status_pb2.Status

    @property
    def trailing_metadata(self) -> tuple[tuple[str, bytes], ...]:
        return ((DETAILS_METADATA_KEY, self.rich.SerializeToString()),)


def grpc_code(error: ServerError) -> grpc.StatusCode:
    """The status code of ``error`` (an error can never end a call with OK)."""
    code: grpc.StatusCode = getattr(grpc.StatusCode, error.grpc_code, grpc.StatusCode.INTERNAL)
    return grpc.StatusCode.INTERNAL if code == grpc.StatusCode.OK else code


def status_of(error: ServerError) -> GrpcStatus:
    """Everything needed to end a call with ``error``."""
    code = grpc_code(error)
    details = f"{error.message}\n{error.type_name}"
    return GrpcStatus(code, details, rich_status(error, code, details))


def rich_status(error: ServerError, code: grpc.StatusCode, message: str) -> status_pb2.Status:
    """``google.rpc.Status`` for ``error`` (also the per-message status of StreamPredictions2)."""
    info = error_details_pb2.ErrorInfo(
        reason=error.type_name, domain=ERROR_DOMAIN, metadata={"http_status": str(error.http_status)}
    )
    packed = any_pb2.Any()
    packed.Pack(info)
    numeric: int = code.value[0]
    return status_pb2.Status(code=numeric, message=message, details=[packed])


@dataclass(frozen=True, slots=True)
class Undecodable:
    """What the request deserializer hands over for bytes that are not the expected message.

    grpc would answer a deserializer exception with UNKNOWN and the parser's text; passing this
    marker on lets the servicer's error handling answer INVALID_ARGUMENT instead.
    """

    message_type: str

    def error(self) -> BadRequestError:
        return BadRequestError(f"The request is not a valid {self.message_type} message.")


def safe_deserializer(message_class: Any) -> Callable[[bytes], Any]:
    """``message_class.FromString`` that returns :class:`Undecodable` instead of raising."""
    full_name = message_class.DESCRIPTOR.full_name

    def deserialize(raw: bytes) -> Any:
        try:
            return message_class.FromString(raw)
        except DecodeError:
            return Undecodable(full_name)

    return deserialize


async def checked_stream(requests: AsyncIterator[Any]) -> AsyncGenerator[Any, None]:
    """A client stream whose undecodable messages raise BadRequestError where they are read."""
    async for request in requests:
        if isinstance(request, Undecodable):
            raise request.error()
        yield request


def as_server_error(exc: Exception) -> ServerError:
    """``exc`` as the error a client may see; anything unexpected is logged and hidden."""
    if isinstance(exc, ServerError):
        return exc
    log.error("Unexpected error in a gRPC call", exc_info=exc)
    return InternalServerError("Internal server error")


async def abort(context: Any, error: ServerError) -> NoReturn:
    """End the call with ``error`` (``context`` is a ``grpc.aio.ServicerContext``)."""
    status = status_of(error)
    await context.abort(status.code, status.details, trailing_metadata=status.trailing_metadata)
    raise AssertionError("context.abort returned")  # pragma: no cover - abort always raises


def rpc_errors(
    method: Callable[Concatenate[S, P], Awaitable[R]],
) -> Callable[Concatenate[S, P], Awaitable[R]]:
    """Decorate a unary-answer servicer method: errors end the call as described above.

    The wrapped method's last positional argument must be the call's ``ServicerContext``.
    """

    @functools.wraps(method)
    async def wrapper(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            if args and isinstance(args[0], Undecodable):
                raise args[0].error()
            return await method(self, *args, **kwargs)
        except (asyncio.CancelledError, grpc.aio.AbortError):
            raise
        except Exception as exc:  # every error must end the call with a status
            await abort(args[-1], as_server_error(exc))

    return wrapper


def rpc_stream_errors(
    method: Callable[Concatenate[S, P], AsyncGenerator[R, None]],
) -> Callable[Concatenate[S, P], AsyncGenerator[R, None]]:
    """:func:`rpc_errors` for a streamed-answer servicer method (an async generator).

    The method's generator is closed as soon as the call ends (cancelled, deadline, error), so
    its ``finally`` blocks run at once rather than whenever it is garbage collected.
    """

    @functools.wraps(method)
    async def wrapper(self: S, /, *args: P.args, **kwargs: P.kwargs) -> AsyncGenerator[R, None]:
        try:
            if args and isinstance(args[0], Undecodable):
                raise args[0].error()
            async with contextlib.aclosing(method(self, *args, **kwargs)) as stream:
                async for item in stream:
                    yield item
        except (asyncio.CancelledError, grpc.aio.AbortError):
            raise
        except Exception as exc:  # every error must end the call with a status
            await abort(args[-1], as_server_error(exc))

    return wrapper
