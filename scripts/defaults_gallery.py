#!/usr/bin/env python
"""Before / after images of the shipped default models for the README (docs/images/*.png).

    python scripts/defaults_gallery.py [--out docs/images]

Each row is one held-out photo: the baseline, the model's output and the target side by side.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from model_manager.defaults import DEFAULT_MODELS, HELD_OUT
from model_manager.defaults.evaluation import predict, task_example
from model_manager.images import from_batch, write_image
from model_manager.registry import ModelRegistry


def _pixels(x: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """(1,3,h,w) 0..1 -> HxWx3 uint8, nearest-resized to ``size`` (keeps SR pixels visible)."""
    return from_batch(torch.nn.functional.interpolate(x, size=size, mode="nearest").numpy())[0]


def gallery_row(spec, module, index: int) -> np.ndarray:
    """[input or baseline, model, target] for one held-out photo, all at the target's size."""
    inputs, target, baseline = task_example(spec, index)
    output = predict(spec, module, *inputs)
    size = tuple(target.shape[-2:])
    first = inputs[0] if spec.task == "sketch" else baseline
    return np.concatenate([_pixels(t, size) for t in (first, output, target)], axis=1)


def main() -> int:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--out", type=Path, default=Path("docs/images"))
    args = parser.parse_args()
    registry = ModelRegistry.with_builtins()
    for spec in DEFAULT_MODELS:
        module = registry.get(spec.model_type, spec.name).load().module
        rows = [gallery_row(spec, module, HELD_OUT.index(n)) for n in ("astronaut", "coffee")]
        width = max(r.shape[1] for r in rows)
        rows = [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
        path = write_image(args.out / f"{spec.key}.png", np.concatenate(rows, axis=0))
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
