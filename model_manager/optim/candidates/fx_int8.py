"""``int8-torch``: PyTorch FX graph-mode static INT8 from the build's calibration crops.

The modules the build's float-layer decision names (``int8_steps.float_layers``, mapped from ONNX
node names by ``layer_names.fx_float_modules``) get no qconfig and stay in float. The entry stores
the observed state (weights and observer ranges) as safetensors and those module names as JSON;
opening re-traces the FP32 module with the same float modules and converts without calibrating
again. The build's own check converts
the model it calibrated (tracing IFNet takes seconds; the result is the same graph and state).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...descriptor import ModelDescriptor
from ...progress import detail
from ...runners import Runner, TorchRunner
from ...samples import sample_batch
from ..graph import BuildContext, Step
from ..int8_steps import INT8_FLOAT_LAYERS, float_layers, float_nodes, note_float_layers
from ..intermediates import CALIBRATION_CROPS
from ..layer_names import fx_float_modules
from .base import Candidate, OpenRequest

FILE = "observed.int8-torch.safetensors"
FLOAT_MODULES_FILE = "float-modules.int8-torch.json"


def _example(descriptor: ModelDescriptor) -> list[Any]:
    """Small real-photo inputs for tracing (shapes are dynamic in the traced graph)."""
    return [torch.from_numpy(x) for x in sample_batch(descriptor, descriptor.fit_size(64, 64))]


def _float_modules(ctx: BuildContext) -> list[str]:
    """The decision's float layers as module names (nodes of functional calls have none)."""
    modules, unmapped = fx_float_modules(ctx.module, float_nodes(float_layers(ctx)))
    note_float_layers(ctx, "int8-torch", applied=modules, not_applied=unmapped)
    return modules


FX_FLOAT_MODULES: Step[list[str]] = Step(
    "fx.float-modules",
    "map the float layers to PyTorch modules",
    lambda ctx, _folder: _float_modules(ctx),
    needs=(INT8_FLOAT_LAYERS,),
    quiet=True,
)


def _calibrated(ctx: BuildContext, _folder: Path) -> nn.Module:
    """The FP32 module traced with observers (FX) and calibrated on the build's crops."""
    from ..quantize_torch import calibrate_observed, prepare_static

    crops = ctx.get(CALIBRATION_CROPS)
    example = _example(ctx.descriptor)
    modules: list[str] = ctx.get(FX_FLOAT_MODULES)
    prepared = prepare_static(ctx.module, example, float_modules=modules)
    detail(f"calibrate observers on {len(crops)} photo crops")
    calibrate_observed(prepared, [[torch.from_numpy(a) for a in item] for item in crops], len(example))
    return prepared


FX_CALIBRATED: Step[nn.Module] = Step(
    "fx.calibrated",
    "trace with torch.fx and calibrate its observers",
    _calibrated,
    needs=(CALIBRATION_CROPS, FX_FLOAT_MODULES),
)


def _build(ctx: BuildContext, folder: Path) -> list[str]:
    """Store the calibrated model's observed state (weights and observer ranges) as safetensors."""
    from safetensors.torch import save_file

    state = ctx.get(FX_CALIBRATED).state_dict()
    save_file({k: v.detach().clone().contiguous() for k, v in state.items()}, str(folder / FILE))
    (folder / FLOAT_MODULES_FILE).write_text(json.dumps(ctx.get(FX_FLOAT_MODULES)))
    return [FILE, FLOAT_MODULES_FILE]


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
    floats = req.folder / FLOAT_MODULES_FILE
    modules = json.loads(floats.read_text()) if floats.exists() else []
    quantized = quantized_from_observed(
        req.module, _example(req.descriptor), load_file(str(req.folder / FILE)), float_modules=modules
    )
    return TorchRunner(quantized, req.descriptor, req.info, device="cpu")


CANDIDATES = (Candidate("int8-torch", (FX_CALIBRATED,), _build, _open, steps=0, open_built=_open_built),)
