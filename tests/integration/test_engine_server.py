"""The engine end to end: a real Ember server, real workers, HTTP over loopback.

Batching, queue limits, timeouts, dead workers and streaming are observed from the outside, the
way TorchServe's behaviour was recorded (reference §3–§6). Handlers that must be *busy* for a
test block at a "gate": they connect to a loopback socket the test listens on, report their pid
and wait until the test says "go" (or closes the gate), so no test sleeps to create a race.

Two servers per module: one in the default ``adaptive`` batching mode serving every model, one
in ``strict`` mode for the lone-request delay. Models are registered through the management API.
"""

from __future__ import annotations

import concurrent.futures
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.conftest import REFERENCE_MODELS, archive, write_handler
from tests.ember_server import EmberServer

TIMEOUT = httpx.Timeout(60.0)
GATE_TIMEOUT_S = 30.0

GATE_HANDLER = """
import os
import socket


def _wait_at_gate(port):
    with socket.create_connection(("127.0.0.1", port)) as gate:
        gate.sendall(f"{os.getpid()}\\n".encode())
        gate.recv(16)  # "go", or nothing when the test closes the gate


def handle(data, context):
    if data is None:
        return None
    for row in data:
        body = row.get("body")
        if isinstance(body, (bytes, bytearray)):
            body = body.decode()
        if isinstance(body, str) and body.startswith("gate:"):
            _wait_at_gate(int(body[5:]))
    return [{"batch": len(data), "pid": os.getpid()} for _ in data]
"""

EXIT_IN_LOAD_HANDLER = """
import os


def handle(data, context):
    if data is None:
        os._exit(3)  # the worker vanishes while loading
    return data
"""

# Per-model settings TorchServe reads from model-config.yaml (jobQueueSize has no register param).
BATCHED_CONFIG = "batchSize: 4\nmaxBatchDelay: 5000\njobQueueSize: 4\n"
STRICT_CONFIG = "batchSize: 4\nmaxBatchDelay: 400\n"
STRICT_DELAY_S = 0.4


class Gate:
    """A loopback listener the gate handler connects to; see the module docstring."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(GATE_TIMEOUT_S)
        self.port: int = self.listener.getsockname()[1]
        self.connections: list[socket.socket] = []

    @property
    def body(self) -> str:
        return f"gate:{self.port}"

    def wait_entered(self) -> int:
        """Block until a handler reaches the gate; its worker's pid."""
        conn, _ = self.listener.accept()
        conn.settimeout(GATE_TIMEOUT_S)
        self.connections.append(conn)
        line = b""
        while not line.endswith(b"\n"):
            chunk = conn.recv(64)
            assert chunk, "the handler closed the gate connection without its pid"
            line += chunk
        return int(line)

    def release(self) -> None:
        for conn in self.connections:
            conn.sendall(b"go")

    def close(self) -> None:
        for conn in self.connections:
            conn.close()
        self.listener.close()


@pytest.fixture
def gate() -> Iterator[Gate]:
    opened = Gate()
    try:
        yield opened
    finally:
        opened.close()


