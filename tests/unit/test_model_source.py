"""Where a registration url points: TorchServe's answers for bad urls, before any I/O."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from emberserve.errors import DownloadArchiveError, ModelNotFoundError, UrlNotAllowedError
from emberserve.model_source import resolve_source, validate_url_text


@pytest.mark.parametrize(
    "url",
    [
        "../noop.mar",
        "a/../../x.mar",
        "%2e%2e/x.mar",
        "%2E%2e%2fx.mar",
        "%252e%252e/x.mar",
        "..\\x.mar",
        "http://h/../x.mar",
    ],
)
def test_dot_dot_in_any_encoding_is_refused(url: str) -> None:
    with pytest.raises(ModelNotFoundError, match="Relative path is not allowed in url"):
        validate_url_text(url)


def test_empty_url_is_404_empty_url() -> None:
    with pytest.raises(ModelNotFoundError, match=r"^empty url$"):
        validate_url_text("")


def test_store_file_resolves_and_missing_one_is_404(tmp_path: Path) -> None:
    (tmp_path / "noop.mar").write_bytes(b"x")
    assert resolve_source("noop.mar", tmp_path).path == tmp_path / "noop.mar"
    with pytest.raises(ModelNotFoundError, match=r"^Model not found at: missing.mar$"):
        resolve_source("missing.mar", tmp_path)
    with pytest.raises(ModelNotFoundError, match=re.escape("Model not found at: malformed_url,")):
        resolve_source("malformed_url,?", tmp_path)


def test_file_url_inside_the_store_is_used_in_place(tmp_path: Path) -> None:
    store, elsewhere = tmp_path / "store", tmp_path / "elsewhere"
    store.mkdir()
    elsewhere.mkdir()
    (store / "in.mar").write_bytes(b"archive")
    (elsewhere / "ext.mar").write_bytes(b"archive")
    got = resolve_source(f"file://{store}/in.mar", store)
    assert not got.owned and got.path == store / "in.mar"
    with pytest.raises(UrlNotAllowedError, match="outside the model store"):
        resolve_source(f"file://{elsewhere}/ext.mar", store)
    assert not (store / "ext.mar").exists()


@pytest.mark.parametrize("url", ["ftp://h/x.mar", "gopher://h/x", "dict://h/x"])
def test_unknown_schemes_are_refused(url: str, tmp_path: Path) -> None:
    with pytest.raises(UrlNotAllowedError):
        resolve_source(url, tmp_path)


def test_remote_downloads_need_a_policy(tmp_path: Path) -> None:
    with pytest.raises(DownloadArchiveError, match="Failed to download archive from"):
        resolve_source("http://127.0.0.1:1/remote.mar", tmp_path)
