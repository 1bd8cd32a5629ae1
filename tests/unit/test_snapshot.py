"""Config snapshots: the file format, atomic writes, pruning, secrets, and choosing the newest valid one."""

from __future__ import annotations

import os
from pathlib import Path

import javaproperties
import orjson
import pytest

from emberserve import snapshot
from emberserve.config import CliOptions, load_config
from emberserve.snapshot import SnapshotModel, SnapshotWriter, latest_valid_snapshot, parse_model_snapshot

ECHO = SnapshotModel(
    name="echo",
    version="1.0",
    mar_name="echo.mar",
    default_version=True,
    min_workers=2,
    max_workers=3,
    batch_size=4,
    max_batch_delay=50,
    response_timeout=30,
    startup_timeout=60,
)


def read_props(path: Path) -> dict[str, str]:
    return javaproperties.loads(path.read_text("latin-1"))


def test_a_snapshot_is_a_properties_file_with_torchserves_model_snapshot(tmp_path: Path) -> None:
    source = tmp_path / "config.properties"
    writer = SnapshotWriter(tmp_path / "config", {"batch_size": "4", "model_store": "/srv/store"}, source)

    path = writer.write("snapshot", [ECHO])

    assert path.parent == tmp_path / "config"
    assert path.name.endswith("-snapshot.cfg") and len(path.name) == len("20261122101213042-snapshot.cfg")
    text = path.read_text("latin-1")
    assert text.startswith("#Saving snapshot\n#")
    props = read_props(path)
    assert props["batch_size"] == "4"
    assert props["tsConfigFile"] == str(source)
    document = orjson.loads(props["model_snapshot"])
    assert document["name"] == path.name
    assert document["modelCount"] == 1
    assert isinstance(document["created"], int)
    assert document["models"] == {
        "echo": {
            "1.0": {
                "defaultVersion": True,
                "marName": "echo.mar",
                "minWorkers": 2,
                "maxWorkers": 3,
                "batchSize": 4,
                "maxBatchDelay": 50,
                "responseTimeout": 30,
                "startupTimeout": 60,
            }
        }
    }
    assert parse_model_snapshot(props["model_snapshot"]) == [ECHO]


def test_secrets_stay_out_and_environment_references_stay_references(tmp_path: Path) -> None:
    props = {"keystore_pass": "hunter2", "private_key_file": "$$KEY_PATH$$", "model_snapshot": "{}"}
    path = SnapshotWriter(tmp_path, props, None).write("startup", [])

    written = read_props(path)
    assert "hunter2" not in path.read_text("latin-1")
    assert "keystore_pass" not in written
    assert written["private_key_file"] == "$$KEY_PATH$$"
    assert orjson.loads(written["model_snapshot"])["models"] == {}  # its own, not the stale one


def test_names_stay_ordered_and_unique_within_one_millisecond_and_old_ones_are_pruned(tmp_path: Path) -> None:
    writer = SnapshotWriter(tmp_path, {}, None, keep=3)
    paths = [writer.write("snapshot", [ECHO]) for _ in range(6)]

    assert len({p.name for p in paths}) == 6
    assert [p.name for p in paths] == sorted(p.name for p in paths)
    assert sorted(p.name for p in tmp_path.iterdir()) == [p.name for p in paths[-3:]]


def test_a_failed_write_leaves_the_previous_snapshot_and_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = SnapshotWriter(tmp_path, {}, None)
    good = writer.write("startup", [ECHO])

    def disk_full(*_args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(snapshot.os, "replace", disk_full)
    with pytest.raises(OSError, match="No space left"):
        writer.write("snapshot", [])

    assert [p.name for p in tmp_path.iterdir()] == [good.name]
    assert latest_valid_snapshot(tmp_path) == good


def test_a_corrupt_or_truncated_newest_snapshot_falls_back_to_the_previous_valid_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    writer = SnapshotWriter(tmp_path, {}, None)
    good = writer.write("snapshot", [ECHO])
    newer = writer.write("snapshot", [ECHO])
    newer.write_bytes(newer.read_bytes()[:60])  # truncated mid-file
    newest = tmp_path / "29991231235959999-shutdown.cfg"
    newest.write_text("model_snapshot={not json\n")

    assert latest_valid_snapshot(tmp_path) == good
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(newest.name in w and "not JSON" in w for w in warnings)
    assert any(newer.name in w for w in warnings)


def test_files_that_are_not_snapshots_are_ignored(tmp_path: Path) -> None:
    (tmp_path / "notes.cfg").write_text("model_snapshot={}")
    (tmp_path / "20261122101213042-snapshot.cfg.tmp").write_text("x")
    assert latest_valid_snapshot(tmp_path) is None
    assert latest_valid_snapshot(tmp_path / "missing") is None


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("[]", 'no "models"'),
        ('{"models": {"m": []}}', "not an object"),
        ('{"models": {"m": {"1.0": {}}}}', "no marName"),
        ('{"models": {"m": {"1.0": {"marName": "m.mar", "minWorkers": -1}}}}', "non-negative"),
        ('{"models": {"m": {"1.0": {"marName": "m.mar", "batchSize": "4"}}}}', "non-negative"),
    ],
)
def test_invalid_model_snapshots_are_refused(text: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        parse_model_snapshot(text)


def test_config_lookup_takes_the_newest_valid_snapshot_unless_a_file_is_named_or_ncs(tmp_path: Path) -> None:
    (tmp_path / "config.properties").write_text("batch_size=2\n")
    writer = SnapshotWriter(tmp_path / "logs" / "config", {"batch_size": "7"}, None)
    snap = writer.write("shutdown", [ECHO])
    env: dict[str, str] = {}

    restored = load_config(CliOptions(), env, tmp_path)
    assert restored.source_file == snap
    assert restored.batch_size == 7
    assert restored.model_snapshot is not None
    assert parse_model_snapshot(restored.model_snapshot) == [ECHO]

    named = load_config(CliOptions(ts_config=str(tmp_path / "config.properties")), env, tmp_path)
    assert named.source_file == tmp_path / "config.properties"
    assert named.model_snapshot is None

    without = load_config(CliOptions(no_config_snapshots=True), env, tmp_path)
    assert without.batch_size == 2 and not without.snapshots_enabled

    moved = tmp_path / "elsewhere"
    os.rename(tmp_path / "logs", moved)
    found = load_config(CliOptions(), {"LOG_LOCATION": str(moved)}, tmp_path).source_file
    assert found == moved / "config" / snap.name
