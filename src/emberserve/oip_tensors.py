"""The Open Inference Protocol's tensor rules, shared by REST ``/v2/…/infer`` and gRPC ModelInfer.

Every request is checked with Python integers before anything is allocated, so a shape like
``[2**31, 2**31]`` or a million inputs costs nothing but a 400 (SECURITY.md B7).

    >>> element_count("x", [2, 3])
    6
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from emberserve.errors import BadRequestError

#: More tensors than this in one request or answer is refused (SECURITY.md B7).
MAX_TENSORS = 1000

#: The protocol's datatypes.
DATATYPES = frozenset(
    {"BOOL", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"}
    | {"FP16", "FP32", "FP64", "BF16", "BYTES"}
)


def element_count(name: str, shape: Sequence[int]) -> int:
    """Elements in a tensor of ``shape``; refuses negative dimensions (exact, no overflow)."""
    if any(dim < 0 for dim in shape):
        raise BadRequestError(f"Input {name!r}: shape {list(shape)} has a negative dimension.")
    return math.prod(shape)


def check_request(document: object) -> None:
    """Refuse a decoded v2 JSON request that is not coherent (:class:`BadRequestError`, 400).

    The gRPC ModelInfer rules, for REST ``/v2/models/{m}/infer`` bodies (the ``kservev2``
    envelope checks them in the worker, which decodes the body anyway, before any reshaping):
    at most :data:`MAX_TENSORS` inputs, each with a name, a known datatype, a shape of
    non-negative integers, and exactly as many data elements as the shape holds (nested lists
    count their leaves). Sizes are Python integers: a huge shape is refused, never allocated.

    >>> check_request({"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32",
    ...                            "data": [[1, 2], [3, 4]]}]})
    >>> check_request({"inputs": [{"name": "x", "shape": [3], "datatype": "FP32", "data": [1]}]})
    Traceback (most recent call last):
    ...
    emberserve.errors.BadRequestError: Input 'x': shape [3] needs 3 elements, 1 were sent.
    """
    inputs = document.get("inputs") if isinstance(document, dict) else None
    if not isinstance(inputs, list):
        raise BadRequestError('The KServe v2 request needs an "inputs" list.')
    if len(inputs) > MAX_TENSORS:
        raise BadRequestError(f"Too many inputs: {len(inputs)} (at most {MAX_TENSORS}).")
    for tensor in inputs:
        if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
            raise BadRequestError('Every input of a KServe v2 request needs a "name".')
        name = tensor["name"]
        datatype, shape = tensor.get("datatype"), tensor.get("shape")
        if datatype not in DATATYPES:
            raise BadRequestError(f"Input {name!r}: unknown datatype {datatype!r}.")
        if not isinstance(shape, list) or not all(type(dim) is int for dim in shape):
            raise BadRequestError(f"Input {name!r}: the shape must be a list of integers.")
        count = element_count(name, shape)
        if "data" not in tensor:
            raise BadRequestError(f'Input {name!r} has no "data".')
        sent = leaf_count(tensor["data"])
        if sent != count:
            raise BadRequestError(f"Input {name!r}: shape {shape} needs {count} elements, {sent} were sent.")


def leaf_count(data: object) -> int:
    """Elements of v2 JSON ``data`` (a scalar or nested lists), without building a flat copy."""
    if not isinstance(data, list):
        return 1
    if list not in set(map(type, data)):  # the common innermost level, at C speed
        return len(data)
    return sum(leaf_count(item) for item in data)


__all__ = ["DATATYPES", "MAX_TENSORS", "check_request", "element_count", "leaf_count"]
