"""Shared fixtures: model archives built with Ember's own archiver, and handler sources."""

from __future__ import annotations

import contextlib
import http.server
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

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


@contextlib.contextmanager
def serve_http(handler: Callable[..., Any]) -> Iterator[str]:
    """A loopback HTTP server answering with ``handler`` (a request handler class); yields its URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


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
