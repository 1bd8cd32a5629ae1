"""Captum glue for the built-in handlers' explanations (``POST /explanations/{model}``).

Captum is optional (``pip install 'emberserve[explain]'``) and slow to import (it pulls in
matplotlib), so it is imported on the first explanation, never when a model loads. Without it,
an explanation fails with **501 Not Implemented** and a message naming the extra, while
predictions keep working. (TorchServe imports Captum when the handler module is imported, so
without Captum its image and text handlers cannot even load.)

Example::

    explainer = integrated_gradients(model)      # PredictionException(501) without captum
    attributions = explainer.attribute(batch, target=0, n_steps=15)
"""

from __future__ import annotations

import importlib
from typing import Any

from emberserve.handlers.utils import PredictionException

#: HTTP status of an explanation asked of a worker without Captum.
EXPLAIN_UNAVAILABLE_STATUS = 501
EXPLAIN_UNAVAILABLE_MESSAGE = (
    "Explanations need Captum, which is not installed in the worker's environment: "
    "pip install 'emberserve[explain]'"
)


def captum_attr() -> Any:
    """The ``captum.attr`` module, or :class:`PredictionException` (501) naming the extra."""
    try:
        return importlib.import_module("captum.attr")
    except ImportError as exc:
        raise PredictionException(EXPLAIN_UNAVAILABLE_MESSAGE, EXPLAIN_UNAVAILABLE_STATUS) from exc


def integrated_gradients(model: Any) -> Any:
    """``captum.attr.IntegratedGradients(model)`` (how TorchServe's image handlers explain)."""
    return captum_attr().IntegratedGradients(model)


def layer_integrated_gradients(model: Any, layer: Any) -> Any:
    """``captum.attr.LayerIntegratedGradients(model, layer)`` (TorchServe's text handlers)."""
    return captum_attr().LayerIntegratedGradients(model, layer)


def token_reference(reference_token_idx: int = 0) -> Any:
    """``captum.attr.TokenReferenceBase``: the all-padding baseline for text attributions."""
    return captum_attr().TokenReferenceBase(reference_token_idx=reference_token_idx)


__all__ = [
    "EXPLAIN_UNAVAILABLE_MESSAGE",
    "EXPLAIN_UNAVAILABLE_STATUS",
    "captum_attr",
    "integrated_gradients",
    "layer_integrated_gradients",
    "token_reference",
]
