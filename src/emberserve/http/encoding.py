"""Turn an HTTP request body into handler inputs exactly as TorchServe's frontend does (reference §5).

* ``multipart/form-data`` with a boundary: one input per part, named by the part, with the part's
  own content type. A malformed body (no final boundary, a part without ``Content-Disposition``,
  an unusable boundary) is refused with 400 and more than :data:`MAX_MULTIPART_PARTS` parts with
  413 — TorchServe hands the handler an empty row instead, which fails later and obscurely
  (SECURITY.md B1/B2). Without a boundary the body is a raw body, as in TorchServe.
* ``application/x-www-form-urlencoded``: one input per field, no content type (bytes for the handler).
* Anything else: one input named ``body`` carrying the request's content type.

The worker then decodes each input by its content type (text → str, JSON → object, else bytes).

    >>> [i.name for i in body_inputs("application/x-www-form-urlencoded", b"data=v1&other=v2")]
    ['data', 'other']
    >>> body_inputs("text/plain", b"hi")[0]
    Input(name='body', content_type='text/plain', value=b'hi')
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from python_multipart.exceptions import FormParserError, MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from emberserve.errors import BadRequestError, PayloadTooLargeError
from emberserve.workers.protocol import Input

#: Parts beyond this count are refused (a multipart body of thousands of tiny parts is an attack).
MAX_MULTIPART_PARTS = 1000


def body_inputs(content_type: str | None, body: bytes) -> list[Input]:
    """Inputs for a request with ``content_type`` (the raw header value, may be None) and ``body``."""
    if not content_type:
        return [Input("body", "", body)]
    try:
        mime, options = parse_options_header(content_type)
    except (UnicodeEncodeError, ValueError):  # not a header the wire could carry: an opaque body
        return [Input("body", content_type, body)]
    if mime == b"multipart/form-data":
        boundary = options.get(b"boundary")
        if boundary:
            return _multipart_inputs(boundary, body)
    elif mime == b"application/x-www-form-urlencoded":
        return form_inputs(body.decode("latin-1"))
    return [Input("body", content_type, body)]


def form_inputs(query: str) -> list[Input]:
    """One input per ``key=value`` field (TorchServe passes them as bytes with no content type)."""
    return [Input(k, "", v.encode("utf-8")) for k, v in parse_qsl(query, keep_blank_values=True)]


class _PartCollector:
    """Callbacks for python-multipart's streaming parser: collects complete parts."""

    def __init__(self) -> None:
        self.parts: list[Input] = []
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._headers: dict[bytes, bytes] = {}
        self._data = bytearray()
        self.complete = False

    def on_part_begin(self) -> None:
        self._headers = {}
        self._data = bytearray()

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        self._data += data[start:end]

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[bytes(self._header_field).lower()] = bytes(self._header_value)
        self._header_field = bytearray()
        self._header_value = bytearray()

    def on_part_end(self) -> None:
        if len(self.parts) >= MAX_MULTIPART_PARTS:
            raise PayloadTooLargeError(
                f"Too many multipart/form-data parts: at most {MAX_MULTIPART_PARTS} are accepted."
            )
        if b"content-disposition" not in self._headers:
            # RFC 7578 §4.2: every part of a form carries one; without it the part has no name.
            raise MultipartParseError("a part has no Content-Disposition header")
        _, disposition = parse_options_header(self._headers[b"content-disposition"])
        name = disposition.get(b"name", b"").decode("utf-8", "replace")
        content_type = self._headers.get(b"content-type", b"").decode("latin-1")
        self.parts.append(Input(name, content_type, bytes(self._data)))

    def on_end(self) -> None:
        self.complete = True


def _multipart_inputs(boundary: bytes, body: bytes) -> list[Input]:
    collector = _PartCollector()
    callbacks = {
        "on_part_begin": collector.on_part_begin,
        "on_part_data": collector.on_part_data,
        "on_part_end": collector.on_part_end,
        "on_header_field": collector.on_header_field,
        "on_header_value": collector.on_header_value,
        "on_header_end": collector.on_header_end,
        "on_end": collector.on_end,
    }
    try:
        parser = MultipartParser(boundary, callbacks, max_header_count=64)  # type: ignore[arg-type]
        parser.write(body)
        parser.finalize()
    except (MultipartParseError, FormParserError) as exc:
        # An unusable boundary (over 256 bytes; RFC 2046 allows 70) lands here too.
        raise BadRequestError(f"Malformed multipart/form-data body: {exc}") from None
    if not collector.complete:
        raise BadRequestError("Malformed multipart/form-data body: the final boundary is missing.")
    return collector.parts
