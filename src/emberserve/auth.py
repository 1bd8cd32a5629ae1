"""Token authorization, compatible with TorchServe 0.12 and safer.

When ``disable_token_authorization`` is false (the default, as in TorchServe 0.12) the server
writes ``key_file.json`` into its working directory, in TorchServe's layout::

    {
      "management": {"key": "…", "expiration time": "2026-11-22T08:47:21.597Z"},
      "inference": {"key": "…", "expiration time": "2026-11-22T08:47:21.597Z"},
      "API": {"key": "…"}
    }

and every request must carry ``Authorization: Bearer <key>``: the inference key on the inference
port (HTTP and gRPC), the management key on the management port, the API key for
``GET /token?type=inference|management`` (which replaces that key). The metrics port is open, as
in TorchServe. Where Ember does better than TorchServe:

- keys carry 192 random bits (TorchServe: 8 characters) and are compared in constant time;
- the file is created mode 0600 and replaced atomically (temporary file + rename) on rotation;
- exactly one well-formed ``Authorization: Bearer <key>`` header is accepted: duplicates, other
  schemes and stray spaces are refused instead of "first header wins";
- keys never reach logs, snapshots or worker environments (nothing but this module holds them).
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import os
import secrets
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import orjson

from emberserve.errors import ConfigError, InvalidKeyError

__all__ = ["KEY_FILE_NAME", "Api", "TokenAuthority", "bearer_token", "log_wildcard_bind", "read_shared_keys"]

log = logging.getLogger("emberserve.auth")

KEY_FILE_NAME = "key_file.json"
#: 24 random bytes = 192 bits, as 32 URL-safe characters.
_KEY_BYTES = 24
_MAX_HEADER_CHARS = 512

Api = Literal["inference", "management", "token"]
#: What a rotation may replace (``GET /token?type=…``).
_ROTATABLE = ("inference", "management")

#: TorchServe's texts (reference §8).
_WHY = "Token either incorrect, expired, or not provided correctly"
AUTHORIZATION_FAILED = f"Token Authorization failed. {_WHY}"
AUTHENTICATION_FAILED = f"Token Authentication failed. {_WHY}"


@dataclass(slots=True)
class _Key:
    value: str
    expires_at: float | None  # epoch seconds; None = never (the API key)

    def valid(self, presented: str, now: float) -> bool:
        same = hmac.compare_digest(self.value.encode(), presented.encode())
        return same and (self.expires_at is None or now < self.expires_at)


def bearer_token(values: Iterable[str]) -> str | None:
    """The key of exactly one ``Authorization: Bearer <key>`` header value, else None.

    >>> bearer_token(["Bearer abc"]), bearer_token(["bearer abc"]), bearer_token(["Bearer a b"])
    ('abc', None, None)
    >>> bearer_token(["Bearer abc", "Bearer abc"]) is None, bearer_token([]) is None
    (True, True)
    """
    found = list(values)
    if len(found) != 1 or len(found[0]) > _MAX_HEADER_CHARS:
        return None
    scheme, _, key = found[0].partition(" ")
    if scheme != "Bearer" or not key or not key.isprintable() or " " in key or "\t" in key:
        return None
    return key


class TokenAuthority:
    """The server's keys (see the module docstring). ``clock`` returns epoch seconds (tests)."""

    def __init__(
        self,
        key_file: Path,
        expiration_min: int,
        *,
        clock: Callable[[], float] = time.time,
        shared_keys: Path | None = None,
    ) -> None:
        self.key_file = key_file
        self._ttl_s = max(1, expiration_min) * 60.0
        self._clock = clock
        self._shared = shared_keys
        if shared_keys is not None:
            # Replicas behind one Service must accept the same keys: the operator provides them
            # (a Kubernetes Secret) and rotates them there. Nothing is written or expires.
            self._keys = {name: _Key(value, None) for name, value in read_shared_keys(shared_keys).items()}
            log.info("Token authorization is on, with the keys in %s (token_keys_file)", shared_keys)
            return
        now = clock()
        self._keys = {
            "management": _Key(_new_key(), now + self._ttl_s),
            "inference": _Key(_new_key(), now + self._ttl_s),
            "API": _Key(_new_key(), None),
        }
        self._write()
        log.info(
            "Token authorization is on: send 'Authorization: Bearer <key>' with the keys in %s "
            "(or start with --disable-token-auth)",
            key_file,
        )

    def allows(self, api: Api, authorization: Iterable[str]) -> bool:
        """Whether the ``Authorization`` header values open ``api`` (``token`` = the API key)."""
        presented = bearer_token(authorization)
        if presented is None:
            return False
        key = self._keys["API" if api == "token" else api]
        return key.valid(presented, self._clock())

    def check(self, api: Api, authorization: Iterable[str]) -> None:
        """Raise TorchServe's InvalidKeyException (400) unless :meth:`allows`."""
        if not self.allows(api, authorization):
            raise InvalidKeyError(AUTHENTICATION_FAILED if api == "token" else AUTHORIZATION_FAILED)

    def rotate(self, kind: str) -> None:
        """Replace the ``inference`` or ``management`` key (the caller checked the API key)."""
        if kind not in _ROTATABLE:
            raise InvalidKeyError(AUTHENTICATION_FAILED)
        if self._shared is not None:
            raise InvalidKeyError(
                f"The keys come from {self._shared.name} (token_keys_file): replace them there and "
                "restart the replicas"
            )
        self._keys[kind] = _Key(_new_key(), self._clock() + self._ttl_s)
        self._write()
        log.info("The %s key was replaced (see %s)", kind, self.key_file)

    def remove_file(self) -> None:
        """Delete the key file (server shutdown): stale keys must not outlive the server."""
        if self._shared is not None:
            return  # the operator's file, not ours
        with contextlib.suppress(OSError):
            self.key_file.unlink()

    def _write(self) -> None:
        document: dict[str, dict[str, str]] = {}
        for name, key in self._keys.items():
            entry = {"key": key.value}
            if key.expires_at is not None:
                entry["expiration time"] = _iso(key.expires_at)
            document[name] = entry
        data = orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n"
        directory = self.key_file.parent
        directory.mkdir(parents=True, exist_ok=True)
        # mkstemp opens with O_CREAT|O_EXCL and mode 0600: nobody else can read or pre-create it.
        fd, tmp = tempfile.mkstemp(prefix=".key_file.", dir=directory)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.key_file)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


