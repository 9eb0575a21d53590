"""torch.export + AOTInductor on the CPU: compile time, load time in a fresh process, speed vs eager.

Issue 17, item 4 (a compiler candidate, if it earns its place). Per default model: export with
dynamic H / W (multiples of the model's size multiple, within the profile), compile and package
(``.pt2``), then load the package and time it against eager FP32 at 256x256 and 1280x704
(interleaved, the one harness), max abs difference against eager.

    python scripts/explore_aoti.py interpolation [--sizes 256x256 1280x704] [--static] [--json out.json]

``--static`` exports and compiles once per size. (IFNet did not export with dynamic H / W until its
grid stopped calling ``torch.linspace`` under export; the served candidate is ``aoti``,
``optim/aoti.py``, measured by ``benchmarks/aoti.py``.)
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from model_manager.host_memory import keep_freed_memory
from model_manager.optim.benchmark import benchmark_interleaved, machine_info
from model_manager.registry import ModelRegistry
from model_manager.samples import sample_batch


def _dynamic_shapes(descriptor: Any) -> tuple[Any, ...]:
    """H and W as multiples of the size multiple up to the profile's max; batch and scalars static."""
    m = descriptor.size_multiple
    top = max(descriptor.profile.max[descriptor.inputs[0].name][2:]) if descriptor.profile else 1024
    h = (
        m * torch.export.Dim("h_blocks", min=1, max=top // m)
        if m > 1
        else torch.export.Dim("h", min=2, max=top)
    )
    w = (
        m * torch.export.Dim("w_blocks", min=1, max=top // m)
        if m > 1
        else torch.export.Dim("w", min=2, max=top)
    )
    return tuple({2: h, 3: w} if spec.kind == "image" else None for spec in descriptor.inputs)


def _compile(module: Any, inputs: list[Any], dynamic: Any, folder: Path, out: dict[str, Any]) -> Any:
    """Export, AOTInductor-compile and package to ``folder/model.pt2``, load it; times into ``out``."""
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    exported = torch.export.export(module, tuple(inputs), dynamic_shapes=dynamic)
    out["export_s"] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    package = torch._inductor.aoti_compile_and_package(exported, package_path=str(folder / "model.pt2"))
    out["compile_s"] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    compiled = torch._inductor.aoti_load_package(package)
    out["load_s"] = round(time.perf_counter() - started, 2)
    out["pt2_mb"] = round(Path(package).stat().st_size / 1e6, 2)
    print(out, flush=True)
    return compiled


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_type")
    ap.add_argument("--sizes", nargs="+", default=["256x256", "1280x704"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument(
        "--static", action="store_true", help="export and compile once per size (no dynamic H / W)"
    )
    args = ap.parse_args()
    keep_freed_memory()
    torch.set_num_threads(args.threads)
    loaded = ModelRegistry.with_builtins().get(args.model_type, "default").load()
    module, descriptor = loaded.module.eval(), loaded.descriptor
    example = [torch.from_numpy(x) for x in sample_batch(descriptor, descriptor.fit_size(256, 256))]
    out: dict[str, Any] = {"machine": machine_info(), "model": args.model_type, "sizes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        compiled = (
            None if args.static else _compile(module, example, _dynamic_shapes(descriptor), Path(tmp), out)
        )
        for size in args.sizes:
            width, height = (int(v) for v in size.split("x"))
            inputs = [
                torch.from_numpy(x) for x in sample_batch(descriptor, descriptor.fit_size(height, width))
            ]
            if args.static:
                compiled = _compile(module, inputs, None, Path(tmp) / size, out.setdefault(size, {}))
            assert compiled is not None
            with torch.inference_mode():
                diff = float((compiled(*inputs) - module(*inputs)).abs().max())
                fns = {"eager": lambda x=inputs: module(*x), "aoti": lambda x=inputs, c=compiled: c(*x)}
                timings = benchmark_interleaved(fns, rounds=args.rounds)
            row = {k: [round(t.median_ms, 1), round(t.p90_ms, 1)] for k, t in timings.items()}
            row["x_eager"] = round(timings["eager"].median_ms / timings["aoti"].median_ms, 3)
            row["max_abs_diff"] = diff
            out["sizes"][size] = row
            print(size, row, flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
