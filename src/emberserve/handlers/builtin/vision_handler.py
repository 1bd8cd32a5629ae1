"""``VisionHandler``: the base of the image handlers (``ts.torch_handler.vision_handler``).

Each request row's ``data`` (else ``body``) is an image: raw bytes (a PNG/JPEG upload, a
multipart part), a base64 string (a ``text/*`` body or a JSON string), or an already-decoded
nested list of floats. Bytes are opened with Pillow and passed through ``self.image_processing``
(defined by subclasses, e.g. :func:`~emberserve.handlers.builtin.transforms.imagenet_classification`);
lists become float tensors as they are. The rows are stacked into one batch tensor.

``limit_max_image_pixels`` (on by default) keeps Pillow's decompression-bomb limit; turning it
off in ``config.properties`` lifts the limit for the whole worker, as in TorchServe.

Explanations use Captum's Integrated Gradients (15 steps, ``target`` from the request), built
on the first explanation rather than at load time (see :mod:`emberserve.handlers.builtin.explain`).

Example (a handler of your own)::

    from ts.torch_handler.vision_handler import VisionHandler
    from emberserve.handlers.builtin.transforms import Compose, ToTensor

    class Digits(VisionHandler):
        image_processing = Compose([ToTensor()])
"""

from __future__ import annotations

import abc
import base64
import binascii
import io
import logging
from typing import Any

import torch
from PIL import Image

from emberserve.handlers.base_handler import BaseHandler
from emberserve.handlers.builtin.explain import integrated_gradients
from emberserve.handlers.context import Context
from emberserve.handlers.timer import timed
from emberserve.handlers.utils import PredictionException

logger = logging.getLogger(__name__)

#: Integration steps of an image explanation (TorchServe's value).
EXPLAIN_STEPS = 15


class VisionHandler(BaseHandler, abc.ABC):
    """Decode images, apply ``image_processing``, stack; explain with Integrated Gradients."""

    #: Pillow image → tensor; subclasses set it (a transform pipeline or any callable).
    image_processing: Any

    def initialize(self, context: Context) -> None:
        """Load the model (:meth:`BaseHandler.initialize`) and apply ``limit_max_image_pixels``."""
        super().initialize(context)
        self.initialized = True
        if not context.system_properties.get("limit_max_image_pixels"):
            Image.MAX_IMAGE_PIXELS = None

    # ``self.ig`` exists in TorchServe right after initialize; here it is built on first use
    # so that loading a model never imports Captum (seconds) or fails without it.
    @property
    def ig(self) -> Any:
        """Captum ``IntegratedGradients`` over ``self.model`` (501 PredictionException without Captum)."""
        explainer = self.__dict__.get("_ig")
        if explainer is None:
            explainer = integrated_gradients(self.model)
            self.__dict__["_ig"] = explainer
        return explainer

    @ig.setter
    def ig(self, explainer: Any) -> None:
        self.__dict__["_ig"] = explainer

    @timed
    def preprocess(self, data: Any) -> Any:
        """One tensor for the batch: each row's image decoded and processed (see the module docs)."""
        images = [self._row_tensor(row) for row in data]
        return torch.stack(images).to(self.device)

    def _row_tensor(self, row: Any) -> Any:
        image = (row.get("data") or row.get("body")) if isinstance(row, dict) else row
        if isinstance(image, str):
            try:
                image = base64.b64decode(image)
            except (binascii.Error, ValueError) as exc:
                raise PredictionException(f"Invalid base64 image: {exc}", 400) from exc
        if isinstance(image, bytes | bytearray):
            return self.image_processing(Image.open(io.BytesIO(image)))
        return torch.FloatTensor(image)

    def get_insights(self, tensor_data: Any, _: Any, target: Any = 0) -> Any:
        """Integrated-Gradients attributions of the batch, same shape as the input (a nested list)."""
        logger.info("input shape %s", tuple(tensor_data.shape))
        return self.ig.attribute(tensor_data, target=target, n_steps=EXPLAIN_STEPS).tolist()


__all__ = ["EXPLAIN_STEPS", "VisionHandler"]
