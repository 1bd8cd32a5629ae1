"""Fuzzing the request decoding (SECURITY.md, issue 7): whatever a client sends, the decoders
return inputs or raise a ServerError with a status — never another exception."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emberserve.errors import ServerError
from emberserve.http.connection import HttpConnection, HttpLimits, HttpRequest, HttpResponse
from emberserve.http.encoding import body_inputs, form_inputs

CONTENT_TYPES = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "application/json",
            "text/plain; charset=utf-8",
            "application/x-www-form-urlencoded",
            "multipart/form-data",
            "multipart/form-data; boundary=XyZ",
            "multipart/form-data; boundary=",
            'multipart/form-data; boundary="' + "b" * 300 + '"',
            "image/png",
        ]
    ),
    st.text(max_size=80),
    st.text(st.characters(max_codepoint=255), max_size=80),  # what latin-1 header decoding yields
)


def status_or_none(call: Callable[[], object]) -> int | None:
    """None when ``call`` returned, else the status of the ServerError it raised."""
    try:
        call()
    except ServerError as err:
        return err.http_status
    return None


def _multipart_like() -> st.SearchStrategy[bytes]:
    part = st.builds(
        lambda name, body, filename: (
            b'--XyZ\r\nContent-Disposition: form-data; name="'
            + name
            + b'"'
            + filename
            + b"\r\n\r\n"
            + body
            + b"\r\n"
        ),
        st.binary(max_size=20),
        st.binary(max_size=200),
        st.sampled_from([b"", b'; filename="../../x"', b'; filename="\x00"']),
    )
    return st.builds(
        lambda parts, end: b"".join(parts) + end,
        st.lists(part, max_size=5),
        st.sampled_from([b"--XyZ--\r\n", b"", b"--XyZ"]),
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(CONTENT_TYPES, st.one_of(st.binary(max_size=2000), _multipart_like()))
def test_bodies_decode_or_fail_with_a_status(content_type: str | None, body: bytes) -> None:
    status = status_or_none(lambda: body_inputs(content_type, body))
    assert status is None or 400 <= status < 600


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_query_strings_decode_or_fail_with_a_status(query: str) -> None:
    status = status_or_none(lambda: form_inputs(query))
    assert status is None or 400 <= status < 600


async def _serve_bytes(raw: bytes) -> bytes:
    async def handler(request: HttpRequest) -> HttpResponse:
        return HttpResponse(200, b"ok", [])

    limits = HttpLimits(max_body_bytes=1000, max_header_count=20, keep_alive_timeout=0.5, header_timeout=0.5)
    server = await asyncio.get_running_loop().create_server(
        lambda: HttpConnection(handler, limits), "127.0.0.1", 0
    )
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(raw)
        await writer.drain()
        try:
            data = await asyncio.wait_for(reader.read(-1), 5)
        except ConnectionResetError:
            # A reset is a close too. One run under two CPU spinners saw one (for an input
            # hypothesis could not replay, so not understood yet); what this test guards is that
            # no input crashes, hangs or answers with anything but HTTP.
            return b""
        writer.close()
        return data
    finally:
        server.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.binary(max_size=400),
        st.builds(
            lambda method, path, headers, body: (
                method + b" " + path + b" HTTP/1.1\r\n" + headers + b"\r\n" + body
            ),
            st.sampled_from([b"GET", b"POST", b"PUT", b"CONNECT", b"\x00", b"G\xffT"]),
            st.binary(min_size=1, max_size=50),
            st.binary(max_size=200),
            st.binary(max_size=200),
        ),
    )
)
def test_raw_bytes_on_the_socket_get_an_http_answer_or_a_close(raw: bytes) -> None:
    data = asyncio.run(_serve_bytes(raw))
    assert data == b"" or data.startswith(b"HTTP/1.1 ")
