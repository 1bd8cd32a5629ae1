"""Ember's container image next to TorchServe 0.12's, on this machine: size and start-to-ready.

``python -m benchmarks.image_compare`` builds (once) a TorchServe 0.12 image laid out as its
published CPU image (``benchmarks/torchserve_image/``: Debian bookworm with Java 17, the same
PyTorch CPU wheel as Ember's image, built offline from wheels made here, since no registry is
reachable), then starts each image three times with the example model store mounted and times
``podman run`` → the first digits prediction answered 200 (not ``/ping``: TorchServe reports
Healthy while its workers still load; Ember's ``/ping`` waits for them). Token authorization is off
in both for this. Needs ``make image`` and ``make examples`` first.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from emberserve import __version__

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TS_IMAGE = "localhost/torchserve-bench:0.12.0"
TS_BASE = "localhost/ember-bench-jdk-base:bookworm"
EMBER_IMAGE = f"localhost/emberserve:{__version__}"
RUNTIME = ["--runtime", "runc"] if shutil.which("runc") else []
LIMITS = ["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768"]


def podman(*args: str) -> str:
    return subprocess.run(["podman", *args], check=True, capture_output=True, text=True).stdout.strip()


def exists(image: str) -> bool:
    return subprocess.run(["podman", "image", "exists", image], check=False).returncode == 0


def build_torchserve_image() -> None:
    if not exists(TS_BASE):
        rootfs = Path(tempfile.mkdtemp(prefix="ts-rootfs-", dir="/var/tmp"))
        try:
            print("==> debootstrap: Debian bookworm with Python 3.11 and Java 17", flush=True)
            subprocess.run(
                ["debootstrap", "--variant=minbase",
                 "--include=python3,python3-venv,ca-certificates,openjdk-17-jre-headless",
                 "bookworm", str(rootfs), "http://deb.debian.org/debian"],
                check=True, stdout=subprocess.DEVNULL,
            )  # fmt: skip
            tar = subprocess.Popen(
                ["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE
            )
            subprocess.run(
                ["podman", "import", "-", TS_BASE], stdin=tar.stdout, check=True, capture_output=True
            )
            tar.wait()
        finally:
            shutil.rmtree(rootfs, ignore_errors=True)
    context = Path(tempfile.mkdtemp(prefix="ts-image-"))
    try:
        shutil.copy(ROOT / "benchmarks" / "torchserve_image" / "config.properties", context)
        print("==> wheels for torchserve 0.12.0", flush=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", str(context / "wheels"),
             "torchserve==0.12.0", "torch-model-archiver==0.12.0", "torch==2.13.0", "numpy", "pillow",
             "pyyaml"],
            check=True, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        print(f"==> building {TS_IMAGE}", flush=True)
        subprocess.run(
            ["podman", "build", *RUNTIME, "-q", "-f", str(HERE / "torchserve_image" / "Dockerfile"),
             "--build-arg", f"BASE_IMAGE={TS_BASE}", "-t", TS_IMAGE, str(context)],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
    finally:
        shutil.rmtree(context, ignore_errors=True)


def start_to_ready(image: str, store: Path, port: int) -> float:
    name = f"image-compare-{port}"
    subprocess.run(["podman", "rm", "-f", name], check=False, capture_output=True)
    seven = (ROOT / "examples" / "digits" / "seven.png").read_bytes()
    command = ["serve", "--disable-token-auth"] if image == EMBER_IMAGE else []
    began = time.monotonic()
    podman(*RUNTIME, "run", *LIMITS, "-d", "--name", name, "-p", f"127.0.0.1:{port}:8080",
           "-v", f"{store}:/home/model-server/model-store:ro", image, *command)  # fmt: skip
    try:
        while time.monotonic() - began < 300:
            try:
                answer = httpx.post(f"http://127.0.0.1:{port}/predictions/digits", content=seven, timeout=10)
                if answer.status_code == 200:
                    return time.monotonic() - began
            except httpx.HTTPError:
                pass
            time.sleep(0.05)  # polling a container from outside: there is no event to wait on
        raise SystemExit(f"{image} was not ready after 300 s")
    finally:
        subprocess.run(["podman", "rm", "-f", "-t", "30", name], check=False, capture_output=True)


def main() -> int:
    store = (ROOT / "model_store").resolve()
    if not exists(EMBER_IMAGE) or not (store / "digits.mar").is_file():
        sys.exit("run `make image` and `make examples` first")
    if not exists(TS_IMAGE):
        build_torchserve_image()
    rows = []
    for image in (EMBER_IMAGE, TS_IMAGE):
        size_mb = int(podman("image", "inspect", "--format", "{{.Size}}", image)) / 1e6
        ready = [start_to_ready(image, store, 18900 + i) for i in range(3)]
        rows.append((image, size_mb, statistics.median(ready), ready))
    print("\n| image | size (MB) | podman run → first digits prediction, median of 3 (s) | runs (s) |")
    print("| --- | --- | --- | --- |")
    for image, size_mb, ready_s, runs in rows:
        print(f"| {image} | {size_mb:.0f} | {ready_s:.1f} | {', '.join(f'{r:.1f}' for r in runs)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
