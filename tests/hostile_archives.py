"""Factories for malicious model archives (SECURITY.md rows A1–A13), shared by unit and server tests.

Every factory writes one archive to ``path`` and returns ``path``. Archives that should fail
only because of the one hostile thing they carry also hold a valid MANIFEST.json and handler,
so a test failing for another reason would show. Bombs are written in chunks: no factory ever
holds the expanded content in memory.

    mar = zip_slip(tmp_path / "slip.mar", "../../pwned.py")
    mar = zip_bomb(tmp_path / "bomb.mar", 64 << 20)
    mar = tar_gz_with_member(tmp_path / "link.tar.gz", "symlink")
"""

from __future__ import annotations

import io
import json
import stat
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

MANIFEST = "MAR-INF/MANIFEST.json"
HANDLER_SOURCE = b"def handle(data, context):\n    return data\n"
_CHUNK = 1 << 20


def manifest_bytes(name: str = "hostile", handler: str = "handler.py", **model: Any) -> bytes:
    """A valid MANIFEST.json (extra ``model`` keys as given, e.g. ``configFile="cfg.yaml"``)."""
    doc = {
        "createdOn": "01/01/2026 00:00:00",
        "runtime": "python",
        "model": {"modelName": name, "handler": handler, "modelVersion": "1.0", **model},
        "archiverVersion": "0.12.0",
    }
    return json.dumps(doc, indent=2).encode()


def mar(
    path: Path,
    files: Mapping[str, bytes] | None = None,
    manifest: bytes | None = None,
    *,
    with_manifest: bool = True,
    compression: int = zipfile.ZIP_DEFLATED,
) -> Path:
    """A zip model archive holding ``files``, a handler and (unless told otherwise) a manifest."""
    with zipfile.ZipFile(path, "w", compression) as zf:
        zf.writestr("handler.py", HANDLER_SOURCE)
        for name, data in (files or {}).items():
            zf.writestr(name, data)
        if with_manifest:
            zf.writestr(MANIFEST, manifest if manifest is not None else manifest_bytes())
    return path


def zip_with_entries(path: Path, entries: Iterable[tuple[str | zipfile.ZipInfo, bytes]]) -> Path:
    """A valid archive plus raw entries, names written exactly as given (``ZipInfo`` keeps them)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("handler.py", HANDLER_SOURCE)
        zf.writestr(MANIFEST, manifest_bytes())
        for name, data in entries:
            info = name if isinstance(name, zipfile.ZipInfo) else zipfile.ZipInfo(name)
            zf.writestr(info, data)
    return path


def zip_slip(path: Path, name: str, data: bytes = b"pwned = True\n") -> Path:
    """A1/A2: one entry whose name tries to leave the extraction directory."""
    return zip_with_entries(path, [(name, data)])


def zip_special_member(path: Path, mode: int, name: str = "special", data: bytes = b"") -> Path:
    """A4: an entry whose Unix mode bits (``external_attr``) say e.g. symlink, device or setuid."""
    info = zipfile.ZipInfo(name)
    info.create_system = 3  # Unix
    info.external_attr = mode << 16
    return zip_with_entries(path, [(info, data)])


def zip_symlink_then_through(path: Path, target: str = "..", link: str = "link") -> Path:
    """A4: a symlink entry ``link -> target`` followed by an entry written "through" it."""
    info = zipfile.ZipInfo(link)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return zip_with_entries(path, [(info, target.encode()), (f"{link}/pwned.py", b"pwned = True\n")])


#: A5: tar member kinds :func:`tar_gz_with_member` can write.
TAR_MEMBER_KINDS = (
    "symlink",
    "hardlink",
    "chardev",
    "blockdev",
    "fifo",
    "contiguous",
    "setuid",
    "setgid",
    "dotdot",
    "absolute",
    "huge_pax_header",
)


def tar_gz_with_member(path: Path, kind: str, top: str = "model") -> Path:
    """A5: a tgz model (``<top>/...`` as torch-model-archiver writes it) plus one hostile member."""
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tf:
        _tar_add(tf, f"{top}/handler.py", HANDLER_SOURCE)
        _tar_add(tf, f"{top}/{MANIFEST}", manifest_bytes())
        info = tarfile.TarInfo(f"{top}/evil")
        data = b""
        if kind == "symlink":
            info.type, info.linkname = tarfile.SYMTYPE, "../../../etc/passwd"
        elif kind == "hardlink":
            info.type, info.linkname = tarfile.LNKTYPE, f"{top}/handler.py"
        elif kind == "chardev":
            info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
        elif kind == "blockdev":
            info.type, info.devmajor, info.devminor = tarfile.BLKTYPE, 7, 0
        elif kind == "fifo":
            info.type = tarfile.FIFOTYPE
        elif kind == "contiguous":
            info.type, data = tarfile.CONTTYPE, b"data"
        elif kind in ("setuid", "setgid"):
            info.mode = 0o755 | (stat.S_ISUID if kind == "setuid" else stat.S_ISGID)
            data = b"#!/bin/sh\n"
        elif kind == "dotdot":
            info.name, data = f"{top}/../../pwned.py", b"pwned = True\n"
        elif kind == "absolute":
            info.name, data = "/tmp/pwned-by-tar.py", b"pwned = True\n"
        elif kind == "huge_pax_header":
            info.pax_headers = {"comment": "x" * (1 << 20)}
            data = b"ok"
        else:
            raise ValueError(f"unknown tar member kind {kind!r}")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data) if data else None)
    return path


def tar_gz_model(path: Path, files: Mapping[str, bytes], top: str | None = "model") -> Path:
    """A plain tgz model: ``files`` (names relative to the model root) under ``top/`` (or at the root)."""
    with tarfile.open(path, "w:gz") as tf:
        for name, data in files.items():
            _tar_add(tf, f"{top}/{name}" if top else name, data)
    return path


def _tar_add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tf.addfile(info, io.BytesIO(data))


class _Zeros(io.RawIOBase):
    """A readable stream of ``size`` zero bytes that never holds more than one chunk."""

    def __init__(self, size: int) -> None:
        self._left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        count = min(len(buffer), self._left, _CHUNK)
        buffer[:count] = bytes(count)
        self._left -= count
        return count


def zip_bomb(path: Path, expanded: int, name: str = "weights.bin") -> Path:
    """A6: a small .mar whose one member inflates to ``expanded`` zero bytes (written in chunks)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("handler.py", HANDLER_SOURCE)
        zf.writestr(MANIFEST, manifest_bytes())
        with zf.open(name, "w", force_zip64=expanded >= 0xFFFFFFFF) as out:
            left, chunk = expanded, bytes(_CHUNK)
            while left > 0:
                out.write(chunk[: min(left, _CHUNK)])
                left -= _CHUNK
    return path


