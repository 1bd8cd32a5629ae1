"""Requests → handler rows and headers (reference §5 "What a handler receives")."""

from __future__ import annotations

import json
import logging
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emberserve.handlers.inputs import build_batch, decode_value, mime_type
from emberserve.workers.protocol import Input, Request

# (content type as sent, raw value, expected value) with decode_input_request on.
DECODE_TABLE: list[tuple[str, bytes, Any]] = [
    ("text/plain", b"hello", "hello"),
    ("text/plain; charset=utf-8", "héllo".encode(), "héllo"),
    ("text/csv", b"1,2,3", "1,2,3"),
    ("text/plain", b"", ""),
    ("application/json", b'{"a": 1, "b": [1, 2.5]}', {"a": 1, "b": [1, 2.5]}),
    ("application/json", b"[1, 2]", [1, 2]),
    ("application/json", b'"s"', "s"),
    ("application/json; charset=utf-8", b'{"x": null}', {"x": None}),
    ("application/json", b'{"k": 1, "k": 2}', {"k": 2}),  # duplicate keys: last wins, as json.loads
    ("application/json", str(2**70).encode(), 2**70),  # beyond 64 bits: Python's json decides
    ("application/json", b"[-9223372036854775809]", [-9223372036854775809]),
    ("application/json", b'["\\ud800"]', ["\ud800"]),  # a lone surrogate escape is valid JSON
    ("application/octet-stream", b"\x00\x01", bytearray(b"\x00\x01")),
    ("image/png", b"\x89PNG", bytearray(b"\x89PNG")),
    ("", b"raw", bytearray(b"raw")),
    ("", b"", bytearray(b"")),
    ("multipart/form-data", b"x", bytearray(b"x")),
    # TorchServe compares the JSON media type exactly (case-sensitive).
    ("Application/JSON", b"{}", bytearray(b"{}")),
]


@pytest.mark.parametrize(("content_type", "raw", "expected"), DECODE_TABLE)
def test_decode_table(content_type: str, raw: bytes, expected: Any) -> None:
    value = decode_value(mime_type(content_type), raw)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("content_type", "raw"),
    [
        ("application/json", b"{not json"),
        ("application/json", b""),
        ("application/json", b"\xff\xfe"),
        ("text/plain", b"\xff\xfe invalid utf-8"),
    ],
)
def test_undecodable_values_become_bytearray_with_a_warning(
    content_type: str, raw: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="emberserve.handlers.inputs"):
        value = decode_value(mime_type(content_type), raw)
    assert value == bytearray(raw)
    assert isinstance(value, bytearray)
    assert "Forwarding encoded payload" in caplog.text


JSON_DOCUMENTS = st.recursive(
    st.one_of(
        st.integers(-(2**80), 2**80), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=4)
    ),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(JSON_DOCUMENTS)
def test_json_is_decoded_as_pythons_json_decodes_it(document: Any) -> None:
    # orjson does the work unless a run of 19+ digits (an integer beyond 64 bits?) is in the body.
    raw = json.dumps(document).encode()
    assert decode_value("application/json", raw) == json.loads(raw)


def test_json_that_only_python_accepts_is_decoded_like_torchserve() -> None:
    value = decode_value("application/json", b'{"v": NaN, "w": Infinity, "x": 1e400}')
    assert math.isnan(value["v"])
    assert value["w"] == math.inf
    assert value["x"] == math.inf


def test_deeply_nested_json_does_not_crash(caplog: pytest.LogCaptureFixture) -> None:
    raw = b"[" * 100_000 + b"]" * 100_000
    with caplog.at_level(logging.WARNING):
        value = decode_value("application/json", raw)
    assert isinstance(value, bytearray)
    assert len(value) == len(raw)


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", "application/octet-stream"])
def test_decoding_off_gives_bytearray_for_everything(content_type: str) -> None:
    value = decode_value(content_type, b'{"a": 1}', decode=False)
    assert value == bytearray(b'{"a": 1}')
    assert isinstance(value, bytearray)


def test_bytearray_values_are_private_copies() -> None:
    raw = b"abc"
    value = decode_value("", raw)
    value[0] = ord("z")
    assert raw == b"abc"


def test_mime_type_strips_parameters_and_space() -> None:
    assert mime_type(" application/json ; charset=utf-8") == "application/json"
    assert mime_type("") == ""


def _request(rid: str, inputs: list[Input], headers: list[tuple[str, str]] | None = None) -> Request:
    return Request(rid, "predict", headers or [], inputs)


def test_rows_have_one_key_per_field_decoded_by_its_own_type() -> None:
    req = _request(
        "r1",
        [
            Input("data", "application/json", b'{"a": 1}'),
            Input("extra", "", b"plainfield"),
            Input("note", "text/plain", b"hi"),
        ],
    )
    batch = build_batch([req])
    assert batch.rows == [{"data": {"a": 1}, "extra": bytearray(b"plainfield"), "note": "hi"}]
    assert isinstance(batch.rows[0]["extra"], bytearray)


def test_duplicate_field_names_keep_the_last() -> None:
    req = _request("r1", [Input("data", "text/plain", b"first"), Input("data", "text/plain", b"second")])
    assert build_batch([req]).rows == [{"data": "second"}]


def test_headers_are_field_content_types_then_request_headers_in_order() -> None:
    req = _request(
        "r1",
        [Input("body", "text/plain; charset=utf-8", b"hello")],
        [
            ("explain", "False"),
            ("Host", "127.0.0.1:8080"),
            ("Content-Length", "5"),
            ("X-Custom", "abc"),
            ("Content-Type", "text/plain; charset=utf-8"),
            ("url_path", ""),
        ],
    )
    headers = build_batch([req]).processors[0].get_request_properties()
    assert headers == {
        "body": {"content-type": "text/plain"},
        "explain": "False",
        "Host": "127.0.0.1:8080",
        "Content-Length": "5",
        "X-Custom": "abc",
        "Content-Type": "text/plain; charset=utf-8",
        "url_path": "",
    }
    assert list(headers) == [
        "body",
        "explain",
        "Host",
        "Content-Length",
        "X-Custom",
        "Content-Type",
        "url_path",
    ]


def test_repeated_request_header_keeps_the_last_value() -> None:
    req = _request("r1", [], [("X-A", "1"), ("X-A", "2")])
    assert build_batch([req]).processors[0].get_request_property("X-A") == "2"


def test_batch_keeps_request_order_and_ids() -> None:
    requests = [_request(f"id-{i}", [Input("body", "text/plain", str(i).encode())]) for i in range(4)]
    batch = build_batch(requests)
    assert batch.rows == [{"body": str(i)} for i in range(4)]
    assert batch.request_ids == {0: "id-0", 1: "id-1", 2: "id-2", 3: "id-3"}
    assert len(batch.processors) == 4


def test_describe_request_without_inputs_is_an_empty_row() -> None:
    req = Request("d1", "describe", [("describe", "True")], [])
    batch = build_batch([req])
    assert batch.rows == [{}]
    assert batch.processors[0].get_request_property("describe") == "True"


def test_decode_flag_applies_to_the_whole_batch() -> None:
    req = _request("r1", [Input("body", "application/json", b"[1]")])
    assert build_batch([req], decode=False).rows == [{"body": bytearray(b"[1]")}]
