"""Eager FP32 vs PyTorch FP16 (channels_last) vs TensorRT FP16 for the default models on a CUDA GPU.

    python benchmarks/gpu.py [--size 256] [--iterations 50]

The one harness with CUDA events; speedups against eager FP32 measured in the same run; PSNR of
each against eager FP32 on the sample photos. TensorRT rows appear only where it is installed.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import sys
import tempfile
from typing import Any

import numpy as np
import torch

MODELS = (("super_resolution", "default"), ("style_transfer", "default"), ("interpolation", "default"))


async def rows_for(model_type: str, name: str, size: int, iterations: int, aoti: bool) -> list[list[str]]:
    from model_manager import ModelConfig, ModelManager
    from model_manager.optim.benchmark import benchmark
    from model_manager.optim.quality import compare
    from model_manager.samples import sample_batch

    with tempfile.TemporaryDirectory() as cache:
        async with ModelManager(ModelConfig(cache_dir=cache, device="cuda")) as m:
            eager = await m.load_optimized_model(model_type, name, "none")
            inputs = [torch.from_numpy(x).cuda() for x in sample_batch(eager.descriptor, (size, size))]
            reference = eager(*inputs).float().cpu().numpy()
            runners: dict[str, Any] = {
                "eager FP32": eager,
                "PyTorch FP16": await m.load_optimized_model(model_type, name, "fp16"),
            }
            if aoti:  # torch.export + AOTInductor (Triton kernels), FP32
                runners["AOTInductor FP32"] = await m.load_optimized_model(model_type, name, "aoti")
            if importlib.util.find_spec("tensorrt") is not None:
                runners["TensorRT FP16"] = await m.load_optimized_model(model_type, name, "tensorrt")
            results = {
                k: benchmark(lambda r=r: r(*inputs), label=k, iterations=iterations, cuda=True)
                for k, r in runners.items()
            }
            base = results["eager FP32"]
            out = []
            for label, r in results.items():
                q = compare(
                    reference,
                    np.asarray(runners[label](*inputs).float().cpu()),
                    eager.descriptor.output.value_range,
                )
                out.append(
                    [
                        f"{model_type}/{eager.info.name}",
                        f"{size}x{size}",
                        label,
                        f"{r.median_ms:.2f} / {r.p90_ms:.2f}",
                        f"{r.ratio_to(base):.2f}x",
                        f"{q.psnr_db:.1f}",
                    ]
                )
            return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--iterations", type=int, default=50)
    ap.add_argument("--models", nargs="+", default=[t for t, _ in MODELS], help="model types")
    ap.add_argument("--aoti", action="store_true", help="also the aoti candidate (compiles per model)")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to measure", file=sys.stderr)
        return 1
    from model_manager.optim.benchmark import format_table

    rows = [
        r
        for t, n in MODELS
        if t in args.models
        for r in asyncio.run(rows_for(t, n, args.size, args.iterations, args.aoti))
    ]
    has_trt = importlib.util.find_spec("tensorrt") is not None
    print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}, tensorrt installed: {has_trt}")
    print(format_table(rows, ["model", "input", "engine", "ms (median / p90)", "vs eager FP32", "PSNR dB"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
