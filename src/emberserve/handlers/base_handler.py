"""``BaseHandler``: TorchServe's default handler contract (``ts.torch_handler.base_handler``).

Subclasses usually override some of ``preprocess`` / ``inference`` / ``postprocess``; the base
class loads the model in ``initialize`` from the archive's MANIFEST:

* ``modelFile`` present → eager model: the module must define exactly one class, which is built
  with no arguments and gets the ``serializedFile`` state dict (``torch.load(weights_only=True)``:
  tensors only, never arbitrary pickled objects);
* else ``serializedFile`` ending in ``.pt`` → TorchScript (``torch.jit.load``);
* ``.onnx`` → an onnxruntime session (needs ``onnxruntime``);
* ``.so`` with ``pt2: {export: {aot_compile: true}}`` → ``torch._export.aot_load``;
* then optional ``torch.compile`` from ``model-config.yaml`` ``pt2``, and the label mapping
  from ``index_to_name.json``.

torch is imported when a handler first needs it, so importing this module stays cheap.

Example::

    from ts.torch_handler.base_handler import BaseHandler

    class Doubler(BaseHandler):
        def initialize(self, context):
            self.initialized = True
        def inference(self, data, *args, **kwargs):
            return data * 2
"""

from __future__ import annotations

import abc
import importlib
import logging
import os
import time
from typing import Any

from emberserve.handlers.context import Context
from emberserve.handlers.timer import timed
from emberserve.handlers.utils import check_valid_pt2_backend, list_classes_from_module, load_label_mapping

logger = logging.getLogger(__name__)

#: Where ``ENABLE_TORCH_PROFILER`` traces go unless ``profiler_args["on_trace_ready"]`` says otherwise.
PROFILER_RESULT_DIR = "/tmp/pytorch_profiler"  # noqa: S108 - TorchServe's location, opt-in only


def _torch() -> Any:
    import torch  # noqa: PLC0415 - deferred so that importing BaseHandler does not load torch

    return torch


def setup_ort_session(model_pt_path: str, map_location: str | None) -> Any:
    """An onnxruntime inference session for ``model_pt_path`` (CUDA first when on a GPU)."""
    try:
        import onnxruntime as ort  # noqa: PLC0415
    except ImportError as exc:
        raise RuntimeError(
            f"{os.path.basename(model_pt_path)} is an ONNX model but onnxruntime is not installed "
            "(pip install onnxruntime)"
        ) from exc
    import psutil  # noqa: PLC0415

    providers = (
        ["CUDAExecutionProvider", "CPUExecutionProvider"]
        if map_location == "cuda"
        else ["CPUExecutionProvider"]
    )
    options = ort.SessionOptions()
    options.intra_op_num_threads = psutil.cpu_count(logical=True)
    return ort.InferenceSession(model_pt_path, providers=providers, sess_options=options)