def tar_gz_bomb(path: Path, expanded: int) -> Path:
    """A6: a small tgz whose one member expands to ``expanded`` zero bytes (streamed)."""
    with tarfile.open(path, "w:gz") as tf:
        _tar_add(tf, f"model/{MANIFEST}", manifest_bytes())
        info = tarfile.TarInfo("model/weights.bin")
        info.size = expanded
        tf.addfile(info, io.BufferedReader(_Zeros(expanded)))
    return path


# -- hand-crafted zips (A7) ----------------------------------------------------------------------

_LOCAL = struct.Struct("<4s5H3L2H")
_CENTRAL = struct.Struct("<4s6H3L5H2L")
_END = struct.Struct("<4s4H2LH")


def _deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()


def raw_zip(
    path: Path,
    local: list[tuple[bytes, bytes, int, int]],
    central: list[tuple[bytes, int, int, int, int, int]],
    flags: int = 0,
) -> Path:
    """Write a zip from raw parts: ``local`` = (name, payload, crc, declared size) records,
    ``central`` = (name, local index or -1 for an explicit offset, crc, compressed size,
    uncompressed size, explicit offset). Lets a test lie in any field."""
    out = bytearray()
    offsets = []
    for name, payload, crc, declared in local:
        offsets.append(len(out))
        out += _LOCAL.pack(b"PK\x03\x04", 20, flags, 8, 0, 0x21, crc, len(payload), declared, len(name), 0)
        out += name + payload
    cd_start = len(out)
    for name, index, crc, csize, usize, offset in central:
        where = offsets[index] if index >= 0 else offset
        out += _CENTRAL.pack(
            b"PK\x01\x02",
            0x314,
            20,
            flags,
            8,
            0,
            0x21,
            crc,
            csize,
            usize,
            len(name),
            0,
            0,
            0,
            0,
            (0o644 | stat.S_IFREG) << 16,
            where,
        )
        out += name
    out += _END.pack(b"PK\x05\x06", 0, 0, len(central), len(central), len(out) - cd_start, cd_start, 0)
    path.write_bytes(bytes(out))
    return path


