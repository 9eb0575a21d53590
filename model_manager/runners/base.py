"""Runner: the one inference interface every backend implements (Polygraphy-style lifecycle).

The base class owns validation, padding / cropping, numpy <-> torch conversion, the async twin and
the open / closed state. A backend overrides ``_infer_impl`` (torch tensors in, one torch tensor
out) and optionally ``_close_impl``; every backend takes and returns the same kind of data.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from ..descriptor import ModelDescriptor, TensorSpec
from ..errors import RunnerClosedError
from .padding import crop_output, pad_inputs
from .validation import validate_inputs

log = logging.getLogger(__name__)


@dataclass
class RunnerInfo:
    """What a Runner is and how it came to be; fields not known yet stay None / empty."""

    model_type: str
    name: str
    strategy: str
    backend: str
    device: str
    precision: str
    architecture: str = ""
    artifact_path: str | None = None
    cache_key: str | None = None
    cache_hit: bool | None = None
    build_seconds: float | None = None
    quality: dict[str, float] = field(default_factory=dict)
    speedup: float | None = None
    decision: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Runner(abc.ABC):
    """Callable with the model's inputs in declared order; returns the kind it was given."""

    def __init__(self, descriptor: ModelDescriptor, info: RunnerInfo) -> None:
        self.descriptor = descriptor
        self.info = info
        self._closed = False
        self._in_flight = 0
        self._lock = threading.Lock()  # guards _closed and _in_flight; never held while running

    # -- public API ----------------------------------------------------------------------
    @property
    def input_spec(self) -> tuple[TensorSpec, ...]:
        """One entry per input: name, dtype, shape with dynamic dims, value range."""
        return self.descriptor.inputs

    @property
    def closed(self) -> bool:
        return self._closed

    def __call__(self, *inputs: Any) -> Any:
        """Run synchronously; numpy in gives numpy out, torch in gives torch out (same device)."""
        with self._lock:
            if self._closed:
                raise RunnerClosedError(f"runner for {self.info.model_type}/{self.info.name} is closed")
            self._in_flight += 1
        try:
            tensors = validate_inputs(self.descriptor, inputs)
            height, width = _image_size(self.descriptor, tensors)
            padded = pad_inputs(self.descriptor, tensors)
            output = self._infer_impl(padded)
            output = crop_output(self.descriptor, output, height, width).contiguous()
            return _like(output, inputs[0])
        finally:
            with self._lock:
                self._in_flight -= 1
                drained = self._closed and self._in_flight == 0
            if drained:  # close() came while this call ran: the last call out releases
                self._release()

    async def infer(self, *inputs: Any) -> Any:
        """Same as calling the runner, in a worker thread so the event loop keeps running."""
        return await asyncio.to_thread(self.__call__, *inputs)

    def close(self) -> None:
        """Refuse new calls (RunnerClosedError) and release the backend's resources. Idempotent.

        Calls already running finish on intact resources: with none in flight the release happens
        here, otherwise when the last of them returns (close never blocks, e.g. an LRU eviction on
        the event loop), so no call can reach a freed session, context or engine.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            idle = self._in_flight == 0
        if idle:
            self._release()

    def _release(self) -> None:
        self._close_impl()
        log.debug("closed %s runner for %s/%s", self.info.backend, self.info.model_type, self.info.name)

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        i = self.info
        return f"<{type(self).__name__} {i.model_type}/{i.name} {i.strategy} {i.device} {state}>"

    # -- backend hooks ---------------------------------------------------------------------
    @abc.abstractmethod
    def _infer_impl(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        """Run the backend on validated, padded inputs; return the output (any device)."""

    def _close_impl(self) -> None:  # noqa: B027 - optional hook, deliberately not abstract
        """Release backend resources (default: nothing)."""


def _image_size(descriptor: ModelDescriptor, tensors: list[torch.Tensor]) -> tuple[int, int]:
    for spec, t in zip(descriptor.inputs, tensors):
        if spec.kind == "image":
            return int(t.shape[-2]), int(t.shape[-1])
    raise ValueError("descriptor has no image input")


def _like(output: torch.Tensor, example: Any) -> Any:
    """Return ``output`` as the kind (and device) of the caller's first input."""
    if isinstance(example, np.ndarray):
        return output.detach().cpu().numpy()
    return output.to(example.device)
