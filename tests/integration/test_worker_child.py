"""A real worker process, driven over its socketpair with TorchServe's unmodified reference handlers.

The reference models (``tests/reference_models``) are archived with the real
``torch-model-archiver`` (``--archive-format no-archive``) exactly as the reference recording did, so
the worker sees the same files and MANIFEST as TorchServe would.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from emberserve.workers import protocol
from tests.conftest import REFERENCE_MODELS
from tests.worker_harness import WorkerHarness, load_message, make_request, write_model_dir

ARCHIVER = Path(sys.executable).with_name("torch-model-archiver")


def _archive(store: Path, name: str, handler: Path, *extra: str, version: str = "1.0") -> Path:
    """``torch-model-archiver … --archive-format no-archive`` → the model directory."""
    export = store / f"{name}-{version}"
    export.mkdir(parents=True, exist_ok=True)
    if ARCHIVER.exists():
        subprocess.run(
            [str(ARCHIVER), "--model-name", name, "-v", version, "--handler", str(handler), *extra,
             "--archive-format", "no-archive", "--export-path", str(export), "--force"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        return export / name
    # Without the real archiver: the same layout by hand (flat files + MAR-INF/MANIFEST.json).
    files: dict[str, str | bytes] = {handler.name: handler.read_text()}
    fields: dict[str, str] = {}
    for flag, value in zip(extra[::2], extra[1::2], strict=True):
        paths = [Path(p) for p in value.split(",")]
        for path in paths:
            files[path.name] = path.read_bytes()
        key = {
            "--model-file": "modelFile",
            "--serialized-file": "serializedFile",
            "--config-file": "configFile",
        }
        if flag in key:
            fields[key[flag]] = paths[0].name
    return write_model_dir(export / name, files, handler.name, model_name=name, version=version, **fields)


@pytest.fixture(scope="session")
def reference_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("reference-models")


@pytest.fixture(scope="session")
def noop_dir(reference_store: Path) -> Path:
    return _archive(reference_store, "noop", REFERENCE_MODELS / "noop" / "noop_handler.py")


def _reference(store: Path, name: str, *extra: str, version: str = "1.0") -> Path:
    return _archive(store, name, REFERENCE_MODELS / name / f"{name}_handler.py", *extra, version=version)


@pytest.fixture(scope="session")
def mlp_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mlp-weights")
    subprocess.run(
        [sys.executable, str(REFERENCE_MODELS / "mlp" / "make_weights.py"), str(out)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    return out


@pytest.fixture
def worker() -> Iterator[WorkerHarness]:
    with WorkerHarness.spawn() as harness:
        yield harness


def _loaded(harness: WorkerHarness, model_dir: Path, **fields: Any) -> protocol.Loaded:
    answer = harness.load(model_dir, **fields)
    assert isinstance(answer, protocol.Loaded), f"{answer}\n{harness.output()}"
    assert answer.pid == harness.pid
    return answer


def _json(result: protocol.Result) -> Any:
    assert result.error is None, result
    return json.loads(result.body)


# -- module-level handlers ----------------------------------------------------------------------------


def test_noop_echoes_bytes_text_and_json(worker: WorkerHarness, noop_dir: Path) -> None:
    loaded = _loaded(worker, noop_dir)
    assert loaded.load_ms > 0
    outcome = worker.predict(
        [
            make_request(b"\x00\x01raw", "application/octet-stream"),
            make_request("héllo", "text/plain; charset=utf-8"),
            make_request(b'{"a": [1, 2]}', "application/json"),
            make_request(b"", ""),
        ]
    )
    assert [r.body for r in outcome.results] == [
        b"\x00\x01raw",
        "héllo".encode(),
        _pretty({"a": [1, 2]}),
        b"",
    ]
    assert all(r.status == 200 and r.error is None for r in outcome.results)
    record = outcome.metric("PredictionTime")
    assert (record.unit, record.metric_type, record.dimension_values) == (
        "Milliseconds",
        "gauge",
        ["noop", "Model"],
    )
    assert record.request_id == ",".join(r.request_id for r in outcome.results)


def _pretty(value: Any) -> bytes:
    return json.dumps(value, indent=2).encode()


def test_a_batch_of_four_is_one_handler_call_answered_in_order(worker: WorkerHarness, noop_dir: Path) -> None:
    _loaded(worker, noop_dir, batch_size=4)
    requests = [make_request(f"body-{i}", request_id=f"id-{i}") for i in range(4)]
    outcome = worker.predict(requests)
    assert [(r.request_id, r.body) for r in outcome.results] == [
        (f"id-{i}", f"body-{i}".encode()) for i in range(4)
    ]
    # One PredictionTime for the whole batch: the handler ran once.
    assert [m.name for m in outcome.metrics] == ["PredictionTime"]


def test_introspect_sees_what_torchserve_handlers_see(worker: WorkerHarness, reference_store: Path) -> None:
    model_dir = _reference(
        reference_store,
        "introspect",
        "--config-file",
        str(REFERENCE_MODELS / "introspect" / "model-config.yaml"),
    )
    yaml_config = {"minWorkers": 1, "batchSize": 1, "custom_section": {"answer": 42}}
    _loaded(worker, model_dir, batch_size=4, model_yaml_config=yaml_config)
    headers = [("explain", "False"), ("Host", "127.0.0.1:8080"), ("X-Custom", "abc"), ("url_path", "")]
    multipart = [
        protocol.Input("data", "application/json", b'{"k": 1}'),
        protocol.Input("extra", "", b"plainfield"),
    ]
    outcome = worker.predict(
        [
            make_request(b"hello", "text/plain", headers=headers, request_id="rq-1"),
            make_request(inputs=multipart, request_id="rq-2"),
        ]
    )
    first, second = (_json(r) for r in outcome.results)
    assert first["batch_len"] == 2
    assert first["request_id"] == "rq-1"
    assert first["inputs"] == {"body": {"type": "str", "len": 5, "head": "hello"}}
    assert first["headers"] == {"body": {"content-type": "text/plain"}, **dict(headers)}
    assert second["inputs"] == {
        "data": {"type": "dict", "value": {"k": 1}},
        "extra": {"type": "bytearray", "len": 10, "head": "plainfield"},
    }
    assert second["headers"]["data"] == {"content-type": "application/json"}
    assert first["system_properties"] == {
        "model_dir": str(model_dir.resolve()),
        "gpu_id": None,
        "batch_size": 4,
        "server_name": "MMS",
        "server_version": "0.12.0",
        "limit_max_image_pixels": True,
    }
    assert first["manifest"]["model"]["modelName"] == "introspect"
    assert first["manifest"]["model"]["configFile"] == "model-config.yaml"
    assert first["model_name"] == "introspect"
    assert first["model_yaml_config"] == yaml_config
    assert first["cwd_is_model_dir"] is True


def test_decode_input_request_off_gives_raw_bytearrays(worker: WorkerHarness, reference_store: Path) -> None:
    _loaded(worker, _reference(reference_store, "introspect"), decode_input_request=False)
    [result] = worker.predict([make_request(b'{"a": 1}', "application/json")]).results
    assert _json(result)["inputs"]["body"]["type"] == "bytearray"


def test_versioned_models_report_their_manifest(reference_store: Path) -> None:
    for version in ("1.0", "2.0"):
        model_dir = _reference(reference_store, "versioned", version=version)
        with WorkerHarness.spawn() as harness:
            _loaded(harness, model_dir)
            assert _json(harness.predict_one("x")) == {"model": "versioned", "version": version}


def test_sleepy_handler_answers_after_sleeping(worker: WorkerHarness, reference_store: Path) -> None:
    _loaded(worker, _reference(reference_store, "sleepy"))
    assert _json(worker.predict_one("0.05")) == {"slept": 0.05}


def test_stream_sends_three_chunks_then_the_final_response(
    worker: WorkerHarness, reference_store: Path
) -> None:
    _loaded(worker, _reference(reference_store, "stream"))
    outcome = worker.predict([make_request("go", request_id="s1")])
    assert [(c.request_id, c.status, c.body, c.headers) for c in outcome.chunks] == [
        ("s1", 200, f"part{i} ".encode(), [("ts_stream_next", "true")]) for i in range(3)
    ]
    [final] = outcome.results
    assert (final.body, final.headers) == (b"final", [("ts_stream_next", "false")])


# -- failures ---------------------------------------------------------------------------------------------

ERROR_CASES = [
    ("boom", 503, "Prediction failed"),
    ("prediction_exception", 418, "custom prediction error"),
    ("memory_error", 507, "Out of resources"),
    ("not_a_list", 503, "Invalid model predict output"),
    ("wrong_length", 503, "number of batch response mismatched"),
    ("bad_type", 503, "Unsupported model output data type."),
]


def test_handler_failures_map_to_torchserve_statuses_and_the_worker_keeps_serving(
    worker: WorkerHarness, reference_store: Path
) -> None:
    _loaded(worker, _reference(reference_store, "error"))
    for command, status, message in ERROR_CASES:
        result = worker.predict_one(command)
        assert (result.status, result.error, result.body) == (status, message, b""), command
    custom = worker.predict_one("custom_status")
    assert (custom.status, custom.phrase, custom.content_type, custom.body) == (
        299, "Custom Phrase", "text/x-custom", b"custom status body",
    )  # fmt: skip
    assert custom.headers == [("X-Custom-Header", "custom-value")]
    assert worker.process.poll() is None
    # Tracebacks of failed batches go to the worker's stderr, not to the client.
    worker.shutdown()
    assert "RuntimeError: boom: handler exception requested by client" in worker.stderr()


def test_load_failure_reports_and_exits(worker: WorkerHarness, reference_store: Path) -> None:
    answer = worker.load(_reference(reference_store, "init_error"))
    assert isinstance(answer, protocol.LoadFailed)
    assert answer.message == "RuntimeError: initialize failed on purpose"
    assert "Traceback" in answer.detail
    assert "init_error_handler.py" in answer.detail
    assert worker.wait(10) == 1


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("def handle(data, context:\n", "SyntaxError"),
        ("import no_such_dependency_xyz\n", "No module named 'no_such_dependency_xyz'"),
        ("class A:\n    pass\nclass B:\n    pass\n", "Expected only one class in custom service code"),
    ],
    ids=["syntax-error", "missing-dependency", "two-classes"],
)
def test_broken_handlers_fail_to_load(
    worker: WorkerHarness, tmp_path: Path, source: str, expected: str
) -> None:
    model_dir = write_model_dir(tmp_path / "m", {"broken_handler.py": source}, "broken_handler.py")
    answer = worker.load(model_dir)
    assert isinstance(answer, protocol.LoadFailed)
    assert expected in answer.message
    assert worker.wait(10) == 1


def test_unknown_builtin_handler_fails_clearly(worker: WorkerHarness, tmp_path: Path) -> None:
    model_dir = write_model_dir(tmp_path / "m", {}, "vllm_handler")
    answer = worker.load(model_dir)
    assert isinstance(answer, protocol.LoadFailed)
    assert answer.message == "built-in handler vllm_handler is not available yet"


def test_an_oversized_response_fails_only_that_request(tmp_path: Path) -> None:
    source = "def handle(data, context):\n    return data and [b'x' * int(r['body']) for r in data]\n"
    model_dir = write_model_dir(tmp_path / "m", {"big_handler.py": source}, "big_handler.py")
    with WorkerHarness.spawn(extra_args=["--max-response-bytes", "1000"]) as harness:
        _loaded(harness, model_dir)
        small, big = harness.predict([make_request("10"), make_request("5000")]).results
        assert (small.status, small.body) == (200, b"x" * 10)
        assert big.status == 500
        assert big.error is not None
        assert "exceeds the maximum response size of 1000 bytes" in big.error
        assert harness.predict_one("20").body == b"x" * 20


def test_an_oversized_stream_chunk_fails_the_batch_not_the_worker(tmp_path: Path) -> None:
    source = textwrap.dedent("""
        from ts.handler_utils.utils import send_intermediate_predict_response

        def handle(data, context):
            if data is None:
                return None
            size = int(data[0]["body"])
            send_intermediate_predict_response([b"x" * size], context.request_ids, "part", 200, context)
            return ["done"]
    """)
    model_dir = write_model_dir(tmp_path / "m", {"chunky_handler.py": source}, "chunky_handler.py")
    with WorkerHarness.spawn(extra_args=["--max-response-bytes", "1000"]) as harness:
        _loaded(harness, model_dir)
        outcome = harness.predict([make_request("5000")])
        assert outcome.chunks == []
        assert (outcome.results[0].status, outcome.results[0].error) == (503, "Prediction failed")
        small = harness.predict([make_request("10")])
        assert [c.body for c in small.chunks] == [b"x" * 10]
        assert small.results[0].body == b"done"


def test_cancel_stops_an_endless_stream_and_the_worker_takes_the_next_batch(tmp_path: Path) -> None:
    """Cancel (every client gone) makes the next chunk raise StreamCancelled in the handler; a
    Cancel that arrives after its batch was answered is ignored."""
    source = textwrap.dedent("""
        import time
        from ts.handler_utils.utils import send_intermediate_predict_response

        def handle(data, context):
            if data is None:
                return None
            if data[0]["body"] in (b"forever", "forever"):
                while True:
                    send_intermediate_predict_response(["tick"], context.request_ids, "ok", 200, context)
                    time.sleep(0.01)
            return [data[0]["body"]]
    """)
    model_dir = write_model_dir(tmp_path / "m", {"forever_handler.py": source}, "forever_handler.py")
    with WorkerHarness.spawn() as harness:
        _loaded(harness, model_dir)
        harness.send(protocol.Predict([make_request("forever", request_id="f1")]))
        while not isinstance(first := harness.recv(), protocol.StreamChunk):
            assert isinstance(first, protocol.MetricsReport), first
        assert first.result.body == b"tick"
        harness.send(protocol.Cancel())
        while not isinstance(message := harness.recv(), protocol.Predicted):
            assert isinstance(message, protocol.StreamChunk | protocol.MetricsReport), message
        assert (message.results[0].status, message.results[0].error) == (503, "Prediction failed")
        harness.send(protocol.Cancel())  # stale: its batch is over
        assert harness.predict_one("next").body == b"next"
        assert harness.shutdown() == 0
        harness.close()  # joins the pipe readers: all output is in
        assert "Streaming stopped: the client of request f1 is gone" in harness.stderr()
        assert "Traceback" not in harness.output()


# -- envelopes, metrics, logs ----------------------------------------------------------------------------


def test_kserve_envelope_turns_instances_into_rows(worker: WorkerHarness, noop_dir: Path) -> None:
    _loaded(worker, noop_dir, envelope="kserve")
    result = worker.predict_one(b'{"instances": [[5.1, 3.5], [6.7, 3.0]]}', "application/json")
    assert _json(result) == {"predictions": [[5.1, 3.5], [6.7, 3.0]]}
    missing = worker.predict_one(b'{"other": 1}', "application/json")
    assert (missing.status, missing.error) == (503, "Invalid model predict output")
    not_json = worker.predict_one(b"not json", "application/octet-stream")
    assert (not_json.status, not_json.error) == (503, "Prediction failed")


def test_kservev2_envelope_answers_the_open_inference_protocol(worker: WorkerHarness, noop_dir: Path) -> None:
    _loaded(worker, noop_dir, envelope="kservev2")
    data = [5.1, 3.5, 1.4, 0.2]
    body = {"id": "req-1", "inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP32", "data": data}]}
    result = worker.predict_one(json.dumps(body), "application/json")
    # noop echoes each row's "data" (the [1, 4] tensor); the output is flattened, its type inferred.
    assert _json(result) == {
        "id": "req-1",
        "model_name": "noop",
        "model_version": "1.0",
        "outputs": [{"name": "input-0", "datatype": "FP64", "data": data, "shape": [4]}],
    }


def test_handler_metrics_and_logs(worker: WorkerHarness, tmp_path: Path) -> None:
    source = textwrap.dedent("""
        import logging
        from ts.metrics.dimension import Dimension
        log = logging.getLogger(__name__)

        def handle(data, context):
            if data is None:
                context.metrics.add_counter("Loads", 1)
                return None
            print("printed by the handler")
            log.info("logged by the handler")
            context.metrics.add_metric("Widgets", 3, "count", idx=0, dimensions=[Dimension("Color", "red")])
            return ["ok" for _ in data]
    """)
    _loaded(worker, write_model_dir(tmp_path / "m", {"metric_handler.py": source}, "metric_handler.py"))
    assert [(m.name, m.request_id) for m in worker.load_metrics] == [("Loads", "load")]
    outcome = worker.predict([make_request("a", request_id="w1")])
    widgets = outcome.metric("Widgets")
    assert (widgets.dimension_names, widgets.dimension_values) == (
        ["Color", "ModelName", "Level"],
        ["red", "model", "Model"],
    )
    assert widgets.request_id == "w1"
    assert {m.name for m in outcome.metrics} == {"Widgets", "PredictionTime"}
    assert worker.shutdown() == 0
    assert "printed by the handler" in worker.stdout()
    assert "logged by the handler" in worker.stdout()


# -- describe and BaseHandler models (torch) -----------------------------------------------------------


def test_describe_handler(worker: WorkerHarness, reference_store: Path) -> None:
    # A BaseHandler subclass that never touches torch does not load it either.
    _loaded(worker, _reference(reference_store, "describe"))
    [described] = worker.predict([make_request(kind="describe")]).results
    assert described.body == json.dumps({"data1": "1", "data2": "2", "model": "describe"}, indent=2).encode()
    outcome = worker.predict([make_request("echo")])
    assert outcome.results[0].body == b"echo"
    assert "HandlerTime" in {m.name for m in outcome.metrics}


@pytest.mark.torch
def test_mlp_eager_model_with_labels(worker: WorkerHarness, reference_store: Path, mlp_weights: Path) -> None:
    model_dir = _reference(
        reference_store, "mlp",
        "--model-file", str(REFERENCE_MODELS / "mlp" / "model.py"),
        "--serialized-file", str(mlp_weights / "mlp_state.pt"),
        "--extra-files", str(REFERENCE_MODELS / "mlp" / "index_to_name.json"),
    )  # fmt: skip
    _loaded(worker, model_dir, batch_size=2)
    outcome = worker.predict(
        [
            make_request(b'{"data": [[5.1, 3.5, 1.4, 0.2]]}', "application/json"),
            make_request("6.7,3.0,5.2,2.3"),
        ]
    )
    for result in outcome.results:
        probabilities = _json(result)
        assert set(probabilities) == {"setosa", "versicolor", "virginica"}
        assert sum(probabilities.values()) == pytest.approx(1.0)
    assert {"HandlerTime", "PredictionTime"} <= {m.name for m in outcome.metrics}
    explained = worker.predict_one(b"[1, 2, 3, 4]", "application/json", kind="explain")
    assert (explained.status, explained.error) == (503, "Prediction failed")  # no get_insights, as observed


@pytest.mark.torch
def test_scripted_model(worker: WorkerHarness, reference_store: Path, mlp_weights: Path) -> None:
    model_dir = _archive(
        reference_store, "mlp_scripted", REFERENCE_MODELS / "scripted" / "scripted_handler.py",
        "--serialized-file", str(mlp_weights / "mlp_scripted.pt"),
    )  # fmt: skip
    _loaded(worker, model_dir)
    logits = _json(worker.predict_one(b"[5.1, 3.5, 1.4, 0.2]", "application/json"))
    assert len(logits) == 3
    assert all(isinstance(v, float) for v in logits)


@pytest.mark.torch
def test_builtin_base_handler_serves_a_torchscript_model(
    worker: WorkerHarness, tmp_path: Path, mlp_weights: Path
) -> None:
    model_dir = write_model_dir(
        tmp_path / "m", {"mlp_scripted.pt": (mlp_weights / "mlp_scripted.pt").read_bytes()}, "base_handler",
        serializedFile="mlp_scripted.pt",
    )  # fmt: skip
    # BaseHandler's default preprocess turns the rows themselves into a tensor: the rows a KServe
    # envelope makes are plain lists of numbers, so the built-in handler serves them as is.
    _loaded(worker, model_dir, envelope="kserve")
    result = worker.predict_one(b'{"instances": [[5.1, 3.5, 1.4, 0.2]]}', "application/json")
    [logits] = _json(result)["predictions"]
    assert len(logits) == 3


# -- life and death ------------------------------------------------------------------------------------------


def test_shutdown_exits_zero(worker: WorkerHarness, noop_dir: Path) -> None:
    _loaded(worker, noop_dir)
    assert worker.shutdown() == 0


def test_worker_exits_when_the_socket_reaches_eof(worker: WorkerHarness, noop_dir: Path) -> None:
    _loaded(worker, noop_dir)
    worker.sock.shutdown(socket.SHUT_WR)
    assert worker.wait(10) == 0


def test_worker_exits_on_eof_before_loading(worker: WorkerHarness) -> None:
    worker.sock.close()
    assert worker.wait(10) == 0


def test_garbage_from_the_frontend_ends_the_worker(worker: WorkerHarness) -> None:
    worker.sock.sendall(b"\x00\x00\x00\x05\xffjunk")
    assert worker.wait(10) == 2


def test_predict_before_load_is_a_protocol_error(worker: WorkerHarness) -> None:
    worker.send(protocol.Predict([make_request("x")]))
    assert worker.wait(10) == 2


INTERMEDIATE_PARENT = """
import signal, subprocess, sys
fd = int(sys.argv[1])
child = subprocess.Popen([sys.executable, "-m", "emberserve.workers.child", "--fd", str(fd)],
                         pass_fds=(fd,), start_new_session=True)
