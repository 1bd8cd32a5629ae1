"""Models loaded at startup from the model store: ``--models all``, ``name=file``, ``load_models``."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest

from tests.conftest import ECHO_HANDLER, archive, write_handler
from tests.ember_server import EmberServer


@pytest.fixture(scope="module")
def two_model_store(tmp_path_factory: pytest.TempPathFactory, echo_store: Path) -> Path:
    store = tmp_path_factory.mktemp("store2")
    shutil.copy(echo_store / "echo.mar", store / "echo.mar")
    src = tmp_path_factory.mktemp("src2")
    archive(store, "second", write_handler(src, "second_handler.py", ECHO_HANDLER), version="2.0")
    (store / "notes.txt").write_text("not a model")
    return store


def describe(server: EmberServer, name: str) -> list[dict[str, object]]:
    reply = httpx.get(f"{server.management_url}/models/{name}")
    assert reply.status_code == 200, reply.text
    return reply.json()  # type: ignore[no-any-return]


def test_models_all_loads_every_archive_with_default_workers(tmp_path: Path, two_model_store: Path) -> None:
    with EmberServer(tmp_path, two_model_store, models=["all"]) as server:
        listing = httpx.get(server.management_url + "/models").json()
        assert listing == {
            "models": [
                {"modelName": "echo", "modelUrl": "echo.mar"},
                {"modelName": "second", "modelUrl": "second.mar"},
            ]
        }
        [second] = describe(server, "second")
        assert second["modelVersion"] == "2.0"
        assert second["loadedAtStartup"] is True
        assert second["minWorkers"] == second["maxWorkers"] == 1
        workers = second["workers"]
        assert isinstance(workers, list) and len(workers) == 1
        reply = httpx.put(server.inference_url + "/predictions/second", content=b"payload")
        assert reply.status_code == 200
        assert reply.content == b"payload"


def test_name_equals_file_renames_the_model(tmp_path: Path, two_model_store: Path) -> None:
    with EmberServer(tmp_path, two_model_store, models=["renamed=echo.mar"]) as server:
        [entry] = describe(server, "renamed")
        assert entry["modelUrl"] == "echo.mar"
        assert httpx.get(server.management_url + "/models/echo").status_code == 404


def test_load_models_key_in_config_properties(tmp_path: Path, two_model_store: Path) -> None:
    with EmberServer(tmp_path, two_model_store, extra_config={"load_models": "second.mar"}) as server:
        names = [m["modelName"] for m in httpx.get(server.management_url + "/models").json()["models"]]
        assert names == ["second"]


def test_a_missing_startup_model_is_logged_and_the_server_still_serves(
    tmp_path: Path, two_model_store: Path
) -> None:
    with EmberServer(tmp_path, two_model_store, models=["missing.mar", "echo.mar"]) as server:
        names = [m["modelName"] for m in httpx.get(server.management_url + "/models").json()["models"]]
        assert names == ["echo"]
        log = (server.log_dir / "ts_log.log").read_text()
        assert "Failed to load model missing.mar at startup: Model not found at: missing.mar" in log
