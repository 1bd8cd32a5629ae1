"""Ember against TorchServe 0.12 in the same run: ``make bench`` (``python -m benchmarks.run``).

Both servers load the same archives (made by the real torch-model-archiver) with the same settings
on loopback, one server at a time, interleaved (Ember, TorchServe, TorchServe, Ember, …) for
``--repeats`` rounds; every point reports the median and the spread of its rounds. A point with
errors is marked invalid. The report goes to ``benchmarks/results/<date>/report.md`` with PNG charts.
"""

from __future__ import annotations

import argparse
import array
import compileall
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import httpx
import psutil

from benchmarks import models
from benchmarks.load import Point, grpc_predictions, median, spread, wrk
from benchmarks.servers import Server, ensure_torchserve

KINDS = ("ember", "torchserve")
ROOT = Path(__file__).resolve().parent

#: (workload, point) → measure(server, seconds) → Point
Measure = Callable[[Server, float], Point]


def http_point(
    path: str, connections: int, body: bytes | None, content_type: str, method: str = "POST"
) -> Measure:
    def measure(server: Server, seconds: float) -> Point:
        return wrk(server.inference + path, connections=connections, seconds=seconds, body=body,
                   content_type=content_type, method=method)  # fmt: skip

    return measure


def grpc_point(model: str, body: bytes, concurrency: int) -> Measure:
    def measure(server: Server, seconds: float) -> Point:
        return grpc_predictions(server.grpc_inference, model, body, concurrency=concurrency, seconds=seconds)

    return measure


def scraped(inner: Measure, every_s: float = 1.0) -> Measure:
    """``inner`` while another thread scrapes the metrics port every ``every_s`` seconds (W7)."""

    def measure(server: Server, seconds: float) -> Point:
        stop = threading.Event()

        def scrape() -> None:
            with httpx.Client(timeout=10) as client:
                while not stop.wait(every_s):
                    client.get(server.metrics + "/metrics")

        scraper = threading.Thread(target=scrape, daemon=True)
        scraper.start()
        try:
            return inner(server, seconds)
        finally:
            stop.set()
            scraper.join()

    return measure


def v2_body(cnn_body: bytes) -> bytes:
    """The CNN input as a KServe v2 / Open Inference Protocol JSON request (W5)."""
    numbers = array.array("f", cnn_body).tolist()
    tensor = {"name": "input-0", "shape": [1, 28, 28], "datatype": "FP32", "data": numbers}
    return json.dumps({"inputs": [tensor]}).encode()


#: Server configurations: the workloads of each run on servers started with these extra keys.
CONFIGS = {
    "default": "",
    "prometheus": "metrics_mode=prometheus\n",
    "kservev2": "service_envelope=kservev2\n",
}

Workload = tuple[str, dict[str, object], list[tuple[str, Measure]], str]


def workloads(cnn_body: bytes, image_body: bytes) -> list[Workload]:
    echo_body = b"x" * 1024
    octet = "application/octet-stream"
    cnn_16 = http_point("/predictions/cnn", 16, cnn_body, octet)
    return [
        ("W0 GET /ping", {}, [("c=16", http_point("/ping", 16, None, octet, "GET"))], "default"),
        (
            "W1 echo, 1 KB, 1 worker",
            {"model": "echo", "workers": 1},
            [(f"c={c}", http_point("/predictions/echo", c, echo_body, octet)) for c in (1, 16, 64)],
            "default",
        ),
        ("W2 small CNN, 1 worker", {"model": "cnn", "workers": 1}, [("c=16", cnn_16)], "default"),
        ("W2 small CNN, 2 workers", {"model": "cnn", "workers": 2}, [("c=16", cnn_16)], "default"),
        (
            "W3 600 KB float32 body, light model, 1 worker",
            {"model": "light", "workers": 1},
            [("c=16", http_point("/predictions/light", 16, image_body, octet))],
            "default",
        ),
        (
            "W3 600 KB float32 body, ResNet-18-sized model, 1 worker",
            {"model": "resnet", "workers": 1},
            [("c=4", http_point("/predictions/resnet", 4, image_body, octet))],
            "default",
        ),
        (
            "W4 small CNN, batch_size 8, max_batch_delay 5 ms",
            {"model": "cnn", "workers": 1, "batch_size": 8, "max_batch_delay": 5},
            [(f"c={c}", http_point("/predictions/cnn", c, cnn_body, octet)) for c in (1, 16)],
            "default",
        ),
        (
            "W5 KServe v2 JSON, small CNN, 1 worker",
            {"model": "cnn", "workers": 1},
            [("c=16", http_point("/v2/models/cnn/infer", 16, v2_body(cnn_body), "application/json"))],
            "kservev2",
        ),
        (
            "W6 gRPC Predictions, echo",
            {"model": "echo", "workers": 1},
            [("c=16", grpc_point("echo", b"x" * 1024, 16))],
            "default",
        ),
        (
            "W6 gRPC Predictions, small CNN",
            {"model": "cnn", "workers": 1},
            [("c=16", grpc_point("cnn", cnn_body, 16))],
            "default",
        ),
        (
            "W7 small CNN, 1 worker, Prometheus metrics",
            {"model": "cnn", "workers": 1},
            [("no scrape", cnn_16), ("scrape every 1 s", scraped(cnn_16))],
            "prometheus",
        ),
    ]


