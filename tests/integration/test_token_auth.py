"""Token authorization on a real server: TorchServe's key file, header and answers, on REST and gRPC
(SECURITY.md Z1–Z3, Z9, Z11, G4)."""

from __future__ import annotations

import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import orjson
import pytest
from google.protobuf import empty_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from emberserve.grpc.generated import inference_pb2_grpc, management_pb2, management_pb2_grpc
from tests.ember_server import EmberServer, bearer, keys

pytestmark = pytest.mark.security

FAILED = {
    "code": 400,
    "type": "InvalidKeyException",
    "message": "Token Authorization failed. Token either incorrect, expired, or not provided correctly",
}


@pytest.fixture(scope="module")
def srv(echo_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmberServer]:
    server = EmberServer(
        tmp_path_factory.mktemp("auth"),
        echo_store,
        models=["echo.mar"],
        extra_config={"disable_token_authorization": "false", "enable_metrics_api": "true"},
        wait_healthy=False,
    )
    with server:
        server.wait_for_ping(200, headers=bearer(keys(server)["inference"]))
        yield server


def test_the_key_file_has_torchserves_layout_strong_keys_and_mode_0600(srv: EmberServer) -> None:
    path = srv.run_dir / "key_file.json"
    document = orjson.loads(path.read_bytes())
    assert list(document) == ["management", "inference", "API"]
    assert set(document["management"]) == {"key", "expiration time"}
    assert set(document["API"]) == {"key"}
    assert all(len(entry["key"]) >= 32 for entry in document.values())
    assert len({entry["key"] for entry in document.values()}) == 3
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not [p for p in srv.run_dir.iterdir() if p.name.startswith(".key_file")]


@pytest.mark.parametrize(
    ("port", "method", "path"),
    [
        ("inference", "GET", "/ping"),
        ("inference", "POST", "/predictions/echo"),
        ("inference", "OPTIONS", "/"),
        ("management", "GET", "/models"),
        ("management", "GET", "/models/echo"),
        ("management", "PUT", "/models/echo?min_worker=2"),
    ],
)
def test_requests_without_a_key_get_torchserves_400(
    srv: EmberServer, port: str, method: str, path: str
) -> None:
    base = srv.inference_url if port == "inference" else srv.management_url
    reply = httpx.request(method, base + path, timeout=10)
    assert reply.status_code == 400
    assert reply.json() == FAILED


def test_each_port_takes_only_its_own_key(srv: EmberServer) -> None:
    k = keys(srv)
    assert httpx.get(srv.inference_url + "/ping", headers=bearer(k["inference"])).status_code == 200
    assert httpx.get(srv.inference_url + "/ping", headers=bearer(k["management"])).status_code == 400
    assert httpx.get(srv.inference_url + "/ping", headers=bearer(k["API"])).status_code == 400
    assert httpx.get(srv.management_url + "/models", headers=bearer(k["management"])).status_code == 200
    assert httpx.get(srv.management_url + "/models", headers=bearer(k["inference"])).status_code == 400
    reply = httpx.post(
        srv.inference_url + "/predictions/echo",
        content=b"hi",
        headers=bearer(k["inference"]),
        timeout=30,
    )
    assert reply.status_code == 200 and reply.content == b"hi"


@pytest.mark.parametrize(
    "values",
    [
        ["Bearer"],
        ["Bearer  {key}"],
        ["bearer {key}"],
        ["Bearer {key} x"],
        ["Basic {key}"],
        ["Bearer {key}"] * 2,
    ],
    ids=["no-key", "two-spaces", "lower-case-scheme", "two-words", "basic", "duplicate-header"],
)
def test_malformed_authorization_headers_are_refused(srv: EmberServer, values: list[str]) -> None:
    key = keys(srv)["inference"]
    headers = [("Authorization", value.format(key=key)) for value in values]
    reply = httpx.get(srv.inference_url + "/ping", headers=headers)
    assert reply.status_code == 400 and reply.json() == FAILED


