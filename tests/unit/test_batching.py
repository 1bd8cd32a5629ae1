"""BatchQueue: bounds, batch formation in both modes, cancellation, statistics.

Every test runs on a virtual-time event loop: whenever the loop would block waiting for a
timer, time jumps straight to that timer. Delays are therefore exact and cost nothing.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine, Mapping
from typing import Any

import pytest

from emberserve.batching import MIN_LINGER_GAP_S, BatchQueue, Job, QueueFull, no_worker_message
from emberserve.errors import ServiceUnavailableError, WorkerDiedError
from emberserve.workers.protocol import Request, Result

# -- virtual time ------------------------------------------------------------------------------


class _VirtualSelector(selectors.BaseSelector):
    """Delegates to a real selector but, instead of blocking, advances the loop's clock."""

    def __init__(self, loop: VirtualTimeLoop) -> None:
        self._real = selectors.DefaultSelector()
        self._loop = loop

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = self._real.select(0)
        if ready:
            return ready
        if timeout is None:
            raise RuntimeError("deadlock: the test waits for something that nothing will ever do")
        self._loop.advance(timeout)
        return []

    def close(self) -> None:
        self._real.close()

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._real.get_map()


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self._now = 0.0
        super().__init__(selector=_VirtualSelector(self))

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += max(0.0, seconds)


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(coro)
    finally:
        leftovers = asyncio.all_tasks(loop)
        for task in leftovers:
            task.cancel()
        if leftovers:
            loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
        loop.close()


def now() -> float:
    return asyncio.get_running_loop().time()


async def sleep_until(t: float) -> None:
    await asyncio.sleep(t - now())


def make_job(rid: str) -> Job:
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Result] = loop.create_future()
    return Job(Request(rid, "predict", [], []), future, loop.time())


def ids(batch: list[Job]) -> list[str]:
    return [job.request.request_id for job in batch]


def put_at(queue: BatchQueue, t: float, rid: str) -> None:
    """Schedule a job ``rid`` to be queued at virtual time ``t``."""
    asyncio.get_running_loop().call_at(t, lambda: queue.put(make_job(rid)))


# -- bounds and bookkeeping ----------------------------------------------------------------------


def test_put_beyond_capacity_raises_queue_full_with_torchserve_text() -> None:
    async def main() -> None:
        queue = BatchQueue(2, model_name="noop")
        queue.put(make_job("a"))
        queue.put(make_job("b"))
        with pytest.raises(QueueFull) as caught:
            queue.put(make_job("c"))
        err = caught.value
        assert isinstance(err, ServiceUnavailableError)
        assert err.http_status == 503
        assert err.type_name == "ServiceUnavailableException"
        assert err.message == (
            'Model "noop" has no worker to serve inference request. Please use scale workers API to add '
            "workers. If this is a sequence inference, please check if it is closed, or expired; or exceeds "
            "maxSequenceJobQueueSize"
        )
        assert err.message == no_worker_message("noop")
        assert len(queue) == 2

    run(main())


def test_cancelled_jobs_free_their_slot() -> None:
    async def main() -> None:
        queue = BatchQueue(2)
        first = make_job("a")
        queue.put(first)
        queue.put(make_job("b"))
        first.future.cancel()
        queue.put(make_job("c"))  # does not raise: the cancelled job no longer counts
        assert len(queue) == 2

    run(main())


def test_zero_capacity_is_rejected() -> None:
    with pytest.raises(ValueError, match="capacity"):
        BatchQueue(0)


def test_statistics_snapshot() -> None:
    async def main() -> None:
        queue = BatchQueue(5)
        assert queue.statistics().pending == 0
        for rid in "abc":
            queue.put(make_job(rid))
        stats = queue.statistics()
        assert (stats.pending, stats.capacity, stats.remaining, stats.idle_consumers) == (3, 5, 2, 0)

        await queue.next_batch(2, 0.0, "adaptive")
        stats = queue.statistics()
        assert (stats.pending, stats.remaining) == (1, 4)

        await queue.next_batch(2, 0.0, "adaptive")
        waiting = asyncio.ensure_future(queue.next_batch(2, 0.0, "adaptive"))
        await asyncio.sleep(0)
        assert queue.statistics().idle_consumers == 1
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert queue.statistics().idle_consumers == 0

    run(main())


