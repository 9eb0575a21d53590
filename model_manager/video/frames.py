"""The async frame pipeline: decode ahead, batch, infer in a worker thread, yield frames in order.

``process_frames`` is what the application's video code and the CLI use. Three stages overlap:
iterating the source (decoding, in a worker thread, up to ``prefetch`` frames ahead), inference
of batch k + 1 (in the runner's worker thread), and the caller's handling of batch k's frames
(encoding) between iterations of ``async for``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InvalidInputError
from ..images import from_batch, to_batch
from ..runners.base import Runner
from .tiling import max_image_size, tiled_infer

_END = object()


def _next(it: Iterator[Any]) -> Any:
    """next(it), or the end marker (StopIteration cannot cross asyncio.to_thread)."""
    return next(it, _END)


@dataclass(frozen=True)
class _Item:
    """One output frame: a source frame passed through, or model inputs (frames and a timestep)."""

    frame: np.ndarray | None = None
    inputs: tuple[np.ndarray, ...] = ()
    timestep: float | None = None

    @property
    def size(self) -> tuple[int, ...]:
        return tuple(self.inputs[0].shape[:2])


async def _prefetched(
    frames: Iterable[np.ndarray] | AsyncIterable[np.ndarray], depth: int
) -> AsyncIterator[Any]:
    """The frames, read ahead by a task (a worker thread for a blocking iterable)."""
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=depth)

    async def produce() -> None:
        try:
            if isinstance(frames, AsyncIterable):
                async for frame in frames:
                    await queue.put(frame)
            else:
                it: Iterator[np.ndarray] = iter(frames)
                while (frame := await asyncio.to_thread(_next, it)) is not _END:
                    await queue.put(frame)
        except BaseException as exc:  # re-raised in the consumer, in order
            await queue.put(exc)
        await queue.put(_END)

    task = asyncio.create_task(produce())
    try:
        while (frame := await queue.get()) is not _END:
            if isinstance(frame, BaseException):
                raise frame
            yield frame
    finally:
        task.cancel()


async def _items(source: AsyncIterator[Any], interpolate: bool, factor: int) -> AsyncIterator[_Item]:
    """Output frames in order: each frame to process, or for interpolation the sources and in-betweens."""
    previous: np.ndarray | None = None
    async for frame in source:
        if not interpolate:
            yield _Item(inputs=(frame,))
            continue
        if previous is not None:
            if previous.shape != frame.shape:
                raise InvalidInputError(f"frames change size from {previous.shape} to {frame.shape}")
            yield _Item(frame=previous)
            for k in range(1, factor):
                yield _Item(inputs=(previous, frame), timestep=k / factor)
        previous = frame
    if previous is not None:
        yield _Item(frame=previous)


async def _batches(items: AsyncIterator[_Item], batch_size: int) -> AsyncIterator[list[_Item]]:
    """Consecutive items with at most ``batch_size`` model calls of one frame size each."""
    batch: list[_Item] = []
    calls = 0
    async for item in items:
        if item.inputs and calls and (calls == batch_size or item.size != _first_size(batch)):
            yield batch
            batch, calls = [], 0
        batch.append(item)
        calls += bool(item.inputs)
    if batch:
        yield batch


def _first_size(batch: list[_Item]) -> tuple[int, ...]:
    return next(i.size for i in batch if i.inputs)


def _run_batch(runner: Runner, batch: list[_Item], tile: int | None, overlap: int) -> list[np.ndarray]:
    """Model outputs of the batch's calls as HxWx3 uint8 frames, passthrough frames in place."""
    calls = [i for i in batch if i.inputs]
    if not calls:
        return [i.frame for i in batch if i.frame is not None]
    spec, out_spec = runner.input_spec[0], runner.descriptor.output
    inputs = [
        np.concatenate([to_batch(c.inputs[k], spec.value_range) for c in calls])
        for k in range(len(calls[0].inputs))
    ]
    if calls[0].timestep is not None:
        inputs.append(np.array([c.timestep for c in calls], dtype=np.float32).reshape(-1, 1, 1, 1))
    if tile is not None:
        output = tiled_infer(runner, inputs[0], runner.descriptor.scale, tile, overlap)
    else:
        output = runner(*inputs)
    results = iter(from_batch(output, out_spec.value_range))
    return [next(results) if i.inputs else i.frame for i in batch]  # type: ignore[misc]


def _tile_for(runner: Runner, tile: int | None) -> int | None:
    """The tile size to use: the caller's, else the profile's max size for super-resolution."""
    if tile is not None or runner.descriptor.scale == 1:
        return tile
    return max_image_size(runner.descriptor)


async def process_frames(
    runner: Runner,
    frames: Iterable[np.ndarray] | AsyncIterable[np.ndarray],
    *,
    batch_size: int = 4,
    factor: int = 2,
    tile: int | None = None,
    overlap: int = 16,
    prefetch: int = 8,
) -> AsyncIterator[np.ndarray]:
    """Run ``runner`` over HxWx3 uint8 ``frames``; yield HxWx3 uint8 frames in order.

    Single-frame models yield one frame per input. Interpolation models yield each source frame
    followed by ``factor - 1`` frames at t = k / factor towards the next (so N frames become
    (N - 1) * factor + 1). Super-resolution frames larger than the profile's max size (or than
    ``tile`` when given) are processed in overlapping tiles and blended.
    """
    if batch_size < 1:
        raise InvalidInputError(f"expected batch_size >= 1, got {batch_size}")
    if (tile is not None and tile < 1) or overlap < 0:
        raise InvalidInputError(
            f"expected tile >= 1 (or None) and overlap >= 0, got tile {tile}, overlap {overlap}"
        )
    interpolate = runner.descriptor.model_type == "interpolation"
    if interpolate and factor < 2:
        raise InvalidInputError(f"expected an interpolation factor >= 2, got {factor}")
    limit = _tile_for(runner, tile)
    source = _prefetched(frames, max(1, prefetch))
    in_flight: list[asyncio.Task[list[np.ndarray]]] = []  # at most two: the batch yielded, the next
    try:
        async for batch in _batches(_items(source, interpolate, factor), batch_size):
            use_tile = limit if limit is not None and _largest_side(batch) > limit else None
            in_flight.append(
                asyncio.create_task(asyncio.to_thread(_run_batch, runner, batch, use_tile, overlap))
            )
            if len(in_flight) == 2:
                for frame in await in_flight.pop(0):
                    yield frame
        while in_flight:
            for frame in await in_flight.pop(0):
                yield frame
    finally:  # an error or an early stop: the batch still running is not awaited by anyone
        for task in in_flight:
            _discard(task)


def _discard(task: asyncio.Task[Any]) -> None:
    """Cancel a task nobody will await and retrieve its outcome, so asyncio logs no stray error."""
    task.cancel()
    task.add_done_callback(lambda t: t.cancelled() or t.exception())


def _largest_side(batch: list[_Item]) -> int:
    """Largest H or W among the batch's model calls (0 when it only passes frames through)."""
    return max((max(i.size) for i in batch if i.inputs), default=0)
