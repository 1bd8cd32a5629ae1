"""MetricsRecorder logic without a server: GPU readings through nvidia-ml-py, rendering, filters."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from emberserve.metrics import MetricsRecorder


def fake_pynvml(count: int) -> types.ModuleType:
    module = types.ModuleType("pynvml")

    class NVMLError(Exception):
        pass

    module.NVMLError = NVMLError  # type: ignore[attr-defined]
    module.nvmlInit = lambda: None  # type: ignore[attr-defined]
    module.nvmlShutdown = lambda: None  # type: ignore[attr-defined]
    module.nvmlDeviceGetCount = lambda: count  # type: ignore[attr-defined]
    module.nvmlDeviceGetHandleByIndex = lambda i: i  # type: ignore[attr-defined]
    module.nvmlDeviceGetMemoryInfo = lambda _h: types.SimpleNamespace(used=2 * 2**30, total=8 * 2**30)  # type: ignore[attr-defined]
    module.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=40 + h)  # type: ignore[attr-defined]
    return module


def test_gpu_metrics_come_from_nvidia_ml_py_per_device(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(2))
    recorder = MetricsRecorder(mode="prometheus", hostname="vm", clean_family=False, disk_path=tmp_path)
    recorder.record_system_metrics()
    text = recorder.render(["GPUUtilization", "GPUMemoryUsed", "GPUMemoryUtilization"]).decode()
    assert 'GPUUtilization{Level="Host",DeviceId="0",Hostname="vm",} 40.0' in text
    assert 'GPUUtilization{Level="Host",DeviceId="1",Hostname="vm",} 41.0' in text
    assert 'GPUMemoryUsed{Level="Host",DeviceId="1",Hostname="vm",} 2048.0' in text
    assert 'GPUMemoryUtilization{Level="Host",DeviceId="0",Hostname="vm",} 25.0' in text


def test_without_a_gpu_the_families_have_no_samples(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # not installed
    recorder = MetricsRecorder(mode="prometheus", hostname="vm", clean_family=False, disk_path=tmp_path)
    recorder.record_system_metrics()
    text = recorder.render(["GPUUtilization", "MemoryUsed"]).decode()
    assert "GPUUtilization{" not in text and "# TYPE GPUUtilization gauge" in text
    assert 'MemoryUsed{Level="Host",Hostname="vm",}' in text


def test_log_mode_renders_nothing() -> None:
    recorder = MetricsRecorder(mode="log", hostname="vm")
    recorder.http_status(200)
    assert recorder.render() == b""
