"""Where a registration's ``url`` points: a file in the model store, a ``file://`` URL, or a remote URL.

Validation happens before any I/O, with TorchServe's answers (reference §4): an empty url is 404
"empty url", a ``..`` anywhere in the percent-decoded url is 404 "Relative path is not allowed in
url: …", a missing archive is 404 "Model not found at: …".

    >>> validate_url_text("../noop.mar")
    Traceback (most recent call last):
    ...
    emberserve.errors.ModelNotFoundError: Relative path is not allowed in url: ../noop.mar
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from emberserve.errors import (
    BadRequestError,
    ConflictError,
    DownloadArchiveError,
    ModelNotFoundError,
    UrlNotAllowedError,
)

#: URLs longer than this are refused before any pattern matching (ReDoS guard, SECURITY.md U12).
MAX_URL_LENGTH = 2048


@dataclass(frozen=True, slots=True)
class ResolvedSource:
    """A local archive (file or directory) to open, and whether this registration created it."""

    path: Path
    owned: bool


def validate_url_text(url: str) -> None:
    """Reject what TorchServe rejects before looking at the url's target."""
    if not url:
        raise ModelNotFoundError("empty url")
    if len(url) > MAX_URL_LENGTH:
        raise BadRequestError(f"Model url is longer than {MAX_URL_LENGTH} characters.")
    decoded = url
    for _ in range(3):  # double- and triple-encoded dots count too
        decoded = unquote(decoded)
    if (
        ".." in decoded.replace("\\", "/").split("/")
        or "/.." in decoded
        or "..\\" in decoded
        or decoded.startswith("..")
    ):
        raise ModelNotFoundError(f"Relative path is not allowed in url: {url}")
    if any(c in decoded for c in "\r\n\x00"):
        raise BadRequestError(f"Invalid characters in url: {url!r}")


def resolve_source(url: str, model_store: Path | None) -> ResolvedSource:
    """Find the archive a registration names; copies ``file://`` archives into the store.

    Remote URLs (http, https, s3) are not fetched here: see :func:`is_remote`.
    """
    validate_url_text(url)
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("http", "https", "s3"):
        raise DownloadArchiveError(
            f"Failed to download archive from: {url}: downloading archives is not supported yet; "
            "put the archive in the model store and register it by file name"
        )
    if scheme == "file":
        return _copy_file_url(url, model_store)
    if scheme and len(scheme) > 1:
        raise UrlNotAllowedError(f"Given URL {url} does not match any allowed URL(s)")
    if model_store is None:
        raise ModelNotFoundError(f"Model not found at: {url}")
    name = url.replace("\\", "/")
    if name.startswith("/") or "/" in name.strip("/"):
        raise ModelNotFoundError(f"Model not found at: {url}")
    path = model_store / name
    if not path.exists():
        raise ModelNotFoundError(f"Model not found at: {url}")
    return ResolvedSource(path, owned=False)


def _copy_file_url(url: str, model_store: Path | None) -> ResolvedSource:
    source = Path(unquote(urlsplit(url).path))
    if not source.is_absolute():
        raise ModelNotFoundError(f"Model not found at: {url}")
    if model_store is None:
        raise ModelNotFoundError(f"Model not found at: {url}")
    store = model_store.resolve()
    real = source.resolve()
    if real.parent == store:
        # Already in the store: TorchServe refuses to overwrite it.
        raise ConflictError(f"Model file already exists {real.name}")
    if not real.is_file():
        raise ModelNotFoundError(f"Model not found at: {url}")
    target = store / real.name
    if target.exists():
        raise ConflictError(f"Model file already exists {real.name}")
    shutil.copyfile(real, target)
    return ResolvedSource(target, owned=True)
