"""Inference and management on one port when their addresses are equal, as TorchServe binds
them (ConnectorType.ALL) and as KServe's TorchServe configs set them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.ember_server import EmberServer, bearer, keys


@pytest.fixture(scope="module")
def srv(echo_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmberServer]:
    server = EmberServer(
        tmp_path_factory.mktemp("shared"), echo_store, models=["echo.mar"], wait_healthy=False
    )
    server.extra_config = {
        "management_address": server.inference_url,
        "disable_token_authorization": "false",
        "token_auth_exempt_health": "true",
        "enable_model_api": "true",
    }
    with server:
        server.wait_for_ping(200)
        yield server


def key(srv: EmberServer, kind: str) -> dict[str, str]:
    return bearer(keys(srv)[kind])


def test_one_port_serves_both_apis_each_with_its_own_key(srv: EmberServer) -> None:
    base = srv.inference_url
    inference, management = key(srv, "inference"), key(srv, "management")
    listing = httpx.get(f"{base}/models", headers=management, timeout=10)
    assert listing.status_code == 200 and listing.json()["models"][0]["modelName"] == "echo"
    assert httpx.get(f"{base}/models", headers=inference, timeout=10).status_code == 400
    answer = httpx.post(f"{base}/predictions/echo", content=b"hi", headers=inference, timeout=10)
    assert answer.status_code == 200 and answer.content == b"hi"
    assert (
        httpx.post(f"{base}/predictions/echo", content=b"hi", headers=management, timeout=10).status_code
        == 400
    )
    # The legacy inference route under /models stays inference's; KServe v1 too.
    invoked = httpx.post(f"{base}/models/echo/invoke", content=b"yo", headers=inference, timeout=10)
    assert invoked.status_code == 200 and invoked.content == b"yo"
    kserve = httpx.get(f"{base}/v1/models/echo", headers=inference, timeout=10)
    assert kserve.json() == {"name": "echo", "ready": True}
    described = httpx.get(f"{base}/models/echo", headers=management, timeout=10).json()
    assert described[0]["modelName"] == "echo"
    # OPTIONS / describes the inference API first, as TorchServe's handler chain does.
    document = httpx.request("OPTIONS", f"{base}/", headers=inference, timeout=10).json()
    assert "/predictions/{model_name}" in document["paths"]


def test_management_actions_and_token_rotation_work_on_the_shared_port(srv: EmberServer) -> None:
    base = srv.inference_url
    management = key(srv, "management")
    scaled = httpx.put(
        f"{base}/models/echo",
        params={"min_worker": "2", "synchronous": "true"},
        headers=management,
        timeout=30,
    )
    assert scaled.status_code == 200, scaled.text
    rotated = httpx.get(f"{base}/token", params={"type": "inference"}, headers=key(srv, "API"), timeout=10)
    assert rotated.status_code == 200
    assert httpx.get(f"{base}/v2/models/echo", headers=key(srv, "inference"), timeout=10).status_code == 200