# -- servers -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("engine-store")
    src = tmp_path_factory.mktemp("engine-src")
    gate_handler = write_handler(src, "gate_handler.py", GATE_HANDLER)
    batched_yaml = src / "batched.yaml"
    batched_yaml.write_text(BATCHED_CONFIG)
    strict_yaml = src / "strict.yaml"
    strict_yaml.write_text(STRICT_CONFIG)
    archive(store, "batched", gate_handler, "--config-file", str(batched_yaml))
    archive(store, "lone", gate_handler, "--config-file", str(strict_yaml))
    for name in ("slow", "victim", "echo"):
        archive(store, name, gate_handler)
    archive(store, "stream", REFERENCE_MODELS / "stream" / "stream_handler.py")
    archive(store, "exits", write_handler(src, "exit_handler.py", EXIT_IN_LOAD_HANDLER))
    weights = tmp_path_factory.mktemp("mlp-weights")
    subprocess.run(
        [sys.executable, str(REFERENCE_MODELS / "mlp" / "make_weights.py"), str(weights)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    mlp = REFERENCE_MODELS / "mlp"
    archive(
        store,
        "mlp",
        mlp / "mlp_handler.py",
        "--model-file",
        str(mlp / "model.py"),
        "--serialized-file",
        str(weights / "mlp_state.pt"),
        "--extra-files",
        str(mlp / "index_to_name.json"),
    )
    return store


def register(server: EmberServer, archive_name: str, **params: str | int) -> httpx.Response:
    query = {"url": f"{archive_name}.mar", "initial_workers": 1, "synchronous": "true", **params}
    return httpx.post(f"{server.management_url}/models", params=query, timeout=TIMEOUT)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, store: Path) -> Iterator[EmberServer]:
    """Adaptive batching; quick restarts (50 ms back-off unit) so dead workers come back fast."""
    config = {"restart_backoff_base_ms": "50", "enable_model_api": "true"}
    with EmberServer(tmp_path_factory.mktemp("engine-run"), store, extra_config=config) as running:
        for name, params in {
            "batched": {},
            "slow": {"response_timeout": 1},
            "victim": {},
            "echo": {},
            "stream": {},
            "lone": {},
        }.items():
            answer = register(running, name, **params)
            assert answer.status_code == 200, answer.text
        yield running


@pytest.fixture(scope="module")
def strict_server(tmp_path_factory: pytest.TempPathFactory, store: Path) -> Iterator[EmberServer]:
    config = {"batching_mode": "strict", "enable_model_api": "true"}
    with EmberServer(tmp_path_factory.mktemp("strict-run"), store, extra_config=config) as running:
        answer = register(running, "lone")
        assert answer.status_code == 200, answer.text
        yield running


def predict(server: EmberServer, model: str, body: str | bytes = "hi") -> httpx.Response:
    return httpx.post(
        f"{server.inference_url}/predictions/{model}",
        content=body,
        headers={"content-type": "text/plain"},
        timeout=TIMEOUT,
    )


def describe(server: EmberServer, model: str) -> dict[str, Any]:
    answer = httpx.get(f"{server.management_url}/models/{model}", timeout=TIMEOUT)
    assert answer.status_code == 200, answer.text
    [description] = answer.json()
    assert isinstance(description, dict)
    return description


def worker_pids(server: EmberServer, model: str) -> list[int]:
    return [int(worker["pid"]) for worker in describe(server, model)["workers"]]


def wait_until(condition: Any, what: str, timeout_s: float = 20.0) -> None:
    """Poll server state that has no event to wait on (queue depth, a restarted worker)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


# -- an unmodified TorchServe handler with a real model ---------------------------------------------


@pytest.mark.torch
def test_unmodified_torchserve_handler_serves_a_torch_model(server: EmberServer, store: Path) -> None:
    answer = register(server, "mlp")
    assert answer.status_code == 200, answer.text
    try:
        result = httpx.post(
            f"{server.inference_url}/predictions/mlp",
            json=[0.5, -1.0, 2.0, 0.0],
            timeout=TIMEOUT,
        )
        assert result.status_code == 200, result.text
        probabilities = result.json()
        # The same model in this process gives the same answer (weights from make_weights.py).
        torch = pytest.importorskip("torch")
        spec = importlib.util.spec_from_file_location("reference_mlp", REFERENCE_MODELS / "mlp" / "model.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        torch.manual_seed(0)
        model = module.MLP().eval()
        with torch.no_grad():
            expected = torch.softmax(model(torch.tensor([[0.5, -1.0, 2.0, 0.0]])), dim=1)[0].tolist()
        labels = json.loads((REFERENCE_MODELS / "mlp" / "index_to_name.json").read_text())
        assert probabilities == {labels[str(i)]: pytest.approx(p, rel=1e-5) for i, p in enumerate(expected)}
    finally:
        httpx.delete(f"{server.management_url}/models/mlp", timeout=TIMEOUT)


# -- batching and the job queue -----------------------------------------------------------------------


QUEUE_FULL_TAIL = (
    "has no worker to serve inference request. Please use scale workers API to add workers. If this is "
    "a sequence inference, please check if it is closed, or expired; or exceeds maxSequenceJobQueueSize"
)


def fill_queue(
    server: EmberServer, gate: Gate, pool: concurrent.futures.Executor
) -> tuple[concurrent.futures.Future[httpx.Response], list[concurrent.futures.Future[httpx.Response]]]:
    """Hold the only "batched" worker at the gate and queue 4 more requests (its jobQueueSize)."""
    busy = pool.submit(predict, server, "batched", gate.body)
    gate.wait_entered()  # the only worker is now inside the handler
    queued = [pool.submit(predict, server, "batched", "x") for _ in range(4)]
    wait_until(
        lambda: describe(server, "batched")["jobQueueStatus"]["pendingRequests"] == 4,
        "4 queued requests",
    )
    return busy, queued


def test_queued_requests_become_one_batch_and_a_full_queue_answers_503(
    server: EmberServer, gate: Gate
) -> None:
    with concurrent.futures.ThreadPoolExecutor(max_workers=5) as pool:
        try:
            busy, queued = fill_queue(server, gate, pool)
            overflow = predict(server, "batched", "x")  # no room left in the queue
        finally:
            gate.release()  # never leave the worker (and this pool) blocked
        assert busy.result(GATE_TIMEOUT_S).json()["batch"] == 1
        answers = [future.result(GATE_TIMEOUT_S) for future in queued]
    assert overflow.status_code == 503
    assert overflow.json()["type"] == "ServiceUnavailableException"
    assert overflow.json()["message"].endswith(QUEUE_FULL_TAIL)
    assert [a.status_code for a in answers] == [200] * 4
    assert [a.json()["batch"] for a in answers] == [4] * 4  # all four in one batch


def test_a_full_queue_names_the_model_like_torchserve(server: EmberServer, gate: Gate) -> None:
    with concurrent.futures.ThreadPoolExecutor(max_workers=5) as pool:
        try:
            fill_queue(server, gate, pool)
            overflow = predict(server, "batched", "x")
        finally:
            gate.release()
    assert overflow.json()["message"] == f'Model "batched" {QUEUE_FULL_TAIL}'


def test_strict_mode_holds_a_lone_request_for_max_batch_delay(strict_server: EmberServer) -> None:
    start = time.monotonic()
    answer = predict(strict_server, "lone")
    elapsed = time.monotonic() - start
    assert answer.status_code == 200
    assert answer.json()["batch"] == 1
    assert elapsed >= STRICT_DELAY_S * 0.9  # waited for companions that never came


def test_adaptive_mode_sends_a_lone_request_alone(server: EmberServer) -> None:
    # Same model settings as in strict mode; the adaptive rules send it without company.
    answer = predict(server, "lone")
    assert answer.status_code == 200
    assert answer.json()["batch"] == 1


# -- failing workers ---------------------------------------------------------------------------------


def test_response_timeout_kills_the_worker_and_a_new_one_serves(server: EmberServer, gate: Gate) -> None:
    [old_pid] = worker_pids(server, "slow")
    answer = predict(server, "slow", gate.body)  # blocks at the gate; response_timeout=1
    assert answer.status_code == 500
    assert answer.json()["message"] == "Worker died."
    following = predict(server, "slow")
    assert following.status_code == 200
    assert following.json()["pid"] != old_pid
    assert worker_pids(server, "slow") == [following.json()["pid"]]
    assert not psutil.pid_exists(old_pid) or psutil.Process(old_pid).status() == psutil.STATUS_ZOMBIE


def test_a_worker_killed_mid_batch_fails_its_requests_and_is_replaced(
    server: EmberServer, gate: Gate
) -> None:
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        in_flight = pool.submit(predict, server, "victim", gate.body)
        pid = gate.wait_entered()
        assert worker_pids(server, "victim") == [pid]
        os.kill(pid, signal.SIGKILL)
        failed = in_flight.result(GATE_TIMEOUT_S)
    assert failed.status_code == 500
    assert failed.json()["message"] == "Worker died."
    following = predict(server, "victim")
    assert following.status_code == 200
    new_pid = following.json()["pid"]
    assert new_pid != pid
    # No orphans: the server's child processes are exactly the workers it describes.
    described = {
        p
        for model in ("batched", "slow", "victim", "echo", "stream", "lone")
        for p in worker_pids(server, model)
    }
    wait_until(lambda: {p.pid for p in server.worker_processes()} == described, "only described workers")
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_a_handler_exiting_during_load_fails_registration_cleanly(server: EmberServer) -> None:
    before = {p.pid for p in server.worker_processes()}
    answer = register(server, "exits")
    try:
        assert answer.status_code == 500
        assert answer.json()["message"] == "Failed to start workers for model exits version: 1.0"
        assert predict(server, "echo").status_code == 200  # the server carries on
    finally:
        httpx.delete(f"{server.management_url}/models/exits", timeout=TIMEOUT)
    wait_until(lambda: {p.pid for p in server.worker_processes()} == before, "no process left for 'exits'")


# -- streaming ---------------------------------------------------------------------------------------


def test_intermediate_responses_stream_as_http_chunks(server: EmberServer) -> None:
    chunks: list[bytes] = []
    with httpx.stream(
        "POST", f"{server.inference_url}/predictions/stream", content=b"go", timeout=TIMEOUT
    ) as answer:
        assert answer.status_code == 200
        assert answer.headers.get("transfer-encoding") == "chunked"
        chunks.extend(answer.iter_raw())
    assert b"".join(chunks) == b"part0 part1 part2 final"


# -- footprint -----------------------------------------------------------------------------------------


def test_echo_worker_stays_small_without_torch(server: EmberServer) -> None:
    [pid] = worker_pids(server, "echo")
    worker = psutil.Process(pid)
    rss_mb = worker.memory_info().rss / 2**20
    print(f"echo worker RSS: {rss_mb:.1f} MiB")  # reported with -s; TorchServe's is ~230 MB
    assert rss_mb < 150
