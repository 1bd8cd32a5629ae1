"""Image transforms with torchvision's semantics, built on Pillow, numpy and torch only.

TorchServe's image handlers preprocess with ``torchvision.transforms``; torchvision is a large,
version-locked dependency, so Ember's built-in handlers use these instead. Each class follows
the documented behaviour of its torchvision namesake for the inputs the handlers feed it
(Pillow images, and torch tensors for :class:`Resize`/:class:`CenterCrop`/:class:`Normalize`):

* :class:`Resize` ``(256)`` scales the *shorter* side to 256 keeping the aspect ratio
  (the longer side is truncated: ``int(256 * long / short)``), ``(h, w)`` scales to exactly that;
  Pillow's bilinear filter is what torchvision calls for Pillow images (it antialiases when it
  shrinks); tensors go through ``interpolate(antialias=True)``.
* :class:`CenterCrop` pads with zeros when the crop is larger than the image, then cuts
  the centre (offsets rounded as torchvision rounds them).
* :class:`ToTensor` gives a float CHW tensor, 8-bit images scaled to [0, 1].
* :class:`Normalize` subtracts a per-channel mean and divides by a per-channel std.

Example::

    >>> from PIL import Image
    >>> pipeline = imagenet_classification()
    >>> pipeline(Image.new("RGB", (320, 240))).shape
    torch.Size([3, 224, 224])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, overload

import numpy as np
import torch
from PIL import Image
from torch.nn import functional

#: ImageNet statistics used by TorchServe's image classifier and segmenter.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_RESAMPLING: dict[str, Image.Resampling] = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
    "lanczos": Image.Resampling.LANCZOS,
}
#: Pillow filters that ``torch.nn.functional.interpolate`` can reproduce on tensors.
_TENSOR_MODES = {"nearest": "nearest", "bilinear": "bilinear", "bicubic": "bicubic"}

Size = int | Sequence[int]


def _height_width(size: Size, what: str) -> tuple[int, int] | int:
    """``size`` as ``(h, w)``, or a single int for "the shorter side" (Resize only)."""
    if isinstance(size, int):
        return size
    values = list(size)
    if len(values) == 1:
        return int(values[0])
    if len(values) == 2:
        return int(values[0]), int(values[1])
    raise ValueError(f"{what} size must be an int or a sequence of 1 or 2 ints, got {size!r}")


def resized_size(height: int, width: int, size: Size, max_size: int | None = None) -> tuple[int, int]:
    """The ``(h, w)`` that :class:`Resize` produces for a ``height`` × ``width`` image.

    >>> resized_size(200, 300, 100)   # shorter side (height) → 100
    (100, 150)
    >>> resized_size(480, 640, (224, 224))
    (224, 224)
    """
    wanted = _height_width(size, "Resize")
    if not isinstance(wanted, int):
        if max_size is not None:
            raise ValueError("max_size is only allowed when size is a single int")
        return wanted
    short, long = min(height, width), max(height, width)
    new_short, new_long = wanted, int(wanted * long / short)
    if max_size is not None:
        if max_size <= wanted:
            raise ValueError(
                f"max_size = {max_size} must be strictly greater than the requested size {wanted}"
            )
        if new_long > max_size:
            new_short, new_long = int(max_size * new_short / new_long), max_size
    return (new_long, new_short) if height > width else (new_short, new_long)


def _image_size(image: Image.Image | torch.Tensor) -> tuple[int, int]:
    if isinstance(image, Image.Image):
        return image.height, image.width
    return int(image.shape[-2]), int(image.shape[-1])


class Compose:
    """Apply transforms one after the other: ``Compose([Resize(256), ToTensor()])(image)``."""

    def __init__(self, transforms: Sequence[Callable[[Any], Any]]) -> None:
        self.transforms = list(transforms)

    def __call__(self, value: Any) -> Any:
        for transform in self.transforms:
            value = transform(value)
        return value

    def __repr__(self) -> str:
        inner = "".join(f"\n    {t!r}" for t in self.transforms)
        return f"Compose({inner}\n)"


class Resize:
    """Resize a Pillow image (or a ``[..., H, W]`` tensor); see the module docstring for sizes.

    ``interpolation`` is a name (``"bilinear"``, ``"nearest"``, ``"bicubic"``, …) or a Pillow
    resampling filter. Pillow images are always antialiased (Pillow's filters scale their
    support when shrinking); ``antialias`` only matters for tensors.
    """

    def __init__(
        self,
        size: Size,
        interpolation: str | Image.Resampling = "bilinear",
        max_size: int | None = None,
        antialias: bool = True,
    ) -> None:
        _height_width(size, "Resize")  # validate now, not at the first request
        if isinstance(interpolation, str):
            if interpolation not in _RESAMPLING:
                raise ValueError(f"unknown interpolation {interpolation!r}; one of {sorted(_RESAMPLING)}")
            self.interpolation = interpolation
        else:
            names = {v: k for k, v in _RESAMPLING.items()}
            self.interpolation = names[Image.Resampling(interpolation)]
        self.size = size
        self.max_size = max_size
        self.antialias = antialias

    @overload
    def __call__(self, image: Image.Image) -> Image.Image: ...
    @overload
    def __call__(self, image: torch.Tensor) -> torch.Tensor: ...
    def __call__(self, image: Image.Image | torch.Tensor) -> Image.Image | torch.Tensor:
        height, width = _image_size(image)
        new_height, new_width = resized_size(height, width, self.size, self.max_size)
        if (new_height, new_width) == (height, width):
            return image
        if isinstance(image, Image.Image):
            return image.resize((new_width, new_height), _RESAMPLING[self.interpolation])
        return self._resize_tensor(image, new_height, new_width)

    def _resize_tensor(self, image: torch.Tensor, height: int, width: int) -> torch.Tensor:
        mode = _TENSOR_MODES.get(self.interpolation)
        if mode is None:
            raise ValueError(f"interpolation {self.interpolation!r} is only available for Pillow images")
        batch = image.reshape(-1, *image.shape[-3:]) if image.ndim >= 3 else image[None, None]
        as_float = batch.to(torch.float32) if not batch.is_floating_point() else batch
        options: dict[str, Any] = {"mode": mode}
        if mode != "nearest":
            options.update(align_corners=False, antialias=self.antialias)
        out = functional.interpolate(as_float, size=(height, width), **options)
        if not image.is_floating_point():
            # Integer images come back rounded and clamped to the type's range, as torchvision does.
            info = torch.iinfo(image.dtype)
            out = out.round().clamp(info.min, info.max).to(image.dtype)
        return out.reshape(*image.shape[:-2], height, width)

    def __repr__(self) -> str:
        return f"Resize(size={self.size}, interpolation={self.interpolation}, max_size={self.max_size})"


class CenterCrop:
    """Cut the central ``size`` (int → square, or ``(h, w)``), zero-padding a smaller image first."""

    def __init__(self, size: Size) -> None:
        wanted = _height_width(size, "CenterCrop")
        self.size: tuple[int, int] = (wanted, wanted) if isinstance(wanted, int) else wanted

    @overload
    def __call__(self, image: Image.Image) -> Image.Image: ...
    @overload
    def __call__(self, image: torch.Tensor) -> torch.Tensor: ...
    def __call__(self, image: Image.Image | torch.Tensor) -> Image.Image | torch.Tensor:
        crop_height, crop_width = self.size
        image = self._pad_to(image, crop_height, crop_width)
        height, width = _image_size(image)
        # Python's round (half to even), as torchvision uses to place the crop.
        top = round((height - crop_height) / 2.0)
        left = round((width - crop_width) / 2.0)
        if isinstance(image, Image.Image):
            return image.crop((left, top, left + crop_width, top + crop_height))
        return image[..., top : top + crop_height, left : left + crop_width]

    @staticmethod
    def _pad_to(
        image: Image.Image | torch.Tensor, crop_height: int, crop_width: int
    ) -> Image.Image | torch.Tensor:
        height, width = _image_size(image)
        if crop_height <= height and crop_width <= width:
            return image
        # Padding splits the difference, the odd pixel going to the right/bottom.
        pad_left = max(crop_width - width, 0) // 2
        pad_top = max(crop_height - height, 0) // 2
        pad_right = (max(crop_width - width, 0) + 1) // 2
        pad_bottom = (max(crop_height - height, 0) + 1) // 2
        if isinstance(image, Image.Image):
            canvas = Image.new(image.mode, (width + pad_left + pad_right, height + pad_top + pad_bottom))
            canvas.paste(image, (pad_left, pad_top))
            return canvas
        return functional.pad(image, (pad_left, pad_right, pad_top, pad_bottom), value=0)

    def __repr__(self) -> str:
        return f"CenterCrop(size={self.size})"


#: numpy type for Pillow modes that are not 8 bits per channel.
_MODE_DTYPES: dict[str, Any] = {"I": np.int32, "I;16": np.int16, "I;16B": np.int16, "F": np.float32}


class ToTensor:
    """A Pillow image or ``H×W×C`` uint8 array → float ``C×H×W`` tensor (8-bit values / 255).

    Like torchvision, the channel count is the image's own (``L`` → 1, ``RGB`` → 3,
    ``RGBA`` → 4); 32-bit integer and float images keep their values and type.
    """

    def __call__(self, picture: Image.Image | np.ndarray[Any, Any]) -> torch.Tensor:
        if isinstance(picture, np.ndarray):
            array = picture[:, :, None] if picture.ndim == 2 else picture
            if array.ndim != 3:
                raise ValueError(f"an image array must be H×W or H×W×C, got shape {picture.shape}")
            tensor = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))
            return tensor.to(torch.get_default_dtype()).div(255) if tensor.dtype == torch.uint8 else tensor
        if not isinstance(picture, Image.Image):
            raise TypeError(f"picture should be a PIL Image or ndarray, got {type(picture).__name__}")
        dtype = _MODE_DTYPES.get(picture.mode, np.uint8)
        array = np.array(picture, dtype=dtype, copy=True)
        if picture.mode == "1":
            array = array * 255  # bilevel images are 0/1 in numpy, 0/255 in an 8-bit image
        channels = len(picture.getbands())
        tensor = torch.from_numpy(array).view(picture.height, picture.width, channels)
        tensor = tensor.permute(2, 0, 1).contiguous()
        if tensor.dtype == torch.uint8:
            return tensor.to(torch.get_default_dtype()).div(255)
        return tensor

    def __repr__(self) -> str:
        return "ToTensor()"


class Normalize:
    """``(tensor - mean[c]) / std[c]`` per channel of a float ``[..., C, H, W]`` tensor."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], inplace: bool = False) -> None:
        if any(s == 0 for s in std):
            raise ValueError(f"std evaluated to zero after conversion, leading to division by zero: {std}")
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.inplace = inplace

    def __call__(self, tensor: torch.Tensor) -> torch.Tensor:
        if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
            raise TypeError("Normalize expects a float tensor (apply ToTensor first)")
        if tensor.ndim < 3:
            raise ValueError(f"expected a tensor of size (..., C, H, W), got {tuple(tensor.shape)}")
        mean = torch.as_tensor(self.mean, dtype=tensor.dtype, device=tensor.device).view(-1, 1, 1)
        std = torch.as_tensor(self.std, dtype=tensor.dtype, device=tensor.device).view(-1, 1, 1)
        if self.inplace:
            return tensor.sub_(mean).div_(std)
        return (tensor - mean) / std

    def __repr__(self) -> str:
        return f"Normalize(mean={list(self.mean)}, std={list(self.std)})"


class Grayscale:
    """Convert a Pillow image to grayscale (``L``), replicated to 3 channels if asked."""

    def __init__(self, num_output_channels: int = 1) -> None:
        if num_output_channels not in (1, 3):
            raise ValueError("num_output_channels should be either 1 or 3")
        self.num_output_channels = num_output_channels

    def __call__(self, image: Image.Image) -> Image.Image:
        gray = image.convert("L")
        return Image.merge("RGB", (gray, gray, gray)) if self.num_output_channels == 3 else gray

    def __repr__(self) -> str:
        return f"Grayscale(num_output_channels={self.num_output_channels})"


def imagenet_classification(resize: int = 256, crop: int = 224) -> Compose:
    """TorchServe's classifier/segmenter pipeline: Resize, CenterCrop, ToTensor, ImageNet Normalize."""
    return Compose([Resize(resize), CenterCrop(crop), ToTensor(), Normalize(IMAGENET_MEAN, IMAGENET_STD)])


__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "CenterCrop",
    "Compose",
    "Grayscale",
    "Normalize",
    "Resize",
    "ToTensor",
    "imagenet_classification",
    "resized_size",
]
