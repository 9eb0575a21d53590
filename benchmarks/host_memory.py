"""Eager PyTorch with glibc's default malloc against the kept-memory policy (``host_memory.py``).

The policy is process-wide and cannot be undone, so each (model, size, policy) runs in a fresh
process, the two policies alternating per case; each times the embedded default's eager FP32
forward (the one harness, a worker thread as ``Runner.infer`` and the video pipeline call it) and
counts minor page faults per call and the peak RSS.

    python benchmarks/host_memory.py --sizes 256x256 1280x704 --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from child import call_in_child

MODELS = ("super_resolution", "style_transfer", "interpolation")


def measure(model_type: str, size: str, keep: bool, threads: int, rounds: int) -> dict[str, Any]:
    """Child process: eager FP32 of the default model at ``size`` under one policy."""
    import resource
    import threading

    import torch

    from model_manager.host_memory import keep_freed_memory
    from model_manager.optim.benchmark import benchmark
    from model_manager.registry import ModelRegistry
    from model_manager.samples import sample_batch

    applied = keep_freed_memory() if keep else False
    torch.set_num_threads(threads)
    loaded = ModelRegistry.with_builtins().get(model_type, "default").load()
    width, height = (int(v) for v in size.split("x"))
    inputs = [
        torch.from_numpy(x)
        for x in sample_batch(loaded.descriptor, loaded.descriptor.fit_size(height, width))
    ]
    out: dict[str, Any] = {}

    def run() -> None:
        with torch.inference_mode():
            call = lambda: loaded.module(*inputs)  # noqa: E731
            for _ in range(2):
                call()
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            result = benchmark(call, warmup=0, iterations=rounds)
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
        out.update(
            median_ms=round(result.median_ms, 1), p90_ms=round(result.p90_ms, 1), faults=faults / rounds
        )

    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "model": model_type,
        "size": size,
        "kept": keep,
        "applied": applied,
        **out,
        "peak_rss_mb": round(rss_mb),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", default=["256x256", "1280x704"], help="WIDTHxHEIGHT")
    ap.add_argument("--models", nargs="*", default=list(MODELS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    from model_manager.optim.benchmark import format_table, machine_info

    out: dict[str, Any] = {"machine": machine_info(), "threads": args.threads, "results": []}
    rows = []
    for model in args.models:
        for size in args.sizes:
            default = call_in_child("host_memory", "measure", model, size, False, args.threads, args.rounds)
            kept = call_in_child("host_memory", "measure", model, size, True, args.threads, args.rounds)
            out["results"].append({"default": default, "kept": kept})
            rows.append(
                [
                    f"{model}/default",
                    size,
                    f"{default['median_ms']} / {default['p90_ms']}",
                    f"{default['faults']:.0f}",
                    f"{default['peak_rss_mb']}",
                    f"{kept['median_ms']} / {kept['p90_ms']}",
                    f"{kept['faults']:.0f}",
                    f"{kept['peak_rss_mb']}",
                    f"{default['median_ms'] / kept['median_ms']:.2f}x",
                ]
            )
            print(rows[-1], file=sys.stderr, flush=True)
            if args.json:
                args.json.write_text(json.dumps(out, indent=1))
    headers = (
        "model",
        "size",
        "glibc default ms",
        "faults / call",
        "peak RSS MB",
        "kept ms",
        "faults / call",
        "peak RSS MB",
        "kept vs default",
    )
    print(format_table(rows, headers))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
