"""OpenVINO: the project's runner against plain compiles of the same model, one process, interleaved.

Issue 17: ``auto`` left frame interpolation at eager speed because the project's OpenVINO IR has a
dynamic batch dimension, which OpenVINO's CPU kernels pay for. Per default model and size, timed
together by the one harness (alternating blocks, each visit starting with an untimed call):

- ``eager``: PyTorch FP32, the baseline of every ratio;
- ``ir dynamic batch``: the project's IR (``ov_ir.ir_from_onnx`` of the build's FP32 ONNX, batch
  ``?``) compiled as saved: what ``OvRunner`` ran before the fix;
- ``runner``: ``OvRunner`` on that IR as served now (batch 1 compiled with the batch fixed);
- ``plain static export``: ``torch.onnx.export`` with every dimension fixed at this shape,
  ``openvino.convert_model``, default compile: the best a plain compile of the same model gets.

All FP32 (``INFERENCE_PRECISION_HINT=f32``), the same thread count. PSNR of each against eager on
the shipped photos (real crops at that size).

    python benchmarks/ov_shapes.py --sizes 256x256 1280x704 --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model_manager.optim.benchmark import benchmark_interleaved, format_table, machine_info
from model_manager.optim.ov_ir import ir_from_onnx
from model_manager.optim.quality import compare
from model_manager.optim.settings import BuildSettings
from model_manager.registry import ModelRegistry
from model_manager.runners import RunnerInfo
from model_manager.runners.ov_runner import OvRunner
from model_manager.runners.ov_session import compile_model, import_openvino
from model_manager.samples import sample_batch

MODELS = (("super_resolution", "default"), ("style_transfer", "default"), ("interpolation", "default"))


def _size(text: str) -> tuple[int, int]:
    width, height = (int(v) for v in text.lower().split("x"))
    return height, width


def _compiled_call(compiled: Any, feeds: list[np.ndarray]) -> Any:
    request = compiled.create_infer_request()
    return lambda: request.infer(feeds, share_inputs=True, share_outputs=False)[0]


def run_model(model_type: str, name: str, size: tuple[int, int], threads: int, rounds: int) -> dict[str, Any]:
    """One model at one size: the four contenders timed together, their PSNR against eager."""
    from model_manager.optim.intermediates import onnx_from_torch

    loaded = ModelRegistry.with_builtins().get(model_type, name).load()
    module, descriptor = loaded.module.eval(), loaded.descriptor
    hw = descriptor.fit_size(*size)
    inputs = [torch.from_numpy(x) for x in sample_batch(descriptor, hw)]
    feeds = [np.ascontiguousarray(t.numpy()) for t in inputs]
    ov = import_openvino()
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        folder = Path(tmp)
        onnx = onnx_from_torch(module, descriptor, folder, BuildSettings(opt_size=(64, 64)))[0]
        xml = folder / "model.xml"
        ir_from_onnx(folder / onnx, xml)
        static = folder / "static.onnx"
        names = [s.name for s in descriptor.inputs]
        torch.onnx.export(module, tuple(inputs), str(static), input_names=names, dynamo=False)
        ov.save_model(ov.convert_model(str(static)), str(folder / "static.xml"), compress_to_fp16=False)
        info = RunnerInfo(model_type, name, "openvino", "openvino", "cpu", "fp32")
        runner = OvRunner(xml, descriptor, info, hint="f32", num_threads=threads)
        fns = {
            "eager": lambda: module(*inputs),
            "ir dynamic batch": _compiled_call(compile_model(xml, "f32", threads), feeds),
            "runner": lambda: runner(*inputs),
            "plain static export": _compiled_call(
                compile_model(folder / "static.xml", "f32", threads), feeds
            ),
        }
        reference = fns["eager"]()
        psnr = {
            label: compare(reference, torch.as_tensor(np.asarray(fn()))).psnr_db for label, fn in fns.items()
        }
        results = benchmark_interleaved(fns, rounds=rounds)
        runner.close()
    eager = results["eager"].median_ms
    return {
        "model": f"{model_type}/{name}",
        "architecture": descriptor.architecture,
        "size": f"{hw[1]}x{hw[0]}",
        "rows": [
            {
                "contender": label,
                "median_ms": round(r.median_ms, 2),
                "p90_ms": round(r.p90_ms, 2),
                "x_eager": round(eager / r.median_ms, 3),
                "psnr_db": round(psnr[label], 2),
                "calls": r.iterations,
            }
            for label, r in results.items()
        ],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", default=["256x256"], help="WIDTHxHEIGHT")
    ap.add_argument("--models", nargs="*", default=None, help="TYPE/NAME (default: the three defaults)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=30, help="timed calls per contender")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    models = [tuple(m.split("/", 1)) for m in args.models] if args.models else list(MODELS)
    out: dict[str, Any] = {"machine": machine_info(), "threads": args.threads, "results": []}
    rows = []
    for model_type, name in models:
        for size in args.sizes:
            result = run_model(model_type, name, _size(size), args.threads, args.rounds)
            out["results"].append(result)
            runner = next(r for r in result["rows"] if r["contender"] == "runner")
            plain = next(r for r in result["rows"] if r["contender"] == "plain static export")
            for r in result["rows"]:
                rows.append(
                    [
                        result["model"],
                        result["size"],
                        r["contender"],
                        f"{r['median_ms']} / {r['p90_ms']}",
                        f"{r['x_eager']}x",
                        f"{r['psnr_db']}",
                    ]
                )
            print(
                f"{result['model']} {result['size']}: runner / plain static = "
                f"{runner['median_ms'] / plain['median_ms']:.3f}",
                file=sys.stderr,
                flush=True,
            )
            if args.json:
                args.json.write_text(json.dumps(out, indent=1))
    print(
        format_table(rows, ("model", "size", "contender", "median / p90 ms", "x eager", "PSNR dB vs eager"))
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
