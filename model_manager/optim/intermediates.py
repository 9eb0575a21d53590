"""The shared steps of the build graph: what more than one candidate (or the seed API) consumes.

Each is a :class:`~.graph.Step` named after what it makes; candidates declare which they need and
``ctx.get`` makes each once per build:

==========================  =============================================  ====================
step                        value                                          consumed by
==========================  =============================================  ====================
``inputs``                  real-photo inputs at the profile's opt shape   export, timing
``check.items``             held-out photo crops at the opt shape (4)      every candidate's
                                                                           check, INT8 search
``fp32.reference``          eager FP32 output on them                      every check
``recheck.items``           4 more held-out crops (+ their reference)      checks within 1 dB
                                                                           of their gate
``fp32.onnx``               the verified FP32 export (dynamic B / H / W)   onnx, int8-*,
                                                                           openvino-*, tensorrt
``fp32.quant-ready``        ``quant_pre_process`` of it                    ORT INT8 (reused)
``calibration.crops``       calibration quarters of the photos             ORT ranges, NNCF, FX
``fp16.onnx``               FP16 ONNX (InstanceNorm statistics in FP32)    tensorrt
==========================  =============================================  ====================

The INT8 steps (ranges, the everything-INT8 Q/DQ model, the float-layer search and the models
written from its decision) are in ``int8_steps.py``. Calibration and checks never share pixels:
calibration sees two quarters of each sample photo, checks the other two
(``calibration.held_out_set``).

The seed-shaped API (``ModelQuantizer``, ``TensorRTOptimizer``'s helpers) asks for the same steps,
so there is one export, one calibration and one quantization path.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..cache.key import toolchain_versions
from ..descriptor import ModelDescriptor
from ..runners import RunnerInfo, TorchRunner
from ..samples import CROP_METHOD, HELD_OUT_QUARTERS, SAMPLE_NAMES, sample_batch
from .calibration import held_out_set, sample_calibration_set
from .graph import BuildContext, Files, Step
from .onnx_export import ONNXExportConfig, ONNXExporter
from .quantize_onnx import preprocess_for_quantization
from .settings import BuildSettings

ONNX_FILE = "model.onnx"
CALIBRATION_MEMORY = 768 * 2**20
"""Activation bytes one calibration sample may hold (ONNX Runtime keeps every tensor of a sample)."""
CALIBRATION_SAMPLES = 8
CHECK_ITEMS_COUNT = 4
"""Held-out crops a candidate is checked on (one per photo); as many again when it is near its gate."""
EXPORTER = "torchscript"


def export_inputs(descriptor: ModelDescriptor, settings: BuildSettings) -> list[torch.Tensor]:
    """Real-photo inputs at the profile's opt shape (export, reference and timing size)."""
    size = descriptor.fit_size(*settings.opt_size)
    return [torch.from_numpy(x) for x in sample_batch(descriptor, size, settings.opt_batch)]


def onnx_from_torch(
    module: torch.nn.Module, descriptor: ModelDescriptor, folder: Path, settings: BuildSettings
) -> list[str]:
    """FP32 ONNX with dynamic batch / H / W in ``folder``, verified against PyTorch at another size."""
    report = ONNXExporter(ONNXExportConfig(opset=settings.opset)).export(
        module, export_inputs(descriptor, settings), folder / ONNX_FILE, descriptor=descriptor
    )
    return list(report.files)


def calibration_size(
    descriptor: ModelDescriptor, settings: BuildSettings, module: torch.nn.Module | None = None
) -> tuple[int, int]:
    """The calibration crop size: the opt size (ranges must cover what the served size produces:
    IFNet's flows grow with the frame, and calibrating it at 128 for 256 frames cost 20 dB),
    unless one sample's activations would pass ``CALIBRATION_MEMORY`` (then the largest square
    that fits; ``module`` is measured for that)."""
    height, width = descriptor.fit_size(*settings.opt_size)
    if module is not None:
        per_pixel = activation_bytes_per_pixel(module, descriptor)
        side = int(math.sqrt(CALIBRATION_MEMORY / max(per_pixel, 1.0)))
        if side * side < height * width:
            side = max(side, 2 * descriptor.size_multiple, 32)
            height, width = descriptor.fit_size(min(height, side), min(width, side))
    return height, width


