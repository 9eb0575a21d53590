"""Training loop for the embedded defaults: seeded, CPU, one task-specific batch maker per task.

Every model learns with L1 loss, Adam, a short linear warm-up and cosine decay. The batch makers
draw from :class:`PatchSampler` and build inputs and targets with the same functions the
held-out evaluation uses (``degrade``, ``sketch``, ``motion``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..models import all_architectures
from ..models.style_transfer import TransformerNet
from ..models.super_resolution import ESPCN
from .degrade import downscale
from .motion import Motion, triplet
from .sketch import pencil_sketch
from .spec import DefaultModel
from .training_data import PatchSampler

log = logging.getLogger(__name__)

Batch = tuple[tuple[torch.Tensor, ...], torch.Tensor]


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation settings of one model (recorded in its card)."""

    steps: int
    batch: int
    patch: int
    lr: float
    seed: int = 0
    warmup: int = 100
    #: Gradient-norm clipping (None: off) and the flat-patch threshold of :class:`PatchSampler`.
    clip: float | None = 1.0
    min_std: float = 0.04

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


#: The settings the shipped weights were trained with (each a few minutes on 2 CPU cores).
SETTINGS: dict[str, TrainSettings] = {
    "super_resolution__espcn-x2": TrainSettings(steps=3000, batch=16, patch=96, lr=1e-3),
    # compact-x4 and ifnet-s were trained before clipping and flat-patch rejection were added
    # (for TransformerNet); these settings reproduce their shipped weights.
    "super_resolution__compact-x4": TrainSettings(
        steps=3000, batch=16, patch=128, lr=5e-4, clip=None, min_std=0.0
    ),
    "style_transfer__sketch": TrainSettings(steps=1500, batch=4, patch=96, lr=1e-3),
    "interpolation__ifnet-s": TrainSettings(steps=2500, batch=8, patch=128, lr=5e-4, clip=None, min_std=0.0),
}


@dataclass(frozen=True)
class TrainResult:
    module: nn.Module
    seconds: float
    final_loss: float


def make_batch_fn(spec: DefaultModel, sampler: PatchSampler, settings: TrainSettings) -> Callable[[], Batch]:
    """A function returning one (inputs, target) training batch for ``spec``'s task."""
    n, p = settings.batch, settings.patch
    if spec.task == "super_resolution":

        def sr_batch() -> Batch:
            hr = sampler.batch(n, p)
            return (downscale(hr, spec.scale),), hr

        return sr_batch
    if spec.task == "sketch":

        def sketch_batch() -> Batch:
            images = sampler.batch(n, p)
            return (images * 255.0,), pencil_sketch(images) * 255.0  # the module's 0..255 range

        return sketch_batch
    return lambda: motion_batch(sampler, n, p)


def motion_batch(sampler: PatchSampler, count: int, size: int) -> Batch:
    """Frame pairs under random camera motion, half with an independently moving foreground."""
    margin = size // 4
    gen = sampler.generator
    frames0, frames1, targets, times = [], [], [], []
    for _ in range(count):
        canvas = sampler.patch(size + 2 * margin)
        motion = Motion.random(gen, max_shift=12.0, max_angle=5.0, max_zoom=1.08)
        u = torch.rand(2, generator=gen).tolist()
        t = 0.5 if u[0] < 0.5 else 0.1 + 0.8 * u[1]
        foreground = None
        if torch.rand(1, generator=gen).item() < 0.5:
            side = size // 4 + int(torch.randint(size // 4, (1,), generator=gen))
            own = Motion.random(gen, max_shift=16.0, max_angle=8.0, max_zoom=1.1)
            foreground = (sampler.patch(side), own)
        f0, mid, f1 = triplet(canvas, motion, (size, size), t, foreground)
        frames0.append(f0)
        frames1.append(f1)
        targets.append(mid)
        times.append(t)
    timestep = torch.tensor(times, dtype=torch.float32).view(-1, 1, 1, 1)
    return (torch.cat(frames0), torch.cat(frames1), timestep), torch.cat(targets)


