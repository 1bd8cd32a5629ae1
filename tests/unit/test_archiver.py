"""Ember's archiver: build_archive and the emberserve-archiver command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import zipfile
from datetime import datetime
from pathlib import Path

import pytest

from emberserve.archive import open_model_archive
from emberserve.archiver import ArchiverError, archive_path, build_archive
from emberserve.archiver.build import collect_files, handler_source
from emberserve.archiver.cli import main

STAMP = datetime(2026, 11, 22, 7, 51, 34)


@pytest.fixture
def inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with model files, as a user would have them."""
    src = tmp_path / "src"
    (src / "extra" / "sub").mkdir(parents=True)
    (src / "extra" / "__pycache__").mkdir()
    (src / "extra" / ".git").mkdir()
    (src / "handler.py").write_text("def handle(data, context):\n    return data\n")
    (src / "model.py").write_text("class M:\n    pass\n")
    (src / "model.pt").write_bytes(b"\x00weights")
    (src / "cfg.yaml").write_text("minWorkers: 1\nmaxWorkers: 1\n")
    (src / "requirements.txt").write_text("numpy\n")
    (src / "index_to_name.json").write_text('{"0": "a"}')
    (src / "labels.json").write_text("[]")
    (src / "extra" / "a.txt").write_text("a")
    (src / "extra" / ".hidden_file").write_text("h")
    (src / "extra" / "sub" / "b.txt").write_text("b")
    (src / "extra" / "__pycache__" / "x.pyc").write_bytes(b"pyc")
    (src / "extra" / ".git" / "HEAD").write_text("ref")
    (tmp_path / "out").mkdir()
    monkeypatch.chdir(src)
    return src


