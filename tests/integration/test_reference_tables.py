"""The Inference (§3) and Management (§4) tables of the TorchServe reference, row by row, against a
real Ember server with the reference handlers. Each row: request → status and body (exact text
where the reference gives one). Rows Ember answers differently on purpose (docs/compatibility.md)
say so in their id."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import REFERENCE_MODELS, archive
from tests.ember_server import EmberServer

NOT_FOUND = "Requested resource is not found, please refer to API document."
NOT_ALLOWED = "Requested method is not allowed, please refer to API document."
NO_WORKER = (
    'Model "noop0" has no worker to serve inference request. Please use scale workers API to add workers. '
    "If this is a sequence inference, please check if it is closed, or expired; or exceeds "
    "maxSequenceJobQueueSize"
)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tables-store")
    archive(folder, "noop", REFERENCE_MODELS / "noop" / "noop_handler.py")
    versioned = REFERENCE_MODELS / "versioned" / "versioned_handler.py"
    archive(folder, "versioned", versioned, version="1.0")
    shutil.move(folder / "versioned.mar", folder / "versioned_v1.mar")
    archive(folder, "versioned", versioned, version="2.0")
    shutil.move(folder / "versioned.mar", folder / "versioned_v2.mar")
    archive(folder, "init_error", REFERENCE_MODELS / "init_error" / "init_error_handler.py")
    (folder / "notazip.mar").write_bytes(b"this is not a zip file")
    return folder


@pytest.fixture(scope="module")
def srv(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmberServer]:
    with EmberServer(
        tmp_path_factory.mktemp("tables"), store, extra_config={"enable_model_api": "true"}
    ) as server:
        m = server.management_url
        for params in (
            {"url": "noop.mar", "initial_workers": "1"},
            {"url": "noop.mar", "model_name": "noop0", "initial_workers": "0"},
            {"url": "versioned_v1.mar", "initial_workers": "1"},
            {"url": "versioned_v2.mar", "initial_workers": "1"},
        ):
            reply = httpx.post(m + "/models", params=params, timeout=60)
            assert reply.status_code == 200, reply.text
        yield server


def call(srv: EmberServer, port: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
    base = srv.inference_url if port == "inference" else srv.management_url
    return httpx.request(method, base + path, timeout=60, **kwargs)


def check(reply: httpx.Response, status: int, expected: object) -> None:
    assert reply.status_code == status, reply.text
    if expected is None:
        return
    body = reply.json()
    if isinstance(expected, str):
        assert body.get("message", body.get("status")) == expected, body
    else:
        assert body == expected


INFERENCE_ROWS: list[tuple[str, str, str, dict[str, Any], int, object]] = [
    ("ping-get", "GET", "/ping", {}, 200, {"status": "Healthy"}),
    ("ping-post", "POST", "/ping", {}, 200, {"status": "Healthy"}),
    ("root-get-405", "GET", "/", {}, 405, NOT_ALLOWED),
    ("models-on-inference-404", "GET", "/models", {}, 404, NOT_FOUND),
    ("metrics-on-inference-404", "GET", "/metrics", {}, 404, NOT_FOUND),
    ("foo-bar-404", "GET", "/foo/bar", {}, 404, NOT_FOUND),
    ("predictions-without-model-404", "POST", "/predictions", {}, 404, NOT_FOUND),
    (
        "unknown-model",
        "POST",
        "/predictions/nosuchmodel",
        {"content": b"x"},
        404,
        "Model not found: nosuchmodel",
    ),
    (
        "unknown-version",
        "POST",
        "/predictions/noop/9.9",
        {"content": b"x"},
        404,
        "Model version: 9.9 does not exist for model: noop",
    ),
    ("zero-workers-503", "POST", "/predictions/noop0", {"content": b"x"}, 503, NO_WORKER),
    ("kserve-v1-status", "GET", "/v1/models/noop", {}, 200, {"name": "noop", "ready": True}),
    ("kserve-v1-status-unknown", "GET", "/v1/models/nosuch", {}, 404, "Model not found: nosuch"),
]


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "expected"),
    [row[1:] for row in INFERENCE_ROWS],
    ids=[row[0] for row in INFERENCE_ROWS],
)
def test_inference_table(
    srv: EmberServer, method: str, path: str, kwargs: dict[str, Any], status: int, expected: object
) -> None:
    check(call(srv, "inference", method, path, **kwargs), status, expected)


@pytest.mark.parametrize("method", ["POST", "PUT", "GET", "DELETE"])
def test_any_method_predicts(srv: EmberServer, method: str) -> None:
    reply = call(
        srv, "inference", method, "/predictions/noop", content=b"hi", headers={"content-type": "text/plain"}
    )
    assert reply.status_code == 200 and reply.content == b"hi"


@pytest.mark.parametrize(
    "path",
    [
        "/predictions/noop",
        "/predictions/noop/1.0",
        "/predictions/noop/1.0/extra/path",
        "/explanations/noop",
        "/v1/models/noop:predict",
        "/v1/models/noop:explain",
        "/v2/models/noop/infer",
        "/v2/models/noop/explain",
        "/noop/predict",
        "/noop/1.0/predict",
        "/invocations?model_name=noop",
        "/models/noop/invoke",
    ],
)
def test_every_prediction_route_serves(srv: EmberServer, path: str) -> None:
    reply = call(srv, "inference", "POST", path, content=b"hi", headers={"content-type": "text/plain"})
    assert reply.status_code == 200, reply.text


def test_versions_and_set_default_switch_what_serves(srv: EmberServer) -> None:
    assert call(srv, "inference", "POST", "/predictions/versioned").json()["version"] == "1.0"
    assert call(srv, "inference", "POST", "/predictions/versioned/2.0").json()["version"] == "2.0"
    check(
        call(srv, "management", "PUT", "/models/versioned/2.0/set-default"),
        200,
        'Default version successfully updated for model "versioned" to "2.0"',
    )
    try:
        assert call(srv, "inference", "POST", "/predictions/versioned").json()["version"] == "2.0"
        listing = call(srv, "management", "GET", "/models").json()["models"]
        assert {"modelName": "versioned", "modelUrl": "versioned_v2.mar"} in listing
    finally:
        call(srv, "management", "PUT", "/models/versioned/1.0/set-default")


MANAGEMENT_ROWS: list[tuple[str, str, str, dict[str, Any], int, object]] = [
    ("ping-on-management-404", "GET", "/ping", {}, 404, NOT_FOUND),
    ("register-without-url", "POST", "/models", {}, 400, "Parameter url is required."),
    ("register-empty-url", "POST", "/models", {"params": {"url": ""}}, 404, "empty url"),
    (
        "register-missing",
        "POST",
        "/models",
        {"params": {"url": "missing.mar"}},
        404,
        "Model not found at: missing.mar",
    ),
    (
        "register-malformed",
        "POST",
        "/models",
        {"params": {"url": "malformed_url,?"}},
        404,
        "Model not found at: malformed_url,?",
    ),
    (
        "register-relative",
        "POST",
        "/models",
        {"params": {"url": "../noop.mar"}},
        404,
        "Relative path is not allowed in url: ../noop.mar",
    ),
    ("register-not-a-zip", "POST", "/models", {"params": {"url": "notazip.mar"}}, 400, None),
    (
        "register-bad-runtime",
        "POST",
        "/models",
        {"params": {"url": "noop.mar", "runtime": "python4"}},
        400,
        "Invalid RuntimeType value: python4",
    ),
    (
        "register-duplicate",
        "POST",
        "/models",
        {"params": {"url": "noop.mar"}},
        409,
        "Model version 1.0 is already registered for model noop",
    ),
    ("list-limit-0", "GET", "/models", {"params": {"limit": "0"}}, 200, {"nextPageToken": "0", "models": []}),
    ("list-token-beyond", "GET", "/models", {"params": {"next_page_token": "99"}}, 200, {"models": []}),
    ("patch-models-405", "PATCH", "/models", {}, 405, NOT_ALLOWED),
    ("put-models-405", "PUT", "/models", {}, 405, NOT_ALLOWED),
    ("describe-unknown", "GET", "/models/nosuchmodel", {}, 404, "Model not found: nosuchmodel"),
    ("describe-all-unknown", "GET", "/models/nosuchmodel/all", {}, 404, "Model not found: nosuchmodel"),
    (
        "describe-unknown-version",
        "GET",
        "/models/noop/9.9",
        {},
        404,
        "Model version: 9.9 does not exist for model: noop",
    ),
    (
        "customized-without-worker",
        "GET",
        "/models/noop0",
        {"params": {"customized": "true"}},
        503,
        'Model "noop0" has no worker to serve describe request. Please use scale workers API to add workers.',
    ),
    (
        "scale-max-below-min",
        "PUT",
        "/models/noop",
        {"params": {"min_worker": "2", "max_worker": "1"}},
        400,
        "max_worker cannot be less than min_worker.",
    ),
    (
        "scale-unknown",
        "PUT",
        "/models/nosuch",
        {"params": {"min_worker": "1"}},
        404,
        "Model not found: nosuch",
    ),
    (
        "set-default-unknown-version",
        "PUT",
        "/models/versioned/9.9/set-default",
        {},
        404,
        "Model version 9.9 does not exist for model versioned",
    ),
    (
        "set-default-unknown-model",
        "PUT",
        "/models/nosuch/1.0/set-default",
        {},
        404,
        "Model not found: nosuch",
    ),
    ("set-default-post-405", "POST", "/models/versioned/1.0/set-default", {}, 405, NOT_ALLOWED),
    (
        "delete-default-with-others",
        "DELETE",
        "/models/versioned/1.0",
        {},
        403,
        "Cannot remove default version for model versioned",
    ),
    (
        "delete-without-version-with-others",
        "DELETE",
        "/models/versioned",
        {},
        403,
        "Cannot remove default version for model versioned",
    ),
    ("delete-unknown", "DELETE", "/models/nosuch", {}, 404, "Model not found: nosuch"),
    (
        "delete-unknown-version",
        "DELETE",
        "/models/versioned/9.9",
        {},
        404,
        "Model version: 9.9 does not exist for model: versioned",
    ),
]


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "expected"),
    [row[1:] for row in MANAGEMENT_ROWS],
    ids=[row[0] for row in MANAGEMENT_ROWS],
)
def test_management_table(
    srv: EmberServer, method: str, path: str, kwargs: dict[str, Any], status: int, expected: object
) -> None:
    check(call(srv, "management", method, path, **kwargs), status, expected)


def test_listing_pages_like_torchserve(srv: EmberServer) -> None:
    every = call(srv, "management", "GET", "/models").json()
    names = [m["modelName"] for m in every["models"]]
    assert names == sorted(names) and "nextPageToken" not in every
    first = call(srv, "management", "GET", "/models", params={"limit": "2"}).json()
    assert first["nextPageToken"] == "2" and len(first["models"]) == 2
    for junk in ({"limit": "-1"}, {"limit": "abc"}, {"limit": "2000"}):
        assert call(srv, "management", "GET", "/models", params=junk).json() == every
    one = call(srv, "management", "GET", "/models", params={"limit": "1", "next_page_token": "-1"}).json()
    assert one["nextPageToken"] == "1" and one["models"] == every["models"][:1]


def test_describe_has_torchserves_keys_in_order(srv: EmberServer) -> None:
    [described] = call(srv, "management", "GET", "/models/noop").json()
    assert list(described) == [
        "modelName", "modelVersion", "modelUrl", "runtime", "minWorkers", "maxWorkers", "batchSize",
        "maxBatchDelay", "responseTimeout", "startupTimeout", "maxRetryTimeoutInSec", "clientTimeoutInMills",
        "parallelType", "parallelLevel", "deviceType", "continuousBatching", "useJobTicket", "useVenv",
        "stateful", "sequenceMaxIdleMSec", "sequenceTimeoutMSec", "maxNumSequence", "maxSequenceJobQueueSize",
        "loadedAtStartup", "workers", "jobQueueStatus",
    ]  # fmt: skip
    [worker] = described["workers"]
    assert list(worker) == ["id", "startTime", "status", "memoryUsage", "pid", "gpu", "gpuUsage"]
    assert described["jobQueueStatus"] == {"remainingCapacity": 100, "pendingRequests": 0}
    assert len(call(srv, "management", "GET", "/models/versioned/all").json()) == 2


def test_the_seed_walkthrough(srv: EmberServer) -> None:
    """Register async, scale async and sync, describe, predict with -T, set-default, unregister, OPTIONS."""
    m = srv.management_url
    reply = httpx.post(m + "/models", params={"url": "noop.mar", "model_name": "seed", "initial_workers": "1",
                                              "synchronous": "false"}, timeout=60)  # fmt: skip
    check(reply, 202, "Processing worker updates...")
    check(
        httpx.put(m + "/models/seed", params={"min_worker": "3"}, timeout=60),
        202,
        "Processing worker updates...",
    )
    check(
        httpx.put(m + "/models/seed", params={"min_worker": "3", "synchronous": "true"}, timeout=60),
        200,
        "Workers scaled to 3 for model: seed",
    )
    [described] = httpx.get(m + "/models/seed").json()
    assert described["minWorkers"] == 3 and len(described["workers"]) == 3
    assert httpx.get(m + "/models/seed/1.0").json()[0]["modelVersion"] == "1.0"
    assert len(httpx.get(m + "/models/seed/all").json()) == 1
    put = httpx.put(srv.inference_url + "/predictions/seed", content=b"uploaded", timeout=30)  # curl -T
    assert put.status_code == 200 and put.content == b"uploaded"
    check(
        httpx.put(m + "/models/seed/1.0/set-default"),
        200,
        'Default version successfully updated for model "seed" to "1.0"',
    )
    check(httpx.delete(m + "/models/seed", timeout=60), 200, 'Model "seed" unregistered')
    assert httpx.options(srv.inference_url + "/").status_code == 200
    assert httpx.options(m + "/").status_code == 200


def test_a_failing_initialize_gives_500_and_the_model_stays_registered(srv: EmberServer) -> None:
    m = srv.management_url
    params = {"url": "init_error.mar", "initial_workers": "1", "synchronous": "true"}
    check(
        httpx.post(m + "/models", params=params, timeout=60),
        500,
        "Failed to start workers for model init_error version: 1.0",
    )
    try:
        check(
            httpx.post(m + "/models", params=params, timeout=60),
            409,
            "Model version 1.0 is already registered for model init_error",
        )
    finally:
        httpx.put(m + "/models/init_error", params={"min_worker": "0", "synchronous": "true"}, timeout=60)
        httpx.delete(m + "/models/init_error", timeout=60)
