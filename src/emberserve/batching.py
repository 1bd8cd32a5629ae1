"""Per-model-version job queues and dynamic batching.

Every model version has one bounded :class:`BatchQueue`. Request handlers :meth:`~BatchQueue.put`
a :class:`Job` (never blocking: a full queue answers 503 at once); each worker of the version loops
on :meth:`~BatchQueue.next_batch` and runs what it gets as one batch.

Two batching modes decide how long a worker waits for a batch to fill:

``strict``
    TorchServe's rule: after taking the first job, wait up to ``max_delay`` for the batch to
    reach ``max_size`` jobs. A lone request always waits the full delay.

``adaptive`` (default)
    Never waits when waiting cannot help. After taking the first job the worker drains every
    queued job (up to ``max_size``) and then sends the batch **at once** when

    1. the batch is full, or ``max_delay`` is 0; or
    2. another worker is idle (waiting for work): spare capacity serves newcomers without delay; or
    3. there was no backlog: fewer than two jobs were in hand. A single waiting job means nothing
       proves concurrent demand; in particular at concurrency 1 there is never a second job, so
       a lone request never pays the delay.

    Otherwise (a backlog of two or more jobs, batch not full, no idle worker) jobs are arriving
    faster than the workers serve them, so the worker *lingers* while they keep coming: it waits
    for the next job at most twice the mean gap between the arrivals of the jobs it already
    holds (at least :data:`MIN_LINGER_GAP_S`), and never beyond ``max_delay`` after the first
    job was taken. Under sustained load the backlog itself fills batches; a burst smaller than
    ``max_size`` costs at most about two inter-arrival gaps, not ``max_delay``. An idle worker
    appearing ends the linger at once (rule 2).

In both modes a full batch leaves at once, jobs whose future is already done (the client went
away) are skipped, and lingering workers are served before idle ones so batches fill up.

Example::

    >>> async def demo() -> list[str]:
    ...     loop = asyncio.get_running_loop()
    ...     queue = BatchQueue(capacity=10)
    ...     for rid in ("a", "b"):
    ...         request = Request(rid, "predict", [], [])
    ...         queue.put(Job(request, loop.create_future(), loop.time()))
    ...     batch = await queue.next_batch(max_size=4, max_delay_s=0.0, mode="adaptive")
    ...     return [job.request.request_id for job in batch]
    >>> asyncio.run(demo())
    ['a', 'b']
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

from emberserve.errors import ServerError, ServiceUnavailableError
from emberserve.workers.protocol import Request, Result

BatchingMode = Literal["adaptive", "strict"]

#: Shortest time an adaptive linger waits for the next arrival (timer granularity, scheduling noise).
MIN_LINGER_GAP_S = 0.001


def no_worker_message(model_name: str) -> str:
    """TorchServe's 503 text for a model that cannot take a job (no worker, or its queue is full)."""
    return (
        f'Model "{model_name}" has no worker to serve inference request. Please use scale workers API '
        "to add workers. If this is a sequence inference, please check if it is closed, or expired; "
        "or exceeds maxSequenceJobQueueSize"
    )


class QueueFull(ServiceUnavailableError):
    """The model's job queue is at capacity: 503 with TorchServe's text (reference §3)."""

    def __init__(self, model_name: str) -> None:
        super().__init__(no_worker_message(model_name))
        self.model_name = model_name


@dataclass(eq=False)
class Job:
    """One client request waiting for (or being served by) a worker."""

    request: Request
    #: Resolved with the final Result, or failed with a ServerError.
    future: asyncio.Future[Result]
    #: ``loop.time()`` when queued (queue-latency metric).
    enqueued_at: float
    #: Streaming: called with each intermediate response, in order, before the final Result.
    on_chunk: Callable[[Result], None] | None = None
    #: Queue clock time when a worker took the job into a batch (None while queued).
    dispatched_at: float | None = None
    #: ``time.perf_counter()`` when queued and when dispatched: the loop clock can be too coarse
    #: (uvloop's ticks in milliseconds) for the microsecond latency metrics.
    queued_perf: float = field(default_factory=time.perf_counter)
    dispatched_perf: float | None = None


