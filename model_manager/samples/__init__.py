"""Real sample photographs shipped with the package (see LICENSE.md): loading and listing them."""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..descriptor import ModelDescriptor
from ..errors import InvalidInputError

SAMPLE_NAMES = ("astronaut", "coffee", "chelsea", "rocket")


def sample_path(name: str) -> Path:
    """Path of the shipped sample image ``name`` (one of :data:`SAMPLE_NAMES`)."""
    if name not in SAMPLE_NAMES:
        raise InvalidInputError(f"unknown sample image {name!r}; expected one of {list(SAMPLE_NAMES)}")
    return Path(str(resources.files(__name__).joinpath(f"{name}.png")))


def load_sample(name: str) -> np.ndarray:
    """The sample image as an HxWx3 uint8 array."""
    from ..images import read_image

    return read_image(sample_path(name))


# Pixels the second frame of a two-frame model is shifted by: real photos with real motion.
_FRAME_SHIFT = (6, 4)

Quarter = Literal["top-left", "top-right", "bottom-left", "bottom-right"]
CALIBRATION_QUARTERS: tuple[Quarter, ...] = ("top-left", "bottom-right")
"""The quarters of each photo INT8 calibration sees (``optim/calibration.py``)."""
HELD_OUT_QUARTERS: tuple[Quarter, ...] = ("top-right", "bottom-left")
"""The quarters it never sees: quality gates are checked on these (``optim/intermediates.py``)."""


def _quarter(img: Any, quarter: Quarter | None) -> Any:
    """One quarter of a PIL image (None: the whole image)."""
    if quarter is None:
        return img
    top = 0 if quarter.startswith("top") else img.height // 2
    left = 0 if quarter.endswith("left") else img.width // 2
    return img.crop((left, top, left + img.width // 2, top + img.height // 2))


def _photo_crop(
    name: str, height: int, width: int, shift: tuple[int, int], quarter: Quarter | None = None
) -> np.ndarray:
    """An HxW crop of photo ``name`` (or of a quarter of it) at ``shift``.

    A whole photo is resized to cover (H + margin, W + margin). A quarter is never resampled: its
    pixels keep the photo's own detail, and where it is smaller than the window it is extended by
    mirroring at its edges. INT8 ranges and quality checks must see the detail of real frames;
    an upscaled quarter is smoother than any frame (TransformerNet's INT8 at 256x256 held its gate
    on upscaled quarters, 38.4 dB, and missed it on photos from other packages, 34.8 dB).
    """
    from PIL import Image

    img = _quarter(Image.fromarray(load_sample(name)), quarter)
    margin = max(_FRAME_SHIFT) * 2
    if quarter is None:
        scale = max((height + margin) / img.height, (width + margin) / img.width)
        size = (
            max(width + margin, round(img.width * scale)),
            max(height + margin, round(img.height * scale)),
        )
        big = np.asarray(img.resize(size, Image.Resampling.BICUBIC))
    else:
        big = _mirror_to(np.asarray(img), height + margin, width + margin)
    top = (big.shape[0] - height) // 2 - margin // 4 + shift[1]
    left = (big.shape[1] - width) // 2 - margin // 4 + shift[0]
    return np.ascontiguousarray(big[top : top + height, left : left + width])


def _mirror_to(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """``pixels`` extended to at least HxW by mirroring at its edges (centred; never resampled)."""
    pad_h, pad_w = max(0, height - pixels.shape[0]), max(0, width - pixels.shape[1])
    pads = ((pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0))
    return np.pad(pixels, pads, mode="symmetric")


CROP_METHOD = "quarters at native resolution, mirrored where smaller than the window"
"""How crops are cut: part of the identity of every intermediate made from them."""


def sample_batch(
    descriptor: ModelDescriptor,
    size: tuple[int, int] = (256, 256),
    batch: int = 1,
    timestep: float = 0.5,
    quarters: Sequence[Quarter | None] = (None,),
) -> list[np.ndarray]:
    """Model inputs made from the real sample photos, in the descriptor's order and value range.

    Batch item i uses photo i (cycling) and ``quarters[i // 4]`` of it (cycling; None: the whole
    photo), so calibration and quality checks can use parts of the photos that do not overlap.
    Image input k of a multi-frame model is the same crop shifted by k * (6, 4) pixels, so
    interpolation sees real motion. Scalar inputs get ``timestep``.
    """
    from ..images import to_batch

    height, width = size
    if min(height, width, batch) < 1:
        raise InvalidInputError(f"expected a size and batch >= 1, got size {height}x{width}, batch {batch}")
    inputs: list[np.ndarray] = []
    frame = 0
    for spec in descriptor.inputs:
        if spec.kind == "scalar":
            inputs.append(np.full((batch, 1, 1, 1), timestep, dtype=np.float32))
            continue
        shift = (_FRAME_SHIFT[0] * frame, _FRAME_SHIFT[1] * frame)
        n = len(SAMPLE_NAMES)
        crops = [
            _photo_crop(SAMPLE_NAMES[i % n], height, width, shift, quarters[(i // n) % len(quarters)])
            for i in range(batch)
        ]
        crops = [_to_channels(c, spec.channels or 3) for c in crops]
        inputs.append(np.concatenate([to_batch(c, spec.value_range) for c in crops]))
        frame += 1
    return inputs


def _to_channels(rgb: np.ndarray, channels: int) -> np.ndarray:
    """RGB as is, or its BT.601 luma for single-channel (Y) models."""
    if channels == 3:
        return rgb
    if channels == 1:
        luma = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        return np.clip(np.rint(luma), 0, 255).astype(np.uint8)[..., None]
    raise InvalidInputError(f"sample photos have 1 or 3 channels; the model expects {channels}")


def warmup_inputs(descriptor: ModelDescriptor) -> list[np.ndarray]:
    """Sample-photo inputs at the descriptor's profile opt shape (batch and size)."""
    batch, height, width = descriptor.opt_shape()
    return sample_batch(descriptor, (height, width), batch)
