"""Shared fixtures: model archives built with Ember's own archiver, and handler sources."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

#: The handlers the TorchServe reference answers were recorded with (see its README).
REFERENCE_MODELS = Path(__file__).resolve().parent / "reference_models"

ECHO_HANDLER = '''
def handle(data, context):
    """Echo each request's body (or its `data` field) back unchanged."""
    if data is None:
        return None
    return [row.get("data") if row.get("data") is not None else row.get("body") for row in data]
'''


def archive(store: Path, name: str, handler: Path, *extra: str, version: str = "1.0") -> Path:
    """Build ``<store>/<name>.mar`` with ``python -m emberserve.archiver`` (torch-model-archiver's flags)."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "emberserve.archiver",
            "--model-name",
            name,
            "--version",
            version,
            "--handler",
            str(handler),
            "--export-path",
            str(store),
            "--force",
            *extra,
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return store / f"{name}.mar"


def write_handler(directory: Path, filename: str, source: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / filename
    path.write_text(textwrap.dedent(source))
    return path


@pytest.fixture(scope="session")
def echo_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model store holding ``echo.mar`` (module-level handle, no torch)."""
    store = tmp_path_factory.mktemp("store")
    src = tmp_path_factory.mktemp("src")
    archive(store, "echo", write_handler(src, "echo_handler.py", ECHO_HANDLER))
    return store
