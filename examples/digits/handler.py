"""Handler for the digits CNN: an image in, the top-5 digits with probabilities out.

Accepts PNG/JPEG of any size, colour or grey, as a raw body (``curl -T seven.png``) or a multipart
field (``curl -F data=@seven.png``), dark ink on a light background or the reverse. Each answer is
TorchServe's image-classifier shape: ``{"7": 0.98, "9": 0.01, …}`` sorted by probability.
Self-contained: needs torch, numpy and Pillow, not torchvision and not TorchServe's ``ts`` package.
"""

import base64
import io
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

TOP_K = 5


class DigitsHandler:
    def __init__(self) -> None:
        self.model: torch.nn.Module | None = None
        self.labels: dict[str, str] = {}

    def initialize(self, context) -> None:
        model_dir = Path(context.system_properties["model_dir"])
        from model import DigitsCNN  # the archive's modelFile; model_dir is on sys.path

        torch.set_num_threads(1)
        model = DigitsCNN()
        model.load_state_dict(torch.load(model_dir / "digits.pt", map_location="cpu", weights_only=True))
        self.model = model.eval()
        labels = model_dir / "index_to_name.json"
        self.labels = (
            json.loads(labels.read_text()) if labels.exists() else {str(i): str(i) for i in range(10)}
        )

    def handle(self, data, context):
        if data is None:
            return None
        assert self.model is not None, "initialize() was not called"
        batch = torch.stack([to_tensor(image_bytes(row)) for row in data])
        with torch.inference_mode():
            probabilities = torch.softmax(self.model(batch), dim=1)
        top = probabilities.topk(TOP_K, dim=1)
        return [
            {
                self.labels.get(str(int(i)), str(int(i))): round(float(p), 6)
                for p, i in zip(ps, idx, strict=True)
            }
            for ps, idx in zip(top.values, top.indices, strict=True)
        ]


def image_bytes(row: dict) -> bytes:
    value = row.get("data") if row.get("data") is not None else row.get("body")
    if isinstance(value, str):  # a base64 string, e.g. from a JSON client
        return base64.b64decode(value)
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    raise ValueError("send the image as the request body or as a multipart field named 'data'")


def to_tensor(raw: bytes) -> torch.Tensor:
    """Any image → 1×8×8 float tensor shaped like the training data (ink intensity in [0, 1])."""
    grey = Image.open(io.BytesIO(raw)).convert("L")
    pixels = np.asarray(grey, dtype=np.float32)
    # load_digits stores ink intensity: dark ink on paper must be inverted, light-on-dark kept.
    ink = 255.0 - pixels if pixels.mean() > 127.5 else pixels
    small = Image.fromarray(ink.astype(np.uint8)).resize((8, 8), Image.Resampling.BOX)
    # load_digits values are 0..16 integers; training divided them by 16.
    scaled = np.round(np.asarray(small, dtype=np.float32) / 255.0 * 16.0) / 16.0
    return torch.from_numpy(scaled)[None, :, :]
