"""TensorRT candidates: ``tensorrt`` (FP16 engine) and ``tensorrt-int8`` (from the Q/DQ ONNX).

FP16: the build's verified FP32 export -> FP16 ONNX (InstanceNorm statistics in float) ->
engine. INT8: the same calibrated symmetric Q/DQ ONNX that ``int8-static`` serves on the CPU ->
engine. Registered only where ``tensorrt`` imports; the cache key carries the GPU, its compute
capability and the TensorRT version, so an engine built elsewhere is a miss.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ...runners import Runner
from ..graph import BuildContext, Files, Step
from ..int8_steps import INT8_QDQ_ONNX, note_float_layers
from ..intermediates import FP16_ONNX
from ..settings import BuildSettings
from ..trt_engine import (
    ENGINE,
    Precision,
    TensorRTConfig,
    current_environment,
    engine_from_onnx,
    read_sidecar,
    shared_timing_cache,
)
from .base import Candidate, OpenRequest


def _builder(
    name: str, source: Step[Files], precision: Precision
) -> Callable[[BuildContext, Path], list[str]]:
    def build(ctx: BuildContext, folder: Path) -> list[str]:
        onnx = ctx.get(source)
        if precision == "int8":  # the Q/DQ file carries the float-layer decision
            note_float_layers(ctx, name)
        ctx.begin(f"build the {precision} engine (TensorRT times every tactic)", name)
        config = engine_config(ctx.settings, precision, current_environment())
        return engine_from_onnx(onnx.main, ctx.descriptor, folder, config, ctx.settings.opt_size)

    return build


def engine_config(settings: BuildSettings, precision: Precision, env: Mapping[str, Any]) -> TensorRTConfig:
    """A managed build's config: the deployer's build fields, and the timing cache this GPU and
    TensorRT share under the cache root (never the build's own folder, which is thrown away)."""
    root = settings.intermediates_root
    timing = shared_timing_cache(Path(root), env) if root else None
    return TensorRTConfig.from_options(precision, settings.tensorrt, timing)


def _open(req: OpenRequest) -> Runner:
    from ...runners.trt_runner import TrtRunner

    version_compatible = bool(read_sidecar(req.folder / ENGINE).get("config", {}).get("version_compatible"))
    return TrtRunner(
        req.folder / ENGINE,
        req.descriptor,
        req.info,
        cuda_graph=req.cuda_graph,
        allow_host_code=version_compatible,
        device=req.device,
    )


CANDIDATES = (
    Candidate("tensorrt", (FP16_ONNX,), _builder("tensorrt", FP16_ONNX, "fp16"), _open),
    Candidate("tensorrt-int8", (INT8_QDQ_ONNX,), _builder("tensorrt-int8", INT8_QDQ_ONNX, "int8"), _open),
)
