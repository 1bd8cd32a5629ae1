"""TorchServe's built-in handlers, by name (MANIFEST ``handler: image_classifier``) and by import
(``from ts.torch_handler.image_classifier import ImageClassifier``), served by real workers.

The models are tiny and built here with weights chosen so the right answer is known by hand:
the "colour" classifier's logits are 10 × the per-channel mean of the normalised image, so a
red image is class 0 with a probability computable from ImageNet's mean and std alone.

Workers start in parallel (one per model) once per module; each import of torch costs ~2 s.
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
import struct
import textwrap
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from emberserve.handlers.builtin.text_handler import TextHandler, Vocabulary
from emberserve.handlers.context import Context
from emberserve.workers import protocol
from tests.worker_harness import WorkerHarness, load_message, make_request, write_model_dir

pytestmark = pytest.mark.torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
COLOURS = {"0": "red", "1": "green", "2": "blue"}
LOAD_TIMEOUT = 60.0

# -- models (their source goes into the archive as model.py) ---------------------------------------

COLOUR_MODEL = """
import torch


class ColourNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.head = torch.nn.Linear(3, 3, bias=False)

    def forward(self, x):
        return self.head(x.mean(dim=(2, 3)))
"""

DETECTOR_MODEL = """
import torch


class Detector(torch.nn.Module):
    # torchvision's detection output: per image, boxes [n, 4], labels [n], scores [n].
    def __init__(self):
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(1))

    def forward(self, images):
        out = []
        for image in images:
            h, w = image.shape[-2:]
            out.append({
                "boxes": torch.tensor([[0.0, 0.0, float(w), float(h)], [1.0, 1.0, 2.0, 2.0]]),
                "labels": torch.tensor([1, 2]),
                "scores": torch.stack([image.mean(), torch.tensor(0.3)]),
            })
        return out
"""

SEGMENTER_MODEL = """
import torch


