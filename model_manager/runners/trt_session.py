"""TensorRT: lazy import, a logger into ``logging``, and the one place its failures are translated.

TensorRT reports errors through its logger and returns None from factories; this module turns
both into ``BackendError`` with the last messages TensorRT logged.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

from ..errors import BackendError, BackendUnavailableError

log = logging.getLogger("model_manager.tensorrt")


def import_tensorrt() -> Any:
    """The ``tensorrt`` module, or a BackendUnavailableError naming the extra."""
    try:
        import tensorrt
    except ImportError as exc:
        raise BackendUnavailableError(
            "TensorRT is not installed: pip install 'model_manager[tensorrt]'"
        ) from exc
    return tensorrt


def make_logger() -> Any:
    """A ``trt.ILogger`` that forwards to ``logging`` and keeps the last errors for messages."""
    import tensorrt as trt

    class Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: deque[str] = deque(maxlen=8)

        def log(self, severity: trt.ILogger.Severity, msg: str) -> None:
            if severity in (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR):
                self.errors.append(msg)
                log.error("%s", msg)
            elif severity == trt.ILogger.Severity.WARNING:
                log.warning("%s", msg)
            elif severity == trt.ILogger.Severity.INFO:
                log.info("%s", msg)
            else:
                log.debug("%s", msg)

    return Logger()


def failure(what: str, logger: Any) -> BackendError:
    """A BackendError for ``what`` with what TensorRT logged since the last failure (then forgotten)."""
    errors = getattr(logger, "errors", None)
    last = "; ".join(errors or ()) or "no error was logged"
    if errors:
        errors.clear()  # a later failure reports its own messages, not these again
    return BackendError(f"tensorrt failed to {what}: {last}")


def deserialize_engine(path: str, allow_host_code: bool = False) -> Any:
    """A deserialized ICudaEngine (the caller has checked its sidecar), or BackendError."""
    return deserialize_with_logger(path, allow_host_code)[0]


def deserialize_with_logger(path: str, allow_host_code: bool = False) -> tuple[Any, Any]:
    """(engine, the logger its runtime reports to): keep the logger to name later failures."""
    import_tensorrt()
    import tensorrt as trt

    logger = make_logger()
    runtime = trt.Runtime(logger)
    if allow_host_code:  # version-compatible plans embed the lean runtime
        runtime.engine_host_code_allowed = True
    with open(path, "rb") as f:
        engine = runtime.deserialize_cuda_engine(f.read())
    if engine is None:
        raise failure(f"deserialize {path}", logger)
    return engine, logger
