"""``ImageClassifier``: top-k ImageNet-style classification (``ts.torch_handler.image_classifier``).

Preprocessing is TorchServe's (Resize 256 → CenterCrop 224 → ToTensor → ImageNet Normalize,
without torchvision: :mod:`emberserve.handlers.builtin.transforms`). The answer for each image
is a dict ``{label: probability}`` of the ``topk`` (default 5) most likely classes, most likely
first; labels come from ``index_to_name.json`` when the archive has one, else they are the
class indices as strings.

Example::

    class Top1(ImageClassifier):
        topk = 1
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional

from emberserve.handlers.builtin.transforms import imagenet_classification
from emberserve.handlers.builtin.vision_handler import VisionHandler
from emberserve.handlers.timer import timed
from emberserve.handlers.utils import map_class_to_label


class ImageClassifier(VisionHandler):
    """Softmax, top-k, ``map_class_to_label``: ``[{"tabby": 0.61, "tiger_cat": 0.2, …}, …]``."""

    topk = 5
    image_processing = imagenet_classification()

    def set_max_result_classes(self, topk: int) -> None:
        """Answer with the ``topk`` most likely classes."""
        self.topk = topk

    def get_max_result_classes(self) -> int:
        return self.topk

    @timed
    def postprocess(self, data: Any) -> list[dict[str, Any]]:
        """Logits ``[N, classes]`` → one ``{label: probability}`` dict per image, best first."""
        probabilities = functional.softmax(data, dim=1)
        # TorchServe lets torch.topk fail (503) when the model has fewer classes than topk;
        # clamping lets the default topk=5 serve small models too.
        k = min(self.topk, probabilities.shape[1])
        probs, classes = torch.topk(probabilities, k, dim=1)
        return map_class_to_label(probs.tolist(), self.mapping, classes.tolist())


__all__ = ["ImageClassifier"]
