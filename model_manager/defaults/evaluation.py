"""Held-out quality of a default model against its baseline, on the photos the package ships.

The same functions score a model at the end of training (the numbers in its card) and in the
tests (which check the shipped weights still reach those numbers).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..images import to_batch
from ..optim.quality import psnr, ssim
from ..samples import load_sample
from .degrade import bicubic_upscale, crop_to_multiple, downscale, shave
from .motion import Motion, linear_blend, triplet
from .sketch import pencil_sketch
from .spec import HELD_OUT, DefaultModel

#: (model inputs, target, baseline output) of one held-out example.
Example = tuple[tuple[torch.Tensor, ...], torch.Tensor, torch.Tensor]

#: Held-out camera motions (one per photo, cycling) and the foreground's own motion.
EVAL_MOTIONS = (Motion(6.0, -4.0, 3.0, 1.05), Motion(-8.0, 3.0, -2.0, 0.96), Motion(4.0, 7.0, 0.0, 1.0))
EVAL_FOREGROUND_MOTION = Motion(-10.0, 6.0, 4.0, 1.0)
_MOTION_MARGIN = 32


@dataclass(frozen=True)
class Score:
    """One held-out image: model and baseline against the target."""

    image: str
    model_psnr: float
    baseline_psnr: float
    model_ssim: float
    baseline_ssim: float

    def to_dict(self) -> dict[str, float | str]:
        return asdict(self)


def photo(name: str) -> torch.Tensor:
    """Shipped sample photo ``name`` as a (1,3,H,W) float 0..1 tensor."""
    return torch.from_numpy(to_batch(load_sample(name)))


@torch.no_grad()
def predict(spec: DefaultModel, module: nn.Module, *inputs: torch.Tensor) -> torch.Tensor:
    """Run the FP32 module in its own value range on 0..1 inputs; the 0..1 output, clamped."""
    if spec.task == "sketch":
        return (module(inputs[0] * 255.0) / 255.0).clamp(0.0, 1.0)
    return module(*inputs).clamp(0.0, 1.0)


def task_example(spec: DefaultModel, index: int) -> Example:
    """(model inputs, target, baseline output) for held-out photo ``index``."""
    image = photo(HELD_OUT[index])
    if spec.task == "super_resolution":
        hr = crop_to_multiple(image, spec.scale)
        lr = downscale(hr, spec.scale)
        return (lr,), hr, bicubic_upscale(lr, spec.scale)
    if spec.task == "sketch":
        image = crop_to_multiple(image, 4)  # two stride-2 convs, two x2 upsamples
        return (image,), pencil_sketch(image), image
    return _motion_example(image, index)


def _motion_example(image: torch.Tensor, index: int) -> Example:
    h, w = image.shape[-2:]
    size = ((h - 2 * _MOTION_MARGIN) // 64 * 64, (w - 2 * _MOTION_MARGIN) // 64 * 64)
    other = photo(HELD_OUT[(index + 1) % len(HELD_OUT)])
    patch = other[..., : size[0] // 3, : size[1] // 3]
    f0, mid, f1 = triplet(
        image, EVAL_MOTIONS[index % len(EVAL_MOTIONS)], size, 0.5, (patch, EVAL_FOREGROUND_MOTION)
    )
    t = torch.full((1, 1, 1, 1), 0.5)
    return (f0, f1, t), mid, linear_blend(f0, f1, 0.5)


def score_image(spec: DefaultModel, module: nn.Module, index: int) -> Score:
    """Model and baseline PSNR / SSIM against the target on held-out photo ``index``."""
    inputs, target, baseline = task_example(spec, index)
    output = predict(spec, module, *inputs)
    if spec.task == "super_resolution":
        target, baseline, output = (shave(x, spec.scale) for x in (target, baseline, output))
    return Score(
        image=HELD_OUT[index],
        model_psnr=psnr(target, output),
        baseline_psnr=psnr(target, baseline),
        model_ssim=ssim(target, output),
        baseline_ssim=ssim(target, baseline),
    )


def evaluate(spec: DefaultModel, module: nn.Module, indices: Sequence[int] | None = None) -> list[Score]:
    """Scores on the held-out photos (all of them unless ``indices`` picks some)."""
    module.eval()
    chosen = range(len(HELD_OUT)) if indices is None else indices
    return [score_image(spec, module, i) for i in chosen]


def mean_scores(scores: Sequence[Score]) -> dict[str, float]:
    """Averages over images of each number in :class:`Score`."""
    fields = ("model_psnr", "baseline_psnr", "model_ssim", "baseline_ssim")
    return {f: sum(getattr(s, f) for s in scores) / len(scores) for f in fields}
