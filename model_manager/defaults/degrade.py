"""The super-resolution task: how low-resolution inputs are made, and the bicubic baseline.

Training pairs and held-out evaluation use the same degradation, so the reported gain over
bicubic is measured on the problem the model was trained for: an antialiased bicubic
downscale (as MATLAB's ``imresize``, the usual SR benchmark protocol) of a clean photo.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def crop_to_multiple(image: torch.Tensor, multiple: int) -> torch.Tensor:
    """Crop (N,C,H,W) at the bottom / right so H and W are multiples of ``multiple``."""
    h, w = image.shape[-2:]
    return image[..., : h - h % multiple, : w - w % multiple]


def downscale(image: torch.Tensor, scale: int) -> torch.Tensor:
    """Antialiased bicubic downscale by ``scale`` of a 0..1 (N,C,H,W) image whose H, W divide by it."""
    h, w = image.shape[-2:]
    if h % scale or w % scale:
        raise ValueError(f"image size {h}x{w} is not a multiple of the scale {scale}")
    out = F.interpolate(
        image, size=(h // scale, w // scale), mode="bicubic", antialias=True, align_corners=False
    )
    return out.clamp(0.0, 1.0)


def bicubic_upscale(image: torch.Tensor, scale: int) -> torch.Tensor:
    """The baseline every SR model must beat: bicubic upscaling by ``scale``, clamped to 0..1."""
    out = F.interpolate(image, scale_factor=float(scale), mode="bicubic", align_corners=False)
    return out.clamp(0.0, 1.0)


def shave(image: torch.Tensor, border: int) -> torch.Tensor:
    """Drop ``border`` pixels on each side (SR PSNR convention: borders have no context)."""
    return image[..., border : image.shape[-2] - border, border : image.shape[-1] - border]
