"""The server's metrics: TorchServe's families (``/metrics`` and the metric logs) and Ember's clean family.

One :class:`MetricsRecorder` per server records what happens (answers, inferences, batches,
worker loads, handler metrics, host readings) and shows it two ways, as TorchServe does:

- ``metrics_mode=log`` (TorchServe's default): ``/metrics`` answers an empty body; every update is
  a line in ``ts_metrics.log`` (frontend and host) or ``model_metrics.log`` (handlers), e.g.
  ``ts_inference_requests_total.Count:1.0|#model_name:noop,model_version:default|#hostname:vm,timestamp:1795333097``;
- ``metrics_mode=prometheus``: ``/metrics`` shows TorchServe's families
  (:mod:`emberserve.metrics.families`) and, unless ``metrics_clean_family=false``, Ember's clean
  family: histograms in seconds and gauges labelled by model and version, named and typed the
  way Prometheus recommends (``ember_request_duration_seconds``, ``ember_queue_wait_seconds``,
  ``ember_handler_duration_seconds``, ``ember_batch_size``, ``ember_workers``,
  ``ember_queue_depth``, ``ember_requests_total``), which ``promtool check metrics`` accepts.

``metrics_config`` (TorchServe's ``metrics.yaml`` schema) selects the frontend metrics and
declares handler metrics; handler metrics it does not declare reach ``/metrics`` only with
``model_metrics_auto_detect=true`` (TorchServe's rule) but are always logged.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import psutil
import yaml
from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import generate_latest

from emberserve.errors import ConfigError
from emberserve.logs import RequestLog
from emberserve.metrics.families import Family, frontend_families, model_families
from emberserve.workers.protocol import MetricRecord

__all__ = ["MetricsRecorder", "StateSource"]

ts_metrics_log = RequestLog("emberserve.ts_metrics")
model_metrics_log = RequestLog("emberserve.model_metrics")
log = logging.getLogger("emberserve.metrics")

# "_created" series double every counter and histogram for little use; Ember owns this process.
disable_created_metrics()  # type: ignore[no-untyped-call]

#: (model, version, {worker status: count}, queue depth) for every registered version.
StateSource = Callable[[], Iterable[tuple[str, str, dict[str, int], int]]]

_SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_WORKER_STATES = ("STARTING", "READY", "BUSY", "STOPPING")


class MetricsRecorder:
    """See the module docstring. ``metrics_config`` is a TorchServe ``metrics.yaml`` path."""

    def __init__(
        self,
        *,
        mode: str = "log",
        hostname: str | None = None,
        metrics_config: Path | None = None,
        auto_detect: bool = False,
        clean_family: bool = True,
        system_interval_s: float = 60.0,
        system_metrics: bool = True,
        disk_path: Path = Path("/"),
    ) -> None:
        self.mode = mode
        self.hostname = hostname or socket.gethostname()
        self._auto_detect = auto_detect
        self._system_interval_s = max(1.0, system_interval_s)
        self._system_metrics = system_metrics
        self._disk_path = disk_path
        self._state: StateSource = lambda: ()
        frontend = frontend_families()
        handlers = model_families()
        if metrics_config is not None:
            frontend, handlers = _load_metrics_config(metrics_config)
        self._families: dict[str, Family] = {
            name: Family(name, k, u, labels) for name, k, u, labels in frontend
        }
        self._declared_model: dict[str, Family] = {
            name: Family(name, k, u, labels) for name, k, u, labels in handlers
        }
        self._clean: _CleanFamily | None = (
            _CleanFamily(self) if clean_family and mode == "prometheus" else None
        )

    def set_state_source(self, source: StateSource) -> None:
        """Where scrape-time gauges (workers by state, queue depth) come from."""
        self._state = source

    # -- recording ---------------------------------------------------------------------------------

    def http_status(self, status: int) -> None:
        """An inference-port answer: Requests2XX/4XX/5XX."""
        if 200 <= status < 300:
            name = "Requests2XX"
        elif 400 <= status < 500:
            name = "Requests4XX"
        elif status >= 500:
            name = "Requests5XX"
        else:
            return
        self._frontend(name, ("Host", self.hostname), 1.0, {"Level": "Host"})

    def inference_done(
        self,
        model: str,
        version_label: str,
        model_version: str,
        latency_s: float,
        queue_s: float,
        status: int,
    ) -> None:
        """One inference that reached a worker (``version_label`` is "default" without a URL version)."""
        labels = (model, version_label, self.hostname)
        dims = {"model_name": model, "model_version": version_label}
        self._frontend("ts_inference_requests_total", labels, 1.0, dims)
        self._frontend("ts_inference_latency_microseconds", labels, latency_s * 1e6, dims)
        self._frontend("ts_queue_latency_microseconds", labels, queue_s * 1e6, dims)
        self._frontend("QueueTime", ("Host", self.hostname), round(queue_s * 1000), {"Level": "Host"})
        if self._clean is not None:
            self._clean.inference(model, model_version, latency_s, queue_s, status)

    def batch_done(self, model: str, version: str, size: int, worker_s: float) -> None:
        """One batch a worker ran: WorkerThreadTime, batch size and handler time."""
        self._frontend("WorkerThreadTime", ("Host", self.hostname), round(worker_s * 1000), {"Level": "Host"})
        if self._clean is not None:
            self._clean.batch(model, version, size, worker_s)

    def worker_loaded(self, worker_name: str, load_ms: float) -> None:
        labels = (worker_name, "Host", self.hostname)
        self._frontend("WorkerLoadTime", labels, round(load_ms), {"WorkerName": worker_name, "Level": "Host"})

    def handler_metrics(self, records: Sequence[MetricRecord]) -> None:
        """Metrics a worker's handler reported (``context.metrics``, PredictionTime, HandlerTime)."""
        for record in records:
            if self.mode == "log":
                self._log_model_metric(record)
                continue
            family = self._declared_model.get(record.name)
            if family is None:
                if not self._auto_detect:
                    continue
                kind = (
                    record.metric_type if record.metric_type in ("counter", "gauge", "histogram") else "gauge"
                )
                family = Family(record.name, kind, record.unit, (*record.dimension_names, "Hostname"))
                self._declared_model[record.name] = family
            values = dict(zip(record.dimension_names, record.dimension_values, strict=False))
            labels = tuple(
                values.get(n, self.hostname if n == "Hostname" else "") for n in family.label_names
            )
            family.add(labels, record.value)

    def _frontend(self, name: str, labels: tuple[str, ...], value: float, dims: dict[str, str]) -> None:
        family = self._families.get(name)
        if family is None:  # not selected by metrics_config
            return
        if self.mode == "log":
            if ts_metrics_log.enabled():
                ts_metrics_log.write(_log_line(name, family.unit, value, dims, self.hostname, None))
            return
        family.add(labels, value)

    def _log_model_metric(self, record: MetricRecord) -> None:
        if model_metrics_log.enabled():
            dims = dict(zip(record.dimension_names, record.dimension_values, strict=False))
            # TorchServe's frontend logs a declared metric with the unit its metrics.yaml gives
            # ("PredictionTime.ms"), an undeclared one with the worker's ("Milliseconds").
            declared = self._declared_model.get(record.name)
            unit = record.unit if declared is None else declared.unit
            line = _log_line(record.name, unit, record.value, dims, self.hostname, record.request_id)
            model_metrics_log.write(line, record.request_id)

    # -- host metrics ------------------------------------------------------------------------------

    def record_system_metrics(self) -> None:
        """One reading of CPU, memory and disk (TorchServe's host metrics)."""
        memory = psutil.virtual_memory()
        try:
            disk = shutil.disk_usage(self._disk_path)
        except OSError:
            disk = None
        host = ("Host", self.hostname)
        dims = {"Level": "Host"}
        readings: list[tuple[str, float]] = [
            ("CPUUtilization", psutil.cpu_percent(interval=None)),
            ("MemoryUsed", round(memory.used / 2**20, 1)),
            ("MemoryAvailable", round(memory.available / 2**20, 1)),
            ("MemoryUtilization", memory.percent),
        ]
        if disk is not None:
            readings += [
                ("DiskUsage", round(disk.used / 2**30, 1)),
                ("DiskUtilization", round(100 * disk.used / disk.total, 1) if disk.total else 0.0),
                ("DiskAvailable", round(disk.free / 2**30, 1)),
            ]
        for name, value in readings:
            self._frontend(name, host, value, dims)
        for device, gpu_readings in _gpu_readings():
            for name, value in gpu_readings:
                self._frontend(
                    name, ("Host", device, self.hostname), value, {"Level": "Host", "DeviceId": device}
                )

    async def run_system_metrics(self) -> None:
        """Read host metrics every ``metric_time_interval`` seconds until cancelled."""
        if not self._system_metrics:
            return
        psutil.cpu_percent(interval=None)  # the first reading primes the CPU counter
        while True:
            await asyncio.sleep(self._system_interval_s)
            try:
                await asyncio.to_thread(self.record_system_metrics)
            except Exception:  # a failed reading must not end the loop
                log.exception("Reading host metrics failed")

    # -- exposition ---------------------------------------------------------------------------------

    def render(self, names: Sequence[str] = ()) -> bytes:
        """The Prometheus text (empty in log mode); ``names`` keeps only those families."""
        if self.mode != "prometheus":
            return b""
        wanted = set(names)
        families = [*self._families.values(), *self._declared_model.values()]
        parts = [f.render() for f in families if not wanted or f.name in wanted]
        if self._clean is not None:
            parts.append(self._clean.render(wanted))
        return b"".join(parts)


