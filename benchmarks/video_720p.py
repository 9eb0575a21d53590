"""Video-sized inputs: 1280x720 calls and a 720p x2 interpolation through ``process_frames``.

Issue 17, item 5. In one fresh process per run, with one cache folder built by ``auto`` first:

- **calls**: interpolation and style transfer at 1280x720 (the runner pads as the model needs:
  IFNet to 1280x768), eager FP32 (``none``) against what ``auto`` serves, interleaved by the
  one harness; PSNR of the served output against eager's;
- **video**: a clip of ``--frames`` 1280x720 frames made from a shipped photo (the demo's slow pan
  and zoom) interpolated x2 by ``process_frames`` (batch 4, the video pipeline's default): output
  frames per second of the whole run, ``none`` and ``auto``, ``--repeats`` runs each, alternating.

``--seeded rife-4.26`` adds calls of that catalogue entry with its architecture's seeded weights
(registered as a checkpoint; no published weights here); ``--frames 0`` skips the video.

Only the public API is used, so the same file measures an older checkout (``PYTHONPATH=old``) for
the "before" column.

    python benchmarks/video_720p.py --json out.json [--label after]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model_manager import ModelConfig, ModelManager
from model_manager.optim.benchmark import benchmark_interleaved, format_table, machine_info
from model_manager.optim.quality import compare
from model_manager.samples import sample_batch
from model_manager.video import process_frames
from model_manager.video.clip import pan_zoom_frames

SIZE = (720, 1280)
CALL_MODELS = ("interpolation", "style_transfer")
STRATEGIES = ("none", "auto")


async def _calls(
    manager: ModelManager, model_type: str, rounds: int, name: str = "default"
) -> dict[str, Any]:
    """One 1280x720 call of eager FP32 and of what ``auto`` serves, timed interleaved."""
    runners = {s: await manager.load_optimized_model(model_type, name, s) for s in STRATEGIES}
    inputs = [torch.from_numpy(x) for x in sample_batch(runners["none"].descriptor, SIZE)]
    fns = {s: functools.partial(r, *inputs) for s, r in runners.items()}
    reference = fns["none"]()
    psnr = compare(reference, fns["auto"](), runners["none"].descriptor.output.value_range).psnr_db
    timings = benchmark_interleaved(fns, rounds=rounds)
    eager = timings["none"].median_ms
    return {
        "model": f"{model_type}/{name}",
        "served": runners["auto"].info.strategy,
        "psnr_db_vs_eager": round(psnr, 2),
        "rows": {
            s: {
                "median_ms": round(t.median_ms, 1),
                "p90_ms": round(t.p90_ms, 1),
                "x_eager": round(eager / t.median_ms, 3),
            }
            for s, t in timings.items()
        },
    }


async def _video_fps(manager: ModelManager, frames: list[np.ndarray], repeats: int) -> dict[str, Any]:
    """Frames per second of a x2 interpolation of ``frames`` through ``process_frames``."""
    runners = {s: await manager.load_optimized_model("interpolation", "default", s) for s in STRATEGIES}
    seconds: dict[str, list[float]] = {s: [] for s in STRATEGIES}
    count = 0
    for _ in range(repeats):
        for s, runner in runners.items():
            started = time.perf_counter()
            count = len([f async for f in process_frames(runner, frames, factor=2)])
            seconds[s].append(time.perf_counter() - started)
    return {
        "frames_in": len(frames),
        "frames_out": count,
        "served": runners["auto"].info.strategy,
        "fps": {s: round(count / statistics.median(v), 3) for s, v in seconds.items()},
        "seconds": seconds,
    }


async def _register_seeded(manager: ModelManager, name: str, folder: Path) -> None:
    """Register catalogue interpolation entry ``name`` with its architecture's seeded init."""
    from model_manager.models import all_architectures
    from model_manager.registry import ModelRegistry

    entry = ModelRegistry.with_builtins().get("interpolation", name)
    module = all_architectures()[entry.architecture].create(entry.hyperparameters, seed=0).module
    path = folder / f"{name}-seeded.pth"
    torch.save(module.state_dict(), path)
    await manager.register_checkpoint("interpolation", name, path)


async def run(
    threads: int, rounds: int, frames: int, repeats: int, call_models: list[str], seeded: list[str]
) -> dict[str, Any]:
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as cache:
        config = ModelConfig(cache_dir=Path(cache), num_threads=threads)
        async with ModelManager(config) as manager:
            for name in seeded:
                await _register_seeded(manager, name, Path(cache))
                await manager.load_optimized_model("interpolation", name, "auto")
            for model_type in {*call_models, "interpolation"} if frames else call_models:
                await manager.load_optimized_model(model_type, "default", "auto")  # builds before timing
            calls = [await _calls(manager, m, rounds) for m in call_models]
            calls += [await _calls(manager, "interpolation", rounds, name) for name in seeded]
            if not frames:
                return {"calls": calls, "video": None}
            clip = pan_zoom_frames("astronaut", frames, SIZE)
            video = await _video_fps(manager, clip, repeats)
    return {"calls": calls, "video": video}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=8, help="timed calls per contender at 1280x720")
    ap.add_argument("--frames", type=int, default=9, help="source frames of the clip (0: calls only)")
    ap.add_argument("--repeats", type=int, default=2, help="process_frames runs per strategy")
    ap.add_argument("--calls", nargs="*", default=list(CALL_MODELS), help="model types timed per call")
    ap.add_argument(
        "--seeded", nargs="*", default=[], help="catalogue interpolation names timed with seeded weights"
    )
    ap.add_argument("--label", default="")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    result = asyncio.run(run(args.threads, args.rounds, args.frames, args.repeats, args.calls, args.seeded))
    out = {"machine": machine_info(), "threads": args.threads, "label": args.label, **result}
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    rows = [
        [
            c["model"],
            s,
            f"{r['median_ms']} / {r['p90_ms']}",
            f"{r['x_eager']}x",
            c["served"],
            f"{c['psnr_db_vs_eager']}",
        ]
        for c in result["calls"]
        for s, r in c["rows"].items()
    ]
    print(
        format_table(
            rows, ("model 1280x720", "strategy", "median / p90 ms", "x eager", "auto served", "PSNR dB")
        )
    )
    v = result["video"]
    if v is None:  # --frames 0: calls only
        return 0
    print(
        f"process_frames 720p x2 interpolation, {v['frames_in']} -> {v['frames_out']} frames: "
        + ", ".join(f"{s} {fps} frames/s" for s, fps in v["fps"].items())
        + f" (auto served {v['served']})",
        file=sys.stdout,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
