"""WorkerPool and WorkerProcess against real processes: batching, timeouts, crashes, scaling.

Most tests drive ``tests/fake_worker.py`` (scriptable, starts in ~50 ms); the last section runs
the real worker (``python -m emberserve.workers.child``) when it is present. Every test checks
that no process outlives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import psutil
import pytest
import uvloop

from emberserve.batching import BatchQueue, Job, QueueFull
from emberserve.errors import ServiceUnavailableError, WorkerDiedError
from emberserve.workers import protocol
from emberserve.workers.env import build_worker_env
from emberserve.workers.pool import PoolSettings, WorkerPool, WorkerStartError
from emberserve.workers.process import MAX_LOG_LINE, WorkerProcess

FAKE_WORKER = [sys.executable, str(Path(__file__).resolve().parents[1] / "fake_worker.py")]
REPO_SRC = Path(__file__).resolve().parents[2] / "src"
TEST_TIMEOUT_S = 30


# -- harness -----------------------------------------------------------------------------------


def run(coro: Coroutine[Any, Any, Any], loop: str = "asyncio") -> Any:
    async def bounded() -> Any:
        async with asyncio.timeout(TEST_TIMEOUT_S):
            return await coro

    if loop == "uvloop":
        return uvloop.run(bounded())
    return asyncio.run(bounded())


def settings(**overrides: Any) -> PoolSettings:
    base: dict[str, Any] = {
        "min_workers": 1,
        "max_workers": 1,
        "batch_size": 1,
        "max_batch_delay_ms": 100,
        "response_timeout_s": 10,
        "startup_timeout_s": 10,
        "batching_mode": "adaptive",
        "restart_backoff_base_ms": 10,
        "max_restart_backoff_s": 0.2,
    }
    base.update(overrides)
    return PoolSettings(**base)


def load_model(
    handler: str = "ok", model_dir: str = "/nonexistent", batch_size: int = 1
) -> protocol.LoadModel:
    return protocol.LoadModel(
        model_name="fake",
        model_version="1.0",
        model_dir=model_dir,
        handler=handler,
        manifest={"model": {"modelName": "fake", "handler": handler}},
        batch_size=batch_size,
        gpu_id=None,
        envelope=None,
        limit_max_image_pixels=True,
        model_yaml_config={},
        server_version="0.12.0",
    )


@contextlib.asynccontextmanager
async def make_pool(
    handler: str = "ok",
    *,
    capacity: int = 100,
    argv: list[str] | None = None,
    load: protocol.LoadModel | None = None,
    on_metrics: Callable[[list[protocol.MetricRecord]], None] | None = None,
    env: dict[str, str] | None = None,
    **overrides: Any,
) -> AsyncIterator[tuple[WorkerPool, BatchQueue]]:
    queue = BatchQueue(capacity, model_name="fake")
    pool = WorkerPool(
        load or load_model(handler),
        queue,
        settings(**overrides),
        itertools.count(9000),
        on_metrics=on_metrics,
        env=env,
        worker_argv=FAKE_WORKER if argv is None else argv,
    )
    try:
        yield pool, queue
    finally:
        await pool.close(1.0)
    assert_no_processes_left()


def submit(queue: BatchQueue, script: str, on_chunk: Callable[[protocol.Result], None] | None = None) -> Job:
    loop = asyncio.get_running_loop()
    request = protocol.Request(
        f"req-{script}-{loop.time()}", "predict", [], [protocol.Input("body", "text/plain", script.encode())]
    )
    job = Job(request, loop.create_future(), loop.time(), on_chunk)
    queue.put(job)
    return job


async def answer(job: Job) -> protocol.Result:
    return await asyncio.wait_for(job.future, 15)


def header(result: protocol.Result, name: str) -> str:
    return dict(result.headers)[name]


def started_event(queue: BatchQueue, script: str) -> tuple[Job, asyncio.Event]:
    """Submit ``started;<script>``: the event is set once the worker runs the job."""
    event = asyncio.Event()
    job = submit(queue, f"started;{script}", on_chunk=lambda _chunk: event.set())
    return job, event


def live_pids(pool: WorkerPool) -> list[int]:
    return [int(str(w["pid"])) for w in pool.describe_workers() if w["status"] == "READY"]


def assert_no_processes_left() -> None:
    children = psutil.Process().children(recursive=True)
    _, alive = psutil.wait_procs(children, timeout=5)
    assert not alive, f"processes left behind: {alive}"


async def assert_gone(pids: list[int], within_s: float = 5.0) -> None:
    """Wait until every pid is gone or a zombie (never reaps: our children belong to the loop)."""
    deadline = time.monotonic() + within_s
    while True:
        running = [pid for pid in pids if _running(pid)]
        if not running:
            return
        assert time.monotonic() < deadline, f"still running: {running}"
        await asyncio.sleep(0.02)


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def until(condition: Callable[[], bool], within_s: float = 10.0) -> None:
    """Wait for a state change the pool exposes no event for (bounded polling)."""
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


# -- batching and results ---------------------------------------------------------------------


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
@pytest.mark.parametrize("mode", ["adaptive", "strict"])
def test_four_concurrent_jobs_become_one_batch(loop: str, mode: str) -> None:
    async def main() -> None:
        async with make_pool(batch_size=4, max_batch_delay_ms=2000, batching_mode=mode) as (pool, queue):
            await pool.scale(1, 1, wait=True)
            jobs = [submit(queue, f"echo:{i}") for i in range(4)]
            results = [await answer(job) for job in jobs]
            assert [r.body for r in results] == [b"0", b"1", b"2", b"3"]
            assert {header(r, "x-batch-size") for r in results} == {"4"}
            assert [r.request_id for r in results] == [j.request.request_id for j in jobs]

    run(main(), loop)


def test_strict_mode_batches_requests_arriving_within_the_delay() -> None:
    async def main() -> None:
        async with make_pool(batch_size=4, max_batch_delay_ms=3000, batching_mode="strict") as (pool, queue):
            await pool.scale(1, 1, wait=True)
            jobs = []
            for i in range(4):
                jobs.append(submit(queue, f"echo:{i}"))
                await asyncio.sleep(0.05)
            results = [await answer(job) for job in jobs]
            assert {header(r, "x-batch-size") for r in results} == {"4"}

    run(main())


def test_a_lone_request_is_not_delayed_in_adaptive_mode() -> None:
    async def main() -> None:
        async with make_pool(batch_size=8, max_batch_delay_ms=5000) as (pool, queue):
            await pool.scale(1, 1, wait=True)
            for i in range(3):
                began = time.monotonic()
                result = await answer(submit(queue, f"echo:{i}"))
                assert result.body == str(i).encode()
                assert time.monotonic() - began < 1.0  # far below the 5 s max_batch_delay

    run(main())


def test_stream_chunks_and_metrics_reach_their_callbacks() -> None:
    records: list[protocol.MetricRecord] = []

    async def main() -> None:
        async with make_pool(on_metrics=records.extend) as (pool, queue):
            await pool.scale(1, 1, wait=True)
            chunks: list[bytes] = []
            result = await answer(submit(queue, "stream:3", on_chunk=lambda r: chunks.append(r.body)))
            assert chunks == [b"part0", b"part1", b"part2"]
            assert result.body == b"done"
            measured = submit(queue, "metrics")
            assert (await answer(measured)).body == b"measured"
            assert [(r.name, r.value, r.request_id) for r in records] == [
                ("FakeMetric", 1.5, measured.request.request_id)
            ]

    run(main())


def test_a_handler_error_result_is_passed_through_and_the_worker_stays() -> None:
    async def main() -> None:
        async with make_pool() as (pool, queue):
            await pool.scale(1, 1, wait=True)
            pids = live_pids(pool)
            result = await answer(submit(queue, "fail"))
            assert (result.status, result.error) == (503, "Prediction failed")
            assert (await answer(submit(queue, "echo:ok"))).body == b"ok"
            assert live_pids(pool) == pids

    run(main())


def test_a_client_that_goes_away_does_not_cost_the_worker() -> None:
    async def main() -> None:
        async with make_pool() as (pool, queue):
            await pool.scale(1, 1, wait=True)
            pids = live_pids(pool)
            job, running = started_event(queue, "sleep:0.3")
            await asyncio.wait_for(running.wait(), 10)
            job.future.cancel()
            assert (await answer(submit(queue, "echo:next"))).body == b"next"
            assert live_pids(pool) == pids

    run(main())


def test_describe_workers_has_torchserves_keys_and_types() -> None:
    async def main() -> None:
        async with make_pool() as (pool, _queue):
            await pool.scale(1, 1, wait=True)
            [worker] = pool.describe_workers()
            assert list(worker) == ["id", "startTime", "status", "memoryUsage", "pid", "gpu", "gpuUsage"]
            assert worker["id"] == "9000"
            assert worker["status"] == "READY"
            assert isinstance(worker["memoryUsage"], int)
            assert worker["memoryUsage"] > 0
            assert isinstance(worker["pid"], int)
            assert psutil.pid_exists(worker["pid"])
            assert worker["gpu"] is False
            assert worker["gpuUsage"] == "N/A"
            stamp = str(worker["startTime"])
            assert len(stamp) == 24
            assert stamp[10] == "T"
            assert stamp.endswith("Z")
            assert stamp[19] == "."
            assert pool.live_workers == 1

    run(main())


def test_worker_output_goes_to_the_model_log_with_worker_names(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        async with make_pool("chatty") as (pool, queue):
            await pool.scale(1, 1, wait=True)
            assert (await answer(submit(queue, "flood:3000000"))).body == b"flooded"
            assert (await answer(submit(queue, "echo:after"))).body == b"after"

    with caplog.at_level(logging.INFO, logger="emberserve.model_log"):
        run(main())
    lines = [r for r in caplog.records if r.name == "emberserve.model_log"]
    messages = [r.getMessage() for r in lines]
    assert "W-9000-fake_1.0-stdout hello from stdout" in messages
    assert "W-9000-fake_1.0-stderr hello from stderr" in messages
    assert next(r for r in lines if "stderr" in r.getMessage()).levelno == logging.WARNING
    [flood] = [m for m in messages if m.startswith("W-9000-fake_1.0-stdout xxx")]
    assert len(flood) < MAX_LOG_LINE + 100
    assert flood.endswith(f"[{3_000_000 - MAX_LOG_LINE} bytes truncated]")


def test_an_oversized_response_fails_only_that_request() -> None:
    async def main() -> None:
        async with make_pool(max_response_bytes=1000) as (pool, queue):
            await pool.scale(1, 1, wait=True)
            pids = live_pids(pool)
            with pytest.raises(WorkerDiedError):
                await answer(submit(queue, "big:5000"))
            assert (await answer(submit(queue, "big:1000"))).body == b"b" * 1000
            assert live_pids(pool) == pids

    run(main())


# -- faults -----------------------------------------------------------------------------------


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_timeout_kills_the_process_group_and_a_replacement_serves(loop: str) -> None:
    async def main() -> None:
        async with make_pool(response_timeout_s=1) as (pool, queue):
            await pool.scale(1, 1, wait=True)
            [first_pid] = live_pids(pool)
            grandchild = int((await answer(submit(queue, "spawn"))).body)
            daemon = int((await answer(submit(queue, "spawn_daemon"))).body)  # leaves group and session
            assert psutil.Process(grandchild).ppid() == first_pid
            assert os.getsid(daemon) != os.getsid(first_pid)
            began = time.monotonic()
            with pytest.raises(WorkerDiedError) as caught:
                await answer(submit(queue, "sleep:30"))
            assert caught.value.message == "Worker died."
            assert 0.9 < time.monotonic() - began < 3.0
            await assert_gone([first_pid, grandchild, daemon])
            served = await answer(submit(queue, "echo:again"))
            assert served.body == b"again"
            assert int(header(served, "x-pid")) != first_pid
            [history] = pool.restart_history()
            assert history["restarts"] == 1
            assert "response timeout" in str(history["lastExit"])
            assert history["id"] == "9001"  # a restart takes a fresh id

    run(main(), loop)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_sigkill_mid_batch_fails_only_that_batch(loop: str) -> None:
    async def main() -> None:
        async with make_pool() as (pool, queue):
            await pool.scale(1, 1, wait=True)
            [pid] = live_pids(pool)
            doomed, running = started_event(queue, "sleep:30")
            waiting = submit(queue, "echo:queued")  # queued behind the doomed batch
            await asyncio.wait_for(running.wait(), 10)
            os.kill(pid, signal.SIGKILL)
            with pytest.raises(WorkerDiedError):
                await answer(doomed)
            result = await answer(waiting)
            assert result.body == b"queued"
            assert int(header(result, "x-pid")) != pid
            assert "SIGKILL" in str(pool.restart_history()[0]["lastExit"])

    run(main(), loop)


def test_a_dying_worker_does_not_touch_the_batches_of_others() -> None:
    async def main() -> None:
        async with make_pool() as (pool, queue):
            await pool.scale(2, 2, wait=True)
            survivor, survivor_running = started_event(queue, "sleep:0.5")
            await asyncio.wait_for(survivor_running.wait(), 10)
            crasher = submit(queue, "crash")
            with pytest.raises(WorkerDiedError):
                await answer(crasher)
            assert (await answer(survivor)).body == b"slept"

    run(main())


@pytest.mark.parametrize("script", ["crash", "garbage", "noresult"])
def test_a_worker_that_breaks_is_replaced(script: str) -> None:
    async def main() -> None:
        async with make_pool() as (pool, queue):
            await pool.scale(1, 1, wait=True)
            [pid] = live_pids(pool)
            with pytest.raises(WorkerDiedError):
                await answer(submit(queue, script))
            result = await answer(submit(queue, "echo:fine"))
            assert int(header(result, "x-pid")) != pid
            await assert_gone([pid])

    run(main())


def test_a_worker_dying_while_idle_is_replaced_without_failing_anything() -> None:
    async def main() -> None:
        async with make_pool() as (pool, queue):
            await pool.scale(1, 1, wait=True)
            [pid] = live_pids(pool)
            os.kill(pid, signal.SIGKILL)
            # A job queued in the very tick the worker dies would fail (as in TorchServe):
            # wait until the pool has seen the death.
            await until(lambda: pool.restart_history()[0]["restarts"] == 1)
            result = await answer(submit(queue, "echo:after"))
            assert int(header(result, "x-pid")) != pid

    run(main())


def test_a_failing_load_raises_worker_start_error_and_keeps_retrying() -> None:
    async def main() -> None:
        async with make_pool("fail") as (pool, queue):
            with pytest.raises(WorkerStartError) as caught:
                await pool.scale(1, 1, wait=True)
            assert caught.value.message == "FakeLoadError: initialize() failed"
            assert "Traceback" in caught.value.detail
            assert pool.live_workers == 0
            assert pool.target_workers == 1  # the slot stays and retries with back-off
            for worker in pool.describe_workers():
                assert worker["status"] == "UNLOADING"
            job = submit(queue, "echo:never")
            await pool.close(0.5)
            with pytest.raises(ServiceUnavailableError):
                await answer(job)
            assert pool.restart_history() == []

    run(main())


def test_a_worker_crashing_during_load_reports_its_exit() -> None:
    async def main() -> None:
        async with make_pool("crash") as (pool, _queue):
            with pytest.raises(WorkerStartError) as caught:
                await pool.scale(1, 1, wait=True)
            assert "exit code 3" in caught.value.message
            assert "FakeCrash" in caught.value.detail

    run(main())


def test_startup_timeout_fails_the_start() -> None:
    async def main() -> None:
        async with make_pool("hang", startup_timeout_s=0) as (pool, _queue):
            with pytest.raises(WorkerStartError, match="did not load the model within 0 s"):
                await pool.scale(1, 1, wait=True)

    run(main())


def test_an_interpreter_that_does_not_exist_fails_the_start() -> None:
    async def main() -> None:
        async with make_pool(argv=["/nonexistent/python3"]) as (pool, _queue):
            with pytest.raises(WorkerStartError, match="could not be started"):
                await pool.scale(1, 1, wait=True)

    run(main())


def test_an_internal_error_costs_one_attempt_not_the_slot() -> None:
    broken = load_model()
    broken.manifest = {"unencodable": object()}  # LoadModel cannot be serialised: a bug, not the worker

    async def main() -> None:
        async with make_pool(load=broken) as (pool, _queue):
            with pytest.raises(WorkerStartError, match="internal error"):
                await pool.scale(1, 1, wait=True)
            await until(lambda: pool.restart_history()[0]["restarts"] >= 2)  # it keeps retrying
            assert pool.target_workers == 1

    run(main())


def test_gpus_are_handed_out_round_robin() -> None:
    async def main() -> None:
        async with make_pool(gpu_ids=(0, 1)) as (pool, queue):
            await pool.scale(2, 2, wait=True)
            assert [w["gpu"] for w in pool.describe_workers()] == [True, True]
            jobs = [submit(queue, "sleep:0.2;gpu") for _ in range(2)]
            assert sorted([(await answer(job)).body for job in jobs]) == [b"0", b"1"]

    run(main())


# -- scaling and shutdown ---------------------------------------------------------------------------


def test_scale_up_and_down_with_wait() -> None:
    async def main() -> None:
        async with make_pool() as (pool, queue):
            await pool.scale(2, 3, wait=True)
            assert pool.live_workers == 2
            assert (pool.settings.min_workers, pool.settings.max_workers) == (2, 3)
            assert sorted(w["id"] for w in pool.describe_workers()) == ["9000", "9001"]
            before = live_pids(pool)
            await pool.scale(1, 1, wait=True)
            assert pool.live_workers == 1
            await assert_gone([pid for pid in before if pid not in live_pids(pool)])
            assert (await answer(submit(queue, "echo:one"))).body == b"one"
            await pool.scale(0, 0, wait=True)
            assert pool.live_workers == 0
            assert pool.describe_workers() == []
            assert_no_processes_left()

    run(main())


def test_scale_down_lets_the_in_flight_batch_finish() -> None:
    async def main() -> None:
        async with make_pool() as (pool, queue):
            await pool.scale(2, 2, wait=True)
            busy, running = started_event(queue, "sleep:0.5")
            await asyncio.wait_for(running.wait(), 10)
            await pool.scale(1, 1, wait=True)  # removes the idle worker
            assert pool.live_workers == 1
            await pool.scale(0, 0, wait=True, timeout_s=-1)  # waits for the busy one
            assert (await answer(busy)).body == b"slept"

    run(main())


def test_scale_down_with_timeout_zero_kills_at_once() -> None:
    async def main() -> None:
        async with make_pool() as (pool, queue):
            await pool.scale(1, 1, wait=True)
            busy, running = started_event(queue, "sleep:30")
            queued = submit(queue, "echo:queued")
            await asyncio.wait_for(running.wait(), 10)
            began = time.monotonic()
            await pool.scale(0, 0, wait=True, timeout_s=0)
            assert time.monotonic() - began < 3.0
            with pytest.raises(WorkerDiedError):
                await answer(busy)
            with pytest.raises(ServiceUnavailableError):  # nobody is left to serve it
                await answer(queued)

    run(main())


def test_the_last_scale_call_wins() -> None:
    async def main() -> None:
        async with make_pool() as (pool, _queue):
            calls = [pool.scale(n, n, wait=True) for n in (3, 1, 2, 0, 2)]
            await asyncio.gather(*calls)
            assert pool.live_workers == 2
            assert pool.target_workers == 2

    run(main())


def test_twenty_overlapping_scale_calls_end_at_the_last_one_and_leak_nothing() -> None:
    async def main() -> None:
        async with make_pool() as (pool, queue):
            calls = [pool.scale(n % 3, 2, wait=n % 2 == 0) for n in range(20)]
            calls.append(pool.scale(1, 1, wait=True))
            await asyncio.gather(*calls, return_exceptions=False)
            assert pool.target_workers == 1
            assert pool.live_workers == 1
            assert (await answer(submit(queue, "echo:still-serving"))).body == b"still-serving"
            [pid] = live_pids(pool)
            await until(lambda: [p.pid for p in psutil.Process().children()] == [pid])

    run(main())


def test_scale_without_wait_returns_at_once() -> None:
    async def main() -> None:
        async with make_pool("slow:0.5") as (pool, queue):
            await pool.scale(1, 1, wait=False)
            # The worker takes 0.5 s to load: had scale() waited for it, it would be live now.
            assert pool.live_workers == 0
            assert (await answer(submit(queue, "echo:later"))).body == b"later"
            assert pool.live_workers == 1

    run(main())


def test_close_serves_queued_jobs_then_leaves_no_process() -> None:
    async def main() -> None:
        async with make_pool() as (pool, queue):
            await pool.scale(2, 2, wait=True)
            pids = [int((await answer(submit(queue, op))).body) for op in ("spawn", "spawn_daemon")]
            jobs = [submit(queue, f"echo:{i}") for i in range(6)]
            await pool.close(5.0)
            assert [(await answer(job)).body for job in jobs] == [str(i).encode() for i in range(6)]
            assert pool.describe_workers() == []
            await assert_gone(pids)
            assert_no_processes_left()
            await pool.scale(1, 1, wait=True)  # too late: ignored
            assert pool.target_workers == 0

    run(main())


def test_close_kills_a_worker_that_ignores_sigterm() -> None:
    async def main() -> None:
        async with make_pool() as (pool, queue):
            await pool.scale(1, 1, wait=True)
            [pid] = live_pids(pool)
            stuck, running = started_event(queue, "hang")
            await asyncio.wait_for(running.wait(), 10)
            began = time.monotonic()
            await pool.close(0.3)
            assert time.monotonic() - began < 3.0
            with pytest.raises(WorkerDiedError):
                await answer(stuck)
            await assert_gone([pid])

    run(main())


def test_a_stopped_worker_gets_shutdown_then_sigterm_then_sigkill() -> None:
    async def main() -> None:
        worker = WorkerProcess(1, "fake", "1.0", argv=FAKE_WORKER)
        await worker.start(load_model(), 10)
        assert worker.alive
        assert worker.memory_usage() > 0
        began = time.monotonic()
        await worker.stop(10.0)  # the fake exits on Shutdown, long before SIGTERM would come
        assert time.monotonic() - began < 5.0
        assert worker.returncode == 0
        assert worker.memory_usage() == 0
        assert worker.status == "UNLOADING"

        stubborn = WorkerProcess(2, "fake", "1.0", argv=FAKE_WORKER)
        await stubborn.start(load_model(), 10)
        loop = asyncio.get_running_loop()
        request = protocol.Request("h", "predict", [], [protocol.Input("body", "", b"started;hang")])
        event = asyncio.Event()
        job = Job(request, loop.create_future(), loop.time(), lambda _r: event.set())
        batch = asyncio.ensure_future(stubborn.run_batch([job], 60))
        await asyncio.wait_for(event.wait(), 10)
        await stubborn.stop(0.2)  # Shutdown ignored (busy), SIGTERM ignored: SIGKILL
        assert stubborn.returncode == -signal.SIGKILL
        await batch
        with pytest.raises(WorkerDiedError):
            job.future.result()

    run(main())
    assert_no_processes_left()


def test_queue_full_while_the_worker_is_busy() -> None:
    async def main() -> None:
        async with make_pool(capacity=2) as (pool, queue):
            await pool.scale(1, 1, wait=True)
            busy, running = started_event(queue, "sleep:0.3")
            await asyncio.wait_for(running.wait(), 10)
            queued = [submit(queue, f"echo:{i}") for i in range(2)]
            with pytest.raises(QueueFull):
                submit(queue, "echo:rejected")
            assert (await answer(busy)).body == b"slept"
            assert [(await answer(j)).body for j in queued] == [b"0", b"1"]

    run(main())


# -- environment -------------------------------------------------------------------------------


def test_build_worker_env_filters_blacklist_and_secrets() -> None:
    base = {
        "PATH": "/bin",
        "AWS_KEY": "k",
        "MY_AWS_KEY": "m",
        "TOKEN_FILE": "/x",
        "OTHER": "has-s3cr3t-inside",
    }
    env = build_worker_env(
        base,
        blacklist=r"AWS_.*",
        secret_names=["TOKEN_FILE"],
        secret_values=["s3cr3t"],
        decode_input_request=False,
    )
    assert env["PATH"] == "/bin"
    assert env["MY_AWS_KEY"] == "m"  # the blacklist must match the whole name, as in TorchServe
    assert "AWS_KEY" not in env
    assert "TOKEN_FILE" not in env
    assert "OTHER" not in env
    assert env["TS_DECODE_INPUT_REQUEST"] == "false"
    assert str(REPO_SRC) in env["PYTHONPATH"].split(os.pathsep)


def test_build_worker_env_keeps_everything_without_rules() -> None:
    env = build_worker_env({"A": "1", "PYTHONPATH": "/extra"}, extra={"B": "2"})
    assert env["A"] == "1"
    assert env["B"] == "2"
    assert env["TS_DECODE_INPUT_REQUEST"] == "true"
    assert env["PYTHONPATH"].split(os.pathsep)[1:] == ["/extra"]


def test_the_worker_sees_exactly_the_environment_given() -> None:
    os.environ["EMBER_TEST_SECRET_TOKEN"] = "tok-123"
    try:
        env = build_worker_env(os.environ, secret_names=["EMBER_TEST_SECRET_TOKEN"])

        async def main() -> None:
            async with make_pool(env=env) as (pool, queue):
                await pool.scale(1, 1, wait=True)
                assert (await answer(submit(queue, "env:EMBER_TEST_SECRET_TOKEN"))).body == b"<unset>"
                assert (await answer(submit(queue, "env:TS_DECODE_INPUT_REQUEST"))).body == b"true"

        run(main())
    finally:
        del os.environ["EMBER_TEST_SECRET_TOKEN"]


def test_the_default_environment_sets_ts_decode_input_request() -> None:
    async def main() -> None:
        async with make_pool() as (pool, queue):
            await pool.scale(1, 1, wait=True)
            assert (await answer(submit(queue, "env:TS_DECODE_INPUT_REQUEST"))).body == b"true"

    run(main())


# -- the real worker -------------------------------------------------------------------------------

CHILD = REPO_SRC / "emberserve" / "workers" / "child.py"
ECHO_HANDLER = """
def handle(data, context):
    if data is None:
        return None
    return [row.get("body") for row in data]