def _gpu_readings() -> list[tuple[str, list[tuple[str, float]]]]:
    """Per NVIDIA GPU, TorchServe's GPU metrics, read with nvidia-ml-py when it is installed."""
    try:
        import pynvml  # noqa: PLC0415 - optional (nvidia-ml-py), and only on GPU machines
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return []  # no driver, no GPU
    out: list[tuple[str, list[tuple[str, float]]]] = []
    try:
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            usage = pynvml.nvmlDeviceGetUtilizationRates(handle)
            out.append(
                (
                    str(index),
                    [
                        (
                            "GPUMemoryUtilization",
                            round(100 * memory.used / memory.total, 1) if memory.total else 0.0,
                        ),
                        ("GPUMemoryUsed", round(memory.used / 2**20, 1)),
                        ("GPUUtilization", float(usage.gpu)),
                    ],
                )
            )
    finally:
        pynvml.nvmlShutdown()
    return out


def _log_line(
    name: str, unit: str, value: float, dims: dict[str, str], hostname: str, request_id: str | None
) -> str:
    dimensions = ",".join(f"{k}:{v}" for k, v in dims.items())
    context = f"hostname:{hostname},"
    if request_id:
        context += f"requestID:{request_id},"
    return f"{name}.{unit}:{float(value)}|#{dimensions}|#{context}timestamp:{int(time.time())}"


