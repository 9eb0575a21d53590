"""RIFE's IFNet (Practical-RIFE 4.25 / 4.26), key-for-key compatible with the published ``flownet.pkl``.

Video frame interpolation: given two frames and a timestep t in 0..1, IFNet estimates
bidirectional optical flow coarse-to-fine in five blocks (at 1/16, 1/8, 1/4, 1/2 and full
resolution), backward-warps both frames and blends them with a learnt sigmoid mask.

Two layouts, told apart by tensor shapes only (never by a version field):

* ``IFNet`` -- the lite feature encoder (``encode.cnn3`` gives 4 channels per frame);
  4.25 and 4.26 (block widths 192/128/96/64/32) and 4.25.heavy (the same blocks, twice as wide).
* ``IFNet-heavy`` -- the 16-channel feature encoder of 4.26.heavy and of the
  ``train_log/IFNet_HDv3.py`` that Practical-RIFE ships now (its version field says 4.25).

The forward pass is what Practical-RIFE's ``Model.inference(img0, img1, t, scale=1.0)`` computes
(``fastmode=True``, no ensemble, scale_list 16/8/4/2/1), minus the training-only branches, and
without Python-side data-dependent control flow: the warp grid is built from the input's shape at
run time, so the module exports to ONNX (GridSample, opset >= 16) with dynamic batch, height, width.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..descriptor import VIDEO_MAX_SIZE, ModelDescriptor, TensorSpec, image_profile
from .base import (
    Architecture,
    KeyCondition,
    StateDict,
    conv_count,
    register_architecture,
)

SCALE_LIST = (16, 8, 4, 2, 1)
"""Downscale factor of each block (Practical-RIFE's ``scale_list`` at ``scale=1.0``)."""

WIDTH_RATIOS = (6, 4, 3, 2, 1)
"""Block widths relative to the last block's (192/128/96/64/32 in the standard config)."""

HEAD_WIDTH = 16
"""Hidden width of the feature encoder (``encode.cnn0`` .. ``cnn2``) in both layouts."""

BLOCK_OUT = 13
"""Channels an IFBlock predicts: 4 flow (two 2-D flows), 1 mask logit, 8 context features."""

RES_CONVS = 8
"""ResConv layers per IFBlock."""

SIZE_MULTIPLE = 64
"""Block 0 works at 1/16 scale and halves twice more, so H and W must be multiples of 64."""

_TRAINING_ONLY = re.compile(r"^(teacher|caltime)\.")
"""Keys the published files carry for training only (distillation teacher block, caltime net)."""

_PRECISIONS = ("fp32", "fp16", "bf16", "int8")


def _conv_lrelu(in_ch: int, out_ch: int) -> nn.Sequential:
    """3x3 stride-2 conv + LeakyReLU(0.2): the reference's ``conv(in, out, 3, 2, 1)``."""
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, 2, 1), nn.LeakyReLU(0.2))


