"""The frontend's handle on one worker process.

A :class:`WorkerProcess` spawns ``python -m emberserve.workers.child --fd N --max-response-bytes B``
in a new session (so the worker and everything it starts form one process group the frontend can
kill at once), talks to it over an inherited ``socketpair`` end using
:mod:`emberserve.workers.protocol`, and
forwards its stdout/stderr line by line to the ``emberserve.model_log`` logger as
``W-<id>-<model>_<version>-stdout <line>`` (TorchServe's thread names).

Life of a worker::

    STARTING ──Loaded──▶ READY ◀──▶ BUSY (one batch at a time)
        │                  │           │ timeout / EOF / exit / protocol error
        └── LoadFailed, ───┴───────────┴──▶ DEAD (process group killed)
            exit, timeout       stop() ──▶ STOPPING ──▶ DEAD

Nothing a worker starts outlives it: a stop or a death SIGKILLs the worker's process group, the
descendants seen just before, and (swept from a thread) every process whose environment still
carries the worker's random ``EMBER_WORKER_TAG`` — which catches double-forked daemons that left
both the group and the session.

A batch fails as a whole with :class:`~emberserve.errors.WorkerDiedError` ("Worker died.", as
TorchServe answers) when the worker dies under it or stays silent for ``response_timeout``; the
jobs of other workers are never touched. Nothing the worker sends is trusted: frames are size
capped, every message is checked against what was asked, and any violation kills the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import secrets
import signal
import socket
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime

import psutil

from emberserve.batching import Job
from emberserve.errors import EmberError, WorkerDiedError
from emberserve.workers import protocol

log = logging.getLogger("emberserve.workers")
model_log = logging.getLogger("emberserve.model_log")

#: TorchServe's default ``max_response_size``.
DEFAULT_MAX_RESPONSE_BYTES = 6_553_500
#: Longest worker output line copied to the log; the rest of the line is dropped.
MAX_LOG_LINE = 8192
#: How long a worker may ignore SIGTERM before it gets SIGKILL.
TERM_GRACE_S = 1.0
#: How long to wait for a SIGKILLed process to be reaped (it may be stuck in the kernel).
REAP_TIMEOUT_S = 10.0
#: Slack for frame overhead (ids, headers, msgpack framing) on top of the response bodies.
FRAME_OVERHEAD_BYTES = 1 << 20
_STDERR_TAIL_LINES = 20
#: Environment variable carrying a random per-worker tag: whatever the worker starts inherits it,
#: so descendants that left its process group and session can still be found and killed.
WORKER_TAG_VAR = "EMBER_WORKER_TAG"


class WorkerStartError(EmberError):
    """A worker could not load its model.

    ``message`` is short and safe to log at ERROR level (the handler's exception line, a timeout, an
    exit code); ``detail`` is the worker's traceback or output tail, for DEBUG logs only. The
    management API turns this into TorchServe's "Failed to start workers for model X version: Y".
    """

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class WorkerState(enum.Enum):
    NEW = "NEW"
    STARTING = "STARTING"
    READY = "READY"
    BUSY = "BUSY"
    STOPPING = "STOPPING"
    DEAD = "DEAD"


class _Batch:
    """The jobs of the batch a worker is running, by request id."""

    __slots__ = ("cancelled", "done", "jobs")

    def __init__(self, jobs: list[Job], done: asyncio.Future[None]) -> None:
        self.jobs = {job.request.request_id: job for job in jobs}
        self.done = done
        self.cancelled = False  # a Cancel frame was sent: every client is gone

    def abandoned(self) -> bool:
        """No client waits for any job of the batch any more."""
        return all(job.future.done() for job in self.jobs.values())


class WorkerProcess:
    """Parent-side handle of ONE worker process (see the module docstring).

    ``argv`` is the command without ``--fd N --max-response-bytes B`` (default ``[sys.executable, "-m",
    "emberserve.workers.child"]`` is chosen by the pool); ``on_metrics`` receives handler metric
    records; ``on_exit`` is called once when the worker is known dead.
    """

    def __init__(
        self,
        worker_id: int | str,
        model_name: str,
        model_version: str,
        *,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        on_metrics: Callable[[list[protocol.MetricRecord]], None] | None = None,
        on_exit: Callable[[WorkerProcess], None] | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        batch_size: int = 1,
        gpu_id: int | None = None,
    ) -> None:
        self.worker_id = str(worker_id)
        self.name = f"W-{self.worker_id}-{model_name}_{model_version}"
        self.pid: int | None = None
        self.start_time = datetime.now(UTC)
        self.state = WorkerState.NEW
        self.gpu_id = gpu_id
        self.load_ms: float | None = None
        #: Why the worker died ("exit code 1", "killed by SIGKILL", "response timeout"…), None while alive.
        self.exit_reason: str | None = None
        self._argv = list(argv)
        self._tag = f"{os.getpid()}-{self.worker_id}-{secrets.token_hex(8)}"
        self._env = {**(os.environ if env is None else env), WORKER_TAG_VAR: self._tag}
        self._cwd = cwd
        self._on_metrics = on_metrics
        self._on_exit = on_exit
        self._max_response_bytes = max_response_bytes
        self._decoder = protocol.Decoder(
            max_frame_bytes=max_response_bytes * max(1, batch_size) + FRAME_OVERHEAD_BYTES
        )
        self._transport: asyncio.SubprocessTransport | None = None
        self._pipes: _WorkerPipes | None = None
        self._channel: asyncio.Transport | None = None
        self._exited: asyncio.Future[None] | None = None
        self._load_waiter: asyncio.Future[protocol.Loaded] | None = None
        self._batch: _Batch | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timeout_s = 0.0
        self._cause: str | None = None  # why *we* ended it (timeout, protocol error), if we did
        self._stderr_tail: deque[str] = deque(maxlen=_STDERR_TAIL_LINES)
        self._exit_reported = False
        self._group_killed = False
        self._strays: list[psutil.Process] = []

    # -- public state -------------------------------------------------------------------------

    @property
    def status(self) -> str:
        """TorchServe's describe value: ``READY`` when serving, ``UNLOADING`` otherwise."""
        return "READY" if self.state in (WorkerState.READY, WorkerState.BUSY) else "UNLOADING"

    @property
    def alive(self) -> bool:
        """True while the worker can take (or is running) a batch."""
        return self.state in (WorkerState.READY, WorkerState.BUSY)

    @property
    def returncode(self) -> int | None:
        return self._transport.get_returncode() if self._transport is not None else None

    def memory_usage(self) -> int:
        """Resident set size of the worker process in bytes (0 when it is gone)."""
        if self.pid is None or self.state is WorkerState.DEAD:
            return 0
        try:
            return int(psutil.Process(self.pid).memory_info().rss)
        except (psutil.Error, OSError):
            return 0

    # -- start --------------------------------------------------------------------------------

    async def start(self, load: protocol.LoadModel, startup_timeout_s: float) -> None:
        """Spawn the worker, send ``load`` and wait for it to load the model.

        Raises :class:`WorkerStartError` (the worker is then dead and its group killed) when the
        process cannot be spawned, reports LoadFailed, exits, or is not ready within
        ``startup_timeout_s``.
        """
        if self.state is not WorkerState.NEW:
            raise RuntimeError(f"{self.name} was already started")
        self.state = WorkerState.STARTING
        loop = asyncio.get_running_loop()
        self._exited = loop.create_future()
        self._load_waiter = loop.create_future()
        try:
            await self._spawn(loop)
            assert self._channel is not None
            self._channel.write(protocol.encode(load))
            async with asyncio.timeout(startup_timeout_s):
                loaded = await self._load_waiter
        except TimeoutError:
            self._fail_start(f"Worker did not load the model within {startup_timeout_s:g} s")
            raise self._start_error(
                f"{self.name} did not load the model within {startup_timeout_s:g} s"
            ) from None
        except WorkerStartError:
            raise
        except OSError as exc:
            self._fail_start(f"spawn failed: {exc}")
            raise WorkerStartError(f"{self.name} could not be started: {exc.strerror or exc}") from exc
        except BaseException:
            self._fail_start("start aborted")
            raise
        self.load_ms = loaded.load_ms
        self.state = WorkerState.READY
        log.info("%s loaded the model in %.0f ms (pid %s)", self.name, loaded.load_ms, self.pid)

    async def _spawn(self, loop: asyncio.AbstractEventLoop) -> None:
        parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            fd = child_sock.fileno()
            transport, pipes = await loop.subprocess_exec(
                lambda: _WorkerPipes(self),
                *self._argv,
                "--fd",
                str(fd),
                "--max-response-bytes",
                str(self._max_response_bytes),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                pass_fds=(fd,),
                start_new_session=True,
                env=self._env,
                cwd=self._cwd,
            )
        except BaseException:
            parent_sock.close()
            raise
        finally:
            child_sock.close()  # the worker owns its end now; EOF must mean the worker is gone
        self._transport = transport
        self._pipes = pipes
        self.pid = transport.get_pid()
        log.debug("%s started: pid %s, cmdline %s", self.name, self.pid, self._argv)
        try:
            channel, _ = await loop.create_unix_connection(lambda: _WorkerChannel(self), sock=parent_sock)
        except BaseException:
            parent_sock.close()
            raise
        self._channel = channel

    def _fail_start(self, cause: str) -> None:
        self._cause = self._cause or cause
        if self._load_waiter is not None and not self._load_waiter.done():
            self._load_waiter.cancel()  # start() raises its own error
        self._die()
        if self._transport is None and self._exited is not None and not self._exited.done():
            self._exited.set_result(None)  # nothing was spawned: nothing to wait for

    def _start_error(self, message: str, detail: str = "") -> WorkerStartError:
        tail = "\n".join(self._stderr_tail)
        return WorkerStartError(message, detail or tail)

    # -- batches ------------------------------------------------------------------------------

    async def run_batch(self, batch: list[Job], timeout_s: float) -> None:
        """Run ``batch`` on the worker and resolve every job's future.

        Each job gets its Result, or a WorkerDiedError when the worker dies, breaks the protocol
        or sends nothing for ``timeout_s`` (the timer restarts with every message, as TorchServe
        polls per reply); the worker is then killed. Jobs whose future is already done (client
        gone) are still run, their results dropped.
        """
        if not self.alive or self._channel is None:
            _fail_jobs(batch)
            return
        loop = asyncio.get_running_loop()
        running = _Batch(batch, loop.create_future())
        self._batch = running
        self.state = WorkerState.BUSY
        self._timeout_s = timeout_s
        self._arm_timer()
        try:
            self._channel.write(protocol.encode(protocol.Predict([job.request for job in batch])))
            await running.done
        finally:
            self._disarm_timer()
            if self._batch is running:
                # Only a cancelled run_batch gets here with the batch unfinished: the worker is
                # still computing it and cannot take another, so it is given up.
                self._batch = None
                _fail_jobs(list(running.jobs.values()))
                self._cause = self._cause or "batch abandoned"
                self._die()
            if self.state is WorkerState.BUSY:
                self.state = WorkerState.READY

    def _arm_timer(self) -> None:
        self._disarm_timer()
        self._timer = asyncio.get_running_loop().call_later(self._timeout_s, self._on_timeout)

    def _disarm_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timeout(self) -> None:
        self._timer = None
        log.error("%s: no response within %g s, killing the worker", self.name, self._timeout_s)
        self._cause = self._cause or "response timeout"
        self._die()

    # -- messages from the worker ---------------------------------------------------------------

    def _on_data(self, data: bytes) -> None:
        try:
            messages = self._decoder.feed(data)
        except protocol.ProtocolError as exc:
            self._protocol_error(str(exc))
            return
        for message in messages:
            if self.state is WorkerState.DEAD:
                return
            self._dispatch(message)

    def _dispatch(self, message: protocol.Message) -> None:
        match message:
            case protocol.Predicted(results) if self._batch is not None:
                self._finish_batch(results)
            case protocol.StreamChunk(result) if self._batch is not None:
                job = self._batch.jobs.get(result.request_id)
                if job is None:
                    self._protocol_error(f"stream chunk for unknown request {result.request_id!r}")
                elif not job.future.done():
                    self._arm_timer()
                    if job.on_chunk is not None:
                        try:
                            job.on_chunk(result)
                        except Exception:
                            log.exception("%s: streaming callback failed", self.name)
                elif not self._batch.cancelled and self._batch.abandoned():
                    self._cancel_batch(self._batch)
            case protocol.MetricsReport(records):
                if self._batch is not None and not self._batch.cancelled:
                    self._arm_timer()
                if self._on_metrics is not None:
                    try:
                        self._on_metrics(records)
                    except Exception:
                        log.exception("%s: metrics callback failed", self.name)
            case protocol.Loaded() if self._load_waiter is not None and not self._load_waiter.done():
                self._load_waiter.set_result(message)
            case protocol.LoadFailed(text, detail) if (
                self._load_waiter is not None and not self._load_waiter.done()
            ):
                log.debug("%s failed to load the model:\n%s", self.name, detail)
                self._cause = "load failed"
                self._load_waiter.set_exception(
                    self._start_error(text or "the worker failed to load the model", detail)
                )
                self._die()
            case _:
                self._protocol_error(
                    f"unexpected {type(message).__name__} message in state {self.state.value}"
                )

    def _cancel_batch(self, running: _Batch) -> None:
        """Every client of a streaming batch is gone: ask the handler to stop.

        The timer is no longer re-armed by chunks, so a handler that streams on regardless is
        killed ``response_timeout`` after the last chunk anyone wanted.
        """
        running.cancelled = True
        log.info("%s: nobody reads the stream any more, cancelling the batch", self.name)
        if self._channel is not None:
            self._channel.write(protocol.encode(protocol.Cancel()))

    def _finish_batch(self, results: list[protocol.Result]) -> None:
        running = self._batch
        assert running is not None
        self._batch = None
        self._disarm_timer()
        jobs = running.jobs
        for result in results:
            job = jobs.pop(result.request_id, None)
            if job is None:
                log.warning("%s: result for unknown request %r ignored", self.name, result.request_id)
                continue
            if job.future.done():
                continue
            if len(result.body) > self._max_response_bytes:
                # TorchServe answers "Worker died." for an oversized response; this worker is fine.
                log.error(
                    "%s: response of %d bytes for %s exceeds max_response_size (%d)",
                    self.name,
                    len(result.body),
                    result.request_id,
                    self._max_response_bytes,
                )
                job.future.set_exception(WorkerDiedError())
            else:
                job.future.set_result(result)
        if jobs:
            self._batch = running  # so _die fails the unanswered jobs
            self._protocol_error(f"no result for {len(jobs)} request(s) of the batch")
            return
        if not running.done.done():
            running.done.set_result(None)

    def _protocol_error(self, what: str) -> None:
        log.error("%s broke the protocol (%s), killing the worker", self.name, what)
        self._cause = self._cause or f"protocol error: {what}"
        self._die()

    # -- death ----------------------------------------------------------------------------------

    def _die(self) -> None:
        """The worker is unusable: kill its group, fail its batch, wake whoever waits on it."""
        if self.state is not WorkerState.DEAD:
            self.state = WorkerState.DEAD
            self._kill_group()
        self._disarm_timer()
        running, self._batch = self._batch, None
        if running is not None:
            _fail_jobs(list(running.jobs.values()))
            if not running.done.done():
                running.done.set_result(None)
        if self._load_waiter is not None and not self._load_waiter.done():
            self._load_waiter.set_exception(self._start_error(self._death_message()))
        if self._channel is not None:
            self._channel.close()
        self._report_exit()

    def _death_message(self) -> str:
        code = self.returncode
        if code is not None:
            message = f"{self.name} exited ({_describe_returncode(code)}) before loading the model"
        else:
            message = f"{self.name} stopped before loading the model ({self._cause or 'connection lost'})"
        if self._stderr_tail:  # usually the exception line of a traceback
            message += f": {self._stderr_tail[-1][:300]}"
        return message

    def _on_process_exit(self) -> None:
        code = self.returncode
        described = _describe_returncode(code) if code is not None else "exited"
        self.exit_reason = f"{self._cause} ({described})" if self._cause else described
        if not self._cause and self._stderr_tail:  # a crash: its last words say why
            self.exit_reason += f": {self._stderr_tail[-1][:300]}"
        if self.state not in (WorkerState.DEAD, WorkerState.STOPPING):
            log.warning("%s died: %s", self.name, self.exit_reason)
        self._die()
        if self._exited is not None and not self._exited.done():
            self._exited.set_result(None)

    def _on_channel_lost(self) -> None:
        if self.state is WorkerState.STARTING:
            # The exit status (soon to come) says more than the EOF; wait a little for it.
            asyncio.get_running_loop().call_later(TERM_GRACE_S, self._die_if_starting)
        elif self.state is not WorkerState.DEAD and self.state is not WorkerState.STOPPING:
            self._die()

    def _die_if_starting(self) -> None:
        if self.state is WorkerState.STARTING:
            self._die()

    def _report_exit(self) -> None:
        if self._exit_reported:
            return
        self._exit_reported = True
        if self._on_exit is not None:
            try:
                self._on_exit(self)
            except Exception:
                log.exception("%s: exit callback failed", self.name)

    def _kill_group(self) -> None:
        pid = self.pid
        if pid is None or (self._exited is not None and self._exited.done() and self._group_killed):
            return
        strays: list[psutil.Process] = []
        with contextlib.suppress(psutil.Error, OSError):
            strays = psutil.Process(pid).children(recursive=True)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        for proc in strays:  # descendants that moved to a process group of their own
            with contextlib.suppress(psutil.Error, OSError):
                proc.kill()
        if self._exited is not None and self._exited.done():
            # The leader is reaped: its id may be reused after this, so never signal it again.
            self._group_killed = True

    def kill(self) -> None:
        """SIGKILL the worker's whole process group (and any descendant that left it) now."""
        if self.state is not WorkerState.DEAD:
            self._cause = self._cause or "killed"
        self._kill_group()
        self._die()

    async def stop(self, grace_s: float = 5.0) -> None:
        """Ask the worker to exit (Shutdown frame), then SIGTERM, then SIGKILL its process group.

        The worker gets ``grace_s`` to exit on its own and :data:`TERM_GRACE_S` more after SIGTERM.
        Whatever it started is killed with it. Returns once the process is gone.
        """
        exited = self._exited
        if exited is None:  # never started
            self.state = WorkerState.DEAD
            return
        self._strays = self._descendants()  # before the worker exits and its children are orphaned
        if not exited.done() and self.alive and self._channel is not None and grace_s > 0:
            self.state = WorkerState.STOPPING
            self._cause = self._cause or "stopped"
            self._channel.write(protocol.encode(protocol.Shutdown()))
            await _wait(exited, grace_s)
        if not exited.done() and self.pid is not None:
            self._cause = self._cause or "stopped"
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGTERM)
            await _wait(exited, TERM_GRACE_S if grace_s > 0 else 0)
        self.kill()  # the leader may be gone while its children live on
        await _wait(exited, REAP_TIMEOUT_S)
        self._kill_group()  # children that outlived the leader
        await self.close()

    async def close(self) -> None:
        """Release a dead worker: kill processes it left behind, close its pipes and socket."""
        for proc in self._strays:
            with contextlib.suppress(psutil.Error, OSError):
                proc.kill()  # psutil checks the process is still the one we saw
        self._strays = []
        if self.pid is not None:
            swept = await asyncio.to_thread(_kill_tagged, self._tag)
            if swept:
                log.warning("%s: killed %d process(es) it left behind", self.name, swept)
        if self._pipes is not None:
            await _wait(self._pipes.closed, TERM_GRACE_S)
        if self._transport is not None:
            self._transport.close()
        if self._channel is not None:
            self._channel.close()

    def _descendants(self) -> list[psutil.Process]:
        if self.pid is None or (self._exited is not None and self._exited.done()):
            return []
        try:
            return psutil.Process(self.pid).children(recursive=True)
        except (psutil.Error, OSError):
            return []

    async def wait_exit(self) -> None:
        """Return once the worker process has exited (and been reaped)."""
        if self._exited is not None:
            await asyncio.shield(self._exited)

    # -- output ---------------------------------------------------------------------------------

    def _log_line(self, stream: str, line: str) -> None:
        if stream == "stderr":
            self._stderr_tail.append(line)
            model_log.warning("%s-stderr %s", self.name, line)
        else:
            model_log.info("%s-stdout %s", self.name, line)

    def __repr__(self) -> str:
        return f"<WorkerProcess {self.name} pid={self.pid} {self.state.value}>"


