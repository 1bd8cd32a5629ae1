"""REST on a real server: OpenAPI documents, KServe v2 metadata and readiness, tritonclient[http]."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from openapi_spec_validator import validate
from tritonclient.utils import InferenceServerException

from tests.conftest import ECHO_HANDLER, archive, write_handler
from tests.ember_server import EmberServer


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, echo_store: Path) -> Path:
    folder = tmp_path_factory.mktemp("rest-store")
    shutil.copy(echo_store / "echo.mar", folder / "echo.mar")
    src = tmp_path_factory.mktemp("rest-src")
    archive(folder, "echo2", write_handler(src, "echo_handler.py", ECHO_HANDLER), version="2.0")
    return folder


@pytest.fixture(scope="module")
def srv(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmberServer]:
    config = {"enable_model_api": "true", "enable_metrics_api": "true", "service_envelope": "kservev2"}
    with EmberServer(
        tmp_path_factory.mktemp("rest"), store, models=["echo.mar"], extra_config=config
    ) as server:
        yield server


@pytest.mark.parametrize(
    ("port", "method", "path", "title"),
    [
        ("inference", "OPTIONS", "/", "TorchServe APIs"),
        ("inference", "GET", "/api-description", "TorchServe APIs"),
        ("inference", "OPTIONS", "/predictions/echo", "RESTful API for: echo"),
        ("management", "OPTIONS", "/", "TorchServe APIs"),
        ("management", "GET", "/api-description", "TorchServe APIs"),
        ("management", "OPTIONS", "/models/echo", "RESTful Management API for: echo"),
        ("metrics", "OPTIONS", "/", "TorchServe APIs"),
    ],
)
def test_openapi_documents_are_valid_and_titled_as_torchserves(
    srv: EmberServer, port: str, method: str, path: str, title: str
) -> None:
    reply = httpx.request(method, f"http://127.0.0.1:{srv.ports[port]}{path}", timeout=10)
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/json"
    document = reply.json()
    validate(document)  # raises when it is not valid OpenAPI 3.0
    assert document["openapi"] == "3.0.1"
    assert document["info"]["title"] == title


def test_the_documents_list_torchserves_paths(srv: EmberServer) -> None:
    inference = httpx.options(srv.inference_url + "/").json()["paths"]
    for path in (
        "/",
        "/ping",
        "/v1/models/{model_name}:predict",
        "/v2/models/{model_name}/infer",
        "/predictions/{model_name}",
        "/predictions/{model_name}/{model_version}",
        "/api-description",
    ):
        assert path in inference
    management = httpx.options(srv.management_url + "/").json()["paths"]
    assert set(management["/models"]) == {"get", "post"}
    assert set(management["/models/{model_name}"]) == {"get", "put", "delete"}
    assert set(management["/models/{model_name}/{model_version}/set-default"]) == {"put"}
    metrics = httpx.options(srv.metrics_url + "/").json()["paths"]
    assert list(metrics) == ["/metrics"]


def test_per_model_documents_need_a_registered_model(srv: EmberServer) -> None:
    assert httpx.options(srv.inference_url + "/predictions/nope").status_code == 404
    assert httpx.options(srv.management_url + "/models/nope").status_code == 404


def test_kserve_v2_server_routes(srv: EmberServer) -> None:
    assert httpx.get(srv.inference_url + "/v2/health/live").json() == {"live": True}
    assert httpx.get(srv.inference_url + "/v2/health/ready").json() == {"ready": True}
    assert httpx.get(srv.inference_url + "/v2").json() == {
        "name": "Torchserve",
        "version": "0.12.0",
        "extensions": ["kserve", "kubeflow"],
    }
    assert httpx.post(srv.inference_url + "/v2/health/live").status_code == 405


def test_kserve_v2_model_metadata_readiness_and_versions(srv: EmberServer) -> None:
    register = httpx.post(
        srv.management_url + "/models",
        params={"url": "echo2.mar", "model_name": "echo", "initial_workers": "1"},
        timeout=60,
    )
    assert register.status_code == 200, register.text
    try:
        metadata = httpx.get(srv.inference_url + "/v2/models/echo").json()
        assert metadata == {
            "name": "echo",
            "versions": ["1.0", "2.0"],
            "platform": "",
            "inputs": [],
            "outputs": [],
        }
        assert httpx.get(srv.inference_url + "/v2/models/echo/ready").json() == {
            "name": "echo",
            "ready": True,
        }
        ready_v2 = httpx.get(srv.inference_url + "/v2/models/echo/versions/2.0/ready")
        assert ready_v2.status_code == 200
        body = {"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": [1.5, 2.5]}]}
        answer = httpx.post(srv.inference_url + "/v2/models/echo/versions/2.0/infer", json=body, timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json()["model_version"] == "2.0"
        missing = httpx.get(srv.inference_url + "/v2/models/echo/versions/9.9/ready")
        assert missing.status_code == 404
        assert httpx.get(srv.inference_url + "/v2/models/nope").status_code == 404
    finally:
        httpx.delete(srv.management_url + "/models/echo/2.0", timeout=60)


def test_a_model_without_workers_is_not_ready(srv: EmberServer) -> None:
    register = httpx.post(
        srv.management_url + "/models",
        params={"url": "echo2.mar", "model_name": "idle", "initial_workers": "0"},
        timeout=60,
    )
    assert register.status_code == 200, register.text
    try:
        reply = httpx.get(srv.inference_url + "/v2/models/idle/ready")
        assert reply.status_code == 503
        assert reply.json() == {"name": "idle", "ready": False}
    finally:
        httpx.delete(srv.management_url + "/models/idle", timeout=60)


def test_tritonclient_http_speaks_to_the_v2_routes(srv: EmberServer) -> None:
    client = triton.InferenceServerClient(url=f"127.0.0.1:{srv.ports['inference']}")
    try:
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.is_model_ready("echo")
        assert client.get_server_metadata()["name"] == "Torchserve"
        assert client.get_model_metadata("echo")["versions"] == ["1.0"]
        tensor = triton.InferInput("input-0", [1, 4], "FP32")
        values = np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32)
        tensor.set_data_from_numpy(values, binary_data=False)  # the JSON form of the protocol
        result = client.infer("echo", [tensor], request_id="r-1")
        response = result.get_response()
        assert response["id"] == "r-1"
        assert response["model_name"] == "echo"
        output = result.as_numpy("input-0")
        assert output is not None
        np.testing.assert_allclose(output.reshape(values.shape), values, rtol=1e-6)
        binary = triton.InferInput("input-0", [1, 4], "FP32")
        binary.set_data_from_numpy(values)  # tritonclient's default: the binary extension
        with pytest.raises(InferenceServerException, match="binary_data=False"):
            client.infer("echo", [binary])
    finally:
        client.close()
