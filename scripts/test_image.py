"""``make test-image``: run Ember's container image the way a TorchServe user runs theirs.

Starts the image with podman, the five ports mapped to free host ports and the example model
store mounted at /home/model-server/model-store, waits for readiness, serves the digits example
over REST and gRPC through the mapped ports, checks the container's promises (Ember is PID 1 as
user model-server, token authorization on with open health probes), then stops it with SIGTERM
(``podman stop``) under load and checks that it drained and exited 0 within the drain time.
Prints the image size and the start-to-ready time. Exit status 0 when every check passed.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx

from emberserve import __version__
from emberserve.grpc.generated import inference_pb2, inference_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
CONTAINER_PORTS = (8080, 8081, 8082, 7070, 7071)
DRAIN_TIMEOUT_S = 30  # docker/config.properties
READY_TIMEOUT_S = 180


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default=f"localhost/emberserve:{__version__}")
    parser.add_argument("--model-store", type=Path, default=ROOT / "model_store")
    args = parser.parse_args()
    if subprocess.run(["podman", "image", "exists", args.image], check=False).returncode != 0:
        sys.exit(f"{args.image} does not exist: run `make image` first")
    if not (args.model_store / "digits.mar").is_file():
        sys.exit(f"{args.model_store}/digits.mar is missing: run `make examples` first")
    size_mb = int(podman("image", "inspect", "--format", "{{.Size}}", args.image)) / 1e6
    ports = dict(zip(CONTAINER_PORTS, free_ports(len(CONTAINER_PORTS)), strict=True))
    name = f"ember-image-test-{uuid.uuid4().hex[:8]}"
    with running_container(name, args.image, ports, args.model_store.resolve()) as started:
        inference = f"http://127.0.0.1:{ports[8080]}"
        ready_s = wait_ready(inference, started)
        print(f"ready {ready_s:.1f} s after `podman run`")
        check_container(name)
        keys = read_keys(name)
        check_rest(inference, f"http://127.0.0.1:{ports[8081]}", f"http://127.0.0.1:{ports[8082]}", keys)
        check_grpc(ports[7070], keys["inference"])
        stop_s, answered = stop_under_load(name, inference, keys["inference"])
        exit_code = int(podman("inspect", "--format", "{{.State.ExitCode}}", name))
        logs = podman("logs", name)
        expect(exit_code == 0, f"the container exits 0 after SIGTERM (got {exit_code})")
        expect(stop_s < DRAIN_TIMEOUT_S, f"it stops within the drain time ({stop_s:.1f} s)")
        expect("Received SIGTERM: draining" in logs, "Ember (PID 1) received SIGTERM and drained")
        expect("-shutdown.cfg" in logs and "Ember stopped" in logs, "it wrote its shutdown snapshot")
        print(f"  ({answered} requests answered while stopping, none failed)")
    print(f"\nimage {args.image}: {size_mb:.0f} MB; ready in {ready_s:.1f} s; stopped in {stop_s:.1f} s")
    print("test-image PASSED")
    return 0


def podman(*args: str) -> str:
    return subprocess.run(["podman", *args], check=True, capture_output=True, text=True).stdout.strip()


def runtime_flags() -> list[str]:
    """podman's global flags for sandboxes like this one: runc rather than crun (crun refuses
    hybrid cgroups). Harmless on an ordinary host."""
    return ["--runtime", "runc"] if shutil.which("runc") else []


def limit_flags() -> list[str]:
    """``podman run`` flags: rlimits no higher than the host's hard limits (the default of
    1048576 open files cannot be set without CAP_SYS_RESOURCE)."""
    import resource

    flags: list[str] = []
    # podman's own defaults are 1048576 open files and 32768 processes.
    for name, flag, wanted in (
        (resource.RLIMIT_NOFILE, "nofile", 65536),
        (resource.RLIMIT_NPROC, "nproc", 32768),
    ):
        hard = resource.getrlimit(name)[1]
        value = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
        flags += ["--ulimit", f"{flag}={value}:{value}"]
    return flags


@contextlib.contextmanager
def running_container(name: str, image: str, ports: dict[int, int], store: Path) -> Iterator[float]:
    mapped = [f"-p127.0.0.1:{host}:{inside}" for inside, host in ports.items()]
    started = time.monotonic()
    subprocess.run(
        [
            "podman",
            *runtime_flags(),
            "run",
            *limit_flags(),
            "-d",
            "--name",
            name,
            *mapped,
            "-v",
            f"{store}:/home/model-server/model-store:ro",
            image,
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    try:
        yield started
    except BaseException:
        print(podman("logs", "--tail", "40", name), file=sys.stderr)
        raise
    finally:
        subprocess.run(["podman", "rm", "-f", "-t", "0", name], check=False, capture_output=True)


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def wait_ready(inference: str, started: float) -> float:
    deadline = started + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{inference}/ping", timeout=2).status_code == 200:
                return time.monotonic() - started
        time.sleep(0.1)  # polling a container from outside: there is no event to wait on
    raise SystemExit(f"not ready after {READY_TIMEOUT_S} s")


def expect(ok: bool, what: str) -> None:
    print(f"  {'ok' if ok else 'FAILED'}: {what}")
    if not ok:
        raise SystemExit(f"test-image FAILED: {what}")


def check_container(name: str) -> None:
    pid1 = podman("exec", name, "cat", "/proc/1/cmdline").replace("\0", " ")
    expect("emberserve --foreground" in pid1, f"Ember itself is PID 1 ({pid1.strip()})")
    expect(podman("exec", name, "id", "-un") == "model-server", "it runs as user model-server")
    listing = podman("exec", name, "ls", "/home/model-server")
    expect(
        all(part in listing.split() for part in ("model-store", "config.properties", "tmp")),
        "TorchServe's layout: /home/model-server/{model-store,config.properties,tmp}",
    )


def read_keys(name: str) -> dict[str, str]:
    document = json.loads(podman("exec", name, "cat", "/home/model-server/key_file.json"))
    mode = podman("exec", name, "stat", "-c", "%a", "/home/model-server/key_file.json")
    expect(mode == "600", "key_file.json is readable by its owner only")
    return {kind: entry["key"] for kind, entry in document.items()}


def check_rest(inference: str, management: str, metrics: str, keys: dict[str, str]) -> None:
    seven = (ROOT / "examples" / "digits" / "seven.png").read_bytes()
    refused = httpx.post(f"{inference}/predictions/digits", content=seven, timeout=10)
    expect(refused.status_code == 400, "a prediction without a key is refused (token auth is on)")
    for probe in ("/ping", "/v2/health/live", "/v2/health/ready"):
        code = httpx.get(f"{inference}{probe}", timeout=10).status_code
        expect(code == 200, f"the probe {probe} answers 200 without a key")
    answer = httpx.post(
        f"{inference}/predictions/digits",
        content=seven,
        headers={"Authorization": f"Bearer {keys['inference']}"},
        timeout=30,
    )
    top = next(iter(answer.json())) if answer.status_code == 200 else None
    expect(top == "7", f"digits reads seven.png as 7 through the mapped port ({answer.text[:60]!r})")
    models = httpx.get(
        f"{management}/models", headers={"Authorization": f"Bearer {keys['management']}"}, timeout=10
    ).json()
    names = sorted(model["modelName"] for model in models["models"])
    expect(names == ["digits", "echo"], f"every archive in the mounted store is served ({names})")
    scrape = httpx.get(f"{metrics}/metrics", timeout=10).text
    expect("ts_inference_requests_total" in scrape, "Prometheus metrics on the metrics port")


def check_grpc(port: int, key: str) -> None:
    seven = (ROOT / "examples" / "digits" / "seven.png").read_bytes()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = inference_pb2_grpc.InferenceAPIsServiceStub(channel)
        reply = stub.Predictions(
            inference_pb2.PredictionsRequest(model_name="digits", input={"data": seven}),
            metadata=[("authorization", f"Bearer {key}")],
            timeout=30,
        )
    top = next(iter(json.loads(reply.prediction)))
    expect(top == "7", "gRPC Predictions through the mapped port")


def stop_under_load(name: str, inference: str, key: str) -> tuple[float, int]:
    """``podman stop`` (SIGTERM) while clients keep sending: each request sent before the
    listeners closed must be answered; later ones are refused at connect, never cut off.

    One connection per request: a keep-alive connection that the server closes as idle at the
    drain can race with the client's next request, which HTTP leaves to the client to retry
    (tests/integration/test_chaos.py covers keep-alive connections at the drain)."""
    stop = threading.Event()
    headers = {"Authorization": f"Bearer {key}", "Connection": "close"}

    def client() -> int:
        answered = 0
        with httpx.Client(timeout=60, headers=headers) as http:
            while not stop.is_set():
                try:
                    reply = http.post(f"{inference}/predictions/echo", content=b"x" * 1024)
                except httpx.ConnectError:
                    return answered  # the listener is closed: the server is stopping
                except httpx.HTTPError as err:
                    raise SystemExit(f"a request in flight was cut off while stopping: {err!r}") from err
                if reply.status_code != 200:
                    raise SystemExit(f"a request got {reply.status_code} while stopping: {reply.text}")
                answered += 1
        return answered

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        clients = [pool.submit(client) for _ in range(8)]
        time.sleep(1)  # let the load build up before the signal
        began = time.monotonic()
        podman("stop", "-t", str(DRAIN_TIMEOUT_S + 15), name)
        stopped = time.monotonic() - began
        stop.set()
        answered = sum(future.result() for future in clients)
    return stopped, answered


if __name__ == "__main__":
    raise SystemExit(main())
