"""``ObjectDetector``: boxes above a score threshold (``ts.torch_handler.object_detector``).

Images are only converted to tensors (``ToTensor``: detection models normalise and resize
themselves). The model returns torchvision's detection format: one dict per image with
``boxes`` (``[n, 4]``, x1 y1 x2 y2), ``labels`` (``[n]``) and ``scores`` (``[n]``). The answer
per image is a list of ``{label: [x1, y1, x2, y2], "score": s}`` for every detection whose
score is at least ``threshold`` (0.5), labels mapped through ``index_to_name.json``.
"""

from __future__ import annotations

from typing import Any

from emberserve.handlers.builtin.transforms import Compose, ToTensor
from emberserve.handlers.builtin.vision_handler import VisionHandler
from emberserve.handlers.timer import timed
from emberserve.handlers.utils import map_class_to_label


class ObjectDetector(VisionHandler):
    """Keep detections with ``score >= threshold``; ``[[{"dog": [x1, y1, x2, y2], "score": 0.9}], …]``."""

    image_processing = Compose([ToTensor()])
    threshold = 0.5

    @timed
    def postprocess(self, data: Any) -> list[list[dict[str, Any]]]:
        """One list of ``{label: box, "score": score}`` per image, in the model's order."""
        result: list[list[dict[str, Any]]] = []
        for detections in data:
            keep = detections["scores"] >= self.threshold
            boxes = detections["boxes"][keep].tolist()
            labels = detections["labels"][keep].tolist()
            scores = detections["scores"][keep].tolist()
            found: list[dict[str, Any]] = []
            for label, box, score in zip(labels, boxes, scores, strict=True):
                entry = map_class_to_label([[box]], self.mapping, [[label]])[0]
                entry["score"] = score
                found.append(entry)
            result.append(found)
        return result


__all__ = ["ObjectDetector"]
