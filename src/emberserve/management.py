"""The management service: register, scale, describe, list, set-default, unregister.

Protocol-agnostic (REST and gRPC both call it); every answer text is TorchServe's (reference §4).
Settings precedence for a version: built-in defaults < ``config.properties`` (global keys, then the
``models=`` entry) < the archive's ``model-config.yaml`` < management API parameters.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from emberserve import TORCHSERVE_COMPAT_VERSION
from emberserve.archive import ModelArchive, open_model_archive
from emberserve.archive.download import DownloadPolicy
from emberserve.archive.model_config import ModelYamlSettings
from emberserve.batching import BatchQueue
from emberserve.config import ServerConfig
from emberserve.errors import (
    BadRequestError,
    ConflictError,
    InternalServerError,
    InvalidModelError,
    InvalidModelVersionError,
    ServerError,
)
from emberserve.inference import InferenceService, new_request_id, no_worker_error
from emberserve.metrics import MetricsRecorder
from emberserve.model_source import resolve_source
from emberserve.registry import ModelRegistry, ModelVersion, VersionSettings
from emberserve.snapshot import SnapshotModel
from emberserve.workers.pool import PoolSettings, WorkerPool, WorkerStartError
from emberserve.workers.protocol import LoadModel, Request

log = logging.getLogger("emberserve.management")

MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-.]*$")
MAX_MODEL_NAME_LENGTH = 256
RUNTIMES = ("python", "python3", "lsp")
#: Accepted ranges of the numeric register parameters (SECURITY.md M3; TorchServe takes anything).
#: -1 workers stays TorchServe's "not given"; 0 s of startup time is allowed because TorchServe
#: answers it (workers fail to start, the model stays registered).
REGISTER_RANGES: dict[str, tuple[int, int]] = {
    "batch_size": (1, 8192),
    "max_batch_delay": (0, 3_600_000),  # milliseconds: one hour
    "response_timeout": (1, 604_800),  # seconds: one week
    "startup_timeout": (0, 604_800),
    "initial_workers": (-1, 1_000_000),  # the real cap is max_workers_per_model, checked later
}


@dataclass(frozen=True, slots=True)
class RegisterRequest:
    """Parameters of ``POST /models`` / gRPC RegisterModel. None = not given."""

    url: str | None
    model_name: str | None = None
    handler: str | None = None
    runtime: str | None = None
    batch_size: int | None = None
    max_batch_delay: int | None = None
    initial_workers: int | None = None
    synchronous: bool = True
    response_timeout: int | None = None
    startup_timeout: int | None = None
    s3_sse_kms: bool = False


@dataclass(frozen=True, slots=True)
class Answer:
    """A management answer: HTTP status and the ``{"status": …}`` text TorchServe sends."""

    status: int
    message: str


def check_register_numbers(req: RegisterRequest) -> None:
    """Refuse out-of-range numbers (400) before anything is downloaded or started.

    >>> check_register_numbers(RegisterRequest(url="m.mar", batch_size=0))
    Traceback (most recent call last):
    ...
    emberserve.errors.BadRequestError: Invalid batch_size: 0. It must be between 1 and 8192.
    """
    for name, (low, high) in REGISTER_RANGES.items():
        value = getattr(req, name)
        if value is not None and not low <= value <= high:
            raise BadRequestError(f"Invalid {name}: {value}. It must be between {low} and {high}.")


def check_model_name(name: str) -> None:
    """Names become directory names, log fields and metric labels: keep them boring (SECURITY.md M1)."""
    if len(name) > MAX_MODEL_NAME_LENGTH or not MODEL_NAME_RE.match(name):
        raise BadRequestError(
            f"Invalid model name: {name[:64]!r}. Model names must match {MODEL_NAME_RE.pattern} "
            f"and be at most {MAX_MODEL_NAME_LENGTH} characters."
        )


class ManagementService:
    """See the module docstring. One instance per server (built in :mod:`emberserve.server`)."""

    def __init__(
        self,
        config: ServerConfig,
        registry: ModelRegistry,
        inference: InferenceService,
        work_dir: Path,
        metrics: MetricsRecorder | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self._config = config
        self._registry = registry
        self._inference = inference
        self._work_dir = work_dir
        self._metrics = metrics
        if metrics is not None:
            metrics.set_state_source(self._metrics_state)
        #: Called after every change of what is registered or how it is scaled (config snapshots).
        self._on_change = on_change
        self._worker_ids = iter(range(config.initial_worker_port, 1 << 31))
        self._background: set[asyncio.Task[None]] = set()

    # -- register ---------------------------------------------------------------------------------

    async def register(
        self, req: RegisterRequest, *, at_startup: bool = False, fixed_name: str | None = None
    ) -> Answer:
        """Register a model archive; TorchServe's texts and statuses (reference §4)."""
        if req.url is None:
            raise BadRequestError("Parameter url is required.")
        runtime = (req.runtime or "").lower() or None
        if runtime is not None and runtime not in RUNTIMES:
            raise BadRequestError(f"Invalid RuntimeType value: {req.runtime}")
        if req.model_name:
            check_model_name(req.model_name)
        check_register_numbers(req)
        source = await asyncio.to_thread(
            resolve_source,
            req.url,
            self._config.model_store,
            self._download_policy(),
            s3_sse_kms=req.s3_sse_kms,
        )
        try:
            archive = await asyncio.to_thread(
                open_model_archive, source.path, self._work_dir, self._config.archive_limits()
            )
        except BaseException:
            if source.owned:
                source.path.unlink(missing_ok=True)
            raise
        try:
            return await self._register_archive(
                req,
                archive,
                runtime,
                source.path if source.owned else None,
                at_startup=at_startup,
                fixed_name=fixed_name,
            )
        except BaseException:
            archive.cleanup()
            if source.owned:
                source.path.unlink(missing_ok=True)
            raise

    async def _register_archive(
        self,
        req: RegisterRequest,
        archive: ModelArchive,
        runtime: str | None,
        owned_file: Path | None,
        *,
        at_startup: bool,
        fixed_name: str | None,
    ) -> Answer:
        manifest = archive.manifest
        name = fixed_name or req.model_name or manifest.model_name
        if not name:
            raise InvalidModelError("Model name is not defined.")
        check_model_name(name)
        version = manifest.model_version or "1.0"
        settings = self._settings(name, version, req, archive, runtime, at_startup=at_startup)
        async with self._registry.lock(name):
            if self._registry.contains(name, version):
                raise ConflictError(f"Model version {version} is already registered for model {name}")
            queue = BatchQueue(settings.job_queue_size, model_name=name)
            load = LoadModel(
                model_name=name,
                model_version=version,
                model_dir=str(archive.model_dir),
                handler=settings.handler,
                manifest=dict(manifest.raw),
                batch_size=settings.batch_size,
                gpu_id=None,
                envelope=settings.envelope,
                limit_max_image_pixels=self._config.limit_max_image_pixels,
                model_yaml_config=archive.model_config,
                server_version=TORCHSERVE_COMPAT_VERSION,
                decode_input_request=self._config.decode_input_request,
            )
            pool = WorkerPool(
                load,
                queue,
                self._pool_settings(settings, gpu_ids_for(archive.settings, self._config.number_of_gpu)),
                self._worker_ids,
                env=self._config.worker_environment(),
                **self._metrics_hooks(name, version),
            )
            entry = ModelVersion(
                name,
                version,
                req.url or "",
                archive,
                settings,
                queue,
                pool,
                loaded_at_startup=at_startup,
                owned_archive_file=str(owned_file) if owned_file else None,
            )
            self._registry.add(entry, make_default=self._wants_default(name, version))
        log.info("Registered model %s version %s from %s", name, version, req.url)
        if not at_startup:
            self._changed()
        workers = settings.min_workers
        if workers == 0:
            return Answer(
                200,
                f'Model "{name}" Version: {version} registered with 0 initial workers. '
                "Use scale workers API to add workers for the model.",
            )
        if not req.synchronous:
            self._spawn(self._scale_quietly(entry, settings.min_workers, settings.max_workers))
            return Answer(202, "Processing worker updates...")
        try:
            await pool.scale(settings.min_workers, settings.max_workers, wait=True)
        except WorkerStartError as exc:
            log.error("Failed to start workers for model %s version %s: %s", name, version, exc)
            raise InternalServerError(f"Failed to start workers for model {name} version: {version}") from exc
        return Answer(200, f'Model "{name}" Version: {version} registered with {workers} initial workers')

    def _download_policy(self) -> DownloadPolicy:
        cfg = self._config
        return DownloadPolicy(
            allowed_urls=cfg.allowed_urls,
            explicit=cfg.sources.get("allowed_urls", "default") != "default",
            max_bytes=cfg.max_archive_bytes,
            timeout_s=float(cfg.model_download_timeout),
        )

    def _wants_default(self, name: str, version: str) -> bool:
        per_model = self._config.model_settings(name, version)
        return bool(per_model and per_model.default_version)

    def _settings(
        self,
        name: str,
        version: str,
        req: RegisterRequest,
        archive: ModelArchive,
        runtime: str | None,
        *,
        at_startup: bool,
    ) -> VersionSettings:
        cfg = self._config
        per_model = cfg.model_settings(name, version)
        yaml = archive.settings

        def pick(api: int | None, yaml_value: int | None, model_value: int | None, default: int) -> int:
            for value in (api, yaml_value, model_value):
                if value is not None:
                    return value
            return default

        if at_startup:
            default_workers = cfg.default_workers_per_model
        else:
            # Registration without initial_workers uses default_workers_per_model only when it was
            # configured explicitly (TorchServe's getConfiguredDefaultWorkersPerModel).
            default_workers = cfg.configured_default_workers_per_model
        initial = (
            req.initial_workers if req.initial_workers is not None and req.initial_workers >= 0 else None
        )
        min_workers = pick(
            initial, yaml.min_workers, per_model.min_workers if per_model else None, default_workers
        )
        max_default = max(min_workers, default_workers)
        max_workers = pick(
            initial, yaml.max_workers, per_model.max_workers if per_model else None, max_default
        )
        max_workers = max(max_workers, min_workers)
        if max_workers > cfg.max_workers_per_model:
            raise BadRequestError(
                f"Asked for {max_workers} workers; at most {cfg.max_workers_per_model} per model "
                "are allowed (max_workers_per_model)."
            )
        return VersionSettings(
            min_workers=min_workers,
            max_workers=max_workers,
            batch_size=max(
                1,
                pick(
                    req.batch_size,
                    yaml.batch_size,
                    per_model.batch_size if per_model else None,
                    cfg.batch_size,
                ),
            ),
            max_batch_delay_ms=max(
                0,
                pick(
                    req.max_batch_delay,
                    yaml.max_batch_delay,
                    per_model.max_batch_delay if per_model else None,
                    cfg.max_batch_delay,
                ),
            ),
            response_timeout_s=pick(
                req.response_timeout,
                yaml.response_timeout,
                per_model.response_timeout if per_model else None,
                cfg.default_response_timeout,
            ),
            startup_timeout_s=pick(
                req.startup_timeout,
                yaml.startup_timeout,
                per_model.startup_timeout if per_model else None,
                cfg.default_startup_timeout,
            ),
            job_queue_size=pick(
                None, yaml.job_queue_size, per_model.job_queue_size if per_model else None, cfg.job_queue_size
            ),
            runtime=runtime or (archive.manifest.runtime or "python").lower(),
            device_type=yaml.device_type or ("gpu" if cfg.number_of_gpu > 0 else "cpu"),
            handler=req.handler or archive.manifest.handler,
            envelope=cfg.service_envelope,
        )

    def _pool_settings(self, s: VersionSettings, gpu_ids: tuple[int, ...] = ()) -> PoolSettings:
        return PoolSettings(
            min_workers=s.min_workers,
            max_workers=s.max_workers,
            batch_size=s.batch_size,
            max_batch_delay_ms=s.max_batch_delay_ms,
            response_timeout_s=s.response_timeout_s,
            startup_timeout_s=s.startup_timeout_s,
            batching_mode=self._config.batching_mode,
            restart_backoff_base_ms=self._config.restart_backoff_base_ms,
            max_restart_backoff_s=self._config.max_restart_backoff_s,
            # Both runtimes run the server's own interpreter: TorchServe runs a bare `python3`
            # from PATH for "python3", which fails whenever that python lacks the server package.
            python=sys.executable,
            gpu_ids=gpu_ids,
            max_response_bytes=self._config.max_response_size,
            max_worker_memory_bytes=self._config.max_worker_memory_mb << 20,
        )

    def _metrics_hooks(self, name: str, version: str) -> dict[str, Any]:
        """The pool callbacks that feed the metrics recorder (none without one)."""
        recorder = self._metrics
        if recorder is None:
            return {}

        def batch_done(size: int, seconds: float) -> None:
            recorder.batch_done(name, version, size, seconds)

        return {
            "on_metrics": recorder.handler_metrics,
            "on_batch": batch_done,
            "on_loaded": recorder.worker_loaded,
        }

    def _metrics_state(self) -> list[tuple[str, str, dict[str, int], int]]:
        """Workers by state and queue depth of every version (scrape-time gauges)."""
        rows: list[tuple[str, str, dict[str, int], int]] = []
        for entry in self._registry.all_versions():
            states: dict[str, int] = {}
            for worker in entry.pool.describe_workers():
                status = str(worker["status"])
                states[status] = states.get(status, 0) + 1
            rows.append((entry.name, entry.version, states, entry.queue.statistics().pending))
        return rows

    # -- scale ------------------------------------------------------------------------------------

    async def scale(
        self,
        name: str,
        version: str | None,
        min_worker: int | None,
        max_worker: int | None,
        *,
        synchronous: bool,
        timeout_s: int | None = None,
    ) -> Answer:
        entry = self._registry.get(name, version)
        minimum = 1 if min_worker is None else min_worker
        maximum = minimum if max_worker is None else max_worker
        if minimum < 0:
            raise BadRequestError("min_worker cannot be negative.")
        if maximum < minimum:
            raise BadRequestError("max_worker cannot be less than min_worker.")
        if maximum > self._config.max_workers_per_model:
            raise BadRequestError(
                f"Asked for {maximum} workers; at most {self._config.max_workers_per_model} "
                "per model are allowed (max_workers_per_model)."
            )
        if not synchronous:
            self._spawn(self._scale_quietly(entry, minimum, maximum, timeout_s))
            self._changed()  # the pool took the new target at once
            return Answer(202, "Processing worker updates...")
        try:
            await entry.pool.scale(minimum, maximum, wait=True, timeout_s=timeout_s)
        except WorkerStartError as exc:
            self._changed()
            log.error("Failed to start workers for model %s: %s", name, exc)
            raise InternalServerError(f"Failed to start workers for model {name} version: {version}") from exc
        self._changed()
        suffix = f", version: {version}" if version else ""
        return Answer(200, f"Workers scaled to {minimum} for model: {name}{suffix}")

    async def _scale_quietly(
        self, entry: ModelVersion, minimum: int, maximum: int, timeout_s: int | None = None
    ) -> None:
        try:
            await entry.pool.scale(minimum, maximum, wait=True, timeout_s=timeout_s)
        except WorkerStartError as exc:
            log.error("Failed to start workers for model %s version %s: %s", entry.name, entry.version, exc)

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- describe / list ----------------------------------------------------------------------------

    def describe(self, name: str, version: str | None) -> list[dict[str, object]]:
        """TorchServe's describe array (key order as emitted by TorchServe 0.12)."""
        entries = self._registry.versions(name) if version == "all" else [self._registry.get(name, version)]
        return [describe_version(e) for e in entries]

    async def customized_metadata(self, name: str, version: str | None) -> object:
        """What the handler's ``describe_handle`` returns, as a JSON value ({} when it returns nothing)."""
        entry = self._registry.get(name, version)
        if entry.pool.live_workers == 0:
            raise no_worker_error(name, "describe")
        request = Request(new_request_id(), "describe", [("describe", "True")], [])
        result = await self._inference.predict(entry, request)
        try:
            value = orjson.loads(result.body)
        except orjson.JSONDecodeError:
            return result.body.decode("utf-8", "replace")
        # describe_handle() usually returns json.dumps(dict): the worker serialises that string as-is.
        if isinstance(value, str):
            try:
                value = orjson.loads(value)
            except orjson.JSONDecodeError:
                return value
        return {} if value is None else value

    def list_models(self, limit: int | None, next_page_token: int | None) -> dict[str, object]:
        """``GET /models`` with TorchServe's pagination quirks (reference §4)."""
        page = 100 if limit is None or limit < 0 or limit > 100 else limit
        start = 0 if next_page_token is None or next_page_token < 0 else next_page_token
        names = self._registry.names()
        chosen = names[start : start + page]
        models = [{"modelName": n, "modelUrl": self._registry.get(n).url} for n in chosen]
        document: dict[str, object] = {}
        if start + page < len(names) or (limit == 0 and start < len(names)):
            document["nextPageToken"] = str(start + page)
        document["models"] = models
        return document

    # -- set default / unregister ---------------------------------------------------------------------

    async def set_default(self, name: str, version: str) -> Answer:
        async with self._registry.lock(name):
            self._registry.set_default(name, version)
        self._changed()
        return Answer(200, f'Default version successfully updated for model "{name}" to "{version}"')

    async def unregister(self, name: str, version: str | None) -> Answer:
        async with self._registry.lock(name):
            entry = self._registry.get(name, version)
            if self._registry.is_default(entry) and len(self._registry.versions(name)) > 1:
                raise InvalidModelVersionError(f"Cannot remove default version for model {name}")
            self._registry.remove(entry)
        self._changed()
        await self._retire(entry, self._config.unregister_model_timeout)
        log.info("Unregistered model %s version %s", name, entry.version)
        return Answer(200, f'Model "{name}" unregistered')

    async def _retire(self, entry: ModelVersion, grace_s: float, *, unregistered: bool = True) -> None:
        """Stop a version that is no longer reachable: queued jobs finish or fail, workers stop.

        An archive this server put into the model store (``file://`` copy, download) is deleted
        when the version is unregistered, and kept at shutdown: the snapshot restores from it.
        """
        await entry.pool.close(grace_s)
        await asyncio.to_thread(entry.archive.cleanup)
        if unregistered and entry.owned_archive_file:
            await asyncio.to_thread(Path(entry.owned_archive_file).unlink, missing_ok=True)

    async def close(self, grace_s: float) -> None:
        """Stop every model (server shutdown)."""
        for task in list(self._background):
            task.cancel()
        entries = list(self._registry.all_versions())
        for entry in entries:
            self._registry.remove(entry)
        await asyncio.gather(
            *(self._retire(e, grace_s, unregistered=False) for e in entries), return_exceptions=True
        )

    def entries(self) -> Iterator[ModelVersion]:
        return self._registry.all_versions()

    # -- snapshots --------------------------------------------------------------------------------------

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()

    def snapshot_models(self) -> list[SnapshotModel]:
        """Every registered version as a config snapshot records it."""
        out: list[SnapshotModel] = []
        for e in self._registry.all_versions():
            pool = e.pool.settings
            out.append(
                SnapshotModel(
                    name=e.name,
                    version=e.version,
                    # What a restart can register again: the file this server put into the store,
                    # else the url as given (a store file name or a remote URL).
                    mar_name=Path(e.owned_archive_file).name if e.owned_archive_file else e.url,
                    default_version=self._registry.is_default(e),
                    min_workers=pool.min_workers,
                    max_workers=pool.max_workers,
                    batch_size=e.settings.batch_size,
                    max_batch_delay=e.settings.max_batch_delay_ms,
                    response_timeout=e.settings.response_timeout_s,
                    startup_timeout=e.settings.startup_timeout_s,
                )
            )
        return out

    async def restore(self, models: list[SnapshotModel]) -> None:
        """Register what a snapshot recorded (server start); a version that fails is logged and skipped."""
        defaults: dict[str, str] = {}
        for m in models:
            request = RegisterRequest(
                url=m.mar_name,
                batch_size=m.batch_size,
                max_batch_delay=m.max_batch_delay,
                initial_workers=m.min_workers,
                response_timeout=m.response_timeout,
                startup_timeout=m.startup_timeout,
            )
            try:
                answer = await self.register(request, at_startup=True, fixed_name=m.name)
                entry = self._registry.get(m.name, m.version)
                if m.max_workers != m.min_workers:
                    await entry.pool.scale(m.min_workers, m.max_workers, wait=False)
            except ServerError as err:
                log.error("Snapshot: cannot restore model %s version %s: %s", m.name, m.version, err.message)
                continue
            log.info("Snapshot: %s", answer.message)
            if m.default_version:
                defaults[m.name] = m.version
        for name, version in defaults.items():
            async with self._registry.lock(name):
                self._registry.set_default(name, version)