def test_an_unauthenticated_upload_is_refused_before_its_body_is_read(srv: EmberServer) -> None:
    with socket.create_connection(("127.0.0.1", srv.ports["inference"]), timeout=10) as sock:
        # Announce 5 MB but send none of it: the answer must come without waiting for the body.
        sock.sendall(
            b"POST /predictions/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        head = sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 400 ")
    assert b"100 Continue" not in head


def test_a_client_still_uploading_after_the_refusal_reads_it_without_a_reset(srv: EmberServer) -> None:
    # Lingering close: after the early 400 the server half-closes and drains what the client
    # still sends. Closing at once would answer the rest of the upload with RST, and a client
    # behind a port forwarder (podman, Kubernetes) would lose the 400 it had not read yet.
    with socket.create_connection(("127.0.0.1", srv.ports["inference"]), timeout=10) as sock:
        sock.sendall(b"POST /predictions/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3000000\r\n\r\n")
        sock.sendall(b"x" * 3_000_000)  # a reset would make this fail with EPIPE/ECONNRESET
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert answer.endswith(b'not provided correctly"\n}\n')


def test_the_api_key_rotates_a_key_and_the_old_one_stops_working(srv: EmberServer) -> None:
    before = keys(srv)
    reply = httpx.get(
        srv.management_url + "/token", params={"type": "inference"}, headers=bearer(before["API"])
    )
    assert reply.status_code == 200 and reply.text == "\n"
    after = keys(srv)
    assert after["inference"] != before["inference"]
    assert after["management"] == before["management"] and after["API"] == before["API"]
    assert httpx.get(srv.inference_url + "/ping", headers=bearer(before["inference"])).status_code == 400
    assert httpx.get(srv.inference_url + "/ping", headers=bearer(after["inference"])).status_code == 200


@pytest.mark.parametrize(
    ("key_name", "kind"), [("management", "inference"), ("API", "bogus"), ("API", "API")]
)
def test_token_rotation_needs_the_api_key_and_a_known_type(
    srv: EmberServer, key_name: str, kind: str
) -> None:
    before = keys(srv)
    reply = httpx.get(srv.management_url + "/token", params={"type": kind}, headers=bearer(before[key_name]))
    assert reply.status_code == 400
    assert reply.json()["message"].startswith("Token Authentication failed.")
    assert keys(srv) == before


def test_the_metrics_port_is_open_and_leaks_no_key(srv: EmberServer) -> None:
    reply = httpx.get(srv.metrics_url + "/metrics")
    assert reply.status_code == 200
    assert not any(key in reply.text for key in keys(srv).values())


def test_keys_never_reach_workers_logs_or_snapshots(srv: EmberServer) -> None:
    secret_values = list(keys(srv).values())
    workers = srv.worker_processes()
    assert workers
    for worker in workers:
        environment = "\n".join(f"{k}={v}" for k, v in worker.environ().items())
        assert not any(key in environment for key in secret_values)
    for path in [*srv.log_dir.rglob("*"), srv.console]:
        if path.is_file():
            text = path.read_text(errors="replace")
            assert not any(key in text for key in secret_values), path


def test_grpc_calls_need_the_key_of_their_port(srv: EmberServer) -> None:
    k = keys(srv)
    with grpc.insecure_channel(f"127.0.0.1:{srv.ports['grpc_inference']}") as channel:
        stub = inference_pb2_grpc.InferenceAPIsServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.Ping(empty_pb2.Empty(), timeout=10)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "Token Authorization failed" in str(refused.value.details())
        with pytest.raises(grpc.RpcError) as wrong:
            stub.Ping(
                empty_pb2.Empty(),
                timeout=10,
                metadata=[("authorization", f"Bearer {k['management']}")],
            )
        assert wrong.value.code() == grpc.StatusCode.PERMISSION_DENIED
        ok = stub.Ping(
            empty_pb2.Empty(), timeout=10, metadata=[("authorization", f"Bearer {k['inference']}")]
        )
        assert "Healthy" in ok.health
        # Probes stay open.
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
    with grpc.insecure_channel(f"127.0.0.1:{srv.ports['grpc_management']}") as channel:
        manage = management_pb2_grpc.ManagementAPIsServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            manage.ListModels(management_pb2.ListModelsRequest(limit=10), timeout=10)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        listing = manage.ListModels(
            management_pb2.ListModelsRequest(limit=10),
            timeout=10,
            metadata=[("authorization", f"Bearer {k['management']}")],
        )
        assert "echo" in listing.msg