def _resize(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Bilinear resize by ``factor`` (align_corners=False); factor 1 is the identity and skipped."""
    if factor == 1:
        return x
    return F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)


def _unit_linspace(steps: int, device: torch.device) -> torch.Tensor:
    """``torch.linspace(-1, 1, steps)`` in float32; under ``torch.export``, the same numbers from ``arange``.

    torch.export specialises ``linspace``'s step count to the example's size, so a model exported
    with dynamic H / W would only run at that size. ATen's CPU kernel counts from -1 up to the
    halfway index and from 1 down after it, ``start + step * i`` fused; ``addcmul`` computes
    exactly that, so the exported grid equals ``linspace``'s bit for bit (checked for every size
    2..4099 in the tests). Eager and the ONNX export keep calling ``linspace`` itself.
    """
    if not torch.compiler.is_exporting():
        return torch.linspace(-1.0, 1.0, steps, dtype=torch.float32, device=device)
    return arange_linspace(steps, device)


def arange_linspace(steps: int, device: torch.device) -> torch.Tensor:
    """``linspace(-1, 1, steps)`` as ATen's CPU kernel computes it, from ``arange`` (export-friendly)."""
    f32 = torch.float32
    index = torch.arange(steps, dtype=f32, device=device)
    step = torch.full((), 2.0, dtype=f32, device=device) / (steps - 1)
    up = torch.addcmul(torch.full((), -1.0, dtype=f32, device=device), index, step)
    down = torch.addcmul(torch.full((), 1.0, dtype=f32, device=device), (steps - 1) - index, step, value=-1)
    return torch.where(index < steps // 2, up, down)


class WarpGrid(NamedTuple):
    """What every warp of one forward pass shares: the reference's identity grid and flow divisor.

    ``base`` (1,2,H,W) float32 is x then y, each ``linspace(-1, 1)``; ``half_extent`` (1,2,1,1) is
    ((W-1)/2, (H-1)/2), what the reference divides the flow's x and y by. One broadcast division
    instead of the reference's split / divide / concat per warp: engines run it as one operation.
    """

    base: torch.Tensor
    half_extent: torch.Tensor

    @classmethod
    def of(cls, height: int, width: int, device: torch.device) -> WarpGrid:
        """The grid for frames of this size, made once per forward pass (the reference caches it)."""
        f32 = torch.float32
        xs = _unit_linspace(width, device).view(1, 1, 1, width)
        ys = _unit_linspace(height, device).view(1, 1, height, 1)
        base = torch.cat([xs.expand(1, 1, height, width), ys.expand(1, 1, height, width)], 1)
        one = torch.ones((1, 1, 1, 1), dtype=f32, device=device)
        half_extent = torch.cat([one * ((width - 1.0) / 2.0), one * ((height - 1.0) / 2.0)], 1)
        return cls(base, half_extent)

    def coords(self, flow: torch.Tensor) -> torch.Tensor:
        """``grid_sample``'s (N,H,W,2) sampling grid for ``flow`` (N,2,H,W, pixels), float32."""
        return (self.base + flow.float() / self.half_extent).permute(0, 2, 3, 1)


def sample(image: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Backward-warp ``image`` (N,C,H,W) to ``WarpGrid.coords``: the reference's ``grid_sample``.

    Bilinear, border padding, align_corners=True, in float32; cast back to the image's dtype.
    """
    out = F.grid_sample(image.float(), coords, mode="bilinear", padding_mode="border", align_corners=True)
    return out.to(image.dtype)


def warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Backward-warp ``image`` by ``flow`` (N,2,H,W, pixels) as ``model/warplayer.py`` writes it.

    A grid per call, the flow split into x and y, each divided, concatenated again: the oracle
    ``sample`` is checked against and what ``unfused_forward`` runs; the cast back to the image's
    dtype is ours.
    """
    n, _, h, w = flow.shape
    xs = torch.linspace(-1.0, 1.0, w, device=flow.device).view(1, 1, 1, w).expand(n, 1, h, w)
    ys = torch.linspace(-1.0, 1.0, h, device=flow.device).view(1, 1, h, 1).expand(n, 1, h, w)
    flow = flow.float()
    fx = flow[:, 0:1] / ((image.shape[3] - 1.0) / 2.0)
    fy = flow[:, 1:2] / ((image.shape[2] - 1.0) / 2.0)
    grid = (torch.cat([xs, ys], 1) + torch.cat([fx, fy], 1)).permute(0, 2, 3, 1)
    out = F.grid_sample(image.float(), grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out.to(image.dtype)


def _pair_flows(flow: torch.Tensor) -> torch.Tensor:
    """(N,4,H,W) bidirectional flow -> (2N,2,H,W): frame 0's flows, then frame 1's (as frames stack)."""
    n, _, h, w = flow.shape
    return flow.reshape(n, 2, 2, h, w).transpose(0, 1).reshape(2 * n, 2, h, w)


class Head(nn.Module):
    """Per-frame feature encoder: three 3x3 convs (first stride 2), then a x2 transposed conv."""

    def __init__(self, out_channels: int) -> None:
        super().__init__()
        self.cnn0 = nn.Conv2d(3, HEAD_WIDTH, 3, 2, 1)
        self.cnn1 = nn.Conv2d(HEAD_WIDTH, HEAD_WIDTH, 3, 1, 1)
        self.cnn2 = nn.Conv2d(HEAD_WIDTH, HEAD_WIDTH, 3, 1, 1)
        self.cnn3 = nn.ConvTranspose2d(HEAD_WIDTH, out_channels, 4, 2, 1)
        self.relu = nn.LeakyReLU(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.cnn0(x))
        x = self.relu(self.cnn1(x))
        x = self.relu(self.cnn2(x))
        return self.cnn3(x)


class ResConv(nn.Module):
    """Residual 3x3 conv with a learnt per-channel scale: LeakyReLU(conv(x) * beta + x)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 1, 1)
        self.beta = nn.Parameter(torch.ones((1, c, 1, 1)))
        self.relu = nn.LeakyReLU(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv(x) * self.beta + x)


class IFBlock(nn.Module):
    """One coarse-to-fine step: predicts flow (update), mask logit and features at 1/scale."""

    def __init__(self, in_planes: int, c: int) -> None:
        super().__init__()
        self.conv0 = nn.Sequential(_conv_lrelu(in_planes, c // 2), _conv_lrelu(c // 2, c))
        self.convblock = nn.Sequential(*(ResConv(c) for _ in range(RES_CONVS)))
        self.lastconv = nn.Sequential(nn.ConvTranspose2d(c, 4 * BLOCK_OUT, 4, 2, 1), nn.PixelShuffle(2))

    def forward(
        self, x: torch.Tensor, flow: torch.Tensor | None, scale: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = _resize(x, 1.0 / scale)
        if flow is not None:
            x = torch.cat((x, _resize(flow, 1.0 / scale) / scale), 1)
        tmp = self.lastconv(self.convblock(self.conv0(x)))
        tmp = _resize(tmp, scale)
        return tmp[:, :4] * scale, tmp[:, 4:5], tmp[:, 5:]


class IFNet(nn.Module):
    """RIFE 4.25/4.26 IFNet at inference: ``forward(img0, img1, timestep)`` -> the frame at t."""

    def __init__(
        self,
        widths: Sequence[int] = (192, 128, 96, 64, 32),
        encoder_channels: int = 4,
    ) -> None:
        super().__init__()
        if len(widths) != len(SCALE_LIST):
            raise ValueError(f"IFNet needs {len(SCALE_LIST)} block widths, got {tuple(widths)}")
        e2 = 2 * encoder_channels
        self.block0 = IFBlock(7 + e2, widths[0])
        for i in range(1, len(SCALE_LIST)):
            self.add_module(f"block{i}", IFBlock(8 + 4 + 8 + e2, widths[i]))
        self.encode = Head(encoder_channels)
        self.scale_list = SCALE_LIST

    def forward(self, img0: torch.Tensor, img1: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        """img0, img1: (N,3,H,W) in 0..1, H and W multiples of 64; timestep: (N,1,1,1).

        The reference's computation with the warps fused: both frames go through the encoder as
        one batch of 2N, each level computes one sampling grid for both directions (on a base
        grid made once) and warps the frames and the features of both directions with one
        ``grid_sample`` each: 9 warps per pass instead of the reference's 18, no flow split.
        """
        n = img0.shape[0]
        t = timestep.expand(-1, -1, img0.shape[2], img0.shape[3])
        frames = torch.cat((img0, img1), 0)
        feats = self.encode(frames)
        grid = WarpGrid.of(img0.shape[2], img0.shape[3], img0.device)
        flow, mask, feat = self.block0(
            torch.cat((img0, img1, feats[:n], feats[n:], t), 1), None, SCALE_LIST[0]
        )
        for i in range(1, len(SCALE_LIST)):
            coords = grid.coords(_pair_flows(flow))
            wi, wf = sample(frames, coords), sample(feats, coords)
            x = torch.cat((wi[:n], wi[n:], wf[:n], wf[n:], t, mask, feat), 1)
            delta, mask, feat = getattr(self, f"block{i}")(x, flow, SCALE_LIST[i])
            flow = flow + delta
        warped = sample(frames, grid.coords(_pair_flows(flow)))
        weight = torch.sigmoid(mask)
        return warped[:n] * weight + warped[n:] * (1 - weight)


def unfused_forward(
    model: IFNet, img0: torch.Tensor, img1: torch.Tensor, timestep: torch.Tensor
) -> torch.Tensor:
    """Practical-RIFE's ``IFNet.forward`` loop as written there: one encoder pass and one warp per tensor.

    The oracle ``IFNet.forward`` (fused warps) is checked against, and the "before" of
    ``benchmarks/fused_warp.py``; not used for inference.
    """
    t = timestep.expand(-1, -1, img0.shape[2], img0.shape[3])
    f0, f1 = model.encode(img0), model.encode(img1)
    flow, mask, feat = model.block0(torch.cat((img0, img1, f0, f1, t), 1), None, SCALE_LIST[0])
    warped0, warped1 = warp(img0, flow[:, :2]), warp(img1, flow[:, 2:4])
    for i in range(1, len(SCALE_LIST)):
        wf0, wf1 = warp(f0, flow[:, :2]), warp(f1, flow[:, 2:4])
        x = torch.cat((warped0, warped1, wf0, wf1, t, mask, feat), 1)
        delta, mask, feat = getattr(model, f"block{i}")(x, flow, SCALE_LIST[i])
        flow = flow + delta
        warped0, warped1 = warp(img0, flow[:, :2]), warp(img1, flow[:, 2:4])
    weight = torch.sigmoid(mask)
    return warped0 * weight + warped1 * (1 - weight)


# --------------------------------------------------------------------------- reading shapes


def _shape(state_dict: StateDict, key: str) -> tuple[int, ...]:
    """Shape of ``state_dict[key]`` as ints; ValueError naming the key when it is absent."""
    if key not in state_dict:
        raise ValueError(f"missing key {key!r}")
    return tuple(int(d) for d in state_dict[key].shape)


def _expect(state_dict: StateDict, key: str, shape: tuple[int, ...]) -> None:
    """Raise ValueError unless ``state_dict[key]`` has exactly ``shape``."""
    got = _shape(state_dict, key)
    if got != shape:
        raise ValueError(f"{key} has shape {got}, expected {shape}")


def _encoder_channels(state_dict: StateDict) -> int:
    """Feature channels per frame, from ``encode.cnn3`` (ConvTranspose2d: in, out, 4, 4)."""
    _expect(state_dict, "encode.cnn0.weight", (HEAD_WIDTH, 3, 3, 3))
    _expect(state_dict, "encode.cnn1.weight", (HEAD_WIDTH, HEAD_WIDTH, 3, 3))
    _expect(state_dict, "encode.cnn2.weight", (HEAD_WIDTH, HEAD_WIDTH, 3, 3))
    shape = _shape(state_dict, "encode.cnn3.weight")
    if len(shape) != 4 or shape[0] != HEAD_WIDTH or shape[2:] != (4, 4):
        raise ValueError(f"encode.cnn3.weight has shape {shape}, expected ({HEAD_WIDTH}, E, 4, 4)")
    return shape[1]


def _block_width(state_dict: StateDict, i: int, in_planes: int) -> int:
    """Width c of block ``i``, checking every layer of the block against it."""
    p = f"block{i}"
    c = _shape(state_dict, f"{p}.conv0.1.0.weight")[0]
    _expect(state_dict, f"{p}.conv0.0.0.weight", (c // 2, in_planes, 3, 3))
    _expect(state_dict, f"{p}.conv0.1.0.weight", (c, c // 2, 3, 3))
    if conv_count(state_dict, p + ".convblock.{}.conv.weight") != RES_CONVS:
        raise ValueError(f"{p} must have {RES_CONVS} ResConv layers")
    for j in range(RES_CONVS):
        _expect(state_dict, f"{p}.convblock.{j}.conv.weight", (c, c, 3, 3))
        _expect(state_dict, f"{p}.convblock.{j}.beta", (1, c, 1, 1))
    _expect(state_dict, f"{p}.lastconv.0.weight", (c, 4 * BLOCK_OUT, 4, 4))
    return c


def _check_widths(widths: Sequence[int]) -> None:
    """Widths must be k * (6, 4, 3, 2, 1) for an even k (4.25/4.26: 32, 4.25.heavy: 64)."""
    base = widths[-1]
    if base < 2 or base % 2 or tuple(widths) != tuple(r * base for r in WIDTH_RATIOS):
        raise ValueError(f"block widths {tuple(widths)} are not k*(6,4,3,2,1) (is this 4.25.lite or older?)")


def read_hyperparameters(state_dict: StateDict) -> dict[str, Any]:
    """Block widths, encoder channels and ``heavy`` (16-channel encoder) from tensor shapes."""
    enc = _encoder_channels(state_dict)
    if conv_count(state_dict, "block{}.conv0.0.0.weight") != len(SCALE_LIST):
        raise ValueError(f"expected exactly {len(SCALE_LIST)} IFBlocks block0..block4")
    widths = [_block_width(state_dict, 0, 7 + 2 * enc)]
    widths += [_block_width(state_dict, i, 20 + 2 * enc) for i in range(1, len(SCALE_LIST))]
    _check_widths(widths)
    return {"widths": tuple(widths), "encoder_channels": enc, "heavy": enc == 16}


# --------------------------------------------------------------------------- architectures


class _IFNetArchitecture(Architecture):
    """Shared detection, loading and description of the two IFNet layouts."""

    model_type = "interpolation"
    graph_revision = 2  # 2: fused warps (9 grid_samples on one base grid; 1 was the reference's 18)
    detect = KeyCondition.has_all(
        "encode.cnn0.weight",
        "encode.cnn3.weight",
        "block0.conv0.0.0.weight",
        "block4.conv0.0.0.weight",
        "block4.lastconv.0.weight",
    )
    #: Feature channels of this layout's encoder (4 lite, 16 heavy).
    encoder_channels: int
    default_widths: tuple[int, ...] = (192, 128, 96, 64, 32)
    notes: str = ""

    def prepare_state_dict(self, state_dict: StateDict) -> dict[str, torch.Tensor]:
        """Drop the training-only ``teacher.*`` and ``caltime.*`` tensors of the published files."""
        return {k: v for k, v in state_dict.items() if not _TRAINING_ONLY.match(k)}

    def hyperparameters(self, state_dict: StateDict) -> dict[str, Any]:
        """Read the layout from shapes; ValueError when it is the other layout or inconsistent."""
        hp = read_hyperparameters(state_dict)
        self._check(hp)
        return hp

    def _check(self, hp: Mapping[str, Any]) -> None:
        """Raise ValueError unless ``hp`` describes this layout."""
        enc = int(hp["encoder_channels"])
        heavy = bool(hp.get("heavy", enc == 16))
        if enc != self.encoder_channels or heavy != (enc == 16):
            raise ValueError(
                f"{self.id} has a {self.encoder_channels}-channel encoder, got {enc} (heavy={heavy})"
            )
        _check_widths(hp["widths"])

    def build(self, **hyperparameters: Any) -> nn.Module:
        """An IFNet with these block widths and encoder channels (random init)."""
        self._check(hyperparameters)
        return IFNet(tuple(hyperparameters["widths"]), int(hyperparameters["encoder_channels"]))

    def default_hyperparameters(self) -> dict[str, Any]:
        """The published configuration of this layout."""
        enc = self.encoder_channels
        return {"widths": self.default_widths, "encoder_channels": enc, "heavy": enc == 16}

    def descriptor(self, hyperparameters: Mapping[str, Any]) -> ModelDescriptor:
        """Two 0..1 frames and a (N,1,1,1) timestep in, the frame at t out; H, W padded to 64."""
        image = ("batch", 3, "height", "width")
        return ModelDescriptor(
            model_type=self.model_type,
            architecture=self.id,
            inputs=(
                TensorSpec("img0", image),
                TensorSpec("img1", image),
                TensorSpec("timestep", ("batch", 1, 1, 1), kind="scalar"),
            ),
            output=TensorSpec("output", image),
            scale=1,
            size_min=SIZE_MULTIPLE,
            size_multiple=SIZE_MULTIPLE,
            pad_mode="constant",
            profile=image_profile(
                ("img0", "img1"),
                3,
                size_min=SIZE_MULTIPLE,
                multiple=SIZE_MULTIPLE,
                opt=256,
                max_size=VIDEO_MAX_SIZE,
                max_batch=4,
                extra={"timestep": (1, 1, 1, 1)},
            ),
            precisions=_PRECISIONS,
            hyperparameters=dict(hyperparameters),
            notes=self.notes,
        )


@register_architecture
class IFNetLiteArch(_IFNetArchitecture):
    """RIFE 4.25 / 4.26 (and 4.25.heavy's wider blocks): 4-channel feature encoder."""

    id = "IFNet"
    encoder_channels = 4
    notes = (
        "RIFE IFNet, Practical-RIFE 4.25/4.26 layout (4-channel feature encoder; 4.25.heavy "
        "is this layout with blocks twice as wide). scale_list 16/8/4/2/1; zero-pad H, W to a "
        "multiple of 64 and crop back (Practical-RIFE's scripts pad to 128, vs-rife to 64). "
        "Output is not clamped, as in the reference."
    )


@register_architecture
class IFNetHeavyArch(_IFNetArchitecture):
    """RIFE 4.26.heavy / current Practical-RIFE train_log: 16-channel feature encoder."""

    id = "IFNet-heavy"
    encoder_channels = 16
    notes = (
        "RIFE IFNet, heavy layout (16-channel feature encoder) of 4.26.heavy and of "
        "Practical-RIFE's current train_log/IFNet_HDv3.py. scale_list 16/8/4/2/1; zero-pad "
        "H, W to a multiple of 64 and crop back. Output is not clamped, as in the reference."
    )
