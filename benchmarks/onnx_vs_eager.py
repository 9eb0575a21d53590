"""Eager PyTorch FP32 vs ONNX Runtime FP32 for every registered architecture at two sizes.

Also measures (1) whether ONNX Runtime's offline graph optimization saved into the file helps
(inference median and session-creation time), and (2) the OrtRunner's overhead against a bare
``session.run`` at 256x256. Every timing goes through ``model_manager.optim.benchmark``.
Weights are seeded random (speed does not depend on their values); the quality columns compare
ORT's output with eager FP32's on real sample photos.

    python benchmarks/onnx_vs_eager.py [--quick] [--threads 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from model_manager.models import all_architectures
from model_manager.optim.benchmark import BenchmarkResult, benchmark, format_table, machine_info
from model_manager.optim.onnx_export import ONNXExporter, optimize_onnx
from model_manager.optim.quality import compare
from model_manager.registry import ModelRegistry
from model_manager.runners import OrtRunner, RunnerInfo, TorchRunner
from model_manager.runners.ort_session import create_session
from model_manager.samples import sample_batch

# Input sizes per architecture: the big RRDBNet / wide IFNet are measured smaller to fit a budget.
SIZES = {"RRDBNet": (32, 64)}
DEFAULT_SIZES = (128, 256)
BUDGET_S = 4.0


def unique_configs() -> list[tuple[str, str, dict[str, Any]]]:
    """(label, architecture, hyperparameters) for every distinct registered configuration."""
    seen: dict[tuple[str, str], tuple[str, str, dict[str, Any]]] = {}
    for e in ModelRegistry.with_builtins().entries():
        key = (e.architecture, json.dumps(dict(e.hyperparameters), sort_keys=True, default=list))
        seen.setdefault(key, (f"{e.model_type}/{e.name}", e.architecture, dict(e.hyperparameters)))
    return list(seen.values())


def _time(fn: Any, label: str) -> BenchmarkResult:
    return benchmark(fn, label=label, warmup=2, iterations=30, max_seconds=BUDGET_S)


def measure(label: str, arch_id: str, hp: dict[str, Any], size: int, workdir: Path, threads: int) -> dict:
    lm = all_architectures()[arch_id].create(hp, seed=0)
    d = lm.descriptor
    size, _ = d.fit_size(size, size)
    inputs = sample_batch(d, (size, size))
    export = ONNXExporter().export(
        lm.module, [torch.from_numpy(x) for x in inputs], workdir / "m.onnx", descriptor=d
    )
    optimize_onnx(Path(export.path), workdir / "m.basic.onnx", "basic")
    info = RunnerInfo(d.model_type, label, "", "", "cpu", "fp32")
    eager = TorchRunner(lm.module, d, info)
    ort = OrtRunner(export.path, d, info, num_threads=threads)
    ort_basic = OrtRunner(workdir / "m.basic.onnx", d, info, num_threads=threads)
    results = {
        "eager": _time(lambda: eager(*inputs), "eager fp32"),
        "ort": _time(lambda: ort(*inputs), "ort fp32"),
        "ort_basic": _time(lambda: ort_basic(*inputs), "ort fp32, offline basic"),
        "load": benchmark(
            lambda: create_session(Path(export.path), num_threads=threads), warmup=0, iterations=3
        ),
        "load_basic": benchmark(
            lambda: create_session(workdir / "m.basic.onnx", num_threads=threads), warmup=0, iterations=3
        ),
    }
    q = compare(eager(*inputs), ort(*inputs), d.output.value_range)
    return {
        "model": label,
        "architecture": arch_id,
        "size": size,
        "quality": q.to_dict(),
        "onnx_bytes": export.size_bytes,
        **{k: v.to_dict() for k, v in results.items()},
    }


OVERHEAD_MODELS = (
    ("super_resolution/espcn-x2", "ESPCN"),
    ("style_transfer/transformernet", "TransformerNet"),
)


def overhead(threads: int, workdir: Path) -> list[dict]:
    """OrtRunner (validation, padding, conversion) against a bare session.run at 256x256."""
    return [_overhead_one(label, arch_id, threads, workdir) for label, arch_id in OVERHEAD_MODELS]


def _overhead_one(label: str, arch_id: str, threads: int, workdir: Path) -> dict:
    lm = all_architectures()[arch_id].create(seed=0)
    d = lm.descriptor
    inputs = sample_batch(d, (256, 256))
    dummy = [torch.from_numpy(x) for x in inputs]
    export = ONNXExporter().export(lm.module, dummy, workdir / "o.onnx", descriptor=d)
    info = RunnerInfo(d.model_type, label, "", "", "cpu", "fp32")
    runner = OrtRunner(export.path, d, info, num_threads=threads)
    session = runner.session
    feeds = {s.name: x for s, x in zip(d.inputs, inputs)}
    bare = benchmark(lambda: session.run(None, feeds), label="bare session.run", warmup=3, iterations=40)
    wrapped = benchmark(lambda: runner(*inputs), label="OrtRunner", warmup=3, iterations=40)
    return {"model": label, "bare": bare.to_dict(), "runner": wrapped.to_dict()}


def _print(data: dict) -> None:
    print(f"machine: {data['machine']}\n")
    rows = []
    for r in data["cases"]:
        e, o, b = r["eager"], r["ort"], r["ort_basic"]
        rows.append(
            [
                r["model"],
                r["architecture"],
                f"{r['size']}x{r['size']}",
                f"{e['median_ms']:.1f} / {e['p90_ms']:.1f}",
                f"{o['median_ms']:.1f} / {o['p90_ms']:.1f}",
                f"{e['median_ms'] / o['median_ms']:.2f}x",
                f"{b['median_ms']:.1f}",
                f"{r['load']['median_ms']:.0f} / {r['load_basic']['median_ms']:.0f}",
                f"{r['quality']['psnr_db']:.1f}",
                f"{r['quality']['max_abs_error']:.1e}",
            ]
        )
    header = [
        "model",
        "arch",
        "input",
        "eager ms (median / p90)",
        "ORT ms (median / p90)",
        "ORT vs eager",
        "ORT offline-basic ms",
        "session create ms (plain / basic)",
        "PSNR dB",
        "max abs err",
    ]
    print(format_table(rows, header))
    print()
    rows = []
    for r in data["overhead"]:
        b, w = r["bare"], r["runner"]
        rows.append(
            [
                r["model"],
                f"{b['median_ms']:.2f} / {b['p90_ms']:.2f}",
                f"{w['median_ms']:.2f} / {w['p90_ms']:.2f}",
                _overhead_text(b["median_ms"], w["median_ms"]),
            ]
        )
    print(
        format_table(
            rows, ["model @256x256", "bare session.run ms (median / p90)", "OrtRunner ms", "overhead"]
        )
    )


def _overhead_text(bare_ms: float, runner_ms: float) -> str:
    extra = runner_ms - bare_ms
    return f"{extra:+.2f} ms ({extra / bare_ms * 100:+.1f}%)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only the embedded defaults, one size")
    parser.add_argument("--threads", type=int, default=2, help="torch and ORT intra-op threads")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    configs = unique_configs()
    if args.quick:
        configs = [c for c in configs if c[0].endswith(("espcn-x2", "seeded"))]
    data: dict[str, Any] = {"machine": machine_info(), "cases": [], "overhead": []}
    with tempfile.TemporaryDirectory() as tmp:
        for label, arch_id, hp in configs:
            sizes = SIZES.get(arch_id, DEFAULT_SIZES)
            for size in sizes[:1] if args.quick else sizes:
                print(f"... {label} {size}", file=sys.stderr, flush=True)
                data["cases"].append(measure(label, arch_id, hp, size, Path(tmp), args.threads))
        data["overhead"] = overhead(args.threads, Path(tmp))
    _print(data)
    if args.json:
        args.json.write_text(json.dumps(data, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
