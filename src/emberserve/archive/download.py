"""Fetching model archives from ``http(s)://`` and ``s3://`` URLs, safely (SECURITY.md U1–U12).

TorchServe downloaded whatever ``allowed_urls`` matched (by default: anything), which made its
management API an SSRF tool (ShellTorch). Ember checks, **before any I/O**:

- the URL matches one of ``allowed_urls`` (TorchServe's semantics: a full regex match);
- scheme ``http``, ``https`` or ``s3``; no user name or password in it; a host; a valid port;
- the file name (the URL's last path segment) is a plain archive name;

then resolves the host once and refuses link-local and cloud-metadata addresses
(169.254.0.0/16, fe80::/10, fd00:ec2::254 …), unspecified and multicast ones, and loopback or
private addresses unless ``allowed_urls`` was configured explicitly (the default allow-all
pattern never opens them). It connects to the address it validated (no second lookup an
attacker could rebind), follows at most :data:`MAX_REDIRECTS` redirects, each checked again,
ignores proxy variables, and stops at ``max_bytes`` or ``timeout_s`` overall. The archive lands in
the model store under a temporary name (mode 0600) and is renamed only when complete.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import re
import socket
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

from emberserve.errors import (
    ConflictError,
    DownloadArchiveError,
    InsufficientStorageError,
    UrlNotAllowedError,
)

__all__ = ["MAX_REDIRECTS", "DownloadPolicy", "download_archive", "url_allowed"]

log = logging.getLogger("emberserve.download")

MAX_REDIRECTS = 5
_CHUNK = 1 << 16
_ARCHIVE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*\.(mar|tar\.gz|tgz|zip)$")
#: Never fetched from, whatever allowed_urls says: instance metadata services and link-local ranges.
_ALWAYS_BLOCKED = (
    ipaddress.ip_network("169.254.0.0/16"),
    ipaddress.ip_network("fe80::/10"),
    ipaddress.ip_network("fd00:ec2::254/128"),
    ipaddress.ip_network("100.100.100.200/32"),  # Alibaba Cloud metadata
    ipaddress.ip_network("0.0.0.0/8"),
)


@dataclass(frozen=True, slots=True)
class DownloadPolicy:
    """What may be fetched, and how much. ``explicit`` = ``allowed_urls`` was set by the operator."""

    allowed_urls: Sequence[str]
    explicit: bool
    max_bytes: int
    timeout_s: float


def url_allowed(url: str, patterns: Sequence[str]) -> bool:
    """TorchServe's check: the whole URL matches one of the patterns.

    >>> url_allowed("https://models.example.com/a.mar", [r"https://models\\.example\\.com/.*"])
    True
    >>> url_allowed("https://models.example.com.evil.net/a.mar", [r"https://models\\.example\\.com/.*"])
    False
    """
    return any(re.fullmatch(pattern, url) for pattern in patterns)


def download_archive(url: str, store: Path, policy: DownloadPolicy, *, s3_sse_kms: bool = False) -> Path:
    """Fetch ``url`` into ``store`` and return the archive's path (see the module docstring).

    Raises UrlNotAllowedError (before any I/O), ConflictError (the file exists in the store) or
    DownloadArchiveError (anything that went wrong while fetching).
    """
    name = _archive_name(url)
    _check_url(url, policy)
    target = store / name
    if target.exists():
        raise ConflictError(f"Model file already exists {name}")
    if urlsplit(url).scheme.lower() == "s3":
        return _from_s3(url, target, policy, s3_sse_kms=s3_sse_kms)
    return _from_http(url, target, policy)


def _archive_name(url: str) -> str:
    # The last segment as sent, decoded afterwards: an encoded "/" or "\\" makes it no plain name.
    name = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    if not _ARCHIVE_NAME.match(name):
        raise DownloadArchiveError(
            f"Failed to download archive from: {url}: the URL must end with an archive file name "
            "(letters, digits, '.', '_', '-'; .mar, .tar.gz, .tgz or .zip)"
        )
    return name


def _check_url(url: str, policy: DownloadPolicy) -> None:
    if not url_allowed(url, policy.allowed_urls):
        raise UrlNotAllowedError(f"Given URL {url} does not match any allowed URL(s)")
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https", "s3"):
        raise UrlNotAllowedError(f"Given URL {url} does not match any allowed URL(s)")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise UrlNotAllowedError(f"URL {url} may not carry a user name or password")
    try:
        port = parts.port
    except ValueError:
        raise UrlNotAllowedError(f"URL {url} has an invalid port") from None
    if not parts.hostname or (port is not None and not 0 < port < 65536):
        raise UrlNotAllowedError(f"URL {url} has no valid host")


def _safe_address(host: str, port: int, policy: DownloadPolicy) -> str:
    """Resolve ``host`` once and return an address every rule allows (see the module docstring)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise DownloadArchiveError(f"Cannot resolve {host}: {exc.strerror or exc}") from None
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    for address in addresses:
        plain = address
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            plain = address.ipv4_mapped
        if any(plain in net for net in _ALWAYS_BLOCKED) or plain.is_multicast or plain.is_unspecified:
            raise UrlNotAllowedError(
                f"Host {host} resolves to {address}, which models may not be loaded from"
            )
        if (plain.is_loopback or plain.is_private or plain.is_reserved) and not policy.explicit:
            raise UrlNotAllowedError(
                f"Host {host} resolves to {address}, a local address: allow it explicitly with "
                "allowed_urls in config.properties"
            )
    return str(addresses[0])


