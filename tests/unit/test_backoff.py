"""The worker restart back-off: TorchServe's Fibonacci schedule, scaled and capped."""

from __future__ import annotations

import pytest

from emberserve.workers.pool import BACK_OFF_STEPS, restart_delay_s

# pytorch/serve WorkerThread.BACK_OFF (seconds); retry() increments the index before using it and
# a successful model load resets it to 0.
TORCHSERVE_BACK_OFF = [0, 1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610, 987, 1597]


def test_steps_are_torchserves_table() -> None:
    assert list(BACK_OFF_STEPS) == TORCHSERVE_BACK_OFF


def test_with_a_one_second_base_the_schedule_is_torchserves() -> None:
    delays = [restart_delay_s(n, 1000, 10_000.0) for n in range(1, 18)]
    assert delays == [float(s) for s in TORCHSERVE_BACK_OFF[1:]]


def test_no_failure_means_no_delay() -> None:
    assert restart_delay_s(0, 1000, 60.0) == 0.0
    assert restart_delay_s(-3, 1000, 60.0) == 0.0


def test_the_last_step_repeats_after_the_table_ends() -> None:
    assert restart_delay_s(17, 1000, 10_000.0) == 1597.0
    assert restart_delay_s(500, 1000, 10_000.0) == 1597.0


@pytest.mark.parametrize("cap", [0.0, 0.5, 4.0, 60.0])
def test_delays_are_capped(cap: float) -> None:
    delays = [restart_delay_s(n, 1000, cap) for n in range(1, 40)]
    assert max(delays) == cap
    assert all(0.0 <= d <= cap for d in delays)


def test_the_base_scales_the_schedule_for_fast_tests() -> None:
    assert [restart_delay_s(n, 10, 60.0) for n in range(1, 7)] == pytest.approx(
        [0.01, 0.01, 0.02, 0.03, 0.05, 0.08]
    )


def test_the_schedule_never_decreases() -> None:
    delays = [restart_delay_s(n, 250, 120.0) for n in range(30)]
    assert delays == sorted(delays)
