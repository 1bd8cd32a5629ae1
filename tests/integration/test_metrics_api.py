"""The metrics API and metric logs on a real server under traffic: names, types, labels and counts."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import archive, write_handler
from tests.ember_server import EmberServer

# Reports a custom counter and fails on request.
METRIC_HANDLER = """
from ts.metrics.dimension import Dimension

def handle(data, context):
    if data is None:
        return None
    out = []
    for i, row in enumerate(data):
        body = bytes(row.get("body") or b"")
        if body == b"fail":
            raise RuntimeError("asked to fail")
        context.metrics.add_counter("Widgets", 2, idx=i, dimensions=[Dimension("Color", "red")])
        out.append(body)
    return out
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("metrics-store")
    src = tmp_path_factory.mktemp("metrics-src")
    archive(folder, "widgets", write_handler(src, "widgets_handler.py", METRIC_HANDLER))
    return folder


def start(run: Path, store: Path, **config: str) -> EmberServer:
    settings = {"enable_metrics_api": "true", **config}
    return EmberServer(run, store, models=["widgets.mar"], extra_config=settings)


@pytest.fixture(scope="module")
def prom(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmberServer]:
    config = {"metrics_mode": "prometheus", "model_metrics_auto_detect": "true", "metric_time_interval": "1"}
    with start(tmp_path_factory.mktemp("prom"), store, **config) as server:
        yield server


