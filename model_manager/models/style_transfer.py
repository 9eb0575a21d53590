"""Johnson et al. TransformerNet in the layout of PyTorch examples' fast_neural_style checkpoints.

Key-for-key compatible with candy / mosaic / udnie / rain_princess ``.pth`` files: reflection-padded
convolutions, affine InstanceNorm, five residual blocks, nearest-neighbour upsampling before the
decoder convolutions, ReLU activations, no output activation; inputs and outputs in 0..255.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..descriptor import VIDEO_MAX_SIZE, ModelDescriptor, TensorSpec, image_profile
from .base import Architecture, KeyCondition, StateDict, register_architecture

# Files saved before PyTorch 0.4 carry InstanceNorm running stats that affine-only norms lack;
# the reference loader (neural_style.py) deletes exactly these keys.
_LEGACY_NORM_KEY = re.compile(r"in\d+\.running_(mean|var)$")


class ConvLayer(nn.Module):
    """Reflection padding of kernel_size // 2, then a convolution."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int) -> None:
        super().__init__()
        self.reflection_pad = nn.ReflectionPad2d(kernel_size // 2)
        self.conv2d = nn.Conv2d(in_ch, out_ch, kernel_size, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2d(self.reflection_pad(x))


class UpsampleConvLayer(nn.Module):
    """Nearest-neighbour upsampling, then a reflection-padded convolution (avoids checkerboards)."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int, upsample: int) -> None:
        super().__init__()
        self.upsample = upsample
        self.reflection_pad = nn.ReflectionPad2d(kernel_size // 2)
        self.conv2d = nn.Conv2d(in_ch, out_ch, kernel_size, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=float(self.upsample), mode="nearest")
        return self.conv2d(self.reflection_pad(x))


class ResidualBlock(nn.Module):
    """conv-IN-ReLU-conv-IN plus identity (no activation after the sum)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = ConvLayer(channels, channels, 3, 1)
        self.in1 = nn.InstanceNorm2d(channels, affine=True)
        self.conv2 = ConvLayer(channels, channels, 3, 1)
        self.in2 = nn.InstanceNorm2d(channels, affine=True)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.in1(self.conv1(x)))
        return self.in2(self.conv2(out)) + x


class TransformerNet(nn.Module):
    """Image transformation network for fast style transfer; 0..255 in, 0..255 (unclamped) out."""

    def __init__(self, channels: int = 3, width: int = 32, num_res: int = 5) -> None:
        super().__init__()
        w1, w2, w3 = width, width * 2, width * 4
        self.conv1 = ConvLayer(channels, w1, 9, 1)
        self.in1 = nn.InstanceNorm2d(w1, affine=True)
        self.conv2 = ConvLayer(w1, w2, 3, 2)
        self.in2 = nn.InstanceNorm2d(w2, affine=True)
        self.conv3 = ConvLayer(w2, w3, 3, 2)
        self.in3 = nn.InstanceNorm2d(w3, affine=True)
        for i in range(1, num_res + 1):
            self.add_module(f"res{i}", ResidualBlock(w3))
        self.num_res = num_res
        self.deconv1 = UpsampleConvLayer(w3, w2, 3, 1, upsample=2)
        self.in4 = nn.InstanceNorm2d(w2, affine=True)
        self.deconv2 = UpsampleConvLayer(w2, w1, 3, 1, upsample=2)
        self.in5 = nn.InstanceNorm2d(w1, affine=True)
        self.deconv3 = ConvLayer(w1, channels, 9, 1)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.in1(self.conv1(x)))
        y = self.relu(self.in2(self.conv2(y)))
        y = self.relu(self.in3(self.conv3(y)))
        for i in range(1, self.num_res + 1):
            y = getattr(self, f"res{i}")(y)
        y = self.relu(self.in4(self.deconv1(y)))
        y = self.relu(self.in5(self.deconv2(y)))
        return self.deconv3(y)


@register_architecture
class TransformerNetArch(Architecture):
    """fast_neural_style checkpoints: ``conv1.conv2d.weight``, ``in1.weight``, ``res1...``, ``deconv3``."""

    id = "TransformerNet"
    model_type = "style_transfer"
    detect = KeyCondition.has_all(
        "conv1.conv2d.weight", "in1.weight", "res1.conv1.conv2d.weight", "deconv3.conv2d.bias"
    )

    def prepare_state_dict(self, state_dict: StateDict) -> dict[str, torch.Tensor]:
        """Drop the pre-0.4 InstanceNorm running stats, exactly as the reference loader does."""
        return {k: v for k, v in state_dict.items() if not _LEGACY_NORM_KEY.search(k)}

    def hyperparameters(self, state_dict: StateDict) -> dict[str, Any]:
        w = state_dict["conv1.conv2d.weight"]
        channels, width = int(w.shape[1]), int(w.shape[0])
        if tuple(w.shape[2:]) != (9, 9):
            raise ValueError(f"conv1 kernel is {tuple(w.shape[2:])}, TransformerNet uses 9x9")
        num_res = _count_res_blocks(state_dict)
        if num_res < 1:
            raise ValueError("no residual blocks res1..resN")
        return {"channels": channels, "width": width, "num_res": num_res}

    def build(self, **hp: Any) -> nn.Module:
        return TransformerNet(**hp)

    def default_hyperparameters(self) -> dict[str, Any]:
        return {"channels": 3, "width": 32, "num_res": 5}

    def descriptor(self, hp: Mapping[str, Any]) -> ModelDescriptor:
        c = int(hp["channels"])
        rng = (0.0, 255.0)
        return ModelDescriptor(
            model_type=self.model_type,
            architecture=self.id,
            inputs=(TensorSpec("input", ("batch", c, "height", "width"), value_range=rng),),
            output=TensorSpec("output", ("batch", c, "height", "width"), value_range=rng),
            scale=1,
            size_min=16,
            size_multiple=4,
            pad_mode="reflect",
            profile=image_profile(("input",), c, size_min=16, multiple=4, opt=256, max_size=VIDEO_MAX_SIZE),
            hyperparameters=dict(hp),
            notes="two stride-2 convs and two x2 upsamplings: H, W not multiples of 4 change the "
            "output size, so the image-level call reflect-pads to a multiple of 4 and crops",
        )


def _count_res_blocks(state_dict: StateDict) -> int:
    """Number of consecutive residual blocks res1, res2, ... present in the state dict."""
    n = 0
    while f"res{n + 1}.conv1.conv2d.weight" in state_dict:
        n += 1
    return n
