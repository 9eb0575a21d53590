"""PyTorch candidates that run the FP32 module itself: ``none`` (eager FP32), ``fp16`` (CUDA), ``bf16``."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ...runners import Runner, TorchRunner
from .base import Candidate, OpenRequest, nothing_to_build


def _open_torch(dtype: torch.dtype) -> Callable[[OpenRequest], Runner]:
    def open_runner(req: OpenRequest) -> Runner:
        assert req.module is not None, "eager candidates need the FP32 module"
        half = dtype == torch.float16  # FP16 on CUDA: half weights and channels_last (tensor cores)
        return TorchRunner(
            req.module, req.descriptor, req.info, device=req.device, dtype=dtype, channels_last=half
        )

    return open_runner


def _open_bf16(req: OpenRequest) -> Runner:
    assert req.module is not None, "bf16 runs the FP32 module under autocast"
    return TorchRunner(
        req.module, req.descriptor, req.info, device=req.device, autocast=torch.bfloat16, channels_last=True
    )


CANDIDATES = (
    Candidate("none", (), nothing_to_build, _open_torch(torch.float32), steps=0),
    Candidate("fp16", (), nothing_to_build, _open_torch(torch.float16), steps=0),
    Candidate("bf16", (), nothing_to_build, _open_bf16, steps=0),
)
