"""Handler return values and exceptions → Results (reference §6)."""

from __future__ import annotations

import io
import types
from collections.abc import Callable
from typing import Any

import pytest

from emberserve.handlers.context import Context, RequestProcessor
from emberserve.handlers.loader import LoadedHandler
from emberserve.handlers.metrics import MetricsCacheYamlImpl, MetricSink
from emberserve.handlers.outputs import (
    BATCH_MISMATCH,
    INVALID_OUTPUT,
    UnsupportedOutputError,
    error_results,
    exception_status,
    fit_results,
    output_problem,
    response_size,
    results_from_output,
    serialize_item,
)
from emberserve.handlers.service import HandlerService
from emberserve.handlers.utils import PredictionException
from emberserve.workers.protocol import Input, Request, Result


def _context(n: int = 1) -> Context:
    ctx = Context("m", "/models/m", {"model": {"modelName": "m"}}, n, None, "0.12.0")
    ctx.request_ids = {i: f"r{i}" for i in range(n)}
    ctx.request_processor = [RequestProcessor({}) for _ in range(n)]
    return ctx


# -- serialisation -----------------------------------------------------------------------------

SERIALIZE_TABLE: list[tuple[Any, bytes]] = [
    (b"\x00raw", b"\x00raw"),
    (bytearray(b"ba"), b"ba"),
    ("héllo", "héllo".encode()),
    ("", b""),
    ({"a": 1, "b": [1, 2]}, b'{\n  "a": 1,\n  "b": [\n    1,\n    2\n  ]\n}'),
    ([1, 2.5], b"[\n  1,\n  2.5\n]"),
    ({}, b"{}"),
    (None, b"null"),
    (3, b"3"),
    (0.5, b"0.5"),
    (True, b"true"),
    ({"k": "é"}, b'{\n  "k": "\\u00e9"\n}'),  # json.dumps escapes non-ASCII, as TorchServe's
    ((1, 2), b"[\n  1,\n  2\n]"),
]


@pytest.mark.parametrize(("item", "expected"), SERIALIZE_TABLE)
def test_serialize_table(item: Any, expected: bytes) -> None:
    assert serialize_item(item) == expected


def _circular() -> list[Any]:
    items: list[Any] = []
    items.append(items)
    return items


@pytest.mark.parametrize(
    "item",
    [object(), {1, 2}, _circular(), "\ud800", {"k": object()}, memoryview(b"x")],
    ids=["object", "set", "circular", "lone-surrogate", "nested-object", "memoryview"],
)
def test_unserialisable_items(item: Any) -> None:
    with pytest.raises(UnsupportedOutputError):
        serialize_item(item)


@pytest.mark.torch
def test_tensor_is_sent_as_torch_save_bytes() -> None:
    torch = pytest.importorskip("torch")
    tensor = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    data = serialize_item(tensor)
    assert torch.equal(torch.load(io.BytesIO(data), weights_only=True), tensor)


# -- shape of the output -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "problem"),
    [
        ({"not": "a list"}, INVALID_OUTPUT),
        (("a",), INVALID_OUTPUT),
        (None, INVALID_OUTPUT),
        ((x for x in ["a"]), INVALID_OUTPUT),
        (["a", "b"], BATCH_MISMATCH),
        ([], BATCH_MISMATCH),
        (["a"], None),
    ],
)
def test_output_problem(output: Any, problem: str | None) -> None:
    assert output_problem(output, 1) == problem


# -- exceptions ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "status", "message"),
    [
        (RuntimeError("boom"), 503, "Prediction failed"),
        (ValueError("bad"), 503, "Prediction failed"),
        (KeyError("k"), 503, "Prediction failed"),
        (PredictionException("custom prediction error", 418), 418, "custom prediction error"),
        (PredictionException("default code"), 500, "default code"),
        (PredictionException("odd code", "x"), 500, "odd code"),  # type: ignore[arg-type]
        (MemoryError("simulated OOM"), 507, "Out of resources"),
        (RuntimeError("CUDA out of memory. Tried to allocate"), 507, "Out of resources"),
        (RuntimeError("CUDA error: CUBLAS_STATUS_NOT_INITIALIZED"), 507, "Out of resources"),
    ],
)
def test_exception_status(exc: Exception, status: int, message: str) -> None:
    assert exception_status(exc) == (status, message)


