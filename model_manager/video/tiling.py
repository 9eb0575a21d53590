"""Super-resolution of images larger than a model's profile: overlapping tiles, feathered blend.

Each tile is run with ``overlap`` pixels of context on every side shared with its neighbours;
outputs are blended with linear ramps across the shared band, so seams fall where both tiles
saw the same context. Only for models whose output pixel depends on a bounded neighbourhood
(convolutional SR); InstanceNorm models (style transfer) would show per-tile tone changes.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..descriptor import ModelDescriptor
from ..errors import InvalidInputError

BatchFn = Callable[[np.ndarray], np.ndarray]


def max_image_size(descriptor: ModelDescriptor) -> int | None:
    """Largest H or W the descriptor's profile allows for its first image input (None: no limit)."""
    if descriptor.profile is None:
        return None
    name = descriptor.image_inputs[0].name
    shape = descriptor.profile.max.get(name)
    return None if shape is None else int(min(shape[-2:]))


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    """Tile origins covering 0..length with at least ``overlap`` shared pixels between neighbours."""
    if length <= tile:
        return [0]
    step = tile - overlap
    return sorted({*range(0, length - tile, step), length - tile})


def _ramp(length: int, fade_in: int, fade_out: int) -> np.ndarray:
    """1-D blend weights: linear up over ``fade_in``, flat, linear down over ``fade_out``."""
    w = np.ones(length, dtype=np.float32)
    if fade_in:
        w[:fade_in] = np.linspace(1.0 / (fade_in + 1), fade_in / (fade_in + 1), fade_in)
    if fade_out:
        w[length - fade_out :] = np.linspace(fade_out / (fade_out + 1), 1.0 / (fade_out + 1), fade_out)
    return w


def tiled_infer(run: BatchFn, batch: np.ndarray, scale: int, tile: int, overlap: int = 16) -> np.ndarray:
    """Run ``run`` (N,C,h,w -> N,C,h*scale,w*scale) tile by tile over ``batch`` and blend."""
    if batch.ndim != 4:
        raise InvalidInputError(f"expected an (N,C,H,W) batch, got shape {batch.shape}")
    if not 0 <= overlap < tile:
        raise InvalidInputError(f"expected 0 <= overlap < tile, got overlap {overlap}, tile {tile}")
    n, _, h, w = batch.shape
    ys, xs = _starts(h, tile, overlap), _starts(w, tile, overlap)
    out: np.ndarray | None = None
    weight = np.zeros((1, 1, h * scale, w * scale), dtype=np.float32)
    for i, y in enumerate(ys):
        for j, x in enumerate(xs):
            th, tw = min(tile, h), min(tile, w)
            piece = run(np.ascontiguousarray(batch[:, :, y : y + th, x : x + tw]))
            if out is None:
                out = np.zeros((n, piece.shape[1], h * scale, w * scale), dtype=np.float32)
            wy = _ramp(th * scale, _shared(ys, i, th, before=True) * scale, _shared(ys, i, th) * scale)
            wx = _ramp(tw * scale, _shared(xs, j, tw, before=True) * scale, _shared(xs, j, tw) * scale)
            mask = wy[:, None] * wx[None, :]
            region = (
                slice(None),
                slice(None),
                slice(y * scale, (y + th) * scale),
                slice(x * scale, (x + tw) * scale),
            )
            out[region] += piece * mask
            weight[region] += mask
    assert out is not None
    return out / weight


def _shared(starts: list[int], k: int, size: int, before: bool = False) -> int:
    """Pixels tile ``k`` shares with its previous (``before``) or next neighbour."""
    if before:
        return 0 if k == 0 else starts[k - 1] + size - starts[k]
    return 0 if k == len(starts) - 1 else starts[k] + size - starts[k + 1]