class Segmenter(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.classify = torch.nn.Conv2d(3, 2, kernel_size=1, bias=False)

    def forward(self, x):
        return {"out": self.classify(x)}
"""

TEXT_MODEL = """
import torch


class TextNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = torch.nn.EmbeddingBag(6, 2, mode="sum")
        self.fc = torch.nn.Linear(2, 2, bias=False)

    def forward(self, text, offsets):
        return self.fc(self.embedding(text, offsets))
"""

TOP2_HANDLER = """
from ts.torch_handler.image_classifier import ImageClassifier
from emberserve.handlers.builtin.transforms import CenterCrop, Compose, Normalize, Resize, ToTensor


class SmallTop2(ImageClassifier):
    image_processing = Compose([Resize(8), CenterCrop(8), ToTensor(),
                                Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])

    def initialize(self, context):
        super().initialize(context)
        self.set_max_result_classes(2)
"""

# A directory put first on the worker's PYTHONPATH: "captum" exists but cannot be imported.
HIDDEN_CAPTUM = 'raise ImportError("captum is hidden for this test")\n'


def _state_dict_bytes(source: str, class_name: str, weights: dict[str, torch.Tensor]) -> bytes:
    namespace: dict[str, Any] = {}
    exec(compile(textwrap.dedent(source), "model.py", "exec"), namespace)
    model = namespace[class_name]()
    model.load_state_dict(weights)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getvalue()


def _eager_model_dir(
    directory: Path,
    handler: str,
    source: str,
    class_name: str,
    weights: dict[str, torch.Tensor],
    **files: Any,
) -> Path:
    content = {"model.py": source, "model.pt": _state_dict_bytes(source, class_name, weights), **files}
    return write_model_dir(directory, content, handler, modelFile="model.py", serializedFile="model.pt")


def _colour_dir(directory: Path, handler: str, **files: Any) -> Path:
    weights = {"head.weight": torch.eye(3) * 10}
    files.setdefault("index_to_name.json", json.dumps(COLOURS))
    return _eager_model_dir(directory, handler, COLOUR_MODEL, "ColourNet", weights, **files)


def _text_dir(directory: Path, vocab_file: str) -> Path:
    # "good" pushes class 1 ("positive"), "bad" class 0; unknown words (index 0) weigh nothing.
    embedding = torch.tensor([[0.0, 0.0], [0.0, 3.0], [3.0, 0.0], [0.1, 0.0], [0.0, 0.0], [0.0, 0.0]])
    weights = {"embedding.weight": embedding, "fc.weight": torch.eye(2)}
    tokens = {"<unk>": 0, "good": 1, "bad": 2, "movie": 3, "good movie": 4, "not": 5}
    vocab: bytes | str
    if vocab_file.endswith(".json"):
        vocab = json.dumps(tokens)
    else:
        buffer = io.BytesIO()
        torch.save(tokens, buffer)
        vocab = buffer.getvalue()
    mapping = json.dumps({"0": "negative", "1": "positive"})
    files = {vocab_file: vocab, "index_to_name.json": mapping}
    return _eager_model_dir(directory, "text_classifier", TEXT_MODEL, "TextNet", weights, **files)


def _densenet_dir(directory: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated, still loadable
        buffer = io.BytesIO()
        torch.jit.save(torch.jit.script(torch.nn.Flatten()), buffer)
    return write_model_dir(
        directory, {"model.pt": buffer.getvalue()}, "densenet_handler", serializedFile="model.pt"
    )


# -- images -----------------------------------------------------------------------------------------


def image_bytes(
    colour: tuple[int, int, int], image_format: str = "PNG", size: tuple[int, int] = (40, 30)
) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format=image_format)
    return buffer.getvalue()


def expected_colour_probabilities(colour: tuple[int, int, int]) -> list[float]:
    """By hand: a flat image stays flat through resize/crop, so the mean is the normalised colour."""
    logits = [10 * (value / 255 - IMAGENET_MEAN[c]) / IMAGENET_STD[c] for c, value in enumerate(colour)]
    total = sum(math.exp(v) for v in logits)
    return [math.exp(v) / total for v in logits]


def body_json(result: protocol.Result) -> Any:
    assert result.status == 200, result.error
    return json.loads(result.body)


# -- workers ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, WorkerHarness]]:
    """One loaded worker per model, started together so their torch imports overlap."""
    root = tmp_path_factory.mktemp("builtin")
    hidden = root / "hidden"
    (hidden / "captum").mkdir(parents=True)
    (hidden / "captum" / "__init__.py").write_text(HIDDEN_CAPTUM)
    no_captum_env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(hidden), os.environ.get("PYTHONPATH", "")]),
    }
    specs: dict[str, tuple[Path, dict[str, str] | None]] = {
        "classifier": (_colour_dir(root / "classifier", "image_classifier"), no_captum_env),
        "top2": (_colour_dir(root / "top2", "small_top2.py", **{"small_top2.py": TOP2_HANDLER}), None),
        "detector": (
            _eager_model_dir(
                root / "detector",
                "object_detector",
                DETECTOR_MODEL,
                "Detector",
                {"unused": torch.zeros(1)},
                **{"index_to_name.json": json.dumps({"1": "sun", "2": "speck"})},
            ),
            None,
        ),
        "segmenter": (
            _eager_model_dir(
                root / "segmenter",
                "image_segmenter",
                SEGMENTER_MODEL,
                "Segmenter",
                {"classify.weight": torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]).reshape(2, 3, 1, 1)},
            ),
            None,
        ),
        "text": (_text_dir(root / "text", "vocab.json"), None),
        "densenet": (_densenet_dir(root / "densenet"), None),
    }
    started: dict[str, WorkerHarness] = {}
    try:
        for name, (_, env) in specs.items():
            started[name] = WorkerHarness.spawn(env=env)
        for name, (model_dir, _) in specs.items():
            started[name].send(load_message(model_dir, batch_size=2))
        for name, harness in started.items():
            answer = _answer(harness)
            assert isinstance(answer, protocol.Loaded), f"{name}: {answer}\n{harness.output()}"
        yield started
    finally:
        for harness in started.values():
            harness.close()


def _answer(harness: WorkerHarness) -> protocol.Message:
    while True:
        message = harness.recv(LOAD_TIMEOUT)
        if not isinstance(message, protocol.MetricsReport):
            return message


# -- image classifier -----------------------------------------------------------------------------


def test_classifier_by_name_answers_a_png_with_all_classes_sorted(workers: dict[str, WorkerHarness]) -> None:
    answer = body_json(workers["classifier"].predict_one(image_bytes((255, 0, 0)), "image/png"))
    expected = expected_colour_probabilities((255, 0, 0))
    # Default topk is 5; the model has 3 classes, so all three, most likely first.
    assert list(answer) == ["red", "blue", "green"]
    for index, label in COLOURS.items():
        assert answer[label] == pytest.approx(expected[int(index)], rel=1e-4)


def test_classifier_decodes_jpeg_base64_and_multipart_rows(workers: dict[str, WorkerHarness]) -> None:
    worker = workers["classifier"]
    jpeg = body_json(worker.predict_one(image_bytes((0, 0, 255), "JPEG"), "image/jpeg"))
    assert next(iter(jpeg)) == "blue"
    as_text = base64.b64encode(image_bytes((0, 255, 0))).decode()
    assert next(iter(body_json(worker.predict_one(as_text, "text/plain")))) == "green"
    multipart = make_request(inputs=[protocol.Input("data", "image/png", image_bytes((255, 0, 0)))])
    [result] = worker.predict([multipart]).results
    assert next(iter(body_json(result))) == "red"


def test_classifier_answers_each_image_of_a_batch(workers: dict[str, WorkerHarness]) -> None:
    requests = [
        make_request(image_bytes((0, 255, 0)), "image/png"),
        make_request(image_bytes((255, 0, 0)), "image/png", request_id="second"),
    ]
    results = workers["classifier"].predict(requests).results
    assert [r.request_id for r in results] == [requests[0].request_id, "second"]
    assert [next(iter(body_json(r))) for r in results] == ["green", "red"]


def test_classifier_rejects_what_is_not_an_image(workers: dict[str, WorkerHarness]) -> None:
    worker = workers["classifier"]
    not_image = worker.predict_one(b"\x00not an image", "application/octet-stream")
    assert (not_image.status, not_image.error) == (503, "Prediction failed")  # TorchServe's answer
    bad_base64 = worker.predict_one("abc", "text/plain")
    assert bad_base64.status == 400
    assert "base64" in (bad_base64.error or "")


def bomb_png(width: int, height: int) -> bytes:
    """A PNG header declaring ``width`` × ``height`` pixels (no pixel data: Pillow checks the size first)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def test_a_decompression_bomb_is_refused_and_the_worker_survives(workers: dict[str, WorkerHarness]) -> None:
    # SECURITY.md B8: limit_max_image_pixels (on) keeps Pillow's limit → handler error → 503.
    worker = workers["classifier"]
    result = worker.predict_one(bomb_png(50_000, 50_000), "image/png")
    assert (result.status, result.error) == (503, "Prediction failed")
    assert "DecompressionBombError" in worker.output()
    assert worker.predict_one(image_bytes((255, 0, 0)), "image/png").status == 200


def test_explaining_without_captum_is_501_naming_the_extra(workers: dict[str, WorkerHarness]) -> None:
    worker = workers["classifier"]
    result = worker.predict_one(image_bytes((255, 0, 0)), "image/png", kind="explain")
    assert result.status == 501
    assert "pip install 'emberserve[explain]'" in (result.error or "")
    # Predictions still work in the same worker.
    assert worker.predict_one(image_bytes((255, 0, 0)), "image/png").status == 200


def test_subclass_imported_from_ts_with_top_k(workers: dict[str, WorkerHarness]) -> None:
    answer = body_json(workers["top2"].predict_one(image_bytes((0, 255, 0), size=(12, 9)), "image/png"))
    assert list(answer) == ["green", "blue"]  # set_max_result_classes(2)
    expected = expected_colour_probabilities((0, 255, 0))
    assert answer["green"] == pytest.approx(expected[1], rel=1e-4)


def test_image_explanation_with_captum(workers: dict[str, WorkerHarness]) -> None:
    pytest.importorskip("captum")
    result = workers["top2"].predict_one(image_bytes((255, 0, 0), size=(8, 8)), "image/png", kind="explain")
    attributions = torch.tensor(body_json(result))
    assert attributions.shape == (3, 8, 8)  # one attribution per input value
    # Target 0 ("red"): its logit is 10 × the mean of channel 0, so only channel 0 matters.
    assert float(attributions[0].abs().sum()) > 0
    assert float(attributions[1:].abs().sum()) == pytest.approx(0.0, abs=1e-6)


# -- object detector / segmenter --------------------------------------------------------------------


def test_object_detector_keeps_boxes_above_the_threshold(workers: dict[str, WorkerHarness]) -> None:
    requests = [
        make_request(image_bytes((255, 255, 255), size=(4, 3)), "image/png"),
        make_request(image_bytes((0, 0, 0), size=(4, 3)), "image/png"),
    ]
    bright, dark = (body_json(r) for r in workers["detector"].predict(requests).results)
    # The white image scores 1.0 for "sun"; the 0.3 "speck" is under the 0.5 threshold.
    assert bright == [{"sun": [0.0, 0.0, 4.0, 3.0], "score": 1.0}]
    assert dark == []


def test_object_detector_accepts_an_image_as_a_json_list(workers: dict[str, WorkerHarness]) -> None:
    pixels = [[[1.0, 1.0], [1.0, 1.0]]] * 3
    answer = body_json(workers["detector"].predict_one(json.dumps(pixels), "application/json"))
    assert answer == [{"sun": [0.0, 0.0, 2.0, 2.0], "score": 1.0}]


def test_image_segmenter_answers_class_and_probability_per_pixel(workers: dict[str, WorkerHarness]) -> None:
    answer = body_json(workers["segmenter"].predict_one(image_bytes((0, 255, 0)), "image/png"))
    assert (len(answer), len(answer[0]), len(answer[0][0])) == (224, 224, 2)
    red = (0 - IMAGENET_MEAN[0]) / IMAGENET_STD[0]
    green = (1 - IMAGENET_MEAN[1]) / IMAGENET_STD[1]
    probability = 1 / (1 + math.exp(red - green))
    assert answer[0][0] == pytest.approx([1.0, probability], rel=1e-4)
    assert answer[223][223] == answer[0][0]


# -- text classifier --------------------------------------------------------------------------------


def test_text_classifier_by_name(workers: dict[str, WorkerHarness]) -> None:
    worker = workers["text"]
    positive = body_json(worker.predict_one("<b>A GOOD movie!</b>", "text/plain"))
    # Tokens a, good, movie + bigrams: embeddings [0,0]+[0,3]+[0.1,0]+"good movie"[0,0] → logits [0.1, 3].
    expected = 1 / (1 + math.exp(0.1 - 3.0))
    assert positive == {"negative": pytest.approx(1 - expected), "positive": pytest.approx(expected)}
    negative = body_json(worker.predict_one(b"bad", "application/octet-stream"))
    assert negative["negative"] > 0.9


def test_text_explanation_with_captum(workers: dict[str, WorkerHarness]) -> None:
    pytest.importorskip("captum")
    result = workers["text"].predict_one("good movie", "text/plain", kind="explain")
    answer = body_json(result)
    assert answer["words"] == ["good", "movie"]
    # As in TorchServe: attributions of the embedding layer's output (one bag of 2 values here),
    # softmaxed and scaled by the norm of their sum, so they add up to 1.
    [importances] = answer["importances"]
    assert len(importances) == 2
    assert sum(importances) == pytest.approx(1.0)


def test_text_vocabulary_from_source_vocab_pt(tmp_path: Path) -> None:
    model_dir = _text_dir(tmp_path / "text_pt", "source_vocab.pt")
    handler = TextHandler.__new__(TextHandler)  # only the vocabulary lookup, no model
    context = Context("text", str(model_dir), {"model": {}}, 1, None, "0.12.0")
    path = handler.get_source_vocab_path(context)
    assert path.endswith("source_vocab.pt")
    vocab = Vocabulary.load(path)
    assert (vocab["good movie"], vocab["unseen"]) == (4, 0)
    (model_dir / "source_vocab.pt").unlink()
    with pytest.raises(RuntimeError, match="source_vocab"):
        handler.get_source_vocab_path(context)


# -- densenet ---------------------------------------------------------------------------------------


def test_densenet_handler_takes_and_returns_tensors(workers: dict[str, WorkerHarness]) -> None:
    buffer = io.BytesIO()
    torch.save(torch.arange(6.0).reshape(2, 3), buffer)
    result = workers["densenet"].predict_one(buffer.getvalue(), "application/octet-stream")
    assert result.status == 200, result.error
    output = torch.load(io.BytesIO(result.body), weights_only=True)
    assert output.tolist() == [[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]]  # Flatten of the batch of one


def test_densenet_handler_refuses_pickled_objects(workers: dict[str, WorkerHarness]) -> None:
    buffer = io.BytesIO()
    torch.save({"not": object()}, buffer)
    result = workers["densenet"].predict_one(buffer.getvalue(), "application/octet-stream")
    assert result.status == 400
    assert "torch.save" in (result.error or "")
