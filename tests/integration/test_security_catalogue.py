"""Rows of the SECURITY.md catalogue (section b) that no other test covered, each named after its ID.

Where another test already covers a row, docs/security-tests.md names it instead. Every test here
asserts the answer the row expects, that the server is still up afterwards (``/ping`` and a canary
prediction on another model) and that error bodies leak no traceback, absolute path or key. Only
127.0.0.1 is ever dialled; "never contacted" is proven with a local listener that counts
connections.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import gzip
import http.server
import json
import os
import re
import resource
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

import grpc
import httpx
import psutil
import pytest
from google.protobuf import empty_pb2

from emberserve.archive import download
from emberserve.archive.download import DownloadPolicy, download_archive
from emberserve.config import CliOptions, load_config
from emberserve.errors import BadRequestError, UrlNotAllowedError
from emberserve.grpc.generated import (
    inference_pb2,
    inference_pb2_grpc,
    management_pb2,
    management_pb2_grpc,
)
from emberserve.model_source import resolve_source
from emberserve.snapshot import SnapshotModel, SnapshotWriter
from tests.conftest import ECHO_HANDLER, REFERENCE_MODELS, archive, serve_http, write_handler
from tests.ember_server import EmberServer, bearer, keys
from tests.integration.test_chaos import LimitedServer

pytestmark = pytest.mark.security

TIMEOUT = 30.0
MAX_REQUEST = 1 << 20  # max_request_size of the main server: small, so caps are crossed quickly

# -- handlers ---------------------------------------------------------------------------------------

# "sleep:<seconds>[:<dir>]" sleeps (after dropping a marker file in <dir>); anything else is echoed.
SLEEP_HANDLER = """
import os, time, uuid

def handle(data, context):
    if data is None:
        return None
    out = []
    for row in data:
        body = bytes(row.get("body") or row.get("data") or b"")
        if body.startswith(b"sleep:"):
            parts = body.decode().split(":", 2)
            if len(parts) == 3:
                open(os.path.join(parts[2], "started-" + uuid.uuid4().hex), "w").close()
            time.sleep(float(parts[1]))
            out.append("done")
        else:
            out.append(body)
    return out
"""

# One failure mode per request body; anything else is echoed.
ZOO_HANDLER = """
import ctypes, os, subprocess, sys

def handle(data, context):
    if data is None:
        return None
    body = bytes(data[0].get("body") or data[0].get("data") or b"")
    if body == b"segv":
        ctypes.string_at(0)
    if body == b"unserialisable":
        return [object() for _ in data]
    if body == b"generator":
        return (b"x" for _ in data)
    if body == b"flood":
        sys.stdout.write(("x" * 1023 + "\\n") * 10240)  # 10 MiB in lines
        sys.stdout.flush()
        sys.stderr.write("y" * (5 << 20))  # one 5 MiB line without a newline
        sys.stderr.flush()
        return [b"flooded" for _ in data]
    if body.startswith(b"spawn:"):
        child = subprocess.Popen(["sleep", "1000"])
        with open(body[6:].decode(), "w") as f:
            f.write(str(child.pid))
        return [b"spawned" for _ in data]
    return [bytes(row.get("body") or row.get("data") or b"") for row in data]
"""

FOREVER_HANDLER = """
import time
from ts.handler_utils.utils import send_intermediate_predict_response

def handle(data, context):
    if data is None:
        return None
    body = bytes(data[0].get("body") or data[0].get("data") or b"")
    if body == b"forever":
        while True:
            send_intermediate_predict_response(["tick"] * len(data), context.request_ids, "ok", 200, context)
            time.sleep(0.05)
    return [bytes(row.get("body") or row.get("data") or b"") for row in data]
"""

# Like FOREVER_HANDLER, but it swallows the cancellation and streams on.
STUBBORN_HANDLER = FOREVER_HANDLER.replace(
    "            send_intermediate_predict_response(",
    "            try:\n                send_intermediate_predict_response(",
).replace(
    "context)\n            time.sleep",
    "context)\n            except Exception:\n                pass\n            time.sleep",
)

HANG_AT_IMPORT = """
import time
time.sleep(3600)

def handle(data, context):
    return data
"""

IMPORT_ERROR = """
import emberserve_no_such_module_for_w16

def handle(data, context):
    return data
