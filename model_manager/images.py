"""Image files <-> NCHW float tensors in a model's value range (PIL for the file formats)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import InvalidInputError


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as an HxWx3 uint8 RGB array."""
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(f"expected an image file, but {str(p)!r} does not exist")
    try:
        with Image.open(p) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except UnidentifiedImageError as exc:
        raise InvalidInputError(f"expected an image file (PNG, JPEG, ...), {str(p)!r} is not one") from exc


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
"""The image files a folder input is read from (and the suffixes named in errors)."""


def folder_images(folder: Path) -> list[Path]:
    """The folder's image files in name order; an error naming the folder when there are none."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InvalidInputError(f"expected image files ({', '.join(IMAGE_SUFFIXES)}) in {folder}, found none")
    return files


def write_image(path: str | Path, image: np.ndarray) -> Path:
    """Write an HxWx3 uint8 array; the format follows the file suffix."""
    from PIL import Image

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(p)
    return p


def to_batch(image: np.ndarray, value_range: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """HxWxC uint8 -> 1xCxHxW float32 scaled to ``value_range``."""
    if image.dtype != np.uint8 or image.ndim != 3:
        raise InvalidInputError(f"expected an HxWxC uint8 image, got {image.dtype} of shape {image.shape}")
    lo, hi = value_range
    x = image.astype(np.float32).transpose(2, 0, 1)[None] / 255.0
    return np.ascontiguousarray(x * (hi - lo) + lo, dtype=np.float32)


def from_batch(batch: np.ndarray, value_range: tuple[float, float] = (0.0, 1.0)) -> list[np.ndarray]:
    """NxCxHxW float in ``value_range`` -> list of HxWxC uint8 images (clipped, rounded)."""
    lo, hi = value_range
    x = (np.asarray(batch, dtype=np.float32) - lo) / (hi - lo) * 255.0
    x = np.clip(np.rint(x), 0, 255).astype(np.uint8)
    return [np.ascontiguousarray(img.transpose(1, 2, 0)) for img in x]
