"""Calibration data for static INT8: readers over real sample photos or the user's own arrays.

ONNX Runtime's calibrators pull one feed dict at a time from a ``CalibrationDataReader``; these
readers validate what they hand out against the model's descriptor first, so bad calibration
data fails with a clear error instead of a shape error deep inside ONNX Runtime. The default set
is the package's sample photos (cropped at several offsets) at the profile's opt size, bounded
in count because MinMax calibration keeps every intermediate tensor in memory.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from ..descriptor import ModelDescriptor
from ..errors import InvalidInputError
from ..samples import SAMPLE_NAMES, sample_batch

DEFAULT_CALIBRATION_SAMPLES = 8
Feed = dict[str, np.ndarray]


def sample_calibration_set(
    descriptor: ModelDescriptor, size: tuple[int, int], count: int = DEFAULT_CALIBRATION_SAMPLES
) -> list[list[np.ndarray]]:
    """``count`` single-item input lists made from the sample photos (each photo, then other timesteps)."""
    if count < 1:
        raise InvalidInputError(f"expected at least 1 calibration sample, got {count}")
    batch = sample_batch(descriptor, size, batch=len(SAMPLE_NAMES))
    items = []
    for i in range(count):
        photo = i % len(SAMPLE_NAMES)
        inputs = [x[photo : photo + 1].copy() for x in batch]
        for spec, x in zip(descriptor.inputs, inputs):
            if spec.kind == "scalar":  # spread timesteps over 0..1 for interpolation
                x[...] = (i + 0.5) / count
        items.append(inputs)
    return items


def check_calibration_data(descriptor: ModelDescriptor, data: Sequence[Sequence[np.ndarray]]) -> None:
    """Raise InvalidInputError unless every item matches the descriptor's inputs."""
    if len(data) == 0:
        raise InvalidInputError("calibration data is empty: expected at least one set of model inputs")
    for n, item in enumerate(data):
        if len(item) != len(descriptor.inputs):
            names = [s.name for s in descriptor.inputs]
            raise InvalidInputError(
                f"calibration item {n}: expected {len(names)} arrays {names}, got {len(item)}"
            )
        for spec, x in zip(descriptor.inputs, item):
            _check_array(n, spec.name, spec.shape, spec.channels, x)


def _check_array(
    n: int, name: str, shape: tuple[int | str, ...], channels: int | None, x: np.ndarray
) -> None:
    where = f"calibration item {n}, input {name!r}"
    if not isinstance(x, np.ndarray) or x.dtype != np.float32:
        raise InvalidInputError(
            f"{where}: expected a float32 numpy array, got {getattr(x, 'dtype', type(x))}"
        )
    if x.ndim != len(shape):
        raise InvalidInputError(f"{where}: expected rank {len(shape)}, got shape {x.shape}")
    if channels is not None and x.shape[1] != channels:
        raise InvalidInputError(f"{where}: expected {channels} channels, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise InvalidInputError(f"{where}: expected finite values")


class ArrayCalibrationReader:
    """Hands ONNX Runtime one validated feed dict per calibration item; can be rewound.

    ONNX Runtime's calibrators only call ``get_next`` (its ``CalibrationDataReader`` accepts any
    class that has it), so this does not subclass it and importing it does not import onnxruntime.
    """

    def __init__(self, descriptor: ModelDescriptor, data: Sequence[Sequence[np.ndarray]]) -> None:
        check_calibration_data(descriptor, data)
        self.names = [s.name for s in descriptor.inputs]
        self.data = [list(item) for item in data]
        self._given = 0
        self._it: Iterator[Feed] = self._feeds()

    def _feeds(self) -> Iterator[Feed]:
        for item in self.data:
            yield dict(zip(self.names, item))

    def get_next(self) -> Feed | None:
        feed = next(self._it, None)
        if feed is not None:
            self._given += 1
        return feed

    def has_more(self) -> bool:
        return self._given < len(self.data)

    def rewind(self) -> None:
        self._given = 0
        self._it = self._feeds()

    def __len__(self) -> int:
        return len(self.data)