def test_fail_all_answers_every_queued_job_with_its_own_error() -> None:
    async def main() -> None:
        queue = BatchQueue(5)
        jobs = [make_job(rid) for rid in "abc"]
        for job in jobs:
            queue.put(job)
        jobs[1].future.cancel()
        queue.fail_all(WorkerDiedError())
        assert len(queue) == 0
        errors = [job.future.exception() for job in (jobs[0], jobs[2])]
        assert all(isinstance(e, WorkerDiedError) and e.message == "Worker died." for e in errors)
        assert errors[0] is not errors[1]
        assert jobs[1].future.cancelled()

    run(main())


# -- batch formation ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["strict", "adaptive"])
def test_a_full_batch_leaves_at_once(mode: Any) -> None:
    async def main() -> None:
        queue = BatchQueue(10)
        for rid in "abcd":
            queue.put(make_job(rid))
        batch = await queue.next_batch(4, 5.0, mode)
        assert ids(batch) == ["a", "b", "c", "d"]
        assert now() == 0.0

    run(main())


def test_strict_mode_waits_max_delay_for_a_lone_job() -> None:
    async def main() -> None:
        queue = BatchQueue(10)
        queue.put(make_job("a"))
        batch = await queue.next_batch(4, 0.5, "strict")
        assert ids(batch) == ["a"]
        assert now() == pytest.approx(0.5)

    run(main())


def test_strict_mode_collects_arrivals_until_the_batch_is_full() -> None:
    async def main() -> None:
        queue = BatchQueue(10)
        queue.put(make_job("a"))
        put_at(queue, 0.1, "b")
        put_at(queue, 0.2, "c")
        put_at(queue, 0.9, "late")
        batch = await queue.next_batch(3, 0.5, "strict")
        assert ids(batch) == ["a", "b", "c"]
        assert now() == pytest.approx(0.2)  # full: no further waiting

    run(main())


def test_strict_delay_counts_from_the_first_job_taken() -> None:
    async def main() -> None:
        queue = BatchQueue(10)
        put_at(queue, 1.0, "a")
        put_at(queue, 1.3, "b")
        batch = await queue.next_batch(4, 0.5, "strict")
        assert ids(batch) == ["a", "b"]
        assert now() == pytest.approx(1.5)

    run(main())


def test_adaptive_mode_sends_a_lone_job_at_once() -> None:
    async def main() -> None:
        queue = BatchQueue(10)
        queue.put(make_job("a"))
        batch = await queue.next_batch(4, 5.0, "adaptive")
        assert ids(batch) == ["a"]
        assert now() == 0.0

    run(main())


def test_adaptive_mode_never_delays_sequential_requests() -> None:
    """Concurrency 1: each request arrives after the previous answer; none may wait."""

    async def main() -> None:
        queue = BatchQueue(10)
        for i in range(5):
            put_at(queue, now() + 0.05, f"r{i}")
            batch = await queue.next_batch(8, 1.0, "adaptive")
            assert ids(batch) == [f"r{i}"]
            assert batch[0].dispatched_at == pytest.approx(batch[0].enqueued_at)
            await asyncio.sleep(0.02)  # "inference"

    run(main())


def test_adaptive_mode_takes_the_whole_backlog_at_once() -> None:
    async def main() -> None:
        queue = BatchQueue(20)
        for i in range(10):
            queue.put(make_job(f"r{i}"))
        sizes = []
        while len(queue):
            sizes.append(len(await queue.next_batch(4, 1.0, "adaptive")))
        assert sizes == [4, 4, 2]
        assert now() < 0.01  # the last, partial batch lingered for at most MIN_LINGER_GAP_S

    run(main())


