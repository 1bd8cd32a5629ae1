"""TorchServe's conventions for frontend-generated HTTP answers, in one place.

Every answer the frontend itself generates (errors, status bodies, describe output…) is pretty
printed JSON with 2-space indent and a trailing newline, with TorchServe's cache headers and a
fresh ``x-request-id`` (reference §2)::

    >>> r = json_response(200, {"status": "Healthy"}, request_id="abc")
    >>> r.body
    b'{\\n  "status": "Healthy"\\n}\\n'
    >>> r.headers[0]
    ('content-type', 'application/json')
"""

from __future__ import annotations

from typing import Any

import orjson

from emberserve.errors import ServerError
from emberserve.http.connection import HttpResponse
from emberserve.inference import new_request_id

#: TorchServe sends these on every answer (successful predictions included).
CACHE_HEADERS: tuple[tuple[str, str], ...] = (
    ("Pragma", "no-cache"),
    ("Cache-Control", "no-cache; no-store, must-revalidate, private"),
    ("Expires", "Thu, 01 Jan 1970 00:00:00 UTC"),
)


def json_body(document: Any) -> bytes:
    """Serialise like TorchServe's Gson pretty printer: 2-space indent, trailing newline."""
    return orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n"


def json_response(
    status: int,
    document: Any,
    *,
    request_id: str | None = None,
    phrase: str | None = None,
    close: bool = False,
) -> HttpResponse:
    headers = [
        ("content-type", "application/json"),
        ("x-request-id", request_id or new_request_id()),
        *CACHE_HEADERS,
    ]
    return HttpResponse(status, json_body(document), headers, phrase, close)


def status_response(status: int, text: str, *, request_id: str | None = None) -> HttpResponse:
    """``{"status": text}``: the body of successful management answers and /ping."""
    return json_response(status, {"status": text}, request_id=request_id)


def error_response(error: ServerError, *, request_id: str | None = None) -> HttpResponse:
    """The one place a :class:`ServerError` becomes an HTTP answer (``{code, type, message}``)."""
    return json_response(error.http_status, error.body(), request_id=request_id)
