"""Open Inference Protocol tensors ⇄ the KServe v2 JSON documents handlers exchange.

TorchServe turns a gRPC ``ModelInferRequest`` into the JSON body of REST ``/v2/models/{m}/infer``
(``{"id", "model_name", "inputs": [{"name", "shape", "datatype", "data"}]}``), lets the handler (with
the ``kservev2`` envelope) answer a v2 JSON document, and turns that document's ``outputs`` back
into ``ModelInferResponse`` tensors. Ember does the same, plus what standard v2 clients need:

* ``raw_input_contents`` (what tritonclient sends) is decoded too -- TorchServe ignores it, so
  its handlers saw empty tensors. Sizes are checked with Python integers before anything is
  decoded, so a shape like ``[2**31, 2**31]`` costs nothing (SECURITY.md B7).
* A request sent with raw contents is answered with ``raw_output_contents`` (tritonclient reads
  nothing else); FP16/BF16 outputs, which have no typed field, force raw contents as well.
* BYTES data goes to the handler base64 encoded (as TorchServe sends it); BYTES outputs are the
  UTF-8 bytes of a string element, the compact JSON of any other element.

    >>> from emberserve.grpc.generated import open_inference_grpc_pb2 as pb
    >>> t = pb.ModelInferRequest.InferInputTensor(name="x", datatype="INT32", shape=[2])
    >>> t.contents.int_contents.extend([1, 2])
    >>> request_document(pb.ModelInferRequest(model_name="m", id="7", inputs=[t]))["inputs"]
    [{'name': 'x', 'shape': [2], 'datatype': 'INT32', 'data': [1, 2]}]
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterable
from typing import Any

import orjson

from emberserve.errors import BadRequestError, InternalServerError
from emberserve.grpc.generated import open_inference_grpc_pb2 as pb
from emberserve.oip_tensors import DATATYPES, MAX_TENSORS, element_count

#: datatype → (struct format character, bytes per element) for fixed-size raw contents.
FIXED_SIZE: dict[str, tuple[str, int]] = {
    "BOOL": ("?", 1),
    "INT8": ("b", 1),
    "INT16": ("h", 2),
    "INT32": ("i", 4),
    "INT64": ("q", 8),
    "UINT8": ("B", 1),
    "UINT16": ("H", 2),
    "UINT32": ("I", 4),
    "UINT64": ("Q", 8),
    "FP16": ("e", 2),
    "FP32": ("f", 4),
    "FP64": ("d", 8),
    "BF16": ("H", 2),  # decoded through FP32, see _bf16_values
}

#: datatype → the InferTensorContents field that carries it (FP16/BF16 have none).
CONTENTS_FIELD: dict[str, str] = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


# ------------------------------------------------------------------------------------------------
# Request: tensors → JSON document
# ------------------------------------------------------------------------------------------------


def parameter_value(parameter: pb.InferParameter) -> bool | int | str | None:
    choice = parameter.WhichOneof("parameter_choice")
    if choice is None:
        return None
    value: bool | int | str = getattr(parameter, choice)
    return value


def parameters_document(parameters: Any) -> dict[str, bool | int | str | None]:
    return {key: parameter_value(value) for key, value in parameters.items()}


def request_document(request: pb.ModelInferRequest) -> dict[str, object]:
    """The KServe v2 JSON request for ``request`` (what the handler's envelope parses)."""
    inputs = request.inputs
    raw = request.raw_input_contents
    if len(inputs) > MAX_TENSORS:
        raise BadRequestError(f"Too many inputs: {len(inputs)} (at most {MAX_TENSORS}).")
    if raw and len(raw) != len(inputs):
        raise BadRequestError(
            f"raw_input_contents has {len(raw)} entries for {len(inputs)} inputs; it needs one per input."
        )
    tensors: list[dict[str, object]] = []
    for index, tensor in enumerate(inputs):
        if tensor.datatype not in DATATYPES:
            raise BadRequestError(f"Input {tensor.name!r}: unknown datatype {tensor.datatype!r}.")
        count = element_count(tensor.name, tensor.shape)
        if raw:
            if tensor.HasField("contents"):
                raise BadRequestError(
                    f"Input {tensor.name!r} has contents although raw_input_contents is used."
                )
            data = decode_raw(tensor.name, tensor.datatype, bytes(raw[index]), count)
        else:
            data = decode_contents(tensor, count)
        document: dict[str, object] = {
            "name": tensor.name,
            "shape": list(tensor.shape),
            "datatype": tensor.datatype,
            "data": data,
        }
        if tensor.parameters:
            document["parameters"] = parameters_document(tensor.parameters)
        tensors.append(document)
    body: dict[str, object] = {"id": request.id, "model_name": request.model_name, "inputs": tensors}
    if request.parameters:
        body["parameters"] = parameters_document(request.parameters)
    return body


def _b64(values: Iterable[bytes]) -> list[str]:
    return [base64.b64encode(v).decode("ascii") for v in values]


def decode_contents(tensor: pb.ModelInferRequest.InferInputTensor, count: int) -> list[Any]:
    field = CONTENTS_FIELD.get(tensor.datatype)
    if field is None:
        raise BadRequestError(
            f"Input {tensor.name!r}: {tensor.datatype} data must be sent as raw_input_contents."
        )
    values = getattr(tensor.contents, field)
    if len(values) != count:
        raise BadRequestError(
            f"Input {tensor.name!r}: shape {list(tensor.shape)} needs {count} elements, "
            f"{len(values)} were sent."
        )
    if tensor.datatype == "BYTES":
        return _b64(values)
    return list(values)


def decode_raw(name: str, datatype: str, raw: bytes, count: int) -> list[Any]:
    """Little-endian row-major bytes of ``count`` elements as a list of Python values."""
    if datatype == "BYTES":
        return _b64(split_bytes_elements(name, raw, count))
    code, size = FIXED_SIZE[datatype]
    if len(raw) != count * size:
        raise BadRequestError(
            f"Input {name!r}: {count} {datatype} elements take {count * size} bytes, {len(raw)} were sent."
        )
    values = list(struct.unpack(f"<{count}{code}", raw))
    return _bf16_values(values) if datatype == "BF16" else values


def _bf16_values(halves: list[int]) -> list[float]:
    # A bfloat16 is the upper half of a float32.
    if not halves:
        return []
    return list(
        struct.unpack(f"<{len(halves)}f", struct.pack(f"<{len(halves)}I", *(h << 16 for h in halves)))
    )


def split_bytes_elements(name: str, raw: bytes, count: int) -> list[bytes]:
    """Raw BYTES contents: each element is a 4-byte little-endian length, then that many bytes."""
    elements: list[bytes] = []
    offset = 0
    while offset < len(raw):
        if len(elements) == count or offset + 4 > len(raw):
            break
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            break
        elements.append(raw[offset : offset + length])
        offset += length
    if len(elements) != count or offset != len(raw):
        raise BadRequestError(f"Input {name!r}: raw BYTES contents do not hold exactly {count} elements.")
    return elements


# ------------------------------------------------------------------------------------------------
# Answer: JSON document → tensors
# ------------------------------------------------------------------------------------------------


def flatten(data: object) -> list[Any]:
    """v2 JSON data may be nested lists; tensors carry it flat, row-major."""
    if not isinstance(data, list):
        return [data]
    flat: list[Any] = []
    stack: list[Any] = [iter(data)]
    while stack:
        item = next(stack[-1], _END)
        if item is _END:
            stack.pop()
        elif isinstance(item, list):
            stack.append(iter(item))
        else:
            flat.append(item)
    return flat


_END = object()


def bytes_element(value: object) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    return orjson.dumps(value)


def infer_response(
    body: bytes, *, model_name: str, model_version: str, request_id: str, raw: bool
) -> pb.ModelInferResponse:
    """The gRPC answer for the handler's output ``body`` (``raw``: answer with raw contents).

    A body that is not a v2 answer document (the model has no ``kservev2`` envelope) becomes a
    single BYTES output ``output-0`` holding the body as it is.
    """
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        document = None
    outputs = document.get("outputs") if isinstance(document, dict) else None
    if not isinstance(document, dict) or not isinstance(outputs, list):
        document = {}
        outputs = [{"name": "output-0", "datatype": "BYTES", "shape": [1], "data": [body]}]
    if len(outputs) > MAX_TENSORS:
        raise InternalServerError(f"The model answered {len(outputs)} outputs (at most {MAX_TENSORS}).")
    answer = pb.ModelInferResponse(
        model_name=str(document.get("model_name") or model_name),
        model_version=str(document.get("model_version") or model_version),
        id=str(document.get("id") or request_id),
    )
    # FP16/BF16 have no typed field; raw contents are all-or-nothing within one answer.
    use_raw = raw or any(isinstance(o, dict) and o.get("datatype") in ("FP16", "BF16") for o in outputs)
    for output in outputs:
        tensor, data = _output_tensor(output)
        if use_raw:
            answer.raw_output_contents.append(encode_raw(tensor.name, tensor.datatype, data))
        else:
            _fill_contents(tensor, data)
        answer.outputs.append(tensor)
    return answer


def _output_tensor(output: object) -> tuple[pb.ModelInferResponse.InferOutputTensor, list[Any]]:
    if not isinstance(output, dict):
        raise InternalServerError("Invalid model output: every v2 output must be an object.")
    name = str(output.get("name", ""))
    datatype = str(output.get("datatype", "BYTES"))
    if datatype not in DATATYPES:
        raise InternalServerError(f"Invalid model output {name!r}: unknown datatype {datatype!r}.")
    data = flatten(output.get("data", []))
    shape = output.get("shape", [len(data)])
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
        raise InternalServerError(f"Invalid model output {name!r}: shape must be a list of integers.")
    return pb.ModelInferResponse.InferOutputTensor(name=name, datatype=datatype, shape=shape), data


def _fill_contents(tensor: pb.ModelInferResponse.InferOutputTensor, data: list[Any]) -> None:
    field = getattr(tensor.contents, CONTENTS_FIELD[tensor.datatype])
    try:
        if tensor.datatype == "BYTES":
            field.extend(v if isinstance(v, bytes) else bytes_element(v) for v in data)
        else:
            field.extend(data)
    except (TypeError, ValueError) as exc:
        raise InternalServerError(
            f"Invalid model output {tensor.name!r}: data does not fit datatype {tensor.datatype}."
        ) from exc


def encode_raw(name: str, datatype: str, data: list[Any]) -> bytes:
    """``data`` as little-endian row-major raw contents of ``datatype``."""
    try:
        if datatype == "BYTES":
            parts = [v if isinstance(v, bytes) else bytes_element(v) for v in data]
            return b"".join(struct.pack("<I", len(p)) + p for p in parts)
        code, _ = FIXED_SIZE[datatype]
        if datatype == "BF16":
            return _bf16_bytes([float(v) for v in data])
        return struct.pack(f"<{len(data)}{code}", *data)
    except (struct.error, TypeError, ValueError, OverflowError) as exc:
        raise InternalServerError(
            f"Invalid model output {name!r}: data does not fit datatype {datatype}."
        ) from exc


def _bf16_bytes(values: list[float]) -> bytes:
    # Round a float32 to the nearest bfloat16 (ties to even), keep its upper half.
    words = struct.unpack(f"<{len(values)}I", struct.pack(f"<{len(values)}f", *values))
    halves = [((w + 0x7FFF + ((w >> 16) & 1)) >> 16) & 0xFFFF for w in words]
    return struct.pack(f"<{len(halves)}H", *halves)
