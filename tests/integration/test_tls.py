"""TLS on a real server: https:// listeners from PEM files or a PKCS12 keystore, and gRPC over TLS."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import ssl
import time
import types
from pathlib import Path

import grpc
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from google.protobuf import empty_pb2

from emberserve.grpc.generated import inference_pb2_grpc
from emberserve.tls import server_ssl_context
from tests.ember_server import EmberServer

pytestmark = pytest.mark.security


def make_certificate(folder: Path) -> tuple[Path, Path, Path]:
    """A self-signed certificate for 127.0.0.1: (cert.pem, key.pem, keystore.p12 with pass 'changeit')."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path = folder / "cert.pem"
    key_path = folder / "key.pem"
    store_path = folder / "keystore.p12"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    store_path.write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"ember", key, cert, None, serialization.BestAvailableEncryption(b"changeit")
        )
    )
    return cert_path, key_path, store_path


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    return make_certificate(tmp_path_factory.mktemp("tls"))


def trusting(cert: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert))


def https_server(run_dir: Path, store: Path, tls: dict[str, str]) -> EmberServer:
    server = EmberServer(run_dir, store, models=["echo.mar"], wait_healthy=False)
    server.inference_url = server.inference_url.replace("http://", "https://")
    server.management_url = server.management_url.replace("http://", "https://")
    server.extra_config.update(tls)
    return server


def wait_ready(client: httpx.Client, server: EmberServer, within_s: float = 60.0) -> None:
    """Poll /ping over TLS (the fixture's own wait speaks plain HTTP)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if client.get(server.inference_url + "/ping").status_code == 200:
            return
        time.sleep(0.05)
    raise AssertionError(server.console_text())


def test_https_listeners_and_grpc_over_tls_from_pem_files(
    certificate: tuple[Path, Path, Path], echo_store: Path, tmp_path: Path
) -> None:
    cert, key, _ = certificate
    tls = {"certificate_file": str(cert), "private_key_file": str(key), "enable_grpc_ssl": "true"}
    with (
        https_server(tmp_path, echo_store, tls) as server,
        httpx.Client(verify=trusting(cert), timeout=30) as client,
    ):
        wait_ready(client, server)
        reply = client.post(server.inference_url + "/predictions/echo", content=b"secret data")
        assert reply.status_code == 200 and reply.content == b"secret data"
        assert client.get(server.management_url + "/models").status_code == 200
        # Plain HTTP to a TLS port gets nowhere.
        with pytest.raises(httpx.HTTPError):
            httpx.get(server.inference_url.replace("https://", "http://") + "/ping", timeout=5)
        # A client that checks certificates refuses a server it does not trust.
        with pytest.raises(httpx.ConnectError):
            httpx.get(server.inference_url + "/ping", timeout=5)

        credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
        with grpc.secure_channel(f"127.0.0.1:{server.ports['grpc_inference']}", credentials) as channel:
            answer = inference_pb2_grpc.InferenceAPIsServiceStub(channel).Ping(empty_pb2.Empty(), timeout=10)
            assert "Healthy" in answer.health
        with grpc.insecure_channel(f"127.0.0.1:{server.ports['grpc_inference']}") as channel:
            with pytest.raises(grpc.RpcError):
                inference_pb2_grpc.InferenceAPIsServiceStub(channel).Ping(empty_pb2.Empty(), timeout=5)


def test_https_from_a_pkcs12_keystore(
    certificate: tuple[Path, Path, Path], echo_store: Path, tmp_path: Path
) -> None:
    cert, _, keystore = certificate
    tls = {"keystore": str(keystore), "keystore_pass": "changeit", "keystore_type": "PKCS12"}
    with (
        https_server(tmp_path, echo_store, tls) as server,
        httpx.Client(verify=trusting(cert), timeout=30) as client,
    ):
        wait_ready(client, server)
        assert client.get(server.inference_url + "/ping").json() == {"status": "Healthy"}
        assert "changeit" not in server.console_text()


@pytest.mark.parametrize(
    ("tls", "message"),
    [
        ({}, "an https:// address needs a certificate: set certificate_file and private_key_file"),
        ({"keystore": "{keystore}", "keystore_pass": "wrong"}, "wrong keystore_pass or not a PKCS12 file"),
        ({"keystore": "{keystore}", "keystore_type": "JKS"}, "keystore_type=JKS is not supported"),
        ({"certificate_file": "{cert}"}, "needs both certificate_file and private_key_file"),
    ],
    ids=["no-certificate", "wrong-password", "jks", "no-key"],
)
def test_an_unusable_certificate_stops_the_start_with_a_clear_message(
    certificate: tuple[Path, Path, Path], echo_store: Path, tmp_path: Path, tls: dict[str, str], message: str
) -> None:
    cert, _, keystore = certificate
    settings = {k: v.format(cert=cert, keystore=keystore) for k, v in tls.items()}
    server = https_server(tmp_path, echo_store, settings)
    with contextlib.suppress(RuntimeError, TimeoutError):
        server.start()
    assert server.proc is not None
    assert server.proc.wait(30) == 2
    assert message in server.console_text()
    server.proc = None


def test_the_server_context_refuses_protocols_older_than_tls_1_2(
    certificate: tuple[Path, Path, Path],
) -> None:
    cert, key, _ = certificate
    settings = types.SimpleNamespace(
        certificate_file=cert, private_key_file=key, keystore=None, keystore_pass=None, keystore_type="PKCS12"
    )
    assert server_ssl_context(settings).minimum_version == ssl.TLSVersion.TLSv1_2
