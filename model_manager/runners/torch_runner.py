"""TorchRunner: eager PyTorch on the CPU or a CUDA device (FP32 reference, FP16, BF16 autocast)."""

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
        autocast: torch.dtype | None = None,
        channels_last: bool = False,
    ) -> None:
        super().__init__(descriptor, info)
        self.device = torch.device(device)
        self.dtype = dtype
        self.autocast = autocast
        self.channels_last = channels_last
        if self.device.type != "cpu" or dtype != torch.float32 or channels_last:
            module = copy.deepcopy(module)  # never convert the caller's FP32 reference in place
        module = module.eval().to(self.device, dtype)
        if channels_last:
            module = module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.module: nn.Module | None = module

    def _infer_impl(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        assert self.module is not None
        args = [t.to(self.device, self.dtype, non_blocking=True) for t in inputs]
        if self.channels_last:
            args = [
                a.contiguous(memory_format=torch.channels_last) if a.dim() == 4 and a.shape[-1] > 1 else a
                for a in args
            ]
        with (
            torch.inference_mode(),
            torch.autocast(
                self.device.type, self.autocast or torch.float32, enabled=self.autocast is not None
            ),
        ):
            out = self.module(*args)
        return out.float().contiguous()

    def _close_impl(self) -> None:
        self.module = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
