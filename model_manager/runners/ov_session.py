"""OpenVINO: importing it lazily, compiling a model for the CPU, and translating its exceptions.

The one place OpenVINO's configuration is spelled out. Two of its defaults are wrong for us:
with no precision hint it silently runs BF16 on CPUs that have it (so FP32 is asked for
explicitly), and without ``CACHE_DIR`` every process start recompiles.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from ..errors import BackendError, BackendUnavailableError, InvalidInputError

PrecisionHint = Literal["f32", "bf16"]


def import_openvino() -> Any:
    """The ``openvino`` module, or a BackendUnavailableError naming the extra."""
    try:
        import openvino
    except ImportError as exc:
        raise BackendUnavailableError(
            "OpenVINO is not installed: pip install 'model_manager[openvino]'"
        ) from exc
    return openvino


def compile_config(hint: PrecisionHint, num_threads: int | None, cache_dir: Path | None) -> dict[str, str]:
    """The CPU plugin properties: precision hint, latency mode, threads, model cache folder."""
    config = {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"}
    if num_threads is not None:
        config["INFERENCE_NUM_THREADS"] = str(num_threads)
    if cache_dir is not None:
        config["CACHE_DIR"] = str(cache_dir)
    return config


def compile_model(
    xml: Path, hint: PrecisionHint, num_threads: int | None = None, cache_dir: Path | None = None
) -> Any:
    """A CompiledModel of the IR at ``xml`` for the CPU.

    Compiled from the read model, not the path: OpenVINO keys a path compile's cached blob by the
    path, so a blob written in a build's temporary folder would miss once the folder is renamed
    into place (and a new blob would be written into the published entry); a model compile is
    keyed by the model's content.
    """
    ov = import_openvino()
    if not Path(xml).is_file():
        raise InvalidInputError(f"expected an OpenVINO IR file, but {str(xml)!r} does not exist")
    with ov_errors(f"compile {Path(xml).name}"):
        core = ov.Core()
        return core.compile_model(
            core.read_model(str(xml)), "CPU", compile_config(hint, num_threads, cache_dir)
        )


@contextmanager
def ov_errors(what: str) -> Iterator[None]:
    """Translate OpenVINO exceptions into BackendError, raised from the original."""
    try:
        yield
    except (InvalidInputError, BackendError):
        raise
    except Exception as exc:
        if type(exc).__module__.startswith("openvino") or isinstance(exc, RuntimeError):
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BackendError(f"openvino failed to {what}: {first}") from exc
        raise
