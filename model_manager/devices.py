"""The CUDA device a piece of work runs on: ``cuda:N`` made current for a block, on any thread.

CUDA's current device is per thread, and the libraries behind the runners (TensorRT contexts and
streams, AOTInductor packages, a build's ``"cuda"`` tensors) use the current device. Loading,
building and every call of a runner for ``cuda:N`` run inside :func:`on_device`, so a manager
configured with ``device="cuda:1"`` never touches ``cuda:0`` from a worker thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def on_device(device: str | torch.device) -> Iterator[None]:
    """Make ``device`` the current CUDA device for the block (a no-op for the CPU or a bare ``cuda``)."""
    d = torch.device(device)
    if d.type != "cuda" or d.index is None:
        yield
        return
    with torch.cuda.device(d.index):
        yield
