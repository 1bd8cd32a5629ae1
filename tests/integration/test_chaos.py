"""Faults against a real server (issue: reliability). Every request gets exactly one answer, the
server recovers or stops cleanly, and no process outlives it."""

from __future__ import annotations

import concurrent.futures
import json
import resource
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import archive, write_handler
from tests.ember_server import EmberServer

pytestmark = pytest.mark.chaos

# Marks its start in a folder named by the request, then sleeps: tests know a request is running
# without guessing how long it takes to get there.
GATED_HANDLER = """
import json, os, time, uuid

def handle(data, context):
    if data is None:
        return None
    out = []
    for row in data:
        spec = row.get("body") or row.get("data")
        if isinstance(spec, (bytes, bytearray)):
            spec = json.loads(spec)
        open(os.path.join(spec["dir"], "started-" + uuid.uuid4().hex), "w").close()
        time.sleep(spec["sleep"])
        out.append({"slept": spec["sleep"]})
    return out
"""

WAIT_S = 30.0


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, echo_store: Path) -> Path:
    folder = tmp_path_factory.mktemp("chaos-store")
    (folder / "echo.mar").write_bytes((echo_store / "echo.mar").read_bytes())
    src = tmp_path_factory.mktemp("chaos-src")
    archive(folder, "gated", write_handler(src, "gated_handler.py", GATED_HANDLER))
    return folder


def gated(marks: Path, sleep_s: float) -> bytes:
    return json.dumps({"dir": str(marks), "sleep": sleep_s}).encode()


def wait_for_marks(marks: Path, count: int) -> None:
    deadline = time.monotonic() + WAIT_S
    while len(list(marks.iterdir())) < count:
        assert time.monotonic() < deadline, f"only {len(list(marks.iterdir()))} of {count} requests started"
        time.sleep(0.02)


def wait_for_queue(server: EmberServer, model: str, pending: int) -> None:
    deadline = time.monotonic() + WAIT_S
    while True:
        [described] = httpx.get(f"{server.management_url}/models/{model}").json()
        if described["jobQueueStatus"]["pendingRequests"] >= pending:
            return
        assert time.monotonic() < deadline, described["jobQueueStatus"]
        time.sleep(0.02)


def post(url: str, body: bytes, timeout: float = 60.0) -> int:
    try:
        return httpx.post(
            url, content=body, headers={"content-type": "application/json"}, timeout=timeout
        ).status_code
    except httpx.TransportError:
        return -1  # the connection ended without an answer


@pytest.fixture
def marks(tmp_path: Path) -> Path:
    folder = tmp_path / f"marks-{uuid.uuid4().hex[:6]}"
    folder.mkdir()
    return folder


def test_sigterm_answers_running_and_queued_requests_then_exits_zero(
    store: Path, tmp_path: Path, marks: Path
) -> None:
    with EmberServer(tmp_path / "run", store, models=["gated.mar"]) as server:
        url = server.inference_url + "/predictions/gated"
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            answers = [pool.submit(post, url, gated(marks, 0.3)) for _ in range(4)]
            wait_for_marks(marks, 1)
            wait_for_queue(server, "gated", 3)  # one runs, three wait in the queue
            assert server.proc is not None
            server.proc.send_signal(signal.SIGTERM)
            assert [a.result(timeout=WAIT_S) for a in answers] == [200] * 4
        assert server.stop() == 0
        assert "Received SIGTERM: draining" in server.console_text()
    assert list((tmp_path / "run" / "logs" / "config").glob("*-shutdown.cfg"))


def read_answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    return answer


