"""``int8-torch``: PyTorch FX graph-mode static INT8 from the build's calibration crops.

The entry stores the observed state (weights and observer ranges) as safetensors; opening
re-traces the FP32 module and converts without calibrating again. The build's own check converts
the model it calibrated (tracing IFNet takes seconds; the result is the same graph and state).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...descriptor import ModelDescriptor
from ...progress import detail
from ...runners import Runner, TorchRunner
from ...samples import sample_batch
from ..graph import BuildContext, Step
from ..intermediates import CALIBRATION_CROPS
from .base import Candidate, OpenRequest

FILE = "observed.int8-torch.safetensors"


def _example(descriptor: ModelDescriptor) -> list[Any]:
    """Small real-photo inputs for tracing (shapes are dynamic in the traced graph)."""
    return [torch.from_numpy(x) for x in sample_batch(descriptor, descriptor.fit_size(64, 64))]


def _calibrated(ctx: BuildContext, _folder: Path) -> nn.Module:
    """The FP32 module traced with observers (FX) and calibrated on the build's crops."""
    from ..quantize_torch import calibrate_observed, prepare_static

    crops = ctx.get(CALIBRATION_CROPS)
    example = _example(ctx.descriptor)
    prepared = prepare_static(ctx.module, example)
    detail(f"calibrate observers on {len(crops)} photo crops")
    calibrate_observed(prepared, [[torch.from_numpy(a) for a in item] for item in crops], len(example))
    return prepared


FX_CALIBRATED: Step[nn.Module] = Step(
    "fx.calibrated",
    "trace with torch.fx and calibrate its observers",
    _calibrated,
    needs=(CALIBRATION_CROPS,),
)


def _build(ctx: BuildContext, folder: Path) -> list[str]:
    """Store the calibrated model's observed state (weights and observer ranges) as safetensors."""
    from safetensors.torch import save_file

    state = ctx.get(FX_CALIBRATED).state_dict()
    save_file({k: v.detach().clone().contiguous() for k, v in state.items()}, str(folder / FILE))
    return [FILE]


def _open_built(ctx: BuildContext, req: OpenRequest) -> Runner:
    """For the build's check: convert the model it calibrated (a load traces it again from the file)."""
    from ..quantize_torch import convert_calibrated

    quantized = convert_calibrated(ctx.get(FX_CALIBRATED), ctx.module)
    return TorchRunner(quantized, req.descriptor, req.info, device="cpu")


def _open(req: OpenRequest) -> Runner:
    """Rebuild the INT8 model from the FP32 module and the stored observed state (no calibration)."""
    from safetensors.torch import load_file

    from ..quantize_torch import quantized_from_observed

    assert req.module is not None, "int8-torch rebuilds from the FP32 module"
    quantized = quantized_from_observed(
        req.module, _example(req.descriptor), load_file(str(req.folder / FILE))
    )
    return TorchRunner(quantized, req.descriptor, req.info, device="cpu")


CANDIDATES = (Candidate("int8-torch", (FX_CALIBRATED,), _build, _open, steps=0, open_built=_open_built),)
