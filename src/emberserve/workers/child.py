"""The worker process: ``python -m emberserve.workers.child --fd N [--max-response-bytes B]``.

The frontend spawns one of these per worker (never forked from itself), in a new session, with
one end of a ``socketpair`` inherited as fd ``N``, and reads its stdout/stderr into the model
log. The conversation is :mod:`emberserve.workers.protocol`'s:

1. wait for ``LoadModel``; make ``model_dir`` the cwd and the first entry of ``sys.path``;
   serve TorchServe's ``ts.*`` imports from Ember (:mod:`emberserve.handlers.compat`); load the
   handler; answer ``Loaded`` — or ``LoadFailed`` and exit with status 1;
2. for each ``Predict``: run the handler (:class:`~emberserve.handlers.service.HandlerService`),
   sending any ``StreamChunk`` as the handler produces it, then one ``MetricsReport`` if metrics
   were recorded, then exactly one ``Predicted``. Before each chunk the socket is polled without
   blocking: a ``Cancel`` makes the chunk raise ``StreamCancelled`` in the handler (other frames
   wait for the batch to end);
3. ``Shutdown`` or end of file → exit 0.

A worker never outlives its frontend: on Linux the kernel SIGKILLs it when its parent dies
(``PR_SET_PDEATHSIG``), and it exits when the socket reaches EOF. Handler logging and ``print``
go to stdout, as in TorchServe; the worker's own messages (tracebacks of failed batches) go to
stderr. Nothing here imports torch: a handler that does not need it never loads it.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from io import TextIOWrapper
from typing import NoReturn

from emberserve.handlers import compat, inputs
from emberserve.handlers.loader import HandlerLoadError
from emberserve.handlers.metrics import DEFAULT_SINK
from emberserve.handlers.outputs import ResponseTooLargeError, fit_results, response_size
from emberserve.handlers.service import HandlerService
from emberserve.handlers.streaming import StreamCancelled
from emberserve.workers import protocol

log = logging.getLogger("emberserve.worker")

#: Bytes of protocol framing (ids, headers, msgpack) allowed on top of the response bodies.
FRAME_MARGIN_BYTES = 1 << 20
#: Default cap for one response when the frontend does not say (fits in the largest frame).
DEFAULT_MAX_RESPONSE_BYTES = protocol.DEFAULT_MAX_FRAME_BYTES - FRAME_MARGIN_BYTES
_RECV_BYTES = 1 << 20
_LOAD_MESSAGE_CHARS = 500
_PR_SET_PDEATHSIG = 1

EXIT_OK = 0
EXIT_LOAD_FAILED = 1
EXIT_PROTOCOL_ERROR = 2


class Worker:
    """Serves one model over ``sock`` until Shutdown or EOF; see the module docstring."""

    def __init__(self, sock: socket.socket, max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES) -> None:
        self.sock = sock
        self.max_response_bytes = max_response_bytes
        self.service: HandlerService | None = None
        self._decoder = protocol.Decoder(max_frame_bytes=protocol.DEFAULT_MAX_FRAME_BYTES)
        # Handlers may stream from their own threads; frames must not interleave.
        self._send_lock = threading.Lock()
        # Frames read while a batch runs (see _poll_cancel), served after it.
        self._deferred: list[protocol.Message] = []
        self._poll_lock = threading.Lock()
        self._in_batch = False
        self._cancelled = False

    def send(self, *messages: protocol.Message) -> None:
        """Send messages as one write (a batch's metrics and results cost one system call)."""
        frames = [protocol.encode(m) for m in messages]
        data = frames[0] if len(frames) == 1 else b"".join(frames)
        with self._send_lock:
            self.sock.sendall(data)

    def serve(self) -> int:
        """Run the conversation; return the process exit status."""
        try:
            while True:
                while self._deferred:
                    status = self._dispatch(self._deferred.pop(0))
                    if status is not None:
                        return status
                data = self.sock.recv(_RECV_BYTES)
                if not data:
                    return EXIT_OK  # the frontend is gone (or closed our end): never outlive it
                try:
                    messages = self._decoder.feed(data)
                except protocol.ProtocolError as exc:
                    log.error("Invalid frame from the frontend: %s", exc)
                    return EXIT_PROTOCOL_ERROR
                for message in messages:
                    status = self._dispatch(message)
                    if status is not None:
                        return status
        except (ConnectionResetError, BrokenPipeError):
            return EXIT_OK

    def _dispatch(self, message: protocol.Message) -> int | None:
        match message:
            case protocol.Predict(batch) if self.service is not None:
                self._predict(self.service, batch)
                return None
            case protocol.LoadModel() if self.service is None:
                return self._load(message)
            case protocol.Shutdown():
                return EXIT_OK
            case protocol.Cancel():
                return None  # the batch it meant was answered before it arrived
        log.error("Unexpected %s message from the frontend", type(message).__name__)
        return EXIT_PROTOCOL_ERROR

    def _load(self, message: protocol.LoadModel) -> int | None:
        start = time.perf_counter()
        try:
            os.chdir(message.model_dir)
            sys.path.insert(0, message.model_dir)
            compat.install()
            self.service = HandlerService.load(message, stream_sink=self._stream)
        except Exception as exc:
            detail = traceback.format_exc()
            sys.stderr.write(detail)
            self.send(*self._metrics(), protocol.LoadFailed(_short_message(exc), detail))
            return EXIT_LOAD_FAILED
        load_ms = (time.perf_counter() - start) * 1000
        self.send(*self._metrics(), protocol.Loaded(os.getpid(), round(load_ms, 3)))
        inputs.preload()  # while the frontend routes the first request here, not during it
        return None

    def _predict(self, service: HandlerService, batch: list[protocol.Request]) -> None:
        self._cancelled = False
        self._in_batch = True
        try:
            output = service.predict(batch)
        finally:
            self._in_batch = False
        results = fit_results(
            output,
            max_response_bytes=self.max_response_bytes,
            max_total_bytes=protocol.DEFAULT_MAX_FRAME_BYTES - FRAME_MARGIN_BYTES,
        )
        self.send(*self._metrics(), protocol.Predicted(results))

    @staticmethod
    def _metrics() -> list[protocol.Message]:
        """A MetricsReport of the records collected so far, if any."""
        # Every metric of this worker lands in the default sink (context.metrics included).
        records = DEFAULT_SINK.drain()
        return [protocol.MetricsReport(records)] if records else []

    def _stream(self, result: protocol.Result) -> None:
        if self._poll_cancel():
            raise StreamCancelled(f"the client of request {result.request_id} is gone")
        size = response_size(result)
        if size > self.max_response_bytes:
            raise ResponseTooLargeError(size, self.max_response_bytes)
        self.send(protocol.StreamChunk(result))

    def _poll_cancel(self) -> bool:
        """Read what the frontend sent during this batch, without blocking; True once cancelled."""
        with self._poll_lock:
            if self._cancelled or not self._in_batch:
                return self._cancelled
            while True:
                try:
                    data = self.sock.recv(_RECV_BYTES, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    return False
                except OSError:
                    data = b""
                if not data:
                    # The frontend is gone: nobody will read this stream. serve() sees EOF next.
                    self._cancelled = True
                    return True
                try:
                    messages = self._decoder.feed(data)
                except protocol.ProtocolError as exc:
                    log.error("Invalid frame from the frontend: %s", exc)
                    _exit(EXIT_PROTOCOL_ERROR)
                for message in messages:
                    if isinstance(message, protocol.Cancel):
                        self._cancelled = True
                    else:
                        self._deferred.append(message)
                if self._cancelled:
                    return True


def _short_message(exc: BaseException) -> str:
    text = str(exc) if isinstance(exc, HandlerLoadError) else f"{type(exc).__name__}: {exc}"
    return text if len(text) <= _LOAD_MESSAGE_CHARS else text[: _LOAD_MESSAGE_CHARS - 1] + "…"


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies; exit now if it already has."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    import ctypes  # noqa: PLC0415 - Linux only

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        log.warning("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
    if os.getppid() != parent:  # the parent died before the prctl took effect
        _exit(EXIT_OK)


def configure_logging() -> None:
    """Handler logs → stdout as plain messages (TorchServe's format); Ember's own → stderr."""
    if isinstance(sys.stdout, TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)  # prints reach the model log at once
    root = logging.getLogger()
    stdout = logging.StreamHandler(sys.stdout)
    stdout.setFormatter(logging.Formatter("%(message)s"))
    root.addHandler(stdout)
    root.setLevel(logging.INFO)
    ours = logging.getLogger("emberserve")
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    ours.addHandler(stderr)
    ours.propagate = False


def _exit(status: int) -> NoReturn:
    # os._exit: threads a handler started must not keep a dismissed worker alive.
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(status)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m emberserve.workers.child", description=__doc__)
    parser.add_argument("--fd", type=int, required=True, help="inherited socket to the frontend")
    parser.add_argument(
        "--max-response-bytes",
        type=int,
        default=DEFAULT_MAX_RESPONSE_BYTES,
        help="largest response body sent to the frontend (bigger ones become an error for that request)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Entry point of the worker process."""
    args = _parse_args(argv)
    die_with_parent()
    configure_logging()
    sock = socket.socket(fileno=args.fd)
    status = Worker(sock, max(1, args.max_response_bytes)).serve()
    _exit(status)


if __name__ == "__main__":
    main()
