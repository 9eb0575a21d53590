"""Checks a Runner applies to its inputs before any backend sees them; errors say expected vs got."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..descriptor import ModelDescriptor, TensorSpec
from ..errors import InvalidInputError

# A value this far outside the declared range (in units of the range's width) is a caller mistake,
# typically 0..255 data fed to a 0..1 model; smaller overshoots are legal (e.g. resampled images).
_RANGE_SLACK = 0.5


def validate_inputs(descriptor: ModelDescriptor, inputs: Sequence[Any]) -> list[torch.Tensor]:
    """Check count, kind, dtype, rank, channels, sizes, finiteness and range; return CPU-or-device tensors.

    numpy arrays become tensors without a copy (``torch.from_numpy``).
    """
    specs = descriptor.inputs
    if len(inputs) != len(specs):
        names = ", ".join(s.name for s in specs)
        raise InvalidInputError(f"expected {len(specs)} input(s) ({names}), got {len(inputs)}")
    tensors = [_as_tensor(spec, x) for spec, x in zip(specs, inputs)]
    for spec, t in zip(specs, tensors):
        _check_shape(descriptor, spec, t)
        _check_values(spec, t)
    _check_consistent(specs, tensors)
    return tensors


def _as_tensor(spec: TensorSpec, x: Any) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        if x.dtype != np.float32:
            raise InvalidInputError(f"input {spec.name!r}: expected dtype float32, got numpy {x.dtype}")
        if not (x.flags.c_contiguous and x.flags.writeable):  # torch warns on read-only memory
            x = np.array(x, order="C")  # (np.ascontiguousarray would make a 0-d array 1-d)
        return torch.from_numpy(x)
    if isinstance(x, torch.Tensor):
        if x.dtype != torch.float32:
            raise InvalidInputError(f"input {spec.name!r}: expected dtype float32, got {x.dtype}")
        if x.layout != torch.strided or x.device.type == "meta":
            raise InvalidInputError(
                f"input {spec.name!r}: expected a dense tensor with data, "
                f"got layout {x.layout} on device {x.device}"
            )
        return x.detach()  # a tensor that requires grad cannot become a numpy view for ORT
    raise InvalidInputError(
        f"input {spec.name!r}: expected a numpy.ndarray or torch.Tensor, got {type(x).__name__}"
    )


def _check_shape(descriptor: ModelDescriptor, spec: TensorSpec, t: torch.Tensor) -> None:
    want = "x".join(str(d) for d in spec.shape)
    if t.dim() != len(spec.shape):
        raise InvalidInputError(
            f"input {spec.name!r}: expected rank {len(spec.shape)} ({want}), got shape {tuple(t.shape)}"
        )
    for i, dim in enumerate(spec.shape):
        if isinstance(dim, int) and t.shape[i] != dim:
            raise InvalidInputError(
                f"input {spec.name!r}: expected dimension {i} to be {dim} ({want}), "
                f"got shape {tuple(t.shape)}"
            )
    if t.shape[0] < 1:
        raise InvalidInputError(
            f"input {spec.name!r}: expected a batch of at least 1, got shape {tuple(t.shape)}"
        )
    if spec.kind == "image":
        h, w = int(t.shape[-2]), int(t.shape[-1])
        if min(h, w) < descriptor.size_min:
            raise InvalidInputError(
                f"input {spec.name!r}: expected height and width >= {descriptor.size_min}, got {h}x{w}"
            )


def _check_values(spec: TensorSpec, t: torch.Tensor) -> None:
    tmin, tmax = _min_max(t)
    if not (math.isfinite(tmin) and math.isfinite(tmax)):
        raise InvalidInputError(f"input {spec.name!r}: expected finite values, got NaN or infinity")
    lo, hi = spec.value_range
    slack = (hi - lo) * _RANGE_SLACK
    if tmin < lo - slack or tmax > hi + slack:
        raise InvalidInputError(
            f"input {spec.name!r}: expected values in {lo:g}..{hi:g}, got {tmin:g}..{tmax:g}"
        )


def _min_max(t: torch.Tensor) -> tuple[float, float]:
    """Min and max in one pass each; they propagate NaN and keep infinities, so they cover finiteness.

    CPU tensors are reduced with numpy: a torch reduction would wake torch's OpenMP pool, whose
    threads then spin for milliseconds and steal the cores ONNX Runtime is about to use (measured:
    +5 ms on a 34 ms ESPCN run at 256x256 on 2 cores).
    """
    if t.device.type == "cpu":
        a = t.detach().numpy()
        return float(a.min()), float(a.max())
    lo, hi = torch.aminmax(t)
    return float(lo), float(hi)


def _check_consistent(specs: Sequence[TensorSpec], tensors: Sequence[torch.Tensor]) -> None:
    batches = {int(t.shape[0]) for t in tensors}
    if len(batches) > 1:
        raise InvalidInputError(f"expected every input to have the same batch size, got {sorted(batches)}")
    sizes = {tuple(t.shape[-2:]) for s, t in zip(specs, tensors) if s.kind == "image"}
    if len(sizes) > 1:
        raise InvalidInputError(
            f"expected every image input to have the same height and width, got {sorted(sizes)}"
        )
