"""Streaming responses: ``send_intermediate_predict_response`` (``ts.handler_utils.utils``).

A handler may send any number of intermediate responses before returning its final list::

    for token in generate(prompt):
        send_intermediate_predict_response([token], context.request_ids, "Intermediate", 200, context)
    return ["<eos>"]

Each call serialises one item per request exactly like a final response (status, headers and
content type from the context) and marks it with the header ``ts_stream_next: true``; the worker
sends it to the frontend at once as a ``StreamChunk`` frame. The final response then carries
``ts_stream_next: false``. ``message`` and ``code`` are accepted for TorchServe compatibility: the
per-request status set on the context is what the client sees.

When every client of the batch has gone (a cancelled gRPC stream, a closed HTTP connection), the
next call raises :class:`StreamCancelled` instead of sending: it unwinds the handler so the
worker is free for the next batch. A handler that catches it and carries on streaming is killed
``response_timeout`` seconds later. (TorchServe streams on into the void until the handler ends.)
"""

from __future__ import annotations

import os
from typing import Any

from emberserve.handlers.context import Context
from emberserve.handlers.outputs import results_from_output


class StreamCancelled(Exception):
    """Nobody is reading this stream any more; raised by ``send_intermediate_predict_response``."""


def send_intermediate_predict_response(
    ret: list[Any], req_id_map: dict[int, str], message: str, code: int, context: Context
) -> None:
    """Send ``ret[idx]`` to the client of each request in ``req_id_map`` as one streamed chunk.

    Raises :class:`~emberserve.handlers.outputs.UnsupportedOutputError` for an item that cannot
    be serialised, :class:`StreamCancelled` when the clients are gone, and RuntimeError when
    called outside a worker (no frontend to stream to).
    """
    if str(os.environ.get("LOCAL_RANK", "0")) != "0":
        return  # only rank 0 of a multi-process (torchrun) model talks to the frontend
    sink = context.stream_sink
    if sink is None:
        raise RuntimeError("send_intermediate_predict_response needs a worker to stream to")
    for result in results_from_output(ret, context, stream_next=True, request_ids=req_id_map):
        sink(result)


__all__ = ["StreamCancelled", "send_intermediate_predict_response"]
