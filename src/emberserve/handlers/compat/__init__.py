"""TorchServe's ``ts`` import paths, served from Ember's modules inside a worker.

Handlers written for TorchServe do ``from ts.torch_handler.base_handler import BaseHandler`` or
``from ts.utils.util import PredictionException``. Ember never installs a package named ``ts``
(it would clash with a real TorchServe install); instead :func:`install` appends a meta-path
finder to the worker's ``sys.meta_path`` that answers for ``ts`` and ``ts.*``:

* each TorchServe *package* (``ts``, ``ts.utils``, ``ts.torch_handler``…) is a small synthetic
  package (``ts.__version__`` is the TorchServe version Ember reproduces);
* each TorchServe *module* is an alias of the Ember module implementing it (:data:`ALIASES`):
  ``ts.context`` **is** :mod:`emberserve.handlers.context`, so identities hold
  (``ts.context.Context is emberserve.handlers.context.Context``).

The finder is only installed when no real ``ts`` package is importable, and — being last on
``sys.meta_path`` — never shadows one. The frontend never calls :func:`install`.

Example (in a worker)::

    >>> install()  # doctest: +SKIP
    True
    >>> from ts.utils.util import PredictionException  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING

from emberserve import TORCHSERVE_COMPAT_VERSION

if TYPE_CHECKING:
    from importlib.abc import Loader as _Loader
else:
    _Loader = object

#: TorchServe packages, served as empty synthetic packages.
PACKAGES = frozenset(
    {
        "ts",
        "ts.utils",
        "ts.metrics",
        "ts.protocol",
        "ts.handler_utils",
        "ts.torch_handler",
        "ts.torch_handler.request_envelope",
    }
)

_METRICS = "emberserve.handlers.metrics"
_ENVELOPES = "emberserve.handlers.envelopes"

#: TorchServe module → the Ember module that implements it.
ALIASES: dict[str, str] = {
    "ts.context": "emberserve.handlers.context",
    "ts.utils.util": "emberserve.handlers.utils",
    "ts.handler_utils.utils": "emberserve.handlers.compat.handler_utils",
    "ts.handler_utils.timer": "emberserve.handlers.timer",
    "ts.protocol.otf_message_handler": "emberserve.handlers.compat.otf_message_handler",
    "ts.torch_handler.base_handler": "emberserve.handlers.base_handler",
    # The default handlers (emberserve.handlers.builtin), without torchvision or torchtext.
    "ts.torch_handler.vision_handler": "emberserve.handlers.builtin.vision_handler",
    "ts.torch_handler.image_classifier": "emberserve.handlers.builtin.image_classifier",
    "ts.torch_handler.image_segmenter": "emberserve.handlers.builtin.image_segmenter",
    "ts.torch_handler.object_detector": "emberserve.handlers.builtin.object_detector",
    "ts.torch_handler.text_handler": "emberserve.handlers.builtin.text_handler",
    "ts.torch_handler.text_classifier": "emberserve.handlers.builtin.text_classifier",
    "ts.torch_handler.densenet_handler": "emberserve.handlers.builtin.densenet_handler",
    "ts.handler_utils.text_utils": "emberserve.handlers.builtin.text_handler",
    "ts.metrics.metric_type_enum": _METRICS,
    "ts.metrics.dimension": _METRICS,
    "ts.metrics.unit": _METRICS,
    "ts.metrics.metric_abstract": _METRICS,
    "ts.metrics.caching_metric": _METRICS,
    "ts.metrics.metric_cache_abstract": _METRICS,
    "ts.metrics.metric_cache_yaml_impl": _METRICS,
    "ts.metrics.metric_cache_errors": _METRICS,
    "ts.torch_handler.request_envelope.base": _ENVELOPES,
    "ts.torch_handler.request_envelope.body": _ENVELOPES,
    "ts.torch_handler.request_envelope.json": _ENVELOPES,
    "ts.torch_handler.request_envelope.kserve": _ENVELOPES,
    "ts.torch_handler.request_envelope.kservev2": _ENVELOPES,
}

#: Marks the synthetic ``ts`` package, so the finder never extends a real one.
_MARKER = "__emberserve_compat__"


# The loaders follow importlib's protocol without importing importlib.abc at run time: its
# imports (importlib.resources, tempfile, urllib…) would cost every worker ~10 ms at start-up.


class _PackageLoader(_Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None  # the default: a fresh, empty module

    def exec_module(self, module: ModuleType) -> None:
        setattr(module, _MARKER, True)
        if module.__name__ == "ts":
            module.__version__ = TORCHSERVE_COMPAT_VERSION  # type: ignore[attr-defined]


class _AliasLoader(_Loader):
    """Loads ``ts.x`` as the already-implemented Ember module (the same module object)."""

    def __init__(self, target: str) -> None:
        self.target = target
        self._original_spec: importlib.machinery.ModuleSpec | None = None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(self.target)
        self._original_spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        # The import system has just set ``module.__spec__`` to the ``ts.x`` spec; the module
        # keeps its own identity (reload, pickling and tracebacks use the real name).
        module.__spec__ = self._original_spec


class TsCompatFinder:
    """Meta-path finder answering for ``ts`` and the names in :data:`PACKAGES` / :data:`ALIASES`."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "ts" and not fullname.startswith("ts."):
            return None
        if fullname != "ts" and not getattr(sys.modules.get("ts"), _MARKER, False):
            return None  # a real TorchServe is imported: never mix its modules with ours
        if fullname in PACKAGES:
            return importlib.machinery.ModuleSpec(fullname, _PackageLoader(), is_package=True)
        alias = ALIASES.get(fullname)
        if alias is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(alias))


_finder: TsCompatFinder | None = None


def installed() -> bool:
    """True when this process serves ``ts`` from Ember."""
    return _finder is not None


def install() -> bool:
    """Serve ``ts.*`` from Ember in this process, unless a real ``ts`` package is importable.

    Returns True when Ember's ``ts`` is (now) in use. Call this only in a worker process.
    """
    global _finder
    if _finder is not None:
        return True
    if "ts" in sys.modules or importlib.util.find_spec("ts") is not None:
        return False  # a real TorchServe (or something else called ts) takes precedence
    _finder = TsCompatFinder()
    sys.meta_path.append(_finder)
    return True


def uninstall() -> None:
    """Remove the finder and forget every ``ts`` module it served (for tests)."""
    global _finder
    if _finder is None:
        return
    if _finder in sys.meta_path:
        sys.meta_path.remove(_finder)
    _finder = None
    for name in [n for n in sys.modules if n == "ts" or n.startswith("ts.")]:
        del sys.modules[name]


__all__ = ["ALIASES", "PACKAGES", "TsCompatFinder", "install", "installed", "uninstall"]
