"""Soak test: minutes of mixed traffic against a real server, then lost requests and memory slopes.

    python scripts/soak.py --minutes 5          # what `make soak` runs

Models: ``echo`` (the bulk of the traffic), ``flaky`` (raises for some requests: 503 answers),
``slow`` (sleeps past ``response_timeout`` for some requests: worker killed and replaced) and
``leaky`` (keeps 256 KiB of every request: the control — its worker's memory must be seen
growing, or the measurement is blind). Every request must get exactly one HTTP answer; the
resident memory of the frontend and of the echo worker must stay flat (slope over the second
half of the run under ``--max-slope-mb-per-min``). Exit status 0 only when both hold.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

HANDLERS = {
    "echo": """
def handle(data, context):
    if data is None:
        return None
    return [row.get("body") for row in data]
""",
    "flaky": """
def handle(data, context):
    if data is None:
        return None
    if any(row.get("body") == b"fail" for row in data):
        raise RuntimeError("asked to fail")
    return [row.get("body") for row in data]
""",
    "slow": """
import time

def handle(data, context):
    if data is None:
        return None
    if any(row.get("body") == b"stall" for row in data):
        time.sleep(30)
    return [row.get("body") for row in data]
""",
    "leaky": """
KEPT = []

def handle(data, context):
    if data is None:
        return None
    KEPT.append(bytearray(64 * 1024))
    return [row.get("body") for row in data]
