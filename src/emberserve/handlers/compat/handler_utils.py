"""``ts.handler_utils.utils``: streaming helper and ``import_class``."""

from __future__ import annotations

import importlib
from typing import Any

from emberserve.handlers.context import Context
from emberserve.handlers.streaming import send_intermediate_predict_response


def import_class(class_name: str, module_prefix: str | None = None) -> Any:
    """Import ``"pkg.module.Class"`` (or ``"module.Class"`` under ``module_prefix``) and return the class.

    >>> import_class("collections.OrderedDict").__name__
    'OrderedDict'
    """
    if not class_name:
        raise ImportError("class name is not defined")
    module_name, _, name = class_name.rpartition(".")
    if module_prefix:
        module = importlib.import_module(f"{module_prefix}.{module_name}" if module_name else module_prefix)
    elif module_name:
        module = importlib.import_module(module_name)
    else:
        raise ImportError("module name is not defined.")
    cls = getattr(module, name, None)
    if cls is None:
        raise ImportError(f"class:{name} not found in module:{module_name}.")
    return cls


__all__ = ["Context", "import_class", "send_intermediate_predict_response"]