def gpu_ids_for(yaml: ModelYamlSettings, number_of_gpu: int) -> tuple[int, ...]:
    """The GPUs a version's workers take round-robin, as TorchServe assigns them: none for
    ``deviceType: cpu`` or a machine without GPUs, the model's ``deviceIds`` when given, else all.

    >>> gpu_ids_for(ModelYamlSettings(), 0), gpu_ids_for(ModelYamlSettings(), 2)
    ((), (0, 1))
    >>> gpu_ids_for(ModelYamlSettings(device_ids=(1,)), 2)
    (1,)
    >>> gpu_ids_for(ModelYamlSettings(device_type="cpu"), 2)
    ()
    """
    if yaml.device_type == "cpu" or number_of_gpu <= 0:
        return ()
    if yaml.device_ids:
        return tuple(i for i in yaml.device_ids if 0 <= i < number_of_gpu) or tuple(range(number_of_gpu))
    return tuple(range(number_of_gpu))


def describe_version(e: ModelVersion) -> dict[str, object]:
    s = e.settings
    stats = e.queue.statistics()
    document: dict[str, object] = {
        "modelName": e.name,
        "modelVersion": e.version,
        "modelUrl": e.url,
        "runtime": s.runtime,
        "minWorkers": e.pool.settings.min_workers,
        "maxWorkers": e.pool.settings.max_workers,
        "batchSize": s.batch_size,
        "maxBatchDelay": s.max_batch_delay_ms,
        "responseTimeout": s.response_timeout_s,
        "startupTimeout": s.startup_timeout_s,
        "maxRetryTimeoutInSec": 300,
        "clientTimeoutInMills": 0,
        "parallelType": "",
        "parallelLevel": 0,
        "deviceType": s.device_type,
        "continuousBatching": False,
        "useJobTicket": False,
        "useVenv": False,
        "stateful": False,
        "sequenceMaxIdleMSec": 0,
        "sequenceTimeoutMSec": 0,
        "maxNumSequence": 0,
        "maxSequenceJobQueueSize": 0,
        "loadedAtStartup": e.loaded_at_startup,
        "workers": e.pool.describe_workers(),
        "jobQueueStatus": {"remainingCapacity": stats.remaining, "pendingRequests": stats.pending},
    }
    restarts = [slot for slot in e.pool.restart_history() if slot["restarts"]]
    if restarts:
        # Ember only, and only once a worker had to be replaced: why, and how often (TorchServe
        # shows nothing; its logs say "Worker died." without the cause).
        document["workerRestarts"] = restarts
    return document


def to_error(exc: BaseException) -> ServerError:
    """Any exception as the ServerError a client may see (never a traceback)."""
    if isinstance(exc, ServerError):
        return exc
    return InternalServerError("Internal server error")
