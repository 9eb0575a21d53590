"""TrtRunner: a TensorRT engine behind the Runner contract, with PyTorch CUDA tensors as its buffers.

Why PyTorch and not pycuda: the application already holds torch and its CUDA context; torch gives
device memory (caching allocator), streams and events in that same context, so a CUDA tensor from
the caller is bound with no copy and the engine is ordered with the caller's own kernels by waits
between torch streams. pycuda would create and push its own context, which fights PyTorch's.

Streams: each runner enqueues on its own CUDA stream, never on the legacy default stream (where
``infer``'s worker thread would put it, and where TensorRT adds device-wide synchronisation). The
runner's stream waits on the caller's current stream before the engine reads the inputs (so the
caller's kernels and the host-to-device copies of the inputs come first), and the caller's stream
waits on the runner's before the output is used. Tensors allocated on the caller's stream and used
on the runner's (the converted inputs, the output) are recorded on it for the caching allocator.

Types: each input's and the output's dtype are read from the engine; inputs are cast to theirs,
the output is allocated in its own and handed back as float32 (the Runner contract).

numpy in: one host-to-device copy in, one device-to-host copy out (by the base Runner). torch CUDA
in: bound in place, the output stays on the device. Each call sets the input shapes (dynamic H / W
/ batch within the engine's profile; outside it, an InvalidInputError naming the profile).
``cuda_graph=True`` captures one CUDA graph per fixed set of input shapes and replays it.
:meth:`TrtRunner.from_engine` reads the scale from the engine's shapes at the profile's opt shape.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import torch

from ..descriptor import ModelDescriptor, TensorSpec
from ..devices import on_device
from ..errors import BackendUnavailableError, InvalidInputError
from .base import Runner, RunnerInfo
from .trt_io import Shape, bind, check, engine_scale, read_io
from .trt_session import deserialize_with_logger, failure, import_tensorrt


class TrtRunner(Runner):
    """Runs a deserialized engine on its CUDA device (``device``, else the current one), on a stream
    of its own; every call makes that device current in its thread (``devices.on_device``)."""

    def __init__(
        self,
        engine_path: str | Path,
        descriptor: ModelDescriptor,
        info: RunnerInfo,
        *,
        cuda_graph: bool = False,
        allow_host_code: bool = False,
        device: str | torch.device | None = None,
    ) -> None:
        super().__init__(descriptor, info)
        if not torch.cuda.is_available():
            raise BackendUnavailableError("TrtRunner needs a CUDA device; none is visible")
        self.trt = import_tensorrt()
        self.path = Path(engine_path)
        given = torch.device(device) if device is not None else torch.device("cuda")
        self.device = torch.device(
            "cuda", given.index if given.index is not None else torch.cuda.current_device()
        )
        with on_device(self.device):  # the engine, its context and its stream belong to this device
            self.engine, self._logger = deserialize_with_logger(str(self.path), allow_host_code)
            self.context: Any = self.engine.create_execution_context()
        if self.context is None:
            raise failure(f"create an execution context for {self.path.name}", self._logger)
        self._stream = torch.cuda.Stream(self.device)
        self._io = read_io(self.engine, self.trt, self.path.name)
        expected = [s.name for s in descriptor.inputs]
        if list(self._io.inputs) != expected:
            raise InvalidInputError(
                f"{self.path.name}: expected engine inputs {expected}, got {list(self._io.inputs)}"
            )
        self.profiles = dict(self._io.profiles)
        self.cuda_graph = cuda_graph
        self._graphs: dict[tuple[Shape, ...], _Graph] = {}
        self._enqueue_lock = threading.Lock()  # one execution context: one enqueue at a time
        self.info.artifact_path = self.info.artifact_path or str(self.path)
        self.info.device = "cuda"

    @classmethod
    def from_engine(cls, engine_path: Path, info: RunnerInfo | None = None) -> TrtRunner:
        """A runner for an engine alone (benchmarks): its input names, any value range, its scale."""
        trt = import_tensorrt()
        engine, logger = deserialize_with_logger(str(engine_path))
        io = read_io(engine, trt, engine_path.name)
        scale = engine_scale(engine.create_execution_context(), io, logger)
        anything = (-float("inf"), float("inf"))
        specs = tuple(
            TensorSpec(n, ("batch", "c", "height", "width"), value_range=anything) for n in io.inputs
        )
        output = TensorSpec(io.output, ("batch", "c", "h", "w"))
        descriptor = ModelDescriptor("unknown", "engine", specs, output, scale=scale)
        info = info or RunnerInfo("unknown", engine_path.name, "tensorrt", "tensorrt", "cuda", "?")
        return cls(engine_path, descriptor, info)

    def _check_profile(self, name: str, shape: Shape) -> None:
        lo, opt, hi = self.profiles[name]
        if len(shape) != len(lo) or not all(a <= s <= b for a, s, b in zip(lo, shape, hi)):
            raise InvalidInputError(
                f"input {name!r}: shape {shape} is outside the engine's profile "
                f"(min {lo}, opt {opt}, max {hi}); rebuild the engine with a profile that covers it"
            )

    def _infer_impl(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        shapes = tuple(tuple(int(d) for d in t.shape) for t in inputs)
        for name, shape in zip(self._io.inputs, shapes):
            self._check_profile(name, shape)
        caller = torch.cuda.current_stream(self.device)
        tensors = [self._to_engine(name, t) for name, t in zip(self._io.inputs, inputs)]
        with self._enqueue_lock, on_device(self.device):
            self._stream.wait_stream(caller)
            if self.cuda_graph:
                out = self._graph_for(shapes).run(tensors, self._stream)
            else:
                out = self._enqueue(tensors, self._stream)
            caller.wait_stream(self._stream)
        for t in (*tensors, out):
            t.record_stream(self._stream)
        return out.float()

    def _to_engine(self, name: str, t: torch.Tensor) -> torch.Tensor:
        """``t`` on the device in the engine's dtype, copied on the caller's stream (then waited on)."""
        return t.to(self.device, dtype=self._io.dtypes[name], non_blocking=True).contiguous()

    def _enqueue(self, tensors: list[torch.Tensor], stream: torch.cuda.Stream) -> torch.Tensor:
        """Bind inputs and a fresh output in the engine's dtype; queue the engine on ``stream``."""
        out = bind(self.context, self._io, tensors, self.device, self._logger)
        shapes = [tuple(t.shape) for t in tensors]
        check(
            self.context.execute_async_v3(stream.cuda_stream),
            f"run {self.path.name} at shapes {shapes}",
            self._logger,
        )
        return out

    def _graph_for(self, shapes: tuple[Shape, ...]) -> _Graph:
        graph = self._graphs.get(shapes)
        if graph is None:
            graph = self._graphs[shapes] = _Graph(self, shapes)
        return graph

    def _close_impl(self) -> None:
        self._stream.synchronize()  # no queued work may outlive the context or the graphs' buffers
        self._graphs.clear()
        self.context = None
        self.engine = None


class _Graph:
    """One CUDA graph captured on the runner's stream for fixed input shapes; replayed per call."""

    def __init__(self, runner: TrtRunner, shapes: tuple[Shape, ...]) -> None:
        stream = runner._stream
        stream.wait_stream(torch.cuda.current_stream(runner.device))
        with torch.cuda.stream(stream):
            self.inputs = [
                torch.zeros(s, dtype=runner._io.dtypes[n], device=runner.device)
                for n, s in zip(runner._io.inputs, shapes)
            ]
            runner._enqueue(self.inputs, stream)  # one plain run first: TensorRT allocates here
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph, stream=stream):
                self.output = runner._enqueue(self.inputs, stream)

    def run(self, tensors: list[torch.Tensor], stream: torch.cuda.Stream) -> torch.Tensor:
        """Copy ``tensors`` in, replay and copy the output out, all on ``stream``.

        The returned tensor is allocated on the caller's stream, like the plain path's output.
        """
        out = torch.empty_like(self.output)
        with torch.cuda.stream(stream):
            for static, t in zip(self.inputs, tensors):
                static.copy_(t)
            self.graph.replay()
            out.copy_(self.output)
        return out
