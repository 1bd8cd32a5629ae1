"""HTTP/1.1 connections on ``httptools``: parsing, limits, keep-alive, pipelining, streaming.

Why not uvicorn/ASGI: two requirements no ASGI server meets. (1) Exact TorchServe framing —
handler-chosen reason phrases (``HTTP/1.1 299 Custom Phrase``), the empty reason phrase of
successful predictions, and a 413 decided from ``Content-Length`` *before* the body is read.
(2) Speed: the hot path is parse → queue → worker → write, and a bare ``asyncio.Protocol`` on
``httptools`` measured ~4× the throughput of uvicorn + ASGI on this machine (docs/DESIGN.md).
Parsing itself stays in ``httptools`` (llhttp); this module only drives it.

Theory of operation: one :class:`HttpConnection` per TCP connection. ``httptools`` calls back as
bytes arrive; a complete request is appended to a FIFO and served by one task per connection, in
order (pipelining safe). While a request is being served, reading is paused once enough is
buffered, so a client can never make the server buffer without bound. Limits (header bytes,
header count, body bytes, idle/header/body timeouts) close or answer the connection early.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import cast

import httptools

log = logging.getLogger("emberserve.http")

#: After an early answer, how long and how much of a client's unwanted upload is read and dropped.
LINGER_SECONDS = 2.0
LINGER_MAX_BYTES = 8 * 1024 * 1024
#: A connection this young that has sent nothing may have its request in the kernel's buffer.
FRESH_CONNECTION_S = 0.2

_REASONS: dict[int, bytes] = {
    200: b"OK",
    201: b"Created",
    202: b"Accepted",
    204: b"No Content",
    400: b"Bad Request",
    401: b"Unauthorized",
    403: b"Forbidden",
    404: b"Not Found",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    409: b"Conflict",
    413: b"Request Entity Too Large",
    421: b"Misdirected Request",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    501: b"Not Implemented",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
    507: b"Insufficient Storage",
}


#: RFC 9110 token characters: what a header name may be made of.
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
#: Header value bytes that would end the header or the head (response splitting).
_FORBIDDEN_IN_VALUE = re.compile(r"[\r\n\x00]")


def _status_line(status: int, phrase: str | None) -> bytes:
    """``HTTP/1.1 <status> <phrase>``; a phrase that could split the response gets the standard one."""
    if phrase is None or _FORBIDDEN_IN_VALUE.search(phrase):
        phrase = reason_phrase(status)
    try:
        return f"HTTP/1.1 {status} {phrase}\r\n".encode("latin-1")
    except UnicodeEncodeError:
        return f"HTTP/1.1 {status} {reason_phrase(status)}\r\n".encode("latin-1")


def _header_lines(headers: list[tuple[str, str]]) -> list[bytes]:
    """The header lines to send. Headers come from handlers too, so a name that is not a token or
    a value with CR, LF or NUL is dropped (never sent: it would split the response, SECURITY.md
    H15), and a value outside Latin-1 is sent as UTF-8 bytes.

    >>> _header_lines([("X-Ok", "1"), ("X-Bad", "a\\r\\nSet-Cookie: x"), ("Bad Name", "v")])
    [b'X-Ok: 1\\r\\n']
    """
    lines: list[bytes] = []
    for key, value in headers:
        text = str(value)
        if not _TOKEN.match(key) or _FORBIDDEN_IN_VALUE.search(text):
            log.warning("Response header %r dropped: invalid name or value", key[:100])
            continue
        try:
            lines.append(f"{key}: {text}\r\n".encode("latin-1"))
        except UnicodeEncodeError:
            lines.append(key.encode("ascii") + b": " + text.encode("utf-8") + b"\r\n")
    return lines


def reason_phrase(status: int) -> str:
    """The standard reason phrase for ``status`` ("" when there is none)."""
    return _REASONS.get(status, b"").decode()


@dataclass(slots=True)
class HttpRequest:
    """One parsed request. ``headers`` keep their original case and order (handlers see them)."""

    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    body: bytes
    client: str
    keep_alive: bool = True

    def header(self, name: str) -> str | None:
        """First value of header ``name`` (case-insensitive), or None."""
        lname = name.lower()
        for key, value in self.headers:
            if key.lower() == lname:
                return value
        return None


@dataclass(slots=True)
class HttpResponse:
    """A complete response. ``phrase`` None means the standard phrase for ``status``."""

    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    phrase: str | None = None
    close: bool = False


@dataclass(slots=True)
class StreamingResponse:
    """A response sent with chunked transfer encoding as ``chunks`` yields."""

    status: int
    chunks: AsyncIterator[bytes]
    headers: list[tuple[str, str]] = field(default_factory=list)
    phrase: str | None = None


Handler = Callable[[HttpRequest], Awaitable[HttpResponse | StreamingResponse]]
EarlyCheck = Callable[[str, str, list[tuple[str, str]], int | None], HttpResponse | None]


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """Per-connection limits. Sizes in bytes, times in seconds."""

    max_body_bytes: int = 6_553_500
    max_header_bytes: int = 64 * 1024
    max_header_count: int = 128
    header_timeout: float = 30.0
    body_timeout: float = 120.0
    keep_alive_timeout: float = 120.0
    # Stop reading from a client once this much is buffered and not yet served.
    max_buffered_bytes: int = 1 << 20


# Bytes counted per queued request beyond its head and body: the objects that hold it. Keeps a flood
# of tiny pipelined requests from queueing without bound.
_REQUEST_OVERHEAD = 256


class _AbortError(Exception):
    """Parsing must stop: answer (if given) and close the connection."""

    def __init__(self, response: HttpResponse | None) -> None:
        super().__init__()
        self.response = response


class HttpConnection(asyncio.Protocol):
    """Serves one client connection with ``handler``; see the module docstring."""

    def __init__(
        self,
        handler: Handler,
        limits: HttpLimits,
        on_access: Callable[[HttpRequest, int, float, list[tuple[str, str]]], None] | None = None,
        early_check: EarlyCheck | None = None,
        connections: set[HttpConnection] | None = None,
    ) -> None:
        self._handler = handler
        self._limits = limits
        self._on_access = on_access
        self._early_check = early_check
        self._connections = connections
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._client = ""
        self._loop = asyncio.get_running_loop()
        # Parsing state of the request being received.
        self._url = b""
        self._headers: list[tuple[str, str]] = []
        self._header_bytes = 0
        self._body = bytearray()
        self._rejected: HttpResponse | None = None
        # Completed requests waiting to be served, and the task serving them.
        self._pending: deque[HttpRequest] = deque()
        # What each pending request costs in memory (head + body); _buffered is their sum. Only
        # complete, unserved requests count: the one being received is bounded by the size limits,
        # and every byte counted here is uncounted when its request is served, so a paused read
        # always resumes (counting wire bytes instead drifted upward and stalled keep-alive
        # connections after ~1 MiB of headers, or a chunked body with heavy framing).
        self._costs: deque[int] = deque()
        self._serving: asyncio.Task[None] | None = None
        # Answers decided before the body was read (auth, Host checks), keyed by pending request.
        self._fixed: dict[int, HttpResponse] = {}
        self._buffered = 0
        self._paused = False
        self._closing = False
        # Set after an "Upgrade:" or CONNECT request: what follows it is not HTTP/1.1.
        self._upgraded = False
        self._declared_length: int | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._in_message = False
        # Bytes still to discard after an early answer (None: not lingering); see _linger.
        self._linger_budget: int | None = None
        # The server is stopping: answer what was received, then close (see begin_drain).
        self._draining = False
        self._served = False  # has at least one request been received on this connection?
        self._opened_at = self._loop.time()

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self._client = f"/{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "/local"
        if self._connections is not None:
            self._connections.add(self)
        self._arm_timer(self._limits.keep_alive_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._cancel_timer()
        if self._connections is not None:
            self._connections.discard(self)
        # An in-flight handler finishes on its own (its job still completes in the worker);
        # _serve_pending sees _closing and writes nothing.

    def data_received(self, data: bytes) -> None:
        if self._linger_budget is not None:
            self._linger_budget -= len(data)
            if self._linger_budget < 0 and self._transport is not None:
                self._transport.close()
            return
        if self._closing or self._upgraded:
            return
        try:
            self._parser.feed_data(data)
        except _AbortError as abort:
            self._abort(abort.response)
            return
        except httptools.HttpParserUpgrade as upgrade:
            self._on_upgrade(data, int(upgrade.args[0]) if upgrade.args else len(data))
            return
        except httptools.HttpParserError as exc:
            # httptools wraps exceptions raised by our callbacks in its own error type.
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, _AbortError):
                self._abort(cause.response)
            else:
                self._abort(HttpResponse(400, b"", [("content-length", "0")], close=True))
            return
        if self._buffered > self._limits.max_buffered_bytes and not self._paused and self._transport:
            self._paused = True
            self._transport.pause_reading()

    def _on_upgrade(self, data: bytes, offset: int) -> None:
        """CONNECT or an "Upgrade:" offer (curl --http2 sends "Upgrade: h2c").

        Ember switches to no other protocol: a complete request is answered over HTTP/1.1, as Netty
        does, and the connection then closes, since the bytes after it belong to the other protocol.
        llhttp hands such a request over without its body: the body is the ``Content-Length``
        bytes that follow the head (a body not received with the head is refused).
        """
        self._upgraded = True
        refused = HttpResponse(400, b"", [("content-length", "0")], close=True)
        if self._in_message or not self._pending:
            self._abort(refused)
            return
        request = self._pending[-1]
        request.keep_alive = False
        wanted = self._declared_length or 0
        if wanted:
            body = data[offset : offset + wanted]
            if len(body) < wanted:
                self._abort(refused)
                return
            request.body = bytes(body)

    def eof_received(self) -> bool | None:
        # Half-close: finish serving what was received, then close.
        if self._linger_budget is not None or (
            not self._pending and (self._serving is None or self._serving.done())
        ):
            return None
        return True

    # -- httptools callbacks ------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._in_message = True
        self._served = True
        self._url = b""
        self._headers = []
        self._header_bytes = 0
        self._body = bytearray()
        self._rejected = None
        self._arm_timer(self._limits.header_timeout)

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._header_bytes += len(url)
        if self._header_bytes > self._limits.max_header_bytes:
            raise _AbortError(HttpResponse(414, b"", [("content-length", "0")], close=True))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value) + 4
        if (
            self._header_bytes > self._limits.max_header_bytes
            or len(self._headers) >= self._limits.max_header_count
        ):
            raise _AbortError(HttpResponse(431, b"", [("content-length", "0")], close=True))
        self._headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self._arm_timer(self._limits.body_timeout)
        length: int | None = None
        for key, value in self._headers:
            if key.lower() == "content-length":
                try:
                    length = int(value)
                except ValueError:
                    raise _AbortError(HttpResponse(400, b"", [("content-length", "0")], close=True)) from None
        self._declared_length = length
        if length is not None and length > self._limits.max_body_bytes:
            # TorchServe answers 413 with an empty body and only content-length (Netty's aggregator).
            raise _AbortError(HttpResponse(413, b"", [("content-length", "0")], close=True))
        if self._early_check is not None:
            url = httptools.parse_url(self._url)
            rejected = self._early_check(
                self._parser.get_method().decode(),
                (url.path or b"/").decode("latin-1"),
                self._headers,
                length,
            )
            if rejected is not None:
                if length and length > 0:
                    raise _AbortError(rejected)  # never read a body we are going to refuse
                self._rejected = rejected
        if self._transport is not None and any(
            k.lower() == "expect" and v.lower() == "100-continue" for k, v in self._headers
        ):
            # curl -T and many clients wait (curl: 1 s) for this interim answer before the body.
            self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        if len(self._body) + len(body) > self._limits.max_body_bytes:
            raise _AbortError(HttpResponse(413, b"", [("content-length", "0")], close=True))
        self._body += body

    def on_message_complete(self) -> None:
        self._in_message = False
        self._cancel_timer()
        try:
            url = httptools.parse_url(self._url)
        except httptools.HttpParserInvalidURLError:
            raise _AbortError(HttpResponse(400, b"", [("content-length", "0")], close=True)) from None
        request = HttpRequest(
            method=self._parser.get_method().decode(),
            path=(url.path or b"/").decode("latin-1"),
            query=(url.query or b"").decode("latin-1"),
            headers=self._headers,
            body=bytes(self._body),
            client=self._client,
            keep_alive=self._parser.should_keep_alive(),
        )
        self._body = bytearray()
        cost = len(request.body) + self._header_bytes + _REQUEST_OVERHEAD
        self._buffered += cost
        self._costs.append(cost)
        self._pending.append(request)
        rejected, self._rejected = self._rejected, None
        self._schedule(rejected)

    # -- serving ------------------------------------------------------------------------------

    def _schedule(self, fixed: HttpResponse | None) -> None:
        if fixed is not None:
            # Remember the answer for this exact request object.
            self._fixed[id(self._pending[-1])] = fixed
        if self._serving is None or self._serving.done():
            self._serving = self._loop.create_task(self._serve_pending())

    async def _serve_pending(self) -> None:
        while self._pending and not self._closing:
            request = self._pending.popleft()
            self._buffered -= self._costs.popleft()
            started = self._loop.time()
            fixed = self._fixed.pop(id(request), None)
            if fixed is not None:
                response: HttpResponse | StreamingResponse = fixed
            else:
                try:
                    response = await self._handler(request)
                except Exception:
                    log.exception("unhandled error serving %s %s", request.method, request.path)
                    response = HttpResponse(
                        500,
                        b'{\n  "code": 500,\n  "type": "InternalServerException",\n'
                        b'  "message": "Internal server error"\n}\n',
                        [("content-type", "application/json")],
                    )
            if self._transport is None or self._transport.is_closing():
                return  # the client went away while its request was served
            status = await self._write(request, response)
            if self._on_access is not None:
                self._on_access(request, status, (self._loop.time() - started) * 1000.0, response.headers)
            close = (
                not request.keep_alive
                or (isinstance(response, HttpResponse) and response.close)
                or self._draining
            )
            if close:
                self._close()
                return
            if (
                self._paused
                and self._transport is not None
                and self._buffered <= self._limits.max_buffered_bytes
            ):
                self._paused = False
                self._transport.resume_reading()
        if not self._closing and not self._in_message:
            self._arm_timer(self._limits.keep_alive_timeout)

    async def _write(self, request: HttpRequest, response: HttpResponse | StreamingResponse) -> int:
        transport = self._transport
        assert transport is not None
        head = [_status_line(response.status, response.phrase), *_header_lines(response.headers)]
        keep_alive = (
            request.keep_alive
            and not (isinstance(response, HttpResponse) and response.close)
            and not self._draining
        )
        if isinstance(response, HttpResponse):
            has_length = any(key.lower() == "content-length" for key, _ in response.headers)
            if not has_length:
                head.append(b"content-length: %d\r\n" % len(response.body))
            head.append(b"connection: keep-alive\r\n\r\n" if keep_alive else b"connection: close\r\n\r\n")
            transport.write(b"".join(head) + response.body)
            return response.status
        head.append(b"transfer-encoding: chunked\r\n")
        head.append(b"connection: keep-alive\r\n\r\n" if keep_alive else b"connection: close\r\n\r\n")
        transport.write(b"".join(head))
        chunks = response.chunks
        try:
            async for chunk in chunks:
                if self._closing:
                    return response.status
                if chunk:
                    transport.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        finally:
            if not self._closing:
                transport.write(b"0\r\n\r\n")
            # Now, not whenever it is collected: closing the producer is how the job learns
            # that its client is gone.
            close = getattr(chunks, "aclose", None)
            if close is not None:
                await close()
        return response.status

    # -- closing and timers -------------------------------------------------------------------

    def _abort(self, response: HttpResponse | None) -> None:
        if self._closing or self._transport is None:
            return
        if response is not None and (self._serving is None or self._serving.done()):
            head = [_status_line(response.status, response.phrase), *_header_lines(response.headers)]
            head.append(b"connection: close\r\n\r\n")
            self._transport.write(b"".join(head) + response.body)
            if self._linger():
                return
        self._close()

    def _linger(self) -> bool:
        """Half-close after an early answer (401/413/431 before the body) and discard what the
        client still sends, for a bounded time and byte count, before closing.

        Closing a socket with unread bytes makes the kernel send RST, and a client still
        uploading its body then loses the answer already on the wire ("connection reset") -
        seen through container port forwarding. This is nginx's lingering close.
        """
        transport = self._transport
        if transport is None or not transport.can_write_eof():
            return False  # TLS cannot half-close
        transport.write_eof()
        self._closing = True  # nothing more is parsed or served
        self._linger_budget = LINGER_MAX_BYTES
        if self._paused:
            self._paused = False
            transport.resume_reading()
        self._arm_timer(LINGER_SECONDS)
        return True

    def _close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._cancel_timer()
        if self._transport is not None:
            self._transport.close()

    @property
    def busy(self) -> bool:
        """Receiving, queueing or answering a request - or just accepted, its first request
        possibly still unread in the socket (the shutdown drain waits for these)."""
        if self._closing:
            return False
        fresh = not self._served and self._loop.time() - self._opened_at < FRESH_CONNECTION_S
        return (
            fresh
            or self._in_message
            or bool(self._pending)
            or not (self._serving is None or self._serving.done())
        )

    @property
    def answering(self) -> bool:
        """A complete request is queued or being answered on this connection."""
        return not self._closing and (
            bool(self._pending) or not (self._serving is None or self._serving.done())
        )

    def begin_drain(self) -> None:
        """Server shutdown: close now if idle, else after the answer being prepared (sent with
        ``connection: close``), so no new request starts on this keep-alive connection. A
        connection that has not sent its first request yet gets that one answered."""
        self._draining = True
        if self._served:
            self.close_idle()

    def close_idle(self) -> bool:
        """Close the connection if nothing is being served; returns whether it was closed."""
        if (self._serving is None or self._serving.done()) and not self._pending and not self._in_message:
            self._close()
            return True
        return False

    def _arm_timer(self, seconds: float) -> None:
        self._cancel_timer()
        self._timer = self._loop.call_later(seconds, self._on_timeout)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timeout(self) -> None:
        self._timer = None
        if self._linger_budget is not None:
            if self._transport is not None:
                self._transport.close()
            return
        if self._serving is not None and not self._serving.done():
            return  # a slow handler is bounded by response_timeout, not by this timer
        if self._in_message:
            self._abort(HttpResponse(408, b"", [("content-length", "0")], close=True))
        else:
            self._close()
