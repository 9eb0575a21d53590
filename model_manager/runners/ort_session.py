"""ONNX Runtime sessions: provider choice, threads, and the one place its exceptions are translated."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendError, InvalidInputError

# TensorRT runs through this project's own engine builder (TrtRunner), whose cache is keyed and
# locked; ORT's TensorRT provider keeps its own unlocked engine cache, so it is never chosen here.
_GPU_PROVIDERS = ("CUDAExecutionProvider",)
CPU_PROVIDER = "CPUExecutionProvider"


def choose_providers(device: str = "cpu") -> list[str]:
    """CUDA then CPU where onnxruntime-gpu offers it and a CUDA device is wanted, else CPU."""
    import onnxruntime as ort

    available = set(ort.get_available_providers())
    chosen = [p for p in _GPU_PROVIDERS if device.startswith("cuda") and p in available]
    return [*chosen, CPU_PROVIDER]


@contextmanager
def ort_errors(what: str) -> Iterator[None]:
    """Translate onnxruntime exceptions into BackendError, raised from the original."""
    try:
        yield
    except (InvalidInputError, BackendError):
        raise
    except Exception as exc:
        if type(exc).__module__.startswith("onnxruntime"):
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise BackendError(f"onnxruntime failed to {what}: {first}") from exc
        raise


def create_session(
    path: Path,
    *,
    device: str = "cpu",
    num_threads: int | None = None,
    providers: Sequence[str] | None = None,
) -> Any:
    """An InferenceSession for ``path`` with full graph optimization and the given thread count."""
    import onnxruntime as ort

    if not Path(path).is_file():
        raise InvalidInputError(f"expected an ONNX file, but {str(path)!r} does not exist")
    with ort_errors(f"load {Path(path).name}"):
        return ort.InferenceSession(
            str(path), session_options(num_threads), providers=list(providers or choose_providers(device))
        )


def session_options(num_threads: int | None = None) -> Any:
    """The options every session here uses: full graph optimization (ONNX Runtime fuses Q/DQ into
    integer kernels, so an INT8 model is measured as it is served), the given thread count."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if num_threads is not None:
        opts.intra_op_num_threads = num_threads
        opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return opts


def run_session(session: Any, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """``session.run`` with translated errors."""
    with ort_errors("run"):
        return list(session.run(None, dict(feeds)))
