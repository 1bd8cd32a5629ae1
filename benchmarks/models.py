"""The benchmark models, archived with the real torch-model-archiver so both servers load the same files.

``echo``: a module-level handler returning its input (the frontend's overhead, no torch).
``cnn``:  an MNIST-sized CNN (two convolutions, one linear layer, 1 torch thread) taking a raw
          float32 1×28×28 body, through a ``ts.torch_handler.base_handler.BaseHandler`` subclass.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ECHO_HANDLER = """
def handle(data, context):
    if data is None:
        return None
    return [row.get("body") or row.get("data") for row in data]
"""

CNN_MODEL = """
import torch
from torch import nn


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Linear(16 * 5 * 5, 10)

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))
"""

CNN_HANDLER = """
import torch
from ts.torch_handler.base_handler import BaseHandler


class CnnHandler(BaseHandler):
    def initialize(self, context):
        torch.set_num_threads(1)
        super().initialize(context)

    def preprocess(self, data):
        rows = [bytes(row.get("body") or row.get("data")) for row in data]
        images = [torch.frombuffer(bytearray(r), dtype=torch.float32).view(1, 28, 28) for r in rows]
        return torch.stack(images)

    def postprocess(self, output):
        return output.argmax(dim=1).tolist()
"""


def build(store: Path, work: Path) -> None:
    """Write the sources and archive both models into ``store`` (idempotent)."""
    store.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    (work / "echo_handler.py").write_text(ECHO_HANDLER)
    (work / "cnn_model.py").write_text(CNN_MODEL)
    (work / "cnn_handler.py").write_text(CNN_HANDLER)
    sys.path.insert(0, str(work))
    try:
        import torch  # noqa: PLC0415 - only the benchmark needs it
        from cnn_model import SmallCNN  # type: ignore[import-not-found]  # noqa: PLC0415

        torch.manual_seed(0)
        torch.save(SmallCNN().state_dict(), work / "cnn.pt")
    finally:
        sys.path.remove(str(work))
    archiver = Path(sys.executable).with_name("torch-model-archiver")
    common = ["--version", "1.0", "--export-path", str(store), "--force"]
    subprocess.run(
        [str(archiver), "--model-name", "echo", "--handler", str(work / "echo_handler.py"), *common],
        check=True,
    )
    subprocess.run(
        [str(archiver), "--model-name", "cnn", "--model-file", str(work / "cnn_model.py"),
         "--serialized-file", str(work / "cnn.pt"), "--handler", str(work / "cnn_handler.py"), *common],
        check=True,
    )  # fmt: skip


def cnn_input() -> bytes:
    """One 1×28×28 float32 image."""
    import torch  # noqa: PLC0415

    torch.manual_seed(1)
    return torch.rand(1, 28, 28).numpy().tobytes()


def raw_cnn_seconds(work: Path, repeats: int = 2000) -> float:
    """Seconds one in-process forward pass of the CNN takes (1 thread, batch 1): the served ÷ raw baseline."""
    import torch  # noqa: PLC0415

    sys.path.insert(0, str(work))
    try:
        from cnn_model import SmallCNN  # noqa: PLC0415

        torch.set_num_threads(1)
        model = SmallCNN()
        model.load_state_dict(torch.load(work / "cnn.pt", weights_only=True))
        model.eval()
        x = torch.frombuffer(bytearray(cnn_input()), dtype=torch.float32).view(1, 1, 28, 28)
        with torch.inference_mode():
            for _ in range(100):
                model(x)
            started = time.perf_counter()
            for _ in range(repeats):
                model(x).argmax(dim=1).tolist()
            return (time.perf_counter() - started) / repeats
    finally:
        sys.path.remove(str(work))
