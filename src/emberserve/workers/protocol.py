"""The frontend ↔ worker wire protocol, sans I/O.

Theory of operation
-------------------
The frontend and each worker process share one stream socket (an inherited ``socketpair``, so no
other local process can connect to it). Both sides exchange *frames*::

    +----------------------+--------+--------------------------+
    | length: uint32 (BE)  | kind   | payload: msgpack array   |
    |  = 1 + len(payload)  | uint8  |                          |
    +----------------------+--------+--------------------------+

``kind`` names the message class; the payload is a msgpack array of that message's fields in
declaration order (bytes stay bytes, no base64, no pickle). This module only turns messages into
bytes (:func:`encode`) and bytes into messages (:class:`Decoder`); it opens no sockets, imports no
torch and never evaluates what it decodes. A frame longer than the decoder's ``max_frame_bytes``
raises :class:`FrameTooLarge` *before* its payload is buffered, so a broken or hostile peer can
cost at most one frame header of memory.

Conversation::

    frontend                                   worker
       │ ── LoadModel ─────────────────────────▶ │  import handler, initialize()
       │ ◀──────────────────── Loaded/LoadFailed ─│
       │ ── Predict(batch of Request) ─────────▶ │  handle(rows, context)
       │ ◀──────────── StreamChunk (0..n per id) ─│  send_intermediate_predict_response
       │ ── Cancel (0..1) ─────────────────────▶ │  nobody waits for the batch any more
       │ ◀────────────────── MetricsReport (0..1) ─│  handler metrics of this batch
       │ ◀─────────────────── Predicted(results) ─│  one Result per Request, same order
       │ ── Shutdown ──────────────────────────▶ │  exit(0)

Example::

    >>> req = Request("r1", "predict", [("Host", "x")], [Input("body", "text/plain", b"hi")])
    >>> frame = encode(Predict([req]))
    >>> dec = Decoder(max_frame_bytes=1 << 20)
    >>> [msg] = dec.feed(frame)
    >>> msg.batch[0].inputs[0].value
    b'hi'
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import msgpack

HEADER = struct.Struct("!IB")
#: Default cap for one frame: enough for a batch of maximum-size requests.
DEFAULT_MAX_FRAME_BYTES = 256 * 1024 * 1024

RequestKind = Literal["predict", "explain", "describe"]


class ProtocolError(ValueError):
    """The peer sent bytes that are not a valid frame or message."""


class FrameTooLarge(ProtocolError):
    """A frame header announced more bytes than the decoder accepts."""


# --------------------------------------------------------------------------------------------
# Messages. Each has a unique KIND and is encoded as the array of its fields in order.
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Input:
    """One input field of a request: the raw body (``name="body"``), a multipart part or a form field."""

    name: str
    content_type: str
    value: bytes


@dataclass(slots=True)
class Request:
    """One client request inside a batch. ``headers`` keep their original case and order."""

    request_id: str
    kind: RequestKind
    headers: list[tuple[str, str]]
    inputs: list[Input]


@dataclass(slots=True)
class Result:
    """The worker's answer for one request.

    ``error`` is set when the handler failed this request; ``status`` then carries the HTTP
    status TorchServe would answer (503 "Prediction failed", 507 "Out of resources", a
    ``PredictionException`` code…) and ``body`` is empty.
    """

    request_id: str
    status: int
    phrase: str
    headers: list[tuple[str, str]]
    content_type: str | None
    body: bytes
    error: str | None = None


@dataclass(slots=True)
class MetricRecord:
    """One handler metric update (``context.metrics.add_*``) as the frontend must record it."""

    name: str
    unit: str
    metric_type: str  # "counter" | "gauge" | "histogram"
    value: float
    dimension_names: list[str]
    dimension_values: list[str]
    request_id: str


@dataclass(slots=True)
class LoadModel:
    KIND: ClassVar[int] = 1
    model_name: str
    model_version: str
    model_dir: str
    handler: str
    manifest: dict[str, Any]
    batch_size: int
    gpu_id: int | None
    envelope: str | None
    limit_max_image_pixels: bool
    model_yaml_config: dict[str, Any]
    server_version: str
    decode_input_request: bool = True


@dataclass(slots=True)
class Loaded:
    KIND: ClassVar[int] = 2
    pid: int
    load_ms: float


@dataclass(slots=True)
class LoadFailed:
    KIND: ClassVar[int] = 3
    message: str  # short, safe for clients ("Failed to start workers …" is added by the frontend)
    detail: str  # traceback for the logs only


@dataclass(slots=True)
class Predict:
    KIND: ClassVar[int] = 4
    batch: list[Request]


@dataclass(slots=True)
class Predicted:
    KIND: ClassVar[int] = 5
    results: list[Result]


@dataclass(slots=True)
class StreamChunk:
    """An intermediate response (``send_intermediate_predict_response``) for one request."""

    KIND: ClassVar[int] = 6
    result: Result


@dataclass(slots=True)
class MetricsReport:
    KIND: ClassVar[int] = 7
    records: list[MetricRecord]


@dataclass(slots=True)
class Shutdown:
    KIND: ClassVar[int] = 8


@dataclass(slots=True)
class Cancel:
    """Every client of the running batch is gone: its next streamed chunk stops the handler.

    A worker that has already answered the batch ignores it.
    """

    KIND: ClassVar[int] = 9


Message = (
    LoadModel | Loaded | LoadFailed | Predict | Predicted | StreamChunk | MetricsReport | Shutdown | Cancel
)


# --------------------------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------------------------


def _fields(msg: Message) -> list[Any]:
    match msg:
        case Predict(batch):
            return [
                [
                    [r.request_id, r.kind, r.headers, [[i.name, i.content_type, i.value] for i in r.inputs]]
                    for r in batch
                ]
            ]
        case Predicted(results):
            return [[_result_fields(r) for r in results]]
        case StreamChunk(result):
            return [_result_fields(result)]
        case MetricsReport(records):
            return [
                [
                    [
                        m.name,
                        m.unit,
                        m.metric_type,
                        m.value,
                        m.dimension_names,
                        m.dimension_values,
                        m.request_id,
                    ]
                    for m in records
                ]
            ]
        case LoadModel():
            return [
                msg.model_name,
                msg.model_version,
                msg.model_dir,
                msg.handler,
                msg.manifest,
                msg.batch_size,
                msg.gpu_id,
                msg.envelope,
                msg.limit_max_image_pixels,
                msg.model_yaml_config,
                msg.server_version,
                msg.decode_input_request,
            ]
        case Loaded(pid, load_ms):
            return [pid, load_ms]
        case LoadFailed(message, detail):
            return [message, detail]
        case Shutdown() | Cancel():
            return []
    raise TypeError(f"not a protocol message: {msg!r}")  # pragma: no cover - exhaustive above


def _result_fields(r: Result) -> list[Any]:
    return [r.request_id, r.status, r.phrase, r.headers, r.content_type, r.body, r.error]


def encode(msg: Message) -> bytes:
    """Serialise one message into one frame."""
    payload: bytes = msgpack.packb(_fields(msg), use_bin_type=True)
    return HEADER.pack(len(payload) + 1, msg.KIND) + payload


# --------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------


def _pairs(raw: Any) -> list[tuple[str, str]]:
    return [(str(k), str(v)) for k, v in raw]


def _result(raw: Any) -> Result:
    rid, status, phrase, headers, ctype, body, error = raw
    return Result(rid, int(status), phrase, _pairs(headers), ctype, bytes(body), error)


def _decode_payload(kind: int, fields: Any) -> Message:
    if not isinstance(fields, list):
        raise ProtocolError("payload is not an array")
    try:
        match kind:
            case Predict.KIND:
                return Predict(
                    [
                        Request(rid, k, _pairs(h), [Input(n, ct, bytes(v)) for n, ct, v in ins])
                        for rid, k, h, ins in fields[0]
                    ]
                )
            case Predicted.KIND:
                return Predicted([_result(r) for r in fields[0]])
            case StreamChunk.KIND:
                return StreamChunk(_result(fields[0]))
            case MetricsReport.KIND:
                return MetricsReport(
                    [
                        MetricRecord(n, u, t, float(v), list(dn), list(dv), rid)
                        for n, u, t, v, dn, dv, rid in fields[0]
                    ]
                )
            case LoadModel.KIND:
                return LoadModel(*fields)
            case Loaded.KIND:
                return Loaded(int(fields[0]), float(fields[1]))
            case LoadFailed.KIND:
                return LoadFailed(str(fields[0]), str(fields[1]))
            case Shutdown.KIND:
                return Shutdown()
            case Cancel.KIND:
                return Cancel()
    except (TypeError, ValueError, IndexError) as exc:
        raise ProtocolError(f"malformed message of kind {kind}: {exc}") from exc
    raise ProtocolError(f"unknown message kind {kind}")


@dataclass
class Decoder:
    """Incremental frame decoder: feed it whatever bytes arrived, get back complete messages.

    >>> d = Decoder(max_frame_bytes=64)
    >>> frame = encode(Loaded(pid=7, load_ms=1.5))
    >>> d.feed(frame[:3]), d.feed(frame[3:])
    ([], [Loaded(pid=7, load_ms=1.5)])
    """

    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    _buffer: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> list[Message]:
        """Add received bytes; return the messages they complete (possibly none).

        Raises :class:`FrameTooLarge` or :class:`ProtocolError`; after that the stream is unusable.
        """
        buf = self._buffer
        buf += data
        out: list[Message] = []
        offset = 0
        size = HEADER.size
        while len(buf) - offset >= size:
            length, kind = HEADER.unpack_from(buf, offset)
            if length > self.max_frame_bytes:
                raise FrameTooLarge(f"frame of {length} bytes exceeds the limit of {self.max_frame_bytes}")
            if length < 1:
                raise ProtocolError("empty frame")
            end = offset + 4 + length
            if len(buf) < end:
                break
            try:
                # The view must be released before the buffer is resized below. Non-string map
                # keys are allowed: model-config.yaml may legitimately have `{0: cat}`.
                with memoryview(buf) as view:
                    fields = msgpack.unpackb(view[offset + size : end], raw=False, strict_map_key=False)
            except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
                raise ProtocolError(f"undecodable payload: {exc}") from exc
            out.append(_decode_payload(kind, fields))
            offset = end
        if offset:
            del buf[:offset]
        return out

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete frame."""
        return len(self._buffer)
