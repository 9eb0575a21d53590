"""TorchRunner: eager PyTorch on the CPU or a CUDA device (the FP32 reference and ``none``)."""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..descriptor import ModelDescriptor
from .base import Runner, RunnerInfo


class TorchRunner(Runner):
    """Runs an eval-mode ``nn.Module`` under ``torch.inference_mode`` on one device."""

    def __init__(
        self,
        module: nn.Module,
        descriptor: ModelDescriptor,
        info: RunnerInfo,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__(descriptor, info)
        self.device = torch.device(device)
        self.dtype = dtype
        if self.device.type != "cpu" or dtype != torch.float32:
            module = copy.deepcopy(module)  # never convert the caller's FP32 reference in place
        self.module: nn.Module | None = module.eval().to(self.device, dtype)

    def _infer_impl(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        assert self.module is not None
        args = [t.to(self.device, self.dtype, non_blocking=True) for t in inputs]
        with torch.inference_mode():
            out = self.module(*args)
        return out.float()

    def _close_impl(self) -> None:
        self.module = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
