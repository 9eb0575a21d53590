"""Batch video on Ray Data vs one process (issue 19, item 4): frames per second, outputs compared.

A folder of ``--frames`` frames of a shipped photo under the demo's pan and zoom is processed by:

- **single**: one process, ``process_frames`` (batch 4) with 2 threads, reading and writing PNGs;
- **ray-1** / **ray-2**: ``run_on_ray`` with 1 and 2 actors of 1 thread each on a local Ray.

Each contender runs ``--repeats`` times through the one harness (whole runs, no warm-up; the
artifact is built before timing, for each contender's thread count; a Ray run includes starting
its actors and loading the runner in each); frames/s is the frame count over the median seconds.
Outputs are compared with the single process's (max abs difference in uint8 levels). One
machine, so Ray's actors share its cores with the driver.

    python benchmarks/ray_batch.py [--frames 200] [--size 256] [--strategy onnx] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from model_manager import ModelConfig, ModelManager
from model_manager.images import read_image, write_image
from model_manager.optim.benchmark import BenchmarkResult, benchmark, machine_info
from model_manager.video import process_frames
from model_manager.video.clip import pan_zoom_frames

MODEL = ("super_resolution", "default")


def make_folder(root: Path, count: int, size: int) -> Path:
    """``count`` frames of the astronaut photo under a pan and zoom, as PNGs."""
    folder = root / "frames"
    for i, frame in enumerate(pan_zoom_frames("astronaut", count, (size, size))):
        write_image(folder / f"{i:06d}.png", frame)
    return folder


async def single(config: ModelConfig, strategy: str, folder: Path, out: Path) -> None:
    """The single-process pipeline: read, process_frames, write."""
    async with ModelManager(config) as m:
        runner = await m.load_optimized_model(*MODEL, strategy)
        frames = (read_image(p) for p in sorted(folder.glob("*.png")))
        out.mkdir(parents=True, exist_ok=True)
        k = 0
        async for frame in process_frames(runner, frames, batch_size=4):
            write_image(out / f"{k:06d}.png", frame)
            k += 1


async def prebuild(config: ModelConfig, strategy: str) -> None:
    """Build the artifact for this configuration (untimed)."""
    async with ModelManager(config) as m:
        await m.load_optimized_model(*MODEL, strategy)


def on_ray(config: ModelConfig, strategy: str, folder: Path, out: Path, actors: int) -> None:
    """The same folder through Ray Data."""
    from model_manager.distributed.batch import run_on_ray

    run_on_ray(*MODEL, folder, out, config=config, optimization=strategy, actors=actors, batch_size=4)


def max_diff(a: Path, b: Path) -> int:
    """Largest uint8 difference between the two output folders, frame by frame."""
    pairs = zip(sorted(a.glob("*.png")), sorted(b.glob("*.png")))
    return max(int(np.abs(read_image(x).astype(int) - read_image(y).astype(int)).max()) for x, y in pairs)


def row(name: str, result: BenchmarkResult, frames: int, diff: int | None) -> dict[str, Any]:
    return {
        "contender": name,
        "median_s": round(result.median_ms / 1000, 2),
        "p90_s": round(result.p90_ms / 1000, 2),
        "frames_per_s": round(frames / (result.median_ms / 1000), 2),
        "max_abs_diff_vs_single": diff,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--strategy", default="onnx")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folder = make_folder(root, args.frames, args.size)
        base = ModelConfig(cache_dir=root / "cache", device="cpu")
        outs = {name: root / name for name in ("single", "ray-1", "ray-2")}
        runs = {
            "single": lambda: asyncio.run(
                single(base.replace(num_threads=2), args.strategy, folder, outs["single"])
            ),
            "ray-1": lambda: on_ray(base, args.strategy, folder, outs["ray-1"], 1),
            "ray-2": lambda: on_ray(base, args.strategy, folder, outs["ray-2"], 2),
        }
        for threads in (2, 1):  # build (or load) each contender's artifact before any timing
            asyncio.run(prebuild(base.replace(num_threads=threads), args.strategy))
        for name, run in runs.items():
            result = benchmark(run, label=name, warmup=0, iterations=args.repeats)
            diff = None if name == "single" else max_diff(outs["single"], outs[name])
            rows.append(row(name, result, args.frames, diff))
            print(rows[-1], flush=True)
    ray.shutdown()
    report = {"frames": args.frames, "size": args.size, "strategy": args.strategy, "rows": rows}
    report["machine"] = machine_info()
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
