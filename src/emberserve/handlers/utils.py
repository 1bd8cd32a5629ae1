"""Helpers TorchServe handlers import from ``ts.utils.util``.

Same names, signatures and results as TorchServe 0.12, so handlers written for TorchServe run
unchanged inside Ember's workers (where ``ts.utils.util`` is an alias of this module).

Example::

    >>> map_class_to_label([[0.1, 0.9]], {"0": "cat", "1": "dog"})
    [{'cat': 0.1, 'dog': 0.9}]
    >>> str(PredictionException("bad input", 418))
    'bad input : 418'
"""

from __future__ import annotations

import enum
import inspect
import itertools
import json
import logging
import os
import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from functools import wraps
from types import ModuleType
from typing import Any, ParamSpec, TypeVar

logger = logging.getLogger(__name__)

_P = ParamSpec("_P")
_R = TypeVar("_R")

#: Kept for handlers that strip markup from text the way TorchServe's text handlers do.
CLEANUP_REGEX = re.compile("<.*?>|&([a-z0-9]+|#[0-9]{1,6}|#x[0-9a-f]{1,6});")


class PT2Backend(str, enum.Enum):  # noqa: UP042 - str() as in TorchServe, not StrEnum's
    """``torch.compile`` backends TorchServe accepts in ``model-config.yaml`` (``pt2.compile.backend``)."""

    EAGER = "eager"
    AOT_EAGER = "aot_eager"
    INDUCTOR = "inductor"
    NVFUSER = "nvfuser"
    AOT_NVFUSER = "aot_nvfuser"
    AOT_CUDAGRAPHS = "aot_cudagraphs"
    OFI = "ofi"
    FX2TRT = "fx2trt"
    ONNXRT = "onnxrt"
    IPEX = "ipex"
    TORCHXLA_TRACE_ONCE = "torchxla_trace_once"
    OPENVINO = "openvino"
    TENSORRT = "tensorrt"
    HPU_BACKEND = "hpu_backend"


class PredictionException(Exception):
    """Raise from a handler to answer every request of the batch with ``error_code`` and ``message``.

    >>> err = PredictionException("teapot", 418)
    >>> (err.message, err.error_code)
    ('teapot', 418)
    """

    def __init__(self, message: str, error_code: int = 500) -> None:
        self.message = message
        self.error_code = error_code
        super().__init__(message)

    def __str__(self) -> str:
        return f"{self.message} : {self.error_code}"


def list_classes_from_module(module: ModuleType, parent_class: type | None = None) -> list[type]:
    """Classes *defined* in ``module`` (not imported into it), sorted by name.

    With ``parent_class``, only its subclasses are returned.
    """
    classes = [
        member
        for _, member in inspect.getmembers(
            module, lambda m: inspect.isclass(m) and m.__module__ == module.__name__
        )
    ]
    if parent_class is not None:
        return [cls for cls in classes if issubclass(cls, parent_class)]
    return classes


def check_valid_pt2_backend(backend: str) -> bool:
    """True when ``backend`` names a :class:`PT2Backend`; logs a warning otherwise."""
    if backend in {member.value for member in PT2Backend}:
        return True
    logger.warning("%s is not a supported backend", backend)
    return False


def load_label_mapping(mapping_file_path: str) -> dict[str, str] | None:
    """Load ``index_to_name.json`` (``{"0": "cat", …}``); None (with a warning) when the file is missing.

    Values may be a string or a list of strings (the last one is the label); the older
    ``{"object_type_names": [...]}`` layout is accepted too.
    """
    if not os.path.isfile(mapping_file_path):
        logger.warning("%r is missing. Inference output will not include class name.", mapping_file_path)
        return None
    with open(mapping_file_path, encoding="utf-8") as f:
        mapping = json.load(f)
    if not isinstance(mapping, dict):
        raise Exception('index->name JSON mapping should be in "class": "label" format.')
    names = mapping.get("object_type_names")
    if isinstance(names, list):
        return {str(index): name for index, name in enumerate(names)}
    for key, value in mapping.items():
        label = value[-1] if isinstance(value, list) and value else value
        if not isinstance(label, str):
            raise Exception("labels in index->name mapping must be either str or List[str]")
        mapping[key] = label
    return mapping


def map_class_to_label(
    probs: list[Any],
    mapping: dict[str, str] | None = None,
    lbl_classes: Iterable[Sequence[Any]] | None = None,
) -> list[dict[str, Any]]:
    """Turn rows of probabilities into ``[{label: probability, …}, …]``.

    ``lbl_classes`` gives the class index of each probability per row (default ``0..n-1``);
    ``mapping`` turns an index into its label (default: the index as a string).
    """
    if not isinstance(probs, list):
        raise Exception("Convert classes to list before doing mapping")
    if mapping is not None and not isinstance(mapping, dict):
        raise Exception("Mapping must be a dict")
    classes: Iterable[Sequence[Any]] = (
        itertools.repeat(range(len(probs[0])), len(probs)) if lbl_classes is None else lbl_classes
    )
    return [
        {
            (mapping[str(cls)] if mapping is not None else str(cls)): prob
            for cls, prob in zip(row_classes, row, strict=False)
        }
        for row_classes, row in zip(classes, probs, strict=False)
    ]


def get_yaml_config(yaml_file_path: str) -> Any:
    """Parse a YAML file with PyYAML's safe loader (no Python object tags)."""
    import yaml  # noqa: PLC0415 - only handlers that read YAML pay for the import

    with open(yaml_file_path, encoding="utf-8") as file:
        return yaml.safe_load(file)


def deprecated(
    version: str, replacement: str = "", klass: type[Warning] = PendingDeprecationWarning
) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]:
    """Decorator: calling the wrapped function warns that it goes away in ``version``."""

    def deprecator(func: Callable[_P, _R]) -> Callable[_P, _R]:
        @wraps(func)
        def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            warnings.warn(
                f"{func.__name__} is deprecated in {version} and moved to {replacement}",
                klass,
                stacklevel=2,
            )
            return func(*args, **kwargs)

        return wrapper

    return deprecator


__all__ = [
    "CLEANUP_REGEX",
    "PT2Backend",
    "PredictionException",
    "check_valid_pt2_backend",
    "deprecated",
    "get_yaml_config",
    "list_classes_from_module",
    "load_label_mapping",
    "map_class_to_label",
]