print(child.pid, flush=True)
signal.pause()
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_worker_dies_with_its_parent(noop_dir: Path) -> None:
    ours, theirs = socket.socketpair()
    parent = subprocess.Popen(
        [sys.executable, "-c", INTERMEDIATE_PARENT, str(theirs.fileno())],
        pass_fds=(theirs.fileno(),), stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    theirs.close()
    exited: int | None = None
    try:
        assert parent.stdout is not None
        worker_pid = int(parent.stdout.readline())
        exited = os.pidfd_open(worker_pid)  # readable once the worker has exited
        ours.settimeout(30)
        ours.sendall(protocol.encode(load_message(noop_dir)))
        [answer] = protocol.Decoder().feed(ours.recv(1 << 16))
        assert isinstance(answer, protocol.Loaded)  # the worker is up, past its prctl
        parent.kill()
        parent.wait(10)
        # This test still holds the other end of the socket, so only the parent-death signal can
        # end the worker now.
        readable, _, _ = select.select([exited], [], [], 5)
        assert readable, "the worker outlived its parent"
        assert _dead(worker_pid)
        ours.settimeout(5)
        assert ours.recv(1) == b""
    finally:
        ours.close()
        if parent.poll() is None:
            parent.kill()
            parent.wait(10)
        if parent.stdout is not None:
            parent.stdout.close()
        if exited is not None:
            if not _dead(worker_pid):
                signal.pidfd_send_signal(exited, signal.SIGKILL)
            os.close(exited)


def _dead(pid: int) -> bool:
    """Gone, or a zombie waiting for its new parent (init) to reap it."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_echo_worker_stays_small_and_never_imports_torch(worker: WorkerHarness, tmp_path: Path) -> None:
    source = textwrap.dedent("""
        import sys

        def handle(data, context):
            if data is None:
                return None
            return [{"torch": "torch" in sys.modules, "numpy": "numpy" in sys.modules, "body": row["body"]}
                    for row in data]
    """)
    _loaded(worker, write_model_dir(tmp_path / "m", {"modules_handler.py": source}, "modules_handler.py"))
    for i in range(20):
        assert _json(worker.predict_one(f"x{i}")) == {"torch": False, "numpy": False, "body": f"x{i}"}
    rss_mb = psutil.Process(worker.pid).memory_info().rss / 2**20
    assert rss_mb < 60, f"echo worker uses {rss_mb:.1f} MB"


def test_each_worker_imports_its_own_model_files(tmp_path: Path) -> None:
    # Two models, same handler module name: each worker imports the file of its own model.
    for answer in ("first", "second"):
        source = f"def handle(data, context):\n    return data and [{answer!r} for _ in data]\n"
        model_dir = write_model_dir(tmp_path / answer, {"same_name.py": source}, "same_name.py")
        with WorkerHarness.spawn(cwd=tmp_path) as harness:
            _loaded(harness, model_dir)
            assert harness.predict_one("x").body == answer.encode()
