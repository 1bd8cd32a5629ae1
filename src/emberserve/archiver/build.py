"""Build model archives the way torch-model-archiver 0.12 does.

Same inputs, same result (reference §13): every file lands flat at the archive root under its
basename, a directory given in ``extra_files`` contributes its *content* (subdirectories keep
their relative paths; ``__pycache__``, ``__MACOSX`` and dot-directories are skipped), globs
are expanded, and ``MAR-INF/MANIFEST.json`` is written last, byte for byte in the archiver's
shape. Four formats:

========== ================================ =====================================
format     output                           layout
========== ================================ =====================================
default    ``<export>/<name>.mar``          deflated zip
zip-store  ``<export>/<name>.mar``          stored (uncompressed) zip
tgz        ``<export>/<name>.tar.gz``       gzip tar, everything under ``<name>/``
no-archive ``<export>/<name>/``             a plain directory
========== ================================ =====================================

Differences from torch-model-archiver, all on purpose: members are written in sorted order
(reproducible archives, where the original follows directory-listing order); the output is
written to a temporary name and renamed into place, so a failed build leaves no partial file;
nothing is staged in a shared ``/tmp/<model-name>`` directory; ``no-archive`` with ``force``
*replaces* the directory instead of copying over it (stale files would otherwise survive);
symlinked directories inside an extra directory are not followed.

    >>> build_archive("noop", "1.0", "noop_handler.py", export_path="model_store")  # doctest: +SKIP
    PosixPath('model_store/noop.mar')
"""

from __future__ import annotations

import glob
import gzip
import io
import logging
import os
import secrets
import shutil
import sys
import tarfile
import zipfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import IO

from emberserve.archive import BUILTIN_HANDLERS
from emberserve.archive.manifest import (
    MANIFEST_PATH,
    MODEL_NAME_PATTERN,
    RUNTIMES,
    Manifest,
    is_valid_model_name,
)

logger = logging.getLogger(__name__)

#: ``--archive-format`` choices, in torch-model-archiver's order.
ARCHIVE_FORMATS: tuple[str, ...] = ("tgz", "no-archive", "zip-store", "default")

_SUFFIXES = {"tgz": ".tar.gz", "no-archive": "", "zip-store": ".mar", "default": ".mar"}
_SKIPPED_DIRS = frozenset({"__MACOSX", "__pycache__"})
# With runtime LSP (the C++ backend) these handler names are built in.
_LSP_BUILTIN_HANDLERS = frozenset({"BaseHandler", "TorchScriptHandler"})

PathArg = str | os.PathLike[str]


class ArchiverError(Exception):
    """A problem with the archiver's inputs; the message is torch-model-archiver's where it has one."""


def archive_path(export_path: PathArg, model_name: str, archive_format: str) -> str:
    """Where an archive of ``archive_format`` is written (the path as torch-model-archiver prints it)."""
    return os.path.join(os.fspath(export_path), model_name + _SUFFIXES[archive_format])


def build_archive(
    model_name: str,
    version: str,
    handler: str,
    *,
    serialized_file: PathArg | None = None,
    model_file: PathArg | None = None,
    extra_files: str | None = None,
    runtime: str = "python",
    requirements_file: PathArg | None = None,
    config_file: PathArg | None = None,
    archive_format: str = "default",
    export_path: PathArg | None = None,
    force: bool = False,
    created_on: datetime | None = None,
) -> Path:
    """Write a model archive and return its path; raises :class:`ArchiverError` on bad inputs.

    Arguments mirror torch-model-archiver's flags (``extra_files`` is the comma-separated
    ``--extra-files`` string; ``export_path`` defaults to the current directory).
    """
    if archive_format not in _SUFFIXES:
        raise ArchiverError(
            f"Invalid archive format: {archive_format!r} (choose from {', '.join(ARCHIVE_FORMATS)})"
        )
    if runtime not in RUNTIMES:
        raise ArchiverError(f"Invalid runtime: {runtime!r} (choose from {', '.join(RUNTIMES)})")
    model_path = os.fspath(model_file) if model_file else None
    requirements = os.fspath(requirements_file) if requirements_file else None
    manifest = Manifest.create(
        model_name,
        os.path.basename(handler),
        model_version=version,
        serialized_file=os.path.basename(serialized_file) if serialized_file else None,
        model_file=model_path.split("/")[-1] if model_path else None,
        requirements_file=requirements.split("/")[-1] if requirements else None,
        config_file=os.path.basename(config_file) if config_file else None,
        runtime=runtime,
        created_on=created_on,
    )

    if not is_valid_model_name(model_name):
        raise ArchiverError(
            "Model name contains special characters.\n"
            f"The allowed regular expression filter for model name is: {MODEL_NAME_PATTERN.pattern}"
        )
    export = os.fspath(export_path) if export_path is not None else os.getcwd()
    if not os.path.isdir(os.path.abspath(export)):
        raise ArchiverError(
            f"Given export-path {export} is not a directory. Point to a valid export-path directory."
        )
    target = archive_path(export, model_name, archive_format)
    if os.path.lexists(target):
        if not force:
            raise ArchiverError(
                f"{target} already exists.\n"
                "Please specify --force/-f option to overwrite the model archive output file.\n"
                "See -h/--help for more details."
            )
        logger.warning("Overwriting %s ...", target)

    files = collect_files(
        handler=handler,
        runtime=runtime,
        serialized_file=serialized_file,
        model_file=model_file,
        extra_files=extra_files,
        requirements_file=requirements_file,
        config_file=config_file,
    )
    text = manifest.to_json().decode("ascii")
    if archive_format == "no-archive":
        _write_directory(target, export, model_name, files, text)
    elif archive_format == "tgz":
        _write_atomically(
            target, export, model_name, lambda out: _write_tgz(out, target, model_name, files, text)
        )
    else:
        method = zipfile.ZIP_STORED if archive_format == "zip-store" else zipfile.ZIP_DEFLATED
        _write_atomically(target, export, model_name, lambda out: _write_zip(out, method, files, text))
    logger.info("Successfully exported model %s to file %s", model_name, export)
    return Path(target)


