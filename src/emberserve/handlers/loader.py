"""MANIFEST ``handler`` → the callable a worker runs per batch (TorchServe's ``model_loader``).

TorchServe's rules (reference §12 "Loading"):

1. ``"x.py"``, ``"x"``, ``"dir/x.py"`` or ``"x:fn"`` names module ``x``, imported from the model
   directory (the worker's cwd, first on ``sys.path``). If there is no module ``x``, the name is
   a built-in handler (``ts.torch_handler.<name>``, e.g. ``base_handler``).
2. If the module has the function ``fn`` (default ``handle``), that function is the entry point:
   it is called once as ``fn(None, context)`` to initialise, then ``fn(data, context)`` per batch.
3. Otherwise the module must define exactly one class; it is built with no arguments,
   ``initialize(context)`` is called, then ``handle(data, context)`` per batch.
4. A ``service_envelope`` wraps the entry point (:mod:`emberserve.handlers.envelopes`).

Unlike TorchServe, an ImportError raised *inside* the handler module (a missing dependency) is
reported as such instead of being masked by a failed built-in lookup.

Example::

    handler = load_handler("noop_handler.py", context)   # in the model directory
    outputs = handler.entry_point(rows, context)
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from emberserve.handlers.context import Context
from emberserve.handlers.envelopes import envelope_class
from emberserve.handlers.utils import list_classes_from_module

EntryPoint = Callable[[Any, Context], Any]

#: TorchServe's default handler names (``--handler image_classifier``); Ember ships them gradually.
TORCHSERVE_BUILTINS = frozenset(
    {
        "base_handler",
        "image_classifier",
        "image_segmenter",
        "object_detector",
        "text_classifier",
        "text_handler",
        "vision_handler",
        "densenet_handler",
        "dali_image_classifier",
        "vllm_handler",
        "trt_llm_handler",
    }
)

DEFAULT_FUNCTION = "handle"


class HandlerLoadError(Exception):
    """The handler named in the MANIFEST cannot be loaded (message safe to show in logs)."""


@dataclass(slots=True)
class HandlerSpec:
    """A parsed MANIFEST ``handler`` value: module name and optional function name."""

    module: str
    function: str | None

    @classmethod
    def parse(cls, handler: str) -> HandlerSpec:
        """``"dir/x.py:fn"`` → ``HandlerSpec("x", "fn")``.

        >>> HandlerSpec.parse("handlers/my_handler.py:infer")
        HandlerSpec(module='my_handler', function='infer')
        """
        if not handler or not handler.strip():
            raise HandlerLoadError("No handler is specified for the model")
        module, _, function = handler.strip().partition(":")
        module = module.removesuffix(".py").split("/")[-1]
        if not module:
            raise HandlerLoadError(f"Invalid handler {handler!r}")
        return cls(module, function or None)


@dataclass(slots=True)
class LoadedHandler:
    """A handler ready to serve: ``entry_point(data, context)`` per batch."""

    entry_point: EntryPoint
    module: ModuleType
    instance: Any  # the handler object for class-based handlers, else None


def import_handler_module(spec: HandlerSpec, model_dir: str) -> ModuleType:
    """Import the handler module from ``model_dir``, falling back to a built-in handler name."""
    local = Path(model_dir, f"{spec.module}.py")
    existing = sys.modules.get(spec.module)
    if existing is not None and (local.is_file() or Path(model_dir, spec.module).is_dir()):
        origin = getattr(existing, "__file__", None)
        if origin is None or Path(origin).resolve().parent != Path(model_dir).resolve():
            # importlib would hand back the worker's own module of that name, not the handler.
            raise HandlerLoadError(
                f"Handler module name {spec.module!r} clashes with a module the worker already uses; "
                "rename the handler file"
            )
    try:
        return importlib.import_module(spec.module)
    except ModuleNotFoundError as exc:
        if exc.name != spec.module:
            raise  # the handler exists but one of *its* imports is missing
    return import_builtin_handler(spec.module)


def import_builtin_handler(name: str) -> ModuleType:
    """``ts.torch_handler.<name>`` (needs the ``ts`` compat finder installed)."""
    try:
        return importlib.import_module(f"ts.torch_handler.{name}")
    except ModuleNotFoundError as exc:
        if exc.name not in (f"ts.torch_handler.{name}", "ts", "ts.torch_handler"):
            raise
        if name in TORCHSERVE_BUILTINS:
            raise HandlerLoadError(f"built-in handler {name} is not available yet") from None
        raise HandlerLoadError(
            f"Unable to load handler {name}: no module {name}.py in the model "
            "and no built-in handler of that name"
        ) from None


def _class_entry(module: ModuleType) -> tuple[EntryPoint, Callable[[Context], Any], Any]:
    classes = list_classes_from_module(module)
    if len(classes) != 1:
        raise ValueError(
            f"Expected only one class in custom service code or a function entry point {classes}"
        )
    instance = classes[0]()
    if not hasattr(instance, "handle"):
        raise ValueError(f"Expect handle method in class {classes[0]}")
    return instance.handle, instance.initialize, instance


def load_handler(handler: str, context: Context, envelope: str | None = None) -> LoadedHandler:
    """Import, build and initialise the handler; return its (enveloped) entry point.

    ``context`` is the worker's context (``system_properties["model_dir"]`` locates the
    handler). Whatever the handler's ``initialize`` raises propagates unchanged.
    """
    spec = HandlerSpec.parse(handler)
    module = import_handler_module(spec, str(context.system_properties["model_dir"]))
    function = spec.function or DEFAULT_FUNCTION
    instance: Any = None
    initialize: Callable[[Context], Any]
    if hasattr(module, function):
        entry_point: EntryPoint = getattr(module, function)
        raw = entry_point

        def initialize_function(ctx: Context) -> Any:
            return raw(None, ctx)

        initialize = initialize_function

    else:
        entry_point, initialize, instance = _class_entry(module)
    if envelope:
        entry_point = envelope_class(envelope)(entry_point).handle
    initialize(context)
    return LoadedHandler(entry_point, module, instance)


__all__ = [
    "TORCHSERVE_BUILTINS",
    "HandlerLoadError",
    "HandlerSpec",
    "LoadedHandler",
    "import_builtin_handler",
    "import_handler_module",
    "load_handler",
]
