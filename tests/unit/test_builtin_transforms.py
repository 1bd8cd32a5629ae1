"""The built-in handlers' building blocks: torchvision-equivalent transforms, text utilities, explain glue.

Expected values are computed by hand from torchvision's documented semantics (torchvision itself
is not installable here): Pillow's bilinear filter is a triangle of radius 1 output pixel, so
shrinking ``[10, 20, 30, 40]`` to 2 pixels weighs input pixels 0, 1, 2 by 0.75, 0.75, 0.25.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from PIL import Image

from emberserve.handlers.builtin import explain
from emberserve.handlers.builtin.text_handler import (
    Vocabulary,
    expand_contractions,
    get_tokenizer,
    ngrams_iterator,
)
from emberserve.handlers.builtin.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    CenterCrop,
    Compose,
    Grayscale,
    Normalize,
    Resize,
    ToTensor,
    imagenet_classification,
    resized_size,
)
from emberserve.handlers.utils import PredictionException

pytestmark = pytest.mark.torch


def gray(rows: list[list[int]]) -> Image.Image:
    return Image.fromarray(np.array(rows, dtype=np.uint8))


# -- Resize ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("height", "width", "size", "max_size", "expected"),
    [
        (200, 300, 256, None, (256, 384)),  # landscape: height is the shorter side
        (300, 200, 256, None, (384, 256)),  # portrait
        (100, 100, 64, None, (64, 64)),
        (3, 10, 2, None, (2, 6)),  # int(2 * 10 / 3) = 6: truncated, not rounded
        (200, 300, [256], None, (256, 384)),  # a 1-sequence is the shorter side too
        (200, 300, (50, 70), None, (50, 70)),  # (h, w): exactly that
        (100, 400, 100, 200, (50, 200)),  # the longer side capped by max_size
    ],
)
def test_resized_size_follows_torchvision(
    height: int, width: int, size: int | list[int], max_size: int | None, expected: tuple[int, int]
) -> None:
    assert resized_size(height, width, size, max_size) == expected


def test_resized_size_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="max_size"):
        resized_size(10, 10, (5, 5), max_size=8)
    with pytest.raises(ValueError, match="strictly greater"):
        resized_size(10, 10, 8, max_size=8)
    with pytest.raises(ValueError, match="1 or 2"):
        Resize([1, 2, 3])
    with pytest.raises(ValueError, match="unknown interpolation"):
        Resize(4, interpolation="sharpest")


def test_resize_shrinks_with_an_antialiasing_bilinear_filter() -> None:
    # out[0] = (.75*10 + .75*20 + .25*30) / 1.75 = 17.14; out[1] = (.25*20 + .75*30 + .75*40) / 1.75 = 32.86
    out = Resize((1, 2))(gray([[10, 20, 30, 40]]))
    assert isinstance(out, Image.Image)
    assert np.array(out).tolist() == [[17, 33]]


def test_resize_enlarges_by_linear_interpolation() -> None:
    # Output centres fall at input x = -0.25, 0.25, 0.75, 1.25 (edges clamp to the border pixel).
    out = Resize((1, 4))(gray([[0, 100]]))
    assert np.array(out).tolist() == [[0, 25, 75, 100]]


def test_resize_by_shorter_side_keeps_the_aspect_ratio_and_mode() -> None:
    out = Resize(256)(Image.new("RGB", (300, 200), (10, 20, 30)))
    assert isinstance(out, Image.Image)
    assert (out.width, out.height, out.mode) == (384, 256, "RGB")
    assert out.getpixel((100, 100)) == (10, 20, 30)  # a flat image stays flat


def test_resize_to_the_current_size_returns_the_same_image() -> None:
    image = gray([[1, 2], [3, 4]])
    assert Resize(2)(image) is image


def test_resize_of_a_tensor_matches_pillow_within_a_small_tolerance() -> None:
    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 256, size=(37, 53, 3), dtype=np.uint8)
    via_pillow = ToTensor()(Resize(16)(Image.fromarray(pixels)))
    via_tensor = Resize(16)(ToTensor()(pixels))
    assert isinstance(via_tensor, torch.Tensor)
    assert via_tensor.shape == via_pillow.shape == (3, 16, 22)  # int(16 * 53 / 37)
    # Pillow works in 8-bit fixed point: one grey level of difference is expected.
    assert torch.allclose(via_tensor, via_pillow, atol=1.5 / 255)


def test_resize_of_an_integer_tensor_stays_integer() -> None:
    out = Resize((1, 2))(torch.tensor([[[10, 20, 30, 40]]], dtype=torch.uint8))
    assert isinstance(out, torch.Tensor)
    assert out.dtype == torch.uint8
    assert out.tolist() == [[[17, 33]]]


# -- CenterCrop -----------------------------------------------------------------------------------


def test_center_crop_takes_the_middle() -> None:
    image = gray([[r * 10 + c for c in range(5)] for r in range(4)])
    out = CenterCrop((2, 3))(image)
    # top = round((4 - 2) / 2) = 1, left = round((5 - 3) / 2) = 1
    assert np.array(out).tolist() == [[11, 12, 13], [21, 22, 23]]


def test_center_crop_rounds_offsets_half_to_even() -> None:
    image = gray([[r * 10 + c for c in range(6)] for r in range(6)])
    # round(1.5) = 2 (Python rounds half to even): the crop starts at row/column 2.
    assert np.array(CenterCrop(3)(image)).tolist() == [[22, 23, 24], [32, 33, 34], [42, 43, 44]]


def test_center_crop_pads_a_small_image_with_zeros() -> None:
    out = CenterCrop((3, 4))(gray([[5, 6]]))
    # width 2 → 4: one column each side; height 1 → 3: one row above and below.
    assert np.array(out).tolist() == [[0, 0, 0, 0], [0, 5, 6, 0], [0, 0, 0, 0]]
    odd = CenterCrop((1, 2))(gray([[9]]))  # the odd padding pixel goes to the right
    assert np.array(odd).tolist() == [[9, 0]]


def test_center_crop_and_pad_on_tensors() -> None:
    tensor = torch.arange(20).reshape(1, 4, 5)
    assert CenterCrop((2, 3))(tensor).tolist() == [[[6, 7, 8], [11, 12, 13]]]
    assert CenterCrop((1, 2))(torch.tensor([[[9]]])).tolist() == [[[9, 0]]]


# -- ToTensor / Normalize -------------------------------------------------------------------------


def test_to_tensor_gives_float_chw_in_unit_range() -> None:
    image = Image.new("RGB", (3, 2), (255, 0, 51))
    tensor = ToTensor()(image)
    assert tensor.dtype == torch.float32
    assert tensor.shape == (3, 2, 3)
    assert torch.equal(tensor[:, 0, 0], torch.tensor([1.0, 0.0, 0.2]))


def test_to_tensor_keeps_the_images_channels() -> None:
    assert ToTensor()(gray([[0, 255]])).tolist() == [[[0.0, 1.0]]]
    assert ToTensor()(Image.new("RGBA", (1, 1))).shape == (4, 1, 1)
    bilevel = Image.new("1", (2, 1))
    bilevel.putpixel((1, 0), 1)
    assert ToTensor()(bilevel).tolist() == [[[0.0, 1.0]]]


def test_to_tensor_keeps_values_of_float_images_and_arrays() -> None:
    floats = Image.fromarray(np.array([[1.5, -2.0]], dtype=np.float32), mode="F")
    assert ToTensor()(floats).tolist() == [[[1.5, -2.0]]]
    array = np.array([[[255, 0]], [[0, 51]]], dtype=np.uint8)  # H=2, W=1, C=2
    assert torch.allclose(ToTensor()(array), torch.tensor([[[1.0], [0.0]], [[0.0], [0.2]]]))
    with pytest.raises(TypeError, match="PIL Image or ndarray"):
        ToTensor()("not an image")  # type: ignore[arg-type]


def test_normalize_is_per_channel() -> None:
    tensor = torch.tensor([[[1.0, 0.5]], [[0.0, 0.25]]])
    out = Normalize(mean=[0.5, 0.25], std=[0.5, 0.25])(tensor)
    assert out.tolist() == [[[1.0, 0.0]], [[-1.0, 0.0]]]
    assert tensor[0, 0, 0] == 1.0  # not in place by default
    Normalize([0.5, 0.25], [0.5, 0.25], inplace=True)(tensor)
    assert tensor.tolist() == [[[1.0, 0.0]], [[-1.0, 0.0]]]


def test_normalize_rejects_what_torchvision_rejects() -> None:
    with pytest.raises(ValueError, match="division by zero"):
        Normalize([0.0], [0.0])
    with pytest.raises(TypeError, match="float tensor"):
        Normalize([0.0], [1.0])(torch.zeros(1, 2, 2, dtype=torch.uint8))


def test_imagenet_pipeline_on_a_flat_image() -> None:
    colour = (200, 100, 50)
    out = imagenet_classification()(Image.new("RGB", (320, 240), colour))
    assert out.shape == (3, 224, 224)
    for channel, value in enumerate(colour):
        expected = (value / 255 - IMAGENET_MEAN[channel]) / IMAGENET_STD[channel]
        assert torch.allclose(out[channel], torch.full((224, 224), expected), atol=1e-5)


def test_compose_applies_in_order_and_grayscale_converts() -> None:
    pipeline = Compose([Grayscale(num_output_channels=3), ToTensor()])
    out = pipeline(Image.new("RGB", (2, 2), (255, 255, 255)))
    assert out.shape == (3, 2, 2)
    assert torch.equal(out, torch.ones(3, 2, 2))
    assert "Grayscale" in repr(pipeline)


# -- text utilities -------------------------------------------------------------------------------


def test_basic_english_tokenizer() -> None:
    tokenize = get_tokenizer("basic_english")
    assert tokenize('He said: "Fine, (ok)!"<br />Bye.') == [
        "he",
        "said",
        "fine",
        ",",
        "(",
        "ok",
        ")",
        "!",
        "bye",
        ".",
    ]
    assert get_tokenizer(None)("a  b") == ["a", "b"]
    with pytest.raises(ValueError, match="English"):
        get_tokenizer("basic_english", language="de")


def test_ngrams_iterator() -> None:
    assert list(ngrams_iterator(["a", "b", "c"], 3)) == ["a", "b", "c", "a b", "b c", "a b c"]
    assert list(ngrams_iterator(["a"], 2)) == ["a"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("don't stop", "do not stop"),
        ("Don't", "Do not"),
        ("they're here and we've won", "they are here and we have won"),
        ("I can't and won't", "I cannot and will not"),
        ("it's john's", "it is johns"),
        ("couldn't've", "could not have"),
    ],
)
def test_expand_contractions(text: str, expected: str) -> None:
    assert expand_contractions(text) == expected


def test_vocabulary_maps_unknown_tokens_to_unk() -> None:
    vocab = Vocabulary({"<unk>": 3, "hello": 1})
    assert (vocab["hello"], vocab["nope"], len(vocab), "hello" in vocab) == (1, 3, 2, True)
    by_position = Vocabulary(["<pad>", "x"])
    assert (by_position["x"], by_position["y"]) == (1, 0)


# -- explanations without Captum ------------------------------------------------------------------


def test_explaining_without_captum_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "captum", None)  # None in sys.modules: import fails
    monkeypatch.setitem(sys.modules, "captum.attr", None)
    with pytest.raises(PredictionException) as caught:
        explain.integrated_gradients(torch.nn.Linear(2, 2))
    assert caught.value.error_code == 501
    assert "pip install 'emberserve[explain]'" in caught.value.message
