"""Config snapshots: what is registered, written on every change and restored at the next start.

A snapshot is a ``config.properties`` file, as TorchServe writes them (``FSSnapshotSerializer``):
the server's own properties, ``tsConfigFile`` (the file they came from) and ``model_snapshot``, a
JSON document of every registered model version::

    #Saving snapshot
    #Sun Nov 22 10:12:13 UTC 2026
    inference_address=http\\://127.0.0.1\\:8080
    model_snapshot={\\n  "name"\\: "20261122101213042-snapshot.cfg",\\n  "modelCount"\\: 1, ...}
    tsConfigFile=/srv/config.properties

They live in ``<LOG_LOCATION>/config`` as ``<yyyyMMddHHmmssSSS>-{startup,snapshot,shutdown}.cfg``.
Where Ember does better than TorchServe:

- a snapshot is written atomically (temporary file, fsync, rename, fsync of the directory), so a
  crash or a full disk never leaves a half-written newest snapshot behind;
- the newest snapshot that does not parse is skipped with a warning and the previous valid one
  restored (TorchServe fails to start);
- secrets never reach the file: values are written as the config file spelled them
  (``$$VAR$$`` references stay references) and secret keys (``keystore_pass``) are left out;
- only the newest :data:`KEEP_SNAPSHOTS` files are kept (TorchServe's folder grows forever).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import javaproperties
import orjson

__all__ = [
    "KEEP_SNAPSHOTS",
    "SnapshotModel",
    "SnapshotWriter",
    "latest_valid_snapshot",
    "parse_model_snapshot",
]

log = logging.getLogger("emberserve.snapshot")

#: Snapshot files kept in the folder; older ones are deleted after each successful write.
KEEP_SNAPSHOTS = 20
#: A snapshot larger than this is not a snapshot (guards the startup read).
MAX_SNAPSHOT_BYTES = 16 << 20
_NAME_RE = re.compile(r"^\d{17}-(startup|snapshot|shutdown)\.cfg$")
#: Keys a snapshot never carries: its own bookkeeping (rewritten each time) and secrets.
_OWN_KEYS = frozenset({"model_snapshot", "tsConfigFile"})
_SECRET_KEY_RE = re.compile(r"pass|secret|credential|token_value|api_key", re.IGNORECASE)

Kind = Literal["startup", "snapshot", "shutdown"]


@dataclass(frozen=True, slots=True)
class SnapshotModel:
    """One registered model version as a snapshot records it (TorchServe's field names)."""

    name: str
    version: str
    mar_name: str
    default_version: bool
    min_workers: int
    max_workers: int
    batch_size: int
    max_batch_delay: int
    response_timeout: int
    startup_timeout: int

    def as_json(self) -> dict[str, object]:
        return {
            "defaultVersion": self.default_version,
            "marName": self.mar_name,
            "minWorkers": self.min_workers,
            "maxWorkers": self.max_workers,
            "batchSize": self.batch_size,
            "maxBatchDelay": self.max_batch_delay,
            "responseTimeout": self.response_timeout,
            "startupTimeout": self.startup_timeout,
        }


class SnapshotWriter:
    """Writes snapshots of one server into ``directory``.

    ``properties`` are the config file's key/value texts as written there (see the module
    docstring); ``source_file`` is recorded as ``tsConfigFile``.

    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> writer = SnapshotWriter(folder, {"batch_size": "4", "keystore_pass": "hunter2"}, None)
    >>> path = writer.write("startup", [])
    >>> path.name.endswith("-startup.cfg"), "hunter2" in path.read_text()
    (True, False)
    """

    def __init__(
        self,
        directory: Path,
        properties: Mapping[str, str],
        source_file: Path | None,
        *,
        keep: int = KEEP_SNAPSHOTS,
    ) -> None:
        self.directory = directory
        self._properties = {
            key: value
            for key, value in properties.items()
            if key not in _OWN_KEYS and not _SECRET_KEY_RE.search(key)
        }
        self._source_file = source_file
        self._keep = max(1, keep)
        self._last_stamp = ""

    def write(self, kind: Kind, models: Iterable[SnapshotModel]) -> Path:
        """Write one snapshot atomically and return its path; raises OSError when that fails
        (the previous snapshots are untouched then)."""
        now = datetime.now(UTC)
        stamp = now.strftime("%Y%m%d%H%M%S") + f"{now.microsecond // 1000:03d}"
        if stamp <= self._last_stamp:  # two changes in one millisecond: keep names ordered and unique
            stamp = str(int(self._last_stamp) + 1)
        self._last_stamp = stamp
        name = f"{stamp}-{kind}.cfg"
        chosen = list(models)
        document: dict[str, object] = {
            "name": name,
            "modelCount": len({m.name for m in chosen}),
            "created": int(now.timestamp() * 1000),
            "models": _models_json(chosen),
        }
        props = dict(self._properties)
        props["model_snapshot"] = orjson.dumps(document, option=orjson.OPT_INDENT_2).decode()
        if self._source_file is not None:
            props["tsConfigFile"] = str(self._source_file)
        text = javaproperties.dumps(props, comments="Saving snapshot", timestamp=now)
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / name
        _write_atomically(path, text.encode("latin-1", "backslashreplace"))
        self._prune()
        return path

    def _prune(self) -> None:
        names = sorted(p.name for p in self.directory.iterdir() if _NAME_RE.match(p.name))
        for old in names[: -self._keep]:
            with contextlib.suppress(OSError):
                (self.directory / old).unlink()


def _models_json(models: list[SnapshotModel]) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    for model in models:
        out.setdefault(model.name, {})[model.version] = model.as_json()
    return out


def _write_atomically(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    # The rename itself must survive a power cut too.
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def parse_model_snapshot(text: str) -> list[SnapshotModel]:
    """The model versions of a ``model_snapshot`` value; ValueError when it is not one.

    >>> [m] = parse_model_snapshot('{"models": {"noop": {"1.0": {"marName": "noop.mar", "minWorkers": 2}}}}')
    >>> m.mar_name, m.min_workers, m.max_workers
    ('noop.mar', 2, 2)
    """
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"model_snapshot is not JSON: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("models"), dict):
        raise ValueError('model_snapshot has no "models" object')
    models: list[SnapshotModel] = []
    for name, versions in document["models"].items():
        if not isinstance(versions, dict):
            raise ValueError(f"model_snapshot: model {name!r} is not an object")
        for version, entry in versions.items():
            if not isinstance(entry, dict) or not isinstance(entry.get("marName"), str):
                raise ValueError(f"model_snapshot: {name} version {version} has no marName")
            min_workers = _int(entry, "minWorkers", 1)
            models.append(
                SnapshotModel(
                    name=str(name),
                    version=str(version),
                    mar_name=entry["marName"],
                    default_version=entry.get("defaultVersion") is True,
                    min_workers=min_workers,
                    max_workers=max(min_workers, _int(entry, "maxWorkers", min_workers)),
                    batch_size=_int(entry, "batchSize", 1),
                    max_batch_delay=_int(entry, "maxBatchDelay", 100),
                    response_timeout=_int(entry, "responseTimeout", 120),
                    startup_timeout=_int(entry, "startupTimeout", 120),
                )
            )
    return models


def _int(entry: Mapping[str, object], key: str, default: int) -> int:
    value = entry.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"model_snapshot: {key} must be a non-negative integer, not {value!r}")
    return value


def latest_valid_snapshot(directory: Path) -> Path | None:
    """The newest snapshot in ``directory`` that parses, or None.

    Newer ones that do not parse (truncated, corrupt, unreadable) are skipped with a warning.
    """
    try:
        names = sorted((p.name for p in directory.iterdir() if _NAME_RE.match(p.name)), reverse=True)
    except OSError:
        return None
    for name in names:
        path = directory / name
        problem = _snapshot_problem(path)
        if problem is None:
            return path
        log.warning("Ignoring config snapshot %s: %s; trying the previous one", path, problem)
    return None


def _snapshot_problem(path: Path) -> str | None:
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_SNAPSHOT_BYTES + 1)
    except OSError as exc:
        return f"cannot read it ({exc.strerror})"
    if len(data) > MAX_SNAPSHOT_BYTES:
        return "it is too large"
    try:
        props = javaproperties.loads(data.decode("latin-1"))
    except (ValueError, javaproperties.InvalidUEscapeError) as exc:
        return f"it is not a properties file ({exc})"
    text = props.get("model_snapshot")
    if text is None:
        return "it has no model_snapshot"
    try:
        parse_model_snapshot(text)
    except ValueError as exc:
        return str(exc)
    return None
