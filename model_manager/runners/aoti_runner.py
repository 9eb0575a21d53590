"""AotiRunner: an AOTInductor ``.pt2`` package (compiled FP32 module) behind the Runner contract."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..descriptor import ModelDescriptor
from ..devices import on_device
from ..errors import BackendError, InvalidInputError
from .base import Runner, RunnerInfo

PACKAGE = "model.pt2"
SHAPES = "shapes.aoti.json"


@dataclass(frozen=True)
class ExportedShapes:
    """What the package accepts (batch and H / W from these minimums up, unbounded) and what it took."""

    min_batch: int
    min_height: int
    min_width: int
    multiple: int
    device: str
    export_s: float
    compile_s: float


def read_shapes(folder: Path) -> ExportedShapes:
    """The shapes a package was exported for (written beside it at build time)."""
    return ExportedShapes(**json.loads((folder / SHAPES).read_text()))


def below_minimum(shapes: ExportedShapes, sizes: Sequence[int]) -> str | None:
    """Why (batch, H, W) is outside what the package admits, or None when it is inside."""
    names = ("batch", "height", "width")
    lows = (shapes.min_batch, shapes.min_height, shapes.min_width)
    for name, size, low in zip(names, sizes, lows):
        if size < low:
            return f"{name} {size} is below the exported minimum {low}"
    return None


class AotiRunner(Runner):
    """Loads the package once (dlopen of its compiled library: no export, no compile) and runs it.

    The package takes any batch and H / W from its exported minimums up; a size below them is
    refused with the reason before the compiled code sees it.
    """

    def __init__(
        self, path: str | Path, descriptor: ModelDescriptor, info: RunnerInfo, device: str | None = None
    ) -> None:
        super().__init__(descriptor, info)
        self.path = Path(path)
        self.shapes: ExportedShapes = read_shapes(self.path.parent)
        self.device = torch.device(device or self.shapes.device)
        if self.device.type != torch.device(self.shapes.device).type:
            raise InvalidInputError(
                f"{self.path} was compiled for {self.shapes.device}, not for {self.device}"
            )
        try:
            from torch._inductor import aoti_load_package

            index = self.device.index if self.device.index is not None else -1
            self.model: Any = aoti_load_package(str(self.path), device_index=index)
        except Exception as exc:  # a damaged or foreign package: say which file
            raise BackendError(f"cannot load the AOTInductor package {self.path}: {exc}") from exc
        self.info.artifact_path = self.info.artifact_path or str(self.path)
        self.info.device = self.device.type

    def _infer_impl(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        first = next(t for t, s in zip(inputs, self.descriptor.inputs) if s.kind == "image")
        problem = below_minimum(self.shapes, (int(first.shape[0]), int(first.shape[2]), int(first.shape[3])))
        if problem is not None:
            raise InvalidInputError(
                f"{self.info.model_type}/{self.info.name} [aoti]: {problem} (padded input "
                f"{tuple(first.shape)}); use a larger input or another optimization"
            )
        args = [t.to(self.device, torch.float32).contiguous() for t in inputs]
        with torch.inference_mode(), on_device(self.device):
            out = self.model(*args)
        return out[0] if isinstance(out, (list, tuple)) else out

    def _close_impl(self) -> None:
        self.model = None
