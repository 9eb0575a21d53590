"""Calibration data for static INT8: readers over real sample photos or the user's own arrays.

ONNX Runtime's calibrators pull one feed dict at a time from a ``CalibrationDataReader``; these
readers validate what they hand out against the model's descriptor first, so bad calibration
data fails with a clear error instead of a shape error deep inside ONNX Runtime. The default set
is two quarters of each of the package's sample photos (top-left, bottom-right) at the calibration
size; the other two quarters are held out for the quality checks (:func:`held_out_set`), so a
gate is never checked on pixels calibration saw.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np

from ..descriptor import ModelDescriptor
from ..errors import InvalidInputError
from ..samples import CALIBRATION_QUARTERS, HELD_OUT_QUARTERS, SAMPLE_NAMES, Quarter, sample_batch

DEFAULT_CALIBRATION_SAMPLES = 8
Feed = dict[str, np.ndarray]


def sample_calibration_set(
    descriptor: ModelDescriptor, size: tuple[int, int], count: int = DEFAULT_CALIBRATION_SAMPLES
) -> list[list[np.ndarray]]:
    """``count`` single-item input lists from the calibration quarters of the sample photos.

    Item i is photo i % 4, quarter ``CALIBRATION_QUARTERS[(i // 4) % 2]``; timesteps of an
    interpolation model spread over 0..1. The held-out quarters are for :func:`held_out_set`.
    """
    return _photo_items(descriptor, size, count, CALIBRATION_QUARTERS, lambda i: (i + 0.5) / count)


def held_out_set(
    descriptor: ModelDescriptor, size: tuple[int, int], count: int, start: int = 0
) -> list[list[np.ndarray]]:
    """Items ``start .. start + count`` from the quarters of the photos calibration never sees.

    Quality gates are checked on these (the first four: one per photo), and a result close to its
    gate is checked again on the next ones. Timesteps cycle 0.5, 0.25, 0.75.
    """
    items = _photo_items(
        descriptor, size, start + count, HELD_OUT_QUARTERS, lambda i: (0.5, 0.25, 0.75)[i % 3]
    )
    return items[start:]


def _photo_items(
    descriptor: ModelDescriptor,
    size: tuple[int, int],
    count: int,
    quarters: tuple[Quarter, ...],
    timestep: Callable[[int], float],
) -> list[list[np.ndarray]]:
    if count < 1:
        raise InvalidInputError(f"expected at least 1 sample, got {count}")
    per_round = len(SAMPLE_NAMES) * len(quarters)
    batch = sample_batch(descriptor, size, batch=min(count, per_round), quarters=quarters)
    items = []
    for i in range(count):
        inputs = [x[i % per_round : i % per_round + 1].copy() for x in batch]
        for spec, x in zip(descriptor.inputs, inputs):
            if spec.kind == "scalar":
                x[...] = timestep(i)
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
