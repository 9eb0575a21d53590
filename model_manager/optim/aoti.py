"""``package_from_module``: torch.export + AOTInductor, the FP32 module as one ``.pt2`` package.

The module is exported once with the batch and the spatial dims symbolic (H and W as multiples
of the descriptor's size multiple, at least its minimum), so the compiled code serves every size
without a recompile; AOTInductor then writes C++ (CPU) or Triton (CUDA) kernels, compiles them
with the host's C++ compiler and packages the shared library with the weights. Loading the
package in a new process (``runners.aoti_runner``) dlopens that library: no export, no compile.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..descriptor import ModelDescriptor
from ..errors import ExportError
from ..runners.aoti_runner import PACKAGE, SHAPES, ExportedShapes
from ..samples import sample_batch

log = logging.getLogger(__name__)

EXAMPLE_BATCH = 2
"""The export example's batch: a batch of 1 would make torch.export specialise the batch dimension."""


def dynamic_shapes(descriptor: ModelDescriptor) -> tuple[dict[int, Any], ...]:
    """torch.export's dynamic dims per input: one batch for all, H / W in steps of the size multiple."""
    from torch.export import Dim

    batch = Dim("batch", min=1)
    multiple = max(descriptor.size_multiple, 1)
    low = max(descriptor.size_min, 2)
    if multiple > 1:
        blocks = max(-(-low // multiple), 1)
        height, width = (multiple * Dim(f"{n}_blocks", min=blocks) for n in ("height", "width"))
    else:
        height, width = (Dim(n, min=low) for n in ("height", "width"))
    image = {0: batch, 2: height, 3: width}
    return tuple(dict(image) if s.kind == "image" else {0: batch} for s in descriptor.inputs)


def export_example(descriptor: ModelDescriptor, device: str) -> list[torch.Tensor]:
    """Real photo inputs at the profile's opt size, batch :data:`EXAMPLE_BATCH`."""
    _, height, width = descriptor.opt_shape()
    items = sample_batch(descriptor, descriptor.fit_size(height, width))
    return [torch.from_numpy(x).repeat(EXAMPLE_BATCH, *([1] * (x.ndim - 1))).to(device) for x in items]


def package_from_module(
    module: nn.Module, descriptor: ModelDescriptor, folder: Path, device: str = "cpu"
) -> list[str]:
    """Export ``module`` with dynamic batch / H / W, compile it with AOTInductor into ``folder/model.pt2``."""
    from torch._inductor import aoti_compile_and_package

    example = export_example(descriptor, device)
    module = module.eval() if device == "cpu" else copy.deepcopy(module).eval().to(device)
    started = time.perf_counter()
    try:
        with torch.no_grad():
            program = torch.export.export(module, tuple(example), dynamic_shapes=dynamic_shapes(descriptor))
    except Exception as exc:  # torch raises many kinds; the message names the construct
        raise ExportError(f"torch.export of {descriptor.architecture} failed: {_first_line(exc)}") from exc
    export_s = time.perf_counter() - started
    started = time.perf_counter()
    aoti_compile_and_package(program, package_path=str(folder / PACKAGE))
    shapes = admitted_shapes(program, descriptor, device, export_s, time.perf_counter() - started)
    (folder / SHAPES).write_text(json.dumps(asdict(shapes), indent=1))
    log.info("AOTInductor: export %.1f s, compile %.1f s", shapes.export_s, shapes.compile_s)
    return [PACKAGE, SHAPES]


def admitted_shapes(
    program: Any, descriptor: ModelDescriptor, device: str, export_s: float, compile_s: float
) -> ExportedShapes:
    """The smallest batch / H / W the exported program admits (torch.export may raise a minimum)."""
    first = next(i for i, s in enumerate(descriptor.inputs) if s.kind == "image")
    placeholder = [n for n in program.graph.nodes if n.op == "placeholder" and n.name not in _params(program)]
    shape = placeholder[first].meta["val"].shape
    lows = [_lower_bound(program, dim) for dim in (shape[0], shape[2], shape[3])]
    return ExportedShapes(
        lows[0], lows[1], lows[2], descriptor.size_multiple, device, round(export_s, 1), round(compile_s, 1)
    )


def _params(program: Any) -> set[str]:
    """Placeholder names that are parameters, buffers or constants rather than user inputs."""
    sig = program.graph_signature
    return {s.arg.name for s in sig.input_specs if s.kind.name != "USER_INPUT"}


def _lower_bound(program: Any, dim: Any) -> int:
    """A dim's smallest admitted value (an int dim is itself).

    For ``multiple * blocks`` the symbol's own range rules: torch.export may raise ``blocks`` to 2
    (it assumes sizes are not 0 or 1) while still listing the product from one multiple up, and the
    compiled code carries that assumption (IFNet's program guards refuse one block of 64).
    """
    if isinstance(dim, int):
        return dim
    ranges = program.range_constraints
    coeff, symbol = dim.node.expr.as_coeff_Mul()
    lows = [int(coeff) * int(ranges[symbol].lower)] if symbol in ranges else []
    if dim.node.expr in ranges:
        lows.append(int(ranges[dim.node.expr].lower))
    return max(lows, default=1)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
