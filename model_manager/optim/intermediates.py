"""The shared steps of the build graph: what more than one candidate (or the seed API) consumes.

Each is a :class:`~.graph.Step` named after what it makes; candidates declare which they need and
``ctx.get`` makes each once per build:

=====================  ==================================================  ======================
step                   value                                               consumed by
=====================  ==================================================  ======================
``inputs``             real-photo inputs at the profile's opt shape        export, reference, timing
``fp32.reference``     eager FP32 output on them                           every candidate's check
``fp32.onnx``          the verified FP32 export (dynamic batch / H / W)    onnx, int8-*, openvino-*,
                                                                           tensorrt (reused across
                                                                           builds)
``fp32.quant-ready``   ``quant_pre_process`` of it                          ORT INT8 (reused)
``int8.recipe``        calibration method and float-kept nodes             ORT / TensorRT INT8
``calibration.crops``  photo crops at the calibration size                 ORT ranges, NNCF, FX
``int8.ranges``        ORT activation ranges (``calibration.json``)        Q/DQ and QOperator (reused)
``int8.qdq.onnx``      symmetric Q/DQ model                                int8-static, tensorrt-int8
``int8.qop.onnx``      QOperator model                                     int8-static-qop
``int8.dynamic.onnx``  dynamic INT8 model                                  int8-dynamic
``fp16.onnx``          FP16 ONNX (InstanceNorm statistics in FP32)         tensorrt
=====================  ==================================================  ======================

The seed-shaped API (``ModelQuantizer``, ``TensorRTOptimizer``'s helpers) asks for the same steps,
so there is one export, one calibration and one quantization path.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..cache.key import toolchain_versions
from ..descriptor import ModelDescriptor
from ..progress import detail
from ..runners import RunnerInfo, TorchRunner
from ..samples import SAMPLE_NAMES, sample_batch
from .calibration import ArrayCalibrationReader, sample_calibration_set
from .graph import BuildContext, Files, Step
from .onnx_export import ONNXExportConfig, ONNXExporter
from .quant_recipes import recipe_for
from .quantize_onnx import (
    StaticInt8Settings,
    dynamic_int8_from_onnx,
    preprocess_for_quantization,
    qdq_from_onnx,
    qoperator_from_onnx,
    ranges_from_calibration,
)
from .settings import BuildSettings

ONNX_FILE = "model.onnx"
CALIBRATION_MAX_SIDE = 128
CALIBRATION_SAMPLES = 8
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


def calibration_size(descriptor: ModelDescriptor, settings: BuildSettings) -> tuple[int, int]:
    """The calibration crop size: the opt size, capped at 128 per side (memory), fitted to the model."""
    cap = max(CALIBRATION_MAX_SIDE, descriptor.size_multiple)
    return descriptor.fit_size(*(min(s, cap) for s in settings.opt_size))


def _files(folder: Path, names: list[str]) -> Files:
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


def _ort_identity(_ctx: BuildContext) -> Mapping[str, Any]:
    return {"onnxruntime": toolchain_versions().get("onnxruntime")}


def _calibration_identity(ctx: BuildContext) -> Mapping[str, Any]:
    return {
        "size": list(calibration_size(ctx.descriptor, ctx.settings)),
        "count": CALIBRATION_SAMPLES,
        "photos": list(SAMPLE_NAMES),
    }


# -- the steps ----------------------------------------------------------------------------------
def _inputs(ctx: BuildContext, _folder: Path) -> list[np.ndarray]:
    return [t.numpy() for t in export_inputs(ctx.descriptor, ctx.settings)]


INPUTS: Step[list[np.ndarray]] = Step("inputs", "sample photos at the opt shape", _inputs, quiet=True)


def _reference(ctx: BuildContext, _folder: Path) -> np.ndarray:
    info = RunnerInfo(ctx.descriptor.model_type, "reference", "none", "torch", "cpu", "fp32")
    with TorchRunner(ctx.module, ctx.descriptor, info) as runner:
        return runner(*ctx.get(INPUTS))


FP32_REFERENCE: Step[np.ndarray] = Step(
    "fp32.reference", "eager FP32 output (the reference)", _reference, needs=(INPUTS,)
)

FP32_ONNX: Step[Files] = Step(
    "fp32.onnx",
    "export FP32 ONNX and verify it at another size",
    lambda ctx, folder: _files(folder, onnx_from_torch(ctx.module, ctx.descriptor, folder, ctx.settings)),
    identity=_export_identity,
    reusable=True,
)


def _quant_ready(ctx: BuildContext, folder: Path) -> Files:
    preprocess_for_quantization(ctx.get(FP32_ONNX).main, folder / "fp32.pre.onnx")
    return _files(folder, ["fp32.pre.onnx"])


QUANT_READY_ONNX: Step[Files] = Step(
    "fp32.quant-ready",
    "prepare the FP32 ONNX for quantization (quant_pre_process)",
    _quant_ready,
    needs=(FP32_ONNX,),
    identity=_ort_identity,
    reusable=True,
)

INT8_RECIPE: Step[StaticInt8Settings] = Step(
    "int8.recipe",
    "static INT8 settings of the architecture",
    lambda ctx, _folder: recipe_for(ctx.descriptor.architecture),
    identity=lambda ctx: {"recipe": recipe_for(ctx.descriptor.architecture)},
    quiet=True,
)

CALIBRATION_CROPS: Step[list[list[np.ndarray]]] = Step(
    "calibration.crops",
    f"calibration crops of the sample photos ({CALIBRATION_SAMPLES})",
    lambda ctx, _folder: sample_calibration_set(
        ctx.descriptor, calibration_size(ctx.descriptor, ctx.settings), CALIBRATION_SAMPLES
    ),
    identity=_calibration_identity,
    quiet=True,
)


def _ranges(ctx: BuildContext, folder: Path) -> Files:
    recipe, crops = ctx.get(INT8_RECIPE), ctx.get(CALIBRATION_CROPS)
    detail(f"{recipe.method} ranges on {len(crops)} photo crops")
    reader = ArrayCalibrationReader(ctx.descriptor, crops)
    ranges_from_calibration(ctx.get(QUANT_READY_ONNX).main, reader, recipe, folder / "calibration.json")
    return _files(folder, ["calibration.json"])


INT8_RANGES: Step[Files] = Step(
    "int8.ranges",
    "calibrate activation ranges",
    _ranges,
    needs=(QUANT_READY_ONNX, INT8_RECIPE, CALIBRATION_CROPS),
    identity=_ort_identity,
    reusable=True,
)


def _static(name: str, writer: Any) -> Step[Files]:
    file = f"model.int8-{name}.onnx"

    def run(ctx: BuildContext, folder: Path) -> Files:
        writer(ctx.get(QUANT_READY_ONNX).main, folder / file, ctx.get(INT8_RANGES).main, ctx.get(INT8_RECIPE))
        return _files(folder, [file])

    what = "symmetric Q/DQ" if name == "qdq" else "QOperator"
    return Step(
        f"int8.{name}.onnx",
        f"write the {what} INT8 ONNX from the ranges",
        run,
        needs=(QUANT_READY_ONNX, INT8_RANGES, INT8_RECIPE),
        identity=_ort_identity,
    )


INT8_QDQ_ONNX = _static("qdq", qdq_from_onnx)
INT8_QOP_ONNX = _static("qop", qoperator_from_onnx)


def _dynamic(ctx: BuildContext, folder: Path) -> Files:
    dynamic_int8_from_onnx(ctx.get(QUANT_READY_ONNX).main, folder / "model.int8-dynamic.onnx")
    return _files(folder, ["model.int8-dynamic.onnx"])


INT8_DYNAMIC_ONNX: Step[Files] = Step(
    "int8.dynamic.onnx",
    "quantize weights to INT8 (dynamic)",
    _dynamic,
    needs=(QUANT_READY_ONNX,),
    identity=_ort_identity,
)


def _fp16(ctx: BuildContext, folder: Path) -> Files:
    from .onnx_fp16 import fp16_onnx_from_onnx

    return _files(folder, fp16_onnx_from_onnx(ctx.get(FP32_ONNX).main, folder / "model.fp16.onnx"))


FP16_ONNX: Step[Files] = Step(
    "fp16.onnx",
    "convert the ONNX to FP16 (InstanceNorm statistics stay FP32)",
    _fp16,
    needs=(FP32_ONNX,),
    identity=lambda _ctx: {"converter": "onnx_fp16"},
)
