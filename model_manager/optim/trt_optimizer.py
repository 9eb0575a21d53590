"""The seed-shaped TensorRT API: ``TensorRTOptimizer`` and ``optimize_*_tensorrt``, a thin face.

``optimize_from_onnx`` is ``trt_engine.engine_from_onnx_file`` with the optimizer's config;
the convenience functions run the same build-graph steps the ``tensorrt`` candidates run (the
verified FP32 export, then the FP16 ONNX or the calibrated Q/DQ ONNX, or the FP32 export itself
for ``precision="fp32"``) and build the engine with the :class:`TensorRTConfig` they are given.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from ..errors import BackendError
from ..progress import publish
from .graph import BuildContext, Files, Step
from .int8_steps import INT8_QDQ_ONNX
from .intermediates import FP16_ONNX, FP32_ONNX
from .settings import BuildSettings
from .trt_engine import (
    ENGINE,
    SIDECAR_SUFFIX,
    TIMING_CACHE,
    TensorRTConfig,
    as_profiles,
    current_environment,
    engine_from_onnx,
    engine_from_onnx_file,
    engine_is_current,
    read_sidecar,
)
from .trt_profiles import InputProfile, Shape

if TYPE_CHECKING:
    import tensorrt as trt

SOURCE_ONNX: dict[str, Step[Files]] = {"fp16": FP16_ONNX, "int8": INT8_QDQ_ONNX, "fp32": FP32_ONNX}
"""Which ONNX a strongly typed engine of each precision is built from."""


class TensorRTOptimizer:
    """Builds, loads and times TensorRT engines (the seed's API, on TensorRT 10 / 11)."""

    def __init__(self, config: TensorRTConfig | None = None) -> None:
        self.config = config or TensorRTConfig()

    def optimize_from_onnx(
        self,
        onnx_path: str | Path,
        engine_path: str | Path,
        input_shapes: Mapping[str, tuple[Shape, Shape, Shape] | Shape] | Sequence[InputProfile],
    ) -> dict[str, Any]:
        """Build ``engine_path`` (+ sidecar) from ``onnx_path`` with one profile; return the metadata."""
        return engine_from_onnx_file(
            Path(onnx_path), Path(engine_path), as_profiles(input_shapes), self.config
        )

    def load_engine(self, engine_path: str | Path) -> trt.ICudaEngine:
        """Deserialize an engine after checking its sidecar against this GPU and TensorRT."""
        from ..runners.trt_session import deserialize_engine

        engine_path = Path(engine_path)
        ok, reasons = engine_is_current(read_sidecar(engine_path), current_environment())
        if not ok:
            raise BackendError(f"{engine_path.name} cannot run here: " + "; ".join(reasons))
        engine: trt.ICudaEngine = deserialize_engine(str(engine_path), self.config.version_compatible)
        return engine

    def benchmark_engine(
        self, engine_path: str | Path, test_input: Any, num_iterations: int = 100
    ) -> dict[str, Any]:
        """Median / p90 latency (CUDA events, the one harness) of the engine on ``test_input``."""
        from ..runners.trt_runner import TrtRunner
        from .benchmark import benchmark

        runner = TrtRunner.from_engine(Path(engine_path))
        try:
            result = benchmark(
                lambda: runner(test_input), label=Path(engine_path).name, iterations=num_iterations, cuda=True
            )
        finally:
            runner.close()
        return {
            **result.to_dict(),
            "average_time_ms": result.mean_ms,
            "throughput_fps": result.throughput_per_s,
        }


def engine_from_module(
    model: nn.Module,
    model_type: str,
    engine_path: Path,
    config: TensorRTConfig,
    opt_size: tuple[int, int] | None,
) -> dict[str, Any]:
    """Describe, export (the ONNX ``config.precision`` calls for) and build one engine with ``config``."""
    from ..checkpoint import describe_module

    descriptor = describe_module(model, model_type)
    settings = BuildSettings(device="cuda", opt_size=opt_size or (256, 256))
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    # beside the engine it is for, not in the temporary build folder that is thrown away
    config = replace(config, timing_cache=config.timing_cache or engine_path.parent / TIMING_CACHE)
    with tempfile.TemporaryDirectory(prefix="model_manager-trt-") as tmp:
        label = f"{model_type}/{descriptor.architecture} [tensorrt {config.precision}]"
        ctx = BuildContext(
            model.eval(), descriptor, settings, Path(tmp) / "steps", events=publish, label=label
        )
        with ctx.reporting():
            source = ctx.get(SOURCE_ONNX[config.precision])
            ctx.begin(f"build the {config.precision} engine", "tensorrt")
            engine_from_onnx(source.main, descriptor, Path(tmp), config, settings.opt_size)
        ctx.finish()
        (Path(tmp) / ENGINE).replace(engine_path)
        Path(tmp, ENGINE + SIDECAR_SUFFIX).replace(
            engine_path.with_suffix(engine_path.suffix + SIDECAR_SUFFIX)
        )
    return read_sidecar(engine_path)


def _convenience(model_type: str) -> Callable[..., dict[str, Any]]:
    def optimize(
        model: nn.Module,
        engine_path: str | Path,
        config: TensorRTConfig | None = None,
        opt_size: tuple[int, int] | None = None,
    ) -> dict[str, Any]:
        return engine_from_module(model, model_type, Path(engine_path), config or TensorRTConfig(), opt_size)

    optimize.__name__ = f"optimize_{model_type}_tensorrt"
    optimize.__doc__ = (
        f"Export a {model_type} network to ONNX (FP16 / Q/DQ / FP32 as configured) and build its engine."
    )
    return optimize


optimize_style_transfer_tensorrt = _convenience("style_transfer")
optimize_super_resolution_tensorrt = _convenience("super_resolution")
optimize_interpolation_tensorrt = _convenience("interpolation")
