"""``int8-torch``: PyTorch FX graph-mode static INT8 from the build's calibration crops.

The entry stores the observed state (weights and observer ranges) as safetensors; opening
re-traces the FP32 module and converts without calibrating again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ...descriptor import ModelDescriptor
from ...progress import detail
from ...runners import Runner, TorchRunner
from ...samples import sample_batch
from ..graph import BuildContext
from ..intermediates import CALIBRATION_CROPS
from .base import Candidate, OpenRequest

FILE = "observed.int8-torch.safetensors"


def _example(descriptor: ModelDescriptor) -> list[Any]:
    """Small real-photo inputs for tracing (shapes are dynamic in the traced graph)."""
    return [torch.from_numpy(x) for x in sample_batch(descriptor, descriptor.fit_size(64, 64))]


def _build(ctx: BuildContext, folder: Path) -> list[str]:
    """Trace, insert observers, calibrate on the build's crops, store the observed state."""
    from safetensors.torch import save_file

    from ..quantize_torch import calibrate_observed, prepare_static

    crops = ctx.get(CALIBRATION_CROPS)
    ctx.begin("trace with torch.fx, calibrate observers, store their state", "int8-torch")
    example = _example(ctx.descriptor)
    prepared = prepare_static(ctx.module, example)
    detail(f"calibrate observers on {len(crops)} photo crops")
    batches = [[torch.from_numpy(a) for a in item] for item in crops]
    state = calibrate_observed(prepared, batches, len(example))
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / FILE))
    return [FILE]


def _open(req: OpenRequest) -> Runner:
    """Rebuild the INT8 model from the FP32 module and the stored observed state (no calibration)."""
    from safetensors.torch import load_file

    from ..quantize_torch import quantized_from_observed

    assert req.module is not None, "int8-torch rebuilds from the FP32 module"
    quantized = quantized_from_observed(
        req.module, _example(req.descriptor), load_file(str(req.folder / FILE))
    )
    return TorchRunner(quantized, req.descriptor, req.info, device="cpu")


CANDIDATES = (Candidate("int8-torch", (CALIBRATION_CROPS,), _build, _open),)
