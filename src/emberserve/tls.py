"""TLS for the HTTP listeners (``https://`` addresses) and the gRPC servers (``enable_grpc_ssl``).

Certificates come from TorchServe's keys: ``certificate_file`` + ``private_key_file`` (PEM), or a
PKCS12 ``keystore`` with ``keystore_pass`` (``keystore_type=PKCS12``; reading it needs the
``cryptography`` package: ``pip install 'emberserve[tls]'``). gRPC takes the PEM pair, as in
TorchServe.

Differences from TorchServe: without any of these keys an ``https://`` address is refused at
startup with a message saying what to set (TorchServe silently generates a self-signed
certificate no client trusts); TLS 1.2 is the minimum; a Java ``JKS`` keystore is refused with a
hint to convert it (``keytool -importkeystore -deststoretype PKCS12``).
"""

from __future__ import annotations

import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from emberserve.errors import ConfigError

__all__ = ["TlsSettings", "grpc_key_pair", "server_ssl_context"]


class TlsSettings(Protocol):
    """The :class:`~emberserve.config.ServerConfig` attributes TLS reads."""

    @property
    def certificate_file(self) -> Path | None: ...
    @property
    def private_key_file(self) -> Path | None: ...
    @property
    def keystore(self) -> Path | None: ...
    @property
    def keystore_pass(self) -> str | None: ...
    @property
    def keystore_type(self) -> str: ...


@dataclass(frozen=True, slots=True)
class _PemPair:
    certificate_chain: bytes
    private_key: bytes


def server_ssl_context(settings: TlsSettings) -> ssl.SSLContext:
    """A server-side SSLContext from the configured certificate; ConfigError when there is none
    or it cannot be read."""
    pair = _pem_pair(settings, "an https:// address")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # ssl loads certificates from files only: hand it a private copy that lives for one call.
    with tempfile.TemporaryDirectory(prefix="ember-tls-") as folder:
        cert = Path(folder) / "cert.pem"
        key = Path(folder) / "key.pem"
        for path, data in ((cert, pair.certificate_chain), (key, pair.private_key)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
        try:
            context.load_cert_chain(cert, key)
        except ssl.SSLError as exc:
            raise ConfigError(f"The TLS certificate and private key do not fit together: {exc}") from None
    return context


def grpc_key_pair(settings: TlsSettings) -> tuple[bytes, bytes]:
    """``(private_key, certificate_chain)`` PEM bytes for ``grpc.ssl_server_credentials``."""
    pair = _pem_pair(settings, "enable_grpc_ssl=true")
    return pair.private_key, pair.certificate_chain


def _pem_pair(settings: TlsSettings, purpose: str) -> _PemPair:
    if settings.certificate_file is not None or settings.private_key_file is not None:
        if settings.certificate_file is None or settings.private_key_file is None:
            raise ConfigError(f"{purpose} needs both certificate_file and private_key_file")
        return _PemPair(_read(settings.certificate_file), _read(settings.private_key_file))
    if settings.keystore is not None:
        return _from_keystore(settings)
    raise ConfigError(
        f"{purpose} needs a certificate: set certificate_file and private_key_file (PEM), or keystore "
        "and keystore_pass (PKCS12), in config.properties"
    )


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"Cannot read {path}: {exc.strerror}") from None


def _from_keystore(settings: TlsSettings) -> _PemPair:
    assert settings.keystore is not None
    kind = settings.keystore_type.upper()
    if kind not in ("PKCS12", "P12", "PFX"):
        raise ConfigError(
            f"keystore_type={settings.keystore_type} is not supported; convert the keystore with "
            "'keytool -importkeystore -srckeystore KS -destkeystore KS.p12 -deststoretype PKCS12' "
            "and set keystore_type=PKCS12"
        )
    try:
        from cryptography.hazmat.primitives import serialization  # noqa: PLC0415 - the [tls] extra
        from cryptography.hazmat.primitives.serialization import pkcs12  # noqa: PLC0415
    except ImportError:
        raise ConfigError(
            "Reading a PKCS12 keystore needs the cryptography package: pip install 'emberserve[tls]' "
            "(or use certificate_file and private_key_file)"
        ) from None
    password = settings.keystore_pass.encode() if settings.keystore_pass else None
    try:
        key, cert, extra = pkcs12.load_key_and_certificates(_read(settings.keystore), password)
    except ValueError:
        raise ConfigError(
            f"Cannot open keystore {settings.keystore}: wrong keystore_pass or not a PKCS12 file"
        ) from None
    if key is None or cert is None:
        raise ConfigError(f"Keystore {settings.keystore} holds no private key with a certificate")
    chain = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in [cert, *extra] if c is not None)
    pem_key = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return _PemPair(chain, pem_key)
