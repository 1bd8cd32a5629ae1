"""The benchmark's pure logic: reading wrk's output, medians and spreads."""

from __future__ import annotations

import math

from benchmarks.load import _parse, median, spread

WRK_OUTPUT = """Running 5s test @ http://127.0.0.1:8080/predictions/echo
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.98ms  612.03us  14.20ms   90.11%
    Req/Sec     4.05k   301.22     4.61k    71.00%
  Latency Distribution
     50%    1.87ms
     75%    2.10ms
     90%  650.00us
     99%    1.20s
  40321 requests in 5.00s, 8.11MB read
  Socket errors: connect 0, read 1, write 0, timeout 2
  Non-2xx or 3xx responses: 4
Requests/sec:   8062.45
Transfer/sec:      1.62MB
"""


def test_wrk_output_is_read_with_units() -> None:
    point = _parse(WRK_OUTPUT)
    assert point.rps == 8062.45
    assert point.requests == 40321
    assert point.p50_ms == 1.87
    assert point.p90_ms == 0.65  # microseconds converted
    assert point.p99_ms == 1200.0  # seconds converted
    assert point.errors == 7  # non-2xx plus socket errors


def test_missing_percentiles_are_nan_not_zero() -> None:
    text = "  10 requests in 1.00s, 1KB read\nRequests/sec:   10.00\n"
    assert math.isnan(_parse(text).p99_ms)


def test_median_and_spread() -> None:
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert spread([90.0, 100.0, 110.0]) == 20.0
    assert spread([5.0]) == 0.0
