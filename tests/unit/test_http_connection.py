"""The HTTP/1.1 connection layer against raw sockets: framing, limits, pipelining, streaming."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from emberserve.http.connection import (
    HttpConnection,
    HttpLimits,
    HttpRequest,
    HttpResponse,
    StreamingResponse,
)

Handler = Callable[[HttpRequest], Awaitable[HttpResponse | StreamingResponse]]


async def echo(request: HttpRequest) -> HttpResponse | StreamingResponse:
    if request.path == "/phrase":
        return HttpResponse(299, b"x", [], "Custom Phrase")
    if request.path == "/empty-phrase":
        return HttpResponse(200, b"y", [], "")
    if request.path == "/stream":

        async def chunks() -> AsyncIterator[bytes]:
            for part in (b"part0 ", b"part1 ", b"final"):
                yield part

        return StreamingResponse(200, chunks())
    if request.path == "/slow":
        await asyncio.sleep(0.05)
    return HttpResponse(200, f"{request.method} {request.path} {len(request.body)}".encode(), [])


async def exchange(
    raw: bytes, handler: Handler = echo, limits: HttpLimits | None = None, read_until_close: bool = True
) -> bytes:
    limits = limits or HttpLimits(max_body_bytes=100, max_header_count=10, keep_alive_timeout=5)
    server = await asyncio.get_running_loop().create_server(
        lambda: HttpConnection(handler, limits), "127.0.0.1", 0
    )
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(raw)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(-1) if read_until_close else reader.read(65536), 5)
        writer.close()
        return data
    finally:
        server.close()


def run(coro: Awaitable[bytes]) -> bytes:
    return asyncio.run(asyncio.wait_for(coro, 10))  # type: ignore[arg-type]


def test_pipelined_requests_are_answered_in_order() -> None:
    raw = (
        b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
        b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    data = run(exchange(raw))
    bodies = re.findall(rb"(?:POST|GET) /\w+ \d+", data)
    assert bodies == [b"POST /slow 3", b"GET /b 0", b"GET /c 0"]
    assert data.count(b"connection: keep-alive") == 2
    assert data.count(b"connection: close") == 1


def test_reason_phrases_are_exactly_what_the_handler_chose() -> None:
    data = run(
        exchange(
            b"GET /phrase HTTP/1.1\r\nHost: x\r\n\r\nGET /empty-phrase HTTP/1.1\r\nHost: x\r\n"
            b"Connection: close\r\n\r\n"
        )
    )
    assert data.startswith(b"HTTP/1.1 299 Custom Phrase\r\n")
    assert b"HTTP/1.1 200 \r\n" in data


def test_content_length_over_the_limit_is_413_before_the_body() -> None:
    data = run(exchange(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 1073741824\r\n\r\nabc"))
    assert data.startswith(b"HTTP/1.1 413 Request Entity Too Large\r\n")
    assert b"content-length: 0\r\n" in data
    assert b"connection: close" in data


def test_exactly_the_limit_is_accepted() -> None:
    body = b"a" * 100
    data = run(
        exchange(b"POST /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 100\r\n\r\n" + body)
    )
    assert data.startswith(b"HTTP/1.1 200 OK")
    assert data.endswith(b"POST /x 100")


def test_chunked_request_body_over_the_limit_is_413() -> None:
    chunk = b"40\r\n" + b"a" * 64 + b"\r\n"
    data = run(
        exchange(
            b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 3 + b"0\r\n\r\n"
        )
    )
    assert data.startswith(b"HTTP/1.1 413")


def test_chunked_request_body_is_reassembled() -> None:
    data = run(
        exchange(
            b"POST /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
        )
    )
    assert data.endswith(b"POST /x 5")


def test_too_many_headers_is_431() -> None:
    headers = b"".join(b"X-%d: v\r\n" % i for i in range(20))
    data = run(exchange(b"GET / HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n"))
    assert data.startswith(b"HTTP/1.1 431")


def test_garbage_is_400_and_closed() -> None:
    data = run(exchange(b"\x00\x01GARBAGE\r\n\r\n"))
    assert data.startswith(b"HTTP/1.1 400")


def test_an_h2c_upgrade_offer_is_answered_over_http11_then_closed() -> None:
    # curl --http2 on a plain http:// URL offers this; what follows would be HTTP/2 frames.
    data = run(
        exchange(
            b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nConnection: Upgrade, HTTP2-Settings\r\n"
            b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\nhi"
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
        )
    )
    assert data.startswith(b"HTTP/1.1 200")
    assert b"connection: close" in data
    assert data.endswith(b"POST /x 2")  # the body was read; one answer, then EOF


def test_connect_is_refused_and_closed() -> None:
    data = run(exchange(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"))
    assert data.startswith(b"HTTP/1.1 400")


def test_streaming_response_is_chunked() -> None:
    data = run(exchange(b"GET /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head
    assert body == b"6\r\npart0 \r\n6\r\npart1 \r\n5\r\nfinal\r\n0\r\n\r\n"


def test_handler_crash_is_a_500_json_and_connection_survives() -> None:
    async def boom(request: HttpRequest) -> HttpResponse:
        if request.path == "/boom":
            raise RuntimeError("secret /etc/path")
        return HttpResponse(200, b"fine", [])

    data = run(
        exchange(
            b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\nGET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            boom,
        )
    )
    assert data.startswith(b"HTTP/1.1 500")
    assert b"secret" not in data
    assert data.endswith(b"fine")


def test_idle_connection_times_out() -> None:
    limits = HttpLimits(header_timeout=0.2, keep_alive_timeout=0.2)
    data = run(exchange(b"GET /x HTTP/1.1\r\nHost: x\r\n", limits=limits))  # headers never finish
    assert data.startswith(b"HTTP/1.1 408")


@pytest.mark.parametrize("version", [b"HTTP/1.0"])
def test_http10_closes_after_the_answer(version: bytes) -> None:
    data = run(exchange(b"GET /x " + version + b"\r\nHost: x\r\n\r\n"))
    assert b"connection: close" in data


def test_expect_100_continue_gets_an_interim_answer_before_the_body() -> None:
    async def scenario() -> bytes:
        limits = HttpLimits(max_body_bytes=100)
        server = await asyncio.get_running_loop().create_server(
            lambda: HttpConnection(echo, limits), "127.0.0.1", 0
        )
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n"
            b"Connection: close\r\n\r\n"
        )
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
        writer.write(b"abc")
        rest = await asyncio.wait_for(reader.read(-1), 2)
        writer.close()
        server.close()
        return interim + rest

    data = run(scenario())
    assert data.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK")
    assert data.endswith(b"PUT /x 3")


def test_a_long_keep_alive_connection_never_stalls_on_its_own_headers() -> None:
    """Read back-pressure counts queued requests only: 4 MiB of headers over one connection
    (served one at a time) must not pause reading for good."""
    limits = HttpLimits(max_buffered_bytes=64 * 1024, keep_alive_timeout=5)
    request = b"GET /a HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"p" * 4000 + b"\r\n\r\n"

    async def client() -> bytes:
        server = await asyncio.get_running_loop().create_server(
            lambda: HttpConnection(echo, limits), "127.0.0.1", 0
        )
        port = server.sockets[0].getsockname()[1]
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            for _ in range(1000):
                writer.write(request)
                await reader.readuntil(b"GET /a 0")
            writer.close()
            return b"ok"
        finally:
            server.close()

    assert run(client()) == b"ok"


def test_a_chunked_body_with_heavy_framing_is_read_to_the_end() -> None:
    """One-byte chunks: 6 wire bytes per body byte. The framing must not count against the
    pipelining budget (it once paused reading mid-body with nothing queued to resume it)."""
    limits = HttpLimits(max_body_bytes=100_000, max_buffered_bytes=64 * 1024, keep_alive_timeout=5)
    raw = (
        b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        + b"1\r\na\r\n" * 50_000
        + b"0\r\n\r\n"
    )
    assert b"POST /a 50000" in run(exchange(raw, limits=limits))


def test_pipelined_requests_past_the_budget_pause_reading_then_all_are_answered() -> None:
    limits = HttpLimits(max_buffered_bytes=4096, keep_alive_timeout=5)
    raw = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n" * 2000
    raw += b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    data = run(exchange(raw, limits=limits))
    assert data.count(b"GET /a 0") == 2000
    assert data.endswith(b"GET /last 0")
