"""Every CPU engine and strategy x every embedded default model at two sizes, each in a fresh process.

Builds all candidates the way ``auto`` does (``optim.build_plan.build_plan``: ONNX Runtime FP32,
dynamic INT8, one calibration -> static Q/DQ and QOperator, PyTorch FX INT8, BF16 autocast,
OpenVINO FP32 / BF16-hint / NNCF INT8 where the extra is installed, eager FP32), checks each
against eager FP32 on real sample photos, and times them together (blocked interleaving, the one
harness). Reports median / p90 ms, speedup against eager FP32 measured in the same run, GMAC/s
(conv / linear multiply-accumulates of the model at that size over the median), PSNR, build
seconds, which one ``auto`` would serve, and auto against the fastest candidate that passed.

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

    from model_manager import Optimization
    from model_manager.optim.build_plan import build_plan
    from model_manager.optim.candidates.registry import available_candidates
    from model_manager.optim.hardware import probe_hardware
    from model_manager.optim.intermediates import export_inputs
    from model_manager.optim.macs import count_macs
    from model_manager.optim.planner import plan
    from model_manager.optim.settings import BuildSettings
    from model_manager.registry import ModelRegistry

    torch.set_num_threads(2)
    entry = ModelRegistry.with_builtins().get(model_type, name)
    loaded = entry.load()
    the_plan = plan(Optimization.AUTO, probe_hardware(), available_candidates("cpu"), "cpu")
    settings = BuildSettings(time_budget_s=budget, opt_size=(size, size), num_threads=2, time_failed=True)
    with tempfile.TemporaryDirectory() as tmp:
        out = build_plan(loaded.module, loaded.descriptor, the_plan, Path(tmp), settings)
        sizes = {f: (Path(tmp) / f).stat().st_size for f in out.files}
    inputs = export_inputs(loaded.descriptor, settings)
    return {
        "model": f"{model_type}/{entry.name}",
        "size": size,
        "macs": count_macs(loaded.module, inputs),
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
        head = [case["model"], f"{case['size']}x{case['size']}", c["name"], c["backend"]]
        if c["error"]:
            rows.append([*head, "-", "-", "-", "-", "-", "-", f"error: {c['error'][:40]}"])
            continue
        gate = "pass" if c["passed"] else f"FAIL (<{c['min_psnr_db']:.0f})"
        gmacs = case["macs"] / (c["median_ms"] / 1e3) / 1e9 if c["median_ms"] else 0.0
        rows.append(
            [
                *head,
                f"{c['median_ms']:.1f} / {c['p90_ms']:.1f}",
                f"{c['speedup']:.2f}x",
                f"{gmacs:.0f}",
                f"{c['psnr_db']:.1f}",
                gate,
                f"{c['build_seconds'] or 0:.1f}",
                served,
            ]
        )
    return rows


def auto_vs_best(case: dict[str, Any]) -> str:
    """One line: what auto served and its median against the fastest candidate that passed."""
    cands = case["decision"]["candidates"]
    ok = [c for c in cands if c["passed"] and c["median_ms"]]
    chosen = next(c for c in cands if c["name"] == case["decision"]["chosen"])
    best = min(ok, key=lambda c: c["median_ms"]) if ok else chosen
    ratio = chosen["median_ms"] / best["median_ms"] if chosen["median_ms"] and best["median_ms"] else 1.0
    return (
        f"{case['model']} {case['size']}x{case['size']}: auto served {chosen['name']} ({chosen['backend']}), "
        f"{ratio:.2f}x the fastest passing ({best['name']}); {case['macs'] / 1e9:.2f} GMAC per call"
    )


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
        "engine",
        "ms (median / p90)",
        "vs eager FP32",
        "GMAC/s",
        "PSNR dB",
        "gate",
        "build s",
        "",
    ]
    print(format_table([r for c in cases for r in _rows(c)], header))
    print()
    for case in cases:
        print(auto_vs_best(case))
    if args.json:
        args.json.write_text(json.dumps(cases, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
