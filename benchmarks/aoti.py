"""The ``aoti`` candidate on every default model: build cost, fresh-process load, speed, quality.

Issue 17, item 4. Per default model, one cache folder: ``aoti`` is built through the manager
(export + AOTInductor compile, seconds from the entry), and ``auto`` (without ``aoti``) is built for
the engine it serves. A fresh process then loads the ``aoti`` entry (seconds to a first output: no
compile) and, in that same process, eager FP32, ``aoti`` and the served runner are timed
interleaved by the one harness at each size, with max abs error and PSNR of ``aoti`` against eager.

    python benchmarks/aoti.py --json out.json [--models super_resolution ...] [--sizes 256x256 1280x704]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model_manager import ModelConfig, ModelManager
from model_manager.optim.benchmark import benchmark_interleaved, format_table, machine_info
from model_manager.optim.quality import compare
from model_manager.runners.aoti_runner import read_shapes
from model_manager.samples import sample_batch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from child import call_in_child

MODELS = ("super_resolution", "style_transfer", "interpolation")
CONTENDERS = ("none", "aoti", "auto")


async def _build(cache: str, model_type: str, threads: int) -> dict[str, Any]:
    """Build ``aoti`` and ``auto`` into ``cache``; the build seconds each entry records."""
    config = ModelConfig(cache_dir=Path(cache), num_threads=threads, device="cpu")
    out: dict[str, Any] = {}
    async with ModelManager(config) as manager:
        for strategy in ("aoti", "auto"):
            runner = await manager.load_optimized_model(model_type, "default", strategy)
            out[strategy] = {"build_s": runner.info.build_seconds, "served": runner.info.strategy}
            if strategy == "aoti":
                shapes = read_shapes(Path(runner.info.artifact_path or ""))
                out[strategy].update(export_s=shapes.export_s, compile_s=shapes.compile_s)
                out[strategy]["min_hw"] = [shapes.min_height, shapes.min_width]
    return out


def build(cache: str, model_type: str, threads: int) -> dict[str, Any]:
    return asyncio.run(_build(cache, model_type, threads))


async def _measure(
    cache: str, model_type: str, threads: int, sizes: list[str], rounds: int
) -> dict[str, Any]:
    torch.set_num_threads(threads)
    config = ModelConfig(cache_dir=Path(cache), num_threads=threads, device="cpu")
    out: dict[str, Any] = {"sizes": {}}
    async with ModelManager(config) as manager:
        started = time.perf_counter()
        aoti = await manager.load_optimized_model(model_type, "default", "aoti")
        first = sample_batch(aoti.descriptor, (64, 64))
        aoti(*first)
        out["aoti_load_and_first_call_s"] = round(time.perf_counter() - started, 2)
        out["aoti_cache_hit"] = aoti.info.cache_hit
        runners = {s: await manager.load_optimized_model(model_type, "default", s) for s in CONTENDERS}
        out["served"] = runners["auto"].info.strategy
        for size in sizes:
            width, height = (int(v) for v in size.split("x"))
            inputs = [torch.from_numpy(x) for x in sample_batch(aoti.descriptor, (height, width))]
            fns = {s: functools.partial(r, *inputs) for s, r in runners.items()}
            reference = fns["none"]()
            quality = compare(reference, fns["aoti"](), aoti.descriptor.output.value_range)
            timings = benchmark_interleaved(fns, rounds=rounds)
            row: dict[str, Any] = {s: [round(t.median_ms, 1), round(t.p90_ms, 1)] for s, t in timings.items()}
            row["aoti_x_eager"] = round(timings["none"].median_ms / timings["aoti"].median_ms, 3)
            row["aoti_x_served"] = round(timings["auto"].median_ms / timings["aoti"].median_ms, 3)
            row["served_x_eager"] = round(timings["none"].median_ms / timings["auto"].median_ms, 3)
            row["aoti_max_abs"] = float(np.max(np.abs(np.asarray(reference) - np.asarray(fns["aoti"]()))))
            row["aoti_psnr_db"] = round(quality.psnr_db, 1)
            out["sizes"][size] = row
    return out


def measure(cache: str, model_type: str, threads: int, sizes: list[str], rounds: int) -> dict[str, Any]:
    return asyncio.run(_measure(cache, model_type, threads, sizes, rounds))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--sizes", nargs="+", default=["256x256", "1280x704"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=10, help="timed calls per contender and size")
    ap.add_argument("--cache", type=Path, required=True, help="cache folder (kept: builds are reused)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    result: dict[str, Any] = {"machine": machine_info(), "threads": args.threads, "models": {}}
    rows = []
    for model_type in args.models:
        built = call_in_child("aoti", "build", str(args.cache), model_type, args.threads)
        measured = call_in_child(
            "aoti", "measure", str(args.cache), model_type, args.threads, args.sizes, args.rounds
        )
        result["models"][model_type] = {"build": built, **measured}
        for size, r in measured["sizes"].items():
            rows.append(
                [
                    model_type,
                    size,
                    *(f"{r[s][0]} / {r[s][1]}" for s in CONTENDERS),
                    f"{r['aoti_x_eager']}x",
                    f"{r['aoti_x_served']}x",
                    f"{r['aoti_psnr_db']}",
                ]
            )
        print(model_type, json.dumps(result["models"][model_type]["build"]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    headers = ("model", "size", "eager ms", "aoti ms", "served ms", "aoti x eager", "aoti x served", "dB")
    print(format_table(rows, headers))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
