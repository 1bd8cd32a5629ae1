"""Request body → handler inputs, as TorchServe's frontend builds them (reference §5)."""

from __future__ import annotations

import pytest

from emberserve.errors import BadRequestError, PayloadTooLargeError
from emberserve.http.encoding import MAX_MULTIPART_PARTS, body_inputs
from emberserve.workers.protocol import Input


def multipart(*parts: tuple[str, str | None, bytes], boundary: str = "XyZ", final: bool = True) -> bytes:
    out = b""
    for name, ctype, value in parts:
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="f"\r\n'.encode()
        if ctype:
            out += f"Content-Type: {ctype}\r\n".encode()
        out += b"\r\n" + value + b"\r\n"
    if final:
        out += f"--{boundary}--\r\n".encode()
    return out


def test_raw_bodies_keep_their_content_type() -> None:
    assert body_inputs("text/plain", b"hi") == [Input("body", "text/plain", b"hi")]
    assert body_inputs(None, b"\x00") == [Input("body", "", b"\x00")]
    assert body_inputs("application/json; charset=utf-8", b"{}") == [
        Input("body", "application/json; charset=utf-8", b"{}")
    ]


def test_multipart_parts_each_keep_their_own_content_type() -> None:
    body = multipart(("data", "application/json", b'{"a": 1}'), ("extra", None, b"plainfield"))
    assert body_inputs("multipart/form-data; boundary=XyZ", body) == [
        Input("data", "application/json", b'{"a": 1}'),
        Input("extra", "", b"plainfield"),
    ]


def test_two_parts_with_one_name_are_both_sent_and_the_worker_keeps_the_last() -> None:
    body = multipart(("data", None, b"first"), ("data", None, b"second"))
    assert [i.value for i in body_inputs("multipart/form-data; boundary=XyZ", body)] == [b"first", b"second"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not multipart at all", "Expected boundary"),
        (multipart(("data", None, b"x"), final=False), "the final boundary is missing"),
        (b"--XyZ\r\n\r\nno headers\r\n--XyZ--\r\n", "a part has no Content-Disposition header"),
    ],
)
def test_malformed_multipart_is_a_bad_request(body: bytes, reason: str) -> None:
    with pytest.raises(BadRequestError, match=r"^Malformed multipart/form-data body: ") as caught:
        body_inputs("multipart/form-data; boundary=XyZ", body)
    assert reason in caught.value.message


def test_an_unusable_boundary_is_a_bad_request() -> None:
    with pytest.raises(BadRequestError, match="Boundary length 300"):
        body_inputs("multipart/form-data; boundary=" + "b" * 300, b"--" + b"b" * 300 + b"\r\n")


def test_multipart_without_boundary_is_a_raw_body() -> None:
    assert body_inputs("multipart/form-data", b"raw") == [Input("body", "multipart/form-data", b"raw")]


def test_urlencoded_fields_become_inputs_without_content_type() -> None:
    assert body_inputs("application/x-www-form-urlencoded", b"data=v1&other=v%202") == [
        Input("data", "", b"v1"),
        Input("other", "", b"v 2"),
    ]


def test_too_many_parts_are_refused() -> None:
    body = multipart(*[("p", None, b"")] * (MAX_MULTIPART_PARTS + 1))
    with pytest.raises(PayloadTooLargeError, match="at most 1000"):
        body_inputs("multipart/form-data; boundary=XyZ", body)
    assert (
        len(body_inputs("multipart/form-data; boundary=XyZ", multipart(*[("p", None, b"")] * 1000))) == 1000
    )
