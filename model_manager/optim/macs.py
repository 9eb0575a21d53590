"""Multiply-accumulates of one forward pass, to put latency next to the machine's arithmetic limit.

Counts convolutions, transposed convolutions and linear layers (where conv nets spend their time);
element-wise ops, norms, resampling and GridSample are not counted, so GMAC/s derived from it is
a lower bound of the work done.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn


def count_macs(module: nn.Module, inputs: Sequence[Any]) -> int:
    """MACs of ``module(*inputs)`` in conv / transposed-conv / linear layers (one forward, no grad)."""
    total = 0

    def conv(m: nn.Module, args: tuple[Any, ...], out: torch.Tensor) -> None:
        nonlocal total
        assert isinstance(m, nn.Conv2d | nn.ConvTranspose2d)
        kernel = math.prod(m.kernel_size)
        if isinstance(m, nn.ConvTranspose2d):  # every input pixel scatters a kernel
            total += args[0].numel() * (m.out_channels // m.groups) * kernel
        else:
            total += out.numel() * (m.in_channels // m.groups) * kernel

    def linear(m: nn.Module, args: tuple[Any, ...], out: torch.Tensor) -> None:
        nonlocal total
        assert isinstance(m, nn.Linear)
        total += out.numel() * m.in_features

    hooks = []
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            hooks.append(m.register_forward_hook(conv))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear))
    try:
        with torch.no_grad():
            module(*(torch.as_tensor(x) for x in inputs))
    finally:
        for h in hooks:
            h.remove()
    return total
