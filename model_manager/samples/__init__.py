"""Real sample photographs shipped with the package (see LICENSE.md): loading and listing them."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np

from ..errors import InvalidInputError

SAMPLE_NAMES = ("astronaut", "coffee", "chelsea", "rocket")


def sample_path(name: str) -> Path:
    """Path of the shipped sample image ``name`` (one of :data:`SAMPLE_NAMES`)."""
    if name not in SAMPLE_NAMES:
        raise InvalidInputError(f"unknown sample image {name!r}; expected one of {list(SAMPLE_NAMES)}")
    return Path(str(resources.files(__name__).joinpath(f"{name}.png")))


def load_sample(name: str) -> np.ndarray:
    """The sample image as an HxWx3 uint8 array."""
    from ..images import read_image

    return read_image(sample_path(name))
