"""``MAR-INF/MANIFEST.json``: what a model archive says about itself.

The archiver writes it and the server reads it, so both sides share this one schema. The
layout is torch-model-archiver 0.12's (reference §13)::

    {
      "createdOn": "22/11/2026 07:51:34",
      "runtime": "python",
      "model": {
        "modelName": "noop",
        "handler": "noop_handler.py",
        "modelVersion": "1.0"
      },
      "archiverVersion": "0.12.0"
    }

Reading is strict about types (a hostile manifest never reaches the server as anything but
:class:`~emberserve.errors.ArchiveError`) and keeps TorchServe's messages where a client may
compare them:

    >>> m = Manifest.parse(b'{"model": {"modelName": "noop", "handler": "h.py"}}')
    >>> (m.model_name, m.handler, m.model_version, m.runtime)
    ('noop', 'h.py', None, 'python')
    >>> Manifest.parse(b'{"model": {"handler": "h.py"}}')
    Traceback (most recent call last):
    ...
    emberserve.errors.ArchiveError: Model name is not defined.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any

import orjson

from emberserve.errors import ArchiveError

#: Where the manifest lives inside every archive format.
MANIFEST_PATH = "MAR-INF/MANIFEST.json"

#: torch-model-archiver's model-name filter; the server enforces it too (SECURITY.md M1).
MODEL_NAME_PATTERN: re.Pattern[str] = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-.]*$")

#: Longest model name accepted anywhere (names end up in URLs, log lines and metric labels).
MAX_MODEL_NAME_LENGTH = 256

#: Longest model version accepted in a manifest.
MAX_MODEL_VERSION_LENGTH = 256

#: The runtimes TorchServe 0.12 knows (``Manifest.RuntimeType``).
RUNTIMES: tuple[str, ...] = ("python", "python3", "LSP")

#: The torch-model-archiver release whose output Ember's archiver reproduces.
ARCHIVER_VERSION = "0.12.0"

#: ``createdOn`` format (local time), as torch-model-archiver writes it.
CREATED_ON_FORMAT = "%d/%m/%Y %H:%M:%S"


def is_valid_model_name(name: str) -> bool:
    """Whether ``name`` passes the archiver's pattern and Ember's length cap.

    >>> [is_valid_model_name(n) for n in ("resnet-18_v1.0", "../x", ".hidden", "a" * 257)]
    [True, False, False, False]
    """
    return len(name) <= MAX_MODEL_NAME_LENGTH and MODEL_NAME_PATTERN.fullmatch(name) is not None


@dataclass(frozen=True)
class Manifest:
    """A parsed, validated ``MANIFEST.json``.

    ``handler`` is ``""`` when the manifest names none (TorchServe then falls back to the
    ``handler`` register parameter or ``default_service_handler``). ``created_on`` and
    ``archiver_version`` are ``""`` when absent. ``raw`` is the manifest exactly as parsed
    (unknown keys included): handlers receive it as ``context.manifest``.
    """

    model_name: str
    model_version: str | None
    handler: str
    serialized_file: str | None
    model_file: str | None
    extensions: str | None
    requirements_file: str | None
    config_file: str | None
    runtime: str
    created_on: str
    archiver_version: str
    raw: Mapping[str, Any]

    @classmethod
    def parse(cls, data: bytes) -> Manifest:
        """Parse and validate manifest bytes; any problem raises :class:`ArchiveError`."""
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            # orjson also refuses nesting deeper than 1024 levels here, before any recursion.
            raise ArchiveError(f"Failed to parse MANIFEST.json: {exc}") from exc
        if not isinstance(doc, dict):
            raise ArchiveError("Failed to parse MANIFEST.json: the top level must be a JSON object.")
        model = doc.get("model")
        if model is None:
            raise ArchiveError("Missing Model entry in manifest file.")
        if not isinstance(model, dict):
            raise ArchiveError('Invalid MANIFEST.json: "model" must be a JSON object.')

        name = _optional_str(model, "modelName", "model.")
        if not name:
            raise ArchiveError("Model name is not defined.")
        if not is_valid_model_name(name):
            raise ArchiveError(
                f"Invalid MANIFEST.json: model name {_shorten(name)} must match "
                f"{MODEL_NAME_PATTERN.pattern} and have at most {MAX_MODEL_NAME_LENGTH} characters."
            )
        version = _optional_str(model, "modelVersion", "model.") or None
        if version is not None:
            _check_version(version)

        runtime = doc.get("runtime", "python")
        if runtime not in RUNTIMES:
            raise ArchiveError("Runtime is not defined or invalid.")

        return cls(
            model_name=name,
            model_version=version,
            handler=_optional_str(model, "handler", "model.") or "",
            serialized_file=_optional_str(model, "serializedFile", "model."),
            model_file=_optional_str(model, "modelFile", "model."),
            extensions=_optional_str(model, "extensions", "model."),
            requirements_file=_optional_str(model, "requirementsFile", "model."),
            config_file=_optional_str(model, "configFile", "model."),
            runtime=runtime,
            created_on=_optional_str(doc, "createdOn", "") or "",
            archiver_version=_optional_str(doc, "archiverVersion", "") or "",
            raw=MappingProxyType(doc),
        )

    @classmethod
    def create(
        cls,
        model_name: str,
        handler: str,
        *,
        model_version: str | None = None,
        serialized_file: str | None = None,
        model_file: str | None = None,
        extensions: str | None = None,
        requirements_file: str | None = None,
        config_file: str | None = None,
        runtime: str = "python",
        created_on: datetime | None = None,
    ) -> Manifest:
        """A new manifest as torch-model-archiver would write it (``createdOn`` = now, local time).

        Values are stored as given: the archiver passes basenames. Empty optional values are
        left out of the JSON, as torch-model-archiver does.
        """
        stamp = (created_on or datetime.now()).strftime(CREATED_ON_FORMAT)
        manifest = cls(
            model_name=model_name,
            model_version=model_version or None,
            handler=handler,
            serialized_file=serialized_file or None,
            model_file=model_file or None,
            extensions=extensions or None,
            requirements_file=requirements_file or None,
            config_file=config_file or None,
            runtime=runtime,
            created_on=stamp,
            archiver_version=ARCHIVER_VERSION,
            raw=MappingProxyType({}),
        )
        # raw mirrors what to_json() writes, so a created manifest behaves like a parsed one.
        object.__setattr__(manifest, "raw", MappingProxyType(manifest._document()))
        return manifest

    def to_json(self) -> bytes:
        """The manifest in torch-model-archiver 0.12's exact shape: key order, 2-space indent,
        ASCII escapes, no trailing newline. Unknown keys of a parsed manifest are not written."""
        return json.dumps(self._document(), indent=2).encode("ascii")

    def _document(self) -> dict[str, Any]:
        model: dict[str, Any] = {"modelName": self.model_name}
        if self.serialized_file:
            model["serializedFile"] = self.serialized_file
        model["handler"] = self.handler
        optional = {
            "modelFile": self.model_file,
            "modelVersion": self.model_version,
            "extensions": self.extensions,
            "requirementsFile": self.requirements_file,
            "configFile": self.config_file,
        }
        model.update({key: value for key, value in optional.items() if value})
        doc: dict[str, Any] = {"createdOn": self.created_on, "runtime": self.runtime, "model": model}
        if self.archiver_version:
            doc["archiverVersion"] = self.archiver_version
        return doc


def _optional_str(obj: Mapping[str, Any], key: str, where: str) -> str | None:
    value = obj.get(key)
    if value is None or isinstance(value, str):
        return value
    raise ArchiveError(f"Invalid MANIFEST.json: {where}{key} must be a string, not {_json_type(value)}.")


def _check_version(version: str) -> None:
    # Versions become URL segments and log fields: refuse what could act as a path or a control
    # sequence. TorchServe itself accepts any string here.
    if (
        len(version) > MAX_MODEL_VERSION_LENGTH
        or version in (".", "..")
        or "/" in version
        or "\\" in version
        or any(ord(c) < 0x20 or ord(c) == 0x7F for c in version)
    ):
        raise ArchiveError(f"Invalid MANIFEST.json: model version {_shorten(version)} is not allowed.")


def _json_type(value: object) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", list: "an array", dict: "an object"}
    return names.get(type(value), type(value).__name__)


def _shorten(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")