def activation_bytes_per_pixel(module: torch.nn.Module, descriptor: ModelDescriptor) -> float:
    """Bytes of leaf-module outputs per input pixel (x2 for functional ops), measured at 64x64."""
    size = descriptor.fit_size(64, 64)
    total = 0

    def count(_m: torch.nn.Module, _args: Any, out: Any) -> None:
        nonlocal total
        if isinstance(out, torch.Tensor):
            total += out.numel() * out.element_size()

    leaves = [m for m in module.modules() if not any(True for _ in m.children())]
    hooks = [m.register_forward_hook(count) for m in leaves]
    try:
        with torch.no_grad():
            module(*(torch.from_numpy(x) for x in sample_batch(descriptor, size)))
    finally:
        for h in hooks:
            h.remove()
    return 2.0 * total / (size[0] * size[1])


def files_in(folder: Path, names: list[str]) -> Files:
    """A step's Files value: ``names`` written in ``folder``."""
    return Files(folder, tuple(names))


# -- identities: what each content-addressed step depends on besides its needs -------------------
def _export_identity(ctx: BuildContext) -> Mapping[str, Any] | None:
    if ctx.settings.weights_sha256 is None:
        return None
    versions = toolchain_versions()
    return {
        "weights_sha256": ctx.settings.weights_sha256,
        "descriptor": ctx.descriptor.to_dict(),
        "exporter": EXPORTER,
        "opset": ctx.settings.opset,
        "shape": [list(ctx.settings.opt_size), ctx.settings.opt_batch],
        "versions": {k: versions.get(k) for k in ("torch", "onnx", "onnxruntime", "model_manager")},
    }


def ort_identity(_ctx: BuildContext) -> Mapping[str, Any]:
    """Identity of a step whose output depends on ONNX Runtime's version besides its needs."""
    return {"onnxruntime": toolchain_versions().get("onnxruntime")}


def _calibration_identity(ctx: BuildContext) -> Mapping[str, Any]:
    return {
        "size": list(calibration_size(ctx.descriptor, ctx.settings, ctx.module)),
        "count": CALIBRATION_SAMPLES,
        "photos": list(SAMPLE_NAMES),
        "crops": CROP_METHOD,
    }


# -- the steps ----------------------------------------------------------------------------------
def _inputs(ctx: BuildContext, _folder: Path) -> list[np.ndarray]:
    return [t.numpy() for t in export_inputs(ctx.descriptor, ctx.settings)]


INPUTS: Step[list[np.ndarray]] = Step("inputs", "sample photos at the opt shape", _inputs, quiet=True)


def _held_out(start: int) -> Callable[[BuildContext, Path], list[list[np.ndarray]]]:
    def make(ctx: BuildContext, _folder: Path) -> list[list[np.ndarray]]:
        size = ctx.descriptor.fit_size(*ctx.settings.opt_size)
        return held_out_set(ctx.descriptor, size, CHECK_ITEMS_COUNT, start)

    return make


def _items_identity(start: int) -> Callable[[BuildContext], Mapping[str, Any]]:
    def identity(ctx: BuildContext) -> Mapping[str, Any]:
        return {
            "size": list(ctx.descriptor.fit_size(*ctx.settings.opt_size)),
            "start": start,
            "count": CHECK_ITEMS_COUNT,
            "photos": list(SAMPLE_NAMES),
            "quarters": list(HELD_OUT_QUARTERS),
            "crops": CROP_METHOD,
        }

    return identity


