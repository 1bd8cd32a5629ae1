"""The benchmark models, archived with the real torch-model-archiver so both servers load the same files.

``echo``: a module-level handler returning its input (the frontend's overhead, no torch).
``cnn``:  an MNIST-sized CNN (two convolutions, one linear layer, 1 torch thread) taking a raw
          float32 1×28×28 body (or, through the kservev2 envelope, the tensor's numbers), through a
          ``ts.torch_handler.base_handler.BaseHandler`` subclass.
``light`` and ``resnet``: a 600 KB raw float32 3×224×224 body (W3) into a light model (average
          pooling and one linear layer) and into a ResNet-18-sized network written with torch.nn.
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
        return torch.stack([self._image(row) for row in data])

    @staticmethod
    def _image(row):
        if isinstance(row, list):  # kservev2: the request's input tensors
            row = row[0]
        value = row.get("body") or row.get("data")
        if isinstance(value, (bytes, bytearray)):
            return torch.frombuffer(bytearray(value), dtype=torch.float32).view(1, 28, 28)
        return torch.tensor(value, dtype=torch.float32).view(1, 28, 28)

    def postprocess(self, output):
        return output.argmax(dim=1).tolist()
"""


BIG_MODELS = """
import torch
from torch import nn


class Light(nn.Module):
    def __init__(self):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(8)
        self.classifier = nn.Linear(3 * 8 * 8, 1000)

    def forward(self, x):
        return self.classifier(torch.flatten(self.pool(x), 1))


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + (x if self.down is None else self.down(x)))


class ResNet18(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)
        )
        layers, cin = [], 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers += [Block(cin, cout, stride), Block(cout, cout, 1)]
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.head = nn.Linear(512, 1000)

    def forward(self, x):
        x = self.layers(self.stem(x))
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))
"""

BIG_HANDLER = """
import torch
from ts.torch_handler.base_handler import BaseHandler


class ImageHandler(BaseHandler):
    def initialize(self, context):
        torch.set_num_threads(1)
        super().initialize(context)

    def preprocess(self, data):
        rows = [bytearray(row.get("body") or row.get("data")) for row in data]
        return torch.stack([torch.frombuffer(r, dtype=torch.float32).view(3, 224, 224) for r in rows])

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
    (work / "big_models.py").write_text(BIG_MODELS)
    (work / "image_handler.py").write_text(BIG_HANDLER)
    sys.path.insert(0, str(work))
    try:
        import torch  # noqa: PLC0415 - only the benchmark needs it
        from big_models import Light, ResNet18  # type: ignore[import-not-found]  # noqa: PLC0415
        from cnn_model import SmallCNN  # type: ignore[import-not-found]  # noqa: PLC0415

        torch.manual_seed(0)
        torch.save(SmallCNN().state_dict(), work / "cnn.pt")
        torch.save(Light().state_dict(), work / "light.pt")
        torch.save(ResNet18().state_dict(), work / "resnet.pt")
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
    # The model file holds both classes; the archiver's --model-file must define exactly one
    # nn.Module subclass, so each archive gets its own copy naming only its class.
    for name, cls in (("light", "Light"), ("resnet", "ResNet18")):
        source = work / f"{name}_model.py"
        source.write_text(f"from big_models import *  # noqa: F403\n\n\nclass Model({cls}):\n    pass\n")
        subprocess.run(
            [str(archiver), "--model-name", name, "--model-file", str(source), "--serialized-file",
             str(work / f"{name}.pt"), "--handler", str(work / "image_handler.py"), "--extra-files",
             str(work / "big_models.py"), *common],
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


def image_input() -> bytes:
    """One 3×224×224 float32 image: 602 112 bytes (W3)."""
    import torch  # noqa: PLC0415

    torch.manual_seed(2)
    return torch.rand(3, 224, 224).numpy().tobytes()


def raw_image_seconds(work: Path, name: str, repeats: int = 20) -> float:
    """Seconds one in-process forward pass of ``light`` or ``resnet`` takes (1 thread, batch 1)."""
    import torch  # noqa: PLC0415

    sys.path.insert(0, str(work))
    try:
        from big_models import Light, ResNet18  # noqa: PLC0415

        torch.set_num_threads(1)
        model = {"light": Light, "resnet": ResNet18}[name]()
        model.load_state_dict(torch.load(work / f"{name}.pt", weights_only=True))
        model.eval()
        x = torch.frombuffer(bytearray(image_input()), dtype=torch.float32).view(1, 3, 224, 224)
        repeats = repeats * 50 if name == "light" else repeats
        with torch.inference_mode():
            for _ in range(3):
                model(x)
            started = time.perf_counter()
            for _ in range(repeats):
                model(x).argmax(dim=1).tolist()
            return (time.perf_counter() - started) / repeats
    finally:
        sys.path.remove(str(work))
