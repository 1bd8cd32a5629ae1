"""Ember's archiver against the real torch-model-archiver 0.12.0, and both against open_model_archive.

For the same inputs, both must produce the same MANIFEST.json (but for ``createdOn``), the same
members with the same bytes, and archives that open to identical model directories. The real
archiver runs as a subprocess from the virtualenv (its console script).
"""

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
from emberserve.archiver.cli import main

REAL_ARCHIVER = Path(sys.executable).parent / "torch-model-archiver"

pytestmark = pytest.mark.skipif(not REAL_ARCHIVER.exists(), reason="torch-model-archiver is not installed")


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "assets" / "nested").mkdir(parents=True)
    (src / "assets" / "__pycache__").mkdir()
    (src / "handler.py").write_text("def handle(data, context):\n    return data\n")
    (src / "model.py").write_text("class M:\n    pass\n")
    (src / "model.pt").write_bytes(bytes(range(256)) * 64)
    (src / "model-config.yaml").write_text("minWorkers: 1\nmaxWorkers: 1\nhandler:\n  topk: 3\n")
    (src / "requirements.txt").write_text("numpy\n")
    (src / "index_to_name.json").write_text('{"0": "a", "1": "b"}')
    (src / "vocab.json").write_text("[]")
    (src / "assets" / "a.txt").write_text("a")
    (src / "assets" / "nested" / "b.bin").write_bytes(b"\x00\x01")
    (src / "assets" / "__pycache__" / "c.pyc").write_bytes(b"skip me")
    return src


