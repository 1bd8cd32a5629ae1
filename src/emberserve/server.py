"""The composition root: build everything from a :class:`ServerConfig`, run, shut down in order.

Startup: logging → private work dir → registry and services → listeners (inference, management,
metrics) → models of the config snapshot, else those named by ``load_models`` → startup snapshot.
Listeners open before models load so probes get an honest "not ready yet" instead of a refused
connection.

Shutdown (SIGTERM, SIGINT or :meth:`Server.request_stop`): stop accepting connections, let
in-flight and queued requests finish for up to ``drain_timeout`` seconds, write the shutdown
snapshot, stop every worker (process groups), remove the work dir. A second signal skips the drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import shutil
import signal
import socket
import ssl
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from emberserve import __version__
from emberserve.auth import KEY_FILE_NAME, TokenAuthority, log_wildcard_bind
from emberserve.config import ListenAddress, ServerConfig
from emberserve.errors import ConfigError, ServerError
from emberserve.http.auth_gate import HEALTH_PATHS, TokenApi, token_check
from emberserve.http.browser import CorsPolicy, chain_checks, management_guard
from emberserve.http.connection import EarlyCheck, Handler, HttpConnection, HttpLimits, HttpRequest
from emberserve.http.inference_api import InferenceApi
from emberserve.http.management_api import ManagementApi
from emberserve.http.metrics_api import MetricsApi
from emberserve.http.shared_port import SharedPortApi, shared_check
from emberserve.inference import InferenceService
from emberserve.logs import RequestLog, configure_logging, flush_logs
from emberserve.management import ManagementService, RegisterRequest
from emberserve.metrics import MetricsRecorder
from emberserve.registry import ModelRegistry
from emberserve.snapshot import Kind, SnapshotWriter, parse_model_snapshot
from emberserve.tls import server_ssl_context

if TYPE_CHECKING:
    from emberserve.grpc import GrpcServers

log = logging.getLogger("emberserve.server")
access_log = RequestLog("emberserve.access")

# Once the models are stopped every job has its answer; writing it takes milliseconds, so this
# bound only matters for a client too slow to take a small error body.
ANSWER_GRACE_S = 5.0


@dataclass
class _Listener:
    name: str
    address: ListenAddress
    server: asyncio.Server
    connections: set[HttpConnection] = field(default_factory=set)
    factory: Callable[[], HttpConnection] | None = None
    tls: ssl.SSLContext | None = None

    async def stop_accepting(self) -> None:
        """Close the listening sockets without dropping the connections the kernel had already
        accepted for us (their clients have sent requests and would get a reset).

        The loop stops watching the sockets; duplicates keep them listening while their
        backlog is taken over, then are closed. A connection completing in between the last
        empty accept() and the close is the only one lost, instead of the whole backlog.
        """
        loop = asyncio.get_running_loop()
        held = []
        for listening in self.server.sockets:
            with contextlib.suppress(OSError):
                held.append(socket.socket(fileno=os.dup(listening.fileno())))
        self.server.close()
        for sock in held:
            with sock:
                sock.setblocking(False)
                while self.factory is not None:
                    try:
                        conn, _ = sock.accept()
                    except OSError:
                        break  # BlockingIOError: the backlog is empty
                    with contextlib.suppress(OSError):
                        await loop.connect_accepted_socket(self.factory, conn, ssl=self.tls)


class Server:
    """One Ember server. ``await Server(config).run()`` serves until asked to stop."""

    def __init__(
        self, config: ServerConfig, *, on_ready: Callable[[], None] | None = None, console: bool = True
    ) -> None:
        self.config = config
        self._on_ready = on_ready
        self._console = console
        self._stop = asyncio.Event()
        # Set by a second signal; also cuts short a drain that the first one began.
        self._hurry = asyncio.Event()
        self._listeners: list[_Listener] = []
        # API name → the listener serving it when two share a port ("management" → "inference").
        self._aliases: dict[str, str] = {}
        self._work_dir: Path | None = None
        self.registry = ModelRegistry()
        self.metrics = MetricsRecorder(
            mode=config.metrics_mode,
            metrics_config=config.metrics_config,
            auto_detect=config.model_metrics_auto_detect,
            clean_family=config.metrics_clean_family,
            system_interval_s=float(config.metric_time_interval),
            system_metrics=not config.disable_system_metrics,
        )
        self._system_metrics: asyncio.Task[None] | None = None
        self.inference = InferenceService(self.registry, self.metrics)
        self.management: ManagementService | None = None
        self._grpc: GrpcServers | None = None
        self._snapshots: SnapshotWriter | None = None
        self.tokens: TokenAuthority | None = None
        self._tls: ssl.SSLContext | None = None  # built on the first https:// listener
        if config.snapshots_enabled:
            self._snapshots = SnapshotWriter(config.snapshot_dir, config.file_properties, config.source_file)

    # -- lifecycle --------------------------------------------------------------------------------

    async def run(self) -> None:
        """Start, serve until a stop is requested, then shut down gracefully."""
        try:
            await self.start()
            if self._on_ready is not None:
                self._on_ready()
            await self._stop.wait()
        finally:
            try:
                await self.shutdown()
            finally:
                flush_logs()  # what the log sinks still hold, even when a shutdown step failed

    async def start(self) -> None:
        cfg = self.config
        configure_logging(
            cfg.log_location,
            cfg.log_config,
            console=self._console,
            metrics_dir=cfg.metrics_location,
            json_lines=cfg.log_format == "json",
            background=cfg.async_logging,
        )
        log.info("Ember %s starting (TorchServe 0.12 compatible)", __version__)
        for key, value, source in cfg.non_default_settings():
            log.info("Setting %s = %s (from %s)", key, value, source)
        self._work_dir = Path(tempfile.mkdtemp(prefix="ember-"))
        (self._work_dir / "models").mkdir(mode=0o700)
        self.management = ManagementService(
            cfg,
            self.registry,
            self.inference,
            self._work_dir / "models",
            metrics=self.metrics,
            on_change=lambda: self._snapshot("snapshot"),
        )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        limits = HttpLimits(max_body_bytes=cfg.max_request_size)
        cors = CorsPolicy(cfg.cors_allowed_origin, cfg.cors_allowed_methods, cfg.cors_allowed_headers)
        management_api: Handler = ManagementApi(self.management, model_api_enabled=cfg.enable_model_api)
        inference_check: EarlyCheck | None = None
        management_check: EarlyCheck | None = management_guard(
            cors, loopback_only=_loopback_only(cfg.management_address)
        )
        if not cfg.disable_token_authorization:
            self.tokens = TokenAuthority(
                Path.cwd() / KEY_FILE_NAME, cfg.token_expiration_min, shared_keys=cfg.token_keys_file
            )
            open_paths = HEALTH_PATHS if cfg.token_auth_exempt_health else frozenset()
            inference_check = token_check(self.tokens, "inference", open_paths=open_paths)
            management_check = chain_checks(management_check, token_check(self.tokens, "management"))
            management_api = TokenApi(management_api, self.tokens)
        inference_api = cors.wrap(InferenceApi(self.inference))
        management_api = cors.wrap(management_api)
        if _same_listener(cfg.inference_address, cfg.management_address):
            # TorchServe serves both APIs on one port then (KServe's configs do this).
            await self._listen(
                "inference",
                cfg.inference_address,
                SharedPortApi(inference_api, management_api),
                limits,
                shared_check(inference_check, management_check),
            )
            self._aliases["management"] = "inference"
        else:
            await self._listen("inference", cfg.inference_address, inference_api, limits, inference_check)
            await self._listen("management", cfg.management_address, management_api, limits, management_check)
        if cfg.enable_metrics_api:
            await self._listen("metrics", cfg.metrics_address, cors.wrap(MetricsApi(self.metrics)), limits)
        self._system_metrics = asyncio.get_running_loop().create_task(self.metrics.run_system_metrics())
        await self._start_grpc()
        await self._load_startup_models()

    async def _start_grpc(self) -> None:
        assert self.management is not None
        try:
            from emberserve.grpc import start_grpc  # noqa: PLC0415 - grpcio is the optional [grpc] extra
        except ImportError as exc:
            log.warning("gRPC APIs are off: %s. Install them with: pip install 'emberserve[grpc]'", exc)
            return
        self._grpc = await start_grpc(self.config, self.inference, self.management, self.tokens)

    def request_stop(self, *, fast: bool = False) -> None:
        if fast:
            self._hurry.set()
        self._stop.set()

    def _on_signal(self, sig: signal.Signals) -> None:
        if self._stop.is_set():
            log.warning("Second %s: stopping now without draining", sig.name)
            self.request_stop(fast=True)
            return
        log.info("Received %s: draining (up to %ss), then stopping", sig.name, self.config.drain_timeout)
        self.request_stop()

    async def shutdown(self) -> None:
        drain = 0.0 if self._hurry.is_set() else float(self.config.drain_timeout)
        # gRPC stops accepting at once; running calls get the drain time, then are cancelled.
        grpc, self._grpc = self._grpc, None
        grpc_stop = asyncio.ensure_future(grpc.stop(drain)) if grpc is not None else None
        for listener in self._listeners:
            await listener.stop_accepting()
            # Keep-alive clients must not start new requests during the drain: they would
            # reach models that are about to be stopped (and get 404 once they are).
            for conn in list(listener.connections):
                conn.begin_drain()
        await self._drain(drain)
        if grpc is not None and grpc_stop is not None:
            # Jobs have drained: cut idle long-lived calls short (a probe's health Watch, an open
            # bidirectional stream), and finish before the workers stop so no call outlives them.
            await grpc.stop(0)
            await grpc_stop
        if self.management is not None:
            if self.inference.startup_done:  # a failed start has nothing worth restoring
                self._snapshot("shutdown")
            await self.management.close(0.0 if self._hurry.is_set() else 5.0)
        await self._finish_answers(ANSWER_GRACE_S)
        for listener in self._listeners:
            for conn in list(listener.connections):
                conn.close_idle()
        self._listeners.clear()
        if self._work_dir is not None:
            shutil.rmtree(self._work_dir, ignore_errors=True)
            self._work_dir = None
        if self.tokens is not None:
            self.tokens.remove_file()
        if self._system_metrics is not None:
            self._system_metrics.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._system_metrics
        log.info("Ember stopped")

    async def _finish_answers(self, seconds: float) -> None:
        """Let every connection write the answer of the job it waited on. Stopping the models
        settled each job (an error for one cut short), but writing that answer takes the
        connection's task a few more loop turns; a task still running when ``run`` returns is
        cancelled by ``asyncio.run`` and its client sees a closed socket instead of a 503."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while any(conn.answering for listener in self._listeners for conn in listener.connections):
            if loop.time() >= deadline:
                log.warning("Stopping with answers still unwritten after %ss", seconds)
                return
            await asyncio.sleep(0.01)

    async def _drain(self, seconds: float) -> None:
        """Wait until no job is queued or running and no connection is receiving or answering
        a request, or ``seconds`` pass, or a second signal says not to wait any longer."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        hurry = loop.create_task(self._hurry.wait())
        try:
            while (remaining := deadline - loop.time()) > 0:
                idle = loop.create_task(self.inference.wait_idle(remaining))
                await asyncio.wait((idle, hurry), return_when=asyncio.FIRST_COMPLETED)
                if not idle.done():
                    idle.cancel()
                    log.warning(
                        "Drain cut short with %d requests in flight: they get an error",
                        self.inference.in_flight,
                    )
                    return
                if not idle.result():
                    break
                if not any(conn.busy for listener in self._listeners for conn in listener.connections):
                    return
                # A request still being read or written has no job yet (or any more): look
                # again shortly. Bounded by the drain time like everything else here.
                await asyncio.sleep(0.01)
        finally:
            hurry.cancel()
        if seconds > 0:
            log.warning(
                "Drain time (%ss) is over with %d requests still in flight: they get an error",
                seconds,
                self.inference.in_flight,
            )

    # -- listeners --------------------------------------------------------------------------------

    async def _listen(
        self,
        name: str,
        address: ListenAddress,
        api: Handler,
        limits: HttpLimits,
        early_check: EarlyCheck | None = None,
    ) -> None:
        loop = asyncio.get_running_loop()
        connections: set[HttpConnection] = set()

        def factory() -> HttpConnection:
            return HttpConnection(api, limits, _log_access, early_check=early_check, connections=connections)

        tls = None
        if address.scheme == "https":
            if self._tls is None:
                self._tls = server_ssl_context(self.config)
            tls = self._tls
        try:
            if address.scheme == "unix":
                server = await loop.create_unix_server(factory, address.path)
            else:
                server = await loop.create_server(
                    factory,
                    address.host,
                    address.port,
                    reuse_address=True,
                    family=socket.AF_UNSPEC,
                    backlog=1024,
                    ssl=tls,
                    ssl_handshake_timeout=10.0 if tls else None,
                )
        except OSError as exc:
            raise ConfigError(
                f"Cannot listen on {address.url} for the {name} API: {exc.strerror}. "
                f"Is another server running? Change {name}_address in config.properties."
            ) from exc
        if address.is_wildcard:
            log_wildcard_bind(log, name, address.url, keyed=self.tokens is not None and name != "metrics")
        self._listeners.append(_Listener(name, address, server, connections, factory, tls))
        log.info("%s API bound to %s", name.capitalize(), address.url)

    def bound_port(self, name: str) -> int:
        """The port a listener actually bound (useful with port 0 in tests)."""
        name = self._aliases.get(name, name)
        for listener in self._listeners:
            if listener.name == name:
                sockname = listener.server.sockets[0].getsockname()
                return int(sockname[1])
        raise KeyError(name)

    # -- startup models ---------------------------------------------------------------------------

    def _snapshot(self, kind: Kind) -> None:
        if self._snapshots is None or self.management is None:
            return
        try:
            path = self._snapshots.write(kind, self.management.snapshot_models())
        except OSError as exc:  # e.g. a full disk: the previous snapshots stay valid
            log.warning("Could not write the %s config snapshot: %s", kind, exc)
            return
        log.info("Config snapshot written: %s", path)

    async def _load_startup_models(self) -> None:
        assert self.management is not None
        if self.config.model_snapshot is not None:
            # Restoring a snapshot replaces load_models and --models, as in TorchServe.
            log.info("Restoring the configuration and models of snapshot %s", self.config.source_file)
            try:
                models = parse_model_snapshot(self.config.model_snapshot)
            except ValueError as exc:
                raise ConfigError(f"model_snapshot in {self.config.source_file}: {exc}") from None
            await self.management.restore(models)
            self.inference.startup_done = True
            self._snapshot("startup")
            return
        for spec in self._startup_specs():
            name, _, url = spec.rpartition("=")
            try:
                answer = await self.management.register(
                    RegisterRequest(url=url, synchronous=True), at_startup=True, fixed_name=name or None
                )
                log.info("%s", answer.message)
            except ServerError as err:
                log.error("Failed to load model %s at startup: %s", spec, err.message)
        self.inference.startup_done = True
        self._snapshot("startup")

    def _startup_specs(self) -> list[str]:
        cfg = self.config
        specs = list(cfg.load_models)
        if specs in (["all"], ["ALL"]):
            if cfg.model_store is None:
                return []
            return sorted(
                p.name
                for p in cfg.model_store.iterdir()
                if p.suffix == ".mar"
                or p.name.endswith((".tar.gz", ".tgz"))
                or (p.is_dir() and (p / "MAR-INF" / "MANIFEST.json").is_file())
            )
        return [s for s in specs if s and s not in ("standalone",)]


def _same_listener(first: ListenAddress, second: ListenAddress) -> bool:
    """Whether two APIs must share one listener (port 0 means "any free port": never shared)."""
    return first == second and (first.scheme == "unix" or first.port != 0)


def _loopback_only(address: ListenAddress) -> bool:
    """Whether a TCP listener accepts loopback clients only (what a DNS-rebinding page would target)."""
    if address.scheme == "unix":
        return False
    if address.host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.host.strip("[]")).is_loopback
    except ValueError:
        return False


def _log_access(request: HttpRequest, status: int, elapsed_ms: float, headers: list[tuple[str, str]]) -> None:
    if access_log.enabled():
        # Control characters from clients never reach the log file raw.
        line = f"{request.method} {request.path} HTTP/1.1".encode("unicode_escape").decode("ascii")
        request_id = next((v for k, v in headers if k == "x-request-id"), None)
        access_log.write(f'{request.client} "{line}" {status} {round(elapsed_ms)}', request_id)


def run_server(
    config: ServerConfig, *, on_ready: Callable[[], None] | None = None, console: bool = True
) -> int:
    """Run a server in this process until it stops; returns the process exit code."""
    with contextlib.suppress(ImportError):
        import uvloop  # noqa: PLC0415 - optional speed-up, not needed for correctness

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    try:
        asyncio.run(Server(config, on_ready=on_ready, console=console).run())
    except ConfigError as err:
        log.error("%s", err)
        print(f"Ember could not start: {err}")
        return ConfigError.exit_code
    return 0