def test_adaptive_mode_lingers_while_a_backlog_keeps_arriving() -> None:
    async def main() -> None:
        queue = BatchQueue(10)
        put_at(queue, 0.00, "a")
        put_at(queue, 0.01, "b")
        put_at(queue, 0.03, "c")  # within 2 × the 10 ms gap seen so far
        put_at(queue, 0.50, "too-late")
        await sleep_until(0.02)  # the worker was busy while a and b arrived
        batch = await queue.next_batch(8, 1.0, "adaptive")
        assert ids(batch) == ["a", "b", "c"]
        # Arrival gaps 10 and 20 ms: it waits 2 × 15 ms after c, then gives up long before max_delay.
        assert now() == pytest.approx(0.06)

    run(main())


def test_adaptive_linger_never_exceeds_max_delay() -> None:
    async def main() -> None:
        queue = BatchQueue(10)
        put_at(queue, 0.0, "a")
        put_at(queue, 0.2, "b")
        for i in range(10):
            put_at(queue, 0.25 + 0.05 * i, f"c{i}")  # steady arrivals, batch never fills
        await sleep_until(0.21)
        batch = await queue.next_batch(100, 0.1, "adaptive")
        assert now() == pytest.approx(0.31)
        assert ids(batch) == ["a", "b", "c0", "c1"]

    run(main())


def test_adaptive_linger_ends_when_another_worker_goes_idle() -> None:
    async def main() -> None:
        queue = BatchQueue(10)
        put_at(queue, 0.0, "a")
        put_at(queue, 0.5, "b")  # a 0.5 s gap: would linger up to 1 s
        await sleep_until(0.6)
        lingering = asyncio.ensure_future(queue.next_batch(4, 2.0, "adaptive"))
        await sleep_until(0.7)
        assert not lingering.done()
        other = asyncio.ensure_future(queue.next_batch(4, 2.0, "adaptive"))  # an idle worker appears
        batch = await lingering
        assert ids(batch) == ["a", "b"]
        assert now() == pytest.approx(0.7)
        other.cancel()
        with pytest.raises(asyncio.CancelledError):
            await other

    run(main())


def test_adaptive_zero_delay_never_lingers() -> None:
    async def main() -> None:
        queue = BatchQueue(10)
        put_at(queue, 0.0, "a")
        put_at(queue, 0.001, "b")
        put_at(queue, 0.002, "c")
        await sleep_until(0.0015)
        batch = await queue.next_batch(4, 0.0, "adaptive")
        assert ids(batch) == ["a", "b"]

    run(main())


def test_min_linger_gap_applies_to_simultaneous_arrivals() -> None:
    async def main() -> None:
        queue = BatchQueue(10)
        queue.put(make_job("a"))
        queue.put(make_job("b"))  # same instant: mean gap 0
        put_at(queue, MIN_LINGER_GAP_S / 2, "c")
        batch = await queue.next_batch(4, 1.0, "adaptive")
        assert ids(batch) == ["a", "b", "c"]
        assert now() <= 1.5 * MIN_LINGER_GAP_S + 1e-9

    run(main())


