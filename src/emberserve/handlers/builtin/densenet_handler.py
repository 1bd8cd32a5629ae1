"""``DenseNetHandler``: tensors in, tensor out (``ts.torch_handler.densenet_handler``).

A standalone handler (not a BaseHandler): each request body is a tensor saved with
``torch.save``; the batch is stacked, run through the model under ``no_grad`` and returned as
*one* tensor (serialised with ``torch.save``) — so, as in TorchServe, it answers batches of one.

Unlike TorchServe, request tensors are read with ``torch.load(weights_only=True)``: a request
can carry tensors, never pickled objects that would run code in the worker.
"""

from __future__ import annotations

import io
import logging
import os
import time
from typing import Any

import torch

from emberserve.handlers.base_handler import BaseHandler
from emberserve.handlers.context import Context
from emberserve.handlers.utils import PredictionException, list_classes_from_module

logger = logging.getLogger(__name__)


class DenseNetHandler:
    """Load a TorchScript (or eager ``modelFile`` + state dict) model; ``handle`` stacks request tensors."""

    def __init__(self) -> None:
        self.model: Any = None
        self.device: Any = None
        self.initialized = False
        self.context: Context | None = None
        self.manifest: dict[str, Any] | None = None
        self.map_location: str | None = None

    def initialize(self, context: Context) -> None:
        """Load the model named by the MANIFEST's ``serializedFile`` (and ``modelFile`` if any)."""
        properties = context.system_properties
        gpu_id = properties.get("gpu_id")
        on_gpu = torch.cuda.is_available() and gpu_id is not None
        self.map_location = "cuda" if on_gpu else "cpu"
        self.device = torch.device(f"cuda:{gpu_id}" if on_gpu else "cpu")
        self.manifest = context.manifest or {}
        model_dir = str(properties.get("model_dir") or ".")
        model_info = self.manifest.get("model", {})
        model_pt_path = os.path.join(model_dir, model_info.get("serializedFile", ""))
        if not os.path.isfile(model_pt_path):
            raise RuntimeError("Missing the model.pt file")
        model_file = model_info.get("modelFile", "")
        if model_file:
            self.model = self._load_pickled_model(model_dir, model_file, model_pt_path)
        else:
            self.model = self._load_torchscript_model(model_pt_path)
        self.model.to(self.device)
        self.model.eval()
        self.initialized = True

    def _load_torchscript_model(self, model_pt_path: str) -> Any:
        return torch.jit.load(model_pt_path, map_location=self.map_location)  # type: ignore[no-untyped-call]

    def _load_pickled_model(self, model_dir: str, model_file: str, model_pt_path: str) -> Any:
        # BaseHandler's loader: exactly one class in model_file, a weights_only state dict.
        loader = BaseHandler()
        loader.device = self.device
        return loader._load_pickled_model(model_dir, model_file, model_pt_path)

    def inference(self, data: Any, *args: Any, **kwargs: Any) -> Any:
        """The model's output for the batch tensor (no gradients)."""
        with torch.no_grad():
            return self.model(data.to(self.device), *args, **kwargs)

    def handle(self, data: Any, context: Context) -> list[Any]:
        """Stack the request tensors, run the model, answer ``[output tensor]``; records ``HandlerTime``."""
        start = time.perf_counter()
        self.context = context
        tensors = [self._load_tensor(row.get("data") or row.get("body")) for row in data]
        output = self.inference(torch.stack(tensors))
        context.metrics.add_time("HandlerTime", round((time.perf_counter() - start) * 1000, 2), None, "ms")
        return [output]

    @staticmethod
    def _load_tensor(raw: Any) -> Any:
        if not isinstance(raw, bytes | bytearray):
            raise PredictionException(
                "DenseNetHandler expects a tensor saved with torch.save as the body", 400
            )
        try:
            tensor = torch.load(io.BytesIO(bytes(raw)), map_location="cpu", weights_only=True)
        except Exception as exc:  # any unpickling failure is the request's fault
            raise PredictionException(f"The body is not a tensor saved with torch.save: {exc}", 400) from exc
        if not isinstance(tensor, torch.Tensor):
            raise PredictionException("The body must hold a single tensor", 400)
        return tensor


__all__ = ["DenseNetHandler", "list_classes_from_module"]
