"""An architecture the project has never seen: a small encoder-decoder x2 super-resolution net with
skips, as a user would write and register it (random weights, seeded). Used only by
``benchmarks/mixed_precision.py``; no recipe anywhere in the library names it.
"""

from __future__ import annotations

import torch
from torch import nn

from model_manager.descriptor import ModelDescriptor, TensorSpec, image_profile

NAME = "unet-sr-x2"


class UNetSR(nn.Module):
    """conv -> two stride-2 downs -> body -> two upsample+concat skips -> PixelShuffle x2."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        act = nn.LeakyReLU(0.1)
        self.head = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), act)
        self.down1 = nn.Sequential(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), act)
        self.down2 = nn.Sequential(nn.Conv2d(2 * width, 4 * width, 3, stride=2, padding=1), act)
        self.body = nn.Sequential(
            *(nn.Sequential(nn.Conv2d(4 * width, 4 * width, 3, padding=1), act) for _ in range(3))
        )
        self.up2 = nn.Sequential(nn.Conv2d(6 * width, 2 * width, 3, padding=1), act)
        self.up1 = nn.Sequential(nn.Conv2d(3 * width, width, 3, padding=1), act)
        self.tail = nn.Conv2d(width, 3 * 4, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.head(x)
        d1 = self.down1(h)
        d2 = self.down2(d1)
        b = self.body(d2) + d2
        u2 = self.up2(torch.cat([nn.functional.interpolate(b, scale_factor=2.0, mode="nearest"), d1], 1))
        u1 = self.up1(torch.cat([nn.functional.interpolate(u2, scale_factor=2.0, mode="nearest"), h], 1))
        base = nn.functional.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        return self.shuffle(self.tail(u1)) + base


def descriptor() -> ModelDescriptor:
    spec = TensorSpec("input", ("batch", 3, "height", "width"))
    out = TensorSpec("output", ("batch", 3, "out_height", "out_width"))
    return ModelDescriptor(
        "super_resolution",
        "UNetSR",
        (spec,),
        out,
        scale=2,
        size_min=8,
        size_multiple=4,
        profile=image_profile(("input",), 3, size_min=8, multiple=4),
    )


def factory() -> nn.Module:
    torch.manual_seed(0)
    return UNetSR().eval()
