"""Real-photo inputs for export verification, at a size and batch the export did not see."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from ..descriptor import ModelDescriptor, TensorSpec, round_up
from ..samples import sample_batch

# Verification grows H and W by at least this many pixels (rounded to the size multiple) and
# changes the aspect ratio, so a baked height, width or ratio cannot pass by coincidence.
_GROW = 8


def export_inputs_descriptor(args: Sequence[torch.Tensor], names: Sequence[str] | None) -> ModelDescriptor:
    """A descriptor guessed from dummy inputs when the caller gave none (seed API).

    4-D inputs are images (0..255 when the dummy's values exceed 2, else 0..1) with dynamic batch,
    height and width; other inputs are scalars per batch item (like a timestep).
    """
    names = list(names) if names is not None else _default_names(len(args))
    specs = []
    for name, a in zip(names, args):
        if a.dim() == 4 and a.shape[2] > 1:
            rng = (0.0, 255.0) if float(a.max()) > 2.0 else (0.0, 1.0)
            specs.append(TensorSpec(name, ("batch", int(a.shape[1]), "height", "width"), value_range=rng))
        else:
            specs.append(TensorSpec(name, ("batch", *[int(d) for d in a.shape[1:]]), kind="scalar"))
    first = next((s for s in specs if s.kind == "image"), specs[0])
    out = TensorSpec(
        "output", ("batch", first.shape[1], "height_out", "width_out"), value_range=first.value_range
    )
    return ModelDescriptor("custom", "custom", tuple(specs), out, size_min=1, size_multiple=1)


def _default_names(n: int) -> list[str]:
    return ["input"] if n == 1 else [f"input_{i}" for i in range(n)]


def verification_inputs(
    desc: ModelDescriptor, args: Sequence[torch.Tensor], axes: Mapping[str, Mapping[int, str]]
) -> list[np.ndarray]:
    """Sample-photo inputs at another H, W (and batch 2 when the batch is dynamic)."""
    image = next((a for s, a in zip(desc.inputs, args) if s.kind == "image"), None)
    if image is None:
        return [a.numpy() for a in args]
    first = desc.inputs[0].name
    dyn = axes.get(first, {})
    h, w = int(image.shape[2]), int(image.shape[3])
    if 2 in dyn or 3 in dyn:
        h, w = _other(h, desc.size_multiple, 1), _other(w, desc.size_multiple, 2)
    batch = 2 if 0 in dyn else int(image.shape[0])
    inputs = sample_batch(desc, (h, w), batch)
    for i, (spec, a) in enumerate(zip(desc.inputs, args)):
        if spec.kind == "scalar" and tuple(a.shape[1:]) != (1, 1, 1):  # an unusual scalar: keep its values
            inputs[i] = np.repeat(a.numpy()[:1], batch, axis=0)
    return inputs


def _other(size: int, multiple: int, factor: int) -> int:
    return size + factor * round_up(max(multiple, _GROW), multiple)
