"""TorchServe's default handlers without torchvision or torchtext (``--handler image_classifier``).

Each module is also importable under its TorchServe name inside a worker
(``from ts.torch_handler.image_classifier import ImageClassifier``):

==========================  ===========================================================
module                      handler
==========================  ===========================================================
``vision_handler``          :class:`VisionHandler` — decode images, ``image_processing``
``image_classifier``        :class:`ImageClassifier` — top-k ``{label: probability}``
``image_segmenter``         :class:`ImageSegmenter` — per-pixel ``[class, probability]``
``object_detector``         :class:`ObjectDetector` — ``{label: box, "score": s}``
``text_handler``            :class:`TextHandler` — text clean-up, vocabulary
``text_classifier``         :class:`TextClassifier` — ``{label: probability}``
``densenet_handler``        :class:`DenseNetHandler` — tensor in, tensor out
==========================  ===========================================================

The transforms they use (:mod:`.transforms`) reproduce torchvision's; explanations need the
``explain`` extra (:mod:`.explain`). Nothing here is imported until a handler module is, so
importing this package does not load torch.
"""

#: Built-in handler modules, by their TorchServe name (``ts.torch_handler.<name>``).
BUILTIN_MODULES: dict[str, str] = {
    name: f"emberserve.handlers.builtin.{name}"
    for name in (
        "vision_handler",
        "image_classifier",
        "image_segmenter",
        "object_detector",
        "text_handler",
        "text_classifier",
        "densenet_handler",
    )
}

__all__ = ["BUILTIN_MODULES"]