def test_sigterm_closes_keep_alive_connections_so_no_new_request_starts_during_the_drain(
    store: Path, tmp_path: Path, marks: Path
) -> None:
    # Seen in the container test: a keep-alive client kept sending during the drain and, once
    # the models were stopped, got 404 "Model not found". Now an idle keep-alive connection is
    # closed at once and a busy one after its answer, which says "connection: close".
    with EmberServer(tmp_path / "run", store, models=["gated.mar", "echo.mar"]) as server:
        address = ("127.0.0.1", server.ports["inference"])
        with (
            socket.create_connection(address, timeout=WAIT_S) as idle,
            socket.create_connection(address, timeout=WAIT_S) as busy,
        ):
            idle.sendall(b"POST /predictions/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
            assert idle.recv(65536).startswith(b"HTTP/1.1 200 ")
            body = gated(marks, 0.5)
            busy.sendall(
                b"POST /predictions/gated HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            wait_for_marks(marks, 1)
            assert server.proc is not None
            server.proc.send_signal(signal.SIGTERM)
            assert read_answer(idle) == b""  # closed without an answer: nothing was asked
            answer = read_answer(busy)
        assert answer.startswith(b"HTTP/1.1 200 ")
        assert b"connection: close\r\n" in answer.lower()
        assert server.stop() == 0


def wait_for_console(server: EmberServer, text: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while text not in server.console_text():
        assert time.monotonic() < deadline, f"{text!r} never logged:\n{server.console_text()}"
        time.sleep(0.02)


@pytest.mark.parametrize("second_during_drain", [False, True], ids=["back-to-back", "during-drain"])
def test_a_second_signal_stops_at_once_and_the_running_request_still_gets_an_answer(
    store: Path, tmp_path: Path, marks: Path, second_during_drain: bool
) -> None:
    # Seen in CI: a second signal that came after the drain had begun did not cut it short
    # (the drain waited its full 30 s), and a request cut short could lose its answer when
    # the loop ended before the connection wrote it.
    with EmberServer(tmp_path / "run", store, models=["gated.mar"]) as server:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            answer = pool.submit(post, server.inference_url + "/predictions/gated", gated(marks, 60))
            wait_for_marks(marks, 1)
            assert server.proc is not None
            started = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            if second_during_drain:
                wait_for_console(server, "Received SIGTERM: draining")
            server.proc.send_signal(signal.SIGINT)
            assert answer.result(timeout=WAIT_S) in (500, 503)
        assert server.stop(timeout_s=20) == 0
        assert time.monotonic() - started < 20


def test_workers_die_with_a_sigkilled_frontend_and_a_restart_restores_the_models(
    store: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    with EmberServer(run, store, models=["echo.mar"]) as first:
        workers = first.worker_processes()
        assert workers
        assert first.proc is not None
        first.proc.kill()
        first.proc.wait(10)
        _, alive = psutil.wait_procs(workers, timeout=10)
        assert not alive, f"workers outlived their frontend: {alive}"
        first.proc = None

    # No shutdown snapshot was written, but the startup snapshot restores the model.
    second = EmberServer(run, store)
    command = second.command()
    at = command.index("--ts-config")
    second.command = lambda: command[:at] + command[at + 2 :]  # type: ignore[method-assign]
    second.ports = first.ports
    second.inference_url, second.management_url = first.inference_url, first.management_url
    with second:
        reply = httpx.post(second.inference_url + "/predictions/echo", content=b"again", timeout=30)
        assert reply.status_code == 200 and reply.content == b"again"


@pytest.fixture
def managed(store: Path, tmp_path: Path) -> Iterator[EmberServer]:
    with EmberServer(
        tmp_path / "managed",
        store,
        models=["gated.mar"],
        extra_config={"enable_model_api": "true", "unregister_model_timeout": "30"},
    ) as server:
        yield server


def test_unregister_during_inference_answers_the_running_request(managed: EmberServer, marks: Path) -> None:
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        answer = pool.submit(post, managed.inference_url + "/predictions/gated", gated(marks, 0.5))
        wait_for_marks(marks, 1)
        reply = httpx.delete(managed.management_url + "/models/gated", timeout=60)
        assert reply.status_code == 200
        assert answer.result(timeout=WAIT_S) == 200
    after = httpx.post(managed.inference_url + "/predictions/gated", content=gated(marks, 0), timeout=30)
    assert after.status_code == 404
    assert managed.worker_processes() == []


def test_scale_down_under_load_answers_every_request(managed: EmberServer, marks: Path) -> None:
    url = managed.management_url + "/models/gated"
    assert httpx.put(url, params={"min_worker": "3", "synchronous": "true"}, timeout=60).status_code == 200
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        answers = [
            pool.submit(post, managed.inference_url + "/predictions/gated", gated(marks, 0.05))
            for _ in range(24)
        ]
        wait_for_marks(marks, 3)
        shrink = httpx.put(url, params={"min_worker": "1", "synchronous": "true"}, timeout=60)
        assert shrink.status_code == 200
        assert [a.result(timeout=WAIT_S) for a in answers] == [200] * 24
    [described] = httpx.get(url).json()
    assert len(described["workers"]) == 1
    assert len(managed.worker_processes()) == 1


def test_concurrent_registrations_of_one_name_register_it_once(managed: EmberServer) -> None:
    def register() -> int:
        return httpx.post(
            managed.management_url + "/models",
            params={"url": "echo.mar", "model_name": "twin", "initial_workers": "1"},
            timeout=60,
        ).status_code

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        codes = sorted(pool.map(lambda _: register(), range(6)))
    assert codes == [200, 409, 409, 409, 409, 409]
    [twin] = httpx.get(managed.management_url + "/models/twin").json()
    assert len(twin["workers"]) == 1
    assert len(managed.worker_processes()) == 2  # gated's worker and twin's


class LimitedServer(EmberServer):
    """A server started under a resource limit (``limit`` = (resource, soft and hard value))."""

    def __init__(self, *args: object, limit: tuple[int, int], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.limit = limit

    def start(self) -> EmberServer:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(exist_ok=True)
        self.config_path.write_text(self.config_text())
        which, value = self.limit

        def limited() -> None:
            resource.setrlimit(which, (value, value))

        with self.console.open("wb") as out:
            self.proc = subprocess.Popen(
                self.command(),
                cwd=self.run_dir,
                env=self.environment(),
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=limited,  # noqa: PLW1509 - setrlimit only, before exec
            )
        self._wait_listening()
        if self.wait_healthy:
            self.wait_for_ping(200)
        return self


def test_a_full_disk_while_writing_snapshots_keeps_the_server_serving(store: Path, tmp_path: Path) -> None:
    # Files the server writes may not grow past 2 KiB: snapshots and log files hit EFBIG (Python
    # ignores SIGXFSZ), as they would hit ENOSPC on a full disk.
    server = LimitedServer(
        tmp_path / "run",
        store,
        models=["echo.mar"],
        extra_config={"enable_model_api": "true"},
        limit=(resource.RLIMIT_FSIZE, 2048),
    )
    with server:
        reply = httpx.post(
            server.management_url + "/models",
            params={"url": "echo.mar", "model_name": "more", "initial_workers": "1"},
            timeout=60,
        )
        assert reply.status_code == 200
        for name in ("echo", "more"):
            answer = httpx.post(f"{server.inference_url}/predictions/{name}", content=b"ok", timeout=30)
            assert answer.status_code == 200 and answer.content == b"ok"
    snapshot_dir = tmp_path / "run" / "logs" / "config"
    leftovers = [p for p in snapshot_dir.iterdir() if p.name.startswith(".")] if snapshot_dir.is_dir() else []
    assert leftovers == []


def test_running_out_of_file_descriptors_refuses_connections_but_the_server_recovers(
    store: Path, tmp_path: Path
) -> None:
    server = LimitedServer(tmp_path / "run", store, models=["echo.mar"], limit=(resource.RLIMIT_NOFILE, 128))
    with server:
        clients = []
        try:
            for _ in range(200):  # far more connections than the server has descriptors for
                client = httpx.Client(timeout=5)
                clients.append(client)
                try:
                    client.get(server.inference_url + "/ping")
                except httpx.TransportError:
                    break
        finally:
            for client in clients:
                client.close()
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                reply = httpx.post(server.inference_url + "/predictions/echo", content=b"back", timeout=10)
                if reply.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, server.console_text()
            time.sleep(0.1)
        assert reply.content == b"back"
        assert server.proc is not None and server.proc.poll() is None


POISON_HANDLER = """
import os, sys

def handle(data, context):
    if data is None:
        return None
    bodies = [bytes(row.get("body") or b"") for row in data]
    if b"poison" in bodies:
        sys.stderr.write("poisoned by a request\\n")
        sys.stderr.flush()
        os._exit(3)
    return bodies
"""


def test_a_poison_request_gets_an_error_and_costs_one_worker_with_the_cause_on_record(tmp_path: Path) -> None:
    folder = tmp_path / "store"
    folder.mkdir()
    archive(folder, "poison", write_handler(tmp_path / "src", "poison_handler.py", POISON_HANDLER))
    config = {"restart_backoff_base_ms": "50"}
    with EmberServer(tmp_path / "run", folder, models=["poison.mar"], extra_config=config) as server:
        url = server.inference_url + "/predictions/poison"
        [before] = httpx.get(server.management_url + "/models/poison").json()
        assert "workerRestarts" not in before
        for attempt in (1, 2):
            reply = httpx.post(url, content=b"poison", timeout=30)
            assert reply.status_code == 500
            assert reply.json()["message"] == "Worker died."
            server.wait_for_ping(200)
            [described] = httpx.get(server.management_url + "/models/poison").json()
            [slot] = described["workerRestarts"]
            assert slot["restarts"] == attempt
            assert "exit code 3" in slot["lastExit"] and "poisoned by a request" in slot["lastExit"]
            served = httpx.post(url, content=b"fine", timeout=30)
            assert served.status_code == 200 and served.content == b"fine"
        assert "poisoned by a request" in server.console_text()
