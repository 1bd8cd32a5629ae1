"""The frontend↔worker codec: byte round-trips, incremental decoding, limits, malformed input."""

from __future__ import annotations

import contextlib
import struct

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emberserve.workers import protocol as p

MESSAGES: list[p.Message] = [
    p.LoadModel(
        "m",
        "1.0",
        "/tmp/x",
        "h:handle",
        {"model": {"modelName": "m"}},
        4,
        None,
        "kservev2",
        True,
        {"handler": {"k": 1}},
        "0.12.0",
        False,
    ),
    p.Loaded(123, 45.5),
    p.LoadFailed("boom", "Traceback…"),
    p.Predict(
        [
            p.Request(
                "r1",
                "predict",
                [("Host", "a"), ("X-Y", "b")],
                [p.Input("body", "application/json", b'{"a": 1}'), p.Input("f", "", b"\x00\xff")],
            ),
            p.Request("r2", "explain", [], []),
        ]
    ),
    p.Predicted(
        [
            p.Result("r1", 200, "", [("X-H", "v")], "text/plain", b"ok"),
            p.Result("r2", 503, "", [], None, b"", "Prediction failed"),
        ]
    ),
    p.StreamChunk(p.Result("r1", 200, "", [], None, b"part")),
    p.MetricsReport(
        [p.MetricRecord("PredictionTime", "ms", "gauge", 1.5, ["ModelName", "Level"], ["m", "Model"], "r1")]
    ),
    p.Shutdown(),
]


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: type(m).__name__)
def test_round_trip(msg: p.Message) -> None:
    [decoded] = p.Decoder().feed(p.encode(msg))
    assert decoded == msg


def test_byte_at_a_time_and_many_frames_per_feed() -> None:
    stream = b"".join(p.encode(m) for m in MESSAGES)
    dec = p.Decoder()
    out: list[p.Message] = []
    for i in range(len(stream)):
        out += dec.feed(stream[i : i + 1])
    assert out == MESSAGES
    assert dec.buffered == 0
    assert p.Decoder().feed(stream) == MESSAGES


def test_oversized_frame_is_refused_from_its_header() -> None:
    dec = p.Decoder(max_frame_bytes=1024)
    with pytest.raises(p.FrameTooLarge):
        dec.feed(p.HEADER.pack(10_000_000, p.Predict.KIND))  # no payload needed to refuse it


@pytest.mark.parametrize(
    "frame",
    [
        p.HEADER.pack(0, 1),  # empty frame
        p.HEADER.pack(2, 99) + b"\x90",  # unknown kind
        p.HEADER.pack(2, p.Loaded.KIND) + b"\xc1",  # invalid msgpack byte
        p.HEADER.pack(2, p.Loaded.KIND) + b"\x01",  # payload not an array
        p.HEADER.pack(3, p.Predict.KIND) + b"\x91\x01",  # wrong shape
    ],
)
def test_malformed_frames_raise_protocol_error(frame: bytes) -> None:
    with pytest.raises(p.ProtocolError):
        p.Decoder().feed(frame)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_random_bytes_never_escape_as_other_errors(data: bytes) -> None:
    dec = p.Decoder(max_frame_bytes=4096)
    with contextlib.suppress(p.ProtocolError):
        dec.feed(data)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=8), st.text(max_size=8), st.binary(max_size=32)), max_size=5))
def test_inputs_round_trip(inputs: list[tuple[str, str, bytes]]) -> None:
    msg = p.Predict([p.Request("id", "predict", [], [p.Input(*i) for i in inputs])])
    assert p.Decoder().feed(p.encode(msg)) == [msg]


def test_frame_layout_is_length_kind_msgpack() -> None:
    frame = p.encode(p.Loaded(7, 1.0))
    length, kind = struct.unpack("!IB", frame[:5])
    assert (length, kind) == (len(frame) - 4, p.Loaded.KIND)
    assert msgpack.unpackb(frame[5:]) == [7, 1.0]


def test_non_string_map_keys_survive_and_unhashable_keys_are_a_protocol_error() -> None:
    msg = p.LoadModel(
        "m", "1", "/d", "h", {}, 1, None, None, True, {"labels": {0: "cat", 1: "dog"}}, "0.12.0"
    )
    assert p.Decoder().feed(p.encode(msg)) == [msg]
    payload = msgpack.packb([{(1, 2): 1}])  # a map keyed by an array
    with pytest.raises(p.ProtocolError):
        p.Decoder().feed(p.HEADER.pack(len(payload) + 1, p.Loaded.KIND) + payload)
