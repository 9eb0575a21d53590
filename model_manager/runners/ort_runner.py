"""OrtRunner: an ONNX Runtime InferenceSession behind the Runner contract."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..descriptor import ModelDescriptor
from ..errors import InvalidInputError
from .base import Runner, RunnerInfo
from .ort_session import create_session, ort_errors


class OrtRunner(Runner):
    """Runs an ONNX model; CPU inputs are handed to ORT as numpy views (no copy on the hot path).

    On a CUDA provider, inputs and the output stay on the GPU through I/O binding of torch
    tensors, so a torch CUDA caller never round-trips through host memory.
    """

    def __init__(
        self,
        path: str | Path,
        descriptor: ModelDescriptor,
        info: RunnerInfo,
        *,
        device: str = "cpu",
        num_threads: int | None = None,
        session: Any = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(descriptor, info)
        self.path = Path(path)
        self.session: Any = session or create_session(
            self.path, device=device, num_threads=num_threads, options=options
        )
        self._input_names = [i.name for i in self.session.get_inputs()]
        self._output_name = self.session.get_outputs()[0].name
        expected = [s.name for s in descriptor.inputs]
        if self._input_names != expected:
            raise InvalidInputError(
                f"{self.path.name}: expected graph inputs {expected} (the descriptor's order), "
                f"got {self._input_names}"
            )
        self._cuda = "CUDAExecutionProvider" in self.session.get_providers()
        self._device = torch.device(device if device.startswith("cuda:") else "cuda") if self._cuda else None
        self.info.artifact_path = self.info.artifact_path or str(self.path)
        self.info.device = "cuda" if self._cuda else "cpu"

    def _infer_impl(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        if self._cuda:
            return self._infer_cuda(inputs)
        feeds = {n: _numpy_view(t) for n, t in zip(self._input_names, inputs)}
        with ort_errors("run"):
            (out,) = self.session.run([self._output_name], feeds)
        return torch.from_numpy(out)

    def _infer_cuda(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        """I/O binding of contiguous CUDA tensors into an output tensor torch allocated.

        ONNX Runtime's CUDA provider runs on a stream of its own and never waits on torch's, so
        torch's current stream (the caller's kernels and the copies below) is synchronised before
        the run. A ``user_compute_stream`` would not do: it is fixed when the session is made, and
        torch's current stream differs per thread (``infer`` runs in a worker). ORT synchronises
        its stream before ``run_with_iobinding`` returns, so the output is complete when returned.
        """
        binding = self.session.io_binding()
        tensors = [t.to(self._device).contiguous() for t in inputs]
        for name, t in zip(self._input_names, tensors):
            binding.bind_input(name, "cuda", t.device.index or 0, np.float32, tuple(t.shape), t.data_ptr())
        out = torch.empty(self._output_shape(tensors[0]), dtype=torch.float32, device=tensors[0].device)
        binding.bind_output(
            self._output_name, "cuda", out.device.index or 0, np.float32, tuple(out.shape), out.data_ptr()
        )
        torch.cuda.current_stream(out.device).synchronize()
        with ort_errors("run"):
            self.session.run_with_iobinding(binding)
        return out

    def _output_shape(self, first: torch.Tensor) -> tuple[int, ...]:
        """(N, C_out, H * scale, W * scale) of a padded input, from the descriptor."""
        channels = self.descriptor.output.channels or int(first.shape[1])
        scale = self.descriptor.scale
        return (int(first.shape[0]), channels, int(first.shape[2]) * scale, int(first.shape[3]) * scale)

    def _close_impl(self) -> None:
        self.session = None


def _numpy_view(t: torch.Tensor) -> np.ndarray:
    """A numpy view of a CPU tensor (a copy only if it lives on another device or is strided)."""
    if t.device.type != "cpu":
        t = t.cpu()
    return np.ascontiguousarray(t.numpy())
