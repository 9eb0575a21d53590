"""TensorRTOptions: what a deployer sets for TensorRT (``ModelConfig.tensorrt``), validated once.

The build fields (workspace, optimisation level, hardware and version compatibility) change the
engine, so they join the cache key of every TensorRT build; ``cuda_graph`` changes only how the
served engine is replayed, so it does not. ``TensorRTConfig`` (``trt_engine.py``) is these build
fields plus the precision and the timing cache file, and validates through this class.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from ..errors import InvalidInputError

HardwareCompat = Literal["none", "ampere_plus", "same_compute_capability"]
HARDWARE_COMPAT: tuple[HardwareCompat, ...] = ("none", "ampere_plus", "same_compute_capability")


@dataclass(frozen=True)
class TensorRTOptions:
    """How TensorRT engines are built and run for one ModelManager."""

    workspace_bytes: int = 4 << 30
    """The builder's workspace memory pool limit (tactics needing more are skipped)."""
    optimization_level: int = 3
    """``builder_optimization_level`` 0..5: higher builds slower and may run faster."""
    hardware_compatibility: HardwareCompat = "none"
    """``ampere_plus``: one engine for every Ampere-or-newer GPU; ``same_compute_capability``: for
    every GPU of the building GPU's compute capability (both disable cuDNN / cuBLAS tactics)."""
    version_compatible: bool = False
    """Build with the lean runtime embedded: later TensorRT releases of the same major run it."""
    cuda_graph: bool = False
    """Replay the served engine as one CUDA graph per input shape (fewer launches; not in the key)."""

    def __post_init__(self) -> None:
        check_build_fields(self.workspace_bytes, self.optimization_level, self.hardware_compatibility)

    def build_fields(self) -> dict[str, Any]:
        """The fields that change the engine (the cache key carries them)."""
        fields = asdict(self)
        del fields["cuda_graph"]
        return fields


def check_build_fields(
    workspace_bytes: object, optimization_level: object, hardware_compatibility: object
) -> None:
    """InvalidInputError for a value TensorRT would refuse, naming what was expected and what came."""
    if (
        isinstance(optimization_level, bool)
        or not isinstance(optimization_level, int)
        or not (0 <= optimization_level <= 5)
    ):
        raise InvalidInputError(f"optimization_level must be in 0..5, got {optimization_level!r}")
    if isinstance(workspace_bytes, bool) or not isinstance(workspace_bytes, int) or workspace_bytes < 1 << 20:
        raise InvalidInputError(f"workspace_bytes must be >= 1 MiB, got {workspace_bytes!r}")
    if hardware_compatibility not in HARDWARE_COMPAT:
        raise InvalidInputError(
            f"hardware_compatibility must be one of {', '.join(HARDWARE_COMPAT)}, "
            f"got {hardware_compatibility!r}"
        )
