"""OvRunner: an OpenVINO CompiledModel behind the Runner contract (CPU; FP32, BF16 or INT8 IR)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..descriptor import ModelDescriptor
from ..errors import InvalidInputError
from .base import Runner, RunnerInfo
from .ov_session import PrecisionHint, Shapes, compile_model, ov_errors, read_ir

STATIC_SHAPES = 4
"""Input shapes a runner compiles a static model for (the first ones it sees); other shapes run
the IR as saved, with dynamic dimensions, compiled once. A video has one frame size."""


class OvRunner(Runner):
    """Runs an OpenVINO IR on the CPU, compiled for each input shape it is called with.

    OpenVINO runs a model much faster with static shapes (``ov_session.with_shapes``: IFNet 1.8x),
    so each of the first :data:`STATIC_SHAPES` input shapes gets its own compiled model (about
    0.6 s the first time, for IFNet); later shapes share one compile of the IR as saved (dynamic
    batch / H / W). ``cached_shapes``: shapes whose compiled blob the entry holds in ``cache_dir``
    (the build compiled them there); they are compiled at open from the blob, and only they use
    ``cache_dir`` (a published entry is never written to). Inputs go in as numpy views (shared, no
    copy); the output is copied out of the request, whose buffer is reused. Each thread gets its
    own infer requests, so concurrent ``infer`` calls from the async twin never share one.
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
        cached_shapes: Sequence[Shapes] = (),
    ) -> None:
        super().__init__(descriptor, info)
        self.path = Path(xml)
        self._model = read_ir(self.path)  # read once; each shape compiles a reshaped copy
        ports = [p.get_names() for p in self._model.inputs]  # a port may carry several tensor names
        expected = [s.name for s in descriptor.inputs]
        if len(ports) != len(expected) or any(e not in names for e, names in zip(expected, ports)):
            names = [sorted(n) for n in ports]
            raise InvalidInputError(
                f"{self.path.name}: expected graph inputs {expected} (the descriptor's order), got {names}"
            )
        self.hint, self._num_threads = hint, num_threads
        self._static: dict[Shapes, Any] = {}
        self._dynamic: Any = None
        self._compile_lock = threading.Lock()
        self._local = threading.local()
        for shapes in cached_shapes[:STATIC_SHAPES]:
            self._static[shapes] = compile_model(self._model, hint, num_threads, cache_dir, shapes)
        self.info.artifact_path = self.info.artifact_path or str(self.path)
        self.info.device = "cpu"

    @property
    def compiled_shapes(self) -> list[Shapes]:
        """The input shapes compiled as static models so far."""
        return list(self._static)

    def _compiled_for(self, shapes: Shapes) -> Any:
        """The compiled model for these input shapes: static while there is room, else dynamic."""
        with self._compile_lock:
            if shapes in self._static:
                return self._static[shapes]
            if len(self._static) < STATIC_SHAPES:
                compiled = compile_model(self._model, self.hint, self._num_threads, None, shapes)
                self._static[shapes] = compiled
                return compiled
            if self._dynamic is None:
                self._dynamic = compile_model(self._model, self.hint, self._num_threads)
            return self._dynamic

    def _request(self, shapes: Shapes) -> Any:
        """This thread's infer request for the model compiled for ``shapes``."""
        requests = getattr(self._local, "requests", None)
        if requests is None:
            requests = self._local.requests = {}
        compiled = self._compiled_for(shapes)
        request = requests.get(id(compiled))
        if request is None:
            request = requests[id(compiled)] = compiled.create_infer_request()
        return request

    def _infer_impl(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        feeds = [np.ascontiguousarray(t.detach().cpu().numpy()) for t in inputs]
        shapes = tuple(tuple(f.shape) for f in feeds)
        with ov_errors("run"):
            result = self._request(shapes).infer(feeds, share_inputs=True, share_outputs=False)
        return torch.from_numpy(np.asarray(result[0]))

    def _close_impl(self) -> None:
        self._static, self._dynamic, self._model = {}, None, None
        self._local = threading.local()
