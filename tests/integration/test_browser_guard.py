"""Browsers against a real server: CORS keys, and the management guard (SECURITY.md Z7, DNS rebinding)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.ember_server import EmberServer

pytestmark = pytest.mark.security


@pytest.fixture(scope="module")
def plain(echo_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmberServer]:
    """CORS off (TorchServe's default), model API on, token auth off: the riskiest common setup."""
    with EmberServer(
        tmp_path_factory.mktemp("plain"), echo_store, extra_config={"enable_model_api": "true"}
    ) as server:
        yield server


@pytest.fixture(scope="module")
def cors(echo_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmberServer]:
    config = {
        "cors_allowed_origin": "https://app.example",
        "cors_allowed_methods": "GET, POST, OPTIONS",
        "cors_allowed_headers": "Content-Type, Authorization",
    }
    with EmberServer(
        tmp_path_factory.mktemp("cors"), echo_store, models=["echo.mar"], extra_config=config
    ) as server:
        yield server


def test_a_web_page_cannot_register_a_model_through_the_browser(plain: EmberServer) -> None:
    reply = httpx.post(
        plain.management_url + "/models",
        params={"url": "echo.mar"},
        headers={"Origin": "http://evil.example"},
    )
    assert reply.status_code == 403
    body = reply.json()
    assert body["type"] == "ForbiddenException"
    assert "cors_allowed_origin" in body["message"]
    assert httpx.get(plain.management_url + "/models").json()["models"] == []


@pytest.mark.parametrize("origin", ["http://evil.example", "null"])
def test_any_management_request_from_a_page_is_refused(plain: EmberServer, origin: str) -> None:
    assert httpx.get(plain.management_url + "/models", headers={"Origin": origin}).status_code == 403


def test_a_rebound_host_name_is_refused_on_a_loopback_management_port(plain: EmberServer) -> None:
    port = plain.ports["management"]
    rebound = httpx.get(plain.management_url + "/models", headers={"Host": f"evil.example:{port}"})
    assert rebound.status_code == 403
    assert "loopback" in rebound.json()["message"]
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", "localhost"):
        assert httpx.get(plain.management_url + "/models", headers={"Host": host}).status_code == 200


def test_the_inference_port_serves_pages_but_without_cors_headers_when_cors_is_off(
    plain: EmberServer,
) -> None:
    reply = httpx.get(plain.inference_url + "/ping", headers={"Origin": "http://evil.example"})
    assert reply.status_code == 200
    assert "access-control-allow-origin" not in reply.headers


def test_preflight_is_answered_with_the_configured_cors_headers(cors: EmberServer) -> None:
    reply = httpx.options(
        cors.inference_url + "/predictions/echo",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
    )
    assert reply.status_code == 200
    assert reply.content == b""
    assert reply.headers["access-control-allow-origin"] == "https://app.example"
    assert reply.headers["access-control-allow-methods"] == "GET, POST, OPTIONS"
    assert reply.headers["access-control-allow-headers"] == "Content-Type, Authorization"

    other = httpx.options(
        cors.inference_url + "/predictions/echo",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in other.headers


def test_allowed_origins_get_cors_headers_on_both_ports(cors: EmberServer) -> None:
    page = {"Origin": "https://app.example"}
    prediction = httpx.post(cors.inference_url + "/predictions/echo", content=b"x", headers=page, timeout=30)
    assert prediction.status_code == 200
    assert prediction.headers["access-control-allow-origin"] == "https://app.example"
    listing = httpx.get(cors.management_url + "/models", headers=page)
    assert listing.status_code == 200
    assert listing.headers["access-control-allow-origin"] == "https://app.example"
    refused = httpx.get(cors.management_url + "/models", headers={"Origin": "https://evil.example"})
    assert refused.status_code == 403