def scrape(server: EmberServer, *names: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """{family or sample name: {sorted labels: value}} from /metrics (parsed, so it must parse)."""
    query = "&".join(f"name[]={n}" for n in names)
    reply = httpx.get(f"{server.metrics_url}/metrics?{query}")
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(reply.text):
        out.setdefault(family.name, {})
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def value(metrics: dict[str, dict[tuple[tuple[str, str], ...], float]], name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` with these labels (the parser names counter samples ``*_total``)."""
    samples = metrics.get(name) or metrics.get(f"{name}_total") or {}
    return sum(v for key, v in samples.items() if all((k, labels[k]) in key for k in labels))


def predict(server: EmberServer, path: str, body: bytes) -> httpx.Response:
    return httpx.post(server.inference_url + path, content=body, timeout=30)


def test_torchserves_families_count_what_was_sent(prom: EmberServer) -> None:
    before = scrape(prom)
    for _ in range(3):
        assert predict(prom, "/predictions/widgets", b"ok").status_code == 200
    assert predict(prom, "/predictions/widgets/1.0", b"ok").status_code == 200
    assert predict(prom, "/predictions/widgets", b"fail").status_code == 503
    assert predict(prom, "/predictions/missing", b"ok").status_code == 404
    after = scrape(prom)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    requests = "ts_inference_requests_total"
    assert delta(requests, model_name="widgets", model_version="default") == 4  # 3 ok + the 503
    assert delta(requests, model_name="widgets", model_version="1.0") == 1
    assert delta("Requests2XX", Level="Host") == 4
    assert delta("Requests4XX", Level="Host") == 1
    assert delta("Requests5XX", Level="Host") == 1
    assert delta("ts_inference_latency_microseconds", model_name="widgets") > 0
    assert "ts_queue_latency_microseconds" in after
    assert value(after, "PredictionTime", ModelName="widgets", Level="Model") > 0
    assert value(after, "WorkerLoadTime", WorkerName="W-9000-widgets_1.0", Level="Host") >= 0
    assert "W-9000-widgets_1.0" in str(after["WorkerLoadTime"])
    # The handler's own counter (model_metrics_auto_detect=true): 2 per successful request.
    assert delta("Widgets", Color="red") == 8
    # Ember's family counts the same answers.
    assert delta("ember_requests_total", model="widgets", version="1.0", code="200") == 4
    assert delta("ember_requests_total", model="widgets", version="1.0", code="503") == 1
    assert delta("ember_request_duration_seconds_count", model="widgets", version="1.0") == 5
    assert value(after, "ember_workers", model="widgets", version="1.0", state="READY") == 1


def test_the_exposition_looks_like_torchserves(prom: EmberServer) -> None:
    text = httpx.get(prom.metrics_url + "/metrics").text
    assert "# HELP Requests2XX Torchserve prometheus counter metric with unit: Count\n" in text
    assert "# TYPE ts_inference_requests_total counter\n" in text
    assert re.search(r'^Requests2XX\{Level="Host",Hostname="[^"]+",\} \d+\.0$', text, re.MULTILINE)
    assert re.search(
        r'^ts_inference_requests_total\{model_name="widgets",model_version="default",hostname="[^"]+",\} ',
        text,
        re.MULTILINE,
    )
    assert "# HELP GPUUtilization" in text  # listed even without samples, as TorchServe does


def test_name_filters_keep_only_those_families(prom: EmberServer) -> None:
    families = scrape(prom, "Requests2XX", "ember_queue_depth")
    assert {name.removesuffix("_total") for name in families} == {"Requests2XX", "ember_queue_depth"}
    reply = httpx.get(prom.metrics_url + "/metrics?name[]=no_such_metric")
    assert reply.status_code == 200 and reply.content == b""


def test_host_metrics_are_read_every_interval(prom: EmberServer) -> None:
    deadline = time.monotonic() + 10
    while not value(scrape(prom, "MemoryUsed"), "MemoryUsed"):
        assert time.monotonic() < deadline, "no host metrics after 10 s with metric_time_interval=1"
        time.sleep(0.2)
    host = scrape(prom, "CPUUtilization", "MemoryUtilization", "DiskAvailable")
    assert 0 <= value(host, "MemoryUtilization") <= 100
    assert value(host, "DiskAvailable") > 0


def test_the_clean_family_passes_promtool(prom: EmberServer, tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package 'prometheus'; make test installs it as root)")
    names = [
        "ember_requests",
        "ember_request_duration_seconds",
        "ember_queue_wait_seconds",
        "ember_handler_duration_seconds",
        "ember_batch_size",
        "ember_workers",
        "ember_queue_depth",
    ]
    text = httpx.get(prom.metrics_url + "/metrics?" + "&".join(f"name[]={n}" for n in names)).content
    assert text.count(b"# TYPE ") == len(names)
    checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, timeout=30)
    assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode()


def test_log_mode_writes_torchserves_metric_lines(store: Path, tmp_path: Path) -> None:
    with start(tmp_path / "run", store) as server:
        reply = predict(server, "/predictions/widgets", b"ok")
        assert reply.status_code == 200
        assert httpx.get(server.metrics_url + "/metrics").content == b""
        request_id = reply.headers["x-request-id"]
    logs = tmp_path / "run" / "logs"
    ts_lines = (logs / "ts_metrics.log").read_text()
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d,\d{3}"
    assert re.search(
        stamp + r" - ts_inference_requests_total\.Count:1\.0\|#model_name:widgets,model_version:default"
        r"\|#hostname:[^,]+,timestamp:\d+$",
        ts_lines,
        re.MULTILINE,
    ), ts_lines
    assert re.search(stamp + r" - Requests2XX\.Count:1\.0\|#Level:Host\|#hostname:", ts_lines)
    model_lines = (logs / "model_metrics.log").read_text()
    assert re.search(
        stamp
        + r" - Widgets\.Count:2\.0\|#Color:red,ModelName:widgets,Level:Model\|#hostname:[^,]+,requestID:"
        + request_id
        + r",timestamp:\d+",
        model_lines,
    ), model_lines
    assert f"requestID:{request_id}" in model_lines
    # Declared in the default metrics.yaml with unit "ms", which TorchServe's log line keeps.
    assert re.search(stamp + r" - PredictionTime\.ms:[0-9.]+\|#ModelName:widgets,Level:Model\|", model_lines)


def test_metrics_config_selects_and_declares_metrics(store: Path, tmp_path: Path) -> None:
    config = tmp_path / "metrics.yaml"
    config.write_text(
        "dimensions:\n  - &color Color\n"
        "ts_metrics:\n  counter:\n    - name: Requests2XX\n      unit: Count\n      dimensions: [Level]\n"
        "model_metrics:\n  counter:\n    - name: Widgets\n      unit: Count\n      dimensions: [*color]\n"
    )
    settings = {"metrics_mode": "prometheus", "metrics_config": str(config), "metrics_clean_family": "false"}
    with start(tmp_path / "run", store, **settings) as server:
        assert predict(server, "/predictions/widgets", b"ok").status_code == 200
        families = scrape(server)
    assert set(families) >= {"Requests2XX", "Widgets"}
    assert "ts_inference_requests" not in families and "ts_inference_requests_total" not in families
    assert not any(name.startswith("ember_") for name in families)
    assert value(families, "Widgets", Color="red") == 2


ROOT = Path(__file__).resolve().parents[2]


def test_the_grafana_dashboard_is_current_and_queries_only_metrics_ember_serves(prom: EmberServer) -> None:
    fresh = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_dashboard.py"), "--check"],
        capture_output=True,
        timeout=60,
    )
    assert fresh.returncode == 0, fresh.stderr.decode()
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "ember-dashboard.json").read_text())
    expressions = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    expressions.append(dashboard["templating"]["list"][1]["query"])
    queried = {
        re.sub(r"_(bucket|sum|count|total)$", "", name)
        for expr in expressions
        for name in re.findall(r"\bember_[a-z_]+", expr)
    }
    assert queried >= {
        "ember_requests",
        "ember_request_duration_seconds",
        "ember_workers",
        "ember_queue_depth",
    }
    served = {name.removesuffix("_total") for name in scrape(prom)}
    assert queried <= served, queried - served
