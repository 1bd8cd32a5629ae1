"""TorchServe's metric families, recorded and rendered the way TorchServe 0.12 shows them.

Rendered by hand, not with prometheus-client: TorchServe's exposition (Java simpleclient) has
quirks its dashboards and parsers have seen for years — ``# HELP <name> Torchserve prometheus
<type> metric with unit: <Unit>``, a trailing comma inside the braces, ``12.0`` for integral
values, families listed even without samples — which prometheus-client does not produce.

    >>> family = Family("Requests2XX", "counter", "Count", ("Level", "Hostname"))
    >>> family.add(("Host", "vm"), 1)
    >>> print(family.render().decode(), end="")
    # HELP Requests2XX Torchserve prometheus counter metric with unit: Count
    # TYPE Requests2XX counter
    Requests2XX{Level="Host",Hostname="vm",} 1.0
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["HISTOGRAM_BUCKETS", "Family", "frontend_families", "model_families"]

#: simpleclient's default buckets, which TorchServe's histograms use.
HISTOGRAM_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)


@dataclass
class Family:
    """One metric family: its samples by label values, in first-seen order."""

    name: str
    kind: str  # "counter" | "gauge" | "histogram"
    unit: str
    label_names: tuple[str, ...]
    samples: dict[tuple[str, ...], float] = field(default_factory=dict)
    #: histogram only: per label values, the bucket counts, count and sum.
    buckets: dict[tuple[str, ...], list[float]] = field(default_factory=dict)

    def add(self, labels: tuple[str, ...], value: float) -> None:
        """Counter: add; gauge: set; histogram: observe."""
        if self.kind == "counter":
            self.samples[labels] = self.samples.get(labels, 0.0) + value
        elif self.kind == "gauge":
            self.samples[labels] = value
        else:
            state = self.buckets.setdefault(labels, [0.0] * (len(HISTOGRAM_BUCKETS) + 2))
            for i, bound in enumerate(HISTOGRAM_BUCKETS):
                if value <= bound:
                    state[i] += 1
            state[-2] += 1  # count (= the +Inf bucket)
            state[-1] += value  # sum

    def render(self) -> bytes:
        lines = [
            f"# HELP {self.name} Torchserve prometheus {self.kind} metric with unit: {self.unit}",
            f"# TYPE {self.name} {self.kind}",
        ]
        if self.kind != "histogram":
            lines += [f"{self.name}{self._braces(labels)} {_number(v)}" for labels, v in self.samples.items()]
        else:
            for labels, state in self.buckets.items():
                for i, bound in enumerate(HISTOGRAM_BUCKETS):
                    le = self._braces(labels, ("le", _number(bound)))
                    lines.append(f"{self.name}_bucket{le} {_number(state[i])}")
                lines.append(f"{self.name}_bucket{self._braces(labels, ('le', '+Inf'))} {_number(state[-2])}")
                lines.append(f"{self.name}_count{self._braces(labels)} {_number(state[-2])}")
                lines.append(f"{self.name}_sum{self._braces(labels)} {_number(state[-1])}")
        return ("\n".join(lines) + "\n").encode()

    def _braces(self, labels: tuple[str, ...], extra: tuple[str, str] | None = None) -> str:
        pairs = list(zip(self.label_names, labels, strict=False))
        if extra is not None:
            pairs.append(extra)
        return "{" + "".join(f'{k}="{_escape(v)}",' for k, v in pairs) + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    """Java's Double.toString for the values metrics take: ``3.0``, ``0.01``, ``18773.736999999997``."""
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    if value == int(value) and abs(value) < 1e16:
        return f"{int(value)}.0"
    return repr(float(value))


_HOST = ("Level", "Hostname")
_REQUEST = ("model_name", "model_version", "hostname")


def frontend_families() -> list[tuple[str, str, str, tuple[str, ...]]]:
    """TorchServe's ``ts_metrics`` of ``metrics.yaml``: (name, type, unit, label names)."""
    return [
        ("Requests2XX", "counter", "Count", _HOST),
        ("Requests4XX", "counter", "Count", _HOST),
        ("Requests5XX", "counter", "Count", _HOST),
        ("ts_inference_requests_total", "counter", "Count", _REQUEST),
        ("ts_inference_latency_microseconds", "counter", "Microseconds", _REQUEST),
        ("ts_queue_latency_microseconds", "counter", "Microseconds", _REQUEST),
        ("QueueTime", "gauge", "Milliseconds", _HOST),
        ("WorkerThreadTime", "gauge", "Milliseconds", _HOST),
        ("WorkerLoadTime", "gauge", "Milliseconds", ("WorkerName", *_HOST)),
        ("CPUUtilization", "gauge", "Percent", _HOST),
        ("MemoryUsed", "gauge", "Megabytes", _HOST),
        ("MemoryAvailable", "gauge", "Megabytes", _HOST),
        ("MemoryUtilization", "gauge", "Percent", _HOST),
        ("DiskUsage", "gauge", "Gigabytes", _HOST),
        ("DiskUtilization", "gauge", "Percent", _HOST),
        ("DiskAvailable", "gauge", "Gigabytes", _HOST),
        ("GPUMemoryUtilization", "gauge", "Percent", ("Level", "DeviceId", "Hostname")),
        ("GPUMemoryUsed", "gauge", "Megabytes", ("Level", "DeviceId", "Hostname")),
        ("GPUUtilization", "gauge", "Percent", ("Level", "DeviceId", "Hostname")),
    ]


def model_families() -> list[tuple[str, str, str, tuple[str, ...]]]:
    """TorchServe's default ``model_metrics``: what handlers report out of the box."""
    return [
        ("HandlerTime", "gauge", "ms", ("ModelName", "Level", "Hostname")),
        ("PredictionTime", "gauge", "ms", ("ModelName", "Level", "Hostname")),
    ]