def test_the_key_file_is_removed_when_the_server_stops(echo_store: Path, tmp_path: Path) -> None:
    server = EmberServer(
        tmp_path,
        echo_store,
        extra_config={"disable_token_authorization": "false"},
        wait_healthy=False,
    )
    with server:
        assert (tmp_path / "key_file.json").is_file()
    assert not (tmp_path / "key_file.json").exists()


def test_token_auth_exempt_health_opens_only_the_health_routes(echo_store: Path, tmp_path: Path) -> None:
    # Kubelet httpGet probes cannot read key_file.json: the Ember key opens the three health
    # routes (which only say healthy or not) and nothing else.
    server = EmberServer(
        tmp_path,
        echo_store,
        models=["echo.mar"],
        extra_config={"disable_token_authorization": "false", "token_auth_exempt_health": "true"},
    )
    with server:
        base = server.inference_url
        assert httpx.get(f"{base}/ping", timeout=10).json() == {"status": "Healthy"}
        assert httpx.get(f"{base}/v2/health/live", timeout=10).status_code == 200
        assert httpx.get(f"{base}/v2/health/ready", timeout=10).status_code == 200
        for path in ("/predictions/echo", "/v2/models/echo", "/v1/models/echo", "/ping/extra"):
            answer = httpx.post(f"{base}{path}", content=b"x", timeout=10)
            assert answer.status_code == 400, path
            assert answer.json() == FAILED
        assert httpx.get(f"{server.management_url}/models", timeout=10).json() == FAILED


def test_replicas_share_the_keys_of_a_token_keys_file(echo_store: Path, tmp_path: Path) -> None:
    # Replicas behind one Kubernetes Service must accept the same keys: the operator provides
    # them (a Secret); each replica would otherwise make its own and a client could not call two.
    shared = {
        kind: {"key": f"{kind}-0123456789abcdefghijklmnop"} for kind in ("inference", "management", "API")
    }
    keys_path = tmp_path / "secret" / "keys.json"
    keys_path.parent.mkdir()
    keys_path.write_bytes(orjson.dumps(shared))
    config = {"disable_token_authorization": "false", "token_keys_file": str(keys_path)}
    first = EmberServer(
        tmp_path / "a", echo_store, models=["echo.mar"], extra_config=config, wait_healthy=False
    )
    second = EmberServer(
        tmp_path / "b", echo_store, models=["echo.mar"], extra_config=config, wait_healthy=False
    )
    inference = bearer(shared["inference"]["key"])
    with first, second:
        for replica in (first, second):
            replica.wait_for_ping(200, headers=inference)
            answer = httpx.post(f"{replica.inference_url}/predictions/echo", content=b"hi", headers=inference)
            assert answer.status_code == 200 and answer.content == b"hi"
            assert not (replica.run_dir / "key_file.json").exists()  # the secret is not copied
        refused = httpx.get(
            f"{first.management_url}/token",
            params={"type": "inference"},
            headers=bearer(shared["API"]["key"]),
        )
        assert refused.status_code == 400 and "token_keys_file" in refused.json()["message"]
        assert httpx.get(f"{first.inference_url}/ping", headers=inference).status_code == 200
    assert keys_path.exists()  # the operator's file outlives the servers


def test_a_weak_token_keys_file_stops_the_server_with_a_clear_message(
    echo_store: Path, tmp_path: Path
) -> None:
    keys_path = tmp_path / "keys.json"
    keys_path.write_bytes(
        orjson.dumps({kind: {"key": "short"} for kind in ("inference", "management", "API")})
    )
    server = EmberServer(
        tmp_path / "run",
        echo_store,
        extra_config={"disable_token_authorization": "false", "token_keys_file": str(keys_path)},
        wait_healthy=False,
    )
    with pytest.raises(RuntimeError, match="must be at least 22"):
        server.start()
