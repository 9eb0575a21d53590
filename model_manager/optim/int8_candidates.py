"""The INT8 build candidates: dynamic, static Q/DQ (shared with TensorRT) and static QOperator.

Static candidates calibrate once per build folder: the ranges are saved as ``calibration.json``
beside the models and reused by the other static format.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from ..descriptor import ModelDescriptor
from ..runners import OrtRunner, Runner
from .calibration import ArrayCalibrationReader, sample_calibration_set
from .onnx_export import ONNXExportConfig, ONNXExporter
from .progress import step
from .quant_recipes import recipe_for
from .quantize_onnx import (
    dynamic_int8_from_onnx,
    preprocess_for_quantization,
    qdq_from_onnx,
    qoperator_from_onnx,
    ranges_from_calibration,
)

RANGES_FILE = "calibration.json"
FILES = {
    "int8-dynamic": "model.int8-dynamic.onnx",
    "int8-static": "model.int8-qdq.onnx",
    "int8-static-qop": "model.int8-qop.onnx",
    "int8-torch": "observed.int8-torch.safetensors",
}
CALIBRATION_MAX_SIDE = 128
CALIBRATION_SAMPLES = 8


def _fp32_onnx(module: nn.Module, descriptor: ModelDescriptor, tmp: Path, settings: Any) -> Path:
    """A verified FP32 export, pre-processed for quantization, in a scratch folder."""
    from .candidates import export_inputs

    step("export FP32 ONNX")
    raw = tmp / "fp32.onnx"
    ONNXExporter(ONNXExportConfig(opset=settings.opset)).export(
        module, export_inputs(descriptor, settings), raw, descriptor=descriptor
    )
    return preprocess_for_quantization(raw, tmp / "fp32.pre.onnx")


def calibration_size(descriptor: ModelDescriptor, settings: Any) -> tuple[int, int]:
    cap = max(CALIBRATION_MAX_SIDE, descriptor.size_multiple)
    return descriptor.fit_size(*(min(s, cap) for s in settings.opt_size))


def static_builder(name: str) -> Callable[..., list[str]]:
    writer = qdq_from_onnx if name == "int8-static" else qoperator_from_onnx

    def build(module: nn.Module, descriptor: ModelDescriptor, folder: Path, settings: Any) -> list[str]:
        recipe = recipe_for(descriptor.architecture)
        with tempfile.TemporaryDirectory(prefix="model_manager-int8-") as tmp:
            source = _fp32_onnx(module, descriptor, Path(tmp), settings)
            ranges = folder / RANGES_FILE
            if not ranges.exists():  # one calibration serves both static formats
                step(f"calibrate activation ranges ({recipe.method}, {CALIBRATION_SAMPLES} photo crops)")
                data = sample_calibration_set(
                    descriptor, calibration_size(descriptor, settings), CALIBRATION_SAMPLES
                )
                ranges_from_calibration(source, ArrayCalibrationReader(descriptor, data), recipe, ranges)
            step(f"write {FILES[name]}")
            writer(source, folder / FILES[name], ranges, recipe)
        return [FILES[name], RANGES_FILE]

    return build


def _dynamic_build(module: nn.Module, descriptor: ModelDescriptor, folder: Path, settings: Any) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="model_manager-int8-") as tmp:
        dynamic_int8_from_onnx(
            _fp32_onnx(module, descriptor, Path(tmp), settings), folder / FILES["int8-dynamic"]
        )
    return [FILES["int8-dynamic"]]


def _opener(name: str) -> Callable[[Any], Runner]:
    def open_runner(req: Any) -> Runner:
        return OrtRunner(
            req.folder / FILES[name], req.descriptor, req.info, device=req.device, num_threads=req.num_threads
        )

    return open_runner


def _example(descriptor: ModelDescriptor) -> list[Any]:
    """Small real-photo inputs for tracing (shapes are dynamic in the traced graph)."""
    import torch

    from ..samples import sample_batch

    return [torch.from_numpy(x) for x in sample_batch(descriptor, descriptor.fit_size(64, 64))]


def _torch_int8_build(
    module: nn.Module, descriptor: ModelDescriptor, folder: Path, settings: Any
) -> list[str]:
    """PyTorch FX static INT8: calibrate, then store the observed state (weights + ranges) as safetensors."""
    import torch
    from safetensors.torch import save_file

    from .quantize_torch import calibrate_observed, prepare_static

    example = _example(descriptor)
    step("trace with torch.fx and insert observers")
    prepared = prepare_static(module, example)
    data = sample_calibration_set(descriptor, calibration_size(descriptor, settings), CALIBRATION_SAMPLES)
    step(f"calibrate observers on {CALIBRATION_SAMPLES} photo crops")
    state = calibrate_observed(prepared, [[torch.from_numpy(a) for a in item] for item in data], len(example))
    step(f"write {FILES['int8-torch']}")
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / FILES["int8-torch"]))
    return [FILES["int8-torch"]]


def _torch_int8_open(req: Any) -> Runner:
    """Rebuild the INT8 model from the FP32 module and the stored observed state (no calibration)."""
    from safetensors.torch import load_file

    from ..runners import TorchRunner
    from .quantize_torch import quantized_from_observed

    assert req.module is not None, "int8-torch rebuilds from the FP32 module"
    quantized = quantized_from_observed(
        req.module, _example(req.descriptor), load_file(str(req.folder / FILES["int8-torch"]))
    )
    return TorchRunner(quantized, req.descriptor, req.info, device="cpu")


def register(add: Callable[[Any], Any]) -> None:
    """Add the INT8 candidates through the registry's ``register_candidate``."""
    from .candidates import Candidate

    add(Candidate("int8-dynamic", "onnxruntime", "int8", ("cpu",), _dynamic_build, _opener("int8-dynamic")))
    add(
        Candidate(
            "int8-static",
            "onnxruntime",
            "int8",
            ("cpu", "cuda"),
            static_builder("int8-static"),
            _opener("int8-static"),
        )
    )
    add(Candidate("int8-torch", "torch", "int8", ("cpu",), _torch_int8_build, _torch_int8_open))
    add(
        Candidate(
            "int8-static-qop",
            "onnxruntime",
            "int8",
            ("cpu",),
            static_builder("int8-static-qop"),
            _opener("int8-static-qop"),
        )
    )
