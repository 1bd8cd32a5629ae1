"""Schemathesis against Ember's own OpenAPI documents (SECURITY.md: hostile inputs on every
documented route), on a real server with the model API on.

Bounded and repeatable: a fixed seed, a few examples per operation, a time limit per document.
Checks that hold for a TorchServe-compatible server; left out on purpose: content-type and
response-schema conformance (TorchServe answers a handler's bytes with no content-type, and its
documents leave bodies loose), and "schema-violating request accepted" (a handler decides what
its input means). Management documents 503 (a model with no worker), so 5xx is judged there by
the log instead: no request may end in the unhandled-error path.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.ember_server import EmberServer

pytestmark = [pytest.mark.security, pytest.mark.timeout(400)]

COMMON_CHECKS = "status_code_conformance,use_after_free,ensure_resource_availability,missing_required_header"
SEED = "20261122"


@pytest.fixture(scope="module")
def srv(echo_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmberServer]:
    server = EmberServer(
        tmp_path_factory.mktemp("schemathesis"),
        echo_store,
        models=["echo.mar"],
        extra_config={
            "enable_model_api": "true",
            "enable_metrics_api": "true",
            # Generated register calls must never reach the network.
            "allowed_urls": "file://.*",
        },
    )
    with server:
        yield server


def run_schemathesis(srv: EmberServer, base: str, checks: str, tmp_path: Path) -> str:
    document = httpx.request("OPTIONS", f"{base}/", timeout=10)
    assert document.status_code == 200
    (tmp_path / "api.json").write_bytes(document.content)
    (tmp_path / "st.toml").write_text(
        '[parameters]\n"path.model_name" = "echo"\n"path.model_version" = "1.0"\n'
    )
    st = Path(sys.executable).parent / "st"
    command = [
        str(st),
        "--config-file",
        str(tmp_path / "st.toml"),
        "run",
        str(tmp_path / "api.json"),
        "--url",
        base,
        "--checks",
        checks,
        "--max-examples",
        "8",
        "--seed",
        SEED,
        "--request-timeout",
        "20",
        "--no-color",
    ]
    # cwd: st keeps a .schemathesis/ folder of its own in the working directory.
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    return done.stdout


def assert_unharmed(srv: EmberServer) -> None:
    assert srv.proc is not None and srv.proc.poll() is None
    assert httpx.get(f"{srv.management_url}/models", timeout=10).status_code == 200
    log = (srv.log_dir / "ts_log.log").read_text()
    assert "unhandled error serving" not in log
    assert "Traceback" not in httpx.get(f"{srv.inference_url}/ping", timeout=10).text


def test_inference_api_survives_schemathesis(srv: EmberServer, tmp_path: Path) -> None:
    output = run_schemathesis(srv, srv.inference_url, f"not_a_server_error,{COMMON_CHECKS}", tmp_path)
    assert "passed" in output
    assert_unharmed(srv)


def test_metrics_api_survives_schemathesis(srv: EmberServer, tmp_path: Path) -> None:
    run_schemathesis(srv, srv.metrics_url, f"not_a_server_error,{COMMON_CHECKS}", tmp_path)
    assert_unharmed(srv)


def test_management_api_survives_schemathesis(srv: EmberServer, tmp_path: Path) -> None:
    run_schemathesis(srv, srv.management_url, COMMON_CHECKS, tmp_path)
    assert_unharmed(srv)
