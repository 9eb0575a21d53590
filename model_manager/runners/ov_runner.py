"""OvRunner: an OpenVINO CompiledModel behind the Runner contract (CPU; FP32, BF16 or INT8 IR)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..descriptor import ModelDescriptor
from ..errors import InvalidInputError
from .base import Runner, RunnerInfo
from .ov_session import PrecisionHint, compile_model, ov_errors


class OvRunner(Runner):
    """Runs an OpenVINO IR compiled for the CPU with dynamic batch / H / W.

    Inputs go in as numpy views (shared, no copy); the output is copied out of the request, whose
    buffer is reused. Each thread gets its own infer request, so concurrent ``infer`` calls from
    the async twin never share one.
    """

    def __init__(
        self,
        xml: str | Path,
        descriptor: ModelDescriptor,
        info: RunnerInfo,
        *,
        hint: PrecisionHint = "f32",
        num_threads: int | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        super().__init__(descriptor, info)
        self.path = Path(xml)
        self.compiled: Any = compile_model(self.path, hint, num_threads, cache_dir)
        ports = [p.get_names() for p in self.compiled.inputs]  # a port may carry several tensor names
        expected = [s.name for s in descriptor.inputs]
        if len(ports) != len(expected) or any(e not in names for e, names in zip(expected, ports)):
            names = [sorted(n) for n in ports]
            raise InvalidInputError(
                f"{self.path.name}: expected graph inputs {expected} (the descriptor's order), got {names}"
            )
        self._local = threading.local()
        self.hint = hint
        self.info.artifact_path = self.info.artifact_path or str(self.path)
        self.info.device = "cpu"

    def _request(self) -> Any:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        return request

    def _infer_impl(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        feeds = [np.ascontiguousarray(t.detach().cpu().numpy()) for t in inputs]
        with ov_errors("run"):
            result = self._request().infer(feeds, share_inputs=True, share_outputs=False)
        return torch.from_numpy(np.asarray(result[0]))

    def _close_impl(self) -> None:
        self.compiled = None
        self._local = threading.local()