def zip_overlapping(path: Path, copies: int = 50, expanded: int = 4 << 20) -> Path:
    """A7: ``copies`` central-directory entries that all point at one local entry's bytes."""
    data = bytes(expanded)
    payload, crc = _deflate(data), zlib.crc32(data)
    central = [(f"copy{i}.bin".encode(), 0, crc, len(payload), expanded, 0) for i in range(copies)]
    return raw_zip(path, [(b"copy0.bin", payload, crc, expanded)], central)


def zip_overlapping_inside(path: Path) -> Path:
    """A7: a second entry whose header offset points *inside* the first entry's data."""
    data = bytes(1 << 20)
    payload, crc = _deflate(data), zlib.crc32(data)
    inner = _LOCAL.size + len(b"a.bin") + len(payload) // 2
    central = [(b"a.bin", 0, crc, len(payload), len(data), 0), (b"b.bin", -1, crc, 10, 10, inner)]
    return raw_zip(path, [(b"a.bin", payload, crc, len(data))], central)


def zip_lying_size(path: Path, declared: int = 16, actual: int = 1 << 20) -> Path:
    """A7: an entry whose headers declare ``declared`` bytes while its data inflates to ``actual``."""
    data = bytes(actual)
    payload, crc = _deflate(data), zlib.crc32(data)
    return raw_zip(
        path,
        [(b"weights.bin", payload, crc, declared)],
        [(b"weights.bin", 0, crc, len(payload), declared, 0)],
    )


def zip_encrypted(path: Path) -> Path:
    """An entry flagged as encrypted (general purpose bit 0)."""
    data = b"secret"
    payload, crc = _deflate(data), zlib.crc32(data)
    return raw_zip(
        path,
        [(b"secret", payload, crc, len(data))],
        [(b"secret", 0, crc, len(payload), len(data), 0)],
        flags=0x1,
    )


# -- caps (A8) -------------------------------------------------------------------------------------


def zip_many_entries(path: Path, count: int) -> Path:
    """A8: ``count`` tiny entries (plus the manifest and handler)."""
    return zip_with_entries(path, ((f"f{i}", b"") for i in range(count)))


def zip_deep(path: Path, depth: int) -> Path:
    """A8: one file nested ``depth`` directories deep."""
    return zip_with_entries(path, [("d/" * depth + "x", b"x")])


def zip_long_name(path: Path, length: int) -> Path:
    """A8: one entry whose name is ``length`` characters long (in components of 200)."""
    parts, left = [], length
    while left > 0:
        parts.append("n" * min(200, left))
        left -= 201
    return zip_with_entries(path, [("/".join(parts)[:length].rstrip("/"), b"x")])


# -- manifest and model-config payloads (A10–A13) ----------------------------------------------------


def mar_with_big_manifest(path: Path, size: int) -> Path:
    """A10: a MANIFEST.json of ``size`` bytes (valid JSON, padded with spaces), written in chunks."""
    head = manifest_bytes()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("handler.py", HANDLER_SOURCE)
        with zf.open(MANIFEST, "w", force_zip64=size >= 0xFFFFFFFF) as out:
            out.write(head)
            left, chunk = size - len(head), b" " * _CHUNK
            while left > 0:
                out.write(chunk[: min(left, _CHUNK)])
                left -= _CHUNK
    return path


def deeply_nested_json(depth: int) -> bytes:
    """A10: ``{"model": [[[...]]]}`` nested ``depth`` levels."""
    return b'{"model": ' + b"[" * depth + b"]" * depth + b"}"


def mar_with_model_config(path: Path, yaml_text: bytes, name: str = "model-config.yaml") -> Path:
    """A11/A12: an archive whose manifest names ``name`` as its configFile."""
    return mar(path, {name: yaml_text}, manifest_bytes(configFile=name))


def yaml_python_tag(sentinel: Path) -> bytes:
    """A11: ShellTorch's YAML step in Python: would run ``touch sentinel`` under an unsafe loader."""
    return f'minWorkers: 1\npwn: !!python/object/apply:os.system ["touch {sentinel}"]\n'.encode()


def yaml_alias_bomb(levels: int = 9, fan_out: int = 9) -> bytes:
    """A12: "billion laughs": each level refers ``fan_out`` times to the previous one."""
    lines = ['a0: &a0 ["lol"]']
    for level in range(1, levels + 1):
        refs = ", ".join([f"*a{level - 1}"] * fan_out)
        lines.append(f"a{level}: &a{level} [{refs}]")
    return ("\n".join(lines) + "\n").encode()
