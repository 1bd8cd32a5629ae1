"""The TorchServe Python API handlers rely on (reference §12), exercised in-process."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import logging
import math
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import emberserve.handlers.base_handler as base_handler_module
import emberserve.handlers.context as context_module
import emberserve.handlers.metrics as metrics_module
from emberserve.handlers import compat
from emberserve.handlers.base_handler import BaseHandler
from emberserve.handlers.context import Context, RequestProcessor
from emberserve.handlers.envelopes import (
    BodyEnvelope,
    JSONEnvelope,
    KServeEnvelope,
    KServev2Envelope,
    _flatten,
    _promote,
    envelope_class,
    infer_datatype,
)
from emberserve.handlers.loader import HandlerLoadError, HandlerSpec, import_handler_module, load_handler
from emberserve.handlers.metrics import (
    CachingMetric,
    Dimension,
    MetricsCacheKeyError,
    MetricsCacheTypeError,
    MetricsCacheValueError,
    MetricsCacheYamlImpl,
    MetricSink,
    MetricTypes,
)
from emberserve.handlers.streaming import send_intermediate_predict_response
from emberserve.handlers.timer import timed
from emberserve.handlers.utils import (
    PredictionException,
    check_valid_pt2_backend,
    deprecated,
    get_yaml_config,
    list_classes_from_module,
    load_label_mapping,
    map_class_to_label,
)
from emberserve.workers import child as worker_child
from emberserve.workers.protocol import Result


def _context(*headers: dict[str, Any], yaml_config: dict[str, Any] | None = None) -> Context:
    metrics = MetricsCacheYamlImpl(model_name="m", sink=MetricSink())
    ctx = Context(
        "m",
        "/models/m",
        {"model": {"modelName": "m", "modelVersion": "2.0"}},
        4,
        None,
        "0.12.0",
        True,
        metrics,
        yaml_config if yaml_config is not None else {},
    )
    ctx.request_ids = {i: f"r{i}" for i in range(len(headers))}
    ctx.request_processor = [RequestProcessor(dict(h)) for h in headers]
    metrics.set_request_ids(ctx.request_ids)  # as the worker does before every batch
    return ctx


# -- Context / RequestProcessor ------------------------------------------------------------------


def test_context_constructor_and_system_properties() -> None:
    ctx = Context("mnist", "/tmp/models/abc", {"model": {}}, 4, None, "0.12.0")
    assert ctx.model_name == "mnist"
    assert ctx.manifest == {"model": {}}
    assert ctx.system_properties == {
        "model_dir": "/tmp/models/abc",
        "gpu_id": None,
        "batch_size": 4,
        "server_name": "MMS",
        "server_version": "0.12.0",
        "limit_max_image_pixels": True,
    }
    assert ctx.request_ids is None
    assert ctx.request_processor is None
    assert ctx.metrics is None
    assert ctx.model_yaml_config is None
    assert ctx.stopping_criteria is None
    assert ctx.get_request_id() is None


def test_context_signatures_match_torchserve() -> None:
    params = list(inspect.signature(Context).parameters)
    assert params == [
        "model_name", "model_dir", "manifest", "batch_size", "gpu", "mms_version",
        "limit_max_image_pixels", "metrics", "model_yaml_config",
    ]  # fmt: skip
    assert list(inspect.signature(Context.set_response_status).parameters) == [
        "self",
        "code",
        "phrase",
        "idx",
    ]
    assert inspect.signature(Context.set_response_status).parameters["code"].default == 200
    assert list(inspect.signature(Context.set_response_header).parameters) == ["self", "idx", "key", "value"]


def test_request_headers_and_ids() -> None:
    ctx = _context({"explain": "False", "body": {"content-type": "text/plain"}}, {"X-A": "1"})
    assert ctx.get_request_id(1) == "r1"
    assert ctx.get_request_id() == "r0"
    assert ctx.get_request_header(0, "explain") == "False"
    assert ctx.get_request_header(0, "missing") is None
    assert ctx.get_all_request_header(1) == {"X-A": "1"}
    assert ctx.get_all_request_header(0)["body"] == {"content-type": "text/plain"}


def test_response_status_headers_and_content_type() -> None:
    ctx = _context({}, {})
    assert ctx.get_response_status(0) == (200, None)
    ctx.set_response_status(404, "Nope")  # idx defaults to 0
    ctx.set_response_status(code=201, idx=1)
    assert ctx.get_response_status(0) == (404, "Nope")
    assert ctx.get_response_status(1) == (201, "")
    ctx.set_all_response_status(202, "All")
    assert [ctx.get_response_status(i) for i in range(2)] == [(202, "All"), (202, "All")]
    ctx.set_response_content_type(1, "text/csv")
    ctx.set_response_header(1, "X-H", "v")
    assert ctx.get_response_content_type(1) == "text/csv"
    assert ctx.get_response_content_type(0) is None
    assert ctx.get_response_headers(1) == {"content-type": "text/csv", "X-H": "v"}


def test_sequence_id_header(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _context({"ts_request_sequence_id": "seq-1"}).get_sequence_id(0) == "seq-1"
    monkeypatch.setenv("TS_REQUEST_SEQUENCE_ID", "x-seq")
    assert _context({"x-seq": "seq-2"}).get_sequence_id(0) == "seq-2"


def test_context_compares_by_value() -> None:
    a = Context("m", "/d", {}, 1, None, "0.12.0")
    b = Context("m", "/d", {}, 1, None, "0.12.0")
    assert a == b
    b.model_name = "other"
    assert a != b


def test_request_processor_api() -> None:
    rp = RequestProcessor({"k": "v"})
    assert rp.get_request_property("k") == "v"
    assert rp.get_request_properties() == {"k": "v"}
    assert (rp.get_response_status_code(), rp.get_response_status_phrase()) == (200, None)
    rp.report_status(418, "Teapot")
    assert (rp.get_response_status_code(), rp.get_response_status_phrase()) == (418, "Teapot")
    rp.add_response_property("X", "1")
    assert rp.get_response_header("X") == "1"
    assert rp.get_response_headers() == {"X": "1"}


# -- metrics -------------------------------------------------------------------------------------------


@pytest.fixture
def cache() -> MetricsCacheYamlImpl:
    metrics = MetricsCacheYamlImpl(model_name="mnist", sink=MetricSink())
    metrics.set_request_ids({0: "a", 1: "b"})
    return metrics


def _summary(metrics: MetricsCacheYamlImpl) -> list[tuple[Any, ...]]:
    return [
        (r.name, r.unit, r.metric_type, r.value, r.dimension_names, r.dimension_values, r.request_id)
        for r in metrics.drain()
    ]


def test_default_model_metrics_are_cached(cache: MetricsCacheYamlImpl) -> None:
    assert sorted(cache.cache_keys()) == ["gauge:HandlerTime", "gauge:PredictionTime"]
    metric = cache.get_metric("HandlerTime", MetricTypes.GAUGE)
    assert (metric.unit, metric.dimension_names) == ("Milliseconds", ["ModelName", "Level"])


def test_add_helpers_record_units_types_and_default_dimensions(cache: MetricsCacheYamlImpl) -> None:
    cache.add_counter("Hits", 2, idx=1)
    cache.add_time("Latency", 1.5)
    cache.add_time("LatencyS", 0.5, unit="s", metric_type=MetricTypes.HISTOGRAM)
    cache.add_size("Size", 3, unit="kB")
    cache.add_percent("Pct", 50.0, idx=0)
    cache.add_metric("Custom", 7, "Widgets", dimensions=[Dimension("Color", "red")])
    cache.add_error("Oops", 1)
    assert _summary(cache) == [
        ("Hits", "Count", "counter", 2.0, ["ModelName", "Level"], ["mnist", "Model"], "b"),
        ("Latency", "Milliseconds", "gauge", 1.5, ["ModelName", "Level"], ["mnist", "Model"], "a,b"),
        ("LatencyS", "Seconds", "histogram", 0.5, ["ModelName", "Level"], ["mnist", "Model"], "a,b"),
        ("Size", "Kilobytes", "gauge", 3.0, ["ModelName", "Level"], ["mnist", "Model"], "a,b"),
        ("Pct", "Percent", "gauge", 50.0, ["ModelName", "Level"], ["mnist", "Model"], "a"),
        (
            "Custom",
            "Widgets",
            "counter",
            7.0,
            ["Color", "ModelName", "Level"],
            ["red", "mnist", "Model"],
            "a,b",
        ),
        ("Oops", "unit", "counter", 1.0, ["Level"], ["Error"], ""),
    ]


def test_metrics_without_request_ids_are_error_level() -> None:
    metrics = MetricsCacheYamlImpl(model_name="m", sink=MetricSink())
    metrics.add_time("T", 1)
    [record] = metrics.drain()
    assert (record.dimension_names, record.dimension_values, record.request_id) == (["Level"], ["Error"], "")


def test_caller_dimension_lists_are_not_modified(cache: MetricsCacheYamlImpl) -> None:
    dims = [Dimension("Color", "red")]
    cache.add_metric("A", 1, "count", dimensions=dims)
    assert [d.name for d in dims] == ["Color"]


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda c: c.add_time("T", 1, unit="min"), MetricsCacheValueError),
        (lambda c: c.add_size("S", 1, unit="TB"), ValueError),
        (lambda c: c.get_metric("Nope", MetricTypes.GAUGE), MetricsCacheKeyError),
        (lambda c: c.get_metric(42), MetricsCacheTypeError),
        (lambda c: c.add_metric_to_cache("X", 5), MetricsCacheTypeError),
        (lambda c: c.add_metric_to_cache("X", "ms", metric_type="gauge"), MetricsCacheTypeError),
    ],
)
def test_invalid_metric_calls_raise_torchserve_errors(
    cache: MetricsCacheYamlImpl, call: Any, error: type
) -> None:
    with pytest.raises(error):
        call(cache)


def test_metric_objects_validate_updates(caplog: pytest.LogCaptureFixture) -> None:
    sink = MetricSink()
    metric = CachingMetric("Loss", "count", ["ModelName"], MetricTypes.COUNTER, sink=sink)
    with caplog.at_level(logging.ERROR):
        metric.add_or_update(1, ["a", "extra"])  # wrong number of dimension values
        metric.add_or_update(-1, ["a"])  # counters only go up
        metric.add_or_update("many", ["a"])  # type: ignore[arg-type]
        metric.add_or_update(10**400, ["a"])  # not representable as a float
    assert sink.drain() == []
    assert caplog.text.count("Failed to update metric") == 4
    metric.add_or_update(3, ["a"], "req-9")
    [record] = sink.drain()
    assert (record.value, record.dimension_values, record.request_id) == (3.0, ["a"], "req-9")


def test_metric_update_replaces_dimensions(caplog: pytest.LogCaptureFixture) -> None:
    sink = MetricSink()
    metric = CachingMetric("G", "ms", ["A"], MetricTypes.GAUGE, sink=sink)
    with caplog.at_level(logging.WARNING):
        metric.update(2.5, "r", [Dimension("B", "x"), Dimension("C", 1)])
    [record] = sink.drain()
    assert (record.dimension_names, record.dimension_values) == (["B", "C"], ["x", "1"])


def test_add_metric_to_cache_then_get_and_update(cache: MetricsCacheYamlImpl) -> None:
    created = cache.add_metric_to_cache("Queue", "count", ["ModelName", "Level"], MetricTypes.GAUGE)
    assert cache.get_metric("Queue", MetricTypes.GAUGE) is created
    created.add_or_update(4, ["mnist", "Model"], "a")
    assert _summary(cache) == [
        ("Queue", "Count", "gauge", 4.0, ["ModelName", "Level"], ["mnist", "Model"], "a")
    ]


def test_metrics_yaml_file_defines_the_cache(tmp_path: Path) -> None:
    path = tmp_path / "metrics.yaml"
    path.write_text(
        "model_metrics:\n  counter:\n    - name: Seen\n      unit: count\n      dimensions: [Level]\n"
    )
    metrics = MetricsCacheYamlImpl(str(path), sink=MetricSink())
    assert metrics.cache_keys() == ["counter:Seen"]


def test_dimension_formatting() -> None:
    dim = Dimension("Level", "Model")
    assert str(dim) == "Level:Model"
    assert dim.to_dict() == {"Name": "Level", "Value": "Model"}


# -- ts.utils.util -----------------------------------------------------------------------------------


def test_map_class_to_label() -> None:
    assert map_class_to_label([[0.1, 0.9]]) == [{"0": 0.1, "1": 0.9}]
    assert map_class_to_label([[0.7]], {"3": "cat"}, [[3]]) == [{"cat": 0.7}]
    with pytest.raises(Exception, match="Convert classes to list"):
        map_class_to_label((0.1,))  # type: ignore[arg-type]
    with pytest.raises(Exception, match="Mapping must be a dict"):
        map_class_to_label([[0.1]], ["x"])  # type: ignore[arg-type]


def test_load_label_mapping(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert load_label_mapping(str(tmp_path / "missing.json")) is None
    assert "is missing" in caplog.text
    path = tmp_path / "index_to_name.json"
    path.write_text(json.dumps({"0": "cat", "1": ["n0001", "dog"]}))
    assert load_label_mapping(str(path)) == {"0": "cat", "1": "dog"}
    path.write_text(json.dumps({"object_type_names": ["a", "b"]}))
    assert load_label_mapping(str(path)) == {"0": "a", "1": "b"}
    path.write_text(json.dumps({"0": 5}))
    with pytest.raises(Exception, match="labels in index->name mapping"):
        load_label_mapping(str(path))


def test_prediction_exception() -> None:
    err = PredictionException("teapot", 418)
    assert (err.message, err.error_code, str(err)) == ("teapot", 418, "teapot : 418")
    assert PredictionException("x").error_code == 500


def test_list_classes_from_module_ignores_imported_classes() -> None:
    assert list_classes_from_module(base_handler_module) == [BaseHandler]
    assert list_classes_from_module(base_handler_module, parent_class=dict) == []


def test_deprecated_warns() -> None:
    @deprecated("1.0", "new_fn")
    def old(x: int) -> int:
        return x + 1

    with pytest.warns(PendingDeprecationWarning, match="old is deprecated in 1.0 and moved to new_fn"):
        assert old(1) == 2


def test_pt2_backend_check_and_yaml(tmp_path: Path) -> None:
    assert check_valid_pt2_backend("inductor")
    assert not check_valid_pt2_backend("nope")
    path = tmp_path / "c.yaml"
    path.write_text("handler:\n  profile: true\n")
    assert get_yaml_config(str(path)) == {"handler": {"profile": True}}


# -- timer ---------------------------------------------------------------------------------------------


class _Timed:
    def __init__(self, ctx: Context) -> None:
        self.context = ctx

    @timed
    def preprocess(self, x: int) -> int:
        return x * 2


@pytest.mark.parametrize(("config", "recorded"), [({"handler": {"profile": True}}, True), ({}, False)])
def test_timed_records_only_when_profiling(config: dict[str, Any], recorded: bool) -> None:
    ctx = _context({}, yaml_config=config)
    assert _Timed(ctx).preprocess(2) == 4
    names = [r.name for r in ctx.metrics.drain()]
    assert names == (["ts_handler_preprocess"] if recorded else [])


# -- streaming ---------------------------------------------------------------------------------------


def test_intermediate_responses_go_to_the_stream_sink() -> None:
    ctx = _context({}, {})
    sent: list[Result] = []
    ctx.stream_sink = sent.append
    send_intermediate_predict_response(["p0", "p1"], ctx.request_ids or {}, "Intermediate", 200, ctx)
    assert [(r.request_id, r.body, r.headers) for r in sent] == [
        ("r0", b"p0", [("ts_stream_next", "true")]),
        ("r1", b"p1", [("ts_stream_next", "true")]),
    ]


def test_streaming_outside_a_worker_fails_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = _context({})
    with pytest.raises(RuntimeError, match="needs a worker"):
        send_intermediate_predict_response(["x"], {0: "r0"}, "m", 200, ctx)
    monkeypatch.setenv("LOCAL_RANK", "1")  # other ranks of a torchrun model stay silent
    send_intermediate_predict_response(["x"], {0: "r0"}, "m", 200, ctx)


# -- envelopes -----------------------------------------------------------------------------------------


def _echo(data: Any, ctx: Any) -> Any:
    return data


def test_envelopes_pass_the_load_time_call_through() -> None:
    calls: list[Any] = []

    def handle(data: Any, ctx: Any) -> Any:
        calls.append(data)

    for cls in (BodyEnvelope, JSONEnvelope, KServeEnvelope, KServev2Envelope):
        assert cls(handle).handle(None, _context()) is None
    assert calls == [None] * 4


def test_body_envelope() -> None:
    assert BodyEnvelope(_echo).handle([{"body": "a"}, {"data": b"b"}], _context({}, {})) == ["a", b"b"]


def test_json_envelope_splits_and_regroups_instances() -> None:
    seen: list[Any] = []

    def handle(data: Any, ctx: Any) -> Any:
        seen.extend(data)
        return [repr(row) for row in data]

    data = [
        {"body": {"instances": [1, 2]}},
        {"data": {"instances": [{"b64": "aGk="}, {"x": {"b64": "eQ=="}}]}},
    ]
    out = JSONEnvelope(handle).handle(data, _context({}, {}))
    assert seen == [1, 2, b"hi", {"x": b"y"}]
    assert [json.loads(item) for item in out] == [
        {"predictions": ["1", "2"]},
        {"predictions": ["b'hi'", "{'x': b'y'}"]},
    ]


def test_kserve_envelope_instances_become_rows() -> None:
    seen: list[Any] = []

    def handle(data: Any, ctx: Any) -> Any:
        seen.append(data)
        return [sum(row) for row in data]

    body = b'{"instances": [[1, 2], [3, 4]]}'
    out = KServeEnvelope(handle).handle([{"body": bytearray(body)}], _context({"explain": "False"}))
    assert seen == [[[1, 2], [3, 4]]]
    assert out == [{"predictions": [3, 7]}]
    explained = KServeEnvelope(handle).handle([{"body": {"instances": [[1]]}}], _context({"explain": "True"}))
    assert explained == [{"explanations": [1]}]
    # No "instances": the handler gets None and returns nothing, which is not a list.
    assert KServeEnvelope(_echo).handle([{"body": {"other": 1}}], _context({})) is None


def test_kservev2_envelope_reshapes_inputs_and_types_outputs() -> None:
    seen: list[Any] = []

    def handle(data: Any, ctx: Any) -> Any:
        seen.append(data)
        return [row["data"] for row in data]

    request = {
        "id": "req-1",
        "inputs": [
            {"name": "input-0", "shape": [2, 2], "datatype": "FP32", "data": [1, 2.5, 3, 4]},
            {"name": "input-1", "shape": [1], "datatype": "BYTES", "data": ["hello"]},
            {"name": "input-2", "shape": [3], "datatype": "INT64", "data": [1, 2, 3]},
        ],
    }
    ctx = _context({})
    [response] = KServev2Envelope(handle).handle([{"body": json.dumps(request).encode()}], ctx)
    assert seen[0][0] == {
        "name": "input-0",
        "shape": [2, 2],
        "datatype": "FP32",
        "data": [[1.0, 2.5], [3.0, 4.0]],
    }
    assert seen[0][1]["data"] == "hello"
    assert response["id"] == "req-1"
    assert (response["model_name"], response["model_version"]) == ("m", "2.0")
    assert response["outputs"] == [
        {"name": "input-0", "datatype": "FP64", "data": [1.0, 2.5, 3.0, 4.0], "shape": [4]},
        {"name": "input-1", "datatype": "BYTES", "data": ["hello"], "shape": [1]},
        {"name": "input-2", "datatype": "INT64", "data": [1, 2, 3], "shape": [3]},
    ]
    # More outputs than inputs: TorchServe fails on the missing name (IndexError → 503).
    with pytest.raises(IndexError):
        KServev2Envelope(lambda d, c: [*d, "extra"]).handle([{"body": json.dumps(request).encode()}], ctx)


def test_kservev2_outputs_are_named_after_the_inputs() -> None:
    request = {"inputs": [{"name": "in", "shape": [4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]}
    ctx = _context({})
    [response] = KServev2Envelope(lambda data, c: [row["data"] for row in data]).handle(
        [{"body": request}], ctx
    )
    assert response == {
        "id": "r0",
        "model_name": "m",
        "model_version": "2.0",
        "outputs": [{"name": "in", "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2], "shape": [4]}],
    }


@pytest.mark.parametrize(
    ("values", "datatype"),
    [([True, False], "BOOL"), ([1, 2], "INT64"), ([1, 2.0], "FP64"), (["a"], "BYTES"), ([{"a": 1}], "BYTES"),
     ([None], "BYTES"), ([], "FP64")],
)  # fmt: skip
def test_infer_datatype(values: list[Any], datatype: str) -> None:
    assert infer_datatype(values) == datatype


def test_kservev2_rejects_inconsistent_shapes_with_400() -> None:
    # TorchServe's envelope fails numpy's reshape (a 503); Ember answers 400 before reshaping.
    request = {"inputs": [{"name": "in", "shape": [3], "datatype": "FP32", "data": [1.0, 2.0]}]}
    with pytest.raises(PredictionException, match="shape \\[3\\] needs 3 elements, 2 were sent") as caught:
        KServev2Envelope(_echo).handle([{"body": request}], _context({}))
    assert caught.value.error_code == 400


LEAVES = st.one_of(
    st.integers(-(2**70), 2**70), st.floats(allow_nan=False), st.booleans(), st.none(), st.text(max_size=3)
)


@st.composite
def uniform_arrays(draw: st.DrawFn) -> Any:
    """Nested lists of one shape (0 to 3 dimensions of 0 to 4), leaves as JSON decodes them."""
    shape = draw(st.lists(st.integers(0, 4), max_size=3))
    leaves = iter(draw(st.lists(LEAVES, min_size=math.prod(shape), max_size=math.prod(shape))))

    def build(dims: list[int]) -> Any:
        return [build(dims[1:]) for _ in range(dims[0])] if dims else next(leaves)

    return build(shape)


@settings(max_examples=300, deadline=None)
@given(uniform_arrays())
def test_kservev2_flattening_agrees_with_numpy(value: Any) -> None:
    # TorchServe's envelope flattens with numpy.array(data).flatten(); Ember does it without numpy.
    numpy = pytest.importorskip("numpy")
    flat, shape = _flatten(value)
    array = numpy.array(value, dtype=object)
    assert shape == list(array.shape)
    assert flat == array.flatten().tolist()


@pytest.mark.parametrize(
    ("flat", "expected"),
    [([1, True], [1, 1]), ([1.0, 2, False], [1.0, 2.0, 0.0]), ([True, False], [True, False]),
     ([1, 2], [1, 2]), ([0.5, 1.5], [0.5, 1.5]), (["a", 1], ["a", 1]), ([], [])],
)  # fmt: skip
def test_kservev2_numbers_get_the_one_type_numpy_gives_them(flat: list[Any], expected: list[Any]) -> None:
    promoted = _promote(flat)
    assert promoted == expected
    assert [type(v) for v in promoted] == [type(v) for v in expected]


def test_kservev2_flattening_refuses_ragged_nesting() -> None:
    with pytest.raises(ValueError, match="inhomogeneous"):
        _flatten([[1, 2], [3]])
    with pytest.raises(ValueError, match="inhomogeneous"):
        _flatten([1, [2]])


def test_unknown_envelope() -> None:
    assert envelope_class("kserve") is KServeEnvelope
    with pytest.raises(ModuleNotFoundError, match=r"ts\.torch_handler\.request_envelope\.nope"):
        envelope_class("nope")


# -- loader ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("handler", "module", "function"),
    [
        ("x.py", "x", None),
        ("x", "x", None),
        ("x:infer", "x", "infer"),
        ("dir/sub/x.py", "x", None),
        ("base_handler", "base_handler", None),
    ],
)
def test_handler_spec_parse(handler: str, module: str, function: str | None) -> None:
    assert HandlerSpec.parse(handler) == HandlerSpec(module, function)


@pytest.mark.parametrize("handler", ["", "  ", ".py", ":fn"])
def test_handler_spec_rejects_empty_names(handler: str) -> None:
    with pytest.raises(HandlerLoadError):
        HandlerSpec.parse(handler)


@pytest.fixture
def model_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A model dir on sys.path; modules imported from it are forgotten afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        module = sys.modules[name]
        if str(getattr(module, "__file__", "") or "").startswith(str(tmp_path)):
            del sys.modules[name]


def _write(directory: Path, name: str, source: str) -> None:
    (directory / name).write_text(textwrap.dedent(source))


def test_function_entry_point_is_initialised_with_none(model_dir: Path) -> None:
    _write(model_dir, "fn_handler_a.py", """
        calls = []
        def handle(data, context):
            calls.append(data)
            return data
        def other(data, context):
            return ["other"]
    """)  # fmt: skip
    ctx = Context("m", str(model_dir), {}, 1, None, "0.12.0")
    loaded = load_handler("fn_handler_a.py", ctx)
    assert loaded.module.calls == [None]
    assert loaded.entry_point(["x"], ctx) == ["x"]
    assert load_handler("fn_handler_a:other", ctx).entry_point([1], ctx) == ["other"]


def test_class_entry_point_is_built_and_initialised(model_dir: Path) -> None:
    _write(model_dir, "cls_handler_b.py", """
        import json  # imported names are not "defined" here
        from collections import OrderedDict
        class Handler:
            def initialize(self, context):
                self.name = context.model_name
            def handle(self, data, context):
                return [self.name for _ in data]
    """)  # fmt: skip
    ctx = Context("clsmodel", str(model_dir), {}, 1, None, "0.12.0")
    loaded = load_handler("cls_handler_b", ctx)
    assert loaded.entry_point([{}, {}], ctx) == ["clsmodel", "clsmodel"]
    assert loaded.instance.name == "clsmodel"


def test_two_classes_and_no_function_is_refused(model_dir: Path) -> None:
    _write(model_dir, "two_classes_c.py", "class A:\n    pass\nclass B:\n    pass\n")
    ctx = Context("m", str(model_dir), {}, 1, None, "0.12.0")
    with pytest.raises(
        ValueError, match="Expected only one class in custom service code or a function entry point"
    ):
        load_handler("two_classes_c.py", ctx)


def test_envelope_wraps_the_entry_point(model_dir: Path) -> None:
    _write(model_dir, "env_handler_d.py", "def handle(data, context):\n    return data\n")
    ctx = Context("m", str(model_dir), {}, 1, None, "0.12.0")
    ctx.request_processor = [RequestProcessor({})]
    loaded = load_handler("env_handler_d.py", ctx, "kserve")
    assert loaded.entry_point([{"body": {"instances": [1, 2]}}], ctx) == [{"predictions": [1, 2]}]


def test_missing_dependency_inside_the_handler_is_reported_as_such(model_dir: Path) -> None:
    _write(model_dir, "needs_dep_e.py", "import no_such_dependency_xyz\n")
    ctx = Context("m", str(model_dir), {}, 1, None, "0.12.0")
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency_xyz"):
        load_handler("needs_dep_e.py", ctx)


def test_handler_named_like_a_module_the_worker_uses_is_refused(model_dir: Path) -> None:
    _write(model_dir, "json.py", "def handle(data, context):\n    return data\n")
    ctx = Context("m", str(model_dir), {}, 1, None, "0.12.0")
    with pytest.raises(HandlerLoadError, match="clashes"):
        load_handler("json.py", ctx)


def test_unknown_handler_without_the_ts_hook(model_dir: Path) -> None:
    ctx = Context("m", str(model_dir), {}, 1, None, "0.12.0")
    with pytest.raises(HandlerLoadError, match=r"no module nowhere_f\.py"):
        load_handler("nowhere_f", ctx)


# -- the ts import hook -------------------------------------------------------------------------------


def test_ts_is_not_importable_without_the_hook() -> None:
    assert worker_child.Worker  # importing the worker module installs nothing
    assert not compat.installed()
    assert importlib.util.find_spec("ts") is None


@pytest.fixture
def ts_hook() -> Iterator[None]:
    assert compat.install()
    yield
    compat.uninstall()


@pytest.mark.usefixtures("ts_hook")
def test_ts_modules_are_the_ember_modules() -> None:
    ts = importlib.import_module("ts")
    assert ts.__version__ == "0.12.0"
    assert importlib.import_module("ts.torch_handler.base_handler").BaseHandler is BaseHandler
    assert importlib.import_module("ts.context") is context_module
    assert importlib.import_module("ts.metrics.metric_type_enum").MetricTypes is MetricTypes
    assert importlib.import_module("ts.metrics.dimension") is metrics_module
    assert importlib.import_module("ts.utils.util").PredictionException is PredictionException
    assert (
        importlib.import_module("ts.torch_handler.request_envelope.kservev2").KServev2Envelope
        is KServev2Envelope
    )
    handler_utils = importlib.import_module("ts.handler_utils.utils")
    assert handler_utils.send_intermediate_predict_response is send_intermediate_predict_response
    assert handler_utils.import_class("collections.OrderedDict").__name__ == "OrderedDict"
    assert importlib.import_module("ts.handler_utils.timer").timed is timed
    # The aliased module keeps its own identity.
    assert context_module.__spec__ is not None
    assert context_module.__spec__.name == "emberserve.handlers.context"
    assert sys.modules["ts"].context is context_module


@pytest.mark.usefixtures("ts_hook")
def test_from_imports_like_a_torchserve_handler() -> None:
    namespace: dict[str, Any] = {}
    exec(
        "from ts.torch_handler.base_handler import BaseHandler\n"
        "from ts.utils.util import PredictionException, map_class_to_label\n"
        "from ts.context import Context\n"
        "from ts.protocol.otf_message_handler import send_intermediate_predict_response\n",
        namespace,
    )
    assert namespace["BaseHandler"] is BaseHandler
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(PendingDeprecationWarning, match="deprecated"):
            namespace["send_intermediate_predict_response"](["x"], {0: "r"}, "m", 200, _context({}))


@pytest.mark.usefixtures("ts_hook")
def test_unknown_ts_modules_are_not_found() -> None:
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("ts.torch_handler.vllm_handler")
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("ts.nothing")


@pytest.mark.usefixtures("ts_hook")
def test_builtin_base_handler_resolves_through_the_hook(model_dir: Path) -> None:
    ctx = Context("m", str(model_dir), {"model": {}}, 1, None, "0.12.0")

    # No base_handler.py in the model: the name resolves to the built-in module.
    module = import_handler_module(HandlerSpec.parse("base_handler"), str(model_dir))
    assert module.BaseHandler is BaseHandler
    with pytest.raises(HandlerLoadError, match="built-in handler vllm_handler is not available yet"):
        load_handler("vllm_handler", ctx)


def test_uninstall_forgets_ts() -> None:
    assert compat.install()
    importlib.import_module("ts.context")
    compat.uninstall()
    assert "ts" not in sys.modules
    assert "ts.context" not in sys.modules
    assert importlib.util.find_spec("ts") is None


def test_a_real_ts_package_takes_precedence(tmp_path: Path) -> None:
    (tmp_path / "ts").mkdir()
    (tmp_path / "ts" / "__init__.py").write_text("REAL = True\n")
    code = (
        "from emberserve.handlers import compat; import ts; "
        "print(compat.install(), getattr(ts, 'REAL', False))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.split() == ["False", "True"]


# -- BaseHandler (the parts that need no torch) -------------------------------------------------------


class _Echo(BaseHandler):
    def preprocess(self, data: Any) -> Any:
        return [row.get("body") for row in data]

    def inference(self, data: Any, *args: Any, **kwargs: Any) -> Any:
        return data

    def postprocess(self, data: Any) -> Any:
        return data

    def describe_handle(self) -> Any:
        return {"described": True}


def test_base_handler_attributes_after_init() -> None:
    h = _Echo()
    assert (h.model, h.mapping, h.device, h.initialized, h.context) == (None, None, None, False, None)
    assert (h.model_pt_path, h.manifest, h.map_location, h.explain, h.target, h.profiler_args) == (
        None, None, None, False, 0, {},
    )  # fmt: skip


def test_base_handler_handle_predicts_and_records_handler_time() -> None:
    ctx = _context({"explain": "False"})
    assert _Echo().handle([{"body": "a"}], ctx) == ["a"]
    [record] = ctx.metrics.drain()
    assert (record.name, record.unit, record.request_id) == ("HandlerTime", "Milliseconds", "r0")


def test_base_handler_describe_and_explain() -> None:
    assert _Echo().handle([{}], _context({"describe": "True"})) == [{"described": True}]
    handler = _Echo()
    with pytest.raises(AttributeError, match="get_insights"):  # BaseHandler has no get_insights → 503
        handler.handle([{"body": "a"}], _context({"explain": "True"}))
    assert handler.explain is True


@pytest.mark.torch
def test_base_handler_loads_an_eager_model_with_labels(model_dir: Path) -> None:
    torch = pytest.importorskip("torch")
    _write(model_dir, "tiny_model_g.py", """
        import torch
        class Tiny(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = torch.nn.Linear(2, 2)
            def forward(self, x):
                return self.fc(x)
    """)  # fmt: skip
    torch.manual_seed(0)
    reference = importlib.import_module("tiny_model_g").Tiny()
    torch.save(reference.state_dict(), model_dir / "tiny.pt")
    (model_dir / "index_to_name.json").write_text('{"0": "no", "1": "yes"}')
    manifest = {"model": {"modelFile": "tiny_model_g.py", "serializedFile": "tiny.pt"}}
    ctx = Context(
        "tiny", str(model_dir), manifest, 1, None, "0.12.0", metrics=MetricsCacheYamlImpl(sink=MetricSink())
    )
    handler = BaseHandler()
    handler.initialize(ctx)
    assert handler.initialized
    assert handler.mapping == {"0": "no", "1": "yes"}
    assert str(handler.device) == "cpu"
    ctx.request_processor = [RequestProcessor({})]
    [row] = handler.handle([[1.0, 2.0]], ctx)
    assert row == pytest.approx(reference(torch.tensor([[1.0, 2.0]])).tolist()[0])


@pytest.mark.torch
def test_base_handler_loads_torchscript_and_refuses_missing_weights(model_dir: Path) -> None:
    torch = pytest.importorskip("torch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated but still served
        torch.jit.script(torch.nn.Linear(3, 1)).save(str(model_dir / "lin.pt"))
    ctx = Context("lin", str(model_dir), {"model": {"serializedFile": "lin.pt"}}, 1, None, "0.12.0")
    handler = BaseHandler()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        handler.initialize(ctx)
    assert handler.model(torch.zeros(1, 3)).shape == (1, 1)
    with pytest.raises(RuntimeError, match="No model weights could be loaded"):
        BaseHandler().initialize(Context("x", str(model_dir), {"model": {}}, 1, None, "0.12.0"))
    (model_dir / "m.onnx").write_bytes(b"")
    if importlib.util.find_spec("onnxruntime") is None:
        onnx_ctx = Context("o", str(model_dir), {"model": {"serializedFile": "m.onnx"}}, 1, None, "0.12.0")
        with pytest.raises(RuntimeError, match="onnxruntime is not installed"):
            BaseHandler().initialize(onnx_ctx)