""",
}
#: (model, body, share of the traffic)
MIX = [
    ("echo", b"x" * 1024, 0.89),
    ("flaky", b"fail", 0.08),
    ("slow", b"stall", 0.005),
    ("leaky", b"y", 0.025),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_store(work: Path) -> Path:
    store = work / "store"
    store.mkdir()
    for name, source in HANDLERS.items():
        handler = work / f"{name}_handler.py"
        handler.write_text(source)
        subprocess.run(
            [sys.executable, "-m", "emberserve.archiver", "--model-name", name, "--version", "1.0",
             "--handler", str(handler), "--export-path", str(store)],
            check=True,
        )  # fmt: skip
    return store


def slope_mb_per_min(samples: list[tuple[float, int]]) -> float:
    """Least-squares slope of (seconds, bytes) samples, in MB per minute."""
    if len(samples) < 3:
        return 0.0
    n = len(samples)
    mean_t = sum(t for t, _ in samples) / n
    mean_b = sum(b for _, b in samples) / n
    var = sum((t - mean_t) ** 2 for t, _ in samples)
    cov = sum((t - mean_t) * (b - mean_b) for t, b in samples)
    return (cov / var) * 60 / 1e6 if var else 0.0


async def drive(base: str, seconds: float, concurrency: int, counts: collections.Counter[str]) -> None:
    deadline = time.monotonic() + seconds
    weights = [share for _, _, share in MIX]
    rng = random.Random(42)  # noqa: S311 - a reproducible traffic mix, not a secret

    async def one_client(client: httpx.AsyncClient) -> None:
        while time.monotonic() < deadline:
            model, body, _ = rng.choices(MIX, weights)[0]
            counts["sent"] += 1
            try:
                reply = await client.post(f"{base}/predictions/{model}", content=body)
                counts[f"{model} {reply.status_code}"] += 1
            except httpx.HTTPError as exc:
                counts[f"{model} LOST {type(exc).__name__}"] += 1
                counts["lost"] += 1

    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=concurrency)) as client:
        await asyncio.gather(*(one_client(client) for _ in range(concurrency)))


async def sample_memory(
    frontend: psutil.Process,
    management: str,
    stop: asyncio.Event,
    samples: dict[str, list[tuple[float, int]]],
) -> None:
    start = time.monotonic()
    async with httpx.AsyncClient(timeout=10) as client:
        while not stop.is_set():
            now = time.monotonic() - start
            with contextlib.suppress(psutil.Error):
                samples["frontend"].append((now, frontend.memory_info().rss))
            for model in ("echo", "leaky"):
                with contextlib.suppress(httpx.HTTPError, psutil.Error, ValueError, KeyError):
                    [described] = (await client.get(f"{management}/models/{model}")).json()
                    for worker in described["workers"]:
                        rss = psutil.Process(int(worker["pid"])).memory_info().rss
                        samples[f"{model} worker {worker['pid']}"].append((now, rss))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 5)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=5.0, help="how long to drive traffic (default 5)")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent clients (default 16)")
    parser.add_argument("--max-slope-mb-per-min", type=float, default=1.0, help="flat means under this")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="ember-soak-") as folder:
        work = Path(folder)
        store = build_store(work)
        inference, management = free_port(), free_port()
        config = work / "config.properties"
        config.write_text(  # gRPC on free ports too: a server on 7070 (or another soak) is no obstacle
            f"inference_address=http://127.0.0.1:{inference}\n"
            f"management_address=http://127.0.0.1:{management}\n"
            f"grpc_inference_port={free_port()}\ngrpc_management_port={free_port()}\n"
            "enable_metrics_api=false\ndisable_token_authorization=true\n"
            "default_workers_per_model=1\ndefault_response_timeout=2\nrestart_backoff_base_ms=100\n"
        )
        (work / "tmp").mkdir()
        env = {
            **os.environ,
            "LOG_LOCATION": str(work / "logs"),
            "METRICS_LOCATION": str(work / "logs"),
            "TMPDIR": str(work / "tmp"),  # its own pid file: another Ember on this machine is no obstacle
        }
        command = [sys.executable, "-m", "emberserve", "--foreground", "--ncs", "--ts-config", str(config),
                   "--model-store", str(store), "--models", "all"]  # fmt: skip
        with (work / "console.log").open("wb") as console:
            server = subprocess.Popen(command, cwd=work, env=env, stdout=console, stderr=subprocess.STDOUT)
        try:
            base = f"http://127.0.0.1:{inference}"
            deadline = time.monotonic() + 120
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(base + "/ping", timeout=5).status_code == 200:
                        break
                if time.monotonic() > deadline or server.poll() is not None:
                    print((work / "console.log").read_text()[-4000:])
                    return 2
                time.sleep(0.2)
            counts: collections.Counter[str] = collections.Counter()
            samples: dict[str, list[tuple[float, int]]] = collections.defaultdict(list)

            async def run() -> None:
                stop = asyncio.Event()
                sampler = asyncio.create_task(
                    sample_memory(psutil.Process(server.pid), f"http://127.0.0.1:{management}", stop, samples)
                )
                await drive(base, args.minutes * 60, args.concurrency, counts)
                stop.set()
                await sampler

            began = time.monotonic()
            asyncio.run(run())
            elapsed = time.monotonic() - began
        finally:
            server.send_signal(signal.SIGTERM)
            code = server.wait(60)

    # The second half only: allocator arenas and caches grow while a process warms up.
    half = elapsed / 2
    slopes = {name: slope_mb_per_min([p for p in points if p[0] >= half]) for name, points in samples.items()}
    answered = sum(v for k, v in counts.items() if k.split()[-1].isdigit())
    report = {
        "minutes": round(elapsed / 60, 2),
        "requests": counts["sent"],
        "answered": answered,
        "lost": counts["lost"],
        "requests_per_second": round(counts["sent"] / elapsed, 1),
        "answers": {k: v for k, v in sorted(counts.items()) if k not in ("sent", "lost")},
        "rss_slope_mb_per_min": {k: round(v, 3) for k, v in sorted(slopes.items())},
        "rss_end_mb": {k: round(points[-1][1] / 1e6, 1) for k, points in sorted(samples.items())},
        "server_exit_code": code,
    }
    print(json.dumps(report, indent=2))
    flat = [v for k, v in slopes.items() if k == "frontend" or k.startswith("echo")]
    control = [v for k, v in slopes.items() if k.startswith("leaky")]
    ok = counts["lost"] == 0 and answered == counts["sent"] and code == 0
    ok = ok and all(v < args.max_slope_mb_per_min for v in flat)
    ok = ok and any(v >= args.max_slope_mb_per_min for v in control)  # the control must be seen leaking
    print("SOAK PASSED" if ok else "SOAK FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