@pytest.mark.parametrize("mode", ["strict", "adaptive"])
def test_batches_never_exceed_max_size(mode: Any) -> None:
    async def main() -> None:
        queue = BatchQueue(1000)
        for i in range(200):
            put_at(queue, 0.01 * (i // 7) + 0.0001 * (i % 7), f"r{i}")  # bursts of 7
        seen: list[str] = []
        for max_size in [1, 2, 3, 5, 8, 13] * 40:
            if len(seen) == 200:
                break
            batch = await queue.next_batch(max_size, 0.02, mode)
            assert 1 <= len(batch) <= max_size
            seen += ids(batch)
        assert seen == [f"r{i}" for i in range(200)]  # FIFO, nothing lost or duplicated

    run(main())


def test_done_and_cancelled_jobs_are_skipped() -> None:
    async def main() -> None:
        queue = BatchQueue(10)
        jobs = [make_job(rid) for rid in "abcde"]
        for job in jobs:
            queue.put(job)
        jobs[1].future.cancel()
        jobs[3].future.set_result(Result("d", 200, "", [], None, b""))
        batch = await queue.next_batch(3, 0.0, "strict")
        assert ids(batch) == ["a", "c", "e"]

    run(main())


def test_a_job_cancelled_while_queued_is_not_counted_or_served() -> None:
    async def main() -> None:
        queue = BatchQueue(10)
        gone = make_job("gone")
        queue.put(gone)
        gone.future.cancel()
        assert len(queue) == 0
        put_at(queue, 0.3, "next")
        batch = await queue.next_batch(4, 0.0, "adaptive")
        assert ids(batch) == ["next"]

    run(main())


def test_cancelling_next_batch_puts_its_jobs_back_in_order() -> None:
    async def main() -> None:
        queue = BatchQueue(10)
        queue.put(make_job("a"))
        queue.put(make_job("b"))
        lingering = asyncio.ensure_future(queue.next_batch(4, 1.0, "strict"))
        await asyncio.sleep(0.1)
        queue.put(make_job("c"))
        await asyncio.sleep(0.1)
        lingering.cancel()
        with pytest.raises(asyncio.CancelledError):
            await lingering
        assert len(queue) == 3
        batch = await queue.next_batch(4, 0.0, "strict")
        assert ids(batch) == ["a", "b", "c"]
        assert all(job.dispatched_at == now() for job in batch)

    run(main())


def test_a_wakeup_is_passed_on_when_the_woken_worker_is_cancelled() -> None:
    async def main() -> None:
        queue = BatchQueue(10)
        first = asyncio.ensure_future(queue.next_batch(1, 0.0, "adaptive"))
        second = asyncio.ensure_future(queue.next_batch(1, 0.0, "adaptive"))
        await asyncio.sleep(0)
        queue.put(make_job("a"))  # wakes `first`…
        first.cancel()  # …which is cancelled before it runs
        batch = await asyncio.wait_for(second, 1.0)
        assert ids(batch) == ["a"]
        with pytest.raises(asyncio.CancelledError):
            await first

    run(main())


def test_requeued_jobs_go_first_and_may_exceed_capacity() -> None:
    async def main() -> None:
        queue = BatchQueue(2)
        taken = [make_job("x"), make_job("y")]
        queue.put(make_job("a"))
        queue.put(make_job("b"))
        queue.requeue(taken)
        assert len(queue) == 4
        assert ids(await queue.next_batch(10, 0.0, "adaptive")) == ["x", "y", "a", "b"]
        assert taken[0].dispatched_at is not None

    run(main())


def test_wait_empty_returns_when_the_queue_drains() -> None:
    async def main() -> None:
        queue = BatchQueue(5)
        await asyncio.wait_for(queue.wait_empty(), 1.0)  # already empty
        queue.put(make_job("a"))
        queue.put(make_job("b"))
        drained = asyncio.ensure_future(queue.wait_empty())
        await asyncio.sleep(0.1)
        assert not drained.done()
        await queue.next_batch(1, 0.0, "adaptive")
        await asyncio.sleep(0)
        assert not drained.done()
        await queue.next_batch(1, 0.0, "adaptive")
        await asyncio.wait_for(drained, 1.0)

    run(main())


def test_injected_clock_measures_the_batch_deadline() -> None:
    ticks = iter([0.0, 100.0, 100.0, 100.0])

    def clock() -> float:
        return next(ticks)

    async def main() -> None:
        queue = BatchQueue(10, clock=clock)
        queue.put(make_job("a"))
        batch = await queue.next_batch(4, 0.5, "strict")
        assert ids(batch) == ["a"]
        assert now() == 0.0  # the injected clock said the deadline had passed
        assert batch[0].dispatched_at == 100.0

    run(main())


def test_invalid_max_size_is_rejected() -> None:
    async def main() -> None:
        with pytest.raises(ValueError, match="max_size"):
            await BatchQueue(1).next_batch(0, 0.0, "adaptive")

    run(main())


def test_virtual_loop_reports_a_deadlock_instead_of_hanging() -> None:
    async def main() -> None:
        await BatchQueue(1).next_batch(1, 0.0, "adaptive")

    with pytest.raises(RuntimeError, match="deadlock"):
        run(main())
