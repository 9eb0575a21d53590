"""``model-manager demo``: one command that shows a model getting faster and staying correct.

Makes a short clip (a pan and zoom over a shipped photo, with sound), loads the model with the
requested optimization (``auto``: built and cached on the first run, a cache hit afterwards) and
eager FP32 beside it, times both with the one harness on the clip's frames, compares their
outputs (PSNR), then runs the whole clip through ``process_frames`` and writes the result.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import numpy as np

from .config import ModelConfig
from .images import to_batch
from .manager import ModelManager
from .optim.benchmark import benchmark_interleaved
from .optim.quality import compare
from .runners.base import Runner
from .video import process_frames
from .video.clip import write_clip
from .video.io import VideoWriter, probe_video, read_frames


def _inputs(runner: Runner, frames: list[np.ndarray]) -> tuple[np.ndarray, ...]:
    """The model's inputs for the clip's first frame (and the next, with t = 0.5, to interpolate)."""
    lo_hi = runner.input_spec[0].value_range
    if runner.descriptor.model_type == "interpolation":
        t = np.full((1, 1, 1, 1), 0.5, dtype=np.float32)
        return to_batch(frames[0], lo_hi), to_batch(frames[1], lo_hi), t
    return (to_batch(frames[0], lo_hi),)


async def _with_elapsed_bar(work: Awaitable[Runner], label: str, progress: bool) -> Runner:
    """Await ``work`` under a progress bar that shows the elapsed time (a build's length is unknown)."""
    from tqdm import tqdm

    task = asyncio.ensure_future(work)
    with tqdm(desc=label, bar_format="{desc}: {elapsed}", disable=not progress) as bar:
        while not task.done():
            await asyncio.wait({task}, timeout=0.5)
            bar.refresh()
    return task.result()


async def _process_clip(
    runner: Runner, clip: Path, out: Path, factor: int, progress: bool
) -> tuple[int, float]:
    """Run the clip through the runner into ``out``; (frames written, seconds)."""
    from tqdm import tqdm

    info = probe_video(clip)
    start = time.perf_counter()
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
) -> dict[str, Any]:
    """Build (or load) the optimized model, measure it against eager FP32, process a clip."""
    out_dir.mkdir(parents=True, exist_ok=True)
    clip = write_clip(out_dir / "demo_input.mp4", count=frames, size=(size, size))
    clip_frames = list(read_frames(clip))
    async with ModelManager(config) as manager:
        start = time.perf_counter()
        runner = await _with_elapsed_bar(
            manager.load_optimized_model(model_type, name, optimization), f"loading {optimization}", progress
        )
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
            "psnr_db": round(quality.psnr_db, 2),
            "max_abs_error": quality.max_abs_error,
            "input": str(clip),
            "output": str(out),
            "frames_in": len(clip_frames),
            "frames_out": written,
            "fps": round(written / seconds, 1),
        }


def format_demo(r: dict[str, Any]) -> str:
    """The demo's one table, for a person."""
    e, o = r["eager_ms"], r["optimized_ms"]
    cache = "hit" if r["cache_hit"] else ("built and stored" if r["cache_hit"] is False else "not cached")
    rows = [
        ("model", r["model"]),
        ("strategy", f"{r['strategy']} ({r['backend']})"),
        ("why", r["reason"]),
        ("eager FP32 (median / p90)", f"{e['median_ms']:.1f} / {e['p90_ms']:.1f} ms"),
        ("optimized (median / p90)", f"{o['median_ms']:.1f} / {o['p90_ms']:.1f} ms"),
        ("speedup (same run)", f"{r['speedup']:.2f}x"),
        ("PSNR vs FP32", f"{r['psnr_db']:.1f} dB (max abs error {r['max_abs_error']:.2g})"),
        ("clip", f"{r['frames_in']} frames in, {r['frames_out']} out, {r['fps']:.1f} frames/s"),
        ("cache", f"{cache}, load {r['load_seconds']:.2f} s"),
        ("cache path", str(r["cache_path"] or "-")),
        ("input", r["input"]),
        ("output", r["output"]),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)
