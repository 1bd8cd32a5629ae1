"""Build, start and stop Ember's two grpc.aio servers (inference and management).

    servers = await start_grpc(config, inference_service, management_service)
    ...
    await servers.stop(grace_s=30)

Inference port (``grpc_inference_address:grpc_inference_port``, 127.0.0.1:7070 by default):
TorchServe's ``InferenceAPIsService``, plus the Open Inference Protocol service when
``ts_open_inference_protocol=true``. Management port (127.0.0.1:7071): ``ManagementAPIsService``.
Both also serve standard health checking (``grpc.health.v1.Health``) and server reflection.
Inbound messages are capped at ``max_request_size`` (RESOURCE_EXHAUSTED beyond, as TorchServe's
``maxInboundMessageSize``), outbound at ``max_response_size`` plus room for the envelope.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
from google.protobuf import message_factory
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from emberserve.auth import TokenAuthority, log_wildcard_bind
from emberserve.errors import ConfigError
from emberserve.grpc.auth import TokenInterceptor
from emberserve.grpc.errors import checked_stream, safe_deserializer
from emberserve.grpc.generated import inference_pb2, management_pb2
from emberserve.grpc.generated import open_inference_grpc_pb2 as oip_pb2
from emberserve.grpc.inference_servicer import InferenceBackend, InferenceServicer
from emberserve.grpc.management_servicer import ManagementBackend, ManagementServicer
from emberserve.grpc.oip_servicer import STANDARD_SERVICE_NAME, OpenInferenceServicer
from emberserve.tls import TlsSettings, grpc_key_pair

log = logging.getLogger("emberserve.grpc")

INFERENCE_DESCRIPTOR = inference_pb2.DESCRIPTOR.services_by_name["InferenceAPIsService"]
MANAGEMENT_DESCRIPTOR = management_pb2.DESCRIPTOR.services_by_name["ManagementAPIsService"]
OIP_DESCRIPTOR = oip_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
INFERENCE_SERVICE: str = INFERENCE_DESCRIPTOR.full_name
MANAGEMENT_SERVICE: str = MANAGEMENT_DESCRIPTOR.full_name
OIP_SERVICE: str = OIP_DESCRIPTOR.full_name

#: Room for the protobuf envelope around a prediction of exactly max_response_size bytes.
SEND_HEADROOM_BYTES = 64 * 1024
#: HTTP/2 streams one client connection may have open at once (bounds stream floods).
MAX_CONCURRENT_STREAMS = 256
#: Streamed parts waiting for a slow reader, as a multiple of max_response_size.
STREAM_BACKLOG_RESPONSES = 4
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", "[::]", "*", ""})  # noqa: S104 - names, not binds


class GrpcSettings(TlsSettings, Protocol):
    """The :class:`~emberserve.config.ServerConfig` attributes the gRPC servers read."""

    @property
    def grpc_inference_address(self) -> str: ...
    @property
    def grpc_inference_port(self) -> int: ...
    @property
    def grpc_management_address(self) -> str: ...
    @property
    def grpc_management_port(self) -> int: ...
    @property
    def enable_grpc_ssl(self) -> bool: ...
    @property
    def ts_open_inference_protocol(self) -> bool: ...
    @property
    def max_request_size(self) -> int: ...
    @property
    def max_response_size(self) -> int: ...
    @property
    def enable_model_api(self) -> bool: ...
    @property
    def grpc_inference_max_connection_age_ms(self) -> int | None: ...
    @property
    def grpc_management_max_connection_age_ms(self) -> int | None: ...
    @property
    def grpc_inference_max_connection_age_grace_ms(self) -> int | None: ...
    @property
    def grpc_management_max_connection_age_grace_ms(self) -> int | None: ...


@dataclass
class GrpcServers:
    """The two running servers and the ports they bound (useful with port 0)."""

    inference: grpc.aio.Server
    management: grpc.aio.Server
    inference_port: int
    management_port: int
    _health: Sequence[Any] = ()

    async def stop(self, grace_s: float) -> None:
        """Refuse new calls, give running ones ``grace_s`` seconds, then cancel what is left.

        Health checks answer NOT_SERVING from the start of the grace period. Calling it again
        with a shorter grace cuts a running stop short: call ``stop(0)`` once the jobs have
        drained, so that idle long-lived calls (health Watch, an open StreamPredictions2) do
        not hold the shutdown for the whole grace period.
        """
        for servicer in self._health:
            await servicer.enter_graceful_shutdown()
        await asyncio.gather(self.inference.stop(grace_s), self.management.stop(grace_s))
        log.info("gRPC servers stopped")


async def start_grpc(
    config: GrpcSettings,
    inference: InferenceBackend,
    management: ManagementBackend,
    tokens: TokenAuthority | None = None,
) -> GrpcServers:
    """Start both gRPC servers; raises ConfigError when a port cannot be bound or the TLS
    certificate (``enable_grpc_ssl``) cannot be read.

    With ``tokens``, calls need the same keys as REST (:mod:`emberserve.grpc.auth`).
    """
    credentials = None
    if config.enable_grpc_ssl:
        credentials = grpc.ssl_server_credentials([grpc_key_pair(config)])
    inference_services = [INFERENCE_SERVICE]  # what health checking and reflection list
    if config.ts_open_inference_protocol:
        inference_services.append(OIP_SERVICE)
    guarded = [*inference_services, STANDARD_SERVICE_NAME]
    inference_server = grpc.aio.server(
        interceptors=[TokenInterceptor(tokens, "inference", guarded)] if tokens else None,
        options=server_options(
            config,
            config.grpc_inference_max_connection_age_ms,
            config.grpc_inference_max_connection_age_grace_ms,
        ),
    )
    backlog = STREAM_BACKLOG_RESPONSES * max(config.max_response_size, 1 << 20)
    handlers = [
        service_handler(INFERENCE_DESCRIPTOR, InferenceServicer(inference, max_backlog_bytes=backlog))
    ]
    if config.ts_open_inference_protocol:
        oip = OpenInferenceServicer(inference, management)
        handlers.append(service_handler(OIP_DESCRIPTOR, oip))
        handlers.append(service_handler(OIP_DESCRIPTOR, oip, name=STANDARD_SERVICE_NAME))
    inference_server.add_generic_rpc_handlers(handlers)
    management_server = grpc.aio.server(
        interceptors=[TokenInterceptor(tokens, "management", [MANAGEMENT_SERVICE])] if tokens else None,
        options=server_options(
            config,
            config.grpc_management_max_connection_age_ms,
            config.grpc_management_max_connection_age_grace_ms,
        ),
    )
    management_server.add_generic_rpc_handlers(
        [
            service_handler(
                MANAGEMENT_DESCRIPTOR,
                ManagementServicer(management, model_api_enabled=config.enable_model_api),
            )
        ]
    )
    healths = [
        await add_health_and_reflection(inference_server, inference_services),
        await add_health_and_reflection(management_server, [MANAGEMENT_SERVICE]),
    ]
    inference_port = bind(
        inference_server,
        "inference",
        config.grpc_inference_address,
        config.grpc_inference_port,
        credentials,
        keyed=tokens is not None,
    )
    try:
        management_port = bind(
            management_server,
            "management",
            config.grpc_management_address,
            config.grpc_management_port,
            credentials,
            keyed=tokens is not None,
        )
    except ConfigError:
        # A server that never ran keeps its port bound: run it for an instant to release the port.
        await inference_server.start()
        await inference_server.stop(None)
        raise
    await inference_server.start()
    await management_server.start()
    log.info(
        "gRPC inference API bound to %s:%d, management API to %s:%d",
        config.grpc_inference_address,
        inference_port,
        config.grpc_management_address,
        management_port,
    )
    return GrpcServers(inference_server, management_server, inference_port, management_port, healths)


def server_options(
    config: GrpcSettings, max_age_ms: int | None = None, max_age_grace_ms: int | None = None
) -> list[tuple[str, int]]:
    """Channel arguments of one server (connection ages as TorchServe's grpc_*_max_connection_age*_ms)."""
    options = [
        ("grpc.max_receive_message_length", config.max_request_size),
        ("grpc.max_send_message_length", config.max_response_size + SEND_HEADROOM_BYTES),
        ("grpc.max_concurrent_streams", MAX_CONCURRENT_STREAMS),
        # Without this, Linux lets a second server bind the same port and steal half the calls.
        ("grpc.so_reuseport", 0),
    ]
    # gRPC core takes 32-bit values; larger ones (TorchServe's default is Long.MAX_VALUE) mean "never".
    if max_age_ms is not None and 0 < max_age_ms < 2**31:
        options.append(("grpc.max_connection_age_ms", max_age_ms))
    if max_age_grace_ms is not None and 0 <= max_age_grace_ms < 2**31:
        options.append(("grpc.max_connection_age_grace_ms", max_age_grace_ms))
    return options


def bind(
    server: grpc.aio.Server,
    name: str,
    host: str,
    port: int,
    credentials: grpc.ServerCredentials | None = None,
    *,
    keyed: bool = False,
) -> int:
    """Bind ``host:port`` (TLS with ``credentials``, else plaintext); returns the bound port,
    ConfigError when impossible."""
    target = f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"
    try:
        if credentials is not None:
            bound: int = server.add_secure_port(target, credentials)
        else:
            bound = server.add_insecure_port(target)
    except RuntimeError as exc:
        bound = 0
        log.debug("binding %s failed: %s", target, exc)
    if not bound:
        raise ConfigError(
            f"Cannot listen on {target} for the gRPC {name} API. Is another server running? "
            f"Change grpc_{name}_address / grpc_{name}_port in config.properties."
        )
    if host in WILDCARD_HOSTS:
        log_wildcard_bind(log, f"gRPC {name}", target, keyed=keyed)
    return bound


async def add_health_and_reflection(server: grpc.aio.Server, services: list[str]) -> Any:
    """Standard health checking (SERVING for the server and each service) and server reflection."""
    servicer = health.aio.HealthServicer()
    for service in [health.OVERALL_HEALTH, *services]:
        await servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    reflection.enable_server_reflection([*services, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    return servicer


def _checking_stream(
    behaviour: Callable[[Any, Any], Any], *, server_streaming: bool
) -> Callable[[Any, Any], Any]:
    """``behaviour`` reading its client stream through :func:`checked_stream`.

    grpc.aio tells async-generator methods from coroutine methods by inspection, so the wrapper
    must be of the same kind as ``behaviour``.
    """
    if server_streaming:

        async def answer_stream(requests: Any, context: Any) -> AsyncGenerator[Any, None]:
            async with contextlib.aclosing(behaviour(checked_stream(requests), context)) as answers:
                async for answer in answers:
                    yield answer

        return answer_stream

    async def answer_one(requests: Any, context: Any) -> Any:
        return await behaviour(checked_stream(requests), context)

    return answer_one


def service_handler(service: Any, servicer: object, *, name: str | None = None) -> grpc.GenericRpcHandler:
    """Serve every rpc of the service descriptor ``service`` with ``servicer``'s method of that name.

    ``name`` serves it under another full service name with the same messages (the standard
    KServe v2 name of the Open Inference Protocol service). A missing method fails here, at startup.
    """
    kinds = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }
    handlers = {}
    for method in service.methods:
        make = kinds[(method.client_streaming, method.server_streaming)]
        behaviour = getattr(servicer, method.name)
        if method.client_streaming:
            behaviour = _checking_stream(behaviour, server_streaming=method.server_streaming)
        handlers[method.name] = make(
            behaviour,
            request_deserializer=safe_deserializer(message_factory.GetMessageClass(method.input_type)),
            response_serializer=message_factory.GetMessageClass(method.output_type).SerializeToString,
        )
    handler: grpc.GenericRpcHandler = grpc.method_handlers_generic_handler(
        name or service.full_name, handlers
    )
    return handler
