"""The workers of one model version: start, serve, restart, scale, stop.

A :class:`WorkerPool` keeps ``min_workers`` *slots*. Each slot is one asyncio task that owns one
worker process at a time and loops::

    start a worker ──fail──▶ back off ──▶ start a new worker …
         │ loaded
         ▼
    batch = await queue.next_batch(…) ──▶ worker.run_batch(batch) ──▶ again
         │ the worker died (crash, kill, response timeout)
         ▼
    its batch has failed with "Worker died." ──▶ back off ──▶ start a new worker

Like TorchServe, the jobs of a worker that dies under them fail (they are never re-queued, so a
request that kills its worker cannot kill the next one too) and other workers are not touched.
Every (re)start takes a fresh worker id from the server-wide counter (ids are never reused, as
observed in TorchServe). The delay before a restart follows TorchServe's ``WorkerThread.BACK_OFF``
table — ``0, 1, 1, 2, 3, 5, 8, … 1597`` seconds, indexed by the number of failures since the last
successful load (pytorch/serve ``frontend/server/src/main/java/org/pytorch/serve/wlm/WorkerThread.java``,
``retry()``) — scaled by ``restart_backoff_base_ms`` (TorchServe: 1000) and capped at
``max_restart_backoff_s``. Unlike TorchServe, which stops retrying after ``maxRetryTimeoutInSec``
(300 s), a slot keeps retrying at the capped interval, so a transient fault heals by itself;
``/ping`` reports the shortfall meanwhile.

Scaling is immediate bookkeeping (the last call wins, whatever overlaps), then optional waiting:
new slots' first start, and retired slots' in-flight batches (``timeout_s``: ``None`` or negative
waits for them, ``0`` kills now, ``t`` waits ``t`` seconds, as TorchServe's scale ``timeout``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from emberserve.batching import BatchQueue, no_worker_message
from emberserve.errors import ServiceUnavailableError
from emberserve.workers import protocol
from emberserve.workers.env import build_worker_env
from emberserve.workers.process import (
    DEFAULT_MAX_RESPONSE_BYTES,
    REAP_TIMEOUT_S,
    WorkerProcess,
    WorkerStartError,
)

__all__ = [
    "BACK_OFF_STEPS",
    "PoolSettings",
    "WorkerPool",
    "WorkerStartError",
    "restart_delay_s",
]

log = logging.getLogger("emberserve.workers")

#: TorchServe's WorkerThread.BACK_OFF, in units of ``restart_backoff_base_ms``.
BACK_OFF_STEPS = (0, 1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610, 987, 1597)
#: How long a worker asked to stop (scale down, close) may take to exit on its own.
STOP_GRACE_S = 5.0


def restart_delay_s(failures: int, base_ms: int, max_s: float) -> float:
    """Seconds to wait before restarting a worker after ``failures`` consecutive failures.

    >>> [restart_delay_s(n, 1000, 30.0) for n in range(8)]
    [0.0, 1.0, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0]
    >>> restart_delay_s(100, 1000, 30.0)
    30.0
    """
    if failures <= 0:
        return 0.0
    step = BACK_OFF_STEPS[min(failures, len(BACK_OFF_STEPS) - 1)]
    return max(0.0, min(step * base_ms / 1000, max_s))


@dataclass(frozen=True)
class PoolSettings:
    """Effective settings of one model version (config.properties < model-config.yaml < API)."""

    min_workers: int
    max_workers: int
    batch_size: int
    max_batch_delay_ms: int
    response_timeout_s: int
    startup_timeout_s: int
    batching_mode: Literal["adaptive", "strict"] = "adaptive"
    #: Unit of TorchServe's Fibonacci restart schedule (TorchServe: 1000 ms).
    restart_backoff_base_ms: int = 1000
    max_restart_backoff_s: float = 60.0
    #: Interpreter that runs the worker.
    python: str = sys.executable
    #: GPUs handed to workers round-robin; empty = CPU.
    gpu_ids: tuple[int, ...] = ()
    #: TorchServe's ``max_response_size``: a larger response fails that request ("Worker died.").
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    #: A worker whose resident memory exceeds this after a batch is replaced (0: no limit).
    max_worker_memory_bytes: int = 0


class _Phase:
    STARTING = "starting"
    IDLE = "idle"  # waiting in queue.next_batch: interruptible
    BUSY = "busy"
    BACKOFF = "backoff"  # sleeping before a restart: interruptible
    STOPPING = "stopping"
    DONE = "done"


class _Slot:
    """One worker position of the pool, served by one supervising task."""

    def __init__(self) -> None:
        self.worker: WorkerProcess | None = None
        self.task: asyncio.Task[None] | None = None
        self.phase = _Phase.STARTING
        self.retiring = False
        self.interrupted = False
        self.failures = 0
        self.last_exit: str | None = None
        self.restarts = 0
        self.stop_grace_s = STOP_GRACE_S
        self.restart_at = 0.0  # loop time of the next start while in BACKOFF
        self.recycle = False  # the worker outgrew max_worker_memory_bytes: replace it, no back-off
        # Resolved with None (loaded) or a WorkerStartError by the next start attempt.
        self.attempt: asyncio.Future[WorkerStartError | None] = asyncio.get_running_loop().create_future()


class WorkerPool:
    """The workers of ONE model version (see the module docstring).

    ``worker_ids`` is the server-wide id counter; ``on_metrics`` receives handler metric records;
    ``env`` is the worker environment (default: this process's, see
    :func:`~emberserve.workers.env.build_worker_env`); ``worker_argv`` replaces the worker command
    (tests use a fake worker), ``--fd N`` is appended to it. ``on_batch`` hears of every batch run
    (its size and the seconds the worker took), ``on_loaded`` of every worker load (name, ms).
    """

    def __init__(
        self,
        load_template: protocol.LoadModel,
        queue: BatchQueue,
        settings: PoolSettings,
        worker_ids: Iterator[int],
        on_metrics: Callable[[list[protocol.MetricRecord]], None] | None = None,
        env: Mapping[str, str] | None = None,
        *,
        worker_argv: Sequence[str] | None = None,
        on_batch: Callable[[int, float], None] | None = None,
        on_loaded: Callable[[str, float], None] | None = None,
    ) -> None:
        self._load = load_template
        self._queue = queue
        self._settings = settings
        self._ids = worker_ids
        self._on_metrics = on_metrics
        self._env = dict(env) if env is not None else None
        self._argv = list(worker_argv) if worker_argv is not None else None
        self._on_batch = on_batch  # (batch size, seconds the worker spent on it)
        self._on_loaded = on_loaded  # (worker name, load milliseconds)
        self._cwd = load_template.model_dir if os.path.isdir(load_template.model_dir) else None
        self._slots: list[_Slot] = []
        self._retiring: list[_Slot] = []
        self._gpu_cursor = 0
        self._closed = False
        self._name = f"{load_template.model_name} version {load_template.model_version}"

    # -- public state -------------------------------------------------------------------------

    @property
    def settings(self) -> PoolSettings:
        """Current settings (``min_workers``/``max_workers`` follow the last :meth:`scale`)."""
        return self._settings

    @property
    def live_workers(self) -> int:
        """Workers that are loaded and serving (READY or BUSY)."""
        return sum(1 for slot in self._slots if slot.worker is not None and slot.worker.alive)

    @property
    def target_workers(self) -> int:
        """Worker slots the pool keeps (alive, starting or waiting to restart)."""
        return len(self._slots)

    def describe_workers(self) -> list[dict[str, object]]:
        """TorchServe's ``workers`` array of describe output (same keys, order and types)."""
        out: list[dict[str, object]] = []
        for slot in [*self._slots, *self._retiring]:
            worker = slot.worker
            if worker is None:
                continue
            out.append(
                {
                    "id": worker.worker_id,
                    "startTime": _iso_millis(worker),
                    "status": worker.status,
                    "memoryUsage": worker.memory_usage(),
                    "pid": worker.pid if worker.pid is not None else -1,
                    "gpu": worker.gpu_id is not None,
                    "gpuUsage": "N/A",
                }
            )
        return out

    def restart_history(self) -> list[dict[str, object]]:
        """Per slot: current worker id, restarts so far, why the last worker ended and, while
        backing off, the seconds until the next start."""
        now = asyncio.get_running_loop().time()
        history: list[dict[str, object]] = []
        for slot in self._slots:
            entry: dict[str, object] = {
                "id": slot.worker.worker_id if slot.worker else None,
                "restarts": slot.restarts,
                "lastExit": slot.last_exit,
            }
            if slot.phase == _Phase.BACKOFF:
                entry["nextStartInSec"] = round(max(0.0, slot.restart_at - now), 3)
            history.append(entry)
        return history

    # -- scaling ------------------------------------------------------------------------------

    async def scale(
        self, min_workers: int, max_workers: int, *, wait: bool, timeout_s: float | None = None
    ) -> None:
        """Start or stop workers so that ``min_workers`` run (``max_workers`` is only recorded).

        With ``wait`` it returns once new workers have loaded and removed ones have stopped, and
        raises :class:`WorkerStartError` when a new worker failed to load (its slot keeps retrying
        with back-off, as TorchServe does). ``timeout_s`` bounds how long removed workers may
        finish their in-flight batch: ``None``/negative = as long as it takes, ``0`` = kill now.
        """
        if min_workers < 0 or max_workers < min_workers:
            raise ValueError(f"invalid worker range {min_workers}..{max_workers}")
        if self._closed:  # e.g. a background scale racing an unregister: the version is gone
            log.debug("scale(%d, %d) ignored: the pool of %s is closed", min_workers, max_workers, self._name)
            return
        self._settings = dataclasses.replace(self._settings, min_workers=min_workers, max_workers=max_workers)
        started: list[_Slot] = []
        retiring: list[asyncio.Task[None]] = []
        missing = min_workers - len(self._slots)
        for _ in range(missing):
            started.append(self._add_slot())
        if missing < 0:
            for slot in self._pick_victims(-missing):
                retiring.append(asyncio.get_running_loop().create_task(self._retire(slot, timeout_s)))
        if not self._slots:
            self._fail_queued()
        if not wait:
            return
        # Also wait for slots that are loading right now: "wait" means the target is reached.
        loading = [s for s in self._slots if s.phase == _Phase.STARTING and s not in started]
        outcomes = await asyncio.gather(*(asyncio.shield(s.attempt) for s in [*started, *loading]))
        if retiring:
            await asyncio.gather(*retiring)
        for outcome in outcomes:
            if outcome is not None:
                raise outcome

    def _add_slot(self) -> _Slot:
        slot = _Slot()
        self._slots.append(slot)
        slot.task = asyncio.get_running_loop().create_task(self._supervise(slot))
        return slot

    def _pick_victims(self, count: int) -> list[_Slot]:
        # Cheapest to remove first: slots without a serving worker, then idle ones, newest first.
        rank = {_Phase.BACKOFF: 0, _Phase.STARTING: 1, _Phase.IDLE: 2, _Phase.BUSY: 3}
        newest_first = list(reversed(self._slots))
        victims = sorted(newest_first, key=lambda s: rank.get(s.phase, 0))[:count]
        for slot in victims:
            self._slots.remove(slot)
        return victims

    async def _retire(self, slot: _Slot, timeout_s: float | None) -> None:
        """Take ``slot`` out of service: its in-flight batch may finish within ``timeout_s``."""
        self._retiring.append(slot)
        slot.retiring = True
        if timeout_s is not None and timeout_s >= 0:
            slot.stop_grace_s = min(STOP_GRACE_S, timeout_s)
        try:
            if slot.phase == _Phase.STARTING and slot.worker is not None:
                slot.worker.kill()
            self._interrupt(slot)
            task = slot.task
            assert task is not None
            if timeout_s is not None and timeout_s >= 0:
                done, _ = await asyncio.wait({task}, timeout=timeout_s)
                if not done and slot.worker is not None:
                    log.info("%s did not finish within %g s, killing it", slot.worker.name, timeout_s)
                    slot.worker.kill()
            await asyncio.shield(task)
        finally:
            self._retiring.remove(slot)
            if not self._slots:
                self._fail_queued()  # jobs a retired worker handed back have nobody left

    def _interrupt(self, slot: _Slot) -> None:
        """Wake a slot that waits for a batch or for its back-off to end."""
        if slot.phase in (_Phase.IDLE, _Phase.BACKOFF) and slot.task is not None and not slot.interrupted:
            slot.interrupted = True
            slot.task.cancel()

    def _fail_queued(self) -> None:
        if len(self._queue):
            self._queue.fail_all(ServiceUnavailableError(no_worker_message(self._load.model_name)))

    # -- one slot -----------------------------------------------------------------------------

    async def _supervise(self, slot: _Slot) -> None:
        try:
            while not slot.retiring:
                worker = self._new_worker(slot)
                slot.worker = worker
                try:
                    await self._run_worker(slot, worker)
                except Exception:  # a bug must cost one worker, not the slot
                    log.exception("%s: unexpected error in its supervisor", worker.name)
                    self._settle(slot, WorkerStartError(f"{worker.name}: internal error"))
                    await self._end_of(slot, worker)
        finally:
            slot.phase = _Phase.DONE
            self._settle(slot, None if slot.retiring else WorkerStartError("the worker pool stopped"))

    async def _run_worker(self, slot: _Slot, worker: WorkerProcess) -> None:
        """One worker's life in ``slot``: start, serve until it dies or retires, clean up."""
        slot.phase = _Phase.STARTING
        try:
            await worker.start(self._load_for(worker), self._settings.startup_timeout_s)
        except WorkerStartError as exc:
            if _retiring(slot):  # we stopped it ourselves: not a failure
                self._settle(slot, None)
            else:
                self._settle(slot, exc)
                log.error("%s failed to start: %s", worker.name, exc.message)
                if exc.detail:
                    log.debug("%s start failure detail:\n%s", worker.name, exc.detail)
            await self._end_of(slot, worker)
            return
        slot.failures = 0
        self._settle(slot, None)
        if self._on_loaded is not None and worker.load_ms is not None:
            self._on_loaded(worker.name, worker.load_ms)
        await self._serve(slot, worker)
        await self._end_of(slot, worker)

    async def _serve(self, slot: _Slot, worker: WorkerProcess) -> None:
        settings = self._settings
        delay_s = settings.max_batch_delay_ms / 1000
        batch_size = max(1, settings.batch_size)
        while worker.alive and not slot.retiring:
            slot.phase = _Phase.IDLE
            try:
                batch = await self._queue.next_batch(batch_size, delay_s, settings.batching_mode)
            except asyncio.CancelledError:
                if not self._take_interrupt(slot):
                    raise
                continue
            finally:
                slot.phase = _Phase.BUSY
            if not _serving(worker):  # died in the same tick the batch formed
                self._queue.requeue(batch)
                break
            started = time.perf_counter()
            await worker.run_batch(batch, settings.response_timeout_s)
            if self._on_batch is not None:
                self._on_batch(len(batch), time.perf_counter() - started)
            settings = self._settings
            if settings.max_worker_memory_bytes and worker.alive:
                used = worker.memory_usage()
                if used > settings.max_worker_memory_bytes:
                    log.warning(
                        "%s uses %d MB, more than max_worker_memory_mb=%d: replacing it",
                        worker.name,
                        used >> 20,
                        settings.max_worker_memory_bytes >> 20,
                    )
                    slot.recycle = True
                    return

    async def _end_of(self, slot: _Slot, worker: WorkerProcess) -> None:
        """After a worker: stop it (retiring) or record its death and back off before a restart."""
        if slot.retiring:
            slot.phase = _Phase.STOPPING
            await worker.stop(slot.stop_grace_s)
            return
        if slot.recycle:
            # Between batches, so nothing in flight is lost; a recycle is no failure: no back-off.
            slot.recycle = False
            slot.phase = _Phase.STOPPING
            await worker.stop(slot.stop_grace_s)
            slot.restarts += 1
            slot.last_exit = "replaced: over max_worker_memory_mb"
            return
        worker.kill()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(REAP_TIMEOUT_S):
                await worker.wait_exit()
        await worker.close()
        slot.failures += 1
        slot.restarts += 1
        slot.last_exit = worker.exit_reason
        delay = restart_delay_s(
            slot.failures, self._settings.restart_backoff_base_ms, self._settings.max_restart_backoff_s
        )
        log.warning(
            "%s ended (%s); starting a replacement in %.3g s",
            worker.name,
            worker.exit_reason or "died",
            delay,
        )
        slot.phase = _Phase.BACKOFF
        slot.restart_at = asyncio.get_running_loop().time() + delay
        try:
            await asyncio.sleep(delay)
        except asyncio.CancelledError:
            if not self._take_interrupt(slot):
                raise

    def _take_interrupt(self, slot: _Slot) -> bool:
        """True when the cancellation being handled is our own wake-up (consumed here)."""
        if not slot.interrupted:
            return False
        slot.interrupted = False
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        return True

    def _settle(self, slot: _Slot, outcome: WorkerStartError | None) -> None:
        """Publish the outcome of a start attempt to scale(wait=True) callers."""
        if not slot.attempt.done():
            slot.attempt.set_result(outcome)
        if slot.phase != _Phase.DONE:
            slot.attempt = asyncio.get_running_loop().create_future()  # for the next attempt

    def _new_worker(self, slot: _Slot) -> WorkerProcess:
        settings = self._settings
        gpu_id: int | None = None
        if settings.gpu_ids:
            gpu_id = settings.gpu_ids[self._gpu_cursor % len(settings.gpu_ids)]
            self._gpu_cursor += 1
        argv = self._argv or [settings.python, "-m", "emberserve.workers.child"]
        env = self._env
        if env is None:
            env = build_worker_env(os.environ, decode_input_request=self._load.decode_input_request)
        return WorkerProcess(
            next(self._ids),
            self._load.model_name,
            self._load.model_version,
            argv=argv,
            env=env,
            cwd=self._cwd,
            on_metrics=self._on_metrics,
            on_exit=lambda _worker: self._interrupt(slot),
            max_response_bytes=settings.max_response_bytes,
            batch_size=settings.batch_size,
            gpu_id=gpu_id,
        )

    def _load_for(self, worker: WorkerProcess) -> protocol.LoadModel:
        load = self._load
        if worker.gpu_id != load.gpu_id or load.batch_size != self._settings.batch_size:
            load = dataclasses.replace(load, gpu_id=worker.gpu_id, batch_size=self._settings.batch_size)
        return load

    # -- shutdown -----------------------------------------------------------------------------

    async def close(self, grace_s: float) -> None:
        """Stop the pool: serve what is queued and in flight for up to ``grace_s``, then stop every
        worker (killing what is left) and fail the jobs still queued with a 503."""
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, grace_s)
        if len(self._queue) and self.live_workers:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(deadline):
                    await self._queue.wait_empty()
        slots, self._slots = self._slots, []
        self._fail_queued()
        remaining = max(0.0, deadline - loop.time())
        await asyncio.gather(*(self._retire(slot, remaining) for slot in slots))
        self._fail_queued()


# Called instead of reading the attributes inline: mypy would keep their narrowed values across awaits.
def _retiring(slot: _Slot) -> bool:
    return slot.retiring


def _serving(worker: WorkerProcess) -> bool:
    return worker.alive


def _iso_millis(worker: WorkerProcess) -> str:
    """``2026-11-22T07:42:47.124Z`` (TorchServe's describe ``startTime``)."""
    stamp = worker.start_time
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"
