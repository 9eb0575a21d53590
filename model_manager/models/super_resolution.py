"""Super-resolution families, key-for-key compatible with their published checkpoints.

* ``SRVGGNetCompact`` -- Real-ESRGAN's compact VGG-style net (realesr-animevideov3,
  realesr-general-x4v3): conv/PReLU body, pixel shuffle, plus the nearest-upsampled input.
* ``RRDBNet`` -- BasicSR's ESRGAN generator (RealESRGAN_x4plus / x2plus): residual-in-residual
  dense blocks with 0.2 residual scaling, two nearest x2 upsamplings; x2 and x1 models
  pixel-unshuffle their input first.
* ``ESPCN`` -- the sub-pixel network of PyTorch examples' ``super_resolution/model.py``.

Each module computes exactly what its reference computes, so published files load strictly and
give the reference's output; every hyperparameter is read from tensor shapes. Inputs and outputs
are images in 0..1.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..descriptor import ModelDescriptor, TensorSpec, image_profile
from .base import (
    Architecture,
    KeyCondition,
    StateDict,
    conv_count,
    register_architecture,
)

_PRECISIONS = ("fp32", "fp16", "bf16", "int8")


def _conv3(in_ch: int, out_ch: int) -> nn.Conv2d:
    """3x3 convolution, stride 1, zero padding 1 (what all three references use)."""
    return nn.Conv2d(in_ch, out_ch, 3, 1, 1)


def _shape(state_dict: StateDict, key: str) -> tuple[int, ...]:
    """Shape of ``state_dict[key]`` as ints; ValueError naming the key when it is absent."""
    if key not in state_dict:
        raise ValueError(f"missing key {key!r}")
    return tuple(int(d) for d in state_dict[key].shape)


def _conv_shape(state_dict: StateDict, key: str, kernel: int = 3) -> tuple[int, int]:
    """(out, in) channels of a square ``kernel`` conv weight; ValueError for any other shape."""
    shape = _shape(state_dict, key)
    if len(shape) != 4 or shape[2:] != (kernel, kernel):
        raise ValueError(f"{key} has shape {shape}, expected a {kernel}x{kernel} conv weight")
    return shape[0], shape[1]


def _expect_conv(state_dict: StateDict, key: str, out_ch: int, in_ch: int) -> None:
    """Raise ValueError unless ``key`` is a 3x3 conv weight with these channel counts."""
    got = _conv_shape(state_dict, key)
    if got != (out_ch, in_ch):
        raise ValueError(f"{key} maps {got[1]} -> {got[0]} channels, expected {in_ch} -> {out_ch}")


def _square_root(n: int, what: str) -> int:
    """Integer square root of ``n``; ValueError when ``n`` is not a perfect square."""
    r = math.isqrt(n)
    if n < 1 or r * r != n:
        raise ValueError(f"{what} = {n} is not a perfect square")
    return r


def _sr_descriptor(
    arch: Architecture,
    hp: Mapping[str, Any],
    *,
    channels: tuple[int, int],
    scale: int,
    multiple: int = 1,
    opt: int = 256,
    notes: str = "",
) -> ModelDescriptor:
    """Descriptor shared by the SR families: one 0..1 image in, one image ``scale`` times larger out."""
    c_in, c_out = channels
    size_min = max(8, multiple)
    max_size = 512 if scale >= 4 else 1024
    return ModelDescriptor(
        model_type=arch.model_type,
        architecture=arch.id,
        inputs=(TensorSpec("input", ("batch", c_in, "height", "width"), value_range=(0.0, 1.0)),),
        output=TensorSpec("output", ("batch", c_out, "height_out", "width_out")),
        scale=scale,
        size_min=size_min,
        size_multiple=multiple,
        pad_mode="reflect",
        profile=image_profile(
            ("input",),
            c_in,
            size_min=size_min,
            multiple=multiple,
            opt=opt,
            max_size=max_size,
            max_batch=4,
        ),
        precisions=_PRECISIONS,
        hyperparameters=dict(hp),
        notes=notes,
    )


# --------------------------------------------------------------------------- SRVGGNetCompact


class SRVGGNetCompact(nn.Module):
    """Real-ESRGAN compact net: conv, (PReLU, conv) * (num_conv + 1), pixel shuffle, + nearest(x)."""

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        num_feat: int = 64,
        num_conv: int = 16,
        upscale: int = 4,
        act_type: str = "prelu",
    ) -> None:
        super().__init__()
        if act_type != "prelu":
            raise ValueError(f"act_type {act_type!r} not supported; published checkpoints use 'prelu'")
        self.upscale = upscale
        layers: list[nn.Module] = [_conv3(num_in_ch, num_feat), nn.PReLU(num_feat)]
        for _ in range(num_conv):
            layers += [_conv3(num_feat, num_feat), nn.PReLU(num_feat)]
        layers.append(_conv3(num_feat, num_out_ch * upscale * upscale))
        self.body = nn.ModuleList(layers)
        self.upsampler = nn.PixelShuffle(upscale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for layer in self.body:
            out = layer(out)
        base = F.interpolate(x, scale_factor=self.upscale, mode="nearest")
        return self.upsampler(out) + base


@register_architecture
class SRVGGNetCompactArch(Architecture):
    """Real-ESRGAN compact checkpoints: ``body.{2i}`` convs and ``body.{2i+1}`` per-channel PReLUs."""

    id = "SRVGGNetCompact"
    model_type = "super_resolution"
    detect = KeyCondition.has_all(
        "body.0.weight",
        "body.0.bias",
        "body.1.weight",
        without=("conv_first.weight", "conv1.weight"),
    )

    def hyperparameters(self, state_dict: StateDict) -> dict[str, Any]:
        """Read channels, width, depth and upscale; only the PReLU variant is recognised."""
        num_feat, num_in_ch = _conv_shape(state_dict, "body.0.weight")
        n = conv_count(state_dict, "body.{}.weight")
        if n < 3 or n % 2 == 0:
            raise ValueError(
                "body.1.weight must be a PReLU (act_type 'prelu'); other activations unsupported"
            )
        for i in range(1, n - 1, 2):
            if _shape(state_dict, f"body.{i}.weight") != (num_feat,):
                raise ValueError(f"body.{i}.weight is not a PReLU with {num_feat} parameters")
        for i in range(2, n - 1, 2):
            _expect_conv(state_dict, f"body.{i}.weight", num_feat, num_feat)
        last_out, last_in = _conv_shape(state_dict, f"body.{n - 1}.weight")
        if last_in != num_feat:
            raise ValueError(f"body.{n - 1}.weight takes {last_in} channels, expected {num_feat}")
        if last_out % num_in_ch:
            raise ValueError(f"last conv has {last_out} outputs, not a multiple of {num_in_ch} channels")
        upscale = _square_root(last_out // num_in_ch, "last conv outputs / channels")
        return {
            "num_in_ch": num_in_ch,
            "num_out_ch": num_in_ch,
            "num_feat": num_feat,
            "num_conv": (n - 3) // 2,
            "upscale": upscale,
            "act_type": "prelu",
        }

    def build(self, **hp: Any) -> nn.Module:
        """An :class:`SRVGGNetCompact` with these constructor arguments."""
        return SRVGGNetCompact(**hp)

    def default_hyperparameters(self) -> dict[str, Any]:
        """realesr-general-x4v3: 64 features, 32 body convs, x4, RGB."""
        return {
            "num_in_ch": 3,
            "num_out_ch": 3,
            "num_feat": 64,
            "num_conv": 32,
            "upscale": 4,
            "act_type": "prelu",
        }

    def descriptor(self, hp: Mapping[str, Any]) -> ModelDescriptor:
        """0..1 images in, ``upscale`` times larger out; any size works (all convs are 3x3, pad 1)."""
        scale = int(hp["upscale"])
        return _sr_descriptor(
            self,
            hp,
            channels=(int(hp["num_in_ch"]), int(hp["num_out_ch"])),
            scale=scale,
            opt=128 if scale >= 4 else 256,
            notes="Real-ESRGAN compact; realesr-animevideov3 = 16 convs, realesr-general-x4v3 = 32 convs",
        )


# --------------------------------------------------------------------------- RRDBNet


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3x3 convs, LeakyReLU(0.2) after the first four, residual scaled by 0.2."""

    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32) -> None:
        super().__init__()
        f, g = num_feat, num_grow_ch
        self.conv1 = _conv3(f, g)
        self.conv2 = _conv3(f + g, g)
        self.conv3 = _conv3(f + 2 * g, g)
        self.conv4 = _conv3(f + 3 * g, g)
        self.conv5 = _conv3(num_feat + 4 * num_grow_ch, num_feat)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            feats.append(F.leaky_relu(conv(torch.cat(feats, 1)), 0.2))
        return self.conv5(torch.cat(feats, 1)) * 0.2 + x


