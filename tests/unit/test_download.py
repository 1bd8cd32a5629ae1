"""Model archive downloads against a loopback HTTP server: allowed_urls, the address guard,
redirects, size and time caps (SECURITY.md U1–U12)."""

from __future__ import annotations

import errno
import http.server
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import httpx
import pytest

from emberserve.archive import download
from emberserve.archive.download import DownloadPolicy, download_archive
from emberserve.errors import (
    ConflictError,
    DownloadArchiveError,
    InsufficientStorageError,
    ModelNotFoundError,
    UrlNotAllowedError,
)
from emberserve.model_source import resolve_source
from tests.conftest import serve_http

pytestmark = pytest.mark.security

ARCHIVE = b"PK\x05\x06" + b"\x00" * 18  # an empty zip: the bytes do not matter here


class Handler(http.server.BaseHTTPRequestHandler):
    hits: ClassVar[Counter[str]] = Counter()

    def log_message(self, *_args: object) -> None:  # keep the test output quiet
        pass

    def do_GET(self) -> None:
        Handler.hits[self.path] += 1
        if self.path == "/ok.mar":
            self._send(200, ARCHIVE)
        elif self.path == "/hop.mar":
            self._redirect("/ok.mar")
        elif self.path == "/to-metadata.mar":
            self._redirect("http://169.254.169.254/latest/meta-data/x.mar")
        elif self.path == "/loop.mar":
            self._redirect("/loop.mar")
        elif self.path == "/huge.mar":
            self.send_response(200)
            self.send_header("Content-Length", str(10 << 30))
            self.end_headers()
        elif self.path == "/endless.mar":
            self.send_response(200)
            self.end_headers()
            try:
                for _ in range(10_000):
                    self.wfile.write(b"x" * 65536)
            except OSError:
                pass
        elif self.path == "/tarpit.mar":
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            try:
                for _ in range(100):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.1)
            except OSError:
                pass
        else:
            self._send(404, b"no")

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture(scope="module")
def origin() -> Iterator[str]:
    with serve_http(Handler) as url:
        yield url


def allow_local(origin: str, **overrides: object) -> DownloadPolicy:
    settings: dict[str, object] = {
        "allowed_urls": [origin.replace(".", r"\.") + "/.*"],
        "explicit": True,
        "max_bytes": 1 << 20,
        "timeout_s": 30.0,
    }
    settings.update(overrides)
    return DownloadPolicy(**settings)  # type: ignore[arg-type]


DEFAULT = DownloadPolicy(
    allowed_urls=["file://.*|http(s)?://.*"], explicit=False, max_bytes=1 << 20, timeout_s=5
)


def test_an_allowed_url_lands_in_the_store(origin: str, tmp_path: Path) -> None:
    path = download_archive(f"{origin}/ok.mar", tmp_path, allow_local(origin))
    assert path == tmp_path / "ok.mar" and path.read_bytes() == ARCHIVE
    assert [p.name for p in tmp_path.iterdir()] == ["ok.mar"]
    with pytest.raises(ConflictError, match=r"Model file already exists ok\.mar"):
        download_archive(f"{origin}/ok.mar", tmp_path, allow_local(origin))


def test_redirects_are_followed_and_checked_hop_by_hop(origin: str, tmp_path: Path) -> None:
    path = download_archive(f"{origin}/hop.mar", tmp_path, allow_local(origin))
    assert path.name == "hop.mar" and path.read_bytes() == ARCHIVE
    with pytest.raises(UrlNotAllowedError, match="does not match any allowed URL"):
        download_archive(f"{origin}/to-metadata.mar", tmp_path, allow_local(origin))
    with pytest.raises(DownloadArchiveError, match="more than 5 redirects"):
        download_archive(f"{origin}/loop.mar", tmp_path, allow_local(origin))
    assert list(tmp_path.iterdir()) == [tmp_path / "hop.mar"]


def test_loopback_needs_an_explicit_allowed_urls(origin: str, tmp_path: Path) -> None:
    before = Handler.hits["/ok.mar"]
    with pytest.raises(UrlNotAllowedError, match="local address: allow it explicitly"):
        download_archive(f"{origin}/ok.mar", tmp_path, DEFAULT)
    assert Handler.hits["/ok.mar"] == before  # never contacted


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/x.mar",
        "http://[fd00:ec2::254]/x.mar",
        "http://[::ffff:169.254.169.254]/x.mar",
        "http://2852039166/x.mar",  # 169.254.169.254 as one number
        "http://0.0.0.0/x.mar",
    ],
)
def test_metadata_and_link_local_addresses_are_never_contacted(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_connection(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("a blocked destination was contacted")

    monkeypatch.setattr(httpx, "Client", no_connection)
    everything = DownloadPolicy(allowed_urls=[".*"], explicit=True, max_bytes=1 << 20, timeout_s=5)
    with pytest.raises(UrlNotAllowedError):
        download_archive(url, tmp_path, everything)


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("http://user:pw@127.0.0.1/x.mar", UrlNotAllowedError),
        ("http://127.0.0.1:99999/x.mar", UrlNotAllowedError),
        ("ftp://127.0.0.1/x.mar", UrlNotAllowedError),
        ("http://127.0.0.1/x.exe", DownloadArchiveError),
        ("http://127.0.0.1/", DownloadArchiveError),
        ("http://127.0.0.1/a%2fb.mar", DownloadArchiveError),
    ],
)
def test_bad_urls_are_refused_before_any_io(
    url: str, error: type[Exception], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_lookup(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("looked up a refused URL")

    monkeypatch.setattr(download.socket, "getaddrinfo", no_lookup)
    everything = DownloadPolicy(allowed_urls=[".*"], explicit=True, max_bytes=1 << 20, timeout_s=5)
    with pytest.raises(error):
        download_archive(url, tmp_path, everything)


def test_allowed_urls_is_a_full_match(origin: str, tmp_path: Path) -> None:
    narrow = allow_local(origin, allowed_urls=[r"http://models\.example\.com/.*"])
    with pytest.raises(UrlNotAllowedError, match="does not match any allowed URL"):
        download_archive(f"{origin}/ok.mar", tmp_path, narrow)
    prefix_only = allow_local(origin, allowed_urls=[origin.replace(".", r"\.")])
    with pytest.raises(UrlNotAllowedError):
        download_archive(f"{origin}/ok.mar", tmp_path, prefix_only)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/huge.mar", "is more than the 1048576 allowed"),
        ("/endless.mar", "more than 1048576 bytes"),
        ("/missing.mar", "HTTP 404"),
    ],
)
def test_oversized_endless_and_missing_downloads_fail_and_leave_nothing(
    origin: str, tmp_path: Path, path: str, message: str
) -> None:
    with pytest.raises(DownloadArchiveError, match=message):
        download_archive(f"{origin}{path}", tmp_path, allow_local(origin))
    assert list(tmp_path.iterdir()) == []


