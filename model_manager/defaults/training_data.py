"""Training photos (scikit-image's sample data, held-out photos excluded) and random patches of them.

Only photos whose scikit-image docstring states a free licence are used; the list and the
licences go into every model card. scikit-image is needed only to train (the ``train`` extra).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..images import to_batch

#: scikit-image loader name -> licence, as its docstring states it.
TRAINING_PHOTOS: dict[str, str] = {
    "camera": "CC0 (Lav Varshney)",
    "brick": "CC0 (CC0Textures Bricks25)",
    "grass": "CC0 (CC0Textures)",
    "gravel": "CC0 (CC0Textures Gravel04)",
    "coins": "no known copyright restrictions (Brooklyn Museum)",
    "cell": "CC0",
    "text": "public domain",
    "clock": "public domain (Stefan van der Walt)",
    "hubble_deep_field": "public domain (NASA)",
    "immunohistochemistry": "no known copyright restrictions (CMMI)",
    "retina": "CC0 1.0 / public domain (Häggström)",
}


def load_training_photos(names: Sequence[str] = tuple(TRAINING_PHOTOS)) -> list[torch.Tensor]:
    """The training photos as (1,3,H,W) float 0..1 tensors (grey photos repeated to RGB)."""
    try:
        from skimage import data
    except ImportError as exc:
        raise ImportError(
            "training the defaults needs scikit-image (pip install 'model_manager[train]')"
        ) from exc
    photos = []
    for name in names:
        array = np.asarray(getattr(data, name)())
        if array.ndim == 2:
            array = np.repeat(array[..., None], 3, axis=2)
        photos.append(torch.from_numpy(to_batch(np.ascontiguousarray(array[..., :3]))))
    return photos


@dataclass
class PatchSampler:
    """Random square crops of the photos (chosen in proportion to area), flipped, rotated, tinted.

    Nearly flat crops (standard deviation under ``min_std``, e.g. empty sky of the Hubble field)
    are drawn again: they teach nothing, and TransformerNet's InstanceNorm amplifies their noise
    into exploding gradients.
    """

    photos: Sequence[torch.Tensor]
    generator: torch.Generator
    tint: float = 0.25
    min_std: float = 0.04

    def __post_init__(self) -> None:
        areas = torch.tensor([float(p.shape[-2] * p.shape[-1]) for p in self.photos])
        self._weights = areas / areas.sum()

    def _int(self, high: int) -> int:
        return int(torch.randint(high, (1,), generator=self.generator))

    def patch(self, size: int) -> torch.Tensor:
        """One (1,3,size,size) patch; photos smaller than ``size`` and flat crops are skipped."""
        while True:
            photo = self.photos[int(torch.multinomial(self._weights, 1, generator=self.generator))]
            h, w = photo.shape[-2:]
            if h < size or w < size:
                continue
            top, left = self._int(h - size + 1), self._int(w - size + 1)
            crop = photo[..., top : top + size, left : left + size]
            if float(crop.std()) >= self.min_std:
                break
        if self._int(2):
            crop = crop.flip(-1)
        crop = torch.rot90(crop, self._int(4), dims=(-2, -1))
        return self._tinted(crop)

    def _tinted(self, crop: torch.Tensor) -> torch.Tensor:
        """Per-channel gains in 1 +- tint and a random channel order: colour variety from grey photos."""
        gains = 1.0 + (torch.rand(3, generator=self.generator) * 2 - 1) * self.tint
        order = torch.randperm(3, generator=self.generator)
        return (crop[:, order] * gains.view(1, 3, 1, 1)).clamp(0.0, 1.0)

    def batch(self, count: int, size: int) -> torch.Tensor:
        return torch.cat([self.patch(size) for _ in range(count)])
