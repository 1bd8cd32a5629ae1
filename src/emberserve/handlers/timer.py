"""``@timed``: optional per-step timings for handler methods (``ts.handler_utils.timer``).

Only when the model's ``model-config.yaml`` has ``handler: {profile: true}`` does a decorated
method record ``ts_handler_<method>`` (milliseconds) through ``context.metrics.add_time``;
otherwise it costs one dictionary lookup.

Example::

    class MyHandler(BaseHandler):
        @timed
        def preprocess(self, data):
            ...
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

_F = TypeVar("_F", bound=Callable[..., Any])


def _profiling(handler: Any) -> bool:
    context = getattr(handler, "context", None)
    if not context:
        return False
    config = getattr(context, "model_yaml_config", None) or {}
    section = config.get("handler") if isinstance(config, dict) else None
    return isinstance(section, dict) and bool(section.get("profile"))


def _synchronize_gpu() -> None:
    # GPU work is asynchronous: without a sync the time would only cover the kernel launches.
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(func: _F) -> _F:
    """Decorate a handler method so it reports its duration when profiling is on (see above)."""

    @wraps(func)
    def wrap_func(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not _profiling(self):
            return func(self, *args, **kwargs)
        _synchronize_gpu()
        start = time.perf_counter()
        result = func(self, *args, **kwargs)
        _synchronize_gpu()
        duration_ms = (time.perf_counter() - start) * 1000
        self.context.metrics.add_time("ts_handler_" + func.__name__, duration_ms)
        return result

    return wrap_func  # type: ignore[return-value]


__all__ = ["timed"]
