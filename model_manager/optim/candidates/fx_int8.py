"""``int8-torch``: PyTorch FX graph-mode static INT8 from the build's calibration crops.

The modules the build's float-layer decision names (``int8_steps.float_layers``, mapped from ONNX
node names by ``layer_names.fx_float_modules``) get no qconfig and stay in float; where FX's own
INT8 model misses the target with them, the set is extended along the decision's ranking
(``int8_steps.engine_float_layers``; each trial calibrates and converts once). The entry stores
the observed state (weights and observer ranges) as safetensors and those module names as JSON;
opening re-traces the FP32 module with the same float modules and converts without calibrating
again. The build's own check converts
the model it calibrated (tracing IFNet takes seconds; the result is the same graph and state).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...descriptor import ModelDescriptor
from ...progress import detail
from ...runners import Runner, TorchRunner
from ...samples import sample_batch
from ..graph import BuildContext, Step
from ..int8_steps import (
    INT8_FLOAT_LAYERS,
    SEARCH_NEEDS,
    engine_float_layers,
    float_nodes,
    note_float_layers,
    score_outputs,
)
from ..intermediates import CALIBRATION_CROPS, runner_info
from ..layer_names import fx_float_modules
from .base import Candidate, OpenRequest

ENGINE = "int8-torch"
FILE = "observed.int8-torch.safetensors"
FLOAT_MODULES_FILE = "float-modules.int8-torch.json"


def _example(descriptor: ModelDescriptor) -> list[Any]:
    """Small real-photo inputs for tracing (shapes are dynamic in the traced graph)."""
    return [torch.from_numpy(x) for x in sample_batch(descriptor, descriptor.fit_size(64, 64))]


@dataclass(frozen=True)
class FxCalibrated:
    """The calibrated (observed) FX model and the modules it keeps in float."""

    prepared: nn.Module
    modules: list[str]


def _modules(ctx: BuildContext, floats: Iterable[str]) -> list[str]:
    """The float units' leaf modules, sorted (one key per module set, whatever the units' order)."""
    return sorted(set(fx_float_modules(ctx.module, float_nodes(list(floats)))[0]))


def _calibrate(ctx: BuildContext, modules: list[str]) -> nn.Module:
    """The FP32 module traced with observers (FX), ``modules`` left float, calibrated on the build's crops."""
    from ..quantize_torch import calibrate_observed, prepare_static

    crops = ctx.get(CALIBRATION_CROPS)
    example = _example(ctx.descriptor)
    prepared = prepare_static(ctx.module, example, float_modules=modules)
    calibrate_observed(prepared, [[torch.from_numpy(a) for a in item] for item in crops], len(example))
    return prepared


def _calibrated(ctx: BuildContext, _folder: Path) -> FxCalibrated:
    """Calibrate with the decision's float layers as modules, extended until FX's own INT8 passes."""
    from ..quantize_torch import convert_calibrated

    made: dict[tuple[str, ...], nn.Module] = {}
    detail(f"calibrate observers on {len(ctx.get(CALIBRATION_CROPS))} photo crops per trial")

    def evaluate(floats: frozenset[str]) -> float:
        modules = _modules(ctx, sorted(floats))
        if tuple(modules) not in made:
            made[tuple(modules)] = _calibrate(ctx, modules)
        quantized = convert_calibrated(copy.deepcopy(made[tuple(modules)]), ctx.module)  # converts in place
        info = runner_info(ctx, ENGINE, "torch")
        with TorchRunner(quantized, ctx.descriptor, info, device="cpu") as runner:
            return score_outputs(ctx, runner)

    def applies(unit: str) -> bool:  # functional ops (adds, grid arithmetic) have no module to keep float
        return bool(_modules(ctx, [unit]))

    extension = engine_float_layers(ctx, ENGINE, evaluate, applies)
    modules = _modules(ctx, extension.float_layers)
    unmapped = fx_float_modules(ctx.module, float_nodes(extension.float_layers))[1]
    note_float_layers(ctx, ENGINE, applied=modules, not_applied=unmapped, engine=extension)
    return FxCalibrated(made[tuple(modules)], modules)


FX_CALIBRATED: Step[FxCalibrated] = Step(
    "fx.calibrated",
    "trace with torch.fx and calibrate its observers (float modules: the decision, extended if FX misses)",
    _calibrated,
    needs=(CALIBRATION_CROPS, INT8_FLOAT_LAYERS, *SEARCH_NEEDS),
)


def _build(ctx: BuildContext, folder: Path) -> list[str]:
    """Store the calibrated model's observed state (weights and observer ranges) as safetensors."""
    from safetensors.torch import save_file

    calibrated = ctx.get(FX_CALIBRATED)
    state = calibrated.prepared.state_dict()
    save_file({k: v.detach().clone().contiguous() for k, v in state.items()}, str(folder / FILE))
    (folder / FLOAT_MODULES_FILE).write_text(json.dumps(calibrated.modules))
    return [FILE, FLOAT_MODULES_FILE]


def _open_built(ctx: BuildContext, req: OpenRequest) -> Runner:
    """For the build's check: convert the model it calibrated (a load traces it again from the file)."""
    from ..quantize_torch import convert_calibrated

    quantized = convert_calibrated(ctx.get(FX_CALIBRATED).prepared, ctx.module)
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


CANDIDATES = (Candidate(ENGINE, (FX_CALIBRATED,), _build, _open, steps=0, open_built=_open_built),)