"""

SYNTAX_ERROR = """
def handle(data, context:
    return data
"""

# -- helpers ----------------------------------------------------------------------------------------

LEAK_PATTERNS = [
    re.compile(p) for p in (r"Traceback \(most recent call last\)", r'File "/', r"/tmp/", r"/work/")
]


def assert_clean_error(reply: httpx.Response, status: int, type_name: str | None = None) -> dict[str, Any]:
    """A TS-shaped error body with no traceback or absolute path in it."""
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert set(body) == {"code", "type", "message"}, body
    assert body["code"] == status
    if type_name is not None:
        assert body["type"] == type_name, body
    for pattern in LEAK_PATTERNS:
        assert not pattern.search(reply.text), reply.text
    return body


def assert_up(srv: EmberServer, model: str = "echo") -> None:
    """/ping healthy and another model still serving."""
    assert httpx.get(srv.inference_url + "/ping", timeout=TIMEOUT).status_code == 200
    reply = httpx.post(f"{srv.inference_url}/predictions/{model}", content=b"canary", timeout=TIMEOUT)
    assert reply.status_code == 200 and reply.content == b"canary", reply.text
    assert srv.proc is not None and srv.proc.poll() is None


def wait_until(check: Callable[[], bool], what: str, timeout_s: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def describe(srv: EmberServer, model: str) -> dict[str, Any]:
    reply = httpx.get(f"{srv.management_url}/models/{model}", timeout=TIMEOUT)
    assert reply.status_code == 200, reply.text
    return reply.json()[0]  # type: ignore[no-any-return]


def worker_pids(srv: EmberServer, model: str) -> list[int]:
    return [w["pid"] for w in describe(srv, model)["workers"]]


def register(srv: EmberServer, **params: str) -> httpx.Response:
    return httpx.post(srv.management_url + "/models", params=params, timeout=60)


def unregister(srv: EmberServer, name: str) -> None:
    httpx.put(
        f"{srv.management_url}/models/{name}", params={"min_worker": "0", "synchronous": "true"}, timeout=60
    )
    httpx.delete(f"{srv.management_url}/models/{name}", timeout=60)


def raw(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def server_snapshot(srv: EmberServer) -> dict[str, int]:
    """What must not grow: fds, threads, children and temp dirs of the frontend; its RSS."""
    assert srv.proc is not None
    proc = psutil.Process(srv.proc.pid)
    return {
        "fds": proc.num_fds(),
        "threads": proc.num_threads(),
        "children": len(proc.children(recursive=True)),
        "tmp": len(list(srv.tmp_dir.rglob("*"))),
        "rss": proc.memory_info().rss,
    }


def assert_no_growth(before: dict[str, int], after: dict[str, int], rss_slack: int = 64 << 20) -> None:
    assert after["fds"] <= before["fds"] + 3, (before, after)
    assert after["threads"] <= before["threads"] + 2, (before, after)
    assert after["children"] == before["children"], (before, after)
    assert after["tmp"] <= before["tmp"], (before, after)
    assert after["rss"] <= before["rss"] + rss_slack, (before, after)


class Recorder(http.server.BaseHTTPRequestHandler):
    """A loopback origin that counts every request it gets (and serves a few archive routes)."""

    hits: ClassVar[Counter[str]] = Counter()
    archive: ClassVar[bytes] = b""

    def log_message(self, *_args: object) -> None:
        pass

    def do_GET(self) -> None:
        Recorder.hits[self.path] += 1
        path = self.path.split("?", 1)[0]
        if path.endswith("/tarpit.mar"):
            self.send_response(200)
            self.send_header("Content-Length", "1000000")
            self.end_headers()
            with contextlib.suppress(OSError):
                for _ in range(300):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.1)
            return
        if path.endswith(".mar"):
            self.send_response(200)
            self.send_header("Content-Length", str(len(Recorder.archive)))
            self.end_headers()
            self.wfile.write(Recorder.archive)
            return
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()


class ConnectionCounter:
    """A raw TCP listener on 127.0.0.1 that only counts the connections made to it."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.count += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


# -- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def origin() -> Iterator[str]:
    with serve_http(Recorder) as url:
        yield url


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("catalogue-store")
    src = tmp_path_factory.mktemp("catalogue-src")
    archive(folder, "echo", write_handler(src, "echo_handler.py", ECHO_HANDLER))
    archive(folder, "sleeper", write_handler(src, "sleep_handler.py", SLEEP_HANDLER))
    archive(folder, "zoo", write_handler(src, "zoo_handler.py", ZOO_HANDLER))
    archive(folder, "error", REFERENCE_MODELS / "error" / "error_handler.py")
    archive(folder, "init_error", REFERENCE_MODELS / "init_error" / "init_error_handler.py")
    archive(folder, "hang", write_handler(src / "hang", "hang_handler.py", HANG_AT_IMPORT))
    archive(folder, "importerr", write_handler(src / "imp", "importerr_handler.py", IMPORT_ERROR))
    archive(folder, "syntaxerr", write_handler(src / "syn", "syntaxerr_handler.py", SYNTAX_ERROR))
    archive(folder, "forever", write_handler(src / "forever", "forever_handler.py", FOREVER_HANDLER))
    archive(folder, "stubborn", write_handler(src / "stubborn", "stubborn_handler.py", STUBBORN_HANDLER))
    versioned = REFERENCE_MODELS / "versioned" / "versioned_handler.py"
    for version in ("1.0", "2.0"):
        archive(folder, "versioned", versioned, version=version)
        shutil.move(folder / "versioned.mar", folder / f"versioned_v{version[0]}.mar")
    return folder


@pytest.fixture(scope="module")
def srv(store: Path, origin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmberServer]:
    """Model API on, token auth off, small caps and short timeouts; downloads only from ``origin``."""
    Recorder.archive = (store / "echo.mar").read_bytes()
    config = {
        "enable_model_api": "true",
        "max_request_size": str(MAX_REQUEST),
        "job_queue_size": "10",
        "restart_backoff_base_ms": "50",
        "allowed_urls": re.escape(origin) + "/.*",
        "model_download_timeout": "2",
        "unregister_model_timeout": "30",
        "metrics_mode": "prometheus",
    }
    with EmberServer(
        tmp_path_factory.mktemp("catalogue-run"),
        store,
        models=["echo.mar", "sleeper.mar", "zoo.mar", "error.mar"],
        extra_config=config,
    ) as server:
        yield server


@pytest.fixture
def marks(tmp_path: Path) -> Path:
    folder = tmp_path / "marks"
    folder.mkdir()
    return folder


# ===================================================================================================
# Archives
# ===================================================================================================


def test_A14_requirements_txt_in_a_mar_is_never_read_or_run(
    srv: EmberServer, tmp_path: Path, store: Path
) -> None:
    """A14: requirements.txt with --index-url, -e, -r ../x and shell metacharacters is never read
    with install_py_dep_per_model=false (the default): no pip, no shell, no sentinel, no fetch."""
    counter = ConnectionCounter()
    sentinel = tmp_path / "PWNED"
    try:
        requirements = write_handler(
            tmp_path / "req",
            "requirements.txt",
            f"--index-url http://127.0.0.1:{counter.port}/simple\n-e .\n-r ../x.txt\n"
            f"numpy; touch {sentinel}\n$(touch {sentinel})\n",
        )
        archive(
            store,
            "reqs",
            write_handler(tmp_path / "req", "req_handler.py", ECHO_HANDLER),
            "--requirements-file",
            str(requirements),
        )
        with zipfile.ZipFile(store / "reqs.mar") as zf:
            assert "requirements.txt" in zf.namelist()
        reply = register(srv, url="reqs.mar", initial_workers="1", synchronous="true")
        assert reply.status_code == 200, reply.text
        answer = httpx.post(srv.inference_url + "/predictions/reqs", content=b"hi", timeout=TIMEOUT)
        assert answer.status_code == 200 and answer.content == b"hi"
        names = {" ".join(p.cmdline()) for p in srv.worker_processes() if p.is_running()}
        assert not any("pip" in n or "/bin/sh" in n for n in names), names
        assert not sentinel.exists()
        assert counter.count == 0
    finally:
        unregister(srv, "reqs")
        counter.close()
        (store / "reqs.mar").unlink(missing_ok=True)
    assert_up(srv)


def test_A16_register_unregister_cycles_leak_nothing(srv: EmberServer) -> None:
    """A16: repeated register/unregister of a valid .mar leaves no temp dirs, fds, threads, children
    or RSS growth behind (25 cycles here; the long run is manual)."""
    for _ in range(3):  # warm-up: first-use allocations are not leaks
        assert register(srv, url="echo.mar", model_name="cycled", initial_workers="1").status_code == 200
        assert httpx.delete(srv.management_url + "/models/cycled", timeout=60).status_code == 200
    before = server_snapshot(srv)
    for _ in range(25):
        assert register(srv, url="echo.mar", model_name="cycled", initial_workers="1").status_code == 200
        assert httpx.delete(srv.management_url + "/models/cycled", timeout=60).status_code == 200
    wait_until(lambda: server_snapshot(srv)["children"] <= before["children"], "workers of 'cycled' gone")
    assert_no_growth(before, server_snapshot(srv))
    assert_up(srv)


# ===================================================================================================
# Model URL on register
# ===================================================================================================


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/x.mar",
        "http://[fd00:ec2::254]/x.mar",
        "http://0xA9FEA9FE/x.mar",
        "http://2852039166/x.mar",
        "http://[::ffff:169.254.169.254]/x.mar",
        "http://metadata.google.internal/x.mar",
    ],
)
def test_U2_metadata_addresses_are_refused_before_any_socket(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """U2: metadata/link-local addresses in every spelling → refused before any connection is made,
    even with an allow-everything allowed_urls."""
    resolved: list[str] = []
    real_getaddrinfo = socket.getaddrinfo

    def fake_getaddrinfo(host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        resolved.append(host)
        if host == "metadata.google.internal":
            return real_getaddrinfo("169.254.169.254", port, *args, **kwargs)
        return real_getaddrinfo(host, port, *args, **kwargs)

    def no_client(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("a blocked destination was contacted")

    monkeypatch.setattr(download.socket, "getaddrinfo", fake_getaddrinfo)
    monkeypatch.setattr(httpx, "Client", no_client)
    everything = DownloadPolicy(allowed_urls=[".*"], explicit=True, max_bytes=1 << 20, timeout_s=5)
    with pytest.raises(UrlNotAllowedError):
        download_archive(url, tmp_path, everything)
    assert list(tmp_path.iterdir()) == []


def test_U2_metadata_url_registration_is_400_on_the_server(srv: EmberServer) -> None:
    """U2: the same through the management API → 400, server fine."""
    for url in ("http://169.254.169.254/latest/meta-data/", "http://[fd00:ec2::254]/x.mar"):
        assert_clean_error(register(srv, url=url), 400)
    assert_up(srv)


@pytest.mark.parametrize(
    "url",
    [
        "http://models.example.com/x.mar",  # scheme
        "https://models.example.com.evil.net/x.mar",
        "https://models.example.com@evil.net/x.mar",  # userinfo
        "https://user:pw@models.example.com/x.mar",  # userinfo, even where the pattern matches
    ],
)
def test_U3_allowed_urls_is_a_full_match_and_userinfo_is_refused(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """U3: with allowed_urls=https://models\\.example\\.com/.* each of these is refused, without any
    name lookup."""

    def no_lookup(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("looked up a refused URL")

    monkeypatch.setattr(download.socket, "getaddrinfo", no_lookup)
    policy = DownloadPolicy(
        allowed_urls=[r"https://models\.example\.com/.*"], explicit=True, max_bytes=1 << 20, timeout_s=5
    )
    with pytest.raises(UrlNotAllowedError):
        download_archive(url, tmp_path, policy)


def test_U3_startup_warns_about_unescaped_dots_in_allowed_urls(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """U3: `https://models.example.com/.*` also matches `https://modelsXexample.com/…`; startup
    should warn about the unescaped dots in the host part."""
    (tmp_path / "config.properties").write_text("allowed_urls=https://models.example.com/.*\n")
    (tmp_path / "store").mkdir()
    with caplog.at_level("WARNING"):
        load_config(
            CliOptions(ts_config=str(tmp_path / "config.properties"), model_store=str(tmp_path / "store")),
            {},
            tmp_path,
        )
    assert [r.getMessage() for r in caplog.records if "unescaped" in r.getMessage()] == [
        "allowed_urls pattern 'https://models.example.com/.*': an unescaped '.' in its host matches any "
        "character (models.example.com also matches modelsXexample.com); escape it as '\\.'"
    ]


@pytest.mark.parametrize(
    "path",
    ["%2e%2e/x.mar", "%2E%2e%2fx.mar", "%252e%252e/x.mar", "a/%2e%2e/%2e%2e/x.mar"],
)
def test_U4_encoded_dot_dot_is_404_before_any_download(srv: EmberServer, origin: str, path: str) -> None:
    """U4: `..` in any encoding → 404 "Relative path is not allowed in url" (TS), the origin gets no
    request and nothing lands in the store."""
    before = sum(Recorder.hits.values())
    listing = sorted(p.name for p in srv.model_store.iterdir())
    for url in (f"{origin}/{path}", path):
        body = assert_clean_error(register(srv, url=url), 404, "ModelNotFoundException")
        assert body["message"].startswith("Relative path is not allowed in url: ")
    assert sum(Recorder.hits.values()) == before
    assert sorted(p.name for p in srv.model_store.iterdir()) == listing
    assert_up(srv)


def test_U6_self_ssrf_is_refused_and_never_reaches_the_server(srv: EmberServer) -> None:
    """U6: url=http://127.0.0.1:<own port>/… is not allow-listed → 400; the server gets no request
    from itself (a loopback listener in its place counts zero connections)."""
    counter = ConnectionCounter()
    try:
        for url in (
            f"http://127.0.0.1:{srv.ports['management']}/models?url=x.mar",
            f"http://127.0.0.1:{srv.ports['inference']}/predictions/x.mar",
            f"http://127.0.0.1:{counter.port}/models/x.mar",
            f"http://localhost:{counter.port}/x.mar",
        ):
            assert_clean_error(register(srv, url=url), 400)
        assert counter.count == 0
    finally:
        counter.close()
    access = "".join(p.read_text(errors="replace") for p in srv.log_dir.glob("access_log*"))
    assert "/models?url=x.mar" not in access.replace("url=http", "")  # no inbound call from itself
    assert_up(srv)


def test_U7_the_host_is_resolved_once_and_the_validated_address_is_dialled(
    origin: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """U7: DNS rebinding: the first lookup answers an allowed address, later ones the metadata
    address. One lookup only; the connection goes to the address that was checked."""
    port = int(origin.rsplit(":", 1)[1])
    real_getaddrinfo = socket.getaddrinfo
    lookups: list[str] = []

    def rebinding(host: str, p: int, *args: Any, **kwargs: Any) -> Any:
        if host != "models.rebind.test":
            return real_getaddrinfo(host, p, *args, **kwargs)
        lookups.append(host)
        answer = "127.0.0.1" if len(lookups) == 1 else "169.254.169.254"
        return real_getaddrinfo(answer, p, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    before = Recorder.hits["/rebind.mar"]
    policy = DownloadPolicy(
        allowed_urls=[r"http://models\.rebind\.test:\d+/.*"], explicit=True, max_bytes=1 << 20, timeout_s=5
    )
    path = download_archive(f"http://models.rebind.test:{port}/rebind.mar", tmp_path, policy)
    assert path.read_bytes() == Recorder.archive
    assert lookups == ["models.rebind.test"]
    assert Recorder.hits["/rebind.mar"] == before + 1


def test_U8_a_tarpit_download_is_cut_off_and_management_keeps_answering(
    srv: EmberServer, origin: str
) -> None:
    """U8: 1 byte every 0.1 s: the overall download deadline (model_download_timeout=2) ends it with
    400; the partial file is deleted; other management calls answer meanwhile in < 1 s."""
    listing = sorted(p.name for p in srv.model_store.iterdir())
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        pending = pool.submit(register, srv, url=f"{origin}/tarpit.mar")
        wait_until(lambda: Recorder.hits["/tarpit.mar"] >= 1, "the download to start")
        latencies = []
        while not pending.done() and time.monotonic() - started < TIMEOUT:
            t0 = time.monotonic()
            assert httpx.get(srv.management_url + "/models", timeout=5).status_code == 200
            latencies.append(time.monotonic() - t0)
            time.sleep(0.05)
        reply = pending.result(TIMEOUT)
    assert time.monotonic() - started < 15
    body = assert_clean_error(reply, 400)
    assert "not complete after" in body["message"] or "timed out" in body["message"].lower()
    assert latencies and max(latencies) < 1.0, latencies
    assert sorted(p.name for p in srv.model_store.iterdir()) == listing  # no partial file
    assert_up(srv)


@pytest.mark.parametrize(
    ("url", "status"),
    [
        ("ftp://127.0.0.1/x.mar", 400),
        ("gopher://127.0.0.1/x.mar", 400),
        ("jar:http://127.0.0.1/x.mar!/", 400),
        ("dict://127.0.0.1:11211/x.mar", 400),
        ("http:/x.mar", 400),
        ("http://localhost:aaa/x.mar", 400),
        ("{origin}/x%0d%0aX-Injected:%20yes/x.mar", 400),
        ("{origin}/x.mar%0d%0aX-Injected:%20yes", 400),
    ],
)
def test_U9_odd_schemes_malformed_urls_and_crlf_are_400_and_never_fetched(
    srv: EmberServer, origin: str, url: str, status: int
) -> None:
    """U9: ftp/gopher/jar/dict, malformed http, a bad port and CRLF → 400 with no outbound request
    (so no header injection)."""
    before = sum(Recorder.hits.values())
    assert_clean_error(register(srv, url=url.format(origin=origin)), status)
    assert sum(Recorder.hits.values()) == before
    assert_up(srv)


def test_U10_download_names_conflicts_and_cleanup(srv: EmberServer, origin: str) -> None:
    """U10: the store filename is the validated basename (query ignored, `..;/`, `\\` refused); an
    existing file → 409; unregister deletes the downloaded file; register/unregister/register works."""
    store = srv.model_store
    # Query strings are not part of the name; a `..` in them is refused like any other `..`.
    assert_clean_error(register(srv, url=f"{origin}/dl.mar?y=../../z"), 404)
    for bad in (f"{origin}/..;/dl.mar", f"{origin}/a%5cdl.mar", f"{origin}/a\\dl.mar"):
        assert register(srv, url=bad).status_code in (400, 404), bad
    assert not list(store.glob("*dl*"))
    # A download that would overwrite a file already in the store → 409.
    body = assert_clean_error(register(srv, url=f"{origin}/echo.mar"), 409)
    assert "already exists" in body["message"]
    for _ in range(2):
        reply = register(srv, url=f"{origin}/dl.mar?v=1", model_name="dl", initial_workers="1")
        assert reply.status_code == 200, reply.text
        assert (store / "dl.mar").is_file()
        assert httpx.delete(srv.management_url + "/models/dl", timeout=60).status_code == 200
        assert not (store / "dl.mar").exists()
    assert not list(store.glob("*.download*")) and not list(store.glob(".download-*"))
    assert_up(srv)


def test_U12_a_100_kb_url_is_refused_before_any_pattern_matching(tmp_path: Path) -> None:
    """U12: allowed_urls with catastrophic backtracking ((a+)+$) and a 100 KB URL: the URL length cap
    refuses it before matching, in well under 1 s. (An invalid regex refusing startup is
    tests/unit/test_config.py::test_invalid_values_name_key_value_and_what_is_allowed.)"""
    policy = DownloadPolicy(
        allowed_urls=["(a+)+$", r"http://(a+)+\.example/.*"], explicit=True, max_bytes=1, timeout_s=1
    )
    for url in ("a" * 100_000 + "!", "http://" + "a" * 100_000 + "!/x.mar"):
        started = time.monotonic()
        with pytest.raises(BadRequestError, match="longer than"):
            resolve_source(url, tmp_path, policy)
        assert time.monotonic() - started < 1.0


# ===================================================================================================
# Management API parameters
# ===================================================================================================


@pytest.mark.parametrize(
    "name", ["../x", "a/b", "a\\b", "%2e%2e", "a\x00b", "x" * 10_000, "\U0001f600", ".hidden"]
)
def test_M1_hostile_model_names_are_400_everywhere(srv: EmberServer, name: str) -> None:
    """M1: model_name outside ^[A-Za-z0-9][A-Za-z0-9_\\-.]*$ or too long → 400; probing them on the
    prediction and describe routes is a 4xx; nothing is registered."""
    before = httpx.get(srv.management_url + "/models").json()
    assert_clean_error(register(srv, url="echo.mar", model_name=name), 400, "BadRequestException")
    quoted = httpx.URL(srv.inference_url).copy_with(raw_path=b"/predictions/" + quote(name, safe="").encode())
    probe = httpx.post(quoted, content=b"x", timeout=TIMEOUT)
    assert 400 <= probe.status_code < 500
    assert httpx.get(srv.management_url + "/models").json() == before
    assert_up(srv)


def test_M2_hostile_versions_are_404_and_all_keeps_its_meaning(srv: EmberServer) -> None:
    """M2: version `../1.0` (encoded), a 1000-char version → 404; `all` still describes all."""
    m = srv.management_url
    for version in ("%2e%2e%2f1.0", "..%2F1.0", "9" * 1000):
        reply = httpx.get(
            httpx.URL(m).copy_with(raw_path=f"/models/echo/{version}".encode()), timeout=TIMEOUT
        )
        assert_clean_error(reply, 404)
        reply = httpx.post(
            httpx.URL(srv.inference_url).copy_with(raw_path=f"/predictions/echo/{version}".encode()),
            content=b"x",
            timeout=TIMEOUT,
        )
        assert_clean_error(reply, 404)
    described = httpx.get(m + "/models/echo/all", timeout=TIMEOUT)
    assert described.status_code == 200 and [d["modelVersion"] for d in described.json()] == ["1.0"]
    assert_up(srv)


@pytest.mark.parametrize(
    "params",
    [
        {"batch_size": "0"},
        {"batch_size": "-1"},
        {"batch_size": "1000000000"},
        {"max_batch_delay": "-5"},
        {"response_timeout": "0"},
        {"response_timeout": "-1"},
        {"response_timeout": "1000000000"},
        {"startup_timeout": "-1"},
        {"initial_workers": "-5"},
    ],
    ids=lambda p: "=".join(next(iter(p.items()))),
)
def test_M3_out_of_range_register_numbers_are_400(srv: EmberServer, params: dict[str, str]) -> None:
    """M3: batch_size=0/-1/10^9, max_batch_delay=-5, response_timeout=0/-1/10^9 → 400 naming the
    parameter and its range, and nothing is registered."""
    [(name, value)] = params.items()
    reply = register(srv, url="echo.mar", model_name="m3", **params)
    assert_clean_error(reply, 400)
    assert reply.json()["message"].startswith(f"Invalid {name}: {value}. It must be between ")
    assert httpx.get(f"{srv.management_url}/models/m3", timeout=TIMEOUT).status_code == 404
    assert_up(srv)


def test_M3_initial_workers_minus_one_keeps_its_torchserve_meaning(srv: EmberServer) -> None:
    """-1 is TorchServe's "not given" (its Postman suite registers with it and expects 200): the
    model gets the workers it gets without the parameter (reference §4)."""
    try:
        reply = register(srv, url="echo.mar", model_name="m3w", initial_workers="-1")
        assert reply.status_code == 200, reply.text
        reply = register(srv, url="echo.mar", model_name="m3n")
        assert reply.status_code == 200, reply.text
        assert describe(srv, "m3w")["minWorkers"] == describe(srv, "m3n")["minWorkers"]
    finally:
        unregister(srv, "m3w")
        unregister(srv, "m3n")
    assert_up(srv)


def test_M3_grpc_register_checks_the_same_ranges(srv: EmberServer) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{srv.ports['grpc_management']}") as channel:
        stub = management_pb2_grpc.ManagementAPIsServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.RegisterModel(
                management_pb2.RegisterModelRequest(url="echo.mar", model_name="m3g", batch_size=100_000),
                timeout=TIMEOUT,
            )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Invalid batch_size: 100000. It must be between 1 and 8192." in (caught.value.details() or "")


@pytest.mark.parametrize("value", ["dd", "nan", "1e3", ""])
def test_M3_unparsable_register_numbers_fall_back_to_defaults(srv: EmberServer, value: str) -> None:
    """M3: unparsable values (`dd`, `nan`) are ignored like TS (its Postman suite expects 200), with
    a warning in the log."""
    try:
        reply = register(srv, url="echo.mar", model_name="m3u", batch_size=value, initial_workers="1")
        assert reply.status_code == 200, reply.text
        assert describe(srv, "m3u")["batchSize"] == 1
        if value:
            wait_until(
                lambda: (
                    "Ignoring invalid integer for parameter batch_size" in srv.console_text()
                    or any(
                        "Ignoring invalid integer" in p.read_text(errors="replace")
                        for p in srv.log_dir.glob("*.log")
                    )
                ),
                "the warning",
            )
    finally:
        unregister(srv, "m3u")
    assert_up(srv)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"min_worker": "2", "max_worker": "1"}, "max_worker cannot be less than min_worker."),
        ({"min_worker": "-1"}, None),
        ({"max_worker": "-1"}, None),
        ({"min_worker": "-1", "max_worker": "-1"}, None),
    ],
)
def test_M4_bad_worker_counts_are_400(srv: EmberServer, params: dict[str, str], message: str | None) -> None:
    """M4: min>max → 400 with TS's text; negatives → 400 (not TS's 500); the model is untouched."""
    pids = worker_pids(srv, "echo")
    reply = httpx.put(srv.management_url + "/models/echo", params=params, timeout=60)
    body = assert_clean_error(reply, 400)
    if message:
        assert body["message"] == message
    assert worker_pids(srv, "echo") == pids
    assert_up(srv)


def test_M7_register_racing_unregister_and_two_deletes_stay_consistent(srv: EmberServer) -> None:
    """M7: register during an unregister of the same name, and two concurrent DELETEs: consistent
    200/404/409 answers, never a half-registered model, no leftover workers."""
    children_before = len(srv.worker_processes())
    for _ in range(3):
        assert register(srv, url="sleeper.mar", model_name="racer", initial_workers="1").status_code == 200
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            deletes = [
                pool.submit(httpx.delete, srv.management_url + "/models/racer", timeout=60) for _ in range(2)
            ]
            again = pool.submit(register, srv, url="sleeper.mar", model_name="racer", initial_workers="1")
            codes = sorted(f.result(TIMEOUT).status_code for f in deletes)
            reg = again.result(TIMEOUT).status_code
        assert codes in ([200, 404], [200, 200]), codes
        assert reg in (200, 409), reg
        listed = httpx.get(f"{srv.management_url}/models/racer", timeout=TIMEOUT)
        if listed.status_code == 200:  # the new registration won: it must be whole and serving
            reply = httpx.post(srv.inference_url + "/predictions/racer", content=b"x", timeout=TIMEOUT)
            assert reply.status_code == 200 and reply.content == b"x"
            unregister(srv, "racer")
        else:
            assert listed.status_code == 404
    wait_until(lambda: len(srv.worker_processes()) == children_before, "no leftover workers")
    assert_up(srv)


def test_M9_a_failing_initialize_keeps_the_model_and_ping_reflects_it(srv: EmberServer) -> None:
    """M9: sync register of a model whose initialize() raises → 500 "Failed to start workers …";
    the model stays registered and retries; /ping reports the shortfall; DELETE still works."""
    try:
        reply = register(srv, url="init_error.mar", initial_workers="1", synchronous="true")
        body = assert_clean_error(reply, 500)
        assert body["message"] == "Failed to start workers for model init_error version: 1.0"
        assert describe(srv, "init_error")["minWorkers"] == 1
        wait_until(
            lambda: httpx.get(srv.inference_url + "/ping", timeout=5).status_code != 200, "/ping to degrade"
        )
        reply = httpx.post(srv.inference_url + "/predictions/echo", content=b"still", timeout=TIMEOUT)
        assert reply.status_code == 200
    finally:
        assert httpx.delete(srv.management_url + "/models/init_error", timeout=60).status_code == 200
    srv.wait_for_ping(200, timeout_s=TIMEOUT)
    assert_up(srv)


@pytest.mark.parametrize(
    "query",
    [
        "limit=-1",
        "limit=1000000000",
        "limit=99999999999999999999999",
        "limit=abc",
        "next_page_token=garbage",
        "next_page_token=-1",
        "next_page_token=99999999999999999999",
        "limit=1&next_page_token=-5",
    ],
)
def test_M10_list_paging_garbage_is_200_with_defaults(srv: EmberServer, query: str) -> None:
    """M10: any limit/next_page_token → 200 with clamped defaults, never 500."""
    reply = httpx.get(f"{srv.management_url}/models?{query}", timeout=TIMEOUT)
    assert reply.status_code == 200, reply.text
    assert isinstance(reply.json()["models"], list)
    assert_up(srv)


def test_M12_repeated_unknown_and_conflicting_params_are_deterministic(srv: EmberServer) -> None:
    """M12: repeated params → the last wins; unknown params ignored; a JSON body replaces the query
    (TS); never a 500."""
    url = srv.management_url + "/models/sleeper"
    try:
        reply = httpx.put(url + "?min_worker=1&min_worker=2&synchronous=true&bogus=1&x[]=y", timeout=60)
        assert reply.status_code == 200, reply.text
        assert describe(srv, "sleeper")["minWorkers"] == 2
        reply = httpx.put(url + "?min_worker=3&synchronous=true", json={"min_worker": 1, "synchronous": True})
        assert reply.status_code == 200, reply.text
        assert describe(srv, "sleeper")["minWorkers"] == 1
        for junk in (b"[1,2]", b'"text"', b"{", b"\xff"):
            reply = httpx.put(url, content=junk, headers={"content-type": "application/json"}, timeout=60)
            assert_clean_error(reply, 400)
    finally:
        httpx.put(url, params={"min_worker": "1", "synchronous": "true"}, timeout=60)
    assert_up(srv)


# ===================================================================================================
# HTTP protocol layer
# ===================================================================================================


def test_H2_chunked_body_over_the_cap_is_413(srv: EmberServer) -> None:
    """H2: a chunked body (no Content-Length) that crosses max_request_size → 413, then close."""

    def chunks() -> Iterator[bytes]:
        for _ in range(2 * MAX_REQUEST // 65536 + 4):  # bounded: at most ~2 MiB sent
            yield b"a" * 65536

    try:
        reply = httpx.post(srv.inference_url + "/predictions/echo", content=chunks(), timeout=TIMEOUT)
    except (httpx.WriteError, httpx.RemoteProtocolError, httpx.ReadError):
        answer = raw(
            srv.ports["inference"],
            b"POST /predictions/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + (b"10000\r\n" + b"a" * 65536 + b"\r\n") * 20,
        )
        assert answer.startswith(b"HTTP/1.1 413 ")
    else:
        assert reply.status_code == 413
        if reply.content:
            assert_clean_error(reply, 413)
    assert_up(srv)


@pytest.fixture
def small_drain(store: Path, tmp_path: Path) -> Iterator[EmberServer]:
    """A throwaway server (1 MiB cap, 1 s drain) for tests that may leave a connection stuck."""
    config = {"max_request_size": str(MAX_REQUEST), "drain_timeout": "1", "enable_model_api": "true"}
    with EmberServer(tmp_path / "run", store, models=["echo.mar"], extra_config=config) as server:
        yield server


def test_H3_half_a_million_one_byte_chunks_stay_cheap(small_drain: EmberServer) -> None:
    """H3: 500 000 one-byte chunks (500 kB of body, 3 MB on the wire): served (or 413) in bounded
    time while a /ping canary stays fast."""
    srv = small_drain
    body = b"1\r\na\r\n" * 500_000 + b"0\r\n\r\n"
    request = (
        b"POST /predictions/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Connection: close\r\n\r\n" + body
    )
    latencies: list[float] = []
    stop = threading.Event()

    def canary() -> None:
        while not stop.is_set():
            t0 = time.monotonic()
            assert httpx.get(srv.inference_url + "/ping", timeout=5).status_code == 200
            latencies.append(time.monotonic() - t0)
            stop.wait(0.1)

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        watcher = pool.submit(canary)
        started = time.monotonic()
        answer = raw(srv.ports["inference"], request, timeout=5)
        elapsed = time.monotonic() - started
        stop.set()
        watcher.result(TIMEOUT)
    assert latencies and sorted(latencies)[int(len(latencies) * 0.99)] < 1.0, latencies
    assert_up(srv)
    assert answer.startswith((b"HTTP/1.1 200 ", b"HTTP/1.1 413 ")), answer[:200]
    if answer.startswith(b"HTTP/1.1 200 "):
        assert answer.endswith(b"a" * 1000)
    assert elapsed < 5, elapsed


def test_H5_slowloris_connections_do_not_starve_a_canary(srv: EmberServer) -> None:
    """H5: 500 connections each trickling header bytes; canary /ping p99 < 1 s throughout. (The 30 s
    header timeout that closes them is fixed and covered by the unit test of the connection.)"""
    sockets: list[socket.socket] = []
    latencies = []
    try:
        for _ in range(500):
            sock = socket.create_connection(("127.0.0.1", srv.ports["inference"]), timeout=5)
            sock.sendall(b"G")
            sockets.append(sock)
        for round_ in range(10):
            for sock in sockets:
                with contextlib.suppress(OSError):
                    sock.sendall(b"ET /ping HTTP/1.1\r\n"[round_ : round_ + 1])
            t0 = time.monotonic()
            assert httpx.get(srv.inference_url + "/ping", timeout=5).status_code == 200
            latencies.append(time.monotonic() - t0)
    finally:
        for sock in sockets:
            sock.close()
    assert max(latencies) < 1.0, latencies
    assert_up(srv)


def test_H6_a_slow_body_is_never_queued_for_a_worker_before_it_is_complete(srv: EmberServer) -> None:
    """H6: Content-Length 5 000 000 at a trickle: nothing reaches the model's queue or worker while
    the body is incomplete, other clients are served. (413 here since 5 MB > the 1 MiB cap; under
    the cap, the 120 s body timeout → 408 is covered by the connection's unit tests.)"""
    with socket.create_connection(("127.0.0.1", srv.ports["inference"]), timeout=10) as slow:
        slow.sendall(b"POST /predictions/sleeper HTTP/1.1\r\nHost: x\r\nContent-Length: 500000\r\n\r\n")
        for _ in range(10):
            slow.sendall(b"sleep:5" if _ == 0 else b"0123456789")
            queue = describe(srv, "sleeper")["jobQueueStatus"]["pendingRequests"]
            assert queue == 0
            reply = httpx.post(srv.inference_url + "/predictions/sleeper", content=b"quick", timeout=5)
            assert reply.status_code == 200 and reply.content == b"quick"
            time.sleep(0.05)
    assert_up(srv)


def test_H12_a_gzip_bomb_body_is_passed_through_as_bytes(srv: EmberServer) -> None:
    """H12: Content-Encoding: gzip that would inflate to 256 MiB is not inflated by the frontend:
    the handler gets the bytes as sent (TS behaviour); frontend RSS does not jump."""
    bomb = gzip.compress(b"\x00" * (256 << 20), compresslevel=9)
    assert len(bomb) < MAX_REQUEST
    assert srv.proc is not None
    rss_before = psutil.Process(srv.proc.pid).memory_info().rss
    reply = httpx.post(
        srv.inference_url + "/predictions/echo",
        content=bomb,
        headers={"content-encoding": "gzip", "content-type": "application/octet-stream"},
        timeout=TIMEOUT,
    )
    assert reply.status_code == 200
    assert reply.content == bomb
    assert psutil.Process(srv.proc.pid).memory_info().rss < rss_before + (64 << 20)
    assert_up(srv)


# ===================================================================================================
# Request bodies
# ===================================================================================================


@pytest.mark.parametrize(
    ("content_type", "body", "reason"),
    [
        (
            "multipart/form-data; boundary=x",
            b'--x\r\nContent-Disposition: form-data; name="data"\r\n\r\nhi',
            "the final boundary is missing",
        ),
        (
            "multipart/form-data; boundary=" + "b" * 300,
            b"--" + b"b" * 300 + b"\r\n\r\nx\r\n",
            "Boundary length",
        ),
        ("multipart/form-data; boundary=x", b"--x\r\n\r\nno headers\r\n--x--\r\n", "no Content-Disposition"),
        (
            "multipart/form-data; boundary=x",
            b"--x\r\nContent-Type: multipart/mixed; boundary=y\r\n\r\n--y\r\n\r\nz\r\n--y--\r\n--x--\r\n",
            "no Content-Disposition",
        ),
    ],
    ids=["unterminated", "300-char-boundary", "part-without-headers", "nested"],
)
def test_B1_malformed_multipart_is_400_and_terminates(
    srv: EmberServer, content_type: str, body: bytes, reason: str
) -> None:
    """B1: malformed multipart → 400 saying what is wrong, the parser terminates within 1 s.
    (TorchServe hands the handler an empty row instead.)"""
    started = time.monotonic()
    reply = httpx.post(
        srv.inference_url + "/predictions/echo",
        content=body,
        headers={"content-type": content_type},
        timeout=5,
    )
    assert time.monotonic() - started < 1.0
    assert_clean_error(reply, 400)
    assert reply.json()["message"].startswith("Malformed multipart/form-data body: ")
    assert reason in reply.json()["message"]
    assert_up(srv)


def test_B1_multipart_without_a_boundary_is_a_raw_body_as_in_torchserve(srv: EmberServer) -> None:
    """No boundary parameter: no multipart parser runs at all; TorchServe (reference §3) and Ember
    hand the bytes to the handler as the body, which clients with a wrong header rely on."""
    body = b'--x\r\nContent-Disposition: form-data; name="data"\r\n\r\nhi\r\n--x--\r\n'
    reply = httpx.post(
        srv.inference_url + "/predictions/echo",
        content=body,
        headers={"content-type": "multipart/form-data"},
        timeout=5,
    )
    assert (reply.status_code, reply.content) == (200, body)


def test_B2_size_caps_on_multipart(srv: EmberServer) -> None:
    """B2: one field above the size cap → 413; a base64 part of endless whitespace is bounded by the
    same cap; frontend memory bounded."""
    assert srv.proc is not None
    rss_before = psutil.Process(srv.proc.pid).memory_info().rss
    headers = {"content-type": "multipart/form-data; boundary=b"}
    big = b'--b\r\nContent-Disposition: form-data; name="data"\r\n\r\n' + b"a" * (MAX_REQUEST + 10)
    spaces = (
        b'--b\r\nContent-Disposition: form-data; name="data"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
        + b" " * (MAX_REQUEST + 10)
    )
    for body in (big, spaces):
        reply = httpx.post(
            srv.inference_url + "/predictions/echo",
            content=body + b"\r\n--b--\r\n",
            headers=headers,
            timeout=TIMEOUT,
        )
        assert reply.status_code == 413
    assert psutil.Process(srv.proc.pid).memory_info().rss < rss_before + (64 << 20)
    assert_up(srv)


def test_B2_too_many_multipart_parts_are_refused(srv: EmberServer) -> None:
    """B2: 100 000 empty parts → 413 (part-count cap), memory bounded."""
    part = b'--b\r\nContent-Disposition: form-data; name="p"\r\n\r\n\r\n'
    many = part * (MAX_REQUEST // len(part) - 1) + b"--b--\r\n"
    assert len(many) < MAX_REQUEST
    reply = httpx.post(
        srv.inference_url + "/predictions/echo",
        content=many,
        headers={"content-type": "multipart/form-data; boundary=b"},
        timeout=TIMEOUT,
    )
    assert_up(srv)
    assert_clean_error(reply, 413)
    assert "at most 1000" in reply.json()["message"]


@pytest.mark.parametrize("filename", ["../../b3-pwned", "/tmp/b3-pwned-abs", "b3\x00pwned"])
def test_B3_part_filenames_are_metadata_only(srv: EmberServer, filename: str, tmp_path: Path) -> None:
    """B3: a part's filename (`../../x`, absolute, NUL) only travels as metadata: the handler gets the
    content, nothing is written to disk under that name."""
    before = set(srv.run_dir.rglob("*b3*")) | set(Path("/tmp").glob("b3*"))
    body = (
        b'--b\r\nContent-Disposition: form-data; name="data"; filename="'
        + filename.encode()
        + b'"\r\nContent-Type: application/octet-stream\r\n\r\npayload\r\n--b--\r\n'
    )
    reply = httpx.post(
        srv.inference_url + "/predictions/echo",
        content=body,
        headers={"content-type": "multipart/form-data; boundary=b"},
        timeout=TIMEOUT,
    )
    assert reply.status_code == 200 and reply.content == b"payload"
    after = set(srv.run_dir.rglob("*b3*")) | set(Path("/tmp").glob("b3*"))
    assert after == before
    assert not (srv.run_dir.parent / "b3-pwned").exists()
    assert_up(srv)


def test_B4_invalid_utf8_and_json_where_the_frontend_parses(srv: EmberServer) -> None:
    """B4: invalid UTF-8/JSON in a management JSON body → 400; opaque /predictions bytes reach the
    handler unchanged (TS), even when labelled JSON."""
    for junk in (b"\xff\xfe\xfd", b'{"url": "echo.mar"', b"\xc3\x28", b"nan"):
        reply = httpx.post(
            srv.management_url + "/models", content=junk, headers={"content-type": "application/json"}
        )
        assert_clean_error(reply, 400, "BadRequestException")
    for junk in (b"\xff\xfe\xfd", b"\x80abc\xc3\x28"):
        reply = httpx.post(
            srv.inference_url + "/predictions/echo",
            content=junk,
            headers={"content-type": "application/octet-stream"},
            timeout=TIMEOUT,
        )
        assert reply.status_code == 200 and reply.content == junk
        reply = httpx.post(
            srv.inference_url + "/v2/models/echo/infer",
            content=junk,
            headers={"content-type": "application/json"},
            timeout=TIMEOUT,
        )
        assert reply.status_code < 500 or reply.status_code == 503
    assert_up(srv)


def test_B5_json_nested_100000_deep_is_400_not_500(srv: EmberServer) -> None:
    """B5: JSON nested 100 000 deep → 400 where the frontend parses it; a prediction with it is not
    a frontend 500 and the worker survives."""
    deep = b"[" * 100_000 + b"]" * 100_000
    reply = httpx.post(
        srv.management_url + "/models", content=deep, headers={"content-type": "application/json"}
    )
    assert_clean_error(reply, 400, "BadRequestException")
    reply = httpx.put(
        srv.management_url + "/models/echo", content=deep, headers={"content-type": "application/json"}
    )
    assert_clean_error(reply, 400, "BadRequestException")
    pids = worker_pids(srv, "echo")
    reply = httpx.post(
        srv.inference_url + "/predictions/echo",
        content=deep,
        headers={"content-type": "application/json"},
        timeout=TIMEOUT,
    )
    assert reply.status_code in (200, 400, 503)
    assert worker_pids(srv, "echo") == pids
    assert_up(srv)


@pytest.fixture(scope="module")
def v2srv(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmberServer]:
    """The kservev2 envelope: KServe v2 REST bodies are decoded (in the worker, like TS)."""
    with EmberServer(
        tmp_path_factory.mktemp("catalogue-v2"),
        store,
        models=["echo.mar"],
        # Bounded: a request that ties up the worker is cut at 5 s, the drain at 1 s.
        extra_config={"service_envelope": "kservev2", "default_response_timeout": "5", "drain_timeout": "1"},
    ) as server:
        yield server


B7_BODIES = {
    "huge-shape": {"name": "x", "shape": [2147483647, 2147483647], "datatype": "FP32", "data": [1.0]},
    "negative-dim": {"name": "x", "shape": [-1, 4], "datatype": "FP32", "data": [1.0, 2.0, 3.0, 4.0]},
    "length-mismatch": {"name": "x", "shape": [3], "datatype": "FP32", "data": [1.0, 2.0]},
    "unknown-datatype": {"name": "x", "shape": [1], "datatype": "COMPLEX", "data": [1.0]},
}


@pytest.mark.parametrize("case", [*B7_BODIES, "million-inputs"])
def test_B7_kserve_v2_rest_tensors_with_impossible_shapes_are_400(v2srv: EmberServer, case: str) -> None:
    """B7: v2 infer with shape [2^31-1, 2^31-1] and 4 bytes, negative dims, dtype/data mismatch,
    unknown datatype, 10^6 inputs → 400 without allocating (RSS flat), worker alive.
    (gRPC ModelInfer: tests/unit/test_grpc_wire.py::test_invalid_tensors_are_bad_requests.)"""
    assert v2srv.proc is not None
    rss = psutil.Process(v2srv.proc.pid).memory_info().rss
    pids = worker_pids(v2srv, "echo")
    if case == "million-inputs":
        inputs = b",".join([b'{"name":"x","shape":[0],"datatype":"FP32","data":[]}'] * 1_000_000)
        if len(inputs) > 6_000_000:
            inputs = b",".join([b'{"name":"x","shape":[0],"datatype":"FP32","data":[]}'] * 100_000)
        content = b'{"inputs":[' + inputs + b"]}"
    else:
        content = json.dumps({"id": "1", "inputs": [B7_BODIES[case]]}).encode()
    reply = httpx.post(
        v2srv.inference_url + "/v2/models/echo/infer",
        content=content,
        headers={"content-type": "application/json"},
        timeout=15,
    )
    assert reply.status_code < 500 or reply.status_code == 400, reply.text
    assert psutil.Process(v2srv.proc.pid).memory_info().rss < rss + (64 << 20)
    wait_until(lambda: worker_pids(v2srv, "echo") == pids, "the same worker")
    assert httpx.get(v2srv.inference_url + "/ping", timeout=TIMEOUT).status_code == 200
    assert_clean_error(reply, 400)


# ===================================================================================================
# gRPC
# ===================================================================================================


def _h2_frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def _hpack_literal(name: bytes, value: bytes) -> bytes:
    """Literal header field without indexing, new name, no Huffman (RFC 7541 §6.2.2)."""
    assert len(name) < 127 and len(value) < 127
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


def test_G5_http2_rapid_reset_and_ping_floods_leave_grpc_responsive(srv: EmberServer) -> None:
    """G5: HEADERS+RST_STREAM for 10 000 streams, plus SETTINGS and PING floods, on the gRPC port:
    the canary RPC stays fast and the server stays up."""
    headers = b"".join(
        _hpack_literal(n, v)
        for n, v in (
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":path", b"/org.pytorch.serve.grpc.inference.InferenceAPIsService/Ping"),
            (b":authority", b"127.0.0.1"),
            (b"content-type", b"application/grpc"),
            (b"te", b"trailers"),
        )
    )
    sock = socket.create_connection(("127.0.0.1", srv.ports["grpc_inference"]), timeout=5)
    started = time.monotonic()
    sent = 0
    try:
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + _h2_frame(0x4, 0, 0))
        batch = bytearray()
        for i in range(10_000):
            stream = 2 * i + 1
            batch += _h2_frame(0x1, 0x4, stream, headers)  # HEADERS, END_HEADERS
            batch += _h2_frame(0x3, 0, stream, struct.pack(">I", 8))  # RST_STREAM CANCEL
            if i % 10 == 0:
                batch += _h2_frame(0x6, 0, 0, b"12345678")  # PING
                batch += _h2_frame(0x4, 0, 0)  # SETTINGS
            if len(batch) > 65536:
                sock.sendall(bytes(batch))
                batch.clear()
            sent += 1
            if time.monotonic() - started > 5:
                break
        with contextlib.suppress(OSError):
            sock.sendall(bytes(batch))
    except OSError:
        pass  # the server may close the abusive connection: that is fine
    finally:
        sock.close()
    assert sent > 100
    with grpc.insecure_channel(f"127.0.0.1:{srv.ports['grpc_inference']}") as channel:
        stub = inference_pb2_grpc.InferenceAPIsServiceStub(channel)
        t0 = time.monotonic()
        stub.Ping(empty_pb2.Empty(), timeout=10)
        assert time.monotonic() - t0 < 2.0
        reply = stub.Predictions(
            inference_pb2.PredictionsRequest(model_name="echo", input={"data": b"grpc"}), timeout=TIMEOUT
        )
        assert reply.prediction == b"grpc"
    assert_up(srv)


# ===================================================================================================
# Worker and handler faults
# ===================================================================================================


@pytest.mark.parametrize(
    ("command", "status", "type_name"),
    [
        ("anything", 503, None),
        ("prediction_exception", 418, "InternalServerException"),
        ("memory_error", 507, None),
    ],
)
def test_W1_handler_exceptions_map_to_ts_statuses_and_the_worker_stays(
    srv: EmberServer, command: str, status: int, type_name: str | None
) -> None:
    """W1: a handler that raises → 503 "Prediction failed"-style; PredictionException(msg, 418) →
    418; MemoryError → 507 (all TS); the worker stays (same pid)."""
    pids = worker_pids(srv, "error")
    reply = httpx.post(srv.inference_url + "/predictions/error", content=command.encode(), timeout=TIMEOUT)
    body = assert_clean_error(reply, status, type_name)
    assert "boom" not in body["message"] or status == 418  # no handler internals beyond the message
    assert worker_pids(srv, "error") == pids
    assert_up(srv)


def test_W4_a_segfaulting_handler_costs_one_request_and_the_worker_is_replaced(srv: EmberServer) -> None:
    """W4: a null-pointer read in the handler → 500 "Worker died." for that request; a new worker
    serves; other models untouched; no core file in the run dir."""
    [old] = worker_pids(srv, "zoo")
    reply = httpx.post(srv.inference_url + "/predictions/zoo", content=b"segv", timeout=TIMEOUT)
    body = assert_clean_error(reply, 500)
    assert body["message"] == "Worker died."
    wait_until(lambda: worker_pids(srv, "zoo") not in ([], [old]), "a replacement worker")
    wait_until(
        lambda: (
            httpx.post(srv.inference_url + "/predictions/zoo", content=b"ok", timeout=TIMEOUT).status_code
            == 200
        ),
        "the replacement to serve",
    )
    assert not list(srv.run_dir.glob("core*"))
    srv.wait_for_ping(200, timeout_s=TIMEOUT)
    assert_up(srv)


def test_W7_a_hanging_import_hits_startup_timeout(srv: EmberServer) -> None:
    """W7: a handler whose load hangs: sync register with startup_timeout=2 → 500 within timeout +
    slack, no orphan process; DELETE works."""
    children_before = len(srv.worker_processes())
    started = time.monotonic()
    try:
        reply = register(srv, url="hang.mar", initial_workers="1", synchronous="true", startup_timeout="2")
        elapsed = time.monotonic() - started
        body = assert_clean_error(reply, 500)
        assert body["message"] == "Failed to start workers for model hang version: 1.0"
        assert elapsed < 2 + 10, elapsed
        reply = httpx.post(srv.inference_url + "/predictions/echo", content=b"x", timeout=TIMEOUT)
        assert reply.status_code == 200
    finally:
        unregister(srv, "hang")
    wait_until(lambda: len(srv.worker_processes()) == children_before, "no process left for 'hang'")
    srv.wait_for_ping(200, timeout_s=TIMEOUT)
    assert_up(srv)


def test_W10_handler_children_die_with_their_worker(srv: EmberServer, tmp_path: Path) -> None:
    """W10: a handler that starts `sleep 1000`: unregistering the model kills the whole process
    group; no orphan."""
    assert register(srv, url="zoo.mar", model_name="spawner", initial_workers="1").status_code == 200
    pidfile = tmp_path / "child.pid"
    try:
        reply = httpx.post(
            srv.inference_url + "/predictions/spawner",
            content=b"spawn:" + str(pidfile).encode(),
            timeout=TIMEOUT,
        )
        assert reply.status_code == 200 and reply.content == b"spawned"
        child = psutil.Process(int(pidfile.read_text()))
        assert child.is_running()
    finally:
        assert httpx.delete(srv.management_url + "/models/spawner", timeout=60).status_code == 200
    _, alive = psutil.wait_procs([child], timeout=15)
    assert not alive or all(p.status() == psutil.STATUS_ZOMBIE for p in alive), alive
    assert_up(srv)


def test_W11_a_handler_flooding_stdout_and_stderr_never_blocks_the_frontend(srv: EmberServer) -> None:
    """W11: 10 MiB of stdout lines and one 5 MiB stderr line without newline: the request is
    answered, a canary stays fast, and no log line is longer than the cap."""
    latencies: list[float] = []
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        flood = pool.submit(
            httpx.post, srv.inference_url + "/predictions/zoo", content=b"flood", timeout=TIMEOUT
        )
        while not flood.done():
            t0 = time.monotonic()
            assert httpx.get(srv.inference_url + "/ping", timeout=5).status_code == 200
            latencies.append(time.monotonic() - t0)
            time.sleep(0.05)
        reply = flood.result(TIMEOUT)
    assert reply.status_code == 200 and reply.content == b"flooded"
    assert not latencies or max(latencies) < 1.0, latencies
    for log in srv.log_dir.glob("*.log*"):
        with log.open("rb") as f:
            assert all(len(line) < (1 << 20) for line in f), log
    assert_up(srv)


LEAKY_HANDLER = """
hoard = []

def handle(data, context):
    if data is None:
        return None
    hoard.append(bytearray(50 << 20))  # 50 MB per batch, never freed
    for chunk in hoard[-1:]:
        chunk[::4096] = b"x" * len(chunk[::4096])  # touch every page: resident, not just reserved
    return [bytes(row.get("body") or row.get("data") or b"") for row in data]
"""


def test_W9_a_leaking_worker_is_replaced_between_batches_and_nothing_fails(
    store: Path, tmp_path: Path
) -> None:
    """W9: a handler that keeps 50 MB per request, with max_worker_memory_mb=120: after the batch
    that crosses the limit the worker is replaced (no back-off); every request is answered 200,
    the reason is in describe's workerRestarts, and the frontend's memory stays flat."""
    folder = tmp_path / "store"
    folder.mkdir()
    shutil.copy(store / "echo.mar", folder / "echo.mar")
    archive(folder, "leaky", write_handler(tmp_path / "src", "leaky_handler.py", LEAKY_HANDLER))
    config = {"max_worker_memory_mb": "120"}
    with EmberServer(
        tmp_path / "run", folder, models=["echo.mar", "leaky.mar"], extra_config=config
    ) as server:
        assert server.proc is not None
        frontend = psutil.Process(server.proc.pid)
        rss_before = frontend.memory_info().rss
        [first] = worker_pids(server, "leaky")
        codes = Counter(
            httpx.post(server.inference_url + "/predictions/leaky", content=b"m", timeout=TIMEOUT).status_code
            for _ in range(8)
        )
        assert codes == Counter({200: 8}), codes
        described = describe(server, "leaky")
        assert [w["pid"] for w in described["workers"]] != [first]
        [restarts] = described["workerRestarts"]
        assert restarts["restarts"] >= 2 and restarts["lastExit"] == "replaced: over max_worker_memory_mb"
        assert all(w["memoryUsage"] < 200 << 20 for w in described["workers"])
        assert frontend.memory_info().rss < rss_before + (32 << 20)
        assert "more than max_worker_memory_mb=120: replacing it" in server.console_text() or any(
            "max_worker_memory_mb=120" in p.read_text(errors="replace") for p in server.log_dir.glob("*.log")
        )
        assert_up(server)


@pytest.mark.parametrize("command", ["bad_type", "not_a_list", "wrong_length"])
def test_W13_unserialisable_or_malformed_handler_output_is_503(srv: EmberServer, command: str) -> None:
    """W13: an output that cannot be serialised, or the wrong shape → 503 (TS's invalid-output
    case); the worker keeps serving; the frontend is unaffected."""
    pids = worker_pids(srv, "error")
    reply = httpx.post(srv.inference_url + "/predictions/error", content=command.encode(), timeout=TIMEOUT)
    assert_clean_error(reply, 503)
    assert worker_pids(srv, "error") == pids
    assert_up(srv)


@pytest.mark.parametrize("command", [b"unserialisable", b"generator"])
def test_W13_objects_and_generators_from_a_handler_are_503(srv: EmberServer, command: bytes) -> None:
    """W13: `object()` or a generator returned by a non-streaming model → 503, frontend fine."""
    reply = httpx.post(srv.inference_url + "/predictions/zoo", content=command, timeout=TIMEOUT)
    assert_clean_error(reply, 503)
    assert_up(srv)


def test_W15_workers_use_inherited_socketpairs_not_a_socket_path(srv: EmberServer) -> None:
    """W15: no worker IPC socket exists in the file system for another local process to pre-create
    or connect to: the frontend holds no listening unix socket at all."""
    assert srv.proc is not None
    frontend = psutil.Process(srv.proc.pid)
    unix = frontend.net_connections(kind="unix")
    assert all(not c.laddr for c in unix), [c.laddr for c in unix]
    assert not list(srv.run_dir.rglob("*.sock*")) and not list(srv.tmp_dir.rglob("*.sock*"))
    assert worker_pids(srv, "echo")  # and there are workers to talk to


@pytest.mark.parametrize("model", ["importerr", "syntaxerr"])
def test_W16_handler_import_or_syntax_error_is_a_short_500(srv: EmberServer, model: str) -> None:
    """W16: sync register of a handler with an import or syntax error → 500 with a short message
    (details only in the logs); the server carries on; DELETE works."""
    children_before = len(srv.worker_processes())
    try:
        reply = register(srv, url=f"{model}.mar", initial_workers="1", synchronous="true")
        body = assert_clean_error(reply, 500)
        assert body["message"] == f"Failed to start workers for model {model} version: 1.0"
        assert "emberserve_no_such_module" not in body["message"] and "SyntaxError" not in body["message"]
        reply = httpx.post(srv.inference_url + "/predictions/echo", content=b"x", timeout=TIMEOUT)
        assert reply.status_code == 200
    finally:
        unregister(srv, model)
    wait_until(lambda: len(srv.worker_processes()) == children_before, "no process left")
    srv.wait_for_ping(200, timeout_s=TIMEOUT)
    assert_up(srv)


# ===================================================================================================
# Lifecycle and concurrency
# ===================================================================================================


def _post_status(url: str, body: bytes, timeout: float = 60.0) -> tuple[int, float]:
    t0 = time.monotonic()
    try:
        code = httpx.post(url, content=body, timeout=timeout).status_code
    except httpx.TransportError:
        code = -1
    return code, time.monotonic() - t0


def test_L1_delete_with_requests_in_flight_answers_every_request(srv: EmberServer, marks: Path) -> None:
    """L1: DELETE a model with 20 requests in flight: new requests → 404/503 at once; every request
    gets exactly one answer (200 or a clean 5xx), none hangs; workers gone."""
    assert register(srv, url="sleeper.mar", model_name="doomed", initial_workers="2").status_code == 200
    url = srv.inference_url + "/predictions/doomed"
    body = b"sleep:0.5:" + str(marks).encode()
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        answers = [pool.submit(_post_status, url, body) for _ in range(20)]
        wait_until(lambda: len(list(marks.iterdir())) >= 2, "two requests running")
        deleted = httpx.delete(srv.management_url + "/models/doomed", timeout=60)
        assert deleted.status_code in (200, 408), deleted.text
        code, seconds = _post_status(url, b"x")
        assert code in (404, 503) and seconds < 1.0
        results = [a.result(TIMEOUT) for a in answers]
    codes = [c for c, _ in results]
    # 200 (finished), 404 (sent after the DELETE), 503 (queue full or stopped): never a dropped
    # connection (-1) or a request that hangs.
    assert -1 not in codes, codes
    assert all(c in (200, 404) or 500 <= c < 600 for c in codes), Counter(codes)
    assert codes.count(200) >= 2
    wait_until(
        lambda: httpx.get(srv.management_url + "/models/doomed").status_code == 404, "model 'doomed' gone"
    )
    assert_up(srv)


def test_L2_scale_to_zero_with_queued_requests_answers_them_all(srv: EmberServer, marks: Path) -> None:
    """L2: scale to 0 with requests queued: each one is served or gets a prompt 503; none hangs or
    is dropped."""
    assert register(srv, url="sleeper.mar", model_name="shrink", initial_workers="1").status_code == 200
    url = srv.inference_url + "/predictions/shrink"
    try:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = [pool.submit(_post_status, url, b"sleep:0.3:" + str(marks).encode()) for _ in range(8)]
            wait_until(lambda: len(list(marks.iterdir())) >= 1, "a request running")
            reply = httpx.put(
                srv.management_url + "/models/shrink",
                params={"min_worker": "0", "synchronous": "true"},
                timeout=60,
            )
            assert reply.status_code == 200, reply.text
            codes = [a.result(TIMEOUT)[0] for a in answers]
        assert all(c in (200, 503) for c in codes), codes
        assert codes.count(200) >= 1
    finally:
        unregister(srv, "shrink")
    assert_up(srv)


def _raw_post_status(srv: EmberServer, model: str, body: bytes) -> tuple[int, float]:
    """POST over a plain socket; the time is from the last byte sent to the status line."""
    with socket.create_connection(("127.0.0.1", srv.ports["inference"]), timeout=TIMEOUT) as sock:
        sock.sendall(
            b"POST /predictions/%s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
            % (model.encode(), len(body), body)
        )
        t0 = time.monotonic()
        head = sock.recv(12)
        return int(head[9:12]), time.monotonic() - t0


def test_L3_a_full_queue_answers_503_at_once_and_never_500(srv: EmberServer, marks: Path) -> None:
    """L3: job_queue_size=10, 1 worker, 1 s handler, 50 concurrent requests: the accepted ones all
    200, the rest 503 immediately; zero 500s."""
    assert register(srv, url="sleeper.mar", model_name="queued", initial_workers="1").status_code == 200
    try:
        with concurrent.futures.ThreadPoolExecutor(50) as pool:
            first = pool.submit(_raw_post_status, srv, "queued", b"sleep:2:" + str(marks).encode())
            wait_until(lambda: len(list(marks.iterdir())) >= 1, "the worker to be busy")
            rest = [pool.submit(_raw_post_status, srv, "queued", b"sleep:0.2") for _ in range(49)]
            results = [first.result(TIMEOUT), *(r.result(TIMEOUT) for r in rest)]
    finally:
        unregister(srv, "queued")
    codes = Counter(c for c, _ in results)
    assert set(codes) <= {200, 503}, codes
    assert 10 <= codes[200] <= 13, codes  # the queue plus what was in flight
    assert max(s for c, s in results if c == 503) < 0.5
    assert_up(srv)


def test_L5_register_unregister_churn_while_another_model_serves(srv: EmberServer) -> None:
    """L5: register/unregister cycles while another model takes traffic: that traffic is 100 % 2xx
    and nothing leaks (40 cycles here; the long run is manual)."""
    stop = threading.Event()
    codes: Counter[int] = Counter()

    def traffic() -> None:
        while not stop.is_set():
            reply = httpx.post(srv.inference_url + "/predictions/echo", content=b"t", timeout=TIMEOUT)
            codes[reply.status_code] += 1

    before = server_snapshot(srv)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        runners = [pool.submit(traffic) for _ in range(2)]
        try:
            for _ in range(40):
                assert (
                    register(srv, url="echo.mar", model_name="churn", initial_workers="1").status_code == 200
                )
                assert httpx.delete(srv.management_url + "/models/churn", timeout=60).status_code == 200
        finally:
            stop.set()
            for r in runners:
                r.result(TIMEOUT)
    assert set(codes) == {200} and codes[200] > 0, codes
    wait_until(lambda: server_snapshot(srv)["children"] <= before["children"], "churn workers gone")
    assert_no_growth(before, server_snapshot(srv))
    assert_up(srv)


def test_L6_set_default_flipping_under_traffic(srv: EmberServer) -> None:
    """L6: set-default flipped every 100 ms during traffic: each request is served by exactly one
    version, no 5xx."""
    for mar in ("versioned_v1.mar", "versioned_v2.mar"):
        assert register(srv, url=mar, initial_workers="1").status_code == 200
    stop = threading.Event()
    seen: Counter[str] = Counter()

    def traffic() -> None:
        while not stop.is_set():
            reply = httpx.post(srv.inference_url + "/predictions/versioned", content=b"v", timeout=TIMEOUT)
            assert reply.status_code == 200, reply.text
            seen[reply.json()["version"]] += 1

    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            runners = [pool.submit(traffic) for _ in range(2)]
            try:
                for i in range(20):
                    version = "2.0" if i % 2 == 0 else "1.0"
                    reply = httpx.put(f"{srv.management_url}/models/versioned/{version}/set-default")
                    assert reply.status_code == 200
                    time.sleep(0.1)
            finally:
                stop.set()
                for r in runners:
                    r.result(TIMEOUT)
        assert set(seen) <= {"1.0", "2.0"} and sum(seen.values()) > 0, seen
    finally:
        httpx.put(f"{srv.management_url}/models/versioned/1.0/set-default")
        for version in ("2.0", "1.0"):
            httpx.put(
                f"{srv.management_url}/models/versioned/{version}",
                params={"min_worker": "0", "synchronous": "true"},
                timeout=60,
            )
            httpx.delete(f"{srv.management_url}/models/versioned/{version}", timeout=60)
    assert_up(srv)


def test_L7_concurrent_scale_calls_end_consistent_without_leaks(srv: EmberServer) -> None:
    """L7: 20 alternating scale-up/scale-down calls at once, then one last call: the final worker
    count is the last request's and the processes match what is described."""
    assert register(srv, url="echo.mar", model_name="scaled", initial_workers="1").status_code == 200
    url = srv.management_url + "/models/scaled"
    try:
        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            calls = [
                pool.submit(httpx.put, url, params={"min_worker": str(1 + i % 3)}, timeout=60)
                for i in range(20)
            ]
            assert all(c.result(TIMEOUT).status_code in (200, 202) for c in calls)
        reply = httpx.put(url, params={"min_worker": "2", "synchronous": "true"}, timeout=60)
        assert reply.status_code == 200, reply.text
        wait_until(lambda: len(describe(srv, "scaled")["workers"]) == 2, "2 workers")
        described = {
            pid for model in ("echo", "sleeper", "zoo", "error", "scaled") for pid in worker_pids(srv, model)
        }
        wait_until(lambda: {p.pid for p in srv.worker_processes()} == described, "only described workers")
    finally:
        unregister(srv, "scaled")
    assert_up(srv)


def test_L8_describe_list_and_ping_answer_during_worker_restarts(srv: EmberServer) -> None:
    """L8: describe, list and /ping answer from state in < 1 s while a model's worker is killed and
    restarted repeatedly."""
    for _ in range(3):
        [pid] = worker_pids(srv, "zoo")
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + TIMEOUT
        while True:
            for call in (
                lambda: httpx.get(srv.management_url + "/models/zoo", timeout=5),
                lambda: httpx.get(srv.management_url + "/models", timeout=5),
                lambda: httpx.get(srv.inference_url + "/ping", timeout=5),
            ):
                t0 = time.monotonic()
                reply = call()
                assert reply.status_code in (200, 500), reply.text
                assert time.monotonic() - t0 < 1.0
            pids = worker_pids(srv, "zoo")
            if pids and pids != [pid] and describe(srv, "zoo")["workers"][0]["status"] == "READY":
                break
            assert time.monotonic() < deadline, "no replacement worker"
    assert_up(srv)


# ===================================================================================================
# gRPC streaming
# ===================================================================================================


def register_streamer(srv: EmberServer, model: str, response_timeout: str) -> int:
    """Register ``<model>.mar`` with one worker; its pid."""
    reply = register(
        srv, url=f"{model}.mar", initial_workers="1", response_timeout=response_timeout, synchronous="true"
    )
    assert reply.status_code == 200, reply.text
    [pid] = worker_pids(srv, model)
    return pid


def cancel_a_stream_then_predict(srv: EmberServer, model: str, timeout: float) -> bytes:
    """Read three ticks of a gRPC StreamPredictions call, cancel it, then predict "next" once."""
    with grpc.insecure_channel(f"127.0.0.1:{srv.ports['grpc_inference']}") as channel:
        stub = inference_pb2_grpc.InferenceAPIsServiceStub(channel)
        request = inference_pb2.PredictionsRequest(model_name=model, input={"data": b"forever"})
        stream = stub.StreamPredictions(request, timeout=TIMEOUT)
        for _, message in zip(range(3), stream, strict=False):
            assert message.prediction == b"tick"
        stream.cancel()
        answer = stub.Predictions(
            inference_pb2.PredictionsRequest(model_name=model, input={"data": b"next"}), timeout=timeout
        )
    return bytes(answer.prediction)


def test_G7_a_cancelled_grpc_stream_frees_the_same_worker(small_drain: EmberServer) -> None:
    """G7: StreamPredictions on a handler that yields forever; the client reads a few messages and
    cancels. With response_timeout far away, only the cancel path can free the worker: the next
    request is served at once by the same worker process."""
    srv = small_drain
    pid = register_streamer(srv, "forever", response_timeout="120")
    assert cancel_a_stream_then_predict(srv, "forever", timeout=10) == b"next"
    assert worker_pids(srv, "forever") == [pid]
    assert_up(srv)


def test_G7_an_http_client_leaving_a_stream_frees_the_same_worker(small_drain: EmberServer) -> None:
    srv = small_drain
    pid = register_streamer(srv, "forever", response_timeout="120")
    with socket.create_connection(("127.0.0.1", srv.ports["inference"]), timeout=TIMEOUT) as sock:
        sock.sendall(b"POST /predictions/forever HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\n\r\nforever")
        received = b""
        while received.count(b"tick") < 3:
            chunk = sock.recv(65536)
            assert chunk, received
            received += chunk
        assert b"transfer-encoding: chunked" in received.lower()
    answer = httpx.post(srv.inference_url + "/predictions/forever", content=b"next", timeout=10)
    assert (answer.status_code, answer.content) == (200, b"next")
    assert worker_pids(srv, "forever") == [pid]


def test_G7_a_handler_that_ignores_the_cancel_is_killed_after_response_timeout(
    small_drain: EmberServer,
) -> None:
    """A handler that catches StreamCancelled and streams on: once nobody reads, its chunks no
    longer count as progress, so response_timeout (2 s) kills it and a new worker serves."""
    srv = small_drain
    pid = register_streamer(srv, "stubborn", response_timeout="2")
    assert cancel_a_stream_then_predict(srv, "stubborn", timeout=20) == b"next"
    [replacement] = worker_pids(srv, "stubborn")
    assert replacement != pid
    assert_up(srv)


# ===================================================================================================
# Authentication
# ===================================================================================================


@pytest.fixture(scope="module")
def authed(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmberServer]:
    """Token auth on and the model API off: the defaults."""
    server = EmberServer(
        tmp_path_factory.mktemp("catalogue-auth"),
        store,
        models=["echo.mar"],
        extra_config={"disable_token_authorization": "false"},
        wait_healthy=False,
    )
    with server:
        server.wait_for_ping(200, headers=bearer(keys(server)["inference"]))
        yield server


def test_Z5_a_flood_of_wrong_tokens_leaves_the_server_responsive(authed: EmberServer) -> None:
    """Z5: thousands of wrong tokens from loopback: every one refused with 400, a canary with the
    right key keeps p99 < 1 s, and the right key still works afterwards."""
    k = keys(authed)
    good = k["inference"]
    wrong = ["x" * len(good), good[:-1] + ("A" if good[-1] != "A" else "B"), good[:8], good + "x"]
    codes: Counter[int] = Counter()
    stop = threading.Event()

    def flood() -> None:
        with httpx.Client(timeout=10) as client:
            for i in range(750):
                if stop.is_set():
                    return
                reply = client.get(authed.inference_url + "/ping", headers=bearer(wrong[i % len(wrong)]))
                codes[reply.status_code] += 1

    latencies = []
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        floods = [pool.submit(flood) for _ in range(4)]
        try:
            with httpx.Client(timeout=10, headers=bearer(good)) as canary:
                while not all(f.done() for f in floods):
                    t0 = time.monotonic()
                    assert canary.get(authed.inference_url + "/ping").status_code == 200
                    latencies.append(time.monotonic() - t0)
                    time.sleep(0.05)
        finally:
            stop.set()
            for f in floods:
                f.result(TIMEOUT)
    assert codes == Counter({400: 3000}), codes
    latencies.sort()
    assert latencies and latencies[int(len(latencies) * 0.99)] < 1.0, latencies[-5:]
    reply = httpx.post(
        authed.inference_url + "/predictions/echo", content=b"ok", headers=bearer(good), timeout=30
    )
    assert reply.status_code == 200 and reply.content == b"ok"
    assert good not in authed.console_text()


def test_Z2_grpc_wrong_token_is_permission_denied(authed: EmberServer) -> None:
    """Z2: a wrong token, or the management key on the inference port, over gRPC → PERMISSION_DENIED
    (TS). (REST 400 and expiry: test_token_auth.py and tests/unit/test_auth.py.)"""
    k = keys(authed)
    with grpc.insecure_channel(f"127.0.0.1:{authed.ports['grpc_inference']}") as channel:
        stub = inference_pb2_grpc.InferenceAPIsServiceStub(channel)
        for token in ("wrong", k["management"]):
            with pytest.raises(grpc.RpcError) as refused:
                stub.Ping(empty_pb2.Empty(), timeout=10, metadata=[("authorization", f"Bearer {token}")])
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_Z6_model_api_off_refuses_register_and_unregister_but_not_the_rest(authed: EmberServer) -> None:
    """Z6: with the model API off (default) POST /models and DELETE /models/x → 405 even with the
    management key; list, describe and scale still work with it (TS). (gRPC: test_grpc_api.)"""
    m = authed.management_url
    headers = bearer(keys(authed)["management"])
    body = assert_clean_error(httpx.post(m + "/models", params={"url": "zoo.mar"}, headers=headers), 405)
    assert "enable_model_api" in body["message"]
    assert_clean_error(httpx.delete(m + "/models/echo", headers=headers, timeout=60), 405)
    assert_clean_error(httpx.delete(m + "/models/echo/1.0", headers=headers, timeout=60), 405)
    assert httpx.get(m + "/models", headers=headers).json()["models"] == [
        {"modelName": "echo", "modelUrl": "echo.mar"}
    ]
    assert httpx.get(m + "/models/echo", headers=headers).status_code == 200
    scaled = httpx.put(m + "/models/echo", params={"min_worker": "1", "synchronous": "true"}, headers=headers)
    assert scaled.status_code == 200
    reply = httpx.post(
        authed.inference_url + "/predictions/echo",
        content=b"still",
        headers=bearer(keys(authed)["inference"]),
        timeout=30,
    )
    assert reply.status_code == 200 and reply.content == b"still"


# ===================================================================================================
# Process level and persistence
# ===================================================================================================


def test_P6_a_full_disk_during_extraction_fails_that_registration_only(store: Path, tmp_path: Path) -> None:
    """P6: files may not grow past 256 KiB (EFBIG, as ENOSPC would fail): registering an archive
    that extracts a 2 MiB file → 500/507 with a clean body; no partial extraction left; the other
    model keeps serving."""
    folder = tmp_path / "store"
    folder.mkdir()
    shutil.copy(store / "echo.mar", folder / "echo.mar")
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"\0" * (2 << 20))
    archive(
        folder,
        "big",
        write_handler(tmp_path / "src", "big_handler.py", ECHO_HANDLER),
        "--extra-files",
        str(weights),
    )
    assert (folder / "big.mar").stat().st_size < 256 << 10
    server = LimitedServer(
        tmp_path / "run",
        folder,
        models=["echo.mar"],
        extra_config={"enable_model_api": "true"},
        limit=(resource.RLIMIT_FSIZE, 256 << 10),
    )
    with server:
        before = sorted(str(p) for p in server.tmp_dir.rglob("*"))
        reply = register(server, url="big.mar", initial_workers="1", synchronous="true")
        assert_clean_error(reply, reply.status_code)
        assert httpx.get(server.management_url + "/models/big").status_code == 404
        assert sorted(str(p) for p in server.tmp_dir.rglob("*")) == before
        assert_up(server)
        assert reply.status_code == 507, reply.text
        assert reply.json()["message"] == (
            "Out of disk space while extracting the model archive (File too large): free some and try again."
        )


def test_P9_snapshot_mar_names_outside_the_store_are_not_restored(
    store: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """P9: a snapshot whose marName is `../x.mar` or an absolute path to a real archive outside the
    store: those versions are treated as invalid and skipped; the rest restores; the server runs."""
    folder = tmp_path / "store"
    folder.mkdir()
    shutil.copy(store / "echo.mar", folder / "echo.mar")
    shutil.copy(store / "echo.mar", tmp_path / "outside.mar")
    server = EmberServer(tmp_path / "run", folder)
    server.run_dir.mkdir()
    props = dict(line.split("=", 1) for line in server.config_text().splitlines())

    def model(name: str, mar: str) -> SnapshotModel:
        return SnapshotModel(
            name=name,
            version="1.0",
            mar_name=mar,
            default_version=True,
            min_workers=1,
            max_workers=1,
            batch_size=1,
            max_batch_delay=100,
            response_timeout=120,
            startup_timeout=120,
        )

    writer = SnapshotWriter(server.log_dir / "config", props, None)
    writer.write(
        "shutdown",
        [
            model("echo", "echo.mar"),
            model("dotdot", "../outside.mar"),
            model("absolute", str(tmp_path / "outside.mar")),
        ],
    )
    command = server.command()
    at = command.index("--ts-config")
    server.command = lambda: command[:at] + command[at + 2 :]  # type: ignore[method-assign]
    with server:
        listed = {m["modelName"] for m in httpx.get(server.management_url + "/models").json()["models"]}
        assert listed == {"echo"}
        assert_up(server)
    assert "dotdot" in server.console_text() or "Relative path" in server.console_text()


def test_P11_a_second_instance_on_the_same_ports_exits_and_leaves_the_first_alone(
    srv: EmberServer, store: Path, tmp_path: Path
) -> None:
    """P11: a second instance on the same ports (own dirs) exits non-zero with a clear message; the
    first keeps serving, and its pid file, snapshots and logs are untouched by the second."""
    snapshots = sorted(p.name for p in (srv.log_dir / "config").iterdir())
    second = EmberServer(tmp_path / "second", store)
    second.ports = dict(srv.ports)
    second.inference_url, second.management_url, second.metrics_url = (
        srv.inference_url,
        srv.management_url,
        srv.metrics_url,
    )
    second.run_dir.mkdir()
    second.tmp_dir.mkdir()
    second.config_path.write_text(second.config_text())
    with second.console.open("wb") as out:
        proc = subprocess.Popen(
            second.command(),
            cwd=second.run_dir,
            env=second.environment(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        code = proc.wait(TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert code != 0
    text = second.console_text()
    assert "address already in use" in text.lower() or "in use" in text.lower(), text[-2000:]
    assert "Traceback" not in text
    assert sorted(p.name for p in (srv.log_dir / "config").iterdir())[: len(snapshots)] == snapshots
    assert_up(srv)


# ===================================================================================================
# Resources over time
# ===================================================================================================


def _scrape(srv: EmberServer) -> dict[str, float]:
    text = httpx.get(srv.metrics_url + "/metrics", timeout=TIMEOUT).text
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("Requests") and 'Level="Host"' in line:
            name, value = line.split("{", 1)[0], line.rsplit(" ", 1)[1]
            values[name] = values.get(name, 0.0) + float(value)
    return values


def test_R1_short_soak_keeps_frontend_and_worker_flat(srv: EmberServer) -> None:
    """R1 (smoke length): closed-loop echo load for ~6 s: zero non-2xx; frontend fds/threads flat and
    RSS growth over the second half small; the worker's RSS flat. The 30-minute soak is manual."""
    [pid] = worker_pids(srv, "echo")
    worker = psutil.Process(pid)
    codes: Counter[int] = Counter()
    samples: list[tuple[dict[str, int], int]] = []
    with httpx.Client(timeout=TIMEOUT) as client:
        end = time.monotonic() + 6
        next_sample = time.monotonic() + 2
        while time.monotonic() < end:
            codes[client.post(srv.inference_url + "/predictions/echo", content=b"soak").status_code] += 1
            if time.monotonic() >= next_sample:
                samples.append((server_snapshot(srv), worker.memory_info().rss))
                next_sample += 2
    assert set(codes) == {200}, codes
    assert len(samples) >= 2
    (first, worker_first), (last, worker_last) = samples[0], samples[-1]
    assert last["fds"] <= first["fds"] + 2 and last["threads"] <= first["threads"] + 1, (first, last)
    assert last["rss"] - first["rss"] < 16 << 20, (first, last)
    assert worker_last - worker_first < 16 << 20
    assert_up(srv)


def test_R3_metrics_scraped_at_10_hz_during_load_add_up(srv: EmberServer) -> None:
    """R3: with the metrics endpoint scraped every 100 ms during load, the host-level
    2xx+4xx+5xx counters grow by exactly the requests sent; scrapes stay fast."""
    before = _scrape(srv)
    stop = threading.Event()
    scrape_times: list[float] = []

    def scraper() -> None:
        while not stop.is_set():
            t0 = time.monotonic()
            _scrape(srv)
            scrape_times.append(time.monotonic() - t0)
            stop.wait(0.1)

    sent: Counter[int] = Counter()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        watcher = pool.submit(scraper)
        with httpx.Client(timeout=TIMEOUT) as client:
            for i in range(300):
                path = "/predictions/echo" if i % 10 else "/predictions/nosuchmodel"
                sent[client.post(srv.inference_url + path, content=b"m").status_code] += 1
        stop.set()
        watcher.result(TIMEOUT)
    assert sent == Counter({200: 270, 404: 30}), sent

    def grown() -> bool:
        after = _scrape(srv)
        return (
            after.get("Requests2XX", 0) - before.get("Requests2XX", 0) >= 270
            and after.get("Requests4XX", 0) - before.get("Requests4XX", 0) >= 30
        )

    wait_until(grown, "the counters to catch up", timeout_s=10)
    after = _scrape(srv)
    assert after["Requests2XX"] - before.get("Requests2XX", 0) == 270
    assert after["Requests4XX"] - before.get("Requests4XX", 0) == 30
    assert after.get("Requests5XX", 0) == before.get("Requests5XX", 0)
    assert max(scrape_times) < 1.0


def test_R4_malformed_requests_keep_logs_bounded_and_escaped(srv: EmberServer) -> None:
    """R4 (2 000 here; 100 000 by hand): log growth per malformed request is small and bounded, and
    no raw attacker control bytes reach the access log."""

    def log_bytes() -> int:
        return sum(p.stat().st_size for p in srv.log_dir.rglob("*") if p.is_file()) + len(srv.console_text())

    before = log_bytes()
    attacks = [
        b"GET /\x1b[2J\x07 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /predictions/%1b%5b31mred%07 HTTP/1.1\r\nHost: x\r\nUser-Agent: \x1b[31m\r\n\r\n",
        b"\x00\x01\x02\x03garbage\r\n\r\n",
        b"GET /" + b"A" * 4000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    ]
    for i in range(2000):
        with socket.create_connection(("127.0.0.1", srv.ports["inference"]), timeout=5) as sock:
            sock.sendall(attacks[i % len(attacks)])
            with contextlib.suppress(OSError):
                sock.recv(4096)
    grown = log_bytes() - before
    assert grown < 2000 * 6000, grown  # at most a bounded line or two per request
    for path in srv.log_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert b"\x1b" not in data and b"\x07" not in data, path
    assert_up(srv)