def collect_files(
    *,
    handler: str,
    runtime: str = "python",
    serialized_file: PathArg | None = None,
    model_file: PathArg | None = None,
    extra_files: str | None = None,
    requirements_file: PathArg | None = None,
    config_file: PathArg | None = None,
) -> dict[str, str]:
    """Map each archive member name to the file it is read from (later inputs win a name clash,
    as later copies overwrite earlier ones in torch-model-archiver's staging directory)."""
    files: dict[str, str] = {}
    for path in (model_file, serialized_file):
        if path:
            _add_file(files, os.fspath(path))
    handler_file = handler_source(handler, runtime)
    if handler_file:
        _add_file(files, handler_file)
    for item in (extra_files or "").split(","):
        if item.strip():
            _add_extra(files, item.strip())
    for path in (requirements_file, config_file):
        if path:
            _add_file(files, os.fspath(path))
    files.pop(MANIFEST_PATH, None)  # the generated manifest always wins
    return files


def handler_source(handler: str, runtime: str = "python") -> str | None:
    """The file ``--handler`` makes the archiver copy, or ``None`` for a built-in handler.

    >>> handler_source("src/my_handler:handle"), handler_source("h.py"), handler_source("image_classifier")
    ('src/my_handler.py', 'h.py', None)
    """
    if runtime == "LSP":
        if handler in _LSP_BUILTIN_HANDLERS:
            return None
        module = handler.split(":", maxsplit=1)[0]
        platform: str = sys.platform
        if platform.startswith("linux"):
            return module + ".so"
        return module + ".dylib" if platform.startswith("darwin") else handler
    if handler in BUILTIN_HANDLERS:
        return None
    return handler if ".py" in handler else handler.split(":", maxsplit=1)[0] + ".py"


def _add_file(files: dict[str, str], path: str) -> None:
    if not os.path.exists(path):
        raise ArchiverError(f"File does not exist: {path}")
    if not os.path.isfile(path):
        raise ArchiverError(f"Not a regular file: {path}")
    files[os.path.basename(path)] = path


def _add_extra(files: dict[str, str], item: str) -> None:
    wildcard = "*" in item or "?" in item or ("[" in item and "]" in item)
    if not wildcard and not os.path.exists(item):
        raise ArchiverError(f"File does not exist: {item}")
    matches = sorted(glob.glob(item))
    if wildcard and not matches:
        logger.warning("Given wildcard pattern did not match any file: %s", item)
    for match in matches:
        if os.path.isfile(match):
            files[os.path.basename(match)] = match
        elif os.path.isdir(match):
            _add_directory_content(files, match)
        else:
            raise ArchiverError(f"Invalid extra file given {match}")


def _add_directory_content(files: dict[str, str], directory: str) -> None:
    for root, dirs, names in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if d not in _SKIPPED_DIRS and not d.startswith("."))
        relative = os.path.relpath(root, directory)
        for name in sorted(names):
            source = os.path.join(root, name)
            if os.path.isfile(source):
                files[name if relative == "." else f"{relative.replace(os.sep, '/')}/{name}"] = source


def _write_atomically(target: str, export: str, model_name: str, write: Callable[[IO[bytes]], None]) -> None:
    # A fresh hidden name next to the target, created with the caller's umask, renamed at the end.
    temporary = os.path.join(export, f".{model_name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    try:
        with open(fd, "wb") as out:
            write(out)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _write_zip(out: IO[bytes], method: int, files: dict[str, str], manifest_text: str) -> None:
    with zipfile.ZipFile(out, "w", method, strict_timestamps=False) as zf:
        for arcname in sorted(files):
            zf.write(files[arcname], arcname)
        zf.writestr(MANIFEST_PATH, manifest_text)


def _write_tgz(
    out: IO[bytes], target: str, model_name: str, files: dict[str, str], manifest_text: str
) -> None:
    # The gzip header names the final file (as tarfile.open(target) would), not the temporary one.
    with (
        gzip.GzipFile(filename=os.path.basename(target), mode="wb", fileobj=out) as gz,
        tarfile.open(fileobj=gz, mode="w") as tf,
    ):
        for arcname in sorted(files):
            with open(files[arcname], "rb") as fh:
                # From the open file, so a symlinked input is stored as its content.
                info = tf.gettarinfo(arcname=f"{model_name}/{arcname}", fileobj=fh)
                tf.addfile(info, fh)
        data = manifest_text.encode("ascii")
        info = tarfile.TarInfo(f"{model_name}/{MANIFEST_PATH}")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))


def _write_directory(
    target: str, export: str, model_name: str, files: dict[str, str], manifest_text: str
) -> None:
    temporary = os.path.join(export, f".{model_name}.{secrets.token_hex(8)}.tmp")
    os.mkdir(temporary, 0o777)
    try:
        for arcname, source in files.items():
            destination = os.path.join(temporary, *arcname.split("/"))
            os.makedirs(os.path.dirname(destination), exist_ok=True)
            shutil.copy(source, destination)
        os.makedirs(os.path.join(temporary, "MAR-INF"), exist_ok=True)
        with open(os.path.join(temporary, *MANIFEST_PATH.split("/")), "w", encoding="ascii") as fh:
            fh.write(manifest_text)
        if os.path.isdir(target) and not os.path.islink(target):
            shutil.rmtree(target)
        elif os.path.lexists(target):
            os.unlink(target)
        os.rename(temporary, target)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