CHECK_ITEMS: Step[list[list[np.ndarray]]] = Step(
    "check.items",
    "held-out photo crops at the opt size",
    _held_out(0),
    identity=_items_identity(0),
    quiet=True,
)
RECHECK_ITEMS: Step[list[list[np.ndarray]]] = Step(
    "recheck.items",
    "more held-out photo crops (for results near their gate)",
    _held_out(CHECK_ITEMS_COUNT),
    identity=_items_identity(CHECK_ITEMS_COUNT),
    quiet=True,
)


def runner_info(ctx: BuildContext, strategy: str, backend: str) -> RunnerInfo:
    """What a runner the build opens for a check or a trial says it is (a load fills in the rest)."""
    return RunnerInfo(ctx.descriptor.model_type, strategy, strategy, backend, ctx.settings.device, "")


def fp32_outputs(ctx: BuildContext, items: list[list[np.ndarray]]) -> list[np.ndarray]:
    """Eager FP32 output of each item (batch 1 each: the reference every candidate is checked against)."""
    info = RunnerInfo(ctx.descriptor.model_type, "reference", "none", "torch", "cpu", "fp32")
    with TorchRunner(ctx.module, ctx.descriptor, info) as runner:
        return [runner(*item) for item in items]


def _weights_identity(ctx: BuildContext) -> Mapping[str, Any] | None:
    """The weights' hash: what an FP32 reference depends on besides its inputs (None: unknown)."""
    return None if ctx.settings.weights_sha256 is None else {"weights": ctx.settings.weights_sha256}


FP32_REFERENCE: Step[list[np.ndarray]] = Step(
    "fp32.reference",
    "eager FP32 output on held-out photo crops (the reference)",
    lambda ctx, _folder: fp32_outputs(ctx, ctx.get(CHECK_ITEMS)),
    needs=(CHECK_ITEMS,),
    identity=_weights_identity,
)
FP32_RECHECK_REFERENCE: Step[list[np.ndarray]] = Step(
    "fp32.recheck-reference",
    "eager FP32 output on more held-out crops",
    lambda ctx, _folder: fp32_outputs(ctx, ctx.get(RECHECK_ITEMS)),
    needs=(RECHECK_ITEMS,),
    identity=_weights_identity,
    quiet=True,
)

FP32_ONNX: Step[Files] = Step(
    "fp32.onnx",
    "export FP32 ONNX and verify it at another size",
    lambda ctx, folder: files_in(folder, onnx_from_torch(ctx.module, ctx.descriptor, folder, ctx.settings)),
    identity=_export_identity,
    reusable=True,
)


def _quant_ready(ctx: BuildContext, folder: Path) -> Files:
    preprocess_for_quantization(ctx.get(FP32_ONNX).main, folder / "fp32.pre.onnx")
    return files_in(folder, ["fp32.pre.onnx"])


QUANT_READY_ONNX: Step[Files] = Step(
    "fp32.quant-ready",
    "prepare the FP32 ONNX for quantization (quant_pre_process)",
    _quant_ready,
    needs=(FP32_ONNX,),
    identity=ort_identity,
    reusable=True,
)

CALIBRATION_CROPS: Step[list[list[np.ndarray]]] = Step(
    "calibration.crops",
    f"calibration crops of the sample photos ({CALIBRATION_SAMPLES})",
    lambda ctx, _folder: sample_calibration_set(
        ctx.descriptor, calibration_size(ctx.descriptor, ctx.settings, ctx.module), CALIBRATION_SAMPLES
    ),
    identity=_calibration_identity,
    quiet=True,
)


def _fp16(ctx: BuildContext, folder: Path) -> Files:
    from .onnx_fp16 import fp16_onnx_from_onnx

    return files_in(folder, fp16_onnx_from_onnx(ctx.get(FP32_ONNX).main, folder / "model.fp16.onnx"))


FP16_ONNX: Step[Files] = Step(
    "fp16.onnx",
    "convert the ONNX to FP16 (InstanceNorm statistics stay FP32)",
    _fp16,
    needs=(FP32_ONNX,),
    identity=lambda _ctx: {"converter": "onnx_fp16"},
)