def bilinear_start(module: ESPCN, scale: int) -> None:
    """Make an :class:`ESPCN` compute bilinear upscaling at step 0 (it has no skip connection).

    The first three channels of conv1..conv3 carry R, G, B through (inputs are >= 0, so ReLU
    passes them), conv4 turns them into the sub-pixel taps of bilinear interpolation
    (align_corners=False), and every other weight into conv4 is scaled down. Training then
    learns the residual detail instead of first rediscovering the picture.
    """
    with torch.no_grad():
        for name, centre in (("conv1", 2), ("conv2", 1), ("conv3", 1)):
            conv: nn.Conv2d = getattr(module, name)
            assert conv.bias is not None
            conv.weight[:3] = 0.0
            conv.bias[:3] = 0.0
            for c in range(3):
                conv.weight[c, c, centre, centre] = 1.0
        conv4 = module.conv4
        assert conv4.bias is not None
        conv4.weight.mul_(0.1)
        conv4.weight[:, :3] = 0.0
        conv4.bias.zero_()
        taps = [_bilinear_taps(i, scale) for i in range(scale)]
        for c in range(3):
            for i in range(scale):
                for j in range(scale):
                    conv4.weight[c * scale * scale + i * scale + j, c] = torch.outer(taps[i], taps[j])


def output_range_start(module: TransformerNet) -> None:
    """Start a :class:`TransformerNet` at mid-grey with 0..255-sized contrast instead of ~0 +- 1.

    Its last conv has no norm or activation; with :func:`_param_groups` this is the 0..1-output
    parameterisation scaled to 0..255.
    """
    with torch.no_grad():
        last = module.deconv3.conv2d
        assert last.bias is not None
        last.weight.mul_(64.0)
        last.bias.fill_(127.5)


def _param_groups(module: nn.Module, lr: float) -> list[dict[str, Any]]:
    """One group, except TransformerNet's last conv, which learns at 255x the rate.

    Its output is in 0..255 and Adam moves each parameter by about ``lr`` per step, so at the
    common rate the output layer could not reach the range (the net stalled at a flat grey);
    255x is exactly Adam on a 0..1-output layer scaled by 255.
    """
    if not isinstance(module, TransformerNet):
        return [{"params": list(module.parameters())}]
    last = list(module.deconv3.parameters())
    ids = {id(p) for p in last}
    rest = [p for p in module.parameters() if id(p) not in ids]
    return [{"params": rest}, {"params": last, "lr": lr * 255.0}]


def _bilinear_taps(offset: int, scale: int) -> torch.Tensor:
    """Weights on LR neighbours (-1, 0, +1) of output sub-pixel ``offset`` (align_corners=False)."""
    u = (offset + 0.5) / scale - 0.5
    low = math.floor(u)
    taps = torch.zeros(3)
    taps[low + 1] += 1.0 - (u - low)
    taps[low + 2] += u - low
    return taps


def _lr_factor(step: int, settings: TrainSettings) -> float:
    """Linear warm-up, then cosine decay to 1% of the base rate."""
    if step < settings.warmup:
        return (step + 1) / settings.warmup
    progress = (step - settings.warmup) / max(1, settings.steps - settings.warmup)
    return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress))


def train(
    spec: DefaultModel, photos: Sequence[torch.Tensor], settings: TrainSettings, *, progress: bool = True
) -> TrainResult:
    """Train ``spec``'s architecture from a seeded init on patches of ``photos``."""
    torch.manual_seed(settings.seed)
    module = all_architectures()[spec.architecture].build(**spec.hyperparameters).train()
    if isinstance(module, ESPCN):
        bilinear_start(module, spec.scale)
    elif isinstance(module, TransformerNet):
        output_range_start(module)
    sampler = PatchSampler(photos, torch.Generator().manual_seed(settings.seed), min_std=settings.min_std)
    next_batch = make_batch_fn(spec, sampler, settings)
    optimizer = torch.optim.Adam(_param_groups(module, settings.lr), lr=settings.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, settings))
    spec_range = 255.0 if spec.task == "sketch" else 1.0  # losses reported on 0..1
    start, smoothed = time.perf_counter(), float("nan")
    bar = tqdm(range(settings.steps), desc=f"train {spec.key}", disable=not progress, unit="step")
    for step in bar:
        inputs, target = next_batch()
        loss = F.l1_loss(module(*inputs), target) / spec_range
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{spec.key}: loss is {loss.item()} at step {step}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if settings.clip is not None:
            nn.utils.clip_grad_norm_(module.parameters(), settings.clip)
        optimizer.step()
        schedule.step()
        smoothed = loss.item() if step == 0 else 0.98 * smoothed + 0.02 * loss.item()
        if step % 50 == 0:
            bar.set_postfix(loss=f"{smoothed:.4f}")
    seconds = time.perf_counter() - start
    log.info("trained %s: %d steps in %.0f s, loss %.4f", spec.key, settings.steps, seconds, smoothed)
    return TrainResult(module.eval(), seconds, smoothed)