class BaseHandler(abc.ABC):  # noqa: B024 - abstract by convention, as in TorchServe
    """Base of TorchServe-style handlers: load a model, then preprocess → inference → postprocess."""

    def __init__(self) -> None:
        self.model: Any = None
        self.mapping: dict[str, str] | None = None
        self.device: Any = None
        self.initialized = False
        self.context: Context | None = None
        self.model_pt_path: str | None = None
        self.manifest: dict[str, Any] | None = None
        self.map_location: str | None = None
        self.explain = False
        self.target = 0
        self.profiler_args: dict[str, Any] = {}

    # -- loading --------------------------------------------------------------------------------

    def initialize(self, context: Context) -> None:
        """Pick the device, load the model named by the MANIFEST and the label mapping."""
        torch = _torch()
        if context is not None and hasattr(context, "model_yaml_config"):
            self.model_yaml_config: dict[str, Any] = context.model_yaml_config or {}
        properties = context.system_properties
        self.map_location, self.device = self._select_device(torch, properties.get("gpu_id"))
        self.manifest = context.manifest or {}
        model_dir = properties.get("model_dir") or "."
        model_info = self.manifest.get("model", {})

        self.model_pt_path = None
        if "serializedFile" in model_info:
            self.model_pt_path = os.path.join(model_dir, model_info["serializedFile"])
        model_file = model_info.get("modelFile", "")
        pt_path = self.model_pt_path or ""

        if model_file:
            logger.debug("Loading eager model")
            self.model = self._load_pickled_model(model_dir, model_file, self.model_pt_path)
            self.model.to(self.device)
            self.model.eval()
        elif pt_path.endswith(".pt"):
            self.model = self._load_torchscript_model(pt_path)
            self.model.eval()
        elif pt_path.endswith(".onnx"):
            self.model = setup_ort_session(pt_path, self.map_location)
            logger.info("Successfully set up ort session")
        elif pt_path.endswith(".so") and self._use_torch_export_aot_compile():
            if torch.cuda.is_available() and properties.get("gpu_id") is not None:
                torch.cuda.set_device(self.device)
            self.model = self._load_torch_export_aot_compile(pt_path)
            logger.warning(
                "torch._export is an experimental feature! Successfully loaded torch exported model."
            )
        else:
            raise RuntimeError("No model weights could be loaded")

        self._maybe_compile(torch)
        logger.debug("Model file %s loaded successfully", self.model_pt_path)
        self.mapping = load_label_mapping(os.path.join(model_dir, "index_to_name.json"))
        self.initialized = True

    @staticmethod
    def _select_device(torch: Any, gpu_id: int | None) -> tuple[str | None, Any]:
        if gpu_id is not None:
            if torch.cuda.is_available():
                return "cuda", torch.device(f"cuda:{gpu_id}")
            xpu = getattr(torch, "xpu", None)
            if (
                os.environ.get("TS_IPEX_GPU_ENABLE", "false") == "true"
                and xpu is not None
                and xpu.is_available()
            ):
                device = torch.device(f"xpu:{gpu_id}")
                xpu.device(device)
                return "xpu", device
            if torch.backends.mps.is_available():
                return "mps", torch.device("mps")
        return "cpu", torch.device("cpu")

    def _maybe_compile(self, torch: Any) -> None:
        config = getattr(self, "model_yaml_config", None) or {}
        pt2 = config.get("pt2") if isinstance(config, dict) else None
        if pt2 is None:
            return
        options: dict[str, Any]
        if isinstance(pt2, dict) and "compile" in pt2:
            compile_section = dict(pt2["compile"] or {})
            if not compile_section.pop("enable", False):
                return
            options = compile_section
        elif isinstance(pt2, dict) and "export" in pt2:
            return
        elif isinstance(pt2, str):
            options = {"backend": pt2}
        elif isinstance(pt2, dict):
            options = dict(pt2)
            logger.warning(
                "This approach of specifying torch.compile() options is deprecated. "
                "The new standard approach is mentioned in https://github.com/pytorch/serve/issues/3164"
            )
        else:
            raise ValueError("pt2 should be str or dict")
        if "backend" in options and not check_valid_pt2_backend(options["backend"]):
            return
        described = ", ".join(f"{k} {v}" for k, v in options.items())
        try:
            self.model = torch.compile(self.model, **options)
            logger.info("Compiled model with %s", described)
        except Exception:
            logger.warning(
                "Compiling model with %s has failed. Proceeding without compilation", described, exc_info=True
            )

    def _load_torch_export_aot_compile(self, model_so_path: str) -> Any:
        """Load an AOT-compiled model (``.so``) as a callable."""
        return _torch()._export.aot_load(model_so_path, self.map_location)

    def _load_torchscript_model(self, model_pt_path: str) -> Any:
        """Load a TorchScript model on the handler's device."""
        return _torch().jit.load(model_pt_path, map_location=self.device)

    def _load_pickled_model(self, model_dir: str, model_file: str, model_pt_path: str | None) -> Any:
        """Build the one class defined in ``model_file`` and load the state dict ``model_pt_path``."""
        if not os.path.isfile(os.path.join(model_dir, model_file)):
            raise RuntimeError("Missing the model.py file")
        module = importlib.import_module(model_file.split(".", maxsplit=1)[0])
        classes = list_classes_from_module(module)
        if len(classes) != 1:
            raise ValueError(f"Expected only one class as model definition. {classes}")
        model = classes[0]()
        if model_pt_path:
            # weights_only: a state dict is tensors; refusing other pickled objects means a model
            # file cannot run code when it is loaded (torch's default since 2.6, made explicit).
            state_dict = _torch().load(model_pt_path, map_location=self.device, weights_only=True)
            model.load_state_dict(state_dict)
        return model

    def _use_torch_export_aot_compile(self) -> bool:
        config = getattr(self, "model_yaml_config", None) or {}
        pt2 = config.get("pt2") if isinstance(config, dict) else None
        if not isinstance(pt2, dict):
            return False
        export = pt2.get("export")
        return isinstance(export, dict) and bool(export.get("aot_compile"))

    # -- the three steps ------------------------------------------------------------------------

    @timed
    def preprocess(self, data: Any) -> Any:
        """Turn the request rows into a tensor on the handler's device (override to customise)."""
        return _torch().as_tensor(data, device=self.device)

    @timed
    def inference(self, data: Any, *args: Any, **kwargs: Any) -> Any:
        """Run the model on ``data`` under ``torch.inference_mode()``."""
        torch = _torch()
        with torch.inference_mode():
            return self.model(data.to(self.device), *args, **kwargs)

    @timed
    def postprocess(self, data: Any) -> Any:
        """Turn the model output into one item per request (default: ``data.tolist()``)."""
        return data.tolist()

    # -- entry point ------------------------------------------------------------------------------

    def handle(self, data: Any, context: Context) -> Any:
        """Describe, explain or predict, and record ``HandlerTime``."""
        start = time.perf_counter()
        self.context = context
        if os.environ.get("ENABLE_TORCH_PROFILER"):
            if self.manifest is None:
                self.manifest = context.manifest
            output, _ = self._infer_with_profiler(data=data)
        elif self._is_describe():
            output = [self.describe_handle()]
        else:
            data_preprocess = self.preprocess(data)
            if not self._is_explain():
                output = self.postprocess(self.inference(data_preprocess))
            else:
                output = self.explain_handle(data_preprocess, data)
        context.metrics.add_time("HandlerTime", round((time.perf_counter() - start) * 1000, 2), None, "ms")
        return output

    def _infer_with_profiler(self, data: Any) -> tuple[Any, Any]:
        """Run the three steps under ``torch.profiler`` and save a trace (``ENABLE_TORCH_PROFILER``)."""
        torch = _torch()
        from torch.profiler import ProfilerActivity, profile, record_function  # noqa: PLC0415

        if not self.profiler_args:
            self.profiler_args["activities"] = [ProfilerActivity.CPU, ProfilerActivity.CUDA]
            self.profiler_args["record_shapes"] = True
        if "on_trace_ready" not in self.profiler_args:
            model_name = ((self.manifest or {}).get("model") or {}).get("modelName", "")
            result_path = os.path.join(PROFILER_RESULT_DIR, model_name)
            self.profiler_args["on_trace_ready"] = torch.profiler.tensorboard_trace_handler(result_path)
            logger.info("Saving chrome trace to : %s", result_path)
        with profile(**self.profiler_args) as prof:
            with record_function("preprocess"):
                data_preprocess = self.preprocess(data)
            if not self._is_explain():
                with record_function("inference"):
                    output = self.inference(data_preprocess)
                with record_function("postprocess"):
                    output = self.postprocess(output)
            else:
                with record_function("explain"):
                    output = self.explain_handle(data_preprocess, data)
        logger.info(prof.key_averages().table(sort_by="cpu_time_total", row_limit=10))
        return output, prof

    def explain_handle(self, data_preprocess: Any, raw_data: Any) -> Any:
        """Explanations through ``self.get_insights(tensor, inputs, target)`` (defined by subclasses)."""
        inputs = None
        target: Any = 0
        logger.info("Calculating Explanations")
        row = raw_data[0]
        if isinstance(row, dict):
            inputs = row.get("data") or row.get("body")
            target = row.get("target") or 0
        # BaseHandler itself has no get_insights: explaining with it fails like TorchServe (503).
        get_insights = self.get_insights  # type: ignore[attr-defined]
        return get_insights(data_preprocess, inputs, target)

    def _is_explain(self) -> bool:
        if self.context and self.context.get_request_header(0, "explain") == "True":
            self.explain = True
            return True
        return False

    def _is_describe(self) -> bool:
        return bool(self.context and self.context.get_request_header(0, "describe") == "True")

    def describe_handle(self) -> Any:
        """Custom metadata for ``GET /models/{m}?customized=true`` (None unless overridden)."""
        return None

    def get_device(self) -> Any:
        return self.device


__all__ = ["BaseHandler", "setup_ort_session"]
