"""How close a candidate's output is to the FP32 PyTorch reference: PSNR, SSIM, max abs error.

All metrics are computed on the model's value range normalised to 0..1, so 40 dB means the same
for a 0..255 style-transfer model as for a 0..1 super-resolution model. Inputs are real sample
photos (``samples.sample_batch``), never random noise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InvalidInputError

# PSNR is capped here when outputs are identical (MSE 0), so reports stay finite and JSON-safe.
PSNR_CAP_DB = 150.0


@dataclass(frozen=True)
class QualityReport:
    """A candidate output against the reference, on the 0..1-normalised value range."""

    psnr_db: float
    ssim: float
    max_abs_error: float
    mean_abs_error: float

    def passes(self, min_psnr_db: float) -> bool:
        return self.psnr_db >= min_psnr_db

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def _as_tensor(x: Any, name: str) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.asarray(x, dtype=np.float32))
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu()
    raise InvalidInputError(f"{name}: expected a numpy array or torch tensor, got {type(x).__name__}")


def _normalised(reference: Any, candidate: Any, value_range: tuple[float, float]) -> tuple[torch.Tensor, ...]:
    ref, cand = _as_tensor(reference, "reference"), _as_tensor(candidate, "candidate")
    if ref.shape != cand.shape:
        raise InvalidInputError(
            f"expected candidate shape {tuple(ref.shape)} (the reference's), got {tuple(cand.shape)}"
        )
    lo, hi = value_range
    return (ref - lo) / (hi - lo), (cand - lo) / (hi - lo)


def psnr(reference: Any, candidate: Any, value_range: tuple[float, float] = (0.0, 1.0)) -> float:
    """Peak signal-to-noise ratio in dB (capped at 150 dB for identical outputs)."""
    ref, cand = _normalised(reference, candidate, value_range)
    mse = float(torch.mean((ref.double() - cand.double()) ** 2))
    if mse == 0.0:
        return PSNR_CAP_DB
    return min(PSNR_CAP_DB, 10.0 * math.log10(1.0 / mse))


def worst_psnr(
    references: Sequence[Any], outputs: Sequence[Any], value_range: tuple[float, float] = (0.0, 1.0)
) -> float:
    """The lowest PSNR over paired items: a choice made on crops must hold on each, not on average."""
    if len(references) != len(outputs) or not references:
        raise InvalidInputError(
            f"expected as many outputs as references (at least one), got {len(outputs)} and {len(references)}"
        )
    return min(psnr(r, o, value_range) for r, o in zip(references, outputs))


def _gaussian_1d(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(reference: Any, candidate: Any, value_range: tuple[float, float] = (0.0, 1.0)) -> float:
    """Mean structural similarity (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5), per channel.

    The Gaussian is applied as two separable 1-D float32 convolutions (float64 2-D convolution
    took seconds on a 256x256 batch).
    """
    ref, cand = _normalised(reference, candidate, value_range)
    if ref.dim() != 4:
        raise InvalidInputError(f"expected NCHW outputs for SSIM, got shape {tuple(ref.shape)}")
    x, y = ref.float().clamp(0, 1), cand.float().clamp(0, 1)
    _, c, h, w = x.shape
    size = min(11, h, w)
    g = _gaussian_1d(size)
    row = g.view(1, 1, 1, size).expand(c, 1, 1, size)
    col = g.view(1, 1, size, 1).expand(c, 1, size, 1)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(t, row, groups=c), col, groups=c)

    mu_x, mu_y = blur(x), blur(y)
    sxx = blur(x * x) - mu_x**2
    syy = blur(y * y) - mu_y**2
    sxy = blur(x * y) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return float(s.double().mean())


def compare(reference: Any, candidate: Any, value_range: tuple[float, float] = (0.0, 1.0)) -> QualityReport:
    """PSNR, SSIM, max and mean abs error of ``candidate`` against ``reference`` (0..1-normalised)."""
    ref, cand = _normalised(reference, candidate, value_range)
    diff = (ref - cand).abs()
    return QualityReport(
        psnr_db=round(psnr(ref, cand), 3),
        ssim=round(ssim(ref, cand), 5) if ref.dim() == 4 else float("nan"),
        max_abs_error=float(diff.max()),
        mean_abs_error=float(diff.mean()),
    )
