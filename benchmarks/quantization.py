"""Every CPU strategy x every embedded default model at two sizes, each case in a fresh process.

Builds all candidates the way ``auto`` does (``optim.build.build_plan``: verified FP32 ONNX,
dynamic INT8, one calibration -> static Q/DQ and QOperator, BF16 autocast, eager FP32), checks
each against eager FP32 on real sample photos, and times them together (blocked interleaving,
the one harness). Reports median / p90 ms, speedup against eager FP32 measured in the same run,
size on disk, PSNR, build seconds, and which one ``auto`` would serve.

    python benchmarks/quantization.py [--sizes 128 256] [--budget 4] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

MODELS = (("super_resolution", "default"), ("style_transfer", "default"), ("interpolation", "default"))


def run_case(model_type: str, name: str, size: int, budget: float) -> dict[str, Any]:
    """Build and measure one (model, size) in this process (called in a fresh child)."""
    import torch

    from model_manager.optim.build import build_plan
    from model_manager.optim.candidates import BuildSettings, available_candidates
    from model_manager.optim.hardware import probe_hardware
    from model_manager.optim.strategy import plan
    from model_manager.optimization import Optimization
    from model_manager.registry import ModelRegistry

    torch.set_num_threads(2)
    entry = ModelRegistry.with_builtins().get(model_type, name)
    loaded = entry.load()
    the_plan = plan(Optimization.AUTO, probe_hardware(), available_candidates("cpu"), "cpu")
    settings = BuildSettings(time_budget_s=budget, opt_size=(size, size), num_threads=2)
    with tempfile.TemporaryDirectory() as tmp:
        out = build_plan(loaded.module, loaded.descriptor, the_plan, Path(tmp), settings)
        sizes = {f: (Path(tmp) / f).stat().st_size for f in out.files}
    return {
        "model": f"{model_type}/{entry.name}",
        "size": size,
        "decision": out.decision,
        "chosen_files": sizes,
        "machine": out.benchmark["machine"],
    }


def _child(model_type: str, name: str, size: int, budget: float) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--case", model_type, name, str(size), "--budget", str(budget)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _rows(case: dict[str, Any]) -> list[list[str]]:
    rows = []
    for c in case["decision"]["candidates"]:
        served = "<- auto" if c["name"] == case["decision"]["chosen"] else ""
        if c["error"]:
            rows.append(
                [
                    case["model"],
                    str(case["size"]),
                    c["name"],
                    "-",
                    "-",
                    "-",
                    "-",
                    "-",
                    f"error: {c['error'][:40]}",
                ]
            )
            continue
        gate = "pass" if c["passed"] else f"FAIL (<{c['min_psnr_db']:.0f})"
        rows.append(
            [
                case["model"],
                f"{case['size']}x{case['size']}",
                c["name"],
                f"{c['median_ms']:.1f} / {c['p90_ms']:.1f}",
                f"{c['speedup']:.2f}x",
                f"{c['psnr_db']:.1f}",
                gate,
                f"{c['build_seconds'] or 0:.1f}",
                served,
            ]
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--budget", type=float, default=4.0, help="seconds of timing per candidate")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--case", nargs=3, metavar=("TYPE", "NAME", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.case:
        print(json.dumps(run_case(args.case[0], args.case[1], int(args.case[2]), args.budget)))
        return 0
    from model_manager.optim.benchmark import format_table

    cases = []
    for model_type, name in MODELS:
        for size in args.sizes:
            print(f"... {model_type}/{name} {size}", file=sys.stderr, flush=True)
            cases.append(_child(model_type, name, size, args.budget))
    print(f"machine: {cases[0]['machine']}\n")
    header = [
        "model",
        "input",
        "strategy",
        "ms (median / p90)",
        "vs eager FP32",
        "PSNR dB",
        "gate",
        "build s",
        "",
    ]
    print(format_table([r for c in cases for r in _rows(c)], header))
    if args.json:
        args.json.write_text(json.dumps(cases, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
