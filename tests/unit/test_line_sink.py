"""The per-request log sink: a quiet server writes each line at once, a busy one in batches,
and nothing held is lost when the server stops."""

from __future__ import annotations

import asyncio
import logging.handlers
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from emberserve import logs


@pytest.fixture
def log_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, logs._LineSink]]:
    """A sink of its own, registered alone, so flush_logs touches nothing of other tests."""
    path = tmp_path / "access_log.log"
    handler = logging.handlers.RotatingFileHandler(path, maxBytes=1 << 20, backupCount=1, encoding="utf-8")
    sink = logs._LineSink(handler)
    monkeypatch.setattr(logs, "_SINKS", {"emberserve.access": sink})
    monkeypatch.setattr(logs, "_LISTENERS", [])
    yield path, sink
    handler.close()


def messages(path: Path) -> list[str]:
    return [line.split(" - ", 1)[1] for line in path.read_text().splitlines()]


async def next_iterations(count: int = 3) -> None:
    for _ in range(count):
        await asyncio.sleep(0)


def test_a_quiet_sink_writes_at_once_and_a_busy_one_holds_lines_until_stop(
    log_file: tuple[Path, logs._LineSink], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, sink = log_file
    monkeypatch.setattr(logs, "SINK_FLUSH_INTERVAL_S", 60.0)  # nothing but the stop writes "two"

    async def scenario() -> None:
        sink.append("one")
        await next_iterations()
        assert messages(path) == ["one"]  # quiet: written in the next loop iteration
        sink.append("two")  # right after a write: held
        await next_iterations()
        assert messages(path) == ["one"]
        logs.flush_logs()  # what the server does when it stops
        assert messages(path) == ["one", "two"]

    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_held_lines_are_written_together_once_the_interval_is_over(
    log_file: tuple[Path, logs._LineSink], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, sink = log_file
    monkeypatch.setattr(logs, "SINK_FLUSH_INTERVAL_S", 0.02)

    async def scenario() -> None:
        for line in ("one", "two", "three"):
            sink.append(line)
            await next_iterations()
        deadline = time.monotonic() + 5
        while messages(path) != ["one", "two", "three"]:  # no further append, no stop
            assert time.monotonic() < deadline, f"held lines were never written: {messages(path)}"
            await asyncio.sleep(0.01)

    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_without_a_running_loop_a_line_is_written_at_once(log_file: tuple[Path, logs._LineSink]) -> None:
    path, sink = log_file
    sink.append("startup line")
    assert messages(path) == ["startup line"]