def run(seconds: float, repeats: int, out_dir: Path) -> Path:
    ensure_torchserve()
    work = Path(tempfile.mkdtemp(prefix="ember-bench-"))
    store = work / "store"
    models.build(store, work / "src")
    raw_cnn_s = models.raw_cnn_seconds(work / "src")
    raw_image_s = {name: models.raw_image_seconds(work / "src", name) for name in ("light", "resnet")}
    plan = workloads(models.cnn_input(), models.image_input())
    results: dict[tuple[str, str, str], list[dict[str, float]]] = defaultdict(list)
    control: dict[tuple[str, str], list[float]] = defaultdict(list)
    for rep in range(repeats):
        order = KINDS if rep % 2 == 0 else tuple(reversed(KINDS))
        for kind, config in ((k, c) for k in order for c in CONFIGS):
            server = Server(kind, work / f"run-{kind}", store)
            print(f"[round {rep + 1}/{repeats}] {kind} ({config} config): starting", flush=True)
            started_s = server.start(CONFIGS[config])
            try:
                if config == "default":
                    control[(kind, "cold start to /ping healthy (s)")].append(started_s)
                    control[(kind, "register echo, 1 worker, synchronous (s)")].append(
                        server.register("echo")
                    )
                    control[(kind, "scale echo 1 → 2 workers (s)")].append(server.scale("echo", 2))
                    frontend_mb, workers_mb = server.rss()
                    control[(kind, "frontend RSS (MB)")].append(frontend_mb)
                    control[(kind, "echo worker RSS (MB)")].append(
                        max(workers_mb) if workers_mb else float("nan")
                    )
                    control[(kind, "unregister echo (s)")].append(server.unregister("echo"))
                for name, setup, points, wanted in plan:
                    if wanted != config:
                        continue
                    if setup:
                        server.register(
                            str(setup["model"]), int(setup["workers"]),  # type: ignore[call-overload]
                            int(setup.get("batch_size", 1)), int(setup.get("max_batch_delay", 100)),  # type: ignore[call-overload]
                        )  # fmt: skip
                    for label, measure in points:
                        measure(server, min(1.0, seconds))  # warm-up
                        cpu_before = server.cpu_seconds()
                        point = measure(server, seconds)
                        cpu = server.cpu_seconds() - cpu_before
                        row = asdict(point)
                        row["cpu_ms_per_request"] = (
                            1000 * cpu / point.requests if point.requests else float("nan")
                        )
                        results[(name, label, kind)].append(row)
                        print(f"  {name} {label}: {point.rps:.0f} req/s, p50 {point.p50_ms:.2f} ms, "
                              f"p99 {point.p99_ms:.2f} ms, errors {point.errors}", flush=True)  # fmt: skip
                    if setup:
                        server.unregister(str(setup["model"]))
            finally:
                server.stop()
    return write_report(out_dir, plan, results, control, raw_cnn_s, raw_image_s, seconds, repeats)


