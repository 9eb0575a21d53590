"""IFNet with fused warps against the reference's loop, per engine, one process, interleaved.

Issue 17, item 3: ``IFNet.forward`` encodes both frames as one batch and warps frames and
features of both directions in one ``grid_sample`` per level on a grid made once (5 warps per
pass); ``interpolation.unfused_forward`` is Practical-RIFE's loop (two encoder passes, 18 warps,
a grid per warp). Both run the same weights; per size, timed together by the one harness:

- ``eager``: PyTorch FP32 (the baseline of every ratio is the unfused eager);
- ``openvino``: the project's export (``onnx_from_torch``, dynamic N/H/W) as IR, compiled FP32
  with every dimension fixed at the size: what ``OvRunner`` runs for the first shapes it sees;
- ``onnxruntime``: the same ONNX in an ONNX Runtime CPU session (full optimisation), as saved.

Max abs difference of each against the unfused eager output on real photo pairs. The process keeps
freed memory (``host_memory.keep_freed_memory``) as ``ModelManager`` does.

    python benchmarks/fused_warp.py --sizes 256x256 1280x704 --json out.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from model_manager.descriptor import ModelDescriptor
from model_manager.host_memory import keep_freed_memory
from model_manager.models.interpolation import IFNet, unfused_forward
from model_manager.optim.benchmark import benchmark_interleaved, format_table, machine_info
from model_manager.optim.intermediates import onnx_from_torch
from model_manager.optim.ov_ir import ir_from_onnx
from model_manager.optim.settings import BuildSettings
from model_manager.registry import ModelRegistry
from model_manager.runners.ort_session import create_session
from model_manager.runners.ov_session import compile_model, read_ir, with_shapes
from model_manager.samples import sample_batch


class Unfused(nn.Module):
    """The same IFNet run through the reference's loop (so it exports as the reference graph)."""

    def __init__(self, model: IFNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, img0: torch.Tensor, img1: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        return unfused_forward(self.model, img0, img1, timestep)


def _engines(
    module: nn.Module,
    descriptor: ModelDescriptor,
    inputs: list[torch.Tensor],
    folder: Path,
    tag: str,
    threads: int,
) -> dict[str, Any]:
    """OpenVINO and ONNX Runtime calls on the project's export of ``module`` (dynamic N/H/W).

    ONNX Runtime runs it as saved; OpenVINO compiles it with every dimension fixed at the inputs'
    shape, as ``OvRunner`` does for the first shapes it sees.
    """
    (folder / tag).mkdir()
    onnx = (
        folder / tag / onnx_from_torch(module, descriptor, folder / tag, BuildSettings(opt_size=(64, 64)))[0]
    )
    xml = folder / tag / "model.xml"
    ir_from_onnx(onnx, xml)
    shapes = tuple(tuple(t.shape) for t in inputs)
    request = compile_model(with_shapes(read_ir(xml), shapes), "f32", threads).create_infer_request()
    feeds = [np.ascontiguousarray(t.numpy()) for t in inputs]
    session = create_session(onnx, num_threads=threads)
    ort_feeds = dict(zip((s.name for s in descriptor.inputs), feeds, strict=True))
    return {
        f"openvino {tag}": lambda: request.infer(feeds, share_inputs=True, share_outputs=False)[0],
        f"onnxruntime {tag}": lambda: session.run(None, ort_feeds)[0],
    }


def run_size(name: str, size: tuple[int, int], threads: int, rounds: int) -> dict[str, Any]:
    """Fused vs unfused on eager, OpenVINO and ONNX Runtime at one size."""
    loaded = ModelRegistry.with_builtins().get("interpolation", name).load()
    fused, descriptor = loaded.module.eval(), loaded.descriptor
    unfused = Unfused(fused).eval()
    hw = descriptor.fit_size(*size)
    inputs = [torch.from_numpy(x) for x in sample_batch(descriptor, hw)]
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        fns: dict[str, Any] = {
            "eager unfused": lambda: unfused(*inputs),
            "eager fused": lambda: fused(*inputs),
        }
        for tag, module in (("unfused", unfused), ("fused", fused)):
            fns.update(_engines(module, descriptor, inputs, Path(tmp), tag, threads))
        reference = fns["eager unfused"]().numpy()
        diff = {label: float(np.abs(np.asarray(fn()) - reference).max()) for label, fn in fns.items()}
        results = benchmark_interleaved(fns, rounds=rounds)
    base = results["eager unfused"].median_ms
    rows = []
    for label, r in results.items():
        engine = label.split()[0]
        same_engine = results[f"{engine} unfused"].median_ms
        rows.append(
            {
                "contender": label,
                "median_ms": round(r.median_ms, 2),
                "p90_ms": round(r.p90_ms, 2),
                "x_eager_unfused": round(base / r.median_ms, 3),
                "x_same_engine_unfused": round(same_engine / r.median_ms, 3),
                "max_abs_diff": diff[label],
                "calls": r.iterations,
            }
        )
    return {"model": f"interpolation/{name}", "size": f"{hw[1]}x{hw[0]}", "rows": rows}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", default=["256x256"], help="WIDTHxHEIGHT")
    ap.add_argument("--name", default="default", help="interpolation model name")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=20, help="timed calls per contender")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    kept = keep_freed_memory()  # as ModelManager does: eager is timed as the application runs it
    out: dict[str, Any] = {
        "machine": machine_info(),
        "threads": args.threads,
        "host_memory_kept": kept,
        "results": [],
    }
    table = []
    for size in args.sizes:
        width, height = (int(v) for v in size.lower().split("x"))
        result = run_size(args.name, (height, width), args.threads, args.rounds)
        out["results"].append(result)
        for r in result["rows"]:
            table.append(
                [
                    result["size"],
                    r["contender"],
                    f"{r['median_ms']} / {r['p90_ms']}",
                    f"{r['x_eager_unfused']}x",
                    f"{r['x_same_engine_unfused']}x",
                    f"{r['max_abs_diff']:.1e}",
                ]
            )
        if args.json:
            args.json.write_text(json.dumps(out, indent=1))
    headers = (
        "size",
        "contender",
        "median / p90 ms",
        "x eager unfused",
        "x same engine unfused",
        "max abs diff",
    )
    print(format_table(table, headers))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
