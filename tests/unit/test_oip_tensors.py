"""The Open Inference Protocol's request rules for REST bodies (SECURITY.md B7)."""

from __future__ import annotations

import pytest

from emberserve.errors import BadRequestError
from emberserve.handlers.envelopes import KServev2Envelope
from emberserve.handlers.utils import PredictionException
from emberserve.oip_tensors import MAX_TENSORS, check_request, leaf_count


def body(*inputs: object) -> object:
    return {"id": "1", "inputs": list(inputs)}


def tensor(shape: object, data: object, datatype: object = "FP32", name: object = "x") -> dict[str, object]:
    return {"name": name, "shape": shape, "datatype": datatype, "data": data}


@pytest.mark.parametrize(
    "good",
    [
        body(tensor([2, 2], [[1, 2], [3, 4]])),
        body(tensor([4], [1, 2, 3, 4]), tensor([1], ["a"], "BYTES", "y")),
        body(tensor([2, 2], [1, 2, 3, 4])),  # flat data for a 2-D shape: row-major, as tritonclient sends
        body(tensor([0], [])),
        body(tensor([], 5)),  # a scalar
        {"inputs": []},
    ],
)
def test_coherent_requests_pass(good: object) -> None:
    check_request(good)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ([1, 2], '"inputs" list'),
        ({"inputs": {}}, '"inputs" list'),
        (body(tensor([2147483647, 2147483647], [1.0])), "needs 4611686014132420609 elements, 1 were sent"),
        (body(tensor([-1, 4], [1, 2, 3, 4])), "negative dimension"),
        (body(tensor([3], [1, 2])), "needs 3 elements, 2 were sent"),
        (body(tensor([1], [1], "COMPLEX")), "unknown datatype 'COMPLEX'"),
        (body(tensor([1.5], [1])), "list of integers"),
        (body(tensor([True], [1])), "list of integers"),
        (body(tensor("2", [1, 2])), "list of integers"),
        (body({"shape": [1], "datatype": "FP32", "data": [1]}), '"name"'),
        (body({"name": "x", "shape": [1], "datatype": "FP32"}), 'no "data"'),
        (body(*[tensor([0], [])] * (MAX_TENSORS + 1)), "Too many inputs: 1001"),
    ],
)
def test_incoherent_requests_are_bad_requests(bad: object, message: str) -> None:
    with pytest.raises(BadRequestError) as caught:
        check_request(bad)
    assert message in caught.value.message


def test_leaves_of_ragged_and_deep_data_are_counted() -> None:
    assert leaf_count([[1, [2, 3]], 4, []]) == 4
    assert leaf_count([[[[1]]]]) == 1
    assert leaf_count("scalar") == 1


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"body": body(tensor([2147483647, 2147483647], [1.0]))}, "needs 4611686014132420609 elements"),
        ({"body": b"{not json"}, "not valid JSON"),
    ],
)
def test_the_kservev2_envelope_refuses_incoherent_requests_before_reshaping(
    row: dict[str, object], message: str
) -> None:
    called = []
    envelope = KServev2Envelope(lambda rows, _ctx: called.append(rows) or ["never"])
    with pytest.raises(PredictionException) as caught:
        envelope.handle([row], None)
    assert caught.value.error_code == 400 and message in caught.value.message
    assert called == []
