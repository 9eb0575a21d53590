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


Shapes = tuple[tuple[int, ...], ...]
"""One call's input shapes, in the model's input order."""


def read_ir(xml: Path) -> Any:
    """The ``ov.Model`` of the IR at ``xml`` (read once; compile it as often as needed)."""
    ov = import_openvino()
    if not Path(xml).is_file():
        raise InvalidInputError(f"expected an OpenVINO IR file, but {str(xml)!r} does not exist")
    with ov_errors(f"read {Path(xml).name}"):
        return ov.Core().read_model(str(xml))


def compile_model(
    model: Any,
    hint: PrecisionHint,
    num_threads: int | None = None,
    cache_dir: Path | None = None,
    shapes: Shapes | None = None,
) -> Any:
    """A CompiledModel for the CPU of ``model`` (an ``ov.Model``, or the path of an IR): for
    exactly ``shapes`` (a reshaped copy, see :func:`with_shapes`), or, None, as saved.

    Compiled from the read model, not the path: OpenVINO keys a path compile's cached blob by the
    path, so a blob written in a build's temporary folder would miss once the folder is renamed
    into place (and a new blob would be written into the published entry); a model compile is
    keyed by the model's content, shapes included.
    """
    ov = import_openvino()
    if isinstance(model, (str, Path)):
        model = read_ir(Path(model))
    with ov_errors("compile the IR"):
        if shapes is not None:
            model = with_shapes(model.clone(), shapes)
        return ov.Core().compile_model(model, "CPU", compile_config(hint, num_threads, cache_dir))


def with_shapes(model: Any, shapes: Shapes) -> Any:
    """``model`` (an ``ov.Model``) reshaped in place so every input has exactly the given static
    shape; returned for chaining.

    Why (issue 17): with its shapes static, OpenVINO folds a model's shape arithmetic into
    constants and picks kernels for the size. Measured here (AVX2, FP32, 2 threads, interleaved):
    IFNet 256x256 123.9 -> 67.7 ms, 1280x704 1468 -> 807 ms (eager 1659 ms); compiling costs about
    0.6 s per shape. Fixing only the batch at 1 changed nothing on this CPU (102.4 vs 100.5 ms).
    """
    ov = import_openvino()
    if len(shapes) != len(model.inputs):
        raise InvalidInputError(f"expected {len(model.inputs)} input shapes, got {len(shapes)}")
    model.reshape({port: ov.PartialShape(list(shape)) for port, shape in zip(model.inputs, shapes)})
    return model


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
