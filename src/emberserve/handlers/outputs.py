"""A handler's return value (or exception) → one protocol ``Result`` per request.

TorchServe's rules (reference §6):

* the handler must return a ``list`` with one item per request, else every request of the batch
  gets 503 "Invalid model predict output" / "number of batch response mismatched";
* an item is sent as: ``bytes``/``bytearray`` raw, ``str`` utf-8, ``torch.Tensor`` as
  ``torch.save`` bytes, anything else as ``json.dumps(item, indent=2)``; if any item cannot be
  serialised the whole batch gets 503 "Unsupported model output data type.";
* exceptions: ``PredictionException(msg, code)`` → ``code``/``msg``; ``MemoryError`` or "CUDA" in
  the message → 507 "Out of resources"; anything else → 503 "Prediction failed";
* status, reason phrase, headers and content type of each request come from the context
  (``set_response_status``, ``set_response_header``, ``set_response_content_type``).

torch is never imported here: a tensor can only exist if the handler imported torch already,
so ``sys.modules`` tells whether to look for one.

Example::

    >>> from emberserve.handlers.context import Context, RequestProcessor
    >>> ctx = Context("m", "/m", {}, 1, None, "0.12.0")
    >>> ctx.request_ids = {0: "r1"}
    >>> ctx.request_processor = [RequestProcessor({})]
    >>> [r.body for r in results_from_output([{"a": 1}], ctx)]
    [b'{\\n  "a": 1\\n}']
    >>> error_results({0: "r1"}, 503, "Prediction failed")[0].error
    'Prediction failed'
"""

from __future__ import annotations

import io
import json
import logging
import sys
from typing import Any

from emberserve.handlers.context import Context
from emberserve.handlers.utils import PredictionException
from emberserve.workers.protocol import Result

logger = logging.getLogger(__name__)

#: The internal header TorchServe uses to mark a response that more chunks will follow.
STREAM_NEXT_HEADER = "ts_stream_next"
_CONTENT_TYPE = "content-type"

INVALID_OUTPUT = "Invalid model predict output"
BATCH_MISMATCH = "number of batch response mismatched"
UNSUPPORTED_OUTPUT = "Unsupported model output data type."
PREDICTION_FAILED = "Prediction failed"
OUT_OF_RESOURCES = "Out of resources"


class UnsupportedOutputError(TypeError):
    """An output item is none of bytes, str, tensor or JSON-serialisable."""


def serialize_item(item: Any) -> bytes:
    """The bytes TorchServe sends for one output item (raises :class:`UnsupportedOutputError`)."""
    if isinstance(item, bytes):
        return item
    if isinstance(item, bytearray):
        return bytes(item)
    if isinstance(item, str):
        try:
            return item.encode("utf-8")
        except UnicodeEncodeError as exc:  # a lone surrogate: not valid text
            raise UnsupportedOutputError(f"str is not encodable as utf-8: {exc}") from exc
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(item, torch.Tensor):
        buffer = io.BytesIO()
        torch.save(item, buffer)
        return buffer.getvalue()
    try:
        # ensure_ascii (the default) escapes everything non-ASCII, so the encoding cannot fail.
        return json.dumps(item, indent=2).encode("ascii")
    except (TypeError, ValueError, RecursionError) as exc:
        # TypeError: not serialisable; ValueError: circular reference; RecursionError: too deep.
        raise UnsupportedOutputError(f"{type(item).__name__} is not serialisable: {exc}") from exc


