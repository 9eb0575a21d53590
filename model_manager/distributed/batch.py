"""Batch video on Ray Data: ``FrameProcessor`` for ``Dataset.map_batches`` and ``run_on_ray``.

Each actor opens one ``ModelManager`` (on its node's cache folder) and loads the runner once, in
its constructor; every batch then goes through the same ``process_frames`` the single-process
pipeline uses, so tiling, batching and interpolation are the library's, not a copy. The artifact
is built once, on the driver, with the actors' own configuration (same thread count, so the same
cache key), and shipped to them through the object store (``shipping.py``): on a node whose cache
already holds it (a shared folder, or the driver's own node) the arrival is a verified no-op.

Order: rows carry the source ``index``; outputs carry ``index x factor + step``; the writer checks
the order (``frames_dataset.ordered_frames``), with Ray Data's ``preserve_order`` on.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ..config import ModelConfig
from ..descriptor import ShapeRange
from ..errors import InvalidInputError
from ..images import read_image

log = logging.getLogger(__name__)


class FrameProcessor:
    """A Ray Data callable class: one manager and one runner per actor, frames in, frames out."""

    def __init__(
        self,
        model_type: str,
        name: str,
        optimization: str,
        config: ModelConfig,
        shipped: Any = None,
        factor: int = 2,
        batch_size: int = 4,
        shape_range: ShapeRange | None = None,
    ) -> None:
        from ..manager import ModelManager
        from .shipping import receive

        receive(shipped, config.cache_dir)  # a verified no-op where the entry is already there
        self.factor, self.batch_size = factor, batch_size
        self._loop = asyncio.new_event_loop()
        self._manager = ModelManager(config)
        self.runner = self._loop.run_until_complete(
            self._manager.load_optimized_model(model_type, name, optimization, shape_range=shape_range)
        )
        self.interpolate = self.runner.descriptor.model_type == "interpolation"
        log.info("actor ready: %s/%s [%s]", model_type, name, self.runner.info.strategy)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Process one batch of rows; outputs carry the index they are written at."""
        index = [int(i) for i in batch["index"]]
        frames = _frames(batch, "frame", "path")
        if not self.interpolate:
            return _rows(index, self._run(frames))
        nexts = _frames(batch, "next", "next_path")
        more = [bool(m) for m in batch["has_next"]]
        if all(b == a + 1 for a, b in itertools.pairwise(index)):  # one run: the calls batched together
            return self._sequence(index[0], frames, nexts[-1], more[-1])
        out_index: list[int] = []
        outputs: list[np.ndarray] = []
        for i, frame, following, has_next in zip(index, frames, nexts, more):
            produced = self._sequence(i, [frame], following, has_next)
            out_index += produced["index"].tolist()
            outputs += list(produced["frame"])
        return _rows(out_index, outputs)

    def _sequence(
        self, first: int, frames: list[np.ndarray], following: np.ndarray, has_next: bool
    ) -> dict[str, np.ndarray]:
        """Consecutive source frames and the one after them (if any) interpolated in one run; the
        frame after them is dropped from the output (it opens the next row's sequence)."""
        produced = self._run([*frames, following]) if has_next else self._run(frames)
        if has_next:
            produced = produced[:-1]
        return _rows([first * self.factor + k for k in range(len(produced))], produced)

    def info(self) -> dict[str, Any]:
        """What this actor serves (strategy, cache hit, ...)."""
        return self.runner.info.to_dict()

    def _run(self, frames: Sequence[np.ndarray]) -> list[np.ndarray]:
        """``process_frames`` over these frames, collected."""
        from ..video import process_frames

        async def collect() -> list[np.ndarray]:
            stream = process_frames(self.runner, list(frames), batch_size=self.batch_size, factor=self.factor)
            return [f async for f in stream]

        return self._loop.run_until_complete(collect())


def _frames(batch: dict[str, np.ndarray], frame_key: str, path_key: str) -> list[np.ndarray]:
    """The batch's frames: decoded ones as they are, image paths read here (on the actor)."""
    if frame_key in batch:
        return [np.asarray(f, dtype=np.uint8) for f in batch[frame_key]]
    return [read_image(p) for p in batch[path_key]]


def _rows(index: list[int], frames: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Output columns; frames of different sizes go as an object column."""
    if len({f.shape for f in frames}) == 1:
        column = np.stack(frames)
    else:
        column = np.empty(len(frames), dtype=object)
        for k, frame in enumerate(frames):
            column[k] = frame
    return {"index": np.asarray(index, dtype=np.int64), "frame": column}


@dataclass(frozen=True)
class RayRun:
    """What ``run_on_ray`` did: frames in and out, seconds, and what the actors served."""

    frames_in: int
    frames_out: int
    seconds: float
    build_seconds: float
    actors: int
    strategy: str | None


def run_on_ray(
    model_type: str,
    name: str,
    source: Path,
    output: Path,
    *,
    config: ModelConfig,
    optimization: str = "auto",
    actors: int = 2,
    threads_per_actor: int = 1,
    batch_size: int = 4,
    factor: int = 2,
    shape_range: ShapeRange | None = None,
    address: str | None = None,
) -> RayRun:
    """A folder of images or a video through Ray Data with ``actors`` actors; outputs written in order.

    Connects to ``address`` (a running cluster) or starts a local Ray. The artifact is built (or
    loaded) once on the driver with the actors' configuration and shipped to them.
    """
    import ray

    from .frames_dataset import ordered_frames, read_source, write_folder, write_video
    from .shipping import build_once, ship_to_ray

    if actors < 1:
        raise InvalidInputError(f"expected actors >= 1, got {actors}")
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    actor_config = config.replace(num_threads=threads_per_actor)
    started = time.perf_counter()
    shipped = asyncio.run(build_once(actor_config, model_type, name, optimization, shape_range))
    build_s = time.perf_counter() - started
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    dataset, info = read_source(source, pairs=model_type == "interpolation")
    processed = dataset.map_batches(
        FrameProcessor,
        fn_constructor_kwargs={
            "model_type": model_type,
            "name": name,
            "optimization": optimization,
            "config": actor_config,
            "shipped": ship_to_ray(shipped),
            "factor": factor,
            "batch_size": batch_size,
            "shape_range": shape_range,
        },
        batch_size=batch_size,
        batch_format="numpy",
        concurrency=actors,
        num_cpus=threads_per_actor,
    )
    frames = ordered_frames(processed)
    if info.kind == "video":
        fps = (info.fps or Fraction(25)) * (factor if model_type == "interpolation" else 1)
        written = write_video(frames, output, fps, source)
    else:
        written = write_folder(frames, output)
    return RayRun(info.frames, written, time.perf_counter() - started, build_s, actors, _served(shipped))


def _served(shipped: Any) -> str:
    """The strategy the shipped entry serves (its manifest's decision), ``none`` without an entry."""
    if shipped is None:
        return "none"
    from ..cache.manifest import MANIFEST_NAME, Manifest

    manifest = Manifest.from_json(shipped.files[MANIFEST_NAME].decode(), Path(shipped.relpath))
    return str(manifest.decision.get("chosen") or manifest.strategy)
