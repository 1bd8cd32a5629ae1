"""``emberserve`` start/stop/pid-file behaviour, as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import psutil

from tests.ember_server import EmberServer


def cli(
    args: list[str], env: dict[str, str], cwd: Path, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "emberserve", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_start_refuses_a_second_start_and_stop_stops(tmp_path: Path, echo_store: Path) -> None:
    server = EmberServer(tmp_path, echo_store, models=["echo=echo.mar"])
    server.tmp_dir.mkdir(parents=True)
    server.config_path.write_text(server.config_text())
    env = server.environment()
    args = [
        "--ts-config",
        str(server.config_path),
        "--model-store",
        str(echo_store),
        "--models",
        "echo=echo.mar",
    ]

    started = cli(["--start", *args], env, tmp_path)
    assert started.returncode == 0, started.stdout + started.stderr
    assert "Ember started" in started.stdout
    pid_file = server.tmp_dir / ".emberserve.pid"
    pid = int(pid_file.read_text())
    assert psutil.pid_exists(pid)
    server.wait_for_ping(200)
    reply = httpx.post(
        server.inference_url + "/predictions/echo", content=b"hi", headers={"content-type": "text/plain"}
    )
    assert reply.status_code == 200
    assert reply.text == "hi"

    again = cli(["--start", *args], env, tmp_path)
    assert again.returncode == 1
    assert "Ember is already running, please use emberserve --stop to stop Ember." in again.stdout

    workers = psutil.Process(pid).children(recursive=True)
    assert workers, "the echo model should have a worker process"
    stopped = cli(["--stop"], env, tmp_path)
    assert stopped.returncode == 0
    assert "Ember has stopped." in stopped.stdout
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    _, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive
    assert not pid_file.exists()

    assert "Ember is not currently running." in cli(["--stop"], env, tmp_path).stdout


def test_stale_pid_file_is_removed(tmp_path: Path, echo_store: Path) -> None:
    server = EmberServer(tmp_path, echo_store)
    server.tmp_dir.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (server.tmp_dir / ".emberserve.pid").write_text(f"{dead.pid}\n")
    out = cli(["--stop"], server.environment(), tmp_path)
    assert "Removing orphan pid file." in out.stdout
    assert "Ember is not currently running." in out.stdout


def test_version_and_help(tmp_path: Path) -> None:
    env = dict(os.environ)
    version = cli(["--version"], env, tmp_path)
    assert version.returncode == 0
    assert "Ember Version is" in version.stdout
    helptext = cli(["--help"], env, tmp_path)
    assert "--model-store" in helptext.stdout
    assert "--enable-model-api" in helptext.stdout


def test_missing_model_store_is_a_clear_error(tmp_path: Path) -> None:
    out = cli(["--foreground", "--model-store", str(tmp_path / "nope")], dict(os.environ), tmp_path)
    assert out.returncode == 1
    assert "--model-store directory not found" in out.stdout


def test_invalid_config_value_refuses_to_start(tmp_path: Path, echo_store: Path) -> None:
    config = tmp_path / "config.properties"
    config.write_text("job_queue_size=lots\n")
    out = cli(
        ["--foreground", "--ts-config", str(config), "--model-store", str(echo_store)],
        {**os.environ, "TMPDIR": str(tmp_path)},
        tmp_path,
    )
    assert out.returncode == 2
    assert "job_queue_size" in out.stdout
    assert "lots" in out.stdout


def test_foreground_sigterm_exits_zero_without_orphans(tmp_path: Path, echo_store: Path) -> None:
    with EmberServer(tmp_path, echo_store, models=["echo=echo.mar"]) as server:
        assert server.worker_processes()
    # __exit__ asserted that no worker survived; check the exit code of a second run explicitly
    with EmberServer(tmp_path / "again", echo_store, models=["echo=echo.mar"]) as server2:
        assert server2.stop() == 0
