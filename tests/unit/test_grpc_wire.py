"""gRPC edge without workers: protos and stubs, servicers over real gRPC with fake services, OIP codec.

Servers are started with :func:`emberserve.grpc.start_grpc` on port 0 against fake inference and
management services, and called with the generated stubs (and tritonclient's aio client for the
Open Inference Protocol).
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import orjson
import pytest
from google.protobuf import descriptor, empty_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from emberserve.errors import (
    ConfigError,
    ConflictError,
    InvalidModelVersionError,
    ModelNotFoundError,
    ModelVersionNotFoundError,
    PredictionError,
    ServerError,
)
from emberserve.grpc import oip_codec as codec
from emberserve.grpc import start_grpc
from emberserve.grpc.generated import inference_pb2, inference_pb2_grpc, management_pb2, management_pb2_grpc
from emberserve.grpc.generated import open_inference_grpc_pb2 as oip_pb2
from emberserve.grpc.generated import open_inference_grpc_pb2_grpc as oip_pb2_grpc
from emberserve.grpc.inference_servicer import _Backlog
from emberserve.management import Answer, RegisterRequest
from emberserve.workers.protocol import Request, Result

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ROOT / "src" / "emberserve" / "grpc" / "generated"


def run(coro: Coroutine[Any, Any, Any], timeout_s: float = 20.0) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout_s))


# ------------------------------------------------------------------------------------------------
# Protos and stubs
# ------------------------------------------------------------------------------------------------


def test_committed_stubs_are_up_to_date(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable}
    subprocess.run(
        ["bash", str(ROOT / "scripts" / "gen_protos.sh"), str(tmp_path)], check=True, env=env, timeout=60
    )
    fresh = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    committed = {p.name: p.read_bytes() for p in GENERATED.iterdir() if p.is_file()}
    assert sorted(fresh) == sorted(committed)
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"run scripts/gen_protos.sh: {stale} differ from the protos"


TYPE_NAMES = {
    descriptor.FieldDescriptor.TYPE_STRING: "string",
    descriptor.FieldDescriptor.TYPE_BYTES: "bytes",
    descriptor.FieldDescriptor.TYPE_BOOL: "bool",
    descriptor.FieldDescriptor.TYPE_INT32: "int32",
    descriptor.FieldDescriptor.TYPE_INT64: "int64",
    descriptor.FieldDescriptor.TYPE_UINT32: "uint32",
    descriptor.FieldDescriptor.TYPE_UINT64: "uint64",
    descriptor.FieldDescriptor.TYPE_FLOAT: "float",
    descriptor.FieldDescriptor.TYPE_DOUBLE: "double",
}


def field_signature(f: descriptor.FieldDescriptor) -> str:
    if f.message_type is not None and f.message_type.GetOptions().map_entry:
        key, value = f.message_type.fields_by_name["key"], f.message_type.fields_by_name["value"]
        return f"map<{field_signature(key)},{field_signature(value)}>"
    kind = f.message_type.full_name if f.message_type is not None else TYPE_NAMES[f.type]
    if f.is_repeated:
        return f"repeated {kind}"
    if f.containing_oneof is not None and f.containing_oneof.name == f"_{f.name}":
        return f"optional {kind}"
    return kind


def message_table(message: descriptor.Descriptor) -> dict[str, tuple[int, str]]:
    return {f.name: (f.number, field_signature(f)) for f in message.fields}


INF = "org.pytorch.serve.grpc.inference."
MGMT = "org.pytorch.serve.grpc.management."
OIP = "org.pytorch.serve.grpc.openinference."

#: TorchServe 0.12's messages (reference §11) and the KServe v2 ones: name → {field: (number, type)}.
EXPECTED_MESSAGES: dict[str, dict[str, tuple[int, str]]] = {
    INF + "PredictionsRequest": {
        "model_name": (1, "string"),
        "model_version": (2, "string"),
        "input": (3, "map<string,bytes>"),
        "sequence_id": (4, "optional string"),
    },
    INF + "PredictionResponse": {
        "prediction": (1, "bytes"),
        "sequence_id": (2, "optional string"),
        "status": (3, "optional google.rpc.Status"),
    },
    INF + "TorchServeHealthResponse": {"health": (1, "string")},
    MGMT + "ManagementResponse": {"msg": (1, "string")},
    MGMT + "DescribeModelRequest": {
        "model_name": (1, "string"),
        "model_version": (2, "string"),
        "customized": (3, "bool"),
    },
    MGMT + "ListModelsRequest": {"limit": (1, "int32"), "next_page_token": (2, "int32")},
    MGMT + "RegisterModelRequest": {
        "batch_size": (1, "int32"),
        "handler": (2, "string"),
        "initial_workers": (3, "int32"),
        "max_batch_delay": (4, "int32"),
        "model_name": (5, "string"),
        "response_timeout": (6, "int32"),
        "runtime": (7, "string"),
        "synchronous": (8, "bool"),
        "url": (9, "string"),
        "s3_sse_kms": (10, "bool"),
        "startup_timeout": (11, "int32"),
    },
    MGMT + "ScaleWorkerRequest": {
        "model_name": (1, "string"),
        "model_version": (2, "string"),
        "max_worker": (3, "int32"),
        "min_worker": (4, "int32"),
        "number_gpu": (5, "int32"),
        "synchronous": (6, "bool"),
        "timeout": (7, "int32"),
    },
    MGMT + "SetDefaultRequest": {"model_name": (1, "string"), "model_version": (2, "string")},
    MGMT + "UnregisterModelRequest": {"model_name": (1, "string"), "model_version": (2, "string")},
    OIP + "ServerLiveRequest": {},
    OIP + "ServerLiveResponse": {"live": (1, "bool")},
    OIP + "ServerReadyRequest": {},
    OIP + "ServerReadyResponse": {"ready": (1, "bool")},
    OIP + "ModelReadyRequest": {"name": (1, "string"), "version": (2, "string")},
    OIP + "ModelReadyResponse": {"ready": (1, "bool")},
    OIP + "ServerMetadataRequest": {},
    OIP + "ServerMetadataResponse": {
        "name": (1, "string"),
        "version": (2, "string"),
        "extensions": (3, "repeated string"),
    },
    OIP + "ModelMetadataRequest": {"name": (1, "string"), "version": (2, "string")},
    OIP + "ModelMetadataResponse": {
        "name": (1, "string"),
        "versions": (2, "repeated string"),
        "platform": (3, "string"),
        "inputs": (4, f"repeated {OIP}ModelMetadataResponse.TensorMetadata"),
        "outputs": (5, f"repeated {OIP}ModelMetadataResponse.TensorMetadata"),
    },
    OIP + "ModelMetadataResponse.TensorMetadata": {
        "name": (1, "string"),
        "datatype": (2, "string"),
        "shape": (3, "repeated int64"),
    },
    OIP + "ModelInferRequest": {
        "model_name": (1, "string"),
        "model_version": (2, "string"),
        "id": (3, "string"),
        "parameters": (4, f"map<string,{OIP}InferParameter>"),
        "inputs": (5, f"repeated {OIP}ModelInferRequest.InferInputTensor"),
        "outputs": (6, f"repeated {OIP}ModelInferRequest.InferRequestedOutputTensor"),
        "raw_input_contents": (7, "repeated bytes"),
    },
    OIP + "ModelInferRequest.InferInputTensor": {
        "name": (1, "string"),
        "datatype": (2, "string"),
        "shape": (3, "repeated int64"),
        "parameters": (4, f"map<string,{OIP}InferParameter>"),
        "contents": (5, f"{OIP}InferTensorContents"),
    },
    OIP + "ModelInferRequest.InferRequestedOutputTensor": {
        "name": (1, "string"),
        "parameters": (2, f"map<string,{OIP}InferParameter>"),
    },
    OIP + "ModelInferResponse": {
        "model_name": (1, "string"),
        "model_version": (2, "string"),
        "id": (3, "string"),
        "parameters": (4, f"map<string,{OIP}InferParameter>"),
        "outputs": (5, f"repeated {OIP}ModelInferResponse.InferOutputTensor"),
        "raw_output_contents": (6, "repeated bytes"),
    },
    OIP + "ModelInferResponse.InferOutputTensor": {
        "name": (1, "string"),
        "datatype": (2, "string"),
        "shape": (3, "repeated int64"),
        "parameters": (4, f"map<string,{OIP}InferParameter>"),
        "contents": (5, f"{OIP}InferTensorContents"),
    },
    OIP + "InferParameter": {
        "bool_param": (1, "bool"),
        "int64_param": (2, "int64"),
        "string_param": (3, "string"),
    },
    OIP + "InferTensorContents": {
        "bool_contents": (1, "repeated bool"),
        "int_contents": (2, "repeated int32"),
        "int64_contents": (3, "repeated int64"),
        "uint_contents": (4, "repeated uint32"),
        "uint64_contents": (5, "repeated uint64"),
        "fp32_contents": (6, "repeated float"),
        "fp64_contents": (7, "repeated double"),
        "bytes_contents": (8, "repeated bytes"),
    },
}

#: service → {rpc: (request, response, client streaming, server streaming)}
EXPECTED_SERVICES: dict[str, dict[str, tuple[str, str, bool, bool]]] = {
    INF + "InferenceAPIsService": {
        "Ping": ("google.protobuf.Empty", INF + "TorchServeHealthResponse", False, False),
        "Predictions": (INF + "PredictionsRequest", INF + "PredictionResponse", False, False),
        "StreamPredictions": (INF + "PredictionsRequest", INF + "PredictionResponse", False, True),
        "StreamPredictions2": (INF + "PredictionsRequest", INF + "PredictionResponse", True, True),
    },
    MGMT + "ManagementAPIsService": {
        rpc: (MGMT + request, MGMT + "ManagementResponse", False, False)
        for rpc, request in [
            ("DescribeModel", "DescribeModelRequest"),
            ("ListModels", "ListModelsRequest"),
            ("RegisterModel", "RegisterModelRequest"),
            ("ScaleWorker", "ScaleWorkerRequest"),
            ("SetDefault", "SetDefaultRequest"),
            ("UnregisterModel", "UnregisterModelRequest"),
        ]
    },
    OIP + "GRPCInferenceService": {
        rpc: (OIP + rpc + "Request", OIP + rpc + "Response", False, False)
        for rpc in [
            "ServerLive",
            "ServerReady",
            "ModelReady",
            "ServerMetadata",
            "ModelMetadata",
            "ModelInfer",
        ]
    },
}

FILES = {
    "inference.proto": inference_pb2,
    "management.proto": management_pb2,
    "open_inference_grpc.proto": oip_pb2,
}


def _all_messages() -> dict[str, descriptor.Descriptor]:
    found: dict[str, descriptor.Descriptor] = {}

    def visit(message: descriptor.Descriptor) -> None:
        if message.GetOptions().map_entry:
            return
        found[message.full_name] = message
        for nested in message.nested_types:
            visit(nested)

    for module in FILES.values():
        for message in module.DESCRIPTOR.message_types_by_name.values():
            visit(message)
    return found


def test_file_names_and_packages_are_torchserves() -> None:
    assert {name: m.DESCRIPTOR.package for name, m in FILES.items()} == {
        "inference.proto": "org.pytorch.serve.grpc.inference",
        "management.proto": "org.pytorch.serve.grpc.management",
        "open_inference_grpc.proto": "org.pytorch.serve.grpc.openinference",
    }
    assert {name: m.DESCRIPTOR.name for name, m in FILES.items()} == {name: name for name in FILES}


def test_every_message_matches_the_wire_table() -> None:
    messages = _all_messages()
    assert sorted(messages) == sorted(EXPECTED_MESSAGES)
    for name, expected in EXPECTED_MESSAGES.items():
        assert message_table(messages[name]) == expected, name
    choice = messages[OIP + "InferParameter"].oneofs_by_name["parameter_choice"]
    assert [f.name for f in choice.fields] == ["bool_param", "int64_param", "string_param"]


def test_every_service_matches_the_wire_table() -> None:
    services = {s.full_name: s for m in FILES.values() for s in m.DESCRIPTOR.services_by_name.values()}
    assert sorted(services) == sorted(EXPECTED_SERVICES)
    for name, rpcs in EXPECTED_SERVICES.items():
        actual = {
            m.name: (m.input_type.full_name, m.output_type.full_name, m.client_streaming, m.server_streaming)
            for m in services[name].methods
        }
        assert actual == rpcs, name


def test_an_encoded_request_decodes_with_raw_field_numbers() -> None:
    # Field numbers on the wire, checked byte by byte: tag = number << 3 | wire type.
    message = inference_pb2.PredictionsRequest(model_name="m", model_version="2", sequence_id="s")
    assert message.SerializeToString() == b"\x0a\x01m" + b"\x12\x012" + b"\x22\x01s"
    scale = management_pb2.ScaleWorkerRequest(min_worker=3, timeout=9)
    assert scale.SerializeToString() == b"\x20\x03" + b"\x38\x09"


# ------------------------------------------------------------------------------------------------
# Fakes
# ------------------------------------------------------------------------------------------------


def entry(name: str, version: str = "1.0", *, live: int = 1, min_workers: int = 1) -> Any:
    pool = SimpleNamespace(live_workers=live, settings=SimpleNamespace(min_workers=min_workers))
    return SimpleNamespace(name=name, version=version, pool=pool)


def result(body: bytes, request_id: str = "r") -> Result:
    return Result(request_id, 200, "", [], None, body)


Behaviour = Callable[[Any, Request, Callable[[Result], None] | None], Awaitable[Result]]


async def echo(entry: Any, request: Request, on_chunk: Callable[[Result], None] | None) -> Result:
    return result(b"|".join(i.value for i in request.inputs))


class FakeInference:
    def __init__(self) -> None:
        self.models = {("echo", "1.0"): entry("echo"), ("echo", "2.0"): entry("echo", "2.0")}
        self.default = {"echo": "1.0"}
        self.requests: list[Request] = []
        self.behaviour: Behaviour = echo
        self.is_healthy = True
        self.cancelled = asyncio.Event()

    def lookup(self, name: str, version: str | None) -> Any:
        if name not in self.default:
            raise ModelNotFoundError(f"Model not found: {name}")
        found = self.models.get((name, version or self.default[name]))
        if found is None:
            raise ModelVersionNotFoundError(f"Model version: {version} does not exist for model: {name}")
        return found

    async def predict(
        self, entry: Any, request: Request, on_chunk: Callable[[Result], None] | None = None
    ) -> Result:
        self.requests.append(request)
        try:
            return await self.behaviour(entry, request, on_chunk)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise

    def healthy(self) -> bool:
        return self.is_healthy


@dataclass
class FakeManagement:
    calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = field(default_factory=list)
    error: ServerError | None = None

    def _record(self, name: str, *args: Any, **kwargs: Any) -> None:
        self.calls.append((name, args, kwargs))
        if self.error is not None:
            raise self.error

    async def register(self, req: RegisterRequest) -> Answer:
        self._record("register", req)
        return Answer(200, f'Model "{req.model_name}" Version: 1.0 registered with 1 initial workers')

    async def scale(
        self,
        name: str,
        version: str | None,
        min_worker: int | None,
        max_worker: int | None,
        *,
        synchronous: bool,
        timeout_s: int | None = None,
    ) -> Answer:
        self._record(
            "scale", name, version, min_worker, max_worker, synchronous=synchronous, timeout_s=timeout_s
        )
        return Answer(202, "Processing worker updates...")

    def describe(self, name: str, version: str | None) -> list[dict[str, object]]:
        self._record("describe", name, version)
        versions = ["1.0", "2.0"] if version == "all" else [version or "1.0"]
        return [{"modelName": name, "modelVersion": v, "workers": []} for v in versions]

    async def customized_metadata(self, name: str, version: str | None) -> object:
        self._record("customized_metadata", name, version)
        return {"labels": 3}

    def list_models(self, limit: int | None, next_page_token: int | None) -> dict[str, object]:
        self._record("list_models", limit, next_page_token)
        return {"models": [{"modelName": "echo", "modelUrl": "echo.mar"}]}

    async def set_default(self, name: str, version: str) -> Answer:
        self._record("set_default", name, version)
        return Answer(200, f'Default version successfully updated for model "{name}" to "{version}"')

    async def unregister(self, name: str, version: str | None) -> Answer:
        self._record("unregister", name, version)
        return Answer(200, f'Model "{name}" unregistered')


@dataclass
class FakeConfig:
    grpc_inference_address: str = "127.0.0.1"
    grpc_inference_port: int = 0
    grpc_management_address: str = "127.0.0.1"
    grpc_management_port: int = 0
    enable_grpc_ssl: bool = False
    ts_open_inference_protocol: bool = True
    max_request_size: int = 6553500
    max_response_size: int = 6553500
    enable_model_api: bool = True
    grpc_inference_max_connection_age_ms: int | None = None
    grpc_management_max_connection_age_ms: int | None = None
    grpc_inference_max_connection_age_grace_ms: int | None = None
    grpc_management_max_connection_age_grace_ms: int | None = None
    certificate_file: Path | None = None
    private_key_file: Path | None = None
    keystore: Path | None = None
    keystore_pass: str | None = None
    keystore_type: str = "PKCS12"


@dataclass
class Stack:
    inference: FakeInference
    management: FakeManagement
    infer: inference_pb2_grpc.InferenceAPIsServiceStub
    manage: management_pb2_grpc.ManagementAPIsServiceStub
    oip: oip_pb2_grpc.GRPCInferenceServiceStub
    inference_channel: grpc.aio.Channel
    management_channel: grpc.aio.Channel
    inference_port: int


@asynccontextmanager
async def serving(config: FakeConfig | None = None) -> AsyncIterator[Stack]:
    inference, management = FakeInference(), FakeManagement()
    servers = await start_grpc(config or FakeConfig(), inference, management)
    inf_channel = grpc.aio.insecure_channel(f"127.0.0.1:{servers.inference_port}")
    mgmt_channel = grpc.aio.insecure_channel(f"127.0.0.1:{servers.management_port}")
    try:
        yield Stack(
            inference,
            management,
            inference_pb2_grpc.InferenceAPIsServiceStub(inf_channel),
            management_pb2_grpc.ManagementAPIsServiceStub(mgmt_channel),
            oip_pb2_grpc.GRPCInferenceServiceStub(inf_channel),
            inf_channel,
            mgmt_channel,
            servers.inference_port,
        )
    finally:
        await inf_channel.close()
        await mgmt_channel.close()
        await servers.stop(0)


def rich_details(err: grpc.aio.AioRpcError) -> status_pb2.Status:
    metadata = err.trailing_metadata() or ()
    [raw] = [value for key, value in metadata if key == "grpc-status-details-bin"]
    return status_pb2.Status.FromString(raw)


def error_info(status: status_pb2.Status) -> error_details_pb2.ErrorInfo:
    [packed] = status.details
    info = error_details_pb2.ErrorInfo()
    assert packed.Unpack(info)
    return info


async def expect_error(call: Awaitable[Any], code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == code, caught.value.details()
    return caught.value


# ------------------------------------------------------------------------------------------------
# InferenceAPIsService
# ------------------------------------------------------------------------------------------------


def test_ping_sends_the_rest_json_without_trailing_newline() -> None:
    async def scenario() -> None:
        async with serving() as s:
            answer = await s.infer.Ping(empty_pb2.Empty())
            assert answer.health == '{\n  "status": "Healthy"\n}'
            s.inference.is_healthy = False
            answer = await s.infer.Ping(empty_pb2.Empty())
            assert answer.health == '{\n  "status": "Unhealthy"\n}'

    run(scenario())


def test_predictions_pass_inputs_undecoded_and_without_headers() -> None:
    async def scenario() -> None:
        async with serving() as s:
            request = inference_pb2.PredictionsRequest(
                model_name="echo", input={"data": b'{"a":1}', "other": b"x"}
            )
            answer = await s.infer.Predictions(request)
            [job] = s.inference.requests
            assert job.kind == "predict"
            assert job.headers == []
            assert sorted((i.name, i.content_type, i.value) for i in job.inputs) == [
                ("data", "", b'{"a":1}'),
                ("other", "", b"x"),
            ]
            assert sorted(answer.prediction.split(b"|")) == sorted([b'{"a":1}', b"x"])
            assert not answer.HasField("status")

    run(scenario())


def test_predictions_use_the_requested_version() -> None:
    async def scenario() -> None:
        seen: list[str] = []

        async def version(entry: Any, request: Request, on_chunk: Any) -> Result:
            seen.append(entry.version)
            return result(entry.version.encode())

        async with serving() as s:
            s.inference.behaviour = version
            assert (
                await s.infer.Predictions(inference_pb2.PredictionsRequest(model_name="echo"))
            ).prediction == b"1.0"
            request = inference_pb2.PredictionsRequest(model_name="echo", model_version="2.0")
            assert (await s.infer.Predictions(request)).prediction == b"2.0"

    run(scenario())


def test_a_streaming_handler_on_a_unary_call_answers_the_whole_stream() -> None:
    async def scenario() -> None:
        async def streams(entry: Any, request: Request, on_chunk: Any) -> Result:
            for i in range(3):
                on_chunk(result(f"part{i} ".encode()))
            return result(b"final")

        async with serving() as s:
            s.inference.behaviour = streams
            answer = await s.infer.Predictions(inference_pb2.PredictionsRequest(model_name="echo"))
            assert answer.prediction == b"part0 part1 part2 final"

    run(scenario())


@pytest.mark.parametrize(
    ("request_kwargs", "code", "details"),
    [
        (
            {"model_name": "nosuch"},
            grpc.StatusCode.NOT_FOUND,
            "Model not found: nosuch\nModelNotFoundException",
        ),
        (
            {"model_name": "echo", "model_version": "9.9"},
            grpc.StatusCode.NOT_FOUND,
            "Model version: 9.9 does not exist for model: echo\nModelVersionNotFoundException",
        ),
        ({}, grpc.StatusCode.INVALID_ARGUMENT, "Parameter model_name is required.\nBadRequestException"),
    ],
)
def test_prediction_lookup_errors(
    request_kwargs: dict[str, str], code: grpc.StatusCode, details: str
) -> None:
    async def scenario() -> None:
        async with serving() as s:
            err = await expect_error(
                s.infer.Predictions(inference_pb2.PredictionsRequest(**request_kwargs)), code
            )
            assert err.details() == details
            status = rich_details(err)
            assert status.code == code.value[0]
            assert status.message == details
            info = error_info(status)
            assert (info.domain, info.reason) == ("emberserve", details.split("\n")[1])
            assert not s.inference.requests

    run(scenario())


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (PredictionError("Prediction failed", 503), grpc.StatusCode.UNAVAILABLE),
        (PredictionError("custom prediction error", 418), grpc.StatusCode.FAILED_PRECONDITION),
        (PredictionError("Out of resources", 507), grpc.StatusCode.INTERNAL),
        (ConflictError("busy"), grpc.StatusCode.ALREADY_EXISTS),
    ],
)
def test_handler_errors_keep_torchserves_codes(error: ServerError, code: grpc.StatusCode) -> None:
    async def scenario() -> None:
        async def fails(entry: Any, request: Request, on_chunk: Any) -> Result:
            raise error

        async with serving() as s:
            s.inference.behaviour = fails
            err = await expect_error(
                s.infer.Predictions(inference_pb2.PredictionsRequest(model_name="echo")), code
            )
            assert err.details().split("\n")[0] == error.message

    run(scenario())


def test_an_unexpected_exception_is_internal_and_hidden() -> None:
    async def scenario() -> None:
        async def crashes(entry: Any, request: Request, on_chunk: Any) -> Result:
            raise KeyError("secret internals")

        async with serving() as s:
            s.inference.behaviour = crashes
            err = await expect_error(
                s.infer.Predictions(inference_pb2.PredictionsRequest(model_name="echo")),
                grpc.StatusCode.INTERNAL,
            )
            assert err.details() == "Internal server error\nInternalServerException"

    run(scenario())


def test_client_deadline_cancels_the_job() -> None:
    async def scenario() -> None:
        async def slow(entry: Any, request: Request, on_chunk: Any) -> Result:
            await asyncio.sleep(30)
            return result(b"late")

        async with serving() as s:
            s.inference.behaviour = slow
            await expect_error(
                s.infer.Predictions(inference_pb2.PredictionsRequest(model_name="echo"), timeout=0.2),
                grpc.StatusCode.DEADLINE_EXCEEDED,
            )
            await asyncio.wait_for(s.inference.cancelled.wait(), 5)
            s.inference.behaviour = echo
            answer = await s.infer.Predictions(
                inference_pb2.PredictionsRequest(model_name="echo", input={"a": b"1"})
            )
            assert answer.prediction == b"1"

    run(scenario())


def test_stream_predictions_sends_each_part_then_the_final_answer() -> None:
    async def scenario() -> None:
        async def streams(entry: Any, request: Request, on_chunk: Any) -> Result:
            for i in range(3):
                on_chunk(result(f"part{i} ".encode()))
                await asyncio.sleep(0)
            return result(b"final")

        async with serving() as s:
            s.inference.behaviour = streams
            call = s.infer.StreamPredictions(inference_pb2.PredictionsRequest(model_name="echo"))
            assert [m.prediction async for m in call] == [b"part0 ", b"part1 ", b"part2 ", b"final"]
            s.inference.behaviour = echo
            call = s.infer.StreamPredictions(
                inference_pb2.PredictionsRequest(model_name="echo", input={"a": b"x"})
            )
            assert [m.prediction async for m in call] == [b"x"]

    run(scenario())


def test_stream_predictions_error_after_parts_ends_the_stream_with_its_status() -> None:
    async def scenario() -> None:
        async def fails_midway(entry: Any, request: Request, on_chunk: Any) -> Result:
            on_chunk(result(b"part0"))
            raise PredictionError("Prediction failed", 503)

        async with serving() as s:
            s.inference.behaviour = fails_midway
            call = s.infer.StreamPredictions(inference_pb2.PredictionsRequest(model_name="echo"))
            received = []

            async def read_all() -> None:
                async for message in call:
                    received.append(message.prediction)

            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await read_all()
            assert received == [b"part0"]
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
            call = s.infer.StreamPredictions(inference_pb2.PredictionsRequest(model_name="nosuch"))
            await expect_error(call.read(), grpc.StatusCode.NOT_FOUND)

    run(scenario())


def test_cancelling_a_stream_cancels_the_job() -> None:
    async def scenario() -> None:
        async def endless(entry: Any, request: Request, on_chunk: Any) -> Result:
            while True:
                on_chunk(result(b"tick"))
                await asyncio.sleep(0.01)

        async with serving() as s:
            s.inference.behaviour = endless
            call = s.infer.StreamPredictions(inference_pb2.PredictionsRequest(model_name="echo"))
            assert (await call.read()).prediction == b"tick"
            call.cancel()
            await asyncio.wait_for(s.inference.cancelled.wait(), 5)

    run(scenario())


def test_backlog_overflow_is_resource_exhausted() -> None:
    async def scenario() -> None:
        backlog = _Backlog(max_bytes=10)
        backlog.put(result(b"12345"))
        assert await backlog.get() == b"12345"
        backlog.put(result(b"123456"))
        backlog.put(result(b"123456"))  # 12 bytes waiting > 10
        backlog.put(result(b"more"))  # ignored once overflowed
        assert await backlog.get() == b"123456"
        with pytest.raises(ServerError) as caught:
            await backlog.get()
        assert caught.value.grpc_code == "RESOURCE_EXHAUSTED"

    run(scenario())


def test_stream_predictions2_answers_errors_in_the_stream() -> None:
    async def scenario() -> None:
        async with serving() as s:
            call = s.infer.StreamPredictions2()
            await call.write(inference_pb2.PredictionsRequest(model_name="echo"))
            first = await call.read()
            await call.write(inference_pb2.PredictionsRequest(model_name="echo", sequence_id="seq-1"))
            second = await call.read()
            await call.write(inference_pb2.PredictionsRequest(model_name="nosuch", sequence_id="seq-2"))
            third = await call.read()
            await call.done_writing()
            assert await call.read() == grpc.aio.EOF
            assert await call.code() == grpc.StatusCode.OK

            assert first.status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
            assert first.status.message == "Parameter sequenceId is required."
            assert error_info(first.status).reason == "BadRequestException"
            assert not first.HasField("sequence_id")
            assert second.status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
            assert "not a sequence (stateful) model" in second.status.message
            assert second.sequence_id == "seq-1"
            assert third.status.code == grpc.StatusCode.NOT_FOUND.value[0]
            assert third.status.message == "Model not found: nosuch"
            assert not s.inference.requests

    run(scenario())


# ------------------------------------------------------------------------------------------------
# ManagementAPIsService
# ------------------------------------------------------------------------------------------------


def test_register_maps_proto3_defaults_to_not_given() -> None:
    async def scenario() -> None:
        async with serving() as s:
            answer = await s.manage.RegisterModel(
                management_pb2.RegisterModelRequest(url="noop.mar", model_name="noop")
            )
            assert answer.msg == 'Model "noop" Version: 1.0 registered with 1 initial workers'
            full = management_pb2.RegisterModelRequest(
                url="x.mar",
                handler="h:handle",
                runtime="python",
                batch_size=4,
                max_batch_delay=50,
                initial_workers=2,
                synchronous=True,
                response_timeout=9,
                startup_timeout=7,
                s3_sse_kms=True,
            )
            await s.manage.RegisterModel(full)
            [(_, (bare,), _), (_, (given,), _)] = s.management.calls
            assert bare == RegisterRequest(url="noop.mar", model_name="noop", synchronous=False)
            assert given == RegisterRequest(
                url="x.mar",
                handler="h:handle",
                runtime="python",
                batch_size=4,
                max_batch_delay=50,
                initial_workers=2,
                synchronous=True,
                response_timeout=9,
                startup_timeout=7,
                s3_sse_kms=True,
            )
            await s.manage.RegisterModel(management_pb2.RegisterModelRequest())
            assert s.management.calls[-1][1][0].url is None

    run(scenario())


def test_model_api_off_denies_register_and_unregister_only() -> None:
    async def scenario() -> None:
        async with serving(FakeConfig(enable_model_api=False)) as s:
            err = await expect_error(
                s.manage.RegisterModel(management_pb2.RegisterModelRequest(url="noop.mar")),
                grpc.StatusCode.PERMISSION_DENIED,
            )
            assert "enable_model_api=true" in err.details()
            await expect_error(
                s.manage.UnregisterModel(management_pb2.UnregisterModelRequest(model_name="echo")),
                grpc.StatusCode.PERMISSION_DENIED,
            )
            assert not s.management.calls
            await s.manage.ListModels(management_pb2.ListModelsRequest())
            assert [c[0] for c in s.management.calls] == ["list_models"]

    run(scenario())


def test_describe_and_list_send_rest_json_without_trailing_newline() -> None:
    async def scenario() -> None:
        async with serving() as s:
            answer = await s.manage.DescribeModel(management_pb2.DescribeModelRequest(model_name="echo"))
            assert (
                answer.msg
                == '[\n  {\n    "modelName": "echo",\n    "modelVersion": "1.0",\n    "workers": []\n  }\n]'
            )
            answer = await s.manage.DescribeModel(
                management_pb2.DescribeModelRequest(model_name="echo", model_version="2.0", customized=True)
            )
            assert orjson.loads(answer.msg) == [
                {
                    "modelName": "echo",
                    "modelVersion": "2.0",
                    "workers": [],
                    "customizedMetadata": {"labels": 3},
                }
            ]
            answer = await s.manage.DescribeModel(
                management_pb2.DescribeModelRequest(model_name="echo", model_version="all", customized=True)
            )
            assert [d["modelVersion"] for d in orjson.loads(answer.msg)] == ["1.0", "2.0"]
            listing = await s.manage.ListModels(management_pb2.ListModelsRequest())
            assert listing.msg == (
                '{\n  "models": [\n    {\n      "modelName": "echo",\n'
                '      "modelUrl": "echo.mar"\n    }\n  ]\n}'
            )
            await s.manage.ListModels(management_pb2.ListModelsRequest(limit=2, next_page_token=4))
            calls = [(name, args) for name, args, _ in s.management.calls]
            assert calls == [
                ("describe", ("echo", None)),
                ("describe", ("echo", "2.0")),
                ("customized_metadata", ("echo", "2.0")),
                ("describe", ("echo", "all")),
                ("list_models", (None, None)),
                ("list_models", (2, 4)),
            ]

    run(scenario())


def test_scale_set_default_and_unregister() -> None:
    async def scenario() -> None:
        async with serving() as s:
            answer = await s.manage.ScaleWorker(management_pb2.ScaleWorkerRequest(model_name="echo"))
            assert answer.msg == "Processing worker updates..."
            await s.manage.ScaleWorker(
                management_pb2.ScaleWorkerRequest(
                    model_name="echo",
                    model_version="2.0",
                    min_worker=2,
                    max_worker=3,
                    synchronous=True,
                    timeout=-1,
                )
            )
            answer = await s.manage.SetDefault(
                management_pb2.SetDefaultRequest(model_name="echo", model_version="2.0")
            )
            assert answer.msg == 'Default version successfully updated for model "echo" to "2.0"'
            answer = await s.manage.UnregisterModel(management_pb2.UnregisterModelRequest(model_name="echo"))
            assert answer.msg == 'Model "echo" unregistered'
            assert s.management.calls == [
                ("scale", ("echo", None, None, None), {"synchronous": False, "timeout_s": None}),
                ("scale", ("echo", "2.0", 2, 3), {"synchronous": True, "timeout_s": -1}),
                ("set_default", ("echo", "2.0"), {}),
                ("unregister", ("echo", None), {}),
            ]
            for call in (
                s.manage.ScaleWorker(management_pb2.ScaleWorkerRequest()),
                s.manage.UnregisterModel(management_pb2.UnregisterModelRequest()),
                s.manage.SetDefault(management_pb2.SetDefaultRequest(model_name="echo")),
                s.manage.DescribeModel(management_pb2.DescribeModelRequest()),
            ):
                await expect_error(call, grpc.StatusCode.INVALID_ARGUMENT)

    run(scenario())


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (
            ConflictError("Model version 1.0 is already registered for model noop"),
            grpc.StatusCode.ALREADY_EXISTS,
        ),
        (
            InvalidModelVersionError("Cannot remove default version for model v"),
            grpc.StatusCode.FAILED_PRECONDITION,
        ),
        (ModelNotFoundError("Model not found: nosuch"), grpc.StatusCode.NOT_FOUND),
    ],
)
def test_management_errors_use_precise_codes(error: ServerError, code: grpc.StatusCode) -> None:
    async def scenario() -> None:
        async with serving() as s:
            s.management.error = error
            err = await expect_error(
                s.manage.RegisterModel(management_pb2.RegisterModelRequest(url="noop.mar")), code
            )
            assert err.details() == f"{error.message}\n{error.type_name}"

    run(scenario())


# ------------------------------------------------------------------------------------------------
# Server: health, reflection, limits, configuration
# ------------------------------------------------------------------------------------------------


def test_health_and_reflection_are_served_on_both_ports() -> None:
    async def scenario() -> None:
        async with serving() as s:
            for channel, service in [
                (s.inference_channel, INF + "InferenceAPIsService"),
                (s.inference_channel, OIP + "GRPCInferenceService"),
                (s.management_channel, MGMT + "ManagementAPIsService"),
            ]:
                health = health_pb2_grpc.HealthStub(channel)
                for name in ("", service):
                    answer = await health.Check(health_pb2.HealthCheckRequest(service=name))
                    assert answer.status == health_pb2.HealthCheckResponse.SERVING
            reflect = reflection_pb2_grpc.ServerReflectionStub(s.inference_channel)
            call = reflect.ServerReflectionInfo()
            await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
            listed = await call.read()
            await call.done_writing()
            names = {svc.name for svc in listed.list_services_response.service}
            assert {
                INF + "InferenceAPIsService",
                OIP + "GRPCInferenceService",
                "grpc.health.v1.Health",
            } <= names

    run(scenario())


def test_oversized_request_is_resource_exhausted() -> None:
    async def scenario() -> None:
        async with serving(FakeConfig(max_request_size=1000)) as s:
            big = inference_pb2.PredictionsRequest(model_name="echo", input={"body": b"x" * 2000})
            await expect_error(s.infer.Predictions(big), grpc.StatusCode.RESOURCE_EXHAUSTED)
            small = inference_pb2.PredictionsRequest(model_name="echo", input={"body": b"x" * 500})
            assert (await s.infer.Predictions(small)).prediction == b"x" * 500

    run(scenario())


def test_oip_is_off_unless_enabled() -> None:
    async def scenario() -> None:
        async with serving(FakeConfig(ts_open_inference_protocol=False)) as s:
            await expect_error(s.oip.ServerLive(oip_pb2.ServerLiveRequest()), grpc.StatusCode.UNIMPLEMENTED)

    run(scenario())


def test_grpc_ssl_without_a_certificate_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="enable_grpc_ssl=true needs a certificate"):
        run(start_grpc(FakeConfig(enable_grpc_ssl=True), FakeInference(), FakeManagement()))


def test_a_busy_port_is_a_config_error_and_releases_the_other_port() -> None:
    async def scenario() -> None:
        async with serving() as s:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                free = probe.getsockname()[1]
            with pytest.raises(ConfigError, match="grpc_inference_port"):
                await start_grpc(
                    FakeConfig(grpc_inference_port=s.inference_port), FakeInference(), FakeManagement()
                )
            config = FakeConfig(grpc_inference_port=free, grpc_management_port=s.inference_port)
            with pytest.raises(ConfigError, match="grpc_management_port"):
                await start_grpc(config, FakeInference(), FakeManagement())
            servers = await start_grpc(
                FakeConfig(grpc_inference_port=free), FakeInference(), FakeManagement()
            )
            assert servers.inference_port == free
            await servers.stop(0)

    run(scenario())


# ------------------------------------------------------------------------------------------------
# Open Inference Protocol: servicer (tritonclient) and codec
# ------------------------------------------------------------------------------------------------


async def v2_echo(entry: Any, request: Request, on_chunk: Any) -> Result:
    """What the kservev2 envelope makes of an echo handler: each input tensor back as an output."""
    document = orjson.loads(request.inputs[0].value)
    outputs = [dict(t) for t in document["inputs"]]
    return result(
        orjson.dumps(
            {
                "id": document["id"],
                "model_name": entry.name,
                "model_version": entry.version,
                "outputs": outputs,
            }
        )
    )


def test_oip_metadata_and_readiness() -> None:
    async def scenario() -> None:
        async with serving() as s:
            assert (await s.oip.ServerLive(oip_pb2.ServerLiveRequest())).live
            assert (await s.oip.ServerReady(oip_pb2.ServerReadyRequest())).ready
            s.inference.is_healthy = False
            assert not (await s.oip.ServerReady(oip_pb2.ServerReadyRequest())).ready
            meta = await s.oip.ServerMetadata(oip_pb2.ServerMetadataRequest())
            assert (meta.name, meta.version, list(meta.extensions)) == (
                "Torchserve",
                "0.12.0",
                ["kserve", "kubeflow"],
            )
            assert (await s.oip.ModelReady(oip_pb2.ModelReadyRequest(name="echo"))).ready
            s.inference.models[("echo", "2.0")].pool.live_workers = 0
            assert not (await s.oip.ModelReady(oip_pb2.ModelReadyRequest(name="echo", version="2.0"))).ready
            await expect_error(
                s.oip.ModelReady(oip_pb2.ModelReadyRequest(name="nosuch")), grpc.StatusCode.NOT_FOUND
            )
            await expect_error(
                s.oip.ModelReady(oip_pb2.ModelReadyRequest()), grpc.StatusCode.INVALID_ARGUMENT
            )
            model = await s.oip.ModelMetadata(oip_pb2.ModelMetadataRequest(name="echo"))
            assert (model.name, list(model.versions), model.platform) == ("echo", ["1.0", "2.0"], "")

    run(scenario())


def test_tritonclient_infers_with_raw_contents() -> None:
    np = pytest.importorskip("numpy")
    tritonclient = pytest.importorskip("tritonclient.grpc.aio")

    async def scenario() -> None:
        async with serving() as s:
            s.inference.behaviour = v2_echo
            client = tritonclient.InferenceServerClient(url=f"127.0.0.1:{s.inference_port}")
            try:
                assert await client.is_server_live()
                assert await client.is_model_ready("echo")
                metadata = await client.get_model_metadata("echo")
                assert list(metadata.versions) == ["1.0", "2.0"]
                floats = np.array([[1.5, -2.0, 3.25, 0.0]], dtype=np.float32)
                ints = np.array([7, -8], dtype=np.int64)
                texts = np.array([b"hello", "wörld".encode()], dtype=np.object_)
                inputs = []
                for name, array, dtype in [
                    ("f", floats, "FP32"),
                    ("i", ints, "INT64"),
                    ("t", texts, "BYTES"),
                ]:
                    tensor = tritonclient.InferInput(name, list(array.shape), dtype)
                    tensor.set_data_from_numpy(array)
                    inputs.append(tensor)
                answer = await client.infer("echo", inputs, request_id="req-1")
                assert answer.get_response().id == "req-1"
                assert answer.get_response().model_version == "1.0"
                np.testing.assert_array_equal(answer.as_numpy("f"), floats)
                np.testing.assert_array_equal(answer.as_numpy("i"), ints)
                # BYTES reach the handler base64 encoded (as TorchServe sends them) and come back as text.
                sent = [base64.b64decode(v) for v in answer.as_numpy("t")]
                assert sent == [b"hello", "wörld".encode()]
                job = orjson.loads(s.inference.requests[-1].inputs[0].value)
                assert job["inputs"][0] == {
                    "name": "f",
                    "shape": [1, 4],
                    "datatype": "FP32",
                    "data": [1.5, -2.0, 3.25, 0.0],
                }
            finally:
                await client.close()

    run(scenario())


def test_oip_is_served_under_the_standard_name_too() -> None:
    async def scenario() -> None:
        async with serving() as s:
            call = s.inference_channel.unary_unary(
                "/inference.GRPCInferenceService/ServerLive",
                request_serializer=oip_pb2.ServerLiveRequest.SerializeToString,
                response_deserializer=oip_pb2.ServerLiveResponse.FromString,
            )
            assert (await call(oip_pb2.ServerLiveRequest())).live

    run(scenario())


def test_model_infer_with_typed_contents_answers_typed_contents() -> None:
    async def scenario() -> None:
        async with serving() as s:
            s.inference.behaviour = v2_echo
            tensor = oip_pb2.ModelInferRequest.InferInputTensor(name="x", datatype="FP64", shape=[2])
            tensor.contents.fp64_contents.extend([0.1, 0.2])
            answer = await s.oip.ModelInfer(
                oip_pb2.ModelInferRequest(model_name="echo", id="7", inputs=[tensor])
            )
            assert answer.id == "7"
            assert not answer.raw_output_contents
            [output] = answer.outputs
            assert (output.name, output.datatype, list(output.shape)) == ("x", "FP64", [2])
            assert list(output.contents.fp64_contents) == [0.1, 0.2]
            await expect_error(
                s.oip.ModelInfer(oip_pb2.ModelInferRequest(model_name="nosuch")), grpc.StatusCode.NOT_FOUND
            )
            bad = oip_pb2.ModelInferRequest.InferInputTensor(name="x", datatype="FP64", shape=[3])
            bad.contents.fp64_contents.extend([0.1])
            await expect_error(
                s.oip.ModelInfer(oip_pb2.ModelInferRequest(model_name="echo", inputs=[bad])),
                grpc.StatusCode.INVALID_ARGUMENT,
            )

    run(scenario())


@pytest.mark.parametrize(
    ("datatype", "values", "fmt"),
    [
        ("BOOL", [True, False], "?"),
        ("INT8", [-128, 127], "b"),
        ("INT16", [-3, 300], "h"),
        ("INT32", [-(2**31), 2**31 - 1], "i"),
        ("INT64", [-(2**63), 2**63 - 1], "q"),
        ("UINT8", [0, 255], "B"),
        ("UINT16", [1, 65535], "H"),
        ("UINT32", [0, 2**32 - 1], "I"),
        ("UINT64", [0, 2**64 - 1], "Q"),
        ("FP16", [1.5, -0.25], "e"),
        ("FP32", [1.5, -0.25], "f"),
        ("FP64", [0.1, -1e300], "d"),
    ],
)
def test_raw_round_trip_of_every_fixed_size_type(datatype: str, values: list[Any], fmt: str) -> None:
    raw = struct.pack(f"<{len(values)}{fmt}", *values)
    assert codec.decode_raw("x", datatype, raw, len(values)) == values
    assert codec.encode_raw("x", datatype, values) == raw


def test_bf16_is_the_upper_half_of_fp32() -> None:
    raw = struct.pack("<2H", 0x3FC0, 0xC040)  # 1.5, -3.0
    assert codec.decode_raw("x", "BF16", raw, 2) == [1.5, -3.0]
    assert codec.encode_raw("x", "BF16", [1.5, -3.0]) == raw


def test_raw_bytes_elements_are_length_prefixed() -> None:
    raw = struct.pack("<I", 2) + b"ab" + struct.pack("<I", 0)
    assert codec.decode_raw("x", "BYTES", raw, 2) == [base64.b64encode(b"ab").decode(), ""]
    assert codec.encode_raw("x", "BYTES", ["ab", {"k": 1}]) == (
        struct.pack("<I", 2) + b"ab" + struct.pack("<I", 7) + b'{"k":1}'
    )


def _raw_request(datatype: str, shape: list[int], raw: bytes) -> oip_pb2.ModelInferRequest:
    tensor = oip_pb2.ModelInferRequest.InferInputTensor(name="x", datatype=datatype, shape=shape)
    return oip_pb2.ModelInferRequest(model_name="m", inputs=[tensor], raw_input_contents=[raw])


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (_raw_request("FP32", [2**31, 2**31], b"\0" * 4), "take"),  # huge shape: no allocation
        (_raw_request("FP32", [-1, 4], b"\0" * 16), "negative"),
        (_raw_request("FP32", [3], b"\0" * 8), "take 12 bytes"),
        (_raw_request("BYTES", [2**40], struct.pack("<I", 1) + b"a"), "exactly"),
        (_raw_request("BYTES", [1], struct.pack("<I", 9) + b"a"), "exactly"),
        (_raw_request("COMPLEX", [1], b""), "unknown datatype"),
        (oip_pb2.ModelInferRequest(raw_input_contents=[b"x"]), "one per input"),
        (
            oip_pb2.ModelInferRequest(
                inputs=[oip_pb2.ModelInferRequest.InferInputTensor(name="x", datatype="FP16")]
            ),
            "raw_input_contents",
        ),
        (oip_pb2.ModelInferRequest(inputs=[oip_pb2.ModelInferRequest.InferInputTensor()] * 1001), "Too many"),
    ],
)
def test_invalid_tensors_are_bad_requests(request_: oip_pb2.ModelInferRequest, message: str) -> None:
    with pytest.raises(ServerError, match=message) as caught:
        codec.request_document(request_)
    assert caught.value.grpc_code == "INVALID_ARGUMENT"


def test_request_document_keeps_parameters_and_ids() -> None:
    tensor = oip_pb2.ModelInferRequest.InferInputTensor(name="t", datatype="BYTES", shape=[1])
    tensor.contents.bytes_contents.append(b"\x00\xff")
    tensor.parameters["binary"].bool_param = True
    request = oip_pb2.ModelInferRequest(model_name="m", id="abc", inputs=[tensor])
    request.parameters["top_k"].int64_param = 3
    request.parameters["unset"].CopyFrom(oip_pb2.InferParameter())
    assert codec.request_document(request) == {
        "id": "abc",
        "model_name": "m",
        "inputs": [
            {"name": "t", "shape": [1], "datatype": "BYTES", "data": ["AP8="], "parameters": {"binary": True}}
        ],
        "parameters": {"top_k": 3, "unset": None},
    }


def test_infer_response_from_a_v2_document() -> None:
    body = orjson.dumps(
        {
            "id": "r1",
            "model_name": "mlp",
            "model_version": "1.0",
            "outputs": [
                {"name": "probs", "datatype": "FP32", "shape": [1, 2], "data": [[0.5, 0.25]]},
                {"name": "label", "datatype": "BYTES", "shape": [1], "data": [{"cat": 0.5}]},
                {"name": "ok", "datatype": "BOOL", "shape": [1], "data": [True]},
            ],
        }
    )
    answer = codec.infer_response(body, model_name="x", model_version="9", request_id="", raw=False)
    assert (answer.id, answer.model_name, answer.model_version) == ("r1", "mlp", "1.0")
    probs, label, ok = answer.outputs
    assert list(probs.contents.fp32_contents) == [0.5, 0.25]
    assert list(probs.shape) == [1, 2]
    assert list(label.contents.bytes_contents) == [b'{"cat":0.5}']
    assert list(ok.contents.bool_contents) == [True]
    raw = codec.infer_response(body, model_name="x", model_version="9", request_id="", raw=True)
    assert raw.raw_output_contents[0] == struct.pack("<2f", 0.5, 0.25)
    assert not raw.outputs[0].HasField("contents")


def test_fp16_output_forces_raw_contents_for_all_outputs() -> None:
    body = orjson.dumps(
        {
            "outputs": [
                {"name": "h", "datatype": "FP16", "shape": [1], "data": [1.5]},
                {"name": "n", "datatype": "INT32", "shape": [1], "data": [4]},
            ]
        }
    )
    answer = codec.infer_response(body, model_name="m", model_version="1.0", request_id="q", raw=False)
    assert list(answer.raw_output_contents) == [struct.pack("<e", 1.5), struct.pack("<i", 4)]
    assert (answer.model_name, answer.model_version, answer.id) == ("m", "1.0", "q")


def test_non_v2_output_becomes_one_bytes_tensor() -> None:
    answer = codec.infer_response(
        b"plain text", model_name="m", model_version="1.0", request_id="", raw=False
    )
    [output] = answer.outputs
    assert (output.name, output.datatype, list(output.shape)) == ("output-0", "BYTES", [1])
    assert list(output.contents.bytes_contents) == [b"plain text"]


@pytest.mark.parametrize(
    "outputs",
    [
        [{"name": "x", "datatype": "FP32", "shape": [1], "data": ["nan?"]}],
        [{"name": "x", "datatype": "INT8", "shape": [1], "data": [1000]}],
        [{"name": "x", "datatype": "WEIRD", "data": [1]}],
        [{"name": "x", "datatype": "FP32", "shape": "1", "data": [1]}],
        ["not an object"],
    ],
)
def test_invalid_model_outputs_are_internal_errors(outputs: list[Any]) -> None:
    body = orjson.dumps({"outputs": outputs})
    with pytest.raises(ServerError) as caught:
        codec.infer_response(body, model_name="m", model_version="1", request_id="", raw=True)
    assert caught.value.grpc_code == "INTERNAL"


def test_a_second_stop_cuts_the_grace_period_short() -> None:
    async def scenario() -> None:
        servers = await start_grpc(FakeConfig(), FakeInference(), FakeManagement())
        async with grpc.aio.insecure_channel(f"127.0.0.1:{servers.inference_port}") as channel:
            watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
            assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
            graceful = asyncio.ensure_future(servers.stop(60))
            # Shutdown starts at once: the open Watch learns it is no longer serving.
            assert (await watch.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
            assert not graceful.done()
            await asyncio.wait_for(servers.stop(0), 5)
            await asyncio.wait_for(graceful, 5)

    run(scenario())


def test_hostile_calls_get_precise_codes_and_the_server_keeps_serving() -> None:
    async def scenario() -> None:
        async with serving() as s:
            channel = s.inference_channel
            garbage = b"\xff\xff\xff\xff not protobuf"
            predictions = channel.unary_unary(f"/{INF}InferenceAPIsService/Predictions")
            err = await expect_error(predictions(garbage), grpc.StatusCode.INVALID_ARGUMENT)
            assert err.details().startswith(f"The request is not a valid {INF}PredictionsRequest message.")
            streamed = channel.unary_stream(f"/{INF}InferenceAPIsService/StreamPredictions")
            await expect_error(streamed(garbage).read(), grpc.StatusCode.INVALID_ARGUMENT)
            bidi = channel.stream_stream(f"/{INF}InferenceAPIsService/StreamPredictions2")(iter([garbage]))
            await expect_error(bidi.read(), grpc.StatusCode.INVALID_ARGUMENT)
            unknown = channel.unary_unary(f"/{INF}InferenceAPIsService/Nope")
            await expect_error(unknown(b""), grpc.StatusCode.UNIMPLEMENTED)
            await expect_error(
                s.infer.Ping(empty_pb2.Empty(), metadata=(("x-big", "a" * 100_000),)),
                grpc.StatusCode.RESOURCE_EXHAUSTED,
            )
            assert not s.inference.requests
            assert (await s.infer.Ping(empty_pb2.Empty())).health == '{\n  "status": "Healthy"\n}'

    run(scenario())


def test_every_protocol_datatype_has_a_raw_codec() -> None:
    from emberserve.grpc.oip_codec import FIXED_SIZE
    from emberserve.oip_tensors import DATATYPES

    assert frozenset(FIXED_SIZE) | {"BYTES"} == DATATYPES
