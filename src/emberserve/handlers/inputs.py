"""Requests of a batch → the ``data`` rows and request headers a handler receives.

TorchServe's rules (reference §5): each request becomes one dict with one key per input field
(the raw body is ``"body"``; with duplicate names the last one wins). A value is decoded by its
own content type — only when ``decode_input_request`` is on (the default):

=====================  =====================================================
content type           value
=====================  =====================================================
``application/json``   the decoded JSON; invalid JSON → ``bytearray`` (warning)
``text/*``             ``str`` (utf-8); invalid utf-8 → ``bytearray`` (warning)
anything else, none    ``bytearray``
=====================  =====================================================

Content types are compared without their parameters (``application/json; charset=utf-8`` is
JSON), as TorchServe's frontend strips them before the worker sees them.

The headers of a request (``context.get_all_request_header(idx)``) are one
``{field: {"content-type": …}}`` entry per input, then the request's headers with their
original case (the frontend includes ``explain``/``url_path``/``describe`` where TorchServe has them).

Example::

    >>> from emberserve.workers.protocol import Input, Request
    >>> req = Request("r1", "predict", [("Host", "h")], [Input("body", "application/json", b'{"a": 1}')])
    >>> batch = build_batch([req], decode=True)
    >>> batch.rows, batch.request_ids, batch.processors[0].get_request_properties()
    ([{'body': {'a': 1}}], {0: 'r1'}, {'body': {'content-type': 'application/json'}, 'Host': 'h'})
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from emberserve.handlers.context import RequestProcessor
from emberserve.workers.protocol import Request

logger = logging.getLogger(__name__)

#: 19+ digits in a row may be an integer orjson would turn into a float (it keeps 64 bits only).
#: Found by mapping every digit to "9" and searching for nineteen of them: both run in C, 15 µs
#: on a 16 KB tensor body, where the regex ``\d{19}`` took 300 µs (more than json.loads itself).
_DIGITS_AS_NINES = bytes.maketrans(b"012345678", b"999999999")
_LONG_DIGITS = b"9" * 19


def mime_type(content_type: str) -> str:
    """The media type without parameters: ``"text/plain; charset=utf-8"`` → ``"text/plain"``."""
    return content_type.split(";", 1)[0].strip()


def decode_value(mime: str, value: bytes, decode: bool = True) -> Any:
    """One input's value as the handler sees it (``mime`` already stripped of parameters)."""
    if decode:
        if mime == "application/json":
            return _decode_json(value)
        if mime.startswith("text"):
            try:
                return value.decode("utf-8")
            except UnicodeDecodeError:
                logger.warning("Failed utf-8 decoding of input data. Forwarding encoded payload")
    return bytearray(value)


@functools.cache
def _fast_json() -> ModuleType:
    # Deferred: importing orjson costs a new worker tens of milliseconds before it can load.
    import orjson  # noqa: PLC0415

    return orjson


def preload() -> None:
    """Import the fast JSON decoder now (a worker does it once loaded, before the first request)."""
    _fast_json()


def _decode_json(value: bytes) -> Any:
    # TorchServe decodes with Python's json, so its answer is the reference. orjson is several
    # times faster and gives the same result, except that it refuses NaN, huge exponents and
    # lone surrogates (-> fall back) and turns integers beyond 64 bits into floats (-> skip it
    # when a long run of digits appears anywhere).
    if _LONG_DIGITS not in value.translate(_DIGITS_AS_NINES):
        orjson = _fast_json()
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            pass
    try:
        return json.loads(value.decode("utf-8"))
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        logger.warning("Failed json decoding of input data. Forwarding encoded payload")
        return bytearray(value)


@dataclass(slots=True)
class Batch:
    """What the worker hands a handler for one ``Predict``: rows, per-request headers, ids by index."""

    rows: list[dict[str, Any]]
    processors: list[RequestProcessor]
    request_ids: dict[int, str]


def build_batch(requests: Sequence[Request], decode: bool = True) -> Batch:
    """Decode every request of a batch (see the module docstring for the rules)."""
    rows: list[dict[str, Any]] = []
    processors: list[RequestProcessor] = []
    request_ids: dict[int, str] = {}
    for idx, request in enumerate(requests):
        row: dict[str, Any] = {}
        headers: dict[str, Any] = {}
        for item in request.inputs:
            mime = mime_type(item.content_type)
            row[item.name] = decode_value(mime, item.value, decode)
            headers[item.name] = {"content-type": mime}
        for name, value in request.headers:
            headers[name] = value
        rows.append(row)
        processors.append(RequestProcessor(headers))
        request_ids[idx] = request.request_id
    return Batch(rows, processors, request_ids)


__all__ = ["Batch", "build_batch", "decode_value", "mime_type", "preload"]
