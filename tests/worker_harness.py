"""Drive a real worker process (``python -m emberserve.workers.child``) over a socketpair.

Reusable by any test that needs a real worker without the frontend::

    from tests.worker_harness import WorkerHarness, make_request, write_model_dir

    model_dir = write_model_dir(tmp_path / "m", {"h.py": "def handle(d, c):\\n    return d and ['ok']"}, "h")
    with WorkerHarness.spawn() as worker:
        assert isinstance(worker.load(model_dir, "h"), protocol.Loaded)
        outcome = worker.predict([make_request(b"hi")])
        assert outcome.results[0].body == b"ok"

The harness plays the frontend's part: it owns one end of the socketpair, sends protocol
messages, decodes the worker's frames, and drains the worker's stdout/stderr in background
threads (so a chatty handler never blocks) for :meth:`WorkerHarness.output`. Every wait is
bounded; :meth:`WorkerHarness.close` (or leaving the ``with`` block) kills the worker if it is
still running and releases every descriptor.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Self

from emberserve.workers import protocol

WORKER_ARGV = (sys.executable, "-m", "emberserve.workers.child")
DEFAULT_TIMEOUT = 30.0
_ids = itertools.count(1)


# -- building messages --------------------------------------------------------------------------


def make_request(
    body: bytes | str = b"",
    content_type: str = "text/plain",
    *,
    request_id: str | None = None,
    kind: protocol.RequestKind = "predict",
    headers: Sequence[tuple[str, str]] | None = None,
    inputs: Sequence[protocol.Input] | None = None,
) -> protocol.Request:
    """A Request as the frontend builds it: one ``body`` input (or ``inputs``) and TorchServe's headers.

    Without ``headers``, a predict/explain request carries ``explain: False/True`` and a describe
    request ``describe: True``, like the frontend adds them.
    """
    if headers is None:
        headers = [("describe", "True")] if kind == "describe" else [("explain", str(kind == "explain"))]
    if inputs is None:
        raw = body.encode() if isinstance(body, str) else body
        inputs = [] if kind == "describe" else [protocol.Input("body", content_type, raw)]
    return protocol.Request(request_id or f"req-{next(_ids)}", kind, list(headers), list(inputs))


def write_model_dir(
    directory: Path,
    files: Mapping[str, str | bytes],
    handler: str,
    *,
    model_name: str = "model",
    version: str = "1.0",
    **model_fields: str,
) -> Path:
    """Write ``files`` and a ``MAR-INF/MANIFEST.json`` (as torch-model-archiver would) into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        path = directory / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    manifest = {
        "createdOn": "01/01/2026 00:00:00",
        "runtime": "python",
        "model": {"modelName": model_name, "handler": handler, "modelVersion": version, **model_fields},
        "archiverVersion": "0.12.0",
    }
    (directory / "MAR-INF").mkdir(exist_ok=True)
    (directory / "MAR-INF" / "MANIFEST.json").write_text(json.dumps(manifest, indent=2))
    return directory


def load_message(model_dir: Path | str, handler: str | None = None, **fields: Any) -> protocol.LoadModel:
    """A LoadModel for ``model_dir``; the manifest is read from its ``MAR-INF/MANIFEST.json``.

    ``handler`` defaults to the manifest's; any LoadModel field can be overridden by keyword.
    """
    model_dir = Path(model_dir).resolve()
    manifest_path = model_dir / "MAR-INF" / "MANIFEST.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    model = manifest.get("model", {})
    values: dict[str, Any] = {
        "model_name": model.get("modelName", "model"),
        "model_version": model.get("modelVersion", "1.0"),
        "model_dir": str(model_dir),
        "handler": handler if handler is not None else model.get("handler", ""),
        "manifest": manifest,
        "batch_size": 1,
        "gpu_id": None,
        "envelope": None,
        "limit_max_image_pixels": True,
        "model_yaml_config": {},
        "server_version": "0.12.0",
        "decode_input_request": True,
    }
    values.update(fields)
    return protocol.LoadModel(**values)


# -- the harness ----------------------------------------------------------------------------------


@dataclass
class PredictOutcome:
    """Everything a worker sent for one Predict: streamed chunks, metric records, final results."""

    results: list[protocol.Result]
    chunks: list[protocol.Result] = field(default_factory=list)
    metrics: list[protocol.MetricRecord] = field(default_factory=list)

    def metric(self, name: str) -> protocol.MetricRecord:
        """The first record named ``name`` (AssertionError if there is none)."""
        for record in self.metrics:
            if record.name == name:
                return record
        raise AssertionError(f"no metric {name!r} in {[r.name for r in self.metrics]}")


