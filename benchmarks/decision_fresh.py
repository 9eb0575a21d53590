"""``auto``'s decision against a fresh-process re-measurement of what it serves.

Issue 17, item 2: the speedup ``auto`` records in the manifest must be what the served runner does
afterwards. Per model, two child processes share one empty cache folder:

1. **build**: ``load_optimized_model(TYPE, NAME, "auto")``; what the decision recorded (the chosen
   strategy, its median and eager FP32's, the speedup, every candidate's speedup);
2. **fresh**: a new process loads the served runner from the cache (a cache hit) and eager FP32
   (``"none"``) and times them with the one harness, interleaved, at the build's input (the
   shipped photos at the opt shape), a fixed number of calls, no pruning.

``ratio`` = decision speedup / fresh speedup; the decision is trustworthy when it is within 15%.
A second fresh process (``fresh 2``) gives this host's noise floor: how far two re-measurements of
the same entry differ.

    python benchmarks/decision_fresh.py --json out.json [--models interpolation/default ...]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from child import call_in_child

MODELS = ("super_resolution/default", "style_transfer/default", "interpolation/default")
AGREE_WITHIN = 0.15


def build(model: str, cache_dir: str, threads: int) -> dict[str, Any]:
    """Phase 1 (child process): the ``auto`` build and what its decision recorded."""
    from model_manager import ModelConfig, ModelManager

    model_type, name = model.split("/", 1)

    async def go() -> dict[str, Any]:
        config = ModelConfig(cache_dir=Path(cache_dir), num_threads=threads)
        async with ModelManager(config) as manager:
            runner = await manager.load_optimized_model(model_type, name, "auto")
            info = runner.info
        candidates = {c["name"]: c for c in info.decision.get("candidates", [])}
        confirmed = info.decision.get("confirmation") or {}  # absent before the confirmation existed
        return {
            "chosen": info.strategy,
            "speedup": info.speedup,
            "chosen_median_ms": confirmed.get("median_ms", candidates[info.strategy]["median_ms"]),
            "eager_median_ms": confirmed.get("eager_median_ms", candidates["none"]["median_ms"]),
            "selection_speedup": candidates[info.strategy].get("speedup"),
            "candidates": {k: c.get("speedup") for k, c in candidates.items() if c.get("passed")},
            "build_seconds": info.build_seconds,
        }

    return asyncio.run(go())


def fresh(model: str, cache_dir: str, threads: int, rounds: int) -> dict[str, Any]:
    """Phase 2 (a new child process): the served runner from the cache against eager FP32."""
    import torch

    from model_manager import ModelConfig, ModelManager
    from model_manager.optim.benchmark import benchmark_interleaved
    from model_manager.samples import sample_batch

    torch.set_num_threads(threads)
    model_type, name = model.split("/", 1)

    async def go() -> dict[str, Any]:
        config = ModelConfig(cache_dir=Path(cache_dir), num_threads=threads)
        async with ModelManager(config) as manager:
            served = await manager.load_optimized_model(model_type, name, "auto")
            eager = await manager.load_optimized_model(model_type, name, "none")
            batch, height, width = served.descriptor.opt_shape()  # what the build timed
            inputs = sample_batch(served.descriptor, (height, width), batch)
            fns = {"served": functools.partial(served, *inputs), "eager": functools.partial(eager, *inputs)}
            timings = benchmark_interleaved(fns, rounds=rounds)
            return {
                "strategy": served.info.strategy,
                "cache_hit": served.info.cache_hit,
                "served_median_ms": round(timings["served"].median_ms, 2),
                "served_p90_ms": round(timings["served"].p90_ms, 2),
                "eager_median_ms": round(timings["eager"].median_ms, 2),
                "eager_p90_ms": round(timings["eager"].p90_ms, 2),
                "speedup": round(timings["eager"].median_ms / timings["served"].median_ms, 3),
            }

    return asyncio.run(go())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=list(MODELS), help="TYPE/NAME")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=30, help="timed calls per contender in the fresh process")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    from model_manager.optim.benchmark import format_table, machine_info

    out: dict[str, Any] = {"machine": machine_info(), "threads": args.threads, "results": []}
    rows = []
    for model in args.models:
        with tempfile.TemporaryDirectory() as cache:
            decided = call_in_child("decision_fresh", "build", model, cache, args.threads)
            measured = call_in_child("decision_fresh", "fresh", model, cache, args.threads, args.rounds)
            again = call_in_child("decision_fresh", "fresh", model, cache, args.threads, args.rounds)
        ratio = decided["speedup"] / measured["speedup"]
        noise = again["speedup"] / measured["speedup"]
        out["results"].append(
            {
                "model": model,
                "decision": decided,
                "fresh": measured,
                "fresh_2": again,
                "ratio": round(ratio, 3),
                "fresh_2_ratio": round(noise, 3),
            }
        )
        rows.append(
            [
                model,
                decided["chosen"],
                f"{decided['chosen_median_ms']:.1f} / {decided['eager_median_ms']:.1f}",
                f"{decided['speedup']:.2f}x",
                f"{measured['served_median_ms']:.1f} / {measured['eager_median_ms']:.1f}",
                f"{measured['speedup']:.2f}x",
                f"{ratio:.2f}",
                "yes" if abs(ratio - 1) <= AGREE_WITHIN else "no",
                f"{again['speedup']:.2f}x ({noise:.2f})",
            ]
        )
        print(rows[-1], file=sys.stderr, flush=True)
        if args.json:
            args.json.write_text(json.dumps(out, indent=1))
    headers = (
        "model",
        "served",
        "build ms (served / eager)",
        "decision",
        "fresh ms",
        "fresh",
        "ratio",
        "within 15%",
        "fresh 2 (/ fresh)",
    )
    print(format_table(rows, headers))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