def _zip_members(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as zf:
        return zf.namelist()


def _full_build(export: Path, archive_format: str = "default", force: bool = False) -> Path:
    return build_archive(
        "demo",
        "1.0",
        "handler:handle",
        serialized_file="model.pt",
        model_file="./model.py",
        extra_files="extra,*.json",
        runtime="python3",
        requirements_file="requirements.txt",
        config_file="cfg.yaml",
        archive_format=archive_format,
        export_path=export,
        force=force,
        created_on=STAMP,
    )


EXPECTED_MEMBERS = [
    "a.txt",
    ".hidden_file",
    "sub/b.txt",
    "cfg.yaml",
    "handler.py",
    "index_to_name.json",
    "labels.json",
    "model.pt",
    "model.py",
    "requirements.txt",
]
EXPECTED_MANIFEST = {
    "createdOn": "22/11/2026 07:51:34",
    "runtime": "python3",
    "model": {
        "modelName": "demo",
        "serializedFile": "model.pt",
        "handler": "handler:handle",
        "modelFile": "model.py",
        "modelVersion": "1.0",
        "requirementsFile": "requirements.txt",
        "configFile": "cfg.yaml",
    },
    "archiverVersion": "0.12.0",
}


@pytest.mark.parametrize("archive_format", ["default", "zip-store"])
def test_zip_formats(inputs: Path, tmp_path: Path, archive_format: str) -> None:
    mar = _full_build(tmp_path / "out", archive_format)
    assert mar == tmp_path / "out" / "demo.mar"
    names = _zip_members(mar)
    assert names == [*sorted(EXPECTED_MEMBERS), "MAR-INF/MANIFEST.json"]
    with zipfile.ZipFile(mar) as zf:
        method = zipfile.ZIP_STORED if archive_format == "zip-store" else zipfile.ZIP_DEFLATED
        assert {info.compress_type for info in zf.infolist()} == {method}
        assert json.loads(zf.read("MAR-INF/MANIFEST.json")) == EXPECTED_MANIFEST
        assert zf.read("sub/b.txt") == b"b"
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")], "no temporary file left"


def test_tgz_format(inputs: Path, tmp_path: Path) -> None:
    tgz = _full_build(tmp_path / "out", "tgz")
    assert tgz == tmp_path / "out" / "demo.tar.gz"
    with tarfile.open(tgz) as tf:
        names = tf.getnames()
        assert names == [f"demo/{n}" for n in sorted(EXPECTED_MEMBERS)] + ["demo/MAR-INF/MANIFEST.json"]
        manifest = tf.extractfile("demo/MAR-INF/MANIFEST.json")
        assert manifest is not None
        assert json.loads(manifest.read()) == EXPECTED_MANIFEST
        assert all(m.isreg() for m in tf.getmembers())


def test_no_archive_format(inputs: Path, tmp_path: Path) -> None:
    out = _full_build(tmp_path / "out", "no-archive")
    assert out == tmp_path / "out" / "demo"
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == sorted([*EXPECTED_MEMBERS, "MAR-INF/MANIFEST.json"])
    text = (out / "MAR-INF" / "MANIFEST.json").read_text()
    assert json.loads(text) == EXPECTED_MANIFEST
    assert text.startswith('{\n  "createdOn"')
    assert text.endswith("}")


@pytest.mark.parametrize("archive_format", ["default", "zip-store", "tgz", "no-archive"])
def test_every_format_opens_with_open_model_archive(
    inputs: Path, tmp_path: Path, archive_format: str
) -> None:
    built = _full_build(tmp_path / "out", archive_format)
    archive = open_model_archive(built, tmp_path / "work")
    try:
        assert archive.manifest.model_name == "demo"
        assert archive.model_config == {"minWorkers": 1, "maxWorkers": 1}
        assert (archive.model_dir / "sub" / "b.txt").read_text() == "b"
        assert (archive.model_dir / "handler.py").is_file()
    finally:
        archive.cleanup()


def test_manifest_bytes_have_the_archiver_layout(inputs: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(_full_build(tmp_path / "out")) as zf:
        data = zf.read("MAR-INF/MANIFEST.json")
    assert data == json.dumps(EXPECTED_MANIFEST, indent=2).encode()


def test_builtin_handler_copies_no_file(inputs: Path, tmp_path: Path) -> None:
    mar = build_archive(
        "vision", "1.0", "image_classifier", serialized_file="model.pt", export_path=tmp_path / "out"
    )
    assert _zip_members(mar) == ["model.pt", "MAR-INF/MANIFEST.json"]
    with zipfile.ZipFile(mar) as zf:
        assert json.loads(zf.read("MAR-INF/MANIFEST.json"))["model"]["handler"] == "image_classifier"


def test_handler_path_with_function_keeps_the_basename(inputs: Path, tmp_path: Path) -> None:
    (inputs / "pkg").mkdir()
    (inputs / "pkg" / "entry.py").write_text("def run(data, context):\n    return data\n")
    mar = build_archive("fn", "1.0", "pkg/entry:run", export_path=tmp_path / "out")
    with zipfile.ZipFile(mar) as zf:
        assert json.loads(zf.read("MAR-INF/MANIFEST.json"))["model"]["handler"] == "entry:run"
        assert zf.namelist() == ["entry.py", "MAR-INF/MANIFEST.json"]


@pytest.mark.parametrize(
    ("handler", "runtime", "expected"),
    [
        ("h.py", "python", "h.py"),
        ("h", "python", "h.py"),
        ("dir/h:fn", "python", "dir/h.py"),
        ("h.py:fn", "python", "h.py:fn"),  # as torch-model-archiver: this file does not exist
        ("text_classifier", "python3", None),
        ("BaseHandler", "LSP", None),
        ("libh", "LSP", "libh.so" if sys.platform.startswith("linux") else "libh.dylib"),
    ],
)
def test_handler_source(handler: str, runtime: str, expected: str | None) -> None:
    assert handler_source(handler, runtime) == expected


def test_extra_files_rules(inputs: Path) -> None:
    files = collect_files(handler="handler.py", extra_files="extra, *.json,nomatch*")
    assert sorted(files) == sorted(
        ["handler.py", "a.txt", ".hidden_file", "sub/b.txt", "index_to_name.json", "labels.json"]
    )
    assert files["sub/b.txt"] == os.path.join("extra", "sub", "b.txt")


def test_later_inputs_win_name_clashes_and_the_manifest_is_always_generated(
    inputs: Path, tmp_path: Path
) -> None:
    (inputs / "other").mkdir()
    (inputs / "other" / "handler.py").write_text("# from extra\n")
    (inputs / "other" / "MAR-INF").mkdir()
    (inputs / "other" / "MAR-INF" / "MANIFEST.json").write_text("{}")
    files = collect_files(handler="handler.py", extra_files="other")
    assert files["handler.py"] == os.path.join("other", "handler.py")
    assert "MAR-INF/MANIFEST.json" not in files


def test_symlinked_input_is_archived_as_content(inputs: Path, tmp_path: Path) -> None:
    (inputs / "link.pt").symlink_to(inputs / "model.pt")
    for archive_format in ("default", "tgz"):
        built = build_archive(
            "ln",
            "1.0",
            "handler.py",
            serialized_file="link.pt",
            archive_format=archive_format,
            export_path=tmp_path / "out",
        )
        archive = open_model_archive(built, tmp_path / "work")
        assert (archive.model_dir / "link.pt").read_bytes() == b"\x00weights"
        archive.cleanup()


# -- errors (texts as torch-model-archiver's) -----------------------------------------------------


def test_bad_model_name(inputs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--model-name", "bad name", "--version", "1", "--handler", "handler.py"]) == 1
    assert capsys.readouterr().err == (
        "ERROR - Model name contains special characters.\n"
        "The allowed regular expression filter for model name is: ^[A-Za-z0-9][A-Za-z0-9_\\-.]*$\n"
    )


def test_existing_archive_needs_force(
    inputs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--model-name", "demo", "--version", "1", "--handler", "handler.py", "--export-path", "../out"]
    assert main(args) == 0
    first = (tmp_path / "out" / "demo.mar").read_bytes()
    capsys.readouterr()
    assert main(args) == 1
    assert capsys.readouterr().err == (
        "ERROR - ../out/demo.mar already exists.\n"
        "Please specify --force/-f option to overwrite the model archive output file.\n"
        "See -h/--help for more details.\n"
    )
    assert (tmp_path / "out" / "demo.mar").read_bytes() == first
    assert main([*args, "--extra-files", "labels.json", "-f"]) == 0
    assert capsys.readouterr().err == "WARNING - Overwriting ../out/demo.mar ...\n"
    assert "labels.json" in _zip_members(tmp_path / "out" / "demo.mar")


def test_no_archive_force_replaces_the_directory(inputs: Path, tmp_path: Path) -> None:
    build_archive(
        "demo",
        "1",
        "handler.py",
        extra_files="labels.json",
        archive_format="no-archive",
        export_path=tmp_path / "out",
    )
    with pytest.raises(ArchiverError, match="already exists"):
        build_archive("demo", "1", "handler.py", archive_format="no-archive", export_path=tmp_path / "out")
    out = build_archive(
        "demo", "2", "handler.py", archive_format="no-archive", export_path=tmp_path / "out", force=True
    )
    assert sorted(p.name for p in out.iterdir()) == ["MAR-INF", "handler.py"]
    assert json.loads((out / "MAR-INF" / "MANIFEST.json").read_text())["model"]["modelVersion"] == "2"


def test_export_path_must_be_a_directory(inputs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["--model-name", "m", "-v", "1", "--handler", "handler.py", "--export-path", "/nonexistent"])
        == 1
    )
    assert capsys.readouterr().err == (
        "ERROR - Given export-path /nonexistent is not a directory. Point to a valid export-path directory.\n"
    )


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--handler", "missing.py"], "File does not exist: missing.py"),
        (["--handler", "handler.py", "--serialized-file", "nope.pt"], "File does not exist: nope.pt"),
        (["--handler", "handler.py", "--extra-files", "nope.txt"], "File does not exist: nope.txt"),
        (["--handler", "handler.py", "--serialized-file", "extra"], "Not a regular file: extra"),
    ],
)
def test_missing_inputs(
    inputs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    assert main(["--model-name", "m", "-v", "1", "--export-path", str(tmp_path / "out"), *flags]) == 1
    assert capsys.readouterr().err == f"ERROR - {message}\n"
    assert list((tmp_path / "out").iterdir()) == []


def test_wildcard_without_match_only_warns(
    inputs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--model-name", "m", "-v", "1", "--handler", "handler.py", "--extra-files", "*.none"]
    assert main([*args, "--export-path", str(tmp_path / "out")]) == 0
    assert capsys.readouterr().err == "WARNING - Given wildcard pattern did not match any file: *.none\n"


@pytest.mark.parametrize(
    "flags",
    [
        [],
        ["--model-name", "m", "--handler", "h.py"],  # no --version
        ["--model-name", "m", "-v", "1", "--handler", "h.py", "--runtime", "python4"],
        ["--model-name", "m", "-v", "1", "--handler", "h.py", "--archive-format", "rar"],
    ],
)
def test_usage_errors_exit_2(flags: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(flags) == 2
    assert "usage: emberserve-archiver" in capsys.readouterr().err


def test_help_reads_well(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for flag in (
        "--model-name",
        "--serialized-file",
        "--model-file",
        "--handler",
        "--extra-files",
        "--runtime",
        "--export-path",
        "--archive-format",
        "-f, --force",
        "-v VERSION, --version",
        "-r FILE, --requirements-file",
        "-c FILE, --config-file",
        "no-archive",
        "zip-store",
        "tgz",
    ):
        assert flag in out


def test_build_archive_validates_format_and_runtime(inputs: Path) -> None:
    with pytest.raises(ArchiverError, match="Invalid archive format"):
        build_archive("m", "1", "handler.py", archive_format="rar")
    with pytest.raises(ArchiverError, match="Invalid runtime"):
        build_archive("m", "1", "handler.py", runtime="python4")


def test_default_export_path_is_the_working_directory(inputs: Path) -> None:
    assert build_archive("here", "1", "handler.py") == Path(archive_path(os.getcwd(), "here", "default"))
    assert (inputs / "here.mar").is_file()


def test_python_dash_m_entry_point(inputs: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "emberserve.archiver",
            "--model-name",
            "cli",
            "--version",
            "1.0",
            "--handler",
            "handler.py",
            "--export-path",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert _zip_members(tmp_path / "out" / "cli.mar") == ["handler.py", "MAR-INF/MANIFEST.json"]
