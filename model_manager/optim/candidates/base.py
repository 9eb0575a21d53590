"""The candidate types plugins build on: a Candidate (its steps, builder, opener) and an OpenRequest.

A candidate is the implementation of one strategy of the table (``optim/strategies.py``): what
it ``needs`` from the build graph, ``build`` (write the entry's files from those intermediates)
and ``open`` (a Runner over the published files). Backend and precision come from the table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from ...descriptor import ModelDescriptor
from ...runners import Runner, RunnerInfo
from ..graph import BuildContext, Step
from ..strategies import Strategy, strategy


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
    cuda_graph: bool = False
    """TensorRT: replay the engine as CUDA graphs (``TensorRTOptions.cuda_graph``)."""
    onnxruntime: Mapping[str, Any] | None = None
    """ONNX Runtime: the deployer's passthrough (``OnnxRuntimeOptions.to_dict()``)."""


Builder = Callable[[BuildContext, Path], list[str]]
Opener = Callable[[OpenRequest], Runner]


@dataclass(frozen=True)
class Candidate:
    """One strategy's implementation: the intermediates it consumes, how it writes and opens its files."""

    name: str
    needs: tuple[Step[Any], ...]
    build: Builder
    """Write the entry's files into the folder (from ``ctx.get`` of its needs); return their names."""
    open: Opener
    steps: int = 1
    """Progress steps its own build takes besides its needs (each reported with ``ctx.begin``)."""
    open_built: Callable[[BuildContext, OpenRequest], Runner] | None = None
    """How the build opens what it just built, for its check and timing, when that can reuse work
    of the build (``int8-torch`` converts the module it calibrated instead of tracing it again);
    None: ``open``, as a later load does."""

    @property
    def strategy(self) -> Strategy:
        return strategy(self.name)

    @property
    def backend(self) -> str:
        return self.strategy.backend

    @property
    def precision(self) -> str:
        return self.strategy.precision


def nothing_to_build(_ctx: BuildContext, _folder: Path) -> list[str]:
    """For candidates that run the FP32 module itself (eager, FP16, BF16 autocast)."""
    return []
