"""TorchServe's gRPC APIs against a real Ember server with real workers (reference §11).

One server with the model API on runs the inference and management calls; a second one with
``ts_open_inference_protocol=true`` and the ``kservev2`` envelope runs the Open Inference Protocol
(through tritonclient, as users call it) and has the model API off.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import orjson
import pytest
from google.protobuf import empty_pb2

from emberserve.grpc.generated import inference_pb2, inference_pb2_grpc, management_pb2, management_pb2_grpc
from emberserve.grpc.generated import open_inference_grpc_pb2 as oip_pb2
from emberserve.grpc.generated import open_inference_grpc_pb2_grpc as oip_pb2_grpc
from tests.conftest import ECHO_HANDLER, REFERENCE_MODELS, archive, write_handler
from tests.ember_server import EmberServer

TIMEOUT_S = 30.0


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("grpc-store")
    src = tmp_path_factory.mktemp("grpc-src")
    archive(store, "echo", write_handler(src, "echo_handler.py", ECHO_HANDLER))
    for name in ("stream", "error", "sleepy", "describe"):
        archive(store, name, REFERENCE_MODELS / name / f"{name}_handler.py")
    for version in ("1", "2"):
        built = tmp_path_factory.mktemp(f"versioned{version}")
        mar = archive(
            built,
            "versioned",
            REFERENCE_MODELS / "versioned" / "versioned_handler.py",
            version=f"{version}.0",
        )
        shutil.copy(mar, store / f"versioned_v{version}.mar")
    return store


@pytest.fixture(scope="module")
def srv(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmberServer]:
    models = ["echo=echo.mar", "stream=stream.mar", "error=error.mar", "sleepy=sleepy.mar"]
    config = {"enable_model_api": "true", "max_request_size": "200000"}
    with EmberServer(
        tmp_path_factory.mktemp("grpc-run"), store, models=models, extra_config=config
    ) as server:
        yield server


@pytest.fixture(scope="module")
def infer(srv: EmberServer) -> Iterator[inference_pb2_grpc.InferenceAPIsServiceStub]:
    with grpc.insecure_channel(f"127.0.0.1:{srv.ports['grpc_inference']}") as channel:
        yield inference_pb2_grpc.InferenceAPIsServiceStub(channel)


@pytest.fixture(scope="module")
def manage(srv: EmberServer) -> Iterator[management_pb2_grpc.ManagementAPIsServiceStub]:
    with grpc.insecure_channel(f"127.0.0.1:{srv.ports['grpc_management']}") as channel:
        yield management_pb2_grpc.ManagementAPIsServiceStub(channel)


def predict(stub: inference_pb2_grpc.InferenceAPIsServiceStub, model: str, body: bytes, **kw: Any) -> bytes:
    request = inference_pb2.PredictionsRequest(model_name=model, input={"data": body}, **kw)
    answer: bytes = stub.Predictions(request, timeout=TIMEOUT_S).prediction
    return answer


def rpc_error(call: Any, *args: Any, **kwargs: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(*args, timeout=kwargs.pop("timeout", TIMEOUT_S), **kwargs)
    return caught.value


def worker_pids(manage: management_pb2_grpc.ManagementAPIsServiceStub, model: str) -> list[int]:
    answer = manage.DescribeModel(management_pb2.DescribeModelRequest(model_name=model), timeout=TIMEOUT_S)
    return [w["pid"] for w in orjson.loads(answer.msg)[0]["workers"]]


# ------------------------------------------------------------------------------------------------
# Inference
# ------------------------------------------------------------------------------------------------


def test_ping(infer: inference_pb2_grpc.InferenceAPIsServiceStub) -> None:
    assert infer.Ping(empty_pb2.Empty(), timeout=TIMEOUT_S).health == '{\n  "status": "Healthy"\n}'


def test_predictions_hand_the_input_map_over_undecoded(
    infer: inference_pb2_grpc.InferenceAPIsServiceStub,
) -> None:
    # JSON bytes stay bytes (content type ""): the echo handler sends them back unchanged.
    assert predict(infer, "echo", b'{"a": 1}') == b'{"a": 1}'
    assert predict(infer, "echo", b"\x00\xffbinary") == b"\x00\xffbinary"


def test_prediction_errors(infer: inference_pb2_grpc.InferenceAPIsServiceStub) -> None:
    cases = [
        ("nosuch", b"", grpc.StatusCode.NOT_FOUND, "Model not found: nosuch"),
        ("", b"", grpc.StatusCode.INVALID_ARGUMENT, "Parameter model_name is required."),
        ("error", b"boom", grpc.StatusCode.UNAVAILABLE, "Prediction failed"),
        ("error", b"prediction_exception", grpc.StatusCode.FAILED_PRECONDITION, "custom prediction error"),
        ("error", b"memory_error", grpc.StatusCode.INTERNAL, "Out of resources"),
    ]
    for model, body, code, message in cases:
        request = inference_pb2.PredictionsRequest(model_name=model, input={"data": body})
        err = rpc_error(infer.Predictions, request)
        assert (err.code(), err.details().split("\n")[0]) == (code, message), model + body.decode()
    assert predict(infer, "error", b"custom_status") == b"custom status body"
    err = rpc_error(
        infer.Predictions, inference_pb2.PredictionsRequest(model_name="echo", model_version="9.9")
    )
    assert err.details() == "Model version: 9.9 does not exist for model: echo\nModelVersionNotFoundException"


def test_stream_predictions(infer: inference_pb2_grpc.InferenceAPIsServiceStub) -> None:
    request = inference_pb2.PredictionsRequest(model_name="stream", input={"data": b"x"})
    parts = [m.prediction for m in infer.StreamPredictions(request, timeout=TIMEOUT_S)]
    assert parts == [b"part0 ", b"part1 ", b"part2 ", b"final"]
    # Unary call on the streaming handler: the whole answer, as REST sends it.
    assert predict(infer, "stream", b"x") == b"part0 part1 part2 final"
    # A handler that does not stream answers one message (TorchServe: "Worker died.").
    request = inference_pb2.PredictionsRequest(model_name="echo", input={"data": b"single"})
    assert [m.prediction for m in infer.StreamPredictions(request, timeout=TIMEOUT_S)] == [b"single"]


def test_stream_predictions2_reports_sequence_errors_in_the_stream(
    infer: inference_pb2_grpc.InferenceAPIsServiceStub,
) -> None:
    requests = [
        inference_pb2.PredictionsRequest(model_name="echo", input={"data": b"1"}),
        inference_pb2.PredictionsRequest(model_name="echo", input={"data": b"2"}, sequence_id="s1"),
    ]
    answers = list(infer.StreamPredictions2(iter(requests), timeout=TIMEOUT_S))
    assert [a.status.code for a in answers] == [
        grpc.StatusCode.INVALID_ARGUMENT.value[0],
        grpc.StatusCode.INVALID_ARGUMENT.value[0],
    ]
    assert answers[0].status.message == "Parameter sequenceId is required."
    assert answers[1].sequence_id == "s1"


def test_deadlines_and_cancellations_never_wedge_a_worker(
    infer: inference_pb2_grpc.InferenceAPIsServiceStub, manage: management_pb2_grpc.ManagementAPIsServiceStub
) -> None:
    pids = worker_pids(manage, "sleepy")
    request = inference_pb2.PredictionsRequest(model_name="sleepy", input={"data": b"1"})
    calls = [infer.Predictions.future(request, timeout=0.3) for _ in range(10)]
    for call in calls:
        with pytest.raises(grpc.RpcError) as caught:
            call.result()
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    streamed = infer.StreamPredictions(request, timeout=TIMEOUT_S)
    streamed.cancel()
    # The running job ends after ~1 s; the nine cancelled while queued never reach the worker.
    started = time.monotonic()
    assert orjson.loads(predict(infer, "sleepy", b"0")) == {"slept": 0.0}
    assert time.monotonic() - started < 5
    assert worker_pids(manage, "sleepy") == pids


def test_oversized_message_is_resource_exhausted(infer: inference_pb2_grpc.InferenceAPIsServiceStub) -> None:
    err = rpc_error(
        infer.Predictions, inference_pb2.PredictionsRequest(model_name="echo", input={"d": b"x" * 300_000})
    )
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert predict(infer, "echo", b"still fine") == b"still fine"


# ------------------------------------------------------------------------------------------------
# Management
# ------------------------------------------------------------------------------------------------


def test_model_lifecycle(
    manage: management_pb2_grpc.ManagementAPIsServiceStub, infer: inference_pb2_grpc.InferenceAPIsServiceStub
) -> None:
    def register(url: str, **kw: Any) -> str:
        request = management_pb2.RegisterModelRequest(url=url, initial_workers=1, synchronous=True, **kw)
        msg: str = manage.RegisterModel(request, timeout=TIMEOUT_S).msg
        return msg

    assert register("versioned_v1.mar") == 'Model "versioned" Version: 1.0 registered with 1 initial workers'
    err = rpc_error(manage.RegisterModel, management_pb2.RegisterModelRequest(url="versioned_v1.mar"))
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS
    assert (
        err.details()
        == "Model version 1.0 is already registered for model versioned\nConflictStatusException"
    )
    assert register("versioned_v2.mar") == 'Model "versioned" Version: 2.0 registered with 1 initial workers'

    described = manage.DescribeModel(
        management_pb2.DescribeModelRequest(model_name="versioned", model_version="all"), timeout=TIMEOUT_S
    )
    assert described.msg.startswith("[\n  {\n")
    assert not described.msg.endswith("\n")
    assert [d["modelVersion"] for d in orjson.loads(described.msg)] == ["1.0", "2.0"]
    assert orjson.loads(predict(infer, "versioned", b""))["version"] == "1.0"

    answer = manage.SetDefault(
        management_pb2.SetDefaultRequest(model_name="versioned", model_version="2.0"), timeout=TIMEOUT_S
    )
    assert answer.msg == 'Default version successfully updated for model "versioned" to "2.0"'
    assert orjson.loads(predict(infer, "versioned", b""))["version"] == "2.0"

    answer = manage.ScaleWorker(
        management_pb2.ScaleWorkerRequest(
            model_name="versioned", model_version="1.0", min_worker=2, synchronous=True
        ),
        timeout=TIMEOUT_S,
    )
    assert answer.msg == "Workers scaled to 2 for model: versioned, version: 1.0"
    err = rpc_error(
        manage.ScaleWorker,
        management_pb2.ScaleWorkerRequest(model_name="versioned", min_worker=3, max_worker=2),
    )
    assert (err.code(), err.details().split("\n")[0]) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "max_worker cannot be less than min_worker.",
    )

    err = rpc_error(manage.UnregisterModel, management_pb2.UnregisterModelRequest(model_name="versioned"))
    assert (err.code(), err.details().split("\n")[0]) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "Cannot remove default version for model versioned",
    )
    answer = manage.UnregisterModel(
        management_pb2.UnregisterModelRequest(model_name="versioned", model_version="1.0"), timeout=TIMEOUT_S
    )
    assert answer.msg == 'Model "versioned" unregistered'
    listing = orjson.loads(manage.ListModels(management_pb2.ListModelsRequest(), timeout=TIMEOUT_S).msg)
    names = [m["modelName"] for m in listing["models"]]
    assert names == sorted(names)
    assert {"echo", "versioned"} <= set(names)
    page = orjson.loads(manage.ListModels(management_pb2.ListModelsRequest(limit=2), timeout=TIMEOUT_S).msg)
    assert page["nextPageToken"] == "2"
    assert len(page["models"]) == 2
    manage.UnregisterModel(management_pb2.UnregisterModelRequest(model_name="versioned"), timeout=TIMEOUT_S)
    err = rpc_error(manage.DescribeModel, management_pb2.DescribeModelRequest(model_name="versioned"))
    assert err.code() == grpc.StatusCode.NOT_FOUND


def test_register_errors(manage: management_pb2_grpc.ManagementAPIsServiceStub) -> None:
    cases = [
        (
            management_pb2.RegisterModelRequest(),
            grpc.StatusCode.INVALID_ARGUMENT,
            "Parameter url is required.",
        ),
        (
            management_pb2.RegisterModelRequest(url="missing.mar"),
            grpc.StatusCode.NOT_FOUND,
            "Model not found at: missing.mar",
        ),
        (
            management_pb2.RegisterModelRequest(url="echo.mar", runtime="python4"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "Invalid RuntimeType value: python4",
        ),
    ]
    for request, code, message in cases:
        err = rpc_error(manage.RegisterModel, request)
        assert (err.code(), err.details().split("\n")[0]) == (code, message)


def test_describe_customized_metadata(manage: management_pb2_grpc.ManagementAPIsServiceStub) -> None:
    request = management_pb2.RegisterModelRequest(url="describe.mar", initial_workers=1, synchronous=True)
    manage.RegisterModel(request, timeout=60)
    try:
        answer = manage.DescribeModel(
            management_pb2.DescribeModelRequest(model_name="describe", customized=True), timeout=TIMEOUT_S
        )
        [described] = orjson.loads(answer.msg)
        assert described["customizedMetadata"] == {"data1": "1", "data2": "2", "model": "describe"}
    finally:
        manage.UnregisterModel(
            management_pb2.UnregisterModelRequest(model_name="describe"), timeout=TIMEOUT_S
        )


# ------------------------------------------------------------------------------------------------
# Open Inference Protocol, model API off, TLS refusal
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def oip_srv(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmberServer]:
    config = {"ts_open_inference_protocol": "true", "service_envelope": "kservev2"}
    with EmberServer(
        tmp_path_factory.mktemp("oip-run"), store, models=["echo=echo.mar"], extra_config=config
    ) as s:
        yield s


def test_tritonclient_against_the_open_inference_protocol(oip_srv: EmberServer) -> None:
    np = pytest.importorskip("numpy")
    tritonclient = pytest.importorskip("tritonclient.grpc")
    client = tritonclient.InferenceServerClient(url=f"127.0.0.1:{oip_srv.ports['grpc_inference']}")
    try:
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.is_model_ready("echo")
        assert list(client.get_model_metadata("echo").versions) == ["1.0"]
        values = np.array([[1.5, 2.0, -3.25, 4.0]], dtype=np.float32)
        tensor = tritonclient.InferInput("input-0", [1, 4], "FP32")
        tensor.set_data_from_numpy(values)
        result = client.infer("echo", [tensor], request_id="req-1")
        assert result.get_response().id == "req-1"
        [output] = result.get_response().outputs
        np.testing.assert_allclose(result.as_numpy(output.name).reshape(-1), values.reshape(-1))
        with pytest.raises(tritonclient.InferenceServerException):
            client.infer("nosuch", [tensor])
    finally:
        client.close()


def test_oip_under_torchserves_service_name_with_typed_contents(oip_srv: EmberServer) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{oip_srv.ports['grpc_inference']}") as channel:
        stub = oip_pb2_grpc.GRPCInferenceServiceStub(channel)
        assert stub.ServerLive(oip_pb2.ServerLiveRequest(), timeout=TIMEOUT_S).live
        tensor = oip_pb2.ModelInferRequest.InferInputTensor(name="input-0", datatype="INT32", shape=[3])
        tensor.contents.int_contents.extend([1, 2, 3])
        answer = stub.ModelInfer(
            oip_pb2.ModelInferRequest(model_name="echo", inputs=[tensor]), timeout=TIMEOUT_S
        )
        [output] = answer.outputs
        assert not answer.raw_output_contents
        assert answer.model_name == "echo"
        contents = output.contents
        assert [*contents.int_contents, *contents.int64_contents, *contents.fp64_contents] == [1, 2, 3]


def test_model_api_off_denies_registration(oip_srv: EmberServer) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{oip_srv.ports['grpc_management']}") as channel:
        stub = management_pb2_grpc.ManagementAPIsServiceStub(channel)
        err = rpc_error(stub.RegisterModel, management_pb2.RegisterModelRequest(url="echo.mar"))
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED
        err = rpc_error(stub.UnregisterModel, management_pb2.UnregisterModelRequest(model_name="echo"))
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "echo" in stub.ListModels(management_pb2.ListModelsRequest(), timeout=TIMEOUT_S).msg


def test_grpc_ssl_without_a_certificate_is_refused_at_startup(store: Path, tmp_path: Path) -> None:
    server = EmberServer(tmp_path, store, extra_config={"enable_grpc_ssl": "true"}, wait_healthy=False)
    with contextlib.suppress(RuntimeError):  # it may exit before or after its HTTP port opened
        server.start()
    assert server.proc is not None
    assert server.proc.wait(TIMEOUT_S) == 2
    assert "enable_grpc_ssl=true needs a certificate: set certificate_file" in server.console_text()
    server.proc = None


def test_concurrent_predictions_all_answer(infer: inference_pb2_grpc.InferenceAPIsServiceStub) -> None:
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        bodies = [f"r{i}".encode() for i in range(40)]
        answers = list(pool.map(lambda b: predict(infer, "echo", b), bodies))
    assert answers == bodies
