"""ONNX Runtime sessions: provider choice, threads, and the one place its exceptions are translated."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendError, InvalidInputError, ModelInputError

# TensorRT runs through this project's own engine builder (TrtRunner), whose cache is keyed and
# locked; ORT's TensorRT provider keeps its own unlocked engine cache, so it is never chosen here.
_GPU_PROVIDERS = ("CUDAExecutionProvider",)
CPU_PROVIDER = "CPUExecutionProvider"


def choose_providers(
    device: str = "cpu", provider_options: Mapping[str, Mapping[str, Any]] | None = None
) -> list[Any]:
    """CUDA then CPU where onnxruntime-gpu offers it and a CUDA device is wanted, else CPU; each
    provider with its options (``cuda:N`` sets the CUDA provider's ``device_id``)."""
    import onnxruntime as ort

    available = set(ort.get_available_providers())
    chosen = [p for p in _GPU_PROVIDERS if device.startswith("cuda") and p in available]
    given = dict(provider_options or {})
    unknown = sorted(set(given) - set(ort.get_all_providers()))
    if unknown:
        raise ModelInputError(
            f"provider_options: expected ONNX Runtime execution provider names, got {', '.join(unknown)}"
        )
    index = device.split(":")[1] if device.startswith("cuda:") else None
    providers: list[Any] = []
    for name in [*chosen, CPU_PROVIDER]:
        options = {
            **({"device_id": index} if name in _GPU_PROVIDERS and index else {}),
            **given.get(name, {}),
        }
        providers.append((name, {k: str(v) for k, v in options.items()}) if options else name)
    return providers


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
    options: Mapping[str, Any] | None = None,
) -> Any:
    """An InferenceSession for ``path`` with full graph optimization and the given thread count;
    ``options`` (``OnnxRuntimeOptions.to_dict()``) are the deployer's passthrough."""
    import onnxruntime as ort

    if not Path(path).is_file():
        raise InvalidInputError(f"expected an ONNX file, but {str(path)!r} does not exist")
    options = options or {}
    opts = apply_session_options(session_options(num_threads), options)
    chosen = list(providers or choose_providers(device, options.get("provider_options")))
    with ort_errors(f"load {Path(path).name}"):
        return ort.InferenceSession(str(path), opts, providers=chosen)


def check_options(options: Mapping[str, Any], device: str = "cpu") -> None:
    """ModelInputError now, before any build, for a passthrough ONNX Runtime would refuse."""
    import onnxruntime as ort

    apply_session_options(ort.SessionOptions(), options)
    choose_providers(device, options.get("provider_options"))


def apply_session_options(opts: Any, options: Mapping[str, Any]) -> Any:
    """Set the deployer's ``SessionOptions`` attributes (an enum by its member's name) and config
    entries on ``opts``; an attribute ONNX Runtime does not have is refused by name."""
    for name, value in dict(options.get("session_options", {})).items():
        if name.startswith("_") or not hasattr(opts, name):
            valid = ", ".join(
                n for n in dir(opts) if not n.startswith("_") and not callable(getattr(opts, n))
            )
            raise ModelInputError(
                f"session_options: expected a SessionOptions attribute ({valid}), got {name!r}"
            )
        current = getattr(opts, name)
        if isinstance(value, str) and not isinstance(current, str):  # an enum member by name
            members = type(current).__members__
            if value not in members:
                raise ModelInputError(
                    f"session_options[{name!r}]: expected one of {', '.join(members)}, got {value!r}"
                )
            value = members[value]
        setattr(opts, name, value)
    for key, value in dict(options.get("config_entries", {})).items():
        with ort_errors(f"set the session config entry {key!r}"):
            opts.add_session_config_entry(key, value)
    return opts


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