def _fail_jobs(jobs: list[Job]) -> None:
    for job in jobs:
        if not job.future.done():
            job.future.set_exception(WorkerDiedError())


async def _wait(future: asyncio.Future[None], limit_s: float) -> None:
    if limit_s <= 0:
        return
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(limit_s):
            await asyncio.shield(future)


def _kill_tagged(tag: str) -> int:
    """SIGKILL every process whose environment carries ``tag`` (runs in a thread: it reads /proc)."""
    killed = 0
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(WORKER_TAG_VAR) == tag:
                proc.kill()
                killed += 1
        except (psutil.Error, OSError):
            continue  # gone, or not ours to read
    return killed


def _describe_returncode(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class _LineSplitter:
    """Turns a byte stream into lines of at most MAX_LOG_LINE characters (the rest is dropped)."""

    __slots__ = ("_buffer", "_dropped")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._dropped = 0

    def feed(self, data: bytes) -> list[str]:
        lines: list[str] = []
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                self._append(data[start:])
                return lines
            self._append(data[start:end])
            lines.append(self._take())
            start = end + 1

    def flush(self) -> list[str]:
        return [self._take()] if self._buffer or self._dropped else []

    def _append(self, chunk: bytes) -> None:
        room = MAX_LOG_LINE - len(self._buffer)
        if len(chunk) > room:
            self._dropped += len(chunk) - max(room, 0)
            chunk = chunk[: max(room, 0)]
        self._buffer += chunk

    def _take(self) -> str:
        line = self._buffer.decode("utf-8", "replace").rstrip("\r")
        if self._dropped:
            line += f" …[{self._dropped} bytes truncated]"
        self._buffer.clear()
        self._dropped = 0
        return line


class _WorkerPipes(asyncio.SubprocessProtocol):
    """Reads the worker's stdout/stderr as they come (never lets a pipe fill) and sees it exit."""

    def __init__(self, worker: WorkerProcess) -> None:
        self._worker = worker
        self._splitters = {1: _LineSplitter(), 2: _LineSplitter()}
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        splitter = self._splitters.get(fd)
        if splitter is None:
            return
        raw = data.encode() if isinstance(data, str) else data
        stream = "stderr" if fd == 2 else "stdout"
        for line in splitter.feed(raw):
            self._worker._log_line(stream, line)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        splitter = self._splitters.get(fd)
        if splitter is not None:
            for line in splitter.flush():
                self._worker._log_line("stderr" if fd == 2 else "stdout", line)

    def process_exited(self) -> None:
        self._worker._on_process_exit()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class _WorkerChannel(asyncio.Protocol):
    """The parent end of the worker's socketpair: bytes in, messages to the worker handle."""

    def __init__(self, worker: WorkerProcess) -> None:
        self._worker = worker

    def data_received(self, data: bytes) -> None:
        self._worker._on_data(data)

    def eof_received(self) -> bool:
        return False  # close our end too

    def connection_lost(self, exc: Exception | None) -> None:
        self._worker._on_channel_lost()
