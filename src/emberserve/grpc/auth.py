"""Token authorization for the gRPC APIs: the same keys and rules as REST (:mod:`emberserve.auth`).

Clients send the key as call metadata ``authorization: Bearer <key>``: the inference key to the
inference port's services (TorchServe's and the Open Inference Protocol), the management key to
the management port. Health checking and reflection stay open so probes and tooling work.
A refused call ends with PERMISSION_DENIED and TorchServe's message, as TorchServe's own
interceptor answers (see docs/grpc.md).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import grpc

from emberserve.auth import AUTHORIZATION_FAILED, Api, TokenAuthority
from emberserve.errors import InvalidKeyError
from emberserve.grpc.errors import abort

__all__ = ["TokenInterceptor"]


class TokenInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc ships no types
    """Refuses calls to ``services`` (full service names) without the ``api`` key."""

    def __init__(self, authority: TokenAuthority, api: Api, services: Iterable[str]) -> None:
        self._authority = authority
        self._api = api
        self._services = frozenset(services)

    async def intercept_service(
        self,
        continuation: Callable[[Any], Awaitable[grpc.RpcMethodHandler | None]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(details)
        service = details.method.rsplit("/", 1)[0].lstrip("/")
        if handler is None or service not in self._services:
            return handler
        values = [value for key, value in details.invocation_metadata or () if key == "authorization"]
        if self._authority.allows(self._api, [str(v) for v in values]):
            return handler
        return _refusing(handler)


def _refusing(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """A handler of the same shape as ``handler`` that ends every call with InvalidKeyException."""
    error = InvalidKeyError(AUTHORIZATION_FAILED)

    async def refuse(_request: object, context: grpc.aio.ServicerContext) -> None:
        await abort(context, error)

    shape = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }[(bool(handler.request_streaming), bool(handler.response_streaming))]
    made: grpc.RpcMethodHandler = shape(
        refuse,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )
    return made
