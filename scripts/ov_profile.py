"""Where an OpenVINO CPU run spends its time, by operation type (OpenVINO's performance counters).

    python scripts/ov_profile.py interpolation default --size 256 [--hint f32|bf16] [--runs 20] [--dynamic]

Exports the default model's verified FP32 ONNX, converts it to IR, compiles it with
``PERF_COUNT=YES`` and every input dimension fixed at the size (as ``OvRunner`` serves the first
shapes it sees; ``--dynamic`` compiles the IR as saved) and prints the share of the real time per
executed operation type.
"""

from __future__ import annotations

import argparse
import tempfile
from collections import Counter
from pathlib import Path

import openvino as ov

from model_manager.optim.intermediates import onnx_from_torch
from model_manager.optim.ov_ir import ir_from_onnx
from model_manager.optim.settings import BuildSettings
from model_manager.registry import ModelRegistry
from model_manager.runners.ov_session import compile_config, read_ir, with_shapes
from model_manager.samples import sample_batch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_type")
    ap.add_argument("name")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--height", type=int, default=None, help="default: --size")
    ap.add_argument("--hint", choices=("f32", "bf16"), default="f32")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dynamic", action="store_true", help="compile the IR as saved (dynamic N/H/W)")
    args = ap.parse_args()
    loaded = ModelRegistry.with_builtins().get(args.model_type, args.name).load()
    module, descriptor = loaded.module, loaded.descriptor
    size = descriptor.fit_size(args.height or args.size, args.size)
    inputs = sample_batch(descriptor, size, 1)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_from_torch(module, descriptor, Path(tmp), BuildSettings(opt_size=size))
        ir_from_onnx(Path(tmp) / "model.onnx", Path(tmp) / "m.xml")
        config = {**compile_config(args.hint, args.threads, None), "PERF_COUNT": "YES"}
        model = read_ir(Path(tmp) / "m.xml")
        if not args.dynamic:
            with_shapes(model, tuple(x.shape for x in inputs))
        compiled = ov.Core().compile_model(model, "CPU", config)
    request = compiled.create_infer_request()
    totals: Counter[str] = Counter()
    for i in range(args.runs + 3):
        request.infer(inputs)
        if i >= 3:  # warm-up runs are not counted
            for node in request.get_profiling_info():
                totals[f"{node.node_type} ({node.exec_type})"] += node.real_time.total_seconds() * 1e3
    whole = sum(totals.values())
    shapes = "dynamic" if args.dynamic else "static"
    label = f"{args.model_type}/{args.name} {size[1]}x{size[0]}, hint {args.hint}, {shapes} shapes"
    print(f"{label}: {whole / args.runs:.1f} ms per run")
    for name, ms in totals.most_common(12):
        print(f"  {100 * ms / whole:5.1f}%  {ms / args.runs:7.2f} ms  {name}")


if __name__ == "__main__":
    main()
