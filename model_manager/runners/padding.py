"""The image-level call: pad inputs up to the model's size multiple, crop the output back."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..descriptor import ModelDescriptor


def padding_for(descriptor: ModelDescriptor, height: int, width: int) -> tuple[int, int]:
    """Rows and columns to add at the bottom and right so both are multiples of the size multiple."""
    m = descriptor.size_multiple
    return (-height) % m, (-width) % m


def pad_inputs(descriptor: ModelDescriptor, tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Pad the image inputs (bottom / right) with the descriptor's mode; other inputs pass through."""
    out = []
    for spec, t in zip(descriptor.inputs, tensors):
        if spec.kind == "image":
            ph, pw = padding_for(descriptor, int(t.shape[-2]), int(t.shape[-1]))
            if ph or pw:
                t = F.pad(t, (0, pw, 0, ph), mode=descriptor.pad_mode)
        out.append(t)
    return out


def crop_output(descriptor: ModelDescriptor, output: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Crop a padded run's output to the size the unpadded input maps to."""
    oh, ow = descriptor.output_size(height, width)
    if output.shape[-2] == oh and output.shape[-1] == ow:
        return output
    return output[..., :oh, :ow]
