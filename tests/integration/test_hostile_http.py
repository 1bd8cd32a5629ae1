"""Hostile HTTP against a real server (SECURITY.md H1, H7, H9, H11, H13, H14, H15, B9, Z12).

Each case asserts the answer, then that the server still serves (a canary prediction) and that
nothing leaked into the log (no traceback).
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from emberserve.config import CliOptions, load_config
from tests.conftest import ECHO_HANDLER, archive, write_handler
from tests.ember_server import EmberServer

pytestmark = pytest.mark.security

# Sets a response header per request: a CR/LF one must never split the response (H15).
HEADER_HANDLER = """
def handle(data, context):
    if data is None:
        return None
    for i, row in enumerate(data):
        body = bytes(row.get("body") or b"")
        if body == b"split":
            context.set_response_header(i, "X-Injected", "a\\r\\nSet-Cookie: evil=1")
        elif body == b"badname":
            context.set_response_header(i, "Bad Name:", "x")
        else:
            context.set_response_header(i, "X-Fine", "yes")
    return ["ok" for _ in data]
"""

SLOW_HANDLER = """
import time

def handle(data, context):
    if data is None:
        return None
    time.sleep(1.0)
    return ["done" for _ in data]
"""


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmberServer]:
    store = tmp_path_factory.mktemp("hostile-store")
    src = tmp_path_factory.mktemp("hostile-src")
    archive(store, "echo", write_handler(src, "echo_handler.py", ECHO_HANDLER))
    archive(store, "headers", write_handler(src, "header_handler.py", HEADER_HANDLER))
    archive(store, "slow", write_handler(src, "slow_handler.py", SLOW_HANDLER))
    run = tmp_path_factory.mktemp("hostile-run")
    with EmberServer(run, store, models=["echo.mar", "headers.mar", "slow.mar"]) as server:
        yield server


@pytest.fixture(autouse=True)
def still_serving(srv: EmberServer) -> Iterator[None]:
    yield
    reply = httpx.post(srv.inference_url + "/predictions/echo", content=b"canary", timeout=30)
    assert reply.status_code == 200 and reply.content == b"canary"
    assert "Traceback" not in srv.console_text()


def raw(srv: EmberServer, data: bytes, *, read_all: bool = True) -> bytes:
    with socket.create_connection(("127.0.0.1", srv.ports["inference"]), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            chunks.append(chunk)
            if not read_all:
                break
        return b"".join(chunks)


def test_h1_an_oversized_content_length_is_413_before_the_body(srv: EmberServer) -> None:
    answer = raw(srv, b"POST /predictions/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1073741824\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 413 ")


def test_h11_expect_continue_over_the_cap_gets_413_without_100_continue(srv: EmberServer) -> None:
    answer = raw(
        srv,
        b"PUT /predictions/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1073741824\r\n"
        b"Expect: 100-continue\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"100 Continue" not in answer


@pytest.mark.parametrize(
    ("request_head", "status"),
    [
        (b"GET /ping HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(10_000)), b"431"),
        (b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 1_000_000 + b"\r\n", b"431"),
        (b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n", b"414"),
    ],
    ids=["10k-headers", "1MB-header", "100KB-url"],
)
def test_h7_huge_heads_are_refused_with_4xx(srv: EmberServer, request_head: bytes, status: bytes) -> None:
    answer = raw(srv, request_head + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 " + status)


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,  # a TLS ClientHello
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",  # the HTTP/2 preface
        b"\x00\xff\xfe garbage \r\n\r\n",
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
    ],
    ids=["tls-hello", "h2-preface", "binary", "connect"],
)
def test_h9_garbage_is_400_and_closed(srv: EmberServer, garbage: bytes) -> None:
    answer = raw(srv, garbage)
    assert answer.startswith(b"HTTP/1.1 400 ")


@pytest.mark.parametrize("method", ["TRACE", "PROPFIND", "CONNECT", "PATCH"])
@pytest.mark.parametrize("port", ["inference", "management", "metrics"])
def test_h13_odd_methods_get_405_or_404_never_5xx(srv: EmberServer, method: str, port: str) -> None:
    reply = httpx.request(method, f"http://127.0.0.1:{srv.ports[port]}/models", timeout=10)
    assert reply.status_code in (400, 404, 405)
    if reply.content:
        assert set(reply.json()) == {"code", "type", "message"}


def test_h14_a_client_that_leaves_mid_inference_costs_no_worker(srv: EmberServer) -> None:
    [before] = httpx.get(srv.management_url + "/models/slow").json()
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(srv.inference_url + "/predictions/slow", content=b"x", timeout=0.2)
    reply = httpx.post(srv.inference_url + "/predictions/slow", content=b"x", timeout=30)
    assert reply.status_code == 200 and reply.content == b"done"
    [after] = httpx.get(srv.management_url + "/models/slow").json()
    assert [w["pid"] for w in after["workers"]] == [w["pid"] for w in before["workers"]]


def test_h15_a_handler_header_with_crlf_never_splits_the_response(srv: EmberServer) -> None:
    fine = httpx.post(srv.inference_url + "/predictions/headers", content=b"fine", timeout=30)
    assert fine.headers["x-fine"] == "yes"
    for body in (b"split", b"badname"):
        answer = raw(
            srv,
            b"POST /predictions/headers HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
            b"Connection: close\r\n\r\n%s" % (len(body), body),
        )
        head = answer.split(b"\r\n\r\n", 1)[0]
        assert answer.startswith(b"HTTP/1.1 200 ")
        assert b"Set-Cookie" not in head
        assert b"X-Injected" not in head and b"Bad Name" not in head  # dropped, not mangled


@pytest.mark.parametrize("content_type", [None, "application/json", "image/png", "text/plain"])
def test_b9_empty_bodies_reach_the_handler_without_a_frontend_error(
    srv: EmberServer, content_type: str | None
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    reply = httpx.post(srv.inference_url + "/predictions/echo", content=b"", headers=headers, timeout=30)
    assert reply.status_code in (200, 503)
    assert reply.status_code != 500


def test_z12_every_listener_binds_loopback_by_default(srv: EmberServer, tmp_path: Path) -> None:
    defaults = load_config(CliOptions(), {}, tmp_path)
    hosts = [defaults.inference_address.host, defaults.management_address.host, defaults.metrics_address.host]
    assert hosts == ["127.0.0.1"] * 3
    assert defaults.grpc_inference_address == defaults.grpc_management_address == "127.0.0.1"
    assert srv.proc is not None
    listening = [
        c.laddr
        for c in psutil.Process(srv.proc.pid).net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN
    ]
    assert {port for _, port in listening} >= set(srv.ports.values())
    assert all(_loopback(address) for address, _ in listening), listening


def _loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)  # gRPC binds dual-stack: ::ffff:127.0.0.1
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


def test_slow_header_bytes_do_not_stall_other_clients(srv: EmberServer) -> None:
    sockets = []
    try:
        for _ in range(50):  # slowloris: connections that never finish their head
            sock = socket.create_connection(("127.0.0.1", srv.ports["inference"]), timeout=5)
            sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            sockets.append(sock)
        started = time.monotonic()
        reply = httpx.post(srv.inference_url + "/predictions/echo", content=b"quick", timeout=10)
        assert reply.status_code == 200
        assert time.monotonic() - started < 5
    finally:
        for sock in sockets:
            sock.close()
