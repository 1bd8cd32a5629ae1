"""The model registry: model names → versions → the default version.

Each registered :class:`ModelVersion` owns what serving it takes: its extracted archive, its
effective settings, its bounded job queue and its worker pool. The registry itself is plain state
guarded by one rule: all changes to one model name are serialised by that name's lock (see
:meth:`ModelRegistry.lock`), so concurrent register/unregister/set-default calls never observe a
half-registered model. Lookups never take a lock: they read a consistent snapshot of dicts.

    >>> reg = ModelRegistry()
    >>> reg.names()
    []
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from emberserve.errors import ConflictError, ModelNotFoundError, ModelVersionNotFoundError

if TYPE_CHECKING:
    from emberserve.archive import ModelArchive
    from emberserve.batching import BatchQueue
    from emberserve.workers.pool import WorkerPool


@dataclass(frozen=True, slots=True)
class VersionSettings:
    """The effective settings of one model version (config.properties < model-config.yaml < API)."""

    min_workers: int
    max_workers: int
    batch_size: int
    max_batch_delay_ms: int
    response_timeout_s: int
    startup_timeout_s: int
    job_queue_size: int
    runtime: str
    device_type: str
    handler: str
    envelope: str | None


@dataclass(eq=False)
class ModelVersion:
    """One registered version of a model and everything that serves it."""

    name: str
    version: str
    url: str
    archive: ModelArchive
    settings: VersionSettings
    queue: BatchQueue
    pool: WorkerPool
    loaded_at_startup: bool = False
    registered_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    #: Set when the archive was fetched for this registration (file://, http, s3): removed on unregister.
    owned_archive_file: str | None = None


@dataclass(eq=False)
class _Model:
    versions: dict[str, ModelVersion] = field(default_factory=dict)
    default: str | None = None


class ModelRegistry:
    """All registered models; see the module docstring for the locking rule."""

    def __init__(self) -> None:
        self._models: dict[str, _Model] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def lock(self, name: str) -> asyncio.Lock:
        """The lock that serialises every change to model ``name``."""
        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = asyncio.Lock()
        return lock

    # -- lookups --------------------------------------------------------------------------------

    def names(self) -> list[str]:
        """Registered model names, sorted (TorchServe lists models by name)."""
        return sorted(self._models)

    def get(self, name: str, version: str | None = None) -> ModelVersion:
        """The given version, or the default one when ``version`` is None or empty.

        Raises ModelNotFoundError / ModelVersionNotFoundError with TorchServe's texts.
        """
        model = self._models.get(name)
        if model is None or model.default is None:
            raise ModelNotFoundError(f"Model not found: {name}")
        if not version:
            return model.versions[model.default]
        found = model.versions.get(version)
        if found is None:
            raise ModelVersionNotFoundError(f"Model version: {version} does not exist for model: {name}")
        return found

    def versions(self, name: str) -> list[ModelVersion]:
        """Every version of ``name`` in registration order; ModelNotFoundError when none."""
        model = self._models.get(name)
        if model is None or not model.versions:
            raise ModelNotFoundError(f"Model not found: {name}")
        return list(model.versions.values())

    def default_version(self, name: str) -> str:
        model = self._models.get(name)
        if model is None or model.default is None:
            raise ModelNotFoundError(f"Model not found: {name}")
        return model.default

    def is_default(self, entry: ModelVersion) -> bool:
        model = self._models.get(entry.name)
        return model is not None and model.default == entry.version

    def all_versions(self) -> Iterator[ModelVersion]:
        for name in sorted(self._models):
            yield from self._models[name].versions.values()

    # -- changes (callers hold ``lock(name)``) ----------------------------------------------------

    def add(self, entry: ModelVersion, *, make_default: bool = False) -> None:
        """Add a version; the first version of a model becomes its default (TorchServe)."""
        model = self._models.setdefault(entry.name, _Model())
        if entry.version in model.versions:
            raise ConflictError(f"Model version {entry.version} is already registered for model {entry.name}")
        model.versions[entry.version] = entry
        if model.default is None or make_default:
            model.default = entry.version

    def contains(self, name: str, version: str) -> bool:
        model = self._models.get(name)
        return model is not None and version in model.versions

    def remove(self, entry: ModelVersion) -> None:
        model = self._models.get(entry.name)
        if model is None or model.versions.get(entry.version) is not entry:
            return
        del model.versions[entry.version]
        if model.default == entry.version:
            model.default = next(iter(model.versions), None)
        if not model.versions:
            del self._models[entry.name]

    def set_default(self, name: str, version: str) -> None:
        model = self._models.get(name)
        if model is None:
            raise ModelNotFoundError(f"Model not found: {name}")
        if version not in model.versions:
            # TorchServe's set-default text differs from describe's (no colon after "version").
            raise ModelVersionNotFoundError(f"Model version {version} does not exist for model {name}")
        model.default = version
