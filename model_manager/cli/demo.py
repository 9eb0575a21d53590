"""``model-manager demo``: one command that shows a model getting faster and staying correct.

Makes a short clip (a pan and zoom over a shipped photo, with sound), loads the model with the
requested optimization (``auto``: built and cached on the first run, its steps shown on stderr; a
cache hit afterwards) and eager FP32 beside it, times both with the one harness on the clip's
frames, compares their outputs (PSNR), then runs the whole clip through ``process_frames``.

Two speedups are reported and named apart: the one the build measured when it chose the strategy
(in the build process, ``decision_speedup``) and the one this run measures, eager and optimized
interleaved on the clip's first frame (``speedup``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..config import ModelConfig
from ..errors import InvalidInputError
from ..images import to_batch
from ..manager import ModelManager
from ..optim.benchmark import benchmark_interleaved
from ..optim.quality import compare
from ..runners.base import Runner
from ..video import process_frames
from ..video.clip import write_clip
from ..video.io import VideoWriter, probe_video, read_frames
from .display import clear_build_line


async def demo(args: argparse.Namespace, config: ModelConfig) -> dict[str, Any]:
    if args.frames < 2 or args.size < 16:
        raise InvalidInputError(f"expected --frames >= 2 and --size >= 16, got {args.frames} and {args.size}")
    return await run_demo(
        config,
        args.out,
        args.model_type,
        args.name,
        args.optimization,
        args.frames,
        args.size,
        progress=not (args.json or args.quiet),
        checkpoint=args.checkpoint,
    )


def _inputs(runner: Runner, frames: list[np.ndarray]) -> tuple[np.ndarray, ...]:
    """The model's inputs for the clip's first frame (and the next, with t = 0.5, to interpolate)."""
    lo_hi = runner.input_spec[0].value_range
    if runner.descriptor.model_type == "interpolation":
        t = np.full((1, 1, 1, 1), 0.5, dtype=np.float32)
        return to_batch(frames[0], lo_hi), to_batch(frames[1], lo_hi), t
    return (to_batch(frames[0], lo_hi),)


async def _process_clip(
    runner: Runner, clip: Path, out: Path, factor: int, progress: bool
) -> tuple[int, float]:
    """Run the clip through the runner into ``out``; (frames written, seconds)."""
    from tqdm import tqdm

    info = probe_video(clip)
    start = time.perf_counter()
    clear_build_line()
    with (
        VideoWriter(out, info.fps * factor, audio_from=clip) as writer,
        tqdm(desc="processing clip", unit="frame", disable=not progress) as bar,
    ):
        async for frame in process_frames(runner, read_frames(clip), factor=max(factor, 2)):
            writer.write(frame)
            bar.update()
    return writer.frames, time.perf_counter() - start


async def run_demo(
    config: ModelConfig,
    out_dir: Path,
    model_type: str = "super_resolution",
    name: str = "default",
    optimization: str = "auto",
    frames: int = 24,
    size: int = 128,
    progress: bool = True,
    checkpoint: Path | None = None,
) -> dict[str, Any]:
    """Build (or load) the optimized model, measure it against eager FP32, process a clip.

    ``progress`` draws the clip's frame bar; build steps go to :mod:`model_manager.progress`.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    clip = write_clip(out_dir / "demo_input.mp4", count=frames, size=(size, size))
    clip_frames = list(read_frames(clip))
    async with ModelManager(config) as manager:
        if checkpoint is not None:
            await manager.register_checkpoint(model_type, name, checkpoint)
        start = time.perf_counter()
        runner = await manager.load_optimized_model(model_type, name, optimization)
        load_s = time.perf_counter() - start
        eager = await manager.load_optimized_model(model_type, name, "none")
        inputs = _inputs(runner, clip_frames)
        timings = benchmark_interleaved(
            {"eager": lambda: eager(*inputs), "optimized": lambda: runner(*inputs)},
            rounds=30,
            max_seconds=6.0,
        )
        quality = compare(eager(*inputs), runner(*inputs), runner.descriptor.output.value_range)
        factor = 2 if model_type == "interpolation" else 1
        out = out_dir / f"demo_{model_type}_{runner.info.name}.mp4"
        written, seconds = await _process_clip(runner, clip, out, factor, progress)
        info = runner.info
        return {
            "model": f"{model_type}/{info.name}",
            "strategy": info.strategy,
            "backend": info.backend,
            "reason": info.decision.get("reason", f"asked for {optimization}"),
            "cache_hit": info.cache_hit,
            "load_seconds": round(load_s, 2),
            "build_seconds": info.build_seconds,
            "cache_path": info.artifact_path,
            "eager_ms": timings["eager"].to_dict(),
            "optimized_ms": timings["optimized"].to_dict(),
            "speedup": round(timings["optimized"].ratio_to(timings["eager"]), 2),
            "decision_speedup": None if info.speedup is None else round(info.speedup, 2),
            "psnr_db": round(quality.psnr_db, 2),
            "max_abs_error": quality.max_abs_error,
            "input": str(clip),
            "output": str(out),
            "frames_in": len(clip_frames),
            "frames_out": written,
            "fps": round(written / seconds, 1),
        }
