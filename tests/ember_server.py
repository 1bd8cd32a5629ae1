"""Start a real Ember server as a subprocess for integration tests.

    with EmberServer(tmp_path, models_dir, extra_config={"enable_model_api": "true"}) as srv:
        httpx.get(srv.inference_url + "/ping")

Each server gets free loopback ports, its own cwd, temp dir, log dir and pid file. Leaving the
``with`` block stops it with SIGTERM and asserts that no process it started survives.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

import httpx
import psutil

START_TIMEOUT_S = 60.0


def free_ports(count: int) -> list[int]:
    """Ports nothing listens on right now (the OS hands out distinct ephemeral ports)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class EmberServer:
    """A running Ember server; see the module docstring."""

    def __init__(
        self,
        run_dir: Path,
        model_store: Path,
        *,
        models: Sequence[str] = (),
        extra_config: Mapping[str, str] | None = None,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        wait_healthy: bool = True,
    ) -> None:
        self.run_dir = run_dir
        self.model_store = model_store
        self.models = list(models)
        self.extra_config = dict(extra_config or {})
        self.extra_args = list(extra_args)
        self.env_overrides = dict(env or {})
        self.wait_healthy = wait_healthy
        self.proc: subprocess.Popen[bytes] | None = None
        inf, mgmt, met, grpc_inf, grpc_mgmt = free_ports(5)
        self.ports = {
            "inference": inf,
            "management": mgmt,
            "metrics": met,
            "grpc_inference": grpc_inf,
            "grpc_management": grpc_mgmt,
        }
        self.inference_url = f"http://127.0.0.1:{inf}"
        self.management_url = f"http://127.0.0.1:{mgmt}"
        self.metrics_url = f"http://127.0.0.1:{met}"
        self.log_dir = run_dir / "logs"
        self.tmp_dir = run_dir / "tmp"
        self.config_path = run_dir / "config.properties"
        self.console = run_dir / "console.log"
        self._descendants: list[psutil.Process] = []

    def config_text(self) -> str:
        lines = {
            "inference_address": self.inference_url,
            "management_address": self.management_url,
            "metrics_address": self.metrics_url,
            "grpc_inference_address": "127.0.0.1",
            "grpc_management_address": "127.0.0.1",
            "grpc_inference_port": str(self.ports["grpc_inference"]),
            "grpc_management_port": str(self.ports["grpc_management"]),
            "model_store": str(self.model_store),
            "disable_token_authorization": "true",
            "default_workers_per_model": "1",
        }
        lines.update(self.extra_config)
        return "".join(f"{k}={v}\n" for k, v in lines.items())

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TS_")}
        env.update(
            {
                "TMPDIR": str(self.tmp_dir),
                "TEMP": str(self.tmp_dir),
                "LOG_LOCATION": str(self.log_dir),
                "METRICS_LOCATION": str(self.log_dir),
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.env_overrides)
        return env

    def command(self) -> list[str]:
        cmd = [
            sys.executable,
            "-m",
            "emberserve",
            "--foreground",
            "--ts-config",
            str(self.config_path),
            "--model-store",
            str(self.model_store),
        ]
        if self.models:
            cmd += ["--models", *self.models]
        return cmd + self.extra_args

    def start(self) -> EmberServer:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(exist_ok=True)
        self.config_path.write_text(self.config_text())
        with self.console.open("wb") as out:
            self.proc = subprocess.Popen(
                self.command(), cwd=self.run_dir, env=self.environment(), stdout=out, stderr=subprocess.STDOUT
            )
        self._wait_listening()
        if self.wait_healthy:
            self.wait_for_ping(200)
        return self

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        assert self.proc is not None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Ember exited with {self.proc.returncode}:\n{self.console_text()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.ports["inference"]), 1),
            ):
                return
            time.sleep(0.05)
        raise TimeoutError(f"Ember did not listen within {START_TIMEOUT_S}s:\n{self.console_text()}")

    def wait_for_ping(
        self, status: int, timeout_s: float = START_TIMEOUT_S, headers: Mapping[str, str] | None = None
    ) -> None:
        deadline = time.monotonic() + timeout_s
        last = None
        while time.monotonic() < deadline:
            last = httpx.get(self.inference_url + "/ping", timeout=5, headers=headers)
            if last.status_code == status:
                return
            time.sleep(0.05)
        raise TimeoutError(
            f"/ping never answered {status} (last: {last and last.status_code}):\n{self.console_text()}"
        )

    def console_text(self) -> str:
        try:
            return self.console.read_text(errors="replace")[-8000:]
        except OSError:
            return ""

    def worker_processes(self) -> list[psutil.Process]:
        assert self.proc is not None
        try:
            return psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30.0) -> int:
        """Stop the server; returns its exit code and asserts none of its processes survive."""
        if self.proc is None:
            return 0
        descendants = self.worker_processes()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                raise AssertionError(
                    f"Ember did not stop within {timeout_s}s:\n{self.console_text()}"
                ) from None
        _, alive = psutil.wait_procs(descendants, timeout=10)
        for p in alive:
            with contextlib.suppress(psutil.Error):
                p.kill()
        assert not alive, f"processes outlived the server: {alive}"
        code = self.proc.returncode
        self.proc = None
        return code

    def __enter__(self) -> EmberServer:
        try:
            return self.start()
        except BaseException:
            self.stop()  # a server that never became healthy must not outlive the test
            raise

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None and self.proc is not None:
            sys.stderr.write(self.console_text())
        self.stop()


def keys(server: EmberServer) -> dict[str, str]:
    """The server's token authorization keys from its ``key_file.json``, by kind."""
    document = json.loads((server.run_dir / "key_file.json").read_bytes())
    return {name: entry["key"] for name, entry in document.items()}


def bearer(key: str) -> dict[str, str]:
    """The ``Authorization`` header that presents ``key``."""
    return {"Authorization": f"Bearer {key}"}