def test_a_tarpit_is_cut_off_by_the_overall_timeout(origin: str, tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(DownloadArchiveError, match="not complete after 1 s"):
        download_archive(f"{origin}/tarpit.mar", tmp_path, allow_local(origin, timeout_s=1.0))
    assert time.monotonic() - started < 5
    assert list(tmp_path.iterdir()) == []


def test_resolve_source_downloads_into_the_store_and_owns_the_file(origin: str, tmp_path: Path) -> None:
    source = resolve_source(f"{origin}/ok.mar", tmp_path, allow_local(origin))
    assert source.owned and source.path == tmp_path / "ok.mar"
    with pytest.raises(DownloadArchiveError, match="downloads need a model store and allowed_urls"):
        resolve_source(f"{origin}/ok.mar", tmp_path)


def test_file_urls_only_name_archives_inside_the_store(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    (store / "in.mar").write_bytes(ARCHIVE)
    (tmp_path / "out.mar").write_bytes(ARCHIVE)
    (store / "link.mar").symlink_to(tmp_path / "out.mar")
    inside = resolve_source(f"file://{store}/in.mar", store, DEFAULT)
    assert inside.path == store / "in.mar" and not inside.owned
    for outside in (f"file://{tmp_path}/out.mar", "file:///etc/passwd", f"file://{store}/link.mar"):
        with pytest.raises(UrlNotAllowedError, match="outside the model store"):
            resolve_source(outside, store, DEFAULT)
    with pytest.raises(ModelNotFoundError):
        resolve_source(f"file://{store}/missing.mar", store, DEFAULT)
    strict = DownloadPolicy(allowed_urls=[r"http://x/.*"], explicit=True, max_bytes=1, timeout_s=1)
    with pytest.raises(UrlNotAllowedError, match="does not match any allowed URL"):
        resolve_source(f"file://{store}/in.mar", store, strict)


def test_proxy_variables_are_ignored(origin: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # a proxy would bypass the address guard
    monkeypatch.setenv("ALL_PROXY", "http://127.0.0.1:9")
    assert download_archive(f"{origin}/ok.mar", tmp_path, allow_local(origin)).read_bytes() == ARCHIVE


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A local S3-compatible server (moto), never a real cloud."""
    moto_server = pytest.importorskip("moto.server")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def test_s3_urls_are_fetched_with_boto3(
    s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    boto3 = pytest.importorskip("boto3")
    for name, value in {
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    client = boto3.client("s3")
    client.create_bucket(Bucket="models")
    client.put_object(Bucket="models", Key="team/s3model.mar", Body=ARCHIVE)
    policy = DownloadPolicy(allowed_urls=[r"s3://models/.*"], explicit=True, max_bytes=1 << 20, timeout_s=30)

    path = download_archive("s3://models/team/s3model.mar", tmp_path, policy, s3_sse_kms=True)
    assert path == tmp_path / "s3model.mar" and path.read_bytes() == ARCHIVE
    with pytest.raises(
        DownloadArchiveError, match=r"Failed to download archive from: s3://models/team/gone\.mar"
    ):
        download_archive("s3://models/team/gone.mar", tmp_path, policy)
    with pytest.raises(UrlNotAllowedError):
        download_archive("s3://other-bucket/x.mar", tmp_path, policy)
    tiny = DownloadPolicy(allowed_urls=[r"s3://models/.*"], explicit=True, max_bytes=4, timeout_s=30)
    (tmp_path / "again").mkdir()
    with pytest.raises(DownloadArchiveError, match="more than"):
        download_archive("s3://models/team/s3model.mar", tmp_path / "again", tiny)
    assert not (tmp_path / "again").exists() or list((tmp_path / "again").iterdir()) == []


def test_a_full_disk_while_downloading_is_507_and_leaves_nothing(
    origin: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SECURITY.md P6: the write fails as on a full disk; the partial file is removed."""

    def disk_full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(download.os, "fsync", disk_full)
    with pytest.raises(InsufficientStorageError, match=r"Out of disk space while downloading .*ok\.mar"):
        download_archive(f"{origin}/ok.mar", tmp_path, allow_local(origin))
    assert list(tmp_path.iterdir()) == []
