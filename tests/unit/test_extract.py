"""Safe extraction (emberserve.archive.extract) and open_model_archive against hostile archives.

Each SECURITY.md archive row has its test here. Every refusal must also leave nothing behind:
the fresh extraction directory is gone and nothing was written anywhere under the test's
temporary tree (checked by comparing a snapshot of that tree before and after).
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emberserve.archive import ArchiveLimits, check_handler, open_model_archive
from emberserve.archive import extract as extract_module
from emberserve.archive.extract import (
    UnrecognizedArchiveError,
    contained_path,
    extract_archive,
    member_parts,
)
from emberserve.errors import ArchiveError
from tests import hostile_archives as hostile

LIMITS = ArchiveLimits()


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """The extraction parent directory (exists, empty)."""
    path = tmp_path / "work"
    path.mkdir()
    return path


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def refused(tmp_path: Path, work: Path) -> Callable[..., ArchiveError]:
    """Call ``refused(source, limits=..., match=...)``: asserts extraction raises ArchiveError and
    that the temporary tree (sources included) is exactly as it was before."""

    def check(
        source: Path,
        limits: ArchiveLimits = LIMITS,
        match: str | None = None,
        opener: Callable[[Path, Path, ArchiveLimits], object] = extract_archive,
    ) -> ArchiveError:
        before = _tree(tmp_path)
        with pytest.raises(ArchiveError, match=match) as info:
            opener(source, work, limits)
        assert list(work.iterdir()) == [], "the fresh extraction directory was not removed"
        assert _tree(tmp_path) == before, "something was written outside the extraction directory"
        assert str(tmp_path) not in info.value.message, "error messages must not carry absolute paths"
        return info.value

    return check


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


# -- normal archives -----------------------------------------------------------------------------


@pytest.mark.parametrize("compression", [zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED])
def test_zip_extracts_into_a_fresh_private_directory(tmp_path: Path, work: Path, compression: int) -> None:
    source = hostile.mar(
        tmp_path / "m.mar", {"sub/dir/w.bin": b"\x00" * 1000, "a.txt": b"a"}, compression=compression
    )
    first = extract_archive(source, work, LIMITS)
    second = extract_archive(source, work, LIMITS)
    assert first != second
    assert first.parent == work
    assert second.parent == work
    assert stat.S_IMODE(first.stat().st_mode) == 0o700
    files = _files(first)
    assert files["sub/dir/w.bin"] == b"\x00" * 1000
    assert set(files) == {"handler.py", "a.txt", "sub/dir/w.bin", hostile.MANIFEST}
    for path in first.rglob("*"):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600)


def test_zip_directory_entries_and_missing_dest_parent(tmp_path: Path) -> None:
    source = hostile.zip_with_entries(tmp_path / "d.mar", [("empty/", b""), ("empty/inner/", b"")])
    root = extract_archive(source, tmp_path / "new" / "parent", LIMITS)
    assert (root / "empty" / "inner").is_dir()


def test_empty_zip_extracts_to_an_empty_directory(tmp_path: Path, work: Path) -> None:
    with zipfile.ZipFile(tmp_path / "empty.mar", "w"):
        pass
    root = extract_archive(tmp_path / "empty.mar", work, LIMITS)
    assert list(root.iterdir()) == []


def test_tar_gz_drops_the_top_level_directory_like_torchserve(tmp_path: Path, work: Path) -> None:
    source = hostile.tar_gz_model(tmp_path / "m.tar.gz", {"handler.py": b"h", "sub/w.bin": b"w"})
    with tarfile.open(source) as tf:
        assert tf.getnames()[0] == "model/handler.py"
    root = extract_archive(source, work, LIMITS)
    assert _files(root) == {"handler.py": b"h", "sub/w.bin": b"w"}


def test_tar_gz_with_dot_prefix_and_directory_members(tmp_path: Path, work: Path) -> None:
    source = tmp_path / "dot.tgz"
    with tarfile.open(source, "w:gz") as tf:
        for name in (".", "./sub"):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tf.addfile(info)
        for name, data in (("./handler.py", b"h"), ("./sub/x", b"x"), ("top.txt", b"t")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    root = extract_archive(source, work, LIMITS)
    assert _files(root) == {"handler.py": b"h", "sub/x": b"x", "top.txt": b"t"}


def test_directory_source_is_copied_and_owned(tmp_path: Path, work: Path) -> None:
    src = tmp_path / "src"
    (src / "MAR-INF").mkdir(parents=True)
    (src / "MAR-INF" / "MANIFEST.json").write_bytes(hostile.manifest_bytes())
    (src / "handler.py").write_bytes(hostile.HANDLER_SOURCE)
    (src / "alias.py").symlink_to("handler.py")  # a link inside the directory is copied as content
    root = extract_archive(src, work, LIMITS)
    assert _files(root)["alias.py"] == hostile.HANDLER_SOURCE
    assert not (root / "alias.py").is_symlink()
    assert (src / "handler.py").exists(), "the source directory must be left alone"


def test_directory_source_with_one_subdirectory_is_served_from_it(tmp_path: Path, work: Path) -> None:
    inner = tmp_path / "src" / "model"
    inner.mkdir(parents=True)
    (inner / "handler.py").write_bytes(b"h")
    assert _files(extract_archive(tmp_path / "src", work, LIMITS)) == {"handler.py": b"h"}


def test_directory_source_symlink_leading_out_is_refused(
    tmp_path: Path, refused: Callable[..., ArchiveError]
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "handler.py").write_bytes(b"h")
    (tmp_path / "secret").write_bytes(b"s")
    (src / "leak").symlink_to(tmp_path / "secret")
    refused(src, match="leads outside")


def test_directory_source_fifo_is_refused_without_blocking(
    tmp_path: Path, refused: Callable[..., ArchiveError]
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "handler.py").write_bytes(b"h")
    os.mkfifo(src / "pipe")
    refused(src, match="FIFO")


def test_unrecognized_file_is_refused(tmp_path: Path, refused: Callable[..., ArchiveError]) -> None:
    (tmp_path / "notazip.mar").write_bytes(b"this is not an archive")
    error = refused(tmp_path / "notazip.mar")
    assert isinstance(error, UnrecognizedArchiveError)


def test_a_50_mb_archive_extracts_quickly(tmp_path: Path, work: Path) -> None:
    source = tmp_path / "big.mar"
    with zipfile.ZipFile(source, "w", zipfile.ZIP_STORED) as zf, zf.open("weights.bin", "w") as out:
        for _ in range(50):
            out.write(os.urandom(1 << 20))
    started = time.monotonic()
    root = extract_archive(source, work, LIMITS)
    assert time.monotonic() - started < 5
    assert (root / "weights.bin").stat().st_size == 50 << 20


# -- A1, A2: zip-slip ----------------------------------------------------------------------------


@pytest.mark.security
def test_a1_zip_slip_is_refused(tmp_path: Path, refused: Callable[..., ArchiveError]) -> None:
    refused(hostile.zip_slip(tmp_path / "slip.mar", "../../pwned.py"), match="'..'")
    assert not (tmp_path / "pwned.py").exists()
    assert not (tmp_path.parent / "pwned.py").exists()


@pytest.mark.security
@pytest.mark.parametrize(
    "name",
    [
        "/tmp/pwned-by-zip.py",
        "..\\..\\pwned.py",
        "C:\\pwned.py",
        "C:/pwned.py",
        "./",
        "a/../../pwned.py",
        "",
        "a//b",
        "a/./b",
        "./pwned.py",
        "a\nb",
        "..",
        "../",
        "sub/..",
    ],
)
def test_a2_zip_slip_family_is_refused(
    tmp_path: Path, refused: Callable[..., ArchiveError], name: str
) -> None:
    error = refused(hostile.zip_slip(tmp_path / "slip.mar", name))
    assert error.message.startswith("Invalid model archive: member ")  # refused by the name check itself
    assert not (tmp_path / "pwned.py").exists()
    assert not Path("/tmp/pwned-by-zip.py").exists()


# -- A4: zip mode bits ----------------------------------------------------------------------------


@pytest.mark.security
@pytest.mark.parametrize("target", ["..", "/etc", "../../.."])
def test_a4_zip_symlink_entry_is_refused(
    tmp_path: Path, refused: Callable[..., ArchiveError], target: str
) -> None:
    refused(hostile.zip_symlink_then_through(tmp_path / "link.mar", target), match="symbolic link")
    assert not any(p.is_symlink() for p in tmp_path.rglob("*"))


@pytest.mark.security
@pytest.mark.parametrize(
    ("mode", "match"),
    [
        (stat.S_IFCHR | 0o600, "character device"),
        (stat.S_IFBLK | 0o600, "block device"),
        (stat.S_IFIFO | 0o600, "FIFO"),
        (stat.S_IFSOCK | 0o600, "socket"),
        (stat.S_IFREG | stat.S_ISUID | 0o755, "setuid"),
        (stat.S_IFREG | stat.S_ISGID | 0o755, "setgid"),
        (stat.S_IFDIR | 0o755, "directory"),  # directory bits on a name without a trailing '/'
    ],
)
def test_a4_zip_special_mode_bits_are_refused(
    tmp_path: Path, refused: Callable[..., ArchiveError], mode: int, match: str
) -> None:
    refused(hostile.zip_special_member(tmp_path / "special.mar", mode), match=match)


# -- A5: tar members -----------------------------------------------------------------------------


_TAR_REFUSALS = {
    "symlink": "is a symbolic link",
    "hardlink": "is a hard link",
    "chardev": "is a character device",
    "blockdev": "is a block device",
    "fifo": "is a FIFO",
    "contiguous": "is a contiguous file",
    "setuid": "setuid/setgid",
    "setgid": "setuid/setgid",
    "dotdot": "'..' component",
    "absolute": "absolute path",
    "huge_pax_header": "extension header is larger",
}


@pytest.mark.security
@pytest.mark.parametrize("kind", hostile.TAR_MEMBER_KINDS)
def test_a5_tar_member_types_are_refused(
    tmp_path: Path, refused: Callable[..., ArchiveError], kind: str
) -> None:
    error = refused(hostile.tar_gz_with_member(tmp_path / f"{kind}.tar.gz", kind))
    assert _TAR_REFUSALS[kind] in error.message
    assert not Path("/tmp/pwned-by-tar.py").exists()
    assert not any(p.is_symlink() for p in tmp_path.rglob("*"))


# -- A6: decompression bombs ------------------------------------------------------------------------


@pytest.mark.security
@pytest.mark.parametrize("factory", [hostile.zip_bomb, hostile.tar_gz_bomb])
def test_a6_bomb_stops_at_the_byte_cap(
    tmp_path: Path, refused: Callable[..., ArchiveError], factory: Callable[[Path, int], Path]
) -> None:
    bomb = factory(tmp_path / "bomb", 64 << 20)
    assert bomb.stat().st_size < 1 << 20, "the bomb itself is small"
    started = time.monotonic()
    refused(bomb, ArchiveLimits(max_total_bytes=8 << 20), match="more than 8388608 bytes")
    assert time.monotonic() - started < 2


@pytest.mark.security
def test_a6_bytes_are_counted_while_writing_not_taken_from_headers(
    tmp_path: Path, work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Take away the early check on declared sizes: only counting written bytes is left to stop it.
    monkeypatch.setattr(extract_module, "_declared_size", lambda infos: 0)
    bomb = hostile.zip_bomb(tmp_path / "bomb.mar", 32 << 20)
    seen: list[int] = []
    real_add = extract_module._Budget.add

    def spy(self: extract_module._Budget, count: int) -> None:
        seen.append(self.written + count)
        real_add(self, count)

    monkeypatch.setattr(extract_module._Budget, "add", spy)
    with pytest.raises(ArchiveError, match="more than 8388608 bytes"):
        extract_archive(bomb, work, ArchiveLimits(max_total_bytes=8 << 20))
    assert max(seen) <= (8 << 20) + (1 << 20), "writing stopped within one chunk of the cap"
    assert list(work.iterdir()) == []


@pytest.mark.security
def test_a6_directory_source_is_counted_while_copying(
    tmp_path: Path, refused: Callable[..., ArchiveError]
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    with open(src / "sparse.bin", "wb") as fh:  # 1 GiB that takes no disk space
        fh.truncate(1 << 30)
    started = time.monotonic()
    refused(src, ArchiveLimits(max_total_bytes=8 << 20), match="more than 8388608 bytes")
    assert time.monotonic() - started < 2


@pytest.mark.security
def test_a6_ratio_cap(tmp_path: Path, refused: Callable[..., ArchiveError]) -> None:
    bomb = hostile.zip_bomb(tmp_path / "bomb.mar", 16 << 20)
    refused(bomb, ArchiveLimits(max_ratio=100), match="100 times")


# -- A7: overlapping entries and lying sizes ----------------------------------------------------------


@pytest.mark.security
@pytest.mark.parametrize("factory", [hostile.zip_overlapping, hostile.zip_overlapping_inside])
def test_a7_overlapping_entries_are_refused(
    tmp_path: Path, refused: Callable[..., ArchiveError], factory: Callable[[Path], Path]
) -> None:
    refused(factory(tmp_path / "overlap.mar"), match="overlaps")


@pytest.mark.security
def test_a7_header_lying_about_size_is_refused(tmp_path: Path, refused: Callable[..., ArchiveError]) -> None:
    refused(hostile.zip_lying_size(tmp_path / "liar.mar"))


@pytest.mark.security
def test_a7_declared_sizes_over_the_cap_are_refused_before_writing(
    tmp_path: Path, refused: Callable[..., ArchiveError]
) -> None:
    liar = hostile.zip_lying_size(tmp_path / "liar.mar", declared=1 << 30, actual=1 << 10)
    refused(liar, ArchiveLimits(max_total_bytes=1 << 20), match="more than 1048576 bytes")


# -- A8: caps --------------------------------------------------------------------------------------


@pytest.mark.security
def test_a8_entry_count_is_refused_before_the_central_directory_is_parsed(
    tmp_path: Path, refused: Callable[..., ArchiveError], monkeypatch: pytest.MonkeyPatch
) -> None:
    source = hostile.zip_many_entries(tmp_path / "many.mar", 300)

    def no_parse(*args: object, **kwargs: object) -> None:
        raise AssertionError("zipfile must not parse an archive with too many entries")

    monkeypatch.setattr(extract_module.zipfile, "ZipFile", no_parse)
    refused(source, ArchiveLimits(max_entries=100), match="more than 100 entries")


@pytest.mark.security
def test_a8_entry_count_in_tar(tmp_path: Path, refused: Callable[..., ArchiveError]) -> None:
    source = hostile.tar_gz_model(tmp_path / "many.tgz", {f"f{i}": b"" for i in range(150)})
    refused(source, ArchiveLimits(max_entries=100), match="more than 100 entries")


@pytest.mark.security
def test_a8_depth_cap(tmp_path: Path, refused: Callable[..., ArchiveError]) -> None:
    started = time.monotonic()
    refused(
        hostile.zip_deep(tmp_path / "deep.mar", 1000),
        ArchiveLimits(max_depth=32, max_name_length=4096),
        match="deeper than 32",
    )
    assert time.monotonic() - started < 1


@pytest.mark.security
@pytest.mark.parametrize("length", [4096, 65])
def test_a8_name_length_cap(tmp_path: Path, refused: Callable[..., ArchiveError], length: int) -> None:
    refused(
        hostile.zip_long_name(tmp_path / "long.mar", length),
        ArchiveLimits(max_name_length=64),
        match="longer than 64",
    )


@pytest.mark.security
def test_a8_component_longer_than_the_filesystem_allows(
    tmp_path: Path, refused: Callable[..., ArchiveError]
) -> None:
    refused(hostile.zip_slip(tmp_path / "c.mar", "x" * 300), match="255 bytes")


@pytest.mark.security
def test_duplicate_and_conflicting_members_are_refused(
    tmp_path: Path, refused: Callable[..., ArchiveError]
) -> None:
    with pytest.warns(UserWarning, match="Duplicate name"):
        source = hostile.zip_with_entries(tmp_path / "dup.mar", [("handler.py", b"second")])
    refused(source, match="appears twice")
    conflict = hostile.zip_with_entries(tmp_path / "conflict.mar", [("a", b"file"), ("a/b", b"inside")])
    refused(conflict, match="both a file and a directory")


@pytest.mark.security
def test_encrypted_and_exotic_compression_are_refused(
    tmp_path: Path, refused: Callable[..., ArchiveError]
) -> None:
    refused(hostile.zip_encrypted(tmp_path / "enc.mar"), match="encrypted")
    with zipfile.ZipFile(tmp_path / "bz.mar", "w", zipfile.ZIP_BZIP2) as zf:
        zf.writestr("handler.py", b"h")
    refused(tmp_path / "bz.mar", match="compression")


# -- A10–A13 via open_model_archive ------------------------------------------------------------------


def test_open_model_archive_reads_manifest_and_config(tmp_path: Path, work: Path) -> None:
    source = hostile.mar_with_model_config(
        tmp_path / "ok.mar", b"minWorkers: 1\nmaxWorkers: 2\ncustom: {a: 1}\n"
    )
    archive = open_model_archive(source, work)
    assert archive.manifest.model_name == "hostile"
    assert archive.manifest.config_file == "model-config.yaml"
    assert archive.model_config == {"minWorkers": 1, "maxWorkers": 2, "custom": {"a": 1}}
    assert (archive.settings.min_workers, archive.settings.max_workers) == (1, 2)
    assert archive.model_dir.parent == work
    archive.cleanup()
    archive.cleanup()  # idempotent
    assert list(work.iterdir()) == []


def test_open_model_archive_without_config_file(tmp_path: Path, work: Path) -> None:
    archive = open_model_archive(hostile.mar(tmp_path / "ok.mar"), work)
    assert archive.model_config == {}
    assert archive.settings.batch_size is None
    archive.cleanup()


_BAD_MANIFESTS: dict[str, tuple[bytes | None, str]] = {
    "missing": (None, "Model name is not defined."),
    "invalid_json": (b'{"model": ', "Failed to parse MANIFEST.json"),
    "not_an_object": (b"[1, 2]", "top level must be a JSON object"),
    "model_missing": (b'{"runtime": "python"}', "Missing Model entry in manifest file."),
    "model_wrong_type": (b'{"model": "noop"}', '"model" must be a JSON object'),
    "name_wrong_type": (b'{"model": {"modelName": 42, "handler": "h.py"}}', "modelName must be a string"),
    "handler_wrong_type": (b'{"model": {"modelName": "m", "handler": ["x"]}}', "handler must be a string"),
    "version_wrong_type": (
        b'{"model": {"modelName": "m", "modelVersion": 1.0}}',
        "modelVersion must be a string",
    ),
    "batch_size_string": (
        b'{"model": {"modelName": "m", "configFile": {"batchSize": "x"}}}',
        "configFile must be a string",
    ),
    "bad_name": (b'{"model": {"modelName": "../etc", "handler": "h.py"}}', "must match"),
    "bad_runtime": (
        b'{"runtime": "python4", "model": {"modelName": "m"}}',
        "Runtime is not defined or invalid.",
    ),
    "deep_nesting": (hostile.deeply_nested_json(10_000), "Failed to parse MANIFEST.json"),
}


@pytest.mark.security
@pytest.mark.parametrize("case", sorted(_BAD_MANIFESTS))
def test_a10_bad_manifests_are_refused(
    tmp_path: Path, refused: Callable[..., ArchiveError], case: str
) -> None:
    manifest, message = _BAD_MANIFESTS[case]
    source = hostile.mar(tmp_path / f"{case}.mar", manifest=manifest, with_manifest=manifest is not None)
    error = refused(source, match=None, opener=open_model_archive)
    assert message in error.message
    assert (error.http_status, error.type_name) == (400, "InvalidModelException")


@pytest.mark.security
def test_a10_50_mb_manifest_is_refused(tmp_path: Path, refused: Callable[..., ArchiveError]) -> None:
    source = hostile.mar_with_big_manifest(tmp_path / "big.mar", 50 << 20)
    started = time.monotonic()
    refused(source, match="larger than 1048576 bytes", opener=open_model_archive)
    assert time.monotonic() - started < 5


@pytest.mark.security
def test_a10_not_an_archive_answers_like_torchserve(
    tmp_path: Path, refused: Callable[..., ArchiveError]
) -> None:
    (tmp_path / "notazip.mar").write_bytes(b"junk" * 100)
    error = refused(tmp_path / "notazip.mar", opener=open_model_archive)
    assert error.message == "Model name is not defined."


@pytest.mark.security
def test_a11_python_tag_in_model_config_never_runs(
    tmp_path: Path, refused: Callable[..., ArchiveError]
) -> None:
    sentinel = tmp_path / "PWNED"
    source = hostile.mar_with_model_config(tmp_path / "pwn.mar", hostile.yaml_python_tag(sentinel))
    refused(source, match="tag", opener=open_model_archive)
    assert not sentinel.exists()


@pytest.mark.security
@pytest.mark.parametrize("payload", ["alias_bomb", "ten_mb"])
def test_a12_yaml_bombs_are_refused_fast(
    tmp_path: Path, refused: Callable[..., ArchiveError], payload: str
) -> None:
    text = hostile.yaml_alias_bomb() if payload == "alias_bomb" else b"k: " + b"v" * (10 << 20) + b"\n"
    source = hostile.mar_with_model_config(tmp_path / "bomb.mar", text)
    started = time.monotonic()
    refused(source, match="anchors" if payload == "alias_bomb" else "larger than", opener=open_model_archive)
    assert time.monotonic() - started < 1


@pytest.mark.security
@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("handler", "../../x.py"),
        ("handler", "/abs/x.py"),
        ("handler", "..\\x.py"),
        ("handler", "a/b.py"),
        ("handler", "x:os.system"),
        ("handler", "x:y:z"),
        ("serializedFile", "../x.pt"),
        ("serializedFile", "/etc/passwd"),
        ("modelFile", "../../m.py"),
        ("configFile", "../cfg.yaml"),
        ("configFile", "/etc/hostname"),
        ("requirementsFile", "C:\\req.txt"),
    ],
)
def test_a13_manifest_references_outside_the_model_dir_are_refused(
    tmp_path: Path, refused: Callable[..., ArchiveError], key: str, value: str
) -> None:
    source = hostile.mar(tmp_path / "ref.mar", manifest=hostile.manifest_bytes(**{key: value}))
    refused(source, opener=open_model_archive)


@pytest.mark.parametrize(
    "handler",
    [
        "",
        "image_classifier",
        "base_handler",
        "handler.py",
        "handler",
        "handler:handle",
        "pkg.mod:fn",
        "my-handler.py",
    ],
)
def test_a13_acceptable_handlers(handler: str) -> None:
    check_handler(handler)


@pytest.mark.security
def test_a13_config_file_missing_from_the_archive(
    tmp_path: Path, refused: Callable[..., ArchiveError]
) -> None:
    source = hostile.mar(tmp_path / "m.mar", manifest=hostile.manifest_bytes(configFile="absent.yaml"))
    refused(source, match="not in the archive", opener=open_model_archive)


# -- containment helper properties -------------------------------------------------------------------

_NAME_PIECES = st.sampled_from(
    ["a", "b", ".", "..", "/", "\\", ":", "C:", "~", " ", "\x00", "\n", "é", "link", "in"]
)


@pytest.fixture(scope="module")
def containment_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("containment")
    root = base / "root"
    (root / "in").mkdir(parents=True)
    (base / "outside").mkdir()
    (root / "link").symlink_to(base / "outside")  # a symlink leading out of the root
    (root / "in" / "up").symlink_to("..")
    return root


@settings(max_examples=300, deadline=None)
@given(relative=st.one_of(st.lists(_NAME_PIECES, max_size=12).map("".join), st.text(max_size=40)))
def test_contained_path_never_leaves_the_root(containment_root: Path, relative: str) -> None:
    try:
        result = contained_path(containment_root, relative)
    except ArchiveError:
        return
    root = os.path.realpath(containment_root)
    real = os.path.realpath(result)
    assert real != root
    assert os.path.commonpath([root, real]) == root


@settings(max_examples=300, deadline=None)
@given(name=st.one_of(st.lists(_NAME_PIECES, max_size=12).map("".join), st.text(max_size=40)))
def test_member_parts_only_accepts_plain_relative_names(name: str) -> None:
    try:
        parts = member_parts(name, LIMITS)
    except ArchiveError:
        return
    assert parts
    assert all(part not in ("", ".", "..") and "/" not in part and "\\" not in part for part in parts)
    assert not name.startswith("/")
    joined = os.path.normpath(os.path.join("/root", *parts))
    assert joined.startswith("/root/")


def test_contained_path_examples(containment_root: Path) -> None:
    assert (
        contained_path(containment_root, "./in//x") == Path(os.path.realpath(containment_root)) / "in" / "x"
    )
    for bad in ("link/x", "in/up/../x", "in/up", ".", "", "/etc/passwd"):
        with pytest.raises(ArchiveError):
            contained_path(containment_root, bad)