def test_error_results_fail_every_request() -> None:
    results = error_results({0: "a", 1: "b"}, 503, "Prediction failed")
    assert results == [
        Result("a", 503, "", [], None, b"", "Prediction failed"),
        Result("b", 503, "", [], None, b"", "Prediction failed"),
    ]


# -- per-request status, headers and content type ---------------------------------------------------


def test_defaults_are_200_with_empty_phrase_and_no_headers() -> None:
    [result] = results_from_output(["ok"], _context())
    assert result == Result("r0", 200, "", [], None, b"ok", None)


def test_status_headers_and_content_type_come_from_the_context() -> None:
    ctx = _context(2)
    ctx.set_response_status(299, "Custom Phrase", 1)
    ctx.set_response_header(1, "X-Custom-Header", "custom-value")
    ctx.set_response_content_type(1, "text/x-custom")
    first, second = results_from_output(["a", "b"], ctx)
    assert first == Result("r0", 200, "", [], None, b"a", None)
    # The content type travels once, in its own field, never duplicated as a header.
    assert second == Result(
        "r1", 299, "Custom Phrase", [("X-Custom-Header", "custom-value")], "text/x-custom", b"b"
    )


def test_header_values_are_sent_as_strings() -> None:
    ctx = _context()
    ctx.set_response_header(0, "X-Count", 3)  # type: ignore[arg-type]
    [result] = results_from_output(["x"], ctx)
    assert result.headers == [("X-Count", "3")]


def test_intermediate_then_final_response_mark_the_stream() -> None:
    ctx = _context()
    [chunk] = results_from_output(["part"], ctx, stream_next=True)
    [final] = results_from_output(["end"], ctx)
    assert chunk.headers == [("ts_stream_next", "true")]
    assert final.headers == [("ts_stream_next", "false")]


def test_stopping_criteria_decide_the_stream_marker() -> None:
    ctx = _context(2)
    ctx.stopping_criteria = [lambda item: item == "stop", lambda item: None]
    first, second = results_from_output(["go", "x"], ctx)
    assert first.headers == [("ts_stream_next", "true")]
    assert second.headers == []
    [again, _] = results_from_output(["stop", "x"], ctx)
    assert again.headers == [("ts_stream_next", "false")]


def test_only_the_given_requests_are_answered() -> None:
    ctx = _context(2)
    results = results_from_output(["a", "b"], ctx, request_ids={1: "r1"})
    assert [(r.request_id, r.body) for r in results] == [("r1", b"b")]


# -- size limits ---------------------------------------------------------------------------------


def _ok(rid: str, size: int) -> Result:
    return Result(rid, 200, "", [], None, b"x" * size)


def test_a_response_over_the_limit_becomes_a_500_for_that_request_only() -> None:
    results = fit_results([_ok("a", 10), _ok("b", 5000)], max_response_bytes=1000, max_total_bytes=10**6)
    assert results[0] == _ok("a", 10)
    assert results[1].status == 500
    assert results[1].body == b""
    size = response_size(_ok("b", 5000))
    assert results[1].error == f"Response of {size} bytes exceeds the maximum response size of 1000 bytes"


def test_a_batch_over_the_frame_limit_drops_its_largest_responses_first() -> None:
    batch = [_ok("a", 400), _ok("b", 900), _ok("c", 100), _ok("d", 800)]
    results = fit_results(batch, max_response_bytes=1000, max_total_bytes=1000)
    assert [r.status for r in results] == [200, 500, 200, 500]
    assert sum(response_size(r) for r in results) <= 1000


def test_response_size_counts_headers_too() -> None:
    plain = _ok("a", 10)
    with_header = Result("a", 200, "", [("X-Big", "v" * 100)], None, b"x" * 10)
    assert response_size(with_header) > response_size(plain) + 100