@dataclass(frozen=True, slots=True)
class QueueStats:
    """A snapshot of a queue (``jobQueueStatus`` in describe output)."""

    pending: int
    capacity: int
    remaining: int
    #: Workers currently waiting for a job.
    idle_consumers: int


def clone_error(error: ServerError) -> ServerError:
    """A fresh copy of ``error`` so that each failed future raises its own exception object.

    Raising one instance from many tasks would chain every task's traceback onto it.
    """
    try:
        return copy.copy(error)
    except TypeError:  # a subclass whose __init__ cannot be re-run from args
        return error


class BatchQueue:
    """A bounded FIFO of :class:`Job` feeding the workers of one model version.

    ``capacity`` is TorchServe's ``job_queue_size``; ``clock`` (default: the running loop's
    ``time``) measures batch deadlines; ``model_name`` goes into the :class:`QueueFull` text.
    See the module docstring for the batching rules.
    """

    def __init__(
        self, capacity: int, *, clock: Callable[[], float] | None = None, model_name: str = ""
    ) -> None:
        if capacity < 1:
            raise ValueError(f"queue capacity must be at least 1, not {capacity}")
        self._capacity = capacity
        self._clock = clock
        self._model_name = model_name
        self._jobs: deque[Job] = deque()
        # Workers waiting for their first job, oldest first.
        self._idle: deque[asyncio.Future[None]] = deque()
        # Workers holding a partial batch and waiting for more, oldest first.
        self._lingering: deque[asyncio.Future[None]] = deque()
        self._empty_waiters: list[asyncio.Future[None]] = []

    # -- producer side ----------------------------------------------------------------------

    def put(self, job: Job) -> None:
        """Queue ``job`` without blocking; raise :class:`QueueFull` when the queue is at capacity."""
        if job.future.done():
            return
        if len(self._jobs) >= self._capacity:
            self._purge_done()
            if len(self._jobs) >= self._capacity:
                raise QueueFull(self._model_name)
        self._jobs.append(job)
        # A lingering worker is completing a batch: give it the job first so batches fill up.
        if not _wake_one(self._lingering):
            _wake_one(self._idle)

    def requeue(self, jobs: Iterable[Job]) -> None:
        """Put jobs taken by a worker that will not run them back at the head, in order.

        They keep their place ahead of newer jobs and may exceed ``capacity`` briefly (they held
        slots before). Jobs already done are dropped.
        """
        returned = [job for job in jobs if not job.future.done()]
        for job in reversed(returned):
            job.dispatched_at = None
            self._jobs.appendleft(job)
        if returned and not _wake_one(self._lingering):
            _wake_one(self._idle)

    def fail_all(self, error: ServerError) -> None:
        """Answer every queued job with (a copy of) ``error`` and empty the queue."""
        jobs, self._jobs = self._jobs, deque()
        for job in jobs:
            if not job.future.done():
                job.future.set_exception(clone_error(error))
        self._notify_empty()

    # -- consumer side ----------------------------------------------------------------------

    async def next_batch(
        self, max_size: int, max_delay_s: float, mode: BatchingMode = "adaptive"
    ) -> list[Job]:
        """Wait for at least one job and return a batch of 1..``max_size`` jobs.

        See the module docstring for how ``mode`` decides whether to wait ``max_delay_s`` for the
        batch to fill. Cancelling the call puts any jobs it already took back at the head of the
        queue, so no job is ever lost.
        """
        if max_size < 1:
            raise ValueError(f"max_size must be at least 1, not {max_size}")
        batch: list[Job] = []
        try:
            while not self._take(batch, max_size):
                await self._wait(self._idle, None, notify_lingering=True)
            if len(batch) < max_size and max_delay_s > 0:
                await self._fill(batch, max_size, max_delay_s, mode)
        except BaseException:
            self.requeue(batch)
            raise
        now = self._now()
        now_perf = time.perf_counter()
        for job in batch:
            job.dispatched_at = now
            job.dispatched_perf = now_perf
        if not self._jobs:
            self._notify_empty()
        return batch

    async def _fill(self, batch: list[Job], max_size: int, max_delay_s: float, mode: BatchingMode) -> None:
        deadline = self._now() + max_delay_s
        while len(batch) < max_size:
            remaining = deadline - self._now()
            if remaining <= 0:
                return
            if mode == "adaptive":
                if self._idle_consumers() or len(batch) < 2:
                    return
                remaining = min(remaining, _linger_gap(batch))
            arrived = await self._wait(self._lingering, remaining, notify_lingering=False)
            taken = self._take(batch, max_size)
            if mode == "adaptive" and not arrived and not taken:
                return  # the arrivals stopped: send what we have

    def _take(self, batch: list[Job], max_size: int) -> bool:
        """Move queued, still-wanted jobs into ``batch``; True when at least one was taken."""
        jobs = self._jobs
        taken = False
        while jobs and len(batch) < max_size:
            job = jobs.popleft()
            if not job.future.done():
                batch.append(job)
                taken = True
        return taken

    async def _wait(
        self, waiters: deque[asyncio.Future[None]], limit_s: float | None, *, notify_lingering: bool
    ) -> bool:
        """Wait on a wake-up future in ``waiters``; True when woken, False on timeout."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters.append(waiter)
        if notify_lingering:
            # A worker going idle ends every adaptive linger (rule 2 of the module docstring).
            _wake_all(self._lingering)
        try:
            if limit_s is None:
                await waiter
                return True
            try:
                async with asyncio.timeout(limit_s):
                    await waiter
            except TimeoutError:
                return False
            return True
        except asyncio.CancelledError:
            # We may have been woken for a job we will now not take: pass the wake-up on.
            if waiter.done() and not waiter.cancelled() and self._jobs and not _wake_one(self._lingering):
                _wake_one(self._idle)
            raise
        finally:
            if not waiter.done():
                waiter.cancel()
            with contextlib.suppress(ValueError):  # already popped by the waker
                waiters.remove(waiter)

    # -- housekeeping -----------------------------------------------------------------------

    async def wait_empty(self) -> None:
        """Return once no job is queued (used to drain a version before it stops)."""
        if not self._purge_done():
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._empty_waiters.append(waiter)
        try:
            await waiter
        finally:
            if waiter in self._empty_waiters:
                self._empty_waiters.remove(waiter)

    def statistics(self) -> QueueStats:
        """Pending jobs, capacity, remaining capacity and idle workers right now."""
        pending = self._purge_done()
        return QueueStats(
            pending=pending,
            capacity=self._capacity,
            remaining=max(0, self._capacity - pending),
            idle_consumers=self._idle_consumers(),
        )

    @property
    def capacity(self) -> int:
        return self._capacity

    def __len__(self) -> int:
        """Jobs waiting for a worker (cancelled ones are not counted)."""
        return self._purge_done()

    def _purge_done(self) -> int:
        if any(job.future.done() for job in self._jobs):
            self._jobs = deque(job for job in self._jobs if not job.future.done())
            if not self._jobs:
                self._notify_empty()
        return len(self._jobs)

    def _notify_empty(self) -> None:
        waiters, self._empty_waiters = self._empty_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _idle_consumers(self) -> int:
        return sum(1 for waiter in self._idle if not waiter.done())

    def _now(self) -> float:
        if self._clock is not None:
            return self._clock()
        return asyncio.get_running_loop().time()


def _linger_gap(batch: list[Job]) -> float:
    """How long an adaptive linger waits for the next arrival: twice the mean gap so far."""
    arrivals = sorted(job.enqueued_at for job in batch)
    mean_gap = (arrivals[-1] - arrivals[0]) / (len(arrivals) - 1)
    return max(2 * mean_gap, MIN_LINGER_GAP_S)


def _wake_one(waiters: deque[asyncio.Future[None]]) -> bool:
    while waiters:
        waiter = waiters.popleft()
        if not waiter.done():
            waiter.set_result(None)
            return True
    return False


def _wake_all(waiters: deque[asyncio.Future[None]]) -> None:
    while waiters:
        waiter = waiters.popleft()
        if not waiter.done():
            waiter.set_result(None)