def _run_real(args: list[str], cwd: Path, tmp: Path) -> subprocess.CompletedProcess[str]:
    # TMPDIR keeps the real archiver's staging directory (<tmp>/<model-name>) private to this test.
    env = {**os.environ, "TMPDIR": str(tmp)}
    return subprocess.run(
        [str(REAL_ARCHIVER), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def _run_ours(
    args: list[str], cwd: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str]:
    with monkeypatch.context() as patch:
        patch.chdir(cwd)
        code = main(args)
    return code, capsys.readouterr().err


def _contents(built: Path) -> dict[str, bytes]:
    """Member name → bytes, for any of the four formats."""
    if built.is_dir():
        return {str(p.relative_to(built)): p.read_bytes() for p in built.rglob("*") if p.is_file()}
    if built.name.endswith(".tar.gz"):
        with tarfile.open(built) as tf:
            result = {}
            for member in tf.getmembers():
                data = tf.extractfile(member)
                assert member.isreg()
                assert data is not None
                result[member.name] = data.read()
            return result
    with zipfile.ZipFile(built) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def _manifest_key(name: str) -> bool:
    return name.endswith("MAR-INF/MANIFEST.json")


FULL_ARGS = [
    "--model-name",
    "compat",
    "--version",
    "2.1",
    "--handler",
    "handler:handle",
    "--serialized-file",
    "model.pt",
    "--model-file",
    "./model.py",
    "--extra-files",
    "assets,*.json",
    "--runtime",
    "python3",
    "-r",
    "requirements.txt",
    "-c",
    "model-config.yaml",
]


@pytest.mark.parametrize(
    ("archive_format", "output"),
    [
        ("default", "compat.mar"),
        ("zip-store", "compat.mar"),
        ("tgz", "compat.tar.gz"),
        ("no-archive", "compat"),
    ],
)
def test_same_archive_as_torch_model_archiver(
    inputs: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    archive_format: str,
    output: str,
) -> None:
    real_out, our_out = tmp_path / "real", tmp_path / "ours"
    real_out.mkdir()
    our_out.mkdir()
    args = [*FULL_ARGS, "--archive-format", archive_format]
    real = _run_real([*args, "--export-path", str(real_out)], inputs, tmp_path)
    assert real.returncode == 0, real.stderr
    assert _run_ours([*args, "--export-path", str(our_out)], inputs, monkeypatch, capsys) == (0, "")
    assert sorted(p.name for p in real_out.iterdir()) == sorted(p.name for p in our_out.iterdir()) == [output]

    real_members, our_members = _contents(real_out / output), _contents(our_out / output)
    assert sorted(real_members) == sorted(our_members)
    for name, data in real_members.items():
        if not _manifest_key(name):
            assert our_members[name] == data, name

    manifest_name = next(name for name in real_members if _manifest_key(name))
    real_manifest, our_manifest = (json.loads(m[manifest_name]) for m in (real_members, our_members))
    for manifest in (real_manifest, our_manifest):
        datetime.strptime(manifest.pop("createdOn"), "%d/%m/%Y %H:%M:%S")
    assert our_manifest == real_manifest
    assert list(our_manifest) == list(real_manifest)  # key order too
    assert list(our_manifest["model"]) == list(real_manifest["model"])
    # Same text apart from the timestamp: indent, separators, no trailing newline.
    real_text = real_members[manifest_name].decode()
    our_text = our_members[manifest_name].decode()
    assert real_text.split("\n")[2:] == our_text.split("\n")[2:]

    trees = []
    for built in (real_out / output, our_out / output):
        archive = open_model_archive(built, tmp_path / "work")
        try:
            assert archive.manifest.model_name == "compat"
            assert archive.manifest.model_version == "2.1"
            assert archive.model_config == {"minWorkers": 1, "maxWorkers": 1, "handler": {"topk": 3}}
            trees.append({k: v for k, v in _contents(archive.model_dir).items() if not _manifest_key(k)})
        finally:
            archive.cleanup()
    assert trees[0] == trees[1]
    assert "nested/b.bin" in trees[0]
    assert not any("__pycache__" in name for name in trees[0])


def test_builtin_handler_matches(
    inputs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "--model-name",
        "vision",
        "-v",
        "1.0",
        "--handler",
        "image_classifier",
        "--serialized-file",
        "model.pt",
    ]
    (tmp_path / "real").mkdir()
    (tmp_path / "ours").mkdir()
    assert _run_real([*args, "--export-path", str(tmp_path / "real")], inputs, tmp_path).returncode == 0
    assert _run_ours([*args, "--export-path", str(tmp_path / "ours")], inputs, monkeypatch, capsys)[0] == 0
    real, ours = _contents(tmp_path / "real" / "vision.mar"), _contents(tmp_path / "ours" / "vision.mar")
    assert sorted(real) == sorted(ours) == ["MAR-INF/MANIFEST.json", "model.pt"]
    real_manifest, our_manifest = (json.loads(m["MAR-INF/MANIFEST.json"]) for m in (real, ours))
    assert (
        real_manifest["model"]
        == our_manifest["model"]
        == {
            "modelName": "vision",
            "serializedFile": "model.pt",
            "handler": "image_classifier",
            "modelVersion": "1.0",
        }
    )


def _error_lines(stderr: str) -> str:
    """torch-model-archiver's logged error, without the traceback that follows it."""
    return stderr.split("Traceback (most recent call last):", maxsplit=1)[0]


def test_error_messages_match(
    inputs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bad_name = ["--model-name", "bad name!", "-v", "1", "--handler", "handler.py"]
    real = _run_real(bad_name, inputs, tmp_path)
    code, err = _run_ours(bad_name, inputs, monkeypatch, capsys)
    assert (real.returncode, code) == (1, 1)
    assert err == _error_lines(real.stderr)

    (tmp_path / "out").mkdir()
    exists = ["--model-name", "dup", "-v", "1", "--handler", "handler.py", "--export-path", "../out"]
    assert _run_real(exists, inputs, tmp_path).returncode == 0
    real = _run_real(exists, inputs, tmp_path)
    code, err = _run_ours(exists, inputs, monkeypatch, capsys)
    assert (real.returncode, code) == (1, 1)
    assert err == _error_lines(real.stderr)
    assert "../out/dup.mar already exists." in err

    no_dir = ["--model-name", "m", "-v", "1", "--handler", "handler.py", "--export-path", "/nonexistent"]
    real = _run_real(no_dir, inputs, tmp_path)
    code, err = _run_ours(no_dir, inputs, monkeypatch, capsys)
    assert (real.returncode, code) == (1, 1)
    assert err == _error_lines(real.stderr)