# -- the whole mapping, through HandlerService.predict --------------------------------------------


def _service(handle: Callable[[Any, Context], Any]) -> HandlerService:
    metrics = MetricsCacheYamlImpl(model_name="m", sink=MetricSink())
    ctx = Context("m", "/models/m", {"model": {"modelName": "m"}}, 4, None, "0.12.0", metrics=metrics)
    return HandlerService(ctx, LoadedHandler(handle, types.ModuleType("h"), None), metrics, True)


def _batch(*bodies: str) -> list[Request]:
    return [
        Request(f"r{i}", "predict", [], [Input("body", "text/plain", b.encode())])
        for i, b in enumerate(bodies)
    ]


def test_predict_echoes_a_batch_in_order_and_times_it() -> None:
    service = _service(lambda data, ctx: [row["body"].upper() for row in data])
    results = service.predict(_batch("a", "b", "c", "d"))
    assert [(r.request_id, r.status, r.body) for r in results] == [
        ("r0", 200, b"A"),
        ("r1", 200, b"B"),
        ("r2", 200, b"C"),
        ("r3", 200, b"D"),
    ]
    [record] = service.drain_metrics()
    assert (record.name, record.unit, record.metric_type) == ("PredictionTime", "Milliseconds", "gauge")
    assert record.dimension_values == ["m", "Model"]
    assert record.request_id == "r0,r1,r2,r3"


def _raise(exc: BaseException) -> Callable[[Any, Context], Any]:
    def handle(data: Any, ctx: Context) -> Any:
        raise exc

    return handle


@pytest.mark.parametrize(
    ("handle", "status", "message", "timed"),
    [
        (_raise(RuntimeError("boom")), 503, "Prediction failed", False),
        (_raise(PredictionException("custom prediction error", 418)), 418, "custom prediction error", False),
        (_raise(MemoryError()), 507, "Out of resources", False),
        (_raise(RecursionError()), 503, "Prediction failed", False),
        (lambda data, ctx: {"not": "a list"}, 503, "Invalid model predict output", False),
        (lambda data, ctx: None, 503, "Invalid model predict output", False),
        (lambda data, ctx: ["x"] * (len(data) + 1), 503, "number of batch response mismatched", False),
        # TorchServe times the prediction before serialising it.
        (lambda data, ctx: [object() for _ in data], 503, "Unsupported model output data type.", True),
        (lambda data, ctx: ["fine", object()], 503, "Unsupported model output data type.", True),
    ],
    ids=[
        "exception",
        "prediction-exception",
        "memory-error",
        "recursion",
        "not-a-list",
        "none",
        "wrong-length",
        "bad-type",
        "one-bad-item",
    ],
)
def test_predict_maps_failures_to_one_error_per_request(
    handle: Callable[[Any, Context], Any], status: int, message: str, timed: bool
) -> None:
    service = _service(handle)
    results = service.predict(_batch("a", "b"))
    assert [(r.request_id, r.status, r.error, r.body) for r in results] == [
        ("r0", status, message, b""),
        ("r1", status, message, b""),
    ]
    # TorchServe records PredictionTime only once the handler returned a valid list.
    assert [r.name for r in service.drain_metrics()] == (["PredictionTime"] if timed else [])


@pytest.mark.parametrize("status", ["teapot", 10**30, 42, -1])
def test_predict_survives_a_handler_that_sets_an_impossible_status(status: Any) -> None:
    def handle(data: Any, ctx: Context) -> list[str]:
        ctx.set_response_status(status, "x", 0)
        return ["a"]

    [result] = _service(handle).predict(_batch("a"))
    assert (result.status, result.error) == (503, "Prediction failed")


def test_predict_gives_each_batch_fresh_response_state() -> None:
    def handle(data: Any, ctx: Context) -> list[str]:
        if data[0]["body"] == "custom":
            ctx.set_response_status(299, "Custom", 0)
        return ["ok"]

    service = _service(handle)
    assert service.predict(_batch("custom"))[0].status == 299
    assert service.predict(_batch("plain"))[0].status == 200
