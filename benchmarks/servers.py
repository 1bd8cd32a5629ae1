"""Start and stop Ember and TorchServe 0.12 with identical settings, and measure their process trees."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

#: Where the reference TorchServe is installed (its own venv; never the project's).
TS_VENV = Path(os.environ.get("EMBER_BENCH_TS_VENV", Path.home() / ".cache" / "ember-bench" / "ts-venv"))
TS_PACKAGES = [
    "torch==2.13.0", "torchserve==0.12.0", "torch-model-archiver==0.12.0", "psutil", "requests", "pyyaml",
    "packaging", "pillow", "numpy", "grpcio", "protobuf", "googleapis-common-protos",
]  # fmt: skip


def ensure_torchserve() -> Path:
    """The TorchServe venv, installed on first use (about 1.5 minutes and 1.1 GB)."""
    if not (TS_VENV / "bin" / "torchserve").exists():
        print(f"Installing TorchServe 0.12 into {TS_VENV} (first run only)...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(TS_VENV)], check=True)
        subprocess.run([str(TS_VENV / "bin" / "pip"), "install", "-q", *TS_PACKAGES], check=True)
    if shutil.which("java") is None:
        raise SystemExit("TorchServe needs Java 11+: apt-get install -y openjdk-17-jre-headless")
    return TS_VENV


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """One running server (``kind`` is "ember" or "torchserve")."""

    kind: str
    run_dir: Path
    store: Path
    ports: dict[str, int] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    pid: int | None = None
    started_s: float = 0.0

    @property
    def inference(self) -> str:
        return f"http://127.0.0.1:{self.ports['inference']}"

    @property
    def metrics(self) -> str:
        return f"http://127.0.0.1:{self.ports['metrics']}"

    @property
    def management(self) -> str:
        return f"http://127.0.0.1:{self.ports['management']}"

    @property
    def grpc_inference(self) -> str:
        return f"127.0.0.1:{self.ports['grpc_inference']}"

    def start(self, extra_config: str = "") -> float:
        """Start without models; returns seconds until /ping answered 200 (cold start)."""
        if self.run_dir.exists():
            shutil.rmtree(self.run_dir)
        (self.run_dir / "tmp").mkdir(parents=True)
        self.ports = {
            k: free_port() for k in ("inference", "management", "metrics", "grpc_inference", "grpc_mgmt")
        }
        config = self.run_dir / "config.properties"
        config.write_text(
            f"inference_address={self.inference}\nmanagement_address={self.management}\n"
            f"metrics_address=http://127.0.0.1:{self.ports['metrics']}\n"
            f"grpc_inference_address=127.0.0.1\ngrpc_management_address=127.0.0.1\n"
            f"grpc_inference_port={self.ports['grpc_inference']}\ngrpc_management_port={self.ports['grpc_mgmt']}\n"
            f"model_store={self.store}\ndisable_token_authorization=true\nenable_model_api=true\n"
            "default_workers_per_model=1\njob_queue_size=1000\n" + extra_config
        )
        env = {
            **os.environ,
            "TMPDIR": str(self.run_dir / "tmp"),
            "TEMP": str(self.run_dir / "tmp"),
            "LOG_LOCATION": str(self.run_dir / "logs"),
            "METRICS_LOCATION": str(self.run_dir / "logs"),
        }
        if self.kind == "ember":
            command = [sys.executable, "-m", "emberserve", "--foreground", "--ncs"]
        else:
            command = [str(TS_VENV / "bin" / "torchserve"), "--start", "--foreground", "--ncs"]
        command += ["--ts-config", str(config), "--model-store", str(self.store)]
        began = time.perf_counter()
        with (self.run_dir / "console.log").open("wb") as out:
            self.proc = subprocess.Popen(
                command, cwd=self.run_dir, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.kind} exited: {(self.run_dir / 'console.log').read_text()[-3000:]}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.inference + "/ping", timeout=2).status_code == 200:
                    break
            time.sleep(0.02)
        else:
            raise RuntimeError(f"{self.kind} did not become healthy")
        self.started_s = time.perf_counter() - began
        self.pid = self._frontend_pid()
        return self.started_s

    def _frontend_pid(self) -> int:
        assert self.proc is not None
        if self.kind == "ember":
            return self.proc.pid
        # torchserve --foreground runs java as its child.
        for child in psutil.Process(self.proc.pid).children(recursive=True):
            if "java" in child.name():
                return child.pid
        return self.proc.pid

    def register(
        self, model: str, workers: int = 1, batch_size: int = 1, max_batch_delay: int = 100
    ) -> float:
        """Register ``model.mar`` synchronously; returns the seconds it took."""
        params = {
            "url": f"{model}.mar", "initial_workers": str(workers), "synchronous": "true",
            "batch_size": str(batch_size), "max_batch_delay": str(max_batch_delay),
        }  # fmt: skip
        began = time.perf_counter()
        reply = httpx.post(self.management + "/models", params=params, timeout=300)
        if reply.status_code != 200:
            raise RuntimeError(f"{self.kind}: register {model}: {reply.status_code} {reply.text}")
        return time.perf_counter() - began

    def scale(self, model: str, workers: int) -> float:
        began = time.perf_counter()
        reply = httpx.put(
            f"{self.management}/models/{model}",
            params={"min_worker": str(workers), "synchronous": "true"},
            timeout=300,
        )
        if reply.status_code != 200:
            raise RuntimeError(f"{self.kind}: scale {model}: {reply.status_code} {reply.text}")
        return time.perf_counter() - began

    def unregister(self, model: str) -> float:
        began = time.perf_counter()
        reply = httpx.delete(f"{self.management}/models/{model}", timeout=300)
        if reply.status_code != 200:
            raise RuntimeError(f"{self.kind}: unregister {model}: {reply.status_code} {reply.text}")
        return time.perf_counter() - began

    def tree(self) -> list[psutil.Process]:
        assert self.proc is not None
        root = psutil.Process(self.proc.pid)
        return [root, *root.children(recursive=True)]

    def cpu_seconds(self) -> float:
        total = 0.0
        for p in self.tree():
            with contextlib.suppress(psutil.Error):
                times = p.cpu_times()
                total += times.user + times.system
        return total

    def rss(self) -> tuple[float, list[float]]:
        """(frontend MB, [worker MB]) — workers are the tree's python processes other than the frontend."""
        frontend = psutil.Process(self.pid).memory_info().rss / 2**20 if self.pid else 0.0
        workers = []
        for p in self.tree():
            with contextlib.suppress(psutil.Error):
                if (
                    p.pid not in (self.pid, self.proc.pid if self.proc else None)
                    and "python" in p.name().lower()
                ):
                    workers.append(p.memory_info().rss / 2**20)
        return frontend, workers

    def stop(self) -> None:
        if self.proc is None:
            return
        processes = self.tree()
        # TorchServe's launcher does not pass SIGTERM on to its JVM: signal the frontend itself.
        for pid in {self.pid, self.proc.pid}:
            with contextlib.suppress(ProcessLookupError, TypeError):
                os.kill(pid, signal.SIGTERM)  # type: ignore[arg-type]
        _, alive = psutil.wait_procs(processes, timeout=30)
        for p in alive:
            with contextlib.suppress(psutil.Error):
                p.kill()
        psutil.wait_procs(alive, timeout=10)
        self.proc = None
