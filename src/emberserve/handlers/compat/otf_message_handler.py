"""``ts.protocol.otf_message_handler``: only the streaming helper handlers use from it.

TorchServe's binary frontend protocol itself is not reproduced: Ember's workers speak
:mod:`emberserve.workers.protocol`.
"""

from __future__ import annotations

from typing import Any

from emberserve.handlers.context import Context
from emberserve.handlers.streaming import send_intermediate_predict_response as _send
from emberserve.handlers.utils import deprecated


@deprecated(version="1.0", replacement="ts.handler_utils.utils.send_intermediate_predict_response")
def send_intermediate_predict_response(
    ret: list[Any], req_id_map: dict[int, str], message: str, code: int, context: Context | None = None
) -> None:
    """Deprecated alias of ``ts.handler_utils.utils.send_intermediate_predict_response``."""
    if context is None:
        raise RuntimeError("send_intermediate_predict_response needs the handler's context")
    _send(ret, req_id_map, message, code, context)


__all__ = ["send_intermediate_predict_response"]
