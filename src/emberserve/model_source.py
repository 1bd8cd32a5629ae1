"""Where a registration's ``url`` points: a file in the model store, a ``file://`` URL, or a remote URL.

Validation happens before any I/O, with TorchServe's answers (reference §4): an empty url is 404
"empty url", a ``..`` anywhere in the percent-decoded url is 404 "Relative path is not allowed in
url: …", a missing archive is 404 "Model not found at: …". URLs with a scheme must match
``allowed_urls``; ``http(s)://`` and ``s3://`` archives are downloaded into the store by
:mod:`emberserve.archive.download`. A ``file://`` URL must point into the model store (SECURITY.md
U1: TorchServe copies any file the server can read, ``file:///etc/passwd`` included).

    >>> validate_url_text("../noop.mar")
    Traceback (most recent call last):
    ...
    emberserve.errors.ModelNotFoundError: Relative path is not allowed in url: ../noop.mar
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from emberserve.archive.download import DownloadPolicy, download_archive, url_allowed
from emberserve.errors import (
    BadRequestError,
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


def resolve_source(
    url: str, model_store: Path | None, policy: DownloadPolicy | None = None, *, s3_sse_kms: bool = False
) -> ResolvedSource:
    """Find (or download into the store) the archive a registration names.

    Without a ``policy`` remote URLs are refused (nothing may be downloaded).
    """
    validate_url_text(url)
    scheme = urlsplit(url).scheme.lower()
    if scheme and len(scheme) > 1 and policy is not None and not url_allowed(url, policy.allowed_urls):
        raise UrlNotAllowedError(f"Given URL {url} does not match any allowed URL(s)")
    if scheme in ("http", "https", "s3"):
        if policy is None or model_store is None:
            raise DownloadArchiveError(
                f"Failed to download archive from: {url}: downloads need a model store and allowed_urls"
            )
        return ResolvedSource(download_archive(url, model_store, policy, s3_sse_kms=s3_sse_kms), owned=True)
    if scheme == "file":
        return _file_url(url, model_store)
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


def _file_url(url: str, model_store: Path | None) -> ResolvedSource:
    source = Path(unquote(urlsplit(url).path))
    if not source.is_absolute() or model_store is None:
        raise ModelNotFoundError(f"Model not found at: {url}")
    store = model_store.resolve()
    # Decided on the path as written and as resolved (a link in the store must not lead out).
    inside = source.parent == store or source.parent.resolve() == store
    real = source.resolve()
    if not inside or real.parent != store:
        raise UrlNotAllowedError(
            f"Given URL {url} is outside the model store: file:// URLs may only name archives in {store}"
        )
    if not real.exists():
        raise ModelNotFoundError(f"Model not found at: {url}")
    return ResolvedSource(real, owned=False)
