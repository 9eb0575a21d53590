"""The ``tensorrt`` (FP16) and ``tensorrt-int8`` candidates: engines from this project's own ONNX.

FP16: the verified FP32 export -> ``onnx_fp16.fp16_onnx_from_onnx`` (weights and compute in half,
InstanceNorm statistics in float) -> engine. INT8: the same calibrated symmetric Q/DQ ONNX the
``int8-static`` candidate serves on the CPU -> engine. Registered only where ``tensorrt`` imports;
the cache key carries the GPU, its compute capability and the TensorRT version, so an engine built
elsewhere is a miss.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from ..descriptor import ModelDescriptor
from ..runners import Runner
from .progress import step
from .tensorrt import SIDECAR_SUFFIX, TensorRTConfig, TensorRTOptimizer
from .trt_profiles import opt_at_size, profiles_from_descriptor

ENGINE = "model.engine"


def engine_from_onnx(
    onnx_path: Path,
    descriptor: ModelDescriptor,
    folder: Path,
    config: TensorRTConfig,
    opt_size: tuple[int, int],
) -> list[str]:
    """Build ``model.engine`` (+ sidecar) in ``folder`` with the descriptor's profile at ``opt_size``."""
    opt = opt_at_size(descriptor, opt_size)
    profiles, notes = profiles_from_descriptor(descriptor, opt)
    for note in notes:
        step(note)
    TensorRTOptimizer(config).optimize_from_onnx(onnx_path, folder / ENGINE, profiles)
    return [ENGINE, ENGINE + SIDECAR_SUFFIX]


def _fp16_build(module: nn.Module, descriptor: ModelDescriptor, folder: Path, settings: Any) -> list[str]:
    from .candidates import ONNX_FILE, onnx_from_torch
    from .onnx_fp16 import fp16_onnx_from_onnx

    with tempfile.TemporaryDirectory(prefix="model_manager-trt-") as tmp:
        onnx_from_torch(module, descriptor, Path(tmp), settings)
        step("convert the ONNX to FP16 (InstanceNorm statistics stay FP32)")
        fp16_onnx_from_onnx(Path(tmp) / ONNX_FILE, Path(tmp) / "model.fp16.onnx")
        return engine_from_onnx(
            Path(tmp) / "model.fp16.onnx", descriptor, folder, TensorRTConfig("fp16"), settings.opt_size
        )


def _int8_build(module: nn.Module, descriptor: ModelDescriptor, folder: Path, settings: Any) -> list[str]:
    from .int8_candidates import FILES, static_builder

    with tempfile.TemporaryDirectory(prefix="model_manager-trt-") as tmp:
        static_builder("int8-static")(module, descriptor, Path(tmp), settings)
        return engine_from_onnx(
            Path(tmp) / FILES["int8-static"], descriptor, folder, TensorRTConfig("int8"), settings.opt_size
        )


def _open(req: Any) -> Runner:
    from ..runners.trt_runner import TrtRunner

    return TrtRunner(req.folder / ENGINE, req.descriptor, req.info)


def engine_from_module(
    model: nn.Module,
    model_type: str,
    engine_path: Path,
    config: TensorRTConfig,
    opt_size: tuple[int, int] | None,
) -> dict[str, Any]:
    """Convenience: describe, export (FP16 or Q/DQ per ``config.precision``) and build one engine."""
    from ..checkpoint import describe_module
    from .candidates import BuildSettings
    from .tensorrt import read_sidecar

    descriptor = describe_module(model, model_type)
    settings = BuildSettings(device="cuda", opt_size=opt_size or (256, 256))
    build = {"fp16": _fp16_build, "int8": _int8_build}.get(config.precision, _fp16_build)
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="model_manager-trt-") as tmp:
        build(model, descriptor, Path(tmp), settings)
        (Path(tmp) / ENGINE).replace(engine_path)
        Path(tmp, ENGINE + SIDECAR_SUFFIX).replace(
            engine_path.with_suffix(engine_path.suffix + SIDECAR_SUFFIX)
        )
    return read_sidecar(engine_path)


def register(add: Callable[[Any], Any]) -> None:
    """Add the TensorRT candidates through the registry's ``register_candidate``."""
    from .candidates import Candidate

    add(Candidate("tensorrt", "tensorrt", "fp16", ("cuda",), _fp16_build, _open))
    add(Candidate("tensorrt-int8", "tensorrt", "int8", ("cuda",), _int8_build, _open))
