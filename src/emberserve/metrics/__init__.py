"""Metrics: TorchServe's families and log lines, and Ember's Prometheus-style family.

recorder = MetricsRecorder(mode="prometheus")
recorder.http_status(200)
recorder.render()   # the /metrics body
"""

from emberserve.metrics.recorder import MetricsRecorder, StateSource

__all__ = ["MetricsRecorder", "StateSource"]