def write_report(
    out_dir: Path,
    plan: list[Workload],
    results: dict[tuple[str, str, str], list[dict[str, float]]],
    control: dict[tuple[str, str], list[float]],
    raw_cnn_s: float,
    raw_image_s: dict[str, float],
    seconds: float,
    repeats: int,
) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)

    def med(name: str, label: str, kind: str, key: str) -> float:
        return median([r[key] for r in results[(name, label, kind)]])

    def errors(name: str, label: str, kind: str) -> int:
        return int(sum(r["errors"] for r in results[(name, label, kind)]))

    lines = [
        f"# Ember vs TorchServe 0.12 — {datetime.date.today().isoformat()}",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {psutil.cpu_count()} CPUs, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GB RAM, {platform.platform()}, "
        f"Python {platform.python_version()}.",
        f"Each point: {seconds:g} s of closed-loop load (wrk; gRPC: grpcio threads) after a warm-up, "
        f"{repeats} rounds, servers interleaved; median of the rounds, spread = (max − min) / median. "
        "The load generator shares the machine's CPUs with the server under test, alike for both.",
        "",
    ]
    for name, _setup, points, config in plan:
        note = f" (servers started with {CONFIGS[config].strip()})" if CONFIGS[config] else ""
        lines += [f"## {name}{note}", "",
                  "| point | metric | Ember | TorchServe | ratio (E/T) | spread E / T |",
                  "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
        for label, _ in points:
            for key, title in (("rps", "throughput (req/s)"), ("p50_ms", "p50 (ms)"), ("p99_ms", "p99 (ms)"),
                               ("cpu_ms_per_request", "CPU per request (ms)")):  # fmt: skip
                e, t = med(name, label, "ember", key), med(name, label, "torchserve", key)
                spreads = [spread([r[key] for r in results[(name, label, k)]]) for k in KINDS]
                ratio = e / t if t else float("nan")
                spread_text = f"{spreads[0]:.0f}% / {spreads[1]:.0f}%"
                lines.append(f"| {label} | {title} | {e:.2f} | {t:.2f} | {ratio:.2f} | {spread_text} |")
            bad = {k: errors(name, label, k) for k in KINDS}
            if any(bad.values()):
                lines.append(
                    f"| {label} | **errors (point invalid)** | {bad['ember']} | {bad['torchserve']} | | |"
                )
        lines.append("")
    lines += ["## W8 control plane and memory", "", "| measurement | Ember | TorchServe | ratio (E/T) |",
              "| --- | --- | --- | --- |"]  # fmt: skip
    for measurement in dict.fromkeys(m for _, m in control):
        e, t = median(control[("ember", measurement)]), median(control[("torchserve", measurement)])
        lines.append(f"| {measurement} | {e:.2f} | {t:.2f} | {e / t if t else float('nan'):.2f} |")
    w2 = med("W2 small CNN, 1 worker", "c=16", "ember", "rps")
    w2_ts = med("W2 small CNN, 1 worker", "c=16", "torchserve", "rps")
    lines += [
        "",
        f"Raw in-process CNN forward pass (1 thread, batch 1): {raw_cnn_s * 1000:.3f} ms, i.e. at most "
        f"{1 / raw_cnn_s:.0f} inferences/s on one worker. Served ÷ raw (W2, 1 worker, c=16): Ember "
        f"{w2 * raw_cnn_s:.2f}, TorchServe {w2_ts * raw_cnn_s:.2f}.",
        "",
    ]
    w3 = "W3 600 KB float32 body"
    for model, title, label in (("light", f"{w3}, light model, 1 worker", "c=16"),
                                ("resnet", f"{w3}, ResNet-18-sized model, 1 worker", "c=4")):  # fmt: skip
        raw = raw_image_s[model]
        e, t = med(title, label, "ember", "rps") * raw, med(title, label, "torchserve", "rps") * raw
        lines.append(
            f"Raw in-process {model} forward pass (1 thread, batch 1): {raw * 1000:.3f} ms. "
            f"Served ÷ raw ({title}): Ember {e:.2f}, TorchServe {t:.2f}."
        )
    w7 = "W7 small CNN, 1 worker, Prometheus metrics"
    for kind in KINDS:
        quiet, busy = med(w7, "no scrape", kind, "p99_ms"), med(w7, "scrape every 1 s", kind, "p99_ms")
        lines.append(f"W7 p99 with scrapes ÷ without, {kind}: {busy / quiet if quiet else float('nan'):.2f}.")
    lines += [
        "",
        "![throughput](w1_throughput.png) ![p99](w1_p99.png)",
        "",
    ]
    report = out_dir / "report.md"
    report.write_text("\n".join(lines))
    raw = {
        "points": {" | ".join(k): v for k, v in results.items()},
        "control": {" | ".join(k): v for k, v in control.items()},
        "raw_cnn_s": raw_cnn_s,
        "raw_image_s": raw_image_s,
    }
    (out_dir / "raw.json").write_text(json.dumps(raw, indent=1))
    _charts(out_dir, results)
    return report


def _charts(out_dir: Path, results: dict[tuple[str, str, str], list[dict[str, float]]]) -> None:
    try:
        import matplotlib  # noqa: PLC0415 - only for the charts

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        print("matplotlib is not installed: no charts", file=sys.stderr)
        return
    name = "W1 echo, 1 KB, 1 worker"
    levels = [1, 16, 64]
    for key, title, filename in (
        ("rps", "Throughput (req/s)", "w1_throughput.png"),
        ("p99_ms", "p99 latency (ms)", "w1_p99.png"),
    ):
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for kind in KINDS:
            values = [statistics.median(r[key] for r in results[(name, f"c={c}", kind)]) for c in levels]
            ax.plot(levels, values, marker="o", label=kind)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent connections")
        ax.set_title(f"W1 echo: {title}")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out_dir / filename, dpi=100)
        plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("BENCH_SECONDS", "5")))
    parser.add_argument("--repeats", type=int, default=int(os.environ.get("BENCH_REPEATS", "3")))
    parser.add_argument("--out", type=Path, default=ROOT / "results" / datetime.date.today().isoformat())
    args = parser.parse_args()
    started = time.monotonic()
    # Measure Ember as it is installed from a wheel: byte-compiled. An editable checkout is not,
    # and with PYTHONDONTWRITEBYTECODE (set on this machine) every server and worker start would
    # recompile it, ~0.3 s that no user pays (TorchServe's Python side comes byte-compiled by pip).
    compileall.compile_dir(ROOT.parent / "src", quiet=1)
    report = run(args.seconds, args.repeats, args.out)
    print(f"Report: {report} ({(time.monotonic() - started) / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
