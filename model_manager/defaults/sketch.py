"""The style the default style-transfer model learns: a pencil sketch computed without a network.

Auto-levels (luma stretched between its 1st and 99th percentiles), then the classic colour-dodge
pencil sketch (luma divided by the blurred inverted luma, as OpenCV's ``pencilSketch`` and
GIMP's sketch recipes do), darkened along difference-of-Gaussians outlines, on warm paper.

Why this style: TransformerNet cannot see an image's global brightness, contrast or colour cast.
Every conv output is InstanceNorm-ed, so each feature loses its per-image mean and scale; ``a * x
+ c`` gives the same output as ``x``, and the mean colour of the input is gone after the first
layer. A target that keeps the input's colours (a cartoon filter tried first) is out of its
reach (it trained to 11 dB against the filter, below the unstyled input's 20 dB); a sketch on a
fixed paper colour depends only on structure, which the network sees well.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

_LUMA = (0.299, 0.587, 0.114)

#: Filter settings (part of the model card: changing them changes what the model was trained on).
LEVELS_PERCENTILES = (0.01, 0.99)
LEVELS_MIN_RANGE = 0.1
DODGE_SIGMA = 4.0
EDGE_SIGMA = 1.0
EDGE_K = 1.6
EDGE_THRESHOLD = 0.01
EDGE_GAIN = 60.0
EDGE_STRENGTH = 0.6
PAPER = (1.0, 0.96, 0.88)


def luma(image: torch.Tensor) -> torch.Tensor:
    """Rec. 601 luma of a (N,3,H,W) 0..1 image, as (N,1,H,W)."""
    r, g, b = image.unbind(1)
    return (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b).unsqueeze(1)


def auto_levels(y: torch.Tensor) -> torch.Tensor:
    """Stretch each (N,1,H,W) luma so its percentiles map to 0 and 1 (at most 10x, no noise blow-up)."""
    flat = y.flatten(1)
    q = torch.tensor(LEVELS_PERCENTILES, dtype=y.dtype)
    lo, hi = torch.quantile(flat, q, dim=1)
    scale = (hi - lo).clamp_min(LEVELS_MIN_RANGE).view(-1, 1, 1, 1)
    return ((y - lo.view(-1, 1, 1, 1)) / scale).clamp(0.0, 1.0)


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur (radius 3 sigma, reflect padding), channel by channel."""
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=image.dtype)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    c = image.shape[1]
    out = F.pad(image, (radius, radius, 0, 0), mode="reflect")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    out = F.pad(out, (0, 0, radius, radius), mode="reflect")
    return F.conv2d(out, kernel.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def outlines(y: torch.Tensor) -> torch.Tensor:
    """1 on flat areas, darker along edges: the dark lobe of a difference of Gaussians, soft-thresholded."""
    dog = gaussian_blur(y, EDGE_SIGMA) - gaussian_blur(y, EDGE_SIGMA * EDGE_K)
    return 1.0 - EDGE_STRENGTH * torch.tanh(EDGE_GAIN * F.relu(-dog - EDGE_THRESHOLD))


@torch.no_grad()
def pencil_sketch(image: torch.Tensor) -> torch.Tensor:
    """The pencil-sketch rendering of a (N,3,H,W) 0..1 float image (H, W > 12), in 0..1."""
    if image.ndim != 4 or image.shape[1] != 3:
        raise ValueError(f"pencil_sketch expects a (N,3,H,W) image batch, got shape {tuple(image.shape)}")
    y = auto_levels(luma(image.float()))
    dodge = (y / (1.0 - gaussian_blur(1.0 - y, DODGE_SIGMA)).clamp_min(1e-3)).clamp(0.0, 1.0)
    grey = dodge * outlines(y)
    paper = torch.tensor(PAPER, dtype=grey.dtype).view(1, 3, 1, 1)
    return (grey * paper).clamp(0.0, 1.0)