"""


@pytest.fixture
def echo_model_dir(tmp_path: Path) -> Path:
    (tmp_path / "echo_handler.py").write_text(ECHO_HANDLER)
    return tmp_path


@pytest.mark.skipif(not CHILD.exists(), reason="the real worker (workers/child.py) is not there yet")
def test_the_real_worker_batches_and_recovers(echo_model_dir: Path) -> None:
    load = protocol.LoadModel(
        model_name="echo",
        model_version="1.0",
        model_dir=str(echo_model_dir),
        handler="echo_handler",
        manifest={"model": {"modelName": "echo", "handler": "echo_handler.py", "modelVersion": "1.0"}},
        batch_size=4,
        gpu_id=None,
        envelope=None,
        limit_max_image_pixels=True,
        model_yaml_config={},
        server_version="0.12.0",
    )

    async def main() -> None:
        async with make_pool(
            load=load,
            argv=[sys.executable, "-m", "emberserve.workers.child"],
            batch_size=4,
            startup_timeout_s=60,
        ) as (pool, queue):
            await pool.scale(1, 1, wait=True)
            jobs = [submit(queue, f"hello-{i}") for i in range(4)]
            results = [await answer(job) for job in jobs]
            assert [r.status for r in results] == [200] * 4
            assert [r.body for r in results] == [f"hello-{i}".encode() for i in range(4)]
            [pid] = live_pids(pool)
            os.kill(pid, signal.SIGKILL)
            # A request racing the kill may reach the dying worker before the pool has read its
            # EOF; then it fails like TorchServe's ("Worker died.") and the pool has noticed.
            try:
                again = await answer(submit(queue, "again"))
            except WorkerDiedError:
                again = await answer(submit(queue, "again"))
            assert again.body == b"again"
            assert live_pids(pool) != [pid]

    run(main())
