"""Request envelopes (``service_envelope``): reshape rows before, and outputs after, the handler.

TorchServe's four envelopes (``ts.torch_handler.request_envelope.*``, reference §7):

``body``      each row → its ``data`` or ``body`` value; outputs unchanged.
``json``      each request's ``{"instances": […]}`` → its instances as rows (``{"b64": …}`` decoded);
              outputs regrouped per request as ``json.dumps({"predictions": […]})``.
``kserve``    the *first* request's ``instances`` → rows; the outputs become ONE response
              ``{"predictions": […]}`` (``{"explanations": […]}`` for an explanation).
``kservev2``  the first request's Open Inference Protocol ``inputs`` → one row per input tensor
              (the tensor dict, ``data`` reshaped to ``shape``); the outputs become ONE response
              ``{"id", "model_name", "model_version", "outputs": [{"name", "datatype", "data", "shape"}]}``
              with the datatype inferred from the values.

The load-time call (``data`` None) passes through untouched, and so does an empty output.

Example::

    >>> env = BodyEnvelope(lambda rows, ctx: [r.upper() for r in rows])
    >>> env.handle([{"body": "a"}, {"data": "b"}], None)
    ['A', 'B']
"""

from __future__ import annotations

import abc
import json
import logging
from base64 import b64decode
from collections.abc import Callable
from itertools import chain
from typing import Any

from emberserve.errors import BadRequestError
from emberserve.handlers.context import Context
from emberserve.handlers.utils import PredictionException
from emberserve.oip_tensors import check_request

logger = logging.getLogger(__name__)

EntryPoint = Callable[[Any, Any], Any]


def _row_value(row: Any) -> Any:
    return row.get("data") or row.get("body")


class BaseEnvelope(abc.ABC):
    """Wraps a handler entry point: ``handle(data, context)`` = ``format_output(fn(parse_input(data)))``."""

    def __init__(self, handle_fn: EntryPoint) -> None:
        self._handle_fn = handle_fn
        self.context: Context | None = None

    def handle(self, data: Any, context: Any) -> Any:
        self.context = context
        if data:
            data = self.parse_input(data)
        results = self._handle_fn(data, context)
        if results:
            results = self.format_output(results)
        return results

    @abc.abstractmethod
    def parse_input(self, data: Any) -> Any:
        """Request rows → the rows the handler gets."""

    @abc.abstractmethod
    def format_output(self, data: Any) -> Any:
        """The handler's outputs → one item per request."""

    def _is_explain(self) -> bool:
        return bool(self.context and self.context.get_request_header(0, "explain") == "True")


class BodyEnvelope(BaseEnvelope):
    """Rows become their ``data``/``body`` value; outputs are unchanged."""

    def parse_input(self, data: Any) -> Any:
        return [_row_value(row) for row in data]

    def format_output(self, data: Any) -> Any:
        return data


class JSONEnvelope(BaseEnvelope):
    """TensorFlow-Serving style ``{"instances": […]}`` per request, ``{"predictions": […]}`` back."""

    def __init__(self, handle_fn: EntryPoint) -> None:
        super().__init__(handle_fn)
        self._lengths: list[int] = []

    def parse_input(self, data: Any) -> Any:
        batches = [self._from_json(row) for row in data]
        self._lengths = [len(rows) for rows in batches]
        return list(chain.from_iterable(batches))

    def format_output(self, data: Any) -> Any:
        outputs, cursor = [], 0
        for length in self._lengths:
            outputs.append(json.dumps({"predictions": data[cursor : cursor + length]}))
            cursor += length
        return outputs

    @staticmethod
    def _from_json(row: Any) -> list[Any]:
        rows: list[Any] = (_row_value(row) or row)["instances"]
        if rows and isinstance(rows[0], dict):
            for i, instance in enumerate(rows):
                if list(instance.keys()) == ["b64"]:
                    rows[i] = b64decode(instance["b64"])
                    continue
                for column, value in instance.items():
                    if isinstance(value, dict) and list(value.keys()) == ["b64"]:
                        instance[column] = b64decode(value["b64"])
        return rows


class KServeEnvelope(BaseEnvelope):
    """KServe v1: the first request's ``instances`` are the rows; one ``predictions`` response back."""

    def parse_input(self, data: Any) -> Any:
        body = _row_value(data[0])
        if isinstance(body, bytes | bytearray):
            # KServe transformers and explainers send the JSON without a content type.
            body = json.loads(body.decode())
        return body.get("instances")

    def format_output(self, data: Any) -> Any:
        return [{"explanations" if self._is_explain() else "predictions": data}]


# -- Open Inference Protocol (KServe v2) ----------------------------------------------------------

#: Datatypes of a v2 tensor and the numpy dtype names TorchServe maps them to.
V2_DATATYPES = {
    "BOOL": "bool",
    "UINT8": "uint8",
    "UINT16": "uint16",
    "UINT32": "uint32",
    "UINT64": "uint64",
    "INT8": "int8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "FP16": "float16",
    "FP32": "float32",
    "FP64": "float64",
    "BYTES": "byte",
}
_DTYPE_TO_DATATYPE = {dtype: datatype for datatype, dtype in V2_DATATYPES.items()}


#: What JSON decodes a number, string, boolean or null to: a leaf of a nested list.
_SCALAR_TYPES = frozenset({int, float, bool, str, type(None)})


