"""TrtRunner: a TensorRT engine behind the Runner contract, with PyTorch CUDA tensors as its buffers.

Why PyTorch and not pycuda: the application already holds torch and its CUDA context; torch gives
device memory (caching allocator), streams and events in that same context, so a CUDA tensor from
the caller is bound with no copy and the engine runs on the caller's current stream, ordered with
the caller's own kernels. pycuda would create and push its own context, which fights PyTorch's.

numpy in: one host-to-device copy in, one device-to-host copy out (by the base Runner). torch CUDA
in: bound in place, the output stays on the device. Each call sets the input shapes (dynamic H / W
/ batch within the engine's profile; outside it, an InvalidInputError naming the profile).
``cuda_graph=True`` captures one CUDA graph per fixed set of input shapes and replays it.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import torch

from ..descriptor import ModelDescriptor, TensorSpec
from ..errors import BackendError, BackendUnavailableError, InvalidInputError
from .base import Runner, RunnerInfo
from .trt_session import deserialize_engine, import_tensorrt

Shape = tuple[int, ...]


class TrtRunner(Runner):
    """Runs a deserialized engine on the current CUDA device and stream."""

    def __init__(
        self,
        engine_path: str | Path,
        descriptor: ModelDescriptor,
        info: RunnerInfo,
        *,
        cuda_graph: bool = False,
        allow_host_code: bool = False,
    ) -> None:
        super().__init__(descriptor, info)
        if not torch.cuda.is_available():
            raise BackendUnavailableError("TrtRunner needs a CUDA device; none is visible")
        self.trt = import_tensorrt()
        self.path = Path(engine_path)
        self.engine: Any = deserialize_engine(str(self.path), allow_host_code)
        self.context: Any = self.engine.create_execution_context()
        self.device = torch.device("cuda", torch.cuda.current_device())
        self._inputs, self._output = self._io_names()
        expected = [s.name for s in descriptor.inputs]
        if self._inputs != expected:
            raise InvalidInputError(
                f"{self.path.name}: expected engine inputs {expected}, got {self._inputs}"
            )
        self.profiles = {n: self._profile(n) for n in self._inputs}
        self.cuda_graph = cuda_graph
        self._graphs: dict[tuple[Shape, ...], _Graph] = {}
        self._enqueue_lock = threading.Lock()  # one execution context: one enqueue at a time
        self.info.artifact_path = self.info.artifact_path or str(self.path)
        self.info.device = "cuda"

    @classmethod
    def from_engine(cls, engine_path: Path, info: RunnerInfo | None = None) -> TrtRunner:
        """A runner for an engine alone (benchmarks): inputs as the engine names them, any value range."""
        trt = import_tensorrt()
        engine = deserialize_engine(str(engine_path))
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        output = next(n for n in names if n not in inputs)
        anything = (-float("inf"), float("inf"))
        specs = tuple(TensorSpec(n, ("batch", "c", "height", "width"), value_range=anything) for n in inputs)
        descriptor = ModelDescriptor("unknown", "engine", specs, TensorSpec(output, ("batch", "c", "h", "w")))
        info = info or RunnerInfo("unknown", engine_path.name, "tensorrt", "tensorrt", "cuda", "?")
        return cls(engine_path, descriptor, info)

    def _io_names(self) -> tuple[list[str], str]:
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == self.trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        if len(outputs) != 1:
            raise InvalidInputError(f"{self.path.name}: expected one output tensor, got {outputs}")
        return inputs, outputs[0]

    def _profile(self, name: str) -> tuple[Shape, Shape, Shape]:
        lo, opt, hi = self.engine.get_tensor_profile_shape(name, 0)
        return tuple(lo), tuple(opt), tuple(hi)

    def _check_profile(self, name: str, shape: Shape) -> None:
        lo, opt, hi = self.profiles[name]
        if len(shape) != len(lo) or not all(a <= s <= b for a, s, b in zip(lo, shape, hi)):
            raise InvalidInputError(
                f"input {name!r}: shape {shape} is outside the engine's profile "
                f"(min {lo}, opt {opt}, max {hi}); rebuild the engine with a profile that covers it"
            )

    def _infer_impl(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        tensors = [t.to(self.device, dtype=torch.float32, non_blocking=True).contiguous() for t in inputs]
        shapes = tuple(tuple(int(d) for d in t.shape) for t in tensors)
        for name, shape in zip(self._inputs, shapes):
            self._check_profile(name, shape)
        with self._enqueue_lock:
            if self.cuda_graph:
                return self._graph_for(shapes).run(tensors)
            return self._enqueue(tensors, torch.cuda.current_stream(self.device))

    def _enqueue(self, tensors: list[torch.Tensor], stream: torch.cuda.Stream) -> torch.Tensor:
        """Bind inputs and a fresh output; queue the engine on ``stream``."""
        for name, t in zip(self._inputs, tensors):
            self.context.set_input_shape(name, tuple(t.shape))
            self.context.set_tensor_address(name, t.data_ptr())
        out = torch.empty(
            tuple(self.context.get_tensor_shape(self._output)), dtype=torch.float32, device=self.device
        )
        self.context.set_tensor_address(self._output, out.data_ptr())
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise BackendError(
                f"tensorrt failed to run {self.path.name} at shapes {[tuple(t.shape) for t in tensors]}"
            )
        return out

    def _graph_for(self, shapes: tuple[Shape, ...]) -> _Graph:
        graph = self._graphs.get(shapes)
        if graph is None:
            graph = self._graphs[shapes] = _Graph(self, shapes)
        return graph

    def _close_impl(self) -> None:
        self._graphs.clear()
        self.context = None
        self.engine = None


class _Graph:
    """One captured CUDA graph for fixed input shapes: static buffers, replayed per call."""

    def __init__(self, runner: TrtRunner, shapes: tuple[Shape, ...]) -> None:
        self.inputs = [torch.zeros(s, dtype=torch.float32, device=runner.device) for s in shapes]
        stream = torch.cuda.Stream(runner.device)
        stream.wait_stream(torch.cuda.current_stream(runner.device))
        with torch.cuda.stream(stream):
            runner._enqueue(self.inputs, stream)  # one plain run first: TensorRT allocates here
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph, stream=stream):
                self.output = runner._enqueue(self.inputs, stream)
        torch.cuda.current_stream(runner.device).wait_stream(stream)

    def run(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        for static, t in zip(self.inputs, tensors):
            static.copy_(t)
        self.graph.replay()
        return self.output.clone()
