"""The bundled examples, as `make run` builds and serves them (README's curl lines)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import httpx
import pytest

from tests.ember_server import EmberServer

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

pytestmark = pytest.mark.torch


@pytest.fixture(scope="module")
def example_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("example_store")
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", str(EXAMPLES / "build.sh"), str(store)], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "held-out accuracy" in done.stdout
    return store


def test_build_writes_both_archives_with_our_archiver(example_store: Path) -> None:
    with zipfile.ZipFile(example_store / "digits.mar") as mar:
        names = set(mar.namelist())
        manifest = json.loads(mar.read("MAR-INF/MANIFEST.json"))
    assert {"model.py", "handler.py", "digits.pt", "index_to_name.json"} <= names
    assert manifest["model"]["modelName"] == "digits"
    assert manifest["model"]["serializedFile"] == "digits.pt"
    assert manifest["model"]["modelFile"] == "model.py"
    assert (example_store / "echo.mar").is_file()


def test_the_real_torch_model_archiver_builds_the_same_examples(tmp_path: Path) -> None:
    archiver = Path(sys.executable).parent / "torch-model-archiver"
    env = {**os.environ, "PYTHON": sys.executable, "ARCHIVER": str(archiver)}
    done = subprocess.run(
        ["bash", str(EXAMPLES / "build.sh"), str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "digits.mar").is_file() and (tmp_path / "echo.mar").is_file()


def grey_png(ink_on_white: bool, size: int = 64) -> bytes:
    """A larger, differently drawn '1' (a vertical bar) to check the handler's preprocessing."""
    from PIL import Image, ImageDraw

    image = Image.new("L", (size, size), 255 if ink_on_white else 0)
    ImageDraw.Draw(image).rectangle(
        [size * 0.45, size * 0.1, size * 0.58, size * 0.9], fill=0 if ink_on_white else 255
    )
    out = io.BytesIO()
    image.convert("RGB").save(out, format="PNG")
    return out.getvalue()


def test_readme_walkthrough_against_a_real_server(tmp_path: Path, example_store: Path) -> None:
    with EmberServer(tmp_path, example_store, models=["digits=digits.mar", "echo=echo.mar"]) as server:
        seven = (EXAMPLES / "digits" / "seven.png").read_bytes()
        raw = httpx.put(
            server.inference_url + "/predictions/digits",
            content=seven,
            headers={"Expect": "100-continue"},
            timeout=30,
        )
        assert raw.status_code == 200, raw.text
        top = raw.json()
        assert list(top)[0] == "7"
        assert top["7"] > 0.9
        assert len(top) == 5
        assert list(top.values()) == sorted(top.values(), reverse=True)

        three = (EXAMPLES / "digits" / "three.png").read_bytes()
        multipart = httpx.post(server.inference_url + "/predictions/digits", files={"data": ("t.png", three)})
        assert multipart.status_code == 200
        assert list(multipart.json())[0] == "3"

        for ink_on_white in (True, False):
            bar = httpx.post(server.inference_url + "/predictions/digits", content=grey_png(ink_on_white))
            assert list(bar.json())[0] == "1", bar.text

        echo = httpx.post(
            server.inference_url + "/predictions/echo",
            content=b"hello",
            headers={"Content-Type": "text/plain"},
        )
        assert echo.text == "hello"

        not_an_image = httpx.post(server.inference_url + "/predictions/digits", content=b"plain text")
        assert not_an_image.status_code == 503
        assert not_an_image.json()["message"] == "Prediction failed"
        # the worker survived the bad input
        again = httpx.put(server.inference_url + "/predictions/digits", content=seven)
        assert list(again.json())[0] == "7"


def test_examples_config_is_a_local_demo() -> None:
    text = (EXAMPLES / "config.properties").read_text()
    assert "127.0.0.1" in text and "0.0.0.0" not in text
    assert "disable_token_authorization=true" in text