class ResponseTooLargeError(RuntimeError):
    """A response is bigger than the frontend accepts (``max_response_size``)."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"Response of {size} bytes exceeds the maximum response size of {limit} bytes")
        self.size = size
        self.limit = limit


def response_size(result: Result) -> int:
    """Bytes ``result`` puts on the wire, framing aside (body, headers, phrase, ids)."""
    text = sum(len(k) + len(v) for k, v in result.headers)
    text += len(result.request_id) + len(result.phrase) + len(result.content_type or "")
    # Up to 4 bytes per character in utf-8: an upper bound without encoding anything.
    return len(result.body) + 4 * text


def fit_results(results: list[Result], *, max_response_bytes: int, max_total_bytes: int) -> list[Result]:
    """Replace every response too big to send by a 500 error for that request only.

    A response over ``max_response_bytes`` is replaced; then, while the batch together exceeds
    ``max_total_bytes`` (the frame limit), the largest remaining one is.
    """
    sizes = [response_size(r) for r in results]
    fitted = list(results)
    for i, size in enumerate(sizes):
        if size > max_response_bytes:
            fitted[i] = _too_large(fitted[i], size, max_response_bytes)
            sizes[i] = 0
    total = sum(sizes)
    for i in sorted(range(len(sizes)), key=sizes.__getitem__, reverse=True):
        if total <= max_total_bytes:
            break
        fitted[i] = _too_large(fitted[i], sizes[i], max_total_bytes)
        total -= sizes[i]
    return fitted


def _too_large(result: Result, size: int, limit: int) -> Result:
    error = ResponseTooLargeError(size, limit)
    logger.error("Response for %s dropped: %s", result.request_id, error)
    return Result(result.request_id, 500, "", [], None, b"", str(error))


def output_problem(output: Any, batch_len: int) -> str | None:
    """TorchServe's complaint about the shape of a handler's return value, or None if it is fine."""
    if not isinstance(output, list):
        return INVALID_OUTPUT
    if len(output) != batch_len:
        return BATCH_MISMATCH
    return None


def error_results(request_ids: dict[int, str], status: int, message: str) -> list[Result]:
    """The same error for every request of the batch (TorchServe fails batches as a whole)."""
    return [Result(rid, status, "", [], None, b"", message) for rid in request_ids.values()]


def exception_status(exc: BaseException) -> tuple[int, str]:
    """HTTP status and message TorchServe answers when the handler raised ``exc``."""
    if isinstance(exc, PredictionException):
        try:
            code = int(exc.error_code)
        except (TypeError, ValueError):
            code = 500
        return code, str(exc.message)
    if isinstance(exc, MemoryError) or "CUDA" in str(exc):
        return 507, OUT_OF_RESOURCES
    return 503, PREDICTION_FAILED


def results_from_output(
    output: list[Any],
    context: Context,
    *,
    stream_next: bool = False,
    request_ids: dict[int, str] | None = None,
) -> list[Result]:
    """One Result per request from a valid handler output (see :func:`output_problem`).

    ``stream_next`` marks intermediate (streamed) responses; ``request_ids`` (default: the
    context's) picks the requests answered. Raises :class:`UnsupportedOutputError` when an item
    cannot be serialised.
    """
    if request_ids is None:
        request_ids = context.request_ids or {}
    criteria = context.stopping_criteria
    results: list[Result] = []
    for idx, request_id in request_ids.items():
        item = output[idx]
        if stream_next:
            context.set_response_header(idx, STREAM_NEXT_HEADER, "true")
        elif criteria:
            stop = criteria[idx](item)
            if stop is not None:
                context.set_response_header(idx, STREAM_NEXT_HEADER, "false" if stop else "true")
        elif context.get_response_headers(idx).get(STREAM_NEXT_HEADER) == "true":
            # The final response of a streamed request closes the stream.
            context.set_response_header(idx, STREAM_NEXT_HEADER, "false")
        body = serialize_item(item)
        status, phrase = context.get_response_status(idx)
        content_type: str | None = None
        headers: list[tuple[str, str]] = []
        for key, value in context.get_response_headers(idx).items():
            if key == _CONTENT_TYPE:
                content_type = str(value) if value else None
            else:
                headers.append((str(key), str(value)))
        code = 200 if status is None else int(status)
        if not 100 <= code <= 999:
            raise ValueError(f"invalid response status {code} set by the handler")
        results.append(
            Result(
                request_id,
                code,
                "" if phrase is None else str(phrase),
                headers,
                content_type,
                body,
            )
        )
    return results


__all__ = [
    "BATCH_MISMATCH",
    "INVALID_OUTPUT",
    "OUT_OF_RESOURCES",
    "PREDICTION_FAILED",
    "STREAM_NEXT_HEADER",
    "UNSUPPORTED_OUTPUT",
    "ResponseTooLargeError",
    "UnsupportedOutputError",
    "error_results",
    "exception_status",
    "fit_results",
    "output_problem",
    "response_size",
    "results_from_output",
    "serialize_item",
]
