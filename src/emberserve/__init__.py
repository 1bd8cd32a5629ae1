"""Ember: a fast, safe model server that speaks TorchServe's APIs.

Ember reads TorchServe's ``.mar`` archives, ``config.properties`` and handlers, and answers
TorchServe's REST and gRPC clients the same way, without a JVM.
"""

__version__ = "0.1.0"

#: The TorchServe version whose behaviour Ember reproduces (reported to handlers and clients).
TORCHSERVE_COMPAT_VERSION = "0.12.0"

__all__ = ["TORCHSERVE_COMPAT_VERSION", "__version__"]