class _Drain(threading.Thread):
    """Reads a pipe to the end in the background, keeping what it read."""

    def __init__(self, pipe: IO[bytes]) -> None:
        super().__init__(daemon=True)
        self.pipe = pipe
        self.chunks: list[bytes] = []

    def run(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            # read1: whatever is available, so output shows up while the worker runs.
            for chunk in iter(lambda: self.pipe.read1(65536), b""):  # type: ignore[attr-defined]
                self.chunks.append(chunk)

    def text(self) -> str:
        return b"".join(self.chunks).decode("utf-8", "replace")


class WorkerHarness:
    """One real worker process and the frontend end of its socket; see the module docstring."""

    def __init__(self, process: subprocess.Popen[bytes], sock: socket.socket) -> None:
        self.process = process
        self.sock = sock
        self._decoder = protocol.Decoder()
        self._pending: deque[protocol.Message] = deque()
        assert process.stdout is not None
        assert process.stderr is not None
        self._stdout = _Drain(process.stdout)
        self._stderr = _Drain(process.stderr)
        self._stdout.start()
        self._stderr.start()

    @classmethod
    def spawn(
        cls,
        *,
        argv: Sequence[str] = WORKER_ARGV,
        extra_args: Iterable[str] = (),
        env: Mapping[str, str] | None = None,
        cwd: Path | str | None = None,
    ) -> Self:
        """Start ``argv --fd N *extra_args`` the way the frontend does (own session, inherited socket)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            process = subprocess.Popen(
                [*argv, "--fd", str(theirs.fileno()), *extra_args],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                env=None if env is None else dict(env),
                cwd=cwd,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        return cls(process, ours)

    # -- plumbing --------------------------------------------------------------------------------

    @property
    def pid(self) -> int:
        return self.process.pid

    def send(self, message: protocol.Message) -> None:
        self.sock.sendall(protocol.encode(message))

    def recv(self, timeout: float = DEFAULT_TIMEOUT) -> protocol.Message:
        """The next message from the worker; TimeoutError, or EOFError when the worker closed the socket."""
        deadline = time.monotonic() + timeout
        while not self._pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no message from the worker within {timeout} s\n{self.output()}")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(1 << 20)
            except TimeoutError:
                continue
            if not data:
                raise EOFError(f"the worker closed its socket\n{self.output()}")
            self._pending.extend(self._decoder.feed(data))
        return self._pending.popleft()

    def wait(self, timeout: float = DEFAULT_TIMEOUT) -> int:
        """Wait for the worker to exit; its exit status."""
        return self.process.wait(timeout)

    def output(self) -> str:
        """What the worker wrote so far, stdout then stderr (for assertions and failure messages)."""
        return f"--- worker stdout ---\n{self._stdout.text()}--- worker stderr ---\n{self._stderr.text()}"

    def stdout(self) -> str:
        return self._stdout.text()

    def stderr(self) -> str:
        return self._stderr.text()

    # -- conversation --------------------------------------------------------------------------

    def load(
        self,
        model_dir: Path | str,
        handler: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        **fields: Any,
    ) -> protocol.Loaded | protocol.LoadFailed:
        """Send LoadModel (see :func:`load_message`) and return the worker's answer.

        Metric records sent during the load are kept in :attr:`load_metrics`.
        """
        self.send(load_message(model_dir, handler, **fields))
        self.load_metrics: list[protocol.MetricRecord] = []
        while True:
            message = self.recv(timeout)
            if isinstance(message, protocol.MetricsReport):
                self.load_metrics.extend(message.records)
                continue
            assert isinstance(message, protocol.Loaded | protocol.LoadFailed), message
            return message

    def predict(
        self, requests: Sequence[protocol.Request], *, timeout: float = DEFAULT_TIMEOUT
    ) -> PredictOutcome:
        """Send one Predict batch and collect chunks, metrics and the final results."""
        self.send(protocol.Predict(list(requests)))
        chunks: list[protocol.Result] = []
        metrics: list[protocol.MetricRecord] = []
        while True:
            message = self.recv(timeout)
            match message:
                case protocol.StreamChunk(result):
                    chunks.append(result)
                case protocol.MetricsReport(records):
                    metrics.extend(records)
                case protocol.Predicted(results):
                    return PredictOutcome(results, chunks, metrics)
                case _:
                    raise AssertionError(f"unexpected message during a batch: {message!r}")

    def predict_one(
        self, body: bytes | str = b"", content_type: str = "text/plain", **kw: Any
    ) -> protocol.Result:
        """Predict a single request and return its Result."""
        [result] = self.predict([make_request(body, content_type, **kw)]).results
        return result

    def shutdown(self, timeout: float = DEFAULT_TIMEOUT) -> int:
        """Send Shutdown and wait for the exit status."""
        self.send(protocol.Shutdown())
        return self.wait(timeout)

    # -- cleanup -------------------------------------------------------------------------------

    def close(self) -> None:
        """Kill the worker if it still runs and release the socket, pipes and threads."""
        with contextlib.suppress(OSError):
            self.sock.close()
        if self.process.poll() is None:
            self.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)
        for drain in (self._stdout, self._stderr):
            drain.join(5)
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = [
    "WORKER_ARGV",
    "PredictOutcome",
    "WorkerHarness",
    "load_message",
    "make_request",
    "write_model_dir",
]
