"""Closed-loop load: wrk for HTTP (a C generator, so the client is not the bottleneck), a small
grpcio client pool for gRPC. Results: throughput, latency percentiles, errors."""

from __future__ import annotations

import concurrent.futures
import re
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

_LUA = """
wrk.method = os.getenv("BENCH_METHOD") or "POST"
local body_file = os.getenv("BENCH_BODY")
if body_file and body_file ~= "" then
  local f = io.open(body_file, "rb")
  wrk.body = f:read("*a")
  f:close()
end
wrk.headers["Content-Type"] = os.getenv("BENCH_CONTENT_TYPE") or "application/octet-stream"
"""


@dataclass(frozen=True)
class Point:
    """One measured load point."""

    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    requests: int
    errors: int


def wrk(
    url: str, *, connections: int, seconds: float, body: bytes | None, content_type: str, method: str = "POST"
) -> Point:
    """Drive ``url`` with wrk for ``seconds`` at ``connections`` concurrent connections."""
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "post.lua"
        script.write_text(_LUA)
        env = {"BENCH_METHOD": method, "BENCH_CONTENT_TYPE": content_type, "BENCH_BODY": ""}
        if body is not None:
            (Path(folder) / "body.bin").write_bytes(body)
            env["BENCH_BODY"] = str(Path(folder) / "body.bin")
        threads = max(1, min(2, connections))
        out = subprocess.run(
            [
                "wrk",
                f"-t{threads}",
                f"-c{connections}",
                f"-d{max(1, round(seconds))}s",
                "--latency",
                "-s",
                str(script),
                url,
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            env={**env, "PATH": "/usr/bin:/bin"},
            check=True,
        ).stdout
    return _parse(out)


def _parse(text: str) -> Point:
    def latency(pct: str) -> float:
        match = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        if not match:
            return float("nan")
        value, unit = float(match[1]), match[2]
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text)[1])  # type: ignore[index]
    requests = int(re.search(r"(\d+) requests in", text)[1])  # type: ignore[index]
    errors = 0
    if match := re.search(r"Non-2xx or 3xx responses: (\d+)", text):
        errors += int(match[1])
    if match := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text):
        errors += sum(int(x) for x in match.groups())
    return Point(rps, latency("50"), latency("90"), latency("99"), requests, errors)


def grpc_predictions(target: str, model: str, body: bytes, *, concurrency: int, seconds: float) -> Point:
    """Closed loop of gRPC ``Predictions`` calls from ``concurrency`` threads."""
    import grpc  # noqa: PLC0415

    from emberserve.grpc.generated import inference_pb2, inference_pb2_grpc  # noqa: PLC0415

    deadline = time.perf_counter() + seconds
    request = inference_pb2.PredictionsRequest(model_name=model, input={"data": body})

    def loop() -> tuple[list[float], int]:
        latencies: list[float] = []
        errors = 0
        with grpc.insecure_channel(target) as channel:
            stub = inference_pb2_grpc.InferenceAPIsServiceStub(channel)
            while time.perf_counter() < deadline:
                began = time.perf_counter()
                try:
                    stub.Predictions(request, timeout=30)
                except grpc.RpcError:
                    errors += 1
                latencies.append(time.perf_counter() - began)
        return latencies, errors

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(lambda _: loop(), range(concurrency)))
    elapsed = time.perf_counter() - started
    latencies = sorted(x for lat, _ in results for x in lat)
    errors = sum(e for _, e in results)

    def pct(q: float) -> float:
        return (
            latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else float("nan")
        )

    return Point(len(latencies) / elapsed, pct(0.5), pct(0.9), pct(0.99), len(latencies), errors)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def spread(values: list[float]) -> float:
    """Max − min relative to the median, in percent."""
    if len(values) < 2:
        return 0.0
    mid = statistics.median(values)
    return 100 * (max(values) - min(values)) / mid if mid else 0.0