def _flatten(value: Any) -> tuple[list[Any], list[int]]:
    """Flatten nested lists like ``numpy.array(value).flatten()``; also return the array's shape.

    Raises ValueError for ragged nesting (numpy refuses those too).
    """
    if hasattr(value, "tolist") and not isinstance(value, bytes | bytearray | str):
        value = value.tolist()  # a numpy array or a tensor
    if not isinstance(value, list | tuple):
        return [value], []
    if not value:
        return [], [0]
    if _SCALAR_TYPES.issuperset(map(type, value)):
        # Already flat, as a v2 request's "data" usually is: one pass instead of a call per number.
        return list(value), [len(value)]
    parts = [_flatten(item) for item in value]
    inner_shape = parts[0][1]
    if any(shape != inner_shape for _, shape in parts):
        raise ValueError("inhomogeneous shape: the output cannot be made into a tensor")
    return [x for flat, _ in parts for x in flat], [len(value), *inner_shape]


def _promote(flat: list[Any]) -> list[Any]:
    """Give numbers one type as a numpy array would (bools with ints → ints, with floats → floats)."""
    kinds = set(map(type, flat))
    if len(kinds) == 1 and (float in kinds or int in kinds):
        return flat  # one type already
    if float in kinds and kinds <= {bool, int, float}:
        return [float(v) for v in flat]
    if int in kinds and kinds <= {bool, int}:
        return [int(v) for v in flat]
    return flat


def _reshape(flat: list[Any], shape: list[int]) -> Any:
    """The nested-list form of ``flat`` with ``shape`` (ValueError when the sizes disagree)."""
    size = 1
    for dim in shape:
        if not isinstance(dim, int) or dim < 0:
            raise ValueError(f"invalid dimension {dim!r} in shape {shape}")
        size *= dim
    if size != len(flat):
        raise ValueError(f"cannot reshape array of size {len(flat)} into shape {tuple(shape)}")
    if not shape:
        return flat[0]

    def build(offset: int, dims: list[int]) -> list[Any]:
        if len(dims) == 1:
            return flat[offset : offset + dims[0]]
        stride = 1
        for dim in dims[1:]:
            stride *= dim
        return [build(offset + i * stride, dims[1:]) for i in range(dims[0])]

    return build(0, list(shape))


def infer_datatype(values: list[Any], dtype: Any = None) -> str:
    """The v2 datatype numpy would give ``values`` (``dtype``: a numpy/torch dtype if known)."""
    if dtype is not None:
        name = str(dtype).removeprefix("torch.")
        if name in _DTYPE_TO_DATATYPE:
            return _DTYPE_TO_DATATYPE[name]
    if not values:
        return "FP64"  # numpy.array([]) is float64
    kinds = {type(v) for v in values}
    if kinds <= {bool}:
        return "BOOL"
    if kinds <= {bool, int}:
        return "INT64"
    if kinds <= {bool, int, float}:
        return "FP64"
    return "BYTES"  # strings, dicts, None, mixtures: numpy's object or unicode arrays


class KServev2Envelope(BaseEnvelope):
    """Open Inference Protocol: input tensors are the rows, outputs are named after them."""

    def parse_input(self, data: Any) -> Any:
        bodies = [_row_value(row) for row in data]
        body = bodies[0]
        if isinstance(body, bytes | bytearray):
            try:
                body = json.loads(body.decode("utf8"))
            except ValueError as exc:
                raise PredictionException(f"The KServe v2 request is not valid JSON: {exc}", 400) from None
        try:
            check_request(body)  # before anything is reshaped (SECURITY.md B7)
        except BadRequestError as exc:
            raise PredictionException(exc.message, 400) from None
        names = []
        for tensor in body["inputs"]:
            if tensor["datatype"] == "BYTES":
                tensor["data"] = tensor["data"][0]
            else:
                flat, _ = _flatten(tensor["data"])
                tensor["data"] = _reshape(_promote(flat), list(tensor["shape"]))
            names.append(tensor["name"])
        context = self.context
        if context is not None:
            context.input_names = names  # type: ignore[attr-defined]
            request_id = body.get("id")
            if request_id and str(request_id).strip():
                context.input_request_id = request_id  # type: ignore[attr-defined]
        return body.get("inputs")

    def format_output(self, data: Any) -> Any:
        context = self.context
        assert context is not None, "KServev2Envelope needs a context"
        response: dict[str, Any] = {}
        if hasattr(context, "input_request_id"):
            response["id"] = context.input_request_id
            del context.input_request_id
        else:
            response["id"] = context.get_request_id(0)
        model = (context.manifest or {}).get("model") or {}
        response["model_name"] = model.get("modelName")
        response["model_version"] = model.get("modelVersion")
        names = context.input_names  # type: ignore[attr-defined]
        del context.input_names  # type: ignore[attr-defined]
        response["outputs"] = [self._to_json(item, names[i]) for i, item in enumerate(data)]
        return [response]

    @staticmethod
    def _to_json(item: Any, input_name: str) -> dict[str, Any]:
        dtype = getattr(item, "dtype", None)
        flat, _ = _flatten(item)
        return {
            "name": input_name,
            "datatype": infer_datatype(flat, dtype),
            "data": flat,
            "shape": [len(flat)],
        }


#: ``service_envelope`` value → envelope class.
ENVELOPES: dict[str, type[BaseEnvelope]] = {
    "body": BodyEnvelope,
    "json": JSONEnvelope,
    "kserve": KServeEnvelope,
    "kservev2": KServev2Envelope,
}


def envelope_class(name: str) -> type[BaseEnvelope]:
    """The envelope class for a ``service_envelope`` name (ModuleNotFoundError, as TorchServe, if unknown)."""
    try:
        return ENVELOPES[name]
    except KeyError:
        module = f"ts.torch_handler.request_envelope.{name}"
        raise ModuleNotFoundError(f"No module named {module!r}", name=module) from None


__all__ = [
    "ENVELOPES",
    "BaseEnvelope",
    "BodyEnvelope",
    "JSONEnvelope",
    "KServeEnvelope",
    "KServev2Envelope",
    "envelope_class",
    "infer_datatype",
]
