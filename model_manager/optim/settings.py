"""BuildSettings: everything a build needs besides the model, serialisable for the build process."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..config import QualityGates
from .trt_options import TensorRTOptions

DEFAULT_OPSET = 17
"""GridSample (IFNet's warp) needs opset 16; 17 adds LayerNormalization and is what ORT and TRT fuse best."""


@dataclass(frozen=True)
class BuildSettings:
    """How to build, check and time candidates; the gates come from :class:`QualityGates`."""

    device: str = "cpu"
    """``cpu`` or ``cuda`` (the kind); the CUDA device is ``cuda_index``."""
    cuda_index: int = 0
    opset: int = DEFAULT_OPSET
    gates: dict[str, float] = field(default_factory=lambda: QualityGates().by_precision())
    time_budget_s: float = 3.0
    """Seconds of timing per candidate (after warm-up); losers are dropped early."""
    warmup: int = 0
    """Untimed calls per candidate before timing; none by default: each candidate has just run once at
    the same shape (its check against FP32), and each timed visit starts with an untimed call."""
    iterations: int = 20
    num_threads: int | None = None
    opt_size: tuple[int, int] = (256, 256)
    opt_batch: int = 1
    weights_sha256: str | None = None
    """The FP32 weights' hash: with it, intermediates are content-addressed and reused across builds."""
    intermediates_root: str | None = None
    """The cache folder whose intermediate store this build may read and write (None: no reuse)."""
    int8_max_trials: int = 48
    """Trials the INT8 float-layer search may run (``mixed_precision``); 0: everything in INT8."""
    time_failed: bool = False
    """Also time candidates that failed their gate (``bench`` shows them; ``auto`` cannot serve them)."""
    tensorrt: dict[str, Any] = field(default_factory=lambda: TensorRTOptions().build_fields())
    """TensorRT build fields (``TensorRTOptions.build_fields``): workspace, optimisation level,
    hardware and version compatibility; in the key of every plan that may build an engine."""
    onnxruntime: dict[str, Any] = field(default_factory=dict)
    """ONNX Runtime passthrough (``OnnxRuntimeOptions.to_dict()``) for the sessions a build checks
    and times; in the key when set."""
    keep_freed_memory: bool = True
    """The build process keeps freed memory as the serving process does (``host_memory.py``), so
    eager FP32 is timed as it will run next to what is served."""

    @property
    def torch_device(self) -> str:
        """Where runners run: ``cpu`` or ``cuda:N``."""
        return f"cuda:{self.cuda_index}" if self.device == "cuda" else self.device

    def gate(self, precision: str) -> float:
        """The minimum PSNR for a precision (one rule: :meth:`QualityGates.for_precision`)."""
        return QualityGates.from_precisions(self.gates).for_precision(precision)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BuildSettings:
        data = dict(data)
        data["opt_size"] = tuple(data["opt_size"])
        return cls(**data)
