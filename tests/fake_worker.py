"""A tiny scriptable worker speaking the frontend↔worker protocol, for deterministic fault tests.

Run as ``python tests/fake_worker.py --fd N --max-response-bytes B`` (what
:class:`~emberserve.workers.process.WorkerProcess` appends to its argv). No torch, no handler
loading: its behaviour is scripted.

Load behaviour comes from ``LoadModel.handler``:

===============  ==============================================================
``ok``           answer Loaded (anything not listed below does the same)
``fail``         answer LoadFailed("FakeLoadError: initialize() failed", traceback)
``crash``        print a line to stderr, then ``os._exit(3)``
``hang``         never answer
``slow:S``       sleep S seconds, then answer Loaded
``chatty``       print to stdout and stderr, then answer Loaded
===============  ==============================================================

Each request's body is a list of commands ``op[:arg]`` separated by ``;`` (run in order, the last
one decides the body); the batch is handled request by request and every result carries the
headers ``x-batch-size`` (the batch length) and ``x-pid``:

=================  ==========================================================
``echo:TEXT``      body TEXT
``sleep:S``        sleep S seconds, body ``slept``
``crash``          ``os._exit(1)`` at once (mid-batch)
``hang``           ignore SIGTERM and sleep forever
``spawn``          start ``sleep 1000`` (same process group); body = its pid
``spawn_daemon``   start ``sleep 1000`` in a new session (leaves the group); body = its pid
``flood:N``        write N bytes to stdout in one line, body ``flooded``
``stream:N``       send N StreamChunks ``partI`` before the final ``done``
``metrics``        send one MetricsReport (name ``FakeMetric``) before the result
``big:N``          body of N bytes
``env:NAME``       body = the worker's environment variable NAME (or ``<unset>``)
``noresult``       answer Predicted with no results at all
``garbage``        send bytes that are not a frame
``fail``           a Result with status 503 and error ``Prediction failed``
``gpu``            body = the ``gpu_id`` of the LoadModel (``None`` on CPU)
``started``        send a StreamChunk ``started`` (tells a test the batch is running)
=================  ==========================================================
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time

from emberserve.workers import protocol


def _send(sock: socket.socket, message: protocol.Message) -> None:
    sock.sendall(protocol.encode(message))


_loaded: list[protocol.LoadModel] = []


def _load(sock: socket.socket, load: protocol.LoadModel) -> None:
    _loaded.append(load)
    behaviour = load.handler
    if behaviour == "fail":
        _send(
            sock, protocol.LoadFailed("FakeLoadError: initialize() failed", "Traceback (fake)\nFakeLoadError")
        )
        return
    if behaviour == "crash":
        print("FakeCrash: the worker crashed while loading", file=sys.stderr, flush=True)
        os._exit(3)
    if behaviour == "hang":
        while True:
            time.sleep(3600)
    if behaviour.startswith("slow:"):
        time.sleep(float(behaviour.split(":", 1)[1]))
    if behaviour == "chatty":
        print("hello from stdout", flush=True)
        print("hello from stderr", file=sys.stderr, flush=True)
    _send(sock, protocol.Loaded(os.getpid(), 1.0))


def _result(
    request_id: str, body: bytes, batch_len: int, status: int = 200, error: str | None = None
) -> protocol.Result:
    headers = [("x-batch-size", str(batch_len)), ("x-pid", str(os.getpid()))]
    return protocol.Result(request_id, status, "", headers, "text/plain", body, error)


def _handle(sock: socket.socket, batch: list[protocol.Request]) -> None:
    results: list[protocol.Result] = []
    for request in batch:
        script = request.inputs[0].value.decode() if request.inputs else ""
        outcome: protocol.Result | None = None
        for command in script.split(";"):
            outcome = _run(sock, command, request.request_id, len(batch))
            if outcome is None:
                return  # the command answered the whole batch itself
        assert outcome is not None
        results.append(outcome)
    _send(sock, protocol.Predicted(results))


def _run(sock: socket.socket, command: str, rid: str, batch_len: int) -> protocol.Result | None:
    op, _, arg = command.partition(":")
    body = b""
    if op == "echo":
        body = arg.encode()
    elif op == "sleep":
        time.sleep(float(arg))
        body = b"slept"
    elif op == "crash":
        os._exit(1)
    elif op == "hang":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        while True:
            time.sleep(3600)
    elif op in ("spawn", "spawn_daemon"):
        child = subprocess.Popen(["sleep", "1000"], start_new_session=op == "spawn_daemon")
        body = str(child.pid).encode()
    elif op == "flood":
        sys.stdout.write("x" * int(arg) + "\n")
        sys.stdout.flush()
        body = b"flooded"
    elif op == "stream":
        for i in range(int(arg)):
            _send(sock, protocol.StreamChunk(_result(rid, f"part{i}".encode(), batch_len)))
        body = b"done"
    elif op == "started":
        _send(sock, protocol.StreamChunk(_result(rid, b"started", batch_len)))
        body = b"started"
    elif op == "metrics":
        record = protocol.MetricRecord("FakeMetric", "ms", "gauge", 1.5, ["Level"], ["Model"], rid)
        _send(sock, protocol.MetricsReport([record]))
        body = b"measured"
    elif op == "big":
        body = b"b" * int(arg)
    elif op == "gpu":
        body = str(_loaded[-1].gpu_id).encode()
    elif op == "env":
        body = os.environ.get(arg, "<unset>").encode()
    elif op == "noresult":
        _send(sock, protocol.Predicted([]))
        return None
    elif op == "garbage":
        sock.sendall(b"\x00\x00\x00\x05\xff\xc1\xc1\xc1\xc1")
        return None
    elif op == "fail":
        return _result(rid, b"", batch_len, 503, "Prediction failed")
    return _result(rid, body, batch_len)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--max-response-bytes", type=int, default=0)  # the real worker's; unused here
    args = parser.parse_args()
    sock = socket.socket(fileno=args.fd)
    decoder = protocol.Decoder()
    while True:
        data = sock.recv(1 << 16)
        if not data:
            return  # the frontend is gone
        for message in decoder.feed(data):
            if isinstance(message, protocol.LoadModel):
                _load(sock, message)
            elif isinstance(message, protocol.Predict):
                _handle(sock, message.batch)
            elif isinstance(message, protocol.Shutdown):
                return


if __name__ == "__main__":
    main()
