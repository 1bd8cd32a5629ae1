"""The inference service: one call per client request, shared by REST and gRPC.

It finds the model version, queues a :class:`~emberserve.batching.Job` on that version's bounded
queue and awaits the worker's :class:`~emberserve.workers.protocol.Result`. A handler failure comes
back as a :class:`~emberserve.errors.PredictionError` carrying the handler's status.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import TypedDict

from emberserve import TORCHSERVE_COMPAT_VERSION
from emberserve.batching import Job
from emberserve.errors import PredictionError, ServerError, ServiceUnavailableError
from emberserve.metrics import MetricsRecorder
from emberserve.registry import ModelRegistry, ModelVersion
from emberserve.workers.protocol import Request, Result


class ServerMetadata(TypedDict):
    name: str
    version: str
    extensions: list[str]


class ModelMetadata(TypedDict):
    name: str
    versions: list[str]
    platform: str
    inputs: list[object]
    outputs: list[object]


def server_metadata() -> ServerMetadata:
    """KServe v2 server metadata (REST ``GET /v2``, gRPC ServerMetadata): TorchServe's name, so
    tooling that checks it keeps working, and its extensions under the spec's key ``extensions``
    (TorchServe's REST answer misspells it ``extenstion``)."""
    return {"name": "Torchserve", "version": TORCHSERVE_COMPAT_VERSION, "extensions": ["kserve", "kubeflow"]}


def model_metadata(name: str, versions: list[str]) -> ModelMetadata:
    """KServe v2 model metadata. Handlers declare no tensor signatures, so ``inputs`` and
    ``outputs`` are empty (the protocol allows it)."""
    return {"name": name, "versions": versions, "platform": "", "inputs": [], "outputs": []}


def model_ready(entry: ModelVersion) -> bool:
    """Ready = its minimum of workers is up, and at least one (a model with none cannot answer)."""
    return entry.pool.live_workers >= max(1, entry.pool.settings.min_workers)


def new_request_id() -> str:
    """A request id in TorchServe's format (uuid4); the handler sees the same id the client gets."""
    return str(uuid.uuid4())


def no_worker_error(name: str, what: str = "inference") -> ServiceUnavailableError:
    """TorchServe's 503 text for a model that cannot take a job (no worker, or queue full)."""
    text = f'Model "{name}" has no worker to serve {what} request. '
    text += "Please use scale workers API to add workers."
    if what != "inference":
        return ServiceUnavailableError(text)
    return ServiceUnavailableError(
        f"{text} If this is a sequence inference, please check if it is closed, or expired; or exceeds "
        "maxSequenceJobQueueSize"
    )


class InferenceService:
    """See the module docstring."""

    def __init__(self, registry: ModelRegistry, metrics: MetricsRecorder | None = None) -> None:
        self._registry = registry
        #: Where answers and inferences are counted (None: nowhere).
        self.metrics = metrics
        self.in_flight = 0
        #: False until the models named at startup have been loaded (or have failed to).
        self.startup_done = False
        self._idle = asyncio.Event()
        self._idle.set()

    async def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no request is in flight (the drain on shutdown); False on timeout."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    def lookup(self, name: str, version: str | None) -> ModelVersion:
        return self._registry.get(name, version)

    async def predict(
        self,
        entry: ModelVersion,
        request: Request,
        on_chunk: Callable[[Result], None] | None = None,
        *,
        requested_version: str | None = None,
    ) -> Result:
        """Queue ``request`` for ``entry`` and wait for its final result.

        ``requested_version`` is the version the client named (metrics label it "default" when
        it named none, as TorchServe does).
        """
        if entry.pool.settings.max_workers == 0 or (
            entry.pool.settings.min_workers == 0 and entry.pool.live_workers == 0
        ):
            raise no_worker_error(entry.name, "describe" if request.kind == "describe" else "inference")
        loop = asyncio.get_running_loop()
        job = Job(request, loop.create_future(), loop.time(), on_chunk)
        entry.queue.put(job)  # QueueFull is a ServiceUnavailableError with TorchServe's text
        self.in_flight += 1
        self._idle.clear()
        status = 500
        try:
            result = await job.future
            status = result.status
        except ServerError as err:
            status = err.http_status
            raise
        except asyncio.CancelledError:
            job.future.cancel()
            status = 0
            raise
        finally:
            self.in_flight -= 1
            if not self.in_flight:
                self._idle.set()
            if self.metrics is not None and status and request.kind != "describe":
                self._record(entry, job, requested_version, status, time.perf_counter())
        if result.error is not None:
            raise PredictionError(result.error, result.status)
        return result

    def _record(self, entry: ModelVersion, job: Job, requested: str | None, status: int, now: float) -> None:
        assert self.metrics is not None
        started = job.queued_perf
        dispatched = job.dispatched_perf if job.dispatched_perf is not None else now
        self.metrics.inference_done(
            entry.name, requested or "default", entry.version, now - started, dispatched - started, status
        )

    def versions(self, name: str) -> list[str]:
        """Every registered version of model ``name``."""
        return [e.version for e in self._registry.versions(name)]

    def healthy(self) -> bool:
        """TorchServe's /ping rule: every model that should have workers has its minimum live.

        Unlike TorchServe (which does not listen until startup models are loaded), Ember listens at
        once and answers Unhealthy until they are.
        """
        return self.startup_done and all(
            e.pool.live_workers >= e.pool.settings.min_workers for e in self._registry.all_versions()
        )
