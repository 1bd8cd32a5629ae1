"""Log files and console output in TorchServe's layout and line format (reference §10).

Files under ``log_location`` (``LOG_LOCATION``, default ``./logs``):

=================  =========================================  ==============================
file               content                                    logger
=================  =========================================  ==============================
access_log.log     one line per HTTP request                  ``emberserve.access``
model_log.log      worker stdout/stderr, with worker names    ``emberserve.model_log``
ts_log.log         the frontend's own log                     ``emberserve`` (everything)
ts_metrics.log     frontend and host metrics (log mode)       ``emberserve.ts_metrics``
model_metrics.log  handler metrics (log mode)                 ``emberserve.model_metrics``
=================  =========================================  ==============================

The two metric logs live under ``metrics_location`` (``METRICS_LOCATION``).

Line format: ``2026-11-22T07:42:47,132 [INFO ] <thread> <logger> - <message>`` (log4j's
``%d{ISO8601} [%-5p] %t %c - %m%n``), or with ``log_format=json`` one JSON object per line
(``time``, ``level``, ``thread``, ``logger``, ``message`` and ``request_id`` where there is one).
Files rotate by size. ``async_logging=true`` writes them from a background thread (the event
loop never waits for the disk). ``--log-config`` replaces all of this with a Python
``logging.config.dictConfig`` document (YAML or JSON).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import logging.config
import logging.handlers
import queue as queue_module
import sys
import time
from pathlib import Path

import yaml

from emberserve.errors import ConfigError

MAX_LOG_BYTES = 100 * 1024 * 1024
BACKUPS = 5


#: log4j's level names where Python's differ.
_LOG4J_LEVELS = {"WARNING": "WARN", "CRITICAL": "FATAL"}


class TorchServeFormatter(logging.Formatter):
    """``%d{ISO8601} [%-5p] %t %c - %m%n`` with a comma before milliseconds, like log4j."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return (
            time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(record.created)) + f",{int(record.msecs):03d}"
        )

    def __init__(self) -> None:
        super().__init__("%(asctime)s [%(log4j_level)-5s] %(threadName)s %(name)s - %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        record.log4j_level = _LOG4J_LEVELS.get(record.levelname, record.levelname)
        return super().format(record)


class ModelLogFormatter(TorchServeFormatter):
    """``… [INFO ] W-9000-noop_1.0-stdout MODEL_LOG - <line>``: the worker stream is the "thread",
    as in TorchServe's model_log.log (the message arrives as ``<stream> <line>``)."""

    def format(self, record: logging.LogRecord) -> str:
        stream, _, line = record.getMessage().partition(" ")
        level = _LOG4J_LEVELS.get(record.levelname, record.levelname)
        return f"{self.formatTime(record)} [{level:<5}] {stream} MODEL_LOG - {line}"


class AccessFormatter(logging.Formatter):
    """``2026-11-22T07:34:54,818 - /127.0.0.1:36690 "GET /ping HTTP/1.1" 200 32``."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return (
            time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(record.created)) + f",{int(record.msecs):03d}"
        )

    def __init__(self) -> None:
        super().__init__("%(asctime)s - %(message)s")


class JsonFormatter(logging.Formatter):
    """One JSON object per line (``log_format=json``).

    >>> record = logging.LogRecord("emberserve.access", logging.INFO, "", 0, "GET /ping", None, None)
    >>> record.request_id = "r-1"
    >>> sorted(json.loads(JsonFormatter().format(record)))
    ['level', 'logger', 'message', 'request_id', 'thread', 'time']
    """

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(record.created))
            + f".{int(record.msecs):03d}",
            "level": record.levelname,
            "thread": record.threadName,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            document["request_id"] = request_id
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, ensure_ascii=False)


#: Background writers started by ``async_logging=true`` (stopped and flushed by :func:`flush_logs`).
_LISTENERS: list[logging.handlers.QueueListener] = []
_SETTINGS = {"json": False, "background": False}


#: Under load a line sink writes its file at most this often. A quiet server writes each line
#: at once (in the next loop iteration); a busy one holds lines for up to this long.
SINK_FLUSH_INTERVAL_S = 0.05


class _LineSink:
    """The file of a one-line-per-request log, written in batches.

    The access log and the two metric logs get several lines per request. Through ``logging``
    each line cost a LogRecord, a formatter and a write system call (a fifth of the frontend's
    time under load, measured with py-spy); written once per loop iteration they still cost as
    much at 16 concurrent clients, where an iteration holds about one request. So lines are kept
    and written together, with the same timestamps, format and size rotation as the handler they
    replace: in the next loop iteration when the sink was quiet, at most every
    ``SINK_FLUSH_INTERVAL_S`` while lines keep coming. The server flushes every sink when it
    stops; only a killed server can lose the last lines.
    """

    def __init__(self, handler: logging.handlers.RotatingFileHandler) -> None:
        self.handler = handler
        self._lines: list[str] = []
        self._scheduled = False
        self._flushed_at = -SINK_FLUSH_INTERVAL_S
        self._second = -1
        self._second_text = ""

    def append(self, message: str) -> None:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second, self._second_text = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(now))
        self._lines.append(f"{self._second_text},{int((now - second) * 1000):03d} - {message}\n")
        if not self._scheduled:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop (startup, tests): write now
                self.flush()
                return
            wait = self._flushed_at + SINK_FLUSH_INTERVAL_S - time.monotonic()
            if wait > 0:
                loop.call_later(wait, self.flush)
            else:
                loop.call_soon(self.flush)
            self._scheduled = True

    def flush(self) -> None:
        self._scheduled = False
        self._flushed_at = time.monotonic()
        if not self._lines:
            return
        text = "".join(self._lines)
        self._lines.clear()
        handler = self.handler
        with handler.lock or contextlib.nullcontext():
            if handler.stream is None:
                handler.stream = handler._open()
            if handler.maxBytes and handler.stream.tell() + len(text) >= handler.maxBytes:
                handler.doRollover()
            handler.stream.write(text)
            handler.stream.flush()


#: Logger name → its line sink, for the per-request logs while Ember's own handlers serve them.
_SINKS: dict[str, _LineSink] = {}


class RequestLog:
    """A per-request log (access or metric lines): ``write(message)`` is the fast way to log
    ``message`` at INFO. Falls back to ``logging`` when a ``--log-config``, JSON lines or
    ``async_logging`` decide where lines go.

    >>> RequestLog("emberserve.example").write("GET /ping 200")  # no handler: goes nowhere
    """

    def __init__(self, name: str) -> None:
        self.logger = logging.getLogger(name)

    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)

    def write(self, message: str, request_id: str | None = None) -> None:
        if not self.logger.isEnabledFor(logging.INFO):
            return
        sink = _SINKS.get(self.logger.name)
        if sink is not None:
            sink.append(message)
        else:
            self.logger.info("%s", message, extra={"request_id": request_id})


def _file(path: Path, formatter: logging.Formatter, level: int = logging.DEBUG) -> logging.Handler:
    handler: logging.Handler = logging.handlers.RotatingFileHandler(
        path, maxBytes=MAX_LOG_BYTES, backupCount=BACKUPS, encoding="utf-8"
    )
    handler.setFormatter(JsonFormatter() if _SETTINGS["json"] else formatter)
    handler.setLevel(level)
    if _SETTINGS["background"]:
        queue: queue_module.SimpleQueue[logging.LogRecord] = queue_module.SimpleQueue()
        listener = logging.handlers.QueueListener(queue, handler, respect_handler_level=True)
        listener.start()
        _LISTENERS.append(listener)
        handler = logging.handlers.QueueHandler(queue)
        handler.setLevel(level)
    return handler


def flush_logs() -> None:
    """Write out what background writers and line sinks still hold (server shutdown)."""
    for sink in _SINKS.values():
        sink.flush()
    while _LISTENERS:
        _LISTENERS.pop().stop()


def configure_logging(
    log_dir: Path,
    log_config: Path | None = None,
    *,
    console: bool = True,
    metrics_dir: Path | None = None,
    json_lines: bool = False,
    background: bool = False,
) -> None:
    """Set up Ember's loggers once at startup (the server calls this; libraries never do)."""
    flush_logs()
    _SINKS.clear()
    _SETTINGS["json"], _SETTINGS["background"] = json_lines, background
    if log_config is not None:
        _apply_user_config(log_config)
        return
    log_dir.mkdir(parents=True, exist_ok=True)
    metrics_dir = metrics_dir or log_dir
    metrics_dir.mkdir(parents=True, exist_ok=True)
    fmt = TorchServeFormatter()
    root = logging.getLogger("emberserve")
    root.setLevel(logging.DEBUG)
    root.propagate = False
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(_file(log_dir / "ts_log.log", fmt))
    if console:
        out = logging.StreamHandler(sys.stdout)
        out.setFormatter(JsonFormatter() if json_lines else fmt)
        out.setLevel(logging.INFO)
        root.addHandler(out)
    model_log = logging.getLogger("emberserve.model_log")
    model_log.addHandler(_file(log_dir / "model_log.log", ModelLogFormatter()))
    for name, path in (
        ("access", log_dir / "access_log.log"),
        ("ts_metrics", metrics_dir / "ts_metrics.log"),
        ("model_metrics", metrics_dir / "model_metrics.log"),
    ):
        per_request = logging.getLogger(f"emberserve.{name}")
        for handler in list(per_request.handlers):
            per_request.removeHandler(handler)
        handler = _file(path, AccessFormatter())
        per_request.addHandler(handler)
        per_request.propagate = False  # a line per request: not also in ts_log.log and on the console
        if isinstance(handler, logging.handlers.RotatingFileHandler) and not json_lines:
            _SINKS[per_request.name] = _LineSink(handler)
    # A python-multipart warning per malformed body would let clients flood the log.
    logging.getLogger("python_multipart").setLevel(logging.ERROR)


def _apply_user_config(path: Path) -> None:
    try:
        text = path.read_text(encoding="utf-8")
        document = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        logging.config.dictConfig(document)
    except (OSError, ValueError, TypeError, AttributeError, ImportError, yaml.YAMLError) as exc:
        raise ConfigError(
            f"--log-config {path}: not a usable logging dictConfig document ({exc}). "
            "Pass a YAML or JSON file in Python's logging.config.dictConfig schema."
        ) from exc
