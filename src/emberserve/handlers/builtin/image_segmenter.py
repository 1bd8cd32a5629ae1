"""``ImageSegmenter``: per-pixel classes (``ts.torch_handler.image_segmenter``).

The model returns ``{"out": logits[N, K, H, W]}`` (torchvision's segmentation models do). The
answer per image is an ``H × W × 2`` nested list: for every pixel, ``[class, probability]`` of its
most likely class (the class index as a float) — not the full ``K`` scores, which would make
responses of tens of megabytes. Preprocessing is the ImageNet pipeline of the classifier.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional

from emberserve.handlers.builtin.transforms import imagenet_classification
from emberserve.handlers.builtin.vision_handler import VisionHandler
from emberserve.handlers.timer import timed


class ImageSegmenter(VisionHandler):
    """``{"out": [N, K, H, W]}`` → per image ``[[[class, probability], …], …]`` (``H × W × 2``)."""

    image_processing = imagenet_classification()

    @timed
    def postprocess(self, data: Any) -> list[Any]:
        """The most likely class of every pixel and its probability."""
        scores = data["out"] if isinstance(data, dict) else data
        best = torch.max(functional.softmax(scores, dim=1), dim=1)
        pairs = torch.stack([best.indices.to(best.values.dtype), best.values], dim=3)
        result: list[Any] = pairs.tolist()
        return result


__all__ = ["ImageSegmenter"]
