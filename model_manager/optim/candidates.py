"""Build candidates: how each strategy's artifact is built from the FP32 module and opened as a Runner.

Builders are named "what from what" and only write files; opening only reads them. The cache
wraps both without knowing what the files are. The quantization and TensorRT issues register
their candidates here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..descriptor import ModelDescriptor
from ..runners import OrtRunner, Runner, RunnerInfo, TorchRunner
from ..samples import sample_batch
from .onnx_export import DEFAULT_OPSET, ONNXExportConfig, ONNXExporter
from .progress import step

ONNX_FILE = "model.onnx"


@dataclass(frozen=True)
class BuildSettings:
    """Everything a build needs besides the model (serialisable for the build process)."""

    device: str = "cpu"
    opset: int = DEFAULT_OPSET
    gates: dict[str, float] = field(
        default_factory=lambda: {"fp32": 50.0, "fp16": 40.0, "bf16": 40.0, "int8": 35.0}
    )
    time_budget_s: float = 3.0
    warmup: int = 2
    iterations: int = 20
    num_threads: int | None = None
    opt_size: tuple[int, int] = (256, 256)
    opt_batch: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BuildSettings:
        data = dict(data)
        data["opt_size"] = tuple(data["opt_size"])
        return cls(**data)


@dataclass(frozen=True)
class OpenRequest:
    """What opening an artifact needs: its folder and files, the FP32 module, where to run."""

    folder: Path
    files: list[str]
    module: nn.Module | None
    descriptor: ModelDescriptor
    info: RunnerInfo
    device: str
    num_threads: int | None


@dataclass(frozen=True)
class Candidate:
    """One strategy: a backend and precision, a builder and an opener."""

    name: str
    backend: str
    precision: str
    devices: tuple[str, ...]
    build: Callable[[nn.Module, ModelDescriptor, Path, BuildSettings], list[str]]
    open: Callable[[OpenRequest], Runner]


def export_inputs(descriptor: ModelDescriptor, settings: BuildSettings) -> list[torch.Tensor]:
    """Real-photo inputs at the profile's opt shape (export and calibration size)."""
    size = descriptor.fit_size(*settings.opt_size)
    return [torch.from_numpy(x) for x in sample_batch(descriptor, size, settings.opt_batch)]


def onnx_from_torch(
    module: nn.Module, descriptor: ModelDescriptor, folder: Path, settings: BuildSettings
) -> list[str]:
    """FP32 ONNX with dynamic batch / H / W, verified against PyTorch at another size."""
    step("export FP32 ONNX and verify it at another size")
    report = ONNXExporter(ONNXExportConfig(opset=settings.opset)).export(
        module, export_inputs(descriptor, settings), folder / ONNX_FILE, descriptor=descriptor
    )
    return list(report.files)


def _nothing_to_build(
    module: nn.Module, descriptor: ModelDescriptor, folder: Path, settings: BuildSettings
) -> list[str]:
    return []


def _open_torch(dtype: torch.dtype) -> Callable[[OpenRequest], Runner]:
    def open_runner(req: OpenRequest) -> Runner:
        assert req.module is not None, "eager candidates need the FP32 module"
        half = dtype == torch.float16  # FP16 on CUDA: half weights and channels_last (tensor cores)
        return TorchRunner(
            req.module, req.descriptor, req.info, device=req.device, dtype=dtype, channels_last=half
        )

    return open_runner


def _open_onnx(req: OpenRequest) -> Runner:
    return OrtRunner(
        req.folder / ONNX_FILE, req.descriptor, req.info, device=req.device, num_threads=req.num_threads
    )


CANDIDATES: dict[str, Candidate] = {}


def register_candidate(candidate: Candidate) -> Candidate:
    CANDIDATES[candidate.name] = candidate
    return candidate


register_candidate(
    Candidate("none", "torch", "fp32", ("cpu", "cuda"), _nothing_to_build, _open_torch(torch.float32))
)
register_candidate(Candidate("onnx", "onnxruntime", "fp32", ("cpu", "cuda"), onnx_from_torch, _open_onnx))
register_candidate(
    Candidate("fp16", "torch", "fp16", ("cuda",), _nothing_to_build, _open_torch(torch.float16))
)


def available_candidates(device: str) -> set[str]:
    """Names of the candidates that can run on ``device``."""
    return {c.name for c in CANDIDATES.values() if device in c.devices}


def _open_bf16(req: OpenRequest) -> Runner:
    assert req.module is not None, "bf16 runs the FP32 module under autocast"
    return TorchRunner(
        req.module, req.descriptor, req.info, device=req.device, autocast=torch.bfloat16, channels_last=True
    )


register_candidate(Candidate("bf16", "torch", "bf16", ("cpu",), _nothing_to_build, _open_bf16))


def _register_int8() -> None:
    from . import int8_candidates

    int8_candidates.register(register_candidate)


_register_int8()


def _register_openvino() -> None:
    """OpenVINO candidates exist only where the extra is installed (checked without importing it)."""
    from ..runners.ov_session import openvino_available

    if openvino_available():
        from . import openvino

        openvino.register(register_candidate)


_register_openvino()


def _register_tensorrt() -> None:
    """TensorRT candidates exist only where ``tensorrt`` is installed (checked without importing it)."""
    from ..runners.trt_session import tensorrt_available

    if tensorrt_available():
        from . import trt_candidates

        trt_candidates.register(register_candidate)


_register_tensorrt()