class RRDB(nn.Module):
    """Three residual dense blocks in sequence, the whole residual scaled by 0.2."""

    def __init__(self, num_feat: int, num_grow_ch: int = 32) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


_UNSHUFFLE = {4: 1, 2: 2, 1: 4}
"""RRDBNet scale -> pixel-unshuffle factor applied to the input (BasicSR's x2 / x1 extension)."""


class RRDBNet(nn.Module):
    """ESRGAN generator as in BasicSR; ``num_in_ch`` is the image's channel count (pre-unshuffle)."""

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        scale: int = 4,
        num_feat: int = 64,
        num_block: int = 23,
        num_grow_ch: int = 32,
    ) -> None:
        super().__init__()
        if scale not in _UNSHUFFLE:
            raise ValueError(f"RRDBNet scale must be 1, 2 or 4, got {scale}")
        self.scale = scale
        self.unshuffle = _UNSHUFFLE[scale]
        self.conv_first = _conv3(num_in_ch * self.unshuffle**2, num_feat)
        self.body = nn.Sequential(*(RRDB(num_feat, num_grow_ch) for _ in range(num_block)))
        self.conv_body = _conv3(num_feat, num_feat)
        self.conv_up1 = _conv3(num_feat, num_feat)
        self.conv_up2 = _conv3(num_feat, num_feat)
        self.conv_hr = _conv3(num_feat, num_feat)
        self.conv_last = _conv3(num_feat, num_out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.unshuffle > 1:
            x = F.pixel_unshuffle(x, self.unshuffle)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        for conv in (self.conv_up1, self.conv_up2):
            feat = F.leaky_relu(conv(F.interpolate(feat, scale_factor=2, mode="nearest")), 0.2)
        return self.conv_last(F.leaky_relu(self.conv_hr(feat), 0.2))


@register_architecture
class RRDBNetArch(Architecture):
    """BasicSR / Real-ESRGAN RRDBNet checkpoints: ``conv_first``, ``body.N.rdbK.convJ``, ``conv_hr``."""

    id = "RRDBNet"
    model_type = "super_resolution"
    detect = KeyCondition.has_all(
        "conv_first.weight",
        "body.0.rdb1.conv1.weight",
        "conv_body.weight",
        "conv_up1.weight",
        "conv_up2.weight",
        "conv_hr.weight",
        "conv_last.weight",
        without=("conv_up3.weight",),
    )

    def hyperparameters(self, state_dict: StateDict) -> dict[str, Any]:
        """Read widths and depth; the scale follows from conv_first's inputs versus conv_last's outputs."""
        num_feat, first_in = _conv_shape(state_dict, "conv_first.weight")
        num_out_ch, _ = _conv_shape(state_dict, "conv_last.weight")
        scale, num_in_ch = _rrdb_scale(first_in, num_out_ch)
        num_grow_ch, _ = _conv_shape(state_dict, "body.0.rdb1.conv1.weight")
        num_block = conv_count(state_dict, "body.{}.rdb1.conv1.weight")
        for b in range(num_block):
            _check_rrdb(state_dict, f"body.{b}", num_feat, num_grow_ch)
        for name in ("conv_body", "conv_up1", "conv_up2", "conv_hr"):
            _expect_conv(state_dict, f"{name}.weight", num_feat, num_feat)
        _expect_conv(state_dict, "conv_last.weight", num_out_ch, num_feat)
        return {
            "num_in_ch": num_in_ch,
            "num_out_ch": num_out_ch,
            "scale": scale,
            "num_feat": num_feat,
            "num_block": num_block,
            "num_grow_ch": num_grow_ch,
        }

    def build(self, **hp: Any) -> nn.Module:
        """An :class:`RRDBNet` with these constructor arguments."""
        return RRDBNet(**hp)

    def default_hyperparameters(self) -> dict[str, Any]:
        """RealESRGAN_x4plus: 23 blocks, 64 features, growth 32, x4, RGB."""
        return {
            "num_in_ch": 3,
            "num_out_ch": 3,
            "scale": 4,
            "num_feat": 64,
            "num_block": 23,
            "num_grow_ch": 32,
        }

    def descriptor(self, hp: Mapping[str, Any]) -> ModelDescriptor:
        """0..1 images in; x2 / x1 models need sides divisible by their pixel-unshuffle factor."""
        scale = int(hp["scale"])
        return _sr_descriptor(
            self,
            hp,
            channels=(int(hp["num_in_ch"]), int(hp["num_out_ch"])),
            scale=scale,
            multiple=_UNSHUFFLE[scale],
            opt=128,
            notes="ESRGAN RRDBNet (BasicSR); RealESRGAN_x4plus = 23 blocks x4, x2plus unshuffles by 2",
        )


def _rrdb_scale(first_in: int, num_out_ch: int) -> tuple[int, int]:
    """(scale, image channels) from conv_first's input channels, taking input channels = output's."""
    for scale, factor in _UNSHUFFLE.items():
        if first_in == num_out_ch * factor * factor:
            return scale, num_out_ch
    raise ValueError(
        f"conv_first takes {first_in} channels; with {num_out_ch} output channels BasicSR's RRDBNet "
        f"expects {num_out_ch} (x4), {num_out_ch * 4} (x2) or {num_out_ch * 16} (x1)"
    )


def _check_rrdb(state_dict: StateDict, prefix: str, num_feat: int, num_grow_ch: int) -> None:
    """Raise ValueError unless all fifteen convs of one RRDB have the dense-block shapes."""
    for r in (1, 2, 3):
        for i in range(1, 6):
            out_ch = num_grow_ch if i < 5 else num_feat
            _expect_conv(
                state_dict,
                f"{prefix}.rdb{r}.conv{i}.weight",
                out_ch,
                num_feat + (i - 1) * num_grow_ch,
            )


# --------------------------------------------------------------------------- ESPCN


class ESPCN(nn.Module):
    """Sub-pixel CNN (Shi et al.) as in PyTorch examples: 5x5, 3x3, 3x3 convs + ReLU, conv, shuffle."""

    def __init__(
        self,
        channels: int = 1,
        upscale: int = 3,
        feat1: int = 64,
        feat2: int = 64,
        feat3: int = 32,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, feat1, 5, 1, 2)
        self.conv2 = _conv3(feat1, feat2)
        self.conv3 = _conv3(feat2, feat3)
        self.conv4 = _conv3(feat3, channels * upscale * upscale)
        self.pixel_shuffle = nn.PixelShuffle(upscale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.relu(self.conv3(x))
        return self.pixel_shuffle(self.conv4(x))


@register_architecture
class ESPCNArch(Architecture):
    """pytorch/examples super_resolution checkpoints: plain ``conv1`` .. ``conv4``, no norms."""

    id = "ESPCN"
    model_type = "super_resolution"
    detect = KeyCondition.has_all(
        "conv1.weight",
        "conv2.weight",
        "conv3.weight",
        "conv4.weight",
        without=(
            "conv5.weight",
            "in1.weight",
            "res1.conv1.conv2d.weight",
            "conv1.conv2d.weight",
        ),
    )

    def hyperparameters(self, state_dict: StateDict) -> dict[str, Any]:
        """Read channels, feature widths and the upscale (conv4 outputs = channels * upscale^2)."""
        feat1, channels = _conv_shape(state_dict, "conv1.weight", kernel=5)
        feat2, _ = _conv_shape(state_dict, "conv2.weight")
        _expect_conv(state_dict, "conv2.weight", feat2, feat1)
        feat3, _ = _conv_shape(state_dict, "conv3.weight")
        _expect_conv(state_dict, "conv3.weight", feat3, feat2)
        out4, _ = _conv_shape(state_dict, "conv4.weight")
        _expect_conv(state_dict, "conv4.weight", out4, feat3)
        if out4 % channels:
            raise ValueError(f"conv4 has {out4} outputs, not a multiple of {channels} channels")
        upscale = _square_root(out4 // channels, "conv4 outputs / channels")
        return {
            "channels": channels,
            "upscale": upscale,
            "feat1": feat1,
            "feat2": feat2,
            "feat3": feat3,
        }

    def build(self, **hp: Any) -> nn.Module:
        """An :class:`ESPCN` with these constructor arguments."""
        return ESPCN(**hp)

    def default_hyperparameters(self) -> dict[str, Any]:
        """The package's embedded default: RGB, x2, the example's 64/64/32 widths."""
        return {"channels": 3, "upscale": 2, "feat1": 64, "feat2": 64, "feat3": 32}

    def descriptor(self, hp: Mapping[str, Any]) -> ModelDescriptor:
        """0..1 images in, ``upscale`` times larger out; no size constraint beyond the 5x5 conv."""
        c = int(hp["channels"])
        return _sr_descriptor(
            self,
            hp,
            channels=(c, c),
            scale=int(hp["upscale"]),
            notes="ESPCN (pytorch/examples super_resolution); the original is 1-channel Y, x3",
        )
