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
``%d{ISO8601} [%-5p] %t %c - %m%n``). Files rotate by size. ``--log-config`` replaces all of
this with a Python ``logging.config.dictConfig`` document (YAML or JSON).
"""

from __future__ import annotations

import json
import logging
import logging.config
import logging.handlers
import sys
import time
from pathlib import Path

import yaml

from emberserve.errors import ConfigError

MAX_LOG_BYTES = 100 * 1024 * 1024
BACKUPS = 5


class TorchServeFormatter(logging.Formatter):
    """``%d{ISO8601} [%-5p] %t %c - %m%n`` with a comma before milliseconds, like log4j."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return (
            time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(record.created)) + f",{int(record.msecs):03d}"
        )

    def __init__(self) -> None:
        super().__init__("%(asctime)s [%(levelname)-5s] %(threadName)s %(name)s - %(message)s")


class AccessFormatter(logging.Formatter):
    """``2026-11-22T07:34:54,818 - /127.0.0.1:36690 "GET /ping HTTP/1.1" 200 32``."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return (
            time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(record.created)) + f",{int(record.msecs):03d}"
        )

    def __init__(self) -> None:
        super().__init__("%(asctime)s - %(message)s")


def _file(path: Path, formatter: logging.Formatter, level: int = logging.DEBUG) -> logging.Handler:
    handler = logging.handlers.RotatingFileHandler(
        path, maxBytes=MAX_LOG_BYTES, backupCount=BACKUPS, encoding="utf-8"
    )
    handler.setFormatter(formatter)
    handler.setLevel(level)
    return handler


def configure_logging(
    log_dir: Path, log_config: Path | None = None, *, console: bool = True, metrics_dir: Path | None = None
) -> None:
    """Set up Ember's loggers once at startup (the server calls this; libraries never do)."""
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
        out.setFormatter(fmt)
        out.setLevel(logging.INFO)
        root.addHandler(out)
    access = logging.getLogger("emberserve.access")
    access.addHandler(_file(log_dir / "access_log.log", AccessFormatter()))
    access.propagate = False
    model_log = logging.getLogger("emberserve.model_log")
    model_log.addHandler(_file(log_dir / "model_log.log", fmt))
    for name, filename in (("ts_metrics", "ts_metrics.log"), ("model_metrics", "model_metrics.log")):
        metrics = logging.getLogger(f"emberserve.{name}")
        for handler in list(metrics.handlers):
            metrics.removeHandler(handler)
        metrics.addHandler(_file(metrics_dir / filename, AccessFormatter()))
        metrics.propagate = False  # a line per request: not also in ts_log.log and on the console
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