#: A provided key must be at least this long: 22 URL-safe characters carry 128 bits.
MIN_SHARED_KEY_CHARS = 22


def read_shared_keys(path: Path) -> dict[str, str]:
    """The ``inference``, ``management`` and ``API`` keys of a ``token_keys_file`` (the
    ``key_file.json`` layout; expiration times are ignored). ConfigError when unusable.

    >>> import json, tempfile
    >>> doc = {kind: {"key": kind[0] * 32} for kind in ("inference", "management", "API")}
    >>> with tempfile.NamedTemporaryFile("w", suffix=".json") as fh:
    ...     _ = fh.write(json.dumps(doc)); fh.flush()
    ...     sorted(read_shared_keys(Path(fh.name)))
    ['API', 'inference', 'management']
    """
    try:
        document = orjson.loads(path.read_bytes())
        keys = {kind: document[kind]["key"] for kind in ("inference", "management", "API")}
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"token_keys_file {path}: not a key file ({exc}). Write it in key_file.json's layout: "
            '{"inference": {"key": "…"}, "management": {"key": "…"}, "API": {"key": "…"}}'
        ) from exc
    for kind, value in keys.items():
        if not isinstance(value, str) or len(value) < MIN_SHARED_KEY_CHARS or not value.isprintable():
            raise ConfigError(
                f"token_keys_file {path}: the {kind} key must be at least {MIN_SHARED_KEY_CHARS} "
                "printable characters (e.g. python -c 'import secrets; print(secrets.token_urlsafe(24))')"
            )
    if len(set(keys.values())) != len(keys):
        raise ConfigError(f"token_keys_file {path}: the three keys must differ")
    return keys


def log_wildcard_bind(logger: logging.Logger, api: str, where: str, *, keyed: bool) -> None:
    """Say, when an API binds every interface, whether a key protects it.

    A container binds 0.0.0.0 by necessity; that is fine with token authorization on and worth a
    warning without it (the metrics API, read-only and open in TorchServe, gets a notice).
    """
    if keyed:
        logger.info("The %s API listens on all interfaces (%s); its requests need a key", api, where)
    elif api == "metrics":
        logger.info("The metrics API listens on all interfaces (%s) and needs no key", where)
    else:
        logger.warning(
            "The %s API listens on all interfaces (%s) with token authorization off: anyone who can "
            "reach this machine can call it",
            api,
            where,
        )


def _new_key() -> str:
    return secrets.token_urlsafe(_KEY_BYTES)


def _iso(epoch_s: float) -> str:
    stamp = datetime.fromtimestamp(epoch_s, UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"
