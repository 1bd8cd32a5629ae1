"""Model archives: open a ``.mar`` / tar.gz / model directory safely and read what it declares.

:func:`open_model_archive` is the one entry point the server uses::

    archive = open_model_archive(Path("store/noop.mar"), work_dir)
    try:
        ...  # archive.model_dir, archive.manifest, archive.model_config, archive.settings
    finally:
        archive.cleanup()

It extracts into a fresh private directory (:mod:`.extract`), reads
``MAR-INF/MANIFEST.json`` (:mod:`.manifest`) and the manifest's ``configFile``
(:mod:`.model_config`), and checks that every file the manifest names lies inside the model
directory (SECURITY.md A13). Any problem raises :class:`~emberserve.errors.ArchiveError`
(400 InvalidModelException) and leaves nothing behind.

Choice on a missing manifest: TorchServe reads an archive without ``MANIFEST.json`` as an
empty manifest and then fails with "Model name is not defined." unless the register request
supplies a name — which is how ``url=notazip.mar`` answers (reference §4). Ember refuses every
source without a manifest with that same message, and answers a file that is not an archive at
all the same way; a hand-made directory therefore needs a ``MAR-INF/MANIFEST.json``.
"""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emberserve.archive.extract import (
    ArchiveLimits,
    UnrecognizedArchiveError,
    contained_path,
    extract_archive,
)
from emberserve.archive.manifest import MANIFEST_PATH, Manifest
from emberserve.archive.model_config import ModelYamlSettings, load_model_config
from emberserve.errors import ArchiveError

__all__ = [
    "BUILTIN_HANDLERS",
    "DEFAULT_LIMITS",
    "ArchiveLimits",
    "Manifest",
    "ModelArchive",
    "ModelYamlSettings",
    "check_handler",
    "extract_archive",
    "load_model_config",
    "open_model_archive",
]

#: TorchServe's default handler names: the archiver copies no file for these (reference §12).
BUILTIN_HANDLERS: frozenset[str] = frozenset(
    {
        "base_handler",
        "text_classifier",
        "image_classifier",
        "object_detector",
        "image_segmenter",
        "dali_image_classifier",
        "vllm_handler",
        "trt_llm_handler",
    }
)

#: The limits used when the caller gives none.
DEFAULT_LIMITS = ArchiveLimits()

_MISSING_MANIFEST = "Model name is not defined."


@dataclass
class ModelArchive:
    """An extracted model directory, owned by whoever opened it, and what its archive declares."""

    model_dir: Path
    manifest: Manifest
    model_config: dict[str, Any]
    settings: ModelYamlSettings = field(default_factory=ModelYamlSettings)

    def cleanup(self) -> None:
        """Remove the model directory (safe to call more than once)."""
        shutil.rmtree(self.model_dir, ignore_errors=True)


def open_model_archive(
    source: Path, dest_parent: Path, limits: ArchiveLimits = DEFAULT_LIMITS
) -> ModelArchive:
    """Extract ``source`` under ``dest_parent`` and read its manifest and model config.

    Raises :class:`ArchiveError` for hostile or broken archives; the extracted directory is
    removed in that case.
    """
    try:
        model_dir = extract_archive(source, dest_parent, limits)
    except UnrecognizedArchiveError as exc:
        raise ArchiveError(_MISSING_MANIFEST) from exc
    try:
        manifest_file = model_dir / MANIFEST_PATH
        if not manifest_file.exists():
            raise ArchiveError(_MISSING_MANIFEST)
        manifest = Manifest.parse(_read_capped(manifest_file, limits.max_manifest_bytes, "MANIFEST.json"))
        _check_references(manifest, model_dir)
        config: dict[str, Any] = {}
        if manifest.config_file:
            config_path = contained_path(model_dir, manifest.config_file)
            if not config_path.is_file():
                raise ArchiveError(
                    f"Invalid model archive: configFile {manifest.config_file!r} is not in the archive."
                )
            data = _read_capped(config_path, limits.max_model_config_bytes, "model-config.yaml")
            config = load_model_config(data, limits.max_model_config_bytes)
        settings = ModelYamlSettings.from_config(config)
    except BaseException:
        shutil.rmtree(model_dir, ignore_errors=True)
        raise
    return ModelArchive(model_dir=model_dir, manifest=manifest, model_config=config, settings=settings)


def check_handler(handler: str) -> None:
    """Refuse a manifest ``handler`` that could name code outside the model directory.

    Accepted: ``""`` (none given), a built-in name, or a module path — ``x``, ``x.py``,
    ``pkg.x`` — optionally followed by ``:function``. Module path components are plain names
    (letters, digits, ``_``, ``-``), so no ``/``, ``..`` or absolute path can get through; the
    worker imports the module from the model directory.

        >>> check_handler("noop_handler:handle"), check_handler("image_classifier")
        (None, None)
        >>> check_handler("../../x.py")
        Traceback (most recent call last):
        ...
        emberserve.errors.ArchiveError: Invalid MANIFEST.json: handler '../../x.py' must be ...
    """
    if not handler or handler in BUILTIN_HANDLERS:
        return
    module, _, function = handler.partition(":")
    if module.endswith(".py"):
        module = module[:-3]
    module_ok = bool(module) and all(_is_plain_name(part) for part in module.split("."))
    function_ok = not function or function.isidentifier()
    if not (module_ok and function_ok and handler.count(":") <= 1):
        raise ArchiveError(
            f"Invalid MANIFEST.json: handler {handler[:80]!r} must be a built-in handler name or a "
            "module inside the model directory (optionally module:function)."
        )


def _is_plain_name(part: str) -> bool:
    return bool(part) and part.isascii() and all(c.isalnum() or c in "_-" for c in part) and part[0] != "-"


def _check_references(manifest: Manifest, model_dir: Path) -> None:
    check_handler(manifest.handler)
    for key, value in (
        ("serializedFile", manifest.serialized_file),
        ("modelFile", manifest.model_file),
        ("configFile", manifest.config_file),
        ("requirementsFile", manifest.requirements_file),
    ):
        if value:
            try:
                contained_path(model_dir, value)
            except ArchiveError as exc:
                raise ArchiveError(
                    f"Invalid MANIFEST.json: {key} {value[:80]!r} is not inside the model directory."
                ) from exc


def _read_capped(path: Path, max_bytes: int, what: str) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        with open(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise ArchiveError(f"Invalid model archive: {what} is not a regular file.")
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise ArchiveError(f"Invalid model archive: cannot read {what}: {exc.strerror}") from exc
    if len(data) > max_bytes:
        raise ArchiveError(f"Invalid model archive: {what} is larger than {max_bytes} bytes.")
    return data