def _from_http(url: str, target: Path, policy: DownloadPolicy) -> Path:
    deadline = time.monotonic() + policy.timeout_s
    current = url
    import httpx  # noqa: PLC0415 - only downloads need it; keeps ~70 ms off every start

    for _hop in range(MAX_REDIRECTS + 1):
        _check_url(current, policy)
        parts = urlsplit(current)
        assert parts.hostname is not None
        https = parts.scheme.lower() == "https"
        port = parts.port or (443 if https else 80)
        address = _safe_address(parts.hostname, port, policy)
        host = f"[{address}]" if ":" in address else address
        direct = parts._replace(netloc=f"{host}:{port}").geturl()
        extensions = {"sni_hostname": parts.hostname} if https else {}
        remaining = max(0.1, deadline - time.monotonic())
        timeout = httpx.Timeout(min(30.0, remaining))
        try:
            with (
                httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client,
                client.stream("GET", direct, headers={"Host": parts.netloc}, extensions=extensions) as reply,
            ):
                if reply.is_redirect and "location" in reply.headers:
                    current = urljoin(current, reply.headers["location"])
                    log.info("Download of %s redirected to %s", url, current)
                    continue
                if reply.status_code != 200:
                    raise DownloadArchiveError(
                        f"Failed to download archive from: {url}: HTTP {reply.status_code}"
                    )
                declared = reply.headers.get("content-length")
                if declared is not None and declared.isdigit() and int(declared) > policy.max_bytes:
                    raise DownloadArchiveError(
                        f"Failed to download archive from: {url}: {declared} bytes is more than "
                        f"the {policy.max_bytes} allowed (max_archive_bytes)"
                    )
                total = int(declared) if declared and declared.isdigit() else None
                # Whatever arrives, as it arrives: a trickle must meet the deadline check.
                return _save(url, reply.iter_bytes(), target, policy, deadline, total)
        except httpx.HTTPError as exc:
            raise DownloadArchiveError(f"Failed to download archive from: {url}: {exc}") from None
    raise DownloadArchiveError(f"Failed to download archive from: {url}: more than {MAX_REDIRECTS} redirects")


def _save(
    url: str,
    chunks: Iterator[bytes],
    target: Path,
    policy: DownloadPolicy,
    deadline: float,
    total: int | None,
) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=".download-", dir=target.parent)
    received = 0
    next_report = time.monotonic() + 5.0
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                received += len(chunk)
                if received > policy.max_bytes:
                    raise DownloadArchiveError(
                        f"Failed to download archive from: {url}: more than {policy.max_bytes} bytes "
                        "(max_archive_bytes)"
                    )
                if time.monotonic() > deadline:
                    raise DownloadArchiveError(
                        f"Failed to download archive from: {url}: not complete after {policy.timeout_s:g} s"
                    )
                out.write(chunk)
                if time.monotonic() >= next_report:
                    next_report += 5.0
                    shown = f"{received * 100 // total}%" if total else f"{received} bytes"
                    log.info("Downloading %s: %s", url, shown)
            out.flush()
            os.fsync(out.fileno())
        if target.exists():
            raise ConflictError(f"Model file already exists {target.name}")
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        full = (
            InsufficientStorageError.from_os_error(exc, f"downloading {url}")
            if isinstance(exc, OSError)
            else None
        )
        if full is not None:
            raise full from exc
        raise
    log.info("Downloaded %s (%d bytes) to %s", url, received, target)
    return target


def _from_s3(url: str, target: Path, policy: DownloadPolicy, *, s3_sse_kms: bool) -> Path:
    try:
        import boto3  # noqa: PLC0415 - the optional [s3] extra
        from botocore.config import Config  # noqa: PLC0415
        from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415
    except ImportError:
        raise DownloadArchiveError(
            f"Failed to download archive from: {url}: s3:// URLs need boto3: pip install 'emberserve[s3]'"
        ) from None
    parts = urlsplit(url)
    bucket, key = parts.netloc, parts.path.lstrip("/")
    deadline = time.monotonic() + policy.timeout_s
    # SSE-KMS objects can only be read with SigV4 requests.
    config = Config(signature_version="s3v4") if s3_sse_kms else None
    try:
        client = boto3.client("s3", config=config)
        reply = client.get_object(Bucket=bucket, Key=key)
        size = int(reply.get("ContentLength") or 0)
        if size > policy.max_bytes:
            raise DownloadArchiveError(
                f"Failed to download archive from: {url}: {size} bytes is more than "
                f"the {policy.max_bytes} allowed"
            )
        body = reply["Body"]
        return _save(url, iter(lambda: body.read(_CHUNK), b""), target, policy, deadline, size or None)
    except (BotoCoreError, ClientError) as exc:
        raise DownloadArchiveError(f"Failed to download archive from: {url}: {exc}") from None
