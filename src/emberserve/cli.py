"""``emberserve``: start and stop the server, flag-compatible with ``torchserve``.

    emberserve --start --model-store model_store --models digits=digits.mar
    emberserve --foreground --ts-config config.properties --model-store model_store --models all
    emberserve --stop

``--start`` (the default action) runs the server in the background and returns once it listens
(unlike TorchServe, which returns before knowing whether the server came up); ``--foreground``
keeps it attached to the terminal. The pid file lives in the temp directory (``$TMPDIR``), so
one Ember per temp directory, as TorchServe does. ``emberserve archive …`` runs the archiver.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import psutil

from emberserve import TORCHSERVE_COMPAT_VERSION, __version__
from emberserve.errors import ConfigError

PID_FILE_NAME = ".emberserve.pid"
#: How long ``--start`` waits for the background server to listen (models load afterwards).
START_WAIT_S = 60.0


def pid_file_path() -> Path:
    return Path(tempfile.gettempdir()) / PID_FILE_NAME


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="emberserve",
        description="Ember model server: serves TorchServe model archives (.mar) over TorchServe's "
        "REST and gRPC APIs.",
        epilog="Examples:\n"
        "  emberserve --start --model-store model_store --models digits=digits.mar\n"
        "  emberserve --foreground --ts-config config.properties --models all\n"
        "  emberserve --stop\n"
        "  emberserve archive --model-name m --version 1.0 --handler handler.py\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--start", action="store_true", help="start the server in the background (default)")
    action.add_argument(
        "--stop", action="store_true", help="stop the server started from this temp directory"
    )
    parser.add_argument(
        "--foreground",
        action="store_true",
        help="run in the foreground; Ctrl-C or SIGTERM drains and stops it",
    )
    parser.add_argument(
        "--ts-config",
        dest="ts_config",
        metavar="FILE",
        help="config.properties to read (TS_CONFIG_FILE in the environment takes precedence)",
    )
    parser.add_argument(
        "--model-store",
        dest="model_store",
        metavar="DIR",
        help="directory holding model archives (overrides model_store in the config)",
    )
    parser.add_argument(
        "--models",
        nargs="+",
        metavar="MODEL",
        help="models to load at startup: 'all', 'x.mar' or 'name=x.mar' (overrides load_models)",
    )
    parser.add_argument(
        "--workflow-store", dest="workflow_store", metavar="DIR", help="workflow archive directory"
    )
    parser.add_argument(
        "--log-config",
        dest="log_config",
        metavar="FILE",
        help="Python logging dictConfig file (YAML or JSON) replacing Ember's log setup",
    )
    parser.add_argument(
        "--ncs",
        "--no-config-snapshots",
        dest="no_config_snapshots",
        action="store_true",
        help="do not write or restore config snapshots",
    )
    parser.add_argument(
        "--dt",
        "--disable-token-auth",
        dest="disable_token_auth",
        action="store_true",
        help="turn token authorization off (it is on by default)",
    )
    parser.add_argument(
        "--enable-model-api",
        dest="enable_model_api",
        action="store_true",
        help="allow registering and unregistering models through the management API",
    )
    parser.add_argument(
        "--plugins-path",
        "--ppath",
        dest="plugins_path",
        metavar="DIR",
        help="accepted for compatibility; Java plugins do not apply to Ember",
    )
    parser.add_argument("-v", "--version", action="store_true", help="print Ember's version and exit")
    # Internal: the background server tells the launcher it listens by writing to this fd.
    parser.add_argument("--ready-fd", dest="ready_fd", type=int, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["archive"]:
        from emberserve.archiver.cli import main as archive_main  # noqa: PLC0415 - only for this subcommand

        return archive_main(args_list[1:])
    args = build_parser().parse_args(args_list)
    if args.version:
        print(f"Ember Version is {__version__} (TorchServe {TORCHSERVE_COMPAT_VERSION} compatible)")
        return 0
    if args.stop:
        return stop()
    return start(args, args_list)


def _running_pid() -> int | None:
    """The pid of a live Ember server recorded in the pid file; removes a stale file."""
    path = pid_file_path()
    try:
        pid = int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        proc = psutil.Process(pid)
        if proc.status() != psutil.STATUS_ZOMBIE and any("emberserve" in part for part in proc.cmdline()):
            return pid
    except psutil.Error:
        pass
    print("Removing orphan pid file.")
    with contextlib.suppress(OSError):
        path.unlink()
    return None


def stop() -> int:
    pid = _running_pid()
    if pid is None:
        print("Ember is not currently running.")
        return 0
    try:
        proc = psutil.Process(pid)
        proc.terminate()
        print("Ember is stopping: finishing in-flight requests…", flush=True)
        proc.wait(timeout=120)
        print("Ember has stopped.")
    except psutil.TimeoutExpired:
        print(f"Ember (pid {pid}) did not stop within 120 s; kill it with: kill -9 {pid}")
        return 1
    except psutil.Error:
        print("Ember already stopped.")
    with contextlib.suppress(OSError):
        pid_file_path().unlink()
    return 0


def start(args: argparse.Namespace, argv: list[str]) -> int:
    if _running_pid() is not None:
        print("Ember is already running, please use emberserve --stop to stop Ember.")
        return 1
    if args.log_config and not Path(args.log_config).is_file():
        print(f"--log-config file not found: {os.path.realpath(args.log_config)}")
        return 1
    if args.model_store and not Path(args.model_store).is_dir():
        print(f"--model-store directory not found: {args.model_store}")
        return 1
    if args.workflow_store and not Path(args.workflow_store).is_dir():
        print(f"--workflow-store directory not found: {args.workflow_store}")
        return 1
    if args.foreground:
        return _run_foreground(args)
    return _start_background(argv)


def _run_foreground(args: argparse.Namespace) -> int:
    from emberserve.config import CliOptions, load_config  # noqa: PLC0415 - keeps --help/--stop fast
    from emberserve.server import run_server  # noqa: PLC0415

    ready_fd: int | None = args.ready_fd

    def tell_launcher(message: str) -> None:
        """Answer a waiting ``--start`` launcher once: "ready" or the reason we cannot start."""
        nonlocal ready_fd
        if ready_fd is not None:
            with contextlib.suppress(OSError):
                os.write(ready_fd, message.encode() + b"\n")
                os.close(ready_fd)
            ready_fd = None

    def fail(message: str, code: int) -> int:
        print(message)
        tell_launcher(message)
        return code

    options = CliOptions(
        ts_config=args.ts_config,
        model_store=args.model_store,
        models=tuple(args.models) if args.models else None,
        workflow_store=args.workflow_store,
        log_config=args.log_config,
        no_config_snapshots=args.no_config_snapshots,
        disable_token_auth=args.disable_token_auth,
        enable_model_api=args.enable_model_api,
    )
    try:
        config = load_config(options, os.environ, Path.cwd())
    except ConfigError as err:
        return fail(f"Ember could not start: {err}", ConfigError.exit_code)
    if config.model_store is None:
        return fail("Missing mandatory parameter --model-store (or model_store in config.properties).", 1)
    pid_path = pid_file_path()
    pid_path.write_text(f"{os.getpid()}\n")
    try:
        code = run_server(config, on_ready=lambda: tell_launcher("ready"), console=args.ready_fd is None)
        tell_launcher(f"Ember could not start (exit code {code}); see {config.log_location / 'ts_log.log'}")
        return code
    finally:
        with contextlib.suppress(OSError, ValueError):
            if pid_path.read_text().split()[0] == str(os.getpid()):
                pid_path.unlink()


def _start_background(argv: list[str]) -> int:
    passthrough = [a for a in argv if a not in ("--start",)]
    read_fd, write_fd = os.pipe()
    cmd = [sys.executable, "-m", "emberserve", "--foreground", *passthrough, "--ready-fd", str(write_fd)]
    # A daemon keeps no terminal: its log files say what it does; startup errors come back on the pipe.
    proc = subprocess.Popen(
        cmd,
        pass_fds=(write_fd,),
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    deadline = time.monotonic() + START_WAIT_S
    answer = b""
    try:
        # EOF without "ready" means the server exited (its own message says why).
        while (remaining := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([read_fd], [], [], remaining)
            if not readable:
                break
            chunk = os.read(read_fd, 64)
            answer += chunk
            if not chunk or b"ready" in answer:
                break
    finally:
        os.close(read_fd)
    if b"ready" not in answer:
        reason = answer.decode("utf-8", "replace").strip()
        if not reason:
            code = proc.poll()
            reason = "Ember did not start" + (f" (exit code {code})." if code is not None else " in time.")
        print(reason)
        return 1
    print(f"Ember started (pid {proc.pid}). Stop it with: emberserve --stop")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