class _CleanFamily:
    """Ember's Prometheus-style family (see the module docstring), with prometheus-client."""

    def __init__(self, recorder: MetricsRecorder) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ("model", "version")
        self.requests = Counter(
            "ember_requests", "Inference requests answered, by status code.", (*labels, "code"),
            registry=self.registry,
        )  # fmt: skip
        self.request = Histogram(
            "ember_request_duration_seconds", "Time from a request's arrival to its answer.", labels,
            buckets=_SECONDS_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.queue = Histogram(
            "ember_queue_wait_seconds", "Time a request waited for a worker.", labels,
            buckets=_SECONDS_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.handler = Histogram(
            "ember_handler_duration_seconds", "Time a worker spent on one batch.", labels,
            buckets=_SECONDS_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.batch_size = Histogram(
            "ember_batch_size", "Requests per batch sent to a worker.", labels,
            buckets=_BATCH_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.registry.register(_StateCollector(recorder))

    def inference(self, model: str, version: str, latency_s: float, queue_s: float, status: int) -> None:
        self.requests.labels(model, version, str(status)).inc()
        self.request.labels(model, version).observe(latency_s)
        self.queue.labels(model, version).observe(queue_s)

    def batch(self, model: str, version: str, size: int, worker_s: float) -> None:
        self.batch_size.labels(model, version).observe(size)
        self.handler.labels(model, version).observe(worker_s)

    def render(self, wanted: set[str]) -> bytes:
        text = generate_latest(self.registry)
        if not wanted:
            return text
        keep: list[bytes] = []
        for block in text.split(b"# HELP ")[1:]:
            name = block.split(b" ", 1)[0].decode()
            if name in wanted or name.removesuffix("_total") in wanted:
                keep.append(b"# HELP " + block)
        return b"".join(keep)


class _StateCollector:
    """Scrape-time gauges: workers by state and queue depth, per model version."""

    def __init__(self, recorder: MetricsRecorder) -> None:
        self._recorder = recorder

    def collect(self) -> Iterable[Any]:
        workers = GaugeMetricFamily(
            "ember_workers", "Worker processes by state.", labels=("model", "version", "state")
        )
        depth = GaugeMetricFamily(
            "ember_queue_depth", "Requests waiting for a worker.", labels=("model", "version")
        )
        for model, version, states, pending in self._recorder._state():
            for state in _WORKER_STATES:
                workers.add_metric((model, version, state), float(states.get(state, 0)))
            depth.add_metric((model, version), float(pending))
        yield workers
        yield depth


def _load_metrics_config(
    path: Path,
) -> tuple[list[tuple[str, str, str, tuple[str, ...]]], list[tuple[str, str, str, tuple[str, ...]]]]:
    """TorchServe's ``metrics.yaml``: ``ts_metrics`` and ``model_metrics``, each with ``counter``,
    ``gauge`` and ``histogram`` lists of ``{name, unit, dimensions}``."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"metrics_config {path}: cannot read it ({exc})") from None
    if not isinstance(document, dict):
        raise ConfigError(f"metrics_config {path}: expected TorchServe's metrics.yaml layout")

    def section(key: str, frontend: bool) -> list[tuple[str, str, str, tuple[str, ...]]]:
        known = {name: (kind, unit, labels) for name, kind, unit, labels in frontend_families()}
        out: list[tuple[str, str, str, tuple[str, ...]]] = []
        for kind, entries in (document.get(key) or {}).items():
            if kind not in ("counter", "gauge", "histogram") or not isinstance(entries, list):
                raise ConfigError(f"metrics_config {path}: {key}.{kind} is not a list of metrics")
            for entry in entries:
                if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                    raise ConfigError(f"metrics_config {path}: every {key} entry needs a name")
                name = entry["name"]
                dims = tuple(str(d) for d in entry.get("dimensions") or ())
                unit = str(entry.get("unit") or "")
                if frontend and name in known:
                    # TorchServe's own frontend metrics keep their label layout.
                    known_kind, known_unit, labels = known[name]
                    out.append((name, known_kind, unit or known_unit, labels))
                elif frontend:
                    log.warning("metrics_config %s: %s is not a frontend metric Ember records", path, name)
                else:
                    out.append((name, kind, unit, (*dims, "Hostname")))
        return out

    return section("ts_metrics", True), section("model_metrics", False)
