"""A real server writes config snapshots on every change and a restart restores what was registered."""

from __future__ import annotations

import signal
import stat
from pathlib import Path

import httpx
import javaproperties
import orjson

from tests.ember_server import EmberServer


class RestartedServer(EmberServer):
    """Started like ``emberserve --foreground --model-store S`` without ``--ts-config``: the
    configuration comes from the newest snapshot, on the ports the first server had."""

    def __init__(self, first: EmberServer, *, models: list[str]) -> None:
        super().__init__(first.run_dir, first.model_store, models=models)
        self.ports = first.ports
        self.inference_url = first.inference_url
        self.management_url = first.management_url
        self.metrics_url = first.metrics_url

    def command(self) -> list[str]:
        command = super().command()
        at = command.index("--ts-config")
        del command[at : at + 2]
        return command


def snapshots(server: EmberServer) -> list[Path]:
    folder = server.log_dir / "config"
    return sorted(folder.iterdir()) if folder.is_dir() else []


def model_snapshot(path: Path) -> dict[str, object]:
    props = javaproperties.loads(path.read_text("latin-1"))
    document = orjson.loads(props["model_snapshot"])
    assert isinstance(document, dict)
    return document


def test_changes_are_snapshotted_and_a_restart_restores_them(tmp_path: Path, echo_store: Path) -> None:
    first = EmberServer(
        tmp_path / "run",
        echo_store,
        extra_config={"enable_model_api": "true", "keystore_pass": "hunter2"},
    )
    with first:
        kinds = [p.name.split("-")[1] for p in snapshots(first)]
        assert kinds == ["startup.cfg"]
        reply = httpx.post(
            first.management_url + "/models",
            params={"url": "echo.mar", "initial_workers": "1", "batch_size": "4", "max_batch_delay": "20"},
            timeout=60,
        )
        assert reply.status_code == 200, reply.text
        reply = httpx.put(
            first.management_url + "/models/echo",
            params={"min_worker": "2", "synchronous": "true"},
            timeout=60,
        )
        assert reply.status_code == 200, reply.text
        after_changes = snapshots(first)
        assert len(after_changes) == 3
        newest = model_snapshot(after_changes[-1])
        assert newest["models"] == {
            "echo": {
                "1.0": {
                    "defaultVersion": True,
                    "marName": "echo.mar",
                    "minWorkers": 2,
                    "maxWorkers": 2,
                    "batchSize": 4,
                    "maxBatchDelay": 20,
                    "responseTimeout": 120,
                    "startupTimeout": 120,
                }
            }
        }
        assert first.stop(signal.SIGTERM) == 0

    files = snapshots(first)
    assert files[-1].name.endswith("-shutdown.cfg")
    for path in files:
        assert "hunter2" not in path.read_text("latin-1")
        assert not path.name.startswith(".")  # no temporary files left behind
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0  # not readable by others

    # --models is ignored when a snapshot is restored, as in TorchServe.
    with RestartedServer(first, models=["other=missing.mar"]) as second:
        listing = httpx.get(second.management_url + "/models").json()
        assert listing["models"] == [{"modelName": "echo", "modelUrl": "echo.mar"}]
        [echo] = httpx.get(second.management_url + "/models/echo").json()
        assert (echo["minWorkers"], echo["batchSize"], echo["maxBatchDelay"]) == (2, 4, 20)
        assert len([w for w in echo["workers"] if w["status"] == "READY"]) == 2
        assert echo["loadedAtStartup"] is True
        reply = httpx.post(second.inference_url + "/predictions/echo", content=b"back", timeout=30)
        assert reply.status_code == 200 and reply.content == b"back"
        assert "Restoring the configuration and models of snapshot" in second.console_text()


def test_a_corrupt_newest_snapshot_falls_back_to_the_previous_one(tmp_path: Path, echo_store: Path) -> None:
    with EmberServer(tmp_path / "run", echo_store, models=["echo.mar"]) as first:
        pass
    [startup, shutdown] = snapshots(first)
    shutdown.write_bytes(shutdown.read_bytes()[:80])  # as if the machine died mid-write (TorchServe)

    with RestartedServer(first, models=[]) as second:
        listing = httpx.get(second.management_url + "/models").json()
        assert listing["models"] == [{"modelName": "echo", "modelUrl": "echo.mar"}]
        console = second.console_text()
        assert f"Ignoring config snapshot {shutdown}" in console
        assert f"Restoring the configuration and models of snapshot {startup}" in console


def test_ncs_writes_and_restores_nothing(tmp_path: Path, echo_store: Path) -> None:
    with EmberServer(tmp_path / "run", echo_store, models=["echo.mar"], extra_args=["--ncs"]) as server:
        assert httpx.get(server.management_url + "/models").json()["models"] != []
    assert snapshots(server) == []
