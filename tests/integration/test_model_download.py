"""Registering models by URL on a real server: downloads, allowed_urls, the guard, cleanup."""

from __future__ import annotations

import functools
import http.server
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ECHO_HANDLER, archive, serve_http, write_handler
from tests.ember_server import EmberServer

pytestmark = pytest.mark.security


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A loopback web server publishing remote.mar."""
    published = tmp_path_factory.mktemp("published")
    src = tmp_path_factory.mktemp("remote-src")
    archive(published, "remote", write_handler(src, "echo_handler.py", ECHO_HANDLER))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(published))
    handler.log_message = lambda *_args: None  # type: ignore[attr-defined]
    with serve_http(handler) as url:
        yield url


def register(server: EmberServer, url: str) -> httpx.Response:
    return httpx.post(
        server.management_url + "/models", params={"url": url, "initial_workers": "1"}, timeout=60
    )


def test_an_allowed_url_is_downloaded_served_and_removed_on_unregister(origin: str, tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    config = {"enable_model_api": "true", "allowed_urls": origin.replace(".", r"\.") + "/.*"}
    with EmberServer(tmp_path / "run", store, extra_config=config) as server:
        reply = register(server, f"{origin}/remote.mar")
        assert reply.status_code == 200, reply.text
        assert (store / "remote.mar").is_file()
        answer = httpx.post(server.inference_url + "/predictions/remote", content=b"fetched", timeout=30)
        assert answer.status_code == 200 and answer.content == b"fetched"
        assert "Downloaded " in server.console_text()
        assert httpx.delete(server.management_url + "/models/remote", timeout=60).status_code == 200
        assert not (store / "remote.mar").exists()
        other = register(server, "http://models.example.com/remote.mar")
        assert other.status_code == 400
        assert other.json()["message"] == (
            "Given URL http://models.example.com/remote.mar does not match any allowed URL(s)"
        )


def test_by_default_loopback_and_metadata_urls_are_refused(origin: str, tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    with EmberServer(tmp_path / "run", store, extra_config={"enable_model_api": "true"}) as server:
        local = register(server, f"{origin}/remote.mar")
        assert local.status_code == 400
        assert "allow it explicitly with allowed_urls" in local.json()["message"]
        metadata = register(server, "http://169.254.169.254/latest/meta-data/x.mar")
        assert metadata.status_code == 400
        assert list(store.iterdir()) == []
        outside = register(server, "file:///etc/passwd")
        assert outside.status_code == 400
        assert "outside the model store" in outside.json()["message"]
