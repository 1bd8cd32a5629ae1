"""Safe extraction of model archives into fresh private directories.

Theory of operation
-------------------
An archive is hostile until proven otherwise (SECURITY.md rows A1–A8, D5). Extraction

1. creates a **fresh** ``0700`` directory under ``dest_parent`` (:func:`tempfile.mkdtemp`);
   nothing is ever written anywhere else, and on any failure that directory is removed;
2. checks every member **before writing anything** (zip) or before writing that member (tar,
   which is a stream): names (zip-slip family: ``..``, absolute paths, backslashes, drive
   letters, empty or ``.`` components, control characters), depth and length caps, the member
   *type* (regular files and directories only — no symlink, hard link, device, FIFO — and no
   setuid/setgid bits, whether the type comes from zip mode bits or a tar header), entry count
   (for zips read from the end record, before the central directory is parsed) and, for zips,
   that no two entries share bytes (CVE-2024-0450 "overlap" bombs);
3. streams each member to disk in 1 MiB chunks, counting the bytes **actually written**
   against the total cap and the compression-ratio caps — sizes in headers are never trusted;
4. opens every output with ``O_EXCL | O_NOFOLLOW`` and checks the real path of each new
   directory stays inside the fresh root.

File permissions from the archive are never applied: files are created ``0600`` and
directories ``0700`` inside a ``0700`` root (TorchServe's Java unzip ignores them too).

Formats: a zip (``.mar``, deflated or stored), a gzip-compressed tar (TorchServe drops each
member's first path component, since torch-model-archiver's tgz holds one ``<name>/`` directory)
or a directory (torch-model-archiver's ``no-archive`` output), whose regular files are copied
so the server owns — and can always delete — every model directory. Like TorchServe, a source
directory holding nothing but one subdirectory is served from that subdirectory.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import struct
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from emberserve.errors import ArchiveError, InsufficientStorageError

_CHUNK = 1 << 20
# Bytes always allowed on top of a ratio cap, so tiny members never trip it.
_RATIO_SLACK = 64 << 10
_DRIVE_LETTER = re.compile(r"^[A-Za-z]:")
_MAX_COMPONENT_BYTES = 255  # NAME_MAX on Linux
_ABSOLUTE_PATH_IN_TEXT = re.compile(r"(^|[\s'\"(=])/[^\s/]")


@dataclass(frozen=True)
class ArchiveLimits:
    """Caps applied while extracting and reading one archive.

    ``max_ratio`` bounds uncompressed/compressed size per zip entry and for the archive as a
    whole (deflate cannot exceed ~1032:1, so a legitimate archive never reaches 2000:1).
    """

    max_entries: int = 10_000
    max_total_bytes: int = 4 << 30
    max_ratio: int = 2000
    max_depth: int = 32
    max_name_length: int = 1024
    max_manifest_bytes: int = 1 << 20
    max_model_config_bytes: int = 1 << 20


# What zipfile, tarfile and zlib raise for corrupt input (RecursionError, UnicodeError and
# NotImplementedError are subclasses of the RuntimeError and ValueError listed).
_LIBRARY_FAILURES = (
    zipfile.BadZipFile,
    tarfile.TarError,
    zlib.error,
    EOFError,
    ValueError,
    RuntimeError,
    struct.error,
)


class UnrecognizedArchiveError(ArchiveError):
    """The source is neither a zip, a gzip-compressed tar nor a directory."""


def extract_archive(source: Path, dest_parent: Path, limits: ArchiveLimits) -> Path:
    """Extract ``source`` into a fresh private directory under ``dest_parent`` and return it.

    Every failure raises :class:`ArchiveError` (HTTP 400) after removing that directory.

        >>> extract_archive(Path("noop.mar"), Path("/tmp/models"), ArchiveLimits())  # doctest: +SKIP
        PosixPath('/tmp/models/model-3k2j1x0a')
    """
    dest_parent.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="model-", dir=dest_parent))
    try:
        _extract_into(source, root, limits)
    except BaseException as exc:
        shutil.rmtree(root, ignore_errors=True)
        if isinstance(exc, OSError):
            full = InsufficientStorageError.from_os_error(exc, "extracting the model archive")
            if full is not None:
                raise full from exc
            # strerror only: the exception text would carry absolute paths (SECURITY.md D12).
            raise ArchiveError(f"Invalid model archive: {exc.strerror or type(exc).__name__}") from exc
        if isinstance(exc, _LIBRARY_FAILURES):
            raise ArchiveError(f"Invalid model archive: {_describe(exc)}") from exc
        raise
    return root


def member_parts(name: str, limits: ArchiveLimits) -> tuple[str, ...]:
    """Check one archive member name and return its path components.

    A trailing ``/`` (a directory entry) is allowed; nothing else that could leave the
    extraction root, be read differently on another OS, or exceed the caps is.

        >>> member_parts("sub/model.pt", ArchiveLimits())
        ('sub', 'model.pt')
        >>> member_parts("../../pwned.py", ArchiveLimits())
        Traceback (most recent call last):
        ...
        emberserve.errors.ArchiveError: Invalid model archive: member '../../pwned.py' has a '..' component.
    """
    problem = _name_problem(name, limits)
    if problem is None:
        parts = tuple((name[:-1] if name.endswith("/") else name).split("/"))
        problem = _parts_problem(parts, limits)
        if problem is None:
            return parts
    raise ArchiveError(f"Invalid model archive: member {_shown(name)} {problem}.")


def contained_path(root: Path, relative: str) -> Path:
    """The real path of ``root/relative``, which must lie strictly inside ``root``.

    Refuses absolute paths, drive letters, backslashes, NUL and ``..`` components, then resolves
    symlinks and checks containment again, so a link inside ``root`` cannot lead out of it.

        >>> contained_path(Path("/tmp"), "../etc/passwd")
        Traceback (most recent call last):
        ...
        emberserve.errors.ArchiveError: Path '../etc/passwd' is not inside the model directory.
    """
    refused = ArchiveError(f"Path {_shown(relative)} is not inside the model directory.")
    if (
        not relative
        or "\x00" in relative
        or "\\" in relative
        or relative.startswith("/")
        or _DRIVE_LETTER.match(relative)
    ):
        raise refused
    parts = [part for part in relative.split("/") if part not in ("", ".")]
    if not parts or ".." in parts:
        raise refused
    root_real = os.path.realpath(root)
    try:
        candidate = os.path.realpath(os.path.join(root_real, *parts))
    except (OSError, ValueError) as exc:  # e.g. a symlink loop
        raise refused from exc
    if candidate == root_real or os.path.commonpath([root_real, candidate]) != root_real:
        raise refused
    return Path(candidate)


# -- dispatch ------------------------------------------------------------------------------------


def _extract_into(source: Path, root: Path, limits: ArchiveLimits) -> None:
    if source.is_dir():
        _copy_directory(source, root, limits)
        return
    if not source.is_file():
        raise ArchiveError("Invalid model archive: not a regular file or directory.")
    with open(source, "rb") as fh:
        magic = fh.read(4)
    if magic in (b"PK\x03\x04", b"PK\x05\x06"):
        _extract_zip(source, root, limits)
    elif magic[:2] == b"\x1f\x8b":
        _extract_tar_gz(source, root, limits)
    else:
        raise UnrecognizedArchiveError("Invalid model archive: not a zip (.mar), tar.gz or directory.")


class _Budget:
    """Counts entries and written bytes against the archive-wide caps."""

    def __init__(self, limits: ArchiveLimits, archive_size: int | None) -> None:
        self.limits = limits
        self._ratio_cap = None if archive_size is None else limits.max_ratio * archive_size + _RATIO_SLACK
        self.entries = 0
        self.written = 0

    def entry(self) -> None:
        self.entries += 1
        if self.entries > self.limits.max_entries:
            raise ArchiveError(f"Invalid model archive: more than {self.limits.max_entries} entries.")

    def add(self, count: int) -> None:
        self.written += count
        if self.written > self.limits.max_total_bytes:
            raise ArchiveError(
                f"Invalid model archive: expands to more than {self.limits.max_total_bytes} bytes."
            )
        if self._ratio_cap is not None and self.written > self._ratio_cap:
            raise ArchiveError(
                f"Invalid model archive: expands more than {self.limits.max_ratio} times its size."
            )


class _Writer:
    """Creates directories and files strictly under one root, never through a symlink."""

    def __init__(self, root: Path, budget: _Budget) -> None:
        self._root = os.path.realpath(root)
        self._budget = budget
        self._dirs: set[tuple[str, ...]] = {()}

    def directory(self, parts: tuple[str, ...]) -> str:
        for depth in range(1, len(parts) + 1):
            prefix = parts[:depth]
            if prefix in self._dirs:
                continue
            path = os.path.join(self._root, *prefix)
            try:
                os.mkdir(path, 0o700)
            except FileExistsError:
                if not stat.S_ISDIR(os.lstat(path).st_mode):
                    raise ArchiveError(
                        f"Invalid model archive: {_shown('/'.join(prefix))} is both a file and a directory."
                    ) from None
            real = os.path.realpath(path)
            if os.path.commonpath([self._root, real]) != self._root:  # defence in depth
                raise ArchiveError(
                    f"Invalid model archive: {_shown('/'.join(prefix))} leaves the model directory."
                )
            self._dirs.add(prefix)
        return os.path.join(self._root, *parts)

    def file(self, parts: tuple[str, ...], read: Callable[[int], bytes], entry_cap: int | None) -> None:
        path = os.path.join(self.directory(parts[:-1]), parts[-1])
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(path, flags, 0o600)
        except (FileExistsError, IsADirectoryError):
            raise ArchiveError(f"Invalid model archive: {_shown('/'.join(parts))} appears twice.") from None
        with open(fd, "wb") as out:  # buffered: a raw write may be partial
            written = 0
            while chunk := read(_CHUNK):
                written += len(chunk)
                if entry_cap is not None and written > entry_cap:
                    raise ArchiveError(
                        f"Invalid model archive: member {_shown('/'.join(parts))} expands more than "
                        f"{self._budget.limits.max_ratio} times its compressed size."
                    )
                self._budget.add(len(chunk))
                out.write(chunk)


# -- zip -------------------------------------------------------------------------------------------

_EOCD = struct.Struct("<4s4H2LH")
_EOCD64_LOCATOR = struct.Struct("<4sLQL")
_EOCD64 = struct.Struct("<4sQ2H2L4Q")
_LOCAL_HEADER = struct.Struct("<4s5H3L2H")
_ZIP_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)


def _extract_zip(source: Path, root: Path, limits: ArchiveLimits) -> None:
    size = source.stat().st_size
    with open(source, "rb") as fh:
        # Refuse too many entries before zipfile parses (and holds) the whole central directory.
        if _zip_entry_estimate(fh, size) > limits.max_entries:
            raise ArchiveError(f"Invalid model archive: more than {limits.max_entries} entries.")
        with zipfile.ZipFile(fh) as zf:
            infos = zf.infolist()
            budget = _Budget(limits, size)
            plan = [(info, *_zip_member(info, limits)) for info in infos]
            for _ in plan:
                budget.entry()
            _check_zip_names_unique(plan)
            if _declared_size(infos) > limits.max_total_bytes:
                raise ArchiveError(
                    f"Invalid model archive: expands to more than {limits.max_total_bytes} bytes."
                )
            _check_no_overlap(fh, infos, zf.start_dir)
            writer = _Writer(root, budget)
            for info, parts, is_dir in plan:
                if is_dir:
                    writer.directory(parts)
                    continue
                with zf.open(info) as member:
                    writer.file(parts, member.read, limits.max_ratio * info.compress_size + _RATIO_SLACK)


def _zip_member(info: zipfile.ZipInfo, limits: ArchiveLimits) -> tuple[tuple[str, ...], bool]:
    name = info.orig_filename
    parts = member_parts(name, limits)
    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode)
    is_dir = name.endswith("/")
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR) or (kind == stat.S_IFDIR and not is_dir):
        raise ArchiveError(
            f"Invalid model archive: member {_shown(name)} is a {_file_kind(mode)}, "
            "only regular files and directories are allowed."
        )
    if mode & (stat.S_ISUID | stat.S_ISGID):
        raise ArchiveError(f"Invalid model archive: member {_shown(name)} has setuid/setgid bits.")
    if info.flag_bits & 0x1:
        raise ArchiveError(f"Invalid model archive: member {_shown(name)} is encrypted.")
    if info.compress_type not in _ZIP_METHODS:
        raise ArchiveError(
            f"Invalid model archive: member {_shown(name)} uses an unsupported compression method."
        )
    if is_dir and info.file_size:
        raise ArchiveError(f"Invalid model archive: directory member {_shown(name)} has content.")
    return parts, is_dir


def _declared_size(infos: list[zipfile.ZipInfo]) -> int:
    """What the central directory claims: a quick early refusal, never the only check."""
    return sum(info.file_size for info in infos)


def _check_zip_names_unique(plan: list[tuple[zipfile.ZipInfo, tuple[str, ...], bool]]) -> None:
    seen: set[tuple[str, ...]] = set()
    for info, parts, is_dir in plan:
        if is_dir:
            continue
        if parts in seen:
            raise ArchiveError(f"Invalid model archive: member {_shown(info.orig_filename)} appears twice.")
        seen.add(parts)


def _zip_entry_estimate(fh: IO[bytes], size: int) -> int:
    """An upper estimate of the entry count: the end record's count and the number of
    central-header signatures, whichever is larger (so a lying end record does not help)."""
    tail_len = min(size, _EOCD.size + 0xFFFF)
    fh.seek(size - tail_len)
    tail = fh.read(tail_len)
    pos = len(tail) - _EOCD.size if tail[-_EOCD.size :][:4] == b"PK\x05\x06" else tail.rfind(b"PK\x05\x06")
    if pos < 0 or pos + _EOCD.size > len(tail):
        raise ArchiveError("Invalid model archive: not a zip file (no end of central directory).")
    _, _, _, _, count, cd_size, _, _ = _EOCD.unpack_from(tail, pos)
    eocd_at = size - tail_len + pos
    if (count == 0xFFFF or cd_size == 0xFFFFFFFF) and eocd_at >= _EOCD64_LOCATOR.size:
        fh.seek(eocd_at - _EOCD64_LOCATOR.size)
        locator = fh.read(_EOCD64_LOCATOR.size)
        if locator[:4] == b"PK\x06\x07":
            fh.seek(_EOCD64_LOCATOR.unpack(locator)[2])
            record = fh.read(_EOCD64.size)
            if len(record) == _EOCD64.size and record[:4] == b"PK\x06\x06":
                fields = _EOCD64.unpack(record)
                count, cd_size = int(fields[7]), int(fields[8])
    # zipfile reads the central directory just before the end record(s): count signatures there.
    start = max(0, eocd_at - min(cd_size, size) - _EOCD64.size - _EOCD64_LOCATOR.size)
    fh.seek(start)
    signatures, carry, remaining = 0, b"", eocd_at - start
    while remaining > 0:
        block = fh.read(min(_CHUNK, remaining))
        if not block:
            break
        remaining -= len(block)
        window = carry + block
        signatures += window.count(b"PK\x01\x02")
        carry = block[-3:]
    return max(int(count), signatures)


def _check_no_overlap(fh: IO[bytes], infos: list[zipfile.ZipInfo], central_dir_at: int) -> None:
    """Every entry's header and data must lie before the next entry and before the central
    directory: overlapping entries are how "quoted overlap" bombs reuse the same bytes."""
    end_of_previous = 0
    for info in sorted(infos, key=lambda i: i.header_offset):
        if info.header_offset < end_of_previous:
            raise ArchiveError(
                f"Invalid model archive: member {_shown(info.orig_filename)} overlaps another entry."
            )
        fh.seek(info.header_offset)
        header = fh.read(_LOCAL_HEADER.size)
        if len(header) < _LOCAL_HEADER.size or header[:4] != b"PK\x03\x04":
            raise ArchiveError(f"Invalid model archive: bad local header for {_shown(info.orig_filename)}.")
        name_len, extra_len = _LOCAL_HEADER.unpack(header)[9:11]
        end = info.header_offset + _LOCAL_HEADER.size + name_len + extra_len + info.compress_size
        if end > central_dir_at:
            raise ArchiveError(
                f"Invalid model archive: member {_shown(info.orig_filename)} overlaps the central directory."
            )
        end_of_previous = end


# -- tar.gz ----------------------------------------------------------------------------------------

_EXTENSION_TYPES = (
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
)
_TAR_KINDS = {
    tarfile.SYMTYPE: "symbolic link",
    tarfile.LNKTYPE: "hard link",
    tarfile.CHRTYPE: "character device",
    tarfile.BLKTYPE: "block device",
    tarfile.FIFOTYPE: "FIFO",
    tarfile.CONTTYPE: "contiguous file",
    tarfile.GNUTYPE_SPARSE: "sparse file",
}


def _bounded_tarinfo(limits: ArchiveLimits) -> type[tarfile.TarInfo]:
    """A TarInfo class that refuses oversized pax/GNU long-name headers and sparse members
    *before* tarfile reads them into memory (a gzip bomb hidden in a header)."""
    cap = max(64 << 10, 4 * limits.max_name_length)

    class BoundedTarInfo(tarfile.TarInfo):
        def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
            if self.type == tarfile.GNUTYPE_SPARSE:
                raise ArchiveError(f"Invalid model archive: member {_shown(self.name)} is a sparse file.")
            if self.type in _EXTENSION_TYPES and self.size > cap:
                raise ArchiveError(
                    f"Invalid model archive: a tar extension header is larger than {cap} bytes."
                )
            process: Callable[[tarfile.TarFile], tarfile.TarInfo] = getattr(super(), "_proc_member")  # noqa: B009
            return process(tarfile_)

    return BoundedTarInfo


def _extract_tar_gz(source: Path, root: Path, limits: ArchiveLimits) -> None:
    budget = _Budget(limits, source.stat().st_size)
    writer = _Writer(root, budget)
    seen: set[tuple[str, ...]] = set()
    # Stream mode: members are read once, in order, with no random access into the archive.
    with tarfile.open(source, mode="r|gz", tarinfo=_bounded_tarinfo(limits)) as tf:
        for member in _tar_members(tf, budget):
            kind = _TAR_KINDS.get(member.type)
            if kind is None and member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.DIRTYPE):
                kind = f"member of type {member.type!r}"
            if kind is not None:
                raise ArchiveError(
                    f"Invalid model archive: member {_shown(member.name)} is a {kind}, "
                    "only regular files and directories are allowed."
                )
            if member.mode & (stat.S_ISUID | stat.S_ISGID):
                raise ArchiveError(
                    f"Invalid model archive: member {_shown(member.name)} has setuid/setgid bits."
                )
            parts = _tar_parts(member, limits)
            if parts is None:
                continue
            if member.isdir():
                writer.directory(parts)
                continue
            if parts in seen:
                raise ArchiveError(f"Invalid model archive: member {_shown(member.name)} appears twice.")
            seen.add(parts)
            if budget.written + member.size > limits.max_total_bytes:
                raise ArchiveError(
                    f"Invalid model archive: expands to more than {limits.max_total_bytes} bytes."
                )
            data = tf.extractfile(member)
            if data is None:  # pragma: no cover - regular members always have data
                raise ArchiveError(f"Invalid model archive: member {_shown(member.name)} has no data.")
            with data:
                writer.file(parts, data.read, None)


def _tar_members(tf: tarfile.TarFile, budget: _Budget) -> Iterator[tarfile.TarInfo]:
    while (member := tf.next()) is not None:
        budget.entry()  # tarfile keeps each member's header: this cap also bounds that memory
        yield member


def _tar_parts(member: tarfile.TarInfo, limits: ArchiveLimits) -> tuple[str, ...] | None:
    """Path components of a tar member after dropping its first one, as TorchServe does.

    ``None`` for the archive's own top-level directory (``.``, ``name/``), which maps to the root.
    """
    name = member.name
    leading_dot = name.startswith("./")
    rest = name[2:] if leading_dot else name
    if rest in ("", "."):
        return None
    parts = member_parts(rest, limits)
    if leading_dot:
        parts = (".", *parts)
        if len(parts) > limits.max_depth:
            raise ArchiveError(f"Invalid model archive: member {_shown(name)} is nested too deeply.")
    if len(parts) == 1:
        # A top-level directory is the archive's root; a top-level file stays where it is
        # (TorchServe strips nothing from a name without "/").
        return None if member.isdir() or parts[0] == "." else parts
    return parts[1:]


# -- directory ---------------------------------------------------------------------------------------


def _copy_directory(source: Path, root: Path, limits: ArchiveLimits) -> None:
    base = os.path.realpath(source)
    with os.scandir(base) as scan:
        top = list(scan)
    if len(top) == 1 and top[0].is_dir(follow_symlinks=False) and top[0].name != "MAR-INF":
        base = os.path.realpath(top[0].path)
    budget = _Budget(limits, None)
    writer = _Writer(root, budget)
    pending: list[tuple[str, tuple[str, ...]]] = [(base, ())]
    while pending:
        directory, prefix = pending.pop()
        with os.scandir(directory) as scan:
            entries = list(scan)
        for entry in entries:
            budget.entry()
            parts = (*prefix, entry.name)
            relative = "/".join(parts)
            problem = _name_problem(relative, limits) or _parts_problem(parts, limits)
            if problem is not None:
                raise ArchiveError(f"Invalid model directory: {_shown(relative)} {problem}.")
            mode = entry.stat(follow_symlinks=False).st_mode
            path = entry.path
            if stat.S_ISLNK(mode):
                path = os.path.realpath(entry.path)
                if os.path.commonpath([base, path]) != base:
                    raise ArchiveError(
                        f"Invalid model directory: symlink {_shown(relative)} leads outside it."
                    )
                mode = os.stat(path).st_mode
                if not stat.S_ISREG(mode):
                    raise ArchiveError(
                        f"Invalid model directory: symlink {_shown(relative)} must point to a regular file."
                    )
            if stat.S_ISDIR(mode):
                writer.directory(parts)
                pending.append((path, parts))
            elif stat.S_ISREG(mode):
                _copy_regular_file(path, parts, writer, relative)
            else:
                raise ArchiveError(
                    f"Invalid model directory: {_shown(relative)} is a {_file_kind(mode)}, "
                    "only regular files and directories are allowed."
                )


def _copy_regular_file(path: str, parts: tuple[str, ...], writer: _Writer, relative: str) -> None:
    # O_NONBLOCK: should the file be swapped for a FIFO after the check, open must not hang.
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with open(fd, "rb", buffering=0) as src:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ArchiveError(f"Invalid model directory: {_shown(relative)} is not a regular file.")
        writer.file(parts, _reader(src), None)


def _reader(src: IO[bytes]) -> Callable[[int], bytes]:
    def read(size: int) -> bytes:
        return src.read(size) or b""

    return read


# -- shared helpers -----------------------------------------------------------------------------------


def _name_problem(name: str, limits: ArchiveLimits) -> str | None:
    if not name:
        return "has an empty name"
    if len(name) > limits.max_name_length:
        return f"has a name longer than {limits.max_name_length} characters"
    if "\\" in name:
        return "contains a backslash"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        return "contains a control character"
    if name.startswith("/") or _DRIVE_LETTER.match(name):
        return "is an absolute path"
    return None


def _parts_problem(parts: tuple[str, ...], limits: ArchiveLimits) -> str | None:
    for part in parts:
        if part == "..":
            return "has a '..' component"
        if part in ("", "."):
            return "has an empty or '.' component"
        if len(os.fsencode(part)) > _MAX_COMPONENT_BYTES:
            return f"has a path component longer than {_MAX_COMPONENT_BYTES} bytes"
    if len(parts) > limits.max_depth:
        return f"is nested deeper than {limits.max_depth} levels"
    return None


def _file_kind(mode: int) -> str:
    kinds: list[tuple[Callable[[int], bool], str]] = [
        (stat.S_ISLNK, "symbolic link"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISDIR, "directory"),
    ]
    return next((label for check, label in kinds if check(mode)), "special file")


def _shown(name: str, limit: int = 80) -> str:
    return repr(name if len(name) <= limit else name[:limit] + "…")


def _describe(exc: BaseException) -> str:
    text = str(exc)
    # Library messages may quote absolute paths; error bodies must not (SECURITY.md D12).
    if not text or len(text) > 200 or _ABSOLUTE_PATH_IN_TEXT.search(text):
        return type(exc).__name__
    return text
